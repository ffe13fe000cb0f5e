"""The recipes of lesson 11: checkpoints of every seed load with weights_only=True into the recipe's
architecture and carry likelihood figures of the current estimator policy, the stated network evaluations per
sample are what the samplers do, and the table's and the seeds' helpers are right."""
import math

import pytest
import torch

from gencourse import check, recipes
from gencourse.metrics import bits_per_dim


SEEDED = [(name, seed) for seed in recipes.SEEDS for name in recipes.ALL]


@pytest.mark.parametrize("name, seed", SEEDED)
def test_checkpoint_loads_with_weights_only_and_samples(name, seed):
    model, meta = recipes.load(name, seed=seed, with_meta=True)
    assert meta["recipe"] == name and meta["seed"] == seed and meta["train_seconds"] > 0 and meta["cpu_seconds"] > 0
    torch.manual_seed(0)
    x = recipes.recipe(name).sample(model, 12)
    assert x.shape == (12, 1, 8, 8)
    assert 0 <= x.min() and x.max() <= 1 and torch.isfinite(x).all()


@pytest.mark.parametrize("name, seed", SEEDED)
def test_checkpoint_was_trained_by_the_current_recipe(name, seed):
    _, meta = recipes.load(name, seed=seed, with_meta=True)
    assert meta.get("fingerprint") == recipes.fingerprint(name), (
        f"{recipes.recipe(name).module}.train_digits (or, for a variant, its settings) changed since its checkpoint "
        f"was written: run `make recipes RECIPES={name}` (every seed) and rebuild the lessons that load it")


def test_a_variants_fingerprint_follows_its_own_settings(monkeypatch):
    """A variant's constant (its epochs) changes its fingerprint and no other recipe's, so a checkpoint of the old
    setting cannot pass as current."""
    before = {n: recipes.fingerprint(n) for n in recipes.ALL}
    monkeypatch.setattr(recipes, "GPT_SHORT_EPOCHS", recipes.GPT_SHORT_EPOCHS + 1)
    after = {n: recipes.fingerprint(n) for n in recipes.ALL}
    assert [n for n in recipes.ALL if after[n] != before[n]] == ["transformer_short"]


def test_a_variants_fingerprint_follows_the_family_functions_it_calls(monkeypatch):
    from gencourse import flow_matching

    before = recipes.fingerprint("flow_matching_reflow"), recipes.fingerprint("flow_matching")

    def reflow_digits(base, *, n_pairs=10, seed=0, quick=False, verbose=True):  # a changed reflow
        return base, None

    monkeypatch.setattr(flow_matching, "reflow_digits", reflow_digits)
    assert recipes.fingerprint("flow_matching_reflow") != before[0]
    assert recipes.fingerprint("flow_matching") == before[1]


@pytest.mark.parametrize("name, seed", SEEDED)
def test_checkpoint_carries_the_likelihood_of_the_current_estimator(name, seed):
    r = recipes.recipe(name)
    _, meta = recipes.load(name, seed=seed, with_meta=True)
    assert r.likelihood in recipes.LIKELIHOOD_KINDS
    if r.nll is None:
        assert r.likelihood == "not computed" and "likelihood" not in meta
        return
    figures = meta["likelihood"]
    assert figures["estimator"] == r.estimator and figures["kind"] == r.likelihood, (
        f"the estimator of {name} changed: run `python -m gencourse.recipes --remeasure {name}`")
    worst = 181.3 if name in recipes.NAMES else 500.0  # a variant (the Gaussian skip) may lose to the uniform model
    assert 60 < figures["nll_test"] < worst and 60 < figures["nll_val"] < worst
    lo, hi = figures["interval"]["nll_test"]
    assert lo < figures["nll_test"] < hi
    assert figures["bits_per_dim"] == pytest.approx(figures["nll_test"] / (64 * math.log(2)))
    if r.nll_steps is not None:
        assert figures["convergence"]["steps"] == list(r.convergence_steps)
        if r.reported_steps is not None:
            assert isinstance(figures["converged"], bool)
        elif name != "diffusion_gaussian":  # (whose bound grows with the steps: lesson 06's finding)
            # the reported figure is the limit the table approaches: more steps, a tighter bound
            table = figures["convergence"]["nll_test"]
            assert all(a > b for a, b in zip(table, table[1:])) and table[-1] > figures["nll_test"] - 1.0
    if r.ode_nll is not None:
        ode = figures["pf_ode"]
        assert ode["steps"] == list(r.ode_steps) and len(ode["nll_test_by_steps"]) == len(r.ode_steps)
        assert ode["nll_test"] == pytest.approx(ode["nll_test_by_steps"][-1]) and isinstance(ode["converged"], bool)
        assert ode["estimator"] == r.ode_estimator and 60 < ode["nll_test"] < worst
    if r.variational is not None:
        # the learned-noise experiment: its uniform row is the reported figure itself (the same draws and probes)
        var = figures["variational"]
        assert var.get("eval_steps") == r.reported_steps and var["epochs"] >= 1
        assert var["nll_test_uniform"] == pytest.approx(figures["nll_test"], abs=1e-3)
        assert var["drop"] == pytest.approx(var["nll_test_uniform"] - var["nll_test_variational"], abs=1e-4)
        assert var["drop_interval"][0] < var["drop"] < var["drop_interval"][1]


