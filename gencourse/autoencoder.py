"""Autoencoders: squeeze an image through a small code and rebuild it.

An encoder ``f`` maps an image ``x`` to a code ``z = f(x)`` of ``latent_dim`` numbers, a decoder ``g`` maps
the code back to per-pixel logits ``l = g(z)``, and the reconstruction is ``x_hat = sigmoid(l)``. Training
minimizes the reconstruction loss, summed over the ``D`` pixels and averaged over images:

    L(x) = sum_d BCE(x_d, sigmoid(l_d)) = sum_d [ softplus(l_d) - x_d l_d ]                       (1)

computed from the logits (``binary_cross_entropy_with_logits``), never ``BCELoss`` on a sigmoid output, which
loses precision where the sigmoid saturates. Pixel intensities ``x_d in [0, 1]`` act as soft targets.

A *denoising* autoencoder is the same network trained with ``noise_std > 0`` and/or ``mask_prob > 0``: its
loss corrupts the input, ``x~ = corrupt(x)``, and scores the reconstruction ``g(f(x~))`` against the clean
``x``, so the code must capture what makes a digit a digit rather than copy pixels.

An autoencoder has no prior over its codes, hence no likelihood (``likelihood = "none"``) and no principled
way to sample: :meth:`Autoencoder.sample` decodes codes drawn from a Gaussian fitted to the training codes
(:meth:`Autoencoder.fit_code_distribution`, which must be called first), the best a plain autoencoder can do,
and lesson 02 measures how far that falls short.

Denoising and the score. For Gaussian corruption ``x~ = x + sigma eps``, the denoiser that minimizes the squared
error is the posterior mean, and Tweedie's formula ties it to the score of the noised density
``p_sigma = p * N(0, sigma^2 I)``:

    r*(x~) = E[x | x~] = x~ + sigma^2 grad log p_sigma(x~),   so   grad log p_sigma(x~) ~ (r(x~) - x~) / sigma^2   (2)

(Vincent 2011; Alain & Bengio 2014). :func:`train_denoiser` fits such an ``r`` to 2D points,
:func:`denoiser_score` reads the score off it, and :func:`mixture_score` gives the exact score of a noised
Gaussian mixture (the 8-Gaussians ring) to compare with.

    model = MLPAutoencoder(latent_dim=2)                 # digits (1, 8, 8)
    conv = ConvAutoencoder((1, 28, 28), latent_dim=16)    # MNIST
    err = model.reconstruction_error(x)                  # (B,) squared error per image: anomaly scores
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from gencourse.data import load


def corrupt(x: torch.Tensor, *, noise_std: float = 0.0, mask_prob: float = 0.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupted copy of images ``x (B, ...)`` in [0, 1]: Gaussian noise, then masking, clipped to [0, 1].

        x~ = clip( m * (x + noise_std * eps), 0, 1 ),   eps ~ N(0, I),  m_d ~ Bernoulli(1 - mask_prob)
    """
    if noise_std < 0 or not 0.0 <= mask_prob < 1.0:
        raise ValueError(f"noise_std must be >= 0 and mask_prob in [0, 1), got {noise_std} and {mask_prob}")
    out = x
    if noise_std > 0:
        out = out + noise_std * torch.randn(x.shape, generator=generator, device=x.device)
    if mask_prob > 0:
        out = out * (torch.rand(x.shape, generator=generator, device=x.device) >= mask_prob)
    return out.clamp(0.0, 1.0)


