"""Checks for lesson 04 (generative adversarial networks).

- ``optimal_discriminator_logit``: the optimal discriminator between two Gaussians, derived by hand
  (``l*(x) = log p(x) - log q(x) = a x^2 + b x + c``), against ``torch.distributions``;
- ``gan_losses``: the discriminator's loss and the non-saturating generator loss from logits;
- ``gan_training_step``: one discriminator step and one generator step, two steps in a row;
- ``wgan_gradient_penalty``: WGAN-GP's penalty, differentiable in the critic's weights;
- ``gan_build_and_train``: a GAN built and trained on a 2D Gaussian, judged by what its samples achieve.

The checks of a step and of the penalty compare *outcomes* (losses, weights after the step, the penalty and its
gradient in the critic's weights). Their typical mistakes are run on the same cases and recognized by outcome;
the step check accepts either way of drawing the generator's noise (the discriminator's fakes reused, or fresh
noise after the discriminator's update), since both are the algorithm.
"""
import math

import torch

from gencourse import gan
from gencourse.exercises import Case, Mistake, close, run_check

__all__ = ["optimal_discriminator_logit", "gan_losses", "gan_training_step", "wgan_gradient_penalty",
           "gan_build_and_train"]


def _logits(n, seed, scale=3.0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * scale


def _outcome_compare(names, rtol=1e-4, atol=1e-5):
    """A ``compare`` for checks whose reference returns ``{"ok": [outcomes], "mistakes": [(message, outcome)]}``:
    an answer passes if it matches any accepted outcome; else the first mistake it matches names what is wrong."""
    def compare(got, want, case):
        if isinstance(got, str):  # the runner's description of an answer it could not use
            return False, got
        for ok in want["ok"]:
            if all(close(a, b, rtol=rtol, atol=atol)[0] for a, b in zip(got, ok)):
                return True, ""
        for message, wrong in want["mistakes"]:
            if not isinstance(wrong, str) and all(close(a, b, rtol=rtol, atol=atol)[0] for a, b in zip(got, wrong)):
                return False, message
        for name, a, b in zip(names, got, want["ok"][0]):
            ok, why = close(a, b, rtol=rtol, atol=atol)
            if not ok:
                return False, f"{name}: {why}"
        return False, "the answer differs from the reference"
    return compare


def _safe(outcome, fn, *args):
    """A mistake's outcome on a case, or a string where that mistake cannot run on it."""
    try:
        return outcome(fn, *args)
    except Exception as err:  # noqa: BLE001 - a mistake that crashes cannot be matched by outcome
        return f"raised {type(err).__name__}"


# ----------------------------------------------------------------------------------------------
# 1. The optimal discriminator between two Gaussians (a derivation)
# ----------------------------------------------------------------------------------------------

def _reference_optimal_logit(mu_p, sigma_p, mu_q, sigma_q):
    """(a, b, c) with log p(x) - log q(x) = a x^2 + b x + c, read off torch.distributions at x = -1, 0, 1."""
    p = torch.distributions.Normal(torch.tensor(mu_p, dtype=torch.float64), torch.tensor(sigma_p, dtype=torch.float64))
    q = torch.distributions.Normal(torch.tensor(mu_q, dtype=torch.float64), torch.tensor(sigma_q, dtype=torch.float64))
    f = lambda x: (p.log_prob(torch.tensor(x, dtype=torch.float64)) - q.log_prob(torch.tensor(x, dtype=torch.float64))).item()
    c = f(0.0)
    return (f(1.0) + f(-1.0)) / 2 - c, (f(1.0) - f(-1.0)) / 2, c


def _logit_flipped(mu_p, sigma_p, mu_q, sigma_q):
    a, b, c = _reference_optimal_logit(mu_p, sigma_p, mu_q, sigma_q)
    return -a, -b, -c


def _logit_sigma_as_variance(mu_p, sigma_p, mu_q, sigma_q):
    return _reference_optimal_logit(mu_p, math.sqrt(sigma_p), mu_q, math.sqrt(sigma_q))


def _logit_without_normalizers(mu_p, sigma_p, mu_q, sigma_q):
    a, b, c = _reference_optimal_logit(mu_p, sigma_p, mu_q, sigma_q)
    return a, b, c - math.log(sigma_q / sigma_p)


def _logit_without_half(mu_p, sigma_p, mu_q, sigma_q):
    a, b, c = _reference_optimal_logit(mu_p, sigma_p, mu_q, sigma_q)
    return 2 * a, 2 * b, 2 * (c - math.log(sigma_q / sigma_p)) + math.log(sigma_q / sigma_p)


OPTIMAL_LOGIT_MISTAKES = [
    Mistake("the sign is flipped: the optimal logit is log p(x) - log q(x), data over generator, so that "
            "D* = sigmoid(l*) is near 1 where the data are more likely.", fn=_logit_flipped),
    Mistake("sigma is a standard deviation: the Gaussian's exponent divides (x - mu)^2 by 2 sigma^2, and its "
            "normalizer is log sigma (not log sqrt(sigma)).", fn=_logit_sigma_as_variance),
    Mistake("the constant c misses the normalizers: log p - log q contains -log sigma_p + log sigma_q, which "
            "does not cancel when the two widths differ.", fn=_logit_without_normalizers),
    Mistake("the factor 1/2 of the Gaussian's exponent is missing: log N(x; mu, sigma^2) = -(x - mu)^2 / (2 sigma^2) "
            "- log sigma - log(2 pi) / 2.", fn=_logit_without_half),
]


def optimal_discriminator_logit(fn):
    """``fn(mu_p, sigma_p, mu_q, sigma_q) -> (a, b, c)`` with ``l*(x) = log p(x) - log q(x) = a x^2 + b x + c``
    for ``p = N(mu_p, sigma_p^2)``, ``q = N(mu_q, sigma_q^2)``."""
    cases = [Case(0.0, 1.0, 1.5, 0.7, label="p = N(0, 1), q = N(1.5, 0.7^2), the lesson's pair"),
             Case(2.0, 0.5, -1.0, 2.0, label="p = N(2, 0.5^2), q = N(-1, 2^2)"),
             Case(0.0, 1.0, 3.0, 1.0, label="equal widths: p = N(0, 1), q = N(3, 1)"),
             Case(-1.0, 0.3, -1.0, 1.2, label="equal means: p = N(-1, 0.3^2), q = N(-1, 1.2^2)")]
    return run_check("optimal_discriminator_logit", fn, cases, reference=_reference_optimal_logit, rtol=1e-4,
                     atol=1e-5, mistakes=OPTIMAL_LOGIT_MISTAKES,
                     hint="write out log N(x; mu, sigma^2) for p and for q, subtract the second from the first, and "
                          "collect powers of x: the x^2 terms give a, the terms linear in x give b, and everything "
                          "else, the normalizing constants included, gives c. With equal widths a must be 0.")


# ----------------------------------------------------------------------------------------------
# 2. The two losses
# ----------------------------------------------------------------------------------------------

def _reference_losses(real_logits, fake_logits):
    return gan.discriminator_loss(real_logits, fake_logits), gan.generator_loss(fake_logits, "non-saturating")


def _ns(fake_logits):
    return torch.nn.functional.softplus(-fake_logits).mean()


def _d_sigmoid_then_log(real_logits, fake_logits):
    d = -(torch.log(torch.sigmoid(real_logits)).mean() + torch.log(1 - torch.sigmoid(fake_logits)).mean())
    return d, _ns(fake_logits)


def _both_sigmoid_then_log(real_logits, fake_logits):
    return _d_sigmoid_then_log(real_logits, fake_logits)[0], -torch.log(torch.sigmoid(fake_logits)).mean()


def _d_one_mean_over_both(real_logits, fake_logits):
    logits = torch.cat([real_logits, fake_logits])
    labels = torch.cat([torch.ones_like(real_logits), torch.zeros_like(fake_logits)])
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels), _ns(fake_logits)


