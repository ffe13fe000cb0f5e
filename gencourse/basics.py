"""Lesson 01's building blocks: generative classifiers, the per-pixel categorical baseline, KL helpers, the
dequantization bound, and Gaussian mixtures fitted by EM.

    clf = GaussianClassifier("full", reg=0.01).fit(x, y)     # p(x, y) = p(y) N(x; mu_y, Sigma_y)
    clf.predict(x_test); x_new, y_new = clf.sample(100)      # classify with Bayes' rule, or generate
    base = PixelCategorical(alpha=0.1).fit(train_images)     # 64 independent categoricals over 17 levels
    base.nll(test_images)                                    # (B,) nats per image, exact
    dequantized_nll(clf.log_prob, k, 17, u)                  # (B,) E_u[-log p((k+u)/L)] + D ln L, a bound
    w, mu, cov, history = fit_gmm(x, init_means, steps=100)  # EM; history never decreases

Everything here is closed form (counts, means, covariances, EM's steps) except :func:`fit_gaussian_kl`, which
minimizes a KL divergence between 1D densities numerically on a grid.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

COVARIANCES = ("full", "shared", "diagonal", "shared-diagonal")
LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------------------------
# Bayes' rule and the Gaussian maximum-likelihood fit
# ----------------------------------------------------------------------------------------------

def class_posterior(log_joint: torch.Tensor) -> torch.Tensor:
    """Log class posterior from the log joint: ``log p(y|x) = log p(x, y) - logsumexp_y' log p(x, y')``.

    ``log_joint: (B, C)`` -> ``(B, C)``; each row's ``exp`` sums to 1. ``logsumexp`` keeps it finite when
    every ``log p(x, y)`` is hugely negative (e.g. -1000 nats), where ``exp`` would underflow to 0 / 0.
    """
    log_joint = torch.as_tensor(log_joint)
    if log_joint.dim() != 2:
        raise ValueError(f"log_joint must have shape (B, C), got {tuple(log_joint.shape)}")
    return log_joint - torch.logsumexp(log_joint, dim=1, keepdim=True)


def gaussian_mle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum-likelihood Gaussian of the rows of ``x: (N, D)`` -> ``(mu (D,), Sigma (D, D))``.

    ``mu = 1/N sum_n x_n``, ``Sigma = 1/N sum_n (x_n - mu)(x_n - mu)^T`` (divided by N, not N - 1: the
    maximum-likelihood estimate is biased).
    """
    x = torch.as_tensor(x)
    if x.dim() != 2 or len(x) < 1:
        raise ValueError(f"x must have shape (N, D) with N >= 1, got {tuple(x.shape)}")
    mu = x.mean(0)
    r = x - mu
    return mu, r.T @ r / len(x)