class Autoencoder(nn.Module):
    """What every autoencoder here shares: encode, decode, the loss (1), reconstruction error, sampling.

    Subclasses build ``self.encoder: (B, C, H, W) -> (B, latent_dim)`` and
    ``self.decoder: (B, latent_dim) -> (B, C, H, W)`` logits.
    """

    likelihood = "none"

    def __init__(self, image_shape, latent_dim: int, *, noise_std: float = 0.0, mask_prob: float = 0.0):
        super().__init__()
        if len(image_shape) != 3 or min(image_shape) <= 0:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim <= 0:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        corrupt(torch.zeros(1), noise_std=noise_std, mask_prob=mask_prob)  # validates the corruption
        self.image_shape, self.latent_dim = tuple(image_shape), latent_dim
        self.noise_std, self.mask_prob = float(noise_std), float(mask_prob)
        # The Gaussian over codes that `sample` draws from: N(0, I) until fit_code_distribution is called.
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_scale_tril", torch.eye(latent_dim))

    @property
    def denoising(self) -> bool:
        """True when training corrupts the input (a denoising autoencoder)."""
        return self.noise_std > 0 or self.mask_prob > 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)`` in [0, 1] -> codes ``z (B, latent_dim)``.

        The encoder sees ``2 x - 1``, the pixels centred on [-1, 1] (inputs centred on zero train a little faster);
        the decoder's logits still target ``x`` in [0, 1].
        """
        return self.encoder(2.0 * x - 1.0)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, latent_dim)`` -> per-pixel logits ``(B, C, H, W)``."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, latent_dim)`` -> images ``sigmoid(logits)`` in [0, 1], ``(B, C, H, W)``."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction ``x_hat = sigmoid(g(f(x)))``, same shape as ``x``."""
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Training loss (1), mean over the batch of the per-image sum over pixels (a scalar).

        In training mode a denoising autoencoder encodes a corrupted copy of ``x`` and is scored against ``x``.
        ``inputs`` (images like ``x``, e.g. a fixed corrupted copy) are encoded instead when given, with no
        further corruption; ``x`` stays the target.
        """
        self.check_images(x)
        if inputs is not None:
            self.check_images(inputs)
            if inputs.shape != x.shape:
                raise ValueError(f"inputs must have the shape of x {tuple(x.shape)}, got {tuple(inputs.shape)}")
        elif self.training and self.denoising:
            inputs = corrupt(x, noise_std=self.noise_std, mask_prob=self.mask_prob)
        else:
            inputs = x
        logits = self.decode_logits(self.encode(inputs))
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Squared error per image, ``sum_d (x_d - x_hat_d)^2`` -> ``(B,)``; the anomaly score of lesson 02.

        ``inputs`` (e.g. corrupted images) are encoded instead of ``x`` when given; ``x`` is the target.
        """
        self.check_images(x)
        x_hat = self(x if inputs is None else inputs)
        return (x - x_hat).pow(2).flatten(1).sum(1)

    @torch.no_grad()
    def fit_code_distribution(self, images: torch.Tensor) -> "Autoencoder":
        """Fit the Gaussian ``N(m, S)`` of the codes of ``images (N, C, H, W)``; :meth:`sample` then draws from it."""
        self.check_images(images)
        was_training = self.training
        self.eval()
        z = self.encode(images)
        self.train(was_training)
        cov = torch.cov(z.T).reshape(self.latent_dim, self.latent_dim) + 1e-5 * torch.eye(self.latent_dim, device=z.device)
        self.code_mean.copy_(z.mean(0))
        self.code_scale_tril.copy_(torch.linalg.cholesky(cov))
        return self

    @property
    def code_distribution_fitted(self) -> bool:
        """Whether :meth:`fit_code_distribution` has set the code Gaussian (the buffers are saved in the
        state_dict, so a loaded checkpoint keeps it). Unfitted buffers are exactly ``N(0, I)``."""
        return not (bool((self.code_mean == 0).all())
                    and bool((self.code_scale_tril == torch.eye(self.latent_dim, device=self.code_mean.device)).all()))

    @torch.no_grad()
    def sample_codes(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` codes ``z = m + L eps``, ``eps ~ N(0, I)``, from the fitted code Gaussian ``N(m, S)``, ``L L^T = S``
        -> ``(n, latent_dim)``. Raises ``RuntimeError`` before :meth:`fit_code_distribution`: an autoencoder
        has no distribution over its codes until one is fitted, and silently using ``N(0, I)`` instead would
        sample something else."""
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if not self.code_distribution_fitted:
            raise RuntimeError("this autoencoder's code distribution has not been fitted: call "
                               "model.fit_code_distribution(training_images) first (for N(0, I) codes, draw them "
                               "yourself with torch.randn and call model.decode)")
        eps = torch.randn(n, self.latent_dim, generator=generator, device=self.code_mean.device)
        return self.code_mean + eps @ self.code_scale_tril.T

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` codes of :meth:`sample_codes` (the Gaussian fitted to the training codes; ``RuntimeError``
        before :meth:`fit_code_distribution`) -> images ``(n, C, H, W)`` in [0, 1], the decoder's output."""
        z = self.sample_codes(n, generator=generator)
        was_training = self.training
        self.eval()
        images = self.decode(z)
        self.train(was_training)
        return images

    def check_images(self, x) -> None:
        """Raise ``ValueError`` unless ``x`` is a batch of images ``(B, C, H, W)`` of this model in [0, 1]."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, self.image_shape))}), got {got}")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"images must lie in [0, 1], got range [{x.min().item():.3g}, {x.max().item():.3g}] "
                             "(data on [-1, 1]? map it back with (x + 1) / 2)")


class MLPAutoencoder(Autoencoder):
    """Fully connected autoencoder: ``D -> hidden... -> latent_dim -> ...hidden -> D`` (LeakyReLU between)."""

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int = 2, hidden=(256, 128), **kwargs):
        super().__init__(image_shape, latent_dim, **kwargs)
        d = math.prod(self.image_shape)
        sizes = [d, *hidden, latent_dim]
        self.encoder = nn.Sequential(nn.Flatten(), *_mlp_layers(sizes))
        self.decoder = nn.Sequential(*_mlp_layers(sizes[::-1]), nn.Unflatten(1, self.image_shape))


class ConvAutoencoder(Autoencoder):
    """Small convolutional autoencoder for square images whose side is divisible by 4 (28x28 MNIST; 8x8 works too).

    Encoder: two stride-2 3x3 convolutions (``side -> side/2 -> side/4``), then a linear map to the code;
    the decoder mirrors it with transposed convolutions.
    """

    def __init__(self, image_shape=(1, 28, 28), latent_dim: int = 16, channels=(32, 64), **kwargs):
        super().__init__(image_shape, latent_dim, **kwargs)
        c, h, w = self.image_shape
        if h != w or h % 4:
            raise ValueError(f"ConvAutoencoder needs square images with a side divisible by 4, got {image_shape!r}")
        c1, c2 = channels
        s = h // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(c, c1, 3, stride=2, padding=1), nn.LeakyReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.LeakyReLU(),
            nn.Flatten(), nn.Linear(c2 * s * s, latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, c2 * s * s), nn.LeakyReLU(), nn.Unflatten(1, (c2, s, s)),
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1), nn.LeakyReLU(),
            nn.ConvTranspose2d(c1, c, 3, stride=2, padding=1, output_padding=1))


def _mlp_layers(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU())
    return layers


def roc_auc(scores_normal, scores_anomalous) -> float:
    """Area under the ROC curve of an anomaly score (higher = more anomalous), from the two groups' scores:

        AUC = P(s_anomalous > s_normal) + 1/2 P(s_anomalous = s_normal)

    the Mann-Whitney statistic ``(R - m (m + 1) / 2) / (n m)``, with ``R`` the sum of the anomalous scores'
    ranks among all ``n + m`` scores (ties get their average rank). 1 separates perfectly, 0.5 is chance.
    """
    from scipy.stats import rankdata

    a = torch.as_tensor(scores_normal).detach().double().flatten().cpu()
    b = torch.as_tensor(scores_anomalous).detach().double().flatten().cpu()
    if len(a) == 0 or len(b) == 0:
        raise ValueError("roc_auc needs at least one normal and one anomalous score")
    if torch.isnan(a).any() or torch.isnan(b).any():
        raise ValueError("roc_auc got NaN scores")
    ranks = rankdata(torch.cat([a, b]).numpy())
    n, m = len(a), len(b)
    return float((ranks[n:].sum() - m * (m + 1) / 2) / (n * m))


# ----------------------------------------------------------------------------------------------
# Denoising and the score, on 2D points
# ----------------------------------------------------------------------------------------------

def mixture_score(x: torch.Tensor, centers: torch.Tensor, std: float, sigma: float = 0.0) -> torch.Tensor:
    """Exact score ``grad_x log p_sigma(x)`` of an equal-weight isotropic Gaussian mixture noised by ``sigma``.

    ``p = 1/K sum_k N(c_k, std^2 I)``; adding ``N(0, sigma^2 I)`` noise adds the variances, so
    ``p_sigma = 1/K sum_k N(c_k, s^2 I)`` with ``s^2 = std^2 + sigma^2``, and

        grad log p_sigma(x) = sum_k w_k(x) (c_k - x) / s^2,   w_k(x) = softmax_k( -|x - c_k|^2 / (2 s^2) )    (3)

    ``x (B, D)``, ``centers (K, D)`` -> ``(B, D)``. The weights are a softmax, so far-away points do not overflow.
    With the ring's ``data.RING_CENTERS`` and ``data.RING_STD`` it is the score of the noised 8-Gaussians ring.
    """
    x, centers = torch.as_tensor(x), torch.as_tensor(centers, dtype=torch.as_tensor(x).dtype)
    if x.dim() != 2 or centers.dim() != 2 or x.shape[1] != centers.shape[1]:
        raise ValueError(f"x must be (B, D) and centers (K, D) with the same D, got {tuple(x.shape)} and "
                         f"{tuple(centers.shape)}")
    if std < 0 or sigma < 0 or std == sigma == 0:
        raise ValueError(f"std and sigma must be >= 0 and not both 0, got {std} and {sigma}")
    s2 = std ** 2 + sigma ** 2
    diff = centers[None, :, :] - x[:, None, :]                      # (B, K, D)
    w = torch.softmax(-(diff ** 2).sum(-1) / (2 * s2), dim=1)       # (B, K)
    return (w[..., None] * diff).sum(1) / s2


def denoiser_score(denoiser, x_noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """The score read off a denoiser, eq. (2): ``(r(x~) - x~) / sigma^2`` -> same shape as ``x_noisy``.

    ``denoiser`` maps noisy points to estimates of the clean ones; ``sigma`` is the noise it was trained on.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    with torch.no_grad():
        return (denoiser(x_noisy) - x_noisy) / sigma ** 2


class Denoiser2D(nn.Module):
    """``r(x~) = x~ + net(x~)`` for 2D points: an MLP ``2 -> hidden -> hidden -> 2`` (SiLU) predicts the correction.

    Predicting the correction makes ``net`` itself the score estimate times ``sigma^2``, eq. (2).
    """

    def __init__(self, hidden: int = 128, dim: int = 2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, dim))

    def forward(self, x_noisy: torch.Tensor) -> torch.Tensor:
        return x_noisy + self.net(x_noisy)


