"""Generative adversarial networks: the losses, small generators and discriminators, one training step.

    model, history = gan.train_ring("WGAN-GP", seed=0)   # the 8-Gaussians ring, seconds on a CPU
    gan.ring_coverage(model.sample(2000))               # {"modes_covered": ..., "between_modes": ..., ...}
    digits, history = gan.train_digits()                # the lesson's digits GAN; digits.sample(n) -> (n, 1, 8, 8)
    big, history = gan.train_images("mnist")            # DCGAN-style with R1 on 28x28; big.sample(n) -> (n, 1, 28, 28)

A generator ``G`` maps noise ``z ~ N(0, I)`` to data; a discriminator ``D`` returns a *logit* ``l(x)``,
with ``D(x) = sigmoid(l(x))`` the probability that ``x`` is real. The game (Goodfellow et al. 2014) is

    min_G max_D  V(D, G) = E_{x~p} log D(x) + E_z log(1 - D(G(z))),

whose inner maximum is ``D*(x) = p(x) / (p(x) + q(x))`` for the generator's distribution ``q``, where
``V(D*, G) = -log 4 + 2 JSD(p || q)``. Every loss here takes logits and uses ``softplus``
(``-log sigmoid(l) = softplus(-l)``, ``-log(1 - sigmoid(l)) = softplus(l)``), never ``sigmoid`` + ``log``.
A GAN has no likelihood: ``GAN.likelihood = "none"``.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from gencourse.data import RING_CENTERS, RING_STD
from gencourse.train import adam, batches, check_finite, progress

GENERATOR_LOSSES = ("non-saturating", "minimax")
TRAINING_LOSSES = ("non-saturating", "minimax", "hinge", "wgan-gp")


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

def _check_logits(logits, name: str) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of discriminator logits (B,) or (B, 1), got {type(logits).__name__}")
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits.squeeze(1)
    if logits.dim() != 1 or len(logits) == 0:
        raise ValueError(f"{name} must have shape (B,) or (B, 1) with B >= 1, got {tuple(logits.shape)}")
    return logits


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss, a scalar: binary cross-entropy with real = 1 and fake = 0.

    ``real_logits: (B,)`` or ``(B, 1)`` = ``l(x)`` on data, ``fake_logits`` the same on generated samples
    (the batch sizes may differ). With ``D = sigmoid(l)``:

        L_D = -E_x log D(x) - E_z log(1 - D(G(z))) = mean softplus(-l(x)) + mean softplus(l(G(z))),

    i.e. ``-V(D, G)``; minimizing it over ``D`` gives ``D* = p / (p + q)``.
    """
    real_logits = _check_logits(real_logits, "real_logits")
    fake_logits = _check_logits(fake_logits, "fake_logits")
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The hinge loss of SNGAN and BigGAN (Lim & Ye 2017; Miyato et al. 2018), a scalar:

        L_D = E_x max(0, 1 - l(x)) + E_z max(0, 1 + l(G(z))),    L_G = -E_z l(G(z)).

    The discriminator stops pushing an example once its margin is met (real logits >= 1, fake <= -1);
    the generator's loss is the critic's, as in WGAN. Shapes as in :func:`discriminator_loss`.
    """
    real_logits = _check_logits(real_logits, "real_logits")
    fake_logits = _check_logits(fake_logits, "fake_logits")
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "non-saturating") -> torch.Tensor:
    """The generator's loss on ``fake_logits = l(G(z))``, shape ``(B,)`` or ``(B, 1)``, a scalar.

    - ``"minimax"``: the game's own term, ``E log(1 - D(G(z))) = mean -softplus(l)``. Its gradient
      ``dL/dl = -D(G(z))`` vanishes when the discriminator rejects the fakes (``D -> 0``): it *saturates*.
    - ``"non-saturating"``: ``-E log D(G(z)) = mean softplus(-l)``, same fixed point, gradient
      ``dL/dl = -(1 - D(G(z)))``, strongest exactly when the fakes are rejected.
    """
    fake_logits = _check_logits(fake_logits, "fake_logits")
    if kind == "non-saturating":
        return F.softplus(-fake_logits).mean()
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    raise ValueError(f"unknown generator loss kind {kind!r}; choose one of {', '.join(GENERATOR_LOSSES)}")


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, *,
                     eps: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017), a scalar that is differentiable in the critic's weights.

    ``real``, ``fake``: ``(B, ...)`` of the same shape. With ``eps ~ U[0, 1]`` per example (shape
    ``(B, 1, ..., 1)``; pass ``eps`` to fix it), ``x_hat = eps * real + (1 - eps) * fake`` and

        GP = E_{x_hat} ( || grad_x critic(x_hat) ||_2 - 1 )^2,

    the norm taken per example over all its dimensions. The input gradient is computed with
    ``create_graph=True``, so ``GP.backward()`` reaches the critic's parameters.
    """
    if not isinstance(real, torch.Tensor) or not isinstance(fake, torch.Tensor) or real.shape != fake.shape:
        raise ValueError("real and fake must be tensors of the same shape (B, ...), got "
                         f"{tuple(getattr(real, 'shape', ()))} and {tuple(getattr(fake, 'shape', ()))}")
    if real.dim() < 2:
        raise ValueError(f"real and fake need a batch dimension and at least one data dimension, got {tuple(real.shape)}")
    shape = (len(real),) + (1,) * (real.dim() - 1)
    if eps is None:
        eps = torch.rand(shape, device=real.device, dtype=real.dtype)
    elif eps.numel() != len(real):
        raise ValueError(f"eps must hold one number per example, shape {shape}, got {tuple(eps.shape)}")
    eps = eps.reshape(shape)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def r1_penalty(discriminator: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018, eq. 9 without its weight), a scalar differentiable in the discriminator's weights.

    ``real: (B, ...)`` data. ``R1 = E_{x ~ p} || grad_x l(x) ||_2^2``: the squared norm of the logit's input
    gradient on *real* data, per example over all its dimensions, averaged over the batch. The discriminator's
    loss adds ``(gamma / 2) * R1`` (:func:`train_step`'s ``r1_weight`` is ``gamma``). It pulls the discriminator
    towards flat on the data, where a perfect generator would make ``D = 1/2`` everywhere. As in
    :func:`gradient_penalty`, the input gradient is taken with ``create_graph=True``.
    """
    if not isinstance(real, torch.Tensor) or not real.is_floating_point() or real.dim() < 2 or len(real) == 0:
        raise ValueError("real must be a float tensor (B, ...) with a batch dimension and at least one data "
                         f"dimension, got {tuple(getattr(real, 'shape', ()))}")
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x).sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


def truncated_noise(n: int, latent_dim: int, threshold: float | None = None, *, generator=None,
                    device=None) -> torch.Tensor:
    """``z: (n, latent_dim)`` from ``N(0, I)``, each coordinate redrawn until ``|z_i| <= threshold``
    (the *truncation trick* of Brock et al. 2019, BigGAN). ``threshold=None``: no truncation, true samples."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer number of samples, got {n!r}")
    if threshold is not None and not threshold > 0:
        raise ValueError(f"threshold must be positive (or None for no truncation), got {threshold!r}")
    z = torch.randn(n, latent_dim, generator=generator, device=device)
    if threshold is None:
        return z
    while True:
        outside = z.abs() > threshold
        if not outside.any():
            return z
        z[outside] = torch.randn(int(outside.sum()), generator=generator, device=device)


