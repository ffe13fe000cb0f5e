"""Tests of gencourse.gan against independent computations: torch's BCE losses, hand formulas in float64,
closed-form input gradients, Gaussian densities from torch.distributions and numerical integration."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch import nn

from gencourse import data, gan


def _logits(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

def test_discriminator_loss_matches_bce_with_logits():
    real, fake = _logits(17, seed=1), _logits(9, seed=2)  # batch sizes may differ
    bce = nn.BCEWithLogitsLoss()
    expected = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
    assert torch.allclose(gan.discriminator_loss(real, fake), expected, atol=1e-6)
    # (B, 1) logits, as an nn.Linear(..., 1) head returns them
    assert torch.allclose(gan.discriminator_loss(real[:, None], fake[:, None]), expected, atol=1e-6)


def test_discriminator_loss_matches_hand_formula_in_float64():
    real, fake = _logits(50, seed=3).double(), _logits(50, seed=4).double()
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected = -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    got = gan.discriminator_loss(real.float(), fake.float())
    assert abs(got.item() - expected.item()) < 1e-5


def test_generator_losses_match_bce_and_hand_formulas():
    fake = _logits(33, seed=5)
    bce = nn.BCEWithLogitsLoss()
    # non-saturating: -E log D(G(z)) = BCE against the label "real"
    assert torch.allclose(gan.generator_loss(fake), bce(fake, torch.ones_like(fake)), atol=1e-6)
    assert torch.allclose(gan.generator_loss(fake, "non-saturating"), bce(fake, torch.ones_like(fake)), atol=1e-6)
    # minimax: E log(1 - D(G(z))) = -BCE against the label "fake"
    expected = torch.log(1 - torch.sigmoid(fake.double())).mean()
    assert abs(gan.generator_loss(fake, "minimax").item() - expected.item()) < 1e-5
    assert torch.allclose(gan.generator_loss(fake, "minimax"), -bce(fake, torch.zeros_like(fake)), atol=1e-6)


def test_losses_are_stable_for_extreme_logits():
    extreme = torch.tensor([-200.0, -50.0, 0.0, 50.0, 200.0])
    for value in (gan.discriminator_loss(extreme, extreme), gan.generator_loss(extreme),
                  gan.generator_loss(extreme, "minimax")):
        assert torch.isfinite(value)
    # a discriminator that rejects every fake with logit -200: -log D = 200 exactly
    assert gan.generator_loss(torch.tensor([-200.0])).item() == pytest.approx(200.0, rel=1e-6)


def test_saturation_gradients_in_closed_form():
    """dL/dl = -D(G(z)) / B for minimax and -(1 - D(G(z))) / B for non-saturating."""
    logits = torch.linspace(-12, 4, 9, requires_grad=True)
    d = torch.sigmoid(logits.detach())
    (g_mm,) = torch.autograd.grad(gan.generator_loss(logits, "minimax"), logits)
    (g_ns,) = torch.autograd.grad(gan.generator_loss(logits, "non-saturating"), logits)
    assert torch.allclose(g_mm, -d / len(d), atol=1e-7)
    assert torch.allclose(g_ns, -(1 - d) / len(d), atol=1e-7)


def test_losses_reject_bad_input():
    with pytest.raises(ValueError, match="kind"):
        gan.generator_loss(torch.zeros(3), kind="hinge")
    with pytest.raises(ValueError, match="shape"):
        gan.discriminator_loss(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="float tensor"):
        gan.generator_loss([0.0, 1.0])


# ----------------------------------------------------------------------------------------------
# Gradient penalty against critics with known input gradients
# ----------------------------------------------------------------------------------------------

class LinearCritic(nn.Module):
    """f(x) = w . flatten(x) + b: its input gradient is w everywhere, so GP = (||w|| - 1)^2 exactly."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return x.flatten(1) @ self.w + 0.3


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_gradient_penalty_of_a_linear_critic(shape):
    dim = math.prod(shape)
    w = torch.randn(dim, generator=torch.Generator().manual_seed(0))
    critic = LinearCritic(w)
    real, fake = torch.randn(16, *shape), torch.randn(16, *shape)
    gp = gan.gradient_penalty(critic, real, fake)
    norm = w.norm()
    assert gp.item() == pytest.approx((norm.item() - 1) ** 2, rel=1e-5)
    # differentiable in the critic's weights: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    gp.backward()
    assert torch.allclose(critic.w.grad, 2 * (norm - 1) * w / norm, atol=1e-5)


