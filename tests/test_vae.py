"""gencourse.vae against independent computations: torch.distributions, closed forms, Monte Carlo."""
import math

import pytest
import torch
from torch import distributions as D

from gencourse import vae
from gencourse.data import load


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    for shape in [(7, 3), (5, 2, 4), (1, 16)]:
        mu = torch.randn(shape, generator=g) * 2
        logvar = torch.randn(shape, generator=g) * 1.5
        q = D.Normal(mu, torch.exp(0.5 * logvar))
        p = D.Normal(torch.zeros(shape), torch.ones(shape))
        expected = D.kl_divergence(q, p).flatten(1).sum(1)
        got = vae.gaussian_kl(mu, logvar)
        assert got.shape == (shape[0],)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_gaussian_kl_is_zero_only_at_the_prior():
    assert vae.gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() < 1e-7
    assert (vae.gaussian_kl(torch.full((2, 4), 0.1), torch.zeros(2, 4)) > 0).all()


def test_reparameterize_moments():
    mu = torch.tensor([1.0, -2.0, 0.5])
    logvar = torch.tensor([0.0, math.log(4.0), math.log(0.01)])
    z = vae.reparameterize(mu.expand(200_000, 3), logvar.expand(200_000, 3))
    assert z.shape == (200_000, 3)
    torch.testing.assert_close(z.mean(0), mu, atol=0.02, rtol=0)
    torch.testing.assert_close(z.var(0), logvar.exp(), rtol=0.02, atol=0)
    # Gaussian: standardized third moment 0, fourth 3
    u = (z - mu) / torch.exp(0.5 * logvar)
    assert u.pow(3).mean(0).abs().max() < 0.05
    torch.testing.assert_close(u.pow(4).mean(0), torch.full((3,), 3.0), atol=0.1, rtol=0)


def test_reparameterized_samples_carry_unbiased_gradients():
    # d/dmu E[z^2] = 2 mu and d/dlogvar E[z^2] = exp(logvar)  (E[z^2] = mu^2 + exp(logvar))
    mu = torch.tensor([0.7, -1.3], requires_grad=True)
    logvar = torch.tensor([0.2, -0.5], requires_grad=True)
    n = 200_000
    z = vae.reparameterize(mu.expand(n, 2), logvar.expand(n, 2))
    assert z.requires_grad
    z.pow(2).mean(0).sum().backward()
    torch.testing.assert_close(mu.grad, 2 * mu.detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(logvar.grad, logvar.detach().exp(), atol=0.03, rtol=0)


def test_reparameterize_and_kl_reject_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        vae.reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="same shape"):
        vae.gaussian_kl(torch.zeros(2, 3), torch.zeros(3, 2))


def test_gaussian_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    z, mu, logvar = (torch.randn(4, 5, 3, generator=g) for _ in range(3))
    expected = D.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(vae.gaussian_log_prob(z, mu, logvar), expected, rtol=1e-5, atol=1e-5)


def test_discretized_logistic_is_a_distribution_over_the_levels():
    g = torch.Generator().manual_seed(2)
    loc = torch.randn(500, 1, generator=g, dtype=torch.float64) * 1.5
    log_scale = torch.randn(500, 1, generator=g, dtype=torch.float64) * 2 - 1
    levels = torch.arange(17)
    logp = vae.discretized_logistic_log_pmf(loc, log_scale, levels, 17)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(500, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    # against the logistic CDF of torch.distributions (float64), bin by bin
    base = D.TransformedDistribution(D.Uniform(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)),
                                     [D.SigmoidTransform().inv, D.AffineTransform(loc, log_scale.exp())])
    y = 2.0 * levels / 16 - 1.0
    upper = torch.where(levels == 16, torch.tensor(1.0, dtype=torch.float64), base.cdf(y + 1 / 16))
    lower = torch.where(levels == 0, torch.tensor(0.0, dtype=torch.float64), base.cdf(y - 1 / 16))
    expected = upper - lower
    mask = expected > 1e-12
    torch.testing.assert_close(logp.exp()[mask], expected[mask], rtol=1e-6, atol=1e-9)