def optimal_discriminator(x: torch.Tensor, p_data, p_model) -> torch.Tensor:
    """``D*(x) = p(x) / (p(x) + q(x))`` for two ``torch.distributions`` objects, computed as
    ``sigmoid(log p(x) - log q(x))`` for numerical stability; same shape as ``log_prob(x)``."""
    return torch.sigmoid(p_data.log_prob(x) - p_model.log_prob(x))


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------

def _sn(layer: nn.Module, spectral: bool) -> nn.Module:
    """Wrap ``layer`` with torch's spectral-norm parametrization (W / sigma_max(W)) when asked."""
    return nn.utils.parametrizations.spectral_norm(layer) if spectral else layer


class MLPGenerator(nn.Module):
    """``z: (B, latent_dim) -> x: (B, out_dim)``; an MLP with ReLU. ``out_shape`` reshapes the output
    (e.g. ``(1, 8, 8)``); ``output="sigmoid"`` puts it in ``[0, 1]`` (images), ``"linear"`` leaves it free."""

    def __init__(self, latent_dim: int = 2, hidden: int = 128, out_shape=(2,), depth: int = 2, output: str = "linear"):
        super().__init__()
        if output not in ("linear", "sigmoid"):
            raise ValueError(f"output must be 'linear' or 'sigmoid', got {output!r}")
        self.latent_dim, self.out_shape, self.output = latent_dim, tuple(out_shape), output
        dims = [latent_dim] + [hidden] * depth
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, math.prod(self.out_shape)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z).view(len(z), *self.out_shape)
        return torch.sigmoid(x) if self.output == "sigmoid" else x


class MLPDiscriminator(nn.Module):
    """``x: (B, ...) -> logits (B,)``; an MLP with LeakyReLU(0.2), every linear layer spectrally
    normalized when ``spectral=True``."""

    def __init__(self, in_dim: int = 2, hidden: int = 128, depth: int = 2, spectral: bool = False):
        super().__init__()
        dims = [in_dim] + [hidden] * depth
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [_sn(nn.Linear(a, b), spectral), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, _sn(nn.Linear(hidden, 1), spectral))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


class ConvGenerator(nn.Module):
    """DCGAN-style generator for ``(1, 8, 8)`` images in ``[0, 1]``:
    ``z (B, latent_dim) -> linear -> (4c, 2, 2) -> convT -> (2c, 4, 4) -> convT -> (1, 8, 8) -> sigmoid``.

    ``batchnorm=True`` is DCGAN's generator (Radford et al. 2016): batch normalization after the linear layer and
    each transposed convolution (which then carry no bias), before the ReLU; not on the output layer.
    """

    def __init__(self, latent_dim: int = 32, channels: int = 32, batchnorm: bool = False):
        super().__init__()
        self.latent_dim, self.c, self.batchnorm = latent_dim, channels, batchnorm
        c, bn = channels, batchnorm
        self.fc = nn.Sequential(nn.Linear(latent_dim, 4 * c * 2 * 2, bias=not bn),
                                *([nn.BatchNorm1d(4 * c * 2 * 2)] if bn else []), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1, bias=not bn),  # 2x2 -> 4x4
            *([nn.BatchNorm2d(2 * c)] if bn else []), nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=not bn),      # 4x4 -> 8x8
            *([nn.BatchNorm2d(c)] if bn else []), nn.ReLU(),
            nn.Conv2d(c, 1, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(self.fc(z).view(len(z), 4 * self.c, 2, 2)))


