"""gencourse.data: the toys, the digits split, the MNIST path on IDX files the tests write, dequantization."""
import gzip
import math
import struct

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from gencourse import data


@pytest.mark.parametrize("name", data.TOY2D)
def test_toy2d_shapes_seeds_and_range(name):
    x = data.toy2d(name, 500, seed=3)
    assert x.shape == (500, 2) and x.dtype == torch.float32
    assert torch.equal(x, data.toy2d(name, 500, seed=3))
    assert not torch.equal(x, data.toy2d(name, 500, seed=4))
    assert x.abs().max() < 6


def test_toy2d_bad_input():
    with pytest.raises(ValueError, match="moons"):
        data.toy2d("spiral", 10)
    for n in (0, -3, 2.5):
        with pytest.raises(ValueError, match="positive"):
            data.toy2d("moons", n)


def test_ring_samples_sit_on_their_modes():
    x = data.toy2d("8gaussians", 20000)
    d = torch.cdist(x, data.RING_CENTERS).min(dim=1).values
    # distance to the nearest centre of a 2D Gaussian: Rayleigh with scale RING_STD
    assert abs(d.mean().item() - data.RING_STD * math.sqrt(math.pi / 2)) < 0.01


def test_ring_log_prob_integrates_to_one():
    axis = torch.linspace(-6, 6, 601)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    cell = (axis[1] - axis[0]).item() ** 2
    total = data.ring_log_prob(pts).exp().sum().item() * cell
    assert abs(total - 1) < 1e-3
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(8)),
        torch.distributions.Independent(torch.distributions.Normal(data.RING_CENTERS, data.RING_STD), 1))
    x = torch.randn(50, 2) * 3
    assert torch.allclose(data.ring_log_prob(x), mix.log_prob(x), atol=1e-4)


def test_digits_split_matches_load_digits_order():
    bunch = load_digits()
    sizes = {"train": 1000, "val": 350, "test": 447}
    start = 0
    for split, n in sizes.items():
        ds = data.load("digits", split)
        assert len(ds) == n and ds.images.shape == (n, 1, 8, 8) and ds.levels == 17
        expect = torch.as_tensor(bunch.images[start:start + n], dtype=torch.float32) / 16
        assert torch.equal(ds.images[:, 0], expect)
        assert torch.equal(ds.labels, torch.as_tensor(bunch.target[start:start + n]))
        image, label = ds[0]
        assert image.shape == (1, 8, 8) and isinstance(label, int)
        start += n
    levels = torch.unique(data.load("digits").images * 16)
    assert torch.equal(levels, levels.round()) and levels.min() == 0 and levels.max() == 16


def test_load_bad_input():
    with pytest.raises(ValueError, match="digits"):
        data.load("cifar10")
    with pytest.raises(ValueError, match="train, val, test"):
        data.load("digits", "validation")


def _write_idx(path, array):
    """IDX format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, raw bytes; gzipped like the mirrors."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_path_on_small_idx_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (60, 28, 28))
    test_images = rng.integers(0, 256, (12, 28, 28))
    _write_idx(raw / "train-images-idx3-ubyte", train_images)
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(60) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte", test_images)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(12) % 10)
    train = data.load(name, "train", root=tmp_path, download=False)
    val = data.load(name, "val", root=tmp_path, download=False)
    test = data.load(name, "test", root=tmp_path, download=False)
    assert len(train) + len(val) == 60 and len(val) == 10 and len(test) == 12
    assert train.images.shape[1:] == (1, 28, 28) and train.levels == 256
    assert torch.allclose(train.images[0, 0], torch.as_tensor(train_images[0] / 255.0, dtype=torch.float32))
    assert torch.allclose(val.images[0, 0], torch.as_tensor(train_images[50] / 255.0, dtype=torch.float32))
    assert test.labels.tolist() == [i % 10 for i in range(12)]


def test_mnist_offline_error_names_digits(tmp_path):
    with pytest.raises(data.DatasetUnavailableError, match="load\\('digits'\\)"):
        data.load("mnist", root=tmp_path, download=False)


def test_data_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GENCOURSE_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    assert data.data_root("elsewhere").name == "elsewhere"


def test_dequantize_stays_in_its_cell():
    x = data.load("digits", "test").images
    k = data.to_levels(x, 17)
    y = data.dequantize(x, 17, generator=torch.Generator().manual_seed(0))
    assert torch.all(y >= k / 17) and torch.all(y < (k + 1) / 17)
    assert abs((y * 17 - k).mean().item() - 0.5) < 0.01  # u ~ U[0, 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.dequantize(x * 2 - 1, 17)
    with pytest.raises(ValueError, match="levels"):
        data.dequantize(x, 1)


def test_discrete_bound_of_a_known_distribution():
    """A piecewise-constant density that puts mass P(k) uniformly on each cell [k/L, (k+1)/L) makes the
    bound tight: -log p(y) + ln L = -log P(k) exactly, for every draw of u."""
    L = 17
    probs = torch.softmax(torch.randn(L, generator=torch.Generator().manual_seed(1)), 0)
    k = torch.randint(0, L, (1000,))
    y = data.dequantize(k.float() / (L - 1), L)
    cell = torch.clamp((y * L).floor().long(), max=L - 1)
    density = probs[cell] * L  # p(y) = P(k) / (1/L)
    bound = data.discrete_nll_bound(-density.log(), num_dims=1, levels=L)
    assert torch.allclose(bound, -probs[k].log(), atol=1e-5)
    # for a smooth density (uniform on [0, 1)) the bound is exactly ln L, the uniform discrete NLL
    assert data.discrete_nll_bound(torch.zeros(3), 64, L).allclose(torch.full((3,), 64 * math.log(L)))


def test_write_idx_round_trips_and_refuses_non_bytes(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    data.write_idx(tmp_path / "x-idx3-ubyte", images)
    assert np.array_equal(data.read_idx(tmp_path / "x-idx3-ubyte").numpy(), images)
    with pytest.raises(ValueError, match="0..255"):
        data.write_idx(tmp_path / "bad", np.array([1, 300]))


def test_mnist_standin_from_test_files(tmp_path):
    import gzip

    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, (30, 28, 28)).astype(np.uint8), np.arange(30) % 10
    source = tmp_path / "source"
    source.mkdir()
    for name, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        data.write_idx(source / name, array)
        (source / f"{name}.gz").write_bytes(gzip.compress((source / name).read_bytes()))
    root = data.install_mnist_standin(source, tmp_path / "root", train_size=24)
    train, val, test = (data.load("mnist", s, root=root, download=False) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (20, 4, 6)
    # every digit lands in exactly one split, shuffled, with its own label
    seen = torch.cat([train.images, val.images, test.images]).mul(255).round().to(torch.uint8).flatten(1)
    originals = torch.as_tensor(images).flatten(1)
    match = (seen[:, None] == originals[None]).all(-1)
    assert match.sum(1).eq(1).all() and match.sum(0).eq(1).all()
    assert not torch.equal(match.float().argmax(1), torch.arange(30))
    got = torch.cat([train.labels, val.labels, test.labels])
    assert torch.equal(got, torch.as_tensor(labels)[match.float().argmax(1)])
    with pytest.raises(ValueError, match="train_size"):
        data.install_mnist_standin(source, tmp_path / "other", train_size=30)
