"""One evaluation protocol for every lesson: likelihood in bits per dimension, and sample quality.

    q = gencourse.metrics.sample_quality(samples)     # samples: (N, 1, 8, 8) in [0, 1]
    print(gencourse.metrics.format_quality(q))        # each figure with its 95% interval, beside real digits'

Sample quality is read off a small fixed classifier (:mod:`gencourse.classifier`) with 11 outputs, the
digits 0-9 and "not a digit". It was trained on the **train** split only, so the held-out digits are as new
to it as a model's samples. Those held-out digits play two roles (digits: 350 validation, 447 test):

- the **reference set** (the 447 test digits): set-level figures measure samples against it;
- the **real row** (the 350 validation digits): scored exactly like a model's samples, it is the yardstick
  every figure is printed next to (:func:`reference_quality`).

Per-image figures (averages over samples; they do not depend on how many samples were drawn):

- ``recognized``: share of samples whose most probable digit class has probability >= 0.9 (softmax over 11).
- ``classes_covered``: digit classes that are the top class of >= 5% of all samples (10 = full coverage).
- ``label_entropy``: entropy in nats of the predicted digit labels (``ln 10 = 2.303`` is uniform).
- ``memorization``: median L2 distance from a sample to its nearest training image, over the same median for
  the reference digits. About 1 = as far from the training set as unseen real digits; 0 = copies; above 1 =
  farther from the data than real digits are.

Set-level figures, in the classifier's 64 penultimate features, at **one fixed set size** ``N_set`` (digits
350): a larger sample set is scored as the mean over random subsets of that size (they may overlap), so the figures do not
drift with the number of samples, and the real row is computed at the same size.

- ``frechet``: Frechet distance between Gaussians fitted to samples and reference (the FID recipe). Biased
  upwards at small N: compare only at the same ``N_set``.
- ``precision``: share of samples inside the reference manifold, the union of balls around reference points
  with radius the distance to their 5th nearest reference neighbour (Kynkaanniemi et al. 2019).
- ``recall``: share of reference points whose ball holds at least one sample: the *coverage* of Naeem et al.
  (2020). It uses only the reference's radii, so noisy outlier samples cannot inflate it (the k-NN recall of
  Kynkaanniemi et al. can: an outlier's own radius is large).

Every figure carries a 95% bootstrap interval (resampling the samples; set-level figures within each subset),
``q["interval"][key] = (lo, hi)``. The reference set is the same for every model, so its own sampling noise
cancels in comparisons between models; :func:`differs` says whether two figures' intervals separate them.

A goal on sample quality always comes with the **memorization guard** (:func:`goal`): all 10 classes covered
and ``memorization >= 0.8``, so that no goal can be met by copying the training set, the practical ceiling
that :func:`copies_quality` shows.

MNIST and Fashion-MNIST use the same protocol (``N_set`` 1000; the classifier trains on first use on their
train split; reference = the first 2000 test images, real row = the first 1000 validation images), and
:func:`make_protocol` builds one from any images (e.g. the MNIST test set carved into train / real /
reference parts when the training files cannot be downloaded).

Everything here is deterministic: the classifier runs in eval mode and the subsets and bootstrap draws come
from a fixed seed.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from gencourse.classifier import (ASSET_PATH, NOT_A_DIGIT, NUM_DIGITS, DigitsClassifier, load_classifier_file,
                                  logits_and_features, save_classifier, train_classifier)

DATASETS = ("digits", "mnist", "fashion-mnist")
QUALITY_KEYS = ("recognized", "classes_covered", "label_entropy", "frechet", "precision", "recall", "memorization")
SET_LEVEL = ("frechet", "precision", "recall")
RECOGNIZED_THRESHOLD = 0.9
COVERAGE_SHARE = 0.05
PR_K = 5                  # neighbours that set a reference point's ball (Naeem et al.'s choice)
SET_SIZE = {"digits": 350, "mnist": 1000, "fashion-mnist": 1000}
BOOTSTRAP = 200           # resamples behind each 95% interval
MIN_SAMPLES = 10
RANGE_TOLERANCE = 1e-3
GUARD_MEMORIZATION = 0.8  # a sample-quality goal also needs memorization >= 0.8 and all 10 classes

# Which figures are better high and which low (for verdicts and the table's arrows).
HIGHER_IS_BETTER = {
    "recognized": True, "classes_covered": True, "label_entropy": True, "frechet": False,
    "precision": True, "recall": True, "memorization": True,
}

_CACHE: dict = {}


# ----------------------------------------------------------------------------------------------
# Likelihood and distances between distributions
# ----------------------------------------------------------------------------------------------

def bits_per_dim(nll_nats, num_dims: int):
    """Negative log-likelihood in nats per example -> bits per dimension: ``nll / (D ln 2)``.

    ``nll_nats``: a float or a tensor of any shape (e.g. ``(B,)``), ``-log p(x)`` in nats on the data's
    discrete scale; ``num_dims = D`` (64 for 8x8 digits). Returns the same type and shape.
    Example: the uniform model over 17 levels, ``64 ln 17`` nats, is ``log2 17 = 4.09`` bits/dim.
    """
    if isinstance(num_dims, bool) or not isinstance(num_dims, (int, np.integer, float)) or num_dims <= 0:
        raise ValueError(f"num_dims must be a positive number of dimensions (64 for 8x8 digits), got {num_dims!r}")
    if isinstance(nll_nats, torch.Tensor):
        return nll_nats / (num_dims * math.log(2.0))
    if isinstance(nll_nats, np.ndarray):
        return nll_nats / (num_dims * math.log(2.0))
    return float(nll_nats) / (num_dims * math.log(2.0))


def _as_feature_matrix(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2D array of features (N, D), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def frechet_distance(feats_a, feats_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``(N_a, D)`` and ``(N_b, D)``.

    With means ``mu`` and covariances ``S`` (unbiased, ``N - 1`` denominators), in float64:

        d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})

    the squared 2-Wasserstein distance between ``N(mu_a, S_a)`` and ``N(mu_b, S_b)`` (Dowson & Landau
    1982; the FID of Heusel et al. 2017 in other features). The matrix square root is
    ``scipy.linalg.sqrtm``, real part taken; if it is not finite, ``1e-6 I`` is added to both
    covariances (as pytorch-fid does). Returns a float >= 0; in 1D it is ``(mu_a - mu_b)^2 + (s_a - s_b)^2``.
    """
    from scipy import linalg

    a = _as_feature_matrix(feats_a, "feats_a")
    b = _as_feature_matrix(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: feats_a has D={a.shape[1]}, feats_b has D={b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each set needs at least 2 points to fit a covariance, got N_a={len(a)}, N_b={len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))
    s_b = np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s_a @ s_b)
        if not np.isfinite(covmean).all():
            offset = 1e-6 * np.eye(len(s_a))
            covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    covmean = np.real(covmean)
    d2 = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))
    return max(d2, 0.0)


