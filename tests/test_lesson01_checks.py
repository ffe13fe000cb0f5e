"""The checks of lesson 01: the reference passes, every typical mistake fails with its own message, an
unsolved exercise is "not attempted", grading mode raises, and the solutions written in the lesson pass."""
import contextlib
import io
import math
import re
from pathlib import Path

import pytest
import torch

from gencourse import basics, check, exercises
from gencourse.check import lesson01

REFERENCES = {
    "gaussian_mle": basics.gaussian_mle,
    "class_posterior": basics.class_posterior,
    "discrete_kl": basics.discrete_kl,
    "pixel_categorical_nll": basics.pixel_categorical_nll,
    "dequantized_nll": basics.dequantized_nll,
    "fit_gmm": basics.fit_gmm,
}
SOURCE = Path(__file__).resolve().parent.parent / "notebooks/src/01_discriminative_vs_generative.py"


def _run(name, fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return getattr(check, name)(fn)


def test_every_check_has_a_reference_here():
    assert set(lesson01.__all__) == set(REFERENCES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_passes_and_each_mistake_fails_with_its_own_message(name, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    assert _run(name, REFERENCES[name]).status == exercises.PASSED
    mistakes = exercises.catalog[name]
    assert len(mistakes) >= 2
    for mistake in mistakes:
        verdict = _run(name, mistake.wrong_answer)
        assert verdict.status == exercises.FAILED, mistake.message
        assert mistake.message in verdict.message, (mistake.message, verdict.message)
        assert "Hint:" in verdict.message and 'check.solution("' in verdict.message


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_unsolved_is_not_attempted(name, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)

    def unsolved(*args, **kwargs):
        raise NotImplementedError

    assert _run(name, unsolved).status == exercises.NOT_ATTEMPTED


def test_grading_mode_raises_on_a_wrong_answer(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(exercises.ExerciseFailed):
        check.gaussian_mle(lambda x: (x.mean(0), torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype)))
    with contextlib.redirect_stdout(io.StringIO()):
        check.fit_gmm(basics.fit_gmm)  # the reference passes silently in grading mode too


def test_naive_posterior_fails_on_the_underflow_case():
    """exp then log gives nan at -1000 nats: the check fails it (no known mistake matches nan, the hint helps)."""
    def naive(log_joint):
        joint = log_joint.exp()
        return (joint / joint.sum(1, keepdim=True)).log()

    verdict = _run("class_posterior", naive)
    assert verdict.status == exercises.FAILED and "-1000" in verdict.message


def test_a_decreasing_history_is_named():
    """fit_gmm's compare names a log-likelihood that goes down: EM never lowers it."""
    def decreasing(x, init_means, steps):
        w, m, c, h = basics.fit_gmm(x, init_means, steps)
        return w, m, c, [-v for v in h]

    verdict = _run("fit_gmm", decreasing)
    assert verdict.status == exercises.FAILED and "EM never lowers the likelihood" in verdict.message


def test_a_tensor_history_is_accepted():
    def as_tensor(x, init_means, steps):
        w, m, c, h = basics.fit_gmm(x, init_means, steps)
        return w, m, c, torch.tensor(h)

    assert _run("fit_gmm", as_tensor).status == exercises.PASSED


def test_the_lesson_solutions_pass():
    """The solutions written in the lesson's source (not the module's) pass their checks, each defined after
    the earlier ones (fit_gmm calls gaussian_mle and class_posterior)."""
    source = SOURCE.read_text()
    namespace = {"torch": torch, "math": math, "basics": basics}
    for name in REFERENCES:
        block = re.search(rf"^def {name}\(.*?(?=^# %%)", source, re.S | re.M).group(0)
        exec(block, namespace)
    for name in REFERENCES:
        assert _run(name, namespace[name]).status == exercises.PASSED, name
