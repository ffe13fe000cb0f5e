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
(:meth:`Autoencoder.fit_code_distribution`), the best a plain autoencoder can do, and lesson 02 measures
how far that falls short.

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
        """``x (B, C, H, W)`` in [0, 1] -> codes ``z (B, latent_dim)``."""
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

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training loss (1), mean over the batch of the per-image sum over pixels (a scalar).

        In training mode a denoising autoencoder encodes a corrupted copy of ``x`` and is scored against ``x``.
        """
        self.check_images(x)
        inputs = corrupt(x, noise_std=self.noise_std, mask_prob=self.mask_prob) if self.training and self.denoising else x
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

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` random codes ``z = m + L eps``, ``eps ~ N(0, I)`` (``L L^T = S``, the fitted code Gaussian;
        ``N(0, I)`` before :meth:`fit_code_distribution`) -> images ``(n, C, H, W)`` in [0, 1], the decoder's output."""
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        eps = torch.randn(n, self.latent_dim, generator=generator, device=self.code_mean.device)
        was_training = self.training
        self.eval()
        images = self.decode(self.code_mean + eps @ self.code_scale_tril.T)
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


def train_autoencoder(model: Autoencoder, train_data, val_data=None, *, epochs: int = 100, lr: float = 2e-3,
                      batch_size: int = 128, patience: int | None = 15, seed: int = 0, desc: str = "autoencoder",
                      verbose: bool = True):
    """Minimize the loss (1) with :func:`gencourse.train.fit`; early stopping on the validation loss.

    ``train_data``/``val_data``: an image dataset from :func:`gencourse.data.load` or a tensor of images.
    The clean validation loss is used for early stopping, also for a denoising autoencoder.
    """
    from gencourse.train import adam, fit

    def loss_fn(batch):
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