class ConvDiscriminator(nn.Module):
    """DCGAN-style discriminator for ``(B, 1, 8, 8)``: strided convs 8 -> 4 -> 2, LeakyReLU(0.2),
    a linear logit ``(B,)``; spectral norm on every layer when ``spectral=True``."""

    def __init__(self, channels: int = 32, spectral: bool = False):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            _sn(nn.Conv2d(1, c, 3, padding=1), spectral), nn.LeakyReLU(0.2),
            _sn(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), spectral), nn.LeakyReLU(0.2),      # 8 -> 4
            _sn(nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1), spectral), nn.LeakyReLU(0.2),  # 4 -> 2
            nn.Flatten(), _sn(nn.Linear(4 * c * 2 * 2, 1), spectral),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class GAN(nn.Module):
    """A generator and a discriminator (or WGAN critic) with their noise distribution ``N(0, I)``.

    ``sample(n) -> (n, *data_shape)``: one generator evaluation per sample. No likelihood.
    """

    likelihood = "none"

    def __init__(self, generator: nn.Module, discriminator: nn.Module, latent_dim: int | None = None):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = latent_dim or getattr(generator, "latent_dim", None)
        self.ema_generator = None
        if not self.latent_dim:
            raise ValueError("latent_dim is needed: pass it, or give the generator a latent_dim attribute")

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """Keep ``ema_generator``, an exponential moving average of the generator's weights:
        ``w_ema <- decay * w_ema + (1 - decay) * w``; :meth:`sample` then uses it."""
        if self.ema_generator is None:
            self.ema_generator = copy.deepcopy(self.generator).requires_grad_(False)
        for w_ema, w in zip(self.ema_generator.parameters(), self.generator.parameters()):
            w_ema.lerp_(w, 1 - decay)
        for b_ema, b in zip(self.ema_generator.buffers(), self.generator.buffers()):
            b_ema.copy_(b)  # batch-norm statistics, if any, are copied, not averaged

    def noise(self, n: int) -> torch.Tensor:
        """``z ~ N(0, I)``, shape ``(n, latent_dim)``."""
        return torch.randn(n, self.latent_dim, device=next(self.parameters()).device)

    @torch.no_grad()
    def sample(self, n: int, *, truncation: float | None = None) -> torch.Tensor:
        """``n`` samples ``G(z)``, ``z ~ N(0, I)``: one network evaluation each.

        ``truncation``: draw ``z`` from the normal truncated to ``|z_i| <= truncation`` (:func:`truncated_noise`),
        the truncation trick. Such samples are no longer samples of the model: label them as such."""
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer number of samples, got {n!r}")
        was_training = self.training
        self.eval()
        z = self.noise(n) if truncation is None else truncated_noise(
            n, self.latent_dim, truncation, device=next(self.parameters()).device)
        x = (self.ema_generator or self.generator)(z)
        self.train(was_training)
        return x


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

def train_step(generator, discriminator, opt_g, opt_d, real, *, latent_dim, loss="non-saturating",
               gp_weight=10.0, update_generator=True, r1_weight=0.0):
    """One step of the game on a batch of ``real`` data ``(B, ...)``: returns ``(d_loss, g_loss)`` floats.

    The discriminator is updated first on real data and on fakes *detached* from the generator (its loss
    must not move the generator); the generator is then updated through the updated discriminator.
    ``loss``: "non-saturating" or "minimax" (logit discriminator), "hinge" (:func:`hinge_discriminator_loss`), or "wgan-gp" (critic:
    ``L_D = E l(G(z)) - E l(x) + gp_weight * GP``, ``L_G = -E l(G(z))``). ``r1_weight = gamma > 0`` adds
    ``gamma / 2 * R1`` (:func:`r1_penalty`, on the real batch) to the discriminator's loss.
    """
    z = torch.randn(len(real), latent_dim, device=real.device)  # as many as the batch holds
    fake = generator(z)

    # 1. discriminator / critic step
    real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
    if loss == "wgan-gp":
        d_loss = fake_logits.mean() - real_logits.mean() + gp_weight * gradient_penalty(discriminator, real, fake)
    elif loss == "hinge":
        d_loss = hinge_discriminator_loss(real_logits, fake_logits)
    else:
        d_loss = discriminator_loss(real_logits, fake_logits)
    if r1_weight:
        d_loss = d_loss + r1_weight / 2 * r1_penalty(discriminator, real)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    if not update_generator:
        return d_loss.item(), float("nan")

    # 2. generator step, through the discriminator just updated
    fake_logits = discriminator(fake)
    g_loss = -fake_logits.mean() if loss in ("wgan-gp", "hinge") else generator_loss(fake_logits, loss)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return d_loss.item(), g_loss.item()


