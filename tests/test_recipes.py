"""The recipes of lesson 09: checkpoints load with weights_only=True into the recipe's architecture, the
stated network evaluations per sample are what the samplers do, and the table's helpers are right."""
import math

import pytest
import torch

from gencourse import check, recipes
from gencourse.metrics import bits_per_dim


@pytest.mark.parametrize("name", recipes.NAMES)
def test_checkpoint_loads_with_weights_only_and_samples(name):
    model, meta = recipes.load(name, with_meta=True)
    assert meta["recipe"] == name and meta["train_seconds"] > 0
    torch.manual_seed(0)
    x = recipes.recipe(name).sample(model, 12)
    assert x.shape == (12, 1, 8, 8)
    assert 0 <= x.min() and x.max() <= 1 and torch.isfinite(x).all()


@pytest.mark.parametrize("name", recipes.NAMES)
def test_checkpoint_was_trained_by_the_current_recipe(name):
    _, meta = recipes.load(name, with_meta=True)
    assert meta.get("fingerprint") == recipes.fingerprint(name), (
        f"{recipes.recipe(name).module}.train_digits changed since its checkpoint was written: run `make recipes` "
        f"(or `python -m gencourse.recipes {name}`) and rebuild lesson 09")


def test_build_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = recipes.recipe("vae").build()
    path = recipes.save("vae", model, 1.5, tmp_path)
    assert path == tmp_path / "vae.pt"
    loaded, meta = recipes.load("vae", tmp_path, with_meta=True)
    assert meta["train_seconds"] == 1.5
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
                                           ("vae", lambda m: m.decoder)])
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
    row = recipes.measure("autoregressive", recipes.load("autoregressive"), n=50)
    for key in ("recognized", "classes_covered", "frechet", "precision", "recall", "memorization", "nfe",
                "ms_per_1000", "params", "nll_test", "nll_val", "bits_per_dim"):
        assert key in row, key
    assert row["likelihood"] == "exact" and row["nfe"] == 64
    assert row["bits_per_dim"] == pytest.approx(row["nll_test"] / (64 * math.log(2)))
    assert 60 < row["nll_test"] < 120  # a trained model on the 17-level scale (uniform: 181.3)
    with pytest.raises(ValueError, match="n must be"):
        recipes.measure("gan", recipes.load("gan"), n=5)


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


def test_main_quick_writes_loadable_checkpoints(tmp_path, capsys):
    assert recipes.main(["autoencoder", "--quick", "--directory", str(tmp_path)]) == 0
    assert "autoencoder: trained in" in capsys.readouterr().out
    model = recipes.load("autoencoder", tmp_path)
    assert recipes.recipe("autoencoder").sample(model, 4).shape == (4, 1, 8, 8)


# --- the checks of lesson 09 ------------------------------------------------------------------

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
def test_lesson09_checks(check_verdicts, name, right, wrong):
    check_verdicts(name, right, wrong)
    assert name in check.lesson09.__all__


@pytest.mark.parametrize("name", recipes.NAMES)
def test_every_recipe_trains_in_quick_mode(name):
    """The lesson's RETRAIN path: each recipe trains (tiny settings) and its model samples and is measured."""
    model, seconds = recipes.train(name, quick=True, verbose=False)
    assert seconds > 0 and not model.training
    row = recipes.measure(name, model, n=20, likelihood=False)
    assert row["samples"].shape == (20, 1, 8, 8) and row["nfe"] >= 1
