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

Two refinements: :class:`VariationalDequantizer` learns the noise ``q(u | k)`` (Flow++), which gives the bound
``E_q[-log p(y) + log q(u | k)] + D ln 17`` (:func:`variational_dequantized_nll`, :func:`fit_dequantizer`), and
:class:`MultiScaleDigitsFlow` is RealNVP's multi-scale architecture (:func:`squeeze`, then half the entries
factored out). On 28x28 images (MNIST, 256 levels): :class:`ImageFlow`, the multi-scale architecture with
convolutional couplings (:class:`ChannelCoupling`, checkerboard :class:`AffineCoupling`), ActNorm and invertible
1x1 convolutions, trained by :func:`train_images` on the same dequantized bound.
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
    data's scale. After that they are ordinary trainable parameters, and the map no longer depends on the
    batch: unlike batch norm, an example's output (and its density) is the same in any batch.
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
    ``log p(y) = log N(z; 0, I) + log|det dz/ds| + log|det ds/dy|``; ``nll(x)`` estimates the discrete bound
    ``E_u[-log p(y)] + D ln L`` in nats per image (eq. 2) from ``draws`` draws of ``u``, so ``likelihood = "bound"``.
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


# ----------------------------------------------------------------------------------------------
# Variational dequantization (Flow++, Ho et al. 2019)
# ----------------------------------------------------------------------------------------------

class VariationalDequantizer(nn.Module):
    """A learned dequantization noise ``q(u | k)`` on ``(0, 1)^D``: a Gaussian squashed by a sigmoid,

        ``a = mu(k) + sigma(k) * eps``, ``eps ~ N(0, I)``, ``u = sigmoid(a)``,
        ``log q(u | k) = sum_i [ log N(eps_i; 0, 1) - log sigma_i - log u_i - log(1 - u_i) ]``

    (the change of variables ``eps -> a -> u``: ``da/deps = sigma`` and ``du/da = u (1 - u)``). ``mu`` and
    ``log sigma`` come from an :class:`MLP` on the image ``2 x - 1`` (``x = k / (L - 1)``, flattened); its last
    layer starts at zero, so ``q`` starts as ``sigmoid(N(0, init_std^2))``, close to uniform for
    ``init_std = 1.7``. With a density ``p`` on ``y = (k + u) / L`` it gives the bound (Ho et al. 2019, eq. 12)

        ``-log P(k) <= E_{q(u|k)}[ -log p((k + u) / L) + log q(u | k) ] + D ln L``,

    equal to ``-log P(k)`` when ``q(u | k)`` is ``p``'s own conditional density inside the box of ``k``.
    """

    def __init__(self, num_dims: int, hidden: int = 128, depth: int = 2, init_std: float = 1.7):
        super().__init__()
        if not isinstance(num_dims, int) or num_dims < 1:
            raise ValueError(f"num_dims must be a positive integer, got {num_dims!r}")
        if init_std <= 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.num_dims = num_dims
        self.init_log_sigma = math.log(init_std)
        self.net = MLP(num_dims, 2 * num_dims, hidden, depth)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None):
        """Draw ``u ~ q(u | k)`` for images ``x = k / (L - 1)`` ``(B, ...)``: returns ``(u like x, log_q (B,))``."""
        flat = x.flatten(1)
        if flat.shape[1] != self.num_dims:
            raise ValueError(f"x must have {self.num_dims} entries per example, got shape {tuple(x.shape)}")
        mu, log_sigma = self.net(2 * flat - 1).chunk(2, dim=1)
        log_sigma = log_sigma + self.init_log_sigma
        if eps is None:
            eps = torch.randn_like(flat)
        a = mu + torch.exp(log_sigma) * eps.flatten(1)
        u = torch.sigmoid(a)
        log_q = (-0.5 * (eps.flatten(1) ** 2 + LOG_2PI) - log_sigma
                 - nn.functional.logsigmoid(a) - nn.functional.logsigmoid(-a)).sum(1)
        return u.view_as(x), log_q


