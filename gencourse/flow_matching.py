"""Flow matching: learn the velocity field of an ODE that carries noise to data (Lipman et al. 2023;
Liu et al. 2023, rectified flow; Albergo & Vanden-Eijnden 2023).

Conventions: time ``t`` runs from 0 (noise, ``x_0 ~ N(0, I)``) to 1 (data, ``x_1 ~ p_data``).

- A **probability path** joins a noise draw ``x_0`` and a data point ``x_1``:
  ``x_t = alpha_t x_1 + sigma_t x_0`` (eq. 1), with conditional target velocity
  ``u_t(x_t | x_0, x_1) = d x_t / dt = alpha'_t x_1 + sigma'_t x_0`` (eq. 2).
  The linear (rectified) path has ``alpha_t = t, sigma_t = 1 - t``, so ``u_t = x_1 - x_0``; the Gaussian
  path of variance-preserving diffusion has ``alpha_t = sin(pi t / 2), sigma_t = cos(pi t / 2)``
  (``alpha_t^2 + sigma_t^2 = 1``, the cosine schedule in continuous time).
- The **conditional flow-matching loss** ``E_{t, x_0, x_1} || v_theta(x_t, t) - u_t(x_t | x_0, x_1) ||^2``
  (eq. 3) has the same gradient as the intractable marginal loss against
  ``u_t(x) = E[u_t(x_t | x_0, x_1) | x_t = x]``: the two differ by a constant independent of ``theta``.
- **Sampling** integrates ``dx/dt = v_theta(x, t)`` from ``t = 0`` to 1 (Euler or Heun).
- **Likelihood** by the instantaneous change of variables (Chen et al. 2018):
  ``log p_1(x_1) = log N(x_0; 0, I) - int_0^1 div v_theta(x_t, t) dt`` (eq. 4), integrated from the data
  backwards to the noise; the divergence exactly (one autograd pass per dimension) or with Hutchinson's
  estimator ``E_eps[eps^T (dv/dx) eps]``.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from gencourse import data as _data

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
    """``x_t = alpha_t x_1 + sigma_t x_0`` (eq. 1) and ``u_t = alpha'_t x_1 + sigma'_t x_0`` (eq. 2).

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