def _kth_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``x: (N, D)`` to its k-th nearest *other* row -> ``(N,)``."""
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # the smallest distance (k=0) is the point itself


def manifold_precision_recall(real_feats, fake_feats, k: int = PR_K) -> tuple:
    """k-NN manifold precision and recall (Kynkaenniemi et al. 2019) -> ``(precision, recall)`` floats.

    ``real_feats: (M, D)``, ``fake_feats: (N, D)``. Each set's manifold is the union of balls around its
    points, of radius the distance to the point's k-th nearest neighbour within the set:

        precision = 1/N sum_j 1[ exists i: ||f_j - r_i|| <= NN_k(r_i) ]   (samples on the real manifold)
        recall    = 1/M sum_i 1[ exists j: ||r_i - f_j|| <= NN_k(f_j) ]   (real points on the sample manifold)
    """
    real = torch.as_tensor(_as_feature_matrix(real_feats, "real_feats"))
    fake = torch.as_tensor(_as_feature_matrix(fake_feats, "fake_feats"))
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real D={real.shape[1]}, fake D={fake.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"each set needs more than k={k} points, got {len(real)} real and {len(fake)} fake")
    r_real = _kth_neighbour_radii(real, k)  # (M,)
    r_fake = _kth_neighbour_radii(fake, k)  # (N,)
    d = torch.cdist(fake, real)  # (N, M)
    precision = (d <= r_real[None, :]).any(dim=1).double().mean().item()
    recall = (d <= r_fake[:, None]).any(dim=0).double().mean().item()
    return precision, recall


def precision_coverage(real_feats, fake_feats, k: int = PR_K) -> tuple:
    """Precision and coverage against the real manifold -> ``(precision, coverage)`` floats.

    ``real_feats: (M, D)``, ``fake_feats: (N, D)``; ``B_i`` is the ball around real point ``r_i`` with radius
    the distance to its k-th nearest other real point:

        precision = 1/N sum_j 1[ exists i: f_j in B_i ]   (Kynkaenniemi et al. 2019: samples on the real manifold)
        coverage  = 1/M sum_i 1[ exists j: f_j in B_i ]   (Naeem et al. 2020: real points with a sample nearby)

    Only the real set's radii enter, so far-off samples add nothing to either figure.
    """
    real = torch.as_tensor(_as_feature_matrix(real_feats, "real_feats"))
    fake = torch.as_tensor(_as_feature_matrix(fake_feats, "fake_feats"))
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real D={real.shape[1]}, fake D={fake.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or len(real) <= k:
        raise ValueError(f"k must be a positive integer below the number of real points ({len(real)}), got {k!r}")
    inside = torch.cdist(fake, real) <= _kth_neighbour_radii(real, k)[None, :]  # (N, M)
    return inside.any(1).double().mean().item(), inside.any(0).double().mean().item()


def _frechet_to(mu_ref: torch.Tensor, root_ref: torch.Tensor, tr_ref: float,
                x: torch.Tensor) -> torch.Tensor:
    """:func:`frechet_distance` of each set ``x: (B, n, D)`` against a fixed reference -> ``(B,)``.

    Batched with ``Tr (S_a S_b)^{1/2} = sum_i sqrt(lambda_i(R S_a R))``, ``R = S_b^{1/2}``, whose eigenvalues
    are those of ``S_a S_b``: the same figure as the scipy ``sqrtm`` of :func:`frechet_distance`.
    """
    mu = x.mean(1)
    xc = x - mu[:, None, :]
    cov = xc.transpose(1, 2) @ xc / (x.shape[1] - 1)
    eig = torch.linalg.eigvalsh(root_ref @ cov @ root_ref).clamp_min(0)
    d2 = ((mu - mu_ref) ** 2).sum(1) + cov.diagonal(dim1=1, dim2=2).sum(1) + tr_ref - 2 * eig.sqrt().sum(1)
    return d2.clamp_min(0)


# ----------------------------------------------------------------------------------------------
# The protocol: classifier, training images, reference set and real row of one dataset
# ----------------------------------------------------------------------------------------------

@dataclass
class Protocol:
    """Everything sample quality is measured with, for one dataset.

    ``classifier``: the frozen :class:`~gencourse.classifier.DigitsClassifier` (trained on ``train`` only).
    ``train: (T, 1, S, S)``: the training images (for ``memorization``). ``reference: (M, 1, S, S)``: the
    held-out images samples are measured against. ``real: (R, 1, S, S)``: other held-out images, the real
    row. ``set_size``: ``N_set`` of the set-level figures. ``description``: which images play which role.
    """

    dataset: str
    classifier: DigitsClassifier
    train: torch.Tensor
    reference: torch.Tensor
    real: torch.Tensor
    set_size: int
    description: str = ""
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        feats = logits_and_features(self.classifier, self.reference)[1].double()
        self._ref_feats = feats
        self._ref_radii = _kth_neighbour_radii(feats, PR_K)
        self._ref_mu = feats.mean(0)
        self._ref_cov = torch.cov(feats.T)
        w, v = torch.linalg.eigh(self._ref_cov)
        self._ref_root = (v * w.clamp_min(0).sqrt()) @ v.T
        self._ref_trace = self._ref_cov.diagonal().sum().item()
        self._train_flat = self.train.reshape(len(self.train), -1)
        ref_nn = _nearest_distance(self.reference.reshape(len(self.reference), -1), self._train_flat)
        self._memorization_scale = ref_nn.median().item()

    def _frechet(self, x: torch.Tensor) -> torch.Tensor:
        return _frechet_to(self._ref_mu, self._ref_root, self._ref_trace, x)

    @property
    def image_size(self) -> int:
        return self.train.shape[-1]

    def memorization(self, x: torch.Tensor) -> float:
        d = _nearest_distance(x.reshape(len(x), -1), self._train_flat)
        return d.median().item() / self._memorization_scale

    def sample_quality(self, images, *, set_size: int | None = None, bootstrap: int = BOOTSTRAP) -> dict:
        """The protocol's figures for ``images`` -> dict; see :func:`sample_quality`."""
        x = _check_images(images, self.dataset, size=self.image_size)
        n = len(x)
        n_set = min(n, set_size or self.set_size, len(self.real))  # the real row can always be had at n_set
        if set_size is not None and (set_size < MIN_SAMPLES or set_size > n):
            raise ValueError(f"set_size must lie between {MIN_SAMPLES} and the number of images ({n}), got {set_size}")
        gen = torch.Generator().manual_seed(0)
        logits, feats = logits_and_features(self.classifier, x)
        probs = logits.softmax(1)
        confident = probs[:, :NUM_DIGITS].max(1).values >= RECOGNIZED_THRESHOLD  # (N,)
        top = probs.argmax(1)  # (N,) in 0..10
        nearest = _nearest_distance(x.reshape(n, -1), self._train_flat)  # (N,)

        # per-image figures, on all N images and on B bootstrap resamples of them
        idx = torch.cat([torch.arange(n)[None], torch.randint(0, n, (bootstrap, n), generator=gen)])  # (1+B, N)
        per_image = {
            "recognized": confident[idx].double().mean(1),
            "memorization": nearest[idx].median(1).values / self._memorization_scale,
        }
        counts = torch.nn.functional.one_hot(top[idx], NUM_DIGITS + 1)[..., :NUM_DIGITS].sum(1).double()  # (1+B, 10)
        per_image["classes_covered"] = (counts >= COVERAGE_SHARE * n).sum(1).double()
        h = counts / counts.sum(1, keepdim=True).clamp_min(1)
        per_image["label_entropy"] = -(h * h.clamp_min(1e-300).log()).sum(1) + 0.0

        # set-level figures at n_set images: the mean over random subsets of that size (all N images take
        # part; one subset when N = n_set). Their uncertainty comes from random half-subsets drawn without
        # replacement: for a mean-like figure the spread of a half-sample figure equals the sampling spread of
        # the whole set's (variance sigma^2/m (1 - m/n) at m = n/2 is sigma^2/n), and averaging subsets of N
        # images shrinks it by sqrt(n_set / N). A bootstrap with replacement would not do: repeated images
        # shrink k-NN balls and covariances, which shifts these figures instead of spreading them.
        n_subsets = 1 if n == n_set else min(10, 2 * math.ceil(n / n_set))
        subsets = [torch.randperm(n, generator=gen)[:n_set] for _ in range(n_subsets)]
        per_set = {k: [] for k in SET_LEVEL}
        spread = {}
        for i, sub in enumerate(subsets):
            f = feats[sub].double()
            inside = torch.cdist(f, self._ref_feats) <= self._ref_radii[None, :]  # (n_set, M)
            per_set["precision"].append(inside.any(1).double().mean().item())
            per_set["recall"].append(inside.any(0).double().mean().item())
            per_set["frechet"].append(self._frechet(f[None]).item())
            if i == 0:
                halves = torch.argsort(torch.rand(bootstrap, n_set, generator=gen), dim=1)[:, :n_set // 2]
                recall_h = torch.cat([inside[halves[c:c + 25]].any(1).double().mean(1)  # small memory at MNIST sizes
                                      for c in range(0, bootstrap, 25)])
                spread = {"precision": inside.any(1).double()[halves].mean(1).std().item(),
                          "recall": recall_h.std().item(), "frechet": self._frechet(f[halves]).std().item()}
        shrink = math.sqrt(n_set / n)

        q, interval = {}, {}
        levels = torch.tensor([0.025, 0.975], dtype=torch.float64)
        for key in QUALITY_KEYS:
            if key in per_image:  # percentile bootstrap interval
                values = per_image[key]
                lo, hi = torch.quantile(values[1:].double(), levels).tolist()
            else:  # value +- 1.96 x the half-sample spread
                values = torch.tensor([sum(per_set[key]) / n_subsets])
                lo, hi = values[0].item() - 1.96 * spread[key] * shrink, values[0].item() + 1.96 * spread[key] * shrink
            q[key] = int(values[0].item()) if key == "classes_covered" else float(values[0].item())
            interval[key] = (lo, hi)
        q.update(n=n, set_size=n_set, subsets=n_subsets, interval=interval)
        return q

    def reference_quality(self, set_size: int | None = None) -> dict:
        """The real row at set size ``set_size`` (default ``N_set``), cached."""
        s = min(set_size or self.set_size, len(self.real))
        if s not in self._cache:
            self._cache[s] = self.sample_quality(self.real, set_size=s)
        return _copy(self._cache[s])


def make_protocol(dataset: str, *, train_images, train_labels, reference, real, set_size: int | None = None,
                  classifier: DigitsClassifier | None = None, seed: int = 0, epochs: int | None = None,
                  description: str = "") -> Protocol:
    """A :class:`Protocol` from given images: trains the classifier on ``train_images`` / ``train_labels``
    unless one is given. ``reference`` and ``real`` must be held out from the training images."""
    _check_dataset(dataset)
    if classifier is None:
        classifier = train_classifier(train_images, train_labels, levels=_levels(dataset), seed=seed, epochs=epochs)
    return Protocol(dataset, classifier, torch.as_tensor(train_images).float(), torch.as_tensor(reference).float(),
                    torch.as_tensor(real).float(), set_size or SET_SIZE[dataset], description)


def protocol(dataset: str = "digits") -> Protocol:
    """The course's protocol for ``dataset`` (built once, cached).

    digits: the shipped classifier (trained on the 1000 training digits), reference = the 447 test digits,
    real row = the 350 validation digits, ``N_set = 350``. MNIST / Fashion-MNIST: the classifier trained on
    first use on the train split (cached under ``gencourse.data.data_root()``), reference = the first 2000
    test images, real row = the first 1000 validation images, ``N_set = 1000``.
    """
    _check_dataset(dataset)
    key = ("protocol", dataset)
    if key not in _CACHE:
        from gencourse.data import load

        train, val, test = (load(dataset, s) for s in ("train", "val", "test"))
        n_ref, n_real = (len(test), len(val)) if dataset == "digits" else (2000, 1000)
        _CACHE[key] = Protocol(
            dataset, load_classifier(dataset), train.images, test.images[:n_ref], val.images[:n_real],
            SET_SIZE[dataset],
            f"classifier trained on the {len(train)} {dataset} training images; reference = {n_ref} test images; "
            f"real row = {n_real} validation images")
    return _CACHE[key]


# ----------------------------------------------------------------------------------------------
# The classifier for each dataset
# ----------------------------------------------------------------------------------------------

def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} for sample quality; choose one of {', '.join(DATASETS)}")


