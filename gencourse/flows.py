"""Normalizing flows: RealNVP's affine couplings, Glow's ActNorm and invertible 1x1 convolution, dequantization.

A flow is an invertible map ``f`` from data ``x`` to a latent ``z = f(x)`` with a standard normal base
density. By the change of variables

    log p(x) = log N(f(x); 0, I) + log |det df/dx|                                    (1)

Every layer here has ``forward(x) -> (z, log_det)`` with ``log_det: (B,) = log|det dz/dx|`` and
``inverse(z) -> x``; a :class:`Flow` chains layers and sums their log-dets. Sampling runs the chain
backwards from ``z ~ N(0, I)``.

    flow = RealNVP(2)                       # a working flow on (B, 2) vectors, every argument defaulted
    z, log_det = flow(x)                    # data -> latent
    flow.log_prob(x)                        # (B,) eq. (1)
    flow.sample(1000)                       # (1000, 2)

Images ``(B, C, H, W)`` use checkerboard masks and convolutional conditioners (``RealNVP((1, 8, 8))``).
Discrete images (17 levels) are modelled by :class:`DigitsFlow`: uniform dequantization
``y = (k + u) / 17``, a fixed logit transform, then a flow; its ``nll`` is the bound on the discrete scale

    -log P(k) <= E_u[ -log p(y) ] + D ln 17.                                          (2)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gencourse import data as _data

LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------------------------
# The equations, as plain functions (the layers below use them; the exercises re-derive them)
# ----------------------------------------------------------------------------------------------

def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over every non-batch dim: ``z: (B, ...) -> (B,)``.

    ``= -1/2 sum_i (z_i^2 + ln 2 pi)``.
    """
    return -0.5 * (z.pow(2) + LOG_2PI).flatten(1).sum(1)


def coupling_forward(x: torch.Tensor, mask: torch.Tensor, s: torch.Tensor, t: torch.Tensor):
    """Affine coupling, data -> latent: ``z = m * x + (1 - m) * (x * exp(s) + t)``.

    ``x, s, t: (B, ...)``; ``mask m`` broadcastable to ``x`` with 1 on the conditioning entries (copied)
    and 0 on the transformed ones. ``s`` and ``t`` must depend on ``m * x`` only, which makes the
    Jacobian triangular with diagonal ``1`` or ``exp(s)``, so
    ``log_det = sum over transformed entries of s``: ``(B,)``. Returns ``(z, log_det)``.
    """
    keep = 1 - mask
    z = mask * x + keep * (x * torch.exp(s) + t)
    return z, (keep * s).flatten(1).sum(1)