def test_gradient_penalty_of_a_quadratic_critic_uses_per_example_norms():
    """f(x) = ||x||^2 / 2 has gradient x: GP = mean_i (||x_hat_i|| - 1)^2 with x_hat = eps real + (1 - eps) fake."""
    critic = lambda x: 0.5 * (x ** 2).flatten(1).sum(1)
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g) * 2
    eps = torch.rand(10, 1, generator=g)
    x_hat = eps * real + (1 - eps) * fake
    expected = ((np.linalg.norm(x_hat.numpy(), axis=1) - 1) ** 2).mean()
    got = gan.gradient_penalty(critic, real, fake, eps=eps)
    assert got.item() == pytest.approx(float(expected), rel=1e-5)


def test_gradient_penalty_of_a_scaled_norm_critic():
    """f(x) = a ||x|| has input-gradient norm |a| at every x != 0: GP = (|a| - 1)^2."""
    a = nn.Parameter(torch.tensor(2.5))
    critic = lambda x: a * x.flatten(1).norm(dim=1)
    gp = gan.gradient_penalty(critic, torch.randn(32, 4) + 3, torch.randn(32, 4) + 3)
    assert gp.item() == pytest.approx(1.5 ** 2, rel=1e-5)
    (grad,) = torch.autograd.grad(gp, a)
    assert grad.item() == pytest.approx(2 * 1.5, rel=1e-5)


def test_gradient_penalty_rejects_mismatched_shapes():
    critic = LinearCritic(torch.ones(2))
    with pytest.raises(ValueError, match="same shape"):
        gan.gradient_penalty(critic, torch.zeros(4, 2), torch.zeros(3, 2))


# ----------------------------------------------------------------------------------------------
# The optimal discriminator and the Jensen-Shannon divergence, on 1D Gaussians
# ----------------------------------------------------------------------------------------------

P_DATA = torch.distributions.Normal(0.0, 1.0)
P_MODEL = torch.distributions.Normal(1.5, 0.7)


def test_optimal_discriminator_formula():
    x = torch.linspace(-4, 5, 101)
    p, q = stats.norm.pdf(x.numpy(), 0, 1), stats.norm.pdf(x.numpy(), 1.5, 0.7)
    expected = p / (p + q)
    assert np.allclose(gan.optimal_discriminator(x, P_DATA, P_MODEL).numpy(), expected, atol=1e-6)


