"""Images as tokens: a VQ-VAE, its codebook, and two transformer priors over its tokens (lesson 10).

**Vector quantization** (van den Oord et al. 2017, "Neural Discrete Representation Learning"). An encoder maps
an image ``x`` to a grid of vectors ``z_e(x): (code_dim, g, g)``; a codebook ``e_1..e_K`` of ``K`` vectors of
``code_dim`` numbers replaces every grid vector by its nearest code (their eq. 1-2):

    k_ij = argmin_k || z_e(x)_ij - e_k ||_2,        z_q(x)_ij = e_{k_ij}

so an 8x8 digit becomes ``g*g`` tokens ``k_ij in {0..K-1}`` (16 tokens for a 4x4 grid), and a decoder maps
``z_q`` back to the image. The argmin has no gradient; the **straight-through estimator** copies the decoder's
gradient at ``z_q`` onto ``z_e``, written ``z_q = z_e + sg[e - z_e]`` (``sg`` = stop-gradient, ``.detach()``),
whose value is ``e`` and whose Jacobian ``dz_q / dz_e`` is the identity. The codebook is trained by its own
terms (their eq. 3):

    L = ||x - D(z_q)||^2  +  ||sg[z_e] - e||^2  +  beta ||z_e - sg[e]||^2
        reconstruction       codebook term         commitment term (beta = 0.25)

The codebook term moves each code toward the encoder outputs assigned to it; the commitment term keeps the
encoder close to its codes. Here each term is a **mean over elements** (``F.mse_loss``), not a sum.

**Codebook health.** Codes that no encoder output picks get no gradient at all and stay where they are: *dead
codes*. :func:`codebook_usage` counts them and measures the **perplexity** ``exp(H(p))`` of the code usage ``p``
(``K`` when all codes are used equally, 1 when one code takes everything). One remedy, used by Jukebox (Dhariwal
et al. 2020): every few epochs, restart each dead code at a randomly chosen recent encoder output
(:func:`restart_dead_codes`; ``train_vqvae(restart_dead=...)`` switches it).

**Priors over tokens.** The VQ-VAE's decoder is deterministic: generating an image means generating its ``T = g*g``
tokens, then decoding them (the decoded image *is* the sample). Two priors over the flattened tokens:

- :class:`TokenGPT`: lesson 09's GPT over the tokens in raster order, after a start token. The chain rule gives
  the exact log-likelihood of the tokens, ``log p(k) = sum_t log p(k_t | k_{<t})``, and sampling takes ``T``
  network evaluations (the approach of VQ-VAE's PixelCNN prior, DALL-E, VQGAN, Parti).
- :class:`MaskedTokenModel`: MaskGIT (Chang et al. 2022). A *bidirectional* transformer sees the tokens with some
  replaced by a ``[MASK]`` id and predicts the masked ones: with a mask ratio ``gamma(r) = cos(pi r / 2)``,
  ``r ~ U(0, 1)``, the loss is ``-sum_{t masked} log p(k_t | k_unmasked)``. It samples by *iterative parallel
  decoding*: start from all ``[MASK]``; at step ``s = 1..S`` predict every masked token at once, draw each,
  keep the most confident draws so that ``floor(T cos(pi s / (2 S)))`` tokens stay masked, and mask the rest again. ``S`` steps are ``S``
  network evaluations (NFE), fewer than ``T``. It has no exact likelihood.

    vqvae, history = train_vqvae(train_x, val_x, num_codes=32, grid=4)     # about 10 s on one CPU core
    tokens = vqvae.encode(train_x)                                           # (N, 4, 4) int64
    prior, _ = train_token_prior("ar", tokens, vqvae.encode(val_x), num_codes=32)
    images = vqvae.decode(prior.sample(1000))                                # (1000, 1, 8, 8) in [0, 1]

**28x28 images** (MNIST, Fashion-MNIST): ``VQVAE(..., image_size=28)`` is the same network with two stride-2
convolutions (28 -> 14 -> 7, 49 tokens); :func:`train_images` trains it and a :class:`TokenGPT` over its tokens
and returns them as one :class:`TokenSampler`.

    model, history = train_images("mnist", subset=512, quick=True)          # checks that it runs
    images = model.sample(100)                                               # (100, 1, 28, 28), 49 NFE each
"""
from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gencourse import transformer as tr

IMAGE_SHAPE = (1, 8, 8)
GRIDS = (2, 4)
GRIDS_BY_SIZE = {8: GRIDS, 28: (7, 14)}  # tokens per side: two or one stride-2 convolutions (8x8 digits, 28x28 MNIST)
DEFAULT_GRID = {8: 4, 28: 7}
CHUNK = 512  # 28x28 images encoded / decoded per pass
PRIOR_KINDS = ("ar", "maskgit")
RESTART_POOL = 4  # dead codes restart on encoder outputs of the last this-many training batches


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_indices(indices, num_codes: int, grid: int | None = None, name: str = "indices") -> torch.Tensor:
    """``ValueError`` unless ``indices`` is an int64 ``(B, H, W)`` (``H = W = grid`` when given) of ids in
    ``0..num_codes-1``."""
    if not isinstance(indices, torch.Tensor) or indices.dim() != 3 or indices.dtype != torch.long:
        what = (f"{tuple(indices.shape)} {indices.dtype}" if isinstance(indices, torch.Tensor)
                else type(indices).__name__)
        raise ValueError(f"{name} must be an int64 tensor (B, H, W) of code ids, got {what}")
    if grid is not None and tuple(indices.shape[1:]) != (grid, grid):
        raise ValueError(f"{name} must have shape (B, {grid}, {grid}) for a {grid}x{grid} grid, "
                         f"got {tuple(indices.shape)}")
    if indices.numel() and (indices.min() < 0 or indices.max() >= num_codes):
        raise ValueError(f"{name} must lie in 0..{num_codes - 1} (num_codes = {num_codes}), got "
                         f"min {indices.min().item()}, max {indices.max().item()}")
    return indices


def check_images(x, size: int = 8) -> torch.Tensor:
    """``ValueError`` unless ``x`` is a float tensor of digits ``(B, 1, 8, 8)`` in ``[0, 1]`` (``size=28``:
    ``(B, 1, 28, 28)``, as ``data.load('mnist')`` gives)."""
    source = "data.load('digits')" if size == 8 else "data.load('mnist')"
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != (1, size, size) or x.dim() != 4:
        what = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        name = "digits images" if size == 8 else "images"
        raise ValueError(f"expected {name} (B, 1, {size}, {size}) in [0, 1] (as {source} gives), got {what}")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError(f"images must be finite and lie in [0, 1] (as {source} gives)")
    return x.float()