def variational_dequantized_nll(log_prob_y, dequantizer: VariationalDequantizer, x: torch.Tensor, levels: int, *,
                                draws: int = 1, importance_weighted: bool = False) -> torch.Tensor:
    """Discrete NLL bound in nats ``(B,)`` with the learned noise ``u ~ q(u | k)`` of ``dequantizer``:

    - default: the mean over ``S = draws`` draws of ``-log p(y_s) + log q(u_s | k) + D ln L``, an unbiased
      estimate of the variational bound ``E_q[-log p(y) + log q(u | k)] + D ln L``;
    - ``importance_weighted=True``: ``-log (1/S) sum_s p(y_s) / q(u_s | k) + D ln L``, tighter in expectation,
      tending to ``-log P(k)`` as ``S`` grows (q as the proposal, like IWAE).

    With ``q`` uniform (``log q = 0``) both reduce to :func:`dequantized_nll`.
    """
    if draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws}")
    k = _data.to_levels(x, levels).to(x.dtype)
    log_w = []
    for _ in range(draws):
        u, log_q = dequantizer(x)
        log_w.append(log_prob_y((k + u) / levels) - log_q)
    log_w = torch.stack(log_w)
    nll = -(torch.logsumexp(log_w, dim=0) - math.log(draws)) if importance_weighted else -log_w.mean(0)
    return _data.discrete_nll_bound(nll, x[0].numel(), levels)


def fit_dequantizer(model, *, epochs: int = 15, lr: float = 2e-3, batch_size: int = 64, hidden: int = 128,
                    seed: int = 0, verbose: bool = True, train=None, val=None, log_prob_y=None):
    """Learn ``q(u | k)`` (:class:`VariationalDequantizer`) for a trained digits model whose density stays fixed
    (``model.log_prob_y``, e.g. a :class:`DigitsFlow`, or the given ``log_prob_y``, a differentiable function of
    ``y``: a flow-matching model's ODE density, say): minimize the variational bound on the train split,
    early-stopped on the validation split. The model's weights are not changed. Returns ``(dequantizer, history)``.
    """
    from gencourse.train import adam, fit, seed_everything

    seed_everything(seed)
    train = train if train is not None else _data.load("digits", "train")
    val = val if val is not None else _data.load("digits", "val")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    dequantizer = VariationalDequantizer(model.num_dims, hidden)
    log_prob_y = log_prob_y or model.log_prob_y
    loss = lambda batch: variational_dequantized_nll(log_prob_y, dequantizer, batch[0], model.levels).mean()
    try:
        history = fit(dequantizer, loss, train, val_data=val, epochs=epochs, lr=lr,
                      optimizer=adam(dequantizer.parameters(), lr), batch_size=batch_size, seed=seed,
                      desc="q(u | k) for a fixed flow", verbose=verbose)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return dequantizer.eval(), history


