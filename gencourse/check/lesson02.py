"""Checks for lesson 02 (autoencoders).

References are independent of the lesson's solutions: the reconstruction error and the BCE written out with
torch, the score of the noised mixture by autograd through ``torch.distributions``, the ROC AUC by ranks
(:func:`gencourse.autoencoder.roc_auc`), and the learner's own autoencoder judged by what it achieves on
held-out digits against PCA with the same code size.
"""
import math

import torch
from torch import distributions as D
from torch import nn
from torch.nn import functional as F

from gencourse import autoencoder
from gencourse.exercises import Case, Mistake, run_check

__all__ = ["reconstruction_error", "autoencoder_from_scratch", "noised_mixture_score", "anomaly_roc_auc",
           "autoencoder_bce"]


# ----------------------------------------------------------------------------------------------
# reconstruction_error
# ----------------------------------------------------------------------------------------------

def _reference_reconstruction_error(x, x_hat):
    return ((x - x_hat) ** 2).reshape(len(x), -1).sum(dim=1)


def _recon_mean_per_image(x, x_hat):
    return ((x - x_hat) ** 2).reshape(len(x), -1).mean(dim=1)


def _recon_total(x, x_hat):
    return ((x - x_hat) ** 2).sum()


def _recon_norm(x, x_hat):
    return (x - x_hat).reshape(len(x), -1).norm(dim=1)


def _recon_last_dim(x, x_hat):
    return ((x - x_hat) ** 2).sum(-1)


def reconstruction_error(fn):
    """``fn(x, x_hat) -> (B,)``: squared error summed over the pixels of each image."""
    g = torch.Generator().manual_seed(20)
    cases = [
        Case(torch.rand(5, 1, 8, 8, generator=g), torch.rand(5, 1, 8, 8, generator=g), label="5 digits-sized images"),
        Case(torch.rand(3, 1, 28, 28, generator=g), torch.rand(3, 1, 28, 28, generator=g), label="3 MNIST-sized images"),
        Case(torch.rand(1, 1, 8, 8, generator=g), torch.rand(1, 1, 8, 8, generator=g), label="a batch of one image"),
        Case(torch.rand(4, 3, 5, 6, generator=g), torch.rand(4, 3, 5, 6, generator=g), label="4 colour images 3x5x6"),
    ]
    return run_check(
        "reconstruction_error", fn, cases, reference=_reference_reconstruction_error,
        hint="the answer has one number per image (shape (B,)): square the pixel differences, then add them up "
             "over every axis except the batch axis (channels, rows and columns).",
        mistakes=[
            Mistake("you averaged over the pixels: e(x) is the sum of squared errors, so that a 28x28 image "
                    "counts all of its 784 pixels.", _recon_mean_per_image),
            Mistake("you summed over the batch too: one number per image is asked for, shape (B,).", _recon_total),
            Mistake("you took the Euclidean norm (the square root of the sum): e(x) is the squared error, "
                    "without the root.", _recon_norm),
            Mistake("you summed over the last axis only: sum over channels, rows and columns, every axis but "
                    "the first.", _recon_last_dim),
        ])


# ----------------------------------------------------------------------------------------------
# autoencoder_from_scratch: build and train, judged on held-out digits against PCA
# ----------------------------------------------------------------------------------------------

_NO_CODE = ("the encoder's output is not a code of latent_dim numbers per image: the encoder must end in the "
            "bottleneck, a layer with latent_dim outputs, and the decoder start from it.")
_NOT_LOGITS = ("the decoder's outputs all lie in [0, 1], like pixels or probabilities, where logits were asked "
               "for (the reconstruction is their sigmoid): drop a sigmoid at its end, and train with the loss "
               "computed from logits.")
_POOR = ("the reconstructions of held-out digits are poor: the training does not converge. Reset the gradients "
         "before every backward pass (zero_grad: without it they add up over all earlier steps), step the "
         "optimizer, and compare the reconstruction's logits with the input images.")


