"""The course's data ladder: 2D toys -> scikit-learn's 8x8 digits -> MNIST / Fashion-MNIST.

Images come as float tensors ``(C, H, W)`` in ``[0, 1]`` on the data's discrete grid ``k / (L - 1)``,
``k in {0, ..., L - 1}`` with ``L = LEVELS[name]`` (17 for digits, 256 for MNIST).

Continuous models see dequantized data ``y = (k + u) / L`` with ``u ~ U[0, 1)^D``; their discrete
negative log-likelihood is bounded by ``E_u[-log p(y)] + D ln L`` (:func:`discrete_nll_bound`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

TOY2D = ("moons", "circles", "8gaussians", "checkerboard", "swissroll", "2spirals")
LEVELS = {"digits": 17, "mnist": 256, "fashion-mnist": 256}
SPLITS = ("train", "val", "test")

# The 8-Gaussians ring: mode centres and the standard deviation of each mode.
RING_RADIUS = 2.0 * math.sqrt(2.0)
RING_STD = 0.5 / math.sqrt(2.0)
RING_CENTERS = torch.tensor(
    [[RING_RADIUS * math.cos(a), RING_RADIUS * math.sin(a)] for a in np.arange(8) * math.pi / 4],
    dtype=torch.float32,
)
# The points of the ring midway between neighbouring modes: RING_GAPS[k] lies between RING_CENTERS[k] and
# RING_CENTERS[(k + 1) % 8], at angle (k + 1/2) pi / 4, 2 R sin(pi / 16) = 1.10 = 3.1 RING_STD from both.
RING_GAPS = torch.tensor(
    [[RING_RADIUS * math.cos(a), RING_RADIUS * math.sin(a)] for a in (np.arange(8) + 0.5) * math.pi / 4],
    dtype=torch.float32,
)

DIGITS_SPLIT = {"train": (0, 1000), "val": (1000, 1350), "test": (1350, 1797)}
MNIST_VAL_SIZE = 10_000  # carved from the end of MNIST's training set


# ----------------------------------------------------------------------------------------------
# 2D toys
# ----------------------------------------------------------------------------------------------

def toy2d(name: str, n: int, *, seed: int = 0) -> torch.Tensor:
    """Draw ``n`` points from a 2D toy distribution: a tensor ``(n, 2)``, roughly within ``[-4, 4]^2``.

    ``name`` is one of :data:`TOY2D`. The same ``seed`` gives the same points.
    """
    if name not in TOY2D:
        raise ValueError(f"unknown 2D toy {name!r}; choose one of {', '.join(TOY2D)}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"n must be a positive integer number of points, got {n!r}")
    rng = np.random.default_rng(seed)
    x = _TOY_SAMPLERS[name](rng, int(n))
    return torch.as_tensor(x, dtype=torch.float32)


def _moons(rng, n):
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples=n, noise=0.08, random_state=int(rng.integers(2**31)))
    return (x - [0.5, 0.25]) * 2.0


def _circles(rng, n):
    from sklearn.datasets import make_circles

    x, _ = make_circles(n_samples=n, factor=0.5, noise=0.06, random_state=int(rng.integers(2**31)))
    return x * 3.0


def _eight_gaussians(rng, n):
    centers = RING_CENTERS.numpy()[rng.integers(0, 8, size=n)]
    return centers + RING_STD * rng.standard_normal((n, 2))


def _checkerboard(rng, n):
    x1 = rng.uniform(-2, 2, size=n)
    x2 = rng.uniform(0, 1, size=n) - rng.integers(0, 2, size=n) * 2.0
    x2 = x2 + (np.floor(x1) % 2)
    return np.stack([x1, x2], axis=1) * 2.0


def _swissroll(rng, n):
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    return x / 3.5 + 0.25 * rng.standard_normal((n, 2))


def _two_spirals(rng, n):
    t = np.sqrt(rng.uniform(size=n)) * 540 * (2 * np.pi) / 360
    side = rng.integers(0, 2, size=n) * 2 - 1  # which of the two arms
    x = np.stack([-np.cos(t) * t, np.sin(t) * t], axis=1) * side[:, None]
    return (x + 0.5 * rng.standard_normal((n, 2))) / 3.0


_TOY_SAMPLERS = {
    "moons": _moons,
    "circles": _circles,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "swissroll": _swissroll,
    "2spirals": _two_spirals,
}


def ring_log_prob(x: torch.Tensor) -> torch.Tensor:
    """Exact log-density of the 8-Gaussians ring at ``x: (B, 2)`` -> ``(B,)``.

    p(x) = 1/8 sum_m N(x; c_m, RING_STD^2 I).
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (B, 2), got {tuple(x.shape)}")
    sq = ((x[:, None, :] - RING_CENTERS) ** 2).sum(-1)  # (B, 8)
    log_comp = -sq / (2 * RING_STD**2) - math.log(2 * math.pi * RING_STD**2)
    return torch.logsumexp(log_comp, dim=1) - math.log(8)