def _image_size(x) -> int:
    """28 for a batch of 28x28 images, else 8 (whose check then says what was expected)."""
    return 28 if isinstance(x, torch.Tensor) and x.dim() == 4 and tuple(x.shape[1:]) == (1, 28, 28) else 8


# ----------------------------------------------------------------------------------------------
# The quantizer
# ----------------------------------------------------------------------------------------------

class VectorQuantizer(nn.Module):
    """Nearest-code quantization with a straight-through gradient (van den Oord et al. 2017, eqs. 1-3).

    ``codebook``: an ``nn.Parameter`` ``(num_codes, code_dim)``, initialized uniformly in ``[-1/K, 1/K]`` as in
    the paper's code. ``beta``: the weight of the commitment term.
    """

    def __init__(self, num_codes: int, code_dim: int, *, beta: float = 0.25):
        super().__init__()
        self.num_codes = _positive_int("num_codes", num_codes)
        self.code_dim = _positive_int("code_dim", code_dim)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0 or not math.isfinite(beta):
            raise ValueError(f"beta must be a non-negative number (the paper uses 0.25), got {beta!r}")
        self.beta = float(beta)
        self.codebook = nn.Parameter(torch.empty(num_codes, code_dim).uniform_(-1 / num_codes, 1 / num_codes))

    def check_latents(self, z) -> None:
        """``ValueError`` unless ``z`` is a finite float ``(B, code_dim, H, W)``."""
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or z.shape[1] != self.code_dim:
            what = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"expected encoder outputs z of shape (B, code_dim={self.code_dim}, H, W), got {what}")
        if not z.is_floating_point() or not torch.isfinite(z).all():
            raise ValueError("encoder outputs z must be finite floats (got NaN, inf or an integer tensor)")

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Ids of the nearest codes, ``flat: (N, code_dim) -> (N,)`` int64, from the expanded squared distance
        ``||z||^2 - 2 z.e + ||e||^2`` (one matrix product; no ``(N, K, code_dim)`` tensor)."""
        e = self.codebook
        d2 = (flat ** 2).sum(1, keepdim=True) - 2 * flat @ e.T + (e ** 2).sum(1)[None, :]  # (N, K)
        return d2.argmin(1)

    def forward(self, z: torch.Tensor):
        """``z: (B, code_dim, H, W)`` -> ``(z_q, indices, loss)``.

        ``indices: (B, H, W)`` int64, the nearest code of each grid vector; ``z_q`` like ``z``, holding those codes,
        computed as ``z + sg[e - z]`` so that its gradient flows straight through to ``z``;
        ``loss = mean((sg[z] - e)^2) + beta * mean((z - sg[e])^2)`` (means over all ``B * code_dim * H * W``
        elements): the codebook term trains the codebook only, the commitment term the encoder only.
        """
        self.check_latents(z)
        B, D, H, W = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)  # (B*H*W, D), one row per grid vector
        indices = self.nearest(flat.detach())
        e = self.codebook[indices].view(B, H, W, D).permute(0, 3, 1, 2)  # (B, D, H, W)
        loss = F.mse_loss(e, z.detach()) + self.beta * F.mse_loss(z, e.detach())
        z_q = z + (e - z).detach()  # value e, gradient d z_q / d z = identity
        return z_q, indices.view(B, H, W), loss

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The codes of ``indices: (B, H, W)`` int64 -> ``(B, code_dim, H, W)``."""
        _check_indices(indices, self.num_codes)
        return self.codebook[indices].permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------------------------
# Codebook health: usage, perplexity, dead codes and their restart
# ----------------------------------------------------------------------------------------------

def codebook_usage(indices: torch.Tensor, num_codes: int) -> dict:
    """How the codes are used: ``indices`` (any shape) int64 in ``0..num_codes-1`` -> dict with

    - ``counts``: ``(num_codes,)`` int64, how often each code is picked;
    - ``perplexity``: ``exp(-sum_k p_k ln p_k)`` with ``p = counts / counts.sum()`` (``num_codes`` when every code
      is used equally often, 1 when one code takes everything): the effective number of codes in use;
    - ``dead_share``: the share of codes never picked, ``#{k: counts_k = 0} / num_codes``.
    """
    num_codes = _positive_int("num_codes", num_codes)
    if not isinstance(indices, torch.Tensor) or indices.dtype != torch.long or indices.numel() == 0:
        raise ValueError("indices must be a non-empty int64 tensor of code ids")
    if indices.min() < 0 or indices.max() >= num_codes:
        raise ValueError(f"indices must lie in 0..{num_codes - 1}, got min {indices.min().item()}, "
                         f"max {indices.max().item()}")
    counts = torch.bincount(indices.flatten().cpu(), minlength=num_codes)
    p = counts.double() / counts.sum()
    entropy = -(p * p.clamp_min(1e-300).log()).sum().item()
    return {"counts": counts, "perplexity": math.exp(entropy), "dead_share": (counts == 0).double().mean().item()}


@torch.no_grad()
def restart_dead_codes(quantizer: VectorQuantizer, counts: torch.Tensor, recent: torch.Tensor, *,
                       generator: torch.Generator | None = None) -> int:
    """Move every dead code (``counts == 0``) onto a randomly chosen recent encoder output (Jukebox's
    codebook restart, Dhariwal et al. 2020), in place; returns how many codes moved.

    ``counts: (num_codes,)``, usage since the last restart; ``recent: (N, code_dim)`` encoder outputs seen in that
    time. The outputs are drawn without replacement where there are enough of them, so two revived codes do not
    land on the same point. A revived code sits on an encoder output, so it is that output's nearest code at once.
    """
    if counts.shape != (quantizer.num_codes,):
        raise ValueError(f"counts must have shape ({quantizer.num_codes},), got {tuple(counts.shape)}")
    if recent.dim() != 2 or recent.shape[1] != quantizer.code_dim or len(recent) == 0:
        raise ValueError(f"recent must be encoder outputs (N >= 1, code_dim={quantizer.code_dim}), "
                         f"got {tuple(recent.shape)}")
    dead = (counts == 0).nonzero().flatten()
    if len(dead) == 0:
        return 0
    if len(recent) >= len(dead):
        pick = torch.randperm(len(recent), generator=generator)[:len(dead)]
    else:
        pick = torch.randint(0, len(recent), (len(dead),), generator=generator)
    quantizer.codebook[dead.to(quantizer.codebook.device)] = recent[pick].to(quantizer.codebook)
    return len(dead)


# ----------------------------------------------------------------------------------------------
# The VQ-VAE for 8x8 digits
# ----------------------------------------------------------------------------------------------