def _d_labels_swapped(real_logits, fake_logits):
    sp = torch.nn.functional.softplus
    return sp(real_logits).mean() + sp(-fake_logits).mean(), _ns(fake_logits)


def _g_minimax(real_logits, fake_logits):
    return gan.discriminator_loss(real_logits, fake_logits), -torch.nn.functional.softplus(fake_logits).mean()


def _g_fake_label(real_logits, fake_logits):
    return gan.discriminator_loss(real_logits, fake_logits), torch.nn.functional.softplus(fake_logits).mean()


def _g_sum(real_logits, fake_logits):
    return gan.discriminator_loss(real_logits, fake_logits), torch.nn.functional.softplus(-fake_logits).sum()


LOSSES_MISTAKES = [
    Mistake("sigmoid, then log: at a logit of +-150 the sigmoid rounds to exactly 0 or 1 and the log gives "
            "infinity. Write -log sigmoid(l) and -log(1 - sigmoid(l)) with softplus instead.", fn=_d_sigmoid_then_log),
    Mistake("both losses go through sigmoid, then log: at a logit of +-150 that gives infinity. Use softplus "
            "(or the with-logits cross-entropy) for each.", fn=_both_sigmoid_then_log),
    Mistake("the discriminator's loss takes one mean over real and fake logits together: that weights each "
            "side by its batch size. Average each term over its own batch, then add the two means.",
            fn=_d_one_mean_over_both),
    Mistake("the discriminator's labels are swapped: real data are labelled 1 (loss -log D(x)) and fakes 0 "
            "(loss -log(1 - D(G(z)))).", fn=_d_labels_swapped),
    Mistake("the generator's loss is the minimax one, log(1 - D(G(z))) = -softplus(l), which saturates; the "
            "non-saturating loss is -log D(G(z)).", fn=_g_minimax),
    Mistake("the generator's loss labels its fakes 0, like the discriminator does: minimizing -log(1 - D(G(z))) "
            "helps the discriminator. The generator wants its fakes called real: -log D(G(z)).", fn=_g_fake_label),
    Mistake("the generator's loss is summed over the batch, not averaged: it then grows with the batch size.",
            fn=_g_sum),
]