def _digits_splits():
    from gencourse.data import load

    return load("digits", "train").images, load("digits", "val").images


def _pca_error(x_train, x_val, d):
    """Held-out squared error per image of PCA with d components fitted on x_train (the best linear AE)."""
    flat, mean = x_train.flatten(1).double(), x_train.flatten(1).double().mean(0)
    _, _, vt = torch.linalg.svd(flat - mean, full_matrices=False)
    p = vt[:d]
    back = ((x_val.flatten(1).double() - mean) @ p.T @ p + mean).clamp(0, 1)
    return float(((back - x_val.flatten(1).double()) ** 2).sum(1).mean())


def _seeded(fn):
    """The learner's function with torch's global seed fixed first, so that the verdict is reproducible."""
    def run(*args, **kwargs):
        torch.manual_seed(0)
        return fn(*args, **kwargs)
    return run


def _compare_autoencoder(got, expected, case):
    _, d = case.args
    x_val = _digits_splits()[1]
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(m, nn.Module) for m in got)):
        return False, f"expected a pair (encoder, decoder) of nn.Modules, got {type(got).__name__}"
    encoder, decoder = got
    with torch.no_grad():
        try:
            z = encoder(x_val)
        except Exception as err:  # noqa: BLE001 - a learner's bug is a verdict
            return False, f"encoder(x) raised {type(err).__name__}: {err}"
        if not isinstance(z, torch.Tensor) or tuple(z.shape) != (len(x_val), d):
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            return False, f"encoder(x) has shape {shape}, expected ({len(x_val)}, {d}): " + _NO_CODE
        try:
            logits = decoder(z)
        except Exception as err:  # noqa: BLE001
            return False, f"decoder(z) raised {type(err).__name__}: {err}"
        if not isinstance(logits, torch.Tensor) or logits.shape != x_val.shape:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            return False, f"decoder(encoder(x)) has shape {shape}, expected the images' shape {tuple(x_val.shape)}"
        if not torch.isfinite(logits).all():
            return False, "decoder(encoder(x)) holds NaN or infinite values: " + _POOR
        if logits.min() >= 0 and logits.max() <= 1:
            return False, _NOT_LOGITS
        error = float((torch.sigmoid(logits) - x_val).pow(2).flatten(1).sum(1).mean())
    if error >= expected:
        return False, (f"held-out squared error per image {error:.2f} is not below {expected:.2f}, PCA's with "
                       f"the same code size d = {d}; " + _POOR)
    return True, ""


def _ae_parts(x_train, d, hidden=128, sigmoid_out=False, bottleneck=True):
    D_ = x_train[0].numel()
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(D_, hidden), nn.LeakyReLU(),
                            *([nn.Linear(hidden, d)] if bottleneck else []))
    decoder = nn.Sequential(nn.Linear(d if bottleneck else hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, D_),
                            nn.Unflatten(1, tuple(x_train.shape[1:])), *([nn.Sigmoid()] if sigmoid_out else []))
    return encoder, decoder


def _ae_train(x_train, d, *, zero_grad=True, **kwargs):
    encoder, decoder = _ae_parts(x_train, d, **kwargs)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=2e-3)
    for _ in range(40):
        for batch in x_train[torch.randperm(len(x_train))].split(64):
            logits = decoder(encoder(batch))
            loss = F.binary_cross_entropy_with_logits(logits, batch, reduction="none").flatten(1).sum(1).mean()
            if zero_grad:
                optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return encoder, decoder


def _ae_reference(x_train, d):
    return _ae_train(x_train, d)


def _ae_forgot_zero_grad(x_train, d):
    return _ae_train(x_train, d, zero_grad=False)


def _ae_sigmoid_then_logit_loss(x_train, d):
    return _ae_train(x_train, d, sigmoid_out=True)