def test_discretized_logistic_sampler_matches_its_pmf():
    loc, log_scale = torch.tensor([0.1]), torch.tensor([-1.5])
    k = vae.sample_discretized_logistic(loc.expand(200_000), log_scale.expand(200_000), 17,
                                        generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(k, minlength=17).double() / len(k)
    pmf = vae.discretized_logistic_log_pmf(loc, log_scale, torch.arange(17), 17).exp().double()
    torch.testing.assert_close(freq, pmf, atol=4e-3, rtol=0)


def test_categorical_log_pmf_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 64, 17, generator=g)
    k = torch.randint(0, 17, (6, 64), generator=g)
    torch.testing.assert_close(vae.categorical_log_pmf(logits, k), D.Categorical(logits=logits).log_prob(k))


def _digits(n=16):
    return load("digits", "train").images[:n]


@pytest.mark.parametrize("decoder", vae.DECODERS)
def test_elbo_is_the_monte_carlo_mean_of_an_independent_computation(decoder):
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=3, hidden=32, decoder=decoder).eval()
    x = _digits(2)
    reps = 4000
    with torch.no_grad():
        got = model.elbo(x.repeat(reps, 1, 1, 1)).view(reps, 2)
        mu, logvar = model.encode(x)
        q = D.Normal(mu, torch.exp(0.5 * logvar))
        z = q.sample((reps,))                                   # (reps, 2, 3)
        params = model.decode(z)
        k = torch.round(x.flatten(1) * 16).long()
        if decoder == "categorical":
            loglik = D.Categorical(logits=params).log_prob(k.expand(reps, 2, 64)).sum(-1)
        else:  # the logistic CDF, written out
            loc, s = params[..., 0], params[..., 1].clamp(-7, 5).exp()
            y = 2 * k / 16 - 1
            cdf = lambda t: torch.sigmoid((t - loc) / s)
            p = torch.where(k == 16, 1.0, cdf(y + 1 / 16)) - torch.where(k == 0, 0.0, cdf(y - 1 / 16))
            loglik = p.clamp_min(1e-30).log().sum(-1)
        expected = loglik - D.kl_divergence(q, D.Normal(torch.zeros(3), torch.ones(3))).sum(-1)
    se = (got.std(0) ** 2 / reps + expected.std(0) ** 2 / reps).sqrt()
    assert ((got.mean(0) - expected.mean(0)).abs() < 4 * se + 1e-3).all()


class LinearGaussian(torch.nn.Module):
    """p(z) = N(0, I), p(x | z) = N(W z + b, s^2 I): log p(x) = log N(x; b, W W^T + s^2 I) in closed form.

    q(z | x): the exact posterior's mean and the diagonal of its covariance, the mean shifted by ``shift``,
    so q differs from the posterior and the bounds are not tight.
    """

    def __init__(self, W, b, s, shift=0.0):
        super().__init__()
        self.W, self.b, self.s, self.shift = W, b, s, shift

    def marginal(self):
        cov = self.W @ self.W.T + self.s ** 2 * torch.eye(len(self.b), dtype=self.W.dtype)
        return D.MultivariateNormal(self.b, covariance_matrix=cov)

    def encode(self, x):
        d = self.W.shape[1]
        precision = torch.eye(d, dtype=x.dtype) + self.W.T @ self.W / self.s ** 2
        cov = torch.linalg.inv(precision)
        mean = (x - self.b) @ self.W @ cov.T / self.s ** 2
        return mean + self.shift, torch.diagonal(cov).log().expand_as(mean)

    def log_likelihood(self, x, z):
        return D.Normal(z @ self.W.T + self.b, self.s).log_prob(x).sum(-1)


