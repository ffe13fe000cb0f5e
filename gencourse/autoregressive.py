"""Autoregressive models of 8x8 digits: the chain rule, one 17-way softmax per pixel.

Number the ``D = 64`` pixels in raster order (row by row, left to right), ``i = 0..63``, and write
``k_i in {0..16}`` for the level of pixel ``i`` (``load`` gives ``x_i = k_i / 16``). The chain rule of
probability is exact for *any* distribution:

    p(k) = prod_{i=0}^{D-1} p(k_i | k_{<i}),        -log p(k) = sum_i -log softmax(f_i(k_{<i}))_{k_i}

where ``f_i`` are the 17 logits a network predicts for pixel ``i``. The only requirement on the network
is the *autoregressive property*: output ``i`` must not depend on inputs ``j >= i``. Two ways to get it:

- :class:`MADE` (Germain et al. 2015): an MLP whose weight matrices are multiplied by binary masks
  (:func:`made_mask`) built from a degree per unit, so that no path runs from input ``j`` to output ``i <= j``.
- :class:`PixelCNN` (van den Oord et al. 2016): convolutions whose kernels are masked (:func:`conv_mask`):
  type "A" (first layer) sees only pixels *before* the centre in raster order, type "B" (later layers)
  also the centre, which by then holds features of earlier pixels only.

Both give the **exact** discrete log-likelihood in one network evaluation (:meth:`AutoregressiveModel.nll`)
and sample pixel by pixel in ``D = 64`` sequential evaluations (:meth:`AutoregressiveModel.sample`).
The network sees the scaled image ``2 x - 1`` in ``[-1, 1]``. Sampling tricks, off by default: a temperature,
top-k and nucleus (top-p) truncation of every conditional (:func:`filtered_logits`). :func:`train_made`
builds and trains the smallest MADE (one hidden layer) in about a second. On 28x28 images (MNIST, 256
levels, ``D = 784``) the same :class:`PixelCNN` is built larger by :func:`image_model` and trained by
:func:`train_images`; its likelihood stays exact, its sampler takes 784 steps.

    model, history = train_digits()                  # a PixelCNN, about 25 s on one CPU core
    nll = model.nll(test.images)                      # (B,) nats per image, exact
    images = model.sample(1000, temperature=1.0)      # (1000, 1, 8, 8) in [0, 1]
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gencourse.data import LEVELS as _DATA_LEVELS

LEVELS = _DATA_LEVELS["digits"]  # 17 intensity levels k = 0..16
SIDE = 8
NUM_PIXELS = SIDE * SIDE  # D = 64
IMAGE_SHAPE = (1, SIDE, SIDE)
MASK_TYPES = ("A", "B")
KINDS = ("pixelcnn", "made")


# ----------------------------------------------------------------------------------------------
# Inputs, the likelihood, temperature
# ----------------------------------------------------------------------------------------------

def image_levels(x: torch.Tensor, levels: int = LEVELS, shape: tuple = IMAGE_SHAPE) -> torch.Tensor:
    """Check images and return their levels: ``x: (B, *shape)`` or ``(B, D)`` on the grid ``k / (levels - 1)``
    -> ``k: (B, D)`` int64, ``D = prod(shape)``. Digits (the defaults): ``(B, 1, 8, 8)`` or ``(B, 64)``, 17
    levels; MNIST: ``levels=256, shape=(1, 28, 28)``. Anything else raises ``ValueError``."""
    shape = tuple(shape)
    d = math.prod(shape)
    dims = ", ".join(map(str, shape))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a tensor of images (B, {dims}) in [0, 1], got {type(x).__name__}")
    if x.dim() == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        flat = x.reshape(len(x), d)
    elif x.dim() == 2 and x.shape[1] == d:
        flat = x
    else:
        raise ValueError(f"expected images of shape (B, {dims}) or (B, {d}), got {tuple(x.shape)}")
    if not torch.isfinite(flat).all() or flat.min() < 0 or flat.max() > 1:
        raise ValueError(f"images must lie in [0, 1] on the grid k/{levels - 1} (as gencourse.data.load gives)")
    k = flat * (levels - 1)
    if (k - k.round()).abs().max() > 1e-3:
        raise ValueError(f"images must lie on the grid k/{levels - 1}, k = 0..{levels - 1} (as data.load gives); "
                         "an autoregressive model's likelihood is over discrete levels")
    return k.round().long()


def categorical_nll(logits: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Exact negative log-likelihood in nats of levels ``k`` under per-pixel softmaxes.

    ``logits: (B, D, L)``, ``k: (B, D)`` int64 in ``0..L-1`` -> ``(B,)``:

        -log p(k) = -sum_i log softmax(logits_i)_{k_i}

    In an autoregressive model ``logits_i`` depends on ``k_{<i}`` only, so this is ``-log`` of the
    chain-rule product, a normalized distribution over all ``L^D`` images.
    """
    if logits.dim() != 3 or k.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (B, D, L) and levels k (B, D), got {tuple(logits.shape)} and {tuple(k.shape)}")
    log_p = F.log_softmax(logits, dim=-1)
    return -log_p.gather(-1, k.unsqueeze(-1)).squeeze(-1).sum(-1)