def _levels(dataset: str) -> int:
    from gencourse.data import LEVELS

    return LEVELS[dataset]


def classifier_path(dataset: str = "digits"):
    """Where the classifier for ``dataset`` lives: inside the package for digits, under the data root otherwise."""
    _check_dataset(dataset)
    if dataset == "digits":
        return ASSET_PATH
    from gencourse.data import data_root

    return data_root() / "classifiers" / f"{dataset}_classifier.pt"


def load_classifier(dataset: str = "digits") -> DigitsClassifier:
    """The sample-quality classifier for ``dataset``, loaded once and cached (eval mode).

    Digits: the weights shipped in ``gencourse/assets/digits_classifier.pt``. MNIST / Fashion-MNIST: trained
    on first use on their train split (never val or test) and cached under ``data_root() / "classifiers"``.
    """
    _check_dataset(dataset)
    key = ("classifier", dataset)
    if key not in _CACHE:
        path = classifier_path(dataset)
        if not path.exists():
            if dataset == "digits":
                raise FileNotFoundError(
                    f"the digits classifier {path} is missing from the package; rebuild it with "
                    f"`python tools/train_digits_classifier.py`")
            from gencourse.data import load

            train = load(dataset, "train")
            model = train_classifier(train.images, train.labels, levels=_levels(dataset), seed=0)
            save_classifier(model, path, {**model.meta, "dataset": dataset, "split": "train"})
        _CACHE[key] = load_classifier_file(path)
    return _CACHE[key]


