"""Each lesson-08 check: the reference passes, an unsolved answer is "not attempted" (the known mistakes are fed
back to every check by test_exercise_catalog.py)."""
import pytest

from gencourse import check, exercises
from gencourse.check import lesson08


def unsolved(*args, **kwargs):
    raise NotImplementedError("fill in the solution")


@pytest.mark.parametrize("name,reference", [
    ("cfm_loss_linear", lesson08._reference_cfm),
    ("heun_sampler", lesson08._reference_heun),
    ("hutchinson_divergence", lesson08._reference_hutchinson),
    ("gaussian_optimal_velocity", lesson08._reference_gauss),
])
def test_check(name, reference, capsys):
    fn = getattr(check, name)
    fn(reference)
    assert exercises.results[name].status == exercises.PASSED
    fn(unsolved)
    assert exercises.results[name].status == exercises.NOT_ATTEMPTED


def test_gaussian_reference_is_the_library_formula():
    import torch
    from gencourse import flow_matching as fm

    for case in lesson08._gauss_cases():
        x, t, mu, var = case.args
        want = fm.gaussian_velocity(x, t, mu, var, torch.eye(len(mu)))
        torch.testing.assert_close(lesson08._reference_gauss(x, t, mu, var), want, rtol=1e-4, atol=1e-4)


def test_trained_velocity_check_refuses_a_non_function(capsys):
    check.train_velocity_2d(lambda points: 3)
    assert exercises.results["train_velocity_2d"].status == exercises.FAILED
    check.train_velocity_2d(unsolved)
    assert exercises.results["train_velocity_2d"].status == exercises.NOT_ATTEMPTED
