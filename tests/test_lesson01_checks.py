"""The checks of lesson 01: the reference passes, a typical mistake fails, an unsolved exercise is "not attempted"."""
import pytest
import torch

from gencourse import basics, check, exercises



def _naive_posterior(log_joint):
    joint = log_joint.exp()
    return (joint / joint.sum(1, keepdim=True)).log()


def _unbiased_mle(x):
    mu = x.mean(0)
    return mu, (x - mu).T @ (x - mu) / max(len(x) - 1, 1)


def _kl_without_zero_guard(p, q):
    return (p * (p / q).log()).sum(-1)


def _kl_with_epsilon(p, q):
    return (p * ((p + 1e-10) / (q + 1e-10)).log()).sum(-1)


def _nll_without_smoothing_denominator(train, test, levels, alpha):
    counts = torch.stack([torch.bincount(c, minlength=levels) for c in train.T]).double()
    log_theta = torch.log(counts + alpha) - torch.log(counts.sum(1, keepdim=True))
    return -log_theta.gather(1, test.T).sum(0)


CASES = [
    ("class_posterior", basics.class_posterior, _naive_posterior),
    ("gaussian_mle", basics.gaussian_mle, _unbiased_mle),
    ("discrete_kl", basics.discrete_kl, _kl_without_zero_guard),
    ("discrete_kl", basics.discrete_kl, _kl_with_epsilon),
    ("pixel_categorical_nll", basics.pixel_categorical_nll, _nll_without_smoothing_denominator),
]


@pytest.mark.parametrize("name,reference,wrong", CASES, ids=[f"{c[0]}-{c[2].__name__}" for c in CASES])
def test_reference_passes_wrong_fails_unsolved_is_not_attempted(name, reference, wrong, check_verdicts):
    check_verdicts(name, reference, wrong)


def test_grading_mode_raises_on_a_wrong_answer(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        check.gaussian_mle(_unbiased_mle)
    check.gaussian_mle(basics.gaussian_mle)  # the reference passes silently in grading mode too


def test_the_lesson_solutions_pass():
    """The solutions written in the lesson's source (not the module's) pass their checks."""
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "notebooks/src/01_discriminative_vs_generative.py").read_text()
    namespace = {"torch": torch}
    for name in ("gaussian_mle", "class_posterior", "discrete_kl", "pixel_categorical_nll"):
        block = re.search(rf"^def {name}\(.*?(?=^# %%)", source, re.S | re.M).group(0)
        exec(block, namespace)
        assert exercises.evaluate is not None
        verdict = getattr(check, name)(namespace[name])
        assert verdict.status == exercises.PASSED, name