def classifier_accuracy(model: DigitsClassifier | None = None, dataset: str = "digits", split: str = "test") -> float:
    """10-way accuracy of the classifier over the digit classes on a split."""
    from gencourse.classifier import accuracy
    from gencourse.data import load

    ds = load(dataset, split)
    return accuracy(model if model is not None else load_classifier(dataset), ds.images, ds.labels)


# ----------------------------------------------------------------------------------------------
# Sample quality
# ----------------------------------------------------------------------------------------------

def _check_images(images, dataset: str, name: str = "images", size: int | None = None) -> torch.Tensor:
    """Accept ``(N, 1, S, S)``, ``(N, S, S)`` or ``(N, S*S)`` in [0, 1] -> float32 ``(N, 1, S, S)`` on the CPU."""
    if hasattr(images, "images") and not isinstance(images, torch.Tensor):
        images = images.images  # an ImageDataset
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a tensor or array of images, got {type(images).__name__}")
    x = images.detach().to("cpu", torch.float32)
    s = size or (8 if dataset == "digits" else 28)
    n = x.shape[0] if x.dim() > 0 else 0
    if x.dim() == 2 and x.shape[1] == s * s or x.dim() == 3 and tuple(x.shape[1:]) == (s, s) or \
            x.dim() == 4 and tuple(x.shape[1:]) == (1, s, s):
        x = x.reshape(n, 1, s, s)
    else:
        raise ValueError(f"{name} for {dataset!r} must have shape (N, 1, {s}, {s}), (N, {s}, {s}) or "
                         f"(N, {s * s}), got {tuple(x.shape)}")
    if n < MIN_SAMPLES:
        raise ValueError(f"{name}: sample quality needs at least {MIN_SAMPLES} images, got {n}")
    if torch.isnan(x).any() or torch.isinf(x).any():
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = x.min().item(), x.max().item()
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise ValueError(f"{name} must lie in [0, 1] like the data, got range [{lo:.3g}, {hi:.3g}] "
                         f"(map [-1, 1] outputs with (x + 1) / 2, integer levels k with k / (levels - 1))")
    return x.clamp(0, 1)