def test_trained_discriminator_approaches_p_over_p_plus_q():
    """Minimizing discriminator_loss over a family that contains the log-ratio (quadratic logits for two
    Gaussians) recovers D*(x) = p(x) / (p(x) + q(x)), computed from scipy's densities."""
    torch.manual_seed(0)
    real, fake = P_DATA.sample((20000,)), P_MODEL.sample((20000,))
    coef = torch.zeros(3, requires_grad=True)
    logit = lambda x: coef[0] * x ** 2 + coef[1] * x + coef[2]
    opt = torch.optim.LBFGS([coef], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = gan.discriminator_loss(logit(real), logit(fake))
        loss.backward()
        return loss

    opt.step(closure)
    x = np.linspace(-2.0, 3.0, 51)
    p, q = stats.norm.pdf(x, 0, 1), stats.norm.pdf(x, 1.5, 0.7)
    trained = torch.sigmoid(logit(torch.as_tensor(x, dtype=torch.float32))).detach().numpy()
    assert np.abs(trained - p / (p + q)).max() < 0.03


def test_value_at_optimal_discriminator_is_minus_log4_plus_2_jsd():
    """V(D*, G) = -log 4 + 2 JSD(p || q): a Monte Carlo estimate with D* vs JSD by numerical integration."""
    def kl_to_mixture(pdf):
        m = lambda x: 0.5 * (stats.norm.pdf(x, 0, 1) + stats.norm.pdf(x, 1.5, 0.7))
        f = lambda x: pdf(x) * (np.log(pdf(x)) - np.log(m(x))) if pdf(x) > 0 else 0.0
        return integrate.quad(f, -12, 12, limit=200)[0]

    jsd = 0.5 * kl_to_mixture(lambda x: stats.norm.pdf(x, 0, 1)) + 0.5 * kl_to_mixture(lambda x: stats.norm.pdf(x, 1.5, 0.7))
    torch.manual_seed(1)
    real, fake = P_DATA.sample((400_000,)), P_MODEL.sample((400_000,))
    logit = lambda x: P_DATA.log_prob(x) - P_MODEL.log_prob(x)  # D* = sigmoid(log p - log q)
    value = -gan.discriminator_loss(logit(real), logit(fake)).item()
    assert value == pytest.approx(-math.log(4) + 2 * jsd, abs=5e-3)


# ----------------------------------------------------------------------------------------------
# Networks and the GAN container
# ----------------------------------------------------------------------------------------------

def test_network_shapes_and_ranges():
    z = torch.randn(5, 32)
    g_mlp = gan.MLPGenerator(32, 64, (1, 8, 8), output="sigmoid")
    g_conv = gan.ConvGenerator(32, 8)
    for g in (g_mlp, g_conv):
        x = g(z)
        assert x.shape == (5, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    for d in (gan.MLPDiscriminator(64, 32), gan.ConvDiscriminator(8), gan.ConvDiscriminator(8, spectral=True)):
        assert d(torch.rand(5, 1, 8, 8)).shape == (5,)
    assert gan.MLPGenerator()(torch.randn(7, 2)).shape == (7, 2)
    assert gan.MLPDiscriminator()(torch.randn(7, 2)).shape == (7,)
    with pytest.raises(ValueError, match="output"):
        gan.MLPGenerator(output="tanh")


def test_spectral_norm_makes_the_largest_singular_value_one():
    torch.manual_seed(0)
    d = gan.MLPDiscriminator(2, 64, spectral=True)
    for _ in range(30):  # power iterations run in training-mode forward passes
        d(torch.randn(8, 2))
    d.eval()
    linears = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for layer in linears:
        sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.02)


def test_gan_sample_and_likelihood():
    model = gan.ring_gan()
    assert gan.GAN.likelihood == "none" and model.likelihood == "none"
    x = model.sample(11)
    assert x.shape == (11, 2) and not x.requires_grad
    with pytest.raises(ValueError, match="positive integer"):
        model.sample(0)
    with pytest.raises(ValueError, match="latent_dim"):
        gan.GAN(nn.Linear(2, 2), nn.Linear(2, 1))


def test_ema_generator_is_an_exponential_moving_average():
    model = gan.ring_gan(g_hidden=8, d_hidden=8)
    w0 = [p.detach().clone() for p in model.generator.parameters()]
    model.update_ema(0.9)  # first call copies the weights
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    model.update_ema(0.9)
    for w, e in zip(w0, model.ema_generator.parameters()):
        assert torch.allclose(e, 0.9 * w + 0.1 * (w + 1.0), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# The training step
# ----------------------------------------------------------------------------------------------

def _tiny_pair(seed=0):
    torch.manual_seed(seed)
    return gan.MLPGenerator(3, 16), gan.MLPDiscriminator(2, 16)


def test_train_step_matches_a_hand_written_step():
    """The step against an independent one written with BCEWithLogitsLoss and explicit gradient bookkeeping."""
    real = torch.randn(7, 2)  # an odd, "last batch" size
    g1, d1 = _tiny_pair()
    g2, d2 = _tiny_pair()
    opts1 = torch.optim.SGD(g1.parameters(), lr=0.1), torch.optim.SGD(d1.parameters(), lr=0.1)
    opts2 = torch.optim.SGD(g2.parameters(), lr=0.1), torch.optim.SGD(d2.parameters(), lr=0.1)
    torch.manual_seed(5)
    d_loss, g_loss = gan.train_step(g1, d1, *opts1, real, latent_dim=3)

    torch.manual_seed(5)
    bce = nn.BCEWithLogitsLoss()
    z = torch.randn(7, 3)
    with torch.no_grad():
        fake = g2(z)
    loss_d = bce(d2(real), torch.ones(7)) + bce(d2(fake), torch.zeros(7))
    grads_d = torch.autograd.grad(loss_d, list(d2.parameters()))
    with torch.no_grad():
        for p, gr in zip(d2.parameters(), grads_d):
            p -= 0.1 * gr
    loss_g = bce(d2(g2(z)), torch.ones(7))
    grads_g = torch.autograd.grad(loss_g, list(g2.parameters()))
    with torch.no_grad():
        for p, gr in zip(g2.parameters(), grads_g):
            p -= 0.1 * gr

    assert d_loss == pytest.approx(loss_d.item(), rel=1e-5)
    assert g_loss == pytest.approx(loss_g.item(), rel=1e-5)
    for a, b in zip(list(g1.parameters()) + list(d1.parameters()), list(g2.parameters()) + list(d2.parameters())):
        assert torch.allclose(a, b, atol=1e-6)


def test_hinge_loss_against_a_per_example_loop_and_its_margins():
    real, fake = _logits(13, seed=7).double(), _logits(6, seed=8).double()
    expected = sum(max(0.0, 1 - r) for r in real.tolist()) / 13 + sum(max(0.0, 1 + f) for f in fake.tolist()) / 6
    assert gan.hinge_discriminator_loss(real.float(), fake.float()).item() == pytest.approx(expected, rel=1e-5)
    # examples beyond the margin (real >= 1, fake <= -1) give zero loss and zero gradient
    real = torch.tensor([1.5, 3.0, 0.5], requires_grad=True)
    fake = torch.tensor([-2.0, -0.5], requires_grad=True)
    gan.hinge_discriminator_loss(real, fake).backward()
    assert real.grad.tolist() == pytest.approx([0.0, 0.0, -1 / 3])
    assert fake.grad.tolist() == pytest.approx([0.0, 0.5])
    with pytest.raises(ValueError, match="real_logits"):
        gan.hinge_discriminator_loss(torch.zeros(2, 3), torch.zeros(2))


def test_train_step_with_the_hinge_loss_matches_a_hand_written_step():
    real = torch.randn(5, 2)
    g1, d1 = _tiny_pair()
    g2, d2 = _tiny_pair()
    opts1 = torch.optim.SGD(g1.parameters(), lr=0.1), torch.optim.SGD(d1.parameters(), lr=0.1)
    torch.manual_seed(6)
    d_loss, g_loss = gan.train_step(g1, d1, *opts1, real, latent_dim=3, loss="hinge")
    torch.manual_seed(6)
    z = torch.randn(5, 3)
    with torch.no_grad():
        fake = g2(z)
    loss_d = torch.clamp(1 - d2(real), min=0).mean() + torch.clamp(1 + d2(fake), min=0).mean()
    with torch.no_grad():
        for p, gr in zip(d2.parameters(), torch.autograd.grad(loss_d, list(d2.parameters()))):
            p -= 0.1 * gr
    loss_g = -d2(g2(z)).mean()
    with torch.no_grad():
        for p, gr in zip(g2.parameters(), torch.autograd.grad(loss_g, list(g2.parameters()))):
            p -= 0.1 * gr
    assert d_loss == pytest.approx(loss_d.item(), rel=1e-5)
    assert g_loss == pytest.approx(loss_g.item(), rel=1e-5)
    for a, b in zip(list(g1.parameters()) + list(d1.parameters()), list(g2.parameters()) + list(d2.parameters())):
        assert torch.allclose(a, b, atol=1e-6)


def test_discriminator_only_step_leaves_the_generator_alone():
    g, d = _tiny_pair()
    before = [p.detach().clone() for p in g.parameters()]
    opt_g, opt_d = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    for loss in ("non-saturating", "wgan-gp"):
        d_loss, g_loss = gan.train_step(g, d, opt_g, opt_d, torch.randn(8, 2), latent_dim=3, loss=loss,
                                        update_generator=False)
        assert math.isfinite(d_loss) and math.isnan(g_loss)
    for a, b in zip(before, g.parameters()):
        assert torch.equal(a, b)


def test_train_gan_records_history_and_checks_input():
    model = gan.ring_gan(g_hidden=16, d_hidden=16)
    x = data.toy2d("8gaussians", 500)
    h = gan.train_gan(model, x, steps=12, batch_size=64, log_every=5, eval_fn=lambda m: 1.0, seed=0,
                      loss="wgan-gp", n_critic=2, verbose=False)
    assert h.steps == [5, 10, 12] and len(h.d_loss) == len(h.g_loss) == len(h.evals) == 3
    assert all(math.isfinite(v) for v in h.d_loss + h.g_loss)
    with pytest.raises(ValueError, match="unknown loss"):
        gan.train_gan(model, x, steps=1, loss="least-squares")
    with pytest.raises(ValueError, match="tensor"):
        gan.train_gan(model, [1, 2, 3], steps=1)


def test_train_digits_quick_gives_digit_shaped_samples():
    model, history = gan.train_digits(quick=True)
    x = model.sample(6)
    assert x.shape == (6, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert model.likelihood == "none" and history.steps


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------

RING_MIXTURE = torch.distributions.MixtureSameFamily(
    torch.distributions.Categorical(probs=torch.full((8,), 1 / 8, dtype=torch.float64)),
    torch.distributions.Independent(torch.distributions.Normal(data.RING_CENTERS.double(), data.RING_STD), 1))


def _ring_entropy_by_quadrature() -> float:
    """H(p) = -integral p log p of the ring, by the midpoint rule on a fine grid (independent of sampling)."""
    g = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    log_p = RING_MIXTURE.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1))
    return float(-(log_p.exp() * log_p).sum() * (g[1] - g[0]) ** 2)


def _uniform_ring(n, radial_std, seed):
    """Points spread evenly along the ring's circle: no modes at all."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(n, generator=g) * 2 * math.pi
    radius = data.RING_RADIUS + radial_std * torch.randn(n, generator=g)
    return torch.stack([radius * angle.cos(), radius * angle.sin()], 1)


def _from_modes(modes, n, *, width=1.0, seed=0):
    """n points from an equal mixture of the ring's modes ``modes``, each ``width`` times as wide as real."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.as_tensor(modes)[torch.randint(len(modes), (n,), generator=g)]
    return data.RING_CENTERS[pick] + width * data.RING_STD * torch.randn(n, 2, generator=g)


def test_ring_gaps_lie_on_the_ring_midway_between_neighbouring_modes():
    c, gaps = data.RING_CENTERS, data.RING_GAPS
    assert gaps.shape == (8, 2)
    assert torch.allclose(gaps.norm(dim=1), torch.full((8,), data.RING_RADIUS), atol=1e-5)
    for k in range(8):
        d_here, d_next = (gaps[k] - c[k]).norm(), (gaps[k] - c[(k + 1) % 8]).norm()
        assert d_here == pytest.approx(d_next.item(), abs=1e-5)
        assert d_here.item() == pytest.approx(2 * data.RING_RADIUS * math.sin(math.pi / 16), abs=1e-5)
        assert (gaps - c[k]).norm(dim=1).min() == pytest.approx(d_here.item(), abs=1e-5)  # no gap nearer to c_k


@pytest.mark.parametrize("radial_std", [0.0, 0.2, data.RING_STD])
def test_a_ring_without_modes_covers_none_and_scores_below_real(radial_std):
    real = gan.ring_reference()
    for seed in (0, 1):
        cov = gan.ring_coverage(_uniform_ring(5000, radial_std, seed))
        assert cov["modes_covered"] == 0, cov
        assert cov["modes_reached"] == 8  # its mass does reach every mode: it is spread, not collapsed
        assert cov["high_quality"] < real["high_quality"] - 0.15
        assert cov["log_density"] < real["log_density"] - 0.4
        assert cov["between_modes"] > 5 * real["between_modes"]


@pytest.mark.parametrize("centre", [data.RING_CENTERS[3], data.RING_GAPS[5], torch.zeros(2),
                                    (data.RING_CENTERS[0] + data.RING_CENTERS[1]) / 2])
@pytest.mark.parametrize("spread", [0.05, data.RING_STD, 1.0])
def test_a_single_blob_covers_at_most_one_mode(centre, spread):
    g = torch.Generator().manual_seed(2)
    cov = gan.ring_coverage(centre + spread * torch.randn(3000, 2, generator=g))
    assert cov["modes_covered"] <= 1


def test_a_blob_on_a_mode_covers_that_mode_only():
    cov = gan.ring_coverage(_from_modes([6], 2000))
    assert cov["modes_covered"] == 1 and cov["modes_reached"] == 1
    assert cov["mode_shares"][6] == max(cov["mode_shares"])


@pytest.mark.parametrize("n", [1000, 20000])
def test_real_samples_cover_all_modes_and_land_on_the_reference(n):
    """Within 4 standard errors of the reference (per sample: high-quality and between-modes are Bernoulli
    with p = 0.865 and 0.016; log p has standard deviation 0.97)."""
    real = gan.ring_reference()
    for seed in (11, 12, 13):
        cov = gan.ring_coverage(data.toy2d("8gaussians", n, seed=seed))
        assert cov["modes_covered"] == 8 and cov["modes_reached"] == 8
        assert cov["high_quality"] == pytest.approx(real["high_quality"], abs=4 * math.sqrt(0.865 * 0.135 / n) + 0.003)
        assert cov["between_modes"] == pytest.approx(real["between_modes"],
                                                     abs=4 * math.sqrt(0.016 * 0.984 / n) + 0.002)
        assert cov["log_density"] == pytest.approx(real["log_density"], abs=4 * 0.97 / math.sqrt(n) + 0.01)


def test_ring_reference_matches_closed_forms():
    """high-quality: P(||x - c|| <= 2 s) = 1 - e^{-2} for a 2D isotropic Gaussian (Rayleigh); each core holds
    (1 - e^{-1/2}) / 8; log-density: minus the entropy, by quadrature."""
    real = gan.ring_reference()
    assert real["n"] == 20000 and real["modes_covered"] == 8
    assert real["high_quality"] == pytest.approx(1 - math.exp(-2), abs=0.01)
    assert np.allclose(real["mode_shares"], (1 - math.exp(-0.5)) / 8, atol=0.006)
    assert real["log_density"] == pytest.approx(-_ring_entropy_by_quadrature(), abs=0.03)
    assert max(real["gap_shares"]) < 0.005 and real["between_modes"] < 0.025
    real["modes_covered"] = -1  # a copy: the cache is not changed
    assert gan.ring_reference()["modes_covered"] == 8


def test_samples_from_three_modes_cover_exactly_three():
    modes = [0, 3, 5]
    cov = gan.ring_coverage(_from_modes(modes, 3000, seed=4))
    assert cov["modes_covered"] == 3 and cov["modes_reached"] == 3
    assert [i for i, share in enumerate(cov["mode_shares"]) if share >= 0.01] == modes
    assert cov["high_quality"] == pytest.approx(1 - math.exp(-2), abs=0.03)  # each blob is as sharp as real


def test_modes_wider_than_real_are_still_covered():
    cov = gan.ring_coverage(_from_modes(list(range(8)), 5000, width=1.5, seed=5))
    assert cov["modes_covered"] == 8
    assert cov["log_density"] < gan.ring_reference()["log_density"] - 0.5  # but they cost quality


def test_coverage_rule_counts_core_share_and_contrast_with_both_gaps():
    c, gaps = data.RING_CENTERS, data.RING_GAPS
    # 100 samples: 10 in mode 2's core; 5 in gap 1 (between modes 1 and 2): 10 >= 2 x 5 -> covered
    rest = torch.tensor([[0.0, 0.0]]).repeat(85, 1)
    cov = gan.ring_coverage(torch.cat([c[2].repeat(10, 1), gaps[1].repeat(5, 1), rest]))
    assert cov["modes_covered"] == 1 and cov["mode_shares"][2] == pytest.approx(0.10)
    assert cov["gap_shares"][1] == pytest.approx(0.05) and cov["between_modes"] == pytest.approx(0.05)
    # 6 in gap 2 (between modes 2 and 3), the other side: 10 < 2 x 6 -> reached, not covered
    cov = gan.ring_coverage(torch.cat([c[2].repeat(10, 1), gaps[2].repeat(6, 1), rest[:84]]))
    assert cov["modes_covered"] == 0 and cov["modes_reached"] == 1
    # 1 sample in a core out of 200 is 0.5% < 1%: not reached, however empty the gaps
    cov = gan.ring_coverage(torch.cat([c[4][None], torch.zeros(199, 2)]))
    assert cov["modes_reached"] == 0 and cov["modes_covered"] == 0
    # just inside / outside the core radius and the high-quality radius
    s = data.RING_STD
    edge = lambda r: (c[2] + torch.tensor([0.0, r * s]))[None].repeat(100, 1)
    assert gan.ring_coverage(edge(0.99))["modes_covered"] == 1 and gan.ring_coverage(edge(1.01))["modes_reached"] == 0
    assert gan.ring_coverage(edge(1.99))["high_quality"] == 1.0 and gan.ring_coverage(edge(2.01))["high_quality"] == 0.0


def test_log_density_is_the_mixtures_mean_log_prob():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(4000, 2, generator=g) * 2.5  # points everywhere, near and far from the ring
    expected = RING_MIXTURE.log_prob(x.double()).mean().item()
    assert gan.ring_coverage(x)["log_density"] == pytest.approx(expected, abs=1e-4)
    # and for real samples, a Monte Carlo estimate of minus the entropy: E_p log p(x) = -H(p)
    torch.manual_seed(7)
    big = RING_MIXTURE.sample((200_000,)).float()
    assert gan.ring_coverage(big)["log_density"] == pytest.approx(-_ring_entropy_by_quadrature(), abs=0.01)


def test_ring_coverage_handles_non_finite_samples_and_rejects_bad_input():
    x = torch.cat([_from_modes(list(range(8)), 999, seed=8), torch.tensor([[float("nan"), 0.0]])])
    cov = gan.ring_coverage(x)
    assert cov["log_density"] == float("-inf") and cov["modes_covered"] == 8
    assert cov["high_quality"] <= 999 / 1000
    assert gan.ring_coverage(x[:999].numpy())["modes_covered"] == 8  # a NumPy array is fine too
    for bad in (torch.zeros(5, 3), torch.zeros(0, 2), torch.zeros(6), torch.zeros(4, 2, dtype=torch.long),
                [[0.0, 1.0]], np.zeros((3, 3))):
        with pytest.raises(ValueError, match=r"\(N, 2\)"):
            gan.ring_coverage(bad)


def test_format_ring_prints_every_row_and_real_data():
    table = gan.format_ring({"a": gan.ring_coverage(_from_modes([1], 500)), "b": gan.ring_reference()})
    lines = table.splitlines()
    assert len(lines) == 4 and lines[1].startswith("a") and lines[3].startswith("real data")
    assert "1/8" in lines[1] and "between modes" in lines[0]
    assert len(gan.format_ring(gan.ring_reference(), reference=False).splitlines()) == 2
    with pytest.raises(ValueError, match="ring_coverage"):
        gan.format_ring({"a": 1.0})


def test_sampling_time_is_positive():
    assert gan.sampling_time(gan.ring_gan(g_hidden=8, d_hidden=8), 100, repeats=3) > 0


def test_recipes_check_their_names_and_run():
    with pytest.raises(ValueError, match="recipe"):
        gan.train_ring("hinge GAN")
    with pytest.raises(ValueError, match="arch"):
        gan.digits_gan("resnet")
    with pytest.raises(ValueError, match="epochs"):
        gan.train_digits(epochs=0)
    model, history = gan.train_ring("WGAN-GP", steps=4, log_every=2, n_data=512)
    assert history.steps == [2, 4] and set(history.evals[-1]) == set(gan.ring_coverage(torch.zeros(1, 2)))
    assert set(gan.RING_RECIPES) == {"plain GAN", "plain GAN, 5 D steps", "WGAN-GP", "plain GAN + R1", "plain GAN + SN", "SN + hinge loss"}
    assert model.sample(3).shape == (3, 2)
    conv = gan.digits_gan("conv", width=8)
    assert conv.sample(2).shape == (2, 1, 8, 8)


# ----------------------------------------------------------------------------------------------
# R1, truncation, the DCGAN-style networks
# ----------------------------------------------------------------------------------------------

def test_r1_penalty_of_a_quadratic_discriminator_in_closed_form():
    """l(x) = sum_i w_i x_i^2 has grad 2 w * x, so R1 = mean_b sum_i (2 w_i x_bi)^2."""
    w = torch.tensor([0.5, -1.5, 2.0])

    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(w.clone())

        def forward(self, x):
            return (self.w * x ** 2).sum(1)

    x = torch.randn(7, 3, dtype=torch.float32)
    disc = Quadratic()
    r1 = gan.r1_penalty(disc, x)
    expected = ((2 * w * x) ** 2).sum(1).mean()
    assert torch.allclose(r1, expected, rtol=1e-5)
    # differentiable in the weights: d R1 / d w_i = mean_b 8 w_i x_bi^2
    (grad,) = torch.autograd.grad(r1, disc.w)
    assert torch.allclose(grad, (8 * w * x ** 2).mean(0), rtol=1e-4)


def test_r1_penalty_takes_per_example_norms_over_all_dims_and_matches_autograd_jacobian():
    torch.manual_seed(0)
    disc = gan.ConvDiscriminator(4)
    x = torch.rand(3, 1, 8, 8)
    expected = torch.stack([torch.autograd.functional.jacobian(lambda v: disc(v[None])[0], x[b]).pow(2).sum()
                            for b in range(3)]).mean()
    assert torch.allclose(gan.r1_penalty(disc, x), expected, rtol=1e-4)
    with pytest.raises(ValueError):
        gan.r1_penalty(disc, torch.rand(5))


def test_train_step_with_r1_adds_half_gamma_r1_and_r1_weight_zero_changes_nothing():
    def players():
        torch.manual_seed(3)
        g, d = gan.MLPGenerator(2, 8), gan.MLPDiscriminator(2, 8)
        return g, d, torch.optim.SGD(g.parameters(), lr=0.1), torch.optim.SGD(d.parameters(), lr=0.1)

    real = torch.randn(16, 2)
    g, d, og, od = players()
    torch.manual_seed(1)
    base = gan.train_step(g, d, og, od, real, latent_dim=2)
    g0, d0, og0, od0 = players()
    torch.manual_seed(1)
    assert gan.train_step(g0, d0, og0, od0, real, latent_dim=2, r1_weight=0.0) == base
    g1, d1, og1, od1 = players()
    r1 = gan.r1_penalty(d1, real).item()
    torch.manual_seed(1)
    d_loss, _ = gan.train_step(g1, d1, og1, od1, real, latent_dim=2, r1_weight=4.0)
    assert d_loss == pytest.approx(base[0] + 2.0 * r1, rel=1e-5)


def test_truncated_noise_respects_the_threshold_and_its_distribution():
    z = gan.truncated_noise(20000, 3, 1.0, generator=torch.Generator().manual_seed(0))
    assert z.shape == (20000, 3) and z.abs().max() <= 1.0
    # each coordinate follows N(0, 1) truncated to [-1, 1]: compare the variance with scipy's
    assert z.var().item() == pytest.approx(stats.truncnorm(-1, 1).var(), rel=0.03)
    assert gan.truncated_noise(5, 2).shape == (5, 2)
    with pytest.raises(ValueError):
        gan.truncated_noise(5, 2, 0.0)
    with pytest.raises(ValueError):
        gan.truncated_noise(0, 2, 1.0)


def test_sample_with_truncation_feeds_truncated_noise():
    torch.manual_seed(0)
    model = gan.GAN(gan.MLPGenerator(3, 8, (3,)), gan.MLPDiscriminator(3, 8))
    model.generator = nn.Identity()
    model.generator.latent_dim = 3
    x = model.sample(500, truncation=0.3)
    assert x.shape == (500, 3) and x.abs().max() <= 0.3
    assert model.sample(500).abs().max() > 1.0


def test_conv_generator_default_layout_is_unchanged_and_batchnorm_is_an_option():
    default = gan.ConvGenerator(32, 32)
    assert list(default.state_dict()) == ["fc.0.weight", "fc.0.bias", "net.0.weight", "net.0.bias",
                                          "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"]
    bn = gan.ConvGenerator(32, 16, batchnorm=True)
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in bn.modules()) == 3
    out = bn(torch.randn(5, 32))
    assert out.shape == (5, 1, 8, 8) and out.min() >= 0 and out.max() <= 1