class VQVAE(nn.Module):
    """Conv encoder ``(1, 8, 8) -> (code_dim, g, g)``, :class:`VectorQuantizer`, conv decoder back to ``(1, 8, 8)``.

    ``grid`` ``g`` = 4 (one stride-2 convolution, 16 tokens per digit) or 2 (two, 4 tokens). The decoder ends in a
    sigmoid: its output is the mean image in ``[0, 1]``, trained by squared error, and it is deterministic, so the
    decoded tokens *are* the sample (COURSE.md 2.3: a latent model's deterministic decoder is a sampler). The
    encoder sees ``2 x - 1``.

    ``image_size=28`` builds the same network for 28x28 images (MNIST): ``grid`` 7 (two stride-2 convolutions,
    28 -> 14 -> 7, 49 tokens; the default there) or 14 (one, 196 tokens). ``grid=None``: 4 for 8x8, 7 for 28x28.
    ``recon``: the reconstruction term, ``"mse"`` (squared error of the sigmoid's output, the default on 8x8) or
    ``"bce"`` (binary cross-entropy of its logits, per pixel, the default on 28x28: MNIST is mostly black, and
    squared error through a sigmoid stalls once the decoder outputs black everywhere, whose gradient vanishes).
    """

    def __init__(self, num_codes: int = 32, *, grid: int | None = None, code_dim: int = 16, hidden: int = 32,
                 beta: float = 0.25, image_size: int = 8, recon: str | None = None):
        super().__init__()
        recon = ("mse" if image_size == 8 else "bce") if recon is None else recon
        if recon not in ("mse", "bce"):
            raise ValueError(f"recon must be 'mse' or 'bce', got {recon!r}")
        self.recon = recon
        if image_size not in GRIDS_BY_SIZE:
            raise ValueError(f"image_size must be one of {tuple(GRIDS_BY_SIZE)} (8x8 digits, 28x28 MNIST), "
                             f"got {image_size!r}")
        grid = DEFAULT_GRID[image_size] if grid is None else grid
        if grid not in GRIDS_BY_SIZE[image_size]:
            raise ValueError(f"grid must be one of {GRIDS_BY_SIZE[image_size]} (tokens per side of an "
                             f"{image_size}x{image_size} {'digit' if image_size == 8 else 'image'}), got {grid!r}")
        hidden = _positive_int("hidden", hidden)
        self.grid, self.num_codes, self.code_dim = grid, _positive_int("num_codes", num_codes), code_dim
        self.image_size = image_size
        two = image_size // grid == 4  # two stride-2 convolutions (8 -> 2, 28 -> 7), else one (8 -> 4, 28 -> 14)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, hidden, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 4, 2, 1), nn.ReLU(),                       # 8 -> 4 (28 -> 14)
            *([nn.Conv2d(hidden, hidden, 4, 2, 1), nn.ReLU()] if two else []),   # 4 -> 2 (14 -> 7)
            nn.Conv2d(hidden, hidden, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(hidden, code_dim, 1))
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta=beta)
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, hidden, 3, 1, 1), nn.ReLU(),
            *([nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU()] if two else []),  # 2 -> 4 (7 -> 14)
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU(),                    # 4 -> 8 (14 -> 28)
            nn.Conv2d(hidden, hidden, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(hidden, 1, 3, 1, 1), nn.Sigmoid())

    @property
    def num_tokens(self) -> int:
        """Tokens per image, ``g * g``."""
        return self.grid * self.grid

    def forward(self, x: torch.Tensor):
        """``x: (B, 1, 8, 8)`` in [0, 1] -> ``(recon, indices, vq_loss)``: ``recon (B, 1, 8, 8)`` in [0, 1],
        ``indices (B, g, g)`` int64, ``vq_loss`` a scalar (:meth:`VectorQuantizer.forward`)."""
        z_q, indices, vq_loss = self.quantizer(self.encoder(2 * x - 1))
        return self.decoder(z_q), indices, vq_loss

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The VQ-VAE objective: mean squared reconstruction error per pixel + the quantizer's loss (scalar)
        (``recon="bce"``: binary cross-entropy per pixel instead of the squared error)."""
        z_q, _, vq_loss = self.quantizer(self.encoder(2 * x - 1))
        return self.reconstruction_loss(z_q, x) + vq_loss

    def reconstruction_loss(self, z_q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction term of the objective, a mean over pixels: ``mean((D(z_q) - x)^2)``, or with
        ``recon="bce"`` the binary cross-entropy of the decoder's logits (its layers before the sigmoid)."""
        if self.recon == "mse":
            return F.mse_loss(self.decoder(z_q), x)
        return F.binary_cross_entropy_with_logits(self.decoder[:-1](z_q), x)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, 8, 8)`` (``(B, 1, 28, 28)`` at ``image_size=28``) in [0, 1] -> their tokens ``(B, g, g)``
        int64."""
        x = check_images(x, self.image_size).to(self.quantizer.codebook.device)
        if self.image_size != 8 and len(x) > CHUNK:  # 28x28: in chunks, so 7500 images fit in memory
            return torch.cat([self.encode(part) for part in x.split(CHUNK)])
        return self.quantizer(self.encoder(2 * x - 1))[1]

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, g, g)`` int64 -> images ``(B, 1, 8, 8)`` (or 28x28) in [0, 1] (deterministic), on the CPU."""
        _check_indices(indices, self.num_codes, self.grid)
        if self.image_size != 8 and len(indices) > CHUNK:
            return torch.cat([self.decode(part) for part in indices.split(CHUNK)])
        return self.decoder(self.quantizer.lookup(indices.to(self.quantizer.codebook.device))).cpu()


@torch.no_grad()
def reconstruction_mse(model: VQVAE, x: torch.Tensor, batch_size: int = 512) -> float:
    """Mean squared error per pixel of ``decode(encode(x))`` against ``x: (N, 1, 8, 8)`` (or the model's 28x28)."""
    x = check_images(x, model.image_size)
    total = sum(F.mse_loss(model.decode(model.encode(b)), b, reduction="sum").item() for b in x.split(batch_size))
    return total / x.numel()


