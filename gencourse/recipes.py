"""Every family's reference digits recipe in one place: build, train, sample, score.

Lessons 02-10 train their headline digits model with the family's ``train_digits``; this module names
those recipes so that lesson 11 can put them side by side with the same data and split, the same metrics and a
similar CPU budget (what still differs between them, from parameters to model selection and likelihood
estimator, is listed by each :class:`Recipe`). ``python -m gencourse.recipes`` trains every recipe on the seeds
0, 1 and 2, measures its likelihood figures with :func:`likelihood`, and writes its ``state_dict`` with those
figures and the training seconds to ``gencourse/assets/recipes/<name>-seed<S>.pt``; :func:`load` reads it back
with ``weights_only=True`` into the architecture :func:`build` makes.

    model = recipes.load("vae", seed=1)     # or: model, seconds = recipes.train("vae", seed=1)
    row = recipes.measure("vae", model)     # NLL, sample quality, sampling cost, parameters

The estimator policy (one rule for every family, printed by lesson 11 and the instructor's guide): every
likelihood figure is nats per image on the 17-level scale, test with validation beside it, and says what it is:
``"exact"``, ``"bound"`` (a Monte Carlo estimate whose expectation is an upper bound on the NLL), ``"estimate
of a bound"`` (a bound computed through a discretization and a trace estimate, which can err either way) or
``"not computed"``. Every continuous model is scored with the same uniform dequantization: one draw per image,
the same draws for every model (:data:`DEQUANTIZATION_DRAWS`).
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
SEEDS = (0, 1, 2)  # every recipe is trained on these seeds (a verdict "holds on seeds 0-2")
DEQUANTIZATION_DRAWS = 1  # uniform dequantization draws per image, for every continuous model
FM_NLL_STEPS, FM_NLL_PROBES = 128, 2  # flow matching's likelihood: Heun steps of the ODE, Hutchinson probes
FM_CONVERGENCE_STEPS = (8, 16, 32, 64, 128, 256)  # its discretization table (the figure must move < 0.5 nat on doubling)
CONVERGED_NATS = 0.5
DIFFUSION_ODE_STEPS = (64, 128, 256)  # probability-flow ODE steps: the table, the last one reported
DIFFUSION_ODE_PROBES = 2
DIFFUSION_NLL_DRAWS = 64  # log-SNR values per image for diffusion's continuous-time bound (stratified)
DIFFUSION_STEPS_TABLE = (200, 1000, 4000)  # the discrete-time bounds that approach it


@dataclass(frozen=True)
class Recipe:
    """One family's digits recipe.

    ``module``: the family's module in ``gencourse``, whose ``train_digits`` is the recipe.
    ``build()``: the untrained architecture (what a checkpoint loads into). ``train(**kw)``: the family's
    ``train_digits`` with the lesson's defaults -> ``(model, history)``. ``sample(model, n)``: the headline
    samples ``(n, 1, 8, 8)`` in [0, 1] (temperature 1, no guidance). ``nfe(model)``: network evaluations per
    sample of that sampler. ``nll(model, x)``: nats per image ``(B,)`` on the 17-level scale, or None.
    ``likelihood``: what that figure is, "exact", "bound", "estimate of a bound" or "not computed";
    ``estimator``: how it is computed (importance samples, dequantization draws, ODE steps, trace probes), or
    why there is none. ``nll_steps(model, x, steps)``: the same estimate at another number of steps, for
    estimators that depend on a discretization (its table: ``convergence_steps``; ``reported_steps``, the steps of
    the reported figure, whose doubling must move it by less than :data:`CONVERGED_NATS`, or None where the
    reported figure is the limit itself and the table shows the approach). ``variational(model, seed)``: a learned
    dequantization noise for the fixed model and its paired test figures (lesson 08's experiment), or None.
    ``selection``: which weights are kept;
    ``conditioning``: what the network is conditioned on. ``intro_dgm``: the test figure of Tomczak's intro_dgm
    code (README), or None.
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
    estimator: str
    selection: str
    conditioning: str = "none (unconditional)"
    nll: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
    nll_steps: Callable[[nn.Module, torch.Tensor, int], torch.Tensor] | None = None
    convergence_steps: tuple = ()
    reported_steps: int | None = None
    ode_nll: Callable[[nn.Module, torch.Tensor, int], torch.Tensor] | None = None
    ode_steps: tuple = ()
    ode_estimator: str = ""
    variational: Callable[[nn.Module, int], dict] | None = None
    intro_dgm: float | None = None
    intro_dgm_note: str = ""


LIKELIHOOD_KINDS = ("exact", "bound", "estimate of a bound", "not computed")
BEST_VALIDATION = "best validation epoch (early stopping on val)"
FINAL_ANNEALED = "final weights of a fixed, cosine-annealed schedule"


# -- the recipes, one small block per family -------------------------------------------------------

def _autoencoder():
    from gencourse import autoencoder

    return Recipe(
        "autoencoder", "02", "autoencoder", "not computed",
        build=lambda: autoencoder.MLPAutoencoder((1, 8, 8), latent_dim=16),
        train=lambda **kw: autoencoder.train_digits(latent_dim=16, **kw),
        sample=_autoencoder_prior_samples, nfe=lambda m: 1, sampler="decoder mean of random codes z ~ N(0, I)",
        estimator="no density: a deterministic decoder and no prior over codes", selection=BEST_VALIDATION)


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
        nll=lambda m, x: m.nll(x, k=vae.NLL_K),
        estimator=f"IWAE bound, k = {vae.NLL_K} importance samples per image; a discrete decoder on the 17 levels "
                  "(no dequantization)",
        selection=BEST_VALIDATION,
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
        "GAN", "04", "gan", "not computed", build=_gan_build, train=_gan_train,
        sample=lambda m, n: m.sample(n), nfe=lambda m: 1, sampler="generator (weights averaged over training)",
        estimator="no density: an implicit model (a generator has no likelihood to evaluate)",
        selection="fixed number of steps, no validation; an exponential moving average of the generator")


