"""Checks for lesson 03 (variational autoencoders).

References are independent computations: ``torch.distributions`` for the KL, the ELBO and the IWAE bound;
the reparameterization is checked by its moments and its gradients (a sample cannot be compared with another
sample); the training loop by what the VAE it trains achieves on the held-out validation digits.
"""
import math

import torch
from torch import distributions as D

from gencourse import vae
from gencourse.exercises import Case, Mistake, run_check

__all__ = ["gaussian_kl", "reparameterize", "negative_elbo", "fit_vae", "iwae_estimate"]


def _fmt(t):
    return "(" + ", ".join(f"{v:.3g}" for v in t.tolist()) + ")"


# ----------------------------------------------------------------------------------------------
# gaussian_kl: the closed form, derived
# ----------------------------------------------------------------------------------------------

def _reference_kl(mu, logvar):
    q = D.Normal(mu, torch.exp(0.5 * logvar))
    return D.kl_divergence(q, D.Normal(torch.zeros_like(mu), torch.ones_like(mu))).flatten(1).sum(1)


def _kl_terms(mu, logvar):
    return mu ** 2, logvar.exp(), logvar


def _kl_without_half(mu, logvar):
    m2, var, lv = _kl_terms(mu, logvar)
    return (m2 + var - 1 - lv).flatten(1).sum(1)


def _kl_logvar_as_log_std(mu, logvar):
    return 0.5 * (mu ** 2 + torch.exp(2 * logvar) - 1 - 2 * logvar).flatten(1).sum(1)


def _kl_mean_over_dims(mu, logvar):
    m2, var, lv = _kl_terms(mu, logvar)
    return 0.5 * (m2 + var - 1 - lv).flatten(1).mean(1)


def _kl_last_axis_only(mu, logvar):
    m2, var, lv = _kl_terms(mu, logvar)
    return 0.5 * (m2 + var - 1 - lv).sum(-1)


def _kl_without_minus_one(mu, logvar):
    m2, var, lv = _kl_terms(mu, logvar)
    return 0.5 * (m2 + var - lv).flatten(1).sum(1)


def _kl_log_sign(mu, logvar):
    m2, var, lv = _kl_terms(mu, logvar)
    return 0.5 * (m2 + var - 1 + lv).flatten(1).sum(1)


def gaussian_kl(fn):
    """``fn(mu, logvar) -> (B,)``: ``KL(N(mu, diag exp(logvar)) || N(0, I))`` summed over non-batch dims."""
    g = torch.Generator().manual_seed(31)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    cases = [
        Case(r(4, 3), r(4, 3), label="4 examples, latent 3"),
        Case(torch.zeros(2, 5, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64), label="q = p (KL = 0)"),
        Case(r(3, 2) * 3, r(3, 2) * 2 - 3, label="far from the prior, small variances"),
        Case(r(2, 2, 3), r(2, 2, 3), label="latents of shape (2, 3) per example: sum over both"),
    ]
    return run_check(
        "gaussian_kl", fn, cases, reference=_reference_kl, atol=1e-8,
        hint="per latent dimension, KL = E_q[log q(z) - log p(z)]: write both Gaussian log-densities at "
             "z = mu + sigma * eps, cancel the log(2 pi) terms, and use E[eps] = 0, E[eps^2] = 1; sigma^2 is "
             "exp(logvar). The dimensions are independent, so their KLs add up: one number per example.",
        mistakes=[
            Mistake("the factor 1/2 is missing: both Gaussian log-densities carry a 1/2 in front of the "
                    "squared terms and of log sigma^2.", _kl_without_half),
            Mistake("you read logvar as the log of the standard deviation: it is the log of the *variance*, so "
                    "sigma^2 = exp(logvar) and log sigma^2 = logvar.", _kl_logvar_as_log_std),
            Mistake("you averaged over the latent dimensions: the KL of independent dimensions is their *sum*.",
                    _kl_mean_over_dims),
            Mistake("you summed over the last axis only: sum over every axis but the batch (a code of shape "
                    "(2, 3) has 6 dimensions).", _kl_last_axis_only),
            Mistake("the constant is missing: E_q[log p(z)] and E_q[log q(z)] differ by a -1 per dimension, so "
                    "that the KL is 0 when q = p.", _kl_without_minus_one),
            Mistake("a sign error in the log-variance term: E_q[log q] contributes -log sigma^2 / 2 (a wide q has "
                    "a low density), so the KL grows as sigma shrinks.", _kl_log_sign),
        ])


