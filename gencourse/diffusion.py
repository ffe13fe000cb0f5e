"""Denoising diffusion (DDPM, DDIM) with classifier-free guidance.

    model = ImageDiffusion(MLPDenoiser(64, num_classes=10), NoiseSchedule.cosine(200), (1, 8, 8), num_classes=10)
    model.fit_gaussian(train.images)                           # the linear part of eps_theta (Diffusion.eps)
    history = train_annealed(model, train, epochs=200, lr=2e-3)   # noise-prediction regression (gencourse.train)
    images = model.sample(1000)                                # ancestral (DDPM), unguided, in [0, 1]
    images = model.sample(1000, steps=20)                      # DDIM with 20 network evaluations
    images = model.sample(100, y=3, guidance=3.0, steps=20)    # classifier-free guidance towards "3"
    model, history = train_digits()                            # the lesson's recipe, all of the above

Conventions. The code index ``t = 0..T-1`` is the paper's step ``t + 1`` (Ho et al. 2020). With
``beta_t`` the variance added at step ``t``, ``alpha_t = 1 - beta_t`` and ``abar_t = prod_{s<=t} alpha_s``:

- forward process, in closed form:    ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, ``eps ~ N(0, I)``
- the network predicts ``eps`` from ``(x_t, t)``; its loss is ``E ||eps - eps_theta(x_t, t)||^2``
- the score of ``q(x_t)`` is ``-E[eps | x_t] / sqrt(1 - abar_t)``, so ``eps_theta`` is a scaled score.

Image models work on pixels scaled to ``[-1, 1]``; ``sample`` returns images in ``[0, 1]``.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from gencourse.parameterization import convert, from_x0_eps
from gencourse.nets import Conditioning, MLPDenoiser, SmallUNet, timestep_embedding  # noqa: F401 (the denoisers)
from gencourse.train import CosineAdam, fixed_batches, train_annealed  # noqa: F401 (the training loop)


# ----------------------------------------------------------------------------------------------
# The noise schedule and the forward process
# ----------------------------------------------------------------------------------------------

SKIPS = ("gaussian", "pixels", "none")
TIME_SAMPLING = ("uniform", "likelihood")
PREDICTIONS = ("eps", "x0", "v")


class NoiseSchedule:
    """Variances ``betas (T,)`` of the forward chain ``q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)``.

    Attributes (float32 tensors of length ``T``): ``betas``, ``alphas = 1 - betas``,
    ``alphas_cumprod = abar_t = prod_{s<=t} alphas_s``. Index ``t`` is the paper's step ``t + 1``.
    Build one with :meth:`linear` or :meth:`cosine`.
    """

    def __init__(self, betas):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or len(betas) < 1:
            raise ValueError(f"betas must be a 1-D tensor of length T >= 1, got shape {tuple(betas.shape)}")
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError("every beta must lie in (0, 1)")
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, 0)
        self.betas = betas.float()
        self.alphas = alphas.float()
        self.alphas_cumprod = abar.float()
        # abar of the step before each index; before index 0 lies the clean data (abar = 1).
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.alphas_cumprod_prev = abar_prev.float()
        # q(x_{t-1} | x_t, x0) = N(c0 x0 + ct x_t, var), in float64 so that index 0 is exactly (x0, 0)
        c0 = abar_prev.sqrt() * betas / (1 - abar)
        ct = alphas.sqrt() * (1 - abar_prev) / (1 - abar)
        c0[0], ct[0] = 1.0, 0.0
        self._post = (c0.float(), ct.float(), (betas * (1 - abar_prev) / (1 - abar)).float())
        self.cosine_s = None  # set by cosine(): the schedule then also exists in continuous time (abar_at)

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def linear(cls, T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        """DDPM's linear schedule, scaled for ``T`` steps (Nichol & Dhariwal 2021):
        ``betas = linspace(beta_start * 1000 / T, beta_end * 1000 / T, T)``; at ``T = 1000`` it is DDPM's."""
        T = _check_T(T)
        scale = 1000.0 / T
        if not 0 < beta_start <= beta_end or beta_end * scale >= 1:
            raise ValueError(f"need 0 < beta_start <= beta_end and beta_end * 1000 / T < 1; got "
                             f"beta_start={beta_start}, beta_end={beta_end}, T={T}")
        return cls(torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64))

    @classmethod
    def cosine(cls, T: int, s: float = 0.008) -> "NoiseSchedule":
        """Nichol & Dhariwal's cosine schedule: ``abar(t) = f(t) / f(0)``, ``f(t) = cos^2((t/T + s)/(1 + s) * pi/2)``,
        ``beta_t = min(1 - abar(t+1) / abar(t), 0.999)`` for index ``t`` (the paper's step ``t + 1``)."""
        T = _check_T(T)
        if s < 0:
            raise ValueError(f"s must be >= 0, got {s}")
        steps = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos((steps / T + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        schedule = cls(betas)
        schedule.cosine_s = s
        return schedule

    def abar_at(self, tau: torch.Tensor) -> torch.Tensor:
        """The cosine schedule in continuous time: ``abar(tau) = f(tau) / f(0)`` for ``tau (B,)`` in ``[0, 1]``
        (index ``t`` of ``cosine(T)`` sits at ``tau = (t + 1) / T``), in float64, kept inside ``[1e-9, 1 - 1e-12]``."""
        if self.cosine_s is None:
            raise ValueError("continuous time needs the cosine schedule (NoiseSchedule.cosine)")
        tau = torch.as_tensor(tau, dtype=torch.float64)
        if ((tau < 0) | (tau > 1)).any():
            raise ValueError("tau must lie in [0, 1]")
        s = self.cosine_s
        f = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2
        return (f / math.cos(s / (1 + s) * math.pi / 2) ** 2).clamp(1e-9, 1 - 1e-12)

    def tau_of_abar(self, abar: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`abar_at` (float64)."""
        if self.cosine_s is None:
            raise ValueError("continuous time needs the cosine schedule (NoiseSchedule.cosine)")
        s = self.cosine_s
        f = torch.as_tensor(abar, dtype=torch.float64) * math.cos(s / (1 + s) * math.pi / 2) ** 2
        return (torch.arccos(f.sqrt()) * 2 / math.pi * (1 + s) - s).clamp(0, 1)

    # -- facts about the schedule ----------------------------------------------------------

    @property
    def T(self) -> int:
        return len(self.betas)

    def __len__(self) -> int:
        return self.T

    def __repr__(self) -> str:
        return (f"NoiseSchedule(T={self.T}, beta {self.betas[0]:.3g}..{self.betas[-1]:.3g}, "
                f"abar_T-1 = {self.alphas_cumprod[-1]:.2g})")

    def snr(self, t=None) -> torch.Tensor:
        """Signal-to-noise ratio ``abar_t / (1 - abar_t)`` at indices ``t`` (all ``T`` when None)."""
        abar = self.alphas_cumprod if t is None else self.alphas_cumprod[self._index(t)]
        return abar / (1 - abar)

    def posterior_variance(self) -> torch.Tensor:
        """``beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)`` for every index ``(T,)``; 0 at index 0."""
        return self._post[2].clone()

    # -- the forward process and its posterior ----------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``: a draw of ``q(x_t | x_0)`` (Ho et al. eq. 4).

        ``x0, noise: (B, ...)``, ``t: LongTensor (B,)`` of indices in ``0..T-1`` -> ``(B, ...)``.
        """
        t = self._index(t, len(x0))
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
        abar = _per_example(self.alphas_cumprod[t], x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def posterior_mean_variance(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """Mean and variance of ``q(x_{t-1} | x_t, x_0)`` (Ho et al. eq. 6-7): the step before index ``t``.

        ``mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t``,
        ``variance = beta_t (1 - abar_{t-1}) / (1 - abar_t)``. At index 0 the step before is the clean data
        (``abar_{-1} = 1``): mean ``x0``, variance 0. Shapes: ``x0, xt (B, ...)``, ``t (B,)`` -> ``mean (B, ...)``,
        ``variance (B, 1, ...)``, broadcastable to ``x0``.
        """
        if xt.shape != x0.shape:
            raise ValueError(f"xt must have x0's shape {tuple(x0.shape)}, got {tuple(xt.shape)}")
        t = self._index(t, len(x0))
        c0, ct, variance = (_per_example(c[t], x0) for c in self._post)
        return c0 * x0 + ct * xt, variance

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert :meth:`q_sample` for ``x0`` given the noise: ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
        abar = _per_example(self.alphas_cumprod[self._index(t, len(xt))], xt)
        return (xt - (1 - abar).sqrt() * eps) / abar.sqrt()

    def _index(self, t, batch: int | None = None) -> torch.Tensor:
        t = torch.as_tensor(t)
        if t.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16) or t.dtype == torch.bool:
            raise ValueError(f"t must hold integer step indices (LongTensor), got dtype {t.dtype}")
        if batch is not None and t.shape != (batch,):
            raise ValueError(f"t must be a LongTensor of shape ({batch},), one index per example; got {tuple(t.shape)}")
        if ((t < 0) | (t >= self.T)).any():
            raise ValueError(f"step indices t must lie in 0..{self.T - 1}")
        return t.long().cpu()


def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an integer number of steps >= 2, got {T!r}")
    return T


def _per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values (B,)`` -> ``(B, 1, ..., 1)`` on ``like``'s device and dtype, to broadcast over ``like (B, ...)``."""
    return values.to(like.device, like.dtype).view(-1, *([1] * (like.dim() - 1)))


# ----------------------------------------------------------------------------------------------
# Reverse steps: ancestral (DDPM) and DDIM, and the guidance mix
# ----------------------------------------------------------------------------------------------

def ddpm_step(schedule: NoiseSchedule, eps: torch.Tensor, xt: torch.Tensor, t: int,
              noise: torch.Tensor | None = None, *, clip: float | None = None) -> torch.Tensor:
    """One ancestral step ``x_t -> x_{t-1}`` of ``p(x_{t-1} | x_t) = N(mu, beta~_t I)`` (Ho et al. alg. 2).

    ``mu`` is the posterior mean of ``q(x_{t-1} | x_t, x0_hat)`` at the predicted clean sample
    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``, which is
    ``(x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)``. The variance is the posterior's ``beta~_t``
    (0 at ``t = 0``, which returns the mean). ``eps, xt: (B, ...)``; ``t``: an int; ``noise`` like ``xt``
    (drawn when None). ``clip``: clamp ``x0_hat`` to ``[-clip, clip]`` first (Ho et al.'s sampler clips to the
    data range, ``clip=1``); None leaves it as predicted.
    """
    t = _check_step(schedule, t)
    tt = torch.full((len(xt),), t, dtype=torch.long)
    x0_hat = _clipped(schedule.predict_x0(xt, tt, eps), clip)
    mean, variance = schedule.posterior_mean_variance(x0_hat, xt, tt)
    if t == 0:
        return mean
    noise = torch.randn_like(xt) if noise is None else noise
    return mean + variance.sqrt() * noise


def ddim_step(schedule: NoiseSchedule, eps: torch.Tensor, xt: torch.Tensor, t: int, t_prev: int, eta: float = 0.0,
              noise: torch.Tensor | None = None, *, clip: float | None = None) -> torch.Tensor:
    """The DDIM update from index ``t`` to ``t_prev`` (Song et al. 2021, eq. 12):

    ``x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma noise`` with
    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` and (eq. 16)
    ``sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)``.
    ``t_prev < 0`` means the clean sample (``abar_prev = 1``). ``eta = 0`` is deterministic; ``eta = 1`` with
    ``t_prev = t - 1`` is the ancestral step. With ``eta = 0``, ``t_prev > t`` runs the update forward
    (DDIM inversion). ``eps, xt: (B, ...)``; ``noise`` like ``xt`` (drawn when needed and None). ``clip``: clamp
    ``x0_hat`` to ``[-clip, clip]`` and use the noise it implies, ``(x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)``.
    """
    t = _check_step(schedule, t)
    if not isinstance(t_prev, int) or t_prev >= schedule.T or t_prev == t:
        raise ValueError(f"t_prev must be an int index < T = {schedule.T}, different from t = {t} (< 0 = clean)")
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0 = DDIM, 1 = DDPM-like), got {eta}")
    if eta > 0 and t_prev > t:
        raise ValueError("a stochastic step (eta > 0) must go backwards in time: t_prev < t")
    abar_t = float(schedule.alphas_cumprod[t])
    abar_prev = 1.0 if t_prev < 0 else float(schedule.alphas_cumprod[t_prev])
    x0_hat = (xt - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)
    if clip is not None:
        x0_hat = _clipped(x0_hat, clip)
        eps = (xt - math.sqrt(abar_t) * x0_hat) / math.sqrt(1 - abar_t)
    sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar_t)) * math.sqrt(max(1 - abar_t / abar_prev, 0.0))
    x_prev = math.sqrt(abar_prev) * x0_hat + math.sqrt(max(1 - abar_prev - sigma**2, 0.0)) * eps
    if sigma > 0:
        x_prev = x_prev + sigma * (torch.randn_like(xt) if noise is None else noise)
    return x_prev