def gaussian_log_prob(x: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """``log N(x; mu, cov)`` for ``x: (B, D)``, ``mu: (D,)``, ``cov: (D, D)`` positive definite -> ``(B,)``.

    ``-1/2 [ (x - mu)^T cov^-1 (x - mu) + log det cov + D log 2 pi ]``, through a Cholesky factor.
    """
    chol = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(chol, (x - mu).T, upper=False)  # (D, B): L^-1 (x - mu)
    half_logdet = torch.log(torch.diagonal(chol)).sum()
    return -0.5 * (z ** 2).sum(0) - half_logdet - 0.5 * x.shape[1] * LOG_2PI


def balanced_subset(labels, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``n`` random examples with the classes as balanced as ``labels: (N,)`` allow -> ``(n,)`` int64.

    Examples are shuffled, ranked within their class, and taken rank by rank (all first members of each
    class, then all second members, ...), so ``n = 10`` on 10 classes gives one example of each.
    """
    labels = torch.as_tensor(labels).long()
    if labels.dim() != 1 or not 0 < n <= len(labels):
        raise ValueError(f"expected labels (N,) and 0 < n <= N, got {tuple(labels.shape)} and n={n}")
    perm = torch.randperm(len(labels), generator=generator)
    rank = torch.empty(len(labels), dtype=torch.long)
    for c in labels.unique():
        members = perm[labels[perm] == c]
        rank[members] = torch.arange(len(members))
    # rank first, then the random order of perm breaks ties between classes
    position = torch.empty(len(labels), dtype=torch.long)
    position[perm] = torch.arange(len(labels))
    order = torch.argsort(rank * len(labels) + position)
    return order[:n]


# ----------------------------------------------------------------------------------------------
# Class-conditional Gaussians: a generative classifier that can also sample
# ----------------------------------------------------------------------------------------------

class GaussianClassifier:
    """The joint model ``p(x, y) = p(y) N(x; mu_y, Sigma_y)`` for ``x: (N, D)`` and labels ``y in {0..C-1}``.

    Fitted by maximum likelihood: ``p(y)`` = class frequencies, ``mu_y`` = class means, and

    - ``"full"``: ``Sigma_y`` = the class's own covariance ``+ reg I`` (quadratic decision boundaries);
    - ``"shared"``: one pooled within-class covariance ``+ reg I`` for every class (linear boundaries);
    - ``"diagonal"``: per-class variances ``+ reg`` and no correlations: Gaussian naive Bayes;
    - ``"shared-diagonal"``: the pooled within-class variances ``+ reg`` for every class: Gaussian naive Bayes
      with class-independent variances, whose ``p(y|x)`` has logistic regression's form (Ng & Jordan, 2001).

    ``reg`` adds ``reg`` to every variance: without it a class with fewer examples than dimensions, or a
    pixel that never varies, has a singular covariance and an infinite density. Computations run in
    float64; results are float32.
    """

    def __init__(self, covariance: str = "full", reg: float = 1e-2):
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)}, got {covariance!r}")
        if not reg > 0:
            raise ValueError(f"reg must be a positive variance added to the diagonal, got {reg!r}")
        self.covariance, self.reg = covariance, float(reg)
        self.means = self.covs = self.log_prior = None

    def fit(self, x, y, num_classes: int | None = None) -> "GaussianClassifier":
        """Maximum-likelihood fit to ``x: (N, D)`` and integer labels ``y: (N,)``; every class needs an example."""
        x = torch.as_tensor(x, dtype=torch.float64)
        y = torch.as_tensor(y)
        if x.dim() != 2 or y.shape != (len(x),) or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"expected x (N, D) and integer labels y (N,), got {tuple(x.shape)} and {tuple(y.shape)} {y.dtype}")
        y = y.long()
        c = int(num_classes if num_classes is not None else y.max() + 1)
        counts = torch.bincount(y, minlength=c)
        if len(counts) > c or (counts == 0).any():
            raise ValueError(f"every class 0..{c - 1} needs at least one example; counts per class: {counts.tolist()}")
        d = x.shape[1]
        self.means = torch.stack([x[y == k].mean(0) for k in range(c)])            # (C, D)
        resid = x - self.means[y]                                                  # (N, D)
        eye = torch.eye(d, dtype=torch.float64)
        if self.covariance in ("shared", "shared-diagonal"):
            pooled = resid.T @ resid / len(x)
            if self.covariance == "shared-diagonal":
                pooled = torch.diag(torch.diagonal(pooled))
            self.covs = (pooled + self.reg * eye).expand(c, d, d).clone()
        else:
            covs = []
            for k in range(c):
                rk = resid[y == k]
                ck = rk.T @ rk / len(rk)
                covs.append(torch.diag(torch.diagonal(ck)) if self.covariance == "diagonal" else ck)
            self.covs = torch.stack(covs) + self.reg * eye                         # (C, D, D)
        self.log_prior = torch.log(counts.double() / len(x))                       # (C,)
        self._chol = torch.linalg.cholesky(self.covs)
        return self

    @property
    def num_classes(self) -> int:
        self._check_fitted()
        return len(self.means)

    def _check_fitted(self):
        if self.means is None:
            raise ValueError("the classifier is not fitted yet: call .fit(x, y) first")

    def _as_input(self, x) -> torch.Tensor:
        self._check_fitted()
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.dim() != 2 or x.shape[1] != self.means.shape[1]:
            raise ValueError(f"x must have shape (B, {self.means.shape[1]}), got {tuple(x.shape)}")
        return x

    def log_joint(self, x) -> torch.Tensor:
        """``log p(x, y) = log p(y) + log N(x; mu_y, Sigma_y)`` for every class: ``x: (B, D)`` -> ``(B, C)``."""
        x = self._as_input(x)
        diff = (x[None] - self.means[:, None]).transpose(1, 2)                     # (C, D, B)
        z = torch.linalg.solve_triangular(self._chol, diff, upper=False)           # (C, D, B)
        half_logdet = torch.log(torch.diagonal(self._chol, dim1=1, dim2=2)).sum(1)  # (C,)
        log_lik = -0.5 * (z ** 2).sum(1) - half_logdet[:, None] - 0.5 * x.shape[1] * LOG_2PI  # (C, B)
        return (log_lik + self.log_prior[:, None]).T.float()

    def log_prob(self, x) -> torch.Tensor:
        """Marginal density ``log p(x) = logsumexp_y log p(x, y)``: ``(B, D)`` -> ``(B,)``."""
        return torch.logsumexp(self.log_joint(x), dim=1)

    def predict_log_proba(self, x) -> torch.Tensor:
        """Bayes' rule, ``log p(y|x)``: ``(B, D)`` -> ``(B, C)``."""
        return class_posterior(self.log_joint(x))

    def predict(self, x) -> torch.Tensor:
        """The most probable class ``argmax_y p(y|x)``: ``(B, D)`` -> ``(B,)`` int64."""
        return self.log_joint(x).argmax(1)

    def sample(self, n: int, y=None, *, generator: torch.Generator | None = None):
        """Draw ``(x, y)`` from the joint: ``y ~ p(y)`` (or the labels ``y: (n,)`` given), then
        ``x = mu_y + L_y eps`` with ``L_y L_y^T = Sigma_y`` and ``eps ~ N(0, I)``. Returns ``x (n, D)``, ``y (n,)``."""
        self._check_fitted()
        if not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if y is None:
            y = torch.multinomial(self.log_prior.exp(), n, replacement=True, generator=generator)
        y = torch.as_tensor(y).long()
        if y.shape != (n,) or y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"y must hold n={n} labels in 0..{self.num_classes - 1}")
        eps = torch.randn(n, self.means.shape[1], 1, generator=generator, dtype=torch.float64)
        x = self.means[y] + (self._chol[y] @ eps).squeeze(-1)
        return x.float(), y


# ----------------------------------------------------------------------------------------------
# NLL on the discrete scale: the uniform and the per-pixel categorical baselines
# ----------------------------------------------------------------------------------------------

def uniform_nll(num_dims: int, levels: int) -> float:
    """NLL of the uniform model over ``levels`` values in each of ``num_dims`` dimensions: ``D ln L`` nats."""
    if num_dims <= 0 or levels < 2:
        raise ValueError(f"expected num_dims > 0 and levels >= 2, got {num_dims}, {levels}")
    return num_dims * math.log(levels)


def level_counts(train_levels: torch.Tensor, levels: int) -> torch.Tensor:
    """Per-dimension histograms of integer data ``(N, D)`` with values in ``0..levels-1`` -> counts ``(D, L)``."""
    k = _check_levels(train_levels, levels, "train_levels")
    counts = torch.zeros(k.shape[1], levels, dtype=torch.float64)
    counts.scatter_add_(1, k.T, torch.ones(k.T.shape, dtype=torch.float64))
    return counts


def pixel_categorical_nll(train_levels, test_levels, levels: int, alpha: float) -> torch.Tensor:
    """NLL in nats of each row of ``test_levels: (B, D)`` under independent per-dimension categoricals
    fitted to ``train_levels: (N, D)`` with add-``alpha`` smoothing -> ``(B,)`` float64.

    ``theta_{d,k} = (n_{d,k} + alpha) / (N + alpha L)`` with ``n_{d,k}`` the number of training rows whose
    dimension ``d`` equals ``k``; ``NLL(x) = -sum_d log theta_{d, x_d}``. With ``alpha = 0`` (the plain
    maximum-likelihood fit) a value never seen in training has ``theta = 0`` and the NLL is ``inf``.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    counts = level_counts(train_levels, levels)
    test = _check_levels(test_levels, levels, "test_levels")
    if test.shape[1] != counts.shape[0]:
        raise ValueError(f"train has D={counts.shape[0]} dimensions, test has D={test.shape[1]}")
    log_theta = torch.log(counts + alpha) - torch.log(counts.sum(1, keepdim=True) + alpha * levels)  # (D, L)
    return -log_theta.gather(1, test.T).sum(0)


def _check_levels(k, levels, name):
    k = torch.as_tensor(k)
    if k.dim() != 2 or k.dtype.is_floating_point or k.dtype == torch.bool:
        raise ValueError(f"{name} must be integer levels of shape (N, D), got {tuple(k.shape)} {k.dtype}")
    if len(k) and (k.min() < 0 or k.max() >= levels):
        raise ValueError(f"{name} must lie in 0..{levels - 1}, got range {int(k.min())}..{int(k.max())}")
    return k.long()


class PixelCategorical:
    """The per-pixel categorical model: every pixel independent, each with its own distribution over levels.

    ``p(x) = prod_d theta_{d, k_d}`` with ``k_d`` the level of pixel ``d`` and ``theta`` the add-``alpha``
    smoothed training frequencies (:func:`pixel_categorical_nll`). Works on images ``(N, C, H, W)`` in
    ``[0, 1]`` on the grid ``k / (levels - 1)``, as :func:`gencourse.data.load` gives them.
    """

    likelihood = "exact"

    def __init__(self, levels: int = 17, alpha: float = 0.1):
        if levels < 2 or alpha < 0:
            raise ValueError(f"expected levels >= 2 and alpha >= 0, got {levels}, {alpha}")
        self.levels, self.alpha = int(levels), float(alpha)
        self.counts = self.shape = None

    def _levels(self, images) -> torch.Tensor:
        from gencourse.data import to_levels

        x = torch.as_tensor(images)
        if x.dim() != 4 or x.min() < 0 or x.max() > 1:
            raise ValueError(f"images must be (N, C, H, W) in [0, 1], got shape {tuple(x.shape)}")
        if self.shape is not None and tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"images must have shape (N, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        return to_levels(x, self.levels).flatten(1)

    def fit(self, images) -> "PixelCategorical":
        """Count each pixel's levels over the training ``images: (N, C, H, W)``."""
        self.counts = level_counts(self._levels(images), self.levels)  # (D, L)
        self.shape = tuple(torch.as_tensor(images).shape[1:])
        return self

    @property
    def probs(self) -> torch.Tensor:
        """``theta: (D, L)``, each row a distribution over the levels of one pixel."""
        if self.counts is None:
            raise ValueError("the model is not fitted yet: call .fit(train_images) first")
        smoothed = self.counts + self.alpha
        return smoothed / smoothed.sum(1, keepdim=True)

    def nll(self, images) -> torch.Tensor:
        """Exact ``-log p(x)`` in nats on the discrete scale: ``(B, C, H, W)`` -> ``(B,)`` float32."""
        k = self._levels(images)
        return -torch.log(self.probs).gather(1, k.T).sum(0).float()

    def unseen(self, images) -> torch.Tensor:
        """``(B, D)`` bool: pixels whose level never occurred at that position in training."""
        k = self._levels(images)
        return self.counts.gather(1, k.T).T == 0

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` in ``[0, 1]``: every pixel drawn on its own from ``theta_d``."""
        if not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        k = torch.multinomial(self.probs, n, replacement=True, generator=generator).T  # (n, D)
        return (k.float() / (self.levels - 1)).view(n, *self.shape)


def train_digits(*, epochs: int | None = None, seed: int = 0, quick: bool = False, alpha: float = 0.1):
    """The course's baseline on digits: :class:`PixelCategorical` fitted to the training split.

    ``epochs``, ``seed`` and ``quick`` are accepted for the common recipe signature; counting needs no
    epochs and draws no random numbers. Returns ``(model, history)`` with the train and validation NLL
    (nats per image) as a one-"epoch" :class:`gencourse.train.History`.
    """
    from gencourse.data import LEVELS, load
    from gencourse.train import History

    start = time.perf_counter()
    train, val = load("digits", "train"), load("digits", "val")
    model = PixelCategorical(LEVELS["digits"], alpha).fit(train.images)
    val_nll = model.nll(val.images).mean().item()
    history = History(train_loss=[model.nll(train.images).mean().item()], val_loss=[val_nll], best_epoch=1,
                      best_val_loss=val_nll, seconds=time.perf_counter() - start)
    return model, history


# ----------------------------------------------------------------------------------------------
# KL divergences: discrete, and between 1D densities on a grid
# ----------------------------------------------------------------------------------------------

def discrete_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) = sum_k p_k log(p_k / q_k)`` over the last dimension of probability tensors ``(..., K)``.

    Terms with ``p_k = 0`` count 0 (``0 log 0 = 0``); a ``q_k = 0`` where ``p_k > 0`` makes it ``inf``.
    Returns shape ``(...)``.
    """
    p, q = torch.as_tensor(p), torch.as_tensor(q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(-1)


def normal_log_prob(x: torch.Tensor, mu, sigma) -> torch.Tensor:
    """``log N(x; mu, sigma^2)`` elementwise."""
    return -0.5 * ((x - mu) / sigma) ** 2 - torch.log(torch.as_tensor(sigma, dtype=x.dtype)) - 0.5 * LOG_2PI


def mixture_log_prob(x: torch.Tensor, weights, means, stds) -> torch.Tensor:
    """Log density of the 1D Gaussian mixture ``sum_m w_m N(x; mean_m, std_m^2)`` at ``x: (...)``."""
    x = torch.as_tensor(x, dtype=torch.float64)
    w, m, s = (torch.as_tensor(v, dtype=torch.float64) for v in (weights, means, stds))
    if not (w.shape == m.shape == s.shape) or w.dim() != 1 or (s <= 0).any() or abs(float(w.sum()) - 1) > 1e-6:
        raise ValueError("weights, means and stds must be 1D of equal length, stds > 0, weights summing to 1")
    return torch.logsumexp(torch.log(w) + normal_log_prob(x[..., None], m, s), dim=-1)


def sample_mixture(n: int, weights, means, stds, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws ``(n,)`` float64 from the 1D Gaussian mixture of :func:`mixture_log_prob`."""
    w, m, s = (torch.as_tensor(v, dtype=torch.float64) for v in (weights, means, stds))
    comp = torch.multinomial(w, n, replacement=True, generator=generator)
    return m[comp] + s[comp] * torch.randn(n, generator=generator, dtype=torch.float64)


def entropy_on_grid(log_p: torch.Tensor, dx: float) -> float:
    """Differential entropy ``H(p) = -int p log p`` by the rectangle rule on a grid of spacing ``dx``."""
    p = log_p.exp()
    return float(-(p * log_p).sum() * dx)


def kl_on_grid(log_p: torch.Tensor, log_q: torch.Tensor, dx: float) -> float:
    """``KL(p || q) = int p (log p - log q)`` by the rectangle rule, ``log_p``, ``log_q`` on the same grid."""
    p = log_p.exp()
    return float((p * (log_p - log_q)).sum() * dx)


def fit_gaussian_kl(log_p, direction: str = "forward", *, init=(0.0, 1.0), lim: float = 10.0, n: int = 4001,
                    steps: int = 300) -> tuple[float, float]:
    """The Gaussian ``q = N(mu, sigma^2)`` closest to a 1D density ``p`` in one direction of KL.

    ``log_p``: a function of ``x: (n,)`` float64 -> ``(n,)``. ``direction="forward"`` minimizes
    ``KL(p || q) = int p log(p / q)`` (what maximum likelihood does: mass-covering); ``"reverse"`` minimizes
    ``KL(q || p) = int q log(q / p)`` (mode-seeking; it has one local minimum per mode, so the answer depends
    on ``init``). Integrals by the rectangle rule on ``n`` points over ``[-lim, lim]``; L-BFGS on
    ``(mu, log sigma)`` from ``init = (mu0, sigma0)``. Returns ``(mu, sigma)``.
    """
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    x = torch.linspace(-lim, lim, n, dtype=torch.float64)
    dx = float(x[1] - x[0])
    lp = torch.as_tensor(log_p(x), dtype=torch.float64)
    mu = torch.tensor(float(init[0]), dtype=torch.float64, requires_grad=True)
    log_sigma = torch.tensor(math.log(init[1]), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([mu, log_sigma], lr=1, max_iter=steps, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)

    def objective():
        opt.zero_grad()
        lq = normal_log_prob(x, mu, log_sigma.exp())
        if direction == "forward":
            loss = (lp.exp() * (lp - lq)).sum() * dx
        else:
            loss = (lq.exp() * (lq - lp)).sum() * dx
        loss.backward()
        return loss

    opt.step(objective)
    return mu.item(), log_sigma.exp().item()


# ----------------------------------------------------------------------------------------------
# Continuous models on the discrete scale: the dequantized bound
# ----------------------------------------------------------------------------------------------

def dequantized_nll(log_density, levels_k, levels: int, u) -> torch.Tensor:
    """The discrete NLL bound of a continuous model, ``E_u[-log p((k + u) / L)] + D ln L``, estimated with draws.

    ``log_density``: a function ``y: (M, D) -> (M,)``, the model's log density on ``[0, 1)^D``;
    ``levels_k: (B, D)`` integer levels in ``0..L-1``; ``u: (S, B, D)`` uniform draws in ``[0, 1)``, ``S`` per
    image. Returns ``(B,)`` nats, the mean over the ``S`` draws.

    Why a bound: ``P(k) = int_cell p(y) dy = L^-D E_u[p((k + u) / L)]`` over the cell of volume ``L^-D``, and
    Jensen's inequality gives ``-log P(k) <= E_u[-log p((k + u) / L)] + D ln L``.
    """
    k = _check_levels(levels_k, levels, "levels_k")
    u = torch.as_tensor(u)
    if u.dim() != 3 or tuple(u.shape[1:]) != tuple(k.shape) or len(u) < 1:
        raise ValueError(f"u must have shape (S, B, D) = (S, {k.shape[0]}, {k.shape[1]}), got {tuple(u.shape)}")
    if u.min() < 0 or u.max() >= 1:
        raise ValueError("u must hold uniform draws in [0, 1)")
    s, b, d = u.shape
    y = (k.to(u.dtype) + u) / levels                                                  # (S, B, D) in [0, 1)
    log_p = torch.as_tensor(log_density(y.reshape(s * b, d))).reshape(s, b)
    return -log_p.mean(0) + d * math.log(levels)


def diagonal_gaussian_cell_nll(levels_k, levels: int, mean, std) -> torch.Tensor:
    """The exact discrete NLL of a diagonal Gaussian on dequantization cells: ``-log P(k)`` in nats, ``(B,)``.

    ``P(k) = prod_d [Phi((k_d + 1)/L; mean_d, std_d) - Phi(k_d/L; mean_d, std_d)]``, the Gaussian's mass on
    the cell ``[k/L, (k+1)/L)`` of :func:`dequantized_nll` (no bound: a diagonal Gaussian's CDF is known).
    ``levels_k: (B, D)`` integer levels; ``mean, std: (D,)``. Differences of CDFs are taken in log space on the
    side of the mean where they do not cancel, so cells far in a tail stay finite.
    """
    k = _check_levels(levels_k, levels, "levels_k").double()
    mean, std = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(std, dtype=torch.float64)
    if mean.shape != (k.shape[1],) or std.shape != mean.shape or (std <= 0).any():
        raise ValueError(f"mean and std must have shape ({k.shape[1]},) with std > 0")
    a, b = (k / levels - mean) / std, ((k + 1) / levels - mean) / std               # cell edges, standardized

    def log_mass(lo, hi):                                                          # log(Phi(hi) - Phi(lo)), lo < hi
        log_hi = torch.special.log_ndtr(hi)
        return log_hi + torch.log1p(-torch.exp(torch.special.log_ndtr(lo) - log_hi))

    right = a > 0                                                                   # by symmetry, use the left tail
    log_p = torch.where(right, log_mass(-b, -a), log_mass(a, b))
    return -log_p.sum(1)


# ----------------------------------------------------------------------------------------------
# A mixture of Gaussians fitted by EM: the component is a latent variable
# ----------------------------------------------------------------------------------------------

def gmm_log_joint(x, weights, means, covs) -> torch.Tensor:
    """``log p(x, z=k) = log w_k + log N(x; mu_k, Sigma_k)`` for ``x: (B, D)``, ``weights: (K,)``,
    ``means: (K, D)``, ``covs: (K, D, D)`` -> ``(B, K)``. Its ``logsumexp`` over ``k`` is ``log p(x)``."""
    x, weights, means, covs = (torch.as_tensor(v) for v in (x, weights, means, covs))
    if x.dim() != 2 or means.dim() != 2 or means.shape[1] != x.shape[1] or weights.shape != means.shape[:1] \
            or covs.shape != (*means.shape, means.shape[1]):
        raise ValueError(f"expected x (B, D), weights (K,), means (K, D), covs (K, D, D); got {tuple(x.shape)}, "
                         f"{tuple(weights.shape)}, {tuple(means.shape)}, {tuple(covs.shape)}")
    return torch.stack([torch.log(weights[k]) + gaussian_log_prob(x, means[k], covs[k])
                        for k in range(len(means))], dim=1)


def em_step(x, weights, means, covs, *, reg: float = 0.0):
    """One EM step for a Gaussian mixture on ``x: (N, D)``. Returns ``(weights, means, covs, log_lik)`` with
    the new parameters and ``log_lik``, the mean ``log p(x)`` under the parameters it started from.

    E-step: the responsibilities ``r_nk = p(z=k | x_n)`` by Bayes' rule (:func:`class_posterior` of
    :func:`gmm_log_joint`). M-step: with ``N_k = sum_n r_nk``, ``w_k = N_k / N``,
    ``mu_k = sum_n r_nk x_n / N_k``, ``Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k (+ reg I)``:
    the maximum-likelihood fit of Exercise 1 with each point weighted by its responsibility. With
    ``reg = 0`` the mean log-likelihood never decreases from one step to the next.
    """
    x = torch.as_tensor(x)
    log_joint = gmm_log_joint(x, weights, means, covs)                            # (N, K)
    log_lik = torch.logsumexp(log_joint, dim=1).mean()
    r = class_posterior(log_joint).exp()                                          # (N, K) responsibilities
    n_k = r.sum(0)                                                                # (K,)
    new_means = (r.T @ x) / n_k[:, None]                                          # (K, D)
    diff = x[None] - new_means[:, None]                                           # (K, N, D)
    new_covs = torch.einsum("nk,knd,kne->kde", r, diff, diff) / n_k[:, None, None]
    new_covs = new_covs + reg * torch.eye(x.shape[1], dtype=x.dtype)
    return n_k / len(x), new_means, new_covs, log_lik


def fit_gmm(x, init_means, steps: int, *, reg: float = 0.0):
    """A Gaussian mixture fitted by EM to ``x: (N, D)`` from ``init_means: (K, D)``.

    Starts from equal weights, the given means and, for every component, the covariance of all the data
    (:func:`gaussian_mle`); then runs ``steps`` calls of :func:`em_step`. Returns ``(weights (K,),
    means (K, D), covs (K, D, D), history)``, ``history`` a list of the ``steps`` mean log-likelihoods
    ``(1/N) sum_n log p(x_n)`` measured at the start of each step (a float each).
    """
    x, means = torch.as_tensor(x), torch.as_tensor(init_means)
    if x.dim() != 2 or means.dim() != 2 or means.shape[1] != x.shape[1] or not steps >= 1:
        raise ValueError(f"expected x (N, D), init_means (K, D) and steps >= 1, got {tuple(x.shape)}, "
                         f"{tuple(means.shape)}, {steps!r}")
    k = len(means)
    weights = torch.full((k,), 1.0 / k, dtype=x.dtype)
    covs = gaussian_mle(x)[1].expand(k, -1, -1).clone()
    history = []
    for _ in range(steps):
        weights, means, covs, log_lik = em_step(x, weights, means, covs, reg=reg)
        history.append(log_lik.item())
    return weights, means, covs, history


def kmeans_plus_plus(x, k: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` starting means ``(k, D)`` chosen among the rows of ``x: (N, D)`` by k-means++: the first at random,
    each next one with probability proportional to its squared distance to the nearest chosen one."""
    x = torch.as_tensor(x)
    if x.dim() != 2 or not 0 < k <= len(x):
        raise ValueError(f"expected x (N, D) and 0 < k <= N, got {tuple(x.shape)} and k={k}")
    chosen = [int(torch.randint(len(x), (1,), generator=generator))]
    for _ in range(k - 1):
        d2 = torch.cdist(x, x[chosen]).min(1).values ** 2
        chosen.append(int(torch.multinomial(d2 / d2.sum(), 1, generator=generator)))
    return x[chosen].clone()


# ----------------------------------------------------------------------------------------------
# The map of the families this course covers
# ----------------------------------------------------------------------------------------------

FAMILIES = (
    # name, lesson, likelihood, network evaluations per sample (typical), what typically fails
    dict(family="VAE", lesson="03", likelihood="bound", nfe="1", nfe_typical=1,
         samples_by="decode a prior draw z ~ N(0, I)",
         fails="blurry means and speckled samples (a pixel-independent decoder); posterior collapse"),
    dict(family="GAN", lesson="04", likelihood="none", nfe="1", nfe_typical=1,
         samples_by="push noise through the generator", fails="mode collapse; unstable training"),
    dict(family="normalizing flow", lesson="05", likelihood="exact", nfe="1 (one pass, K layers)", nfe_typical=1,
         samples_by="invert the flow on a base draw", fails="needs large invertible nets; weaker samples"),
    dict(family="diffusion", lesson="06", likelihood="bound (or via the probability-flow ODE)", nfe="T: 10-1000",
         nfe_typical=100, samples_by="denoise step by step from noise", fails="slow sampling (many steps)"),
    dict(family="autoregressive", lesson="07", likelihood="exact", nfe="D: one per dimension", nfe_typical=64,
         samples_by="one dimension at a time, in order", fails="sampling is sequential, slow for large D"),
    dict(family="flow matching", lesson="08", likelihood="exact up to solver error (ODE solve, trace often estimated)",
         nfe="1-100 ODE steps", nfe_typical=20,
         samples_by="integrate a learned velocity field", fails="few steps: blur; likelihood needs an ODE solve"),
)


def family_table() -> str:
    """The map of :data:`FAMILIES` as a markdown table."""
    head = "| family | lesson | likelihood | sampling (network evaluations) | samples by | typical failure |\n"
    head += "| --- | --- | --- | --- | --- | --- |\n"
    return head + "\n".join(f"| {f['family']} | {f['lesson']} | {f['likelihood']} | {f['nfe']} | {f['samples_by']} | "
                            f"{f['fails']} |" for f in FAMILIES)