def _ae_no_bottleneck(x_train, d):
    return _ae_train(x_train, d, bottleneck=False)


def autoencoder_from_scratch(fn):
    """``fn(x_train, latent_dim) -> (encoder, decoder)``, trained: held-out error below PCA's at the same size.

    The check fixes torch's seed, calls ``fn`` on the training digits, and scores ``sigmoid(decoder(encoder(x)))``
    on the validation digits; the bar is PCA's error with the same number of components (the best linear
    autoencoder), computed here by an SVD.
    """
    x_train, x_val = _digits_splits()
    ds = (2, 8)
    cases = [Case(x_train, d, label=f"the 1000 training digits, latent_dim = {d}") for d in ds]
    expected = [_pca_error(x_train, x_val, d) for d in ds]
    return run_check(
        "autoencoder_from_scratch", _seeded(fn) if callable(fn) else fn, cases, expected=expected, compare=_compare_autoencoder,
        hint="three parts: an encoder that ends in latent_dim numbers and a decoder that maps them back to one "
             "logit per pixel; the loss of eq. (1), computed from the logits, summed over the pixels of each image "
             "and averaged over the batch; and a loop over shuffled mini-batches for some tens of epochs, in which "
             "each step resets the gradients, backpropagates the loss and updates the weights with Adam.",
        mistakes=[
            Mistake(_NO_CODE, example=_ae_no_bottleneck),
            Mistake(_NOT_LOGITS, example=_ae_sigmoid_then_logit_loss),
            Mistake(_POOR, example=_ae_forgot_zero_grad),
        ])


# ----------------------------------------------------------------------------------------------
# noised_mixture_score: the true score of the noised toy, derived
# ----------------------------------------------------------------------------------------------

def _reference_mixture_score(x, centers, std, sigma):
    """Autograd through torch.distributions: the noised mixture has components N(c_k, (std^2 + sigma^2) I)."""
    s = math.sqrt(std ** 2 + sigma ** 2)
    comps = D.Independent(D.Normal(centers, torch.full_like(centers, s)), 1)
    mix = D.MixtureSameFamily(D.Categorical(torch.ones(len(centers), dtype=centers.dtype)), comps)
    xr = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(xr).sum(), xr)
    return grad


def _score_parts(x, centers, std, sigma):
    diff = centers[None] - x[:, None]
    return diff, (diff ** 2).sum(-1)


def _score_noise_variance_only(x, centers, std, sigma):
    diff, sq = _score_parts(x, centers, std, sigma)
    w = torch.softmax(-sq / (2 * sigma ** 2), 1)
    return (w[..., None] * diff).sum(1) / sigma ** 2


def _score_std_sum(x, centers, std, sigma):
    s2 = (std + sigma) ** 2
    diff, sq = _score_parts(x, centers, std, sigma)
    w = torch.softmax(-sq / (2 * s2), 1)
    return (w[..., None] * diff).sum(1) / s2


def _score_sign(x, centers, std, sigma):
    return -autoencoder.mixture_score(x, centers, std, sigma)


def _score_equal_weights(x, centers, std, sigma):
    diff, _ = _score_parts(x, centers, std, sigma)
    return diff.mean(1) / (std ** 2 + sigma ** 2)


def _score_divided_by_std(x, centers, std, sigma):
    s2 = std ** 2 + sigma ** 2
    diff, sq = _score_parts(x, centers, std, sigma)
    w = torch.softmax(-sq / (2 * s2), 1)
    return (w[..., None] * diff).sum(1) / math.sqrt(s2)


