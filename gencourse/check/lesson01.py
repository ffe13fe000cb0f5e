"""Checks for lesson 01 (discriminative vs generative). References: :mod:`gencourse.basics`.

Each check compares the learner's function with the reference on several cases (edge cases included) and
recognizes the typical wrong answers listed in its ``mistakes``; the wrong answers are written out below,
one small function each, so that the tests can feed every one of them back to its check.
"""
import math

import torch

from gencourse import basics
from gencourse.exercises import Case, Mistake, close, run_check

__all__ = ["class_posterior", "gaussian_mle", "discrete_kl", "pixel_categorical_nll", "dequantized_nll", "fit_gmm"]


# ----------------------------------------------------------------------------------------------
# Exercise 1: the maximum-likelihood Gaussian
# ----------------------------------------------------------------------------------------------

def _mle_unbiased(x):
    mu = x.mean(0)
    return mu, (x - mu).T @ (x - mu) / max(len(x) - 1, 1)


def _mle_not_centred(x):
    return x.mean(0), x.T @ x / len(x)


def _mle_outer_product_of_rows(x):
    mu = x.mean(0)
    return mu, (x - mu) @ (x - mu).T / len(x)


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
    return run_check(
        "gaussian_mle", fn, cases, reference=basics.gaussian_mle, atol=1e-8,
        hint="Sigma is the average, over the N points, of the outer product of each point's deviation from the "
             "mean with itself: a (D, D) matrix. Setting the derivative of the log-likelihood to zero gives "
             "that average exactly, so count the points the way an average does.",
        mistakes=[
            Mistake("the covariance is divided by N - 1 (the unbiased estimate, also torch.cov's default); "
                    "maximum likelihood divides by N.", _mle_unbiased),
            Mistake("the covariance is the raw second moment E[x x^T]: subtract the mean from every point first.",
                    _mle_not_centred),
            Mistake("the outer products are taken between points (an (N, N) matrix), not between dimensions: "
                    "Sigma must be (D, D).", _mle_outer_product_of_rows),
        ])


# ----------------------------------------------------------------------------------------------
# Exercise 2: Bayes' rule in log space
# ----------------------------------------------------------------------------------------------

def _posterior_wrong_axis(log_joint):
    return log_joint - torch.logsumexp(log_joint, dim=0, keepdim=True)


def _posterior_max_only(log_joint):
    return log_joint - log_joint.max(dim=1, keepdim=True).values


def _posterior_probabilities(log_joint):
    return torch.softmax(log_joint, dim=1)


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
    return run_check(
        "class_posterior", fn, cases, reference=basics.class_posterior, atol=1e-6,
        hint="log p(y|x) is log p(x, y) minus log p(x), and log p(x) is the log of a sum over the classes of "
             "exp(log p(x, y)). Take that sum in log space (log-sum-exp), over the class axis, for each point.",
        mistakes=[
            Mistake("the normalizer is summed over the points (dim 0), not over the classes of each point.",
                    _posterior_wrong_axis),
            Mistake("only the largest log joint is subtracted: that makes the top class 0 but does not normalize "
                    "the row; subtract the log of the whole sum.", _posterior_max_only),
            Mistake("these are probabilities p(y|x); the exercise asks for their logarithms.",
                    _posterior_probabilities),
        ])


# ----------------------------------------------------------------------------------------------
# Exercise 3: discrete KL divergence
# ----------------------------------------------------------------------------------------------

def _dist(g, *shape):
    w = torch.rand(*shape, generator=g, dtype=torch.float64) + 0.05
    return w / w.sum(-1, keepdim=True)


def _kl_reversed(p, q):
    return basics.discrete_kl(q, p)


def _kl_with_epsilon(p, q):
    return (p * ((p + 1e-10) / (q + 1e-10)).log()).sum(-1)


def _kl_bits(p, q):
    return basics.discrete_kl(p, q) / math.log(2)