def _flow():
    from gencourse import flows

    return Recipe(
        "RealNVP", "05", "flows", "bound",
        build=lambda: flows.DigitsFlow(), train=lambda **kw: flows.train_digits(**kw),
        sample=lambda m, n: m.sample(n), nfe=lambda m: 1, sampler="inverse flow, temperature 1",
        nll=lambda m, x: m.nll(x, draws=DEQUANTIZATION_DRAWS),
        estimator=f"dequantization (Jensen) bound, {DEQUANTIZATION_DRAWS} uniform draw per image (the same draws "
                  "as flow matching); exact log-determinants",
        variational=lambda m, seed: flows.learned_noise_experiment(
            m, seed=seed, uniform_nll=lambda x: m.nll(x, draws=DEQUANTIZATION_DRAWS)),
        selection=BEST_VALIDATION,
        intro_dgm=167.0, intro_dgm_note="discrete bound of their continuous 122.5")


def _diffusion():
    from gencourse import diffusion

    return Recipe(
        "diffusion", "06", "diffusion", "bound",
        build=lambda: diffusion.digits_model(), train=lambda **kw: diffusion.train_digits(**kw),
        sample=lambda m, n: m.sample(n), nfe=lambda m: m.schedule.T,
        sampler=f"ancestral DDPM, {diffusion.DIGITS_T} steps, unguided",
        nll=lambda m, x: m.continuous_nll(x, draws=DIFFUSION_NLL_DRAWS),
        nll_steps=lambda m, x, steps: m.nll(x, steps=steps), convergence_steps=DIFFUSION_STEPS_TABLE,
        ode_nll=lambda m, x, steps: m.pf_ode_nll(x, steps=steps, probes=DIFFUSION_ODE_PROBES),
        ode_steps=DIFFUSION_ODE_STEPS,
        ode_estimator=f"the same network's probability-flow ODE as the prior of a one-step bound at log-SNR 8 (one "
                      f"noise draw per image, the discrete decoder), Heun steps finer near the data, Hutchinson "
                      f"trace estimate with {DIFFUSION_ODE_PROBES} probes: an estimate of a bound",
        estimator=f"variational bound of the continuous-time model (the limit of the T-step bounds), "
                  f"{DIFFUSION_NLL_DRAWS} stratified log-SNR values per image, a discrete decoder on the 17 levels "
                  f"(no dequantization); the {diffusion.DIGITS_T}-step sampler's own bound is higher",
        selection=FINAL_ANNEALED,
        conditioning="class labels, dropped half the time in training; scored unconditionally (the no-label branch)",
        intro_dgm=None, intro_dgm_note="160.4, a -ELBO that is not comparable")


def _diffusion_likelihood():
    """Lesson 06's trade-off: the digits recipe with half its training times drawn uniform in log-SNR, the
    variational bound's own weighting of the noise levels (Kingma et al. 2021); not a capstone row."""
    from dataclasses import replace

    from gencourse import diffusion

    return replace(_diffusion(), name="diffusion (likelihood-weighted)", ode_nll=None,
                   build=lambda: diffusion.digits_model(time_sampling="likelihood"),
                   train=lambda **kw: diffusion.train_digits(time_sampling="likelihood", **kw))


def _diffusion_long():
    """Lesson 06's memorization study: the digits recipe trained for :data:`LONG_EPOCHS` epochs instead of
    ``DIGITS_EPOCHS``, otherwise the same (network, schedule, seed); not a capstone row."""
    from dataclasses import replace

    from gencourse import diffusion

    return replace(_diffusion(), name=f"diffusion ({LONG_EPOCHS} epochs)", ode_nll=None,
                   train=lambda **kw: diffusion.train_digits(epochs=LONG_EPOCHS, **kw))


def _diffusion_short():
    """Lesson 06's memorization study, the short end: the digits recipe trained for :data:`SHORT_EPOCHS` epochs."""
    from dataclasses import replace

    from gencourse import diffusion

    return replace(_diffusion(), name=f"diffusion ({SHORT_EPOCHS} epochs)", ode_nll=None,
                   train=lambda **kw: diffusion.train_digits(epochs=SHORT_EPOCHS, **kw))


def _diffusion_gaussian():
    """Lesson 06's ablation of the preconditioning: the digits recipe with the Gaussian skip in place of the
    per-pixel one, otherwise the same (network, epochs, seed)."""
    from dataclasses import replace

    from gencourse import diffusion

    return replace(_diffusion(), name="diffusion (Gaussian skip)", ode_nll=None,
                   build=lambda: diffusion.digits_model(skip="gaussian"),
                   train=lambda **kw: diffusion.train_digits(skip="gaussian", **kw))


LONG_EPOCHS, SHORT_EPOCHS = 1000, 100


def _autoregressive():
    from gencourse import autoregressive

    return Recipe(
        "PixelCNN", "07", "autoregressive", "exact",
        build=lambda: autoregressive.build("pixelcnn"), train=lambda **kw: autoregressive.train_digits(**kw),
        sample=lambda m, n: m.sample(n), nfe=lambda m: NUM_DIMS, sampler="pixel by pixel, temperature 1",
        nll=lambda m, x: m.nll(x), estimator="exact: one network pass, a categorical over the 17 levels per pixel",
        selection=BEST_VALIDATION,
        intro_dgm=86.4, intro_dgm_note="exact, causal conv, 5-11 min of training")


