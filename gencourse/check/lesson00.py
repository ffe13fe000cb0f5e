"""Checks for lesson 00 (welcome): the mean image of a batch, and the memorization figure of the protocol."""
import torch

from gencourse.exercises import Case, Mistake, run_check

__all__ = ["mean_image", "memorization_ratio"]


# ----------------------------------------------------------------------------------------------
# mean_image
# ----------------------------------------------------------------------------------------------

def _reference_mean_image(images):
    return images.mean(dim=0)


def _sum_over_batch(images):
    return images.sum(dim=0)


def _batch_dimension_kept(images):
    return images.mean(dim=0, keepdim=True)


def _mean_over_channels(images):
    return images.mean(dim=1)


def _mean_of_everything(images):
    return images.mean()


MEAN_IMAGE_MISTAKES = [
    Mistake("the images were added up, not averaged: the result grows with the number of images N "
            "(it equals the mean only for a single image).", fn=_sum_over_batch),
    Mistake("the result still has a batch dimension of size 1, shape (1, C, H, W): one image has shape "
            "(C, H, W).", fn=_batch_dimension_kept),
    Mistake("the average was taken over the channels (the second dimension), not over the images of the batch "
            "(the first).", fn=_mean_over_channels),
    Mistake("the average was taken over every number of the batch at once, giving a single number instead of an "
            "image.", fn=_mean_of_everything),
]


def mean_image(fn):
    """``fn(images: (N, C, H, W)) -> (C, H, W)``: the average image of a batch."""
    g = torch.Generator().manual_seed(0)
    cases = [Case(torch.rand(5, 1, 8, 8, generator=g), label="5 random 8x8 images"),
             Case(torch.rand(1, 1, 8, 8, generator=g), label="a single image"),
             Case(torch.rand(7, 3, 4, 6, generator=g), label="7 colour images of 4x6")]
    return run_check("mean_image", fn, cases, reference=_reference_mean_image, mistakes=MEAN_IMAGE_MISTAKES,
                     hint="each pixel of the answer is the average of that pixel over the N images of the batch; "
                          "only the batch dimension (the first) disappears.")


# ----------------------------------------------------------------------------------------------
# memorization_ratio
# ----------------------------------------------------------------------------------------------

def _distances(x, ref):
    """Euclidean distances ``(N, M)`` between the images ``x: (N, ...)`` and ``ref: (M, ...)``, computed
    pair by pair (independent of the torch.cdist a learner may use)."""
    diff = x.flatten(1).double()[:, None, :] - ref.flatten(1).double()[None, :, :]
    return diff.pow(2).sum(-1).sqrt()


def _reference_memorization_ratio(samples, train, reference):
    near = _distances(samples, train).min(dim=1).values  # (N,) each sample's nearest training image
    real = _distances(reference, train).min(dim=1).values  # (M,)
    return (near.median() / real.median()).item()


def _squared_distances(samples, train, reference):
    near = _distances(samples, train).pow(2).min(dim=1).values
    real = _distances(reference, train).pow(2).min(dim=1).values
    return (near.median() / real.median()).item()


def _mean_not_median(samples, train, reference):
    near = _distances(samples, train).min(dim=1).values
    real = _distances(reference, train).min(dim=1).values
    return (near.mean() / real.mean()).item()


def _not_normalized(samples, train, reference):
    return _distances(samples, train).min(dim=1).values.median().item()


def _nearest_over_wrong_axis(samples, train, reference):
    near = _distances(samples, train).min(dim=0).values  # (T,) each training image's nearest sample
    real = _distances(reference, train).min(dim=0).values
    return (near.median() / real.median()).item()


MEMORIZATION_MISTAKES = [
    Mistake("the distances are squared (no square root): the ratio comes out as the square of the right one, "
            "so 'twice as far as real digits' reads as 4.", fn=_squared_distances),
    Mistake("the typical distance is a mean, not a median: the figure is defined with medians, which a few "
            "far-off images cannot pull up.", fn=_mean_not_median),
    Mistake("the samples' median distance is not divided by the reference images' median distance: the figure "
            "is then in pixel units, not 'relative to unseen real images' (real images should read about 1).",
            fn=_not_normalized),
    Mistake("the nearest neighbour is taken over the wrong axis: for each training image its nearest sample, "
            "instead of for each sample its nearest training image.", fn=_nearest_over_wrong_axis),
]


def memorization_ratio(fn):
    """``fn(samples: (N, C, H, W), train: (T, C, H, W), reference: (M, C, H, W)) -> float``: the median
    distance from a sample to its nearest training image over the same median for the reference images."""
    g = torch.Generator().manual_seed(0)
    train = torch.rand(40, 1, 4, 4, generator=g)
    reference = torch.rand(15, 1, 4, 4, generator=g)
    near_copies = (train[:11] + 0.05 * torch.randn(11, 1, 4, 4, generator=g)).clamp(0, 1)
    far = (torch.rand(13, 1, 4, 4, generator=g) > 0.5).float()  # black-and-white noise, far from the data
    colour_train = torch.rand(25, 3, 2, 3, generator=g)
    cases = [Case(torch.rand(21, 1, 4, 4, generator=g), train, reference, label="21 samples like the data"),
             Case(near_copies, train, reference, label="11 noisy copies of training images"),
             Case(far, train, reference, label="13 samples of black-and-white noise"),
             Case(torch.rand(9, 3, 2, 3, generator=g), colour_train, torch.rand(7, 3, 2, 3, generator=g),
                  label="9 colour samples of 2x3")]
    return run_check("memorization_ratio", fn, cases, reference=_reference_memorization_ratio,
                     mistakes=MEMORIZATION_MISTAKES,
                     hint="treat each image as one long vector of pixels; for every sample find the Euclidean "
                          "distance to its nearest training image and take the median over the samples; do the "
                          "same for the reference images and divide the first median by the second. "
                          "All counts in the cases are odd, so the median is one of the values.")