def train_vqvae(train_x: torch.Tensor, val_x: torch.Tensor | None = None, *, num_codes: int = 32,
                grid: int | None = None, code_dim: int = 16, hidden: int = 32, beta: float = 0.25, epochs: int = 30,
                batch_size: int = 32, lr: float = 2e-3, restart_dead: bool = True, restart_every: int = 2,
                seed: int = 0, progress: bool | None = None, device=None, verbose: bool = True,
                recon: str | None = None):
    """Train a :class:`VQVAE` on digits ``train_x: (N, 1, 8, 8)`` in [0, 1] -> ``(model, history)``, in eval mode.

    Adam with a warm-up and a cosine decay (:class:`~gencourse.train.CosineAdam`) for ``epochs`` epochs; the final
    weights are kept (no model selection, so ``val_x`` is only measured). ``restart_dead``: after every
    ``restart_every``-th epoch but the last, :func:`restart_dead_codes` moves the codes no training batch picked
    during that epoch onto encoder outputs of the epoch's last ``RESTART_POOL`` batches: the *current* encoder's
    outputs (Jukebox restarts from the current batch). Outputs from early in the epoch can be stale: when the
    encoder collapses onto one code in its first epochs (it does at 2x2, K >= 64, from the tiny initial codebook),
    codes restarted there stay dead while codes restarted on the current outputs split the collapsed cluster
    again. A NaN or infinite loss stops training with
    :class:`~gencourse.train.TrainingDiverged`. ``progress``: show a progress bar (default: ``GENCOURSE_PROGRESS``).

    ``history``: per epoch ``train_loss`` (mean objective), ``val_mse`` (reconstruction MSE per pixel on
    ``val_x``; empty without it), ``perplexity`` and ``dead_share`` of the codes on the whole training set at the
    end of the epoch (before any restart), ``restarted`` (codes moved after the epoch); and ``seconds``.

    28x28 images ``(N, 1, 28, 28)`` train a VQ-VAE with ``image_size=28`` (``grid`` 7 unless given);
    ``grid=None`` is 4 on the digits. ``recon``: :class:`VQVAE`'s reconstruction term (default: ``"mse"`` on
    8x8, ``"bce"`` on 28x28).
    """
    from gencourse.train import CosineAdam, batches, check_finite, progress as progress_bar, seed_everything

    size = _image_size(train_x)
    train_x = check_images(train_x, size)
    if val_x is not None:
        val_x = check_images(val_x, size)
    grid = DEFAULT_GRID[size] if grid is None else grid
    epochs, batch_size = _positive_int("epochs", epochs), _positive_int("batch_size", batch_size)
    restart_every = _positive_int("restart_every", restart_every)
    seed_everything(seed)
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = VQVAE(num_codes, grid=grid, code_dim=code_dim, hidden=hidden, beta=beta, image_size=size,
                  recon=recon).to(device)
    optimizer = CosineAdam(model.parameters(), lr, epochs * math.ceil(len(train_x) / batch_size))
    generator = torch.Generator().manual_seed(seed)
    history = {"train_loss": [], "val_mse": [], "perplexity": [], "dead_share": [], "restarted": [], "seconds": 0.0}
    start = time.perf_counter()
    bar = progress_bar(range(1, epochs + 1), desc=f"VQ-VAE (K={num_codes}, {grid}x{grid})", enabled=progress)
    for epoch in bar:
        model.train()
        total, counts, recent = 0.0, torch.zeros(num_codes, dtype=torch.long), deque(maxlen=RESTART_POOL)
        for step, x in enumerate(batches(train_x, batch_size, shuffle=True, generator=generator), 1):
            x = x.to(device)
            z = model.encoder(2 * x - 1)
            z_q, indices, vq_loss = model.quantizer(z)
            loss = model.reconstruction_loss(z_q, x) + vq_loss
            check_finite(loss, epoch=epoch, step=step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
            counts += torch.bincount(indices.flatten().cpu(), minlength=num_codes)
            recent.append(z.detach().permute(0, 2, 3, 1).reshape(-1, model.code_dim))
        history["train_loss"].append(total / len(train_x))
        model.eval()
        usage = codebook_usage(model.encode(train_x), num_codes)
        history["perplexity"].append(usage["perplexity"])
        history["dead_share"].append(usage["dead_share"])
        if val_x is not None:
            history["val_mse"].append(reconstruction_mse(model, val_x))
        moved = 0
        if restart_dead and epoch % restart_every == 0 and epoch < epochs:
            moved = restart_dead_codes(model.quantizer, counts, torch.cat(list(recent)), generator=generator)
        history["restarted"].append(moved)
        bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}", perplexity=f"{usage['perplexity']:.1f}",
                        dead=f"{usage['dead_share']:.2f}")
    bar.close()
    model.eval()
    history["seconds"] = time.perf_counter() - start
    if verbose:
        val = f"; val MSE {history['val_mse'][-1]:.4f}" if history["val_mse"] else ""
        print(f"VQ-VAE (K={num_codes}, {grid}x{grid}): {epochs} epochs in {history['seconds']:.1f} s{val}; "
              f"perplexity {history['perplexity'][-1]:.1f} of {num_codes}, dead codes "
              f"{100 * history['dead_share'][-1]:.0f}% (restarts {'on' if restart_dead else 'off'})")
    return model, history


# ----------------------------------------------------------------------------------------------
# Prior 1: an autoregressive transformer over the tokens
# ----------------------------------------------------------------------------------------------