def _kl_terms(p, q):
    return torch.where(p > 0, p * (p.log() - q.log()), torch.zeros_like(p))


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
    return run_check(
        "discrete_kl", fn, cases, reference=basics.discrete_kl, atol=1e-8,
        hint="KL(p || q) is the expectation under p of log(p / q), in nats, one number per distribution (sum "
             "over the last axis). A value with p = 0 contributes nothing, by the limit 0 log 0 = 0, and must not "
             "produce nan; a value with p > 0 and q = 0 must make the whole KL infinite.",
        mistakes=[
            Mistake("this is KL(q || p): the expectation must be taken under p, the first argument.", _kl_reversed),
            Mistake("a small epsilon was added: it turns the infinite KL of a q = 0 under p > 0 into a finite "
                    "number. Handle p = 0 with a condition instead.", _kl_with_epsilon),
            Mistake("this is in bits (log base 2); the exercise asks for nats (natural log).", _kl_bits),
            Mistake("the terms p_k log(p_k / q_k) are returned one by one: sum them over the last axis.", _kl_terms),
        ])


# ----------------------------------------------------------------------------------------------
# Exercise 4: the per-pixel categorical baseline
# ----------------------------------------------------------------------------------------------

def _log_theta(train, levels, alpha):
    counts = torch.stack([torch.bincount(c, minlength=levels) for c in train.T]).double()   # (D, L)
    return counts, torch.log(counts + alpha)


def _nll_without_alpha_in_denominator(train, test, levels, alpha):
    counts, log_num = _log_theta(train, levels, alpha)
    return -(log_num - torch.log(counts.sum(1, keepdim=True))).gather(1, test.T).sum(0)


def _nll_mean_over_pixels(train, test, levels, alpha):
    return basics.pixel_categorical_nll(train, test, levels, alpha) / train.shape[1]


def _nll_bits(train, test, levels, alpha):
    return basics.pixel_categorical_nll(train, test, levels, alpha) / math.log(2)


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
    return run_check(
        "pixel_categorical_nll", fn, cases, reference=basics.pixel_categorical_nll, atol=1e-6,
        hint="For every dimension d, count how often each level occurs in the training rows; the smoothed "
             "probabilities of one dimension must sum to 1 over all the levels (each level got alpha extra "
             "counts). An image's probability is the product over its dimensions, so its NLL is a sum over d of "
             "-log theta[d, level of that dimension], in nats.",
        mistakes=[
            Mistake("the denominator misses the pseudo-counts: with alpha added to each of the L levels, divide by "
                    "N + alpha * L, or the probabilities do not sum to 1.", _nll_without_alpha_in_denominator),
            Mistake("the NLL is averaged over the dimensions: an image's NLL is the sum over its pixels.",
                    _nll_mean_over_pixels),
            Mistake("this is in bits (log base 2); the exercise asks for nats (natural log).", _nll_bits),
        ])


# ----------------------------------------------------------------------------------------------
# Exercise 5: the dequantization bound
# ----------------------------------------------------------------------------------------------

def _deq_without_volume(log_density, k, levels, u):
    return basics.dequantized_nll(log_density, k, levels, u) - k.shape[1] * math.log(levels)


def _deq_wrong_grid(log_density, k, levels, u):
    s, b, d = u.shape
    y = (k + u) / (levels - 1)
    return -log_density(y.reshape(s * b, d)).reshape(s, b).mean(0) + d * math.log(levels - 1)


def _deq_without_noise(log_density, k, levels, u):
    s, b, d = u.shape
    y = (k.double() / levels).expand(s, b, d)
    return -log_density(y.reshape(s * b, d)).reshape(s, b).mean(0) + d * math.log(levels)


def _deq_sum_over_draws(log_density, k, levels, u):
    s, b, d = u.shape
    y = (k + u) / levels
    return -log_density(y.reshape(s * b, d)).reshape(s, b).sum(0) + d * math.log(levels)


def _deq_bits(log_density, k, levels, u):
    return basics.dequantized_nll(log_density, k, levels, u) / math.log(2)


def _gaussian_density(mean, std):
    """A diagonal Gaussian log density y: (M, D) -> (M,) (torch.distributions, independent of basics)."""
    dist = torch.distributions.Independent(torch.distributions.Normal(mean, std), 1)
    return lambda y: dist.log_prob(y)


def _beta_density(a, b):
    dist = torch.distributions.Independent(torch.distributions.Beta(a, b), 1)
    return lambda y: dist.log_prob(y.clamp(1e-6, 1 - 1e-6))


