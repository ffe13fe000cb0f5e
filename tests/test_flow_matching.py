"""flow_matching: the mathematics against independent computations (finite differences, closed forms,
autograd Jacobians, torch.distributions)."""
import math

import pytest
import torch

from gencourse import flow_matching as fm


@pytest.mark.parametrize("path", ["linear", "vp"])
def test_target_velocity_is_the_time_derivative_of_the_path(path):
    p = fm.get_path(path)
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    t = torch.rand(6, generator=g, dtype=torch.float64) * 0.98 + 0.01
    h = 1e-5
    fd = (p.sample(x0, x1, t + h) - p.sample(x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(p.target_velocity(x0, x1, t), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", ["linear", "vp"])
def test_path_ends_at_noise_and_data(path):
    p = fm.get_path(path)
    x0, x1 = torch.randn(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(p.sample(x0, x1, 0.0), x0, atol=1e-6, rtol=0)
    torch.testing.assert_close(p.sample(x0, x1, 1.0), x1, atol=1e-6, rtol=0)


def test_vp_path_preserves_variance():
    p = fm.VPPath()
    t = torch.linspace(0, 1, 11)
    torch.testing.assert_close(p.alpha(t) ** 2 + p.sigma(t) ** 2, torch.ones(11))


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        fm.get_path("curvy")
    with pytest.raises(ValueError):
        fm.LinearPath().sample(torch.zeros(3, 2), torch.zeros(4, 2), 0.5)
    with pytest.raises(ValueError):
        fm.euler_sample(lambda x, t: x, torch.zeros(2, 2), 0)
    with pytest.raises(ValueError):
        fm.ode_log_prob(lambda x, t: x, torch.zeros(2, 2), divergence="magic")
    with pytest.raises(ValueError):
        fm.DigitsFlowMatching(hidden=8, depth=1).nll(torch.rand(2, 1, 4, 4))


def _gaussian_optimal_velocity(mu, s):
    """The marginal velocity of the linear path when the data are N(mu, diag(s^2)), per coordinate:
    x_t ~ N(t mu, (t^2 s^2 + (1-t)^2)); u_t(x) = E[x1 - x0 | x_t = x] in closed form."""
    def v(x, t):
        t = t.view(-1, 1)
        var = t ** 2 * s ** 2 + (1 - t) ** 2
        cov_u_x = t * s ** 2 - (1 - t)  # Cov(x1 - x0, x_t)
        return mu + cov_u_x / var * (x - t * mu)
    return v


@pytest.mark.parametrize("sampler,steps,tol", [(fm.euler_sample, 200, 0.05), (fm.heun_sample, 20, 0.03)])
def test_ode_sampler_reaches_gaussian_data(sampler, steps, tol):
    mu, s = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.5])
    v = _gaussian_optimal_velocity(mu, s)
    x0 = torch.randn(40000, 2, generator=torch.Generator().manual_seed(0))
    x1 = sampler(v, x0, steps)
    torch.testing.assert_close(x1.mean(0), mu, atol=tol, rtol=0)
    torch.testing.assert_close(torch.cov(x1.T), torch.diag(s ** 2), atol=3 * tol, rtol=0)


def test_cfm_gradient_matches_marginal_loss_gradient():
    """Same gradient: conditional and marginal objectives differ by a theta-independent constant (MC check)."""
    mu, s = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])
    u = _gaussian_optimal_velocity(mu, s)
    w = torch.zeros(2, 2, requires_grad=True)
    g = torch.Generator().manual_seed(1)
    n = 400000
    x1 = mu + s * torch.randn(n, 2, generator=g)
    x0, t = torch.randn(n, 2, generator=g), torch.rand(n, generator=g)
    xt = t[:, None] * x1 + (1 - t[:, None]) * x0
    v = xt @ w.T + 0.3
    cond = (v - (x1 - x0)).pow(2).sum(1).mean()
    marg = (v - u(xt, t)).pow(2).sum(1).mean()
    g_c, = torch.autograd.grad(cond, w, retain_graph=True)
    g_m, = torch.autograd.grad(marg, w)
    torch.testing.assert_close(g_c, g_m, atol=0.02, rtol=0.02)