# ----------------------------------------------------------------------------------------------
# reparameterize: moments and gradients
# ----------------------------------------------------------------------------------------------

_NO_GRADIENT = ("no gradient flows from z back to mu and logvar: .detach(), torch.no_grad() and .sample() cut the "
                "path; build z from mu and logvar with ordinary tensor arithmetic.")
_WRONG_STD = ("the spread of z is wrong: logvar is the log of the variance, so the standard deviation is "
              "exp(logvar / 2), not exp(logvar) or logvar itself.")
_NO_MU_PATH = ("dz/dmu should be 1 (z = mu + something that does not depend on mu): torch.normal(mu, std) draws "
               "the right numbers but its gradient with respect to mu is 0.")


def _reparam_case(mu_row, logvar_row, n, label):
    mu = torch.tensor(mu_row, dtype=torch.float64).expand(n, -1).clone().requires_grad_(True)
    logvar = torch.tensor(logvar_row, dtype=torch.float64).expand(n, -1).clone().requires_grad_(True)
    return Case(mu, logvar, label=label)


def _compare_reparameterized(got, expected, case):
    mu, logvar = case.args
    if not isinstance(got, torch.Tensor) or got.shape != mu.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return False, f"expected a tensor of shape {tuple(mu.shape)} (the shape of mu), got {shape}"
    n = len(got)
    z = got.detach().double()
    m0, s0 = mu.detach()[0], torch.exp(0.5 * logvar.detach()[0])
    mean, std = z.mean(0), z.std(0)
    if ((mean - m0).abs() > 5 * s0 / math.sqrt(n) + 1e-9).any():
        return False, f"the sample mean {_fmt(mean)} is not mu = {_fmt(m0)}"
    if ((std / s0 - 1).abs() > 0.05).any():
        return False, f"the sample standard deviation {_fmt(std)} is not exp(logvar / 2) = {_fmt(s0)}: " + _WRONG_STD
    if not got.requires_grad:
        return False, _NO_GRADIENT
    g_mu, g_logvar = torch.autograd.grad(got.sum(), [mu, logvar], allow_unused=True)
    if g_mu is None or not torch.allclose(g_mu.double(), torch.ones_like(mu), atol=1e-6):
        return False, _NO_MU_PATH
    if g_logvar is None or not torch.allclose(g_logvar.double(), 0.5 * (z - mu.detach()), atol=1e-5):
        return False, "dz/dlogvar should be (z - mu) / 2: the noise must be standard normal, scaled by exp(logvar / 2)"
    return True, ""


def _reparam_std_is_exp_logvar(mu, logvar):
    return mu + torch.exp(logvar) * torch.randn_like(mu)