@dataclass
class GANHistory:
    """What :func:`train_gan` saw. ``steps[i]`` is the generator step at which ``d_loss[i]`` / ``g_loss[i]``
    (means over the steps since the previous entry) and ``evals[i]`` (``eval_fn(model)``, if given) were taken."""

    steps: list = field(default_factory=list)
    d_loss: list = field(default_factory=list)
    g_loss: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        if not self.steps:
            return "no steps"
        return (f"{self.steps[-1]} generator steps in {self.seconds:.1f} s; "
                f"last d_loss {self.d_loss[-1]:.3g}, g_loss {self.g_loss[-1]:.3g}")


def _as_tensor_data(data) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        return data
    if hasattr(data, "images"):
        return data.images  # a course dataset: images only, labels are not data for an unconditional GAN
    raise ValueError(f"data must be a tensor (N, ...) or a dataset with .images, got {type(data).__name__}")


def train_gan(model: GAN, data, *, steps: int = 1000, batch_size: int = 256, loss: str = "non-saturating",
              lr: float = 2e-4, lr_d: float | None = None, betas=(0.5, 0.999), n_critic: int = 1,
              gp_weight: float = 10.0, log_every: int = 100, eval_fn=None, seed: int | None = None,
              ema: float | None = None, max_seconds: float | None = None, desc: str = "GAN",
              verbose: bool = True, r1_weight: float = 0.0) -> GANHistory:
    """Train ``model`` for ``steps`` generator steps (each after ``n_critic`` discriminator steps) with Adam.

    ``data``: a tensor ``(N, ...)`` or a course dataset (its ``.images``). Every ``log_every`` steps the mean
    losses since the last entry (all batches counted, not the last one alone) and ``eval_fn(model)`` are recorded.
    ``r1_weight``: the R1 penalty's ``gamma`` (see :func:`train_step`; 0, none, by default).
    """
    if loss not in TRAINING_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(TRAINING_LOSSES)}")
    if steps <= 0 or batch_size <= 0 or n_critic <= 0 or log_every <= 0:
        raise ValueError("steps, batch_size, n_critic and log_every must be positive integers")
    x = _as_tensor_data(data)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    if seed is not None:
        torch.manual_seed(seed)
    opt_g = adam(model.generator.parameters(), lr, betas=betas)
    opt_d = adam(model.discriminator.parameters(), lr_d or lr, betas=betas)
    history, sums, count = GANHistory(), [0.0, 0.0], 0
    model.train()

    def endless():
        while True:
            yield from batches(x, batch_size, shuffle=True, generator=gen)

    stream, start = endless(), time.perf_counter()
    for step in progress(range(1, steps + 1), desc=desc):
        for k in range(n_critic):
            real = next(stream).to(device)
            d, g = train_step(model.generator, model.discriminator, opt_g, opt_d, real, latent_dim=model.latent_dim,
                              loss=loss, gp_weight=gp_weight, update_generator=(k == n_critic - 1),
                              r1_weight=r1_weight)
        check_finite(torch.tensor([d, g]), epoch=1, step=step)
        if ema is not None:
            model.update_ema(ema)
        sums[0], sums[1], count = sums[0] + d, sums[1] + g, count + 1
        last = step == steps or (max_seconds is not None and time.perf_counter() - start > max_seconds)
        if step % log_every == 0 or last:
            history.steps.append(step)
            history.d_loss.append(sums[0] / count)
            history.g_loss.append(sums[1] / count)
            sums, count = [0.0, 0.0], 0
            if eval_fn is not None:
                model.eval()
                history.evals.append(eval_fn(model))
                model.train()
        if last:
            break
    model.eval()
    history.seconds = time.perf_counter() - start
    if verbose:
        print(f"{desc}: {history.summary()}")
    return history


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------

RING_CORE = 1.0        # radius of a mode's core and of a gap's disc, in units of RING_STD
RING_HQ = 2.0          # a sample within 2 RING_STD of its nearest mode centre is high-quality
RING_MIN_SHARE = 0.01  # a reached mode's core holds at least 1% of all samples; a covered one ...
RING_CONTRAST = 2.0    # ... and at least twice the samples of the fuller of its two adjacent gaps