def _transformer():
    from gencourse import transformer

    return Recipe(
        "image GPT", "09", "transformer", "exact",
        build=lambda: transformer.DigitsGPT(dropout=0.2), train=lambda **kw: transformer.train_digits(**kw),
        sample=lambda m, n: m.sample(n), nfe=lambda m: NUM_DIMS,
        sampler="pixel by pixel with the KV cache, temperature 1",
        nll=lambda m, x: m.nll(x), estimator="exact: one network pass, a categorical over the 17 levels per pixel",
        selection=BEST_VALIDATION)


def _transformer_short():
    """Lesson 09's question of seconds: the image GPT recipe with its schedule over :data:`GPT_SHORT_EPOCHS` epochs
    instead of 100, otherwise the same (network, learning rate, warm-up and cosine decay, seed)."""
    from dataclasses import replace

    from gencourse import transformer

    def train(*, quick=False, **kw):
        return transformer.train_digits(epochs=None if quick else GPT_SHORT_EPOCHS, quick=quick, **kw)

    return replace(_transformer(), name=f"image GPT ({GPT_SHORT_EPOCHS} epochs)", train=train)


def _autoregressive_long():
    """Lesson 09's control for the question of seconds: the PixelCNN recipe allowed up to
    :data:`PIXELCNN_LONG_EPOCHS` epochs instead of 20, still stopped early on validation (patience 8), otherwise
    the same: whether more seconds would buy the PixelCNN a better likelihood."""
    from dataclasses import replace

    from gencourse import autoregressive

    def train(*, quick=False, **kw):
        return autoregressive.train_digits(epochs=None if quick else PIXELCNN_LONG_EPOCHS, quick=quick, **kw)

    return replace(_autoregressive(), name=f"PixelCNN (up to {PIXELCNN_LONG_EPOCHS} epochs)", train=train,
                   intro_dgm=None, intro_dgm_note="")


GPT_SHORT_EPOCHS, PIXELCNN_LONG_EPOCHS = 40, 160


def _tokens():
    from gencourse import vq

    return Recipe(
        "VQ-VAE + token GPT", "10", "vq", "bound",
        build=lambda: vq.TokenImageModel(), train=lambda **kw: vq.train_digits(**kw),
        sample=lambda m, n: m.sample(n), nfe=lambda m: m.prior.num_tokens,
        sampler="16 tokens one by one, temperature 1, then the decoder once",
        nll=lambda m, x: m.nll(x),
        estimator="-log p(k(x)) - log p(x | k(x)): the GPT's exact NLL of the encoder's 16 tokens plus a "
                  "discretized Gaussian head around the decoder's output (one scale, fitted on train); one term "
                  "of the sum over tokens, so an upper bound, with no Monte Carlo",
        selection="VQ-VAE: final weights of a cosine schedule; GPT prior: best validation epoch",
        conditioning="none (unconditional)")


LATENT_STEPS, LATENT_METHOD = 4, "heun"  # 8 network evaluations, then the decoder once


def _latent():
    from gencourse import latent

    return Recipe(
        "latent flow matching", "10", "latent", "not computed",
        build=lambda: latent.digits_model(), train=lambda **kw: latent.train_digits(**kw),
        sample=lambda m, n: m.sample(n, steps=LATENT_STEPS, method=LATENT_METHOD),
        nfe=lambda m: m.nfe(LATENT_METHOD, LATENT_STEPS),
        sampler=f"ODE in the latent, {LATENT_STEPS} {LATENT_METHOD} steps, then the decoder once",
        estimator="not computed: a deterministic decoder from a 16-number latent; a likelihood would need a "
                  "stochastic head and the latent's density through the ODE",
        selection="autoencoder: best validation epoch; DiT: final weights of a fixed, cosine-annealed schedule")


FM_STEPS, FM_METHOD = 5, "heun"  # Heun with its last step Euler's: 9 network evaluations


def _flow_matching():
    from gencourse import flow_matching

    return Recipe(
        "flow matching", "08", "flow_matching", "estimate of a bound",
        build=lambda: flow_matching.DigitsFlowMatching(), train=lambda **kw: flow_matching.train_digits(**kw),
        sample=lambda m, n: m.sample(n, steps=FM_STEPS, method=FM_METHOD),
        nfe=lambda m: m.nfe(FM_METHOD, FM_STEPS),
        sampler=f"ODE, {FM_STEPS} {FM_METHOD} steps" + (" (the last Euler's)" if FM_METHOD == "heun" else ""),
        nll=lambda m, x: m.nll(x, steps=FM_NLL_STEPS, divergence="hutchinson", probes=FM_NLL_PROBES),
        nll_steps=lambda m, x, steps: m.nll(x, steps=steps, divergence="hutchinson", probes=FM_NLL_PROBES),
        convergence_steps=FM_CONVERGENCE_STEPS, reported_steps=FM_NLL_STEPS,
        variational=lambda m, seed: flow_matching.variational_dequantization(m, seed=seed, eval_steps=FM_NLL_STEPS,
                                                                              probes=FM_NLL_PROBES),
        estimator=f"dequantization (Jensen) bound, {DEQUANTIZATION_DRAWS} uniform draw per image (the same draws as "
                  f"RealNVP); log-density by the probability-flow ODE, {FM_NLL_STEPS} Heun steps (finer near the "
                  f"data), Hutchinson trace estimate with {FM_NLL_PROBES} probes: discretization can move it "
                  "either way",
        selection=FINAL_ANNEALED, conditioning="none (unconditional); a small local conv net beside the MLP",
        intro_dgm=None, intro_dgm_note="105.4, not a valid likelihood")