def _reparam_detached(mu, logvar):
    return (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach()


def _reparam_torch_normal(mu, logvar):
    return torch.normal(mu, torch.exp(0.5 * logvar))


def reparameterize(fn):
    """``fn(mu, logvar) -> z``: a sample of ``N(mu, diag exp(logvar))`` that carries gradients."""
    cases = [
        _reparam_case([0.0, 0.0], [0.0, 0.0], 20_000, "20000 draws of N(0, I) in 2D"),
        _reparam_case([1.5, -2.0, 0.3], [math.log(4.0), math.log(0.25), 1.0], 20_000,
                      "20000 draws, mu = (1.5, -2, 0.3), variances (4, 0.25, e)"),
        _reparam_case([10.0], [math.log(9.0)], 20_000, "20000 draws of N(10, 9) (std 3, not 9)"),
    ]
    return run_check(
        "reparameterize", fn, cases, reference=vae.reparameterize, compare=_compare_reparameterized,
        hint="write z as a deterministic function of (mu, logvar) and of noise that does not depend on them: "
             "standard normal noise, scaled by the standard deviation and shifted by the mean.",
        mistakes=[Mistake(_WRONG_STD, example=_reparam_std_is_exp_logvar),
                  Mistake(_NO_GRADIENT, example=_reparam_detached),
                  Mistake(_NO_MU_PATH, example=_reparam_torch_normal)])


# ----------------------------------------------------------------------------------------------
# negative_elbo: the loss, with given noise, against torch.distributions
# ----------------------------------------------------------------------------------------------

class _GaussianDecoder:
    """``log p(x | z) = log N(x; W z + b, s^2 I)`` with x ``(B, D)`` and z ``(..., B, d)`` -> ``(..., B)``."""

    def __init__(self, W, b, s, offset=0.0):
        self.W, self.b, self.s, self.offset = W, b, s, offset

    def __call__(self, x, z):
        return D.Normal(z @ self.W.T + self.b, self.s).log_prob(x).sum(-1) + self.offset

    def __repr__(self):
        return "log_likelihood"


def _problem(g, batch, latent, dims, *, k=None, offset=0.0, s=0.5):
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
    decoder = _GaussianDecoder(r(dims, latent), r(dims), s, offset)
    x, mu, logvar = r(batch, dims), r(batch, latent), r(batch, latent) - 1.0
    eps = r(batch, latent) if k is None else r(k, batch, latent)
    return x, mu, logvar, eps, decoder


def _reference_negative_elbo(x, mu, logvar, eps, log_likelihood):
    q = D.Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * eps
    kl = D.kl_divergence(q, D.Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    return (kl - log_likelihood(x, z)).mean()


def _elbo_parts(x, mu, logvar, eps, log_likelihood, *, std=None):
    std = torch.exp(0.5 * logvar) if std is None else std
    z = mu + std * eps
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)
    return log_likelihood(x, z), kl


def _nelbo_is_elbo(x, mu, logvar, eps, log_likelihood):
    rec, kl = _elbo_parts(x, mu, logvar, eps, log_likelihood)
    return (rec - kl.sum(-1)).mean()


def _nelbo_kl_sign(x, mu, logvar, eps, log_likelihood):
    rec, kl = _elbo_parts(x, mu, logvar, eps, log_likelihood)
    return (-rec - kl.sum(-1)).mean()


def _nelbo_sum_over_batch(x, mu, logvar, eps, log_likelihood):
    rec, kl = _elbo_parts(x, mu, logvar, eps, log_likelihood)
    return (kl.sum(-1) - rec).sum()


def _nelbo_variance_as_std(x, mu, logvar, eps, log_likelihood):
    rec, kl = _elbo_parts(x, mu, logvar, eps, log_likelihood, std=logvar.exp())
    return (kl.sum(-1) - rec).mean()


def _nelbo_logvar_as_std(x, mu, logvar, eps, log_likelihood):
    rec, kl = _elbo_parts(x, mu, logvar, eps, log_likelihood, std=logvar)
    return (kl.sum(-1) - rec).mean()


def _nelbo_kl_mean_over_latents(x, mu, logvar, eps, log_likelihood):
    rec, kl = _elbo_parts(x, mu, logvar, eps, log_likelihood)
    return (kl.mean(-1) - rec).mean()


def _nelbo_no_kl(x, mu, logvar, eps, log_likelihood):
    rec, _ = _elbo_parts(x, mu, logvar, eps, log_likelihood)
    return (-rec).mean()


def negative_elbo(fn):
    """``fn(x, mu, logvar, eps, log_likelihood) -> scalar``: mean over the batch of ``KL - log p(x | z)``."""
    g = torch.Generator().manual_seed(32)
    cases = [Case(*_problem(g, 5, 2, 6), label="5 examples, latent 2, a linear-Gaussian decoder"),
             Case(*_problem(g, 3, 4, 10, s=0.1), label="3 examples, latent 4, a sharp decoder"),
             Case(*_problem(g, 4, 3, 5), label="4 examples, latent 3")]
    return run_check(
        "negative_elbo", fn, cases, reference=_reference_negative_elbo, atol=1e-6,
        hint="the ELBO of one example is the decoder's log-likelihood of x at the reparameterized code z minus "
             "the KL of its posterior from the prior (the exercise before); the loss is minus that, averaged "
             "over the batch, so that it reads in nats per image whatever the batch size.",
        mistakes=[
            Mistake("you returned the ELBO itself: it is to be maximized, so the loss to minimize is its negative.",
                    _nelbo_is_elbo),
            Mistake("the KL has the wrong sign: the ELBO is log p(x | z) *minus* the KL, so the loss is the KL "
                    "*minus* log p(x | z).", _nelbo_kl_sign),
            Mistake("you summed over the batch: average over the examples, so that the loss is in nats per image "
                    "and the learning rate does not depend on the batch size.", _nelbo_sum_over_batch),
            Mistake("z is drawn with the variance exp(logvar) as its scale: the standard deviation is "
                    "exp(logvar / 2).", _nelbo_variance_as_std),
            Mistake("z is drawn with logvar itself as its scale: the standard deviation is exp(logvar / 2).",
                    _nelbo_logvar_as_std),
            Mistake("the KL is averaged over the latent dimensions: it is their sum.", _nelbo_kl_mean_over_latents),
            Mistake("the KL term is missing: without it nothing ties q(z | x) to the prior the model samples from, "
                    "and the loss is not the negative ELBO.", _nelbo_no_kl),
        ])


# ----------------------------------------------------------------------------------------------
# fit_vae: the training loop, checked by what it trains
# ----------------------------------------------------------------------------------------------

FIT_EPOCHS, FIT_BATCH, FIT_LR = 15, 100, 3e-3
FIT_SEEDS = (0, 1)
FIT_THRESHOLD = 106.0  # held-out -ELBO in nats per image; a correct loop reaches about 100, the mistakes 110 and more
_FIT_SPLITS: dict = {}

_DETACHED = ("the encoder learned nothing but the prior (rate under 0.5 nat): no gradient reaches mu and logvar "
             "through z. Build z from mu and logvar with the reparameterization (no .detach(), no torch.no_grad(), "
             "no .sample()).")
_NO_PROGRESS = ("the loss did not go down: are the parameters updated after each backward pass (optimizer.step), "
                "and does the loss minimize the *negative* ELBO?")
_NO_ZERO_GRAD = ("training is unstable: the loss rose again after falling. Gradients add up in .grad across "
                 "backward calls; clear them before each backward pass (optimizer.zero_grad()).")
_NOT_ENOUGH = ("the VAE it trains is worse than the bar on held-out digits, though the loss went down: does each "
               "epoch visit every training image in mini-batches, and does each step use the negative ELBO of "
               "that batch?")


def _fit_splits():
    if not _FIT_SPLITS:
        from gencourse.data import load

        _FIT_SPLITS["train"], _FIT_SPLITS["val"] = load("digits", "train").images, load("digits", "val").images
    return _FIT_SPLITS["train"], _FIT_SPLITS["val"]


def _trained_by(fn):
    """Run the learner's loop on a fresh small VAE with a fixed seed; measure it on the validation digits."""
    def run(seed):
        x_train, x_val = _fit_splits()
        torch.manual_seed(seed)
        model = vae.VAE(x_train.shape[1:], latent_dim=8, hidden=128)
        losses = fn(model, x_train, FIT_EPOCHS, FIT_BATCH, FIT_LR)
        model.eval()
        with torch.no_grad():
            torch.manual_seed(1000 + seed)
            neg_elbo = -torch.stack([model.elbo(x_val) for _ in range(5)]).mean().item()
            rate = vae.gaussian_kl(*model.encode(x_val)).mean().item()
        return {"losses": losses, "neg_elbo": neg_elbo, "rate": rate}
    return run


def _compare_training(got, expected, case):
    losses = got["losses"]
    if not isinstance(losses, (list, tuple)) or len(losses) != FIT_EPOCHS:
        return False, (f"expected the list of the {FIT_EPOCHS} epochs' mean losses, got "
                       f"{type(losses).__name__}{'' if not hasattr(losses, '__len__') else f' of length {len(losses)}'}")
    try:
        losses = [float(v) for v in losses]
    except (TypeError, ValueError):
        return False, "the epoch losses must be numbers (use loss.item())"
    if not all(math.isfinite(v) for v in losses) or not math.isfinite(got["neg_elbo"]):
        return False, "training produced NaN or infinite values. " + _NO_ZERO_GRAD
    neg_elbo, rate = got["neg_elbo"], got["rate"]
    if neg_elbo <= FIT_THRESHOLD:
        return True, ""
    why = f"held-out -ELBO {neg_elbo:.4g} nats per image, not below {FIT_THRESHOLD:g}: "
    if min(losses) < losses[0] - 2.0 and losses[-1] > min(losses) + 3.0:
        return False, why + _NO_ZERO_GRAD
    if losses[-1] > losses[0] - 2.0:
        return False, why + _NO_PROGRESS
    if rate < 0.5:
        return False, why + _DETACHED
    return False, why + _NOT_ENOUGH


def _loop(model, images, epochs, batch_size, lr, *, detach=False, zero_grad=True, sign=1.0, step=True):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        order = torch.randperm(len(images))
        total = 0.0
        for i in range(0, len(images), batch_size):
            x = images[order[i:i + batch_size]]
            mu, logvar = model.encode(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            if detach:
                z = z.detach()
            kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
            loss = (kl - model.log_likelihood(x, z)).mean()
            if zero_grad:
                optimizer.zero_grad()
            (sign * loss).backward()
            if step:
                optimizer.step()
            total += loss.item() * len(x)
        history.append(total / len(images))
    return history


def _fit_detached(model, images, epochs, batch_size, lr):
    return _loop(model, images, epochs, batch_size, lr, detach=True)


def _fit_no_zero_grad(model, images, epochs, batch_size, lr):
    return _loop(model, images, epochs, batch_size, lr, zero_grad=False)


def _fit_ascent(model, images, epochs, batch_size, lr):
    return _loop(model, images, epochs, batch_size, lr, sign=-1.0)


def _fit_no_step(model, images, epochs, batch_size, lr):
    return _loop(model, images, epochs, batch_size, lr, step=False)


def fit_vae(fn):
    """``fn(model, images, epochs, batch_size, lr) -> list of epoch losses``: trains ``model`` in place.

    The check builds a fresh ``vae.VAE(latent_dim=8, hidden=128)`` for each of two torch seeds, calls ``fn`` on
    the 1000 training digits (15 epochs, batches of 100, Adam at 3e-3), and measures the trained VAE's -ELBO on
    the 350 validation digits: it passes below 106 nats per image (the per-pixel model of lesson 01 scores
    about 110 there; a correct loop reaches about 100 in a second or two).
    """
    cases = [Case(seed, label=f"a fresh VAE(latent_dim=8, hidden=128), torch seed {seed}") for seed in FIT_SEEDS]
    if not callable(fn):
        return run_check("fit_vae", fn, cases, expected=[None] * len(cases))
    return run_check(
        "fit_vae", _trained_by(fn), cases, expected=[None] * len(cases), compare=_compare_training,
        hint="one Adam optimizer over model.parameters(); each epoch visits the training images in a fresh random "
             "order, in mini-batches; for each batch: encode, draw eps, compute your negative ELBO with "
             "model.log_likelihood as the decoder, clear the old gradients, backpropagate, take a step. Record each "
             "epoch's mean loss.",
        mistakes=[Mistake(_DETACHED, example=_fit_detached),
                  Mistake(_NO_ZERO_GRAD, example=_fit_no_zero_grad),
                  Mistake(_NO_PROGRESS, example=_fit_ascent),
                  Mistake(_NO_PROGRESS, example=_fit_no_step)])


# ----------------------------------------------------------------------------------------------
# iwae_estimate: the importance-weighted bound with given noise, against torch.distributions
# ----------------------------------------------------------------------------------------------

def _reference_iwae(x, mu, logvar, eps, log_likelihood):
    q = D.Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * eps                                       # (k, B, d)
    prior = D.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    log_w = log_likelihood(x, z) + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    return torch.logsumexp(log_w, dim=0) - math.log(len(eps))


def _log_weights(x, mu, logvar, eps, log_likelihood):
    z = mu + torch.exp(0.5 * logvar) * eps
    return log_likelihood(x, z) + vae.gaussian_log_prob(z) - vae.gaussian_log_prob(z, mu, logvar)


def _iwae_naive(x, mu, logvar, eps, log_likelihood):
    return _log_weights(x, mu, logvar, eps, log_likelihood).exp().mean(0).log()


def _iwae_mean_of_logs(x, mu, logvar, eps, log_likelihood):
    return _log_weights(x, mu, logvar, eps, log_likelihood).mean(0)


def _iwae_without_log_k(x, mu, logvar, eps, log_likelihood):
    return torch.logsumexp(_log_weights(x, mu, logvar, eps, log_likelihood), 0)


def _iwae_without_q(x, mu, logvar, eps, log_likelihood):
    z = mu + torch.exp(0.5 * logvar) * eps
    log_w = log_likelihood(x, z) + vae.gaussian_log_prob(z)
    return torch.logsumexp(log_w, 0) - math.log(len(eps))


def _iwae_over_batch(x, mu, logvar, eps, log_likelihood):
    log_w = _log_weights(x, mu, logvar, eps, log_likelihood)
    return torch.logsumexp(log_w, -1) - math.log(log_w.shape[-1])


def iwae_estimate(fn):
    """``fn(x, mu, logvar, eps (k, B, d), log_likelihood) -> (B,)``: ``logsumexp_i log w_i - log k``."""
    g = torch.Generator().manual_seed(33)
    cases = [Case(*_problem(g, 4, 2, 6, k=10), label="k = 10, 4 examples, latent 2"),
             Case(*_problem(g, 3, 3, 5, k=7), label="k = 7, 3 examples, latent 3"),
             Case(*_problem(g, 2, 2, 6, k=50, offset=-900.0),
                  label="k = 50, log-weights near -900 nats (exp() underflows to 0)")]
    return run_check(
        "iwae_estimate", fn, cases, reference=_reference_iwae, atol=1e-6,
        hint="each importance weight is p(x | z_i) p(z_i) / q(z_i | x): in logs, a sum and a difference of "
             "log-densities, each summed over the latent dimension. The bound averages the k weights *inside* the "
             "log; weights of e^-900 underflow, so do the average in log space, over the sample axis.",
        mistakes=[
            Mistake("the weights underflowed: exp(log w) is 0 for log-weights near -900, and log(0) = -inf. "
                    "Average in log space (logsumexp).", _iwae_naive),
            Mistake("you averaged the log-weights: that is the ELBO estimate, the average *outside* the log. The "
                    "IWAE bound averages the weights inside it.", _iwae_mean_of_logs),
            Mistake("the - log k is missing: logsumexp gives the log of the *sum* of the weights, and the bound "
                    "uses their mean.", _iwae_without_log_k),
            Mistake("the proposal's density is missing: a weight is p(x | z) p(z) divided by q(z | x), the "
                    "density of the code under the encoder that proposed it.", _iwae_without_q),
            Mistake("you averaged over the batch axis: the k samples sit on axis 0, and each example keeps its "
                    "own bound.", _iwae_over_batch),
        ])