def _nearest_distance(x: torch.Tensor, ref: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """L2 distance from each row of ``x: (N, D)`` to its nearest row of ``ref: (M, D)`` -> ``(N,)``."""
    x, ref = x.double(), ref.double()
    ref_sq = (ref ** 2).sum(1)
    out = []
    for i in range(0, len(x), chunk):
        xi = x[i:i + chunk]
        d2 = (xi ** 2).sum(1, keepdim=True) - 2 * xi @ ref.T + ref_sq[None, :]
        out.append(d2.clamp_min(0).min(1).values.sqrt())
    return torch.cat(out)


def _copy(q: dict) -> dict:
    return {**q, "interval": dict(q["interval"])} if "interval" in q else dict(q)


def memorization(images, dataset: str = "digits") -> float:
    """``median_i min_j ||x_i - t_j||_2 / median_k min_j ||s_k - t_j||_2`` over samples ``x``, training
    images ``t`` and reference images ``s`` (pixels in [0, 1]). About 1 = as far from the training set as
    unseen real digits; 0 = copies of training images."""
    _check_dataset(dataset)
    return protocol(dataset).memorization(_check_images(images, dataset))


def classify(images, dataset: str = "digits") -> torch.Tensor:
    """Class probabilities ``(N, 11)`` (digits 0-9, then "not a digit") of images ``(N, 1, S, S)``."""
    _check_dataset(dataset)
    x = _check_images(images, dataset)
    logits, _ = logits_and_features(load_classifier(dataset), x)
    return logits.softmax(1)


def sample_quality(images, dataset: str = "digits", *, set_size: int | None = None) -> dict:
    """Sample-quality figures of generated ``images`` (the course's evaluation protocol) -> dict.

    ``images``: ``(N, 1, S, S)`` (also ``(N, S, S)`` or ``(N, S*S)``) in ``[0, 1]``, ``N >= 10``; ``S = 8``
    for ``"digits"``, 28 for MNIST / Fashion-MNIST. ``set_size``: ``N_set`` of the set-level figures
    (default: the dataset's, 350 for digits, or ``N`` if fewer images are given).

    With ``p = softmax(classifier(x))`` over 11 classes (class 10 = "not a digit"), ``c(x) = argmax_c p_c(x)``
    and the reference set ``R`` (held-out real images):

    - ``recognized``      = mean_x 1[max_{c<10} p_c(x) >= 0.9]
    - ``classes_covered`` = #{digits c : mean_x 1[c(x) = c] >= 0.05}
    - ``label_entropy``   = -sum_c h_c ln h_c, h the histogram of c(x) over samples with c(x) < 10
    - ``frechet``         = :func:`frechet_distance` of classifier features, samples vs ``R``
    - ``precision``, ``recall`` = :func:`precision_coverage` (k = 5) against ``R`` (recall = coverage)
    - ``memorization``    = :func:`memorization`

    ``frechet``, ``precision`` and ``recall`` are means over ``min(10, 2 * ceil(N / N_set))`` random subsets
    of ``N_set`` samples (one subset, all samples, when ``N = N_set``); each subset is drawn without
    replacement, independently of the others, so subsets may overlap. Extra keys: ``n``, ``set_size``,
    ``subsets`` and ``interval``, ``{key: (lo, hi)}``, a 95% interval for each figure: a percentile
    bootstrap for the per-image figures, and for the set-level ones the value +- 1.96 x the spread over random
    half-subsets of the first subset, scaled by ``sqrt(N_set / N)``. Deterministic. Print with
    :func:`format_quality`.
    """
    _check_dataset(dataset)
    return protocol(dataset).sample_quality(images, set_size=set_size)


def reference_quality(dataset: str = "digits", set_size: int | None = None) -> dict:
    """What real held-out images score, computed exactly like :func:`sample_quality` (cached).

    The real row: the validation images (digits: 350) scored as samples against the reference set (the test
    images), at set size ``set_size`` (default the dataset's ``N_set``; pass a model's ``q["set_size"]``
    to compare a smaller sample set at its own size).
    """
    _check_dataset(dataset)
    return protocol(dataset).reference_quality(set_size)


def copies_quality(dataset: str = "digits", n: int | None = None) -> dict:
    """The practical ceiling: ``n`` training images (default ``N_set``) scored as if they were samples.

    A model that copied its training set would score this: everything at or above real images, but
    ``memorization`` 0. It is why every sample-quality goal comes with the memorization guard (:func:`goal`).
    """
    p = protocol(dataset)
    key = ("copies", n)
    if key not in p._cache:
        p._cache[key] = p.sample_quality(p.train[:n or p.set_size])
    return _copy(p._cache[key])


def derangement(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random pairing ``partner (n,)`` int64 with ``partner[i] != i`` for every ``i``: one random cycle through
    all ``n`` indices (``n >= 2``)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer of at least 2 (an image needs another to pair with), got {n!r}")
    order = torch.randperm(n, generator=generator)
    partner = torch.empty(n, dtype=torch.long)
    partner[order] = order.roll(-1)
    return partner


def chimeras(images: torch.Tensor, *, generator: torch.Generator | None = None,
             partner: torch.Tensor | None = None) -> torch.Tensor:
    """A control for ``recognized``: the top half of each real image over the bottom half of another.

    ``images: (N, 1, S, S)`` real images, ``N >= 2``; ``partner (N,)``: whose bottom half each one gets (default
    :func:`derangement`, so never its own). Returns ``(N, 1, S, S)``, rows ``< S // 2`` from ``images`` and the
    rest from ``images[partner]``. The classifier never saw such images as "not a digit", and it recognizes many of
    them: a model whose samples are recognized no more often than chimeras has drawn digit-like strokes, and the
    figure cannot tell whether they are digits.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be a (N, C, S, S) tensor of real images, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    n, half = len(images), images.shape[2] // 2
    partner = derangement(n, generator) if partner is None else partner
    if not isinstance(partner, torch.Tensor) or partner.shape != (n,) or partner.dtype != torch.long:
        raise ValueError(f"partner must be an int64 tensor of shape ({n},), one index per image; got "
                         f"{tuple(partner.shape) if isinstance(partner, torch.Tensor) else type(partner).__name__}")
    return torch.cat([images[:, :, :half], images[partner][:, :, half:]], dim=2)


# ----------------------------------------------------------------------------------------------
# Tables and verdicts
# ----------------------------------------------------------------------------------------------

def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if key == "classes_covered":
        return f"{int(v)}"
    return f"{v:.1f}" if key == "frechet" else f"{v:.3f}"


def _fmt_with_interval(key: str, q: dict) -> str:
    text = _fmt(key, q.get(key))
    iv = q.get("interval", {}).get(key)
    if iv is None or key == "classes_covered":
        if iv is not None and iv[0] != iv[1]:
            return f"{text} ({int(iv[0])}-{int(iv[1])})"
        return text
    half = max(q[key] - iv[0], iv[1] - q[key])
    return f"{text}±{_fmt(key, half).lstrip('0') if key != 'frechet' else f'{half:.1f}'}"


def _is_quality(d) -> bool:
    return isinstance(d, dict) and all(k in d for k in QUALITY_KEYS)


def format_quality(q: dict, reference: dict | bool | None = None, *, dataset: str = "digits",
                   title: str = "samples") -> str:
    """A small text table of :func:`sample_quality` figures with their 95% intervals, beside real images'.

    ``q``: one dict from :func:`sample_quality` (its column is headed ``title``), or a dict of such dicts,
    ``{name: quality}``, one column each. ``reference``: the real row (default: :func:`reference_quality`
    at the set size of the first column), shown as the last column, "real"; ``False`` leaves it out.
    ``0.853±.021`` reads "0.853, 95% interval within 0.021 of it"; ``10 (9-10)`` gives the interval of a count.
    """
    if _is_quality(q):
        columns = {title: q}
    elif isinstance(q, dict) and q and all(_is_quality(v) for v in q.values()):
        columns = dict(q)
    else:
        raise ValueError(f"q must be a dict from sample_quality (keys {', '.join(QUALITY_KEYS)}) "
                         f"or a dict of such dicts, one per column")
    if reference is None or reference is True:
        first = next(iter(columns.values()))
        reference = reference_quality(dataset, first.get("set_size"))
    if reference:
        if not _is_quality(reference):
            raise ValueError("reference must be a dict from sample_quality / reference_quality, or False")
        columns["real"] = reference
    cells = {name: [_fmt_with_interval(k, c) for k in QUALITY_KEYS] for name, c in columns.items()}
    widths = [max(12, len(str(name)) + 2, *(len(v) + 2 for v in cells[name])) for name in columns]
    lines = [f"{'metric':<16}" + "".join(f"{str(n):>{w}}" for n, w in zip(columns, widths)) + "   better"]
    for i, k in enumerate(QUALITY_KEYS):
        row = f"{k:<16}" + "".join(f"{cells[name][i]:>{w}}" for name, w in zip(columns, widths))
        better = {"memorization": "~1 (0 = copies)", "classes_covered": "higher (max 10)",
                  "recall": "higher (coverage)"}.get(k, "higher" if HIGHER_IS_BETTER[k] else "lower")
        lines.append(row + "   " + better)
    sizes = sorted({c.get("set_size") for c in columns.values() if c.get("set_size")})
    if sizes:
        lines.append(f"(frechet, precision, recall at N_set = {', '.join(map(str, sizes))}; ± = 95% interval)")
    return "\n".join(lines)


class Verdict:
    """A pass/fail line: ``bool(v)`` is the verdict, ``str(v)`` the printed line."""

    def __init__(self, passed: bool, text: str):
        self.passed, self.text = bool(passed), text

    def __bool__(self):
        return self.passed

    def __str__(self):
        return self.text

    __repr__ = __str__


def compare_to_real(q: dict, key: str, factor: float, reference: dict | None = None, *,
                    dataset: str = "digits") -> Verdict:
    """Verdict on one figure relative to real images', e.g. ``PASS recognized >= 0.85 x real``.

    The line holds no measured number, so it reads the same on every machine (nbval compares it). The
    real row is taken at ``q``'s set size. Higher-is-better figures pass with ``q[key] >= factor * real``;
    ``frechet`` with ``q[key] <= factor * real``. For a sample-quality *goal* use :func:`goal`.
    """
    if key not in QUALITY_KEYS:
        raise ValueError(f"unknown figure {key!r}; choose one of {', '.join(QUALITY_KEYS)}")
    reference = reference if reference is not None else reference_quality(dataset, q.get("set_size"))
    value, real = float(q[key]), float(reference[key])
    if HIGHER_IS_BETTER[key]:
        passed, op = value >= factor * real, ">="
    else:
        passed, op = value <= factor * real, "<="
    return Verdict(passed, f"{'PASS' if passed else 'FAIL'} {key} {op} {factor:g} x real")


def goal(q: dict, key: str, factor: float, reference: dict | None = None, *, dataset: str = "digits") -> Verdict:
    """A sample-quality goal with the memorization guard: :func:`compare_to_real` **and** all 10 classes
    covered **and** ``memorization >= 0.8``, so that copying the training set cannot meet it.
    E.g. ``PASS recognized >= 0.9 x real (guard: 10 classes, memorization >= 0.8)``."""
    v = compare_to_real(q, key, factor, reference, dataset=dataset)
    guard = q["classes_covered"] == NUM_DIGITS and q["memorization"] >= GUARD_MEMORIZATION
    passed = bool(v) and guard
    why = "" if guard else (" [guard fails: " + ", ".join(
        ([f"{q['classes_covered']} classes"] if q["classes_covered"] != NUM_DIGITS else []) +
        (["memorization < 0.8"] if q["memorization"] < GUARD_MEMORIZATION else [])) + "]")
    text = f"{'PASS' if passed else 'FAIL'} {v.text.split(' ', 1)[1]} (guard: 10 classes, memorization >= 0.8){why}"
    return Verdict(passed, text)


def differs(a: dict, b: dict, key: str) -> bool:
    """Whether figure ``key`` separates two sample sets: their 95% intervals do not overlap."""
    (lo_a, hi_a), (lo_b, hi_b) = a["interval"][key], b["interval"][key]
    return hi_a < lo_b or hi_b < lo_a


def beats(a: dict, b: dict, key: str) -> bool:
    """Whether sample set ``a`` is better than ``b`` on figure ``key`` beyond noise: better in the figure's
    direction (:data:`HIGHER_IS_BETTER`) and the 95% intervals separate (:func:`differs`)."""
    better = a[key] > b[key] if HIGHER_IS_BETTER[key] else a[key] < b[key]
    return better and differs(a, b, key)