def ring_coverage(samples: torch.Tensor) -> dict:
    """Score 2D ``samples: (N, 2)`` against the 8-Gaussians ring, whose density is known.

    With the mode centres ``c_m = data.RING_CENTERS`` (8, 2), the gap points ``g_k = data.RING_GAPS`` (8, 2)
    (on the ring midway between ``c_k`` and ``c_{k+1}``, 3.1 s from both) and ``s = data.RING_STD``:

    - the **core** of mode ``m`` is the disc ``||x - c_m|| <= s``; **gap** ``k`` is the disc ``||x - g_k|| <= s``.
      Both have the same size and sit on the ring, so mass spread evenly along the ring fills cores and gaps
      alike. Real data put ``(1 - e^{-1/2}) / 8 = 4.9%`` of the samples in each core and 0.2% in each gap;
    - ``modes_reached``: modes whose core holds at least 1% of all samples (a collapsed generator reaches few);
    - ``modes_covered``: reached modes whose core *also* holds at least twice the samples of the fuller of its
      two adjacent gaps (``k = m - 1`` and ``k = m``): the mode stands out from the ring. A ring of samples
      without modes reaches all 8 and covers none; a single blob covers at most 1;
    - ``high_quality``: share of samples within ``2 s`` of their nearest mode centre (real: ``1 - e^{-2} = 0.865``);
    - ``between_modes``: share of samples in any gap (real: 0.016; a ring without modes: 0.18-0.32);
    - ``log_density``: ``mean_x log p(x)`` in nats under the true ring density (:func:`data.ring_log_prob`);
      for real samples it estimates minus the ring's entropy, -2.83. A quality score, not a coverage score:
      samples piled on the mode centres, or on a single mode, score as high or higher, so read it beside
      ``modes_covered``.

    Samples that are not finite lie in no core or gap, are not high-quality, and make ``log_density`` ``-inf``.
    Returns ``{"modes_covered", "modes_reached"}`` (ints 0..8), ``{"high_quality", "between_modes",
    "log_density"}`` (floats), ``"mode_shares"`` and ``"gap_shares"`` (lists of 8 shares of all samples: cores,
    gaps) and ``"n"``. :func:`ring_reference` gives real data's figures; :func:`format_ring` prints a table.
    """
    from gencourse.data import RING_GAPS, ring_log_prob

    is_array = isinstance(samples, torch.Tensor) or type(samples).__module__ == "numpy"
    x = torch.as_tensor(samples).detach() if is_array else None
    if x is None or x.dim() != 2 or x.shape[1] != 2 or len(x) == 0 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if x is not None else type(samples).__name__
        raise ValueError(f"samples must be a float tensor of shape (N, 2) with N >= 1, got {got}")
    x = x.double().cpu()
    finite = torch.isfinite(x).all(dim=1)
    x = torch.where(finite[:, None], x, torch.zeros_like(x))  # placeholders, masked out below
    n = len(x)
    to_centre = torch.cdist(x, RING_CENTERS.double())  # (N, 8)
    in_core = (to_centre <= RING_CORE * RING_STD) & finite[:, None]                               # (N, 8)
    in_gap = (torch.cdist(x, RING_GAPS.double()) <= RING_CORE * RING_STD) & finite[:, None]      # (N, 8)
    core_count, gap_count = in_core.sum(0).double(), in_gap.sum(0).double()  # (8,) each
    fuller_gap = torch.maximum(gap_count, gap_count.roll(1))  # gap m - 1 (rolled) and gap m, beside mode m
    reached = core_count >= RING_MIN_SHARE * n
    covered = reached & (core_count >= RING_CONTRAST * fuller_gap)
    high_quality = (to_centre.min(dim=1).values <= RING_HQ * RING_STD) & finite
    log_density = float(ring_log_prob(x.float()).double().mean()) if bool(finite.all()) else float("-inf")
    return {"modes_covered": int(covered.sum()), "modes_reached": int(reached.sum()),
            "high_quality": float(high_quality.double().mean()),
            "between_modes": float(in_gap.any(dim=1).double().mean()), "log_density": log_density,
            "mode_shares": (core_count / n).tolist(), "gap_shares": (gap_count / n).tolist(), "n": n}


_RING_REFERENCE: dict = {}


def ring_reference(n: int = 20000, seed: int = 0) -> dict:
    """:func:`ring_coverage` of ``n`` real samples, ``data.toy2d("8gaussians", n, seed=seed)``: the figures to
    print beside a model's (cached; a copy is returned). At the defaults: 8 modes covered and reached,
    high-quality 0.862, between modes 0.016, log-density -2.835."""
    from gencourse.data import toy2d

    key = (int(n), int(seed))
    if key not in _RING_REFERENCE:
        _RING_REFERENCE[key] = ring_coverage(toy2d("8gaussians", n, seed=seed))
    return copy.deepcopy(_RING_REFERENCE[key])


RING_COLUMNS = (("modes_covered", "covered", "{:d}/8"), ("modes_reached", "reached", "{:d}/8"),
                ("high_quality", "high-quality", "{:.3f}"), ("between_modes", "between modes", "{:.3f}"),
                ("log_density", "log-density", "{:.2f}"))


def format_ring(rows: dict, reference: dict | bool = True) -> str:
    """A text table of :func:`ring_coverage` figures, one row per entry of ``rows = {name: scores}`` (or one
    scores dict), with real data's row last (``reference``: a scores dict, ``True`` for :func:`ring_reference`,
    ``False`` for none)."""
    if isinstance(rows, dict) and "modes_covered" in rows:
        rows = {"samples": rows}
    if not isinstance(rows, dict) or not all(isinstance(r, dict) and "modes_covered" in r for r in rows.values()):
        raise ValueError("rows must be a dict from ring_coverage, or a dict {name: such a dict}")
    rows = dict(rows)
    if reference is True:
        reference = ring_reference()
    if reference:
        rows["real data"] = reference
    width = max(12, *(len(str(name)) + 2 for name in rows))
    lines = [f"{'':<{width}}" + "".join(f"{title:>15}" for _, title, _ in RING_COLUMNS)]
    for name, r in rows.items():
        lines.append(f"{str(name):<{width}}" + "".join(f"{fmt.format(r[key]):>15}" for key, _, fmt in RING_COLUMNS))
    return "\n".join(lines)


@torch.no_grad()
def sampling_time(model, n: int = 1000, *, repeats: int = 5) -> float:
    """Milliseconds to draw ``n`` samples with ``model.sample(n)`` (median of ``repeats`` runs, after a warm-up)."""
    model.sample(n)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.sample(n)
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