def test_exact_divergence_matches_autograd_jacobian_trace():
    torch.manual_seed(0)
    net = fm.MLPDenoiser(3, hidden=16, depth=1)
    torch.nn.init.normal_(net.out.weight)  # the output layer starts at zero: give it a Jacobian
    x, t = torch.randn(5, 3), torch.rand(5)
    _, div = fm.divergence_exact(net, x, t)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda y: net(y[None], t[i:i + 1])[0], x[i])
        assert torch.allclose(div[i], torch.trace(jac), atol=1e-5)


def test_hutchinson_is_unbiased():
    a = torch.randn(4, 4, generator=torch.Generator().manual_seed(3))
    field = lambda x, t: x @ a.T
    x = torch.randn(1, 4)
    g = torch.Generator().manual_seed(4)
    est = torch.stack([fm.divergence_hutchinson(field, x, torch.zeros(1),
                                                (torch.randint(0, 2, (1, 4), generator=g) * 2 - 1).float())[1]
                       for _ in range(4000)]).mean()
    assert abs(est.item() - torch.trace(a).item()) < 0.15


def test_ode_log_prob_of_a_linear_flow_matches_closed_form():
    """v(x, t) = A x: x_1 = expm(A) x_0, so p_1 = N(0, expm(A) expm(A)^T) (torch.distributions)."""
    a = torch.tensor([[-0.3, 0.8], [-0.5, 0.4]])
    field = lambda x, t: x @ a.T
    m = torch.linalg.matrix_exp(a)
    dist = torch.distributions.MultivariateNormal(torch.zeros(2), covariance_matrix=m @ m.T)
    x1 = torch.randn(50, 2, generator=torch.Generator().manual_seed(5)) * 1.5
    lp = fm.ode_log_prob(field, x1, steps=64)
    torch.testing.assert_close(lp, dist.log_prob(x1), atol=2e-3, rtol=0)
    # Hutchinson: one probe is off by +-(a12 + a21) = 0.3; many probes average it out
    lp = fm.ode_log_prob(field, x1, steps=16, divergence="hutchinson", probes=400,
                         generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(lp, dist.log_prob(x1), atol=0.06, rtol=0)


def test_differentiable_ode_log_prob_has_the_closed_form_gradient():
    """v(x, t) = a * x (diagonal): p_1 = N(0, diag(e^(2a))), so d log p_1 / dx = -x e^(-2a); Rademacher probes are
    exact on a diagonal Jacobian. The differentiable estimate equals the detached one with the same probes."""
    a = torch.tensor([0.4, -0.7, 0.2])
    field = lambda x, t: x * a
    x1 = (torch.randn(20, 3, generator=torch.Generator().manual_seed(3)) * 1.3).requires_grad_(True)
    lp = fm.ode_log_prob(field, x1, steps=64, divergence="hutchinson", probes=2, differentiable=True,
                         generator=torch.Generator().manual_seed(0))
    detached = fm.ode_log_prob(field, x1, steps=64, divergence="hutchinson", probes=2,
                               generator=torch.Generator().manual_seed(0))
    assert lp.requires_grad and not detached.requires_grad
    torch.testing.assert_close(lp.detach(), detached)
    dist = torch.distributions.Normal(torch.zeros(3), torch.exp(a))
    torch.testing.assert_close(lp.detach(), dist.log_prob(x1.detach()).sum(1), atol=2e-3, rtol=0)
    grad, = torch.autograd.grad(lp.sum(), x1)
    torch.testing.assert_close(grad, -x1.detach() * torch.exp(-2 * a), atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="hutchinson"):
        fm.ode_log_prob(field, x1, steps=4, differentiable=True)


def test_variational_dequantization_quick_runs_and_pairs_its_figures():
    """The untrained per-pixel model is enough here: the quick run only has to work and pair its figures."""
    from gencourse import data
    model = fm.DigitsFlowMatching().fit_gaussian(data.load("digits", "train").images)
    model.fit_pixels(data.load("digits", "train").images)
    out = fm.variational_dequantization(model, seed=0, quick=True)
    assert out["eval_steps"] == 4 and out["train_steps"] == 2 and out["epochs"] == 1
    assert math.isfinite(out["nll_test_uniform"]) and math.isfinite(out["nll_test_variational"])
    assert out["drop"] == pytest.approx(out["nll_test_uniform"] - out["nll_test_variational"], abs=1e-4)
    lo, hi = out["drop_interval"]
    assert lo < out["drop"] < hi


def test_ode_log_prob_of_a_time_dependent_affine_flow():
    """The Gaussian-data optimal field carries N(0, I) to N(mu, diag s^2) exactly."""
    mu, s = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.5])
    v = _gaussian_optimal_velocity(mu, s)
    x1 = mu + s * torch.randn(30, 2, generator=torch.Generator().manual_seed(6))
    lp = fm.ode_log_prob(v, x1, steps=100)
    truth = torch.distributions.Normal(mu, s).log_prob(x1).sum(1)
    torch.testing.assert_close(lp, truth, atol=5e-3, rtol=0)