def _linear_gaussian(shift):
    g = torch.Generator().manual_seed(5)
    W = torch.randn(6, 2, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    model = LinearGaussian(W, b, 0.5, shift)
    x = model.marginal().sample((8,))
    return model, x


def test_iwae_on_a_linear_gaussian_model_approaches_the_exact_log_likelihood():
    torch.manual_seed(0)
    model, x = _linear_gaussian(shift=0.3)
    exact = model.marginal().log_prob(x)
    gaps = []
    for k in (1, 10, 100, 5000):
        bound = torch.stack([vae.iwae_bound(model, x, k) for _ in range(20)]).mean(0)
        gaps.append((exact - bound).mean().item())
    assert all(g >= -0.02 for g in gaps), gaps           # a lower bound (up to Monte Carlo noise)
    assert gaps[0] > 0.2, gaps                            # q is not the posterior: the ELBO is loose
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 0.02, gaps


def test_iwae_is_exact_with_the_true_posterior():
    g = torch.Generator().manual_seed(6)
    W = torch.zeros(4, 2, dtype=torch.float64)
    W[0, 0], W[1, 1] = 1.5, -0.7          # orthogonal columns: the exact posterior is diagonal
    model = LinearGaussian(W, torch.randn(4, generator=g, dtype=torch.float64), 0.4)
    x = model.marginal().sample((5,))
    torch.testing.assert_close(vae.iwae_bound(model, x, 3), model.marginal().log_prob(x), rtol=0, atol=1e-9)


def test_iwae_bound_is_at_least_the_elbo_and_grows_with_k():
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=4, hidden=64).eval()
    x = _digits(8)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x) for _ in range(200)]).mean()
        bounds = [torch.stack([vae.iwae_bound(model, x, k) for _ in range(30)]).mean() for k in (1, 5, 50)]
    assert abs(bounds[0] - elbo) < 0.5                 # k = 1 estimates the ELBO
    assert bounds[1] > elbo and bounds[2] > bounds[1]


def test_iwae_in_chunks_equals_iwae_in_one_go():
    model = vae.VAE(latent_dim=4, hidden=32, decoder="categorical").eval()
    x = _digits(3)
    with torch.no_grad():
        torch.manual_seed(0)
        one = vae.iwae_bound(model, x, 40)
        torch.manual_seed(0)
        chunked = vae.iwae_bound(model, x, 40, max_elements=3 * 64 * 17 * 7)  # chunks of 7 samples
    torch.testing.assert_close(one, chunked)


def test_gradient_estimators_are_unbiased_and_reparameterization_has_lower_variance():
    mu, logvar, a = torch.tensor([0.5, -1.0]), torch.tensor([0.0, -1.0]), torch.tensor([2.0, 0.0])
    f = lambda z: (z - a).pow(2).sum(-1)                       # E f = |mu - a|^2 + sum exp(logvar)
    exact = 2 * (mu - a)
    rep = vae.mu_gradient_estimates(f, mu, logvar, 100_000, generator=torch.Generator().manual_seed(0))
    score = vae.mu_gradient_estimates(f, mu, logvar, 100_000, estimator="score",
                                      generator=torch.Generator().manual_seed(1))
    assert rep.shape == score.shape == (100_000, 2)
    torch.testing.assert_close(rep.mean(0), exact, atol=0.03, rtol=0)
    torch.testing.assert_close(score.mean(0), exact, atol=0.15, rtol=0)
    assert (score.var(0) > 3 * rep.var(0)).all()
    with pytest.raises(ValueError, match="estimator"):
        vae.mu_gradient_estimates(f, mu, logvar, 10, estimator="magic")


