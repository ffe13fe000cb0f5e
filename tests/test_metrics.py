"""Unit tests of gencourse.metrics, checked against independent computations and closed forms."""
import math

import numpy as np
import pytest
import torch

from gencourse import metrics
from gencourse.data import ImageDataset, load


# ----------------------------------------------------------------------------------------------
# Helpers: independent computations
# ----------------------------------------------------------------------------------------------

def _sqrtm_psd(a):
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _gaussian_w2(m1, s1, m2, s2):
    """Closed form: ||m1 - m2||^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)."""
    r1 = _sqrtm_psd(s1)
    cross = _sqrtm_psd(r1 @ s2 @ r1)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


def _brute_precision_recall(real, fake, k):
    """Kynkaenniemi et al.'s definition with explicit loops."""
    def radii(x):
        out = []
        for i in range(len(x)):
            d = sorted(np.linalg.norm(x - x[i], axis=1))
            out.append(d[k])  # d[0] = 0 is the point itself
        return np.array(out)

    rr, rf = radii(real), radii(fake)
    prec = np.mean([any(np.linalg.norm(f - real[i]) <= rr[i] for i in range(len(real))) for f in fake])
    rec = np.mean([any(np.linalg.norm(r - fake[j]) <= rf[j] for j in range(len(fake))) for r in real])
    return prec, rec


@pytest.fixture(scope="module")
def digits():
    return {split: load("digits", split) for split in ("train", "val", "test")}


def _pixel_independent(train_images, n, seed=0):
    """Samples of the per-pixel-independent model: each pixel from its empirical marginal."""
    g = torch.Generator().manual_seed(seed)
    flat = train_images.reshape(len(train_images), -1)
    idx = torch.randint(0, len(flat), (n, flat.shape[1]), generator=g)
    return flat[idx, torch.arange(flat.shape[1])].reshape(n, 1, 8, 8)


# ----------------------------------------------------------------------------------------------
# bits per dimension
# ----------------------------------------------------------------------------------------------

def test_bits_per_dim_closed_form():
    # the uniform model over 17 levels: 64 ln 17 nats per image = log2(17) bits per dimension
    assert metrics.bits_per_dim(64 * math.log(17), 64) == pytest.approx(math.log2(17), rel=1e-12)
    assert metrics.bits_per_dim(106.3, 64) == pytest.approx(106.3 / (64 * math.log(2)), rel=1e-12)
    nll = torch.tensor([[math.log(2) * 64, 0.0], [2 * math.log(2) * 64, 3.0]])
    out = metrics.bits_per_dim(nll, 64)
    assert isinstance(out, torch.Tensor) and out.shape == nll.shape
    assert torch.allclose(out, torch.tensor([[1.0, 0.0], [2.0, 3.0 / (64 * math.log(2))]]))


@pytest.mark.parametrize("bad", [0, -3])
def test_bits_per_dim_rejects_nonpositive_dims(bad):
    with pytest.raises(ValueError):
        metrics.bits_per_dim(10.0, bad)


# ----------------------------------------------------------------------------------------------
# Frechet distance
# ----------------------------------------------------------------------------------------------

