"""gencourse.basics, checked against independent computations: torch.distributions, numpy, loops, closed forms."""
import math

import numpy as np
import pytest
import torch
from torch import distributions as td

from gencourse import basics, data


def _spd(d, g):
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Bayes' rule, Gaussian MLE, the Gaussian classifier
# ----------------------------------------------------------------------------------------------

def test_class_posterior_matches_softmax_and_survives_huge_log_joints():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 4, generator=g, dtype=torch.float64) * 3
    out = basics.class_posterior(a)
    assert torch.allclose(out.exp(), torch.softmax(a, dim=1), atol=1e-12)
    shifted = basics.class_posterior(a - 5000.0)  # exp underflows; the posterior is unchanged by a shift
    assert torch.isfinite(shifted).all() and torch.allclose(shifted, out, atol=1e-9)
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        basics.class_posterior(torch.zeros(3))


def test_gaussian_mle_matches_numpy_and_maximizes_the_likelihood():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64) @ _spd(3, g) + 2.0
    mu, cov = basics.gaussian_mle(x)
    assert np.allclose(mu.numpy(), x.numpy().mean(0))
    assert np.allclose(cov.numpy(), np.cov(x.numpy(), rowvar=False, bias=True))

    def total_log_lik(m, c):
        return td.MultivariateNormal(m, covariance_matrix=c).log_prob(x).sum().item()

    best = total_log_lik(mu, cov)
    for _ in range(10):  # any perturbation of the estimate lowers the likelihood
        dm = 0.05 * torch.randn(3, generator=g, dtype=torch.float64)
        e = 0.05 * torch.randn(3, 3, generator=g, dtype=torch.float64)
        assert total_log_lik(mu + dm, cov) < best
        assert total_log_lik(mu, cov + e @ e.T + 1e-3 * torch.eye(3, dtype=torch.float64)) < best
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        basics.gaussian_mle(torch.zeros(5))


def test_gaussian_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(2)
    cov, mu = _spd(4, g), torch.randn(4, generator=g, dtype=torch.float64)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    expect = td.MultivariateNormal(mu, covariance_matrix=cov).log_prob(x)
    assert torch.allclose(basics.gaussian_log_prob(x, mu, cov), expect, atol=1e-10)


def _toy_classes(g, n=300, d=3, c=3):
    y = torch.arange(n) % c
    means = torch.randn(c, d, generator=g, dtype=torch.float64) * 3
    x = means[y] + torch.randn(n, d, generator=g, dtype=torch.float64) * (1 + y[:, None])
    return x, y


@pytest.mark.parametrize("covariance", basics.COVARIANCES)
def test_gaussian_classifier_log_joint_matches_torch_distributions(covariance):
    g = torch.Generator().manual_seed(3)
    x, y = _toy_classes(g)
    reg = 0.1
    clf = basics.GaussianClassifier(covariance, reg=reg).fit(x, y)
    x_eval = torch.randn(20, 3, generator=g, dtype=torch.float64) * 3
    eye = torch.eye(3, dtype=torch.float64)
    pooled = sum(((x[y == k] - x[y == k].mean(0)).T @ (x[y == k] - x[y == k].mean(0))) for k in range(3)) / len(x)
    for k in range(3):
        xk = x[y == k]
        cov = torch.from_numpy(np.cov(xk.numpy(), rowvar=False, bias=True))
        if covariance == "diagonal":
            cov = torch.diag(torch.diagonal(cov))
        elif covariance == "shared":
            cov = pooled
        elif covariance == "shared-diagonal":
            cov = torch.diag(torch.diagonal(pooled))
        dist = td.MultivariateNormal(xk.mean(0), covariance_matrix=cov + reg * eye)
        expect = dist.log_prob(x_eval) + math.log(len(xk) / len(x))
        assert torch.allclose(clf.log_joint(x_eval)[:, k].double(), expect, rtol=1e-5, atol=1e-4)
    post = clf.predict_log_proba(x_eval).exp()
    assert torch.allclose(post.sum(1), torch.ones(20), atol=1e-5)
    assert torch.equal(clf.predict(x_eval), post.argmax(1))
    assert torch.allclose(clf.log_prob(x_eval), torch.logsumexp(clf.log_joint(x_eval), 1))
    if covariance.startswith("shared"):  # one covariance for all classes: log p(y|x) is linear in x
        a, b = x_eval[:1], x_eval[1:2]
        lp = lambda z: clf.predict_log_proba(z).double()
        logit = lambda z: lp(z)[:, 1] - lp(z)[:, 0]
        mid = logit((a + b) / 2)
        assert torch.allclose(mid, (logit(a) + logit(b)) / 2, atol=1e-3)