# ----------------------------------------------------------------------------------------------
# Recipes
# ----------------------------------------------------------------------------------------------

# The recipes the lesson compares on the ring, all with the same networks (train_ring; spectral norm wraps the
# same layers). They differ in the loss, the discriminator's steps per generator step and its regularizer; the
# lesson sets the generator steps of each run and prints the seconds each run cost.
RING_RECIPES = {
    # Goodfellow et al.'s game with the non-saturating generator loss, Adam as in DCGAN
    "plain GAN": dict(loss="non-saturating", betas=(0.5, 0.999), n_critic=1),
    # the control: the same game, with as many discriminator steps per generator step as WGAN-GP's critic gets
    "plain GAN, 5 D steps": dict(loss="non-saturating", betas=(0.5, 0.999), n_critic=5),
    # Gulrajani et al.: a critic with a gradient penalty, 5 critic steps per generator step, Adam(0, 0.9);
    # a penalty weight of 1 suits this 2D scale (their toy experiments used 0.1, images 10)
    "WGAN-GP": dict(loss="wgan-gp", betas=(0.0, 0.9), n_critic=5, gp_weight=1.0),
    # the plain GAN with a regularized discriminator and nothing else changed (one D step per generator step):
    # R1 (Mescheder et al. 2018), gamma = 1 (their images used 10; on this 2D scale 0.1 was too weak to matter) ...
    "plain GAN + R1": dict(loss="non-saturating", betas=(0.5, 0.999), n_critic=1, r1_weight=1.0),
    # ... or spectral normalization of every discriminator layer (Miyato et al. 2018)
    "plain GAN + SN": dict(loss="non-saturating", betas=(0.5, 0.999), n_critic=1, spectral=True),
    # ... and spectral normalization with the hinge loss it is paired with in SNGAN and BigGAN
    "SN + hinge loss": dict(loss="hinge", betas=(0.5, 0.999), n_critic=1, spectral=True),
}


def ring_gan(*, g_hidden: int = 128, d_hidden: int = 64, spectral: bool = False) -> GAN:
    """A GAN for 2D data: MLP generator (2D noise, two hidden layers of ``g_hidden``) and MLP discriminator
    (two hidden layers of ``d_hidden``, spectrally normalized when ``spectral``)."""
    return GAN(MLPGenerator(latent_dim=2, hidden=g_hidden), MLPDiscriminator(hidden=d_hidden, spectral=spectral))


def train_ring(recipe: str, *, seed: int = 0, steps: int = 200, d_hidden: int = 64, lr: float = 1e-3,
               batch_size: int = 256, n_data: int = 20000, log_every: int = 25, verbose: bool = False):
    """Train :func:`ring_gan` on the 8-Gaussians ring with one of :data:`RING_RECIPES` -> ``(model, GANHistory)``;
    the history's ``evals`` hold :func:`ring_coverage` of 2000 samples every ``log_every`` generator steps."""
    from gencourse.data import toy2d

    if recipe not in RING_RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RING_RECIPES)}")
    settings = dict(RING_RECIPES[recipe])
    spectral = settings.pop("spectral", False)
    torch.manual_seed(seed)
    model = ring_gan(d_hidden=d_hidden, spectral=spectral)
    history = train_gan(model, toy2d("8gaussians", n_data, seed=seed), steps=steps, batch_size=batch_size, lr=lr,
                        seed=seed, log_every=log_every, eval_fn=lambda m: ring_coverage(m.sample(2000)),
                        desc=f"{recipe}, seed {seed}", verbose=verbose, **settings)
    return model, history


def digits_gan(arch: str = "mlp", *, latent_dim: int = 32, width: int | None = None, spectral: bool = False) -> GAN:
    """A GAN for ``(1, 8, 8)`` digits in ``[0, 1]``.

    ``arch="mlp"``: :class:`MLPGenerator` (``latent_dim -> width -> width -> 64``, sigmoid) and
    :class:`MLPDiscriminator` (``64 -> width -> width -> 1``), width 256: the CPU recipe.
    ``arch="conv"``: the DCGAN-style :class:`ConvGenerator` / :class:`ConvDiscriminator` (``width`` = base
    channels, 32), several times the arithmetic per step: for a GPU. ``spectral``: spectral norm in the discriminator.
    """
    if arch == "mlp":
        width = width or 256
        return GAN(MLPGenerator(latent_dim, width, (1, 8, 8), output="sigmoid"),
                   MLPDiscriminator(64, width, spectral=spectral))
    if arch == "conv":
        width = width or 32
        return GAN(ConvGenerator(latent_dim, width), ConvDiscriminator(width, spectral=spectral))
    raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")


def dcgan(*, latent_dim: int = 32, channels: int = 16, d_norm: str = "none") -> GAN:
    """A DCGAN-style GAN for ``(1, 8, 8)`` digits (Radford et al. 2016): :class:`ConvGenerator` with batch
    normalization (``latent_dim -> (4c, 2, 2) -> (2c, 4, 4) -> (c, 8, 8) -> (1, 8, 8)``, ``c = channels``) and
    :class:`ConvDiscriminator` (``c -> 2c -> 4c`` channels by strided convolutions, LeakyReLU(0.2), a linear
    logit). ``d_norm``: the discriminator's normalization, ``"none"`` or ``"spectral"`` (spectral norm on every
    layer); DCGAN's own batch normalization in the discriminator is not offered (its statistics would depend on
    whether a batch holds real or fake examples)."""
    if d_norm not in ("none", "spectral"):
        raise ValueError(f"d_norm must be 'none' or 'spectral', got {d_norm!r}")
    return GAN(ConvGenerator(latent_dim, channels, batchnorm=True),
               ConvDiscriminator(channels, spectral=d_norm == "spectral"))