def noised_mixture_score(fn):
    """``fn(x, centers, std, sigma) -> (B, D)``: ``grad log p_sigma(x)`` of the noised equal-weight mixture."""
    from gencourse import data

    g = torch.Generator().manual_seed(23)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    ring = data.RING_CENTERS.double()
    cases = [
        Case(r(50, 2) * 3, ring, data.RING_STD, 0.5, label="50 points around the 8-Gaussians ring, sigma = 0.5"),
        Case(r(20, 2) * 3, ring, data.RING_STD, 0.05, label="barely noised: sigma = 0.05"),
        Case(r(6, 3), r(4, 3) * 2, 1.0, 0.3, label="4 components in 3D, std 1, sigma 0.3"),
        Case(r(5, 2), torch.tensor([[1.0, -2.0]], dtype=torch.float64), 0.5, 1.0,
             label="one component: the score of one Gaussian"),
        Case(torch.tensor([[40.0, -35.0], [0.0, 0.0]], dtype=torch.float64), ring, data.RING_STD, 0.1,
             label="a point far from every mode (no overflow, no NaN) and the centre"),
    ]
    return run_check(
        "noised_mixture_score", fn, cases, reference=_reference_mixture_score, rtol=1e-5, atol=1e-8,
        hint="first the density: noise adds variances, so each component of p_sigma is a Gaussian around its "
             "centre with variance std^2 + sigma^2. Then the gradient of the log of a sum: each component's own "
             "score, pulling x towards its centre, weighted by that component's posterior responsibility for x "
             "(a softmax over components of their log-densities, which stays finite far from every centre).",
        mistakes=[
            Mistake("the variance of the noised components is std^2 + sigma^2: you used sigma^2 alone, "
                    "forgetting the spread of the data's own modes.", _score_noise_variance_only),
            Mistake("variances add, standard deviations do not: the noised variance is std^2 + sigma^2, "
                    "not (std + sigma)^2.", _score_std_sum),
            Mistake("the sign is reversed: the score points towards higher density, from x towards the "
                    "centres (c - x), not away from them.", _score_sign),
            Mistake("you averaged the components' scores with equal weights: each must be weighted by its "
                    "responsibility for x, which depends on x (the prior weights are equal, the posterior "
                    "ones are not).", _score_equal_weights),
            Mistake("you divided by the standard deviation: the score of a Gaussian is (c - x) / variance.",
                    _score_divided_by_std),
        ])


# ----------------------------------------------------------------------------------------------
# anomaly_roc_auc: the Mann-Whitney statistic
# ----------------------------------------------------------------------------------------------

def _auc_strict(a, b):
    return float((b[:, None] > a[None, :]).double().mean())


def _auc_wrong_direction(a, b):
    return float((a[:, None] > b[None, :]).double().mean() + 0.5 * (a[:, None] == b[None, :]).double().mean())


def _auc_ties_full(a, b):
    return float((b[:, None] >= a[None, :]).double().mean())


def _auc_means(a, b):
    return float((b.mean() > a.mean()).double())


def anomaly_roc_auc(fn):
    """``fn(scores_normal, scores_anomalous) -> float``: ROC AUC = P(anomalous > normal) + 1/2 P(tie)."""
    g = torch.Generator().manual_seed(22)
    normal = torch.randn(200, generator=g, dtype=torch.float64)
    cases = [
        Case(normal, torch.randn(150, generator=g, dtype=torch.float64) + 1.0, label="overlapping scores (AUC ~ 0.76)"),
        Case(normal, normal.max() + 1.0 + torch.rand(20, generator=g, dtype=torch.float64),
             label="perfect separation (AUC = 1)"),
        Case(normal + 10.0, normal[:50], label="anomalies score lower (AUC = 0)"),
        Case(torch.tensor([1.0, 2.0, 2.0, 3.0], dtype=torch.float64), torch.tensor([2.0, 3.0], dtype=torch.float64),
             label="tied scores count one half"),
    ]
    return run_check(
        "anomaly_roc_auc", fn, cases, reference=autoencoder.roc_auc, atol=1e-9,
        hint="the AUC is a probability over pairs: compare every anomalous score with every normal score (all "
             "n x m pairs, by broadcasting), count the share where the anomaly scores higher, add half the share "
             "of ties, and return a Python float.",
        mistakes=[
            Mistake("ties are not counted: a pair with equal scores counts one half.", _auc_strict),
            Mistake("ties count fully: a pair with equal scores counts one half, not one.", _auc_ties_full),
            Mistake("the direction is reversed: the AUC is the probability that the ANOMALOUS score is the "
                    "higher one (higher score = more anomalous).", _auc_wrong_direction),
            Mistake("you compared the two means: the AUC compares every pair of scores, one of each group.",
                    _auc_means),
        ])