def cfm_loss(velocity_fn, x1: torch.Tensor, path="linear", *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The conditional flow-matching loss (eq. 3), a scalar: the batch mean of
    ``|| v(x_t, t) - u_t(x_t | x_0, x_1) ||^2`` summed over dimensions, with ``t ~ U[0, 1]``,
    ``x_0 ~ N(0, I)``. ``velocity_fn(x (B, ...), t (B,)) -> (B, ...)``; ``x1: (B, ...)`` data.
    """
    if not isinstance(x1, torch.Tensor) or x1.dim() < 2:
        raise ValueError(f"x1 must be a data batch of shape (B, ...), got {getattr(x1, 'shape', type(x1))}")
    path = get_path(path)
    x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype).to(x1.device)
    t = torch.rand(len(x1), generator=generator, dtype=x1.dtype).to(x1.device)
    xt, ut = path.sample(x0, x1, t), path.target_velocity(x0, x1, t)
    return (velocity_fn(xt, t) - ut).pow(2).flatten(1).sum(1).mean()


# ----------------------------------------------------------------------------------------------
# The velocity network
# ----------------------------------------------------------------------------------------------


def time_embedding(t: torch.Tensor, dim: int = 32, max_period: float = 1000.0) -> torch.Tensor:
    """Sinusoidal features of ``t (B,)`` in [0, 1] -> ``(B, dim)``: ``[cos(w_k t), sin(w_k t)]`` with
    ``w_k = 100 max_period^{-k / (dim/2)}`` (the transformer's positional code on 100 t)."""
    half = dim // 2
    freqs = 100.0 * torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    angles = t[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class VelocityNet(nn.Module):
    """``v_theta(x, t)``: an MLP on the flattened ``x (B, ...)`` and a time embedding, output like ``x``.

    Each hidden layer gets the (projected) time features added: ``h <- SiLU(W h + b + E_l(emb(t)))``.
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, time_dim: int = 32):
        super().__init__()
        if dim <= 0 or hidden <= 0 or depth <= 0:
            raise ValueError("dim, hidden and depth must be positive integers")
        self.dim, self.time_dim = dim, time_dim
        self.inp = nn.Linear(dim, hidden)
        self.time = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU())
        self.time_proj = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, dim)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        emb = self.time(time_embedding(t.expand(len(x)) if t.dim() == 0 else t, self.time_dim))
        h = self.act(self.inp(x.flatten(1)) + emb)
        for layer, proj in zip(self.layers, self.time_proj):
            h = h + self.act(layer(h) + proj(emb))
        return self.out(h).view(shape)


class _ResBlock(nn.Module):
    """``x + conv(SiLU(GN(conv(SiLU(GN(x))) + shift(emb)))))``: a residual block whose time features shift
    every channel."""

    def __init__(self, c: int, emb_dim: int):
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(8, c), nn.GroupNorm(8, c)
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.shift = nn.Linear(emb_dim, c)
        self.act = nn.SiLU()

    def forward(self, x, emb):
        h = self.conv1(self.act(self.norm1(x))) + self.shift(emb)[:, :, None, None]
        return x + self.conv2(self.act(self.norm2(h)))


class ConvVelocityNet(nn.Module):
    """``v_theta(x, t)`` for small images ``x (B, C, H, W)`` (H, W even): a two-level U-Net, residual blocks at
    full and half resolution, the skip joined by concatenation, time features added in every block."""

    def __init__(self, channels: int = 1, width: int = 32, time_dim: int = 64):
        super().__init__()
        if channels <= 0 or width <= 0 or width % 8:
            raise ValueError("channels must be positive and width a positive multiple of 8")
        self.time_dim = time_dim
        emb = 4 * width
        self.time = nn.Sequential(nn.Linear(time_dim, emb), nn.SiLU(), nn.Linear(emb, emb), nn.SiLU())
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.block1 = _ResBlock(width, emb)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.mid1, self.mid2 = _ResBlock(2 * width, emb), _ResBlock(2 * width, emb)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.merge = nn.Conv2d(2 * width, width, 1)
        self.block2 = _ResBlock(width, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(time_embedding(t.expand(len(x)) if t.dim() == 0 else t, self.time_dim))
        h1 = self.block1(self.inp(x), emb)
        h = self.mid2(self.mid1(self.down(h1), emb), emb)
        h = self.block2(self.merge(torch.cat([self.up(h), h1], 1)), emb)
        return self.out(h)


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
def heun_sample(velocity_fn, x0: torch.Tensor, steps: int, *, return_trajectory: bool = False):
    """Heun's method (explicit trapezoid, second order) from ``t = 0`` to 1, NFE = ``2 steps``:
    ``x' = x_t + h v(x_t, t)``, ``x_{t+h} = x_t + h/2 (v(x_t, t) + v(x', t + h))``."""
    steps = _check_steps(steps)
    x, h, traj = x0, 1.0 / steps, [x0]
    for i in range(steps):
        t = torch.full((len(x),), i * h, dtype=x.dtype, device=x.device)
        v = velocity_fn(x, t)
        v_next = velocity_fn(x + h * v, t + h)
        x = x + 0.5 * h * (v + v_next)
        traj.append(x)
    return (x, traj) if return_trajectory else x


SAMPLERS = {"euler": euler_sample, "heun": heun_sample}


def nfe(method: str, steps: int) -> int:
    """Network evaluations per sample of a sampler: Euler ``steps``, Heun ``2 steps``."""
    return steps * (2 if method == "heun" else 1)


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


def divergence_hutchinson(velocity_fn, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor):
    """``(v, eps^T (dv/dx) eps)``: Hutchinson's unbiased estimate of ``div v`` ``(B,)`` for probes ``eps``
    with ``E[eps eps^T] = I`` (Rademacher or Gaussian), one vector-Jacobian product."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = velocity_fn(x, t)
        g, = torch.autograd.grad(v, x, grad_outputs=eps)
    return v.detach(), (g * eps).flatten(1).sum(1)