def test_ema_copies_batchnorm_statistics():
    torch.manual_seed(0)
    model = gan.dcgan(channels=4)
    model.update_ema(0.9)
    model.generator.train()
    model.generator(torch.randn(16, 32))  # moves the running statistics
    model.update_ema(0.9)
    for b_ema, b in zip(model.ema_generator.buffers(), model.generator.buffers()):
        assert torch.equal(b_ema, b)
    with pytest.raises(ValueError):
        gan.dcgan(d_norm="batch")


def test_train_dcgan_runs_and_gives_digit_shaped_samples():
    model, history = gan.train_dcgan(steps=3, seed=0, channels=4)
    x = model.sample(6)
    assert x.shape == (6, 1, 8, 8) and torch.isfinite(x).all() and history.steps[-1] == 3
    with pytest.raises(ValueError):
        gan.train_dcgan(steps=0)


def test_ring_recipes_with_r1_and_spectral_norm_build_the_same_networks():
    for name in ("plain GAN + R1", "plain GAN + SN"):
        model, history = gan.train_ring(name, seed=0, steps=2, log_every=1)
        assert len(history.evals) == 2
        layers = [m for m in model.discriminator.modules() if isinstance(m, nn.Linear)]
        assert [tuple(l.weight.shape) for l in layers] == [(64, 2), (64, 64), (1, 64)]
        spectral = any(nn.utils.parametrize.is_parametrized(l) for l in layers)
        assert spectral == (name == "plain GAN + SN")


