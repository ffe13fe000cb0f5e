"""gencourse.diffusion against independent computations: Monte Carlo of the step-by-step chain, Bayes' rule
for Gaussians, the cosine formula, and data that is itself Gaussian (its noise predictor is known in closed form)."""
import math

import pytest
import torch

from gencourse import diffusion as D

LESSON_TS = (100, 200, 300, 500, 1000)  # every T the lesson and its parameters use


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------

def test_linear_schedule_is_ddpm_scaled_by_1000_over_T():
    s = D.NoiseSchedule.linear(1000)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    s = D.NoiseSchedule.linear(200)
    expected = torch.linspace(1e-4 * 5, 0.02 * 5, 200)
    assert torch.allclose(s.betas, expected, atol=1e-7)
    assert torch.allclose(s.alphas, 1 - expected, atol=1e-7)
    # abar_t = prod_{s <= t} (1 - beta_s), here by a Python loop in float64
    prod, abar = 1.0, []
    for b in expected.double().tolist():
        prod *= 1 - b
        abar.append(prod)
    assert torch.allclose(s.alphas_cumprod.double(), torch.tensor(abar, dtype=torch.float64), rtol=1e-5, atol=1e-9)


def test_cosine_schedule_matches_its_formula():
    T, s_ = 200, 0.008
    s = D.NoiseSchedule.cosine(T)

    def f(step):
        return math.cos((step / T + s_) / (1 + s_) * math.pi / 2) ** 2

    abar = torch.tensor([f(t + 1) / f(0) for t in range(T)], dtype=torch.float64)
    betas = torch.tensor([min(1 - f(t + 1) / f(t), 0.999) for t in range(T)], dtype=torch.float64)
    assert torch.allclose(s.betas.double(), betas, rtol=1e-5, atol=1e-8)
    uncapped = betas < 0.999
    assert uncapped[:-1].all() and not uncapped[-1]          # only the last beta is capped for T = 200
    assert torch.allclose(s.alphas_cumprod.double()[uncapped], abar[uncapped], rtol=1e-4, atol=1e-8)
    assert s.betas.max() <= 0.999 + 1e-7


@pytest.mark.parametrize("T", LESSON_TS)
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_last_abar_is_nearly_zero(kind, T):
    s = getattr(D.NoiseSchedule, kind)(T)
    assert s.alphas_cumprod[-1] < 1e-3
    assert torch.all(s.alphas_cumprod[1:] < s.alphas_cumprod[:-1])
    assert s.snr()[-1] < 1e-3


def test_schedule_rejects_bad_input():
    with pytest.raises(ValueError, match="T must be"):
        D.NoiseSchedule.linear(1)
    with pytest.raises(ValueError, match="T must be"):
        D.NoiseSchedule.cosine(10.0)
    with pytest.raises(ValueError, match="beta"):
        D.NoiseSchedule(torch.tensor([0.1, 1.2]))
    s = D.NoiseSchedule.linear(50)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        s.q_sample(x, torch.tensor([1, 2]), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="0..49"):
        s.q_sample(x, torch.tensor([1, 2, 50]), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="integer"):
        s.q_sample(x, torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3, 2))


# ----------------------------------------------------------------------------------------------
# Forward process and posterior
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0, 7, 49])
def test_q_sample_matches_monte_carlo_of_the_step_by_step_chain(t):
    g = torch.Generator().manual_seed(t)
    s = D.NoiseSchedule.linear(50)
    n = 40_000
    x0 = torch.tensor([1.5, -0.5, 0.0]).expand(n, 3)
    chain = x0.clone()
    for k in range(t + 1):  # index t is the paper's step t + 1: t + 1 noising steps
        chain = (1 - s.betas[k]).sqrt() * chain + s.betas[k].sqrt() * torch.randn(n, 3, generator=g)
    closed = s.q_sample(x0, torch.full((n,), t), torch.randn(n, 3, generator=g))
    se = chain.std(0) / math.sqrt(n)
    assert torch.all((chain.mean(0) - closed.mean(0)).abs() < 5 * math.sqrt(2) * se)
    assert torch.allclose(chain.var(0), closed.var(0), rtol=0.05, atol=1e-4)


def _bayes_posterior(s, x0, xt, t):
    """q(x_{t-1} | x_t, x0) by conditioning the joint Gaussian of (x_{t-1}, x_t) given x0, per dimension."""
    abar_prev = s.alphas_cumprod[t - 1].double() if t > 0 else torch.tensor(1.0, dtype=torch.float64)
    alpha, beta = s.alphas[t].double(), s.betas[t].double()
    m1, v1 = abar_prev.sqrt() * x0, 1 - abar_prev                  # x_{t-1} | x0
    m2, v2 = alpha.sqrt() * m1, alpha * v1 + beta                   # x_t | x0
    c12 = alpha.sqrt() * v1                                         # Cov(x_{t-1}, x_t | x0)
    return m1 + c12 / v2 * (xt - m2), v1 - c12**2 / v2


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_posterior_matches_bayes_rule_for_gaussians(kind):
    s = getattr(D.NoiseSchedule, kind)(100)
    g = torch.Generator().manual_seed(0)
    x0, xt = torch.randn(6, 2, 3, generator=g), torch.randn(6, 2, 3, generator=g)
    t = torch.tensor([0, 1, 10, 50, 98, 99])
    mean, var = s.posterior_mean_variance(x0, xt, t)
    assert mean.shape == x0.shape and var.shape == (6, 1, 1)
    for i, ti in enumerate(t.tolist()):
        m, v = _bayes_posterior(s, x0[i].double(), xt[i].double(), ti)
        assert torch.allclose(mean[i].double(), m, rtol=1e-4, atol=1e-5)
        assert var[i].double().item() == pytest.approx(float(v), rel=1e-3, abs=1e-7)
    assert var[0].item() == 0 and torch.equal(mean[0], x0[0])  # index 0: the step before is the clean data


