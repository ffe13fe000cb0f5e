"""Latent flow matching: an autoencoder compresses the image, flow matching models its latent (lesson 10).

Latent diffusion (Rombach et al. 2022, Stable Diffusion) splits image generation in two:

1. An **autoencoder** ``E, D`` with a small spatial latent, trained once for reconstruction. Its encoder gives a
   diagonal Gaussian ``q(z | x) = N(mu(x), diag exp(logvar(x)))`` over a grid ``z (c, h, w)``; the loss is

       L_AE(x) = sum_d BCE(x_d, sigmoid(l_d)) + beta KL(q(z | x) || N(0, I)),   l = D(z),  z ~ q(z | x)     (1)

   with a *light* KL weight ``beta``: the KL keeps the latent compact and the noise of ``q`` makes the decoder
   robust around each code (nearby latents decode to nearby images), not a VAE's prior match. The decoder is
   deterministic: ``x_hat = sigmoid(D(z))`` in ``[0, 1]``.
2. The latents are **standardized** with two numbers fitted on the training split (Stable Diffusion's scale
   factor 0.18215; Stable Diffusion 3 adds a shift):

       z = (mu(x) - shift) / scale,   shift = mean(mu(x_train)),   scale = std(mu(x_train))                  (2)

   (one scalar each, over every latent element), so the data end of the path has unit variance like the noise end.
3. **Flow matching** in the latent, lesson 08's linear path and loss (:func:`gencourse.flow_matching.cfm_loss`),
   time 0 = noise, 1 = data:

       z_t = t z_1 + (1 - t) z_0,   z_0 ~ N(0, I),   L_FM = E || v_theta(z_t, t) - (z_1 - z_0) ||^2           (3)

4. **Sampling** integrates ``dz/dt = v_theta(z, t)`` from ``t = 0`` to 1 (Euler or Heun, lesson 08's solvers)
   and decodes once: ``x = D(scale z_1 + shift)``. Cost: ``NFE`` velocity evaluations + one decoder pass.

Two velocity networks ``v_theta: (B, c, h, w), (B,) -> (B, c, h, w)``:

- :class:`~gencourse.nets.MLPDenoiser` on the flattened latent (lesson 06's network);
- :class:`DiT`, a diffusion transformer (Peebles & Xie 2023) in miniature: each latent cell ``(c,)`` is a token
  (1x1 patches), plus a learned position; ``n_layer`` blocks of bidirectional attention
  (:class:`gencourse.transformer.CausalSelfAttention` with ``causal=False``) and an MLP, conditioned on time by
  **adaLN-Zero**: from ``e = MLP(sinusoidal(t))`` each block computes ``(shift, scale, gate)`` for its two halves,

      h <- h + gate_1 * Attn(LN(h) (1 + scale_1) + shift_1),   h <- h + gate_2 * MLP(LN(h) (1 + scale_2) + shift_2)  (4)

  with the maps to ``(shift, scale, gate)`` initialized to zero, so every block starts as the identity; a final
  adaLN and a zero-initialized linear head map each token back to ``c`` numbers (the untrained DiT outputs 0).

    ae, _ = train_autoencoder()                       # (4, 2, 2) latent, a few seconds
    model, _ = train_latent_fm(ae, network="dit")     # flow matching on the standardized latents
    images = model.sample(1000, steps=4, method="heun")   # (1000, 1, 8, 8) in [0, 1], NFE = 8

**28x28 images** (MNIST, Fashion-MNIST): ``LatentAutoencoder(4, 7, image_size=28)`` is the same network with a
``(4, 7, 7)`` latent (196 numbers for 784 pixels), and :func:`train_images` trains it and a DiT over its 49 cells
(1x1 patches) of about the parameters of lesson 08's 28x28 U-Net (:func:`gencourse.flow_matching.image_model`).
:mod:`gencourse.latent_bench` compares the two at equal training seconds on a CPU.

    model, history = train_images("mnist", subset=512, quick=True)          # checks that it runs
    images = model.sample(100, steps=10, method="euler")                     # (100, 1, 28, 28), 10 NFE + decoder
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from gencourse import data as _data
from gencourse.flow_matching import LinearPath, SAMPLERS, cfm_loss, nfe as _nfe
from gencourse.nets import Conditioning, MLPDenoiser
from gencourse.transformer import CausalSelfAttention

IMAGE_SHAPE = (1, 8, 8)
LATENT_SIZES = {8: (1, 2, 4), 28: (7, 14)}  # latent grid sides: an image halved log2(image_size / s) times
LEVELS_BY_SIZE = {8: 17, 28: 256}            # the data's intensity levels (digits; MNIST and Fashion-MNIST)
NETWORKS = ("mlp", "dit")
RECIPES = {"mlp": dict(epochs=300, lr=2e-3), "dit": dict(epochs=600, lr=5e-3)}  # train_latent_fm's defaults
FIT_SCALE_IMAGES = 2000  # 28x28: the standardization (2) is fitted on the first this-many training images


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------
# The autoencoder
# ----------------------------------------------------------------------------------------------

class LatentAutoencoder(nn.Module):
    """A small convolutional autoencoder for 8x8 digits with a latent grid ``(c, s, s)``, ``s`` in {1, 2, 4}.

    Encoder: a 3x3 convolution, then ``log2(8 / s)`` stride-2 4x4 convolutions (8 -> 4 -> 2), then a 1x1
    convolution to ``2 c`` channels: ``mu`` and ``logvar`` of ``q(z | x)``. Decoder: the mirror image with
    transposed convolutions, ending in per-pixel logits; images are ``sigmoid(logits)``. Loss (1) with
    KL weight ``beta``. Buffers ``shift``, ``scale``: the standardization (2), set by :meth:`fit_scale`;
    :meth:`encode` and :meth:`decode` work on *standardized* latents.

    ``image_size=28``: the same network for 28x28 images (MNIST) with ``s`` in {7, 14} (28 -> 14 -> 7: a
    ``(4, 7, 7)`` latent, 196 numbers for 784 pixels). ``levels``: the data's intensity levels (17 for 8x8
    digits, 256 for 28x28), to which :meth:`LatentFlowMatching.sample` rounds its images.
    """

    def __init__(self, latent_channels: int = 4, latent_size: int = 2, width: int = 32, beta: float = 0.01, *,
                 image_size: int = 8):
        super().__init__()
        _positive_int("latent_channels", latent_channels)
        _positive_int("width", width)
        if image_size not in LATENT_SIZES:
            raise ValueError(f"image_size must be one of {tuple(LATENT_SIZES)} (8x8 digits, 28x28 MNIST), "
                             f"got {image_size!r}")
        if image_size == 8 and latent_size not in (1, 2, 4):
            raise ValueError(f"latent_size must be 1, 2 or 4 (an 8x8 image halved 3, 2 or 1 times), got {latent_size!r}")
        if image_size == 28 and latent_size not in (7, 14):
            raise ValueError(f"latent_size must be 7 or 14 for 28x28 images (halved 2 or 1 times), got {latent_size!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        self.latent_shape = (latent_channels, latent_size, latent_size)
        self.image_shape, self.levels = (1, image_size, image_size), LEVELS_BY_SIZE[image_size]
        self.beta = float(beta)
        downs = int(math.log2(image_size // latent_size))
        widths = [width * 2 ** min(i, 1) for i in range(downs + 1)]          # e.g. 32, 64, 64
        enc = [nn.Conv2d(1, widths[0], 3, padding=1), nn.SiLU()]
        for a, b in zip(widths[:-1], widths[1:]):
            enc += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*enc, nn.Conv2d(widths[-1], 2 * latent_channels, 1))
        dec = [nn.Conv2d(latent_channels, widths[-1], 1), nn.SiLU()]
        for a, b in zip(widths[::-1][:-1], widths[::-1][1:]):
            dec += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.SiLU()]
        self.decoder = nn.Sequential(*dec, nn.Conv2d(widths[0], 1, 3, padding=1))
        self.register_buffer("shift", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def check_images(self, x) -> None:
        """``ValueError`` unless ``x`` is a batch of images ``(B, 1, 8, 8)`` (or this autoencoder's 28x28) in ``[0, 1]``."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            size = self.image_shape[-1]
            what = "digit images" if size == 8 else "images"
            raise ValueError(f"expected {what} of shape (B, 1, {size}, {size}), got {got}")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"images must lie in [0, 1], got range [{x.min().item():.3g}, {x.max().item():.3g}]")

    def check_latents(self, z) -> None:
        """``ValueError`` unless ``z`` is a batch of latents ``(B, c, s, s)`` of this autoencoder."""
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or tuple(z.shape[1:]) != self.latent_shape:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"expected latents of shape (B, {', '.join(map(str, self.latent_shape))}), got {got}")

    def posterior(self, x: torch.Tensor) -> tuple:
        """``q(z | x)`` in raw (unstandardized) units: images ``(B, 1, 8, 8)`` -> ``(mu, logvar)``, each ``(B, c, s, s)``."""
        mu, logvar = self.encoder(2 * x - 1).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 6)

    def decode_logits(self, z_raw: torch.Tensor) -> torch.Tensor:
        """Raw latents ``(B, c, s, s)`` -> per-pixel logits ``(B, 1, 8, 8)``."""
        return self.decoder(z_raw)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Loss (1), a scalar: the batch mean of BCE summed over pixels plus ``beta`` times the KL summed over
        latent elements, with ``z ~ q(z | x)`` (reparameterized) in training mode and ``z = mu`` in eval mode."""
        mu, logvar = self.posterior(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        rec = F.binary_cross_entropy_with_logits(self.decode_logits(z), x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
        return (rec + self.beta * kl).mean()

    @torch.no_grad()
    def fit_scale(self, images: torch.Tensor) -> "LatentAutoencoder":
        """Set ``shift`` and ``scale`` (2) to the mean and standard deviation of every element of ``mu(images)``
        (the training split), so that :meth:`encode` of those images has mean 0 and variance 1."""
        self.check_images(images)
        mu = self.posterior(images)[0]
        self.shift.copy_(mu.mean())
        self.scale.copy_(mu.std())
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, 8, 8)`` in ``[0, 1]`` -> standardized latents ``(mu(x) - shift) / scale``, ``(B, c, s, s)``."""
        self.check_images(x)
        return (self.posterior(x)[0] - self.shift) / self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Standardized latents ``(B, c, s, s)`` -> images ``sigmoid(D(scale z + shift))``, ``(B, 1, 8, 8)`` in [0, 1]."""
        self.check_latents(z)
        return torch.sigmoid(self.decode_logits(z * self.scale + self.shift))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction ``decode(encode(x))``, like ``x``."""
        return self.decode(self.encode(x))