def _clipped(x0_hat: torch.Tensor, clip: float | None) -> torch.Tensor:
    if clip is None:
        return x0_hat
    if not clip > 0:
        raise ValueError(f"clip must be a positive number (1 = the data range [-1, 1]) or None, got {clip!r}")
    return x0_hat.clamp(-clip, clip)


def class_labels(y, n: int, num_classes: int | None, device) -> torch.Tensor | None:
    """Labels ``(n,)`` for a model with ``num_classes`` classes and the extra "no label" class ``num_classes``
    (label dropout, classifier-free guidance): ``y`` None -> all "no label"; an int -> that label ``n`` times;
    ``(n,)`` -> checked. An unconditional model (``num_classes`` None) takes no labels and gets None."""
    if num_classes is None:
        if y is not None:
            raise ValueError("this model is unconditional: pass no labels")
        return None
    if y is None:
        return torch.full((n,), num_classes, dtype=torch.long, device=device)
    y = torch.as_tensor(y, device=device).long()
    if y.dim() == 0:
        y = y.expand(n)
    if y.shape != (n,) or y.min() < 0 or y.max() > num_classes:
        raise ValueError(f"y must be ({n},) labels in 0..{num_classes - 1} ({num_classes} = no label)")
    return y


def guidance_mix(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2021): ``eps_uncond + scale (eps_cond - eps_uncond)``.

    ``scale = 0``: unconditional; ``1``: conditional; ``> 1``: guided (sharper, less varied).
    In score terms: ``(1 - scale) grad log p(x) + scale grad log p(x | y)``.
    """
    return eps_uncond + scale * (eps_cond - eps_uncond)


def ddim_timesteps(T: int, steps: int) -> list:
    """``steps`` indices from ``0`` to ``T - 1``, evenly spaced and increasing (the DDIM subsequence tau)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer in 1..T = {T}, got {steps!r}")
    if steps == 1:
        return [T - 1]
    return [round(i * (T - 1) / (steps - 1)) for i in range(steps)]


