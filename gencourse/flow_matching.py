"""Flow matching: learn the velocity field of an ODE that carries noise to data (Lipman et al. 2023;
Liu et al. 2023, rectified flow; Albergo & Vanden-Eijnden 2023).

Conventions: time ``t`` runs from 0 (noise, ``x_0 ~ N(0, I)``) to 1 (data, ``x_1 ~ p_data``).

- A **probability path** joins a noise draw ``x_0`` and a data point ``x_1``:
  ``x_t = alpha_t x_1 + sigma_t x_0`` (eq. 1), with conditional target velocity
  ``u_t(x_t | x_0, x_1) = d x_t / dt = alpha'_t x_1 + sigma'_t x_0`` (eq. 1, lesson 08's numbering).
  The linear (rectified) path has ``alpha_t = t, sigma_t = 1 - t``, so ``u_t = x_1 - x_0``; the Gaussian
  path of variance-preserving diffusion has ``alpha_t = sin(pi t / 2), sigma_t = cos(pi t / 2)``
  (``alpha_t^2 + sigma_t^2 = 1``, the cosine schedule in continuous time).
- The **conditional flow-matching loss** ``E_{t, x_0, x_1} || v_theta(x_t, t) - u_t(x_t | x_0, x_1) ||^2``
  (eq. 3) has the same gradient as the intractable marginal loss against
  ``u_t(x) = E[u_t(x_t | x_0, x_1) | x_t = x]``: the two differ by a constant independent of ``theta``.
- For **Gaussian data** ``N(mu, Sigma)`` the marginal velocity of the linear path is closed-form and linear in ``x``:
  ``v*(x, t) = mu + (t Sigma - (1 - t) I) S_t^{-1} (x - t mu)``, ``S_t = (1 - t)^2 I + t^2 Sigma``; the
  digits model learns only a correction to it (eq. 6, :class:`DigitsFlowMatching`).
- **Sampling** integrates ``dx/dt = v_theta(x, t)`` from ``t = 0`` to 1 (Euler or Heun).
- **Likelihood** by the instantaneous change of variables (Chen et al. 2018):
  ``log p_1(x_1) = log N(x_0; 0, I) - int_0^1 div v_theta(x_t, t) dt`` (eq. 5), integrated from the data
  backwards to the noise; the divergence exactly (one autograd pass per dimension) or with Hutchinson's
  estimator ``E_eps[eps^T (dv/dx) eps]``.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from gencourse import data as _data
from gencourse.nets import LocalConvNet, MLPDenoiser, SmallUNet  # noqa: F401 (the networks, shared with lesson 06)
from gencourse.train import fixed_batches, train_annealed

# ----------------------------------------------------------------------------------------------
# Probability paths
# ----------------------------------------------------------------------------------------------


def _check_t(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t``: a float, or a tensor ``(B,)`` -> a tensor broadcastable to ``x (B, ...)``."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        t = t.expand(len(x))
    if t.shape != (len(x),):
        raise ValueError(f"t must be a number or a tensor of shape ({len(x)},), got shape {tuple(t.shape)}")
    return t.view(-1, *([1] * (x.dim() - 1)))


class GaussianPath:
    """``x_t = alpha_t x_1 + sigma_t x_0`` and ``u_t = alpha'_t x_1 + sigma'_t x_0`` (eq. 1).

    Subclasses define ``alpha(t), sigma(t)`` and their derivatives ``d_alpha(t), d_sigma(t)`` on tensors.
    ``x0, x1: (B, ...)``; ``t``: a number or a tensor ``(B,)`` in ``[0, 1]``.
    """

    name = "gaussian"

    def _inputs(self, x0, x1, t):
        if not isinstance(x0, torch.Tensor) or not isinstance(x1, torch.Tensor) or x0.shape != x1.shape:
            raise ValueError("x0 (noise) and x1 (data) must be tensors of the same shape (B, ...)")
        return _check_t(t, x1)

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t) -> torch.Tensor:
        """The point ``x_t (B, ...)`` on the path from ``x0`` (t = 0) to ``x1`` (t = 1)."""
        t = self._inputs(x0, x1, t)
        return self.alpha(t) * x1 + self.sigma(t) * x0

    def target_velocity(self, x0: torch.Tensor, x1: torch.Tensor, t) -> torch.Tensor:
        """The conditional velocity ``u_t(x_t | x0, x1) = d x_t / dt``, ``(B, ...)``."""
        t = self._inputs(x0, x1, t)
        return self.d_alpha(t) * x1 + self.d_sigma(t) * x0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearPath(GaussianPath):
    """The rectified-flow path: ``x_t = t x_1 + (1 - t) x_0``, ``u_t = x_1 - x_0`` (straight lines)."""

    name = "linear"

    def alpha(self, t):
        return t

    def sigma(self, t):
        return 1 - t

    def d_alpha(self, t):
        return torch.ones_like(t)

    def d_sigma(self, t):
        return -torch.ones_like(t)


class VPPath(GaussianPath):
    """The variance-preserving (diffusion) path: ``alpha_t = sin(pi t / 2)``, ``sigma_t = cos(pi t / 2)``.

    In diffusion's notation ``abar = alpha_t^2``: the cosine schedule, run in continuous time.
    """

    name = "vp"

    def alpha(self, t):
        return torch.sin(0.5 * math.pi * t)

    def sigma(self, t):
        return torch.cos(0.5 * math.pi * t)

    def d_alpha(self, t):
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def d_sigma(self, t):
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


PATHS = {"linear": LinearPath, "vp": VPPath}


def get_path(path) -> GaussianPath:
    """A path object from a name in :data:`PATHS` (or a path object, returned as it is)."""
    if isinstance(path, GaussianPath):
        return path
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; choose one of {', '.join(PATHS)} or pass a GaussianPath")
    return PATHS[path]()


def cfm_loss(velocity_fn, x1: torch.Tensor, path="linear", *, x0: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The conditional flow-matching loss (eq. 3), a scalar: the batch mean of
    ``|| v(x_t, t) - u_t(x_t | x_0, x_1) ||^2`` summed over dimensions, with ``t ~ U[0, 1]``,
    ``x_0 ~ N(0, I)``. ``velocity_fn(x (B, ...), t (B,)) -> (B, ...)``; ``x1: (B, ...)`` data.
    ``x0``: the noise paired with each ``x1`` (a coupling: :func:`ot_pairs`, or reflow's pairs from
    :func:`reflow_pairs`); drawn independently when None.
    """
    if not isinstance(x1, torch.Tensor) or x1.dim() < 2:
        raise ValueError(f"x1 must be a data batch of shape (B, ...), got {getattr(x1, 'shape', type(x1))}")
    path = get_path(path)
    if x0 is None:
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype).to(x1.device)
    elif x0.shape != x1.shape:
        raise ValueError(f"x0 must have x1's shape {tuple(x1.shape)}, got {tuple(x0.shape)}")
    t = torch.rand(len(x1), generator=generator, dtype=x1.dtype).to(x1.device)
    xt, ut = path.sample(x0, x1, t), path.target_velocity(x0, x1, t)
    return (velocity_fn(xt, t) - ut).pow(2).flatten(1).sum(1).mean()