def test_continuous_models_share_one_dequantization_policy():
    flow, fm = recipes.recipe("flow"), recipes.recipe("flow_matching")
    for r in (flow, fm):
        assert f"{recipes.DEQUANTIZATION_DRAWS} uniform draw per image" in r.estimator
    # diffusion's bound needs no dequantization: its decoder puts probabilities on the 17 levels
    assert recipes.recipe("diffusion").likelihood == "bound"
    assert "no dequantization" in recipes.recipe("diffusion").estimator


def test_build_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = recipes.recipe("vae").build()
    path = recipes.save("vae", model, 1.5, tmp_path, seed=2, cpu_seconds=1.0)
    assert path == tmp_path / "vae-seed2.pt"
    loaded, meta = recipes.load("vae", tmp_path, seed=2, with_meta=True)
    assert meta["train_seconds"] == 1.5 and meta["cpu_seconds"] == 1.0 and meta["seed"] == 2
    with pytest.raises(FileNotFoundError, match="--seeds 0"):
        recipes.load("vae", tmp_path)
    with pytest.raises(ValueError, match="seed must be"):
        recipes.checkpoint_path("vae", tmp_path, seed=-1)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_missing_checkpoint_and_unknown_recipe_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m gencourse.recipes"):
        recipes.load("gan", tmp_path)
    with pytest.raises(ValueError, match="choose one of"):
        recipes.recipe("vqvae")


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    recipes.save("gan", recipes.recipe("vae").build(), 1.0, tmp_path)
    with pytest.raises(ValueError, match="does not match"):
        recipes.load("gan", tmp_path)


@pytest.mark.parametrize("name, network", [("diffusion", lambda m: m.net), ("flow_matching", lambda m: m.net),
                                           ("autoregressive", lambda m: m.first), ("gan", lambda m: m.ema_generator),
                                           ("vae", lambda m: m.decoder), ("tokens", lambda m: m.prior.gpt),
                                           ("latent", lambda m: m.net)])
def test_stated_network_evaluations_per_sample(name, network):
    """NFE in the table = forward calls of the network while drawing one batch of samples."""
    r = recipes.recipe(name)
    model = recipes.load(name)
    calls = []
    handle = network(model).register_forward_hook(lambda *args: calls.append(1))
    try:
        r.sample(model, 3)
    finally:
        handle.remove()
    assert len(calls) == r.nfe(model)


def test_measure_gives_a_full_row():
    model, meta = recipes.load("autoregressive", with_meta=True)
    row = recipes.measure("autoregressive", model, n=50)
    for key in ("recognized", "classes_covered", "frechet", "precision", "recall", "memorization", "nfe",
                "ms_per_1000", "params", "nll_test", "nll_val", "bits_per_dim", "n", "set_size", "interval"):
        assert key in row, key
    assert row["likelihood"] == "exact" and row["nfe"] == 64 and row["n"] == 50
    assert row["bits_per_dim"] == pytest.approx(row["nll_test"] / (64 * math.log(2)))
    assert 60 < row["nll_test"] < 120  # a trained model on the 17-level scale (uniform: 181.3)
    assert set(row["interval"]) >= {"recognized", "frechet", "nll_test", "nll_val"}
    # the figures stored beside the weights are what the same code computes (exact: no random draws)
    assert row["nll_test"] == pytest.approx(meta["likelihood"]["nll_test"], abs=1e-3)
    stored = recipes.measure("autoregressive", model, n=50, likelihood=meta["likelihood"])
    assert stored["nll_test"] == meta["likelihood"]["nll_test"]
    with pytest.raises(ValueError, match="another estimator"):
        recipes.measure("autoregressive", model, n=50, likelihood={**meta["likelihood"], "estimator": "old"})
    with pytest.raises(ValueError, match="n must be"):
        recipes.measure("gan", recipes.load("gan"), n=5)