def test_euler_and_heun_nfe_and_trajectories():
    v = lambda x, t: torch.ones_like(x)
    x, traj = fm.euler_sample(v, torch.zeros(3, 2), 4, return_trajectory=True)
    assert len(traj) == 5 and torch.allclose(x, torch.ones(3, 2))
    assert fm.nfe("euler", 4) == 4 and fm.nfe("heun", 4) == 8
    assert torch.allclose(fm.straightness(traj), torch.zeros(3))


def test_digits_model_api_quick():
    model, hist = fm.train_digits(quick=True, verbose=False)
    assert model.likelihood == "bound"
    s = model.sample(5, steps=2)
    assert s.shape == (5, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    assert torch.allclose(s * 16, (s * 16).round(), atol=1e-5)
    from gencourse import data
    x = data.load("digits", "test").images[:4]
    nll = model.nll(x, steps=2)
    assert nll.shape == (4,) and torch.isfinite(nll).all()
    with pytest.raises(ValueError):
        model.sample(0)


def _random_gaussian(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T / d + 0.05 * torch.eye(d, dtype=torch.float64)
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    lam, basis = torch.linalg.eigh(cov)
    return mean, cov, lam, basis


def test_gaussian_velocity_matches_joint_gaussian_conditioning():
    """v*(x, t) = E[x1 - x0 | x_t = x] from the joint Gaussian of (x1 - x0, x_t) with full matrices (no eigenbasis)."""
    d = 5
    mean, cov, lam, basis = _random_gaussian(d, 0)
    eye = torch.eye(d, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    for t in (0.0, 0.2, 0.7, 0.95, 1.0):
        cov_xt = t ** 2 * cov + (1 - t) ** 2 * eye              # Cov(x_t)
        cov_u_xt = t * cov - (1 - t) * eye                      # Cov(x1 - x0, x_t)
        x = torch.randn(7, d, generator=g, dtype=torch.float64)
        want = mean + (x - t * mean) @ torch.linalg.solve(cov_xt, cov_u_xt.T)
        got = fm.gaussian_velocity(x, t, mean, lam, basis)
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)
        cond_cov = (cov + eye) - cov_u_xt @ torch.linalg.solve(cov_xt, cov_u_xt.T)   # Cov(x1 - x0 | x_t)
        std = fm.gaussian_velocity_std(x, t, lam, basis)
        torch.testing.assert_close(std, cond_cov.diagonal().sqrt().expand(7, d), atol=1e-9, rtol=1e-9)


def test_gaussian_velocity_is_the_monte_carlo_regression_of_the_target():
    """Least squares of x1 - x0 on (x_t, 1) over Monte Carlo draws at a fixed t recovers v*'s affine map."""
    d, t, n = 3, 0.6, 400_000
    mean, cov, lam, basis = _random_gaussian(d, 2)
    g = torch.Generator().manual_seed(3)
    x1 = mean + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    x0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    xt = t * x1 + (1 - t) * x0
    design = torch.cat([xt, torch.ones(n, 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, x1 - x0).solution                     # (d + 1, d)
    probe = torch.randn(10, d, generator=g, dtype=torch.float64)
    mc = torch.cat([probe, torch.ones(10, 1, dtype=torch.float64)], 1) @ coef
    torch.testing.assert_close(fm.gaussian_velocity(probe, t, mean, lam, basis), mc, atol=0.03, rtol=0)


def test_gaussian_velocity_divergence_matches_autograd_trace():
    d = 4
    mean, cov, lam, basis = _random_gaussian(d, 4)
    for t in (0.1, 0.5, 0.9):
        x = torch.randn(d, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda z: fm.gaussian_velocity(z[None], t, mean, lam, basis)[0], x)
        div = fm.gaussian_velocity_divergence(torch.tensor([t], dtype=torch.float64), lam)
        torch.testing.assert_close(div[0], torch.trace(jac), atol=1e-9, rtol=1e-9)


def test_fit_gaussian_matches_monte_carlo_dequantized_moments():
    from gencourse import data
    x = data.load("digits", "train").images[:300]
    model = fm.DigitsFlowMatching(hidden=8, depth=1, local_width=8).fit_gaussian(x)
    torch.manual_seed(0)
    z = torch.cat([model.to_z(x) for _ in range(200)]).flatten(1).double()
    cov = model.gauss_basis @ torch.diag(model.gauss_var) @ model.gauss_basis.T
    torch.testing.assert_close(model.gauss_mean, z.mean(0).float(), atol=2e-3, rtol=0)
    torch.testing.assert_close(cov, torch.cov(z.T).float(), atol=3e-3, rtol=0)


def test_untrained_digits_model_is_the_fitted_gaussian():
    """The network's outputs start at zero, so the untrained model's velocity is v*, its samples follow N(mu, Sigma)
    and its ODE likelihood is the Gaussian's (torch.distributions), on the discrete scale."""
    from gencourse import data
    train, test = data.load("digits", "train"), data.load("digits", "test")
    torch.manual_seed(0)
    model = fm.DigitsFlowMatching(prior="gaussian").fit_gaussian(train.images)
    z, t = torch.randn(6, 1, 8, 8), torch.rand(6)
    torch.testing.assert_close(model.velocity(z, t), model.optimal_velocity(z, t))
    cov = (model.gauss_basis @ torch.diag(model.gauss_var) @ model.gauss_basis.T).double()
    dist = torch.distributions.MultivariateNormal(model.gauss_mean.double(), covariance_matrix=cov)
    torch.manual_seed(1)
    nll = model.nll(test.images[:6], steps=48, divergence="exact", warp=2.0)
    torch.manual_seed(1)
    zt = model.to_z(test.images[:6]).flatten(1).double()
    want = -(dist.log_prob(zt) + 64 * math.log(2.0)) + 64 * math.log(17)
    torch.testing.assert_close(nll.double(), want, atol=0.5, rtol=0)


def test_digits_model_rebuilds_from_defaults_and_state_dict():
    from gencourse import data
    images = data.load("digits", "train").images
    model = fm.DigitsFlowMatching().fit_gaussian(images).fit_pixels(images)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    copy = fm.DigitsFlowMatching()
    copy.load_state_dict(model.state_dict())
    a = model.sample(8, steps=3, generator=torch.Generator().manual_seed(0))
    b = copy.sample(8, steps=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError):
        fm.ode_log_prob(lambda x, t: x, torch.zeros(2, 2), warp=0.5)


# ----------------------------------------------------------------------------------------------
# Couplings (minibatch OT, reflow), the score, the SDE and Langevin dynamics
# ----------------------------------------------------------------------------------------------

def _gaussian_2d():
    mean = torch.tensor([1.0, -0.5], dtype=torch.float64)
    cov = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)
    lam, basis = torch.linalg.eigh(cov)
    return mean, cov, lam, basis


def test_ot_pairs_is_the_cheapest_pairing():
    import itertools

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g) + 1
    paired = fm.ot_pairs(x0, x1)
    cost = lambda a: (a - x1).pow(2).sum().item()  # noqa: E731
    best = min(cost(x0[list(p)]) for p in itertools.permutations(range(6)))
    assert cost(paired) == pytest.approx(best)
    assert sorted(paired[:, 0].tolist()) == sorted(x0[:, 0].tolist())  # a reordering of the noise
    with pytest.raises(ValueError, match="same shape"):
        fm.ot_pairs(x0, x1[:3])


def test_cfm_loss_with_a_coupling():
    x1 = torch.randn(8, 3)
    assert fm.cfm_loss(lambda x, t: torch.zeros_like(x), x1, x0=x1.clone()) == 0  # x0 = x1: u = 0 everywhere
    target = lambda x, t: torch.ones_like(x)  # noqa: E731
    assert fm.cfm_loss(target, x1, x0=x1 - 1) == pytest.approx(0.0)  # u = x1 - x0 = 1
    with pytest.raises(ValueError, match="x0 must have"):
        fm.cfm_loss(target, x1, x0=x1[:2])


def test_reflow_pairs_are_the_odes_images():
    v = lambda x, t: -x  # noqa: E731
    x0 = torch.randn(5, 2)
    a, b = fm.reflow_pairs(v, x0, 4, "euler")
    assert torch.equal(a, x0) and torch.allclose(b, x0 * 0.75**4)
    with pytest.raises(ValueError, match="method"):
        fm.reflow_pairs(v, x0, 4, "rk4")


def test_score_from_velocity_matches_the_gaussian_marginal():
    """For N(mu, Sigma) data the linear path's marginal is N(t mu, t^2 Sigma + (1 - t)^2 I): its score by autograd
    of torch.distributions' log-density equals the score implied by the closed-form velocity."""
    mean, cov, lam, basis = _gaussian_2d()
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for t in (0.1, 0.5, 0.9):
        p = torch.distributions.MultivariateNormal(t * mean, t**2 * cov + (1 - t) ** 2 * torch.eye(2, dtype=torch.float64))
        xg = x.clone().requires_grad_(True)
        exact, = torch.autograd.grad(p.log_prob(xg).sum(), xg)
        v = fm.gaussian_velocity(x, t, mean, lam, basis)
        assert torch.allclose(fm.score_from_velocity(v, x, t), exact, atol=1e-8)


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_sde_keeps_the_odes_marginals(noise):
    """Euler-Maruyama with the exact velocity of Gaussian data ends near p_t's mean and covariance at t_end."""
    mean, cov, lam, basis = _gaussian_2d()
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(20000, 2, dtype=torch.float64, generator=g)
    t_end = 0.95
    x = fm.sde_sample(lambda z, t: fm.gaussian_velocity(z, t, mean, lam, basis), x0, 400, noise=noise,
                      t_end=t_end, generator=g)
    want_cov = t_end**2 * cov + (1 - t_end) ** 2 * torch.eye(2, dtype=torch.float64)
    assert torch.allclose(x.mean(0), t_end * mean, atol=0.03)
    assert torch.allclose(torch.cov(x.T), want_cov, atol=0.03)
    with pytest.raises(ValueError, match="noise"):
        fm.sde_sample(lambda z, t: z, x0[:2], 3, noise=-1.0)


def test_langevin_reaches_its_stationary_variance():
    mu, s, eps = 2.0, 0.7, 0.05
    x = torch.zeros(20000, 1, dtype=torch.float64)
    x = fm.langevin(lambda z: -(z - mu) / s**2, x, 600, eps, generator=torch.Generator().manual_seed(3))
    assert x.mean().item() == pytest.approx(mu, abs=0.03)
    assert x.var().item() == pytest.approx(s**2 / (1 - eps / (2 * s**2)), rel=0.04)
    with pytest.raises(ValueError, match="step_size"):
        fm.langevin(lambda z: z, x, 2, 0.0)


def _vp_gaussian_velocity(mu, s):
    """The VP path's marginal velocity for 1-D data N(mu, s^2), by Gaussian conditioning written out:
    x1_hat = E[x1 | x_t], eps_hat = E[x0 | x_t], v = alpha' x1_hat + sigma' eps_hat."""
    def v(x, t):
        a, sg = torch.sin(math.pi * t / 2).view(-1, 1), torch.cos(math.pi * t / 2).view(-1, 1)
        da, ds = (math.pi / 2) * sg, -(math.pi / 2) * a
        var = a**2 * s**2 + sg**2
        x1_hat = mu + a * s**2 / var * (x - a * mu)
        eps_hat = sg / var * (x - a * mu)
        return da * x1_hat + ds * eps_hat
    return v


def test_ddim_on_the_linear_path_is_euler():
    field = lambda x, t: torch.sin(x) * (1 + t.view(-1, 1)) - 0.3 * x
    x0 = torch.randn(20, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    for steps in (1, 3, 10):
        torch.testing.assert_close(fm.ddim_sample(field, x0, steps, "linear"), fm.euler_sample(field, x0, steps))


def test_ddim_on_the_vp_path_solves_the_probability_flow_ode():
    """For N(mu, s^2) data the ODE's exact map is x_1 = mu + s x_0 (monotone transport of Gaussians); DDIM with
    eta = 0 converges to it, first order."""
    mu, s = 1.5, 0.4
    v = _vp_gaussian_velocity(mu, s)
    x0 = torch.randn(500, 1, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    errors = [(fm.ddim_sample(v, x0, steps, "vp") - (mu + s * x0)).abs().max().item() for steps in (10, 40, 160)]
    assert errors[2] < 0.02 and errors[0] / errors[1] > 3.5 and errors[1] / errors[2] > 3.5  # error ~ 1 / steps


def test_fit_2d_couplings_and_pairs_run_and_refuse_bad_input():
    from gencourse import data

    pts = data.toy2d("8gaussians", 256, seed=0)
    for kw in ({}, {"coupling": "ot"}, {"pairs": (torch.randn(256, 2), pts)}):
        net, hist = fm.fit_2d(pts, pts[:64], epochs=1, verbose=False, **kw)
        assert net(pts[:5], torch.rand(5)).shape == (5, 2) and len(hist.val_loss) == 1
    again, _ = fm.fit_2d(pts, epochs=1, verbose=False, init=net.state_dict())
    assert isinstance(again, fm.MLPDenoiser)
    with pytest.raises(ValueError, match="coupling"):
        fm.fit_2d(pts, coupling="sinkhorn")
    with pytest.raises(ValueError, match="points"):
        fm.fit_2d(pts[0])


def test_distillation_learns_a_one_step_map():
    """Pairs from a known map x1 = 2 x0 + 1: one Euler step of the distilled network reproduces it."""
    x0 = torch.randn(2048, 2, generator=torch.Generator().manual_seed(1))
    net, _ = fm.distill_2d((x0, 2 * x0 + 1), epochs=30, lr=3e-3, verbose=False)
    test = torch.randn(200, 2, generator=torch.Generator().manual_seed(2))
    assert (fm.euler_sample(net, test, 1) - (2 * test + 1)).abs().mean() < 0.1


def test_pixel_velocity_matches_numerical_integration():
    """E[x1 - x0 | x_t = z] for one pixel whose x1 is a mixture of uniform boxes, by quadrature over x1 in float64:
    posterior density ~ prior(x1) N(z; t x1, (1 - t)^2)."""
    g = torch.Generator().manual_seed(3)
    levels = 17
    log_probs = torch.log_softmax(torch.randn(1, levels, generator=g, dtype=torch.float64) * 2, -1)
    n = 400_000
    x1 = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 - 1            # midpoints of [-1, 1)
    prior = log_probs[0].exp()[(((x1 + 1) / 2) * levels).long().clamp(max=levels - 1)]
    for t in (0.05, 0.4, 0.8, 0.97):
        for z in (-1.3, -0.2, 0.35, 0.9):
            like = torch.exp(-0.5 * ((z - t * x1) / (1 - t)) ** 2)
            post = prior * like
            x1_hat = (post * x1).sum() / post.sum()
            want = (x1_hat - z) / (1 - t)
            got = fm.pixel_velocity(torch.tensor([[z]], dtype=torch.float64), t, log_probs)
            assert abs(got.item() - want.item()) < 1e-4 * (1 + abs(want.item())), (t, z, got.item(), want.item())


def test_pixel_velocity_is_finite_at_the_ends_of_the_path():
    log_probs = torch.log_softmax(torch.randn(64, 17, generator=torch.Generator().manual_seed(0)), -1)
    z = torch.randn(32, 64, generator=torch.Generator().manual_seed(1)) * 3
    for t in (0.0, 1e-7, 0.5, 1 - 1e-7, 1.0):
        assert torch.isfinite(fm.pixel_velocity(z, t, log_probs)).all()


def test_untrained_pixel_model_has_the_per_pixel_likelihood():
    """The untrained default model is the dequantized per-pixel categorical: its ODE likelihood, on the discrete
    scale, is that model's exact NLL (lesson 01's baseline, gencourse.basics), within the ODE's discretization."""
    from gencourse import basics, data
    train, test = data.load("digits", "train"), data.load("digits", "test")
    model = fm.DigitsFlowMatching().fit_gaussian(train.images).fit_pixels(train.images)
    torch.manual_seed(2)
    nll = model.nll(test.images[:6], steps=48, divergence="exact")
    want = basics.train_digits()[0].nll(test.images[:6])
    torch.testing.assert_close(nll.double(), want.double(), atol=0.6, rtol=0)


def test_image_model_for_28x28_data():
    model = fm.image_model("mnist")
    assert model.shape == (1, 28, 28) and model.levels == 256 and not model.skip
    assert isinstance(model.net, fm.SmallUNet) and model.local is None
    x = torch.randint(0, 256, (3, 1, 28, 28)).float() / 255
    assert torch.isfinite(model.loss(x))
    assert model.sample(2, steps=2).shape == (2, 1, 28, 28)
    assert isinstance(fm.image_model("digits").net, fm.MLPDenoiser)
    with pytest.raises(ValueError, match="dataset"):
        fm.image_model("cifar")
    with pytest.raises(ValueError, match="network"):
        fm.DigitsFlowMatching(network="transformer")
