"""The sample-quality protocol on real 28x28 digits: the MNIST test set in ../shared/data/mnist/.

Without the internet the official training files cannot be had, so these tests carve the 10,000 test digits,
shuffled with a fixed seed (the file is ordered by writer group: its first half is cleaner than its second),
into a stand-in split: 8,000 train the classifier (and are the `memorization` training set), the next 1,000
are the real row, the last 1,000 the reference set. The classifier trains once per session
(8 epochs, about a minute on 2 cores). The same properties as for the 8x8 digits must hold.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from gencourse import classifier, data, metrics

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

pytestmark = [pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                 reason=f"the MNIST test files are not in {MNIST}"),
              # one worker trains the stand-in's classifier once (make unit runs with --dist loadgroup)
              pytest.mark.xdist_group("mnist_standin")]


@pytest.fixture(scope="module")
def standin():
    x = data.read_idx(MNIST / "t10k-images-idx3-ubyte.gz").float().div(255).unsqueeze(1)
    y = data.read_idx(MNIST / "t10k-labels-idx1-ubyte.gz").long()
    assert x.shape == (10_000, 1, 28, 28) and y.shape == (10_000,)
    order = torch.randperm(10_000, generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    proto = metrics.make_protocol("mnist", train_images=x[:8000], train_labels=y[:8000], reference=x[9000:],
                                  real=x[8000:9000], epochs=8, description="MNIST test set: 8000 / 1000 / 1000")
    return proto, x, y


def test_classifier_recognizes_unseen_real_digits(standin):
    proto, x, y = standin
    assert proto.set_size == 1000
    assert classifier.accuracy(proto.classifier, x[8000:9000], y[8000:9000]) >= 0.95
    assert classifier.accuracy(proto.classifier, x[9000:], y[9000:]) >= 0.95
    ref = proto.reference_quality()
    assert ref["recognized"] >= 0.85 and ref["classes_covered"] == 10
    assert ref["memorization"] == pytest.approx(1.0, abs=0.1)
    assert ref["precision"] >= 0.8 and ref["recall"] >= 0.7


def test_held_out_digits_scored_as_samples_land_on_the_real_row(standin):
    proto, x, _ = standin
    real = x[8000:9000]
    for a, b in ((real[:500], real[500:]), (real[500:], real[:500])):
        half = metrics.Protocol("mnist", proto.classifier, proto.train, proto.reference, a, set_size=500)
        ref, q = half.reference_quality(), half.sample_quality(b)
        for key in ("recognized", "precision", "recall", "memorization"):
            assert abs(q[key] - ref[key]) <= 0.08, key


def _noisy(x, n, std, seed):
    g = torch.Generator().manual_seed(seed)
    pick = x[torch.randint(0, len(x), (n,), generator=g)]
    return (pick + std * torch.randn(pick.shape, generator=g)).clamp(0, 1)


def test_set_figures_do_not_drift_with_the_number_of_samples(standin):
    proto, x, _ = standin
    at = {n: [proto.sample_quality(_noisy(x[:8000], n, 0.1, seed=n + r)) for r in range(2)] for n in (1000, 3000)}
    for key in ("precision", "recall"):
        small, large = (np.mean([q[key] for q in at[n]]) for n in (1000, 3000))
        assert abs(small - large) <= 0.05, (key, small, large)


def test_added_noise_never_raises_recall(standin):
    proto, x, _ = standin
    g = torch.Generator().manual_seed(5)
    clean = x[:1000]
    recalls = [proto.sample_quality((clean + s * torch.randn(clean.shape, generator=g)).clamp(0, 1))["recall"]
               for s in (0.0, 0.1, 0.3, 0.5)]
    assert all(b <= a + 1e-12 for a, b in zip(recalls, recalls[1:])), recalls


def test_copies_and_non_digits(standin):
    proto, x, _ = standin
    copies = proto.sample_quality(x[:1000])
    assert copies["memorization"] < 0.05
    assert not metrics.goal(copies, "recognized", 0.5, proto.reference_quality())
    g = torch.Generator().manual_seed(6)
    for fake in (torch.rand(500, 1, 28, 28, generator=g), torch.zeros(500, 1, 28, 28)):
        q = proto.sample_quality(fake)
        assert q["recognized"] <= 0.1 and q["precision"] <= 0.1 and q["recall"] <= 0.1