def ot_pairs(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Minibatch optimal transport (Tong et al. 2024; Pooladian et al. 2023): the noise ``x0 (B, ...)`` reordered
    so that ``sum_i ||x0[perm[i]] - x1[i]||^2`` is the smallest over all pairings of the batch (an exact
    assignment, Hungarian algorithm). Training on these pairs straightens the learned paths."""
    from scipy.optimize import linear_sum_assignment

    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    cost = torch.cdist(x1.flatten(1).double(), x0.flatten(1).double()).pow(2)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return x0[torch.as_tensor(cols[rows.argsort()], device=x0.device)]


@torch.no_grad()
def reflow_pairs(velocity_fn, x0: torch.Tensor, steps: int, method: str = "heun") -> tuple:
    """Rectified flow's reflow (Liu et al. 2023): ``(x0, x1_hat)`` with ``x1_hat`` the learned ODE's image of the
    noise ``x0`` (``steps`` steps of ``method``). A model trained on these pairs (``cfm_loss(..., x0=x0)``) learns
    straighter paths; generating the pairs costs ``nfe(method, steps)`` evaluations per pair."""
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {', '.join(SAMPLERS)}, got {method!r}")
    return x0, SAMPLERS[method](velocity_fn, x0, steps)


# ----------------------------------------------------------------------------------------------
# The score, the SDE with the same marginals, and Langevin dynamics
# ----------------------------------------------------------------------------------------------


def score_from_velocity(velocity: torch.Tensor, x: torch.Tensor, t, path="linear") -> torch.Tensor:
    """``grad log p_t(x)`` implied by the marginal velocity of a Gaussian path at ``x`` (lesson 06's score):
    the velocity fixes ``(E[x_1 | x], E[x_0 | x])`` and the score is ``-E[x_0 | x] / sigma_t``
    (:func:`gencourse.parameterization.convert`, with the data ``x_1`` in the role of lesson 06's ``x_0``).
    ``t``: a number or ``(B,)`` in ``[0, 1)``."""
    from gencourse.parameterization import convert

    path = get_path(path)
    t = _check_t(t, x).flatten()
    return convert(velocity, "velocity", "score", x, path.alpha(t), path.sigma(t), path.d_alpha(t), path.d_sigma(t))


@torch.no_grad()
def sde_sample(velocity_fn, x0: torch.Tensor, steps: int, *, noise: float = 1.0, path="linear",
               t_end: float = 0.999, generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler-Maruyama on ``dx = [v(x, t) + g_t^2 / 2 * s(x, t)] dt + g_t dW`` from ``t = 0`` to ``t_end``, with
    ``g_t = noise * sigma_t`` and ``s`` = :func:`score_from_velocity`. For any ``g`` its marginals are the ODE's
    (the Fokker-Planck equation gains ``-div(p g^2/2 grad log p) + g^2/2 Laplacian p = 0``); ``noise = 0`` is
    Euler on the ODE. Stops at ``t_end < 1``, where the score of the linear path blows up. NFE = ``steps``."""
    steps = _check_steps(steps)
    if noise < 0 or not 0 < t_end <= 1:
        raise ValueError(f"need noise >= 0 and 0 < t_end <= 1, got {noise}, {t_end}")
    path = get_path(path)
    x, h = x0, t_end / steps
    for i in range(steps):
        t = torch.full((len(x),), i * h, dtype=x.dtype, device=x.device)
        v = velocity_fn(x, t)
        g = noise * _check_t(path.sigma(t), x)
        drift = v + 0.5 * g**2 * score_from_velocity(v, x, t, path) if noise > 0 else v
        x = x + h * drift
        if noise > 0:
            x = x + math.sqrt(h) * g * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x


@torch.no_grad()
def langevin(score_fn, x: torch.Tensor, steps: int, step_size: float, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Unadjusted Langevin dynamics, ``x <- x + eps s(x) + sqrt(2 eps) z`` with ``z ~ N(0, I)``: with the exact
    score ``s = grad log p`` and a small ``eps`` it samples ``p`` (for ``N(mu, s^2)`` its stationary variance is
    ``s^2 / (1 - eps / (2 s^2))``). The bridge from a learned score to energy-based models."""
    steps = _check_steps(steps)
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    for _ in range(steps):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = x + step_size * score_fn(x) + math.sqrt(2 * step_size) * z
    return x


# ----------------------------------------------------------------------------------------------
# ODE samplers
# ----------------------------------------------------------------------------------------------


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return steps


@torch.no_grad()
def euler_sample(velocity_fn, x0: torch.Tensor, steps: int, *, return_trajectory: bool = False):
    """Euler's method on ``dx/dt = v(x, t)`` from ``t = 0`` to 1 in ``steps`` equal steps (NFE = steps):
    ``x_{t+h} = x_t + h v(x_t, t)``, ``h = 1 / steps``. ``x0: (B, ...)`` noise -> ``x_1 (B, ...)``
    (and the list of the ``steps + 1`` states with ``return_trajectory``)."""
    steps = _check_steps(steps)
    x, h, traj = x0, 1.0 / steps, [x0]
    for i in range(steps):
        t = torch.full((len(x),), i * h, dtype=x.dtype, device=x.device)
        x = x + h * velocity_fn(x, t)
        traj.append(x)
    return (x, traj) if return_trajectory else x


@torch.no_grad()
def heun_sample(velocity_fn, x0: torch.Tensor, steps: int, *, final_euler: bool = False,
                return_trajectory: bool = False):
    """Heun's method (explicit trapezoid, second order) from ``t = 0`` to 1, NFE = ``2 steps``:
    ``x' = x_t + h v(x_t, t)``, ``x_{t+h} = x_t + h/2 (v(x_t, t) + v(x', t + h))``.
    ``final_euler``: the last step is an Euler step, NFE = ``2 steps - 1`` (as Karras et al. 2022 do), for a
    velocity that cannot be evaluated at ``t = 1`` (a model of data with bounded support is singular there)."""
    steps = _check_steps(steps)
    x, h, traj = x0, 1.0 / steps, [x0]
    for i in range(steps):
        t = torch.full((len(x),), i * h, dtype=x.dtype, device=x.device)
        v = velocity_fn(x, t)
        if final_euler and i == steps - 1:
            x = x + h * v
        else:
            v_next = velocity_fn(x + h * v, t + h)
            x = x + 0.5 * h * (v + v_next)
        traj.append(x)
    return (x, traj) if return_trajectory else x


@torch.no_grad()
def ddim_sample(velocity_fn, x0: torch.Tensor, steps: int, path="vp", *, return_trajectory: bool = False):
    """DDIM with ``eta = 0`` (Song et al. 2021; lesson 06) on a Gaussian path, in this lesson's time: at ``t`` the
    velocity gives the pair ``(x1_hat, eps_hat)`` (:func:`gencourse.parameterization.to_x0_eps`, data first) and

        x_{t+h} = alpha_{t+h} x1_hat + sigma_{t+h} eps_hat,

    the point at ``t + h`` on the path through the predicted pair. A first-order solver of the same ODE as
    :func:`euler_sample`, equal steps, NFE = ``steps``; on the linear path it *is* Euler (``alpha``, ``sigma``
    linear in ``t``). ``x0: (B, ...)`` noise -> ``x_1 (B, ...)``."""
    from gencourse.parameterization import to_x0_eps

    steps, path = _check_steps(steps), get_path(path)
    x, h, traj = x0, 1.0 / steps, [x0]
    for i in range(steps):
        t = torch.full((len(x),), i * h, dtype=x.dtype, device=x.device)
        x1_hat, eps_hat = to_x0_eps("velocity", velocity_fn(x, t), x, path.alpha(t), path.sigma(t),
                                    path.d_alpha(t), path.d_sigma(t))
        x = path.sample(eps_hat, x1_hat, t + h)
        traj.append(x)
    return (x, traj) if return_trajectory else x


SAMPLERS = {"euler": euler_sample, "heun": heun_sample}


def nfe(method: str, steps: int, *, final_euler: bool = False) -> int:
    """Network evaluations per sample of a sampler: Euler ``steps``, Heun ``2 steps`` (``2 steps - 1`` with
    ``final_euler``)."""
    return steps * (2 if method == "heun" else 1) - (1 if method == "heun" and final_euler else 0)


def straightness(trajectory: list) -> torch.Tensor:
    """Mean squared deviation ``(B,)`` of each step's velocity from the straight line's ``x_1 - x_0``
    (0 for perfectly straight paths), from a list of states ``(B, ...)``."""
    steps = len(trajectory) - 1
    chord = trajectory[-1] - trajectory[0]
    dev = [((b - a) * steps - chord).pow(2).flatten(1).sum(1) for a, b in zip(trajectory[:-1], trajectory[1:])]
    return torch.stack(dev).mean(0)


# ----------------------------------------------------------------------------------------------
# Likelihood by the instantaneous change of variables
# ----------------------------------------------------------------------------------------------


def divergence_exact(velocity_fn, x: torch.Tensor, t: torch.Tensor):
    """``(v, div v)``: the velocity ``(B, ...)`` and the trace of its Jacobian ``(B,)``, one autograd pass
    per dimension (``D`` passes)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = velocity_fn(x, t)
        flat = v.flatten(1)
        div = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        for i in range(flat.shape[1]):
            g, = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i < flat.shape[1] - 1)
            div = div + g.flatten(1)[:, i]
    return v.detach(), div


def divergence_hutchinson(velocity_fn, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, *,
                          create_graph: bool = False):
    """``(v, eps^T (dv/dx) eps)``: Hutchinson's unbiased estimate of ``div v`` ``(B,)`` for probes ``eps``
    with ``E[eps eps^T] = I`` (Rademacher or Gaussian), one vector-Jacobian product per probe. ``eps``: one probe
    shaped like ``x``, or ``P`` probes ``(P, *x.shape)`` whose estimates are averaged (one forward pass shared).
    ``create_graph=True`` keeps ``v`` and the estimate differentiable with respect to ``x`` and what made it."""
    probes = eps.unsqueeze(0) if eps.dim() == x.dim() else eps
    with torch.enable_grad():
        x = x if create_graph and x.requires_grad else x.detach().requires_grad_(True)
        v = velocity_fn(x, t)
        divs = [(torch.autograd.grad(v, x, grad_outputs=e, retain_graph=True, create_graph=create_graph)[0] * e)
                .flatten(1).sum(1) for e in probes]
    return (v if create_graph else v.detach()), torch.stack(divs).mean(0)


def ode_log_prob(velocity_fn, x1: torch.Tensor, steps: int = 32, *, divergence: str = "exact",
                 probes: int = 1, warp: float = 1.0, generator: torch.Generator | None = None,
                 differentiable: bool = False) -> torch.Tensor:
    """``log p_1(x_1)`` ``(B,)`` of points ``x1 (B, ...)`` under the flow of ``velocity_fn`` (eq. 5):
    integrate ``dx/dt = v`` and ``d log p / dt = -div v`` backwards from ``t = 1`` to 0 with Heun's method
    (``steps`` steps), then ``log p_1(x_1) = log N(x_0; 0, I) - int_0^1 div v dt``.

    ``divergence="exact"`` (``D`` autograd passes per evaluation) or ``"hutchinson"`` (``probes`` Rademacher
    probes, drawn once and kept along the path; an unbiased estimate of the divergence, so the log-density
    is estimated with noise). ``warp``: the steps sit at ``t_j = 1 - (j / steps)^warp``, equal for
    ``warp = 1``, finer near the data for ``warp > 1``, where a velocity that sharpens the density changes
    fastest. The result is an estimate of the model's log-density that converges as ``steps`` grows.

    ``differentiable=True`` (Hutchinson only): the result keeps its graph back to ``x1``, so a loss on it
    trains whatever produced ``x1`` (a dequantization noise, :func:`gencourse.flows.fit_dequantizer`); it costs
    a backward pass through every step.
    """
    steps = _check_steps(steps)
    if not warp >= 1:
        raise ValueError(f"warp must be >= 1, got {warp!r}")
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if not isinstance(x1, torch.Tensor) or x1.dim() < 2:
        raise ValueError(f"x1 must be a batch of shape (B, ...), got {getattr(x1, 'shape', type(x1))}")
    if differentiable and divergence != "hutchinson":
        raise ValueError("differentiable=True needs divergence='hutchinson' (the exact trace takes D passes)")
    if divergence == "hutchinson":
        shape = (probes, *x1.shape)
        eps = (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(x1)

        def field(x, t):
            return divergence_hutchinson(velocity_fn, x, t, eps, create_graph=differentiable)
    else:
        def field(x, t):
            return divergence_exact(velocity_fn, x, t)

    x = x1 if differentiable else x1.detach()
    times = 1 - torch.linspace(0, 1, steps + 1, dtype=torch.float64) ** warp  # 1 = t_0 > t_1 > ... > t_steps = 0
    integral = torch.zeros(len(x1), dtype=x1.dtype, device=x1.device)  # int_0^1 div v dt
    for t_hi, t_lo in zip(times[:-1].tolist(), times[1:].tolist()):
        h = t_hi - t_lo
        t = torch.full((len(x),), t_hi, dtype=x.dtype, device=x.device)
        v, d = field(x, t)
        x_pred = x - h * v
        v2, d2 = field(x_pred, t - h)
        x = x - 0.5 * h * (v + v2)
        integral = integral + 0.5 * h * (d + d2)
    d = x[0].numel()
    log_p0 = -0.5 * x.flatten(1).pow(2).sum(1) - 0.5 * d * math.log(2 * math.pi)
    return log_p0 - integral if differentiable else (log_p0 - integral).detach()


# ----------------------------------------------------------------------------------------------
# The optimal velocity for Gaussian data (closed form)
# ----------------------------------------------------------------------------------------------


def _gaussian_terms(z, t, var):
    """Shared pieces of the Gaussian formulas: ``t (B, 1)``, ``S_t = (1-t)^2 + t^2 lambda`` ``(B, D)``."""
    t = _check_t(t, z).view(-1, 1)
    return t, (1 - t) ** 2 + t ** 2 * var


def gaussian_velocity(z: torch.Tensor, t, mean: torch.Tensor, var: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """The marginal velocity of the linear path when the data are ``N(mu, Sigma)``:
    ``v*(z, t) = E[x_1 - x_0 | x_t = z] = mu + (t Sigma - (1 - t) I) S_t^{-1} (z - t mu)`` with
    ``S_t = (1 - t)^2 I + t^2 Sigma`` the covariance of ``x_t``. ``Sigma = U diag(lambda) U^T`` is given as
    ``basis U (D, D)`` and ``var lambda (D,)``; in that basis ``S_t`` is diagonal, so no inverse is needed.
    ``z (B, D)``, ``t``: a number or ``(B,)`` -> ``(B, D)``."""
    t, s = _gaussian_terms(z, t, var)
    r = (z - t * mean) @ basis                                   # (B, D) in the eigenbasis
    return mean + ((t * var - (1 - t)) / s * r) @ basis.T


def gaussian_velocity_std(z: torch.Tensor, t, var: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Per-coordinate standard deviation ``(B, D)`` of the target ``x_1 - x_0`` around ``v*`` for Gaussian data:
    ``Cov[x_1 - x_0 | x_t] = U diag(lambda / S_t) U^T`` (the part no function of ``x_t`` can predict), from 1 at
    ``t = 1`` down to the data's own standard deviation at ``t = 0``."""
    _, s = _gaussian_terms(z, t, var)
    return ((var / s) @ (basis.T ** 2)).sqrt()


def gaussian_velocity_divergence(t: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``div v*(., t) = tr((t Sigma - (1 - t) I) S_t^{-1}) = sum_k (t lambda_k - (1 - t)) / S_t,k``, ``(B,)``
    for ``t (B,)`` (the same at every ``z``: ``v*`` is affine in ``z``)."""
    t = t.view(-1, 1)
    return ((t * var - (1 - t)) / ((1 - t) ** 2 + t ** 2 * var)).sum(1)


def pixel_velocity(z: torch.Tensor, t, log_probs: torch.Tensor) -> torch.Tensor:
    """The marginal velocity of the linear path when the pixels are independent and each is uniform within the
    box of its level (lesson 01's per-pixel categorical model, dequantized like the data):
    ``x_1,j ~ sum_k pi_jk U[e_k, e_k+1)`` with ``L = log_probs.shape[1]`` boxes ``e_k = 2k / L - 1`` of ``[-1, 1)``.

    Given ``x_t = z``, ``x_1`` has likelihood ``N(z; t x_1, (1 - t)^2)``, i.e. ``N(x_1; z / t, s^2)`` with
    ``s = (1 - t) / t``, so its posterior is a mixture of truncated normals on the boxes, with weights
    ``pi_k (Phi(b_k) - Phi(a_k))`` and means ``z / t + s (phi(a_k) - phi(b_k)) / (Phi(b_k) - Phi(a_k))``
    (``a_k, b_k`` the box's edges standardized). Then ``v = E[x_1 - x_0 | z] = (E[x_1 | z] - z) / (1 - t)``.
    ``z (B, D)``, ``t``: a number or ``(B,)``, ``log_probs (D, L)`` -> ``(B, D)``. Computed in float64 (the tails
    of ``Phi`` in log space); ``t`` is clamped to ``[1e-6, 1 - 1e-6]``."""
    dtype, levels = z.dtype, log_probs.shape[1]
    t = _check_t(t, z).to(torch.float64).clamp(1e-6, 1 - 1e-6).view(-1, 1, 1)
    edges = torch.arange(levels + 1, dtype=torch.float64, device=z.device) * 2 / levels - 1
    s, mu = (1 - t) / t, z.to(torch.float64).unsqueeze(-1) / t
    e = (edges - mu) / s                                                  # (B, D, L + 1) standardized edges
    log_cdf, log_sf = torch.special.log_ndtr(e), torch.special.log_ndtr(-e)  # log Phi(e), log Phi(-e)
    a, b = e[..., :-1], e[..., 1:]
    # log(Phi(b) - Phi(a)) without cancellation: from the lower tail when b <= 0, the upper when a >= 0
    lower = log_cdf[..., 1:] + torch.log1p(-torch.exp(log_cdf[..., :-1] - log_cdf[..., 1:]).clamp(max=1 - 1e-16))
    upper = log_sf[..., :-1] + torch.log1p(-torch.exp(log_sf[..., 1:] - log_sf[..., :-1]).clamp(max=1 - 1e-16))
    middle = torch.log1p((-torch.exp(log_cdf[..., :-1]) - torch.exp(log_sf[..., 1:])).clamp(min=-1 + 1e-16))
    log_mass = torch.where(b <= 0, lower, torch.where(a >= 0, upper, middle))
    log_pdf = -0.5 * e**2 - 0.5 * math.log(2 * math.pi)
    ratio = torch.exp(log_pdf[..., :-1] - log_mass) - torch.exp(log_pdf[..., 1:] - log_mass)
    means = torch.minimum(torch.maximum(mu + s * ratio, edges[:-1]), edges[1:])  # each inside its box
    weights = torch.softmax(log_probs.to(torch.float64) + log_mass, dim=-1)
    x1_hat = (weights * means).sum(-1)
    return ((x1_hat - z.to(torch.float64)) / (1 - t.view(-1, 1))).to(dtype)


# ----------------------------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------------------------


class DigitsFlowMatching(nn.Module):
    """Flow matching on 8x8 digits with 17 levels: a closed-form velocity plus a learned correction.

    Data: ``x = k / 16`` -> dequantized ``y = (k + u) / 17`` in ``[0, 1)`` -> ``z = 2 y - 1`` in ``[-1, 1)``,
    the ``t = 1`` end of a linear path from ``N(0, I)``. The velocity is
    ``v_theta(z, t, c) = v_prior(z, t) + s_t(z) * F(z, t, c)`` (eq. 6). ``prior="pixels"`` (the default):
    :func:`pixel_velocity` of the per-pixel categorical fitted to the training images (:meth:`fit_pixels`, add-0.1
    smoothing, lesson 01's baseline); ``prior="gaussian"``: :func:`gaussian_velocity` for ``N(mu, Sigma)`` fitted to
    the training ``z`` (:meth:`fit_gaussian`). Both sit in buffers. ``F`` is an MLP
    (:class:`~gencourse.nets.MLPDenoiser`, shared with lesson 06) plus a small conv net, scaled by the Gaussian's
    :func:`gaussian_velocity_std`; it starts at zero, so the untrained model is the prior's flow.
    ``c`` is a class label, replaced by "no label" with probability ``p_uncond`` in training; sampling is
    unconditional unless labels are passed.

    ``sample(n, steps)`` integrates the ODE and quantizes ``k = floor(17 y)``. ``nll(x)``:
    ``-log p(y) + D ln 17`` with ``log p(y) = log p_z(2y - 1) + D ln 2``, ``log p_z`` from
    :func:`ode_log_prob`: an ODE estimate of a dequantization bound, ``likelihood = "bound"``.
    """

    likelihood = "bound"

    def __init__(self, shape=(1, 8, 8), levels: int = 17, hidden: int = 256, depth: int = 3,
                 local_width: int = 16, local_depth: int = 1, num_classes: int | None = None, p_uncond: float = 0.5,
                 skip: bool = True, prior: str = "pixels", network: str = "mlp"):
        super().__init__()
        if network not in ("mlp", "unet"):
            raise ValueError(f"network must be 'mlp' or 'unet', got {network!r}")
        if not 0 <= p_uncond <= 1:
            raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
        if prior not in ("pixels", "gaussian"):
            raise ValueError(f"prior must be 'pixels' or 'gaussian', got {prior!r}")
        self.prior = prior
        self.shape, self.levels = tuple(shape), levels
        self.num_dims = math.prod(self.shape)
        self.num_classes, self.p_uncond, self.skip = num_classes, p_uncond, skip
        self.path = LinearPath()
        if network == "unet":  # 28x28 images: lesson 06's U-Net, no separate local net
            self.net, self.local = SmallUNet(self.shape[0], 32, num_classes=num_classes), None
        else:
            self.net = MLPDenoiser(self.num_dims, hidden, depth, num_classes=num_classes)
            self.local = LocalConvNet(self.shape[0], local_width, local_depth) if local_width else None
        self.register_buffer("gauss_mean", torch.zeros(self.num_dims))
        self.register_buffer("gauss_var", torch.ones(self.num_dims))
        self.register_buffer("gauss_basis", torch.eye(self.num_dims))
        self.register_buffer("pixel_log_probs", torch.full((self.num_dims, levels), -math.log(levels)))

    def _check_images(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be images of shape (B, {', '.join(map(str, self.shape))}), got {got}")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"x must lie in [0, 1] (k / {self.levels - 1})")

    def _labels(self, y, n: int, device) -> torch.Tensor | None:
        from gencourse.diffusion import class_labels

        return class_labels(y, n, self.num_classes, device)

    @torch.no_grad()
    def fit_gaussian(self, x: torch.Tensor) -> "DigitsFlowMatching":
        """Fit ``N(mu, Sigma)`` to the dequantized, rescaled training images ``z = 2 (k + u) / 17 - 1``, in closed
        form over ``u ~ U[0, 1)``: ``mu = 2 (mean(k) + 1/2) / 17 - 1``, ``Sigma = (2/17)^2 (Cov(k) + I / 12)``.
        ``x (N, C, H, W)`` = ``k / 16``. Stores ``mu`` and ``Sigma``'s eigen-decomposition in buffers."""
        self._check_images(x)
        k = _data.to_levels(x, self.levels).flatten(1).double()
        c = 2.0 / self.levels
        mean = c * (k.mean(0) + 0.5) - 1
        cov = c ** 2 * (torch.cov(k.T) + torch.eye(k.shape[1], dtype=k.dtype) / 12)
        lam, basis = torch.linalg.eigh(cov)
        self.gauss_mean.copy_(mean)
        self.gauss_var.copy_(lam)
        self.gauss_basis.copy_(basis)
        return self

    @torch.no_grad()
    def fit_pixels(self, x: torch.Tensor, smoothing: float = 0.1) -> "DigitsFlowMatching":
        """Fit the per-pixel categorical over the levels to ``x (N, C, H, W)`` = ``k / 16`` (add-``smoothing`` counts,
        lesson 01's baseline) and store its log-probabilities ``(D, levels)`` for :func:`pixel_velocity`."""
        from gencourse.basics import level_counts

        self._check_images(x)
        counts = level_counts(_data.to_levels(x, self.levels).flatten(1).cpu(), self.levels).double()  # (D, L)
        self.pixel_log_probs.copy_(torch.log((counts + smoothing) / (counts + smoothing).sum(1, keepdim=True)))
        return self

    def optimal_velocity(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``v*(z, t)`` of :func:`gaussian_velocity` for the fitted Gaussian, ``(B, C, H, W)``."""
        return gaussian_velocity(z.flatten(1), t, self.gauss_mean, self.gauss_var, self.gauss_basis).view_as(z)

    def prior_velocity(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The closed-form velocity the network corrects: :func:`pixel_velocity` (``prior="pixels"``) or
        :meth:`optimal_velocity` (``"gaussian"``), ``(B, C, H, W)``."""
        if self.prior == "pixels":
            return pixel_velocity(z.flatten(1), t, self.pixel_log_probs).view_as(z)
        return self.optimal_velocity(z, t)

    def velocity(self, z: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``v_theta(z, t, y)`` (eq. 6): ``z (B, C, H, W)``, ``t (B,)``, labels ``y (B,)`` or None -> ``(B, C, H, W)``."""
        t = t.expand(len(z)) if t.dim() == 0 else t
        out = self.net(z, t, self._labels(y, len(z), z.device))
        if self.local is not None:
            out = out + self.local(z, t)
        if not self.skip:
            return out
        std = gaussian_velocity_std(z.flatten(1), t, self.gauss_var, self.gauss_basis).view_as(z)
        return self.prior_velocity(z, t) + std * out

    def to_z(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Dequantize ``x = k/16`` (with ``u ~ U[0, 1)``, or the given ``u``) and map to ``z = 2 y - 1``."""
        if u is None:
            return 2 * _data.dequantize(x, self.levels) - 1
        return 2 * (_data.to_levels(x, self.levels) + u) / self.levels - 1

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None, *, t=None, x0=None, u=None) -> torch.Tensor:
        """The conditional flow-matching loss (eq. 3) on dequantized, rescaled images ``x (B, C, H, W)``, per image.
        In training mode labels ``y`` are dropped with probability ``p_uncond``. ``t (B,)``, noise ``x0`` and
        dequantization ``u`` (like ``x``) fix the draws (the validation loss)."""
        self._check_images(x)
        if self.num_classes is not None and y is not None:
            y = self._labels(y, len(x), x.device)
            if self.training and self.p_uncond > 0:
                y = torch.where(torch.rand(len(y), device=y.device) < self.p_uncond, self.num_classes, y)
        elif self.num_classes is None:
            y = None
        x1 = self.to_z(x, u)
        if t is None:
            return cfm_loss(lambda xt, tt: self.velocity(xt, tt, y), x1, self.path)
        xt, ut = self.path.sample(x0, x1, t), self.path.target_velocity(x0, x1, t)
        return (self.velocity(xt, t, y) - ut).pow(2).flatten(1).sum(1).mean()

    def batch_loss(self, batch) -> torch.Tensor:
        """:meth:`loss` of a batch: images, ``(images, labels)`` or ``(images, labels, t, x0, u)``."""
        if isinstance(batch, torch.Tensor):
            return self.loss(batch)
        x, y, *fixed = batch
        return self.loss(x, y, **dict(zip(("t", "x0", "u"), fixed)))

    def guided_velocity(self, z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        """Classifier-free guidance on velocities: ``v(z, t) + scale (v(z, t | y) - v(z, t))``
        (:func:`gencourse.diffusion.guidance_mix`, lesson 06's mix; 0 unconditional, 1 conditional)."""
        from gencourse.diffusion import guidance_mix

        return guidance_mix(self.velocity(z, t, None), self.velocity(z, t, y), scale)

    @staticmethod
    def nfe(method: str, steps: int) -> int:
        """Network evaluations per sample of :meth:`sample`: Euler ``steps``, Heun ``2 steps - 1``."""
        return nfe(method, steps, final_euler=True)

    @torch.no_grad()
    def sample(self, n: int, steps: int = 10, method: str = "heun", *, y=None, guidance: float | None = None,
               continuous: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` in ``[0, 1]`` from ``steps`` ODE steps of ``method`` ("euler" | "heun", whose
        last step is Euler's: :meth:`nfe`), quantized to ``k / 16`` like the data (``continuous=True``: ``y`` itself). Unconditional unless labels
        ``y`` (an int or ``(n,)``) are given; ``guidance``: the scale of :meth:`guided_velocity` (needs ``y``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if method not in SAMPLERS:
            raise ValueError(f"method must be one of {', '.join(SAMPLERS)}, got {method!r}")
        if guidance is not None and (y is None or self.num_classes is None):
            raise ValueError("guidance needs labels y and a class-conditional model (num_classes)")
        was_training = self.training
        self.eval()
        device = self.gauss_mean.device
        labels = self._labels(y, n, device)
        z0 = torch.randn((n, *self.shape), generator=generator).to(device)
        if guidance is None:
            field = lambda z, t: self.velocity(z, t, labels)
        else:
            field = lambda z, t: self.guided_velocity(z, t, labels, guidance)
        if method == "heun":  # the velocity is singular at t = 1 off [-1, 1): the last step is Euler's
            z1 = heun_sample(field, z0, steps, final_euler=True)
        else:
            z1 = euler_sample(field, z0, steps)
        self.train(was_training)
        y01 = ((z1 + 1) / 2).clamp(0, 1 - 1e-6)
        if continuous:
            return y01
        return torch.floor(y01 * self.levels).clamp(0, self.levels - 1) / (self.levels - 1)

    def log_prob_y(self, y: torch.Tensor, steps: int = 48, divergence: str = "exact", probes: int = 1,
                   warp: float = 2.0, differentiable: bool = False) -> torch.Tensor:
        """``log p(y)`` ``(B,)`` of dequantized images ``y (B, C, H, W)`` in ``[0, 1)``: the unconditional ODE's
        log-density of ``z = 2 y - 1`` (:func:`ode_log_prob`, ``steps`` Heun steps, finer near the data with
        ``warp``) plus the rescaling's log-det ``D ln 2``. ``differentiable=True`` keeps the graph back to
        ``y`` (Hutchinson probes only), to train a dequantization noise against it."""
        z = 2 * y - 1
        log_pz = ode_log_prob(self.velocity, z, steps, divergence=divergence, probes=probes, warp=warp,
                              differentiable=differentiable)
        return log_pz + self.num_dims * math.log(2.0)

    def nll(self, x: torch.Tensor, steps: int = 48, divergence: str = "exact", probes: int = 1,
            warp: float = 2.0, batch_size: int = 512) -> torch.Tensor:
        """Discrete NLL bound in nats per image ``(B,)`` of ``x = k / 16`` (one uniform dequantization),
        ``-log p(y) + D ln 17`` with :meth:`log_prob_y` (on the digits model 32 steps come within about a nat
        of 256)."""
        self._check_images(x)
        was_training = self.training
        self.eval()
        out = []
        for xb in x.split(batch_size):
            y = _data.dequantize(xb.to(self.gauss_mean.device), self.levels)  # to_z(xb) = 2 y - 1
            log_py = self.log_prob_y(y, steps, divergence, probes, warp)
            out.append(_data.discrete_nll_bound(-log_py, self.num_dims, self.levels).cpu())
        self.train(was_training)
        return torch.cat(out)


VD_TRAIN_STEPS, VD_EPOCHS = 16, 6  # the learned dequantization noise: ODE steps while it trains, epochs


def variational_dequantization(model: DigitsFlowMatching, *, seed: int = 0, eval_steps: int = 128, probes: int = 2,
                               train_steps: int = VD_TRAIN_STEPS, epochs: int = VD_EPOCHS, quick: bool = False,
                               verbose: bool = False) -> dict:
    """Lesson 05's variational dequantization (:func:`gencourse.flows.fit_dequantizer`) for a trained flow-matching
    model whose density stays fixed: ``q(u | k)`` learns to minimize the bound
    ``E_q[-log p(y) + log q(u | k)] + D ln 17`` through the ODE's log-density (:meth:`DigitsFlowMatching.log_prob_y`,
    ``train_steps`` Heun steps, Hutchinson probes, differentiable), early-stopped on validation. Then the test
    images are scored twice at ``eval_steps`` steps with ``probes`` probes, once with uniform noise and once with
    ``q``: the figure ``d = uniform - learned`` per image is paired over the images.

    -> ``{"nll_test_uniform", "nll_test_variational", "drop", "drop_interval" (95% over test images),
    "train_steps", "eval_steps", "epochs", "best_epoch", "seconds"}``. ``quick=True``: 1 epoch at 2 steps on 64 training
    images, scored on 32 test images at 4 steps (only to check that it runs)."""
    from gencourse.flows import learned_noise_experiment

    train, val, test = (_data.load("digits", split) for split in ("train", "val", "test"))
    x_test = test.images
    if quick:
        subset = lambda d: torch.utils.data.TensorDataset(d.images[:64])  # batches (images,) like the splits'
        train, val, x_test = subset(train), subset(val), x_test[:32]
        train_steps, epochs, eval_steps = 2, 1, 4
    model.eval()
    out = learned_noise_experiment(
        model, seed=seed, epochs=epochs, train=train, val=val, test_images=x_test.to(model.gauss_mean.device),
        uniform_nll=lambda x: model.nll(x, steps=eval_steps, divergence="hutchinson", probes=probes),
        fit_log_prob_y=lambda y: model.log_prob_y(y, train_steps, "hutchinson", 1, differentiable=True),
        eval_log_prob_y=lambda y: model.log_prob_y(y, eval_steps, "hutchinson", probes))
    return {**out, "train_steps": train_steps, "eval_steps": eval_steps}


def _fixed_validation(model: DigitsFlowMatching, dataset, seed: int):
    """The validation split with its draws fixed once (``t``, noise ``x0``, dequantization ``u`` and dropped
    labels), so the validation loss is the same function of the weights at every epoch: a DataLoader of batches
    ``(x, y, t, x0, u)``."""
    g = torch.Generator().manual_seed(seed)
    x, y = dataset.images, dataset.labels.clone()
    t, x0, u = torch.rand(len(x), generator=g), torch.randn(x.shape, generator=g), torch.rand(x.shape, generator=g)
    if model.num_classes is not None:
        y[torch.rand(len(y), generator=g) < model.p_uncond] = model.num_classes
    return fixed_batches(x, y, t, x0, u)


def train_digits(*, epochs: int = 200, seed: int = 0, quick: bool = False, lr: float = 3e-3, batch_size: int = 256,
                 verbose: bool = True, device=None, **model_kwargs):
    """Train a :class:`DigitsFlowMatching` (defaults: the lesson's recipe) on the digits train split.

    The closed-form parts are fitted first (:meth:`DigitsFlowMatching.fit_gaussian`, :meth:`~DigitsFlowMatching.fit_pixels`);
    then the CFM loss with label
    dropout, Adam with a warm-up and cosine decay to 0 for a fixed number of epochs, the final weights kept
    (:func:`~gencourse.train.train_annealed`, as in lesson 06); the validation loss (draws fixed once) is
    recorded every epoch. Returns ``(model, history)`` (losses per image). About 60 s of one CPU core with the
    defaults. ``quick=True``: 3 epochs, only to check that it runs."""
    from gencourse.train import seed_everything

    if quick:
        epochs = min(epochs, 3)
    seed_everything(seed)
    train, val = _data.load("digits", "train"), _data.load("digits", "val")
    model = DigitsFlowMatching(**model_kwargs).fit_gaussian(train.images).fit_pixels(train.images).to(device or "cpu")
    history = train_annealed(model, train, _fixed_validation(model, val, seed), epochs=epochs, lr=lr,
                             batch_size=batch_size, seed=seed, desc="flow matching (digits)", verbose=verbose)
    return model, history


REFLOW_PAIRS, REFLOW_EPOCHS = 4000, 30


def reflow_digits(base: DigitsFlowMatching, *, n_pairs: int = REFLOW_PAIRS, pair_steps: int = 10,
                  epochs: int = REFLOW_EPOCHS, lr: float = 1e-3, seed: int = 0, quick: bool = False,
                  verbose: bool = True):
    """Reflow a trained digits model (Liu et al. 2023): ``n_pairs`` noise draws and their images under the model's
    unconditional ODE (``pair_steps`` Heun steps, the last Euler's; clamped to the data range ``[-1, 1)``), then a
    copy of the model fine-tuned on these pairs (:func:`train_on_pairs`). Returns ``(model, history)``; the pairs'
    cost is ``n_pairs * nfe("heun", pair_steps, final_euler=True)`` network evaluations, in ``history.pair_seconds``."""
    import copy

    from gencourse.train import seed_everything

    if quick:
        n_pairs, epochs = min(n_pairs, 256), min(epochs, 2)
    seed_everything(seed)
    model = copy.deepcopy(base).eval()
    start = time.perf_counter()
    z0 = torch.randn((n_pairs, *model.shape), generator=torch.Generator().manual_seed(seed + 9))
    z0 = z0.to(model.gauss_mean.device)
    with torch.no_grad():
        z1 = heun_sample(lambda z, t: model.velocity(z, t), z0, pair_steps, final_euler=True)
    z1 = z1.clamp(-1, 1 - 1e-6)
    pair_seconds = time.perf_counter() - start
    history = train_on_pairs(model, lambda z, t: model.velocity(z, t), (z0, z1), epochs=epochs, lr=lr, seed=seed,
                             desc="reflow (digits)", verbose=verbose)
    history.pair_seconds = pair_seconds
    model.eval()
    return model, history


MNIST_EPOCHS = 20


def image_model(dataset: str = "digits", **kwargs) -> DigitsFlowMatching:
    """The lesson's model for ``dataset``: the digits recipe's for ``"digits"``; for the 28x28 datasets (``"mnist"``,
    ``"fashion-mnist"``, 256 levels) a plain velocity network, lesson 06's :class:`~gencourse.nets.SmallUNet`, with no
    closed-form part (``skip=False``), as most flow-matching image models are built."""
    from gencourse.data import LEVELS

    if dataset not in LEVELS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(LEVELS)}")
    if dataset == "digits":
        return DigitsFlowMatching(**kwargs)
    return DigitsFlowMatching(**{"shape": (1, 28, 28), "levels": LEVELS[dataset], "network": "unet", "skip": False,
                                 **kwargs})


def train_images(dataset: str = "digits", *, epochs: int | None = None, seed: int = 0, quick: bool = False,
                 lr: float = 1e-3, batch_size: int = 128, subset: int | None = None, device=None,
                 verbose: bool = True, **model_kwargs):
    """Train :func:`image_model` on ``dataset``'s train split; returns ``(model, history)``. ``"digits"`` is
    :func:`train_digits` (the recipe). The 28x28 datasets train the same way (CFM loss, annealed, final weights,
    fixed-draw validation on at most 1000 validation images) for ``MNIST_EPOCHS`` epochs by default; ``subset``:
    only the first ``subset`` training images (a short CPU run); ``quick``: at most 3 epochs."""
    from gencourse.data import ImageDataset, load
    from gencourse.train import seed_everything

    if dataset == "digits":
        return train_digits(epochs=epochs or 200, seed=seed, quick=quick, device=device, verbose=verbose,
                            **model_kwargs)
    epochs = min(epochs or MNIST_EPOCHS, 3) if quick else (epochs or MNIST_EPOCHS)
    seed_everything(seed)
    train, val = load(dataset, "train"), load(dataset, "val")
    n_val = min(1000, subset or 1000)
    val = ImageDataset(val.images[:n_val], val.labels[:n_val], name=dataset, split="val")
    model = image_model(dataset, **model_kwargs).to(device or "cpu")
    data = ImageDataset(train.images[:subset], train.labels[:subset], name=dataset, split="train")
    history = train_annealed(model, data, _fixed_validation(model, val, seed), epochs=epochs, lr=lr,
                             batch_size=batch_size, seed=seed, desc=f"flow matching ({dataset})", verbose=verbose)
    return model, history


# ----------------------------------------------------------------------------------------------
# 2D helper
# ----------------------------------------------------------------------------------------------


def fit_2d(points: torch.Tensor, val_points: torch.Tensor | None = None, *, path="linear", epochs: int = 80,
           coupling: str = "independent", pairs: tuple | None = None, init: dict | None = None,
           hidden: int = 128, depth: int = 3, lr: float = 3e-3, batch_size: int = 256, seed: int = 0,
           verbose: bool = True):
    """Train a velocity network (:class:`~gencourse.nets.MLPDenoiser`, lesson 06's denoiser) on 2D points
    ``(N, 2)`` with the CFM loss (eq. 3), as lesson 06 trains diffusion: Adam with warm-up and cosine decay for a
    fixed number of epochs, the final weights kept (:func:`~gencourse.train.train_annealed`), the validation loss
    with its times and noise drawn once. Returns ``(net, history)``; ``net(x, t)`` is the velocity.

    ``coupling``: ``"independent"`` noise for each batch, or ``"ot"``, the noise of each batch paired with the
    data by :func:`ot_pairs`. ``pairs``: fixed ``(x0, x1)`` pairs to train on instead of ``points`` (reflow, from
    :func:`reflow_pairs`). ``init``: a ``state_dict`` to start from (fine-tuning a trained model).
    """
    from gencourse.train import seed_everything

    if not isinstance(points, torch.Tensor) or points.dim() != 2:
        raise ValueError(f"points must be a tensor (N, D), got {getattr(points, 'shape', type(points))}")
    if coupling not in ("independent", "ot"):
        raise ValueError(f"coupling must be 'independent' or 'ot', got {coupling!r}")
    path = get_path(path)
    seed_everything(seed)
    net = MLPDenoiser(points.shape[1], hidden, depth)
    if init is not None:
        net.load_state_dict(init)
    g = torch.Generator().manual_seed(seed + 1)
    val = None
    if val_points is not None:
        val = fixed_batches(val_points, torch.rand(len(val_points), generator=g), torch.randn(val_points.shape, generator=g))

    def loss_fn(batch):
        if isinstance(batch, torch.Tensor):                      # training data: draw the noise (and pair it)
            x0 = torch.randn_like(batch)
            return cfm_loss(net, batch, path, x0=ot_pairs(x0, batch) if coupling == "ot" else x0)
        if len(batch) == 2:                                      # fixed pairs (x1, x0): reflow
            return cfm_loss(net, batch[0], path, x0=batch[1])
        x1, t, x0 = batch                                        # validation: every draw fixed
        return (net(path.sample(x0, x1, t), t) - path.target_velocity(x0, x1, t)).pow(2).sum(1).mean()

    train_data = points if pairs is None else torch.utils.data.TensorDataset(pairs[1], pairs[0])
    desc = f"flow matching ({path.name} path, {coupling} coupling)" if pairs is None else "reflow"
    history = train_annealed(net, train_data, val, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                             loss_fn=loss_fn, desc=desc, verbose=verbose)
    return net, history


def train_on_pairs(model: nn.Module, velocity_fn, pairs: tuple, *, one_step: bool = False, epochs: int = 30,
                   lr: float = 1e-3, batch_size: int = 256, seed: int = 0, desc: str | None = None,
                   verbose: bool = True):
    """Fine-tune ``model`` (whose velocity is ``velocity_fn(x, t)``) on fixed pairs ``(x0, x1)`` of noise and
    samples, e.g. from :func:`reflow_pairs`; returns the :class:`~gencourse.train.History`.

    ``one_step=False`` (reflow, Liu et al. 2023): the CFM loss (eq. 3) with each ``x1`` paired with its own ``x0``.
    ``one_step=True`` (plain distillation, Luhman & Luhman 2021): the regression ``|| v(x0, 0) - (x1 - x0) ||^2``,
    so that one Euler step, ``x0 + v(x0, 0)``, jumps to the teacher's sample.
    """
    x0, x1 = pairs
    if x0.shape != x1.shape:
        raise ValueError(f"the pairs must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    path = LinearPath()

    def loss_fn(batch):
        x1b, x0b = batch
        if one_step:
            return (velocity_fn(x0b, torch.zeros(len(x0b), device=x0b.device)) - (x1b - x0b)).pow(2).flatten(1).sum(1).mean()
        return cfm_loss(velocity_fn, x1b, path, x0=x0b)

    desc = desc or ("distillation (one step)" if one_step else "reflow")
    return train_annealed(model, torch.utils.data.TensorDataset(x1, x0), None, epochs=epochs, lr=lr,
                          batch_size=batch_size, seed=seed, loss_fn=loss_fn, desc=desc, verbose=verbose)


def distill_2d(pairs: tuple, *, epochs: int = 30, init: dict | None = None, hidden: int = 128, depth: int = 3,
               lr: float = 1e-3, batch_size: int = 256, seed: int = 0, verbose: bool = True):
    """Plain distillation on 2D pairs ``(x0, x1)``: a fresh :class:`~gencourse.nets.MLPDenoiser` (or one started
    from ``init``) trained by :func:`train_on_pairs` with ``one_step=True``; one Euler step of it is the distilled
    map. Returns ``(net, history)``."""
    from gencourse.train import seed_everything

    seed_everything(seed)
    net = MLPDenoiser(pairs[0].shape[1], hidden, depth)
    if init is not None:
        net.load_state_dict(init)
    history = train_on_pairs(net, net, pairs, one_step=True, epochs=epochs, lr=lr, batch_size=batch_size,
                             seed=seed, verbose=verbose)
    return net, history


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
