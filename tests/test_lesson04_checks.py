"""The checks of lesson 04: the references pass, each typical mistake fails with its own message (including those
only an outcome comparison can see), the accepted variants pass, unsolved is "not attempted", grading mode raises."""
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gencourse import check, exercises, gan
from gencourse.check import lesson04


def _unsolved(*args, **kwargs):
    raise NotImplementedError


def _verdict(name, fn, capsys):
    getattr(check, name)(fn)
    capsys.readouterr()
    return exercises.results[name]


# ---- answers written as a learner would ----------------------------------------------------------

def _optimal_logit(mu_p, sigma_p, mu_q, sigma_q):
    a = 1 / (2 * sigma_q ** 2) - 1 / (2 * sigma_p ** 2)
    b = mu_p / sigma_p ** 2 - mu_q / sigma_q ** 2
    c = mu_q ** 2 / (2 * sigma_q ** 2) - mu_p ** 2 / (2 * sigma_p ** 2) + math.log(sigma_q / sigma_p)
    return a, b, c


def _losses_with_bce(real_logits, fake_logits):
    bce = F.binary_cross_entropy_with_logits
    d = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
    return d, bce(fake_logits, torch.ones_like(fake_logits))


def _gp(critic, real, fake, eps):
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _step_fresh_noise(generator, discriminator, opt_g, opt_d, real, latent_dim):
    """Goodfellow et al.'s Algorithm 1: fresh noise for the generator's update."""
    fake = generator(torch.randn(len(real), latent_dim))
    d_loss = gan.discriminator_loss(discriminator(real), discriminator(fake.detach()))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = gan.generator_loss(discriminator(generator(torch.randn(len(real), latent_dim))))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return d_loss.item(), g_loss.item()


def _step_without_detach_crashes(generator, discriminator, opt_g, opt_d, real, latent_dim):
    fake = generator(torch.randn(len(real), latent_dim))
    d_loss = gan.discriminator_loss(discriminator(real), discriminator(fake))
    opt_d.zero_grad()
    d_loss.backward()  # frees the generator's graph
    opt_d.step()
    g_loss = gan.generator_loss(discriminator(fake))
    opt_g.zero_grad()
    g_loss.backward()  # RuntimeError: backward through the graph a second time
    opt_g.step()
    return d_loss.item(), g_loss.item()


# ---- references pass, accepted variants pass ------------------------------------------------------

@pytest.mark.parametrize("name,fn", [
    ("optimal_discriminator_logit", _optimal_logit),
    ("gan_losses", _losses_with_bce),
    ("wgan_gradient_penalty", _gp),
    ("wgan_gradient_penalty", lambda c, r, f, e: gan.gradient_penalty(c, r, f, eps=e)),
    ("gan_training_step", lesson04._reference_step),
    ("gan_training_step", _step_fresh_noise),
])
def test_correct_answers_pass(name, fn, monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    verdict = _verdict(name, fn, capsys)
    assert verdict.status == exercises.PASSED, verdict.message


def test_reference_derivation_agrees_with_torch_distributions_at_other_points():
    a, b, c = _optimal_logit(0.3, 1.7, -2.0, 0.4)
    p, q = torch.distributions.Normal(0.3, 1.7), torch.distributions.Normal(-2.0, 0.4)
    x = torch.linspace(-5, 5, 11, dtype=torch.float64)
    exact = p.log_prob(x) - q.log_prob(x)
    assert torch.allclose(a * x ** 2 + b * x + c, exact.double(), atol=1e-4)
    assert lesson04._reference_optimal_logit(0.3, 1.7, -2.0, 0.4) == pytest.approx((a, b, c), rel=1e-6)


# ---- every known mistake fails with its own message -----------------------------------------------

MISTAKES = [(name, m) for name, ms in (("optimal_discriminator_logit", lesson04.OPTIMAL_LOGIT_MISTAKES),
                                       ("gan_losses", lesson04.LOSSES_MISTAKES),
                                       ("wgan_gradient_penalty", lesson04.GP_MISTAKES),
                                       ("gan_training_step", lesson04.STEP_MISTAKES))
            for m in ms]


@pytest.mark.parametrize("name,mistake", MISTAKES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(MISTAKES)])
def test_each_mistake_is_caught_with_its_message(name, mistake, monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    verdict = _verdict(name, mistake.wrong_answer, capsys)
    assert verdict.status == exercises.FAILED
    assert mistake.message in verdict.message
    assert "Hint" in verdict.message and 'check.solution("' in verdict.message


@pytest.mark.parametrize("settings", [s for _, s in lesson04.STEP_MISTAKE_SETTINGS])
def test_step_mistakes_are_recognized_with_fresh_noise_too(settings, monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    message = next(m for m, s in lesson04.STEP_MISTAKE_SETTINGS if s == settings)
    verdict = _verdict("gan_training_step", lesson04.make_step(fresh_noise=True, **settings), capsys)
    assert verdict.status == exercises.FAILED and message in verdict.message


def test_a_step_without_detach_fails_with_autograds_error(monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    verdict = _verdict("gan_training_step", _step_without_detach_crashes, capsys)
    assert verdict.status == exercises.FAILED and "RuntimeError" in verdict.message


# ---- build and train: judged by outcome -------------------------------------------------------------

# The reference and every declared mistake of this build-and-train check run in tests/test_exercise_catalog.py
# (the lesson's own solution, each mistake with its own message); they are not trained a second time here.


@pytest.mark.parametrize("seed,mean,std", [(1, (2.0, -1.0), (0.5, 0.8)), (3, (-1.5, 1.5), (1.0, 0.3))])
def test_build_and_train_reference_is_robust_across_seeds_and_data(seed, mean, std):
    outcome = lesson04._train_outcome(lesson04.fit_gan_reference, seed, mean, std, 60)
    ok, why = lesson04._compare_training(outcome, None, None)
    assert ok, why


def test_build_and_train_rejects_a_non_module(monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    verdict = _verdict("gan_build_and_train", lambda loader, latent_dim, epochs, seed: "generator", capsys)
    assert verdict.status == exercises.FAILED and "nn.Module" in verdict.message


# ---- unsolved and grading mode ------------------------------------------------------------------------

@pytest.mark.parametrize("name", lesson04.__all__)
def test_unsolved_is_not_attempted(name, monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    assert _verdict(name, _unsolved, capsys).status == exercises.NOT_ATTEMPTED


def test_grading_mode_raises_on_a_wrong_answer(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        check.gan_losses(lesson04.LOSSES_MISTAKES[0].fn)