def quantize(images: torch.Tensor, levels: int = 17) -> torch.Tensor:
    """Round images in ``[0, 1]`` to the data's grid ``k / (levels - 1)`` (the digits have 17 levels)."""
    return torch.round(images.clamp(0, 1) * (levels - 1)) / (levels - 1)


def train_autoencoder(*, latent_channels: int = 4, latent_size: int | None = None, width: int = 32,
                      beta: float = 0.01, epochs: int = 60, lr: float = 2e-3, batch_size: int = 64, seed: int = 0,
                      verbose: bool = True, device=None, dataset: str = "digits", subset: int | None = None):
    """Train a :class:`LatentAutoencoder` on the digits train split by loss (1), early stopping on the
    validation loss (:func:`gencourse.train.fit`: progress bar, NaN stop, best weights kept), then
    :meth:`~LatentAutoencoder.fit_scale` on the train split. Returns ``(autoencoder, history)``, in eval mode.
    ``latent_size`` defaults to 2 on the digits. ``dataset="mnist"`` (or ``"fashion-mnist"``): the 28x28
    autoencoder (``latent_size`` 7 by default), its first ``subset`` training images, validated on at most 1000."""
    from gencourse.train import fit, seed_everything

    size = _image_size(dataset)
    latent_size = (2 if size == 8 else 7) if latent_size is None else latent_size
    seed_everything(seed)
    ae = LatentAutoencoder(latent_channels, latent_size, width, beta, image_size=size).to(device or "cpu")
    train, val = _data.load(dataset, "train"), _data.load(dataset, "val")
    if size == 8:
        train_x, val_x = train.images, val.images
    else:
        train_x, val_x = train.images[:subset], val.images[:min(1000, subset or 1000)]
    history = fit(ae, ae.loss, train_x, val_data=val_x, epochs=epochs, lr=lr, batch_size=batch_size,
                  seed=seed, device=device, desc=f"autoencoder {ae.latent_shape}", verbose=verbose)
    if size == 8:
        ae.fit_scale(train.images.to(next(ae.parameters()).device)).eval()
    else:
        ae.fit_scale(train_x[:FIT_SCALE_IMAGES].to(next(ae.parameters()).device)).eval()
    for p in ae.parameters():
        p.requires_grad_(False)
    return ae, history


