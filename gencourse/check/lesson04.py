"""Checks for lesson 04 (generative adversarial networks).

References are :mod:`gencourse.gan`'s functions. The checks of a training step build fresh networks and
optimizers for each call from a seed and seed torch's generator right before it, so the learner's function
and the reference draw the same noise when both draw it once per batch with ``torch.randn(B, latent_dim)``.
"""
import torch

from gencourse import gan
from gencourse.exercises import Case, close, run_check

__all__ = ["gan_discriminator_loss", "non_saturating_generator_loss", "wgan_gradient_penalty",
           "gan_training_step", "gan_train_epoch"]


def _logits(n, seed, scale=3.0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * scale


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

def gan_discriminator_loss(fn):
    """``fn(real_logits (B,), fake_logits (B',)) -> scalar``: mean softplus(-real) + mean softplus(fake)."""
    cases = [
        Case(_logits(8, 0), _logits(8, 1), label="8 real and 8 fake logits"),
        Case(_logits(5, 2), _logits(12, 3), label="5 real and 12 fake logits (batch sizes differ)"),
        Case(torch.tensor([150.0, -150.0, 0.0]), torch.tensor([-150.0, 150.0, 0.0]),
             label="extreme logits of +-150 (sigmoid then log overflows)"),
    ]
    return run_check("gan_discriminator_loss", fn, cases, reference=gan.discriminator_loss, rtol=1e-4, atol=1e-4,
                     hint="with D = sigmoid(l): -log D(x) = softplus(-l) and -log(1 - D) = softplus(l); average each "
                          "term over its own batch and add the two means. Avoid sigmoid followed by log: use "
                          "F.softplus (or F.binary_cross_entropy_with_logits).")


def _non_saturating(fake_logits):
    return gan.generator_loss(fake_logits, "non-saturating")


def non_saturating_generator_loss(fn):
    """``fn(fake_logits (B,)) -> scalar``: -E log D(G(z)) = mean softplus(-l)."""
    cases = [
        Case(_logits(10, 4), label="10 random logits"),
        Case(torch.tensor([-8.0, -6.0, -9.0]), label="fakes the discriminator rejects (D ~ 1e-4)"),
        Case(torch.tensor([-150.0, 2.0]), label="an extreme logit of -150"),
    ]
    return run_check("non_saturating_generator_loss", fn, cases, reference=_non_saturating, rtol=1e-4, atol=1e-4,
                     hint="the non-saturating loss is -log D(G(z)) = softplus(-l), averaged; the minimax term "
                          "log(1 - D) = -softplus(l) is a different function.")


# ----------------------------------------------------------------------------------------------
# Gradient penalty
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


def _run_gp(fn):
    def run(seed, shape, batch):
        critic, real, fake, eps = _gp_case(seed, shape, batch)
        gp = fn(critic, real, fake, eps)
        if not isinstance(gp, torch.Tensor) or gp.numel() != 1:
            raise ValueError(f"expected a scalar tensor, got {type(gp).__name__}")
        if not gp.requires_grad:
            raise ValueError("the penalty is not differentiable in the critic's weights: compute the input "
                             "gradient with torch.autograd.grad(..., create_graph=True)")
        grads = torch.autograd.grad(gp.reshape(()), list(critic.parameters()), allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                          for g, p in zip(grads, critic.parameters())])
        return gp.detach().reshape(()), flat
    return run


def _reference_gp(critic, real, fake, eps):
    return gan.gradient_penalty(critic, real, fake, eps=eps)


def wgan_gradient_penalty(fn):
    """``fn(critic, real (B, ...), fake (B, ...), eps (B, 1, ..., 1)) -> scalar``, differentiable in the critic."""
    cases = [Case(0, (2,), 6, label="2D points, B = 6"),
             Case(1, (2,), 9, label="2D points, B = 9, another critic"),
             Case(2, (1, 8, 8), 5, label="8x8 images (1, 8, 8), B = 5")]
    return run_check("wgan_gradient_penalty", _run_gp(fn), cases, reference=_run_gp(_reference_gp), rtol=1e-4,
                     atol=1e-5,
                     hint="x_hat = eps * real + (1 - eps) * fake with requires_grad; grad = torch.autograd.grad("
                          "critic(x_hat).sum(), x_hat, create_graph=True)[0]; the norm is per example over all "
                          "its dimensions: grad.flatten(1).norm(dim=1); return ((norm - 1) ** 2).mean().")