def gan_losses(fn):
    """``fn(real_logits (B,), fake_logits (B',)) -> (d_loss, g_loss)``: the discriminator's loss
    ``mean softplus(-real) + mean softplus(fake)`` and the non-saturating generator loss ``mean softplus(-fake)``."""
    cases = [
        Case(_logits(8, 0), _logits(8, 1), label="8 real and 8 fake logits"),
        Case(_logits(5, 2), _logits(12, 3), label="5 real and 12 fake logits (batch sizes differ)"),
        Case(torch.tensor([150.0, -150.0, 0.0]), torch.tensor([-150.0, 150.0, 0.0]),
             label="extreme logits of +-150 (sigmoid then log overflows)"),
    ]
    return run_check("gan_losses", fn, cases, reference=_reference_losses, rtol=1e-4, atol=1e-4,
                     mistakes=LOSSES_MISTAKES,
                     hint="with D = sigmoid(l): -log D = softplus(-l) and -log(1 - D) = softplus(l). The discriminator "
                          "labels real 1 and fake 0, each term averaged over its own batch; the non-saturating "
                          "generator wants its fakes labelled real.")


# ----------------------------------------------------------------------------------------------
# 3. Gradient penalty
# ----------------------------------------------------------------------------------------------

def _gp_case(seed, shape, batch):
    """A fresh critic, data and interpolation weights for one case."""
    torch.manual_seed(seed)
    dim = int(torch.tensor(shape).prod())
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1),
                                 torch.nn.Flatten(0))
    g = torch.Generator().manual_seed(seed)
    real, fake = torch.randn(batch, *shape, generator=g), torch.randn(batch, *shape, generator=g) + 1
    eps = torch.rand((batch,) + (1,) * len(shape), generator=g)
    return critic, real, fake, eps


