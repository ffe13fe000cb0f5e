"""Tests of gencourse.flows against independent computations: autograd Jacobians, slogdet, numerical
integration, Monte Carlo, torch.distributions and closed forms."""
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from gencourse import data, flows


def perturb(module, scale=0.3, seed=0):
    """Move every parameter away from its (identity) initialization, so no layer is trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module.eval()


def jacobian_log_det(layer, x):
    """log|det dz/dx| of ``layer`` at each example of ``x``, from the full autograd Jacobian."""
    out = []
    for xi in x:
        jac = jacobian(lambda v: layer(v.unsqueeze(0))[0][0], xi)
        d = xi.numel()
        out.append(torch.linalg.slogdet(jac.reshape(d, d).double())[1])
    return torch.stack(out).to(x.dtype)


def image_masks_layer_cases():
    shape = (2, 4, 4)
    return [
        ("coupling vector", lambda: flows.AffineCoupling(flows.checkerboard_mask((5,), 1), hidden=16), (5,)),
        ("coupling image", lambda: flows.AffineCoupling(flows.checkerboard_mask(shape, 0), hidden=8), shape),
        ("actnorm vector", lambda: flows.ActNorm(5), (5,)),
        ("actnorm image", lambda: flows.ActNorm(2), shape),
        ("linear vector", lambda: flows.InvertibleLinear(5), (5,)),
        ("conv1x1 image", lambda: flows.InvertibleConv1x1(2), shape),
        ("realnvp 2d", lambda: flows.RealNVP(2, 4, 16), (2,)),
        ("realnvp glow", lambda: flows.RealNVP(6, 4, 16, actnorm=True, invertible_linear=True), (6,)),
        ("realnvp image", lambda: flows.RealNVP(shape, 3, 8, actnorm=True, invertible_linear=True), shape),
        ("realnvp image masks", lambda: flows.RealNVP(16, 4, 16, masks=flows.image_masks((1, 4, 4))), (16,)),
    ]


@pytest.mark.parametrize("name,make,shape", image_masks_layer_cases(), ids=[c[0] for c in image_masks_layer_cases()])
def test_log_det_matches_autograd_jacobian(name, make, shape):
    torch.manual_seed(0)
    layer = make()
    x = torch.randn(64, *shape)
    with torch.no_grad():
        layer(x)  # ActNorm's data-dependent initialization happens here
    perturb(layer).double()  # float64, so the reference Jacobian's determinant is accurate
    x = torch.randn(3, *shape, dtype=torch.float64)
    _, log_det = layer(x)
    assert log_det.shape == (3,)
    torch.testing.assert_close(log_det, jacobian_log_det(layer, x), atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name,make,shape", image_masks_layer_cases(), ids=[c[0] for c in image_masks_layer_cases()])
def test_inverse_round_trips(name, make, shape):
    torch.manual_seed(1)
    layer = make()
    with torch.no_grad():
        layer(torch.randn(64, *shape))
        perturb(layer, seed=1).double()  # strongly perturbed layers reach |z| ~ 1e4: float64 keeps the test exact
        x = torch.randn(8, *shape, dtype=torch.float64)
        z, _ = layer(x)
        torch.testing.assert_close(layer.inverse(z), x, atol=1e-8, rtol=1e-8)
        z = torch.randn(8, *shape, dtype=torch.float64)
        torch.testing.assert_close(layer(layer.inverse(z))[0], z, atol=1e-8, rtol=1e-8)


def test_logit_layer_log_det_and_inverse():
    layer = flows.LogitLayer(alpha=0.05)
    y = torch.rand(3, 6) * 0.98 + 0.01
    s, log_det = layer(y)
    torch.testing.assert_close(log_det, jacobian_log_det(layer, y), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(layer.inverse(s), y, atol=1e-5, rtol=1e-5)
    # closed form of one coordinate: d/dy logit(a + (1 - 2a) y) = (1 - 2a) / (p (1 - p))
    p = 0.05 + 0.9 * y[0, 0]
    assert math.isclose(float(s[0, 0]), math.log(p / (1 - p)), rel_tol=1e-5)


def test_invertible_linear_log_det_is_slogdet_of_weight():
    torch.manual_seed(0)
    layer = perturb(flows.InvertibleConv1x1(3))
    w = layer.weight().detach().double()
    x = torch.randn(2, 3, 5, 4)
    _, log_det = layer(x)
    expected = 5 * 4 * torch.linalg.slogdet(w)[1]
    torch.testing.assert_close(log_det.double(), expected.expand(2), atol=1e-4, rtol=1e-5)
    # a 1x1 convolution: the same as torch's conv2d with the weight as a (3, 3, 1, 1) kernel
    conv = torch.nn.functional.conv2d(x, layer.weight().detach()[:, :, None, None])
    torch.testing.assert_close(layer(x)[0], conv, atol=1e-5, rtol=1e-5)


def test_actnorm_data_dependent_initialization():
    x = 3.0 + 5.0 * torch.randn(500, 4)
    layer = flows.ActNorm(4)
    z, _ = layer(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(4), atol=1e-4, rtol=0)
    # initialized once: a second batch does not re-normalize
    z2, _ = layer(x + 10)
    assert z2.mean() > 1


def test_coupling_leaves_conditioning_entries_and_is_triangular():
    torch.manual_seed(0)
    layer = perturb(flows.AffineCoupling(flows.half_mask(4), hidden=16))
    x = torch.randn(4)
    jac = jacobian(lambda v: layer(v.unsqueeze(0))[0][0], x)
    torch.testing.assert_close(jac[:2, :2], torch.eye(2))  # conditioning entries copied
    torch.testing.assert_close(jac[:2, 2:], torch.zeros(2, 2))  # and independent of the others
    torch.testing.assert_close(jac[2:, 2:], torch.diag(torch.diagonal(jac[2:, 2:])))  # diagonal block


def test_scales_are_bounded():
    torch.manual_seed(0)
    layer = flows.AffineCoupling(flows.checkerboard_mask((4,)), hidden=8, scale_bound=2.0)
    perturb(layer, scale=50.0)
    s, _ = layer.scale_shift(100 * torch.randn(16, 4))
    assert s.abs().max() <= 2.0 + 1e-6


def test_new_flow_is_identity_and_standard_normal():
    flow = flows.RealNVP(3)
    x = torch.randn(10, 3)
    z, log_det = flow(x)
    torch.testing.assert_close(z, x)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1)
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_2d_density_integrates_to_one():
    torch.manual_seed(0)
    flow = perturb(flows.RealNVP(2, 6, 32), scale=0.15)
    lim, n = 8.0, 600
    axis = torch.linspace(-lim, lim, n)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([xx.flatten(), yy.flatten()], 1)
    with torch.no_grad():
        density = flow.log_prob(grid).exp().view(n, n)
        samples = flow.sample(20000)
    integral = torch.trapezoid(torch.trapezoid(density, axis, dim=1), axis, dim=0).item()
    inside = ((samples.abs() <= lim).all(1)).float().mean().item()  # Monte Carlo mass in the window
    assert abs(integral - inside) < 0.01
    assert abs(integral - 1.0) < 0.02


def test_sample_shapes_and_temperature():
    flow = perturb(flows.RealNVP(2, 4, 16))
    assert flow.sample(7).shape == (7, 2)
    torch.testing.assert_close(flow.sample(2, temperature=0.0), flow.inverse(torch.zeros(2, 2)))
    image_flow = flows.RealNVP((1, 4, 4), 2, 8)
    assert image_flow.sample(3).shape == (3, 1, 4, 4)


def test_bad_inputs_raise_value_error():
    flow = flows.RealNVP(2)
    with pytest.raises(ValueError, match="shape"):
        flow.log_prob(torch.randn(4, 3))
    with pytest.raises(ValueError, match="positive integer"):
        flow.sample(0)
    with pytest.raises(ValueError, match="dim"):
        flows.RealNVP(1)
    with pytest.raises(ValueError, match="mask"):
        flows.AffineCoupling(torch.tensor([0.5, 1.0]))
    model = flows.DigitsFlow(num_couplings=2, hidden=8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.nll(torch.full((2, 1, 8, 8), 2.0))
    with pytest.raises(ValueError, match="shape"):
        model.nll(torch.zeros(2, 64))


def test_masks():
    cb = flows.checkerboard_mask((1, 4, 4))
    assert cb.sum() == 8 and cb[0, 0, 0] == 1 and cb[0, 0, 1] == 0 and cb[0, 1, 0] == 0 and cb[0, 1, 1] == 1
    torch.testing.assert_close(flows.checkerboard_mask((6,), 1) + flows.checkerboard_mask((6,), 0), torch.ones(6))
    masks = flows.image_masks((1, 8, 8))
    assert len(masks) == 6 and all(m.shape == (64,) and m.sum() == 32 for m in masks)
    torch.testing.assert_close(masks[0] + masks[1], torch.ones(64))


# ----------------------------------------------------------------------------------------------
# Dequantization: the bound on a known discrete distribution
# ----------------------------------------------------------------------------------------------

def test_dequantized_bound_is_exact_for_a_piecewise_constant_density():
    # P(k) over L = 5 levels, independently in D = 3 dims; the density L * P(floor(L y)) makes the bound tight
    levels, probs = 5, torch.tensor([0.1, 0.4, 0.2, 0.25, 0.05])

    def log_prob_y(y):
        k = torch.floor(y * levels).long().clamp(0, levels - 1)
        return (math.log(levels) + probs.log()[k]).flatten(1).sum(1)

    k = torch.tensor([[0, 1, 4], [3, 3, 2]])
    x = k.float() / (levels - 1)
    exact = -probs.log()[k].sum(1)
    torch.testing.assert_close(flows.dequantized_nll(log_prob_y, x, levels, draws=3), exact)


def test_dequantized_bound_of_a_smooth_density_against_numerical_integration():
    # a Beta(2, 3) density on y in [0, 1) per pixel; the exact discrete probability of level k is the
    # integral of the density over [k/L, (k+1)/L), computed here by the trapezoid rule
    levels = 17
    beta = torch.distributions.Beta(torch.tensor(2.0), torch.tensor(3.0))

    def log_prob_y(y):
        return beta.log_prob(y.clamp(1e-6, 1 - 1e-6)).flatten(1).sum(1)

    k = torch.tensor([[0, 3, 8, 16]])
    x = k.float() / (levels - 1)
    exact, jensen_exact = 0.0, 0.0
    for kk in k[0].tolist():  # midpoint rule on 20000 cells of the bin [k/L, (k+1)/L)
        t = (kk + (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000) / levels
        log_p = beta.log_prob(t.float()).double()
        exact -= math.log(log_p.exp().mean().item() / levels)  # -log P(k) = -log integral of p over the bin
        jensen_exact -= log_p.mean().item() - math.log(levels)  # E_u[-log p(y)] + ln L
    torch.manual_seed(0)
    jensen = flows.dequantized_nll(log_prob_y, x, levels, draws=4000).item()
    iw = flows.dequantized_nll(log_prob_y, x, levels, draws=4000, importance_weighted=True).item()
    assert jensen_exact > exact + 0.5  # the Jensen gap is real here (the density varies within bin 0)
    assert abs(jensen - jensen_exact) < 0.05  # the Monte Carlo bound estimates E_u[-log p(y)] + D ln L
    assert abs(iw - exact) < 0.05  # the importance-weighted estimate converges to -log P(k)


def test_digits_flow_contract():
    torch.manual_seed(0)
    model = flows.DigitsFlow(num_couplings=2, hidden=16)
    assert model.likelihood == "bound"
    x = data.load("digits", "test").images[:5]
    nll = model.nll(x)
    assert nll.shape == (5,) and torch.isfinite(nll).all()
    samples = model.sample(6)
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    torch.testing.assert_close(samples * 16, (samples * 16).round())  # on the data's grid k / 16


def test_digits_flow_log_det_of_the_whole_map_matches_autograd():
    torch.manual_seed(0)
    model = flows.DigitsFlow(num_couplings=3, hidden=16)
    with torch.no_grad():
        model.nll(data.load("digits", "train").images[:256])
    perturb(model, scale=0.05)
    y = torch.rand(2, 1, 8, 8) * 0.9 + 0.05

    def to_latent(v):
        s, _ = model.logit(v.flatten(1))
        return model.flow(s)[0]

    jac_ld = []
    for yi in y:
        jac = jacobian(lambda v: to_latent(v.unsqueeze(0))[0], yi).reshape(64, 64)
        jac_ld.append(torch.linalg.slogdet(jac.double())[1])
    z = to_latent(y)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1) + torch.stack(jac_ld).float()
    torch.testing.assert_close(model.log_prob_y(y), expected, atol=1e-3, rtol=1e-4)


def test_train_digits_quick_runs():
    model, history = flows.train_digits(quick=True, verbose=False)
    assert history.epochs <= 2 and len(history.val_loss) == history.epochs
    assert math.isfinite(history.best_val_loss)
    assert model.sample(2).shape == (2, 1, 8, 8)


# ----------------------------------------------------------------------------------------------
# Multi-scale: squeeze and split
# ----------------------------------------------------------------------------------------------

def test_squeeze_is_a_permutation_with_an_exact_inverse():
    x = torch.arange(2 * 3 * 6 * 4, dtype=torch.float64).view(2, 3, 6, 4)
    z = flows.squeeze(x)
    assert z.shape == (2, 12, 3, 2)
    assert torch.equal(z.flatten().sort().values, x.flatten())  # every entry once: a permutation
    assert torch.equal(flows.unsqueeze(z), x)
    # channel 4c + 2i + j at (r, q) holds the pixel (2r + i, 2q + j) of channel c
    for c, i, j, r, q in ((0, 0, 0, 0, 0), (1, 1, 0, 2, 1), (2, 1, 1, 1, 0), (2, 0, 1, 2, 1)):
        assert z[1, 4 * c + 2 * i + j, r, q] == x[1, c, 2 * r + i, 2 * q + j]
    jac = jacobian(lambda v: flows.squeeze(v.view(1, 2, 4, 4)).flatten(), torch.randn(32))
    assert torch.equal(jac.sum(0), torch.ones(32)) and torch.equal(jac.sum(1), torch.ones(32))
    assert torch.linalg.slogdet(jac)[1].abs() < 1e-6  # log|det| = 0


def test_squeeze_and_channel_masks_reject_bad_shapes():
    with pytest.raises(ValueError):
        flows.squeeze(torch.zeros(1, 1, 5, 4))
    with pytest.raises(ValueError):
        flows.squeeze(torch.zeros(4, 4))
    with pytest.raises(ValueError):
        flows.unsqueeze(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError):
        flows.channel_masks((3, 4, 4))
    masks = flows.channel_masks((4, 4, 4))
    assert len(masks) == 6 and all(m.shape == (64,) and m.sum() == 32 for m in masks)
    for a, b in zip(masks[::2], masks[1::2]):
        assert torch.equal(a + b, torch.ones(64))


def test_multiscale_flow_log_prob_matches_autograd_and_inverts():
    torch.manual_seed(0)
    model = flows.MultiScaleDigitsFlow(couplings=(2, 1, 2), hidden=16)
    with torch.no_grad():
        model.nll(data.load("digits", "train").images[:256])
    perturb(model, scale=0.05)
    y = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 0.9 + 0.05
    model.double()

    def to_latent(v):  # the whole map y -> (z_out, z_last), concatenated
        s, _ = model.logit(v.flatten(1))
        z_out, z_last, _ = model.encode(s)
        return torch.cat([z_out, z_last], 1)

    expected = []
    for yi in y:
        jac = jacobian(lambda v: to_latent(v.unsqueeze(0))[0], yi).reshape(64, 64)
        z = to_latent(yi.unsqueeze(0))
        expected.append(torch.distributions.Normal(0.0, 1.0).log_prob(z).sum() + torch.linalg.slogdet(jac)[1])
    torch.testing.assert_close(model.log_prob_y(y), torch.stack(expected), atol=1e-8, rtol=1e-8)
    # the inverse: sampling from fixed latents recovers y (checked on the continuous scale via encode/inverse)
    s, _ = model.logit(y.flatten(1))
    z_out, z_last, _ = model.encode(s)
    h = model.after_squeeze.inverse(torch.cat([z_out, model.after_split.inverse(z_last)], 1))
    back = model.full.inverse(flows.unsqueeze(h.view(2, *model.squeezed)).flatten(1))
    torch.testing.assert_close(back, s)


def test_multiscale_flow_contract_and_training():
    torch.manual_seed(0)
    model = flows.MultiScaleDigitsFlow(couplings=(1, 1, 1), hidden=16)
    assert model.likelihood == "bound"
    assert sum(p.numel() for p in model.after_split.parameters()) < sum(p.numel() for p in model.full.parameters())
    model, history = flows.fit_digits_model(model, epochs=1, verbose=False)
    assert math.isfinite(history.best_val_loss)
    x = data.load("digits", "test").images[:4]
    assert model.nll(x, draws=2).shape == (4,)
    samples = model.sample(5)
    assert samples.shape == (5, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    torch.testing.assert_close(samples * 16, (samples * 16).round())
    with pytest.raises(ValueError):
        model.nll(torch.zeros(2, 64))
    with pytest.raises(ValueError):
        model.sample(0)
    with pytest.raises(ValueError):
        flows.MultiScaleDigitsFlow(couplings=(1, 1))
    with pytest.raises(ValueError):
        flows.MultiScaleDigitsFlow(shape=(1, 7, 8))


# ----------------------------------------------------------------------------------------------
# Variational dequantization
# ----------------------------------------------------------------------------------------------

def test_variational_dequantizer_log_q_matches_torch_distributions():
    torch.manual_seed(0)
    deq = perturb(flows.VariationalDequantizer(6, hidden=8), scale=0.3).double()
    x = torch.randint(0, 17, (4, 6)).double() / 16
    eps = torch.randn(4, 6, dtype=torch.float64)
    u, log_q = deq(x, eps)
    mu, log_sigma = deq.net(2 * x - 1).chunk(2, 1)
    log_sigma = log_sigma + deq.init_log_sigma
    q = torch.distributions.TransformedDistribution(torch.distributions.Normal(mu, log_sigma.exp()),
                                                    [torch.distributions.transforms.SigmoidTransform()])
    torch.testing.assert_close(log_q, q.log_prob(u).sum(1))
    assert ((u > 0) & (u < 1)).all()
    with pytest.raises(ValueError):
        deq(torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError):
        flows.VariationalDequantizer(0)


def test_variational_bound_is_exact_when_q_is_the_density_in_the_box():
    """p(y) on [0, 1)^1 with 4 levels: k uniform and u ~ sigmoid(N(0, 1.7^2)), i.e. the untrained dequantizer's
    own q. Then -log p(y) + log q(u | k) = 0 for every draw and the bound is exactly -log P(k) = ln 4."""
    torch.manual_seed(0)
    levels, deq = 4, flows.VariationalDequantizer(1, hidden=4).double()
    sigma = 1.7
    base = torch.distributions.TransformedDistribution(torch.distributions.Normal(0.0, sigma),
                                                       [torch.distributions.transforms.SigmoidTransform()])

    def log_prob_y(y):
        k = torch.floor(y * levels).clamp(max=levels - 1)
        return base.log_prob((y * levels - k).clamp(1e-12, 1 - 1e-12)).flatten(1).sum(1)

    x = torch.tensor([[0.0], [1 / 3], [2 / 3], [1.0]], dtype=torch.float64)
    for iw in (False, True):
        nll = flows.variational_dequantized_nll(log_prob_y, deq, x, levels, draws=5, importance_weighted=iw)
        torch.testing.assert_close(nll, torch.full((4,), math.log(levels), dtype=torch.float64))


def test_variational_bound_against_uniform_and_importance_weighting():
    """A smooth density on [0, 1): the variational bound lies above the importance-weighted estimate, which
    converges to -log P(k), P(k) the density's mass in the box of k (numerical integration)."""
    torch.manual_seed(0)
    levels = 3
    beta = torch.distributions.Beta(torch.tensor(2.0, dtype=torch.float64), torch.tensor(5.0, dtype=torch.float64))
    log_prob_y = lambda y: beta.log_prob(y.clamp(1e-9, 1 - 1e-9)).flatten(1).sum(1)
    x = torch.tensor([[0.0], [0.5], [1.0]], dtype=torch.float64)
    grid = (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000
    exact = torch.stack([-torch.log(beta.log_prob((k + grid) / levels).exp().mean() / levels) for k in range(3)])
    deq = flows.VariationalDequantizer(1, hidden=4).double()
    bound = flows.variational_dequantized_nll(log_prob_y, deq, x, levels, draws=4000)
    iw = flows.variational_dequantized_nll(log_prob_y, deq, x, levels, draws=4000, importance_weighted=True)
    assert (bound > iw).all() and (iw - exact).abs().max() < 0.05
    with pytest.raises(ValueError):
        flows.variational_dequantized_nll(log_prob_y, deq, x, levels, draws=0)


def test_fit_dequantizer_leaves_the_flow_alone_and_tightens_its_bound():
    torch.manual_seed(0)
    model = flows.DigitsFlow(num_couplings=2, hidden=16)
    with torch.no_grad():
        model.nll(data.load("digits", "train").images[:256])
    perturb(model, scale=0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = torch.utils.data.Subset(data.load("digits", "train"), range(256))
    val = torch.utils.data.Subset(data.load("digits", "val"), range(128))
    deq, history = flows.fit_dequantizer(model, epochs=3, train=train, val=val, verbose=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    x = data.load("digits", "val").images[:128]
    torch.manual_seed(1)
    with torch.no_grad():
        uniform = model.nll(x, draws=8).mean()
        learned = flows.variational_dequantized_nll(model.log_prob_y, deq, x, 17, draws=8).mean()
    assert learned < uniform


# ----------------------------------------------------------------------------------------------
# The multi-scale flow of 28x28 images on 256 levels
# ----------------------------------------------------------------------------------------------

def _mnist_like(n, seed=0):
    """Random images on the 256-level grid k / 255, shape (n, 1, 28, 28)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g).float() / 255


TINY = dict(hidden=8, depth=1, channel=2, final=2)


def test_image_flow_shapes_latents_and_256_level_samples():
    torch.manual_seed(0)
    model = flows.image_model("mnist", **TINY)
    assert model.levels == 256 and model.num_dims == 784 and model.likelihood == "bound"
    assert model.out_shapes == [(2, 14, 14), (4, 7, 7), (4, 7, 7)]  # 392 + 196 + 196 = 784 numbers
    x = _mnist_like(3)
    with torch.no_grad():
        z, log_det = model(model.logit(x)[0])
        nll = model.nll(x)
    assert z.shape == (3, 784) and log_det.shape == (3,) and nll.shape == (3,)
    s = model.sample(4, generator=torch.Generator().manual_seed(0))
    k = s * 255
    assert s.shape == (4, 1, 28, 28) and s.min() >= 0 and s.max() <= 1 and (k - k.round()).abs().max() < 1e-4


@pytest.mark.parametrize("config", [dict(shape=(1, 8, 8), checker=1, channel=2, final=2),    # RealNVP's order
                                    dict(shape=(1, 8, 8), checker=0, channel=3, final=1),    # Glow's order
                                    dict(shape=(3, 4, 4), num_scales=2, channel=2, final=2)])
def test_image_flow_inverse_undoes_forward(config):
    torch.manual_seed(0)
    model = flows.ImageFlow(**config, hidden=8, depth=1).double()
    s = torch.randn(5, *model.shape, dtype=torch.float64)
    with torch.no_grad():
        model(s)  # ActNorm's initialization
    perturb(model, scale=0.1)
    with torch.no_grad():
        z, _ = model(s)
        torch.testing.assert_close(model.inverse(z), s, atol=1e-9, rtol=0)
        torch.testing.assert_close(model(model.inverse(z))[0], z, atol=1e-9, rtol=0)


def test_image_flow_inverse_undoes_forward_at_28x28_in_float32():
    torch.manual_seed(0)
    model = flows.image_model("mnist", **TINY)
    x = _mnist_like(4)
    with torch.no_grad():
        model.nll(x)
    perturb(model, scale=0.05)
    with torch.no_grad():
        s = model.logit(data.dequantize(x, 256))[0]
        z, _ = model(s)
        assert (model.inverse(z) - s).abs().max() < 1e-3


@pytest.mark.parametrize("checker", [0, 1])
def test_image_flow_log_det_matches_the_autograd_jacobian(checker):
    """The summed log-dets of every layer (the squeezes and splits add 0) against slogdet of the full Jacobian
    of s -> z, and log p(y) against the Jacobian of y -> z through the logit, on 1x8x8 images (64 x 64)."""
    torch.manual_seed(1)
    model = flows.ImageFlow((1, 8, 8), checker=checker, channel=2, final=2, hidden=8, depth=1).double()
    y = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        model(torch.randn(16, 1, 8, 8, dtype=torch.float64))
    perturb(model, scale=0.1)
    s = model.logit(y)[0]
    _, log_det = model(s)
    torch.testing.assert_close(log_det, jacobian_log_det(model, s), atol=1e-8, rtol=0)
    full = lambda v: model(model.logit(v)[0])[0]
    expected = []
    for yi in y:
        jac = jacobian(lambda v: full(v.view(1, 1, 8, 8))[0], yi.flatten())
        z = full(yi[None])[0]
        expected.append(-0.5 * (z.pow(2).sum() + 64 * math.log(2 * math.pi)) + torch.linalg.slogdet(jac)[1])
    torch.testing.assert_close(model.log_prob_y(y), torch.stack(expected), atol=1e-8, rtol=0)


@pytest.mark.parametrize("channels, parity", [(4, 0), (4, 1), (3, 0), (3, 1)])
def test_channel_coupling_inverse_and_log_det(channels, parity):
    torch.manual_seed(0)
    layer = perturb(flows.ChannelCoupling(channels, hidden=8, depth=1, parity=parity).double(), scale=0.3)
    x = torch.randn(3, channels, 3, 2, dtype=torch.float64)
    z, log_det = layer(x)
    torch.testing.assert_close(layer.inverse(z), x, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_det, jacobian_log_det(layer, x), atol=1e-8, rtol=0)
    cond = slice(0, channels // 2) if parity == 0 else slice(channels // 2, channels)
    assert torch.equal(z[:, cond], x[:, cond])  # the conditioning half is copied


def test_image_flow_nll_is_the_dequantized_bound_on_256_levels():
    """nll = -log p(y) + D ln 256 at the same uniform draw y = (k + u) / 256."""
    torch.manual_seed(0)
    model = flows.image_model("mnist", **TINY)
    x = _mnist_like(2)
    with torch.no_grad():
        nll = model.nll(x, generator=torch.Generator().manual_seed(3))
        y = data.dequantize(x, 256, generator=torch.Generator().manual_seed(3))
        expected = -model.log_prob_y(y) + 784 * math.log(256)
    torch.testing.assert_close(nll, expected, atol=1e-2, rtol=0)
    k = torch.round(x * 255)
    assert ((y * 256).floor() == k).all()  # each draw lies in its level's box


def test_image_flow_rejects_bad_input():
    with pytest.raises(ValueError, match="divisible by 4"):
        flows.ImageFlow((1, 30, 30))
    with pytest.raises(ValueError, match="shape"):
        flows.ImageFlow((28, 28))
    with pytest.raises(ValueError, match="levels"):
        flows.ImageFlow(levels=1)
    with pytest.raises(ValueError, match="couplings"):
        flows.ImageFlow(channel=0)
    with pytest.raises(ValueError, match="28x28"):
        flows.image_model("digits")
    with pytest.raises(ValueError, match="channels"):
        flows.ChannelCoupling(1)
    model = flows.image_model("mnist", **TINY)
    with pytest.raises(ValueError, match="shape"):
        model.nll(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.nll(2 * _mnist_like(2))
    with pytest.raises(ValueError, match="784"):
        model.inverse(torch.randn(2, 100))
    with pytest.raises(ValueError, match="positive integer"):
        model.sample(0)
    with pytest.raises(ValueError, match="unknown dataset"):
        flows.train_images("cifar10")
    with pytest.raises(ValueError, match="epochs"):
        flows.train_images("mnist", epochs=0)
    with pytest.raises(ValueError, match="subset"):
        flows.train_images("mnist", subset=-5)


def test_image_flow_train_images_quick_on_a_small_standin(fake_mnist_files):
    model, history = flows.train_images("mnist", quick=True, subset=64, verbose=False)
    assert isinstance(model, flows.ImageFlow) and not model.training
    assert model.levels == 256 and model.shape == (1, 28, 28)
    assert len(history.train_loss) == 1 and len(history.val_loss) == 1 and history.best_epoch == 1
    assert math.isfinite(history.val_loss[0])
    assert model.sample(3).shape == (3, 1, 28, 28)
