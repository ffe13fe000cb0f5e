"""Checks for lesson 03 (variational autoencoders).

References: :mod:`gencourse.vae` for the KL, and independent computations with ``torch.distributions`` for the
ELBO and the IWAE bound; the reparameterization is checked by its moments and its gradients, since a sample
cannot be compared with another sample.
"""
import math

import torch
from torch import distributions as D

from gencourse import vae
from gencourse.exercises import Case, run_check

__all__ = ["reparameterize", "gaussian_kl", "elbo_estimate", "iwae_estimate"]


# ----------------------------------------------------------------------------------------------
# reparameterize: moments and gradients
# ----------------------------------------------------------------------------------------------

def _reparam_case(mu_row, logvar_row, n, label):
    mu = torch.tensor(mu_row, dtype=torch.float64).expand(n, -1).clone().requires_grad_(True)
    logvar = torch.tensor(logvar_row, dtype=torch.float64).expand(n, -1).clone().requires_grad_(True)
    return Case(mu, logvar, label=label)


def _fmt(t):
    return "(" + ", ".join(f"{v:.3g}" for v in t.tolist()) + ")"


def _compare_reparameterized(got, expected, case):
    mu, logvar = case.args
    if not isinstance(got, torch.Tensor) or got.shape != mu.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return False, f"expected a tensor of shape {tuple(mu.shape)} (the shape of mu), got {shape}"
    if not got.requires_grad:
        return False, "no gradient flows from z back to mu and logvar (.detach(), torch.normal and .sample() block it)"
    n = len(got)
    z = got.detach().double()
    m0, s0 = mu.detach()[0], torch.exp(0.5 * logvar.detach()[0])
    mean, std = z.mean(0), z.std(0)
    if ((mean - m0).abs() > 5 * s0 / math.sqrt(n) + 1e-9).any():
        return False, f"the sample mean {_fmt(mean)} is not mu = {_fmt(m0)}"
    if ((std / s0 - 1).abs() > 0.05).any():
        return False, f"the sample standard deviation {_fmt(std)} is not exp(logvar / 2) = {_fmt(s0)}"
    g_mu, g_logvar = torch.autograd.grad(got.sum(), [mu, logvar], allow_unused=True)
    if g_mu is None or not torch.allclose(g_mu.double(), torch.ones_like(mu), atol=1e-6):
        return False, ("dz/dmu should be 1: z = mu + (something that does not depend on mu); torch.normal(mu, std) "
                       "draws the right numbers but passes no gradient to mu")
    if g_logvar is None or not torch.allclose(g_logvar.double(), 0.5 * (z - mu.detach()), atol=1e-5):
        return False, "dz/dlogvar should be (z - mu) / 2: z = mu + exp(logvar / 2) * eps with eps ~ N(0, I)"
    return True, ""


def reparameterize(fn):
    """``fn(mu, logvar) -> z``: a sample of ``N(mu, diag exp(logvar))`` that carries gradients."""
    cases = [
        _reparam_case([0.0, 0.0], [0.0, 0.0], 20_000, "20000 draws of N(0, I) in 2D"),
        _reparam_case([1.5, -2.0, 0.3], [math.log(4.0), math.log(0.25), 1.0], 20_000,
                      "20000 draws, mu = (1.5, -2, 0.3), variances (4, 0.25, e)"),
        _reparam_case([10.0], [math.log(9.0)], 20_000, "20000 draws of N(10, 9) (std 3, not 9)"),
    ]
    return run_check("reparameterize", fn, cases, reference=vae.reparameterize, compare=_compare_reparameterized,
                     hint="std = torch.exp(0.5 * logvar); eps = torch.randn_like(mu); return mu + std * eps. "
                          "logvar is the log of the variance: the standard deviation is exp(logvar / 2).")


# ----------------------------------------------------------------------------------------------
# gaussian_kl
# ----------------------------------------------------------------------------------------------