# ----------------------------------------------------------------------------------------------
# autoencoder_bce: targets in [-1, 1], from logits
# ----------------------------------------------------------------------------------------------

def _reference_bce(logits, x):
    target = (x + 1.0) / 2.0
    per_pixel = torch.clamp(logits, min=0) - logits * target + torch.log1p(torch.exp(-logits.abs()))
    return per_pixel.flatten(1).sum(1).mean()


def _bce_sigmoid_then_bceloss(logits, x):
    return F.binary_cross_entropy(torch.sigmoid(logits), (x + 1) / 2, reduction="none").flatten(1).sum(1).mean()


def _bce_unmapped_targets(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()


def _bce_mean_over_pixels(logits, x):
    return F.binary_cross_entropy_with_logits(logits, (x + 1) / 2)


def _bce_sum_over_batch(logits, x):
    return F.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="sum")


def _bce_half_map(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x / 2, reduction="none").flatten(1).sum(1).mean()


def autoencoder_bce(fn):
    """``fn(logits, x) -> scalar``: BCE from logits, targets ``x`` in [-1, 1] mapped to [0, 1], summed per image."""
    g = torch.Generator().manual_seed(21)
    levels = lambda *s: torch.randint(0, 17, s, generator=g) / 8.0 - 1.0   # digits on [-1, 1]
    saturated = torch.tensor([[[[40.0, -40.0], [150.0, -150.0]]]])
    cases = [
        Case(torch.randn(6, 1, 8, 8, generator=g) * 3, levels(6, 1, 8, 8), label="6 digits, moderate logits"),
        Case(torch.randn(2, 1, 28, 28, generator=g), levels(2, 1, 28, 28), label="2 MNIST-sized images"),
        Case(saturated, torch.tensor([[[[-1.0, 1.0], [-1.0, 1.0]]]]),
             label="confidently wrong pixels: logits +-40 and +-150 against the opposite targets"),
        Case(-saturated, torch.tensor([[[[-1.0, 1.0], [-1.0, 1.0]]]]), label="confidently right pixels (loss near 0)"),
    ]
    return run_check(
        "autoencoder_bce", fn, cases, reference=_reference_bce, rtol=1e-4, atol=1e-4,
        hint="binary cross-entropy needs targets in [0, 1]: map -1 to 0 and 1 to 1 first. Then compute it from "
             "the logits (the softplus form of eq. (1), which PyTorch's logits version implements), never from "
             "a sigmoid output; sum over the pixels of each image, and average over the images.",
        mistakes=[
            Mistake("sigmoid followed by BCELoss saturates: at a logit of 40 the sigmoid rounds to 1, the log is "
                    "clamped at -100 and the loss is wrong; compute the loss from the logits.",
                    _bce_sigmoid_then_bceloss),
            Mistake("the targets are still in [-1, 1]: the loss with a target of -1 has no minimum; map them to "
                    "[0, 1] first.", _bce_unmapped_targets),
            Mistake("the targets are mapped to [-0.5, 0.5]: -1 must become 0 and 1 stay 1.", _bce_half_map),
            Mistake("you averaged over the pixels: sum the loss over the pixels of each image, then average "
                    "over the images.", _bce_mean_over_pixels),
            Mistake("you summed over the batch too: average the per-image sums over the images.",
                    _bce_sum_over_batch),
        ])