def _check_step(schedule, t) -> int:
    if isinstance(t, torch.Tensor) and t.numel() == 1:
        t = int(t)
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < schedule.T:
        raise ValueError(f"t must be an int index in 0..{schedule.T - 1}, got {t!r}")
    return t


# ----------------------------------------------------------------------------------------------
# Samplers on any noise predictor eps_fn(x, t) with t a LongTensor (B,)
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def sample_ancestral(eps_fn, schedule: NoiseSchedule, x_T: torch.Tensor, *,
                     generator: torch.Generator | None = None, keep=(), clip: float | None = None) -> tuple:
    """DDPM's ancestral sampler: ``x_T -> x_{T-1} -> ... -> x_0`` with :func:`ddpm_step`, ``T`` network evaluations.

    ``eps_fn(x (B, ...), t LongTensor (B,)) -> (B, ...)``; ``x_T (B, ...)`` the starting noise.
    Returns ``(x_0, snapshots)`` with ``snapshots[t]`` = the state at each index in ``keep`` (after the
    update to index ``t``; index ``T`` is the starting noise). ``clip``: see :func:`ddpm_step`.
    """
    x, T = x_T, schedule.T
    snapshots = {T: x.clone()} if T in keep else {}
    for t in range(T - 1, -1, -1):
        eps = eps_fn(x, torch.full((len(x),), t, dtype=torch.long, device=x.device))
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device) if t > 0 else None
        x = ddpm_step(schedule, eps, x, t, noise, clip=clip)
        if t - 1 in keep or (t == 0 and 0 in keep):
            snapshots[max(t - 1, 0)] = x.clone()
    return x, snapshots


@torch.no_grad()
def sample_ddim(eps_fn, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int, *, eta: float = 0.0,
                generator: torch.Generator | None = None, clip: float | None = None) -> torch.Tensor:
    """DDIM sampling over the subsequence :func:`ddim_timesteps` ``(T, steps)``: ``steps`` network evaluations.

    ``x_T (B, ...)`` the starting noise; ``eta`` from 0 (deterministic) to 1 (DDPM-like noise); ``clip``: see
    :func:`ddim_step`.
    """
    taus = ddim_timesteps(schedule.T, steps)
    x = x_T
    for i in range(len(taus) - 1, -1, -1):
        t, t_prev = taus[i], taus[i - 1] if i > 0 else -1
        eps = eps_fn(x, torch.full((len(x),), t, dtype=torch.long, device=x.device))
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device) if eta > 0 else None
        x = ddim_step(schedule, eps, x, t, t_prev, eta, noise, clip=clip)
    return x


@torch.no_grad()
def ddim_invert(eps_fn, schedule: NoiseSchedule, x0: torch.Tensor, steps: int) -> torch.Tensor:
    """Run deterministic DDIM forwards, data -> noise, over the same subsequence as :func:`sample_ddim`.

    Each update ``t -> t_next`` reuses the noise predicted at the current point (at the first step, the
    clean data is read at index ``tau_0``). With an exact predictor and many steps, inverting a DDIM
    sample recovers its starting noise.
    """
    taus = ddim_timesteps(schedule.T, steps)
    x = x0
    for i, t_next in enumerate(taus):
        t = taus[i - 1] if i > 0 else -1
        eps = eps_fn(x, torch.full((len(x),), max(t, taus[0]), dtype=torch.long, device=x.device))
        if t < 0:  # from clean data: x_next = sqrt(abar) x0 + sqrt(1 - abar) eps
            abar = float(schedule.alphas_cumprod[t_next])
            x = math.sqrt(abar) * x + math.sqrt(1 - abar) * eps
        else:
            x = ddim_step(schedule, eps, x, t, t_next, 0.0)
    return x


# ----------------------------------------------------------------------------------------------
# The model: a denoiser, a schedule, the loss and the samplers
# ----------------------------------------------------------------------------------------------

def noise_prediction_loss(eps_fn, schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor | None = None,
                          noise: torch.Tensor | None = None) -> torch.Tensor:
    """Ho et al.'s simplified objective ``L_simple = E_{t, eps} ||eps - eps_theta(x_t, t)||^2 / D`` (a scalar).

    ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with ``t ~ U{0..T-1}`` and ``eps ~ N(0, I)`` unless given.
    ``eps_fn(x_t (B, ...), t (B,)) -> (B, ...)``; the mean runs over the batch and the ``D`` dimensions.
    """
    if t is None:
        t = torch.randint(0, schedule.T, (len(x0),), device=x0.device)
    if noise is None:
        noise = torch.randn_like(x0)
    xt = schedule.q_sample(x0, t, noise)
    return F.mse_loss(eps_fn(xt, t), noise)