def _flow_matching_conditional():
    """Lesson 08's guidance: the digits recipe with a class label, dropped half the time in training (one network,
    conditional and unconditional velocities), otherwise the same (network, epochs, seed); not a capstone row."""
    from dataclasses import replace

    from gencourse import flow_matching

    return replace(_flow_matching(), name="flow matching (class-conditional)", variational=None,
                   build=lambda: flow_matching.DigitsFlowMatching(num_classes=10, p_uncond=0.5),
                   train=lambda **kw: flow_matching.train_digits(num_classes=10, p_uncond=0.5, **kw),
                   conditioning="class label, dropped with probability 0.5 in training; sampled unconditionally")


def _flow_matching_gaussian():
    """Lesson 08's ablation of the closed form the network corrects: the digits recipe with the Gaussian's velocity
    in place of the per-pixel model's, otherwise the same (network, epochs, seed); not a capstone row."""
    from dataclasses import replace

    from gencourse import flow_matching

    return replace(_flow_matching(), name="flow matching (Gaussian prior)", variational=None,
                   build=lambda: flow_matching.DigitsFlowMatching(prior="gaussian"),
                   train=lambda **kw: flow_matching.train_digits(prior="gaussian", **kw))


def _flow_matching_reflow():
    """Lesson 08's few-step sampling on digits: the digits recipe of the same seed (its checkpoint) reflowed on its own
    ODE's pairs (:func:`gencourse.flow_matching.reflow_digits`), sampled with 2 Euler steps; not a capstone row.
    Retrain it after the flow-matching recipe."""
    from dataclasses import replace

    from gencourse import flow_matching

    def train(*, seed=0, quick=False, device=None, verbose=True, **kw):
        return flow_matching.reflow_digits(load("flow_matching", seed=seed).to(device or "cpu"), seed=seed,
                                           quick=quick, verbose=verbose)

    return replace(_flow_matching(), name="flow matching (reflowed)", train=train, likelihood="not computed",
                   variational=None,
                   nll=None, nll_steps=None, sample=lambda m, n: m.sample(n, steps=2, method="euler"),
                   nfe=lambda m: 2, sampler="ODE, 2 euler steps",
                   estimator="not computed (a model fine-tuned for few-step sampling)")


_FACTORIES = {"autoencoder": _autoencoder, "vae": _vae, "gan": _gan, "flow": _flow, "diffusion": _diffusion,
              "autoregressive": _autoregressive, "flow_matching": _flow_matching, "transformer": _transformer}
NAMES = tuple(_FACTORIES)  # the capstone's families, one headline recipe each
_TWO_STAGE = {"tokens": _tokens, "latent": _latent}
TWO_STAGE = tuple(_TWO_STAGE)  # lesson 10's models of a compressed digit: the capstone's section on latent spaces
EXTRA = {"diffusion_likelihood": _diffusion_likelihood, "diffusion_long": _diffusion_long,
         "diffusion_short": _diffusion_short, "diffusion_gaussian": _diffusion_gaussian,
         "flow_matching_conditional": _flow_matching_conditional, "flow_matching_gaussian": _flow_matching_gaussian,
         "flow_matching_reflow": _flow_matching_reflow, "transformer_short": _transformer_short,
         "autoregressive_long": _autoregressive_long}  # variants a lesson compares with its headline recipe
ALL = NAMES + TWO_STAGE + tuple(EXTRA)
TEXT = ("gpt_text",)  # lesson 09's character GPT on text (gencourse.transformer.save_text_recipe)


def recipe(name: str) -> Recipe:
    """The :class:`Recipe` called ``name`` (one of :data:`ALL`)."""
    factory = _FACTORIES.get(name) or _TWO_STAGE.get(name) or EXTRA.get(name)
    if factory is None:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(ALL)}")
    return factory()


# -- train, save, load -------------------------------------------------------------------------------

def train(name: str, *, seed: int = 0, quick: bool = False, device=None, verbose: bool = True):
    """Train recipe ``name`` as its lesson does -> ``(model in eval mode, training seconds)``."""
    model, seconds, _ = _train_with_history(name, seed=seed, quick=quick, device=device, verbose=verbose)
    return model, seconds


def _train_with_history(name: str, **kwargs):
    """:func:`train`, also returning the trainer's history (``None`` where it is not a :class:`History`)."""
    from gencourse.train import History

    start = time.perf_counter()
    model, history = recipe(name).train(**kwargs)
    return model.eval(), time.perf_counter() - start, history if isinstance(history, History) else None


def loss_curve(history) -> dict:
    """The per-epoch losses of a :class:`~gencourse.train.History` as plain lists, for a checkpoint's metadata
    (``meta["history"]``): a lesson that loads the recipe can still draw its training curve."""
    return {"train_loss": [float(v) for v in history.train_loss], "val_loss": [float(v) for v in history.val_loss]}


def fingerprint(name: str) -> str:
    """A hash of the family's ``train_digits``: its source and the values of its defaults (a module constant
    such as ``DIGITS_EPOCHS`` changes the recipe without changing the source). A checkpoint records it, and a
    test compares, so that a changed recipe cannot go on being represented by a checkpoint of the old one
    (``make recipes`` rewrites). A variant (:data:`EXTRA`) adds what makes it one: :func:`variant_settings`."""
    import importlib

    module = importlib.import_module(f"gencourse.{recipe(name).module}")
    # the model builder counts, where there is one, and so does the training loop a module names in RECIPE_SOURCES
    return source_fingerprint(module.train_digits, getattr(module, "digits_model", None),
                              *getattr(module, "RECIPE_SOURCES", ()),
                              prefix=variant_settings(name) if name in EXTRA else "")


