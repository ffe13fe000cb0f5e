"""Each lesson-08 check: the reference solution passes, a wrong one fails, an unsolved one is "not attempted"."""
import pytest
import torch

from gencourse import check, exercises, flow_matching as fm


def unsolved(*args, **kwargs):
    raise NotImplementedError("fill in the solution")


def point_solution(x0, x1, t):
    return fm.LinearPath().sample(x0, x1, t)


def point_wrong(x0, x1, t):  # swaps the ends
    t = t.view(-1, *([1] * (x1.dim() - 1)))
    return t * x0 + (1 - t) * x1


def velocity_solution(x0, x1, t):
    return x1 - x0


def velocity_wrong(x0, x1, t):
    return x0 - x1


def euler_solution(v, x0, steps):
    return fm.euler_sample(v, x0, steps)


def euler_wrong_time(v, x0, steps):  # evaluates at the end of each step
    x, h = x0, 1.0 / steps
    for i in range(steps):
        x = x + h * v(x, torch.full((len(x),), (i + 1) * h))
    return x


@pytest.mark.parametrize("name,good,bad", [
    ("linear_path_point", point_solution, point_wrong),
    ("rectified_target_velocity", velocity_solution, velocity_wrong),
    ("euler_ode_sampler", euler_solution, euler_wrong_time),
])
def test_check(name, good, bad, capsys):
    fn = getattr(check, name)
    fn(good)
    assert exercises.results[name].status == exercises.PASSED
    fn(bad)
    assert exercises.results[name].status == exercises.FAILED
    fn(unsolved)
    assert exercises.results[name].status == exercises.NOT_ATTEMPTED