def test_gaussian_classifier_samples_follow_the_model():
    g = torch.Generator().manual_seed(4)
    x, y = _toy_classes(g)
    y = torch.where(torch.arange(len(y)) < 150, torch.zeros_like(y), y)  # uneven prior: class 0 has half
    clf = basics.GaussianClassifier("full", reg=0.01).fit(x, y)
    xs, ys = clf.sample(40000, generator=torch.Generator().manual_seed(5))
    assert xs.shape == (40000, 3) and xs.dtype == torch.float32 and ys.shape == (40000,)
    freq = torch.bincount(ys, minlength=3).double() / len(ys)
    assert torch.allclose(freq, clf.log_prior.exp(), atol=0.01)
    for k in range(3):  # Monte Carlo moments of each class against the fitted Gaussian
        xk = xs[ys == k].double()
        assert torch.allclose(xk.mean(0), clf.means[k], atol=0.1)
        assert torch.allclose(torch.cov(xk.T), clf.covs[k], rtol=0.08, atol=0.15)
    fixed, labels = clf.sample(5, torch.tensor([2, 2, 2, 1, 0]))
    assert labels.tolist() == [2, 2, 2, 1, 0] and fixed.shape == (5, 3)


def test_gaussian_classifier_bad_input():
    with pytest.raises(ValueError, match="covariance"):
        basics.GaussianClassifier("spherical")
    with pytest.raises(ValueError, match="reg"):
        basics.GaussianClassifier("full", reg=0)
    clf = basics.GaussianClassifier()
    with pytest.raises(ValueError, match="not fitted"):
        clf.predict(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="every class"):
        clf.fit(torch.zeros(4, 2), torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="integer labels"):
        clf.fit(torch.zeros(4, 2), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    clf.fit(torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        clf.log_joint(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="labels"):
        clf.sample(3, torch.tensor([0, 1, 5]))


def test_balanced_subset():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    g = torch.Generator().manual_seed(0)
    for n in (3, 30, 61, 100):
        idx = basics.balanced_subset(labels, n, generator=g)
        counts = torch.bincount(labels[idx], minlength=3)
        assert len(set(idx.tolist())) == n
        if n <= 60:
            assert counts.max() - counts.min() <= 1
    assert torch.bincount(labels[basics.balanced_subset(labels, 61, generator=g)]).tolist() == [21, 20, 20]
    with pytest.raises(ValueError):
        basics.balanced_subset(labels, 101)


# ----------------------------------------------------------------------------------------------
# The discrete baselines
# ----------------------------------------------------------------------------------------------

def _loop_nll(train, test, levels, alpha):
    out = []
    for row in test.tolist():
        total = 0.0
        for d, k in enumerate(row):
            n_dk = sum(1 for t in train.tolist() if t[d] == k)
            theta = (n_dk + alpha) / (len(train) + alpha * levels)
            total += -math.log(theta) if theta > 0 else math.inf
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def test_pixel_categorical_nll_matches_loops_and_torch_categorical():
    g = torch.Generator().manual_seed(6)
    train = torch.randint(0, 4, (25, 5), generator=g)
    test = torch.randint(0, 5, (6, 5), generator=g)  # level 4 never occurs in training
    for alpha in (0.1, 1.0, 0.0):
        got = basics.pixel_categorical_nll(train, test, 5, alpha)
        assert torch.allclose(got, _loop_nll(train, test, 5, alpha), atol=1e-9)
    counts = basics.level_counts(train, 5)
    cat = td.Categorical(probs=(counts + 0.5) / (counts + 0.5).sum(1, keepdim=True))
    expect = -cat.log_prob(test).sum(1)  # (B, D) log-probs, one categorical per dimension
    assert torch.allclose(basics.pixel_categorical_nll(train, test, 5, 0.5), expect, atol=1e-9)
    with pytest.raises(ValueError, match="integer levels"):
        basics.pixel_categorical_nll(train.float(), test, 5, 0.1)
    with pytest.raises(ValueError, match="0..4"):
        basics.pixel_categorical_nll(train, test + 3, 5, 0.1)


def test_pixel_categorical_model_reproduces_the_course_figures():
    train, val, test = (data.load("digits", s) for s in ("train", "val", "test"))
    model = basics.PixelCategorical(17, alpha=0.1).fit(train.images)
    test_nll = model.nll(test.images)
    assert test_nll.shape == (447,) and model.likelihood == "exact"
    assert abs(test_nll.mean().item() - 106.3) <= 0.1  # COURSE.md section 8
    assert abs(test_nll.mean().item() / (64 * math.log(2)) - 2.40) < 0.005
    assert abs(basics.uniform_nll(64, 17) - 181.3) < 0.05
    levels = data.to_levels(train.images, 17).flatten(1)
    assert torch.allclose(test_nll.double(), basics.pixel_categorical_nll(
        levels, data.to_levels(test.images, 17).flatten(1), 17, 0.1), atol=1e-3)
    plain = basics.PixelCategorical(17, alpha=0.0).fit(train.images)
    unseen = plain.unseen(test.images)
    assert int(unseen.sum()) > 0
    assert torch.equal(torch.isinf(plain.nll(test.images)), unseen.any(1))
    assert torch.isfinite(plain.nll(train.images)).all()
    assert model.nll(val.images).mean() > test_nll.mean()  # the validation split is the harder one


def test_pixel_categorical_samples_have_the_fitted_frequencies():
    g = torch.Generator().manual_seed(7)
    images = torch.randint(0, 3, (200, 1, 2, 2), generator=g) / 2.0
    model = basics.PixelCategorical(levels=3, alpha=0.0).fit(images)
    s = model.sample(30000, generator=g)
    assert s.shape == (30000, 1, 2, 2) and s.min() >= 0 and s.max() <= 1
    freq = basics.level_counts(data.to_levels(s, 3).flatten(1), 3) / 30000
    assert torch.allclose(freq, model.probs, atol=0.015)
    with pytest.raises(ValueError, match="shape"):
        model.nll(torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match="not fitted"):
        basics.PixelCategorical().probs


def test_train_digits_recipe():
    model, history = basics.train_digits(quick=True)
    assert model.sample(4).shape == (4, 1, 8, 8)
    assert abs(history.val_loss[0] - model.nll(data.load("digits", "val").images).mean().item()) < 1e-4
    assert history.train_loss[0] < history.val_loss[0]


# ----------------------------------------------------------------------------------------------
# KL divergences and the 1D fits
# ----------------------------------------------------------------------------------------------

def test_discrete_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(8)
    p = torch.rand(4, 6, generator=g, dtype=torch.float64) + 0.01
    q = torch.rand(4, 6, generator=g, dtype=torch.float64) + 0.01
    p, q = p / p.sum(1, keepdim=True), q / q.sum(1, keepdim=True)
    expect = td.kl_divergence(td.Categorical(probs=p), td.Categorical(probs=q))
    assert torch.allclose(basics.discrete_kl(p, q), expect, atol=1e-12)
    zero_p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    assert abs(basics.discrete_kl(zero_p, torch.tensor([0.25, 0.25, 0.5])).item() - math.log(2)) < 1e-6
    assert basics.discrete_kl(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).item() == math.inf
    assert basics.discrete_kl(p, p).abs().max() < 1e-12


def test_mixture_log_prob_and_sampler():
    w, m, s = [0.3, 0.7], [-1.0, 2.0], [0.4, 1.5]
    x = torch.linspace(-4, 6, 50, dtype=torch.float64)
    mix = td.MixtureSameFamily(td.Categorical(probs=torch.tensor(w, dtype=torch.float64)),
                               td.Normal(torch.tensor(m, dtype=torch.float64), torch.tensor(s, dtype=torch.float64)))
    assert torch.allclose(basics.mixture_log_prob(x, w, m, s), mix.log_prob(x), atol=1e-12)
    draws = basics.sample_mixture(200000, w, m, s, generator=torch.Generator().manual_seed(9))
    assert abs(draws.mean().item() - (0.3 * -1 + 0.7 * 2)) < 0.02
    with pytest.raises(ValueError, match="weights"):
        basics.mixture_log_prob(x, [0.5, 0.6], m, s)


def test_grid_integrals_match_closed_forms():
    x = torch.linspace(-15, 15, 6001, dtype=torch.float64)
    dx = (x[1] - x[0]).item()
    lp, lq = basics.normal_log_prob(x, 0.5, 1.3), basics.normal_log_prob(x, -1.0, 2.0)
    assert abs(basics.entropy_on_grid(lp, dx) - 0.5 * math.log(2 * math.pi * math.e * 1.3 ** 2)) < 1e-6
    expect = td.kl_divergence(td.Normal(0.5, 1.3), td.Normal(-1.0, 2.0)).item()
    assert abs(basics.kl_on_grid(lp, lq, dx) - expect) < 1e-6


def test_fit_gaussian_kl_forward_is_moment_matching_reverse_seeks_a_mode():
    w, m, s = [0.6, 0.4], [-2.0, 2.0], [0.5, 0.5]
    log_p = lambda x: basics.mixture_log_prob(x, w, m, s)
    mean = 0.6 * -2 + 0.4 * 2
    std = math.sqrt(0.25 + 4.0 - mean ** 2)
    mu, sigma = basics.fit_gaussian_kl(log_p, "forward")
    assert abs(mu - mean) < 1e-4 and abs(sigma - std) < 1e-4
    mu, sigma = basics.fit_gaussian_kl(log_p, "reverse", init=(1.0, 1.0))
    assert abs(mu - 2.0) < 0.02 and abs(sigma - 0.5) < 0.02
    single = lambda x: basics.normal_log_prob(x, 0.7, 1.2)  # p itself a Gaussian: both directions recover it
    for direction in ("forward", "reverse"):
        mu, sigma = basics.fit_gaussian_kl(single, direction, init=(-1.0, 3.0))
        assert abs(mu - 0.7) < 1e-3 and abs(sigma - 1.2) < 1e-3
    with pytest.raises(ValueError, match="direction"):
        basics.fit_gaussian_kl(single, "both")


def test_family_map():
    table = basics.family_table()
    assert table.count("\n") == len(basics.FAMILIES) + 1
    kinds = {f["likelihood"].split()[0] for f in basics.FAMILIES}
    assert kinds == {"exact", "bound", "none"}
    assert {f["lesson"] for f in basics.FAMILIES} == {"03", "04", "05", "06", "07", "08"}
    vae = next(f for f in basics.FAMILIES if f["family"] == "VAE")
    assert "blurry means" in vae["fails"] and "speckled samples" in vae["fails"]  # lesson 03's measured finding


# ----------------------------------------------------------------------------------------------
# The dequantization bound and the exact cell probabilities of a diagonal Gaussian
# ----------------------------------------------------------------------------------------------

def test_dequantized_nll_against_a_loop_and_closed_forms():
    g = torch.Generator().manual_seed(11)
    k = torch.randint(0, 17, (5, 3), generator=g)
    u = torch.rand(4, 5, 3, generator=g, dtype=torch.float64)
    normal = td.Independent(td.Normal(torch.full((3,), 0.4, dtype=torch.float64),
                                      torch.full((3,), 0.25, dtype=torch.float64)), 1)
    got = basics.dequantized_nll(normal.log_prob, k, 17, u)
    expect = torch.tensor([sum(-normal.log_prob(((k[b] + u[s, b]) / 17)[None]).item() for s in range(4)) / 4
                           + 3 * math.log(17) for b in range(5)], dtype=torch.float64)
    assert torch.allclose(got, expect, atol=1e-10)
    # the uniform density on [0, 1)^D: exactly D ln L, whatever the draws
    flat = basics.dequantized_nll(lambda y: torch.zeros(len(y), dtype=y.dtype), k, 17, u)
    assert torch.allclose(flat, torch.full((5,), 3 * math.log(17), dtype=torch.float64))
    # many draws: E_u[(y - m)^2] has the closed form ((k + 1/2)/L - m)^2 + 1 / (12 L^2)
    many = torch.rand(20000, 5, 3, generator=g, dtype=torch.float64)
    m, s = 0.4, 0.25
    e_sq = ((k + 0.5) / 17 - m) ** 2 + 1 / (12 * 17 ** 2)
    closed = (0.5 * e_sq.double() / s ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)).sum(1) + 3 * math.log(17)
    assert torch.allclose(basics.dequantized_nll(normal.log_prob, k, 17, many), closed, atol=5e-3)
    with pytest.raises(ValueError, match="shape"):
        basics.dequantized_nll(normal.log_prob, k, 17, u[0])
    with pytest.raises(ValueError, match="uniform"):
        basics.dequantized_nll(normal.log_prob, k, 17, u + 1)


def test_diagonal_gaussian_cell_nll_is_exact_and_below_the_bound():
    g = torch.Generator().manual_seed(12)
    k = torch.randint(0, 5, (6, 2), generator=g)
    mean, std = torch.tensor([0.3, 0.6], dtype=torch.float64), torch.tensor([0.2, 0.05], dtype=torch.float64)
    normal = td.Normal(mean, std)
    expect = -torch.log(normal.cdf((k + 1) / 5) - normal.cdf(k / 5)).sum(1)   # loses digits far in a tail
    got = basics.diagonal_gaussian_cell_nll(k, 5, mean, std)
    near = expect < 20
    assert near.sum() >= 3 and torch.allclose(got[near], expect[near], atol=1e-9)
    # by numerical integration of the density over the cell (midpoint rule, 2000 points per pixel)
    t = (torch.arange(2000, dtype=torch.float64) + 0.5) / 2000
    mass = torch.stack([normal.log_prob(((k[:, d, None] + t) / 5).unsqueeze(-1).expand(-1, -1, 2))[..., d].exp().mean(1) / 5
                        for d in range(2)], dim=1)
    assert torch.allclose(got, -mass.log().sum(1), atol=1e-5)
    # Jensen: the bound of dequantized_nll is never below the exact value
    bound = basics.dequantized_nll(td.Independent(normal, 1).log_prob, k, 5,
                                   torch.rand(4000, 6, 2, generator=g, dtype=torch.float64))
    assert (bound >= got - 1e-3).all()
    # a cell far in the tail stays finite (cdf differences would underflow to 0)
    far = basics.diagonal_gaussian_cell_nll(torch.tensor([[16, 0]]), 17, torch.tensor([0.0, 1.0]),
                                            torch.tensor([0.01, 0.01]))
    assert torch.isfinite(far).all() and far.item() > 1000


# ----------------------------------------------------------------------------------------------
# Gaussian mixtures and EM
# ----------------------------------------------------------------------------------------------

def _mixture(g, k=3, d=2):
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    weights = weights / weights.sum()
    means = torch.randn(k, d, generator=g, dtype=torch.float64) * 3
    covs = torch.stack([_spd(d, g) for _ in range(k)])
    return weights, means, covs


def test_gmm_log_joint_matches_torch_distributions():
    g = torch.Generator().manual_seed(13)
    weights, means, covs = _mixture(g)
    x = torch.randn(20, 2, generator=g, dtype=torch.float64) * 3
    log_joint = basics.gmm_log_joint(x, weights, means, covs)
    mix = td.MixtureSameFamily(td.Categorical(weights), td.MultivariateNormal(means, covs))
    assert torch.allclose(torch.logsumexp(log_joint, 1), mix.log_prob(x), atol=1e-10)
    with pytest.raises(ValueError, match="expected"):
        basics.gmm_log_joint(x, weights[:2], means, covs)


def test_em_step_is_weighted_maximum_likelihood_and_never_lowers_the_likelihood():
    g = torch.Generator().manual_seed(14)
    weights, means, covs = _mixture(g)
    x = td.MixtureSameFamily(td.Categorical(weights), td.MultivariateNormal(means, covs)).sample((300,))
    start = (torch.full((3,), 1 / 3, dtype=torch.float64), x[:3].clone(), covs.clone())
    w, m, c, log_lik = basics.em_step(x, *start)
    # the M-step by loops over the points, from responsibilities computed with torch.distributions
    comp = td.MultivariateNormal(start[1], start[2])
    joint = (start[0].log() + comp.log_prob(x[:, None])).exp()                       # (N, K)
    r = joint / joint.sum(1, keepdim=True)
    assert abs(log_lik.item() - joint.sum(1).log().mean().item()) < 1e-10
    for j in range(3):
        nj = r[:, j].sum()
        mu = sum(r[n, j] * x[n] for n in range(300)) / nj
        cov = sum(r[n, j] * torch.outer(x[n] - mu, x[n] - mu) for n in range(300)) / nj
        assert abs(w[j] - nj / 300) < 1e-12 and torch.allclose(m[j], mu) and torch.allclose(c[j], cov)
    # monotone over many steps, and K = 1 is the maximum-likelihood Gaussian after one step
    _, _, _, history = basics.fit_gmm(x, x[:3].clone(), 40)
    assert all(b >= a - 1e-10 for a, b in zip(history, history[1:])) and len(history) == 40
    w1, m1, c1, _ = basics.fit_gmm(x, x[:1].clone(), 1)
    mu, sigma = basics.gaussian_mle(x)
    assert torch.allclose(m1[0], mu) and torch.allclose(c1[0], sigma) and w1.item() == 1.0
    with pytest.raises(ValueError, match="steps"):
        basics.fit_gmm(x, x[:3], 0)


def test_kmeans_plus_plus_picks_distinct_rows():
    g = torch.Generator().manual_seed(15)
    x = torch.cat([torch.randn(50, 2, generator=g) + c for c in (torch.tensor([-10.0, 0]), torch.tensor([10.0, 0]))])
    for seed in range(5):
        init = basics.kmeans_plus_plus(x, 2, generator=torch.Generator().manual_seed(seed))
        assert all(any(torch.equal(row, r) for r in x) for row in init)
        assert (init[0, 0] < 0) != (init[1, 0] < 0)  # far-apart clusters: one start in each (with near certainty)
    with pytest.raises(ValueError):
        basics.kmeans_plus_plus(x, 0)