def test_frechet_1d_exact_on_sample_moments():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, size=(500, 1)), rng.normal(-0.5, 0.5, size=(300, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_1d_large_samples_match_the_gaussians():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 2.0, size=(200_000, 1)), rng.normal(-0.5, 0.5, size=(200_000, 1))
    assert metrics.frechet_distance(a, b) == pytest.approx(1.5 ** 2 + 1.5 ** 2, abs=0.03)


def test_frechet_multivariate_closed_form():
    rng = np.random.default_rng(2)
    d = 4
    l1, l2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = l1 @ l1.T + 0.5 * np.eye(d), l2 @ l2.T + 0.2 * np.eye(d)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    a = rng.multivariate_normal(m1, s1, size=100_000)
    b = rng.multivariate_normal(m2, s2, size=100_000)
    got = metrics.frechet_distance(torch.as_tensor(a, dtype=torch.float32), b)
    # against the population values (sampling error only)...
    assert got == pytest.approx(_gaussian_w2(m1, s1, m2, s2), rel=0.03)
    # ... and exactly against the closed form on the sample moments (symmetric square roots by eigh)
    exact = _gaussian_w2(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert metrics.frechet_distance(a, b) == pytest.approx(exact, rel=1e-6)


def test_frechet_diagonal_covariances():
    # commuting covariances: sum_i (sqrt(a_i) - sqrt(b_i))^2 plus the mean term
    rng = np.random.default_rng(3)
    a = rng.normal(size=(50_000, 3)) * np.sqrt([1.0, 4.0, 9.0])
    b = rng.normal(size=(50_000, 3)) * np.sqrt([4.0, 1.0, 9.0]) + [1.0, 0.0, 0.0]
    expected = 1.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.05)


def test_frechet_zero_for_identical_sets():
    x = np.random.default_rng(4).normal(size=(300, 16))
    assert metrics.frechet_distance(x, x.copy()) == pytest.approx(0.0, abs=1e-6)


def test_frechet_bad_input():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="dimension"):
        metrics.frechet_distance(x, np.zeros((10, 4)))
    with pytest.raises(ValueError, match="2"):
        metrics.frechet_distance(x[:1], x)
    with pytest.raises(ValueError):
        metrics.frechet_distance(np.zeros(10), x)
    with pytest.raises(ValueError):
        metrics.frechet_distance(np.full((10, 3), np.nan), x)


# ----------------------------------------------------------------------------------------------
# Manifold precision and recall
# ----------------------------------------------------------------------------------------------

def test_precision_recall_same_set_and_disjoint_sets():
    x = np.random.default_rng(5).normal(size=(200, 8))
    assert metrics.manifold_precision_recall(x, x) == (1.0, 1.0)
    assert metrics.manifold_precision_recall(x, x + 100.0) == (0.0, 0.0)


def test_precision_recall_against_brute_force():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(60, 3))
    fake = np.concatenate([rng.normal(size=(30, 3)), rng.normal(size=(20, 3)) * 0.3 + 4.0])
    for k in (1, 3, 5):
        got = metrics.manifold_precision_recall(real, fake, k=k)
        assert got == pytest.approx(_brute_precision_recall(real, fake, k), abs=1e-12)


def test_precision_recall_separates_quality_from_coverage():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(400, 2))
    collapsed = real[real[:, 0] > 0.5][:100] + 0.01 * rng.normal(size=(100, 2))  # good but one region only
    p, r = metrics.manifold_precision_recall(real, collapsed)
    assert p > 0.9 and r < 0.5


def test_precision_recall_bad_input():
    with pytest.raises(ValueError):
        metrics.manifold_precision_recall(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError):
        metrics.manifold_precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)


# ----------------------------------------------------------------------------------------------
# Precision and coverage (the protocol's precision / recall)
# ----------------------------------------------------------------------------------------------

def _brute_precision_coverage(real, fake, k):
    """Precision (Kynkaenniemi) and coverage (Naeem) with explicit loops over the real balls."""
    radii = [sorted(np.linalg.norm(real - r, axis=1))[k] for r in real]
    inside = [[np.linalg.norm(f - r) <= rad for r, rad in zip(real, radii)] for f in fake]
    return np.mean([any(row) for row in inside]), np.mean([any(col) for col in zip(*inside)])


def test_precision_coverage_against_brute_force():
    rng = np.random.default_rng(8)
    real = rng.normal(size=(50, 3))
    fake = np.concatenate([rng.normal(size=(25, 3)), rng.normal(size=(15, 3)) * 0.3 + 3.0])
    for k in (1, 3, 5):
        got = metrics.precision_coverage(real, fake, k=k)
        assert got == pytest.approx(_brute_precision_coverage(real, fake, k), abs=1e-12)


def test_coverage_is_not_inflated_by_outliers_unlike_knn_recall():
    rng = np.random.default_rng(9)
    real = rng.normal(size=(300, 2))
    good = rng.normal(size=(300, 2)) * 0.5  # the central part of the real mass
    angle, radius = rng.uniform(0, 2 * np.pi, 40), rng.uniform(5, 9, 40)
    outliers = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)  # sparse, off the data
    noisy = np.concatenate([good[:260], outliers])  # 40 of the samples replaced by outliers
    _, cov_good = metrics.precision_coverage(real, good)
    _, cov_noisy = metrics.precision_coverage(real, noisy)
    _, rec_good = metrics.manifold_precision_recall(real, good)
    _, rec_noisy = metrics.manifold_precision_recall(real, noisy)
    assert rec_noisy > rec_good + 0.05  # the outliers' large k-NN balls swallow real points
    assert cov_noisy <= cov_good  # coverage only counts samples inside real balls


