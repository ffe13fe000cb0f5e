"""The one training helper every lesson uses.

    history = fit(model, lambda batch: -model.elbo(batch[0]).mean(), train_set, val_data=val_set, epochs=30)

``fit`` averages the epoch loss over *all* batches (weighted by batch size, never the last batch alone),
validates after every epoch, keeps the weights of the best validation epoch (early stopping with
``patience``), stops with :class:`TrainingDiverged` naming the epoch and step when the loss is NaN or
infinite, and returns a :class:`History` for plotting. Progress bars come from :func:`progress`
(``tqdm.auto``), switched off with ``GENCOURSE_PROGRESS=0``.
"""
from __future__ import annotations

import copy
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn


# ----------------------------------------------------------------------------------------------
# Seeds, devices, progress
# ----------------------------------------------------------------------------------------------

def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and CUDA) so a lesson reruns identically."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_quota(cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """The number of CPUs a container's quota allows (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``),
    or None where there is no quota. Binder, JupyterHub and CI containers often see every core of the
    host while they may use two; torch would start a thread per visible core and crawl."""
    root = Path(cgroup_root)
    try:
        if (root / "cpu.max").exists():
            quota, period = (root / "cpu.max").read_text().split()[:2]
        else:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1"):
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def limit_threads() -> int:
    """Cap torch's CPU threads at the container's CPU quota, if there is one; returns the thread count."""
    quota = cpu_quota()
    if quota is not None and torch.get_num_threads() > quota:
        torch.set_num_threads(quota)
    return torch.get_num_threads()


def get_device(preference: str = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps (Apple), then cpu; or name one of ``"cuda"``, ``"mps"``, ``"cpu"``."""
    choices = ("auto", "cuda", "mps", "cpu")
    if preference not in choices:
        raise ValueError(f"unknown device {preference!r}; choose one of {', '.join(choices)}")
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use 'auto' or 'cpu'")
    if preference == "mps" and not has_mps:
        raise ValueError("device 'mps' was asked for but Apple's MPS is not available; use 'auto' or 'cpu'")
    return torch.device(preference)


def progress_enabled() -> bool:
    """Progress bars are on unless ``GENCOURSE_PROGRESS`` is ``0``, ``false`` or ``off``."""
    return os.environ.get("GENCOURSE_PROGRESS", "1").lower() not in ("0", "false", "off", "no")


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", enabled: bool | None = None):
    """A ``tqdm.auto`` progress bar (a widget in notebooks, text in a terminal), or a silent stand-in."""
    if enabled is None:
        enabled = progress_enabled()
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False)


# ----------------------------------------------------------------------------------------------
# Errors and guards
# ----------------------------------------------------------------------------------------------

class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped."""


def check_finite(loss: torch.Tensor, *, epoch: int, step: int) -> None:
    """Stop with :class:`TrainingDiverged` when ``loss`` is NaN or infinite, naming where it happened."""
    if not torch.isfinite(loss).all():
        raise TrainingDiverged(
            f"the loss became {loss.detach().flatten()[0].item()} at epoch {epoch}, step {step}; training stopped. "
            "Lower the learning rate, clip gradients (grad_clip=1.0), or check the data for NaNs and its range."
        )


# ----------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------

def batches(data, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None):
    """Yield mini-batches of ``data``: a tensor ``(N, ...)`` gives tensors; a dataset with ``.images`` and
    ``.labels`` (such as :func:`gencourse.data.load`'s) gives ``(images, labels)`` pairs; any other dataset
    goes through a ``DataLoader``; a ``DataLoader`` is used as it is. The last batch may be smaller.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if isinstance(data, torch.utils.data.DataLoader):
        yield from data
        return
    if isinstance(data, torch.Tensor):
        tensors, single = (data,), True
    elif hasattr(data, "images") and hasattr(data, "labels"):
        tensors, single = (data.images, data.labels), False
    else:
        yield from torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)
        return
    n = len(tensors[0])
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield tensors[0][idx] if single else tuple(t[idx] for t in tensors)


def batch_size_of(batch) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return len(first)


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    return batch


# ----------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------