GP_NOT_DIFFERENTIABLE = ("the penalty is not differentiable in the critic's weights: the input gradient was taken "
                         "without building its own graph, so the optimizer would get no gradient from the penalty.")


def _gp_outcome(fn, seed, shape, batch):
    critic, real, fake, eps = _gp_case(seed, shape, batch)
    gp = fn(critic, real, fake, eps)
    if not isinstance(gp, torch.Tensor) or gp.numel() != 1:
        return f"expected a scalar tensor, got {type(gp).__name__} of shape {tuple(getattr(gp, 'shape', ()))}"
    if not gp.requires_grad:
        return GP_NOT_DIFFERENTIABLE
    grads = torch.autograd.grad(gp.reshape(()), list(critic.parameters()), allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                      for g, p in zip(grads, critic.parameters())])
    return gp.detach().reshape(()), flat


def _reference_gp(critic, real, fake, eps):
    return gan.gradient_penalty(critic, real, fake, eps=eps)


def _gp_no_create_graph(critic, real, fake, eps):
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _gp_one_norm(critic, real, fake, eps):
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.norm() - 1) ** 2


def _gp_last_dim(critic, real, fake, eps):
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.norm(dim=-1) - 1) ** 2).mean()


def _gp_squared_norm(critic, real, fake, eps):
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).pow(2).sum(1) - 1) ** 2).mean()


def _gp_real_only(critic, real, fake, eps):
    x_hat = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _gp_eps_on_fake(critic, real, fake, eps):
    x_hat = (eps * fake + (1 - eps) * real).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


GP_MISTAKES = [
    Mistake(GP_NOT_DIFFERENTIABLE, example=_gp_no_create_graph),
    Mistake("one norm over the whole batch: the penalty asks each example's gradient to have norm 1, so take the "
            "norm per example (over all of its dimensions), then average the squared deviations.",
            example=_gp_one_norm),
    Mistake("the norm is taken over the last dimension only: for images (B, 1, 8, 8) that is a norm per pixel "
            "row. Take it per example over all of its dimensions.", example=_gp_last_dim),
    Mistake("the squared norm stands where the norm belongs: the penalty is (||grad|| - 1)^2, the norm itself "
            "minus 1, squared.", example=_gp_squared_norm),
    Mistake("the penalty is evaluated on the real data only: WGAN-GP evaluates it at random points between real "
            "and fake samples, where the critic's slope matters for the generator.", example=_gp_real_only),
    Mistake("eps weights the fake sample: x_hat = eps * real + (1 - eps) * fake, so eps = 1 is the real point.",
            example=_gp_eps_on_fake),
]


def _run_gp(fn):
    def run(seed, shape, batch):
        return _gp_outcome(fn, seed, shape, batch)
    return run


def _gp_expected(seed, shape, batch):
    return {"ok": [_gp_outcome(_reference_gp, seed, shape, batch)],
            "mistakes": [(m.message, _safe(_gp_outcome, m.example, seed, shape, batch)) for m in GP_MISTAKES]}


def wgan_gradient_penalty(fn):
    """``fn(critic, real (B, ...), fake (B, ...), eps (B, 1, ..., 1)) -> scalar``, differentiable in the critic."""
    cases = [Case(0, (2,), 6, label="2D points, B = 6"),
             Case(1, (2,), 9, label="2D points, B = 9, another critic"),
             Case(2, (1, 8, 8), 5, label="8x8 images (1, 8, 8), B = 5")]
    return run_check("wgan_gradient_penalty", _run_gp(fn), cases, reference=_gp_expected,
                     compare=_outcome_compare(("the penalty", "its gradient in the critic's weights"), atol=1e-5),
                     mistakes=GP_MISTAKES,
                     hint="build the points between real and fake with eps, ask autograd for the critic's gradient "
                          "with respect to those points (keeping the graph of that gradient, so the penalty can be "
                          "differentiated again), take each example's Euclidean norm over all its dimensions, and "
                          "average (norm - 1)^2 over the batch.")


# ----------------------------------------------------------------------------------------------
# 4. A training step (two in a row, so that gradients left over from one step would show in the next)
# ----------------------------------------------------------------------------------------------