# ----------------------------------------------------------------------------------------------
# The DCGAN-style GAN of 28x28 images
# ----------------------------------------------------------------------------------------------

def test_image_gan_shapes_layout_and_ranges():
    torch.manual_seed(0)
    g = gan.ImageGenerator(latent_dim=8, channels=8)
    sizes = []
    hooks = [m.register_forward_hook(lambda m, a, out: sizes.append(tuple(out.shape[1:])))
             for m in g.net if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d))]
    x = g(torch.randn(5, 8))
    for h in hooks:
        h.remove()
    assert sizes == [(8, 14, 14), (4, 28, 28), (1, 28, 28)]  # 7x7 -> 14 -> 28, then one channel
    assert x.shape == (5, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in g.modules()) == 3  # DCGAN's generator
    for spectral in (False, True):
        d = gan.ImageDiscriminator(8, spectral=spectral)
        assert d(torch.rand(5, 1, 28, 28)).shape == (5,)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
        assert any(nn.utils.parametrize.is_parametrized(m) for m in d.modules()) == spectral
    model = gan.image_gan("mnist", latent_dim=8, channels=8, d_channels=8)
    assert model.latent_dim == 8 and model.likelihood == "none"
    assert model.sample(3).shape == (3, 1, 28, 28)
    r1 = gan.r1_penalty(model.discriminator, torch.rand(4, 1, 28, 28))
    assert r1.item() > 0 and r1.requires_grad  # R1 reaches the discriminator's weights