# ----------------------------------------------------------------------------------------------
# Gaussian data: the Bayes-optimal noise predictor in closed form
# ----------------------------------------------------------------------------------------------

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
L_CHOL = torch.tensor([[1.0, 0.0], [0.8, 0.3]], dtype=torch.float64)
SIGMA = L_CHOL @ L_CHOL.T


def gaussian_eps(schedule):
    """E[eps | x_t] for x0 ~ N(MU, SIGMA): conditioning the joint Gaussian of (eps, x_t),
    Cov(eps, x_t) = sqrt(1 - abar) I, Var(x_t) = abar SIGMA + (1 - abar) I."""
    def eps_fn(x, t):
        if not (t == t[0]).all():
            return torch.cat([eps_fn(x[i:i + 1], t[i:i + 1]) for i in range(len(t))])
        abar = schedule.alphas_cumprod[int(t[0])].double()
        cov = abar * SIGMA + (1 - abar) * torch.eye(2, dtype=torch.float64)
        return (1 - abar).sqrt() * (x.double() - abar.sqrt() * MU) @ torch.linalg.inv(cov)  # cov is symmetric
    return eps_fn


def test_ddim_eta0_maps_noise_to_the_gaussian_and_inverts():
    s = D.NoiseSchedule.linear(1000)
    eps_fn = gaussian_eps(s)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    x = D.sample_ddim(eps_fn, s, z, steps=1000)
    assert torch.allclose(x.mean(0), MU, atol=0.06)
    assert torch.allclose(torch.cov(x.T), SIGMA, atol=0.06)
    # eta = 0 is a deterministic map: the same noise gives the same samples, and inverting it gives the noise
    assert torch.equal(D.sample_ddim(eps_fn, s, z[:10], steps=1000), x[:10])
    z_back = D.ddim_invert(eps_fn, s, x, steps=1000)
    assert (z_back - z).abs().max() < 0.05
    # with fewer steps the map is coarser but still inverts approximately
    x50 = D.sample_ddim(eps_fn, s, z[:500], steps=50)
    assert (D.ddim_invert(eps_fn, s, x50, steps=50) - z[:500]).abs().median() < 0.1


def test_ancestral_sampling_on_gaussian_data():
    s = D.NoiseSchedule.cosine(500)
    eps_fn = gaussian_eps(s)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    x, snaps = D.sample_ancestral(eps_fn, s, z, generator=g, keep=(500, 250, 0))
    assert torch.allclose(x.mean(0), MU, atol=0.06)
    assert torch.allclose(torch.cov(x.T), SIGMA, atol=0.08)
    assert torch.equal(snaps[500], z) and torch.equal(snaps[0], x)
    # halfway, the states follow q(x_t) = N(sqrt(abar) MU, abar SIGMA + (1 - abar) I) at index 249
    abar = s.alphas_cumprod[249].double()
    assert torch.allclose(snaps[250].mean(0), abar.sqrt() * MU, atol=0.06)
    assert torch.allclose(torch.cov(snaps[250].T), abar * SIGMA + (1 - abar) * torch.eye(2, dtype=torch.float64),
                          atol=0.08)


def test_training_loss_of_the_bayes_optimal_predictor():
    """1D data N(0, v): at index t the optimal predictor's loss is Var(eps | x_t) = abar v / (abar v + 1 - abar)."""
    s = D.NoiseSchedule.linear(100)
    v, t, n = 2.0, 30, 200_000
    g = torch.Generator().manual_seed(2)
    x0 = math.sqrt(v) * torch.randn(n, 1, generator=g)
    abar = s.alphas_cumprod[t].item()

    def optimal(xt, tt):
        return math.sqrt(1 - abar) * xt / (abar * v + 1 - abar)

    tt = torch.full((n,), t)
    loss = D.noise_prediction_loss(optimal, s, x0, tt, torch.randn(n, 1, generator=g))
    assert loss.item() == pytest.approx(abar * v / (abar * v + 1 - abar), rel=0.02)
    zero = D.noise_prediction_loss(lambda xt, tt: torch.zeros_like(xt), s, x0, tt, torch.randn(n, 1, generator=g))
    assert zero.item() == pytest.approx(1.0, rel=0.02)


class _GaussianNet(torch.nn.Module):
    """A denoiser ``net(x, time, y)`` that is the Bayes-optimal predictor for the Gaussian data above."""

    def __init__(self, schedule):
        super().__init__()
        self.eps_fn, self.T = gaussian_eps(schedule), schedule.T
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, time, y=None):
        t = (time * self.T - 1).round().long()
        return self.eps_fn(x, t)