class Diffusion(nn.Module):
    """A diffusion model on data ``(B, *shape)``: a denoiser ``net(x, time, y)``, a schedule, samplers.

    With ``num_classes`` the model is class-conditional and trained with label dropout: each label is
    replaced by the null label ``num_classes`` with probability ``p_uncond``, so one network gives both
    ``eps(x, t, y)`` and the unconditional ``eps(x, t)`` used by classifier-free guidance.

    ``skip``: what the network corrects (EDM-style preconditioning, Karras et al. 2022: a known denoiser plus a
    learned correction scaled by the error that denoiser leaves): ``"gaussian"`` the exact denoiser of a Gaussian
    fitted to the data (:meth:`fit_gaussian`), ``"pixels"`` that of independent pixels on the data's levels
    (:meth:`ImageDiffusion.fit_pixels`), ``"none"`` the bare network (``True`` / ``False`` mean "gaussian" / "none").

    ``continuous``: trained in continuous time (``tau ~ U(0, 1]`` on the cosine schedule) instead of on the ``T``
    indices, so the same network runs with any number of steps (:meth:`with_steps`). ``time_sampling``: the
    density of ``tau`` in training, ``"uniform"`` (Ho et al.'s ``L_simple``) or ``"likelihood"`` (half the draws
    uniform in log-SNR, which weights the noise levels as the variational bound does; Kingma et al. 2021).

    ``prediction``: what the bare network (``skip="none"``) outputs, ``"eps"``, ``"x0"`` or ``"v"``
    (:mod:`gencourse.parameterization`); it is trained by the unweighted squared error on that target, and
    :meth:`eps_at` converts its output to the noise the samplers use. A skip corrects a noise estimate, so it
    needs ``"eps"``.

    Its likelihood is a variational bound (``likelihood = "bound"``), evaluated by :meth:`ImageDiffusion.elbo_terms`
    on images of discrete levels.
    """

    likelihood = "bound"

    def __init__(self, net: nn.Module, schedule: NoiseSchedule, shape: tuple, *, num_classes: int | None = None,
                 p_uncond: float = 0.1, skip="gaussian", continuous: bool = False, time_sampling: str = "uniform",
                 prediction: str = "eps"):
        super().__init__()
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        if not 0 <= p_uncond <= 1:
            raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
        skip = {True: "gaussian", False: "none"}.get(skip, skip) if isinstance(skip, bool) else skip
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {', '.join(SKIPS)}, got {skip!r}")
        if skip == "pixels" and not hasattr(self, "fit_pixels"):
            raise ValueError('skip="pixels" needs images on discrete levels: use ImageDiffusion')
        if continuous and schedule.cosine_s is None:
            raise ValueError("a continuous-time model needs the cosine schedule (NoiseSchedule.cosine)")
        if time_sampling not in TIME_SAMPLING:
            raise ValueError(f"time_sampling must be one of {', '.join(TIME_SAMPLING)}, got {time_sampling!r}")
        if time_sampling != "uniform" and not continuous:
            raise ValueError("time_sampling other than 'uniform' needs continuous=True")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
        if prediction != "eps" and skip != "none":
            raise ValueError(f"prediction={prediction!r} needs skip='none': a skip corrects a noise estimate")
        self.net, self.schedule, self.shape = net, schedule, tuple(shape)
        self.num_classes, self.p_uncond, self.skip = num_classes, p_uncond, skip
        self.continuous, self.time_sampling, self.prediction = continuous, time_sampling, prediction
        dim = math.prod(self.shape)
        self.register_buffer("gauss_mean", torch.zeros(dim))
        self.register_buffer("gauss_var", torch.ones(dim))
        self.register_buffer("gauss_basis", torch.eye(dim))

    # -- data space <-> model space (identity here; images override) ------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    # -- the network as a noise predictor and as a score ------------------------------------

    def eps(self, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``eps_theta(x_t, t, y)``: ``xt (B, *shape)`` in model space, ``t (B,)`` indices, ``y (B,)`` or None.

        The network reads the time ``tau = (t + 1) / T``; see :meth:`eps_at`.
        """
        abar = self.schedule.alphas_cumprod[t.cpu()].to(xt.device)
        return self.eps_at(xt, abar, (t.float() + 1) / self.schedule.T, self._labels(y, len(xt), xt.device))

    def eps_at(self, xt: torch.Tensor, abar: torch.Tensor, time: torch.Tensor, labels=None) -> torch.Tensor:
        """``eps_theta`` at noise level ``abar (B,)`` and network time ``time (B,)`` in ``[0, 1]``; ``labels`` as
        :meth:`_labels` returns them.

        With a skip, the network ``F`` learns a correction to a known denoiser's ``E[eps | x_t]``, scaled by the
        standard deviation that denoiser leaves: ``eps_theta = eps_base(x_t) + s(x_t) * F(x_t, tau, y)``.
        ``"gaussian"``: for data ``N(mu, Sigma)`` (:meth:`fit_gaussian`; ``mu = 0, Sigma = I`` until then),
        ``eps_base = sqrt(1 - abar) C^{-1} (x_t - sqrt(abar) mu)``, ``C = abar Sigma + (1 - abar) I``,
        ``s^2 = diag(I - (1 - abar) C^{-1})``. ``"pixels"``: see :meth:`ImageDiffusion.pixel_denoiser`.
        Where ``abar -> 0`` both are exact (``x_t`` is the noise itself).
        """
        out = self.net(xt, time.to(xt.device, xt.dtype), labels)
        if self.prediction != "eps":  # x0 or v: the noise it implies at x_t
            abar = abar.to(xt.device, xt.dtype)
            return convert(out, self.prediction, "eps", xt, abar.sqrt(), (1 - abar).sqrt())
        if self.skip == "none":
            return out
        # in float64 and kept below 1, so that sqrt(1 - abar) never rounds to 0 in float32 at the tiniest noise
        abar = abar.to(xt.device, torch.float64).clamp(max=1 - 1e-7)
        base, scale = (self.pixel_denoiser if self.skip == "pixels" else self.gaussian_denoiser)(xt, abar)
        return (base + scale * out.flatten(1)).view_as(xt)

    def gaussian_denoiser(self, xt: torch.Tensor, abar: torch.Tensor):
        """``(E[eps | x_t], std[eps | x_t])``, each ``(B, D)``, for data ``N(mu, Sigma)`` (:meth:`fit_gaussian`)."""
        mean, var, basis = (v.to(xt.dtype) for v in (self.gauss_mean, self.gauss_var, self.gauss_basis))
        abar = abar.to(xt.dtype)[:, None]                                                    # (B, 1)
        inv = 1 / (abar * var + 1 - abar)                                                    # (B, D) in the eigenbasis
        r = (xt.flatten(1) - abar.sqrt() * mean) @ basis                                     # (B, D)
        linear = ((1 - abar).sqrt() * r * inv) @ basis.T
        return linear, ((abar * var * inv) @ (basis.T ** 2)).sqrt()

    @torch.no_grad()
    def fit_gaussian(self, x: torch.Tensor, floor: float = 1e-3) -> "Diffusion":
        """Fit ``N(mu, Sigma)`` to data ``x (N, *shape)`` (data space) for the linear part of :meth:`eps`.

        ``Sigma = U diag(lambda) U^T`` is stored as its eigenbasis ``U`` and eigenvalues (floored at ``floor``).
        """
        z = self.encode(self._check_data(x)).flatten(1).double()
        mean = z.mean(0)
        lam, basis = torch.linalg.eigh(torch.cov((z - mean).T).reshape(len(mean), len(mean)))
        self.gauss_mean.copy_(mean)
        self.gauss_var.copy_(lam.clamp(min=floor))
        self.gauss_basis.copy_(basis)
        return self

    def guided_eps(self, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        """Classifier-free guidance: :func:`guidance_mix` of ``eps(x_t, t)`` and ``eps(x_t, t, y)`` (2 evaluations)."""
        if self.num_classes is None:
            raise ValueError("guidance needs a class-conditional model (num_classes)")
        both = self.eps(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([self._labels(None, len(xt), xt.device), y]))
        eps_uncond, eps_cond = both.chunk(2)
        return guidance_mix(eps_uncond, eps_cond, scale)

    def score(self, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``grad_x log q(x_t) ~ -eps_theta(x_t, t) / sqrt(1 - abar_t)`` (Vincent 2011; Song et al. 2021)."""
        sd = _per_example((1 - self.schedule.alphas_cumprod[t.cpu()]).sqrt(), xt)
        return -self.eps(xt, t, y) / sd

    def _labels(self, y, n: int, device) -> torch.Tensor | None:
        return class_labels(y, n, self.num_classes, device)

    # -- training ----------------------------------------------------------------------------

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`noise_prediction_loss` on data ``x (B, *shape)`` (data space). In training mode labels ``y``
        are dropped to the null label with probability ``p_uncond``. ``t``, ``noise`` fix the draws (indices of
        the schedule). A continuous-time model draws ``tau`` in ``(0, 1]`` instead (:meth:`sample_time`)."""
        x0 = self.encode(self._check_data(x))
        if self.num_classes is not None and y is not None:
            y = self._labels(y, len(x0), x0.device)
            if self.training and self.p_uncond > 0:
                drop = torch.rand(len(y), device=y.device) < self.p_uncond
                y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        if self.prediction != "eps":
            return self._prediction_loss(x0, y, t, noise)
        if not self.continuous or t is not None:
            return noise_prediction_loss(lambda xt, tt: self.eps(xt, tt, y), self.schedule, x0, t, noise)
        tau = self.sample_time(len(x0))
        abar = self.schedule.abar_at(tau)
        noise = torch.randn_like(x0) if noise is None else noise
        xt = _per_example(abar.sqrt(), x0) * x0 + _per_example((1 - abar).sqrt(), x0) * noise
        labels = self._labels(None, len(x0), x0.device) if y is None else y
        return F.mse_loss(self.eps_at(xt, abar.float(), tau.float(), labels), noise)

    def _prediction_loss(self, x0, y, t, noise) -> torch.Tensor:
        """The unweighted squared error of an x0- or v-network on its own target,
        ``E ||target(x0, eps) - F(x_t, tau)||^2`` (:func:`gencourse.parameterization.from_x0_eps`)."""
        if t is None and self.continuous:
            tau = self.sample_time(len(x0))
            abar = self.schedule.abar_at(tau).to(x0.device, x0.dtype)
        else:
            t = torch.randint(0, self.schedule.T, (len(x0),), device=x0.device) if t is None else t
            abar, tau = self.schedule.alphas_cumprod[t.cpu()].to(x0.device), (t.float() + 1) / self.schedule.T
        noise = torch.randn_like(x0) if noise is None else noise
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        xt = _per_example(alpha, x0) * x0 + _per_example(sigma, x0) * noise
        target = from_x0_eps(self.prediction, x0, noise, alpha, sigma)
        labels = self._labels(None, len(x0), x0.device) if y is None else y
        return F.mse_loss(self.net(xt, tau.to(x0.device, x0.dtype), labels), target)

    def sample_time(self, n: int) -> torch.Tensor:
        """``n`` training times ``tau`` (float64): uniform on ``(0, 1]``; with ``time_sampling="likelihood"`` half
        of them uniform in log-SNR over ``[-10, 13]`` instead, the density under which an unweighted noise error
        is the variational bound's weighting (``d log SNR`` per unit of the bound)."""
        tau = 1 - torch.rand(n, dtype=torch.float64)
        if self.time_sampling == "likelihood":
            log_snr = torch.empty(n, dtype=torch.float64).uniform_(-10.0, 13.0)
            tau_l = self.schedule.tau_of_abar(torch.sigmoid(log_snr)).clamp(min=1e-6)
            tau = torch.where(torch.rand(n) < 0.5, tau_l, tau)
        return tau

    def with_steps(self, T: int) -> "Diffusion":
        """The same continuous-time network run with ``T`` steps of the cosine schedule: a shallow copy sharing the
        weights (sampling with it costs ``T`` evaluations; its variational bound is that of the ``T``-step model)."""
        if not self.continuous:
            raise ValueError("only a continuous-time model (continuous=True) runs with another number of steps")
        other = copy.copy(self)
        other.schedule = NoiseSchedule.cosine(_check_T(T), s=self.schedule.cosine_s)
        return other

    def pf_ode_velocity(self, x: torch.Tensor, tau: torch.Tensor, labels=None) -> torch.Tensor:
        """The probability-flow ODE ``dx/dtau = alpha' x0_hat + sigma' eps_hat`` (Song et al. 2021) of a
        continuous-time model, with ``alpha = sqrt(abar(tau))``, ``sigma = sqrt(1 - abar(tau))`` and the network's
        ``(x0_hat, eps_hat)`` at ``x``: the velocity (:mod:`gencourse.parameterization`) that carries the noised
        data's marginals from ``tau`` towards noise. ``x (B, *shape)``, ``tau (B,)`` in ``(0, 1]``."""
        s, tau = self.schedule.cosine_s, tau.to(torch.float64)
        theta = (tau + s) / (1 + s) * math.pi / 2
        alpha = (torch.cos(theta) / math.cos(s / (1 + s) * math.pi / 2)).clamp(min=0)
        abar = (alpha**2).clamp(1e-9, 1 - 1e-7)
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        d_alpha = -torch.sin(theta) * (math.pi / (2 * (1 + s))) / math.cos(s / (1 + s) * math.pi / 2)
        d_sigma = -alpha * d_alpha / sigma
        eps = self.eps_at(x, abar, tau, self._labels(None, len(x), x.device) if labels is None else labels)
        cast = (lambda v: v.to(x.device, x.dtype))
        return convert(eps, "eps", "velocity", x, cast(alpha), cast(sigma), cast(d_alpha), cast(d_sigma))

    def pf_ode_log_prob(self, z: torch.Tensor, tau: float, *, steps: int = 64, divergence: str = "hutchinson",
                        probes: int = 2, warp: float = 2.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``log p_tau(z)`` ``(B,)`` for ``z (B, *shape)`` in model space: the density of the probability-flow
        ODE's marginal at time ``tau``, by the instantaneous change of variables (Chen et al. 2018): integrate
        :meth:`pf_ode_velocity` from ``tau`` to 1, where the marginal is ``N(0, I)``, with
        :func:`gencourse.flow_matching.ode_log_prob` (Heun steps, finer near ``tau`` for ``warp > 1``; exact or
        Hutchinson divergence). An estimate that converges as ``steps`` grows. Continuous-time models only."""
        from gencourse.flow_matching import ode_log_prob

        if not self.continuous:
            raise ValueError("the probability-flow ODE needs a continuous-time model (continuous=True)")
        if not 0 < tau < 1:
            raise ValueError(f"tau must lie in (0, 1), got {tau!r}")
        span = 1.0 - tau

        def velocity(x, t):  # flow-matching time t = 0 (noise, tau = 1) .. 1 (tau): dx/dt = -span * dx/dtau
            return -span * self.pf_ode_velocity(x, 1.0 - span * t.to(torch.float64))

        was_training = self.training
        self.eval()
        out = ode_log_prob(velocity, z, steps, divergence=divergence, probes=probes, warp=warp, generator=generator)
        self.train(was_training)
        return out

    def batch_loss(self, batch) -> torch.Tensor:
        """:meth:`loss` of what ``fit`` yields: data ``x``; ``(x, y)``; or, from :func:`fixed_noise_batches`,
        ``(x, t, noise)`` / ``(x, y, t, noise)``. Use it as ``fit(model, model.batch_loss, ...)``."""
        if isinstance(batch, torch.Tensor):
            return self.loss(batch)
        if len(batch) == 3:
            x, t, noise = batch
            return self.loss(x, None, t, noise)
        return self.loss(*batch)

    def _check_data(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected data of shape (B, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return x

    # -- sampling ----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, *, steps: int | None = None, eta: float = 0.0, y=None, guidance: float | None = None,
               generator: torch.Generator | None = None, clip: float | None = None) -> torch.Tensor:
        """``n`` samples ``(n, *shape)`` in data space.

        ``steps=None``: ancestral DDPM sampling, ``T`` network evaluations per sample (the headline sampler).
        ``steps=S``: DDIM over ``S`` of the ``T`` steps (:func:`ddim_timesteps`) with noise level ``eta``.
        ``y`` (an int or ``(n,)`` labels) with ``guidance`` = the guidance scale (0 = unconditional,
        1 = conditional, the default with ``y``; > 1 = guided, each step then costs 2 evaluations).
        Without ``y`` the samples are unconditional. ``clip``: clamp each step's ``x0_hat`` to ``[-clip, clip]``
        (model space; images live in ``[-1, 1]``), see :func:`ddpm_step`.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        eps_fn = self._eps_fn(n, y, guidance, device)
        x_T = torch.randn((n, *self.shape), generator=generator).to(device)
        if steps is None:
            x, _ = sample_ancestral(eps_fn, self.schedule, x_T, generator=generator, clip=clip)
        else:
            x = sample_ddim(eps_fn, self.schedule, x_T, steps, eta=eta, generator=generator, clip=clip)
        self.train(was_training)
        return self.decode(x)

    def _eps_fn(self, n: int, y, guidance: float | None, device):
        if y is None:
            if guidance:
                raise ValueError("guidance needs labels y")
            return lambda x, t: self.eps(x, t)
        if isinstance(y, int):
            y = torch.full((n,), y, dtype=torch.long)
        y = self._labels(y, n, device)
        guidance = 1.0 if guidance is None else guidance
        if guidance == 0:
            return lambda x, t: self.eps(x, t)
        if guidance == 1:
            return lambda x, t: self.eps(x, t, y)
        return lambda x, t: self.guided_eps(x, t, y, guidance)


class ImageDiffusion(Diffusion):
    """A diffusion model of images in ``[0, 1]``: it works on ``2x - 1 in [-1, 1]`` and samples back in ``[0, 1]``.

    ``levels``: the number of intensity levels of the data (17 for the digits), for the discrete decoder of the
    variational bound (:meth:`elbo_terms`, :meth:`nll`) and the per-pixel skip (:meth:`pixel_denoiser`).
    """

    def __init__(self, net: nn.Module, schedule: NoiseSchedule, shape: tuple, *, levels: int = 17, **kwargs):
        super().__init__(net, schedule, shape, **kwargs)
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
        self.levels = levels
        self.register_buffer("pixel_logp", torch.full((math.prod(self.shape), levels), -math.log(levels)))

    @torch.no_grad()
    def fit_pixels(self, x: torch.Tensor, smoothing: float = 0.1) -> "ImageDiffusion":
        """Fit independent categoricals over the levels, one per pixel, to images ``x (N, *shape)`` in ``[0, 1]``
        with add-``smoothing`` counts (lesson 01's per-pixel baseline), for the ``"pixels"`` skip."""
        from gencourse.basics import level_counts
        from gencourse.data import to_levels

        k = to_levels(self._check_data(x), self.levels).flatten(1).cpu()                      # (N, D)
        counts = level_counts(k, self.levels).float()                                        # (D, L)
        self.pixel_logp.copy_(torch.log((counts + smoothing) / (counts + smoothing).sum(1, keepdim=True)))
        return self

    def pixel_denoiser(self, xt: torch.Tensor, abar: torch.Tensor):
        """``(E[eps | x_t], std[eps | x_t])``, each ``(B, D)``, if the pixels were independent with the fitted
        categoricals (:meth:`fit_pixels`): each pixel's posterior over its levels ``c_k`` is
        ``softmax_k(log pi_k - (x_t - sqrt(abar) c_k)^2 / (2 (1 - abar)))``, and ``eps = (x_t - sqrt(abar) x_0) /
        sqrt(1 - abar)``. At small noise it snaps each pixel to its nearest level, which a network trained on a
        regression rarely learns."""
        a, s = (v.to(xt.dtype)[:, None, None] for v in (abar.sqrt(), (1 - abar).sqrt()))      # (B, 1, 1)
        levels = torch.linspace(-1, 1, self.levels, device=xt.device, dtype=xt.dtype)
        x = xt.flatten(1)[:, :, None]                                                        # (B, D, 1)
        w = (self.pixel_logp.to(xt.dtype) - (x - a * levels) ** 2 / (2 * s**2)).softmax(-1)  # (B, D, L)
        x0 = (w * levels).sum(-1, keepdim=True)
        std_x0 = (w * (levels - x0) ** 2).sum(-1).sqrt()
        return ((x - a * x0) / s).squeeze(-1), (a / s).squeeze(-1) * std_x0

    @torch.no_grad()
    def elbo_terms(self, x: torch.Tensor, *, y=None, decoder_std: float | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """The terms of the negative variational bound (Ho et al. 2020, eq. 5), in nats: ``(B, T + 1)``.

        ``x (B, *shape)``: images in ``[0, 1]`` on the grid of ``levels`` levels. With the code index ``t`` = the
        paper's step ``t + 1`` and ``x_t ~ q(x_t | x_0)`` drawn once per term:

        - column 0, ``L_0 = -log p(x_0 | x_(index 0))``: a Gaussian of mean ``x0_hat`` and std ``decoder_std``
          (``sqrt(beta_0)`` by default, Ho et al.'s choice) integrated over each pixel's bin, the outer bins
          reaching to infinity, so its probabilities of the ``levels`` values sum to 1;
        - column ``t = 1..T-1``, ``L_t = KL(q(x_(t-1) | x_t, x_0) || p(x_(t-1) | x_t))``, two Gaussians of
          variance ``beta~_t`` whose means are the posterior mean at ``x_0`` and at ``x0_hat``:
          ``||mean(x_0) - mean(x0_hat)||^2 / (2 beta~_t)``;
        - column ``T``, ``L_T = KL(q(x_(T-1) | x_0) || N(0, I))``, in closed form.

        Their sum bounds ``-log P(x)`` on the discrete scale, comparable with every other NLL of the course.
        ``y``: labels for a conditional bound (None: the unconditional model, the headline).
        """
        x = self._check_data(x)
        k = x * (self.levels - 1)
        if (k - k.round()).abs().max() > 1e-4:
            raise ValueError(f"elbo_terms needs images on the grid of {self.levels} levels (k / {self.levels - 1})")
        x0 = self.encode(x)
        n, T, device = len(x0), self.schedule.T, x0.device
        labels = self._labels(y, n, device)
        terms = torch.zeros(n, T + 1, device=device)
        for t in range(T):
            tt = torch.full((n,), t, dtype=torch.long, device=device)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            xt = self.schedule.q_sample(x0, tt, noise)
            x0_hat = self.schedule.predict_x0(xt, tt, self.eps(xt, tt, labels))
            if t == 0:
                std = math.sqrt(float(self.schedule.betas[0])) if decoder_std is None else decoder_std
                terms[:, 0] = -discretized_gaussian_log_prob(x0, x0_hat, std, self.levels).flatten(1).sum(1)
            else:
                mean_true, variance = self.schedule.posterior_mean_variance(x0, xt, tt)
                mean_model, _ = self.schedule.posterior_mean_variance(x0_hat, xt, tt)
                terms[:, t] = ((mean_true - mean_model) ** 2 / (2 * variance)).flatten(1).sum(1)
        a2 = self.schedule.alphas_cumprod[-1].item()  # KL(N(sqrt(a2) x0, 1 - a2) || N(0, 1)) per pixel
        terms[:, T] = (0.5 * (a2 * x0**2 + (1 - a2) - 1 - math.log(1 - a2))).flatten(1).sum(1)
        return terms

    def nll(self, x: torch.Tensor, *, draws: int = 1, steps: int | None = None, y=None,
            decoder_std: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative variational bound in nats per image ``(B,)``: the sum of :meth:`elbo_terms`, averaged over
        ``draws`` independent draws of the noise (an unbiased estimate of the bound, not of ``-log P``).
        ``steps``: the bound of the model run with that many steps (:meth:`with_steps`; continuous-time models)."""
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise ValueError(f"draws must be a positive integer, got {draws!r}")
        model = self if steps is None or steps == self.schedule.T else self.with_steps(steps)
        was_training = self.training
        self.eval()
        total = sum(model.elbo_terms(x, y=y, decoder_std=decoder_std, generator=generator).sum(1)
                    for _ in range(draws)) / draws
        self.train(was_training)
        return total

    @torch.no_grad()
    def _decoder_log_prob(self, x0: torch.Tensor, z: torch.Tensor, abar: torch.Tensor, labels) -> torch.Tensor:
        """``log p(x_0 | z)`` per image ``(B,)`` float64 for ``z`` at noise level ``abar`` (a float64 scalar): the
        discrete decoder around the network's ``x0_hat`` with std ``sqrt((1 - abar) / abar)``."""
        a, s = abar.sqrt().item(), (1 - abar).sqrt().item()
        eps = self.eps_at(z, abar.float().expand(len(z)), self.schedule.tau_of_abar(abar).float().expand(len(z)), labels)
        x0_hat = (z - s * eps) / a
        return discretized_gaussian_log_prob(x0, x0_hat, s / a, self.levels).double().flatten(1).sum(1)

    def pf_ode_nll(self, x: torch.Tensor, *, log_snr: float = 8.0, steps: int = 64, divergence: str = "hutchinson",
                   probes: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
        """A bound on ``-log P(x)`` in nats per image ``(B,)`` through the probability-flow ODE's density:
        with ``z = alpha x + sigma eps`` at log-SNR ``log_snr`` (one draw per image),

            -log P(x) <= E_eps[ log q(z | x) - log p_ODE(z) - log p(x | z) ],

        the variational bound whose prior over ``z`` is the ODE's marginal (:meth:`pf_ode_log_prob`) and whose
        decoder is the discrete one of :meth:`continuous_nll` (std ``sigma / alpha``). The ODE's density is itself
        estimated (steps, trace probes), so the figure is an estimate of a bound; show it against ``steps``."""
        x0 = self.encode(self._check_data(x))
        abar = torch.sigmoid(torch.tensor(log_snr, dtype=torch.float64))
        s = (1 - abar).sqrt().item()
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        z = abar.sqrt().item() * x0 + s * noise
        log_q = (-0.5 * noise.double() ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
        log_p = self.pf_ode_log_prob(z, float(self.schedule.tau_of_abar(abar)), steps=steps, divergence=divergence,
                                     probes=probes, generator=generator)
        log_dec = self._decoder_log_prob(x0, z, abar, self._labels(None, len(z), z.device))
        return (log_q - log_p.double() - log_dec).float()

    @torch.no_grad()
    def continuous_nll(self, x: torch.Tensor, *, draws: int = 64, y=None, log_snr_range=(-10.0, 13.0),
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """The variational bound of the continuous-time model, the limit of :meth:`nll` as the steps grow
        (Kingma et al. 2021, eq. 17 written in ``lambda = log SNR``), in nats per image ``(B,)``:

            L = 1/2 int_{lambda_min}^{lambda_max} E_eps ||eps - eps_theta(x_lambda)||^2 d lambda + L_0 + L_prior,

        estimated with ``draws`` stratified values of ``lambda`` per image (an unbiased estimate of the bound);
        ``L_0`` is the discrete decoder at ``lambda_max`` (std ``sqrt((1 - abar) / abar)``) and ``L_prior`` the KL
        of ``q(x_lambda_min | x)`` from ``N(0, I)``. Continuous-time models only.
        """
        if not self.continuous:
            raise ValueError("continuous_nll needs a continuous-time model (continuous=True); use nll")
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise ValueError(f"draws must be a positive integer, got {draws!r}")
        x = self._check_data(x)
        lo, hi = log_snr_range
        x0 = self.encode(x)
        n, device = len(x0), x0.device
        labels = self._labels(y, n, device)
        was_training = self.training
        self.eval()
        offset = torch.rand(n, generator=generator, dtype=torch.float64)
        total = torch.zeros(n, dtype=torch.float64, device=device)
        for k in range(draws):
            lam = lo + (hi - lo) * (k + offset) / draws                                       # stratified in lambda
            abar = torch.sigmoid(lam)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            xt = _per_example(abar.sqrt(), x0) * x0 + _per_example((1 - abar).sqrt(), x0) * noise
            eps = self.eps_at(xt, abar.float(), self.schedule.tau_of_abar(abar).float(), labels)
            total += 0.5 * (hi - lo) * (eps - noise).double().pow(2).flatten(1).sum(1) / draws
        a_hi = torch.sigmoid(torch.tensor(hi, dtype=torch.float64))
        z = a_hi.sqrt().item() * x0 + (1 - a_hi).sqrt().item() * torch.randn(x0.shape, generator=generator).to(device)
        total -= self._decoder_log_prob(x0, z, a_hi, labels)
        a_lo = torch.sigmoid(torch.tensor(lo, dtype=torch.float64)).item()
        total += (0.5 * (a_lo * x0.double() ** 2 + (1 - a_lo) - 1 - math.log(1 - a_lo))).flatten(1).sum(1)
        self.train(was_training)
        return total.float()

    def encode(self, x):
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"images must lie in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
        return 2 * x - 1

    def decode(self, x):
        return ((x + 1) / 2).clamp(0, 1)


def discretized_gaussian_log_prob(x0: torch.Tensor, mean: torch.Tensor, std: float, levels: int) -> torch.Tensor:
    """``log P(x0)`` per pixel under ``N(mean, std^2)`` integrated over ``x0``'s bin, like ``x0``.

    ``x0 (B, ...)`` on the grid ``-1, -1 + 2/(L-1), ..., 1`` of ``L = levels`` values; each bin reaches half a grid
    step either side, the outer two to infinity (Ho et al. 2020, eq. 13). Computed in float64 as a difference of
    normal CDFs taken on the side of the mean where both are small, so tiny probabilities keep their logs.
    """
    if std <= 0:
        raise ValueError(f"std must be positive, got {std}")
    half = 1.0 / (levels - 1)
    x, mu = x0.double(), mean.double()
    lower = torch.where(x < -1 + half / 2, torch.full_like(x, -math.inf), (x - half - mu) / std)
    upper = torch.where(x > 1 - half / 2, torch.full_like(x, math.inf), (x + half - mu) / std)
    # P = Phi(upper) - Phi(lower) = Phi(-lower) - Phi(-upper); use the tail where both CDFs are small
    flip = lower > 0
    a = torch.where(flip, -upper, lower)
    b = torch.where(flip, -lower, upper)
    log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
    return (log_b + torch.log1p(-torch.exp(log_a - log_b))).to(x0.dtype)


# ----------------------------------------------------------------------------------------------
# Training recipes
# ----------------------------------------------------------------------------------------------

def fixed_noise_batches(model: Diffusion, x: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0,
                        batch_size: int = 512):
    """Validation data with its ``t``, noise (and dropped labels) drawn once, so the validation loss is the
    same function of the weights at every epoch: a DataLoader of ``(x, y, t, noise)`` (``(x, t, noise)``
    without labels) for ``val_data`` of :func:`~gencourse.train.train_annealed` or ``fit``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, model.schedule.T, (len(x),), generator=g)
    noise = torch.randn(x.shape, generator=g)
    if y is not None:
        y = y.clone()
        if model.num_classes is not None and model.p_uncond > 0:
            y[torch.rand(len(y), generator=g) < model.p_uncond] = model.num_classes
    return fixed_batches(*(v for v in (x, y, t, noise) if v is not None), batch_size=batch_size)


DIGITS_T = 200
DIGITS_EPOCHS = 300


def digits_model(*, T: int = DIGITS_T, hidden: int = 256, depth: int = 3, p_uncond: float = 0.5,
                 schedule: str = "cosine", skip: str = "pixels", continuous: bool = True,
                 time_sampling: str = "uniform") -> ImageDiffusion:
    """The lesson's digits model: a class-conditional :class:`MLPDenoiser` on the 64 pixels (label dropout
    ``p_uncond``), trained in continuous time on the cosine schedule and sampled with ``T`` steps, correcting the
    per-pixel denoiser (``skip``, :meth:`Diffusion.eps_at`). ``schedule="linear"`` needs ``continuous=False``."""
    if schedule not in ("cosine", "linear"):
        raise ValueError(f"schedule must be 'cosine' or 'linear', got {schedule!r}")
    sched = getattr(NoiseSchedule, schedule)(T)
    return ImageDiffusion(MLPDenoiser(64, hidden, depth, num_classes=10), sched, (1, 8, 8), num_classes=10,
                          p_uncond=p_uncond, skip=skip, continuous=continuous, time_sampling=time_sampling)


def train_digits(*, epochs: int = DIGITS_EPOCHS, seed: int = 0, quick: bool = False, lr: float = 2e-3,
                 batch_size: int = 128, device=None, verbose: bool = True, **model_kwargs):
    """Train :func:`digits_model` on the digits train split; returns ``(model, history)``.

    Noise-prediction loss with label dropout, Adam with a warm-up and cosine decay to 0, a fixed number of
    epochs, the final weights kept (:func:`train_annealed`); the validation loss on the val split (noise drawn
    once, :func:`fixed_noise_batches`) is recorded every epoch. ``quick``: 3 epochs, only to check that it runs.
    ``model.sample(n)`` then draws unguided ancestral samples ``(n, 1, 8, 8)`` in ``[0, 1]``.
    """
    from gencourse.data import load
    from gencourse.train import seed_everything

    if quick:
        epochs = min(epochs, 3)
    seed_everything(seed)
    train, val = load("digits", "train"), load("digits", "val")
    model = digits_model(**model_kwargs).fit_gaussian(train.images).fit_pixels(train.images).to(device or "cpu")
    history = train_annealed(model, train, fixed_noise_batches(model, val.images, val.labels, seed=seed),
                             epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, desc="diffusion (digits)",
                             verbose=verbose)
    return model, history


MNIST_EPOCHS = 20


def image_model(dataset: str = "digits", *, T: int = DIGITS_T, base: int = 32, **kwargs) -> ImageDiffusion:
    """The lesson's model for ``dataset``: :func:`digits_model` for ``"digits"``; for the 28x28 datasets
    (``"mnist"``, ``"fashion-mnist"``) the same design on 256 levels with a class-conditional :class:`SmallUNet`
    (``base`` channels) in place of the MLP: pixel skip, continuous time, cosine schedule, label dropout 0.5."""
    from gencourse.data import LEVELS

    if dataset not in LEVELS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(LEVELS)}")
    if dataset == "digits":
        return digits_model(T=T, **kwargs)
    kwargs = {"p_uncond": 0.5, "skip": "pixels", "continuous": True, **kwargs}
    return ImageDiffusion(SmallUNet(1, base, num_classes=10), NoiseSchedule.cosine(T), (1, 28, 28),
                          levels=LEVELS[dataset], num_classes=10, **kwargs)


def train_images(dataset: str = "digits", *, epochs: int | None = None, seed: int = 0, quick: bool = False,
                 lr: float | None = None, batch_size: int = 128, subset: int | None = None, device=None,
                 verbose: bool = True, **model_kwargs):
    """Train :func:`image_model` on ``dataset``'s train split; returns ``(model, history)``.

    ``"digits"`` is :func:`train_digits` (the recipe). The 28x28 datasets train the U-Net the same way (annealed,
    final weights, fixed-noise validation on at most 1000 validation images, or ``subset``), for ``MNIST_EPOCHS`` epochs at a
    learning rate of ``1e-3`` by default; ``subset``: use only the first ``subset`` training images (a short CPU run).
    """
    from gencourse.data import ImageDataset, load
    from gencourse.train import seed_everything

    if dataset == "digits":
        return train_digits(epochs=epochs or DIGITS_EPOCHS, seed=seed, quick=quick, lr=lr or 2e-3,
                            batch_size=batch_size, device=device, verbose=verbose, **model_kwargs)
    epochs = min(epochs or MNIST_EPOCHS, 3) if quick else (epochs or MNIST_EPOCHS)
    seed_everything(seed)
    train, val = load(dataset, "train"), load(dataset, "val")
    images, labels = train.images[:subset], train.labels[:subset]
    model = image_model(dataset, **model_kwargs).fit_pixels(images).to(device or "cpu")
    if model.skip == "gaussian":
        model.fit_gaussian(images)
    data = ImageDataset(images, labels, name=dataset, split="train")
    n_val = min(1000, subset or 1000)
    history = train_annealed(model, data, fixed_noise_batches(model, val.images[:n_val], val.labels[:n_val], seed=seed),
                             epochs=epochs, lr=lr or 1e-3, batch_size=batch_size, seed=seed,
                             desc=f"diffusion ({dataset})", verbose=verbose)
    return model, history


def train_toy2d(name: str = "swissroll", *, n: int = 4000, T: int = 100, epochs: int = 30, hidden: int = 128,
                depth: int = 2, lr: float = 3e-3, batch_size: int = 512, seed: int = 0, quick: bool = False,
                skip: str = "gaussian", prediction: str = "eps", device=None, verbose: bool = True):
    """A diffusion model of a 2D toy (:func:`gencourse.data.toy2d`): ``(model, history)``.

    ``n`` training points (and ``n // 4`` validation points drawn with another seed), an :class:`MLPDenoiser`
    with ``T`` steps of the cosine schedule correcting the Gaussian denoiser (``skip="none"``: the bare network,
    which may predict ``prediction`` = "eps", "x0" or "v"), trained like :func:`train_digits`.
    """
    from gencourse.data import toy2d
    from gencourse.train import seed_everything

    if quick:
        epochs = min(epochs, 3)
    seed_everything(seed)
    train, val = toy2d(name, n, seed=seed), toy2d(name, max(n // 4, 10), seed=seed + 1)
    model = Diffusion(MLPDenoiser(2, hidden, depth), NoiseSchedule.cosine(T), (2,), skip=skip,
                      prediction=prediction).fit_gaussian(train)
    model.to(device or "cpu")
    desc = f"diffusion ({name}, skip {model.skip}" + (f", {prediction}-prediction)" if prediction != "eps" else ")")
    history = train_annealed(model, train, fixed_noise_batches(model, val, seed=seed), epochs=epochs, lr=lr,
                             batch_size=batch_size, seed=seed, desc=desc,
                             verbose=verbose)
    return model, history