def test_likelihood_policy_on_a_quick_flow():
    """RealNVP and flow matching get the same dequantization draws: seeded alike, their first draw is the same."""
    from gencourse import data

    model, _ = recipes.train("flow", quick=True, verbose=False)
    figures = recipes.likelihood("flow", model, seed=3)
    assert figures["kind"] == "bound" and figures["nll_val"] > 0
    assert figures == {**recipes.likelihood("flow", model, seed=3), "seconds": figures["seconds"]}
    x = data.load("digits", "test").images
    fm = recipes.recipe("flow_matching").build()
    torch.manual_seed(3)
    a = data.dequantize(x, 17)
    torch.manual_seed(3)
    b = fm.to_z(x)
    assert torch.allclose(2 * a - 1, b)
    assert recipes.likelihood("gan", recipes.recipe("gan").build()) is None


def test_real_and_copies_rows_are_scored_at_the_protocol_set_size():
    from gencourse import metrics

    real, copies = recipes.real_row(), recipes.copies_row()
    assert real["n"] == real["set_size"] == 350 and real["name"] == "real digits (val, 350)"
    assert real["recognized"] == metrics.reference_quality()["recognized"]
    assert copies["memorization"] == 0 and copies["n"] == 350
    assert recipes.real_row(set_size=100)["set_size"] == 100


def test_summaries_over_seeds_and_separation():
    rows = [{"recognized": 0.80, "nll_test": 90.0, "interval": {"recognized": (0.75, 0.85), "nll_test": (88, 92)}},
            {"recognized": 0.90, "nll_test": 92.0, "interval": {"recognized": (0.86, 0.94), "nll_test": (90, 94)}},
            {"recognized": 0.85, "nll_test": 91.0, "samples": torch.zeros(3), "name": "x"}]
    s = recipes.summarize(rows, "recognized")
    assert s.mean == pytest.approx(0.85) and s.spread == pytest.approx(0.05)
    assert (s.lo, s.hi) == (0.75, 0.94)  # sample figures: seeds and their intervals
    n = recipes.summarize(rows, "nll_test")
    assert (n.lo, n.hi) == (90.0, 92.0)  # likelihood: the seeds only (the test images are shared)
    assert recipes.summarize(rows, "samples") is None and recipes.summarize(rows, "name") is None
    far = recipes.summarize([{"recognized": 0.5, "interval": {"recognized": (0.45, 0.55)}}], "recognized")
    near = recipes.summarize([{"recognized": 0.7, "interval": {"recognized": (0.6, 0.8)}}], "recognized")
    assert recipes.separates(s, far) and not recipes.separates(s, near)
    assert recipes.best({"a": s, "b": near, "c": far}, higher=True) == ("a", ["b"])
    assert recipes.best({"a": s, "c": far}, higher=False) == ("c", [])
    assert recipes.best({}, higher=True) == (None, [])
    table = recipes.format_seed_table({"m": rows}, [("name", "model", "{}"), ("recognized", "rec", "{:.2f}"),
                                                    ("classes_covered", "classes", "int")])
    assert "0.85±0.05" in table and table.splitlines()[2].endswith("—")


def test_baselines_have_the_known_likelihoods():
    uniform, categorical = recipes.baselines(n=50)
    assert uniform["nll_test"] == pytest.approx(64 * math.log(17))
    assert uniform["bits_per_dim"] == pytest.approx(math.log2(17))
    assert categorical["nll_test"] == pytest.approx(106.3, abs=0.05)  # COURSE.md section 8
    assert bits_per_dim(categorical["nll_test"], 64) == pytest.approx(categorical["bits_per_dim"])


def test_noise_mixture_nll_against_direct_computation():
    a = torch.tensor([1.0, 3.0, 7.5], dtype=torch.float64)
    b = torch.tensor([2.0, 0.5, 9.0], dtype=torch.float64)
    w = 0.3
    direct = -torch.log(w * torch.exp(-a) + (1 - w) * torch.exp(-b))
    assert torch.allclose(recipes.noise_mixture_nll(a, b, w), direct)
    # hundreds of nats: finite, and never more than -log w above the model's NLL
    big = recipes.noise_mixture_nll(torch.tensor([800.0]), torch.tensor([1100.0]), 0.01)
    assert torch.isfinite(big).all() and big.item() <= 800 - math.log(0.01) + 1e-9
    with pytest.raises(ValueError, match="strictly between"):
        recipes.noise_mixture_nll(a, b, 1.0)


def test_gaussian_digits_lies_on_the_grid():
    g = torch.Generator().manual_seed(0)
    x = recipes.gaussian_digits(torch.full((64,), 0.5), 0.3 * torch.eye(64), torch.randn(20, 64, generator=g))
    assert x.shape == (20, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x * 16, torch.round(x * 16))
    with pytest.raises(ValueError, match="expected mean"):
        recipes.gaussian_digits(torch.zeros(64), torch.eye(64), torch.zeros(3, 10))