def test_vae_interface_for_the_capstone():
    torch.manual_seed(0)
    model = vae.VAE()
    assert vae.VAE.likelihood == "bound"
    x = _digits(4)
    nll = model.nll(x, k=20)
    assert nll.shape == (4,) and (nll > 0).all()
    s = model.sample(7)
    assert s.shape == (7, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    torch.testing.assert_close(s * 16, (s * 16).round())        # on the 17-level grid
    m = model.sample(3, mean=True)
    assert m.shape == (3, 1, 8, 8) and 0 <= m.min() and m.max() <= 1
    assert model.elbo(x).shape == (4,)


def test_vae_on_mnist_shapes_with_256_levels():
    model = vae.VAE((1, 28, 28), latent_dim=8, hidden=64, levels=256)
    x = torch.randint(0, 256, (3, 1, 28, 28)) / 255.0
    assert model.elbo(x).shape == (3,)
    assert model.nll(x, k=4).shape == (3,)
    assert model.sample(2).shape == (2, 1, 28, 28)


def test_vae_rejects_bad_input():
    model = vae.VAE()
    with pytest.raises(ValueError, match="shape"):
        model.elbo(torch.zeros(2, 64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.elbo(torch.full((2, 1, 8, 8), -1.0))
    with pytest.raises(ValueError, match="k must"):
        vae.iwae_bound(model, _digits(2), 0)
    with pytest.raises(ValueError, match="decoder"):
        vae.VAE(decoder="gaussian")
    with pytest.raises(ValueError, match="positive"):
        model.sample(0)


def test_rate_distortion_adds_up_to_the_elbo():
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=4, hidden=32).eval()
    x = _digits(64)
    rd = vae.rate_distortion(model, x, samples=200)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x) for _ in range(200)]).mean().item()
    assert abs(rd["rate"] + rd["distortion"] + elbo) < 0.5
    assert len(rd["kl_per_dim"]) == 4 and 0 <= rd["active_units"] <= 4


def test_train_digits_quick_runs_and_improves():
    model, history = vae.train_digits(quick=True, verbose=False)
    assert history.epochs == 2 and history.train_loss[1] < history.train_loss[0]
    assert not model.training


def test_iwae_splits_large_batches_into_blocks():
    model = vae.VAE(latent_dim=4, hidden=32).eval()
    x = _digits(10)
    with torch.no_grad():
        torch.manual_seed(0)
        whole = vae.iwae_bound(model, x, 5000)
        blocked = vae.iwae_bound(model, x, 5000, max_elements=5000 * 4 * 3)   # blocks of 3 images
    assert blocked.shape == (10,)
    assert (whole - blocked).abs().max() < 0.05          # same bound, different noise: close at k = 5000


# --- posterior collapse, its remedies, the conditional VAE, proposals and ELBO surgery ---------------

def test_kl_per_dim_and_free_bits_against_torch_distributions():
    g = torch.Generator().manual_seed(7)
    mu, logvar = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    per_dim = D.kl_divergence(D.Normal(mu, torch.exp(0.5 * logvar)), D.Normal(0.0, 1.0))
    torch.testing.assert_close(vae.kl_per_dim(mu, logvar), per_dim)
    mean_dims = per_dim.mean(0)
    for lam in (0.0, 0.3, 2.0):
        expected = torch.maximum(mean_dims, torch.tensor(lam, dtype=torch.float64)).sum()
        torch.testing.assert_close(vae.free_bits_kl(mu, logvar, lam), expected)
    torch.testing.assert_close(vae.free_bits_kl(mu, logvar, 0.0), vae.gaussian_kl(mu, logvar).mean())
    # below the floor a dimension gets no gradient; above it, the plain KL's
    mu_r, lv_r = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    lam = float(mean_dims.median())
    vae.free_bits_kl(mu_r, lv_r, lam).backward()
    below = mean_dims < lam
    assert (mu_r.grad[:, below] == 0).all() and (mu_r.grad[:, ~below] != 0).any()
    with pytest.raises(ValueError, match="free_bits"):
        vae.free_bits_kl(mu, logvar, -1.0)