def train_dcgan(*, steps: int = 1000, seed: int = 0, channels: int = 16, d_norm: str = "none", eval_fn=None,
                log_every: int = 250, device=None, verbose: bool = False):
    """:func:`dcgan` trained on the 1000 training digits like :func:`train_digits`'s MLP recipe (non-saturating
    loss, Adam(2e-3, betas (0.5, 0.999)), batch 64, weight average with decay 0.995; the average copies the
    batch-norm statistics) for ``steps`` generator steps -> ``(model, GANHistory)``."""
    from gencourse.data import load
    from gencourse.train import seed_everything

    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    seed_everything(seed)
    model = dcgan(channels=channels, d_norm=d_norm)
    if device is not None:
        model.to(device)
    history = train_gan(model, load("digits", "train"), steps=steps, batch_size=64, lr=2e-3, betas=(0.5, 0.999),
                        ema=0.995, seed=seed, log_every=min(log_every, steps), eval_fn=eval_fn, desc="DCGAN-style",
                        verbose=verbose)
    return model, history


def train_digits(*, epochs: int = 250, seed: int = 0, quick: bool = False, arch: str = "mlp", eval_fn=None,
                 log_every: int = 250, device=None):
    """The lesson's headline digits GAN, trained on the 1000 training digits -> ``(model, GANHistory)``.

    :func:`digits_gan` (``arch``), non-saturating loss, Adam(2e-3, betas (0.5, 0.999)) for both players,
    batch 64, ``epochs`` passes over the training set (16 generator steps each), and an exponential moving
    average of the generator's weights (decay 0.995) that :meth:`GAN.sample` uses. ``quick``: 20 steps.
    ``eval_fn(model)`` is recorded every ``log_every`` steps (see :func:`train_gan`). ``device``: where to train
    (default CPU); samples then come on that device.
    """
    from gencourse.data import load
    from gencourse.train import seed_everything

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    seed_everything(seed)
    train = load("digits", "train")
    model = digits_gan(arch)
    if device is not None:
        model.to(device)
    batch_size = 64
    steps = 20 if quick else epochs * math.ceil(len(train) / batch_size)
    history = train_gan(model, train, steps=steps, batch_size=batch_size, lr=2e-3, betas=(0.5, 0.999), ema=0.995,
                        seed=seed, log_every=min(log_every, steps), eval_fn=eval_fn, desc="digits GAN")
    return model, history


# ----------------------------------------------------------------------------------------------
# 28x28 images (MNIST, Fashion-MNIST): a DCGAN-style GAN with a regularized discriminator
# ----------------------------------------------------------------------------------------------

MNIST_EPOCHS = 10        # passes over the training images (782 generator steps each on MNIST's 50,000 at batch 64)
IMAGE_LATENT = 64        # z in R^64
IMAGE_R1 = 1.0           # the R1 weight gamma of the 28x28 recipe (images in [0, 1])


RECIPE_SOURCES = (train_gan, train_step)  # the loop train_digits runs: part of the recipe's fingerprint


class ImageGenerator(nn.Module):
    """DCGAN-style generator for square images ``(C, S, S)`` in ``[0, 1]``, ``S`` divisible by 4 (MNIST: 28):

    ``z (B, latent_dim) -> linear -> (2c, S/4, S/4) -> convT 4x4 stride 2 -> (c, S/2, S/2) -> convT 4x4 stride 2
    -> (c/2, S, S) -> conv 3x3 -> (C, S, S) -> sigmoid`` (MNIST: 7 -> 14 -> 28), ``c = channels``.

    Batch normalization after the linear layer and each transposed convolution (which then carry no bias),
    before the ReLU, not on the output layer: DCGAN's generator (Radford et al. 2016), as :class:`ConvGenerator`.
    """

    def __init__(self, latent_dim: int = IMAGE_LATENT, channels: int = 64, image_shape=(1, 28, 28)):
        super().__init__()
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or image_shape[1] != image_shape[2] or image_shape[1] < 4 or image_shape[1] % 4:
            raise ValueError(f"image_shape must be (C, S, S) with S divisible by 4, got {image_shape!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2 or channels % 2:
            raise ValueError(f"channels must be an even integer >= 2, got {channels!r}")
        self.latent_dim, self.c, self.image_shape = latent_dim, channels, image_shape
        c, s = channels, image_shape[1] // 4
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2 * c * s * s, bias=False), nn.BatchNorm1d(2 * c * s * s), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),  # S/4 -> S/2
            nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(),  # -> S
            nn.Conv2d(c // 2, image_shape[0], 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s = self.image_shape[1] // 4
        return torch.sigmoid(self.net(self.fc(z).view(len(z), 2 * self.c, s, s)))


class ImageDiscriminator(nn.Module):
    """DCGAN-style discriminator for ``(B, C, S, S)`` in ``[0, 1]`` -> logits ``(B,)``: the input scaled to
    ``2x - 1``, conv 4x4 stride 2 (``c``, ``S -> S/2``), conv 4x4 stride 2 (``2c``, ``-> S/4``), conv 3x3
    (``4c``), LeakyReLU(0.2) after each, a linear logit. No batch normalization (its statistics would depend on
    whether a batch holds real or fake images); ``spectral=True`` puts spectral norm on every layer."""

    def __init__(self, channels: int = 64, image_shape=(1, 28, 28), spectral: bool = False):
        super().__init__()
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or image_shape[1] != image_shape[2] or image_shape[1] < 4 or image_shape[1] % 4:
            raise ValueError(f"image_shape must be (C, S, S) with S divisible by 4, got {image_shape!r}")
        c, s = channels, image_shape[1] // 4
        self.net = nn.Sequential(
            _sn(nn.Conv2d(image_shape[0], c, 4, stride=2, padding=1), spectral), nn.LeakyReLU(0.2),  # S -> S/2
            _sn(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), spectral), nn.LeakyReLU(0.2),           # -> S/4
            _sn(nn.Conv2d(2 * c, 4 * c, 3, padding=1), spectral), nn.LeakyReLU(0.2),
            nn.Flatten(), _sn(nn.Linear(4 * c * s * s, 1), spectral),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2 * x - 1).squeeze(1)