# ----------------------------------------------------------------------------------------------
# Image datasets
# ----------------------------------------------------------------------------------------------

class ImageDataset(Dataset):
    """Images and labels held in memory.

    ``images: (N, C, H, W)`` in ``[0, 1]`` on the grid ``k / (levels - 1)``; ``labels: (N,)`` int64.
    Indexing yields ``(image (C, H, W), int label)`` like torchvision's datasets.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, name: str, split: str):
        self.images = images.float()
        self.labels = labels.long()
        self.name = name
        self.split = split
        self.levels = LEVELS[name]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])

    @property
    def shape(self) -> tuple:
        """Shape of one image, ``(C, H, W)``."""
        return tuple(self.images.shape[1:])

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, shape={self.shape}, levels={self.levels})"


class DatasetUnavailableError(RuntimeError):
    """A dataset that is neither on disk nor downloadable right now."""


def check_training_request(dataset: str, epochs, subset) -> None:
    """What every family's ``train_images`` checks first: ``dataset`` one of :data:`LEVELS`, ``epochs`` a
    positive integer or None (the family's default), ``subset`` a positive number of training images or None
    (all); a ``ValueError`` that says which is wrong otherwise."""
    import numbers

    def positive(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0

    if dataset not in LEVELS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(LEVELS)}")
    if epochs is not None and not positive(epochs):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if subset is not None and not positive(subset):
        raise ValueError(f"subset must be a positive number of training images or None, got {subset!r}")


def data_root(root=None) -> Path:
    """Where datasets are cached: ``root``, else ``$GENCOURSE_DATA``, else ``data/`` of the repository."""
    if root is not None:
        return Path(root)
    if os.environ.get("GENCOURSE_DATA"):
        return Path(os.environ["GENCOURSE_DATA"])
    return Path(__file__).resolve().parent.parent / "data"


def load(name: str, split: str = "train", *, root=None, download: bool = True) -> ImageDataset:
    """Load an image dataset split as an :class:`ImageDataset` of ``(image (C,H,W) in [0,1], int label)``.

    - ``"digits"``: scikit-learn's 8x8 digits, ``(1, 8, 8)``, 17 levels, offline. ``load_digits()`` order:
      train = first 1000, val = next 350, test = last 447.
    - ``"mnist"``, ``"fashion-mnist"``: ``(1, 28, 28)``, 256 levels, through torchvision under ``root``
      (default ``data/`` or ``$GENCOURSE_DATA``); val = the last 10,000 of the official training set.
    """
    if name not in LEVELS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(LEVELS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if name == "digits":
        return _load_digits(split)
    return _load_torchvision(name, split, data_root(root), download)


def _load_digits(split: str) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    lo, hi = DIGITS_SPLIT[split]
    images = torch.as_tensor(bunch.images[lo:hi], dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(bunch.target[lo:hi], dtype=torch.long)
    return ImageDataset(images, labels, name="digits", split=split)


def _load_torchvision(name: str, split: str, root: Path, download: bool) -> ImageDataset:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    train = split != "test"
    try:
        ds = cls(str(root), train=train, download=download)
    except Exception as err:  # torchvision raises RuntimeError / URLError / OSError depending on the failure
        how = "could not be downloaded (no internet connection?)" if download else "is not downloaded (download=False)"
        raise DatasetUnavailableError(
            f"{name} is not under {root} and {how}. Use load('digits'), which ships with scikit-learn and "
            f"works offline, or run once with internet access (download=True) to cache {name} under {root}. "
            f"[{type(err).__name__}: {err}]"
        ) from err
    images = ds.data.float().div_(255.0).unsqueeze(1)
    labels = torch.as_tensor(ds.targets, dtype=torch.long)
    if train:
        cut = len(images) - MNIST_VAL_SIZE if len(images) > 2 * MNIST_VAL_SIZE else int(len(images) * 5 / 6)
        sl = slice(0, cut) if split == "train" else slice(cut, None)
        images, labels = images[sl], labels[sl]
    return ImageDataset(images, labels, name=name, split=split)


def read_idx(path) -> torch.Tensor:
    """Read an MNIST-style IDX file (``.gz`` or raw), e.g. ``t10k-images-idx3-ubyte.gz`` -> uint8 tensor
    ``(N, 28, 28)`` for images, ``(N,)`` for labels. The format: two zero bytes, a type code (8 = uint8), the
    number of dimensions, each dimension as a big-endian int32, then the values."""
    import gzip

    path = Path(path)
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (its header is {raw[:4]!r})")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    values = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != math.prod(shape):
        raise ValueError(f"{path}: the header promises {shape} values, the file holds {values.size}")
    return torch.from_numpy(values.reshape(shape).copy())


# ----------------------------------------------------------------------------------------------
# Discrete scale: dequantization and the discrete likelihood bound
# ----------------------------------------------------------------------------------------------

def write_idx(path, array) -> Path:
    """Write an array of unsigned bytes (images ``(N, 28, 28)`` or labels ``(N,)``) as an IDX file, the inverse of
    :func:`read_idx` (uncompressed, as torchvision keeps them under ``raw/``)."""
    import struct

    array = np.asarray(array)
    if array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 255:
            raise ValueError("IDX files here hold unsigned bytes: values must lie in 0..255")
        array = array.astype(np.uint8)
    path = Path(path)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())
    return path


def install_mnist_standin(source, root=None, *, train_size: int = 9000, seed: int = 0) -> Path:
    """Lay out a stand-in for MNIST where torchvision looks for it (``<root>/MNIST/raw``), made from the official
    *test* files in ``source`` (``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``), for machines without
    the internet: the 10,000 digits, shuffled with ``seed`` (the file is ordered by writer group), become a
    "training" file of ``train_size`` digits and a "test" file of the rest. :func:`load` then splits the training
    file 5 : 1 into train and val (7,500 / 1,500 with the defaults). Not the real split: figures on it are labelled
    as the stand-in's. Returns the root to pass to :func:`load` (or to set as ``$GENCOURSE_DATA``)."""
    source, root = Path(source), data_root(root)
    images, labels = (read_idx(source / f"t10k-{kind}.gz") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))
    if not 0 < train_size < len(images):
        raise ValueError(f"train_size must lie in 1..{len(images) - 1}, got {train_size}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    images, labels = images[order].numpy(), labels[order].numpy()
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, sl in (("train", slice(None, train_size)), ("t10k", slice(train_size, None))):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[sl])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[sl])
    return root


