"""Checks for lesson 11 (comparing generative models): the NLL of a model mixed with noise, the Fréchet
distance from two Gaussians' moments, and a Gaussian family added to the table."""
import math

import torch

from gencourse import recipes
from gencourse.exercises import Case, run_check

__all__ = ["noise_mixture_nll", "frechet_from_moments", "gaussian_digits"]


def _mixture_reference(nll_model, nll_noise, weight):
    """``-log(w e^{-a} + (1 - w) e^{-b})`` by logsumexp."""
    a, b = torch.as_tensor(nll_model, dtype=torch.float64), torch.as_tensor(nll_noise, dtype=torch.float64)
    stacked = torch.stack([math.log(weight) - a, math.log1p(-weight) - b + 0 * a])
    return -torch.logsumexp(stacked, dim=0)


def noise_mixture_nll(fn):
    """``fn(nll_model (B,), nll_noise (B,) or float, weight) -> (B,)``: NLL in nats under
    ``q = weight * p_model + (1 - weight) * p_noise``."""
    g = torch.Generator().manual_seed(0)
    cases = [
        Case(80 + 10 * torch.rand(6, generator=g), torch.full((6,), 181.3), 0.01, label="digit-like NLLs, 1% model"),
        Case(torch.tensor([5.0, 1.0, 3.0]), torch.tensor([2.0, 4.0, 3.0]), 0.5, label="small NLLs, an even mixture"),
        Case(torch.tensor([900.0, 1200.0]), torch.tensor([1000.0, 1000.0]), 0.3,
             label="NLLs near 1000 nats (exp(-1000) underflows: stay in log space)"),
    ]
    return run_check("noise_mixture_nll", fn, cases, reference=_mixture_reference, rtol=1e-5, atol=1e-4,
                     hint="q(x) = w p(x) + (1 - w) u(x); with log p = -nll_model and log u = -nll_noise, take "
                          "-torch.logsumexp of the stacked [log w - nll_model, log(1 - w) - nll_noise] over the "
                          "stacking dimension. exp(-nll) itself underflows to 0 for hundreds of nats.")


def _random_spd(d, g, scale=1.0):
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return scale * (a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64))


def _frechet_reference(mu_a, cov_a, mu_b, cov_b):
    """Closed form by eigendecompositions: ``Tr (S_a S_b)^{1/2} = Tr (S_a^{1/2} S_b S_a^{1/2})^{1/2}``."""
    def sqrt_psd(m):
        w, v = torch.linalg.eigh(m)
        return (v * w.clamp(min=0).sqrt()) @ v.T

    root_a = sqrt_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross)


def frechet_from_moments(fn):
    """``fn(mu_a (D,), cov_a (D, D), mu_b (D,), cov_b (D, D)) -> float``: the squared Fréchet distance
    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` (what FID and our ``frechet`` report)."""
    g = torch.Generator().manual_seed(1)
    d = 6
    s1, s2 = _random_spd(d, g), _random_spd(d, g, 2.0)
    m1, m2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    cases = [
        Case(m1, s1, m2, s2, label="two 6-dimensional Gaussians"),
        Case(m1, s1, m1.clone(), s1.clone(), label="the same Gaussian twice (distance 0)"),
        Case(torch.zeros(1, dtype=torch.float64), torch.tensor([[4.0]], dtype=torch.float64),
             torch.ones(1, dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64),
             label="1D: (0 - 1)^2 + (2 - 1)^2 = 2"),
        Case(m1, torch.diag(torch.rand(d, generator=g, dtype=torch.float64) + 0.1), m2,
             torch.diag(torch.rand(d, generator=g, dtype=torch.float64) + 0.1), label="diagonal covariances"),
    ]
    return run_check("frechet_from_moments", fn, cases, reference=_frechet_reference, rtol=1e-4, atol=1e-6,
                     hint="scipy.linalg.sqrtm(cov_a @ cov_b) gives the matrix square root (take its real part); "
                          "the distance is the squared mean difference plus trace(cov_a + cov_b - 2 sqrtm(...)), "
                          "returned as one float.")


def gaussian_digits(fn):
    """``fn(mean (64,), scale_tril (64, 64), eps (n, 64)) -> (n, 1, 8, 8)``: samples ``mean + L eps`` of a
    Gaussian over the 64 pixels, clipped to [0, 1] and rounded to the nearest of the 17 levels ``k / 16``."""
    g = torch.Generator().manual_seed(2)
    mean = torch.rand(64, generator=g)
    a = 0.2 * torch.randn(64, 64, generator=g) / 8
    scale_tril = torch.linalg.cholesky(a @ a.T + 0.01 * torch.eye(64))
    cases = [
        Case(mean, scale_tril, torch.randn(5, 64, generator=g), label="5 samples"),
        Case(mean, scale_tril, 4 * torch.randn(3, 64, generator=g), label="3 far-out samples (clip to [0, 1])"),
        Case(torch.full((64,), 0.5), torch.eye(64) * 0.01, torch.zeros(1, 64), label="eps = 0 gives the mean, 8/16"),
    ]
    return run_check("gaussian_digits", fn, cases, reference=recipes.gaussian_digits, rtol=0, atol=1e-6,
                     hint="y = mean + eps @ scale_tril.T (each row of eps is one sample); clamp to [0, 1]; "
                          "round y * 16 to the nearest integer and divide by 16; reshape to (n, 1, 8, 8).")