def coupling_inverse(z: torch.Tensor, mask: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`coupling_forward`: ``x = m * z + (1 - m) * (z - t) * exp(-s)``.

    ``s, t`` are the same as in the forward pass: they depend on ``m * x = m * z`` only.
    """
    return mask * z + (1 - mask) * (z - t) * torch.exp(-s)


def logit_transform(y: torch.Tensor, alpha: float = 0.05):
    """Fixed map of ``y in (0, 1)`` to the real line: ``s = logit(p)``, ``p = alpha + (1 - 2 alpha) y``.

    ``y: (B, ...)``. Returns ``(s, log_det)`` with ``log_det: (B,) = sum_i [ln(1 - 2 alpha) - ln p_i - ln(1 - p_i)]``,
    the log of the (diagonal) Jacobian ``ds/dy``. ``alpha`` keeps ``p`` away from 0 and 1.
    """
    p = alpha + (1 - 2 * alpha) * y
    s = torch.log(p) - torch.log1p(-p)
    log_det = (math.log(1 - 2 * alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
    return s, log_det


def logit_inverse(s: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """Inverse of :func:`logit_transform`: ``y = (sigmoid(s) - alpha) / (1 - 2 alpha)``."""
    return (torch.sigmoid(s) - alpha) / (1 - 2 * alpha)


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------

def checkerboard_mask(shape, parity: int = 0) -> torch.Tensor:
    """A 0/1 mask of ``shape``: ``(D,)`` alternates over the index, ``(C, H, W)`` is a checkerboard over
    ``H, W`` (same for every channel). ``parity`` 1 gives the complement."""
    shape = tuple(shape)
    if len(shape) == 1:
        m = torch.arange(shape[0]) % 2
    elif len(shape) == 3:
        c, h, w = shape
        m = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2).expand(c, h, w)
    else:
        raise ValueError(f"masks are made for vectors (D,) or images (C, H, W), got shape {shape}")
    return (m == parity).float().contiguous()


def image_masks(shape) -> list:
    """Masks on the flattened pixels of images ``shape = (C, H, W)``, each ``(C*H*W,)``: a checkerboard, column
    stripes, row stripes, each followed by its complement. Cycling through them lets every pixel be
    conditioned on different neighbours in different layers."""
    c, h, w = shape
    rows = torch.arange(h)[:, None].expand(h, w)
    cols = torch.arange(w)[None, :].expand(h, w)
    patterns = [(rows + cols) % 2, cols % 2, rows % 2]
    masks = []
    for pattern in patterns:
        m = pattern.expand(c, h, w).flatten().float()
        masks += [m, 1 - m]
    return masks


def half_mask(dim: int, first: bool = True) -> torch.Tensor:
    """``(dim,)`` mask with 1 on the first half of the entries (``first=False``: on the second half)."""
    m = (torch.arange(dim) < dim // 2).float()
    return m if first else 1 - m


# ----------------------------------------------------------------------------------------------
# Conditioners: the networks that compute s and t; their last layer starts at zero (identity flow)
# ----------------------------------------------------------------------------------------------

class MLP(nn.Sequential):
    """``(B, d_in) -> (B, d_out)``: ``depth`` hidden layers of width ``hidden`` with ReLU (and dropout when
    ``dropout > 0``, a regularizer for small data sets); last layer zero."""

    def __init__(self, d_in: int, d_out: int, hidden: int = 128, depth: int = 2, dropout: float = 0.0):
        layers, d = [], d_in
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = hidden
        last = nn.Linear(d, d_out)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(*layers, last)


class ConvNet(nn.Sequential):
    """``(B, c_in, H, W) -> (B, c_out, H, W)``: 3x3 convolutions of ``hidden`` channels; last layer zero."""

    def __init__(self, c_in: int, c_out: int, hidden: int = 32, depth: int = 2):
        layers, c = [], c_in
        for _ in range(depth):
            layers += [nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU()]
            c = hidden
        last = nn.Conv2d(c, c_out, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(*layers, last)


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------

class AffineCoupling(nn.Module):
    """RealNVP's affine coupling layer (Dinh et al. 2017) on vectors ``(B, D)`` or images ``(B, C, H, W)``.

    ``z = m * x + (1 - m) * (x * exp(s) + t)`` with ``(s, t) = net(m * x)`` (:func:`coupling_forward`).
    The scale is bounded for stability: ``s = b * tanh(s_raw / b)`` with ``b = scale_bound``, so each
    layer stretches by at most ``e^b``. A vector mask ``(D,)`` uses an :class:`MLP` that reads the
    conditioning entries and writes ``s, t`` of the transformed ones (a split); an image mask
    ``(C, H, W)`` uses a :class:`ConvNet` on ``m * x``. With the conditioner's last layer at zero the
    layer starts as the identity.
    """

    def __init__(self, mask: torch.Tensor, hidden: int = 128, depth: int = 2, scale_bound: float = 3.0,
                 net: nn.Module | None = None, dropout: float = 0.0):
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.dim() not in (1, 3) or not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"mask must be a 0/1 tensor of shape (D,) or (C, H, W), got shape {tuple(mask.shape)}")
        if mask.dim() == 1 and not 0 < int(mask.sum()) < mask.numel():
            raise ValueError("a vector mask needs at least one conditioning (1) and one transformed (0) entry")
        if scale_bound <= 0:
            raise ValueError(f"scale_bound must be positive, got {scale_bound}")
        self.register_buffer("mask", mask)
        self.scale_bound = float(scale_bound)
        if mask.dim() == 1:
            self.register_buffer("cond_idx", torch.nonzero(mask).flatten())
            self.register_buffer("trans_idx", torch.nonzero(1 - mask).flatten())
            net = net or MLP(len(self.cond_idx), 2 * len(self.trans_idx), hidden, depth, dropout)
        else:
            net = net or ConvNet(mask.shape[0], 2 * mask.shape[0], hidden, depth)
        self.net = net

    def scale_shift(self, x: torch.Tensor):
        """``(s, t)``, each shaped like ``x``, computed from the conditioning entries ``m * x`` alone."""
        if self.mask.dim() == 1:
            h = self.net(x[:, self.cond_idx])
            s_raw, t_part = h.chunk(2, dim=1)
            s, t = torch.zeros_like(x), torch.zeros_like(x)
            s = s.index_copy(1, self.trans_idx, s_raw)
            t = t.index_copy(1, self.trans_idx, t_part)
        else:
            s, t = self.net(self.mask * x).chunk(2, dim=1)
        return self.scale_bound * torch.tanh(s / self.scale_bound), t

    def forward(self, x: torch.Tensor):
        s, t = self.scale_shift(x)
        return coupling_forward(x, self.mask, s, t)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        s, t = self.scale_shift(z)
        return coupling_inverse(z, self.mask, s, t)


class ActNorm(nn.Module):
    """Glow's activation normalization: ``z = (x - b) * exp(-log_sigma)`` per feature (vectors ``(B, D)``)
    or per channel (images ``(B, C, H, W)``).

    On the first forward pass ``b`` and ``log_sigma`` are set to the batch's mean and log standard deviation
    (data-dependent initialization), so the first layers see zero-mean, unit-variance inputs whatever the
    data's scale: a batch norm that becomes a fixed, invertible affine map after the first batch.
    ``log_det = -sum(log_sigma) * H * W`` (``H * W = 1`` for vectors).
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.log_sigma = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("initialized", torch.tensor(False))

    def _view(self, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return p.view(1, -1, *([1] * (x.dim() - 2)))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set ``b`` and ``log_sigma`` so that this batch comes out with zero mean and unit variance."""
        flat = x.transpose(0, 1).flatten(1)  # (features, B * H * W)
        self.bias.copy_(flat.mean(1))
        self.log_sigma.copy_(flat.std(1).clamp_min(1e-6).log() if flat.shape[1] > 1 else torch.zeros_like(self.log_sigma))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor):
        if not bool(self.initialized):
            self.initialize(x)
        z = (x - self._view(self.bias, x)) * torch.exp(-self._view(self.log_sigma, x))
        spatial = x[0, 0].numel()
        return z, (-self.log_sigma.sum() * spatial).expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.exp(self._view(self.log_sigma, z)) + self._view(self.bias, z)


class InvertibleLinear(nn.Module):
    """Glow's invertible linear map, LU-parametrized: ``z = W x`` per vector ``(B, D)``, or per pixel of images
    ``(B, C, H, W)`` (the invertible 1x1 convolution).

    ``W = P L (U + diag(sign * exp(log_s)))`` with a fixed permutation ``P``, unit lower-triangular ``L``
    and strictly upper-triangular ``U``, so ``log|det W| = sum(log_s)`` costs ``O(D)`` instead of ``O(D^3)``;
    on images ``log_det = H * W * sum(log_s)``. Starts at a random rotation (Glow's initialization),
    which mixes every feature with every other: a learned generalization of a fixed permutation.
    """

    def __init__(self, num_features: int, *, generator: torch.Generator | None = None):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be positive, got {num_features}")
        q, _ = torch.linalg.qr(torch.randn(num_features, num_features, generator=generator))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(diag))
        self.register_buffer("lower_mask", torch.tril(torch.ones(num_features, num_features), -1))
        self.register_buffer("eye", torch.eye(num_features))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(diag.abs().log())

    def weight(self) -> torch.Tensor:
        """The matrix ``W = P L (U + diag(sign * exp(log_s)))``, ``(D, D)``."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def _matmul(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return x @ w.T
        return torch.einsum("oc,bchw->bohw", w, x)

    def forward(self, x: torch.Tensor):
        spatial = x[0, 0].numel()
        return self._matmul(x, self.weight()), (self.log_s.sum() * spatial).expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self._matmul(z, torch.linalg.inv(self.weight()))


class InvertibleConv1x1(InvertibleLinear):
    """Glow's invertible 1x1 convolution on images ``(B, C, H, W)``: :class:`InvertibleLinear` on channels."""


class LogitLayer(nn.Module):
    """The fixed :func:`logit_transform` as a flow layer: ``y in (0, 1) -> s = logit(alpha + (1 - 2 alpha) y)``."""

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0 < alpha < 0.5:
            raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def forward(self, y: torch.Tensor):
        return logit_transform(y, self.alpha)

    def inverse(self, s: torch.Tensor) -> torch.Tensor:
        return logit_inverse(s, self.alpha)


# ----------------------------------------------------------------------------------------------
# Flows
# ----------------------------------------------------------------------------------------------

class Flow(nn.Module):
    """A chain of flow layers with a standard normal base on ``event_shape``.

    ``forward(x) -> (z, log_det)`` runs the layers in order and sums their log-dets; ``inverse`` runs them
    backwards; ``log_prob`` is eq. (1); ``sample(n, temperature)`` draws ``z ~ N(0, T^2 I)`` and inverts.
    """

    likelihood = "exact"

    def __init__(self, layers, event_shape):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.event_shape = tuple(event_shape)

    def _check(self, x: torch.Tensor, name: str = "x") -> None:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.event_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape (B, {', '.join(map(str, self.event_shape))}), got {got}")

    def forward(self, x: torch.Tensor):
        self._check(x)
        log_det = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        self._check(z, "z")
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = log N(f(x); 0, I) + log|det df/dx|``, ``(B,)`` nats (eq. 1)."""
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det

    @torch.no_grad()
    def trajectory(self, x: torch.Tensor) -> list:
        """``[x, f_1(x), f_2(f_1(x)), ..., z]``: the data pushed through the flow one layer at a time."""
        self._check(x)
        states = [x]
        for layer in self.layers:
            x, _ = layer(x)
            states.append(x)
        return states

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``n`` samples ``(n, *event_shape)``: ``x = f^{-1}(z)``, ``z ~ N(0, T^2 I)`` (``T = temperature``)."""
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        device = next(self.parameters()).device
        return self.inverse(temperature * torch.randn(n, *self.event_shape, device=device))


class RealNVP(Flow):
    """RealNVP (Dinh et al. 2017): ``num_couplings`` :class:`AffineCoupling` layers with alternating masks.

    ``dim``: an int (vectors ``(B, dim)``; masks alternate between the even/odd entries, or for ``dim=2``
    between the two coordinates) or a shape ``(C, H, W)`` (images; checkerboard masks, convolutional
    conditioners). Glow's pieces are optional: ``actnorm=True`` puts an :class:`ActNorm` before each
    coupling, ``invertible_linear=True`` an :class:`InvertibleLinear` (the 1x1 convolution on images),
    which replaces the fixed alternation by a learned mixing; the masks then split the entries in halves.
    ``masks``: a list of masks to cycle through instead (e.g. :func:`image_masks` for flattened images).
    """

    def __init__(self, dim, num_couplings: int = 8, hidden: int = 128, depth: int = 2, *, scale_bound: float = 3.0,
                 actnorm: bool = False, invertible_linear: bool = False, dropout: float = 0.0, masks=None,
                 seed: int = 0):
        shape = (dim,) if isinstance(dim, int) and not isinstance(dim, bool) else tuple(dim)
        if len(shape) not in (1, 3) or any(not isinstance(d, int) or d < 1 for d in shape) or math.prod(shape) < 2:
            raise ValueError(f"dim must be an int >= 2 (vectors) or an image shape (C, H, W), got {dim!r}")
        if num_couplings < 1:
            raise ValueError(f"num_couplings must be positive, got {num_couplings}")
        g = torch.Generator().manual_seed(seed)
        layers = []
        for i in range(num_couplings):
            if actnorm:
                layers.append(ActNorm(shape[0]))
            if invertible_linear:
                layers.append(InvertibleLinear(shape[0], generator=g))
            if masks is not None:
                mask = masks[i % len(masks)]
            elif len(shape) == 1 and invertible_linear:
                mask = half_mask(shape[0], first=i % 2 == 0)
            else:
                mask = checkerboard_mask(shape, parity=i % 2)
            layers.append(AffineCoupling(mask, hidden, depth, scale_bound, dropout=dropout))
        super().__init__(layers, shape)


def fit_flow_2d(train_points: torch.Tensor, val_points: torch.Tensor, *, epochs: int = 25, lr: float = 5e-3,
                batch_size: int = 256, seed: int = 0, desc: str = "RealNVP in 2D", verbose: bool = True,
                **flow_kwargs):
    """Fit a :class:`RealNVP` on 2D points ``(N, 2)`` by maximum likelihood, early-stopped on ``val_points``.

    ``flow_kwargs`` go to ``RealNVP(2, ...)`` (default width 64 here). Returns ``(flow, history)`` with
    the mean NLL in nats per point per epoch.
    """
    from gencourse.train import adam, fit, seed_everything

    for name, pts in (("train_points", train_points), ("val_points", val_points)):
        if not isinstance(pts, torch.Tensor) or pts.dim() != 2 or pts.shape[1] != 2:
            raise ValueError(f"{name} must be a tensor of shape (N, 2)")
    seed_everything(seed)
    flow = RealNVP(2, **{"hidden": 64, "seed": seed, **flow_kwargs})
    with torch.no_grad():  # ActNorm's data-dependent initialization, when the flow has ActNorm layers
        flow(train_points[:1000])
    optimizer = adam(flow.parameters(), lr)
    history = fit(flow, lambda batch: -flow.log_prob(batch).mean(), train_points, val_data=val_points, epochs=epochs,
                  lr=lr, optimizer=optimizer, batch_size=batch_size, seed=seed, desc=desc, verbose=verbose)
    return flow, history


# ----------------------------------------------------------------------------------------------
# Discrete images: dequantization and the digits model
# ----------------------------------------------------------------------------------------------

def dequantized_nll(log_prob_y, x: torch.Tensor, levels: int, *, draws: int = 1,
                    importance_weighted: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Discrete NLL bound in nats ``(B,)`` of images ``x = k / (L - 1)`` under a density ``log_prob_y`` on
    ``y in [0, 1)^D`` (eq. 2), from ``S = draws`` uniform dequantizations ``y_s = (k + u_s) / L``:

    - default: the mean over draws of ``-log p(y_s) + D ln L`` (each draw is an unbiased estimate of the
      Jensen bound; more draws lower the variance, not the bound);
    - ``importance_weighted=True``: ``-log (1/S) sum_s p(y_s) + D ln L``, a tighter bound in expectation
      (like IWAE with the uniform dequantizer as proposal), which tends to ``-log P(k)`` as ``S`` grows.
    """
    if draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws}")
    num_dims = x[0].numel()
    log_p = torch.stack([log_prob_y(_data.dequantize(x, levels, generator=generator)) for _ in range(draws)])
    if importance_weighted:
        continuous_nll = -(torch.logsumexp(log_p, dim=0) - math.log(draws))
    else:
        continuous_nll = -log_p.mean(0)
    return _data.discrete_nll_bound(continuous_nll, num_dims, levels)


class DigitsFlow(nn.Module):
    """A flow for discrete images ``x = k / (L - 1)`` of shape ``(C, H, W)`` (default: 8x8 digits, 17 levels).

    ``y = (k + u) / L`` (dequantization) -> ``s = logit(alpha + (1 - 2 alpha) y)`` (fixed) -> ``z = f(s)``, with
    ``f`` a :class:`RealNVP` on the flattened ``D``-vector: ActNorm before each coupling, masks cycling through
    a checkerboard, column and row stripes of the image (:func:`image_masks`), MLP conditioners with dropout.
    ``log p(y) = log N(z; 0, I) + log|det dz/ds| + log|det ds/dy|``; ``nll(x)`` is the discrete bound
    ``-log p(y) + D ln L`` in nats per image (eq. 2), so ``likelihood = "bound"``.
    """

    likelihood = "bound"

    def __init__(self, shape=(1, 8, 8), levels: int = 17, num_couplings: int = 10, hidden: int = 128,
                 depth: int = 2, alpha: float = 0.05, scale_bound: float = 3.0, actnorm: bool = True,
                 invertible_linear: bool = False, dropout: float = 0.3, image_aware: bool = True, seed: int = 0):
        super().__init__()
        self.shape = tuple(shape)
        if len(self.shape) != 3:
            raise ValueError(f"shape must be an image shape (C, H, W), got {shape!r}")
        if not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2 (17 for digits), got {levels!r}")
        self.levels = levels
        self.num_dims = math.prod(self.shape)
        self.logit = LogitLayer(alpha)
        masks = image_masks(self.shape) if image_aware else None
        self.flow = RealNVP(self.num_dims, num_couplings, hidden, depth, scale_bound=scale_bound, actnorm=actnorm,
                            invertible_linear=invertible_linear, dropout=dropout, masks=masks, seed=seed)

    def _check_images(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be images of shape (B, {', '.join(map(str, self.shape))}), got {got}")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"x must lie in [0, 1] (k / {self.levels - 1}), got [{x.min():.3g}, {x.max():.3g}]")

    def log_prob_y(self, y: torch.Tensor) -> torch.Tensor:
        """``log p(y)`` ``(B,)`` of dequantized images ``y: (B, C, H, W)`` in ``[0, 1)``, logit log-det included."""
        s, ld_logit = self.logit(y.flatten(1))
        return self.flow.log_prob(s) + ld_logit

    def nll(self, x: torch.Tensor, draws: int = 1, *, importance_weighted: bool = False) -> torch.Tensor:
        """Discrete NLL bound in nats per image ``(B,)`` of ``x = k / (L - 1)`` from ``draws`` dequantizations
        (eq. 2; see :func:`dequantized_nll`)."""
        self._check_images(x)
        return dequantized_nll(self.log_prob_y, x, self.levels, draws=draws, importance_weighted=importance_weighted)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training loss: the mean discrete bound of the batch, nats per image (one dequantization)."""
        return self.nll(x).mean()

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, *, continuous: bool = False) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` in ``[0, 1]``: ``y = f^{-1}(z)``, ``z ~ N(0, T^2 I)``, quantized to
        ``k = floor(L y)`` and returned as ``k / (L - 1)`` like the data (``continuous=True``: ``y`` itself)."""
        s = self.flow.sample(n, temperature)
        y = self.logit.inverse(s).clamp(0, 1 - 1e-6).view(n, *self.shape)
        if continuous:
            return y
        return torch.floor(y * self.levels).clamp(0, self.levels - 1) / (self.levels - 1)


def train_digits(*, epochs: int = 50, seed: int = 0, quick: bool = False, patience: int | None = 20,
                 lr: float = 2e-3, batch_size: int = 64, max_seconds: float | None = None, verbose: bool = True,
                 device=None, **model_kwargs):
    """Train a :class:`DigitsFlow` on the digits train split by maximum likelihood (the discrete bound),
    keeping the weights of the best validation epoch (early stopping on the validation split).

    Returns ``(model, history)``; the history's losses are the bound in nats per image (one dequantization
    per image and epoch). ``quick=True``: a tiny model for two epochs (a smoke test). ``model_kwargs`` go to
    :class:`DigitsFlow`. About 25 s of one CPU core with the defaults.
    """
    from gencourse.train import adam, fit, seed_everything

    if quick:
        epochs = min(epochs, 2)
        model_kwargs = {"num_couplings": 2, "hidden": 32, **model_kwargs}
    seed_everything(seed)
    train, val = _data.load("digits", "train"), _data.load("digits", "val")
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = DigitsFlow(seed=seed, **model_kwargs).to(device)
    with torch.no_grad():  # ActNorm's data-dependent initialization on a large batch
        model.nll(train.images[:512].to(device))
    optimizer = adam(model.parameters(), lr)
    history = fit(model, lambda batch: model.loss(batch[0]), train, val_data=val, epochs=epochs, lr=lr,
                  optimizer=optimizer, batch_size=batch_size, patience=patience, seed=seed,
                  max_seconds=max_seconds, desc="RealNVP on digits", verbose=verbose)
    return model, history
