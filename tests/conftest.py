"""Shared test helpers."""
from pathlib import Path

import pytest

import torch

from gencourse import check, exercises


def _unsolved(*args, **kwargs):
    raise NotImplementedError


@pytest.fixture
def check_verdicts(monkeypatch, capsys):
    """``check_verdicts(name, right, wrong)``: the check passes ``right``, fails ``wrong`` with a hint, and
    calls an unsolved exercise "not attempted" (outside grading mode)."""
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)

    def verify(name, right, wrong):
        run = getattr(check, name)
        run(right)
        assert exercises.results[name].status == exercises.PASSED, capsys.readouterr().out
        run(wrong)
        assert exercises.results[name].status == exercises.FAILED
        assert "Hint" in capsys.readouterr().out
        run(_unsolved)
        assert exercises.results[name].status == exercises.NOT_ATTEMPTED

    return verify


_THREADS_AT_START = torch.get_num_threads()  # when conftest is imported, before any test module is


@pytest.fixture(autouse=True)
def _torch_threads_unchanged(request):
    """A test that changes torch's thread count must put it back: two pytest workers that each run two threads
    on a 2-core machine spin against each other and made the whole suite about ten times slower."""
    yield
    now = torch.get_num_threads()
    if now != _THREADS_AT_START:
        torch.set_num_threads(_THREADS_AT_START)
        pytest.fail(f"{request.node.nodeid} left torch with {now} threads (it started with {_THREADS_AT_START}); "
                    "restore torch.set_num_threads in the test")


MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"  # the official MNIST test files


@pytest.fixture(scope="session")
def standin(tmp_path_factory):
    """The MNIST stand-in (:func:`gencourse.data.install_mnist_standin`: the official test files in ../shared as
    7,500 / 1,500 / 1,000 digits) under a temporary root, with its sample-quality classifier trained for one epoch
    (the protocol trains it longer on first use). Returns the root to pass as ``$GENCOURSE_DATA``."""
    from gencourse import data
    from gencourse.classifier import save_classifier, train_classifier

    if not (MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the MNIST test files are not in {MNIST}")
    root = data.install_mnist_standin(MNIST, tmp_path_factory.mktemp("mnist"))
    train = data.load("mnist", "train", root=root, download=False)
    model = train_classifier(train.images, train.labels, levels=256, seed=0, epochs=1)
    save_classifier(model, root / "classifiers" / "mnist_classifier.pt",
                    {**model.meta, "dataset": "mnist", "split": "train (stand-in)"})
    return root


@pytest.fixture
def fake_mnist_files(tmp_path, monkeypatch):
    """A tiny MNIST where torchvision looks (random 28x28 images as IDX files: 96 train, 16 test) under
    ``$GENCOURSE_DATA``; the path."""
    from gencourse import data

    g = torch.Generator().manual_seed(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 96), ("t10k", 16)):
        data.write_idx(raw / f"{prefix}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28), generator=g).numpy())
        data.write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.randint(0, 10, (n,), generator=g).numpy())
    monkeypatch.setenv("GENCOURSE_DATA", str(tmp_path))
    return tmp_path


@pytest.fixture
def fake_mnist(monkeypatch):
    """``data.load("mnist", split)`` -> a few synthetic 28x28 images on the 256 levels (48 train, 24 val and test;
    a blob of random strokes), no files needed; the digits still load."""
    from gencourse import data

    real_load = data.load

    def load(name, split="train", **kwargs):
        if name == "digits":
            return real_load(name, split, **kwargs)
        n = {"train": 48, "val": 24, "test": 24}[split]
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        x = torch.zeros(n, 1, 28, 28)
        x[:, :, 6:22, 10:18] = torch.randint(0, 256, (n, 1, 16, 8), generator=g) / 255
        return data.ImageDataset(x, torch.randint(0, 10, (n,), generator=g), name=name, split=split)

    monkeypatch.setattr(data, "load", load)
