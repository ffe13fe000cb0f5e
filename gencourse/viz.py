"""Figures the lessons share: image grids, 2D scatter and density plots, training curves.

Every function draws on a matplotlib axis (a new figure when ``ax`` is None) and returns the axis; the
lesson ends the cell with ``plt.show()``.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch


def _images(images) -> torch.Tensor:
    x = torch.as_tensor(images).detach().float().cpu()
    if x.dim() == 2 and math.isqrt(x.shape[1]) ** 2 == x.shape[1]:  # (N, D) flattened square images
        side = math.isqrt(x.shape[1])
        x = x.view(-1, 1, side, side)
    if x.dim() == 3:  # (N, H, W)
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), (N, H, W) or (N, D) with square D; got {tuple(x.shape)}")
    return x


def image_grid(images, nrow: int = 10, *, ax=None, title: str | None = None, labels=None, pad: int = 1,
               cmap: str = "gray", tile_inches: float = 0.6, border: float = 0.5):
    """Show ``images: (N, C, H, W)`` in ``[0, 1]`` as one grid (torchvision's ``make_grid``), ``nrow`` per row.

    Grey-scale images are drawn with ``cmap`` (default ``"gray"``: 0 is black, 1 is white, so digits are white
    ink on black, as the data stores them); colour images (C = 3) as they are. Tiles are separated by ``pad``
    pixels of grey ``border`` (0.5), visible on dark and bright images alike. ``labels`` (N strings or numbers)
    are written in the top-left corner of each tile. A new figure gives each tile ``tile_inches``.
    """
    from torchvision.utils import make_grid

    x = _images(images).clamp(0, 1)
    if len(x) == 0:
        raise ValueError("image_grid got no images")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"image_grid shows 1-channel (grey) or 3-channel (colour) images, got {x.shape[1]} channels")
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"labels must have one entry per image: {len(labels)} labels for {len(x)} images")
    grid = make_grid(x, nrow=nrow, padding=pad, pad_value=border)
    if ax is None:
        rows = math.ceil(len(x) / nrow)
        _, ax = plt.subplots(figsize=(min(nrow, len(x)) * tile_inches + 0.3, rows * tile_inches + 0.5))
    if x.shape[1] == 1:  # make_grid repeats one channel three times: show one, so cmap is what draws it
        ax.imshow(grid[0].numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    if labels is not None:
        h, w = x.shape[-2:]
        for i, label in enumerate(labels):
            r, c = divmod(i, nrow)
            ax.text(pad + c * (w + pad), pad + r * (h + pad), str(label), color="yellow", fontsize=7,
                    va="top", ha="left")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def scatter2d(points, *, ax=None, title: str | None = None, s: float = 2.0, alpha: float = 0.5, lim: float = 4.5,
              c=None, **kwargs):
    """Scatter plot of ``points: (N, 2)`` on a square ``[-lim, lim]^2`` window."""
    p = torch.as_tensor(points).detach().float().cpu().numpy()
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {p.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    ax.scatter(p[:, 0], p[:, 1], s=s, alpha=alpha, c=c, **kwargs)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def grid2d(lim: float = 4.5, n: int = 200) -> tuple[torch.Tensor, float]:
    """A regular ``n x n`` grid over ``[-lim, lim]^2``: points ``(n*n, 2)`` and the area of one cell."""
    axis = torch.linspace(-lim, lim, n)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1), (2 * lim / (n - 1)) ** 2


@torch.no_grad()
def density2d(log_prob, *, ax=None, title: str | None = None, lim: float = 4.5, n: int = 200, cmap: str = "viridis"):
    """Heatmap of ``exp(log_prob(points))`` for a function ``log_prob: (B, 2) -> (B,)`` on ``[-lim, lim]^2``."""
    points, _ = grid2d(lim, n)
    density = torch.exp(torch.as_tensor(log_prob(points)).float().cpu()).view(n, n).numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    ax.imshow(density, origin="lower", extent=[-lim, lim, -lim, lim], cmap=cmap, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_history(history, *, ax=None, title: str | None = None, ylabel: str = "loss"):
    """Training (and validation) loss per epoch from a :class:`gencourse.train.History`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3))
    epochs = np.arange(1, len(history.train_loss) + 1)
    ax.plot(epochs, history.train_loss, label="train")
    if history.val_loss:
        ax.plot(epochs[: len(history.val_loss)], history.val_loss, label="validation")
        if history.best_epoch:
            ax.axvline(history.best_epoch, color="gray", ls=":", lw=1, label=f"best epoch ({history.best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def setup_style(dpi: int = 80) -> None:
    """Modest figure resolution, so lessons stay small when committed with their figures."""
    plt.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "figure.max_open_warning": 0})