def image_gan(dataset: str = "mnist", *, latent_dim: int = IMAGE_LATENT, channels: int = 64, d_channels: int = 64,
              d_norm: str = "none") -> GAN:
    """A fresh DCGAN-style GAN for ``dataset``'s 28x28 images: :class:`ImageGenerator` (``latent_dim -> (2c, 7, 7)
    -> (c, 14, 14) -> (c/2, 28, 28) -> (1, 28, 28)``, ``c = channels``) and :class:`ImageDiscriminator`
    (``d_channels``; ``d_norm="spectral"`` for spectral norm on every layer, ``"none"`` without)."""
    from gencourse.data import LEVELS

    if dataset not in LEVELS or dataset == "digits":
        raise ValueError(f"image_gan is for the 28x28 datasets, {', '.join(d for d in LEVELS if d != 'digits')}; "
                         f"got {dataset!r} (digits: digits_gan or dcgan)")
    if d_norm not in ("none", "spectral"):
        raise ValueError(f"d_norm must be 'none' or 'spectral', got {d_norm!r}")
    return GAN(ImageGenerator(latent_dim, channels), ImageDiscriminator(d_channels, spectral=d_norm == "spectral"))


def train_images(dataset: str = "mnist", *, epochs: int | None = None, seed: int = 0, quick: bool = False,
                 subset: int | None = None, batch_size: int = 64, lr: float = 2e-4, r1_weight: float = IMAGE_R1,
                 d_norm: str = "none", eval_fn=None, log_every: int | None = None, max_seconds: float | None = None,
                 device=None, verbose: bool = True, **model_kwargs):
    """Train :func:`image_gan` on a 28x28 dataset's train split -> ``(model, GANHistory)``, in eval mode.

    The digits recipe's game and stabilizers, sized for 28x28: the non-saturating loss, one discriminator step
    per generator step, Adam(``lr``, betas (0.5, 0.999)) for both players, batches of ``batch_size``, the R1
    penalty ``(r1_weight / 2) * E ||grad_x l(x)||^2`` on real images (Mescheder et al. 2018; ``r1_weight=0``:
    none) and an exponential moving average of the generator's weights that :meth:`GAN.sample` uses, with decay
    ``min(0.999, 1 - 10 / steps)`` (it averages over at most a tenth of the run). ``epochs`` passes over the
    training images (default ``MNIST_EPOCHS``); ``subset``: only the first ``subset`` training images (a short CPU
    run); ``quick``: 30 generator steps, to check that the code runs. ``eval_fn(model)`` is recorded every
    ``log_every`` steps (default: once per epoch). A GAN has no likelihood, so there is no validation loss and
    no early stopping: the run's last (averaged) weights are the model. ``"digits"`` is :func:`train_digits`.
    """
    from gencourse.data import check_training_request, load
    from gencourse.train import seed_everything

    if dataset == "digits":
        return train_digits(epochs=epochs or 250, seed=seed, quick=quick, eval_fn=eval_fn, device=device)
    check_training_request(dataset, epochs, subset)
    if r1_weight < 0:
        raise ValueError(f"r1_weight must be >= 0, got {r1_weight!r}")
    seed_everything(seed)
    images = load(dataset, "train").images[:subset]
    steps_per_epoch = math.ceil(len(images) / batch_size)
    steps = 30 if quick else (epochs or MNIST_EPOCHS) * steps_per_epoch
    model = image_gan(dataset, d_norm=d_norm, **model_kwargs)
    if device is not None:
        model.to(device)
    history = train_gan(model, images, steps=steps, batch_size=batch_size, lr=lr, betas=(0.5, 0.999),
                        ema=min(0.999, 1 - 10 / steps), r1_weight=r1_weight, seed=seed,
                        log_every=min(log_every or steps_per_epoch, steps), eval_fn=eval_fn,
                        max_seconds=max_seconds, desc=f"DCGAN-style GAN ({dataset})", verbose=verbose)
    return model, history