# ----------------------------------------------------------------------------------------------
# A training step and an epoch
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


def _run_step(fn):
    def run(seed, batch_size):
        generator, discriminator, opt_g, opt_d = _players(seed)
        real, _ = _batch(batch_size, seed)
        torch.manual_seed(1000 + seed)
        out = fn(generator, discriminator, opt_g, opt_d, real, LATENT)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError(f"expected a pair (d_loss, g_loss), got {type(out).__name__}")
        return float(out[0]), float(out[1]), _params(generator), _params(discriminator)
    return run


def _reference_step(generator, discriminator, opt_g, opt_d, real, latent_dim):
    return gan.train_step(generator, discriminator, opt_g, opt_d, real, latent_dim=latent_dim)



def _compare_step(got, want, case):
    names = ("d_loss", "g_loss", "the generator's weights after the step", "the discriminator's weights after the step")
    for name, a, b in zip(names, got, want):
        ok, why = close(a, b, rtol=1e-4, atol=1e-5)
        if not ok:
            return False, f"{name}: {why}"
    return True, ""


def gan_training_step(fn):
    """``fn(generator, discriminator, opt_g, opt_d, real (B, 1, 8, 8), latent_dim) -> (d_loss, g_loss)``."""
    cases = [Case(0, 16, label="a batch of 16 images"),
             Case(1, 5, label="a smaller last batch of 5"),
             Case(2, 16, label="another batch of 16, other weights")]
    return run_check("gan_training_step", _run_step(fn), cases, reference=_run_step(_reference_step),
                     compare=_compare_step,
                     hint="draw z = torch.randn(len(real), latent_dim) once, "
                          "fake = generator(z); discriminator step on D(real) and D(fake.detach()) with gan.discriminator_loss; "
                          "then the generator step on D(fake) with gan.generator_loss; zero each optimizer's "
                          "gradients before its backward; return the two losses as floats.")


def _run_epoch(fn):
    def run(seed, sizes):
        generator, discriminator, opt_g, opt_d = _players(seed)
        loader = [_batch(n, seed + i) for i, n in enumerate(sizes)]
        torch.manual_seed(2000 + seed)
        out = fn(generator, discriminator, opt_g, opt_d, loader, LATENT)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError(f"expected a pair (mean d_loss, mean g_loss), got {type(out).__name__}")
        return float(out[0]), float(out[1]), _params(generator), _params(discriminator)
    return run


def _reference_epoch(generator, discriminator, opt_g, opt_d, loader, latent_dim):
    sums, count = [0.0, 0.0], 0
    for images, _ in loader:
        d, g = gan.train_step(generator, discriminator, opt_g, opt_d, images, latent_dim=latent_dim)
        sums[0], sums[1], count = sums[0] + d * len(images), sums[1] + g * len(images), count + len(images)
    return sums[0] / count, sums[1] / count


def gan_train_epoch(fn):
    """``fn(generator, discriminator, opt_g, opt_d, loader, latent_dim) -> (mean d_loss, mean g_loss)`` over an
    epoch of ``(images, labels)`` batches, each batch's loss weighted by its size."""
    cases = [Case(0, (8, 8, 3), label="batches of 8, 8 and a last batch of 3"),
             Case(1, (5, 2), label="batches of 5 and a last batch of 2"),
             Case(2, (6,), label="a single batch of 6")]
    return run_check("gan_train_epoch", _run_epoch(fn), cases, reference=_run_epoch(_reference_epoch),
                     compare=_compare_step,
                     hint="loop over (images, labels) pairs, call gan.train_step(generator, discriminator, opt_g, "
                          "opt_d, images, latent_dim=latent_dim) once per batch, and return sum(loss * len(images)) "
                          "/ sum(len(images)) for each loss: the epoch's mean, not the last batch's loss.")