class TokenGPT(nn.Module):
    """Lesson 09's :class:`~gencourse.transformer.GPT` over the ``T = grid**2`` tokens of a VQ-VAE in raster order.

    The input is a start token (id ``num_codes``) followed by ``k_0..k_{T-2}`` (vocabulary ``num_codes + 1``);
    output ``t`` gives the ``num_codes`` logits of ``k_t`` given ``k_{<t}`` (``out_size = num_codes``: the start
    token is read, never written). Exact likelihood by the chain rule, ``T`` network evaluations per sample.
    """

    likelihood = "exact"

    def __init__(self, num_codes: int, grid: int = 4, *, n_layer: int = 2, n_head: int = 4, n_embd: int = 64,
                 dropout: float = 0.1):
        super().__init__()
        self.num_codes, self.grid = _positive_int("num_codes", num_codes), _positive_int("grid", grid)
        self.num_tokens = grid * grid
        self.start = num_codes
        self.gpt = tr.GPT(num_codes + 1, self.num_tokens, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                          dropout=dropout, out_size=num_codes)

    def logits(self, indices: torch.Tensor) -> torch.Tensor:
        """``indices: (B, g, g)`` int64 -> logits ``(B, T, num_codes)``; row ``t`` depends on tokens ``< t`` only."""
        k = _check_indices(indices, self.num_codes, self.grid).reshape(len(indices), -1)
        k = k.to(self.gpt.head.weight.device)
        inputs = torch.cat([torch.full_like(k[:, :1], self.start), k[:, :-1]], 1)
        return self.gpt(inputs)

    def nll(self, indices: torch.Tensor) -> torch.Tensor:
        """Exact NLL of the tokens in nats per image, ``(B, g, g) -> (B,)``: ``-sum_t log p(k_t | k_{<t})``.
        Divide by ``T ln 2`` for bits per token."""
        k = indices.reshape(len(indices), -1).to(self.gpt.head.weight.device)
        logits = self.logits(indices)
        return F.cross_entropy(logits.transpose(1, 2), k, reduction="none").sum(1)

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` token grids ``(n, g, g)`` int64, one token at a time (:meth:`GPT.generate` with its KV cache; ``T``
        network evaluations). ``temperature`` 1 samples the model itself."""
        n = _positive_int("n", n)
        return self.complete(torch.zeros(n, 0, dtype=torch.long), temperature=temperature, generator=generator)

    @torch.no_grad()
    def complete(self, prefix: torch.Tensor, *, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Keep the first ``m`` tokens (raster order) and draw the rest from ``p(k_t | k_{<t})``: ``prefix (B, m)``
        int64 with ``0 <= m < T`` -> grids ``(B, g, g)``. With ``m = g * rows`` the top ``rows`` rows of the grid
        are given and the prior fills in the image below them (inpainting the lower part)."""
        if not isinstance(prefix, torch.Tensor) or prefix.dim() != 2 or prefix.dtype != torch.long:
            what = f"{tuple(prefix.shape)} {prefix.dtype}" if isinstance(prefix, torch.Tensor) else type(prefix).__name__
            raise ValueError(f"prefix must be an int64 tensor (B, m) of code ids, got {what}")
        if prefix.shape[1] >= self.num_tokens:
            raise ValueError(f"prefix must hold fewer than {self.num_tokens} tokens, got {prefix.shape[1]}")
        if prefix.numel() and (prefix.min() < 0 or prefix.max() >= self.num_codes):
            raise ValueError(f"prefix tokens must lie in 0..{self.num_codes - 1}")
        device = self.gpt.head.weight.device
        start = torch.full((len(prefix), 1), self.start, dtype=torch.long, device=device)
        idx = torch.cat([start, prefix.to(device)], 1)
        out = self.gpt.generate(idx, self.num_tokens - prefix.shape[1], temperature=temperature, generator=generator)
        return out[:, 1:].reshape(len(prefix), self.grid, self.grid).cpu()


# ----------------------------------------------------------------------------------------------
# Prior 2: MaskGIT, a bidirectional transformer that fills in masked tokens
# ----------------------------------------------------------------------------------------------

def cosine_mask_ratio(r: torch.Tensor | float):
    """MaskGIT's schedule ``gamma(r) = cos(pi r / 2)``: the share of tokens masked at progress ``r in [0, 1]``
    (all at ``r = 0``, none at ``r = 1``)."""
    return torch.cos(math.pi / 2 * r) if isinstance(r, torch.Tensor) else math.cos(math.pi / 2 * r)


class MaskedTokenModel(nn.Module):
    """MaskGIT (Chang et al. 2022) over the ``T = grid**2`` tokens of a VQ-VAE.

    Token embedding over ``num_codes + 1`` ids (id ``num_codes`` is ``[MASK]``) plus learned position embeddings,
    ``n_layer`` *bidirectional* blocks (``transformer.Block(..., causal=False)``: every token sees every other),
    a layer norm and a head to ``num_codes`` logits. ``forward(tokens (B, T) int64) -> logits (B, T, num_codes)``.

    It has **no exact likelihood**: the conditionals ``p(k_t | k_unmasked)`` it learns for different masks need not
    come from one joint distribution, and the sampler's order depends on the model's confidence. Its training loss
    is a masked-token cross-entropy, not an NLL; compare it with :class:`TokenGPT` by its samples.
    """

    likelihood = "none"

    def __init__(self, num_codes: int, grid: int = 4, *, n_layer: int = 2, n_head: int = 4, n_embd: int = 64,
                 dropout: float = 0.1):
        super().__init__()
        self.num_codes, self.grid = _positive_int("num_codes", num_codes), _positive_int("grid", grid)
        self.num_tokens = grid * grid
        self.mask_id = num_codes
        self.token_embedding = nn.Embedding(num_codes + 1, n_embd)
        self.position_embedding = nn.Embedding(self.num_tokens, n_embd)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(tr.Block(n_embd, n_head, dropout, causal=False) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, num_codes)
        self.apply(tr.GPT._init_weights)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens: (B, T)`` int64 in ``0..num_codes`` (``num_codes`` = ``[MASK]``) -> logits ``(B, T, num_codes)``."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        h = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))

    def random_mask(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """A training mask ``(batch, T)`` bool, True = masked: per row ``m = ceil(gamma(r) T)`` random positions
        (at least 1), ``r ~ U(0, 1)``."""
        r = torch.rand(batch, 1, generator=generator)
        m = torch.ceil(cosine_mask_ratio(r) * self.num_tokens).clamp(1, self.num_tokens)  # (batch, 1)
        ranks = torch.rand(batch, self.num_tokens, generator=generator).argsort(1).argsort(1)  # random permutation
        return ranks < m

    def loss(self, indices: torch.Tensor, mask: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Masked-token cross-entropy in nats, a mean over the masked tokens of the batch (scalar).

        ``indices: (B, g, g)`` int64; ``mask: (B, T)`` bool, True = replaced by ``[MASK]`` and scored (default
        :meth:`random_mask`)."""
        k = _check_indices(indices, self.num_codes, self.grid).reshape(len(indices), -1)
        device = self.head.weight.device
        mask = (self.random_mask(len(k), generator) if mask is None else mask).to(device)
        k = k.to(device)
        logits = self(k.masked_fill(mask, self.mask_id))
        return F.cross_entropy(logits[mask], k[mask])

    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, *, temperature: float = 1.0, choice_noise: float = 2.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` token grids ``(n, g, g)`` int64 by iterative parallel decoding in ``steps`` network evaluations.

        From all ``[MASK]``; at step ``s = 1..S``: draw every masked token from ``softmax(logits / temperature)``,
        score it by the probability of the drawn token (its confidence), keep the most confident so that
        ``floor(T cos(pi s / (2 S)))`` stay masked (0 after the last step) and re-mask the rest. Tokens once kept
        never change. ``choice_noise``: MaskGIT's "choice temperature" ``tau``, which adds ``tau (1 - s/S)``
        times Gumbel noise to the log-confidence, so early choices vary more (MaskGIT uses 4.5 on ImageNet; on
        the digits 2 did best; 0 ranks by confidence alone and loses classes: the most confident tokens are
        the same in every sample; a large value picks positions at random, an any-order autoregressive
        sample). ``1 <= steps <= T``; default ``min(8, T)``. Runs in eval mode.
        """
        n = _positive_int("n", n)
        steps = min(8, self.num_tokens) if steps is None else _positive_int("steps", steps)
        if steps > self.num_tokens:
            raise ValueError(f"steps must lie in 1..{self.num_tokens} (each step fixes at least one of the "
                             f"{self.num_tokens} tokens), got {steps}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number (1.0 samples the model), got {temperature!r}")
        if not choice_noise >= 0:
            raise ValueError(f"choice_noise must be >= 0, got {choice_noise!r}")
        was_training = self.training
        self.eval()
        device = self.head.weight.device
        T = self.num_tokens
        tokens = torch.full((n, T), self.mask_id, dtype=torch.long, device=device)
        for s in range(1, steps + 1):
            masked = tokens == self.mask_id  # (n, T)
            probs = F.softmax(self(tokens).float() / temperature, -1).cpu()  # (n, T, K)
            drawn = torch.multinomial(probs.reshape(n * T, -1), 1, generator=generator).view(n, T)
            confidence = probs.gather(-1, drawn[..., None]).squeeze(-1).clamp_min(1e-30).log()  # (n, T)
            if choice_noise > 0:
                u = torch.rand(n, T, generator=generator).clamp(1e-20, 1 - 1e-7)
                confidence = confidence + choice_noise * (1 - s / steps) * -torch.log(-torch.log(u))
            confidence = confidence.masked_fill(~masked.cpu(), math.inf)  # kept tokens stay kept
            still = int(math.floor(T * cosine_mask_ratio(s / steps))) if s < steps else 0
            still = min(still, T - 1)  # with steps <= T the cosine schedule fixes at least one token per step
            ranks = confidence.argsort(1, descending=True).argsort(1)  # 0 = most confident
            keep = (ranks < T - still).to(device)
            tokens = torch.where(masked & keep, drawn.to(device), tokens)
        self.train(was_training)
        return tokens.view(n, self.grid, self.grid).cpu()


# ----------------------------------------------------------------------------------------------
# Training a prior
# ----------------------------------------------------------------------------------------------

def train_token_prior(kind: str, train_indices: torch.Tensor, val_indices: torch.Tensor | None = None, *,
                      num_codes: int, epochs: int | None = None, batch_size: int = 64, lr: float = 2e-3,
                      n_layer: int = 2, n_head: int = 4, n_embd: int = 64, dropout: float | None = None, seed: int = 0,
                      device=None, verbose: bool = True):
    """Train a prior over VQ-VAE tokens ``train_indices: (N, g, g)`` int64 -> ``(model, history)``, in eval mode.

    ``kind``: ``"ar"`` (:class:`TokenGPT`, loss = exact NLL in nats per image) or ``"maskgit"``
    (:class:`MaskedTokenModel`, loss = masked-token cross-entropy per masked token). Defaults, measured on the
    digits' 4x4 tokens: ``"ar"`` 60 epochs with dropout 0.3 (1000 sequences overfit fast), ``"maskgit"`` 100
    epochs with dropout 0.1 (it learns a conditional for every mask, and more dropout hurt it). Adam with a
    warm-up and a cosine decay over ``epochs``; with ``val_indices`` the weights of the best validation epoch are
    kept (model selection on val; MaskGIT's validation masks are drawn once, so its validation loss is a function of the
    weights). Trained by :func:`gencourse.train.fit` (progress bar, gradients clipped at norm 1, a NaN loss stops
    training with :class:`~gencourse.train.TrainingDiverged`); ``history`` is its :class:`~gencourse.train.History`.
    """
    from gencourse.train import CosineAdam, fit, seed_everything

    if kind not in PRIOR_KINDS:
        raise ValueError(f"kind must be one of {PRIOR_KINDS}, got {kind!r}")
    num_codes = _positive_int("num_codes", num_codes)
    _check_indices(train_indices, num_codes, name="train_indices")
    grid = train_indices.shape[1]
    if val_indices is not None:
        _check_indices(val_indices, num_codes, grid, name="val_indices")
    epochs = (60 if kind == "ar" else 100) if epochs is None else _positive_int("epochs", epochs)
    dropout = (0.3 if kind == "ar" else 0.1) if dropout is None else dropout
    batch_size = _positive_int("batch_size", batch_size)
    seed_everything(seed)
    device = torch.device(device) if device is not None else torch.device("cpu")
    cls = TokenGPT if kind == "ar" else MaskedTokenModel
    model = cls(num_codes, grid, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout).to(device)
    masks = torch.Generator().manual_seed(seed)

    def loss_fn(k):
        if kind == "ar":
            return model.nll(k).mean()
        # validation (eval mode) draws its masks from a fixed seed, so its loss is a function of the weights
        return model.loss(k, generator=masks if model.training else torch.Generator().manual_seed(1234))

    optimizer = CosineAdam(model.parameters(), lr, epochs * math.ceil(len(train_indices) / batch_size))
    unit = "nats per image" if kind == "ar" else "nats per masked token"
    history = fit(model, loss_fn, train_indices, val_data=val_indices, epochs=epochs, lr=lr, batch_size=batch_size,
                  optimizer=optimizer, grad_clip=1.0, device=device, seed=seed, desc=f"{kind} token prior ({unit})",
                  verbose=verbose)
    return model, history


def sample_images(vqvae: VQVAE, prior: nn.Module, n: int, **kwargs) -> torch.Tensor:
    """``n`` images ``(n, 1, 8, 8)`` in [0, 1]: tokens from ``prior.sample(n, **kwargs)``, decoded by ``vqvae``."""
    return vqvae.decode(prior.sample(n, **kwargs))


# ----------------------------------------------------------------------------------------------
# The digits recipe: a VQ-VAE and its token GPT as one model, with a likelihood bound
# ----------------------------------------------------------------------------------------------

def discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor, scale: float | torch.Tensor,
                             levels: int = 17) -> torch.Tensor:
    """NLL in nats per image ``(B,)`` of images ``x: (B, 1, H, W)`` on the grid ``k / (levels - 1)`` under
    independent pixels, each a Gaussian ``N(mean, scale^2)`` discretized into the grid's bins:

        p(k | mean) = Phi((b_k+ - mean) / scale) - Phi((b_k- - mean) / scale),   b_k+- = (k +- 1/2) / (levels - 1)

    with the outer bins open (``b_0- = -inf``, ``b_{L-1}+ = +inf``), so the ``levels`` probabilities sum to 1
    (PixelCNN++'s discretization, with a Gaussian). Computed in float64 and log space, from the tail each bin lies in."""
    if not isinstance(x, torch.Tensor) or x.shape != mean.shape:
        raise ValueError(f"x and mean must be tensors of the same shape, got {getattr(x, 'shape', type(x))} "
                         f"and {getattr(mean, 'shape', type(mean))}")
    scale = torch.as_tensor(scale, dtype=torch.float64)
    if not (scale > 0).all():
        raise ValueError(f"scale must be positive, got {scale}")
    k = torch.round(x.double().clamp(0, 1) * (levels - 1))
    mu = mean.double()
    lo = torch.where(k > 0, ((k - 0.5) / (levels - 1) - mu) / scale, torch.full_like(mu, -math.inf))
    hi = torch.where(k < levels - 1, ((k + 0.5) / (levels - 1) - mu) / scale, torch.full_like(mu, math.inf))
    upper = lo > 0  # a bin above the mean: Phi(-lo) - Phi(-hi), the same mass from the tail it lies in
    a, b = torch.where(upper, -hi, lo), torch.where(upper, -lo, hi)       # mass = Phi(b) - Phi(a), a < b
    log_b = torch.special.log_ndtr(b)
    log_mass = log_b + torch.log1p(-torch.exp(torch.special.log_ndtr(a) - log_b))  # in log space: tails of 1e-80
    return -log_mass.flatten(1).sum(1).to(x.dtype)


class TokenImageModel(nn.Module):
    """A :class:`VQVAE` and a :class:`TokenGPT` over its tokens, as one generative model of digits (the recipe).

    **Sampling** draws tokens ``k ~ p(k)`` from the GPT and decodes them, ``x = D(k)``: the deterministic decoder
    is the sampler (COURSE.md 2.3). **Likelihood**: for the pixels the decoder needs a stochastic head. Here
    ``p(x | k)`` is a discretized Gaussian around ``D(k)`` with one standard deviation ``head_scale`` fitted on the
    training split (:func:`discretized_gaussian_nll`), so the model is ``p(x) = sum_k p(k) p(x | k)``. One term of
    that sum bounds it from below, the term of the encoder's tokens ``k(x)``:

        -log p(x) <= -log p(k(x)) - log p(x | k(x))    (exactly, with no Monte Carlo)             (5)

    :meth:`nll` is that bound, :meth:`token_nll` its first term (exact under the GPT) and :meth:`decoder_nll` the
    second: the price of the decoder, paid whatever the prior.
    """

    def __init__(self, num_codes: int = 32, grid: int = 4, *, code_dim: int = 16, hidden: int = 32,
                 n_layer: int = 2, n_head: int = 4, n_embd: int = 64, dropout: float = 0.3):
        super().__init__()
        self.vqvae = VQVAE(num_codes, grid=grid, code_dim=code_dim, hidden=hidden)
        self.prior = TokenGPT(num_codes, grid, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout)
        self.register_buffer("head_scale", torch.tensor(0.1))

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` digits ``(n, 1, 8, 8)`` in [0, 1]: ``D(k)``, ``k ~ p(k)`` (``T`` GPT evaluations and one decoder pass)."""
        return self.vqvae.decode(self.prior.sample(n, temperature=temperature, generator=generator))

    @torch.no_grad()
    def token_nll(self, x: torch.Tensor) -> torch.Tensor:
        """``-log p(k(x))`` in nats per image ``(B,)``: the GPT's exact NLL of the encoder's tokens of ``x (B, 1, 8, 8)``."""
        return self.prior.nll(self.vqvae.encode(x)).cpu()

    @torch.no_grad()
    def decoder_nll(self, x: torch.Tensor) -> torch.Tensor:
        """``-log p(x | k(x))`` in nats per image ``(B,)``: ``x (B, 1, 8, 8)`` on the 17 levels under the head."""
        x = check_images(x)
        mean = self.vqvae.decode(self.vqvae.encode(x))
        return discretized_gaussian_nll(x.cpu(), mean, self.head_scale.cpu())

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """The bound (5) in nats per image ``(B,)``, images ``x (B, 1, 8, 8)`` on the 17 levels."""
        return self.token_nll(x) + self.decoder_nll(x)

    @torch.no_grad()
    def fit_head(self, x: torch.Tensor) -> float:
        """Set ``head_scale`` to the standard deviation that minimizes the mean :meth:`decoder_nll` of ``x`` (the
        training split): a bounded 1-D search over ``log scale``. Returns it."""
        from scipy.optimize import minimize_scalar

        x = check_images(x)
        mean = self.vqvae.decode(self.vqvae.encode(x))
        best = minimize_scalar(lambda s: discretized_gaussian_nll(x, mean, math.exp(s)).mean().item(),
                               bounds=(math.log(1e-3), 0.0), method="bounded", options={"xatol": 1e-4})
        self.head_scale.fill_(math.exp(best.x))
        return float(self.head_scale)


def train_digits(*, seed: int = 0, quick: bool = False, device=None, verbose: bool = True,
                 num_codes: int = 32, grid: int = 4, vq_epochs: int = 30, prior_epochs: int = 150):
    """Lesson 10's token recipe on the digits -> ``(TokenImageModel, history)``, in eval mode: a VQ-VAE (K = 32
    codes, a 4x4 grid, dead codes restarted; :func:`train_vqvae`, final weights) for ``vq_epochs`` epochs, then its
    tokens' GPT prior (:func:`train_token_prior`, dropout 0.3, best validation epoch) for ``prior_epochs``, then the
    likelihood head fitted on the training split. ``quick``: 2 epochs each on 200 images, to check the code runs.
    ``history``: ``{"vqvae": ..., "prior": ...}``."""
    from gencourse import data

    train_x, val_x = data.load("digits", "train").images, data.load("digits", "val").images
    if quick:
        train_x, vq_epochs, prior_epochs = train_x[:200], 2, 2
    vqvae, vq_history = train_vqvae(train_x, val_x, num_codes=num_codes, grid=grid, epochs=vq_epochs, seed=seed,
                                    device=device, verbose=verbose)
    prior, prior_history = train_token_prior("ar", vqvae.encode(train_x), vqvae.encode(val_x), num_codes=num_codes,
                                             epochs=prior_epochs, dropout=0.3, seed=seed, device=device,
                                             verbose=verbose)
    model = TokenImageModel(num_codes, grid, dropout=0.3).to(vqvae.quantizer.codebook.device)
    model.vqvae.load_state_dict(vqvae.state_dict())
    model.prior.load_state_dict(prior.state_dict())
    model.eval().fit_head(train_x)
    return model, {"vqvae": vq_history, "prior": prior_history}


# ----------------------------------------------------------------------------------------------
# 28x28 images (MNIST, Fashion-MNIST): the same two stages, 49 tokens
# ----------------------------------------------------------------------------------------------

MNIST_SETTINGS = dict(num_codes=128, code_dim=16, hidden=32, n_layer=4, n_head=4, n_embd=128, dropout=0.1)
MNIST_EPOCHS = {"vqvae": 8, "prior": 20}  # sized for a few minutes on a free Colab GPU (estimate; not timed there)


class TokenSampler(nn.Module):
    """A :class:`VQVAE` and a :class:`TokenGPT` over its tokens as one sampler of images of the VQ-VAE's size (the
    28x28 model of :func:`train_images`; :class:`TokenImageModel` is the digits recipe, with a likelihood head).

    ``sample(n)`` draws ``T = g*g`` tokens one by one (:meth:`TokenGPT.sample`: ``T`` network evaluations, the
    :attr:`nfe`) and decodes them once; :meth:`token_nll` is the GPT's exact NLL of the encoder's tokens (a
    likelihood of the code, not of the pixels)."""

    def __init__(self, vqvae: VQVAE, prior: TokenGPT):
        super().__init__()
        if not isinstance(vqvae, VQVAE) or not isinstance(prior, TokenGPT):
            raise ValueError(f"need a VQVAE and a TokenGPT, got {type(vqvae).__name__} and {type(prior).__name__}")
        if (prior.num_codes, prior.grid) != (vqvae.num_codes, vqvae.grid):
            raise ValueError(f"the prior models {prior.num_codes} codes on a {prior.grid}x{prior.grid} grid, the "
                             f"VQ-VAE has {vqvae.num_codes} on {vqvae.grid}x{vqvae.grid}")
        self.vqvae, self.prior = vqvae, prior

    @property
    def nfe(self) -> int:
        """GPT evaluations per sample: one per token (the decoder adds one pass, not counted)."""
        return self.prior.num_tokens

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, 1, S, S)`` in [0, 1], on the CPU: ``D(k)``, ``k ~ p(k)``."""
        return self.vqvae.decode(self.prior.sample(n, temperature=temperature, generator=generator))

    @torch.no_grad()
    def token_nll(self, x: torch.Tensor) -> torch.Tensor:
        """``-log p(k(x))`` in nats per image ``(B,)``, exact under the GPT, of the tokens of images ``x``."""
        return torch.cat([self.prior.nll(k).cpu() for k in self.vqvae.encode(x).split(CHUNK)])


def image_model(dataset: str = "mnist", **kwargs) -> nn.Module:
    """The untrained token model for ``dataset``: the digits recipe's :class:`TokenImageModel` for ``"digits"``;
    for the 28x28 datasets a :class:`TokenSampler` of a VQ-VAE (``image_size=28``, a 7x7 grid: 49 tokens) and its
    token GPT, with :data:`MNIST_SETTINGS` unless overridden in ``kwargs``."""
    from gencourse.data import LEVELS

    if dataset not in LEVELS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(LEVELS)}")
    if dataset == "digits":
        return TokenImageModel(**kwargs)
    unknown = set(kwargs) - set(MNIST_SETTINGS) - {"grid"}
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; choose from {sorted(MNIST_SETTINGS)} and grid")
    s = {**MNIST_SETTINGS, **kwargs}
    vqvae = VQVAE(s["num_codes"], grid=s.get("grid"), code_dim=s["code_dim"], hidden=s["hidden"], image_size=28)
    prior = TokenGPT(s["num_codes"], vqvae.grid, n_layer=s["n_layer"], n_head=s["n_head"], n_embd=s["n_embd"],
                     dropout=s["dropout"])
    return TokenSampler(vqvae, prior)


def train_images(dataset: str = "mnist", *, vq_epochs: int | None = None, prior_epochs: int | None = None,
                 subset: int | None = None, quick: bool = False, seed: int = 0, device=None, verbose: bool = True,
                 batch_size: int = 128, lr: float = 2e-3, **settings):
    """The token model on ``dataset``'s train split -> ``(model, history)``, in eval mode, ``history`` =
    ``{"vqvae": ..., "prior": ...}``. ``"digits"`` is :func:`train_digits` (the recipe).

    On the 28x28 datasets: a VQ-VAE with a 7x7 grid of :data:`MNIST_SETTINGS`' codes (:func:`train_vqvae`, binary
    cross-entropy, final weights; ``vq_epochs``, default :data:`MNIST_EPOCHS`), its dead codes restarted after
    every epoch (its first epochs collapse onto a few codes; on the MNIST stand-in, 4 epochs reached a validation
    MSE of 0.018, against 0.023 restarting every other epoch), then a :class:`TokenGPT` over
    its 49 tokens (:func:`train_token_prior`, best validation epoch; ``prior_epochs``), both at ``batch_size``
    and ``lr``, validated on at most 1000 validation images. ``subset``: only the first ``subset`` training
    images (a CPU run); ``quick``: at most 2 epochs each. ``settings``: :data:`MNIST_SETTINGS` overrides."""
    from gencourse.data import LEVELS, load

    if dataset not in LEVELS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(LEVELS)}")
    if dataset == "digits":
        epochs = {k: v for k, v in (("vq_epochs", vq_epochs), ("prior_epochs", prior_epochs)) if v is not None}
        return train_digits(seed=seed, quick=quick, device=device, verbose=verbose, **epochs)
    if subset is not None:
        subset = _positive_int("subset", subset)
    vq_epochs = _positive_int("vq_epochs", MNIST_EPOCHS["vqvae"] if vq_epochs is None else vq_epochs)
    prior_epochs = _positive_int("prior_epochs", MNIST_EPOCHS["prior"] if prior_epochs is None else prior_epochs)
    if quick:
        vq_epochs, prior_epochs = min(vq_epochs, 2), min(prior_epochs, 2)
    model = image_model(dataset, **settings)  # checks the settings before any training
    s = {**MNIST_SETTINGS, **settings}
    train_x = load(dataset, "train").images[:subset]
    val_x = load(dataset, "val").images[:min(1000, subset or 1000)]
    vqvae, vq_history = train_vqvae(train_x, val_x, num_codes=s["num_codes"], grid=s.get("grid"),
                                    code_dim=s["code_dim"], hidden=s["hidden"], epochs=vq_epochs,
                                    batch_size=batch_size, lr=lr, restart_every=1, seed=seed, device=device,
                                    verbose=verbose)
    prior, prior_history = train_token_prior("ar", vqvae.encode(train_x), vqvae.encode(val_x),
                                             num_codes=s["num_codes"], epochs=prior_epochs, batch_size=batch_size,
                                             lr=lr, n_layer=s["n_layer"], n_head=s["n_head"], n_embd=s["n_embd"],
                                             dropout=s["dropout"], seed=seed, device=device, verbose=verbose)
    model = model.to(vqvae.quantizer.codebook.device)
    model.vqvae.load_state_dict(vqvae.state_dict())
    model.prior.load_state_dict(prior.state_dict())
    return model.eval(), {"vqvae": vq_history, "prior": prior_history}