def gaussian_kl(fn):
    """``fn(mu, logvar) -> (B,)``: ``KL(N(mu, diag exp(logvar)) || N(0, I))`` summed over non-batch dims."""
    g = torch.Generator().manual_seed(31)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    cases = [
        Case(r(4, 3), r(4, 3), label="4 examples, latent 3"),
        Case(torch.zeros(2, 5, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64), label="q = p (KL = 0)"),
        Case(r(3, 2) * 3, r(3, 2) * 2 - 3, label="far from the prior, small variances"),
        Case(r(2, 2, 3), r(2, 2, 3), label="latents of shape (2, 3) per example: sum over both"),
    ]
    return run_check("gaussian_kl", fn, cases, reference=vae.gaussian_kl, atol=1e-8,
                     hint="0.5 * (mu**2 + exp(logvar) - 1 - logvar), summed over every dimension but the batch "
                          "(.flatten(1).sum(1)), one number per example.")


# ----------------------------------------------------------------------------------------------
# The ELBO and the IWAE bound with given noise: independent computations with torch.distributions
# ----------------------------------------------------------------------------------------------

def _reference_elbo(x, mu, logvar, eps, log_likelihood):
    q = D.Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * eps
    kl = D.kl_divergence(q, D.Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    return log_likelihood(x, z) - kl


def _reference_iwae(x, mu, logvar, eps, log_likelihood):
    q = D.Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * eps                                       # (k, B, d)
    prior = D.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    log_w = log_likelihood(x, z) + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    return torch.logsumexp(log_w, dim=0) - math.log(len(eps))


class _GaussianDecoder:
    """``log p(x | z) = log N(x; W z + b, s^2 I)`` with x ``(B, D)`` and z ``(..., B, d)`` -> ``(..., B)``."""

    def __init__(self, W, b, s, offset=0.0):
        self.W, self.b, self.s, self.offset = W, b, s, offset

    def __call__(self, x, z):
        return D.Normal(z @ self.W.T + self.b, self.s).log_prob(x).sum(-1) + self.offset

    def __repr__(self):
        return "log_likelihood"


def _problem(g, batch, latent, dims, *, k=None, offset=0.0, s=0.5):
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
    decoder = _GaussianDecoder(r(dims, latent), r(dims), s, offset)
    x, mu, logvar = r(batch, dims), r(batch, latent), r(batch, latent) - 1.0
    eps = r(batch, latent) if k is None else r(k, batch, latent)
    return x, mu, logvar, eps, decoder


def elbo_estimate(fn):
    """``fn(x, mu, logvar, eps, log_likelihood) -> (B,)``: ``log p(x | z) - KL(q || p)`` with ``z = mu + sigma eps``."""
    g = torch.Generator().manual_seed(32)
    cases = [Case(*_problem(g, 5, 2, 6), label="5 examples, latent 2, a linear-Gaussian decoder"),
             Case(*_problem(g, 3, 4, 10, s=0.1), label="3 examples, latent 4, a sharp decoder"),
             Case(*_problem(g, 1, 1, 3), label="one example, latent 1")]
    return run_check("elbo_estimate", fn, cases, reference=_reference_elbo, atol=1e-6,
                     hint="z = mu + torch.exp(0.5 * logvar) * eps; return log_likelihood(x, z) - KL, with the KL in "
                          "closed form summed over the latent dimension: 0.5 * (mu**2 + exp(logvar) - 1 - logvar).sum(-1).")


def iwae_estimate(fn):
    """``fn(x, mu, logvar, eps (k, B, d), log_likelihood) -> (B,)``: ``logsumexp_i log w_i - log k``."""
    g = torch.Generator().manual_seed(33)
    cases = [Case(*_problem(g, 4, 2, 6, k=10), label="k = 10, 4 examples, latent 2"),
             Case(*_problem(g, 3, 3, 5, k=1), label="k = 1 (the ELBO with a Monte Carlo KL)"),
             Case(*_problem(g, 2, 2, 6, k=50, offset=-900.0),
                  label="k = 50, log-weights near -900 nats (exp() underflows to 0)")]
    return run_check("iwae_estimate", fn, cases, reference=_reference_iwae, atol=1e-6,
                     hint="z = mu + exp(logvar / 2) * eps has shape (k, B, d); log w = log_likelihood(x, z) "
                          "+ log N(z; 0, I) - log N(z; mu, exp(logvar)), each summed over d, shape (k, B); "
                          "return torch.logsumexp(log_w, dim=0) - math.log(k). Never log(mean(exp(log_w))).")
