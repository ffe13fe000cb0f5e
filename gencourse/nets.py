"""Time-conditioned networks, shared by diffusion (lesson 06) and flow matching (lesson 08).

Each maps ``(x, time)`` (and, where it takes them, class labels ``y``) to a tensor shaped like ``x``: a noise
estimate for diffusion, a velocity (or a correction to one) for flow matching. ``time (B,)`` lies in ``[0, 1]``.

- :func:`timestep_embedding`: the sinusoidal features every network reads the time through;
- :class:`Conditioning`: ``MLP(sinusoidal(time)) + embed(y)``, label ``num_classes`` meaning "no label";
- :class:`MLPDenoiser`: a residual MLP on flattened vectors or images (the course's digits networks);
- :class:`SmallUNet`: a two-level U-Net for ``(B, C, S, S)`` images (the MNIST path);
- :class:`LocalConvNet`: a few 3x3 convolutions, a local correction for small images.

The output layers of :class:`MLPDenoiser`, :class:`SmallUNet` and :class:`LocalConvNet` start at zero, so an
untrained network adds nothing to the known denoiser or velocity it corrects (preconditioning, lessons 06, 08).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F



def timestep_embedding(time: torch.Tensor, dim: int, max_period: float = 10_000.0, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al.) of ``time (B,)`` in ``[0, 1]``, read as ``scale * time``: ``(B, dim)``.

    ``emb = [cos(scale time w_k), sin(scale time w_k)]`` with ``w_k = max_period^(-k / (dim/2))``. Diffusion reads
    ``time`` as 1000 steps (the defaults); flow matching's networks use ``scale=100, max_period=1000``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=time.device) / half)
    args = scale * time.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class Conditioning(nn.Module):
    """Time (and class) embedding: ``MLP(sinusoidal(time)) + embed(y)``; label ``num_classes`` is "no label"."""

    def __init__(self, dim: int, num_classes: int | None = None):
        super().__init__()
        self.dim = dim
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.num_classes = num_classes
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, time: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = self.time_mlp(timestep_embedding(time, self.dim))
        if self.label is not None:
            if y is None:
                y = torch.full((len(time),), self.num_classes, dtype=torch.long, device=time.device)
            c = c + self.label(y)
        return c


class MLPDenoiser(nn.Module):
    """``eps_theta(x, time, y)`` for vectors: ``x (B, dim)`` (or ``(B, C, H, W)``, flattened) -> same shape.

    ``h = W_in x + c(time, y)``, then ``depth`` residual blocks ``h += W2 SiLU(W1 SiLU(h) + c)``, then
    ``W_out SiLU(h)``. ``time (B,)`` in ``[0, 1]``; ``y (B,)`` labels, ``num_classes`` = no label.
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, num_classes: int | None = None,
                 emb_dim: int = 64):
        super().__init__()
        if dim <= 0 or hidden <= 0 or depth < 0:
            raise ValueError(f"need dim > 0, hidden > 0, depth >= 0; got {dim}, {hidden}, {depth}")
        self.dim, self.hidden, self.num_classes = dim, hidden, num_classes
        self.cond = Conditioning(emb_dim, num_classes)
        self.inp = nn.Linear(dim, hidden)
        self.cond_in = nn.Linear(emb_dim, hidden)
        self.blocks = nn.ModuleList(_MLPBlock(hidden, emb_dim) for _ in range(depth))
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, time: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = self.cond(time, y)
        h = self.inp(x.flatten(1)) + self.cond_in(c)
        for block in self.blocks:
            h = block(h, c)
        return self.out(F.silu(h)).view_as(x)


class _MLPBlock(nn.Module):
    def __init__(self, hidden: int, emb_dim: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)

    def forward(self, h, c):
        return h + self.fc2(F.silu(self.fc1(F.silu(h)) + self.emb(c)))


class SmallUNet(nn.Module):
    """A small U-Net ``eps_theta(x, time, y)`` for images ``(B, C, S, S)`` with ``S`` divisible by 4 (28x28, 8x8).

    Two resolutions down (``S -> S/2 -> S/4``) and back up with skip connections; every block adds the
    time/class embedding per channel. ``time (B,)`` in ``[0, 1]``.
    """

    def __init__(self, channels: int = 1, base: int = 32, num_classes: int | None = None, emb_dim: int = 64):
        super().__init__()
        self.num_classes = num_classes
        self.cond = Conditioning(emb_dim, num_classes)
        c1, c2, c3 = base, 2 * base, 2 * base
        self.inp = nn.Conv2d(channels, c1, 3, padding=1)
        self.down1, self.down2 = _ConvBlock(c1, c1, emb_dim), _ConvBlock(c2, c2, emb_dim)
        self.pool1, self.pool2 = nn.Conv2d(c1, c2, 3, 2, 1), nn.Conv2d(c2, c3, 3, 2, 1)
        self.mid = _ConvBlock(c3, c3, emb_dim)
        self.up2, self.up1 = nn.ConvTranspose2d(c3, c2, 2, 2), nn.ConvTranspose2d(c2, c1, 2, 2)
        self.dec2, self.dec1 = _ConvBlock(2 * c2, c2, emb_dim), _ConvBlock(2 * c1, c1, emb_dim)
        self.out = nn.Conv2d(c1, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, time: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = self.cond(time, y)
        h1 = self.down1(self.inp(x), c)                     # (B, c1, S, S)
        h2 = self.down2(self.pool1(h1), c)                  # (B, c2, S/2, S/2)
        h = self.mid(self.pool2(h2), c)                     # (B, c3, S/4, S/4)
        h = self.dec2(torch.cat([self.up2(h), h2], 1), c)
        h = self.dec1(torch.cat([self.up1(h), h1], 1), c)
        return self.out(F.silu(h))


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)
        self.norm1, self.norm2 = nn.GroupNorm(8, cin), nn.GroupNorm(8, cout)
        self.emb = nn.Linear(emb_dim, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, h, c):
        r = self.conv1(F.silu(self.norm1(h))) + self.emb(c)[:, :, None, None]
        return self.skip(h) + self.conv2(F.silu(self.norm2(r)))




class LocalConvNet(nn.Module):
    """A local correction for small images ``x (B, C, H, W)``: ``depth + 1`` 3x3 convolutions (receptive field
    ``2 depth + 3`` pixels), each shifted per channel by time features, ``h <- h + SiLU(conv(h) + E(emb(t)))``,
    then a 1x1 convolution initialized to zero (so an untrained net adds nothing)."""

    def __init__(self, channels: int = 1, width: int = 16, depth: int = 2, time_dim: int = 64):
        super().__init__()
        if channels <= 0 or width <= 0 or depth < 0:
            raise ValueError(f"need channels > 0, width > 0, depth >= 0; got {channels}, {width}, {depth}")
        self.time_dim = time_dim
        self.time = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU())
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.shifts = nn.ModuleList(nn.Linear(time_dim, width) for _ in range(depth + 1))
        self.out = nn.Conv2d(width, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(timestep_embedding(t.expand(len(x)) if t.dim() == 0 else t, self.time_dim, 1000.0, 100.0))
        h = F.silu(self.inp(x) + self.shifts[0](emb)[:, :, None, None])
        for conv, shift in zip(self.convs, self.shifts[1:]):
            h = h + F.silu(conv(h) + shift(emb)[:, :, None, None])
        return self.out(h)