@dataclass
class History:
    """What ``fit`` saw: per-epoch mean losses, the best validation epoch, and the seconds it took."""

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0
    snapshots: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def summary(self) -> str:
        text = f"{self.epochs} epochs in {self.seconds:.1f} s; last train loss {self.train_loss[-1]:.4g}"
        if self.val_loss:
            text += f"; best val loss {self.best_val_loss:.4g} at epoch {self.best_epoch}"
            text += " (stopped early, best weights restored)" if self.stopped_early else " (best weights restored)"
        return text

    def plot(self, ax=None, title: str | None = None):
        from gencourse.viz import plot_history

        return plot_history(self, ax=ax, title=title)


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: Callable, data, *, batch_size: int = 512, device=None) -> float:
    """Mean of ``loss_fn(batch)`` over every example of ``data`` (batches weighted by their size)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in batches(data, batch_size):
        batch = _to_device(batch, device)
        n = batch_size_of(batch)
        total += float(loss_fn(batch)) * n
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate got no data")
    return total / count


def fit(
    model: nn.Module,
    loss_fn: Callable,
    train_data,
    *,
    val_data=None,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 128,
    optimizer: torch.optim.Optimizer | None = None,
    patience: int | None = None,
    grad_clip: float | None = None,
    device=None,
    seed: int | None = None,
    max_seconds: float | None = None,
    desc: str = "training",
    verbose: bool = True,
) -> History:
    """Train ``model`` by minimizing ``loss_fn(batch)`` (a scalar, mean over the batch) with Adam.

    ``train_data`` / ``val_data``: a tensor, a course dataset or a DataLoader (see :func:`batches`).
    Each epoch's loss is the mean over all its examples. With ``val_data`` the model is validated after
    every epoch; at the end the weights of the best validation epoch are restored, and with ``patience``
    training stops after that many epochs without improvement. ``max_seconds`` caps the wall time.
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if patience is not None and patience <= 0:
        raise ValueError(f"patience must be a positive number of epochs or None, got {patience}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    history, best_state, waited = History(), None, 0
    start = time.perf_counter()
    bar = progress(range(1, epochs + 1), desc=desc)
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for step, batch in enumerate(batches(train_data, batch_size, shuffle=True, generator=generator), 1):
            batch = _to_device(batch, device)
            loss = loss_fn(batch)
            check_finite(loss, epoch=epoch, step=step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            n = batch_size_of(batch)
            total += loss.item() * n
            count += n
        history.train_loss.append(total / count)
        postfix = {"loss": f"{history.train_loss[-1]:.4g}"}
        if val_data is not None:
            val = evaluate(model, loss_fn, val_data, device=device)
            if not math.isfinite(val):
                raise TrainingDiverged(f"the validation loss became {val} at epoch {epoch}; training stopped.")
            history.val_loss.append(val)
            postfix["val"] = f"{val:.4g}"
            if val < history.best_val_loss:
                history.best_val_loss, history.best_epoch, waited = val, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
        bar.set_postfix(postfix)
        if patience is not None and waited >= patience:
            history.stopped_early = True
            break
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - start
    if verbose:
        print(f"{desc}: {history.summary()}")
    return history


# ----------------------------------------------------------------------------------------------
# Annealed training: a fixed budget, the final weights (diffusion, flow matching)
# ----------------------------------------------------------------------------------------------

class CosineAdam(torch.optim.Adam):
    """Adam whose learning rate warms up linearly over the first ``warmup`` share of ``total_steps`` and then
    decays to 0 along a half cosine. It schedules itself on every ``step()``, so it plugs into ``fit``."""

    def __init__(self, params, lr: float, total_steps: int, warmup: float = 0.05):
        if total_steps <= 0 or not 0 <= warmup < 1:
            raise ValueError(f"need total_steps > 0 and 0 <= warmup < 1, got {total_steps}, {warmup}")
        params = list(params)
        try:  # the fused kernel is several times faster on small models (CPU support since torch 2.4)
            super().__init__(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            super().__init__(params, lr=lr)
        self.peak, self.total, self.warmup, self.count = lr, total_steps, warmup, 0

    def step(self, closure=None):
        frac = min(self.count / self.total, 1.0)
        if frac < self.warmup:
            lr = self.peak * (frac + 1 / self.total) / self.warmup
        else:
            lr = self.peak * 0.5 * (1 + math.cos(math.pi * (frac - self.warmup) / (1 - self.warmup)))
        for group in self.param_groups:
            group["lr"] = lr
        self.count += 1
        return super().step(closure)


def fixed_batches(*tensors: torch.Tensor, batch_size: int = 512):
    """Rows of ``tensors`` (equal first dimension) as a DataLoader of whole-batch slices, in order.

    For validation data whose random draws (times, noise, dropped labels) are drawn once, so that the validation
    loss is the same function of the weights at every epoch (lessons 06 and 08)."""
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset

    rows = TensorDataset(*tensors)
    # one index list per batch: the dataset slices whole batches instead of stacking rows one by one
    return DataLoader(rows, batch_size=None, sampler=BatchSampler(SequentialSampler(rows), batch_size, False))


def train_annealed(model: nn.Module, train_data, val_data=None, *, epochs: int, lr: float, batch_size: int = 128,
                   seed: int | None = None, desc: str = "training", verbose: bool = True,
                   loss_fn: Callable | None = None, snapshot_epochs=()):
    """Minimize ``loss_fn(batch)`` (default: ``model.batch_loss``, as the diffusion and flow-matching models define
    it) with :class:`CosineAdam` for a fixed number of epochs and keep the final, annealed weights; returns a
    :class:`History` with the per-epoch train and validation losses (every example weighted equally), and in
    ``history.snapshots`` a CPU copy of the weights (``state_dict``) after each epoch in ``snapshot_epochs``.

    Why not ``fit``: ``fit`` restores the weights of the best validation epoch. A diffusion model's validation
    loss flattens early, so that epoch lands mid-way, at a high learning rate, and its samples are worse than
    those of the final weights. The pieces (batches, NaN guard, progress bar, evaluation) are :func:`fit`'s own.
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    loss_fn = model.batch_loss if loss_fn is None else loss_fn
    snapshot_epochs = set(snapshot_epochs)
    if any(not 1 <= e <= epochs for e in snapshot_epochs):
        raise ValueError(f"snapshot_epochs must lie in 1..{epochs}, got {sorted(snapshot_epochs)}")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    steps = epochs * math.ceil(len(train_data) / batch_size)
    optimizer = CosineAdam(model.parameters(), lr, steps)
    history, start = History(), time.perf_counter()
    bar = progress(range(1, epochs + 1), desc=desc)
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for step, batch in enumerate(batches(train_data, batch_size, shuffle=True, generator=generator), 1):
            batch = batch.to(device) if isinstance(batch, torch.Tensor) else [b.to(device) for b in batch]
            loss = loss_fn(batch)
            check_finite(loss, epoch=epoch, step=step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * batch_size_of(batch)
            count += batch_size_of(batch)
        history.train_loss.append(total / count)
        if val_data is not None:
            history.val_loss.append(evaluate(model, loss_fn, val_data, device=device))
        if epoch in snapshot_epochs:
            history.snapshots[epoch] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        bar.set_postfix(loss=f"{history.train_loss[-1]:.4g}")
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    if verbose:
        val = (f"; final val loss {history.val_loss[-1]:.4g} (min {min(history.val_loss):.4g})"
               if history.val_loss else "")
        print(f"{desc}: {epochs} epochs in {history.seconds:.1f} s; final train loss {history.train_loss[-1]:.4g}{val}"
              " (final, annealed weights kept)")
    return history


# ----------------------------------------------------------------------------------------------
# Checkpoints: state_dicts only, loaded with weights_only=True
# ----------------------------------------------------------------------------------------------

def adam(params, lr: float, *, betas=(0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam over ``params``, with the fused kernel where this torch and device have it (several small
    parameter tensors step in one kernel: about 30% faster for small models on a CPU with torch >= 2.4);
    plain Adam otherwise. The same algorithm either way."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def save_checkpoint(model: nn.Module, path, **meta) -> Path:
    """Save ``model.state_dict()`` and plain metadata (numbers, strings, lists, dicts) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
    return path


def load_checkpoint(model: nn.Module, path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (``weights_only=True``).

    Returns the metadata. A missing, corrupt or mismatched file raises an error that says which.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train the model first or check the path")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or not written by save_checkpoint): {err}") from err
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(f"{path} is not a gencourse checkpoint: expected a dict with a 'state_dict' entry")
    own = model.state_dict()
    theirs = blob["state_dict"]
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    shapes = [f"{k}: checkpoint {tuple(theirs[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own.keys() & theirs.keys() if own[k].shape != theirs[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(
            f"checkpoint {path} does not match this model (was it saved from another architecture?): "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatches {shapes[:5]}"
        )
    model.load_state_dict(theirs)
    return blob.get("meta", {})