def test_format_table_shows_dashes_for_missing_figures():
    text = recipes.format_table([{"name": "a", "nll_test": 90.123, "recognized": float("nan")}, {"name": "bb"}])
    lines = text.splitlines()
    assert lines[0].startswith("model") and set(lines[1]) == {"-"}
    assert "90.1" in lines[2] and "—" in lines[2] and lines[3].startswith("bb")


@pytest.mark.parametrize("seed", recipes.SEEDS)
def test_diffusion_checkpoints_carry_their_training_curve(seed):
    """Lesson 06 loads the diffusion recipe and draws the loss curve recorded while it trained."""
    from gencourse import diffusion

    _, meta = recipes.load("diffusion", seed=seed, with_meta=True)
    train, val = meta["history"]["train_loss"], meta["history"]["val_loss"]
    assert len(train) == len(val) == diffusion.DIGITS_EPOCHS
    assert all(math.isfinite(v) and v > 0 for v in train + val)
    assert sum(train[-10:]) < 0.8 * sum(train[:10]) and sum(val[-10:]) < 0.8 * sum(val[:10])


def test_main_quick_writes_loadable_checkpoints(tmp_path, capsys):
    assert recipes.main(["autoencoder", "autoregressive", "--quick", "--seeds", "1", "--directory", str(tmp_path)]) == 0
    assert "autoencoder seed 1: trained in" in capsys.readouterr().out
    model = recipes.load("autoencoder", tmp_path, seed=1)
    assert recipes.recipe("autoencoder").sample(model, 4).shape == (4, 1, 8, 8)
    _, meta = recipes.load("autoregressive", tmp_path, seed=1, with_meta=True)
    assert meta["likelihood"]["kind"] == "exact"
    curve = meta["history"]  # the per-epoch losses, so that a lesson loading the recipe can draw them
    assert len(curve["train_loss"]) == len(curve["val_loss"]) >= 1
    assert all(math.isfinite(v) for v in curve["train_loss"] + curve["val_loss"])
    assert recipes.main(["autoregressive", "--remeasure", "--seeds", "1", "--directory", str(tmp_path)]) == 0
    _, again = recipes.load("autoregressive", tmp_path, seed=1, with_meta=True)
    assert again["likelihood"]["nll_test"] == pytest.approx(meta["likelihood"]["nll_test"])
    assert again["train_seconds"] == meta["train_seconds"]


# --- the checks of lesson 11 ------------------------------------------------------------------

def _frechet_without_cross_term(mu_a, cov_a, mu_b, cov_b):
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b))


def _frechet_reference(mu_a, cov_a, mu_b, cov_b):
    from gencourse.metrics import frechet_distance  # noqa: F401  (the course's own is feature based)
    from scipy import linalg

    root = linalg.sqrtm(cov_a.numpy() @ cov_b.numpy()).real
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * root.trace())


def _mixture_in_linear_space(nll_model, nll_noise, weight):
    return -torch.log(weight * torch.exp(-torch.as_tensor(nll_model, dtype=torch.float32))
                      + (1 - weight) * torch.exp(-torch.as_tensor(nll_noise, dtype=torch.float32)))


def _gaussian_digits_floor(mean, scale_tril, eps):
    y = (mean + eps @ scale_tril.T).clamp(0, 1)
    return (torch.floor(y * 16) / 16).view(len(eps), 1, 8, 8)


@pytest.mark.parametrize("name, right, wrong", [
    ("frechet_from_moments", _frechet_reference, _frechet_without_cross_term),
    ("noise_mixture_nll", lambda a, b, w: recipes.noise_mixture_nll(a, b, w), _mixture_in_linear_space),
    ("gaussian_digits", recipes.gaussian_digits, _gaussian_digits_floor),
])
def test_lesson11_checks(check_verdicts, name, right, wrong):
    check_verdicts(name, right, wrong)
    assert name in check.lesson11.__all__


@pytest.mark.parametrize("name", recipes.NAMES + recipes.TWO_STAGE)
def test_every_recipe_trains_in_quick_mode(name):
    """The lesson's RETRAIN path: each recipe trains (tiny settings) and its model samples and is measured."""
    model, seconds = recipes.train(name, quick=True, verbose=False)
    assert seconds > 0 and not model.training
    row = recipes.measure(name, model, n=20, likelihood=False)
    assert row["samples"].shape == (20, 1, 8, 8) and row["nfe"] >= 1
