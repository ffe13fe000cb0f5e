"""What a denoising network predicts, and how the predictions convert into one another.

Diffusion (lesson 06) and flow matching (lesson 08) both noise data along a Gaussian path

    x_t = alpha_t x_0 + sigma_t eps,        eps ~ N(0, I)                               (1)

(``docs/notation.md``: here ``x_0`` is the data, as in lesson 06; lesson 08 calls the data ``x_1``). A network
that sees ``x_t`` can be asked for any of these, and each determines the others given ``x_t``:

- ``"eps"``: the noise ``eps`` (Ho et al. 2020);
- ``"x0"``: the clean data ``x_0``;
- ``"v"``: ``v = alpha_t eps - sigma_t x_0`` (Salimans & Ho 2022);
- ``"score"``: ``grad log q_t(x_t) = -E[eps | x_t] / sigma_t`` (Vincent 2011; Song et al. 2021);
- ``"velocity"``: the flow-matching velocity ``u = alpha'_t x_0 + sigma'_t eps = d x_t / dt`` (needs the
  derivatives ``d_alpha``, ``d_sigma``).

Every conversion goes through the pair ``(x0, eps)``, which (1) ties to ``x_t``. Trained to the conditional
expectation, every kind gives the same ``E[x_0 | x_t]``; what differs is how a squared error on each kind weights
the noise levels, :func:`loss_weight`. Shapes: ``xt, prediction (B, ...)``; ``alpha, sigma``: numbers or ``(B,)``.
"""
from __future__ import annotations

import torch

KINDS = ("eps", "x0", "v", "score", "velocity")


def _per_example(value, like: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.dim() == 0:
        return value
    if value.shape != (len(like),):
        raise ValueError(f"alpha, sigma and their derivatives must be numbers or tensors of shape ({len(like)},), "
                         f"got shape {tuple(value.shape)}")
    return value.view(-1, *([1] * (like.dim() - 1)))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown parameterization {kind!r}; choose one of {', '.join(KINDS)}")


def to_x0_eps(kind: str, prediction: torch.Tensor, xt: torch.Tensor, alpha, sigma, d_alpha=None, d_sigma=None):
    """The ``(x0, eps)`` pair that ``prediction`` of ``kind`` implies at ``x_t`` by (1) -> two tensors like ``xt``.

    ``eps``: ``x0 = (x_t - sigma eps) / alpha``.  ``x0``: ``eps = (x_t - alpha x0) / sigma``.
    ``v``: ``x0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2)``, ``eps = (sigma x_t + alpha v) / (alpha^2 + sigma^2)``.
    ``score``: ``eps = -sigma * score``.  ``velocity``: solve ``u = alpha' x0 + sigma' eps`` with (1).
    """
    _check_kind(kind)
    if prediction.shape != xt.shape:
        raise ValueError(f"prediction and xt must have the same shape, got {tuple(prediction.shape)} and "
                         f"{tuple(xt.shape)}")
    a, s = _per_example(alpha, xt), _per_example(sigma, xt)
    if kind == "eps":
        return (xt - s * prediction) / a, prediction
    if kind == "x0":
        return prediction, (xt - a * prediction) / s
    if kind == "v":
        norm = a**2 + s**2
        return (a * xt - s * prediction) / norm, (s * xt + a * prediction) / norm
    if kind == "score":
        eps = -s * prediction
        return (xt - s * eps) / a, eps
    if d_alpha is None or d_sigma is None:
        raise ValueError("the velocity needs d_alpha and d_sigma, the time derivatives of alpha and sigma")
    da, ds = _per_example(d_alpha, xt), _per_example(d_sigma, xt)
    # [[alpha, sigma], [alpha', sigma']] (x0, eps) = (x_t, u): Cramer's rule
    det = a * ds - s * da
    return (ds * xt - s * prediction) / det, (a * prediction - da * xt) / det


def from_x0_eps(kind: str, x0: torch.Tensor, eps: torch.Tensor, alpha, sigma, d_alpha=None, d_sigma=None):
    """What a network of ``kind`` should output for the pair ``(x0, eps)`` (the inverse of :func:`to_x0_eps`)."""
    _check_kind(kind)
    if x0.shape != eps.shape:
        raise ValueError(f"x0 and eps must have the same shape, got {tuple(x0.shape)} and {tuple(eps.shape)}")
    a, s = _per_example(alpha, x0), _per_example(sigma, x0)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return a * eps - s * x0
    if kind == "score":
        return -eps / s
    if d_alpha is None or d_sigma is None:
        raise ValueError("the velocity needs d_alpha and d_sigma, the time derivatives of alpha and sigma")
    return _per_example(d_alpha, x0) * x0 + _per_example(d_sigma, x0) * eps


def convert(prediction: torch.Tensor, source: str, target: str, xt: torch.Tensor, alpha, sigma,
            d_alpha=None, d_sigma=None) -> torch.Tensor:
    """A prediction of kind ``source`` at ``x_t`` rewritten as kind ``target``, e.g. ``convert(eps, "eps", "score",
    xt, alpha, sigma)`` is ``-eps / sigma``."""
    x0, eps = to_x0_eps(source, prediction, xt, alpha, sigma, d_alpha, d_sigma)
    return from_x0_eps(target, x0, eps, alpha, sigma, d_alpha, d_sigma)


def loss_weight(kind: str, alpha, sigma, d_alpha=None, d_sigma=None) -> torch.Tensor:
    """``w`` such that a squared error on ``kind`` equals ``w * ||x0 - x0_hat||^2`` (elementwise), at ``x_t`` fixed.

    With ``snr = alpha^2 / sigma^2``: ``x0`` 1; ``eps`` snr; ``v`` ``(alpha^2 + sigma^2)^2 / sigma^2`` (= snr + 1
    on a variance-preserving path, ``alpha^2 + sigma^2 = 1``); ``score`` ``snr / sigma^2``; ``velocity`` ``(alpha' - sigma' alpha / sigma)^2``.
    So ``L_simple`` (an unweighted eps error) weights each noise level by its SNR relative to an x0 error.
    """
    _check_kind(kind)
    a, s = torch.as_tensor(alpha, dtype=torch.float64), torch.as_tensor(sigma, dtype=torch.float64)
    snr = a**2 / s**2
    if kind == "x0":
        return torch.ones_like(snr)
    if kind == "eps":
        return snr
    if kind == "v":
        return (a**2 + s**2) ** 2 / s**2
    if kind == "score":
        return snr / s**2
    if d_alpha is None or d_sigma is None:
        raise ValueError("the velocity needs d_alpha and d_sigma, the time derivatives of alpha and sigma")
    da, ds = torch.as_tensor(d_alpha, dtype=torch.float64), torch.as_tensor(d_sigma, dtype=torch.float64)
    return (da - ds * a / s) ** 2