def test_score_is_the_scaled_noise_predictor():
    s = D.NoiseSchedule.linear(200)
    model = D.Diffusion(_GaussianNet(s), s, (2,), skip=False)
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    for t in (0, 60, 199):
        abar = s.alphas_cumprod[t].double()
        cov = abar * SIGMA + (1 - abar) * torch.eye(2, dtype=torch.float64)
        q_t = torch.distributions.MultivariateNormal(abar.sqrt() * MU, cov)
        (grad,) = torch.autograd.grad(q_t.log_prob(x).sum(), x)
        score = model.score(x.detach(), torch.full((5,), t))
        assert torch.allclose(score, grad, rtol=1e-4, atol=1e-6)


class _Zero(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, time, y=None):
        return torch.zeros_like(x)


def test_gaussian_skip_is_the_bayes_optimal_predictor_for_gaussian_data():
    """With the network silent, the skip alone is E[eps | x_t] for data N(mu, Sigma) fitted by fit_gaussian."""
    s = D.NoiseSchedule.cosine(100)
    x = torch.distributions.MultivariateNormal(MU, SIGMA).sample((200_000,), ).float()
    model = D.Diffusion(_Zero(), s, (2,)).fit_gaussian(x)
    assert torch.allclose(model.gauss_mean.double(), MU, atol=0.01)
    g = torch.Generator().manual_seed(6)
    xt = 2 * torch.randn(6, 2, generator=g, dtype=torch.float64)
    for t in (0, 30, 99):
        tt = torch.full((6,), t)
        assert torch.allclose(model.eps(xt, tt), gaussian_eps(s)(xt, tt), atol=0.02)
    # untouched, the skip is the predictor for N(0, I) data: eps = sqrt(1 - abar) x_t, exact where abar -> 0
    plain = D.Diffusion(_Zero(), s, (2,))
    assert torch.allclose(plain.eps(xt, tt), (1 - s.alphas_cumprod[99].double()).sqrt() * xt, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Reverse steps
# ----------------------------------------------------------------------------------------------

def test_ddim_with_eta1_one_step_back_is_the_ancestral_step():
    s = D.NoiseSchedule.linear(100)
    g = torch.Generator().manual_seed(3)
    xt, eps, noise = (torch.randn(4, 3, generator=g) for _ in range(3))
    for t in (1, 40, 99):
        ddim = D.ddim_step(s, eps, xt, t, t - 1, eta=1.0, noise=noise)
        ddpm = D.ddpm_step(s, eps, xt, t, noise)
        assert torch.allclose(ddim, ddpm, atol=1e-5)
        # and the DDPM mean is Ho et al.'s eps form: (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)
        mean = (xt - s.betas[t] / (1 - s.alphas_cumprod[t]).sqrt() * eps) / s.alphas[t].sqrt()
        assert torch.allclose(D.ddpm_step(s, eps, xt, t, torch.zeros_like(xt)), mean, atol=1e-5)
    # to the clean sample: x0_hat itself, with no noise
    x0_hat = (xt - (1 - s.alphas_cumprod[5]).sqrt() * eps) / s.alphas_cumprod[5].sqrt()
    assert torch.allclose(D.ddim_step(s, eps, xt, 5, -1, eta=1.0, noise=noise), x0_hat, atol=1e-5)
    assert torch.allclose(D.ddpm_step(s, eps, xt, 0, noise), D.ddim_step(s, eps, xt, 0, -1), atol=1e-6)


def test_ddim_step_eta0_keeps_the_predicted_noise():
    """eta = 0: x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps,
    so q_sample(x0, t, eps) -> q_sample(x0, t', eps)."""
    s = D.NoiseSchedule.cosine(100)
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    xt = s.q_sample(x0, torch.full((3,), 80), eps)
    assert torch.allclose(D.ddim_step(s, eps, xt, 80, 20), s.q_sample(x0, torch.full((3,), 20), eps), atol=1e-4)
    assert torch.allclose(D.ddim_step(s, eps, xt, 80, -1), x0, atol=1e-4)
    with pytest.raises(ValueError, match="t_prev"):
        D.ddim_step(s, eps, xt, 80, 100)
    with pytest.raises(ValueError, match="eta"):
        D.ddim_step(s, eps, xt, 80, 20, eta=-1)


def test_ddim_timesteps():
    assert D.ddim_timesteps(200, 200) == list(range(200))
    for steps in (1, 5, 10, 20, 50):
        taus = D.ddim_timesteps(200, steps)
        assert len(taus) == steps and taus[-1] == 199 and taus == sorted(set(taus))
        assert steps == 1 or taus[0] == 0
    with pytest.raises(ValueError, match="steps"):
        D.ddim_timesteps(200, 0)


def test_guidance_mix_and_guided_eps():
    g = torch.Generator().manual_seed(5)
    u, c = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    assert torch.equal(D.guidance_mix(u, c, 0.0), u)
    assert torch.allclose(D.guidance_mix(u, c, 1.0), c)
    assert torch.allclose(D.guidance_mix(u, c, 3.0), 3 * c - 2 * u)
    torch.manual_seed(0)
    model = D.ImageDiffusion(D.MLPDenoiser(64, 32, 1, num_classes=10), D.NoiseSchedule.linear(50), (1, 8, 8),
                             num_classes=10).eval()
    torch.nn.init.normal_(model.net.out.weight, std=0.1)
    x, t, y = torch.randn(4, 1, 8, 8, generator=g), torch.tensor([0, 10, 20, 49]), torch.tensor([1, 2, 3, 9])
    with torch.no_grad():
        expected = D.guidance_mix(model.eps(x, t), model.eps(x, t, y), 2.5)
        assert torch.allclose(model.guided_eps(x, t, y, 2.5), expected, atol=1e-5)
        assert not torch.allclose(model.eps(x, t), model.eps(x, t, y))


def test_label_dropout_rate():
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, time, y=None):
            seen.append(y)
            return x * self.w

    model = D.Diffusion(Spy(), D.NoiseSchedule.linear(50), (2,), num_classes=10, p_uncond=0.2)
    y = torch.randint(0, 10, (20_000,))
    model.train().loss(torch.randn(20_000, 2), y)
    dropped = (seen[-1] == 10).float().mean().item()
    assert dropped == pytest.approx(0.2, abs=0.015)
    assert torch.equal(seen[-1][seen[-1] != 10], y[seen[-1] != 10])
    model.eval().loss(torch.randn(100, 2), y[:100])
    assert torch.equal(seen[-1], y[:100])  # no dropout in evaluation


