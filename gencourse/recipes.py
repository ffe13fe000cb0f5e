"""Every family's reference digits recipe in one place: build, train, sample, score.

Lessons 02-08 train their headline digits model with the family's ``train_digits``; this module names
those recipes so that lesson 09 can put them side by side on equal terms (same split, same metrics, same
machine). ``python -m gencourse.recipes`` trains every recipe and writes its ``state_dict`` to
``gencourse/assets/recipes/<name>.pt`` with the training seconds; :func:`load` reads it back with
``weights_only=True`` into the architecture :func:`build` makes.

    model = recipes.load("vae")             # or: model, seconds = recipes.train("vae")
    row = recipes.measure("vae", model)     # NLL, sample quality, sampling cost, parameters
"""
from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

CHECKPOINTS = Path(__file__).resolve().parent / "assets" / "recipes"
NUM_DIMS = 64  # 8x8 digits


@dataclass(frozen=True)
class Recipe:
    """One family's digits recipe.

    ``module``: the family's module in ``gencourse``, whose ``train_digits`` is the recipe.
    ``build()``: the untrained architecture (what a checkpoint loads into). ``train(**kw)``: the family's
    ``train_digits`` with the lesson's defaults -> ``(model, history)``. ``sample(model, n)``: the headline
    samples ``(n, 1, 8, 8)`` in [0, 1] (temperature 1, no guidance). ``nfe(model)``: network evaluations per
    sample of that sampler. ``nll(model, x)``: nats per image ``(B,)`` on the 17-level scale, or None.
    ``likelihood``: "exact", "bound" or "none". ``intro_dgm``: the test figure of Tomczak's intro_dgm code (README), or None.
    """

    name: str
    lesson: str
    module: str
    likelihood: str
    build: Callable[[], nn.Module]
    train: Callable[..., tuple]
    sample: Callable[[nn.Module, int], torch.Tensor]
    nfe: Callable[[nn.Module], int]
    sampler: str
    nll: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
    nll_note: str = ""
    intro_dgm: float | None = None
    intro_dgm_note: str = ""


# -- the recipes, one small block per family -------------------------------------------------------

def _autoencoder():
    from gencourse import autoencoder

    return Recipe(
        "autoencoder", "02", "autoencoder", "none",
        build=lambda: autoencoder.MLPAutoencoder((1, 8, 8), latent_dim=16),
        train=lambda **kw: autoencoder.train_digits(latent_dim=16, **kw),
        sample=_autoencoder_prior_samples, nfe=lambda m: 1, sampler="decoder mean of random codes z ~ N(0, I)")


def _autoencoder_prior_samples(model, n):
    """What "sample the latent space" means without a prior: decode codes ``z ~ N(0, I)``. (``model.sample``
    draws from a Gaussian fitted to the training codes instead: a second, fitted model.)"""
    z = torch.randn(n, model.latent_dim, device=model.code_mean.device)
    return model.decode(z)


def _vae():
    from gencourse import vae

    return Recipe(
        "VAE", "03", "vae", "bound",
        build=lambda: vae.VAE((1, 8, 8), latent_dim=16, hidden=256, levels=17, decoder="logistic", dropout=0.1),
        train=lambda **kw: vae.train_digits(**kw),
        sample=lambda m, n: m.sample(n), nfe=lambda m: 1, sampler="prior, decoder samples",
        nll=lambda m, x: m.nll(x, k=vae.NLL_K), nll_note=f"IWAE bound, k = {vae.NLL_K}",
        intro_dgm=93.5, intro_dgm_note="IWAE k=1000 (their -ELBO: 96.6)")


def _gan_build():
    from gencourse import gan

    model = gan.digits_gan("mlp")
    model.update_ema(1.0)  # creates the averaged generator that training keeps, so the state_dicts match
    return model


def _gan_train(*, verbose: bool = True, **kw):
    from gencourse import gan

    return gan.train_digits(**kw)


def _gan():
    return Recipe(
        "GAN", "04", "gan", "none", build=_gan_build, train=_gan_train,
        sample=lambda m, n: m.sample(n), nfe=lambda m: 1, sampler="generator (weights averaged over training)")


