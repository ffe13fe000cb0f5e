"""gencourse.train: epoch losses over all batches, early stopping, the NaN guard, checkpoints."""
import math

import pytest
import torch
from torch import nn

from gencourse import train


def _regression(n=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)
    return torch.cat([x, y[:, None]], dim=1)


def _mse(model):
    return lambda batch: ((model(batch[:, :3]).squeeze(1) - batch[:, 3]) ** 2).mean()


def test_fit_learns_and_epoch_loss_averages_every_batch():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = _regression(130)
    seen = []

    def loss_fn(batch):
        loss = _mse(model)(batch)
        seen.append((loss.item(), len(batch)))
        return loss

    history = train.fit(model, loss_fn, data, epochs=1, batch_size=50, lr=1e-2, verbose=False)
    assert [n for _, n in seen] == [50, 50, 30]
    expected = sum(l * n for l, n in seen) / 130
    assert history.train_loss[0] == pytest.approx(expected)
    history = train.fit(model, _mse(model), data, epochs=60, batch_size=32, lr=5e-2, verbose=False)
    assert history.train_loss[-1] < 0.05


def test_early_stopping_restores_the_best_weights():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data, val = _regression(64, seed=1), _regression(64, seed=2)
    history = train.fit(model, _mse(model), data, val_data=val, epochs=40, lr=0.5, patience=3, verbose=False)
    assert history.best_epoch is not None and len(history.val_loss) == history.epochs
    assert history.best_val_loss == min(history.val_loss)
    assert train.evaluate(model, _mse(model), val) == pytest.approx(history.best_val_loss, rel=1e-5)
    if history.stopped_early:
        assert history.epochs - history.best_epoch == 3


def test_dataset_batches_are_image_label_pairs():
    from gencourse import data

    ds = data.load("digits", "val")
    sizes = []
    for images, labels in train.batches(ds, 128, shuffle=True):
        assert images.shape[1:] == (1, 8, 8) and labels.dtype == torch.long
        sizes.append(len(images))
    assert sizes == [128, 128, 94]


def test_nan_guard_names_epoch_and_step():
    model = nn.Linear(3, 1)
    calls = {"n": 0}

    def loss_fn(batch):
        calls["n"] += 1
        loss = _mse(model)(batch)
        return loss * float("nan") if calls["n"] == 5 else loss

    with pytest.raises(train.TrainingDiverged, match="epoch 2, step 2"):
        train.fit(model, loss_fn, _regression(90), epochs=3, batch_size=30, verbose=False)


def test_bad_arguments():
    model = nn.Linear(3, 1)
    for kwargs, word in [({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"patience": 0}, "patience")]:
        with pytest.raises(ValueError, match=word):
            train.fit(model, _mse(model), _regression(), **kwargs)
    with pytest.raises(ValueError, match="device"):
        train.get_device("tpu")
    with pytest.raises(ValueError, match="seed"):
        train.seed_everything("zero")


def test_seed_everything_repeats():
    train.seed_everything(7)
    a = torch.randn(3)
    train.seed_everything(7)
    assert torch.equal(a, torch.randn(3))
    assert train.get_device("cpu").type == "cpu"


def test_checkpoint_roundtrip_and_clear_errors(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    path = train.save_checkpoint(model, tmp_path / "m.pt", epochs=3, note="test")
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    meta = train.load_checkpoint(other, path)
    assert meta == {"epochs": 3, "note": "test"}
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="does not match"):
        train.load_checkpoint(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1)), path)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        train.load_checkpoint(model, tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train.load_checkpoint(model, tmp_path / "missing.pt")


def test_checkpoints_refuse_pickled_objects(tmp_path):
    torch.save({"state_dict": {}, "meta": {"obj": object()}}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        train.load_checkpoint(nn.Linear(1, 1), tmp_path / "pickled.pt")


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("GENCOURSE_PROGRESS", "0")
    assert not train.progress_enabled()
    assert train.progress(range(3)).disable
    monkeypatch.setenv("GENCOURSE_PROGRESS", "1")
    assert train.progress_enabled()


def test_history_summary_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    h = train.History(train_loss=[3.0, 2.0, 1.5], val_loss=[3.1, 2.2, 2.4], best_epoch=2, best_val_loss=2.2, seconds=1.0)
    assert "best val loss 2.2 at epoch 2" in h.summary()
    assert h.plot() is not None
    assert math.isinf(train.History().best_val_loss)


def test_cpu_quota_reads_cgroup_v2_and_v1(tmp_path):
    from gencourse.train import cpu_quota

    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(str(tmp_path)) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(str(tmp_path)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(str(v1)) == 1
    assert cpu_quota(str(tmp_path / "missing")) is None


def test_limit_threads_caps_torch_at_the_quota(monkeypatch):
    import torch
    import gencourse.train as train

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        monkeypatch.setattr(train, "cpu_quota", lambda: 1)
        assert train.limit_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------
# Annealed training (diffusion, flow matching)
# ----------------------------------------------------------------------------------------------

def test_cosine_adam_warms_up_then_decays_to_zero():
    from gencourse.train import CosineAdam

    p = torch.nn.Parameter(torch.zeros(1))
    opt = CosineAdam([p], lr=1.0, total_steps=100, warmup=0.1)
    lrs = []
    for _ in range(100):
        p.grad = torch.ones(1)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    with pytest.raises(ValueError, match="total_steps"):
        CosineAdam([p], lr=1.0, total_steps=0)


def test_fixed_batches_are_whole_slices_in_order():
    from gencourse.train import fixed_batches

    a, b = torch.arange(10), torch.arange(10) * 2
    out = list(fixed_batches(a, b, batch_size=4))
    assert [len(x) for x, _ in out] == [4, 4, 2]
    assert torch.equal(torch.cat([x for x, _ in out]), a) and torch.equal(torch.cat([y for _, y in out]), b)


def test_train_annealed_keeps_the_final_weights_and_snapshots():
    from gencourse.train import train_annealed

    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    x = torch.randn(64, 2)
    target = x @ torch.tensor([[1.0], [-2.0]])
    loss_fn = lambda batch: (model(batch[0]) - batch[1]).pow(2).mean()  # noqa: E731
    data = torch.utils.data.TensorDataset(x, target)
    history = train_annealed(model, data, data, epochs=20, lr=0.1, batch_size=16, seed=0, loss_fn=loss_fn,
                             snapshot_epochs=(1, 20), verbose=False)
    assert len(history.train_loss) == len(history.val_loss) == 20
    assert history.val_loss[-1] < 0.1 * history.val_loss[0]
    assert sorted(history.snapshots) == [1, 20]
    assert torch.equal(history.snapshots[20]["weight"], model.weight.detach())
    assert not torch.equal(history.snapshots[1]["weight"], model.weight.detach())
    with pytest.raises(ValueError, match="snapshot_epochs"):
        train_annealed(model, data, epochs=2, lr=0.1, loss_fn=loss_fn, snapshot_epochs=(3,))
    with pytest.raises(ValueError, match="epochs"):
        train_annealed(model, data, epochs=0, lr=0.1, loss_fn=loss_fn)
