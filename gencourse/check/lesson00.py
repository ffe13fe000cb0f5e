"""Checks for lesson 00 (welcome)."""
import torch

from gencourse.exercises import Case, run_check

__all__ = ["mean_image"]


def _reference_mean_image(images):
    return images.mean(dim=0)


def mean_image(fn):
    """``fn(images: (N, C, H, W)) -> (C, H, W)``: the average image of a batch."""
    g = torch.Generator().manual_seed(0)
    cases = [Case(torch.rand(5, 1, 8, 8, generator=g), label="5 random 8x8 images"),
             Case(torch.rand(1, 1, 8, 8, generator=g), label="a single image"),
             Case(torch.rand(7, 3, 4, 6, generator=g), label="7 colour images of 4x6")]
    return run_check("mean_image", fn, cases, reference=_reference_mean_image,
                     hint="average over the batch dimension only (dim=0): the result has one image's shape.")