def variant_settings(name: str) -> str:
    """What variant ``name`` changes in its family's recipe, as text for its fingerprint: its name, its factory's
    source, the values of this module's constants the factory names (``GPT_SHORT_EPOCHS = 40``) and the source of
    the family's functions it calls beyond ``train_digits`` (``reflow_digits``). A change to any of them makes
    the variant's checkpoints stale, as a change to ``train_digits`` does the recipe's."""
    import importlib
    import inspect

    factory = EXTRA[name]
    family = importlib.import_module(f"gencourse.{recipe(name).module}")
    names, codes = set(), [factory.__code__]
    while codes:  # the factory's names and those of the lambdas and functions defined inside it
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if inspect.iscode(c))
    parts = [name, inspect.getsource(factory)]
    for n in sorted(names):
        value = globals().get(n)
        if n.isupper() and isinstance(value, (int, float, str, tuple)):
            parts.append(f"{n} = {value!r}")
        elif n != "train_digits" and inspect.isfunction(getattr(family, n, None)):
            parts.append(_source_text(getattr(family, n)))
    return "\n".join(parts)


def source_fingerprint(*functions, prefix: str = "") -> str:
    """A hash of ``prefix`` and each function's source and default values (``None`` entries skipped): what
    :func:`fingerprint` stamps on a checkpoint, for any recipe (lesson 09's text model uses it too)."""
    import hashlib

    text = prefix + "".join(_source_text(fn) for fn in functions if fn is not None)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _source_text(fn) -> str:
    """A function's source and the values of its defaults (a default may name a constant)."""
    import inspect

    defaults = {k: repr(v.default) for k, v in inspect.signature(fn).parameters.items()
                if v.default is not inspect.Parameter.empty}
    return inspect.getsource(fn) + repr(sorted(defaults.items()))


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def checkpoint_path(name: str, directory=None, *, seed: int = 0) -> Path:
    """Where recipe ``name``'s checkpoint for ``seed`` lives: ``<directory>/<name>-seed<seed>.pt`` (one flat
    folder, so the package-data pattern ``assets/recipes/*.pt`` ships every seed)."""
    recipe(name)
    return Path(directory or CHECKPOINTS) / f"{name}-seed{_check_seed(seed)}.pt"


def save(name: str, model: nn.Module, seconds: float, directory=None, *, seed: int = 0,
         cpu_seconds: float | None = None, recipe_fingerprint: str | None = None, **extra) -> Path:
    """Write ``model.state_dict()`` and how it was trained (seed, wall-clock and CPU seconds, machine, date,
    the recipe's fingerprint) to :func:`checkpoint_path`; ``extra``: more plain metadata (e.g. ``likelihood``).
    ``recipe_fingerprint``: the :func:`fingerprint` taken when training started (default: now). Take it before
    training: it reads the source files, which may be edited while a long run trains."""
    from gencourse.bench import machine
    from gencourse.train import save_checkpoint

    return save_checkpoint(model, checkpoint_path(name, directory, seed=seed), recipe=name, seed=int(seed),
                           train_seconds=float(seconds), fingerprint=recipe_fingerprint or fingerprint(name),
                           cpu_seconds=float("nan") if cpu_seconds is None else float(cpu_seconds),
                           threads=torch.get_num_threads(), machine=machine(), date=str(datetime.date.today()),
                           torch=str(torch.__version__), **extra)


def load(name: str, directory=None, *, seed: int = 0, with_meta: bool = False):
    """Recipe ``name``'s checkpoint for ``seed`` in :func:`build`'s architecture (``weights_only=True``), eval mode.

    ``with_meta=True`` also returns the metadata (``seed``, ``train_seconds``, ``cpu_seconds``, ``machine``,
    ``date``, ``fingerprint`` and, where the family has one, ``likelihood``: the figures of :func:`likelihood`;
    ``history``: the per-epoch losses, for checkpoints trained since it was recorded, see :func:`loss_curve`)."""
    from gencourse.train import load_checkpoint

    path = checkpoint_path(name, directory, seed=seed)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint for {name!r} (seed {seed}) at {path}: run "
                                f"`python -m gencourse.recipes {name} --seeds {seed}` to train it, or train in the "
                                "lesson (RETRAIN = True)")
    model = recipe(name).build()
    meta = load_checkpoint(model, path)
    model.eval()
    return (model, meta) if with_meta else model


def count_parameters(model: nn.Module) -> int:
    """Trained parameters (a GAN's discriminator included, averaged copies excluded; a latent model's autoencoder,
    trained first and frozen, included)."""
    frozen = getattr(model, "autoencoder", None)
    first_stage = sum(p.numel() for p in frozen.parameters() if not p.requires_grad) if frozen is not None else 0
    return sum(p.numel() for p in model.parameters() if p.requires_grad) + first_stage


# -- likelihood: one estimator policy ----------------------------------------------------------------

def _mean_interval(values: torch.Tensor) -> tuple:
    """Mean of per-image figures and its 95% interval over test images (normal approximation)."""
    v = values.double()
    mean = v.mean().item()
    half = 1.96 * v.std().item() / math.sqrt(len(v)) if len(v) > 1 else 0.0
    return mean, (mean - half, mean + half)