# ----------------------------------------------------------------------------------------------
# Networks, models, recipe
# ----------------------------------------------------------------------------------------------

def test_image_model_samples_in_unit_range_and_checks_input():
    torch.manual_seed(0)
    model = D.ImageDiffusion(D.MLPDenoiser(64, 16, 1, num_classes=10), D.NoiseSchedule.cosine(20), (1, 8, 8),
                             num_classes=10)
    assert model.likelihood == "bound"
    for kwargs in ({}, {"steps": 5}, {"steps": 5, "eta": 1.0}, {"y": 3, "guidance": 2.0}, {"y": 3, "guidance": 1.0}):
        x = model.sample(7, **kwargs)
        assert x.shape == (7, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        model.loss(torch.full((2, 1, 8, 8), 2.0))
    with pytest.raises(ValueError, match="shape"):
        model.loss(torch.zeros(2, 64))
    with pytest.raises(ValueError, match="positive"):
        model.sample(0)
    with pytest.raises(ValueError, match="labels"):
        model.sample(3, y=torch.tensor([1, 2, 11]))


def test_train_digits_quick():
    model, history = D.train_digits(quick=True, seed=0)
    assert history.train_loss and history.val_loss
    x = model.sample(10)
    assert x.shape == (10, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert model.likelihood == "bound" and model.continuous and model.skip == "pixels"


def test_network_evaluations_per_sampler():
    """NFE: ancestral T, DDIM S; guidance doubles the batch, not the number of calls; y alone is conditional."""
    calls = []

    class Counter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, time, y=None):
            calls.append((len(x), None if y is None else y.tolist()))
            return x * self.w

    model = D.Diffusion(Counter(), D.NoiseSchedule.cosine(30), (2,), num_classes=10)
    model.sample(4)
    assert len(calls) == 30 and calls[0] == (4, [10] * 4)
    calls.clear()
    model.sample(4, steps=7)
    assert len(calls) == 7
    calls.clear()
    model.sample(4, steps=7, y=3)
    assert len(calls) == 7 and calls[0] == (4, [3] * 4)
    calls.clear()
    model.sample(4, steps=7, y=3, guidance=2.0)
    assert len(calls) == 7 and calls[0] == (8, [10] * 4 + [3] * 4)


# ----------------------------------------------------------------------------------------------
# The variational bound on discrete images
# ----------------------------------------------------------------------------------------------

def _tiny_image_model(betas, pixels=2, levels=5, seed=0):
    torch.manual_seed(seed)
    return D.ImageDiffusion(D.MLPDenoiser(pixels, 8, 1), D.NoiseSchedule(torch.tensor(betas)), (1, 1, pixels),
                            levels=levels).eval()


def test_discretized_gaussian_probabilities_sum_to_one_and_match_high_precision_cdfs():
    import mpmath

    levels, std = 5, 0.3
    grid = torch.linspace(-1, 1, levels)
    mean = torch.tensor([-1.3, -0.2, 0.4, 2.5])
    log_p = torch.stack([D.discretized_gaussian_log_prob(torch.full((4,), float(c)), mean, std, levels)
                         for c in grid], 1)                                           # (4 means, 5 levels)
    assert torch.allclose(log_p.exp().sum(1), torch.ones(4), atol=1e-6)
    half = 1 / (levels - 1)
    for i, m in enumerate(mean.tolist()):
        for j, c in enumerate(grid.tolist()):
            lo = -mpmath.inf if j == 0 else (c - half - m) / std
            hi = mpmath.inf if j == levels - 1 else (c + half - m) / std
            expected = float(mpmath.log(mpmath.ncdf(hi) - mpmath.ncdf(lo)))
            assert log_p[i, j].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # far in a tail: the top bin from a mean 43.75 std below it, about -962 nats, still finite and exact
    far = D.discretized_gaussian_log_prob(torch.tensor([1.0]), torch.tensor([-1.0]), 0.04, levels).item()
    expected = float(mpmath.log(mpmath.ncdf(-(0.75 + 1) / 0.04)))
    assert far == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="std must be positive"):
        D.discretized_gaussian_log_prob(torch.zeros(1), torch.zeros(1), 0.0, levels)