def _flow():
    from gencourse import flows

    return Recipe(
        "RealNVP", "05", "flows", "bound",
        build=lambda: flows.DigitsFlow(), train=lambda **kw: flows.train_digits(**kw),
        sample=lambda m, n: m.sample(n), nfe=lambda m: 1, sampler="inverse flow, temperature 1",
        nll=lambda m, x: m.nll(x), nll_note="dequantization bound, one draw",
        intro_dgm=167.0, intro_dgm_note="discrete bound of their continuous 122.5")


def _diffusion():
    from gencourse import diffusion

    return Recipe(
        "diffusion", "06", "diffusion", "none",
        build=lambda: diffusion.digits_model(), train=lambda **kw: diffusion.train_digits(**kw),
        sample=lambda m, n: m.sample(n), nfe=lambda m: m.schedule.T, sampler="ancestral DDPM, unguided",
        intro_dgm=None, intro_dgm_note="160.4, a -ELBO that is not comparable")


def _autoregressive():
    from gencourse import autoregressive

    return Recipe(
        "PixelCNN", "07", "autoregressive", "exact",
        build=lambda: autoregressive.build("pixelcnn"), train=lambda **kw: autoregressive.train_digits(**kw),
        sample=lambda m, n: m.sample(n), nfe=lambda m: NUM_DIMS, sampler="pixel by pixel, temperature 1",
        nll=lambda m, x: m.nll(x), nll_note="exact",
        intro_dgm=86.4, intro_dgm_note="exact, causal conv, 5-11 min of training")


FM_STEPS, FM_METHOD = 10, "euler"


def _flow_matching():
    from gencourse import flow_matching

    return Recipe(
        "flow matching", "08", "flow_matching", "bound",
        build=lambda: flow_matching.DigitsFlowMatching(), train=lambda **kw: flow_matching.train_digits(**kw),
        sample=lambda m, n: m.sample(n, steps=FM_STEPS, method=FM_METHOD),
        nfe=lambda m: FM_STEPS * (2 if FM_METHOD == "heun" else 1), sampler=f"ODE, {FM_STEPS} {FM_METHOD} steps",
        nll=lambda m, x: m.nll(x, steps=32, divergence="hutchinson", probes=2),
        nll_note="dequantization bound along the ODE (32 Heun steps, Hutchinson estimate)",
        intro_dgm=None, intro_dgm_note="105.4, not a valid likelihood")


_FACTORIES = {"autoencoder": _autoencoder, "vae": _vae, "gan": _gan, "flow": _flow, "diffusion": _diffusion,
              "autoregressive": _autoregressive, "flow_matching": _flow_matching}
NAMES = tuple(_FACTORIES)