def likelihood(name: str, model: nn.Module, *, seed: int = 0, convergence: bool = False) -> dict | None:
    """Recipe ``name``'s likelihood figures under the estimator policy, or None where it computes none.

    -> ``{"kind", "estimator", "nll_test", "nll_val", "bits_per_dim", "interval": {"nll_test": (lo, hi),
    "nll_val": (lo, hi)}, "seconds"}``: nats per image on the 17-level scale and test bits/dim; the intervals
    are 95% over the test (validation) images. The random draws (dequantization, importance samples, trace
    probes) are seeded with ``seed`` before each split, so every continuous model sees the same draws.
    ``convergence=True`` (estimators with ``nll_steps``): also ``"convergence": {"steps": [...], "nll_test":
    [...]}``, the test figure at the recipe's ``convergence_steps`` with the same draws, and ``"converged"``:
    whether doubling the recipe's ``reported_steps`` moves it by less than :data:`CONVERGED_NATS` (None where
    the reported figure is the limit of the table, not one of its rows); and, where the recipe has an ODE
    estimate (``ode_nll``), ``"pf_ode"``: its figures (:func:`_ode_figures`); where it has a learned
    dequantization experiment (``variational``), ``"variational"``: its paired figures.
    """
    from gencourse.data import load as load_data
    from gencourse.metrics import bits_per_dim
    from gencourse.train import seed_everything

    r = recipe(name)
    if r.nll is None:
        return None
    model.eval()
    device = next(model.parameters()).device
    start = time.perf_counter()
    out = {"kind": r.likelihood, "estimator": r.estimator, "interval": {}}
    for split in ("test", "val"):
        seed_everything(seed)
        values = r.nll(model, load_data("digits", split).images.to(device)).detach().cpu()
        out[f"nll_{split}"], out["interval"][f"nll_{split}"] = _mean_interval(values)
    out["bits_per_dim"] = bits_per_dim(out["nll_test"], NUM_DIMS)
    if convergence and r.nll_steps is not None:
        x = load_data("digits", "test").images.to(device)
        table = []
        for steps in r.convergence_steps:
            seed_everything(seed)
            table.append(r.nll_steps(model, x, steps).mean().item())
        out["convergence"] = {"steps": list(r.convergence_steps), "nll_test": table}
        out["converged"] = None
        if r.reported_steps is not None:
            i = r.convergence_steps.index(r.reported_steps)
            out["converged"] = i + 1 < len(table) and abs(table[i + 1] - table[i]) < CONVERGED_NATS
    if convergence and r.ode_nll is not None:
        out["pf_ode"] = _ode_figures(r, model, seed, device)
    out["seconds"] = time.perf_counter() - start
    if convergence and r.variational is not None:  # timed on its own: it trains a noise model
        out["variational"] = r.variational(model, seed)
    return out


def _ode_figures(r: Recipe, model: nn.Module, seed: int, device) -> dict:
    """A second likelihood estimate through the model's ODE (diffusion's probability flow): the test figure at
    each of ``r.ode_steps`` (the same draws), then test and validation at the last, with intervals."""
    from gencourse.data import load as load_data
    from gencourse.train import seed_everything

    x = {split: load_data("digits", split).images.to(device) for split in ("test", "val")}
    out = {"estimator": r.ode_estimator, "steps": list(r.ode_steps), "nll_test_by_steps": [], "interval": {}}
    for steps in r.ode_steps:
        seed_everything(seed)
        values = r.ode_nll(model, x["test"], steps).detach().cpu()
        out["nll_test_by_steps"].append(values.mean().item())
    out["nll_test"], out["interval"]["nll_test"] = _mean_interval(values)
    seed_everything(seed)
    out["nll_val"], out["interval"]["nll_val"] = _mean_interval(r.ode_nll(model, x["val"], r.ode_steps[-1]).detach().cpu())
    table = out["nll_test_by_steps"]
    out["converged"] = len(table) > 1 and abs(table[-1] - table[-2]) < CONVERGED_NATS
    return out


_likelihood = likelihood  # measure() takes an argument of the same name


# -- one row of the comparison -----------------------------------------------------------------------