def _image_size(dataset: str) -> int:
    """8 for the digits, 28 for MNIST and Fashion-MNIST; ``ValueError`` for any other name."""
    if dataset not in _data.LEVELS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(_data.LEVELS)}")
    return 8 if dataset == "digits" else 28


@torch.no_grad()
def _encode_all(ae: "LatentAutoencoder", images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """:meth:`LatentAutoencoder.encode` of many 28x28 images, ``chunk`` at a time (memory)."""
    device = ae.scale.device
    return torch.cat([ae.encode(part.to(device)) for part in images.split(chunk)])


@torch.no_grad()
def reconstruction_mse(ae: LatentAutoencoder, images: torch.Tensor) -> float:
    """Mean squared error per pixel of ``decode(encode(images))`` against ``images (N, 1, 8, 8)``."""
    ae.eval()
    return (ae(images) - images).pow(2).mean().item()


# ----------------------------------------------------------------------------------------------
# The diffusion transformer
# ----------------------------------------------------------------------------------------------

def modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN's affine map ``h (1 + scale) + shift``: ``h (B, T, d)``, ``shift, scale (B, d)`` -> ``(B, T, d)``."""
    return h * (1 + scale[:, None]) + shift[:, None]


class AdaLNBlock(nn.Module):
    """A DiT block (4): bidirectional self-attention and a 4x MLP, each after a LayerNorm without its own affine
    parameters, modulated by ``(shift, scale)`` and gated by ``gate``, all six computed from the time embedding
    ``e (B, d)`` by one zero-initialized linear map (adaLN-Zero: the block starts as the identity).
    ``h (B, T, d)`` -> ``(B, T, d)``."""

    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd, elementwise_affine=False)
        self.ln2 = nn.LayerNorm(n_embd, elementwise_affine=False)
        self.attn = CausalSelfAttention(n_embd, n_head, causal=False)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
        self.ada = nn.Linear(n_embd, 6 * n_embd)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(e)).chunk(6, dim=1)   # each (B, d)
        h = h + gate1[:, None] * self.attn(modulate(self.ln1(h), shift1, scale1))
        return h + gate2[:, None] * self.mlp(modulate(self.ln2(h), shift2, scale2))