# ----------------------------------------------------------------------------------------------
# The protocol: classifier, reference set, real row
# ----------------------------------------------------------------------------------------------

def test_classifier_shipped_small_accurate_and_trained_on_train_only():
    assert metrics.ASSET_PATH.exists() and metrics.ASSET_PATH.stat().st_size < 1_000_000
    model = metrics.load_classifier("digits")
    assert model is metrics.load_classifier("digits")  # cached
    x = torch.rand(5, 1, 8, 8)
    assert model(x).shape == (5, 11)
    assert model.features(x).shape == (5, model.feature_dim)
    # the reference (test) and real-row (val) digits were never seen in training
    assert model.meta["split"] == "train" and model.meta["train_images"] == 1000
    assert metrics.classifier_accuracy(model, "digits", "test") >= 0.96
    assert metrics.classifier_accuracy(model, "digits", "val") >= 0.96


def test_protocol_roles_are_disjoint(digits):
    p = metrics.protocol("digits")
    assert torch.equal(p.reference, digits["test"].images) and torch.equal(p.real, digits["val"].images)
    assert torch.equal(p.train, digits["train"].images) and p.set_size == 350


def test_real_row_is_val_scored_like_samples(digits):
    ref = metrics.reference_quality()
    q = metrics.sample_quality(digits["val"].images)
    assert {k: q[k] for k in metrics.QUALITY_KEYS} == {k: ref[k] for k in metrics.QUALITY_KEYS}
    assert ref["set_size"] == 350 and ref["recognized"] >= 0.9 and ref["classes_covered"] == 10
    assert ref["memorization"] == pytest.approx(1.0, abs=0.05)
    assert 0 < ref["frechet"] < 60 and 0.8 < ref["precision"] <= 1 and 0.7 < ref["recall"] <= 1


def test_held_out_digits_scored_as_samples_land_on_the_real_row(digits):
    # Two disjoint halves of the validation digits, against the same reference: each lands within 0.08 of the
    # other one's row (a protocol whose real row is the other half), on every figure that is a share.
    val = digits["val"].images
    p = metrics.protocol("digits")
    for real, samples in ((val[:175], val[175:]), (val[175:], val[:175])):
        proto = metrics.Protocol("digits", p.classifier, p.train, p.reference, real, set_size=175)
        ref, q = proto.reference_quality(), proto.sample_quality(samples)
        for key in ("recognized", "precision", "recall"):
            assert abs(q[key] - ref[key]) <= 0.08, key
        assert q["classes_covered"] == 10 and abs(q["memorization"] - ref["memorization"]) <= 0.08


