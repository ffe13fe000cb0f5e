"""Checks for lesson 08 (flow matching)."""
import torch

from gencourse import flow_matching as fm
from gencourse.exercises import Case, run_check

__all__ = ["linear_path_point", "rectified_target_velocity", "euler_ode_sampler"]


def _pairs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for shape, label in (((5, 2), "5 points in 2D"), ((3, 1, 8, 8), "3 images of 8x8"), ((4, 7), "4 vectors of 7")):
        x0, x1 = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        t = torch.rand(shape[0], generator=g)
        cases.append(Case(x0, x1, t, label=label + ", one t per example"))
    return cases


def _reference_point(x0, x1, t):
    # independent of gencourse's path classes: the straight line written out
    t = t.view(-1, *([1] * (x1.dim() - 1)))
    return t * x1 + (1 - t) * x0


def linear_path_point(fn):
    """``fn(x0, x1, t) -> x_t``: the point at time ``t (B,)`` on the straight line from noise ``x0`` to data ``x1``."""
    return run_check("linear_path_point", fn, _pairs(0), reference=_reference_point,
                     hint="x_t = t x1 + (1 - t) x0; reshape t (B,) to (B, 1, ...) so it broadcasts over each example.")


def _reference_velocity(x0, x1, t):
    # the time derivative of the straight line, by a central finite difference in float64
    h = 1e-4
    tt = t.double()
    a = _reference_point(x0.double(), x1.double(), tt + h)
    b = _reference_point(x0.double(), x1.double(), tt - h)
    return ((a - b) / (2 * h)).float()


def rectified_target_velocity(fn):
    """``fn(x0, x1, t) -> u_t``: the conditional target velocity d x_t / dt of the linear path."""
    return run_check("rectified_target_velocity", fn, _pairs(1), reference=_reference_velocity,
                     hint="differentiate x_t = t x1 + (1 - t) x0 with respect to t: it does not depend on t.",
                     rtol=1e-3, atol=1e-3)


def _rotation_field(x, t):
    # dx/dt = A x + b(t): a rotation plus a time-dependent drift
    a = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    return x @ a.T + torch.stack([t, -t], dim=1)


def _shrink_field(x, t):
    return -x * (1 + t).view(-1, *([1] * (x.dim() - 1)))


def _reference_euler(velocity_fn, x0, steps):
    x, h = x0.clone(), 1.0 / steps
    for i in range(steps):
        x = x + h * velocity_fn(x, torch.full((len(x),), i * h))
    return x


def euler_ode_sampler(fn):
    """``fn(velocity_fn, x0, steps) -> x_1``: Euler's method from t = 0 to 1 in ``steps`` equal steps."""
    g = torch.Generator().manual_seed(2)
    cases = [Case(_rotation_field, torch.randn(6, 2, generator=g), 1, label="a rotating field, 1 step"),
             Case(_rotation_field, torch.randn(6, 2, generator=g), 7, label="a rotating field with drift, 7 steps"),
             Case(_shrink_field, torch.randn(3, 1, 4, 4, generator=g), 5, label="a shrinking field on images, 5 steps")]
    return run_check("euler_ode_sampler", fn, cases, reference=_reference_euler,
                     hint="h = 1 / steps; for i in 0..steps-1: x = x + h * velocity_fn(x, t) with t a tensor (B,) "
                          "filled with i * h (the time at the START of the step).")