def tempered_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``softmax(logits / T)`` over the last axis: ``T = 1`` is the model, ``T < 1`` sharpens every
    conditional toward its mode (neater, less varied samples), ``T -> 0`` is greedy decoding."""
    _check_temperature(temperature)
    return F.softmax(logits / temperature, dim=-1)


def top_k_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k filtering (Fan et al. 2018): keep the ``k`` largest logits of the last axis, set the rest to
    ``-inf`` -> same shape. ``softmax`` of the result is the model's conditional restricted to its ``k`` most
    likely levels and renormalized. Ties at the k-th value are all kept. ``k >= L`` keeps everything."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer number of levels to keep, got {k!r}")
    if logits.dim() < 1:
        raise ValueError("expected logits with a last axis of levels (..., L)")
    if k >= logits.shape[-1]:
        return logits.clone()
    kth = logits.topk(int(k), dim=-1).values[..., -1:]  # (..., 1): the k-th largest logit
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_logits(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus (top-p) filtering (Holtzman et al. 2020) on the last axis -> same shape.

    With ``pi = softmax(logits)`` sorted in decreasing order, the nucleus is the *smallest* set of most likely
    levels whose total probability reaches ``p``: level ``v`` is kept when the mass of the levels strictly more
    likely than it is ``< p`` (so the level that crosses ``p`` is kept, and the most likely level always is).
    The other logits become ``-inf``; ``softmax`` of the result is ``pi`` restricted to the nucleus and divided
    by its mass. ``p = 1`` keeps everything.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ValueError(f"p must be a probability in (0, 1], got {p!r}")
    if logits.dim() < 1:
        raise ValueError("expected logits with a last axis of levels (..., L)")
    probs = F.softmax(logits.float(), dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the levels ranked above each one
    keep_sorted = mass_before < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, -math.inf)


def filtered_logits(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None) -> torch.Tensor:
    """The logits a sampler draws from: divided by ``temperature``, then top-k, then top-p filtered (each
    optional; the defaults leave the model's own conditional). Same shape as ``logits``."""
    _check_temperature(temperature)
    out = logits / temperature
    if top_k is not None:
        out = top_k_logits(out, top_k)
    if top_p is not None:
        out = top_p_logits(out, top_p)
    return out


def _check_temperature(temperature):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0 \
            or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number (1.0 samples the model itself), got {temperature!r}")


def sample_autoregressive(logits_fn, n: int, num_pixels: int, *, temperature: float = 1.0,
                          generator: torch.Generator | None = None, canvas: torch.Tensor | None = None,
                          start: int = 0, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Ancestral sampling, one pixel after the other: ``D - start`` sequential calls of ``logits_fn``.

    ``logits_fn(k: (n, D) int64, i: int) -> (n, L)``: the logits of pixel ``i`` given the canvas ``k``
    (only ``k[:, :i]`` may matter). For ``i = start..D-1``: ``k_i ~ Categorical(softmax(f_i(k_{<i}) / T))``.
    ``canvas: (n, D)`` int64 holds given pixels ``< start`` (default: a blank canvas, ``start = 0``).
    ``top_k`` / ``top_p``: truncate every conditional (:func:`top_k_logits`, :func:`top_p_logits`) after
    the temperature; both ``None`` (the default) samples the model itself. Returns ``k: (n, D)`` int64.
    """
    _check_temperature(temperature)
    if top_k is not None:
        top_k_logits(torch.zeros(1), top_k)  # validates k
    if top_p is not None:
        top_p_logits(torch.zeros(1), top_p)  # validates p
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0 or num_pixels <= 0:
        raise ValueError(f"n and num_pixels must be positive integers, got {n!r} and {num_pixels!r}")
    if canvas is not None and tuple(canvas.shape) != (n, num_pixels):
        raise ValueError(f"canvas must have shape (n, num_pixels) = ({n}, {num_pixels}), got {tuple(canvas.shape)}")
    if not 0 <= start <= num_pixels:
        raise ValueError(f"start must lie in 0..{num_pixels}, got {start}")
    k = torch.zeros(n, num_pixels, dtype=torch.long) if canvas is None else canvas.clone().long()
    for i in range(start, num_pixels):
        if top_k is None and top_p is None:
            probs = tempered_probs(logits_fn(k, i), temperature)
        else:
            probs = F.softmax(filtered_logits(logits_fn(k, i), temperature=temperature, top_k=top_k, top_p=top_p), -1)
        k[:, i] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return k


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------

def made_degrees(num_inputs: int, hidden_sizes) -> list:
    """MADE's degrees: inputs ``1..D``, hidden units cycling through ``1..D-1`` -> list of LongTensors.

    A hidden unit of degree ``m`` may see inputs ``1..m``; output ``d`` (1-based) may see units of degree
    ``< d``. Cycling (rather than drawing at random) makes the model deterministic and uses every degree.
    """
    if num_inputs < 2:
        raise ValueError(f"num_inputs must be at least 2, got {num_inputs}")
    degrees = [torch.arange(1, num_inputs + 1)]
    for h in hidden_sizes:
        degrees.append(torch.arange(h) % (num_inputs - 1) + 1)
    return degrees


def made_mask(in_degrees: torch.Tensor, out_degrees: torch.Tensor, *, output: bool = False) -> torch.Tensor:
    """The binary mask ``(len(out), len(in))`` of one MADE layer (Germain et al. 2015, eqs. 12-13).

    Hidden layers: ``M[o, j] = 1[out_degree_o >= in_degree_j]``. The output layer (``output=True``):
    ``M[o, j] = 1[out_degree_o > in_degree_j]``, strict, so output ``d`` never sees input ``d`` itself.
    """
    in_degrees, out_degrees = torch.as_tensor(in_degrees), torch.as_tensor(out_degrees)
    if in_degrees.dim() != 1 or out_degrees.dim() != 1:
        raise ValueError("in_degrees and out_degrees must be 1D tensors of integer degrees")
    if output:
        return (out_degrees[:, None] > in_degrees[None, :]).float()
    return (out_degrees[:, None] >= in_degrees[None, :]).float()


def made_masks(num_inputs: int, hidden_sizes) -> list:
    """Every mask of a MADE with ``num_inputs`` inputs (and outputs) and hidden layers ``hidden_sizes``.

    Degrees from :func:`made_degrees` (inputs ``1..D``, hidden units cycling through ``1..D-1``), masks from
    :func:`made_mask`: ``[(h_1, D), (h_2, h_1), ..., (D, h_last)]``, the last one strict (the output
    layer, ``D`` rows: one per input's conditional). ``hidden_sizes = ()`` gives the single strict
    ``(D, D)`` mask of a linear autoregression.
    """
    degrees = made_degrees(num_inputs, hidden_sizes)
    masks = [made_mask(d_in, d_out) for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append(made_mask(degrees[-1], degrees[0], output=True))
    return masks


def conv_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """PixelCNN's kernel mask ``(k, k)`` (van den Oord et al. 2016, Fig. 2): 1 for the rows above the
    centre, and in the centre row for the columns left of the centre; type "B" also keeps the centre
    itself, type "A" does not. Raster order makes these exactly the pixels before the centre."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1 \
            or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be 'A' (first layer: centre excluded) or 'B' (centre kept), got {mask_type!r}")
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    mask[:c, :] = 1
    mask[c, :c] = 1
    if mask_type == "B":
        mask[c, c] = 1
    return mask


class MaskedLinear(nn.Linear):
    """``y = x (W * M)^T + b`` with a fixed binary mask ``M: (out, in)``."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(f"mask must have shape ({out_features}, {in_features}), got {tuple(mask.shape)}")
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded convolution whose kernel is multiplied by :func:`conv_mask` (type "A" or "B"):
    ``(B, C_in, H, W) -> (B, C_out, H, W)``, output (r, c) a function of the inputs before (r, c) only
    (type "A") or up to and including it (type "B")."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.mask_type = mask_type
        self.register_buffer("mask", conv_mask(kernel_size, mask_type))

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

class AutoregressiveModel(nn.Module):
    """What every autoregressive image model here shares: exact NLL, per-pixel distributions, sampling.

    Subclasses implement :meth:`forward` ``(B, D)`` float in ``[0, 1]`` -> logits ``(B, D, L)``, with
    output ``i`` depending on inputs ``< i`` only. Digits (the class defaults): ``D = 64``, ``L = 17``,
    images ``(1, 8, 8)``; a :class:`PixelCNN` built with ``side=28, levels=256`` sets its own (MNIST).
    """

    likelihood = "exact"
    levels = LEVELS
    num_pixels = NUM_PIXELS
    image_shape = IMAGE_SHAPE

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Checked entry point: images ``(B, 1, 8, 8)`` or ``(B, 64)`` on the grid k/16 -> ``(B, 64, 17)``
        (generally ``(B, *image_shape)`` or ``(B, D)`` on the grid ``k / (L - 1)`` -> ``(B, D, L)``)."""
        k = image_levels(x, self.levels, self.image_shape).to(self._device())
        return self(k.float() / (self.levels - 1))

    def probs(self, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """``p(k_i = . | k_{<i})`` for every pixel: ``(B, D, L)`` (digits ``(B, 64, 17)``), each row sums to one."""
        return tempered_probs(self.logits(x), temperature)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Exact NLL in nats per image on the data's discrete scale (digits: 17 levels, MNIST: 256):
        ``x (B, *image_shape)`` from ``data.load`` -> ``(B,)``.

        ``-log p(k) = -sum_i log softmax(f_i(k_{<i}))_{k_i}`` (:func:`categorical_nll`), one network pass.
        """
        k = image_levels(x, self.levels, self.image_shape).to(self._device())
        return categorical_nll(self(k.float() / (self.levels - 1)), k)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` in nats, ``(B,)``: minus :meth:`nll`."""
        return -self.nll(x)

    def pixel_logits(self, canvas: torch.Tensor, i: int) -> torch.Tensor:
        """Logits ``(n, L)`` of pixel ``i`` given ``canvas: (n, D)`` in ``[0, 1]``; one network evaluation."""
        return self(canvas)[:, i]

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None,
               top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
        """Draw ``n`` images ``(n, *image_shape)`` in ``[0, 1]`` (levels ``k / (L - 1)``; digits ``(n, 1, 8, 8)``),
        pixel by pixel in raster order.

        ``temperature`` T divides every conditional's logits (1 = the model; < 1 sharper); ``top_k`` /
        ``top_p`` truncate every conditional (tricks; ``None``, the default, samples the model). Costs ``D``
        sequential network evaluations (64 for digits, 784 for MNIST; :func:`sample_autoregressive`).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"n must be a positive integer number of samples, got {n!r}")
        return self._draw(torch.zeros(int(n), self.num_pixels, dtype=torch.long), 0, temperature, generator,
                          top_k=top_k, top_p=top_p)

    @torch.no_grad()
    def complete(self, x: torch.Tensor, given: int, *, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Keep the first ``given`` pixels (raster order) of images ``x: (B, 1, 8, 8)`` and sample the rest
        from ``p(k_{>=given} | k_{<given})``: the image analogue of continuing a text prompt -> ``(B, 1, 8, 8)``
        (generally ``(B, *image_shape)``)."""
        k = image_levels(x, self.levels, self.image_shape).cpu()
        if isinstance(given, bool) or not isinstance(given, (int, np.integer)) or not 0 <= given <= self.num_pixels:
            raise ValueError(f"given must be an integer number of pixels in 0..{self.num_pixels}, got {given!r}")
        return self._draw(k, int(given), temperature, generator)

    def _draw(self, canvas, start, temperature, generator, *, top_k=None, top_p=None):
        _check_temperature(temperature)
        was_training = self.training
        self.eval()
        k = sample_autoregressive(self.sampling_logits(), len(canvas), self.num_pixels, temperature=temperature,
                                  generator=generator, canvas=canvas, start=start, top_k=top_k, top_p=top_p)
        self.train(was_training)
        return (k.float() / (self.levels - 1)).view(len(canvas), *self.image_shape)

    def sampling_logits(self):
        """A fresh ``logits_fn(k, i)`` for one run of :func:`sample_autoregressive`: :meth:`pixel_logits` on the
        canvas of levels ``k: (n, D)`` int64. Models that can reuse work between the sequential calls (a
        transformer's KV cache) return a stateful one instead, with the same logits."""
        device, scale = self._device(), self.levels - 1

        def logits_fn(k, i):
            return self.pixel_logits(k.to(device).float() / scale, i).float().cpu()

        return logits_fn


class MADE(AutoregressiveModel):
    """Masked autoencoder for distribution estimation (Germain et al. 2015) with a 17-way softmax per pixel.

    ``x: (B, 64)`` -> ``h_1 = relu(W_1*M_1 (2x - 1) + b_1)`` -> ... -> logits ``(B, 64, 17)``; masks from
    :func:`made_mask` on :func:`made_degrees`; the output layer has 17 units per pixel, all of that pixel's
    degree. ``dropout`` after each hidden layer. ``direct``: add masked linear input -> output connections.
    """

    def __init__(self, hidden_sizes=(128, 128), *, dropout: float = 0.2, direct: bool = True):
        super().__init__()
        hidden_sizes = tuple(int(h) for h in hidden_sizes)
        if not hidden_sizes or min(hidden_sizes) < self.num_pixels - 1:
            raise ValueError(f"hidden_sizes must be a non-empty list of widths >= {self.num_pixels - 1} "
                             f"(so every degree 1..63 is present), got {hidden_sizes}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.hidden_sizes = hidden_sizes
        degrees = made_degrees(self.num_pixels, hidden_sizes)
        layers, width = [], self.num_pixels
        for d_in, d_out in zip(degrees[:-1], degrees[1:]):
            layers += [MaskedLinear(width, len(d_out), made_mask(d_in, d_out)), nn.ReLU(), nn.Dropout(dropout)]
            width = len(d_out)
        out_degrees = degrees[0].repeat_interleave(self.levels)  # pixel d's 17 logits all have degree d
        layers.append(MaskedLinear(width, self.num_pixels * self.levels, made_mask(degrees[-1], out_degrees, output=True)))
        self.net = nn.Sequential(*layers)
        # Optional direct input -> output connections (MADE's "direct" variant), masked the same strict way:
        # pixel d's logits get a linear term in pixels < d, like a logistic autoregression.
        self.direct = MaskedLinear(self.num_pixels, self.num_pixels * self.levels,
                                   made_mask(degrees[0], out_degrees, output=True)) if direct else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, 64)`` in [0, 1] -> logits ``(B, 64, 17)``."""
        h = 2 * x - 1
        out = self.net(h) if self.direct is None else self.net(h) + self.direct(h)
        return out.view(len(x), self.num_pixels, self.levels)


class PixelCNN(AutoregressiveModel):
    """A PixelCNN (van den Oord et al. 2016) for ``side x side`` images with an L-way softmax per pixel
    (defaults: the 8x8 digits, L = 17; MNIST: ``side=28, levels=256``, see :func:`image_model`).

    ``x: (B, D)``, ``D = side^2`` -> image ``(B, 1, side, side)`` scaled to ``2x - 1`` -> masked conv type "A"
    (``first_kernel``) -> ``layers`` residual blocks ``h <- h + conv_B(relu(h))`` (``kernel``) ->
    ``relu, 1x1 conv, relu, 1x1 conv`` to L logits per pixel -> ``(B, D, L)``:

        p(k) = prod_i softmax(f_i(k_{<i}))_{k_i},   i = side * r + c (raster order)

    The receptive field of pixel (r, c) grows by one row up and one column each side per "B" layer,
    bounded by raster order (see :func:`receptive_field`); it reaches ``reach = first_kernel // 2 +
    layers * (kernel // 2)`` rows up, with the blind spot of stacked masked kernels up and to the right.
    """

    def __init__(self, channels: int = 48, layers: int = 5, *, kernel: int = 3, first_kernel: int = 5,
                 side: int = SIDE, levels: int = LEVELS):
        super().__init__()
        if channels < 1 or layers < 0:
            raise ValueError(f"channels must be positive and layers >= 0, got {channels} and {layers}")
        if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 2:
            raise ValueError(f"side must be an integer >= 2 (8 for the digits, 28 for MNIST), got {side!r}")
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2 (17 for the digits, 256 for MNIST), got {levels!r}")
        self.side, self.levels = int(side), int(levels)
        self.num_pixels, self.image_shape = self.side * self.side, (1, self.side, self.side)
        self.reach = first_kernel // 2 + layers * (kernel // 2)
        self.channels, self.num_layers = channels, layers
        self.first = MaskedConv2d(1, channels, first_kernel, "A")
        self.blocks = nn.ModuleList(MaskedConv2d(channels, channels, kernel, "B") for _ in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, self.levels, 1))
        # Channels-last memory layout: the same numbers, ~15% faster training and ~30% faster sampling on CPUs.
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, D)`` in [0, 1] -> logits ``(B, D, L)`` (digits: ``(B, 64)`` -> ``(B, 64, 17)``)."""
        return self._image_logits(x.view(len(x), 1, self.side, self.side)).flatten(2).transpose(1, 2)

    def _image_logits(self, image: torch.Tensor) -> torch.Tensor:
        """``image: (B, 1, H, side)`` in [0, 1] -> logits ``(B, L, H, side)``."""
        h = self.first((2 * image - 1).contiguous(memory_format=torch.channels_last))
        for block in self.blocks:
            h = h + block(F.relu(h))
        return self.head(h)

    def pixel_logits(self, canvas: torch.Tensor, i: int) -> torch.Tensor:
        """Logits of pixel ``i = (r, c)`` from the rows ``r - reach..r`` alone: the masks make every output
        ignore the rows below it, and row ``r``'s outputs see at most ``reach`` rows up, so the cropped pass
        gives the same logits at a fraction of the cost (about half on average for the digits, where the
        crop starts at row 0; about 12/28 for MNIST's default model)."""
        r, c = divmod(i, self.side)
        top = max(0, r - self.reach)
        rows = canvas.view(len(canvas), 1, self.side, self.side)[:, :, top: r + 1]
        return self._image_logits(rows)[:, :, r - top, c]


def train_made(levels: torch.Tensor, *, hidden: int = 128, epochs: int = 15, lr: float = 5e-3,
               batch_size: int = 50, num_levels: int = LEVELS) -> nn.Module:
    """Build a one-hidden-layer MADE and train it by the exact NLL: the smallest autoregressive model, in seconds.

    ``levels: (N, D)`` int64 in ``0..num_levels-1`` (e.g. :func:`image_levels` of the train split). The model
    maps ``x = k / (num_levels - 1): (B, D)`` to logits ``(B, D, num_levels)``: ``MaskedLinear(D, hidden)``,
    ReLU, ``MaskedLinear(hidden, D * num_levels)`` with the masks of :func:`made_masks` (the output mask's row
    of pixel d repeated for its ``num_levels`` logits), then a reshape. Adam on minibatches of the mean
    :func:`categorical_nll`, reshuffled every epoch with the global torch generator (seed it first).
    Returns the trained ``nn.Sequential`` in eval mode. ``hidden >= D - 1`` so every degree is present.
    """
    if not isinstance(levels, torch.Tensor) or levels.dim() != 2 or levels.dtype != torch.long:
        raise ValueError(f"levels must be an int64 tensor (N, D) of levels, got "
                         f"{tuple(levels.shape) if isinstance(levels, torch.Tensor) else type(levels).__name__}")
    if levels.min() < 0 or levels.max() >= num_levels:
        raise ValueError(f"levels must lie in 0..{num_levels - 1}")
    n, d = levels.shape
    if hidden < d - 1 or epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need hidden >= {d - 1} and positive epochs, batch_size and lr")
    mask_hidden, mask_out = made_masks(d, (hidden,))
    model = nn.Sequential(MaskedLinear(d, hidden, mask_hidden), nn.ReLU(),
                          MaskedLinear(hidden, d * num_levels, mask_out.repeat_interleave(num_levels, 0)),
                          nn.Unflatten(1, (d, num_levels)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x = levels.float() / (num_levels - 1)
    for _ in range(epochs):
        for batch in torch.randperm(n).split(batch_size):
            loss = categorical_nll(model(x[batch]), levels[batch]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Receptive fields, by autograd
# ----------------------------------------------------------------------------------------------

def dependency_matrix(model: nn.Module, x: torch.Tensor | None = None) -> torch.Tensor:
    """Which inputs each output depends on, measured with autograd: ``(D, D)`` bool (digits ``(64, 64)``), ``[i, j]`` is True
    when the logits of pixel ``i`` (projected on a random direction) have a non-zero derivative with respect
    to input ``j`` at some row of ``x``.

    ``model(x: (B, 64)) -> (B, 64, L)``; ``x: (B, 64)``, default 4 random points in [0, 1] (a dependency
    that a ReLU switches off at one point shows at another). An autoregressive model gives a strictly
    lower-triangular matrix: ``[i, j]`` False for every ``j >= i``.
    """
    if x is None:
        x = torch.rand(4, getattr(model, "num_pixels", NUM_PIXELS), generator=torch.Generator().manual_seed(0))
    x = x.detach().reshape(len(x), -1).float()
    b, d = x.shape
    # One backward pass: copy the batch once per output pixel i; copy i back-propagates pixel i's logits
    # (projected on a random direction v), and rows of a batch do not mix (eval mode), so the gradient on
    # copy i is the derivative of output i alone.
    copies = x.repeat(d, 1).requires_grad_(True)  # (d * B, 64)
    which = torch.arange(d).repeat_interleave(b)  # (d * B,): the output pixel each copy answers for
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        logits = model(copies)  # (d * B, 64, L)
        v = torch.randn(logits.shape[-1], generator=torch.Generator().manual_seed(1))
        (grad,) = torch.autograd.grad((logits[torch.arange(d * b), which] @ v).sum(), copies)
    model.train(was_training)
    return grad.view(d, b, d).abs().amax(1) > 0


def receptive_field(model: nn.Module, pixel: int, x: torch.Tensor | None = None) -> torch.Tensor:
    """The input pixels that the logits of ``pixel`` depend on, by autograd: ``(8, 8)`` bool (``(side, side)``
    for a model with another ``side``; the full :func:`dependency_matrix` is computed, ``D`` copies of ``x``)."""
    side = getattr(model, "side", SIDE)
    if isinstance(pixel, bool) or not isinstance(pixel, (int, np.integer)) or not 0 <= pixel < side * side:
        raise ValueError(f"pixel must be an integer in 0..{side * side - 1} (raster order), got {pixel!r}")
    return dependency_matrix(model, x)[pixel].view(side, side)


# ----------------------------------------------------------------------------------------------
# The recipe
# ----------------------------------------------------------------------------------------------

RECIPES = {
    # kind: (constructor arguments, epochs, learning rate, batch size)
    "pixelcnn": (dict(channels=48, layers=5, kernel=3, first_kernel=5), 20, 2e-3, 32),
    "made": (dict(hidden_sizes=(128, 128), dropout=0.2, direct=True), 30, 3e-3, 32),
}


def build(kind: str = "pixelcnn") -> AutoregressiveModel:
    """A fresh, untrained model of the recipe ``kind`` ("pixelcnn" or "made")."""
    if kind not in RECIPES:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(RECIPES)}")
    kwargs = RECIPES[kind][0]
    return PixelCNN(**kwargs) if kind == "pixelcnn" else MADE(**kwargs)


def train_digits(*, epochs: int | None = None, seed: int = 0, quick: bool = False, kind: str = "pixelcnn",
                 patience: int | None = 8, max_seconds: float | None = None, device=None, verbose: bool = True):
    """Train the lesson's autoregressive model on the digits (train split, early stopping on val).

    ``kind``: "pixelcnn" (default, the headline model: 48 channels, a 5x5 "A" layer and five 3x3 "B"
    residual layers, 20 epochs, Adam 2e-3, batch 32: about 25 s on one CPU core) or "made" (two hidden
    layers of 128 and direct connections, dropout 0.2, 30 epochs, Adam 3e-3, batch 32: under 10 s). ``quick``: 2 epochs on 200 images, to check the code runs.
    Returns ``(model, history)`` with the best-validation weights, in eval mode; the loss is the exact
    NLL in nats per image. ``device``: where to train (default CPU; e.g. ``gencourse.get_device()``).
    """
    from gencourse.data import load
    from gencourse.train import fit, seed_everything

    if kind not in RECIPES:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(RECIPES)}")
    _, default_epochs, lr, batch_size = RECIPES[kind]
    epochs = (2 if quick else default_epochs) if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs <= 0:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    seed_everything(seed)
    model = build(kind).to(device if device is not None else "cpu")
    train, val = load("digits", "train"), load("digits", "val")
    train_images, val_images = train.images, val.images
    if quick:
        train_images, val_images = train_images[:200], val_images[:100]
    history = fit(model, lambda batch: model.nll(batch).mean(), train_images, val_data=val_images,
                  epochs=int(epochs), lr=lr, batch_size=batch_size, patience=patience, seed=seed,
                  max_seconds=max_seconds, device=device, desc=kind, verbose=verbose)
    return model, history


# ----------------------------------------------------------------------------------------------
# 28x28 images (MNIST, Fashion-MNIST): the same PixelCNN, larger, on the 256 levels
# ----------------------------------------------------------------------------------------------

MNIST_EPOCHS = 10
MNIST_MODEL = dict(channels=64, layers=8, kernel=3, first_kernel=7)  # reach: 3 + 8 = 11 rows up
QUICK_MODEL = dict(channels=16, layers=2, kernel=3, first_kernel=7)  # quick=True: a smoke test, sampled in seconds


def image_model(dataset: str = "mnist", **kwargs) -> PixelCNN:
    """A fresh PixelCNN for ``dataset``'s images: the digits recipe's for ``"digits"`` (:func:`build`), else
    ``MNIST_MODEL`` on ``(1, 28, 28)`` with a 256-way softmax per pixel (a 7x7 "A" layer and eight 3x3 "B"
    residual layers of 64 channels: each pixel sees up to 11 rows up). ``kwargs`` override the sizes."""
    from gencourse.data import LEVELS as levels

    if dataset not in levels:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(levels)}")
    if dataset == "digits":
        return PixelCNN(**{**RECIPES["pixelcnn"][0], **kwargs})
    return PixelCNN(**{**MNIST_MODEL, **kwargs}, side=28, levels=levels[dataset])


def train_images(dataset: str = "mnist", *, epochs: int | None = None, seed: int = 0, quick: bool = False,
                 lr: float = 2e-3, batch_size: int = 64, subset: int | None = None, max_seconds: float | None = None,
                 device=None, verbose: bool = True, **model_kwargs):
    """Train :func:`image_model` on a 28x28 dataset's train split by the exact NLL -> ``(model, history)``.

    Loss: the mean exact NLL in nats per image (:meth:`AutoregressiveModel.nll`, 256 levels). Adam with a
    warm-up and cosine decay of ``lr`` over ``epochs`` epochs (default ``MNIST_EPOCHS``), batches of
    ``batch_size``, the weights of the best validation epoch kept (validation on at most 1000 validation
    images, or ``subset``; never the test split). ``subset``: only the first ``subset`` training images (a short
    CPU run). ``quick``: one epoch of a small model (``QUICK_MODEL`` unless ``model_kwargs`` say otherwise), to
    check that the code runs. ``max_seconds`` caps the training time. ``"digits"`` is :func:`train_digits`.
    Returned in eval mode.
    """
    from gencourse.data import check_training_request, load
    from gencourse.train import CosineAdam, fit, seed_everything

    if dataset == "digits":
        return train_digits(epochs=epochs, seed=seed, quick=quick, device=device, verbose=verbose)
    check_training_request(dataset, epochs, subset)
    epochs = 1 if quick else int(epochs or MNIST_EPOCHS)
    seed_everything(seed)
    train, val = load(dataset, "train"), load(dataset, "val")
    images = train.images[:subset]
    model = image_model(dataset, **(model_kwargs or (QUICK_MODEL if quick else {}))).to(device or "cpu")
    optimizer = CosineAdam(model.parameters(), lr, epochs * math.ceil(len(images) / batch_size))
    history = fit(model, lambda batch: model.nll(batch).mean(), images, val_data=val.images[:min(1000, subset or 1000)],
                  epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, seed=seed, max_seconds=max_seconds,
                  device=device, desc=f"PixelCNN ({dataset})", verbose=verbose)
    return model, history
