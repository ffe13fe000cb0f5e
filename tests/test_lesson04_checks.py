"""The checks of lesson 04: the reference passes, typical mistakes fail, an unsolved exercise is "not attempted"."""
import pytest
import torch
from torch.nn import functional as F

from gencourse import check, exercises, gan


def _unsolved(*args, **kwargs):
    raise NotImplementedError


# ---- references, written as a learner would ----------------------------------------------------

def _d_loss(real_logits, fake_logits):
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def _ns_loss(fake_logits):
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def _gp(critic, real, fake, eps):
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _step(generator, discriminator, opt_g, opt_d, real, latent_dim):
    z = torch.randn(len(real), latent_dim)
    fake = generator(z)
    d_loss = gan.discriminator_loss(discriminator(real), discriminator(fake.detach()))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = gan.generator_loss(discriminator(fake))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return d_loss.item(), g_loss.item()


def _epoch(generator, discriminator, opt_g, opt_d, loader, latent_dim):
    d_sum = g_sum = n = 0.0
    for images, _labels in loader:
        d, g = gan.train_step(generator, discriminator, opt_g, opt_d, images, latent_dim=latent_dim)
        d_sum, g_sum, n = d_sum + d * len(images), g_sum + g * len(images), n + len(images)
    return d_sum / n, g_sum / n


# ---- typical mistakes ----------------------------------------------------------------------------

def _d_loss_sigmoid_then_log(real_logits, fake_logits):
    return -(torch.log(torch.sigmoid(real_logits)).mean() + torch.log(1 - torch.sigmoid(fake_logits)).mean())


def _d_loss_one_mean_over_both(real_logits, fake_logits):
    logits = torch.cat([real_logits, fake_logits])
    labels = torch.cat([torch.ones_like(real_logits), torch.zeros_like(fake_logits)])
    return F.binary_cross_entropy_with_logits(logits, labels)


def _minimax_instead(fake_logits):
    return -F.softplus(fake_logits).mean()


def _gp_not_differentiable(critic, real, fake, eps):
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _gp_batch_norm(critic, real, fake, eps):
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.norm() - 1) ** 2


def _step_fixed_noise(generator, discriminator, opt_g, opt_d, real, latent_dim):
    z = torch.randn(16, latent_dim)  # the configured batch size, not the batch at hand
    fake = generator(z)
    d_loss = gan.discriminator_loss(discriminator(real), discriminator(fake.detach()))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = gan.generator_loss(discriminator(fake))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return d_loss.item(), g_loss.item()


def _step_without_detach(generator, discriminator, opt_g, opt_d, real, latent_dim):
    opt_g.zero_grad()
    z = torch.randn(len(real), latent_dim)
    fake = generator(z)
    d_loss = gan.discriminator_loss(discriminator(real), discriminator(fake))  # pushes gradients into G too
    opt_d.zero_grad()
    d_loss.backward(retain_graph=True)
    opt_d.step()
    g_loss = gan.generator_loss(discriminator(fake))
    g_loss.backward()  # G's gradients now hold the discriminator's loss as well
    opt_g.step()
    return d_loss.item(), g_loss.item()


def _epoch_last_batch(generator, discriminator, opt_g, opt_d, loader, latent_dim):
    for images, _labels in loader:
        d, g = gan.train_step(generator, discriminator, opt_g, opt_d, images, latent_dim=latent_dim)
    return d, g


def _epoch_unweighted(generator, discriminator, opt_g, opt_d, loader, latent_dim):
    losses = [gan.train_step(generator, discriminator, opt_g, opt_d, images, latent_dim=latent_dim)
              for images, _ in loader]
    return sum(d for d, _ in losses) / len(losses), sum(g for _, g in losses) / len(losses)


CASES = [
    ("gan_discriminator_loss", _d_loss, _d_loss_sigmoid_then_log),
    ("gan_discriminator_loss", _d_loss, _d_loss_one_mean_over_both),
    ("non_saturating_generator_loss", _ns_loss, _minimax_instead),
    ("wgan_gradient_penalty", _gp, _gp_not_differentiable),
    ("wgan_gradient_penalty", _gp, _gp_batch_norm),
    ("gan_training_step", _step, _step_fixed_noise),
    ("gan_training_step", _step, _step_without_detach),
    ("gan_train_epoch", _epoch, _epoch_last_batch),
    ("gan_train_epoch", _epoch, _epoch_unweighted),
]


@pytest.mark.parametrize("name,reference,wrong", CASES, ids=[f"{c[0]}-{c[2].__name__}" for c in CASES])
def test_reference_passes_wrong_fails_unsolved_is_not_attempted(name, reference, wrong, monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    run = getattr(check, name)
    run(reference)
    assert exercises.results[name].status == exercises.PASSED, exercises.results[name].text()
    run(wrong)
    assert exercises.results[name].status == exercises.FAILED
    assert "Hint" in capsys.readouterr().out
    run(_unsolved)
    assert exercises.results[name].status == exercises.NOT_ATTEMPTED


def test_the_module_references_pass_their_own_checks(monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    check.gan_discriminator_loss(gan.discriminator_loss)
    check.wgan_gradient_penalty(lambda c, r, f, e: gan.gradient_penalty(c, r, f, eps=e))
    for name in ("gan_discriminator_loss", "wgan_gradient_penalty"):
        assert exercises.results[name].status == exercises.PASSED


def test_grading_mode_raises_on_a_wrong_answer(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        check.non_saturating_generator_loss(_minimax_instead)