def test_elbo_terms_match_a_monte_carlo_of_the_joint_densities():
    """-ELBO = E_q[log q(x_{1:T} | x_0) - log p(x_{0:T})], with the forward chain sampled step by step and every
    density a torch.distributions.Normal; the reverse mean in Ho et al.'s eq. 11 form."""
    from torch.distributions import Normal

    betas = [0.02, 0.2, 0.6]
    model = _tiny_image_model(betas)
    x = torch.tensor([[[[0.25, 1.0]]]])                    # levels 1 and 4 of 0..4
    n = 40000
    with torch.no_grad():
        terms = model.elbo_terms(x.expand(n, -1, -1, -1).contiguous(), generator=torch.Generator().manual_seed(1))
    ours, ours_se = terms.sum(1).mean().item(), terms.sum(1).std().item() / math.sqrt(n)

    g = torch.Generator().manual_seed(2)
    b = torch.tensor(betas, dtype=torch.float64)
    a = 1 - b
    abar = torch.cumprod(a, 0)
    x0 = (2 * x - 1).double().expand(n, -1, -1, -1)
    chain, log_q = [], 0.0
    prev = x0
    for t in range(3):                                     # x at code index t from the one before: q(x_t | x_{t-1})
        step = Normal(a[t].sqrt() * prev, b[t].sqrt())
        cur = a[t].sqrt() * prev + b[t].sqrt() * torch.randn(prev.shape, generator=g, dtype=torch.float64)
        log_q = log_q + step.log_prob(cur).flatten(1).sum(1)
        chain.append(cur)
        prev = cur
    log_p = Normal(0.0, 1.0).log_prob(chain[2]).flatten(1).sum(1)
    with torch.no_grad():
        for t in (2, 1):
            tt = torch.full((n,), t, dtype=torch.long)
            eps = model.eps(chain[t].float(), tt).double()
            mean = (chain[t] - b[t] / (1 - abar[t]).sqrt() * eps) / a[t].sqrt()
            var = b[t] * (1 - abar[t - 1]) / (1 - abar[t])
            log_p = log_p + Normal(mean, var.sqrt()).log_prob(chain[t - 1]).flatten(1).sum(1)
        eps0 = model.eps(chain[0].float(), torch.zeros(n, dtype=torch.long)).double()
    x0_hat = (chain[0] - (1 - abar[0]).sqrt() * eps0) / abar[0].sqrt()
    decoder = Normal(x0_hat, b[0].sqrt())
    lower = torch.where(x0 < -0.9, torch.full_like(x0, -math.inf), x0 - 0.25)
    upper = torch.where(x0 > 0.9, torch.full_like(x0, math.inf), x0 + 0.25)
    log_p = log_p + (decoder.cdf(upper) - decoder.cdf(lower)).log().flatten(1).sum(1)
    theirs = log_q - log_p
    theirs_mean, theirs_se = theirs.mean().item(), theirs.std().item() / math.sqrt(n)
    assert abs(ours - theirs_mean) < 4 * math.hypot(ours_se, theirs_se) + 1e-3


def test_the_bound_lies_above_the_exact_nll_by_numerical_integration():
    """T = 2, one pixel: P(x0) = int int N(x_1; 0, 1) N(x_0'; mean(x_1), var) P(x0 | x_0') dx_0' dx_1 on a grid.
    The model's probabilities of the levels sum to 1, and the bound is never below -log P."""
    from torch.distributions import Normal

    model = _tiny_image_model([0.05, 0.5], pixels=1, levels=3, seed=3)
    sched = model.schedule
    u = torch.linspace(-7, 7, 1401, dtype=torch.float64)          # x at index 1
    v = torch.linspace(-4, 4, 1601, dtype=torch.float64)          # x at index 0
    du, dv = (u[1] - u[0]).item(), (v[1] - v[0]).item()
    with torch.no_grad():
        x0_hat1 = sched.predict_x0(u.float()[:, None, None, None], torch.ones(len(u), dtype=torch.long),
                                   model.eps(u.float()[:, None, None, None], torch.ones(len(u), dtype=torch.long)))
        mean, var = sched.posterior_mean_variance(x0_hat1, u.float()[:, None, None, None],
                                                  torch.ones(len(u), dtype=torch.long))
        x0_hat0 = sched.predict_x0(v.float()[:, None, None, None], torch.zeros(len(v), dtype=torch.long),
                                   model.eps(v.float()[:, None, None, None], torch.zeros(len(v), dtype=torch.long)))
    density = (Normal(0.0, 1.0).log_prob(u)[:, None]
               + Normal(mean.double().flatten()[:, None], var.double().flatten()[:, None].sqrt()).log_prob(v[None])).exp()
    total = 0.0
    for level in range(3):
        x0 = torch.full((len(v),), level / 2.0)
        decoder = D.discretized_gaussian_log_prob(2 * x0 - 1, x0_hat0.flatten(), math.sqrt(0.05), 3).double().exp()
        p_level = (density * decoder[None]).sum().item() * du * dv
        total += p_level
        images = torch.full((4000, 1, 1, 1), level / 2.0)
        bound = model.nll(images, generator=torch.Generator().manual_seed(level))
        se = bound.std().item() / math.sqrt(len(bound))
        assert bound.mean().item() >= -math.log(p_level) - 4 * se
    assert total == pytest.approx(1.0, abs=2e-3)


def test_elbo_checks_its_input():
    model = _tiny_image_model([0.05, 0.5])
    with pytest.raises(ValueError, match="grid of 5 levels"):
        model.elbo_terms(torch.full((2, 1, 1, 2), 0.3))
    with pytest.raises(ValueError, match="draws must be a positive integer"):
        model.nll(torch.zeros(2, 1, 1, 2), draws=0)
    with pytest.raises(ValueError, match="levels must be an integer >= 2"):
        D.ImageDiffusion(D.MLPDenoiser(2, 8, 1), D.NoiseSchedule.cosine(10), (1, 1, 2), levels=1)
    terms = model.elbo_terms(torch.zeros(3, 1, 1, 2))
    assert terms.shape == (3, 3) and (terms[:, 1:] >= 0).all()


