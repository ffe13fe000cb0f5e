"""`make bench-mnist` (gencourse.bench_mnist): every family trains, samples and is scored on the MNIST stand-in.

A dry run (64 digits, one epoch, 20 samples): it checks the plumbing and the table, not what the models learn.
"""
import json

import pytest

from gencourse import bench_mnist

from conftest import MNIST

pytestmark = pytest.mark.student  # minutes: run with the MNIST lesson tests (make student-run)


def test_every_family_trains_samples_and_is_scored(standin, tmp_path):
    rows = bench_mnist.run(scale=0.01, subset=64, samples=20, n_eval=8, root=standin, source=MNIST,
                           out=tmp_path)
    assert list(rows) == list(bench_mnist.FAMILIES)
    likelihood = {name for name, row in rows.items() if "nll_bpd" in row}
    assert likelihood == {"vae", "flow", "pixelcnn", "image_gpt"}
    for name, row in rows.items():
        assert row["epochs"] in (1, (1, 1)) and row["train_digits"] == 64
        assert 0 <= row["quality"]["recognized"] <= 1 and row["quality"]["memorization"] > 0
        assert row["sample_cpu_ms_per_1000"] > 0 and row["samples"] == 20
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n| ") == 2 + len(rows)  # the header, its separator and one line per family
    assert "IWAE bound, k = 100" in table and "stand-in" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["rows"]) == set(rows) and saved["per_pixel_bpd"] > 0


def test_bad_requests_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="unknown families.*choose from"):
        bench_mnist.run(["vae", "wgan"], source=MNIST, out=tmp_path)
    with pytest.raises(ValueError, match="at least 10"):
        bench_mnist.run(["vae"], samples=5, source=MNIST, out=tmp_path)
    with pytest.raises(FileNotFoundError, match="--source"):
        bench_mnist.run(["vae"], source=tmp_path, out=tmp_path)


def test_scale_keeps_at_least_one_epoch():
    assert bench_mnist._scaled(3, 0.01) == 1 and bench_mnist._scaled((3, 12), 2) == (6, 24)
