"""Lesson 05's checks: each reference passes, each typical mistake fails with its own message, an unsolved exercise
is "not attempted", grading mode raises; what the generic catalog test cannot see (the trained-flow check's own
diagnoses) is tested here."""
import contextlib
import io
import math

import pytest
import torch
from torch import nn

from gencourse import check, exercises, flows
from gencourse.check import lesson05


def _quiet(name, fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return getattr(check, name)(fn)


def flow_inverse(z, mask, s, t):
    return mask * z + (1 - mask) * (z - t) * torch.exp(-s)


def inverse_off_by_shift(z, mask, s, t):
    return mask * z + (1 - mask) * (z + t) * torch.exp(-s)


def variational_bound(log_prob_y, x, eps, mu, log_sigma, levels):
    k = torch.round(x * (levels - 1))
    a = mu + torch.exp(log_sigma) * eps
    u = torch.sigmoid(a)
    log_q = -0.5 * (eps ** 2 + math.log(2 * math.pi)) - log_sigma - torch.log(u) - torch.log(1 - u)
    return -log_prob_y((k + u) / levels) + log_q.flatten(1).sum(1) + x[0].numel() * math.log(levels)


def variational_bound_mean_over_pixels(log_prob_y, x, eps, mu, log_sigma, levels):
    return variational_bound(log_prob_y, x, eps, mu, log_sigma, levels) / x[0].numel()


def logit_wrong_sum(y, alpha):
    s, log_det = flows.logit_transform(y, alpha)
    return s, log_det.mean() * torch.ones_like(log_det)


def fit_moons_flow(points):
    return lesson05._train_moons(points)


CASES = [
    ("affine_coupling_forward", flows.coupling_forward, lesson05._forward_log_det_all),
    ("affine_coupling_inverse", flow_inverse, inverse_off_by_shift),
    ("logit_transform", flows.logit_transform, logit_wrong_sum),
    ("variational_dequantization_bound", variational_bound, variational_bound_mean_over_pixels),
]


@pytest.mark.parametrize("name,right,wrong", CASES, ids=[c[0] for c in CASES])
def test_check_verdicts(name, right, wrong, check_verdicts):
    check_verdicts(name, right, wrong)


def test_checks_are_listed():
    for name in lesson05.__all__:
        assert hasattr(check, name)
    assert {c[0] for c in CASES} | {"fit_moons_flow"} == set(lesson05.__all__)


@pytest.mark.parametrize("name,right,wrong", CASES, ids=[c[0] for c in CASES])
def test_every_declared_mistake_is_caught_with_its_message(name, right, wrong, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    assert _quiet(name, right).status == exercises.PASSED
    mistakes = exercises.catalog[name]
    assert len(mistakes) >= 2
    for mistake in mistakes:
        verdict = _quiet(name, mistake.wrong_answer)
        assert verdict.status == exercises.FAILED and mistake.message in verdict.message, mistake.message


def test_grading_mode_raises(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        _quiet("affine_coupling_inverse", inverse_off_by_shift)


def test_inverse_check_is_independent_of_the_package_inverse():
    """The inverse is checked against the inputs that made each z, not against flows.coupling_inverse."""
    for case, original in zip(lesson05._inverse_cases(), lesson05._coupling_cases(1)):
        x = original.args[0]
        torch.testing.assert_close(flows.coupling_inverse(*case.args), x)


def test_variational_bound_reference_matches_a_monte_carlo_box_probability():
    """E_q[-log p(y) + log q] + D ln L >= -log P(k), and with q = p's own density in the box it is exact: for a
    density p on [0, 1) that is a squashed Gaussian itself, the bound with that q equals -log P(k) draw by draw."""
    levels, mu, log_sigma = 4, torch.tensor(0.3, dtype=torch.float64), torch.tensor(-0.2, dtype=torch.float64)
    # p(y) on [0, 1): y = (k + u) / L with k uniform over L levels and u ~ sigmoid(N(mu, sigma^2)), so P(k) = 1/L
    q = torch.distributions.TransformedDistribution(torch.distributions.Normal(mu, log_sigma.exp()),
                                                    [torch.distributions.transforms.SigmoidTransform()])

    def log_prob_y(y):
        k = torch.floor(y * levels).clamp(max=levels - 1)
        return q.log_prob((y * levels - k).clamp(1e-12, 1 - 1e-12)).flatten(1).sum(1)  # L * p_u(u) / L

    x = torch.tensor([[0.0], [1 / 3], [1.0]], dtype=torch.float64)
    eps = torch.randn(3, 1, dtype=torch.float64)
    bound = lesson05._reference_variational(log_prob_y, x, eps, mu.expand(3, 1), log_sigma.expand(3, 1), levels)
    torch.testing.assert_close(bound, torch.full((3,), math.log(levels), dtype=torch.float64))


# The reference and every declared mistake of this build-and-train check run in tests/test_exercise_catalog.py
# (the lesson's own solution, each mistake with its own message); they are not trained a second time here.


def test_fit_moons_flow_rejects_a_gaussian_and_bad_outputs(monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)

    def standard_normal(points):
        return lambda x: torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1)

    verdict = _quiet("fit_moons_flow", standard_normal)
    assert verdict.status == exercises.FAILED and lesson05.NOT_LEARNED in verdict.message
    verdict = _quiet("fit_moons_flow", lambda points: (lambda x: torch.zeros(len(x), 2)))
    assert verdict.status == exercises.FAILED and "one number per point" in verdict.message
    verdict = _quiet("fit_moons_flow", lambda points: None)
    assert verdict.status == exercises.FAILED and "expected a function" in verdict.message
