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


def check_images(x) -> torch.Tensor:
    """``ValueError`` unless ``x`` is a float tensor of digits ``(B, 1, 8, 8)`` in ``[0, 1]``."""
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != IMAGE_SHAPE or x.dim() != 4:
        what = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected digits images (B, 1, 8, 8) in [0, 1] (as data.load('digits') gives), got {what}")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError("images must be finite and lie in [0, 1] (as data.load('digits') gives)")
    return x.float()


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
    """

    def __init__(self, num_codes: int = 32, *, grid: int = 4, code_dim: int = 16, hidden: int = 32,
                 beta: float = 0.25):
        super().__init__()
        if grid not in GRIDS:
            raise ValueError(f"grid must be one of {GRIDS} (tokens per side of an 8x8 digit), got {grid!r}")
        hidden = _positive_int("hidden", hidden)
        self.grid, self.num_codes, self.code_dim = grid, _positive_int("num_codes", num_codes), code_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, hidden, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 4, 2, 1), nn.ReLU(),                       # 8 -> 4
            *([nn.Conv2d(hidden, hidden, 4, 2, 1), nn.ReLU()] if grid == 2 else []),  # 4 -> 2
            nn.Conv2d(hidden, hidden, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(hidden, code_dim, 1))
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta=beta)
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, hidden, 3, 1, 1), nn.ReLU(),
            *([nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU()] if grid == 2 else []),  # 2 -> 4
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU(),                        # 4 -> 8
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
        """The VQ-VAE objective: mean squared reconstruction error per pixel + the quantizer's loss (scalar)."""
        recon, _, vq_loss = self(x)
        return F.mse_loss(recon, x) + vq_loss

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, 8, 8)`` in [0, 1] -> their tokens ``(B, g, g)`` int64."""
        x = check_images(x).to(self.quantizer.codebook.device)
        return self.quantizer(self.encoder(2 * x - 1))[1]

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, g, g)`` int64 -> images ``(B, 1, 8, 8)`` in [0, 1] (deterministic), on the CPU."""
        _check_indices(indices, self.num_codes, self.grid)
        return self.decoder(self.quantizer.lookup(indices.to(self.quantizer.codebook.device))).cpu()


@torch.no_grad()
def reconstruction_mse(model: VQVAE, x: torch.Tensor, batch_size: int = 512) -> float:
    """Mean squared error per pixel of ``decode(encode(x))`` against ``x: (N, 1, 8, 8)``."""
    x = check_images(x)
    total = sum(F.mse_loss(model.decode(model.encode(b)), b, reduction="sum").item() for b in x.split(batch_size))
    return total / x.numel()


def train_vqvae(train_x: torch.Tensor, val_x: torch.Tensor | None = None, *, num_codes: int = 32, grid: int = 4,
                code_dim: int = 16, hidden: int = 32, beta: float = 0.25, epochs: int = 30, batch_size: int = 32,
                lr: float = 2e-3, restart_dead: bool = True, restart_every: int = 2, seed: int = 0,
                progress: bool | None = None, device=None, verbose: bool = True):
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
    """
    from gencourse.train import CosineAdam, batches, check_finite, progress as progress_bar, seed_everything

    train_x = check_images(train_x)
    if val_x is not None:
        val_x = check_images(val_x)
    epochs, batch_size = _positive_int("epochs", epochs), _positive_int("batch_size", batch_size)
    restart_every = _positive_int("restart_every", restart_every)
    seed_everything(seed)
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = VQVAE(num_codes, grid=grid, code_dim=code_dim, hidden=hidden, beta=beta).to(device)
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
            loss = F.mse_loss(model.decoder(z_q), x) + vq_loss
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
