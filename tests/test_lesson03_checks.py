"""The checks of lesson 03: the reference passes, typical mistakes fail with their own message, an unsolved
exercise is "not attempted", and grading mode raises on a wrong answer. The generic catalog test
(tests/test_exercise_catalog.py) feeds every declared mistake back; these tests add what it cannot see."""
import math

import pytest
import torch

from gencourse import check, exercises, vae
from gencourse.check import lesson03


def _reparam(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _kl(mu, logvar):
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def _negative_elbo(x, mu, logvar, eps, log_likelihood):
    z = mu + torch.exp(0.5 * logvar) * eps
    return (_kl(mu, logvar) - log_likelihood(x, z)).mean()


def _iwae(x, mu, logvar, eps, log_likelihood):
    z = mu + torch.exp(0.5 * logvar) * eps
    log_w = log_likelihood(x, z) + vae.gaussian_log_prob(z) - vae.gaussian_log_prob(z, mu, logvar)
    return torch.logsumexp(log_w, 0) - math.log(len(eps))


def _fit(model, images, epochs, batch_size, lr):
    return lesson03._loop(model, images, epochs, batch_size, lr)


CASES = [
    ("gaussian_kl", _kl, lesson03._kl_without_half),
    ("gaussian_kl", vae.gaussian_kl, lesson03._kl_mean_over_dims),
    ("reparameterize", vae.reparameterize, lesson03._reparam_std_is_exp_logvar),
    ("reparameterize", _reparam, lesson03._reparam_torch_normal),
    ("reparameterize", _reparam, lesson03._reparam_detached),
    ("negative_elbo", _negative_elbo, lesson03._nelbo_kl_sign),
    ("negative_elbo", _negative_elbo, lesson03._nelbo_sum_over_batch),
    ("iwae_estimate", _iwae, lesson03._iwae_naive),
    ("iwae_estimate", _iwae, lesson03._iwae_without_log_k),
]


@pytest.mark.parametrize("name,right,wrong", CASES, ids=[f"{c[0]}-{c[2].__name__}" for c in CASES])
def test_right_passes_wrong_fails_unsolved_is_not_attempted(name, right, wrong, check_verdicts):
    check_verdicts(name, right, wrong)


@pytest.mark.parametrize("wrong,message", [
    (lesson03._reparam_std_is_exp_logvar, lesson03._WRONG_STD),
    (lesson03._reparam_detached, lesson03._NO_GRADIENT),
    (lesson03._reparam_torch_normal, lesson03._NO_MU_PATH),
])
def test_reparameterize_names_each_gradient_or_scale_mistake(wrong, message, capsys, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    verdict = check.reparameterize(wrong)
    assert verdict.status == exercises.FAILED and message in verdict.message


# The reference and every declared mistake of this build-and-train check run in tests/test_exercise_catalog.py
# (the lesson's own solution, each mistake with its own message); they are not trained a second time here.


def test_fit_vae_unsolved_and_not_callable(capsys, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)

    def unsolved(model, images, epochs, batch_size, lr):
        raise NotImplementedError

    assert check.fit_vae(unsolved).status == exercises.NOT_ATTEMPTED
    assert check.fit_vae(None).status == exercises.FAILED


def test_fit_vae_rejects_a_loop_that_returns_no_losses(capsys, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)

    def silent(model, images, epochs, batch_size, lr):
        _fit(model, images, epochs, batch_size, lr)

    verdict = check.fit_vae(silent)
    assert verdict.status == exercises.FAILED and "epochs' mean losses" in verdict.message


def test_grading_mode_raises_on_a_wrong_answer(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        check.gaussian_kl(lesson03._kl_without_half)
    with pytest.raises(exercises.ExerciseFailed):
        check.negative_elbo(lesson03._nelbo_is_elbo)


def test_checks_do_not_print_memory_addresses(monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    check.iwae_estimate(lesson03._iwae_naive)
    check.negative_elbo(lesson03._nelbo_kl_sign)
    assert " at 0x" not in capsys.readouterr().out
