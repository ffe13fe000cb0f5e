"""`make bench-mnist` (gencourse.bench_mnist): every family trains, samples and is scored on the MNIST stand-in.

A dry run (64 digits, one epoch, 20 samples): it checks the plumbing and the table, not what the models learn.
"""
import json

import pytest
import torch

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
        assert row["epochs"] in (1, (1, 1)) and row["train_digits"] == 64 and row["batch"] == bench_mnist.BATCH[name]
        assert 0 <= row["quality"]["recognized"] <= 1 and row["quality"]["memorization"] > 0
        assert row["sample_cpu_ms_per_1000"] > 0 and row["samples"] == 20
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        saved = torch.load(tmp_path / f"{name}.pt", weights_only=True)  # the samples, to score again
        assert saved.dtype == torch.uint8 and saved.shape == (20, 1, 28, 28) and saved.max() > 0
    table = (tmp_path / "results.md").read_text()
    # each table: its header, its separator and one line per family, then per control
    assert table.count("\n| ") == 2 + len(rows) + 2 + len(bench_mnist.CONTROLS)
    assert all(f"| {name}: {text} |" in table for name, text in bench_mnist.CONTROLS.items())
    assert "IWAE bound, k = 100" in table and "stand-in" in table
    assert f"| 64 x 1 ({bench_mnist.BATCH['vae']}) |" in table  # digits x epochs (batch)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["rows"]) == set(rows) and saved["per_pixel_bpd"] > 0
    assert set(saved["controls"]) == set(bench_mnist.CONTROLS)
    assert all(lo <= c["recognized"] <= hi for c in saved["controls"].values() for lo, hi in [c["interval"]])


def test_controls_are_made_of_real_digits(standin, monkeypatch):
    from gencourse import data

    monkeypatch.setenv("GENCOURSE_DATA", str(standin))
    val = data.load("mnist", "val").images
    controls = bench_mnist.control_images(50, seed=0)
    assert all(x.shape == (50, 1, 28, 28) for x in controls.values())
    assert all(torch.equal(x * 255, (x * 255).round()) and x.min() >= 0 and x.max() <= 1 for x in controls.values())
    x = val[1000:1050]  # the digits after the real row's 1,000
    chimeras = controls["chimeras"]
    assert torch.allclose(chimeras[:, :, :14], x[:, :, :14], atol=1e-6)  # the top halves are the real digits'
    bottoms = chimeras[:, :, 14:].reshape(50, -1)  # ... and each bottom half is another of those digits'
    distances = torch.cdist(bottoms, x[:, :, 14:].reshape(50, -1), compute_mode="donot_use_mm_for_euclid_dist")
    assert distances.min(1).values.max() < 1e-4 and (distances.argmin(1) != torch.arange(50)).float().mean() > 0.8
    blend_distance = torch.cdist(controls["blends"].reshape(50, -1), x.reshape(50, -1)).min(1).values
    assert blend_distance.min() > 1.0  # a blend is no real digit
    with pytest.raises(ValueError, match="lower --samples"):
        bench_mnist.control_images(len(val), seed=0)


def test_bad_requests_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="unknown families.*choose from"):
        bench_mnist.run(["vae", "wgan"], source=MNIST, out=tmp_path)
    with pytest.raises(ValueError, match="at least 10"):
        bench_mnist.run(["vae"], samples=5, source=MNIST, out=tmp_path)
    with pytest.raises(FileNotFoundError, match="--source"):
        bench_mnist.run(["vae"], source=tmp_path, out=tmp_path)


def test_scale_keeps_at_least_one_epoch():
    assert bench_mnist._scaled(3, 0.01) == 1 and bench_mnist._scaled((3, 12), 2) == (6, 24)