def train_denoiser(points: torch.Tensor, sigma: float, *, steps: int = 1000, batch_size: int = 512,
                   hidden: int = 128, lr: float = 3e-3, seed: int = 0):
    """Train a :class:`Denoiser2D` on ``points (N, D)`` corrupted by ``x~ = x + sigma eps``: minimize the squared
    error ``|r(x~) - x|^2`` (summed over coordinates, averaged over a batch), a fresh batch and fresh noise at
    every step, Adam with a cosine-decayed learning rate -> ``(denoiser in eval mode, per-step losses)``."""
    points = torch.as_tensor(points, dtype=torch.float32)
    if points.dim() != 2 or len(points) == 0:
        raise ValueError(f"points must be a non-empty (N, D) tensor, got shape {tuple(points.shape)}")
    if not sigma > 0 or steps <= 0:
        raise ValueError(f"sigma and steps must be positive, got {sigma} and {steps}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Denoiser2D(hidden, points.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    losses = []
    for _ in range(steps):
        x = points[torch.randint(0, len(points), (batch_size,), generator=g)]
        x_noisy = x + sigma * torch.randn(x.shape, generator=g)
        loss = (model(x_noisy) - x).pow(2).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise RuntimeError(f"the denoiser's loss became {losses[-1]} at step {len(losses)}; lower lr")
    return model.eval(), losses


def train_autoencoder(model: Autoencoder, train_data, val_data=None, *, epochs: int = 100, lr: float = 2e-3,
                      batch_size: int = 128, patience: int | None = 15, seed: int = 0, desc: str = "autoencoder",
                      verbose: bool = True, select_on: str = "clean"):
    """Minimize the loss (1) with :func:`gencourse.train.fit`; early stopping on the validation loss.

    ``train_data``/``val_data``: an image dataset from :func:`gencourse.data.load` or a tensor of images.
    ``select_on="clean"`` (the default) early-stops on the loss of clean validation images, also for a denoising
    autoencoder; ``"corrupted"`` on what a denoising autoencoder is trained for: reconstructing the clean
    validation images from one fixed corrupted copy of them (drawn once with ``seed``).
    """
    from gencourse.train import adam, fit

    if select_on not in ("clean", "corrupted"):
        raise ValueError(f"select_on must be 'clean' or 'corrupted', got {select_on!r}")
    if select_on == "corrupted" and val_data is not None:
        if not model.denoising:
            raise ValueError("select_on='corrupted' needs a denoising autoencoder (noise_std > 0 or mask_prob > 0)")
        clean = (val_data.images if hasattr(val_data, "images") else val_data).to(model.code_mean.device)
        g = torch.Generator(device=clean.device).manual_seed(seed)
        noisy = corrupt(clean, noise_std=model.noise_std, mask_prob=model.mask_prob, generator=g)
        val_data = torch.utils.data.TensorDataset(clean, noisy)  # batches come as [clean, corrupted]
        train_data = train_data.images if hasattr(train_data, "images") else train_data  # batches: tensors

    def loss_fn(batch):
        if isinstance(batch, (tuple, list)) and select_on == "corrupted":
            return model.loss(batch[0], inputs=batch[1])
        return model.loss(batch[0] if isinstance(batch, (tuple, list)) else batch)

    return fit(model, loss_fn, train_data, val_data=val_data, epochs=epochs, lr=lr, batch_size=batch_size,
               optimizer=adam(model.parameters(), lr), patience=patience if val_data is not None else None, seed=seed,
               desc=desc, verbose=verbose)


def train_digits(*, epochs: int = 100, seed: int = 0, quick: bool = False, latent_dim: int = 2,
                 noise_std: float = 0.0, mask_prob: float = 0.0, device=None, verbose: bool = True):
    """The course's digits autoencoder -> ``(model, history)``: an :class:`MLPAutoencoder` trained on the train
    split, early-stopped on val, with its code Gaussian fitted to the training codes (so ``sample`` works).

    ``quick=True``: two epochs, for smoke tests. ``device``: where to train (default: the CPU). Returned in eval mode.
    """
    from gencourse.train import seed_everything

    seed_everything(seed)
    train, val = load("digits", "train"), load("digits", "val")
    model = MLPAutoencoder(train.shape, latent_dim=latent_dim, noise_std=noise_std, mask_prob=mask_prob)
    if device is not None:
        model.to(device)
    history = train_autoencoder(model, train, val, epochs=2 if quick else epochs, seed=seed,
                                desc=f"autoencoder (latent {latent_dim})", verbose=verbose)
    model.fit_code_distribution(train.images.to(model.code_mean.device))
    return model.eval(), history
