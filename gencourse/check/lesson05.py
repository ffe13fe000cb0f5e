"""Checks for lesson 05 (normalizing flows)."""
import math

import torch

from gencourse import flows
from gencourse.exercises import Case, run_check

__all__ = ["affine_coupling_forward", "affine_coupling_inverse", "flow_log_prob", "logit_transform",
           "dequantized_bits_per_dim"]


def _coupling_cases(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for b, d, label in ((4, 2, "2D points, mask [1, 0]"), (3, 6, "6-vectors, alternating mask"),
                        (2, 5, "5-vectors, mask [0, 0, 1, 1, 0]")):
        x = torch.randn(b, d, generator=g)
        mask = flows.checkerboard_mask((d,), 1) if d != 5 else torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0])
        if d == 2:
            mask = torch.tensor([1.0, 0.0])
        s, t = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
        cases.append(Case(x, mask, s, t, label=label))
    return cases


def affine_coupling_forward(fn):
    """``fn(x, mask, s, t) -> (z, log_det)``: the affine coupling, data to latent."""
    return run_check(
        "affine_coupling_forward", fn, _coupling_cases(), reference=flows.coupling_forward,
        hint="copy the entries where mask == 1; elsewhere z = x * exp(s) + t. The log-det sums s over the "
             "transformed entries only (mask == 0), one number per row: shape (B,).")


def affine_coupling_inverse(fn):
    """``fn(z, mask, s, t) -> x``: the inverse of the affine coupling."""
    cases = [Case(flows.coupling_forward(*c.args)[0], *c.args[1:], label=c.label) for c in _coupling_cases(1)]
    return run_check(
        "affine_coupling_inverse", fn, cases, reference=flows.coupling_inverse,
        hint="undo the steps in reverse order: subtract t, then divide by exp(s) (multiply by exp(-s)), "
             "on the transformed entries only; the entries with mask == 1 pass through unchanged.")


def _reference_flow_log_prob(flow, x):
    # independent of gencourse's formula: torch.distributions for the base density
    with torch.no_grad():
        z, log_det = flow(x)
        base = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
        return base.log_prob(z).flatten(1).sum(1) + log_det


def _random_flow(dim, seed, **kwargs):
    """A small RealNVP moved away from its identity initialization (the lesson's random state is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = flows.RealNVP(dim, 4, 16, seed=seed, **kwargs)
        with torch.no_grad():
            flow(torch.randn(32, dim))
            for p in flow.parameters():
                p.add_(0.3 * torch.randn(p.shape))
    return flow.eval()


def flow_log_prob(fn):
    """``fn(flow, x) -> (B,)``: log p(x) by the change of variables, with a standard normal base."""
    g = torch.Generator().manual_seed(2)
    cases = [Case(_random_flow(2, 0), torch.randn(5, 2, generator=g), label="a random RealNVP(2), 5 points"),
             Case(_random_flow(3, 1, actnorm=True), torch.randn(4, 3, generator=g), label="RealNVP(3) with ActNorm"),
             Case(_random_flow(6, 2, invertible_linear=True), torch.randn(3, 6, generator=g),
                  label="RealNVP(6) with invertible linear maps")]
    return run_check(
        "flow_log_prob", fn, cases, reference=_reference_flow_log_prob, rtol=1e-4, atol=1e-4,
        hint="z, log_det = flow(x); the standard normal log-density of z summed over dimensions is "
             "-0.5 * (z**2 + log(2 pi)).sum(1); then ADD log_det (the map stretches data space into z space).")


def _reference_logit(y, alpha):
    p = alpha + (1 - 2 * alpha) * y
    s = torch.log(p / (1 - p))
    log_det = torch.log((1 - 2 * alpha) / (p * (1 - p))).flatten(1).sum(1)
    return s, log_det


def logit_transform(fn):
    """``fn(y, alpha) -> (s, log_det)``: s = logit(alpha + (1 - 2 alpha) y) and the log-det of ds/dy."""
    g = torch.Generator().manual_seed(3)
    cases = [Case(torch.rand(4, 3, generator=g), 0.05, label="y (4, 3), alpha 0.05"),
             Case(torch.rand(2, 64, generator=g), 0.01, label="y (2, 64), alpha 0.01"),
             Case(torch.rand(3, 1, 8, 8, generator=g), 0.1, label="images (3, 1, 8, 8), alpha 0.1")]
    return run_check(
        "logit_transform", fn, cases, reference=_reference_logit, rtol=1e-4, atol=1e-4,
        hint="with p = alpha + (1 - 2 alpha) y, ds/dy = (1 - 2 alpha) / (p (1 - p)) for each entry; the log-det "
             "is the sum of the logs of these diagonal entries over all non-batch dims: shape (B,).")


def _reference_bits(log_prob_y, x, u, levels):
    k = torch.round(x * (levels - 1))
    y = (k + u) / levels
    num_dims = x[0].numel()
    return (-log_prob_y(y) + num_dims * math.log(levels)) / (num_dims * math.log(2))


def dequantized_bits_per_dim(fn):
    """``fn(log_prob_y, x, u, levels) -> (B,)``: bits/dim of the discrete bound with noise ``u``."""
    g = torch.Generator().manual_seed(4)
    beta = torch.distributions.Beta(torch.tensor(2.0), torch.tensor(2.0))

    def uniform(y):
        return torch.zeros(y.shape[0])

    def beta_density(y):
        return beta.log_prob(y).flatten(1).sum(1)

    def digits_like():
        return torch.randint(0, 17, (3, 1, 8, 8), generator=g) / 16.0

    cases = [Case(uniform, digits_like(), torch.rand(3, 1, 8, 8, generator=g), 17,
                  label="uniform density on [0,1)^64, 17 levels (answer: log2 17 = 4.09)"),
             Case(beta_density, digits_like(), torch.rand(3, 1, 8, 8, generator=g), 17,
                  label="Beta(2, 2) density per pixel, digits"),
             Case(beta_density, torch.randint(0, 256, (2, 10), generator=g) / 255.0,
                  torch.rand(2, 10, generator=g), 256, label="Beta(2, 2), 10 pixels of 256 levels")]
    return run_check(
        "dequantized_bits_per_dim", fn, cases, reference=_reference_bits, rtol=1e-4, atol=1e-4,
        hint="k = round(x (L - 1)); y = (k + u) / L; the bound in nats is -log p(y) + D ln L with D the number "
             "of pixels of one image; divide by D ln 2 for bits per dimension.")