def recipe(name: str) -> Recipe:
    """The :class:`Recipe` called ``name`` (one of :data:`NAMES`)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(NAMES)}")
    return _FACTORIES[name]()


# -- train, save, load -------------------------------------------------------------------------------

def train(name: str, *, seed: int = 0, quick: bool = False, device=None, verbose: bool = True):
    """Train recipe ``name`` as its lesson does -> ``(model in eval mode, training seconds)``."""
    r = recipe(name)
    start = time.perf_counter()
    model, _ = r.train(seed=seed, quick=quick, device=device, verbose=verbose)
    return model.eval(), time.perf_counter() - start


def fingerprint(name: str) -> str:
    """A hash of the family's ``train_digits`` source: a checkpoint records it, and a test compares, so that a
    changed recipe cannot go on being represented by a checkpoint of the old one (``make recipes`` rewrites)."""
    import hashlib
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(f"gencourse.{recipe(name).module}").train_digits)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def checkpoint_path(name: str, directory=None) -> Path:
    recipe(name)
    return Path(directory or CHECKPOINTS) / f"{name}.pt"


def save(name: str, model: nn.Module, seconds: float, directory=None) -> Path:
    """Write ``model.state_dict()`` and how it was trained (seconds, machine, date) to ``<name>.pt``."""
    from gencourse.bench import machine
    from gencourse.train import save_checkpoint

    return save_checkpoint(model, checkpoint_path(name, directory), recipe=name, train_seconds=float(seconds),
                           fingerprint=fingerprint(name),
                           machine=machine(), date=str(datetime.date.today()), torch=str(torch.__version__))


def load(name: str, directory=None, *, with_meta: bool = False):
    """Recipe ``name``'s checkpoint in :func:`build`'s architecture (``weights_only=True``), eval mode.

    ``with_meta=True`` also returns the metadata (``train_seconds``, ``machine``, ``date``)."""
    from gencourse.train import load_checkpoint

    path = checkpoint_path(name, directory)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint for {name!r} at {path}: run `python -m gencourse.recipes {name}` "
                                "to train it, or train in the lesson (RETRAIN = True)")
    model = recipe(name).build()
    meta = load_checkpoint(model, path)
    model.eval()
    return (model, meta) if with_meta else model


def count_parameters(model: nn.Module) -> int:
    """Trained parameters (a GAN's discriminator included, averaged copies excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# -- one row of the comparison -----------------------------------------------------------------------

def measure(name: str, model: nn.Module, *, n: int = 1000, seed: int = 0, likelihood: bool = True) -> dict:
    """Recipe ``name``'s row: sample quality of ``n`` headline samples (:func:`gencourse.metrics.sample_quality`),
    NFE and milliseconds per 1000 samples, parameters, and (``likelihood=True``, where the family has one)
    test and validation NLL in nats per image and test bits/dim. Seeded, so the row is repeatable."""
    from gencourse.data import load as load_data
    from gencourse.metrics import bits_per_dim, sample_quality
    from gencourse.train import seed_everything

    if isinstance(n, bool) or not isinstance(n, int) or n < 10:
        raise ValueError(f"n must be an integer >= 10 samples, got {n!r}")
    r = recipe(name)
    model.eval()
    seed_everything(seed)
    start = time.perf_counter()
    with torch.no_grad():
        samples = r.sample(model, n).detach().float().cpu()
    ms = (time.perf_counter() - start) * 1000 * 1000 / n
    row = {"name": r.name, "lesson": r.lesson, "likelihood": r.likelihood, "nfe": r.nfe(model),
           "ms_per_1000": ms, "params": count_parameters(model), "samples": samples, **sample_quality(samples)}
    if likelihood and r.nll is not None:
        seed_everything(seed)
        device = next(model.parameters()).device
        nll = {split: r.nll(model, load_data("digits", split).images.to(device)).mean().item()
               for split in ("test", "val")}
        row.update(nll_test=nll["test"], nll_val=nll["val"], bits_per_dim=bits_per_dim(nll["test"], NUM_DIMS))
    if not all(math.isfinite(v) for v in row.values() if isinstance(v, float)):
        raise FloatingPointError(f"{r.name}: a figure is not finite: {row}")
    return row


def baselines(*, n: int = 1000, seed: int = 0) -> list:
    """Rows for the two baselines that need no training, scored like :func:`measure`: the uniform model
    over the 17 levels (``64 ln 17`` nats) and the per-pixel categorical fitted on train (add-0.1)."""
    from gencourse import basics
    from gencourse.data import LEVELS, load as load_data
    from gencourse.metrics import bits_per_dim, sample_quality

    levels = LEVELS["digits"]
    g = torch.Generator().manual_seed(seed)
    rows = []
    uniform = torch.randint(0, levels, (n, 1, 8, 8), generator=g).float() / (levels - 1)
    nll = basics.uniform_nll(NUM_DIMS, levels)
    rows.append({"name": "uniform", "lesson": "01", "likelihood": "exact", "nfe": 0, "ms_per_1000": float("nan"),
                 "params": 0, "samples": uniform, "nll_test": nll, "nll_val": nll,
                 "bits_per_dim": bits_per_dim(nll, NUM_DIMS), **sample_quality(uniform)})
    model, _ = basics.train_digits()
    samples = model.sample(n, generator=g)
    nll = {split: model.nll(load_data("digits", split).images).mean().item() for split in ("test", "val")}
    rows.append({"name": "per-pixel categorical", "lesson": "01", "likelihood": "exact", "nfe": 0,
                 "ms_per_1000": float("nan"), "params": int(model.counts.numel()), "samples": samples,
                 "nll_test": nll["test"], "nll_val": nll["val"], "bits_per_dim": bits_per_dim(nll["test"], NUM_DIMS),
                 **sample_quality(samples)})
    return rows


def gaussian_digits(mean: torch.Tensor, scale_tril: torch.Tensor, eps: torch.Tensor, levels: int = 17) -> torch.Tensor:
    """Samples of a Gaussian over the 64 pixels on the digits' grid: ``y = mean + L eps`` (``mean: (64,)``,
    ``scale_tril L: (64, 64)``, ``eps: (n, 64)``), clipped to [0, 1], rounded to the nearest ``k / 16``
    -> ``(n, 1, 8, 8)``."""
    if eps.dim() != 2 or eps.shape[1] != mean.shape[-1] or scale_tril.shape != (mean.shape[-1],) * 2:
        raise ValueError(f"expected mean (D,), scale_tril (D, D), eps (n, D); got {tuple(mean.shape)}, "
                         f"{tuple(scale_tril.shape)}, {tuple(eps.shape)}")
    y = mean + eps @ scale_tril.T
    k = torch.round(y.clamp(0, 1) * (levels - 1))
    return (k / (levels - 1)).view(len(eps), 1, 8, 8)


def noise_mixture_nll(nll_model, nll_noise, weight: float) -> torch.Tensor:
    """NLL in nats ``(B,)`` under ``q = w p + (1 - w) u`` from the NLLs under ``p`` and ``u`` (Theis et al.
    2016): ``-log(w e^{-nll_model} + (1 - w) e^{-nll_noise})``, in log space so hundreds of nats do not underflow."""
    if not 0 < weight < 1:
        raise ValueError(f"weight must lie strictly between 0 and 1, got {weight!r}")
    a = torch.as_tensor(nll_model, dtype=torch.float64)
    b = torch.as_tensor(nll_noise, dtype=torch.float64).expand_as(a)
    return -torch.logaddexp(math.log(weight) - a, math.log1p(-weight) - b)


def real_row() -> dict:
    """Real test images' sample-quality figures (:func:`gencourse.metrics.reference_quality`), as a row."""
    from gencourse.data import load as load_data
    from gencourse.metrics import reference_quality

    return {"name": "real test images", "lesson": "", "likelihood": "", "samples": load_data("digits", "test").images,
            **reference_quality()}


COLUMNS = [  # (key, heading, format)
    ("name", "model", "{}"), ("likelihood", "NLL is", "{}"), ("nll_test", "test NLL", "{:.1f}"),
    ("nll_val", "val NLL", "{:.1f}"), ("bits_per_dim", "bits/dim", "{:.3f}"), ("intro_dgm", "intro_dgm", "{}"),
    ("recognized", "recognized", "{:.3f}"), ("classes_covered", "classes", "{:.0f}"), ("frechet", "Fréchet", "{:.1f}"),
    ("precision", "precision", "{:.2f}"), ("recall", "recall", "{:.2f}"), ("memorization", "memoriz.", "{:.2f}"),
    ("nfe", "NFE", "{:.0f}"), ("ms_per_1000", "ms/1000", "{:.0f}"), ("train_seconds", "train s", "{:.0f}"),
    ("params", "params", "{:,}"),
]


def format_table(rows, columns=COLUMNS) -> str:
    """A plain-text table of ``rows`` (dicts); missing or NaN entries show as a dash."""
    def cell(row, key, fmt):
        value = row.get(key)
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return fmt.format(value)

    table = [[heading for _, heading, _ in columns]] + [[cell(r, k, f) for k, _, f in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths)))
             for line in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Train the digits recipes and write their checkpoints.")
    parser.add_argument("names", nargs="*", help=f"recipes to train (default: all of {', '.join(NAMES)})")
    parser.add_argument("--directory", default=str(CHECKPOINTS), help="where the checkpoints go")
    parser.add_argument("--quick", action="store_true", help="tiny runs, to check that everything works")
    args = parser.parse_args(argv)
    for name in args.names or NAMES:
        model, seconds = train(name, quick=args.quick)
        path = save(name, model, seconds, args.directory)
        print(f"{name}: trained in {seconds:.1f} s -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
