"""Checks for lesson 01 (discriminative vs generative). References: :mod:`gencourse.basics`."""
import math

import torch

from gencourse import basics
from gencourse.exercises import Case, run_check

__all__ = ["class_posterior", "gaussian_mle", "discrete_kl", "pixel_categorical_nll"]


def class_posterior(fn):
    """``fn(log_joint: (B, C)) -> (B, C)``: ``log p(y|x)`` from ``log p(x, y)`` by Bayes' rule, stably."""
    g = torch.Generator().manual_seed(1)
    cases = [
        Case(torch.randn(4, 3, generator=g, dtype=torch.float64), label="4 points, 3 classes"),
        Case(torch.randn(6, 10, generator=g, dtype=torch.float64) * 5, label="6 points, 10 classes"),
        Case(torch.tensor([[-1000.0, -1001.0, -1003.0]], dtype=torch.float64),
             label="log p(x, y) near -1000 nats (exp underflows to 0)"),
        Case(torch.tensor([[-3.0], [5.0]], dtype=torch.float64), label="a single class"),
    ]
    return run_check("class_posterior", fn, cases, reference=basics.class_posterior, atol=1e-6,
                     hint="log p(y|x) = log p(x, y) - log sum_y' exp(log p(x, y')): use "
                          "torch.logsumexp(log_joint, dim=1, keepdim=True), never exp() then log().")


def gaussian_mle(fn):
    """``fn(x: (N, D)) -> (mu (D,), Sigma (D, D))``: the maximum-likelihood Gaussian."""
    g = torch.Generator().manual_seed(2)
    mix = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, -1.0, 0.3]], dtype=torch.float64)
    cases = [
        Case(torch.randn(50, 3, generator=g, dtype=torch.float64) @ mix + 1.0, label="50 correlated points in 3D"),
        Case(torch.randn(7, 1, generator=g, dtype=torch.float64) * 3 - 2, label="7 points in 1D"),
        Case(torch.randn(3, 4, generator=g, dtype=torch.float64), label="3 points in 4D (a singular covariance)"),
        Case(torch.tensor([[1.0, 2.0]], dtype=torch.float64), label="a single point"),
    ]
    return run_check("gaussian_mle", fn, cases, reference=basics.gaussian_mle, atol=1e-8,
                     hint="mu is the mean of the rows; Sigma = (x - mu)^T (x - mu) / N. Maximum likelihood divides "
                          "by N, not N - 1 (torch.cov divides by N - 1 unless correction=0).")


def _dist(g, *shape):
    w = torch.rand(*shape, generator=g, dtype=torch.float64) + 0.05
    return w / w.sum(-1, keepdim=True)


def discrete_kl(fn):
    """``fn(p, q) -> KL(p || q)`` over the last dimension of ``(..., K)`` probability tensors."""
    g = torch.Generator().manual_seed(3)
    p_zero = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    p_same = _dist(g, 6)
    cases = [
        Case(_dist(g, 5), _dist(g, 5), label="two distributions over 5 values"),
        Case(_dist(g, 3, 4), _dist(g, 3, 4), label="a batch of 3 pairs over 4 values"),
        Case(p_zero, torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64), label="p has a zero (0 log 0 = 0)"),
        Case(torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64),
             label="q = 0 where p > 0 (KL is infinite)"),
        Case(p_same, p_same.clone(), label="KL(p || p) = 0"),
    ]
    return run_check("discrete_kl", fn, cases, reference=basics.discrete_kl, atol=1e-8,
                     hint="sum over the last dim of p * (log p - log q), counting 0 where p == 0 "
                          "(torch.where(p > 0, ..., 0)); do not add an epsilon: a q of 0 under p > 0 must give inf.")


def pixel_categorical_nll(fn):
    """``fn(train_levels (N, D), test_levels (B, D), levels, alpha) -> (B,)`` nats under per-pixel categoricals."""
    g = torch.Generator().manual_seed(4)
    train = torch.randint(0, 5, (40, 6), generator=g)
    test = torch.randint(0, 5, (9, 6), generator=g)
    skewed = torch.randint(0, 2, (30, 3), generator=g)          # levels 2 and 3 never seen in training
    skewed_test = torch.tensor([[0, 1, 0], [3, 0, 1], [1, 1, 2]])
    cases = [
        Case(train, test, 5, 0.1, label="40 training rows, 6 dims, 5 levels, alpha = 0.1"),
        Case(train, test, 5, 1.0, label="the same with alpha = 1 (Laplace smoothing)"),
        Case(skewed, skewed_test, 4, 0.1, label="test values never seen in training, alpha = 0.1"),
        Case(skewed, skewed_test, 4, 0.0, label="the same with alpha = 0 (infinite NLL where unseen)"),
    ]
    return run_check("pixel_categorical_nll", fn, cases, reference=basics.pixel_categorical_nll, atol=1e-6,
                     hint="count n[d, k] over the training rows (e.g. with torch.bincount per column), "
                          "theta = (n + alpha) / (N + alpha * levels), then sum -log theta[d, x_d] over d for each "
                          "test row.")