LATENT = 4


def _players(seed):
    torch.manual_seed(seed)
    generator = gan.MLPGenerator(LATENT, 16, (1, 8, 8), output="sigmoid")
    discriminator = gan.MLPDiscriminator(64, 16)
    opt_g = torch.optim.SGD(generator.parameters(), lr=0.5)
    opt_d = torch.optim.SGD(discriminator.parameters(), lr=0.5)
    return generator, discriminator, opt_g, opt_d


def _batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 17, (n, 1, 8, 8), generator=g).float() / 16
    labels = torch.randint(0, 10, (n,), generator=g)
    return images, labels


def _params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _step_outcome(fn, seed, batch_size):
    """Two calls of ``fn`` on two batches -> (d1, g1, d2, g2, generator weights, discriminator weights)."""
    generator, discriminator, opt_g, opt_d = _players(seed)
    torch.manual_seed(1000 + seed)
    losses = []
    for k in range(2):
        real, _ = _batch(batch_size, 10 * seed + k)
        out = fn(generator, discriminator, opt_g, opt_d, real, LATENT)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            return f"expected a pair (d_loss, g_loss), got {type(out).__name__}"
        losses += [float(out[0]), float(out[1])]
    return (*losses, _params(generator), _params(discriminator))


def make_step(*, fresh_noise=False, detach=True, zero_d=True, zero_g=True, kind="non-saturating", noise_size=None):
    """A training step written with or without each typical mistake (for the check and its tests)."""
    def step(generator, discriminator, opt_g, opt_d, real, latent_dim):
        fake = generator(torch.randn(noise_size or len(real), latent_dim))
        d_loss = gan.discriminator_loss(discriminator(real), discriminator(fake.detach() if detach else fake))
        if zero_d:
            opt_d.zero_grad()
        d_loss.backward(retain_graph=not detach)
        opt_d.step()
        if fresh_noise:
            fake = generator(torch.randn(noise_size or len(real), latent_dim))
        g_loss = gan.generator_loss(discriminator(fake), kind)
        if zero_g:
            opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        return d_loss.item(), g_loss.item()
    return step


def _reference_step(generator, discriminator, opt_g, opt_d, real, latent_dim):
    return gan.train_step(generator, discriminator, opt_g, opt_d, real, latent_dim=latent_dim)


STEP_MISTAKE_SETTINGS = [
    ("the noise has a fixed batch size: draw as many z as the real batch holds (a last batch is often smaller).",
     dict(noise_size=16)),
    ("the discriminator's gradients are not reset before its backward pass: the generator's backward pass also "
     "fills the discriminator's .grad, and gradients accumulate from one step to the next. Zero each optimizer's "
     "gradients right before its own backward pass.", dict(zero_d=False)),
    ("the generator's gradients are not reset before its backward pass, so they accumulate from one step to the "
     "next.", dict(zero_g=False)),
    ("the generator's step uses the minimax loss log(1 - D(G(z))); the lesson trains with the non-saturating "
     "loss.", dict(kind="minimax")),
    ("the fakes are not detached in the discriminator's step, so its loss also sends gradients into the "
     "generator; with the generator's gradients not reset afterwards, they are added to the generator's own.",
     dict(detach=False, zero_g=False)),
]
STEP_MISTAKES = [Mistake(message, example=make_step(**settings)) for message, settings in STEP_MISTAKE_SETTINGS]


def _run_step(fn):
    def run(seed, batch_size):
        return _step_outcome(fn, seed, batch_size)
    return run


def _step_expected(seed, batch_size):
    ok = [_step_outcome(_reference_step, seed, batch_size), _step_outcome(make_step(fresh_noise=True), seed, batch_size)]
    mistakes = [(message, _safe(_step_outcome, make_step(fresh_noise=fresh, **settings), seed, batch_size))
                for message, settings in STEP_MISTAKE_SETTINGS for fresh in (False, True)]
    return {"ok": ok, "mistakes": mistakes}