def _noisy_training_digits(train, n, std, seed):
    g = torch.Generator().manual_seed(seed)
    x = train[torch.randint(0, len(train), (n,), generator=g)]
    return (x + std * torch.randn(x.shape, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("std", [0.05, 0.15])
def test_set_figures_do_not_drift_with_the_number_of_samples(digits, std):
    # the same kind of images at N = 350 and N = 1000 (means over four independent draws, to beat sampling noise)
    train = digits["train"].images
    at = {n: [metrics.sample_quality(_noisy_training_digits(train, n, std, seed=10 * n + r)) for r in range(4)]
          for n in (350, 1000)}
    for key in ("precision", "recall"):
        small, large = (np.mean([q[key] for q in at[n]]) for n in (350, 1000))
        assert abs(small - large) <= 0.05, (key, small, large)
    assert all(q["set_size"] == 350 for q in at[1000]) and all(q["subsets"] > 1 for q in at[1000])


def test_added_noise_never_raises_recall(digits):
    x = digits["train"].images
    g = torch.Generator().manual_seed(13)
    recalls = [metrics.sample_quality((x + std * torch.randn(x.shape, generator=g)).clamp(0, 1))["recall"]
               for std in (0.0, 0.05, 0.1, 0.2, 0.3)]
    assert all(b <= a + 1e-12 for a, b in zip(recalls, recalls[1:])), recalls
    assert recalls[-1] < 0.5 * recalls[0]


def test_every_figure_has_an_interval_that_shrinks_with_n(digits):
    x = _noisy_training_digits(digits["train"].images, 1400, 0.1, seed=3)
    small, large = metrics.sample_quality(x[:350]), metrics.sample_quality(x)
    for q in (small, large):
        for key in metrics.QUALITY_KEYS:
            lo, hi = q["interval"][key]
            assert lo <= q[key] <= hi, key
    for key in ("recognized", "precision", "recall", "frechet"):
        width = lambda q: q["interval"][key][1] - q["interval"][key][0]
        assert 0 < width(large) < width(small), key


def test_intervals_match_the_spread_over_fresh_sample_sets(digits):
    # The half-sample interval of a set-level figure against the spread of the figure over independent sets.
    train = digits["train"].images
    qs = [metrics.sample_quality(_noisy_training_digits(train, 350, 0.05, seed=100 + r)) for r in range(12)]
    for key in ("precision", "recall"):
        observed = np.std([q[key] for q in qs], ddof=1)
        claimed = np.mean([(q["interval"][key][1] - q["interval"][key][0]) / (2 * 1.96) for q in qs])
        assert 0.5 * observed <= claimed <= 2.0 * observed, (key, observed, claimed)


def test_batched_frechet_matches_scipy_sqrtm(digits):
    p = metrics.protocol("digits")
    x = digits["train"].images[:350]
    feats = metrics.logits_and_features(p.classifier, x)[1].double()
    ref = metrics.logits_and_features(p.classifier, p.reference)[1]
    assert p._frechet(feats[None]).item() == pytest.approx(metrics.frechet_distance(feats, ref), rel=1e-6)


def test_deterministic_and_shape_variants(digits):
    x = digits["test"].images[:200]
    q = metrics.sample_quality(x)
    assert metrics.sample_quality(x) == q
    assert metrics.sample_quality(x.reshape(200, 64)) == q
    assert metrics.sample_quality(x.reshape(200, 8, 8).numpy()) == q
    assert metrics.sample_quality(digits["test"]) == metrics.sample_quality(digits["test"].images)
    assert q["set_size"] == 200


def test_copies_are_the_ceiling_and_the_guard_stops_them(digits):
    copies = metrics.copies_quality()
    ref = metrics.reference_quality()
    assert copies["memorization"] < 0.05 and copies["recognized"] >= ref["recognized"]
    assert metrics.compare_to_real(copies, "recognized", 1.0)
    v = metrics.goal(copies, "recognized", 0.9)
    assert not v and "guard fails" in str(v) and "memorization < 0.8" in str(v)
    assert metrics.goal(ref, "recognized", 0.9)
    missing = metrics.sample_quality(digits["test"].images[digits["test"].labels != 3])
    v = metrics.goal(missing, "recognized", 0.9)
    assert not v and "9 classes" in str(v)


@pytest.mark.parametrize("kind", ["uniform", "blank", "constant", "independent"])
def test_non_digits_are_not_recognized(digits, kind):
    n, g = 500, torch.Generator().manual_seed(11)
    if kind == "uniform":
        x = torch.rand(n, 1, 8, 8, generator=g)
    elif kind == "blank":
        x = torch.zeros(n, 1, 8, 8)
    elif kind == "constant":
        x = torch.rand(n, 1, 1, 1, generator=g).expand(n, 1, 8, 8)
    else:
        x = _pixel_independent(digits["train"].images, n)
    q = metrics.sample_quality(x)
    assert q["recognized"] <= 0.1
    assert q["frechet"] > 10 * metrics.reference_quality()["frechet"]
    assert q["precision"] <= 0.1 and q["recall"] <= 0.1


def test_mildly_blurred_or_noisy_digits_are_recognized(digits):
    from gencourse.classifier import gaussian_blur

    x = digits["test"].images
    blurred = gaussian_blur(x, torch.full((len(x),), 0.5))
    g = torch.Generator().manual_seed(12)
    noisy = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert metrics.sample_quality(blurred)["recognized"] >= 0.85
    assert metrics.sample_quality(noisy)["recognized"] >= 0.85


def test_missing_class_lowers_coverage(digits):
    ds = digits["test"]
    q = metrics.sample_quality(ds.images[ds.labels != 3])
    assert q["classes_covered"] == 9


def test_reference_format_and_verdicts(digits):
    ref = metrics.reference_quality()
    table = metrics.format_quality(ref)
    assert all(k in table for k in metrics.QUALITY_KEYS) and "real" in table and "±" in table
    assert "real" not in metrics.format_quality(ref, False).splitlines()[0]
    several = metrics.format_quality({"model A": ref, "model B": ref})
    assert all(name in several.splitlines()[0] for name in ("model A", "model B", "real"))
    with pytest.raises(ValueError):
        metrics.format_quality({"recognized": 0.5})
    v = metrics.compare_to_real(ref, "recognized", 0.85)
    assert bool(v) and str(v).startswith("PASS recognized")
    bad = dict(ref, frechet=100 * ref["frechet"] + 1)
    v = metrics.compare_to_real(bad, "frechet", 3)
    assert not v and str(v).startswith("FAIL frechet")
    small = metrics.sample_quality(digits["test"].images[:100])
    assert "N_set = 100" in metrics.format_quality(small)  # the real row follows the samples' set size
    assert metrics.reference_quality(set_size=100)["set_size"] == 100


def test_differs_reads_the_intervals(digits):
    ref = metrics.reference_quality()
    noise = metrics.sample_quality(torch.rand(350, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    assert metrics.differs(ref, noise, "recognized") and not metrics.differs(ref, ref, "recognized")
    assert metrics.beats(ref, noise, "recognized") and not metrics.beats(noise, ref, "recognized")
    assert metrics.beats(ref, noise, "frechet") and not metrics.beats(noise, ref, "frechet")  # lower is better
    assert not metrics.beats(ref, ref, "recall")


def test_slightly_out_of_range_values_are_clamped(digits):
    x = digits["test"].images[:100]
    y = x.clone()
    y[x == 1] = 1 + 5e-4
    y[x == 0] = -5e-4
    assert metrics.sample_quality(y) == metrics.sample_quality(x)


@pytest.mark.parametrize("bad, match", [
    (torch.rand(20, 1, 28, 28), "shape"),
    (torch.rand(20, 3, 8, 8), "shape"),
    (torch.rand(20, 63), "shape"),
    (torch.rand(5, 1, 8, 8), "at least 10"),
    (torch.rand(20, 1, 8, 8) * 2 - 1, r"\[0, 1\]"),
    (torch.full((20, 1, 8, 8), float("nan")), "NaN"),
    ([[0.0] * 64] * 20, "tensor or array"),
])
def test_sample_quality_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        metrics.sample_quality(bad)


def test_bad_set_size():
    with pytest.raises(ValueError, match="set_size"):
        metrics.sample_quality(torch.rand(50, 1, 8, 8), set_size=60)


def test_unknown_dataset_names_valid_ones():
    with pytest.raises(ValueError, match="digits"):
        metrics.sample_quality(torch.rand(20, 1, 8, 8), "cifar10")
    with pytest.raises(ValueError, match="fashion-mnist"):
        metrics.reference_quality("svhn")


# ----------------------------------------------------------------------------------------------
# MNIST-sized datasets
# ----------------------------------------------------------------------------------------------

def test_classifier_trained_on_first_use_on_train_only_and_cached(tmp_path, monkeypatch):
    import gencourse.data as gdata
    from gencourse import classifier

    g = torch.Generator().manual_seed(0)
    sizes = {"train": 20, "val": 10, "test": 12}
    asked = []

    def fake_load(name, split="train", **kwargs):
        assert name == "mnist"
        asked.append(split)
        n = sizes[split]
        images = torch.round(torch.rand(n, 1, 28, 28, generator=g) * 255) / 255
        return ImageDataset(images, torch.arange(n) % 10, name="mnist", split=split)

    monkeypatch.setenv("GENCOURSE_DATA", str(tmp_path))
    monkeypatch.setattr(gdata, "load", fake_load)
    monkeypatch.setattr(metrics, "_CACHE", {})
    train = classifier.train_classifier
    monkeypatch.setattr(metrics, "train_classifier", lambda *a, **kw: train(*a, **{**kw, "epochs": 1}))
    path = metrics.classifier_path("mnist")
    assert path.parent.parent == tmp_path and not path.exists()
    model = metrics.load_classifier("mnist")
    assert asked == ["train"]  # the classifier saw the train split only
    assert path.exists() and model.image_size == 28 and model.meta["split"] == "train"
    assert metrics.load_classifier("mnist") is model
    q = metrics.sample_quality(torch.rand(12, 784, generator=g), "mnist")
    assert set(metrics.QUALITY_KEYS) <= set(q) and q["set_size"] == 10  # the 10 validation images bound N_set
    assert 0 <= q["recognized"] <= 1 and q["frechet"] >= 0
    with pytest.raises(ValueError, match="shape"):
        metrics.sample_quality(torch.rand(12, 1, 8, 8), "mnist")


def test_derangement_pairs_every_index_with_another():
    for n in (2, 3, 17, 350):
        partner = metrics.derangement(n, torch.Generator().manual_seed(n))
        assert sorted(partner.tolist()) == list(range(n))  # a permutation ...
        assert (partner != torch.arange(n)).all()  # ... without a fixed point
    with pytest.raises(ValueError, match="at least 2"):
        metrics.derangement(1)


def test_chimeras_stack_two_real_halves():
    x = torch.rand(6, 1, 8, 8)
    partner = torch.tensor([1, 2, 3, 4, 5, 0])
    c = metrics.chimeras(x, partner=partner)
    for i in range(6):
        assert torch.equal(c[i, 0, :4], x[i, 0, :4]) and torch.equal(c[i, 0, 4:], x[(i + 1) % 6, 0, 4:])
    drawn = metrics.chimeras(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn[:, :, :4], x[:, :, :4]) and not torch.equal(drawn, x)
    with pytest.raises(ValueError, match="real images"):
        metrics.chimeras(x[:, 0])
    with pytest.raises(ValueError, match="one index per image"):
        metrics.chimeras(x, partner=partner[:5])


def test_the_classifier_recognizes_chimeras_less_than_real_digits_but_often():
    """What the control shows on the digits protocol: the classifier was never taught to reject chimeras."""
    from gencourse import data

    val = data.load("digits", "val").images
    real = metrics.sample_quality(val)["recognized"]
    chim = metrics.sample_quality(metrics.chimeras(val, generator=torch.Generator().manual_seed(0)))["recognized"]
    assert 0.3 < chim < real - 0.2


def test_chimera_negatives_join_two_digits_of_different_classes_at_a_middle_row():
    from gencourse import classifier

    gen = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 256, (40, 1, 28, 28), generator=gen).float() / 255  # distinct random "digits"
    labels = torch.arange(40) % 10
    x = classifier.make_negatives(200, pool, labels, gen, levels=256, kinds=("chimera",))
    assert x.shape == (200, 1, 28, 28)
    rows, flat = x.reshape(200, 28, 28), pool.reshape(40, 28, 28)
    chimeras = 0
    for image in rows:
        same_row = ((image[None] - flat).abs() < 1e-6).all(2)  # (40, 28): which pool digit each row comes from
        tops, bottoms = same_row[:, 0].nonzero().flatten(), same_row[:, -1].nonzero().flatten()
        if len(tops) == 0:  # the rare pair left of one class after a redraw: uniform noise instead
            assert not same_row.any()
            continue
        chimeras += 1
        assert len(tops) == 1 and len(bottoms) == 1 and labels[tops[0]] != labels[bottoms[0]]
        cut = int(same_row[tops[0]].long().argmin())  # the first row not from the top digit
        assert 10 <= cut <= 17 and same_row[tops[0], :cut].all() and same_row[bottoms[0], cut:].all()
    assert chimeras >= 190  # a pair is of one class twice running with probability 1/100
    with pytest.raises(ValueError, match="unknown negative kind"):
        classifier.make_negatives(4, pool, labels, gen, levels=256, kinds=("chimeras",))


def test_train_classifier_takes_its_negatives_and_records_them():
    from gencourse import classifier

    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(40, 1, 8, 8, generator=gen), torch.arange(40) % 10
    model = classifier.train_classifier(x, y, levels=17, epochs=1, negatives=("noise", "chimera"))
    assert model.meta["negatives"] == ["noise", "chimera"]
    assert classifier.train_classifier(x, y, levels=17, epochs=1).meta["negatives"] == list(classifier.NEGATIVE_KINDS)
    with pytest.raises(ValueError, match="unknown negative kinds"):  # said before any training step
        classifier.train_classifier(x, y, levels=17, epochs=1, negatives=("noise", "chimeras"))