def dequantized_nll(fn):
    """``fn(log_density, levels_k (B, D), levels, u (S, B, D)) -> (B,)``: the dequantization bound in nats."""
    g = torch.Generator().manual_seed(5)
    k3 = torch.randint(0, 17, (4, 3), generator=g)
    k5 = torch.randint(0, 4, (6, 5), generator=g)
    dens3 = _gaussian_density(torch.full((3,), 0.5, dtype=torch.float64), torch.full((3,), 0.3, dtype=torch.float64))
    dens5 = _beta_density(torch.full((5,), 2.0, dtype=torch.float64), torch.full((5,), 3.0, dtype=torch.float64))
    uniform1 = lambda y: torch.zeros(len(y), dtype=y.dtype)          # p(y) = 1 on [0, 1)^D: the bound is D ln L
    cases = [
        Case(dens3, k3, 17, torch.rand(8, 4, 3, generator=g, dtype=torch.float64),
             label="a Gaussian density, 4 images of 3 pixels, 17 levels, 8 draws each"),
        Case(dens5, k5, 4, torch.rand(3, 6, 5, generator=g, dtype=torch.float64),
             label="a Beta density, 6 images of 5 pixels, 4 levels, 3 draws each"),
        Case(dens3, k3[:1], 17, torch.rand(1, 1, 3, generator=g, dtype=torch.float64),
             label="one image, one draw"),
        Case(uniform1, k5, 4, torch.rand(2, 6, 5, generator=g, dtype=torch.float64),
             label="the uniform density on [0, 1)^D (the bound is exactly D ln L)"),
    ]
    return run_check(
        "dequantized_nll", fn, cases, reference=basics.dequantized_nll, atol=1e-6,
        hint="Each draw u puts the image at one point of its cell: the cells of the L levels tile [0, 1), so "
             "level k's cell starts at k / L and is 1 / L wide. The bound is the average over the S draws of "
             "-log p at those points, plus the log of 1 / (the cell's volume), in nats, one number per image. "
             "log_density takes a 2D batch (M, D).",
        mistakes=[
            Mistake("the D ln L term is missing: -log p(y) of a density is not yet a probability; the cell's "
                    "volume L^-D turns it into one.", _deq_without_volume),
            Mistake("the cells are placed on the grid k / (L - 1): with L levels in [0, 1), each cell is 1 / L "
                    "wide, so y = (k + u) / L and the volume term uses L.", _deq_wrong_grid),
            Mistake("the draws u are not used: the density is evaluated at the cell's corner only. The bound "
                    "averages over points spread through the cell.", _deq_without_noise),
            Mistake("the draws are summed; the bound's expectation over u is estimated by their mean.",
                    _deq_sum_over_draws),
            Mistake("this is in bits (log base 2); the exercise asks for nats.", _deq_bits),
        ])


# ----------------------------------------------------------------------------------------------
# Exercise 6: a Gaussian mixture fitted by EM
# ----------------------------------------------------------------------------------------------

def _em(x, init_means, steps, *, axis=1, normalize=True, by_n=False, update_weights=True, old_means=False):
    """EM for a Gaussian mixture with switches that make the typical mistakes (all off: the right answer)."""
    n, k = len(x), len(init_means)
    weights = torch.full((k,), 1.0 / k, dtype=x.dtype)
    means = init_means.clone()
    covs = basics.gaussian_mle(x)[1].expand(k, -1, -1).clone()
    history = []
    for _ in range(steps):
        log_joint = torch.stack([weights[j].log() + basics.gaussian_log_prob(x, means[j], covs[j])
                                 for j in range(k)], dim=1)
        history.append(torch.logsumexp(log_joint, dim=1).mean().item())
        if normalize:
            r = (log_joint - torch.logsumexp(log_joint, dim=axis, keepdim=True)).exp()
        else:
            r = log_joint.exp()
        n_k = r.sum(0)
        if update_weights:
            weights = n_k / n
        centre = means if old_means else None
        means = r.T @ x / n_k[:, None]
        centre = centre if old_means else means
        covs = torch.stack([(r[:, j, None] * (x - centre[j])).T @ (x - centre[j]) / (n if by_n else n_k[j])
                            for j in range(k)])
    return weights, means, covs, history


def _em_wrong_axis(x, init_means, steps):
    return _em(x, init_means, steps, axis=0)