def to_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Images on the grid ``k / (levels - 1)`` -> integer levels ``k`` (int64, same shape)."""
    _check_levels(levels)
    return torch.round(x * (levels - 1)).long().clamp_(0, levels - 1)


def dequantize(x: torch.Tensor, levels: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization: ``x = k / (L - 1)`` -> ``y = (k + u) / L`` with ``u ~ U[0, 1)``, same shape.

    A density ``p`` on ``y in [0, 1)^D`` then gives the bound ``-log P(k) <= E_u[-log p(y)] + D ln L``
    (Jensen over ``u``: it holds for the expectation, not for one draw); see :func:`discrete_nll_bound`.
    """
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"x must lie in [0, 1] (k / (levels - 1)), got range [{x.min():.3g}, {x.max():.3g}]")
    k = to_levels(x, levels).float()
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (k + u) / levels


def discrete_nll_bound(continuous_nll: torch.Tensor, num_dims: int, levels: int) -> torch.Tensor:
    """Discrete NLL bound in nats: ``E_u[-log p(y)] + D ln L`` for a density on dequantized ``y in [0, 1)^D``.

    ``continuous_nll``: ``-log p(y)`` per example, any shape, at one or more draws of ``u``. The bound holds
    for the expectation over ``u`` (Jensen), so a single draw gives an unbiased estimate of the bound, not a
    bound; average draws (or images) before reading it as one. Add the log-det of any further fixed
    transform (e.g. a logit) to ``continuous_nll`` before calling.
    """
    _check_levels(levels)
    if num_dims <= 0:
        raise ValueError(f"num_dims must be positive, got {num_dims}")
    return continuous_nll + num_dims * math.log(levels)


def _check_levels(levels):
    if not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2 (e.g. LEVELS['digits'] = 17), got {levels!r}")
