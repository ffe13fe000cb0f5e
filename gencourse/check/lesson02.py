"""Checks for lesson 02 (autoencoders). References: written out here with torch / :mod:`gencourse.autoencoder`."""
import torch
from torch.nn import functional as F

from gencourse import autoencoder
from gencourse.exercises import Case, run_check

__all__ = ["reconstruction_error", "autoencoder_bce", "anomaly_roc_auc"]


def _reference_reconstruction_error(x, x_hat):
    return (x - x_hat).pow(2).flatten(1).sum(1)


def reconstruction_error(fn):
    """``fn(x, x_hat) -> (B,)``: squared error summed over the pixels of each image."""
    g = torch.Generator().manual_seed(20)
    cases = [
        Case(torch.rand(5, 1, 8, 8, generator=g), torch.rand(5, 1, 8, 8, generator=g), label="5 digits-sized images"),
        Case(torch.rand(3, 1, 28, 28, generator=g), torch.rand(3, 1, 28, 28, generator=g), label="3 MNIST-sized images"),
        Case(torch.rand(1, 1, 8, 8, generator=g), torch.rand(1, 1, 8, 8, generator=g), label="a batch of one image"),
        Case(torch.rand(4, 3, 5, 6, generator=g), torch.rand(4, 3, 5, 6, generator=g), label="4 colour images 3x5x6"),
    ]
    return run_check("reconstruction_error", fn, cases, reference=_reference_reconstruction_error,
                     hint="one number per image: square the difference, then sum over every dimension but the "
                          "first, e.g. (x - x_hat).pow(2).flatten(1).sum(1). Not .mean(), not a sum over the batch.")


def _reference_bce(logits, x):
    target = (x + 1.0) / 2.0
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1).mean()


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
    return run_check("autoencoder_bce", fn, cases, reference=_reference_bce, rtol=1e-4, atol=1e-4,
                     hint="map the targets to [0, 1] with (x + 1) / 2, then use "
                          "F.binary_cross_entropy_with_logits(logits, target, reduction='none'), sum over the pixels "
                          "of each image (.flatten(1).sum(1)) and average over images. torch.sigmoid followed by "
                          "BCELoss saturates: at a logit of 40 it returns a clamped 100 and no gradient.")


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
    return run_check("anomaly_roc_auc", fn, cases, reference=autoencoder.roc_auc, atol=1e-9,
                     hint="compare every anomalous score with every normal score: "
                          "(b[:, None] > a[None, :]).double().mean() + 0.5 * (b[:, None] == a[None, :]).double().mean(); "
                          "return a Python float (float(...)).")