def _em_unnormalized(x, init_means, steps):
    return _em(x, init_means, steps, normalize=False)


def _em_cov_by_n(x, init_means, steps):
    return _em(x, init_means, steps, by_n=True)


def _em_fixed_weights(x, init_means, steps):
    return _em(x, init_means, steps, update_weights=False)


def _em_old_means(x, init_means, steps):
    return _em(x, init_means, steps, old_means=True)


_GMM_PARTS = ("weights", "means", "covs", "history")


def _compare_gmm(got, want, case):
    """Parameters and history close to EM's; a history that goes down is named (EM never lowers it)."""
    if not isinstance(got, (tuple, list)) or len(got) != 4:
        return False, "expected a tuple (weights, means, covs, history)"
    for name, a, e in zip(_GMM_PARTS[:3], got[:3], want[:3]):
        ok, why = close(a, e, rtol=1e-4, atol=1e-6)
        if not ok:
            return False, f"{name}: {why}"
    try:
        history = torch.as_tensor([float(h) for h in got[3]], dtype=torch.float64)
    except (TypeError, ValueError):
        return False, "history must be a list of floats, one per EM step"
    ok, why = close(history, torch.tensor(want[3], dtype=torch.float64), rtol=1e-5, atol=1e-6)
    if not ok:
        drops = [i + 1 for i in range(len(history) - 1) if history[i + 1] < history[i] - 1e-9]
        note = f" (it goes down after step {drops[0]}: EM never lowers the likelihood)" if drops else ""
        return False, f"history: {why}{note}"
    return True, ""


def fit_gmm(fn):
    """``fn(x (N, D), init_means (K, D), steps) -> (weights, means, covs, history)``: EM for a Gaussian mixture."""
    g = torch.Generator().manual_seed(6)
    centres = torch.tensor([[-3.0, 0.0], [3.0, 1.0], [0.0, 4.0]], dtype=torch.float64)
    x2 = torch.cat([c + torch.randn(100, 2, generator=g, dtype=torch.float64) * s
                    for c, s in zip(centres, (0.6, 1.0, 0.8))])
    x1 = torch.cat([torch.randn(60, 1, generator=g, dtype=torch.float64) * 0.5 - 2,
                    torch.randn(40, 1, generator=g, dtype=torch.float64) + 2])
    x3 = torch.randn(80, 3, generator=g, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    x3[:30] += 4.0
    cases = [
        Case(x2, x2[[0, 100, 200]].clone(), 25, label="3 clusters in 2D, K = 3, 25 steps"),
        Case(x1, torch.tensor([[-1.0], [1.0]], dtype=torch.float64), 15, label="2 clusters in 1D, K = 2, 15 steps"),
        Case(x3, x3[[0, 50]].clone(), 10, label="2 correlated clusters in 3D, K = 2, 10 steps"),
        Case(x2, x2[[5]].clone(), 2, label="K = 1 (one step is the maximum-likelihood Gaussian)"),
    ]
    return run_check(
        "fit_gmm", fn, cases, reference=basics.fit_gmm, compare=_compare_gmm,
        hint="Each step: the E-step computes, for every point, the posterior over the K components (Bayes' rule "
             "on log w_j + log N(x; mu_j, Sigma_j), normalized over the components of that point), and records the "
             "mean log p(x) before anything changes. The M-step is Exercise 1 with weights: N_j is the total "
             "responsibility of component j, the new weight is N_j / N, the new mean and covariance are "
             "responsibility-weighted averages divided by N_j, the covariance taken about the new mean.",
        mistakes=[
            Mistake("the responsibilities are normalized over the points (dim 0); each point's responsibilities "
                    "must sum to 1 over the components.", _em_wrong_axis),
            Mistake("the responsibilities are the joint p(x, z) itself, not normalized to the posterior p(z | x) "
                    "(Bayes' rule divides by p(x)).", _em_unnormalized),
            Mistake("each covariance is divided by N, the number of all points; a component's weighted average "
                    "divides by its own total responsibility N_j.", _em_cov_by_n),
            Mistake("the mixture weights are never updated: the M-step sets w_j = N_j / N.", _em_fixed_weights),
            Mistake("the covariance is taken about the old means; the M-step's covariance is about the new means "
                    "of the same step.", _em_old_means),
        ])