def learned_noise_experiment(model, *, uniform_nll, seed: int = 0, fit_log_prob_y=None, eval_log_prob_y=None,
                             epochs: int = 15, train=None, val=None, test_images=None, verbose: bool = False) -> dict:
    """Lesson 05's experiment on any fixed digits density: fit ``q(u | k)`` (:func:`fit_dequantizer`, through
    ``fit_log_prob_y``, default ``model.log_prob_y``), then score the test images twice, each time after
    ``seed_everything(seed)``: ``uniform_nll(x)`` (the model's own bound with one uniform draw, ``(B,)`` nats) and
    the variational bound with one draw of ``q`` under ``eval_log_prob_y``. ``d = uniform - learned`` is paired
    over the images.

    -> ``{"nll_test_uniform", "nll_test_variational", "drop", "drop_interval" (95% over the test images),
    "epochs", "best_epoch", "seconds"}``."""
    import time

    from gencourse.train import seed_everything

    start = time.perf_counter()
    x = test_images if test_images is not None else _data.load("digits", "test").images
    dequantizer, history = fit_dequantizer(model, epochs=epochs, seed=seed, verbose=verbose, train=train, val=val,
                                           log_prob_y=fit_log_prob_y)
    eval_log_prob_y = eval_log_prob_y or model.log_prob_y
    with torch.no_grad():
        seed_everything(seed)
        uniform = uniform_nll(x).cpu()
        seed_everything(seed)
        learned = torch.cat([variational_dequantized_nll(eval_log_prob_y, dequantizer, xb, model.levels).cpu()
                             for xb in x.split(512)])
    drop = (uniform - learned).double()
    half = 1.96 * drop.std().item() / math.sqrt(len(drop))
    return {"nll_test_uniform": uniform.mean().item(), "nll_test_variational": learned.mean().item(),
            "drop": drop.mean().item(), "drop_interval": (drop.mean().item() - half, drop.mean().item() + half),
            "epochs": len(history.train_loss), "best_epoch": history.best_epoch,
            "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------------------------
# The multi-scale architecture: squeeze and split (Dinh et al. 2017, section 3.6)
# ----------------------------------------------------------------------------------------------

def squeeze(x: torch.Tensor) -> torch.Tensor:
    """Space to channels: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``. Each 2x2 block of a channel ``c`` becomes four
    channels ``4c + 2i + j`` (``i, j``: row and column inside the block). A permutation of the entries, so its
    log-det is 0."""
    if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"squeeze needs images (B, C, H, W) with even H and W, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(z: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze`: ``(B, 4C, H, W) -> (B, C, 2H, 2W)``."""
    if z.dim() != 4 or z.shape[1] % 4:
        raise ValueError(f"unsqueeze needs images (B, 4C, H, W), got shape {tuple(z.shape)}")
    b, c4, h, w = z.shape
    return z.view(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, 2 * h, 2 * w)


def channel_masks(shape) -> list:
    """Masks on flattened squeezed images ``shape = (C, H, W)``, ``C`` a multiple of 4, each ``(C*H*W,)``: inside
    every 2x2 block (the four channels ``4c + 2i + j`` of :func:`squeeze`) the diagonal, the top row and the
    left column, each followed by its complement."""
    c, h, w = shape
    if c % 4:
        raise ValueError(f"channel masks need a squeezed shape with C a multiple of 4, got {shape}")
    patterns = [torch.tensor([1.0, 0, 0, 1]), torch.tensor([1.0, 1, 0, 0]), torch.tensor([1.0, 0, 1, 0])]
    masks = []
    for pattern in patterns:
        m = pattern.repeat(c // 4)[:, None, None].expand(c, h, w).flatten()
        masks += [m, 1 - m]
    return masks


class MultiScaleDigitsFlow(nn.Module):
    """RealNVP's multi-scale architecture for discrete images ``(C, H, W)`` (default 8x8 digits, 17 levels).

    ``y = (k + u) / L`` -> logit (as :class:`DigitsFlow`) -> ``couplings[0]`` couplings at full resolution
    (masks of :func:`image_masks`) -> :func:`squeeze` to ``(4C, H/2, W/2)`` -> ``couplings[1]`` couplings with
    :func:`channel_masks` -> **split**: the first ``2C`` channels (half the entries) leave the flow and are
    scored by the standard normal base right away -> ``couplings[2]`` couplings on the remaining half only.
    Every coupling has an :class:`ActNorm` before it and an MLP conditioner on the flattened entries.

    ``log p(y) = log N(z_out; 0, I) + log N(z_last; 0, I) + sum of log-dets`` (the squeeze adds 0). The later
    layers work on ``D/2`` entries: fewer parameters and less compute than a flat flow of the same depth.
    """

    likelihood = "bound"

    def __init__(self, shape=(1, 8, 8), levels: int = 17, couplings=(4, 2, 4), hidden: int = 128, depth: int = 2,
                 alpha: float = 0.05, scale_bound: float = 3.0, dropout: float = 0.3, seed: int = 0):
        super().__init__()
        self.shape = tuple(shape)
        if len(self.shape) != 3 or self.shape[1] % 2 or self.shape[2] % 2:
            raise ValueError(f"shape must be an image shape (C, H, W) with even H and W, got {shape!r}")
        if not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2 (17 for digits), got {levels!r}")
        if len(couplings) != 3 or min(couplings) < 1:
            raise ValueError(f"couplings must give three positive numbers (before squeeze, after it, after the "
                             f"split), got {couplings!r}")
        c, h, w = self.shape
        self.levels = levels
        self.num_dims = c * h * w
        self.squeezed = (4 * c, h // 2, w // 2)
        self.logit = LogitLayer(alpha)
        kw = dict(scale_bound=scale_bound, actnorm=True, dropout=dropout, seed=seed)
        self.full = RealNVP(self.num_dims, couplings[0], hidden, depth, masks=image_masks(self.shape), **kw)
        self.after_squeeze = RealNVP(self.num_dims, couplings[1], hidden, depth, masks=channel_masks(self.squeezed),
                                     **kw)
        self.kept_shape = (2 * c, h // 2, w // 2)
        self.after_split = RealNVP(self.num_dims // 2, couplings[2], hidden, depth,
                                   masks=image_masks(self.kept_shape), **kw)

    _check_images = DigitsFlow._check_images

    def encode(self, s: torch.Tensor):
        """Logit-space images ``s: (B, D)`` -> ``(z_out (B, D/2), z_last (B, D/2), log_det (B,))``."""
        h, ld1 = self.full(s)
        h = squeeze(h.view(-1, *self.shape)).flatten(1)
        h, ld2 = self.after_squeeze(h)
        z_out, kept = h.chunk(2, dim=1)  # channel-major: the first 2C channels leave here
        z_last, ld3 = self.after_split(kept)
        return z_out, z_last, ld1 + ld2 + ld3

    def log_prob_y(self, y: torch.Tensor) -> torch.Tensor:
        """``log p(y)`` ``(B,)`` of dequantized images ``y: (B, C, H, W)`` in ``[0, 1)``, logit log-det included."""
        s, ld_logit = self.logit(y.flatten(1))
        z_out, z_last, log_det = self.encode(s)
        return standard_normal_log_prob(z_out) + standard_normal_log_prob(z_last) + log_det + ld_logit

    def nll(self, x: torch.Tensor, draws: int = 1, *, importance_weighted: bool = False) -> torch.Tensor:
        """Discrete NLL bound in nats per image ``(B,)`` (eq. 2; see :func:`dequantized_nll`)."""
        self._check_images(x)
        return dequantized_nll(self.log_prob_y, x, self.levels, draws=draws, importance_weighted=importance_weighted)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training loss: the mean discrete bound of the batch, nats per image (one dequantization)."""
        return self.nll(x).mean()

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` like the data: both halves of ``z`` drawn from ``N(0, T^2 I)`` and inverted."""
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        device = next(self.parameters()).device
        half = self.num_dims // 2
        z_out, z_last = temperature * torch.randn(2, n, half, device=device)
        h = self.after_squeeze.inverse(torch.cat([z_out, self.after_split.inverse(z_last)], dim=1))
        s = self.full.inverse(unsqueeze(h.view(n, *self.squeezed)).flatten(1))
        y = self.logit.inverse(s).clamp(0, 1 - 1e-6).view(n, *self.shape)
        return torch.floor(y * self.levels).clamp(0, self.levels - 1) / (self.levels - 1)


def fit_digits_model(model, *, epochs: int = 50, seed: int = 0, patience: int | None = 20, lr: float = 2e-3,
                     batch_size: int = 64, max_seconds: float | None = None, verbose: bool = True,
                     desc: str = "flow on digits"):
    """Train any digits model with ``loss(x)`` and ``nll(x)`` (a :class:`DigitsFlow`, a
    :class:`MultiScaleDigitsFlow`) as :func:`train_digits` does: the discrete bound, Adam, early stopping on
    the validation split. Returns ``(model, history)``."""
    from gencourse.train import adam, fit, seed_everything

    seed_everything(seed)
    train, val = _data.load("digits", "train"), _data.load("digits", "val")
    device = next(model.parameters()).device
    with torch.no_grad():  # ActNorm's data-dependent initialization on a large batch
        model.nll(train.images[:512].to(device))
    history = fit(model, lambda batch: model.loss(batch[0]), train, val_data=val, epochs=epochs, lr=lr,
                  optimizer=adam(model.parameters(), lr), batch_size=batch_size, patience=patience, seed=seed,
                  max_seconds=max_seconds, desc=desc, verbose=verbose)
    return model, history


# ----------------------------------------------------------------------------------------------
# 28x28 images (MNIST, Fashion-MNIST): a multi-scale RealNVP / Glow with convolutional couplings
# ----------------------------------------------------------------------------------------------

MNIST_EPOCHS = 20  # at most; the best validation epoch is kept
QUICK_IMAGE_MODEL = {"channel": 2, "final": 2, "hidden": 16}  # quick=True: checks that the code runs


class ChannelCoupling(nn.Module):
    """An affine coupling across the channels of images ``(B, C, H, W)`` (RealNVP's channel-wise masking).

    With ``a`` = the first ``C // 2`` channels and ``b`` the rest (``parity=1``: the other way round),
    ``(s, t) = net(a)``, a :class:`ConvNet` of 3x3 convolutions, and

        z_a = a,   z_b = b * exp(s) + t,   log_det = sum of s over b's entries  (B,),

    ``s`` bounded as in :class:`AffineCoupling` (``b * tanh(s_raw / b)``). The net's last layer starts at zero,
    so the layer starts as the identity.
    """

    def __init__(self, channels: int, hidden: int = 64, depth: int = 2, scale_bound: float = 3.0, parity: int = 0):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2:
            raise ValueError(f"a channel coupling needs at least 2 channels, got {channels!r}")
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}")
        if scale_bound <= 0:
            raise ValueError(f"scale_bound must be positive, got {scale_bound}")
        self.channels, self.parity, self.scale_bound = channels, parity, float(scale_bound)
        first = channels // 2
        self.sizes = (first, channels - first) if parity == 0 else (channels - first, first)
        self.net = ConvNet(self.sizes[0], 2 * self.sizes[1], hidden, depth)

    def _split(self, x: torch.Tensor):
        first = self.channels // 2
        a, b = x[:, :first], x[:, first:]
        return (a, b) if self.parity == 0 else (b, a)

    def _join(self, cond: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        return torch.cat([cond, trans] if self.parity == 0 else [trans, cond], dim=1)

    def _scale_shift(self, cond: torch.Tensor):
        s, t = self.net(cond).chunk(2, dim=1)
        return self.scale_bound * torch.tanh(s / self.scale_bound), t

    def forward(self, x: torch.Tensor):
        cond, trans = self._split(x)
        s, t = self._scale_shift(cond)
        return self._join(cond, trans * torch.exp(s) + t), s.flatten(1).sum(1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        cond, trans = self._split(z)
        s, t = self._scale_shift(cond)
        return self._join(cond, (trans - t) * torch.exp(-s))


class ImageFlow(nn.Module):
    """A multi-scale flow for discrete images ``(C, H, W)`` (default MNIST: ``(1, 28, 28)``, 256 levels):
    RealNVP's squeeze, couplings and split (Dinh et al. 2017, section 3.6) with Glow's ActNorm and invertible 1x1
    convolution (Kingma & Dhariwal 2018), convolutional throughout.

    ``y = (k + u) / L`` (uniform dequantization) -> ``s = logit(alpha + (1 - 2 alpha) y)`` (fixed, its log-det
    counted, as :class:`DigitsFlow`; ``alpha = 1e-6`` by default, MNIST's usual value since MAF, where the digits
    use 0.05: most MNIST pixels sit at the extreme levels, and a small ``alpha`` stretches their boxes over a wide
    range of the logit instead of a sliver) -> ``num_scales`` scales. Each scale but the last: ``checker`` couplings
    with checkerboard masks (:class:`AffineCoupling` with a conv conditioner; RealNVP's order; default 0, Glow's
    order, which squeezes first), :func:`squeeze` ``(C, H, W) -> (4C, H/2, W/2)``, ``channel`` couplings across
    channels (:class:`ChannelCoupling`, alternating halves, each after an invertible 1x1 convolution when
    ``invertible_1x1``), then the **split**: the first half of the channels leaves the flow as a latent of its
    own. The last scale: ``final`` checkerboard couplings. An :class:`ActNorm` before every coupling (``actnorm``).
    MNIST, 3 scales: ``(1, 28, 28) -> (4, 14, 14)``, then 392 numbers leave; ``(2, 14, 14) -> (8, 7, 7)``, 196
    leave; the last 196 end as ``(4, 7, 7)``. Every conditioner: 3x3 convolutions of ``hidden`` channels
    (``depth`` hidden layers), ReLU, last layer zero (each coupling starts as the identity).

    ``forward(s) -> (z (B, D), log_det (B,))`` maps logit-space images ``s: (B, C, H, W)`` to all the latents,
    flattened and concatenated in the order they leave; ``inverse(z) -> s``; the squeeze and the split are
    permutations (log-det 0), so ``log_det`` sums the layers' log-dets, and

        log p(y) = log N(z; 0, I) + log_det + log|det ds/dy|                            (:meth:`log_prob_y`)

    :meth:`nll` is the discrete bound ``E_u[-log p(y)] + D ln L`` (eq. 2) estimated from ``draws`` uniform
    dequantization draws per image, so ``likelihood = "bound"``.
    """

    likelihood = "bound"

    def __init__(self, shape=(1, 28, 28), levels: int = 256, num_scales: int = 3, checker: int = 0, channel: int = 4,
                 final: int = 4, hidden: int = 64, depth: int = 2, alpha: float = 1e-6, scale_bound: float = 3.0,
                 actnorm: bool = True, invertible_1x1: bool = True, seed: int = 0):
        super().__init__()
        self.shape = tuple(shape)
        if len(self.shape) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.shape):
            raise ValueError(f"shape must be an image shape (C, H, W), got {shape!r}")
        if isinstance(num_scales, bool) or not isinstance(num_scales, int) or num_scales < 1:
            raise ValueError(f"num_scales must be a positive integer, got {num_scales!r}")
        step = 2 ** (num_scales - 1)
        if self.shape[1] % step or self.shape[2] % step:
            raise ValueError(f"{num_scales} scales need H and W divisible by {step}, got shape {self.shape}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2 (256 for MNIST), got {levels!r}")
        if checker < 0 or min(channel, final) < 1:
            raise ValueError(f"channel and final must be positive numbers of couplings and checker >= 0, got "
                             f"checker={checker}, channel={channel}, final={final}")
        self.levels, self.num_dims = levels, math.prod(self.shape)
        self.logit = LogitLayer(alpha)
        g = torch.Generator().manual_seed(seed)
        kw = dict(hidden=hidden, depth=depth, scale_bound=scale_bound)

        def checker_flow(shape, n):
            if n == 0:
                return Flow([], shape)  # the identity (no couplings before the squeeze: Glow's order)
            layers = []
            for i in range(n):
                layers += [ActNorm(shape[0])] if actnorm else []
                layers.append(AffineCoupling(checkerboard_mask(shape, parity=i % 2), **kw))
            return Flow(layers, shape)

        def channel_flow(shape, n):
            layers = []
            for i in range(n):
                layers += [ActNorm(shape[0])] if actnorm else []
                layers += [InvertibleConv1x1(shape[0], generator=g)] if invertible_1x1 else []
                layers.append(ChannelCoupling(shape[0], parity=i % 2, **kw))
            return Flow(layers, shape)

        self.before_squeeze, self.after_squeeze, self.out_shapes = nn.ModuleList(), nn.ModuleList(), []
        c, h, w = self.shape
        for _ in range(num_scales - 1):
            self.before_squeeze.append(checker_flow((c, h, w), checker))
            c, h, w = 4 * c, h // 2, w // 2
            self.after_squeeze.append(channel_flow((c, h, w), channel))
            self.out_shapes.append((c // 2, h, w))  # the first C/2 channels leave
            c = c - c // 2
        self.last = checker_flow((c, h, w), final)
        self.out_shapes.append((c, h, w))

    def _check_images(self, x: torch.Tensor, name: str = "x") -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be images of shape (B, {', '.join(map(str, self.shape))}), got {got}")

    def forward(self, s: torch.Tensor):
        """Logit-space images ``s: (B, C, H, W)`` -> ``(z (B, D), log_det (B,))``: the latents in the order they
        leave the flow (each scale's split first, the last scale's output last), flattened and concatenated."""
        self._check_images(s, "s")
        h, log_det, zs = s, 0.0, []
        for before, after in zip(self.before_squeeze, self.after_squeeze):
            h, ld1 = before(h)
            h, ld2 = after(squeeze(h))
            out = h.shape[1] // 2
            zs.append(h[:, :out].flatten(1))
            h, log_det = h[:, out:], log_det + ld1 + ld2
        h, ld = self.last(h)
        zs.append(h.flatten(1))
        return torch.cat(zs, dim=1), log_det + ld

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``z: (B, D)`` (as :meth:`forward` returns them) -> logit-space images ``(B, C, H, W)``."""
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.num_dims:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must have shape (B, {self.num_dims}), got {got}")
        sizes = [math.prod(shape) for shape in self.out_shapes]
        pieces = [p.reshape(len(z), *shape) for p, shape in zip(z.split(sizes, dim=1), self.out_shapes)]
        h = self.last.inverse(pieces[-1])
        for i in reversed(range(len(self.after_squeeze))):
            h = self.after_squeeze[i].inverse(torch.cat([pieces[i], h], dim=1))
            h = self.before_squeeze[i].inverse(unsqueeze(h))
        return h

    def log_prob_y(self, y: torch.Tensor) -> torch.Tensor:
        """``log p(y)`` ``(B,)`` of dequantized images ``y: (B, C, H, W)`` in ``[0, 1)``, logit log-det included."""
        s, ld_logit = self.logit(y)
        z, log_det = self(s)
        return standard_normal_log_prob(z) + log_det + ld_logit

    def nll(self, x: torch.Tensor, draws: int = 1, *, importance_weighted: bool = False,
            generator: torch.Generator | None = None) -> torch.Tensor:
        """Discrete NLL bound in nats per image ``(B,)`` of ``x = k / (L - 1)`` (eq. 2; :func:`dequantized_nll`):
        with ``draws=1``, one uniform draw ``u`` per image, an unbiased estimate of the Jensen bound."""
        self._check_images(x)
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"x must lie in [0, 1] (k / {self.levels - 1}), got [{x.min():.3g}, {x.max():.3g}]")
        return dequantized_nll(self.log_prob_y, x, self.levels, draws=draws, importance_weighted=importance_weighted,
                               generator=generator)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training loss: the mean discrete bound of the batch, nats per image (one dequantization)."""
        return self.nll(x).mean()

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` like the data: ``z ~ N(0, T^2 I)``, ``y = logit^-1(f^-1(z))``, quantized
        to ``k = floor(L y)``, returned as ``k / (L - 1)``. One pass through the inverse flow."""
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        device = next(self.parameters()).device
        z = temperature * torch.randn(n, self.num_dims, generator=generator, device="cpu" if generator is not None
                                      else device).to(device)
        y = self.logit.inverse(self.inverse(z)).clamp(0, 1 - 1e-6)
        return torch.floor(y * self.levels).clamp(0, self.levels - 1) / (self.levels - 1)


def image_model(dataset: str = "mnist", **kwargs) -> ImageFlow:
    """A fresh :class:`ImageFlow` for a 28x28 dataset's images (``kwargs`` override its sizes)."""
    if dataset not in _data.LEVELS or dataset == "digits":
        raise ValueError(f"image_model is for the 28x28 datasets, "
                         f"{', '.join(d for d in _data.LEVELS if d != 'digits')}; got {dataset!r} (digits: DigitsFlow)")
    return ImageFlow((1, 28, 28), levels=_data.LEVELS[dataset], **kwargs)


def train_images(dataset: str = "mnist", *, epochs: int | None = None, seed: int = 0, quick: bool = False,
                 lr: float = 1e-3, batch_size: int = 64, subset: int | None = None, patience: int | None = None,
                 max_seconds: float | None = None, device=None, verbose: bool = True, **model_kwargs):
    """Train :func:`image_model` on a 28x28 dataset's train split by maximum likelihood -> ``(model, history)``.

    Loss: the discrete bound (eq. 2) in nats per image, one uniform dequantization per image and step. Adam with
    a warm-up and cosine decay of ``lr`` over ``epochs`` epochs (default ``MNIST_EPOCHS``), batches of
    ``batch_size``, gradients clipped at norm 100, ActNorm initialized on 512 training images first; the weights
    of the best validation epoch are kept (validation: the one-draw bound on at most 1000 validation images, or
    ``subset``; never the test split). ``subset``: only the first ``subset`` training images (a short CPU run);
    ``quick``: one epoch of a small model (``QUICK_IMAGE_MODEL`` unless ``model_kwargs`` say otherwise), to check
    that the code runs. ``"digits"`` is :func:`train_digits`. Returned in eval mode.
    """
    from gencourse.train import CosineAdam, fit, seed_everything

    if dataset == "digits":
        return train_digits(epochs=epochs or 50, seed=seed, quick=quick, device=device, verbose=verbose)
    _data.check_training_request(dataset, epochs, subset)
    epochs = 1 if quick else (epochs or MNIST_EPOCHS)
    seed_everything(seed)
    train, val = _data.load(dataset, "train"), _data.load(dataset, "val")
    images = train.images[:subset]
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = image_model(dataset, seed=seed, **(model_kwargs or (QUICK_IMAGE_MODEL if quick else {}))).to(device)
    with torch.no_grad():  # ActNorm's data-dependent initialization on a large batch
        model.nll(images[:512].to(device))
    optimizer = CosineAdam(model.parameters(), lr, epochs * math.ceil(len(images) / batch_size))
    history = fit(model, model.loss, images, val_data=val.images[:min(1000, subset or 1000)], epochs=epochs, lr=lr,
                  batch_size=batch_size, optimizer=optimizer, patience=patience, grad_clip=100.0, seed=seed,
                  max_seconds=max_seconds, device=device, desc=f"multi-scale RealNVP ({dataset})", verbose=verbose)
    return model.eval(), history