def measure(name: str, model: nn.Module, *, n: int = 1000, seed: int = 0, likelihood: bool | dict = True) -> dict:
    """Recipe ``name``'s row: sample quality of ``n`` headline samples (:func:`gencourse.metrics.sample_quality`:
    the seven figures, ``n``, ``set_size``, ``subsets`` and ``interval``, their 95% intervals), NFE and
    milliseconds per 1000 samples, parameters, and the likelihood figures where the family has them
    (``nll_test``, ``nll_val``, ``bits_per_dim``, their intervals in ``row["interval"]``, ``estimator``).

    ``likelihood``: True computes them (:func:`likelihood`, seeded with ``seed``); a dict uses figures computed
    before (a checkpoint's ``meta["likelihood"]``), provided they came from the recipe's current estimator;
    False leaves them out. Seeded, so the row is repeatable."""
    from gencourse.metrics import sample_quality
    from gencourse.train import seed_everything

    if isinstance(n, bool) or not isinstance(n, int) or n < 10:
        raise ValueError(f"n must be an integer >= 10 samples, got {n!r}")
    r = recipe(name)
    model.eval()
    with torch.no_grad():
        r.sample(model, 2)  # warm-up: the first call of a network pays one-off costs the timing should not see
    seed_everything(seed)
    start = time.perf_counter()
    with torch.no_grad():
        samples = r.sample(model, n).detach().float().cpu()
    ms = (time.perf_counter() - start) * 1000 * 1000 / n
    quality = sample_quality(samples)
    row = {"name": r.name, "lesson": r.lesson, "likelihood": r.likelihood, "estimator": r.estimator,
           "nfe": r.nfe(model), "ms_per_1000": ms, "params": count_parameters(model), "samples": samples,
           **quality, "interval": dict(quality["interval"])}
    figures = None
    if isinstance(likelihood, dict):
        if likelihood.get("estimator") != r.estimator:
            raise ValueError(f"{r.name}: the stored likelihood figures came from another estimator "
                             f"({likelihood.get('estimator')!r}, now {r.estimator!r}): recompute them with "
                             f"`python -m gencourse.recipes --remeasure {name}`")
        figures = likelihood
    elif likelihood and r.nll is not None:
        figures = _likelihood(name, model, seed=seed)
    if figures is not None:
        row.update({k: figures[k] for k in ("nll_test", "nll_val", "bits_per_dim")})
        row["interval"].update({k: tuple(v) for k, v in figures["interval"].items()})
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
    rows.append({"name": "uniform", "lesson": "01", "likelihood": "exact", "estimator": "closed form, 64 ln 17",
                 "nfe": 0, "ms_per_1000": float("nan"), "params": 0, "samples": uniform, "nll_test": nll,
                 "nll_val": nll, "bits_per_dim": bits_per_dim(nll, NUM_DIMS), **sample_quality(uniform)})
    model, _ = basics.train_digits()
    samples = model.sample(n, generator=g)
    per_image = {split: model.nll(load_data("digits", split).images) for split in ("test", "val")}
    quality = sample_quality(samples)
    row = {"name": "per-pixel categorical", "lesson": "01", "likelihood": "exact",
           "estimator": "exact: counts on train, add-0.1 smoothing", "nfe": 0, "ms_per_1000": float("nan"),
           "params": int(model.counts.numel()), "samples": samples, **quality, "interval": dict(quality["interval"])}
    for split, values in per_image.items():
        row[f"nll_{split}"], row["interval"][f"nll_{split}"] = _mean_interval(values)
    row["bits_per_dim"] = bits_per_dim(row["nll_test"], NUM_DIMS)
    rows.append(row)
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


def real_row(set_size: int | None = None) -> dict:
    """The real row (:func:`gencourse.metrics.reference_quality` at ``set_size``, default the protocol's 350): the
    validation digits, which neither the classifier nor any recipe trained on, scored as if they were samples
    against the 447 test digits."""
    from gencourse.data import load as load_data
    from gencourse.metrics import reference_quality

    q = reference_quality(set_size=set_size)
    return {"name": f"real digits (val, {q['n']})", "lesson": "", "likelihood": "",
            "samples": load_data("digits", "val").images[:q["n"]], **q}


def copies_row(n: int | None = None) -> dict:
    """The copies ceiling (:func:`gencourse.metrics.copies_quality`): ``n`` training digits (default 350) scored as
    samples, what a model that memorized its training set would score (memorization 0)."""
    from gencourse.data import load as load_data
    from gencourse.metrics import copies_quality

    q = copies_quality(n=n)
    return {"name": "copies of training digits", "lesson": "", "likelihood": "",
            "samples": load_data("digits", "train").images[:q["n"]], **q}


# -- several seeds: mean, spread, and which gaps exceed the noise --------------------------------------

@dataclass(frozen=True)
class Summary:
    """One figure of one model over seeds: ``mean``; ``spread`` = the largest distance of a seed's value from
    the mean (``mean ± spread`` holds every seed); ``lo``, ``hi``: the envelope that :func:`separates` compares;
    ``values``: one per seed."""

    mean: float
    spread: float
    lo: float
    hi: float
    values: tuple


def summarize(rows, key: str) -> Summary | None:
    """:class:`Summary` of figure ``key`` over ``rows`` (one row per seed), or None if no row has a number there.

    The envelope ``lo``..``hi`` spans the seeds' values and, for the sample-quality figures
    (:data:`gencourse.metrics.QUALITY_KEYS`), each seed's 95% interval: every model draws its own samples, so
    their sampling noise adds to the seeds'. For the likelihood figures it spans the seeds' values only: every
    model is scored on the same test images, so the test set's sampling noise is shared and cancels in a
    comparison (timings and parameters have no interval)."""
    from gencourse.metrics import QUALITY_KEYS

    values, lows, highs = [], [], []
    for row in rows:
        v = row.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        values.append(float(v))
        lo, hi = row.get("interval", {}).get(key, (v, v)) if key in QUALITY_KEYS else (v, v)
        lows.append(min(float(lo), float(v)))
        highs.append(max(float(hi), float(v)))
    if not values:
        return None
    mean = sum(values) / len(values)
    return Summary(mean, max(abs(v - mean) for v in values), min(lows), max(highs), tuple(values))


def separates(a: Summary, b: Summary) -> bool:
    """Whether a figure separates two models: their envelopes (every seed's value and 95% interval) do not
    overlap. Otherwise the gap is within noise."""
    return a.hi < b.lo or b.hi < a.lo


def best(summaries: dict, higher: bool) -> tuple:
    """``(name of the best mean, [names within noise of it])`` from ``{name: Summary}``; ``(None, [])`` if empty."""
    ranked = sorted(summaries, key=lambda k: summaries[k].mean, reverse=higher)
    if not ranked:
        return None, []
    top = ranked[0]
    return top, [k for k in ranked[1:] if not separates(summaries[top], summaries[k])]


def _cell(summary: Summary | None, fmt: str, integer: bool = False) -> str:
    if summary is None:
        return "—"
    if integer:
        lo, hi = int(min(summary.values)), int(max(summary.values))
        return f"{lo}" if lo == hi else f"{lo}-{hi}"
    if len(summary.values) == 1 or summary.spread == 0:
        return fmt.format(summary.mean)
    return f"{fmt.format(summary.mean)}±{fmt.format(summary.spread)}"


