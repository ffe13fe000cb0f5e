"""Checks for lesson 06 (diffusion models)."""
import torch

from gencourse import diffusion as D
from gencourse.exercises import Case, run_check

__all__ = ["diffusion_q_sample", "diffusion_training_loss", "ddpm_reverse_step", "ddim_update",
           "classifier_free_guidance"]


def _schedules():
    return [(D.NoiseSchedule.linear(100), "linear T=100"), (D.NoiseSchedule.cosine(50), "cosine T=50")]


def diffusion_q_sample(fn):
    """``fn(schedule, x0, t, noise) -> x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for (s, name), shape in zip(_schedules(), [(4, 2), (3, 1, 8, 8)]):
        t = torch.randint(0, s.T, (shape[0],), generator=g)
        cases.append(Case(s, torch.randn(shape, generator=g), t, torch.randn(shape, generator=g),
                          label=f"{name}, x0 {shape}, t = {t.tolist()}"))
    s = D.NoiseSchedule.linear(100)
    cases.append(Case(s, torch.randn(2, 3, generator=g), torch.tensor([0, 99]), torch.randn(2, 3, generator=g),
                      label="the first and the last index"))
    return run_check(
        "diffusion_q_sample", fn, cases, reference=lambda s, x0, t, noise: s.q_sample(x0, t, noise),
        hint="abar = schedule.alphas_cumprod[t] has shape (B,): reshape it to (B, 1, ..., 1), e.g. "
             "abar.view(-1, *[1] * (x0.dim() - 1)), so each example gets its own noise level.")


class _ToyPredictor:
    """A fixed noise predictor for the checks: ``eps(x_t, t) = 0.5 tanh(x_t) + t / T``."""

    def __init__(self, T):
        self.T = T

    def __call__(self, xt, t):
        return 0.5 * torch.tanh(xt) + (t.float() / self.T).view(-1, *[1] * (xt.dim() - 1))

    def __repr__(self):
        return "toy predictor"


def diffusion_training_loss(fn):
    """``fn(eps_model, schedule, x0, t, noise) -> scalar``: mean of ``(noise - eps_model(x_t, t))^2``."""
    g = torch.Generator().manual_seed(1)
    cases = []
    for (s, name), shape in zip(_schedules(), [(8, 2), (5, 1, 8, 8)]):
        t = torch.randint(0, s.T, (shape[0],), generator=g)
        cases.append(Case(_ToyPredictor(s.T), s, torch.randn(shape, generator=g), t, torch.randn(shape, generator=g),
                          label=f"{name}, x0 {shape}"))
    return run_check(
        "diffusion_training_loss", fn, cases, reference=D.noise_prediction_loss,
        hint="noise the clean data with q_sample (x_t from x0, t and noise), ask eps_model(x_t, t) for the noise, "
             "and return the mean squared difference over the batch AND every dimension: one number.")


def _step_cases(seed, with_prev=False):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for s, name in _schedules():
        for t in (s.T - 1, s.T // 3, 0):
            xt, eps, noise = (torch.randn(3, 4, generator=g) for _ in range(3))
            cases.append(Case(s, eps, xt, t, noise, label=f"{name}, t = {t}"))
    return cases


def ddpm_reverse_step(fn):
    """``fn(schedule, eps, xt, t, noise) -> x_{t-1}``: one ancestral step, no noise added at ``t = 0``."""
    return run_check(
        "ddpm_reverse_step", fn, _step_cases(2), reference=D.ddpm_step, rtol=1e-4, atol=1e-5,
        hint="mean = (x_t - beta_t / sqrt(1 - abar_t) * eps) / sqrt(alpha_t); variance = beta_t (1 - abar_{t-1}) / "
             "(1 - abar_t) with abar_{t-1} = 1 at t = 0; add sqrt(variance) * noise only when t > 0.")


def ddim_update(fn):
    """``fn(schedule, eps, xt, t, t_prev, eta, noise) -> x at t_prev``: the DDIM update (t_prev < 0: clean)."""
    g = torch.Generator().manual_seed(3)
    cases = []
    for s, name in _schedules():
        for t, t_prev, eta in ((s.T - 1, s.T // 2, 0.0), (s.T // 2, s.T // 4, 1.0), (s.T // 4, 3, 0.5), (3, -1, 0.0)):
            xt, eps, noise = (torch.randn(3, 4, generator=g) for _ in range(3))
            cases.append(Case(s, eps, xt, t, t_prev, eta, noise, label=f"{name}, {t} -> {t_prev}, eta = {eta}"))
    return run_check(
        "ddim_update", fn, cases, reference=D.ddim_step, rtol=1e-4, atol=1e-5,
        hint="x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) "
             "sqrt(1 - abar_t / abar_prev); x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps "
             "+ sigma noise, with abar_prev = 1 when t_prev < 0.")


def classifier_free_guidance(fn):
    """``fn(eps_uncond, eps_cond, scale) -> eps``: the guided noise estimate."""
    g = torch.Generator().manual_seed(4)
    cases = [Case(torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g), scale, label=f"scale {scale}")
             for scale in (0.0, 1.0, 3.0, 7.5)]
    return run_check(
        "classifier_free_guidance", fn, cases, reference=D.guidance_mix,
        hint="start from the unconditional estimate and move along (eps_cond - eps_uncond) by the scale: "
             "scale 0 gives eps_uncond, scale 1 gives eps_cond.")