class DiT(nn.Module):
    """A tiny diffusion transformer ``v_theta(z, t)`` on a latent grid: ``z (B, c, h, w)``, ``t (B,)`` in [0, 1]
    -> ``(B, c, h, w)``.

    Tokens: the ``T = h w`` cells (1x1 patches), each ``Linear(c, d)`` plus a learned position ``(T, d)``
    (``positions=False`` drops it: the network is then permutation-equivariant over cells). Time: ``e =
    MLP(sinusoidal(t))`` (:class:`~gencourse.nets.Conditioning`), fed to every block by adaLN-Zero
    (:class:`AdaLNBlock`), not as a token. Head: a final adaLN (shift, scale) and a zero-initialized
    ``Linear(d, c)`` per token, so the untrained network outputs exactly 0.
    """

    def __init__(self, latent_shape=(4, 2, 2), *, n_embd: int = 64, n_layer: int = 2, n_head: int = 4,
                 positions: bool = True):
        super().__init__()
        if len(tuple(latent_shape)) != 3:
            raise ValueError(f"latent_shape must be (c, h, w), got {latent_shape!r}")
        for name, v in zip(("c", "h", "w"), latent_shape):
            _positive_int(f"latent_shape's {name}", v)
        _positive_int("n_embd", n_embd), _positive_int("n_layer", n_layer), _positive_int("n_head", n_head)
        self.latent_shape = tuple(latent_shape)
        c, h, w = self.latent_shape
        self.inp = nn.Linear(c, n_embd)
        self.pos = nn.Parameter(0.02 * torch.randn(h * w, n_embd)) if positions else None
        self.cond = Conditioning(n_embd)
        self.blocks = nn.ModuleList(AdaLNBlock(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, elementwise_affine=False)
        self.ada_f = nn.Linear(n_embd, 2 * n_embd)
        self.head = nn.Linear(n_embd, c)
        for layer in (self.ada_f, self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B, c, h, w = z.shape
        t = t.expand(B) if t.dim() == 0 else t
        tokens = z.flatten(2).transpose(1, 2)                  # (B, T, c), cells in raster order
        x = self.inp(tokens)                                   # (B, T, d)
        if self.pos is not None:
            x = x + self.pos
        e = self.cond(t)                                       # (B, d)
        for block in self.blocks:
            x = block(x, e)
        shift, scale = self.ada_f(F.silu(e)).chunk(2, dim=1)
        out = self.head(modulate(self.ln_f(x), shift, scale))  # (B, T, c)
        return out.transpose(1, 2).reshape(B, c, h, w)


def build_network(kind: str, latent_shape, **kwargs) -> nn.Module:
    """A velocity network ``(B, c, h, w), (B,) -> (B, c, h, w)``: ``"mlp"``, :class:`~gencourse.nets.MLPDenoiser`
    on the flattened latent (``hidden=128, depth=2`` unless given), or ``"dit"``, :class:`DiT`
    (``n_embd=48, n_layer=2, n_head=4`` unless given)."""
    if kind not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {kind!r}")
    if kind == "mlp":
        return MLPDenoiser(math.prod(latent_shape), **{"hidden": 128, "depth": 2, **kwargs})
    return DiT(latent_shape, **{"n_embd": 48, "n_layer": 2, "n_head": 4, **kwargs})


def num_parameters(module: nn.Module, *, trainable: bool = True) -> int:
    """Number of (trainable, by default) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


# ----------------------------------------------------------------------------------------------
# Latent flow matching
# ----------------------------------------------------------------------------------------------

class LatentFlowMatching(nn.Module):
    """Flow matching (3) on the standardized latents of a frozen :class:`LatentAutoencoder`.

    ``net``: a velocity network on ``(B, c, h, w)`` latents (:func:`build_network`). :meth:`loss` takes images
    or latents; :meth:`sample` integrates the ODE and decodes.
    """

    def __init__(self, autoencoder: LatentAutoencoder, net: nn.Module):
        super().__init__()
        self.autoencoder = autoencoder.eval()
        for p in self.autoencoder.parameters():
            p.requires_grad_(False)
        self.net = net
        self.path = LinearPath()

    @property
    def latent_shape(self) -> tuple:
        return self.autoencoder.latent_shape

    def velocity(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``v_theta(z, t)``: ``z (B, c, h, w)``, ``t (B,)`` -> ``(B, c, h, w)``."""
        return self.net(z, t)

    def loss(self, z1: torch.Tensor) -> torch.Tensor:
        """The CFM loss (3) on standardized latents ``z1 (B, c, h, w)``, a scalar (mean over the batch of the
        squared error summed over latent elements)."""
        return cfm_loss(self.velocity, z1, self.path)

    @staticmethod
    def nfe(method: str, steps: int) -> int:
        """Velocity evaluations per sample of :meth:`sample`: Euler ``steps``, Heun ``2 steps`` (the decoder
        adds one decoder pass, not counted)."""
        return _nfe(method, steps)

    @torch.no_grad()
    def sample_latents(self, n: int, steps: int = 4, method: str = "heun", *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latents ``(n, c, h, w)``: noise ``z_0 ~ N(0, I)`` carried to ``t = 1`` by ``steps`` steps of
        ``method`` ("euler" or "heun", :func:`gencourse.flow_matching.euler_sample` / ``heun_sample``)."""
        _positive_int("n", n)
        _positive_int("steps", steps)
        if method not in SAMPLERS:
            raise ValueError(f"method must be one of {', '.join(SAMPLERS)}, got {method!r}")
        was_training = self.training
        self.eval()
        device = self.autoencoder.scale.device
        z0 = torch.randn((n, *self.latent_shape), generator=generator).to(device)
        z1 = SAMPLERS[method](self.velocity, z0, steps)
        self.train(was_training)
        return z1

    @torch.no_grad()
    def sample(self, n: int, steps: int = 4, method: str = "heun", *, quantized: bool = True,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, 1, 8, 8)`` in ``[0, 1]``: :meth:`sample_latents`, then the decoder once; rounded to
        the data's 17 levels unless ``quantized=False`` (28x28: the autoencoder's ``levels``, 256). NFE = :meth:`nfe`
        ``(method, steps)``."""
        images = self.autoencoder.decode(self.sample_latents(n, steps, method, generator=generator))
        return quantize(images, self.autoencoder.levels) if quantized else images


def train_latent_fm(autoencoder: LatentAutoencoder, *, network: str = "dit", epochs: int | None = None,
                    lr: float | None = None, batch_size: int = 128, seed: int = 0, verbose: bool = True, device=None,
                    dataset: str = "digits", subset: int | None = None, **net_kwargs):
    """Train a :class:`LatentFlowMatching` on the standardized latents ``encode(x)`` of the digits train split:
    the CFM loss (3), :class:`~gencourse.train.CosineAdam` for a fixed number of epochs, the final weights kept
    (:func:`~gencourse.train.train_annealed`, as lesson 08 trains), the validation loss on the val split's
    latents with its times and noise drawn once. ``network``: "mlp" or "dit" (:func:`build_network`, extra
    keyword arguments passed on); ``epochs`` and ``lr`` default to :data:`RECIPES` (batches of 128: the MLP 300
    epochs at 2e-3, about 5 s on one CPU thread; the DiT, slower per step and slower to fit, 600 epochs at 5e-3,
    about 60 s). Returns ``(model, history)``, in eval mode. ``dataset="mnist"`` (or ``"fashion-mnist"``), with a
    28x28 autoencoder: the latents of its first ``subset`` training images, validated on at most 1000."""
    from gencourse.train import fixed_batches, seed_everything, train_annealed

    if not isinstance(autoencoder, LatentAutoencoder):
        raise ValueError(f"autoencoder must be a trained LatentAutoencoder, got {type(autoencoder).__name__}")
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
    epochs = RECIPES[network]["epochs"] if epochs is None else epochs
    lr = RECIPES[network]["lr"] if lr is None else lr
    seed_everything(seed)
    device = device or autoencoder.scale.device
    autoencoder = autoencoder.to(device).eval()
    size = _image_size(dataset)
    if autoencoder.image_shape[-1] != size:
        raise ValueError(f"the autoencoder takes {autoencoder.image_shape[-1]}x{autoencoder.image_shape[-1]} images, "
                         f"{dataset!r} has {size}x{size}")
    with torch.no_grad():
        if size == 8:
            z_train = autoencoder.encode(_data.load("digits", "train").images.to(device))
            z_val = autoencoder.encode(_data.load("digits", "val").images.to(device))
        else:
            z_train = _encode_all(autoencoder, _data.load(dataset, "train").images[:subset])
            z_val = _encode_all(autoencoder, _data.load(dataset, "val").images[:min(1000, subset or 1000)])
    model = LatentFlowMatching(autoencoder, build_network(network, autoencoder.latent_shape, **net_kwargs)).to(device)
    g = torch.Generator().manual_seed(seed + 1)
    t_val = torch.rand(len(z_val), generator=g).to(device)
    x0_val = torch.randn(z_val.shape, generator=g).to(device)
    val = fixed_batches(z_val, t_val, x0_val)

    def loss_fn(batch):
        if isinstance(batch, torch.Tensor):
            return model.loss(batch)
        z1, t, x0 = batch                                       # validation: every draw fixed
        zt, ut = model.path.sample(x0, z1, t), model.path.target_velocity(x0, z1, t)
        return (model.velocity(zt, t) - ut).pow(2).flatten(1).sum(1).mean()

    history = train_annealed(model.net, z_train, val, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                             loss_fn=loss_fn, desc=f"latent flow matching ({network})", verbose=verbose)
    return model.eval(), history


def digits_model(network: str = "dit") -> LatentFlowMatching:
    """The recipe's untrained architecture (what a checkpoint loads into): the default autoencoder and a
    ``network`` velocity net on its ``(4, 2, 2)`` latent."""
    ae = LatentAutoencoder()
    return LatentFlowMatching(ae, build_network(network, ae.latent_shape))


def train_digits(*, seed: int = 0, quick: bool = False, device=None, verbose: bool = True, network: str = "dit",
                 ae_epochs: int = 60, fm_epochs: int = 1000, lr: float = 5e-3):
    """Lesson 10's latent recipe on the digits -> ``(LatentFlowMatching, history)``, in eval mode: the autoencoder
    (:func:`train_autoencoder`, ``ae_epochs``, best validation epoch), then flow matching on its standardized
    latent with the DiT (:func:`train_latent_fm`, ``fm_epochs`` at ``lr``, final weights). ``quick``: 2 epochs each,
    to check the code runs. ``history``: ``{"autoencoder": ..., "flow": ...}``."""
    if quick:
        ae_epochs, fm_epochs = 2, 2
    ae, ae_history = train_autoencoder(epochs=ae_epochs, seed=seed, verbose=verbose, device=device)
    model, fm_history = train_latent_fm(ae, network=network, epochs=fm_epochs, lr=lr, seed=seed, verbose=verbose,
                                        device=device)
    return model, {"autoencoder": ae_history, "flow": fm_history}


# ----------------------------------------------------------------------------------------------
# 28x28 images (MNIST, Fashion-MNIST): a (4, 7, 7) latent and a DiT over its 49 cells
# ----------------------------------------------------------------------------------------------

MNIST_DIT = dict(n_embd=64, n_layer=5, n_head=4)  # about the parameters of flow_matching's 28x28 U-Net (394k vs 422k)
MNIST_EPOCHS = {"autoencoder": 10, "flow": 40}      # sized for a few minutes on a free Colab GPU (an estimate)
MNIST_LR = 2e-3


def image_model(dataset: str = "mnist", network: str = "dit", **net_kwargs) -> LatentFlowMatching:
    """The untrained latent model for ``dataset``: :func:`digits_model` for ``"digits"``; for the 28x28 datasets a
    :class:`LatentAutoencoder` with a ``(4, 7, 7)`` latent and a ``network`` velocity net on it (the DiT with
    :data:`MNIST_DIT` unless overridden: 49 tokens, 1x1 patches, as on the digits)."""
    size = _image_size(dataset)
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
    if size == 8:
        if net_kwargs:
            raise ValueError("the digits model takes no network settings (it is the recipe's architecture)")
        return digits_model(network)
    ae = LatentAutoencoder(4, 7, image_size=28)
    kwargs = {**(MNIST_DIT if network == "dit" else {}), **net_kwargs}
    return LatentFlowMatching(ae, build_network(network, ae.latent_shape, **kwargs))


def train_images(dataset: str = "mnist", *, network: str = "dit", ae_epochs: int | None = None,
                 fm_epochs: int | None = None, lr: float | None = None, subset: int | None = None,
                 batch_size: int = 128, quick: bool = False, seed: int = 0, device=None, verbose: bool = True,
                 **net_kwargs):
    """Latent flow matching on ``dataset``'s train split -> ``(LatentFlowMatching, history)``, in eval mode,
    ``history = {"autoencoder": ..., "flow": ...}``. ``"digits"`` is :func:`train_digits` (the recipe).

    On the 28x28 datasets: the autoencoder with a ``(4, 7, 7)`` latent (:func:`train_autoencoder`, best validation
    epoch; ``ae_epochs``, default :data:`MNIST_EPOCHS`), then flow matching on its standardized latents
    (:func:`train_latent_fm`, final weights; ``fm_epochs`` at ``lr``, default :data:`MNIST_LR`) with a ``network``
    of about the pixel U-Net's parameters (:data:`MNIST_DIT`). ``subset``: only the first ``subset`` training images
    (a CPU run); ``batch_size``: both stages' batches; ``quick``: at most 2 epochs each. Each history has
    ``.seconds``."""
    size = _image_size(dataset)
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
    if size == 8:
        epochs = {k: v for k, v in (("ae_epochs", ae_epochs), ("fm_epochs", fm_epochs), ("lr", lr)) if v is not None}
        return train_digits(seed=seed, quick=quick, device=device, verbose=verbose, network=network, **epochs)
    if subset is not None:
        _positive_int("subset", subset)
    ae_epochs = _positive_int("ae_epochs", MNIST_EPOCHS["autoencoder"] if ae_epochs is None else ae_epochs)
    fm_epochs = _positive_int("fm_epochs", MNIST_EPOCHS["flow"] if fm_epochs is None else fm_epochs)
    if quick:
        ae_epochs, fm_epochs = min(ae_epochs, 2), min(fm_epochs, 2)
    ae, ae_history = train_autoencoder(dataset=dataset, subset=subset, epochs=ae_epochs, batch_size=batch_size,
                                       seed=seed, verbose=verbose, device=device)
    kwargs = {**(MNIST_DIT if network == "dit" else {}), **net_kwargs}
    model, fm_history = train_latent_fm(ae, network=network, epochs=fm_epochs, lr=MNIST_LR if lr is None else lr,
                                        batch_size=batch_size, seed=seed, verbose=verbose, device=device,
                                        dataset=dataset, subset=subset, **kwargs)
    return model, {"autoencoder": ae_history, "flow": fm_history}
