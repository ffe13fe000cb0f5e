"""Each lesson-06 check: a solution written out here passes, a wrong one fails, an unsolved one is "not attempted"."""
import math

import pytest
import torch

from gencourse import check, exercises



def _bcast(v, x):
    return v.view(-1, *[1] * (x.dim() - 1))


def q_sample_solution(schedule, x0, t, noise):
    abar = _bcast(schedule.alphas_cumprod[t], x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def q_sample_wrong(schedule, x0, t, noise):
    abar = _bcast(schedule.alphas_cumprod[t], x0)
    return abar * x0 + (1 - abar) * noise  # forgets the square roots


def loss_solution(eps_model, schedule, x0, t, noise):
    xt = q_sample_solution(schedule, x0, t, noise)
    return ((noise - eps_model(xt, t)) ** 2).mean()


def loss_wrong(eps_model, schedule, x0, t, noise):
    xt = q_sample_solution(schedule, x0, t, noise)
    return ((x0 - eps_model(xt, t)) ** 2).mean()  # regresses the clean data on the noise predictor


def ddpm_solution(schedule, eps, xt, t, noise):
    beta, alpha, abar = (float(v[t]) for v in (schedule.betas, schedule.alphas, schedule.alphas_cumprod))
    mean = (xt - beta / math.sqrt(1 - abar) * eps) / math.sqrt(alpha)
    if t == 0:
        return mean
    abar_prev = float(schedule.alphas_cumprod[t - 1])
    return mean + math.sqrt(beta * (1 - abar_prev) / (1 - abar)) * noise


def ddpm_wrong(schedule, eps, xt, t, noise):
    beta, alpha, abar = (float(v[t]) for v in (schedule.betas, schedule.alphas, schedule.alphas_cumprod))
    return (xt - beta / math.sqrt(1 - abar) * eps) / math.sqrt(alpha) + math.sqrt(beta) * noise  # noise at t = 0 too


def ddim_solution(schedule, eps, xt, t, t_prev, eta, noise):
    abar = float(schedule.alphas_cumprod[t])
    abar_prev = float(schedule.alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
    x0_hat = (xt - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
    sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
    return math.sqrt(abar_prev) * x0_hat + math.sqrt(1 - abar_prev - sigma**2) * eps + sigma * noise


def ddim_wrong(schedule, eps, xt, t, t_prev, eta, noise):
    abar = float(schedule.alphas_cumprod[t])
    abar_prev = float(schedule.alphas_cumprod[t_prev])  # t_prev = -1 silently reads the LAST index
    x0_hat = (xt - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
    sigma = eta * math.sqrt(abs((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)))
    return math.sqrt(abar_prev) * x0_hat + math.sqrt(max(1 - abar_prev - sigma**2, 0)) * eps + sigma * noise


def cfg_solution(eps_uncond, eps_cond, scale):
    return (1 - scale) * eps_uncond + scale * eps_cond


def cfg_wrong(eps_uncond, eps_cond, scale):
    return eps_cond + scale * (eps_cond - eps_uncond)  # starts from the conditional estimate


CASES = [
    ("diffusion_q_sample", q_sample_solution, q_sample_wrong),
    ("diffusion_training_loss", loss_solution, loss_wrong),
    ("ddpm_reverse_step", ddpm_solution, ddpm_wrong),
    ("ddim_update", ddim_solution, ddim_wrong),
    ("classifier_free_guidance", cfg_solution, cfg_wrong),
]


@pytest.mark.parametrize("name,right,wrong", CASES, ids=[c[0] for c in CASES])
def test_check_verdicts(name, right, wrong, check_verdicts):
    check_verdicts(name, right, wrong)


def test_checks_are_listed():
    from gencourse.check import lesson06

    for name, *_ in CASES:
        assert name in lesson06.__all__ and hasattr(check, name)


def test_a_shape_mistake_is_a_verdict_not_a_crash():
    def no_broadcast(schedule, x0, t, noise):
        abar = schedule.alphas_cumprod[t]  # (B,) against (B, D): fails or broadcasts wrongly
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    check.diffusion_q_sample(no_broadcast)
    assert exercises.results["diffusion_q_sample"].status == exercises.FAILED