def format_seed_table(groups: dict, columns) -> str:
    """A plain-text table of ``{name: [row per seed]}``: each cell ``mean±spread`` over the seeds (a single
    value where there is one row or the seeds agree; a range for whole numbers; a dash where missing).
    ``columns``: ``(key, heading, format)``; format ``"int"`` shows a range of whole numbers, ``"{}"`` text."""
    table = [[heading for _, heading, _ in columns]]
    for name, rows in groups.items():
        line = []
        for key, _, fmt in columns:
            if key == "name":
                line.append(name)
            elif fmt == "{}":
                values = {str(r.get(key)) for r in rows if r.get(key) not in (None, "")}
                line.append(", ".join(sorted(values)) or "—")
            else:
                line.append(_cell(summarize(rows, key), fmt, integer=fmt == "int"))
        table.append(line)
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths)))
             for line in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


COLUMNS = [  # (key, heading, format)
    ("name", "model", "{}"), ("likelihood", "NLL is", "{}"), ("nll_test", "test NLL", "{:.1f}"),
    ("nll_val", "val NLL", "{:.1f}"), ("bits_per_dim", "bits/dim", "{:.3f}"), ("intro_dgm", "intro_dgm", "{}"),
    ("recognized", "recognized", "{:.3f}"), ("classes_covered", "classes", "{:.0f}"), ("frechet", "Fréchet", "{:.1f}"),
    ("precision", "precision", "{:.2f}"), ("recall", "coverage", "{:.2f}"), ("memorization", "memoriz.", "{:.2f}"),
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


def _remeasure(name: str, seed: int, directory) -> str:
    """Recompute a checkpoint's likelihood figures (the estimator changed) and rewrite it, weights unchanged."""
    from gencourse.train import save_checkpoint

    model, meta = load(name, directory, seed=seed, with_meta=True)
    meta["likelihood"] = likelihood(name, model, seed=seed, convergence=True)
    if meta["likelihood"] is None:
        meta.pop("likelihood")
    save_checkpoint(model, checkpoint_path(name, directory, seed=seed), **meta)
    return "likelihood " + ("not computed" if "likelihood" not in meta else f"test {meta['likelihood']['nll_test']:.2f}")


def _remeasure_variational(name: str, seed: int, directory) -> str:
    """(Re)compute only a checkpoint's learned-dequantization figures and rewrite it, weights and the other
    figures unchanged (what a full run of :func:`likelihood` would add)."""
    from gencourse.train import save_checkpoint

    r = recipe(name)
    if r.variational is None:
        return "no learned-dequantization experiment"
    model, meta = load(name, directory, seed=seed, with_meta=True)
    meta["likelihood"]["variational"] = figures = r.variational(model.eval(), seed)
    save_checkpoint(model, checkpoint_path(name, directory, seed=seed), **meta)
    return f"learned noise: test {figures['nll_test_variational']:.2f} against uniform {figures['nll_test_uniform']:.2f}"


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Train the digits recipes, measure their likelihood figures and "
                                                 "write their checkpoints.")
    parser.add_argument("names", nargs="*", help=f"recipes to train (default: all of {', '.join(ALL + TEXT)})")
    parser.add_argument("--digits", action="store_true",
                        help="every digits recipe, not the text one (make recipes trains that apart, on two threads)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="training seeds (default: 0 1 2)")
    parser.add_argument("--directory", default=str(CHECKPOINTS), help="where the checkpoints go")
    parser.add_argument("--quick", action="store_true", help="tiny runs, to check that everything works")
    parser.add_argument("--remeasure", action="store_true",
                        help="keep the weights, recompute the likelihood figures (after an estimator change)")
    parser.add_argument("--variational", action="store_true",
                        help="keep the weights and figures, (re)compute only the learned-dequantization experiment")
    args = parser.parse_args(argv)
    if args.digits and args.names:
        parser.error("give recipe names or --digits, not both")
    names = list(ALL) if args.digits else args.names or list(ALL + TEXT)
    for name in names:
        if name not in TEXT:
            recipe(name)  # an unknown name fails before any training
    for seed in args.seeds:
        for name in names:
            if (args.remeasure or args.variational) and name in TEXT:
                print(f"{name} seed {seed}: its figures come with training; nothing to remeasure", flush=True)
                continue
            if name in TEXT:  # lesson 09's character model: not a digits recipe, no sample-quality row
                from gencourse import transformer

                print(f"{name} seed {seed}: {transformer.save_text_recipe(seed, args.directory, quick=args.quick)}",
                      flush=True)
                continue
            if args.remeasure or args.variational:
                run = _remeasure_variational if args.variational else _remeasure
                print(f"{name} seed {seed}: {run(name, seed, args.directory)}", flush=True)
                continue
            cpu, stamp = time.process_time(), fingerprint(name)  # the source as it is when training starts
            model, seconds, history = _train_with_history(name, seed=seed, quick=args.quick, verbose=False)
            cpu = time.process_time() - cpu
            figures = likelihood(name, model, seed=seed, convergence=not args.quick)
            extra = {} if figures is None else {"likelihood": figures}
            if history is not None:
                extra["history"] = loss_curve(history)
            path = save(name, model, seconds, args.directory, seed=seed, cpu_seconds=cpu, recipe_fingerprint=stamp,
                        **extra)
            print(f"{name} seed {seed}: trained in {seconds:.1f} s ({cpu:.1f} s of CPU) -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