def test_warmup_beta_rises_linearly_to_one():
    assert [vae.warmup_beta(e, 4) for e in range(1, 7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert vae.warmup_beta(1, 0) == 1.0


def test_autoregressive_decoder_is_autoregressive_and_a_distribution():
    torch.manual_seed(0)
    model = vae.AutoregressiveDecoderVAE(latent_dim=3, hidden=32, decoder_hidden=64).eval()
    x = _digits(2)
    z = torch.randn(2, 3)
    # output i depends on pixels < i only: the Jacobian of the logits w.r.t. the input is strictly lower-triangular
    flat = x.flatten(1)[:1].clone().requires_grad_(True)
    jac = torch.autograd.functional.jacobian(lambda v: model.decoder(v, z[:1]).sum(-1), flat)[0, :, 0]  # (64, 64)
    assert (jac.triu() == 0).all() and jac.tril(-1).abs().sum() > 0
    # log p(x | z) summed over all 17^64 images is 1: check it pixel by pixel (each conditional sums to one)
    logits = model.decoder(x.flatten(1), z)
    torch.testing.assert_close(logits.softmax(-1).sum(-1), torch.ones(2, 64))
    expected = D.Categorical(logits=logits).log_prob(torch.round(x.flatten(1) * 16).long()).sum(-1)
    torch.testing.assert_close(model.log_likelihood(x, z), expected)
    assert model.log_likelihood(x, torch.randn(5, 2, 3)).shape == (5, 2)
    assert model.elbo(x).shape == (2,) and model.nll(x, k=4).shape == (2,)
    s = model.sample(3)
    assert s.shape == (3, 1, 8, 8) and torch.allclose(s * 16, (s * 16).round())


def test_train_rate_controlled_records_the_rate_and_the_warmup():
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=4, hidden=32)
    x = _digits(64)
    out = vae.train_rate_controlled(model, x, x[:32], epochs=3, batch_size=32, warmup_epochs=3, free_bits=0.1)
    assert out["beta"] == [1 / 3, 2 / 3, 1.0]
    assert len(out["rate"]) == len(out["neg_elbo"]) == len(out["active_units"]) == 3
    assert all(r >= 0 for r in out["rate"]) and not model.training
    with pytest.raises(ValueError, match="labels"):
        vae.train_rate_controlled(vae.ConditionalVAE(latent_dim=2, hidden=16), x, x, epochs=1)


def test_conditional_vae_conditions_on_the_label():
    torch.manual_seed(0)
    model = vae.ConditionalVAE(latent_dim=3, hidden=32).eval()
    x, y = _digits(4), torch.tensor([0, 3, 3, 9])
    mu, logvar = model.encode(x, y)
    assert mu.shape == (4, 3)
    z = torch.randn(4, 3)
    a = model.log_likelihood(x, z, y)
    b = model.log_likelihood(x, z, torch.tensor([1, 3, 3, 9]))
    assert a.shape == (4,) and a[0] != b[0] and torch.equal(a[1:], b[1:])
    assert model.log_likelihood(x, torch.randn(6, 4, 3), y).shape == (6, 4)
    assert model.elbo(x, y).shape == (4,)
    s = model.sample_class(torch.tensor([2, 2, 7]))
    assert s.shape == (3, 1, 8, 8) and 0 <= s.min() and s.max() <= 1
    with pytest.raises(ValueError, match="labels"):
        model.encode(x, torch.tensor([0, 1, 2, 10]))


def test_importance_weights_of_both_proposals_bound_the_exact_likelihood():
    torch.manual_seed(0)
    model, x = _linear_gaussian(shift=0.3)
    model._check_x = lambda x: None
    model.latent_dim = 2
    exact = model.marginal().log_prob(x)
    for proposal in vae.PROPOSALS:
        log_w = vae.importance_log_weights(model, x, 20000, proposal=proposal)
        estimate = torch.logsumexp(log_w, 0) - math.log(20000)
        assert (estimate - exact).abs().max() < 0.15, proposal
        ess = vae.effective_sample_size(log_w)
        assert ((ess >= 1) & (ess <= 20000)).all()
    # with a sharp decoder the posterior is narrow (a large KL from the prior): the prior wastes its draws
    g = torch.Generator().manual_seed(6)
    sharp = LinearGaussian(torch.randn(6, 2, generator=g, dtype=torch.float64), torch.zeros(6, dtype=torch.float64), 0.05)
    sharp._check_x, sharp.latent_dim = (lambda x: None), 2
    xs = sharp.marginal().sample((8,))
    ess_q = vae.effective_sample_size(vae.importance_log_weights(sharp, xs, 2000)).median()
    ess_p = vae.effective_sample_size(vae.importance_log_weights(sharp, xs, 2000, proposal="prior")).median()
    assert ess_q > 10 * ess_p
    torch.testing.assert_close(vae.effective_sample_size(torch.zeros(10, 3)), torch.full((3,), 10.0))
    with pytest.raises(ValueError, match="proposal"):
        vae.importance_log_weights(model, x, 10, proposal="uniform")


def test_rate_decomposition_adds_up_and_matches_a_direct_computation():
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=3, hidden=32).eval()
    x = _digits(50)
    out = vae.rate_decomposition(model, x, samples=200)
    assert abs(out["rate"] - out["mutual_information"] - out["marginal_kl"]) < 0.1
    assert 0 <= out["mutual_information"] <= out["log_n"] + 1e-6 and out["marginal_kl"] >= -0.05
    # the aggregate posterior as a torch.distributions mixture, and its KL to the prior by Monte Carlo
    with torch.no_grad():
        mu, logvar = model.encode(x)
    mix = D.MixtureSameFamily(D.Categorical(torch.ones(50)), D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1))
    z = mix.sample((20000,))
    kl_mc = (mix.log_prob(z) - D.Independent(D.Normal(torch.zeros(3), torch.ones(3)), 1).log_prob(z)).mean()
    assert abs(out["marginal_kl"] - kl_mc.item()) < 0.1


