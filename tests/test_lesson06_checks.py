"""Lesson 06's checks: each reference passes, each typical mistake fails with its own message, an unsolved exercise
is "not attempted", grading mode raises, and a failed verdict shows no line of the reference solution's code."""
import contextlib
import io
import math

import pytest
import torch
from torch import nn

from gencourse import check, exercises
from gencourse.check import lesson06


def _quiet(name, fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return getattr(check, name)(fn)


def _unsolved(*args, **kwargs):
    raise NotImplementedError


# ---- answers written as a learner would (the lesson's reference solutions) -------------------------

def q_sample(schedule, x0, t, noise):
    abar = schedule.alphas_cumprod[t].view(-1, *[1] * (x0.dim() - 1))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def noise_prediction_loss(eps_model, schedule, x0, t, noise):
    xt = q_sample(schedule, x0, t, noise)
    return ((noise - eps_model(xt, t)) ** 2).mean()


def ddpm_reverse_step(schedule, eps, xt, t, noise):
    beta, alpha, abar = schedule.betas[t], schedule.alphas[t], schedule.alphas_cumprod[t]
    mean = (xt - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()
    if t == 0:
        return mean
    abar_prev = schedule.alphas_cumprod[t - 1]
    return mean + (beta * (1 - abar_prev) / (1 - abar)).sqrt() * noise


def ddpm_via_posterior(schedule, eps, xt, t, noise):
    """The same step written from the posterior mean in x_0 and x_t with x_0 estimated (floats, math)."""
    beta, alpha, abar = (float(v[t]) for v in (schedule.betas, schedule.alphas, schedule.alphas_cumprod))
    abar_prev = float(schedule.alphas_cumprod[t - 1]) if t > 0 else 1.0
    x0_hat = (xt - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
    mean = math.sqrt(abar_prev) * beta / (1 - abar) * x0_hat + math.sqrt(alpha) * (1 - abar_prev) / (1 - abar) * xt
    return mean + math.sqrt(beta * (1 - abar_prev) / (1 - abar)) * noise


def ddim_update(schedule, eps, xt, t, t_prev, eta, noise):
    abar = schedule.alphas_cumprod[t]
    abar_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0_hat = (xt - (1 - abar).sqrt() * eps) / abar.sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    return abar_prev.sqrt() * x0_hat + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps + sigma * noise


def train_eps_model(points, schedule, steps=1500):
    """A noise predictor eps(x_t, t) for 2D points: an MLP on (x_t, t / T), trained with L_simple."""
    net = nn.Sequential(nn.Linear(3, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)

    def eps_model(xt, t):
        return net(torch.cat([xt, t.float()[:, None] / schedule.T], dim=1))

    for _ in range(steps):
        x0 = points[torch.randint(len(points), (256,))]
        t = torch.randint(0, schedule.T, (len(x0),))
        loss = noise_prediction_loss(eps_model, schedule, x0, t, torch.randn_like(x0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return eps_model


RIGHT = {"diffusion_q_sample": [q_sample], "diffusion_training_loss": [noise_prediction_loss],
         "ddpm_reverse_step": [ddpm_reverse_step, ddpm_via_posterior], "ddim_update": [ddim_update],
         "train_eps_model": [train_eps_model]}
MISTAKES = {"diffusion_q_sample": lesson06.Q_SAMPLE_MISTAKES, "diffusion_training_loss": lesson06.LOSS_MISTAKES,
            "ddpm_reverse_step": lesson06.DDPM_MISTAKES, "ddim_update": lesson06.DDIM_MISTAKES,
            "train_eps_model": lesson06.TRAIN_MISTAKES}
FAST = [n for n in lesson06.__all__ if n != "train_eps_model"]


def test_checks_are_listed():
    assert set(lesson06.__all__) == set(RIGHT)
    for name in lesson06.__all__:
        assert hasattr(check, name)


@pytest.mark.parametrize("name,fn", [(n, f) for n in FAST for f in RIGHT[n]])
def test_reference_passes(name, fn, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    verdict = _quiet(name, fn)
    assert verdict.status == exercises.PASSED, verdict.message


@pytest.mark.parametrize("name", FAST)
def test_each_mistake_fails_with_its_own_message(name, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    mistakes = MISTAKES[name]
    assert len(mistakes) >= 2 and len({m.message for m in mistakes}) == len(mistakes)
    _quiet(name, RIGHT[name][0])
    assert exercises.catalog[name] == mistakes
    for mistake in mistakes:
        verdict = _quiet(name, mistake.wrong_answer)
        assert verdict.status == exercises.FAILED
        assert f"What looks wrong: {mistake.message}" in verdict.message, (mistake.message, verdict.message)
        others = [m.message for m in mistakes if m is not mistake]
        assert not any(o in verdict.message for o in others), verdict.message
        assert "Hint" in verdict.message and 'check.solution("' in verdict.message


@pytest.mark.parametrize("name", lesson06.__all__)
def test_unsolved_is_not_attempted(name, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    assert _quiet(name, _unsolved).status == exercises.NOT_ATTEMPTED


@pytest.mark.parametrize("name", FAST)
def test_grading_mode_raises_on_a_wrong_answer(name, monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        _quiet(name, MISTAKES[name][0].wrong_answer)


def _code_lines(fn):
    import inspect

    return [s.strip() for s in inspect.getsource(fn).split("\n")[1:]
            if len(s.strip()) >= 16 and not s.strip().startswith(("#", '"""', "return None"))]


@pytest.mark.parametrize("name", FAST)
def test_a_failed_verdict_shows_no_solution_code(name, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    lines = _code_lines(RIGHT[name][0])
    assert lines
    for mistake in MISTAKES[name]:
        message = _quiet(name, mistake.wrong_answer).message
        assert not any(line in message for line in lines)
        assert "view(" not in message and ".sqrt()" not in message and "alphas_cumprod[" not in message


def test_a_shape_mistake_is_a_verdict_not_a_crash(monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)

    def no_broadcast(schedule, x0, t, noise):
        abar = schedule.alphas_cumprod[t]  # (B,) against (B, D): fails or broadcasts wrongly
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    assert _quiet("diffusion_q_sample", no_broadcast).status == exercises.FAILED


# ---- build and train: the reference passes robustly, each mistake is trained once --------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_build_and_train_reference_is_robust_across_seeds(seed):
    outcome = lesson06._train_outcome(train_eps_model, seed)
    ok, why = lesson06._compare_training(outcome, None, None)
    assert ok, why


def test_build_and_train_verdicts(monkeypatch):
    """Each mistake fails with its own message (and not another's), shows no line of the reference's code, and the
    check raises in grading mode. (The lesson's own solution passing is tests/test_exercise_catalog.py's.)"""
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    lines = _code_lines(train_eps_model)
    messages = [m.message for m in lesson06.TRAIN_MISTAKES]
    for mistake in lesson06.TRAIN_MISTAKES:
        verdict = _quiet("train_eps_model", mistake.wrong_answer)
        assert verdict.status == exercises.FAILED and mistake.message in verdict.message, verdict.message
        assert sum(m in verdict.message for m in messages) == 1
        assert not any(line in verdict.message for line in lines)
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        _quiet("train_eps_model", lambda points, schedule: (lambda xt, t: torch.zeros_like(xt)))


def test_build_and_train_rejects_bad_outputs(monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    verdict = _quiet("train_eps_model", lambda points, schedule: None)
    assert verdict.status == exercises.FAILED and "expected a function" in verdict.message
    verdict = _quiet("train_eps_model", lambda points, schedule: (lambda xt, t: xt.sum(1)))
    assert verdict.status == exercises.FAILED and "shape (B, 2)" in verdict.message
    verdict = _quiet("train_eps_model", lambda points, schedule: (lambda xt, t: torch.zeros_like(xt)))
    assert verdict.status == exercises.FAILED and lesson06.NO_TIME in verdict.message