def gan_training_step(fn):
    """``fn(generator, discriminator, opt_g, opt_d, real (B, 1, 8, 8), latent_dim) -> (d_loss, g_loss)``, called
    twice in a row on fresh players. Accepted: the generator's step on the discriminator step's fakes (noise drawn
    once per step, before the discriminator's update) or on fresh noise drawn after it."""
    cases = [Case(0, 16, label="two steps on batches of 16"),
             Case(1, 5, label="two steps on small batches of 5"),
             Case(2, 16, label="two steps on batches of 16, other weights")]
    names = ("d_loss of the first step", "g_loss of the first step", "d_loss of the second step",
             "g_loss of the second step", "the generator's weights after two steps",
             "the discriminator's weights after two steps")
    return run_check("gan_training_step", _run_step(fn), cases, reference=_step_expected,
                     compare=_outcome_compare(names), mistakes=STEP_MISTAKES,
                     hint="one step is two updates in turn. First the discriminator: its loss on the real batch and "
                          "on fakes that carry no gradient back to the generator; reset its gradients, backward, "
                          "step. Then the generator: the non-saturating loss on the fakes scored by the "
                          "discriminator just updated; reset its gradients, backward, step. Draw the noise with "
                          "torch.randn, as many rows as the real batch has, once before the discriminator's update "
                          "(or again after it, for the generator's step). Return the two losses as floats.")


# ----------------------------------------------------------------------------------------------
# 5. Build and train a GAN (judged by what it achieves)
# ----------------------------------------------------------------------------------------------

TOY_LATENT = 2


def _toy_loader(seed, mean, std, n=1000, batch_size=64):
    """(points, labels) batches of N(mean, diag(std^2)) in 2D, the last one smaller; labels are dummies."""
    g = torch.Generator().manual_seed(seed)
    x = torch.tensor(mean) + torch.tensor(std) * torch.randn(n, 2, generator=g)
    return [(x[i:i + batch_size], torch.zeros(len(x[i:i + batch_size]), dtype=torch.long))
            for i in range(0, n, batch_size)], x


TRAIN_NOT_MOVED = ("the samples are still where an untrained generator puts them, near the origin: the generator "
                   "never learns. Does its optimizer step after the generator's loss is backpropagated?")
TRAIN_MOVED_AWAY = ("the samples moved away from the data: the generator's loss rewards fakes the discriminator "
                    "rejects. It should reward fakes the discriminator calls real (the non-saturating loss).")
TRAIN_COLLAPSED = ("the samples sit near the data's mean but with almost no spread: the generator maps every z to "
                   "nearly the same point (collapse).")


def _train_outcome(fn, seed, mean, std, epochs):
    loader, x = _toy_loader(seed, mean, std)
    torch.manual_seed(seed)
    generator = fn(loader, TOY_LATENT, epochs, seed)
    if not isinstance(generator, torch.nn.Module):
        return f"expected the trained generator (an nn.Module), got {type(generator).__name__}"
    generator.eval()
    with torch.no_grad():
        samples = generator(torch.randn(4000, TOY_LATENT, generator=torch.Generator().manual_seed(99)))
    if not isinstance(samples, torch.Tensor) or samples.shape != (4000, 2):
        return f"the generator should map z (N, {TOY_LATENT}) to points (N, 2), got {tuple(samples.shape)}"
    if not torch.isfinite(samples).all():
        return "the generator's samples are not finite: the training diverged"
    return samples.mean(0), samples.std(0), x.mean(0), x.std(0)


