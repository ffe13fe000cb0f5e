"""Each lesson-05 check: the reference solution passes, a wrong one fails, an unsolved one is "not attempted"."""
import math

import pytest
import torch

from gencourse import check, exercises, flows



def coupling_forward_wrong_log_det(x, mask, s, t):
    z, _ = flows.coupling_forward(x, mask, s, t)
    return z, s.sum(1)  # sums s over the conditioning entries too


def coupling_inverse_wrong_order(z, mask, s, t):
    return mask * z + (1 - mask) * (z * torch.exp(-s) - t)


def flow_log_prob_solution(flow, x):
    z, log_det = flow(x)
    return -0.5 * (z ** 2 + math.log(2 * math.pi)).sum(1) + log_det


def flow_log_prob_wrong_sign(flow, x):
    z, log_det = flow(x)
    return -0.5 * (z ** 2 + math.log(2 * math.pi)).sum(1) - log_det


def logit_wrong_log_det(y, alpha):
    s, _ = flows.logit_transform(y, alpha)
    p = alpha + (1 - 2 * alpha) * y
    return s, (-torch.log(p) - torch.log(1 - p)).flatten(1).sum(1)  # forgets the factor (1 - 2 alpha)


def bits_solution(log_prob_y, x, u, levels):
    k = torch.round(x * (levels - 1))
    d = x[0].numel()
    return (-log_prob_y((k + u) / levels) + d * math.log(levels)) / (d * math.log(2))


def bits_wrong_levels(log_prob_y, x, u, levels):
    k = torch.round(x * (levels - 1))
    d = x[0].numel()
    return (-log_prob_y((k + u) / (levels - 1)) + d * math.log(levels)) / (d * math.log(2))  # divides by L - 1


CASES = [
    ("affine_coupling_forward", flows.coupling_forward, coupling_forward_wrong_log_det),
    ("affine_coupling_inverse", flows.coupling_inverse, coupling_inverse_wrong_order),
    ("flow_log_prob", flow_log_prob_solution, flow_log_prob_wrong_sign),
    ("logit_transform", flows.logit_transform, logit_wrong_log_det),
    ("dequantized_bits_per_dim", bits_solution, bits_wrong_levels),
]


@pytest.mark.parametrize("name,right,wrong", CASES, ids=[c[0] for c in CASES])
def test_check_verdicts(name, right, wrong, check_verdicts):
    check_verdicts(name, right, wrong)


def test_checks_are_listed():
    from gencourse.check import lesson05

    for name, *_ in CASES:
        assert name in lesson05.__all__ and hasattr(check, name)