def ode_log_prob(velocity_fn, x1: torch.Tensor, steps: int = 32, *, divergence: str = "exact",
                 probes: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """``log p_1(x_1)`` ``(B,)`` of points ``x1 (B, ...)`` under the flow of ``velocity_fn`` (eq. 4):
    integrate ``dx/dt = v`` and ``d log p / dt = -div v`` backwards from ``t = 1`` to 0 with Heun's method
    (``steps`` steps), then ``log p_1(x_1) = log N(x_0; 0, I) - int_0^1 div v dt``.

    ``divergence="exact"`` (``D`` autograd passes per evaluation) or ``"hutchinson"`` (``probes`` Rademacher
    probes, drawn once and kept along the path; an unbiased estimate of the divergence, so the log-density
    is estimated with noise). The result is an estimate of the model's log-density that converges as
    ``steps`` grows.
    """
    steps = _check_steps(steps)
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if not isinstance(x1, torch.Tensor) or x1.dim() < 2:
        raise ValueError(f"x1 must be a batch of shape (B, ...), got {getattr(x1, 'shape', type(x1))}")
    if divergence == "hutchinson":
        shape = (probes, *x1.shape)
        eps = (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(x1)

        def field(x, t):
            vs, divs = zip(*(divergence_hutchinson(velocity_fn, x, t, e) for e in eps))
            return vs[0], torch.stack(divs).mean(0)
    else:
        def field(x, t):
            return divergence_exact(velocity_fn, x, t)

    x, h = x1.detach(), 1.0 / steps
    integral = torch.zeros(len(x1), dtype=x1.dtype, device=x1.device)  # int_0^1 div v dt
    for i in range(steps, 0, -1):
        t = torch.full((len(x),), i * h, dtype=x.dtype, device=x.device)
        v, d = field(x, t)
        x_pred = x - h * v
        v2, d2 = field(x_pred, t - h)
        x = x - 0.5 * h * (v + v2)
        integral = integral + 0.5 * h * (d + d2)
    d = x[0].numel()
    log_p0 = -0.5 * x.flatten(1).pow(2).sum(1) - 0.5 * d * math.log(2 * math.pi)
    return (log_p0 - integral).detach()


# ----------------------------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------------------------


class DigitsFlowMatching(nn.Module):
    """Flow matching on 8x8 digits with 17 levels.

    Data: ``x = k / 16`` -> dequantized ``y = (k + u) / 17`` in ``[0, 1)`` -> ``z = 2 y - 1`` in ``[-1, 1)``,
    the ``t = 1`` end of a linear path from ``N(0, I)``. ``sample(n, steps)`` integrates the ODE and quantizes
    ``k = floor(17 y)``. ``nll(x)``: ``-log p(y) + D ln 17`` with ``log p(y) = log p_z(2y - 1) + D ln 2``,
    ``log p_z`` from :func:`ode_log_prob`: an ODE estimate of a dequantization bound, ``likelihood = "bound"``.
    """

    likelihood = "bound"

    def __init__(self, shape=(1, 8, 8), levels: int = 17, width: int = 16, time_dim: int = 64,
                 path: str = "linear", net: str = "conv", hidden: int = 512, depth: int = 3):
        super().__init__()
        self.shape, self.levels = tuple(shape), levels
        self.num_dims = math.prod(self.shape)
        self.path = get_path(path)
        if net == "conv":
            self.net = ConvVelocityNet(self.shape[0], width, time_dim)
        elif net == "mlp":
            self.net = VelocityNet(self.num_dims, hidden, depth, time_dim)
        else:
            raise ValueError(f"net must be 'conv' or 'mlp', got {net!r}")

    def _check_images(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be images of shape (B, {', '.join(map(str, self.shape))}), got {got}")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"x must lie in [0, 1] (k / {self.levels - 1})")

    def velocity(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``v_theta(z, t)``: ``z (B, C, H, W)``, ``t (B,)`` -> ``(B, C, H, W)``."""
        return self.net(z, t)

    def to_z(self, x: torch.Tensor) -> torch.Tensor:
        """Dequantize ``x = k/16`` and map to ``z = 2 y - 1``."""
        return 2 * _data.dequantize(x, self.levels) - 1

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The conditional flow-matching loss (eq. 3) on dequantized, rescaled images, per image."""
        self._check_images(x)
        return cfm_loss(self.velocity, self.to_z(x), self.path)

    @torch.no_grad()
    def sample(self, n: int, steps: int = 10, method: str = "heun", *, continuous: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` in ``[0, 1]`` from ``steps`` ODE steps of ``method`` ("euler" | "heun"),
        quantized to ``k / 16`` like the data (``continuous=True``: ``y`` itself)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if method not in SAMPLERS:
            raise ValueError(f"method must be one of {', '.join(SAMPLERS)}, got {method!r}")
        p = next(self.parameters())
        z0 = torch.randn((n, *self.shape), generator=generator).to(p)
        y = ((SAMPLERS[method](self.velocity, z0, steps) + 1) / 2).clamp(0, 1 - 1e-6)
        if continuous:
            return y
        return torch.floor(y * self.levels).clamp(0, self.levels - 1) / (self.levels - 1)

    def nll(self, x: torch.Tensor, steps: int = 16, divergence: str = "exact", probes: int = 1,
            batch_size: int = 512) -> torch.Tensor:
        """Discrete NLL bound in nats per image ``(B,)`` of ``x = k / 16`` (one dequantization), estimated
        by integrating the ODE backwards (:func:`ode_log_prob`, ``steps`` Heun steps)."""
        self._check_images(x)
        out = []
        for xb in x.split(batch_size):
            z = self.to_z(xb)
            log_pz = ode_log_prob(self.velocity, z, steps, divergence=divergence, probes=probes)
            log_py = log_pz + self.num_dims * math.log(2.0)
            out.append(_data.discrete_nll_bound(-log_py, self.num_dims, self.levels))
        return torch.cat(out)


def train_digits(*, epochs: int = 40, seed: int = 0, quick: bool = False, lr: float = 2e-3, batch_size: int = 100,
                 patience: int | None = None, max_seconds: float | None = None, verbose: bool = True, device=None,
                 ema_decay: float = 0.0, **model_kwargs):
    """Train a :class:`DigitsFlowMatching` on the digits train split with the CFM loss, keeping the
    weights of the best validation epoch (cosine-decayed learning rate; ``ema_decay > 0`` swaps in an
    exponential moving average of the weights at the end). Returns ``(model, history)`` (losses per image).
    About 25 s of one CPU core with the defaults. ``quick=True``: a tiny model for two epochs (a smoke test)."""
    from gencourse.train import fit, seed_everything

    if quick:
        epochs = min(epochs, 2)
        model_kwargs = {"width": 8, **model_kwargs}
    seed_everything(seed)
    train, val = _data.load("digits", "train"), _data.load("digits", "val")
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = DigitsFlowMatching(**model_kwargs).to(device)
    optimizer = EMAAdam(model.parameters(), lr=lr, total_steps=epochs * math.ceil(len(train) / batch_size),
                        ema_decay=ema_decay)
    history = fit(model, lambda batch: model.loss(batch[0]), train, val_data=val, epochs=epochs, lr=lr,
                  optimizer=optimizer, batch_size=batch_size, patience=patience, seed=seed, grad_clip=1.0,
                  max_seconds=max_seconds, desc="flow matching on digits", verbose=verbose)
    if ema_decay:
        optimizer.copy_ema_to_params()
        history.ema_val_loss = _eval_loss(model, val, seed)
        if verbose:
            print(f"exponential moving average of the weights: validation loss {history.ema_val_loss:.2f}")
    return model, history


def _eval_loss(model, dataset, seed):
    from gencourse.train import evaluate, seed_everything

    seed_everything(seed)
    return evaluate(model, lambda batch: model.loss(batch[0]), dataset)


class EMAAdam(torch.optim.Adam):
    """Adam with a cosine-decayed learning rate (one tick per step, over ``total_steps``) that keeps an
    exponential moving average of the weights, ``theta_ema <- d theta_ema + (1 - d) theta`` (``d = ema_decay``);
    averaged weights give smoother velocity fields and better samples."""

    def __init__(self, params, lr, total_steps, ema_decay=0.999):
        super().__init__(params, lr=lr)
        self.base_lr, self.total_steps, self.ema_decay, self.ticks = lr, max(total_steps, 1), ema_decay, 0
        self.ema = [p.detach().clone() for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        out = super().step(closure)
        self.ticks += 1
        for g in self.param_groups:
            g["lr"] = 0.5 * self.base_lr * (1 + math.cos(math.pi * min(self.ticks / self.total_steps, 1.0)))
        d = min(self.ema_decay, (1 + self.ticks) / (10 + self.ticks))  # warm-up of the average
        params = [p for g in self.param_groups for p in g["params"]]
        torch._foreach_lerp_(self.ema, [p.detach() for p in params], 1 - d)
        return out

    @torch.no_grad()
    def copy_ema_to_params(self):
        for e, p in zip(self.ema, [p for g in self.param_groups for p in g["params"]]):
            p.copy_(e)


# ----------------------------------------------------------------------------------------------
# 2D helper
# ----------------------------------------------------------------------------------------------


def fit_2d(points: torch.Tensor, val_points: torch.Tensor | None = None, *, path="linear", epochs: int = 200,
           hidden: int = 128, depth: int = 3, lr: float = 3e-3, batch_size: int = 512, seed: int = 0,
           verbose: bool = True):
    """Train a :class:`VelocityNet` on 2D points ``(N, 2)`` with the CFM loss. Returns ``(net, history)``."""
    from gencourse.train import fit, seed_everything

    if not isinstance(points, torch.Tensor) or points.dim() != 2:
        raise ValueError(f"points must be a tensor (N, D), got {getattr(points, 'shape', type(points))}")
    seed_everything(seed)
    net = VelocityNet(points.shape[1], hidden, depth)
    path = get_path(path)
    history = fit(net, lambda x: cfm_loss(net, x, path), points, val_data=val_points, epochs=epochs, lr=lr,
                  batch_size=batch_size, seed=seed, desc=f"flow matching ({path.name} path)", verbose=verbose)
    return net, history


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