def _compare_training(got, want, case):
    if isinstance(got, str):
        return False, got
    s_mean, s_std, x_mean, x_std = got
    error = (s_mean - x_mean).norm().item()
    ratio = s_std / x_std
    if error < 0.5 and bool(((ratio > 0.5) & (ratio < 2.0)).all()):
        return True, ""
    summary = (f"samples' mean {[round(v, 2) for v in s_mean.tolist()]} and std {[round(v, 2) for v in s_std.tolist()]}"
               f" against the data's {[round(v, 2) for v in x_mean.tolist()]} and {[round(v, 2) for v in x_std.tolist()]}")
    if s_mean.norm().item() < 0.6 and error > 1.0:
        return False, f"{summary}: {TRAIN_NOT_MOVED}"
    if error > x_mean.norm().item() + 0.5:
        return False, f"{summary}: {TRAIN_MOVED_AWAY}"
    if error < 0.5 and bool((ratio < 0.25).all()):
        return False, f"{summary}: {TRAIN_COLLAPSED}"
    return False, (f"{summary}: the mean should be within 0.5 and each std within 0.5x to 2x of the data's. "
                   "Check the networks and optimizers the exercise asks for, and that every batch is used.")


def fit_gan_reference(loader, latent_dim, epochs, seed, *, step=None):
    """The exercise's reference: the networks and optimizers it asks for, trained with ``step`` (default
    :func:`gan.train_step`, the non-saturating game) over ``(points, labels)`` batches."""
    torch.manual_seed(seed)
    generator = torch.nn.Sequential(torch.nn.Linear(latent_dim, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                                    torch.nn.ReLU(), torch.nn.Linear(64, 2))
    discriminator = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.LeakyReLU(0.2), torch.nn.Linear(64, 64),
                                        torch.nn.LeakyReLU(0.2), torch.nn.Linear(64, 1))
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    step = step or _reference_step
    for _ in range(epochs):
        for points, _labels in loader:
            step(generator, discriminator, opt_g, opt_d, points, latent_dim)
    return generator


def _generator_never_steps(generator, discriminator, opt_g, opt_d, real, latent_dim):
    return gan.train_step(generator, discriminator, opt_g, opt_d, real, latent_dim=latent_dim, update_generator=False)


def _generator_loss_flipped(generator, discriminator, opt_g, opt_d, real, latent_dim):
    fake = generator(torch.randn(len(real), latent_dim))
    d_loss = gan.discriminator_loss(discriminator(real), discriminator(fake.detach()))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = torch.nn.functional.softplus(discriminator(fake)).mean()  # the fakes' label 0: helps the discriminator
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return d_loss.item(), g_loss.item()


def _fit_without_generator_steps(loader, latent_dim, epochs, seed):
    return fit_gan_reference(loader, latent_dim, epochs, seed, step=_generator_never_steps)


def _fit_with_flipped_generator_loss(loader, latent_dim, epochs, seed):
    return fit_gan_reference(loader, latent_dim, epochs, seed, step=_generator_loss_flipped)


TRAIN_MISTAKES = [Mistake(TRAIN_NOT_MOVED, example=_fit_without_generator_steps),
                  Mistake(TRAIN_MOVED_AWAY, example=_fit_with_flipped_generator_loss)]


def _run_training(fn):
    def run(seed, mean, std, epochs):
        return _train_outcome(fn, seed, mean, std, epochs)
    return run


def gan_build_and_train(fn):
    """``fn(loader, latent_dim, epochs, seed) -> generator``: build, train and return a GAN's generator on 2D points.

    Judged by what it achieves: the mean of 4000 samples within 0.5 of the data's (which lies 2.2 from the origin,
    where an untrained generator puts its samples), each standard deviation within 0.5x to 2x of the data's, after
    60 epochs over 1000 points of a 2D Gaussian in batches of 64 (the last of 40). The reference passes on other
    seeds and another Gaussian too (see the tests); a GAN's samples circle the target as it trains, hence the
    tolerances."""
    cases = [Case(0, (2.0, -1.0), (0.5, 0.8), 60, label="N((2, -1), diag(0.5^2, 0.8^2)), 60 epochs")]
    return run_check("gan_build_and_train", _run_training(fn), cases, expected=[None] * len(cases),
                     compare=_compare_training, mistakes=TRAIN_MISTAKES,
                     hint="build the two networks and their Adam optimizers as the exercise says, seed torch first, "
                          "then for each epoch go over the loader's (points, labels) pairs and take one training "
                          "step on the points of each batch; return the generator.")