def test_image_gan_rejects_bad_input():
    with pytest.raises(ValueError, match="divisible by 4"):
        gan.ImageGenerator(image_shape=(1, 30, 30))
    with pytest.raises(ValueError, match="channels"):
        gan.ImageGenerator(channels=7)
    with pytest.raises(ValueError, match="divisible by 4"):
        gan.ImageDiscriminator(image_shape=(1, 28, 26))
    with pytest.raises(ValueError, match="28x28"):
        gan.image_gan("digits")
    with pytest.raises(ValueError, match="d_norm"):
        gan.image_gan("mnist", d_norm="batch")
    with pytest.raises(ValueError, match="unknown dataset"):
        gan.train_images("cifar10")
    with pytest.raises(ValueError, match="epochs"):
        gan.train_images("mnist", epochs=0)
    with pytest.raises(ValueError, match="subset"):
        gan.train_images("mnist", subset=-5)
    with pytest.raises(ValueError, match="r1_weight"):
        gan.train_images("mnist", r1_weight=-1.0)


def test_image_gan_train_images_quick_on_a_small_standin(fake_mnist_files):
    seen = []
    model, history = gan.train_images("mnist", quick=True, subset=64, verbose=False, channels=8, d_channels=8,
                                      latent_dim=8, log_every=10, eval_fn=lambda m: seen.append(1) or len(seen))
    assert not model.training and model.ema_generator is not None  # samples come from the averaged generator
    assert history.steps == [10, 20, 30] and history.evals == [1, 2, 3]
    assert all(math.isfinite(v) for v in history.d_loss + history.g_loss)
    x = model.sample(5)
    assert x.shape == (5, 1, 28, 28) and torch.isfinite(x).all()