# ----------------------------------------------------------------------------------------------
# Continuous time and the per-pixel skip
# ----------------------------------------------------------------------------------------------

def test_cosine_schedule_in_continuous_time_matches_its_indices():
    sched = D.NoiseSchedule.cosine(200)
    t = torch.arange(199)
    abar = sched.abar_at((t + 1) / 200)
    assert torch.allclose(abar.float(), sched.alphas_cumprod[:199], rtol=1e-5, atol=1e-7)
    tau = torch.tensor([0.001, 0.3, 0.77, 0.99], dtype=torch.float64)
    assert torch.allclose(sched.tau_of_abar(sched.abar_at(tau)), tau, atol=1e-9)
    with pytest.raises(ValueError, match="cosine"):
        D.NoiseSchedule.linear(100).abar_at(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        sched.abar_at(torch.tensor([1.5]))


def test_pixel_denoiser_is_bayes_rule_for_independent_categorical_pixels():
    """E[eps | x_t] and its std, against enumeration of each pixel's levels with torch.distributions."""
    from torch.distributions import Normal

    torch.manual_seed(0)
    model = D.ImageDiffusion(D.MLPDenoiser(3, 8, 1), D.NoiseSchedule.cosine(10), (1, 1, 3), levels=5, skip="pixels")
    log_pi = torch.randn(3, 5).log_softmax(1)
    model.pixel_logp.copy_(log_pi)
    xt = torch.randn(4, 1, 1, 3)
    abar = torch.tensor([0.9, 0.5, 0.1, 0.999])
    eps, std = model.pixel_denoiser(xt, abar)
    levels = torch.linspace(-1, 1, 5, dtype=torch.float64)
    for b in range(4):
        a, s = abar[b].double().sqrt(), (1 - abar[b].double()).sqrt()
        for d in range(3):
            x = xt[b, 0, 0, d].double()
            post = (log_pi[d].double() + Normal(a * levels, s).log_prob(x)).softmax(0)
            eps_k = (x - a * levels) / s                      # the noise each level implies
            mean = (post * eps_k).sum()
            assert eps[b, d].item() == pytest.approx(mean.item(), abs=1e-4)
            assert std[b, d].item() == pytest.approx((post * (eps_k - mean) ** 2).sum().sqrt().item(), abs=1e-4)


def test_fit_pixels_is_the_smoothed_per_pixel_categorical():
    model = D.ImageDiffusion(D.MLPDenoiser(2, 8, 1), D.NoiseSchedule.cosine(10), (1, 1, 2), levels=3, skip="pixels")
    x = torch.tensor([[[[0.0, 1.0]]], [[[0.0, 0.5]]], [[[0.5, 1.0]]]])
    model.fit_pixels(x, smoothing=0.1)
    expected = torch.tensor([[2.1, 1.1, 0.1], [0.1, 1.1, 2.1]]) / 3.3
    assert torch.allclose(model.pixel_logp.exp(), expected, atol=1e-6)


def _tiny_continuous_model(seed=0):
    torch.manual_seed(seed)
    model = D.ImageDiffusion(D.MLPDenoiser(2, 16, 1), D.NoiseSchedule.cosine(50), (1, 1, 2), levels=5,
                             skip="pixels", continuous=True)
    with torch.no_grad():  # a network that is not zero, so the bound depends on it
        model.net.out.weight.normal_(0, 0.3)
    model.pixel_logp.copy_(torch.tensor([[0.1, 0.2, 0.4, 0.2, 0.1], [0.4, 0.1, 0.1, 0.1, 0.3]]).log())
    return model.eval()


def test_continuous_bound_is_the_limit_of_the_discrete_bounds():
    model = _tiny_continuous_model()
    x = torch.tensor([[[[0.25, 1.0]]], [[[0.5, 0.0]]], [[[1.0, 0.75]]]]).repeat(200, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    bounds = {T: model.nll(x, steps=T, generator=g).mean().item() for T in (25, 400, 3200)}
    limit = model.continuous_nll(x, draws=128, generator=g).mean().item()
    # more steps, a tighter bound, approaching the continuous-time one
    assert bounds[25] > bounds[400] > limit - 0.05
    assert abs(bounds[3200] - limit) < 0.1 * abs(bounds[25] - limit) + 0.05


def test_with_steps_shares_the_network_and_checks_its_model():
    model = _tiny_continuous_model()
    other = model.with_steps(80)
    assert other.schedule.T == 80 and model.schedule.T == 50 and other.net is model.net
    assert other.sample(3).shape == (3, 1, 1, 2)
    discrete = D.ImageDiffusion(D.MLPDenoiser(2, 8, 1), D.NoiseSchedule.cosine(10), (1, 1, 2), levels=5)
    with pytest.raises(ValueError, match="continuous"):
        discrete.with_steps(20)
    with pytest.raises(ValueError, match="continuous"):
        discrete.continuous_nll(torch.zeros(2, 1, 1, 2))


def test_continuous_training_draws_time_as_asked_and_bad_settings_are_refused():
    model = _tiny_continuous_model()
    tau = model.sample_time(20000)
    assert 0 < tau.min() and tau.max() <= 1 and abs(tau.mean().item() - 0.5) < 0.01
    log_snr = torch.log(model.schedule.abar_at(tau) / (1 - model.schedule.abar_at(tau)))
    model.time_sampling = "likelihood"
    tau_l = model.sample_time(20000)
    log_snr_l = torch.log(model.schedule.abar_at(tau_l) / (1 - model.schedule.abar_at(tau_l)))
    # half the draws uniform in log-SNR over [-10, 13]: a quarter of all draws above log-SNR 7.25, against few
    share = (log_snr_l > 7.25).double().mean().item()
    assert abs(share - (0.125 + 0.5 * (log_snr > 7.25).double().mean().item())) < 0.015
    loss = model.loss(torch.full((8, 1, 1, 2), 0.5))
    assert loss.dim() == 0 and torch.isfinite(loss)
    net, sched = D.MLPDenoiser(64, 8, 1), D.NoiseSchedule.cosine(10)
    with pytest.raises(ValueError, match="ImageDiffusion"):
        D.Diffusion(net, sched, (64,), skip="pixels")
    with pytest.raises(ValueError, match="skip must be one of"):
        D.Diffusion(net, sched, (64,), skip="linear")
    with pytest.raises(ValueError, match="cosine"):
        D.Diffusion(net, D.NoiseSchedule.linear(100), (64,), continuous=True)
    with pytest.raises(ValueError, match="continuous=True"):
        D.Diffusion(net, sched, (64,), time_sampling="likelihood")


def test_the_denoisers_stay_finite_at_the_tiniest_noise():
    """A continuous-time draw can land where abar rounds to 1 in float32; sqrt(1 - abar) must not become 0."""
    model = _tiny_continuous_model()
    xt = torch.full((3, 1, 1, 2), 0.5)
    for abar in (torch.ones(3), torch.full((3,), 1 - 1e-9, dtype=torch.float64)):
        assert torch.isfinite(model.eps_at(xt, abar, torch.full((3,), 1e-7))).all()


# ----------------------------------------------------------------------------------------------
# The probability-flow ODE's likelihood
# ----------------------------------------------------------------------------------------------

def test_pf_ode_density_of_the_exact_gaussian_denoiser_is_the_noised_gaussian():
    """An untrained network outputs 0, so with the Gaussian skip eps_theta is the exact denoiser of N(mu, Sigma);
    the ODE's marginal at tau is then N(alpha mu, alpha^2 Sigma + sigma^2 I), from torch.distributions."""
    from torch.distributions import MultivariateNormal

    torch.manual_seed(0)
    data = torch.randn(4000, 2) @ torch.tensor([[1.0, 0.0], [0.6, 0.5]]) + torch.tensor([0.5, -1.0])
    model = D.Diffusion(D.MLPDenoiser(2, 16, 1), D.NoiseSchedule.cosine(100), (2,), continuous=True).fit_gaussian(data)
    mu, cov = model.gauss_mean.double(), (model.gauss_basis * model.gauss_var) @ model.gauss_basis.T
    tau = 0.3
    abar = model.schedule.abar_at(torch.tensor([tau]))[0]
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(1)) * 1.5
    exact = MultivariateNormal(abar.sqrt() * mu, abar * cov.double() + (1 - abar) * torch.eye(2, dtype=torch.float64))
    got = model.pf_ode_log_prob(z, tau, steps=64, divergence="exact")
    assert torch.allclose(got.double(), exact.log_prob(z.double()), atol=0.02)


def test_pf_ode_density_of_independent_pixels_is_their_noised_mixture():
    """With the network off, the per-pixel skip is the exact denoiser of independent categorical pixels, whose
    noised marginal is a product of 1-D Gaussian mixtures, written out here."""
    model = _tiny_continuous_model()
    with torch.no_grad():
        model.net.out.weight.zero_()
    tau = 0.05
    abar = model.schedule.abar_at(torch.tensor([tau]))[0]
    a, s = abar.sqrt(), (1 - abar).sqrt()
    z = torch.tensor([[[[0.3, -0.9]]], [[[1.1, 0.0]]], [[[-0.5, 0.6]]]])
    levels = torch.linspace(-1, 1, 5, dtype=torch.float64)
    comp = (model.pixel_logp.double()[None] - (z.flatten(1).double()[:, :, None] - a * levels) ** 2 / (2 * s**2)
            - torch.log(s) - 0.5 * math.log(2 * math.pi))
    exact = torch.logsumexp(comp, -1).sum(1)
    got = model.pf_ode_log_prob(z, tau, steps=96, divergence="exact")
    assert torch.allclose(got.double(), exact, atol=0.05)


def test_pf_ode_bound_of_independent_pixels_lies_just_above_their_exact_nll():
    model = _tiny_continuous_model()
    with torch.no_grad():
        model.net.out.weight.zero_()
    x = torch.tensor([[[[0.25, 1.0]]]]).repeat(300, 1, 1, 1)
    k = (x.flatten(1) * 4).round().long()
    exact_nll = -model.pixel_logp.gather(1, k[:1].T).sum().item()
    bound = model.pf_ode_nll(x, log_snr=6.0, steps=32, divergence="exact", generator=torch.Generator().manual_seed(0))
    se = bound.std().item() / math.sqrt(len(bound))
    assert exact_nll - 4 * se - 0.02 <= bound.mean().item() <= exact_nll + 0.3
    with pytest.raises(ValueError, match="continuous"):
        D.ImageDiffusion(D.MLPDenoiser(2, 8, 1), D.NoiseSchedule.cosine(10), (1, 1, 2), levels=5).pf_ode_log_prob(
            torch.zeros(2, 1, 1, 2), 0.5)
    with pytest.raises(ValueError, match="tau must lie"):
        model.pf_ode_log_prob(torch.zeros(2, 1, 1, 2), 1.0)


def test_clipping_the_predicted_clean_sample():
    """clip=1 clamps x0_hat to [-1, 1]: the DDPM mean and the DDIM update follow from the clamped estimate
    (written here from the posterior's coefficients, not the code's own helpers); a huge clip changes nothing."""
    torch.manual_seed(0)
    sched = D.NoiseSchedule.cosine(20)
    xt, eps, noise = 3 * torch.randn(6, 4), torch.randn(6, 4), torch.randn(6, 4)
    t, t_prev = 12, 5
    abar, abar_prev = sched.alphas_cumprod[t].double(), sched.alphas_cumprod[t - 1].double()
    beta, alpha = sched.betas[t].double(), sched.alphas[t].double()
    x0c = ((xt.double() - (1 - abar).sqrt() * eps.double()) / abar.sqrt()).clamp(-1, 1)
    mean = abar_prev.sqrt() * beta / (1 - abar) * x0c + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * xt.double()
    var = beta * (1 - abar_prev) / (1 - abar)
    got = D.ddpm_step(sched, eps, xt, t, noise, clip=1.0)
    assert torch.allclose(got.double(), mean + var.sqrt() * noise.double(), atol=1e-5)
    ab_p = sched.alphas_cumprod[t_prev].double()
    eps_c = (xt.double() - abar.sqrt() * x0c) / (1 - abar).sqrt()
    want = ab_p.sqrt() * x0c + (1 - ab_p).sqrt() * eps_c
    assert torch.allclose(D.ddim_step(sched, eps, xt, t, t_prev, clip=1.0).double(), want, atol=1e-5)
    assert (x0c.abs() < (xt.double() - (1 - abar).sqrt() * eps.double()).abs() / abar.sqrt()).any()  # it did clip
    for step in (lambda c: D.ddpm_step(sched, eps, xt, t, noise, clip=c),
                 lambda c: D.ddim_step(sched, eps, xt, t, t_prev, clip=c)):
        assert torch.allclose(step(None), step(1e9), atol=1e-5)
    with pytest.raises(ValueError, match="clip"):
        D.ddpm_step(sched, eps, xt, t, noise, clip=0.0)


def test_sampling_with_clip_runs_and_stays_in_range():
    torch.manual_seed(0)
    model = D.ImageDiffusion(D.MLPDenoiser(64, 16, 1), D.NoiseSchedule.cosine(10), (1, 8, 8))
    for steps in (None, 5):
        x = model.sample(4, steps=steps, clip=1.0, generator=torch.Generator().manual_seed(0))
        assert x.shape == (4, 1, 8, 8) and x.min() >= 0 and x.max() <= 1


class _Constant(torch.nn.Module):
    """A 'network' that returns a fixed tensor, to test what the model does with its output."""

    def __init__(self, value):
        super().__init__()
        self.value = value
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, time, y=None):
        return self.value.expand_as(x) + 0 * self.dummy


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_x0_and_v_networks_are_read_and_trained_on_their_own_target(prediction):
    torch.manual_seed(0)
    sched = D.NoiseSchedule.cosine(10)
    out = torch.randn(5, 3)
    model = D.Diffusion(_Constant(out), sched, (3,), skip="none", prediction=prediction)
    xt, t = torch.randn(5, 3), torch.tensor([0, 2, 4, 6, 9])
    abar = sched.alphas_cumprod[t][:, None]
    a, s = abar.sqrt(), (1 - abar).sqrt()
    # the noise the prediction implies, from x_t = a x0 + s eps (and v = a eps - s x0, a^2 + s^2 = 1)
    want = (xt - a * out) / s if prediction == "x0" else s * xt + a * out
    assert torch.allclose(model.eps(xt, t), want, atol=1e-5)
    x0, noise = torch.randn(5, 3), torch.randn(5, 3)
    target = x0 if prediction == "x0" else a * noise - s * x0
    assert torch.allclose(model.loss(x0, t=t, noise=noise), ((out - target) ** 2).mean(), atol=1e-6)


def test_prediction_is_checked():
    net, sched = D.MLPDenoiser(2, 8, 1), D.NoiseSchedule.cosine(10)
    with pytest.raises(ValueError, match="prediction must be one of"):
        D.Diffusion(net, sched, (2,), skip="none", prediction="score")
    with pytest.raises(ValueError, match="needs skip='none'"):
        D.Diffusion(net, sched, (2,), skip="gaussian", prediction="v")


def test_image_model_for_each_dataset():
    digits, mnist = D.image_model("digits"), D.image_model("mnist", T=20, base=8)
    assert isinstance(digits.net, D.MLPDenoiser) and digits.shape == (1, 8, 8) and digits.levels == 17
    assert isinstance(mnist.net, D.SmallUNet) and mnist.shape == (1, 28, 28) and mnist.levels == 256
    assert mnist.skip == "pixels" and mnist.continuous and mnist.num_classes == 10 and mnist.p_uncond == 0.5
    x = mnist.sample(2, steps=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.image_model("cifar")
