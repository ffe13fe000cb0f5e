"""Tests of gencourse.parameterization against independent computations: the forward equation itself, the
autograd score of Gaussian marginals from torch.distributions, and finite differences of a transport map."""
import math

import pytest
import torch
from torch.distributions import Normal

from gencourse import parameterization as P



def _pair(batch=6, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(batch, dim, generator=g, dtype=torch.float64), torch.randn(batch, dim, generator=g, dtype=torch.float64)
    alpha = torch.rand(batch, generator=g, dtype=torch.float64) * 0.9 + 0.05
    sigma = torch.rand(batch, generator=g, dtype=torch.float64) * 0.9 + 0.05  # not variance-preserving on purpose
    xt = alpha[:, None] * x0 + sigma[:, None] * eps
    return x0, eps, alpha, sigma, xt


@pytest.mark.parametrize("kind", P.KINDS)
def test_every_kind_round_trips_through_x0_and_eps(kind):
    x0, eps, alpha, sigma, xt = _pair()
    d_alpha, d_sigma = torch.full_like(alpha, 1.3), torch.full_like(alpha, -0.7)
    prediction = P.from_x0_eps(kind, x0, eps, alpha, sigma, d_alpha, d_sigma)
    x0_back, eps_back = P.to_x0_eps(kind, prediction, xt, alpha, sigma, d_alpha, d_sigma)
    assert torch.allclose(x0_back, x0, atol=1e-9) and torch.allclose(eps_back, eps, atol=1e-9)


def test_v_prediction_matches_salimans_and_ho_on_a_variance_preserving_path():
    x0, eps, _, _, _ = _pair(seed=1)
    phi = torch.rand(len(x0), dtype=torch.float64) * 1.4 + 0.05
    alpha, sigma = torch.cos(phi), torch.sin(phi)
    xt = alpha[:, None] * x0 + sigma[:, None] * eps
    v = P.from_x0_eps("v", x0, eps, alpha, sigma)
    # their eqs: v = d x_phi / d phi, and x0 = cos(phi) x_phi - sin(phi) v
    dx_dphi = -torch.sin(phi)[:, None] * x0 + torch.cos(phi)[:, None] * eps
    assert torch.allclose(v, dx_dphi, atol=1e-12)
    assert torch.allclose(alpha[:, None] * xt - sigma[:, None] * v, x0, atol=1e-12)


def test_the_score_of_a_gaussian_marginal_matches_autograd_of_its_density():
    """Data N(mu, diag var): q_t = N(alpha mu, alpha^2 var + sigma^2); E[eps | x_t] in closed form."""
    mu, var = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), torch.tensor([0.3, 1.5, 0.8], dtype=torch.float64)
    alpha, sigma = torch.tensor([0.8, 0.3]), torch.tensor([0.6, 0.95])
    alpha, sigma = alpha.double(), sigma.double()
    xt = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    marginal = Normal(alpha[:, None] * mu, (alpha[:, None] ** 2 * var + sigma[:, None] ** 2).sqrt())
    (score,) = torch.autograd.grad(marginal.log_prob(xt).sum(), xt)
    posterior_eps = sigma[:, None] * (xt - alpha[:, None] * mu) / (alpha[:, None] ** 2 * var + sigma[:, None] ** 2)
    assert torch.allclose(P.convert(posterior_eps.detach(), "eps", "score", xt.detach(), alpha, sigma), score, atol=1e-10)
    assert torch.allclose(P.convert(score, "score", "eps", xt.detach(), alpha, sigma), posterior_eps.detach(), atol=1e-10)


def test_the_velocity_converted_from_eps_transports_gaussian_data_like_finite_differences():
    """On the linear path x_t = t x0 + (1 - t) eps with data N(mu, var), the map z -> t mu + sqrt(t^2 var + (1-t)^2) z
    pushes N(0, I) onto q_t; its time derivative at fixed z is the marginal velocity."""
    mu, var = torch.tensor([1.0, -0.5], dtype=torch.float64), torch.tensor([0.2, 2.0], dtype=torch.float64)
    z = torch.tensor([[0.3, -1.2], [1.5, 0.4]], dtype=torch.float64)
    t, h = 0.37, 1e-6

    def transport(tau):
        return tau * mu + (tau**2 * var + (1 - tau) ** 2).sqrt() * z

    xt = transport(t)
    expected = (transport(t + h) - transport(t - h)) / (2 * h)
    alpha, sigma = torch.full((2,), t, dtype=torch.float64), torch.full((2,), 1 - t, dtype=torch.float64)
    posterior_eps = sigma[:, None] * (xt - alpha[:, None] * mu) / (alpha[:, None] ** 2 * var + sigma[:, None] ** 2)
    velocity = P.convert(posterior_eps, "eps", "velocity", xt, alpha, sigma, d_alpha=1.0, d_sigma=-1.0)
    assert torch.allclose(velocity, expected, atol=1e-6)


@pytest.mark.parametrize("kind", P.KINDS)
def test_loss_weights_turn_each_kinds_squared_error_into_an_x0_error(kind):
    x0, eps, alpha, sigma, xt = _pair(seed=3)
    d_alpha, d_sigma = torch.full_like(alpha, 0.9), torch.full_like(alpha, -1.1)
    x0_hat = x0 + 0.1 * torch.randn_like(x0)  # any prediction, at the same x_t
    _, eps_hat = P.to_x0_eps("x0", x0_hat, xt, alpha, sigma)
    target = P.from_x0_eps(kind, x0, eps, alpha, sigma, d_alpha, d_sigma)
    guess = P.from_x0_eps(kind, x0_hat, eps_hat, alpha, sigma, d_alpha, d_sigma)
    weight = P.loss_weight(kind, alpha, sigma, d_alpha, d_sigma)
    assert torch.allclose((guess - target) ** 2, weight[:, None] * (x0_hat - x0) ** 2, rtol=1e-9, atol=1e-12)


def test_loss_weights_on_a_variance_preserving_path():
    alpha, sigma = torch.tensor(math.cos(0.4)), torch.tensor(math.sin(0.4))
    snr = (alpha / sigma) ** 2
    assert P.loss_weight("eps", alpha, sigma).item() == pytest.approx(snr.item())
    assert P.loss_weight("v", alpha, sigma).item() == pytest.approx(snr.item() + 1)


def test_bad_input_gets_clear_errors():
    x0, eps, alpha, sigma, xt = _pair()
    with pytest.raises(ValueError, match="unknown parameterization 'noise'"):
        P.to_x0_eps("noise", eps, xt, alpha, sigma)
    with pytest.raises(ValueError, match="same shape"):
        P.to_x0_eps("eps", eps[:, :2], xt, alpha, sigma)
    with pytest.raises(ValueError, match="d_alpha and d_sigma"):
        P.convert(eps, "eps", "velocity", xt, alpha, sigma)
    with pytest.raises(ValueError, match="shape \\(6,\\)"):
        P.to_x0_eps("eps", eps, xt, alpha[:3], sigma)