def test_score_function_with_a_baseline_is_unbiased_and_less_noisy():
    mu, logvar, a = torch.tensor([0.5, -1.0]), torch.tensor([0.0, -1.0]), torch.tensor([2.0, 0.0])
    f = lambda z: (z - a).pow(2).sum(-1) + 50.0                   # a large common part, as log p(x | z) has
    exact = 2 * (mu - a)
    # fixed draws: a Monte Carlo test must not depend on which tests ran before it in the same worker
    score = vae.mu_gradient_estimates(f, mu, logvar, 100_000, estimator="score",
                                      generator=torch.Generator().manual_seed(0))
    base = vae.mu_gradient_estimates(f, mu, logvar, 100_000, estimator="score-baseline",
                                     generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(base.mean(0), exact, atol=0.05, rtol=0)
    assert (base.var(0) * 10 < score.var(0)).all()
    # per-example values for a batch of means: example b's estimate uses f_b only
    mu_b, lv_b = torch.zeros(3, 2), torch.zeros(3, 2)
    g = vae.mu_gradient_estimates(lambda z: z.pow(2).sum(-1), mu_b, lv_b, 50_000, estimator="score",
                                  generator=torch.Generator().manual_seed(2))
    assert g.shape == (50_000, 3, 2)
    torch.testing.assert_close(g.mean(0), torch.zeros(3, 2), atol=0.06, rtol=0)


# ----------------------------------------------------------------------------------------------
# The convolutional VAE of 28x28 images on 256 levels
# ----------------------------------------------------------------------------------------------

MNIST_FILES = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def _mnist_like(n, seed=0):
    """Random images on the 256-level grid k / 255, shape (n, 1, 28, 28)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g).float() / 255


@pytest.mark.parametrize("decoder", ["logistic", "categorical"])
def test_conv_vae_shapes(decoder):
    torch.manual_seed(0)
    model = vae.ConvVAE(latent_dim=5, channels=(4, 8), hidden=16, decoder=decoder).eval()
    x = _mnist_like(3)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 5)
    p = 2 if decoder == "logistic" else 256
    assert model.decode(torch.randn(7, 3, 5)).shape == (7, 3, 784, p)  # (k, B, d) -> (k, B, D, P)
    assert model.log_likelihood(x, torch.randn(7, 3, 5)).shape == (7, 3)
    assert model.elbo(x).shape == (3,) and model.nll(x, k=4).shape == (3,)
    s = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, 1, 28, 28)
    k = s * 255
    assert s.min() >= 0 and s.max() <= 1 and (k - k.round()).abs().max() < 1e-4  # on the 256-level grid
    assert model.sample(2, mean=True).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("decoder", ["logistic", "categorical"])
def test_conv_vae_decoder_is_a_distribution_over_the_256_levels(decoder):
    """p(x | z) is a proper discrete distribution: each pixel's 256 probabilities sum to one, and the
    likelihood is the sum of the log-probabilities of the observed levels."""
    torch.manual_seed(1)
    model = _perturb_conv(vae.ConvVAE(latent_dim=4, channels=(4, 8), hidden=16, decoder=decoder))
    z = torch.randn(2, 4)
    probs = model.level_probs(model.decode(z))  # (2, 784, 256)
    assert probs.shape == (2, 784, 256) and (probs >= 0).all()
    torch.testing.assert_close(probs.double().sum(-1), torch.ones(2, 784, dtype=torch.float64), atol=1e-4, rtol=0)
    x = _mnist_like(2, seed=3)
    k = (x.flatten(1) * 255).round().long()
    expected = probs.gather(-1, k.unsqueeze(-1)).squeeze(-1).log().sum(-1)
    torch.testing.assert_close(model.log_likelihood(x, z), expected, rtol=1e-4, atol=0.05)


def _perturb_conv(model):
    """Larger random weights, so that the decoder's scales and locations spread over the levels."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_conv_vae_iwae_is_tighter_than_the_elbo_on_average():
    torch.manual_seed(2)
    model = vae.ConvVAE(latent_dim=4, channels=(4, 8), hidden=16).eval()
    x = _mnist_like(4, seed=5)
    with torch.no_grad():
        neg_elbo = -torch.stack([model.elbo(x) for _ in range(200)]).mean(0)
        bounds = vae.evaluate_bounds(model, x, k=64, elbo_samples=50)
    assert (model.nll(x, k=64) <= neg_elbo + 1.0).all()
    assert bounds["iwae_nats"] <= bounds["elbo_nats"] + 0.5
    assert abs(bounds["iwae_bpd"] - bounds["iwae_nats"] / (784 * math.log(2))) < 1e-9


def test_conv_vae_rejects_bad_input():
    with pytest.raises(ValueError, match="divisible by 4"):
        vae.ConvVAE((1, 30, 30))
    with pytest.raises(ValueError, match="square"):
        vae.ConvVAE((1, 28, 24))
    with pytest.raises(ValueError, match="channels"):
        vae.ConvVAE(channels=(8,))
    with pytest.raises(ValueError, match="decoder"):
        vae.ConvVAE(decoder="bernoulli")
    model = vae.ConvVAE(latent_dim=4, channels=(4, 8), hidden=16)
    with pytest.raises(ValueError, match="shape"):
        model.elbo(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.elbo(2 * _mnist_like(2))
    with pytest.raises(ValueError, match="unknown dataset"):
        vae.train_images("cifar10")
    with pytest.raises(ValueError, match="epochs"):
        vae.train_images("mnist", epochs=0)
    with pytest.raises(ValueError, match="subset"):
        vae.train_images("mnist", subset=-5)


def test_digits_vae_is_built_as_before():
    """The MLP VAE still draws its weights in the same order (the refactor into _build_networks)."""
    torch.manual_seed(0)
    a = vae.VAE()
    torch.manual_seed(0)
    enc = vae.mlp([64, 256, 256, 32])
    dec = vae.mlp([16, 256, 256, 128])
    for p, q in zip(a.parameters(), list(enc.parameters()) + list(dec.parameters())):
        assert torch.equal(p, q)


@pytest.mark.skipif(not (MNIST_FILES / "t10k-images-idx3-ubyte.gz").exists(), reason="no MNIST test files")
def test_conv_vae_train_images_quick_on_the_standin(tmp_path, monkeypatch):
    from gencourse import data

    root = data.install_mnist_standin(MNIST_FILES, tmp_path)
    monkeypatch.setenv("GENCOURSE_DATA", str(root))
    model, history = vae.train_images("mnist", quick=True, subset=64, verbose=False,
                                      latent_dim=4, channels=(4, 8), hidden=16)
    assert isinstance(model, vae.ConvVAE) and not model.training
    assert len(history.train_loss) == 1 and len(history.val_loss) == 1
    assert model.levels == 256 and model.image_shape == (1, 28, 28)
