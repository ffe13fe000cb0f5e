"""gencourse.autoencoder: shapes, the loss against an independent BCE, corruption statistics, sampling, the
corrupted-validation selection, and the denoiser's score against closed forms and autograd."""
import math

import pytest
import torch

from gencourse import autoencoder as ae
from gencourse.data import load


def _digits(n=32):
    return load("digits", "train").images[:n]


def test_mlp_autoencoder_shapes_on_digits():
    model = ae.MLPAutoencoder(latent_dim=3)
    x = _digits(5)
    z = model.encode(x)
    assert z.shape == (5, 3)
    x_hat = model(x)
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    assert model.decode_logits(z).shape == x.shape
    assert ae.Autoencoder.likelihood == "none"


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8)])
def test_conv_autoencoder_shapes(shape):
    model = ae.ConvAutoencoder(shape, latent_dim=6)
    x = torch.rand(4, *shape)
    assert model.encode(x).shape == (4, 6)
    assert model(x).shape == (4, *shape)
    assert model.reconstruction_error(x).shape == (4,)


def test_mlp_autoencoder_on_mnist_shape():
    model = ae.MLPAutoencoder((1, 28, 28), latent_dim=8, hidden=(128,))
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


def test_loss_is_the_binary_cross_entropy_summed_over_pixels():
    torch.manual_seed(0)
    model = ae.MLPAutoencoder(latent_dim=4).eval()
    x = _digits(6)
    with torch.no_grad():
        p = model(x).double()
        # written out: -[x log p + (1 - x) log(1 - p)], summed per image, averaged over images
        expected = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean()
        torch.testing.assert_close(model.loss(x).double(), expected, rtol=1e-4, atol=1e-4)
        bce = torch.nn.BCELoss(reduction="sum")(p, x.double()) / len(x)
        torch.testing.assert_close(model.loss(x).double(), bce, rtol=1e-4, atol=1e-4)


def test_reconstruction_error_is_the_squared_error_per_image():
    model = ae.MLPAutoencoder(latent_dim=2).eval()
    x = _digits(7)
    with torch.no_grad():
        expected = torch.stack([((xi - model(xi[None])[0]) ** 2).sum() for xi in x])
    torch.testing.assert_close(model.reconstruction_error(x), expected)


def test_corrupt_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.full((200_000,), 0.5)
    noisy = ae.corrupt(x, noise_std=0.1, generator=g)
    assert abs(noisy.std().item() - 0.1) < 0.002 and abs(noisy.mean().item() - 0.5) < 0.002
    masked = ae.corrupt(x, mask_prob=0.3, generator=g)
    assert abs((masked == 0).double().mean().item() - 0.3) < 0.005
    assert ae.corrupt(torch.rand(1000), noise_std=2.0).min() >= 0
    with pytest.raises(ValueError):
        ae.corrupt(x, mask_prob=1.5)


def test_denoising_loss_is_random_in_training_and_clean_in_eval():
    torch.manual_seed(0)
    model = ae.MLPAutoencoder(latent_dim=4, noise_std=0.5)
    assert model.denoising and not ae.MLPAutoencoder().denoising
    x = _digits(16)
    model.train()
    assert model.loss(x).item() != model.loss(x).item()
    model.eval()
    assert model.loss(x).item() == model.loss(x).item()


def test_fitted_code_distribution_and_sampling():
    torch.manual_seed(0)
    model = ae.MLPAutoencoder(latent_dim=3).eval()
    x = _digits(500)
    model.fit_code_distribution(x)
    with torch.no_grad():
        z = model.encode(x)
    torch.testing.assert_close(model.code_mean, z.mean(0))
    cov = model.code_scale_tril @ model.code_scale_tril.T
    torch.testing.assert_close(cov, torch.cov(z.T), rtol=1e-3, atol=1e-4)
    s = model.sample(11)
    assert s.shape == (11, 1, 8, 8) and 0 <= s.min() and s.max() <= 1


def test_training_reduces_reconstruction_error():
    torch.manual_seed(0)
    train, val = load("digits", "train"), load("digits", "val")
    model = ae.MLPAutoencoder(latent_dim=8)
    before = model.reconstruction_error(val.images).mean()
    ae.train_autoencoder(model, train, val, epochs=15, verbose=False)
    after = model.reconstruction_error(val.images).mean()
    assert after < 0.5 * before


def test_train_digits_quick():
    model, history = ae.train_digits(quick=True, verbose=False)
    assert history.epochs == 2 and not model.training
    assert model.sample(5).shape == (5, 1, 8, 8)


def test_bad_input_raises_value_error():
    model = ae.MLPAutoencoder()
    with pytest.raises(ValueError, match="shape"):
        model.loss(torch.rand(2, 64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.loss(torch.rand(2, 1, 8, 8) * 2 - 1)
    with pytest.raises(ValueError, match="divisible by 4"):
        ae.ConvAutoencoder((1, 30, 30))
    with pytest.raises(ValueError, match="latent_dim"):
        ae.MLPAutoencoder(latent_dim=0)
    with pytest.raises(ValueError, match="positive"):
        model.sample(0)


def test_roc_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    normal = torch.randn(300, generator=g)
    anomalous = torch.randn(200, generator=g) + 1.0
    ties = torch.randint(0, 4, (100,), generator=g).float(), torch.randint(1, 5, (50,), generator=g).float()
    for a, b in [(normal, anomalous), ties, (normal, normal + 100.0), (normal + 100.0, normal)]:
        expected = roc_auc_score([0] * len(a) + [1] * len(b), torch.cat([a, b]).numpy())
        assert abs(ae.roc_auc(a, b) - expected) < 1e-12
    with pytest.raises(ValueError):
        ae.roc_auc(torch.tensor([]), normal)


def test_sample_refuses_an_unfitted_code_distribution():
    model = ae.MLPAutoencoder(latent_dim=2)
    assert not model.code_distribution_fitted
    with pytest.raises(RuntimeError, match="fit_code_distribution"):
        model.sample(3)
    with pytest.raises(RuntimeError, match="fit_code_distribution"):
        model.sample_codes(3)
    model.fit_code_distribution(_digits(100))
    assert model.code_distribution_fitted and model.sample_codes(4).shape == (4, 2)
    # the fitted Gaussian travels with the state_dict: a loaded copy can sample
    copy = ae.MLPAutoencoder(latent_dim=2)
    copy.load_state_dict(model.state_dict())
    assert copy.code_distribution_fitted and copy.sample(2).shape == (2, 1, 8, 8)


def test_sample_codes_follow_the_fitted_gaussian():
    torch.manual_seed(0)
    model = ae.MLPAutoencoder(latent_dim=2).fit_code_distribution(_digits(300))
    z = model.sample_codes(20_000, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z.mean(0), model.code_mean, atol=0.05 * model.code_scale_tril.diag().max().item(), rtol=0)
    cov = model.code_scale_tril @ model.code_scale_tril.T
    torch.testing.assert_close(torch.cov(z.T), cov, rtol=0.05, atol=0.05 * cov.abs().max().item())


def test_loss_with_given_inputs_encodes_them_and_targets_x():
    torch.manual_seed(0)
    model = ae.MLPAutoencoder(latent_dim=4, noise_std=0.3).train()
    x = _digits(6)
    noisy = ae.corrupt(x, noise_std=0.3, generator=torch.Generator().manual_seed(0))
    logits = model.decode_logits(model.encode(noisy))
    expected = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits).double(), x.double(),
                                                        reduction="sum") / len(x)
    assert abs(model.loss(x, inputs=noisy).item() - expected.item()) < 1e-3
    with pytest.raises(ValueError, match="shape"):
        model.loss(x, inputs=noisy[:3])


def test_select_on_corrupted_validation():
    torch.manual_seed(0)
    train, val = _digits(200), load("digits", "val").images[:100]
    dae = ae.MLPAutoencoder(latent_dim=8, noise_std=0.3, mask_prob=0.25)
    history = ae.train_autoencoder(dae, train, val, epochs=3, verbose=False, select_on="corrupted", seed=0)
    # the validation loss it selected on is the loss on the fixed corrupted copy drawn with the seed
    noisy = ae.corrupt(val, noise_std=0.3, mask_prob=0.25, generator=torch.Generator().manual_seed(0))
    dae.eval()
    with torch.no_grad():
        assert abs(dae.loss(val, inputs=noisy).item() - history.best_val_loss) < 1e-3
        assert abs(dae.loss(val).item() - history.best_val_loss) > 0.01  # not the clean loss
    with pytest.raises(ValueError, match="denoising"):
        ae.train_autoencoder(ae.MLPAutoencoder(latent_dim=2), train, val, epochs=1, verbose=False, select_on="corrupted")
    with pytest.raises(ValueError, match="select_on"):
        ae.train_autoencoder(dae, train, val, epochs=1, verbose=False, select_on="val")


@pytest.mark.parametrize("sigma", [0.0, 0.5, 2.0])
def test_mixture_score_is_the_gradient_of_the_noised_mixture(sigma):
    from torch import distributions as D

    from gencourse import data

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64) * 3
    centers = data.RING_CENTERS.double()
    s = math.sqrt(data.RING_STD ** 2 + sigma ** 2)
    mix = D.MixtureSameFamily(D.Categorical(torch.ones(8, dtype=torch.float64)),
                              D.Independent(D.Normal(centers, torch.full_like(centers, s)), 1))
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(xr).sum(), xr)
    torch.testing.assert_close(ae.mixture_score(x, centers, data.RING_STD, sigma), grad, rtol=1e-9, atol=1e-9)


def test_mixture_score_noising_is_a_convolution():
    """p_sigma = p * N(0, sigma^2): check the noised density itself by Monte Carlo at a few points."""
    torch.manual_seed(0)
    centers, std, sigma = torch.tensor([[0.0, 0.0], [2.0, 1.0]], dtype=torch.float64), 0.4, 0.7
    x = torch.tensor([[0.5, 0.2], [1.5, 1.5]], dtype=torch.float64)
    n = 400_000
    comp = torch.randint(0, 2, (n,))
    y = centers[comp] + std * torch.randn(n, 2, dtype=torch.float64)           # y ~ p
    # p_sigma(x) = E_y N(x; y, sigma^2 I); its score by finite differences of the MC estimate's log
    def log_p_sigma(pt):
        return torch.log(torch.exp(-((pt - y) ** 2).sum(1) / (2 * sigma ** 2)).mean())
    h = 1e-3
    for pt, score in zip(x, ae.mixture_score(x, centers, std, sigma)):
        fd = torch.stack([(log_p_sigma(pt + h * e) - log_p_sigma(pt - h * e)) / (2 * h) for e in torch.eye(2, dtype=torch.float64)])
        torch.testing.assert_close(fd, score, atol=0.03, rtol=0.03)


def test_mixture_score_far_points_are_finite_and_inputs_are_checked():
    from gencourse import data

    far = torch.tensor([[1e3, -1e3]])
    assert torch.isfinite(ae.mixture_score(far, data.RING_CENTERS, data.RING_STD, 0.1)).all()
    with pytest.raises(ValueError):
        ae.mixture_score(torch.zeros(3, 3), data.RING_CENTERS, data.RING_STD, 0.1)
    with pytest.raises(ValueError):
        ae.mixture_score(torch.zeros(3, 2), data.RING_CENTERS, 0.0, 0.0)


def test_denoiser_score_recovers_the_score_of_a_noised_gaussian():
    """Tweedie: for p = N(0, I) and sigma = 1, E[x | x~] = x~ / 2 and the score of p_sigma = N(0, 2I) is -x~ / 2."""
    points = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0))
    denoiser, losses = ae.train_denoiser(points, 1.0, steps=300, hidden=32, seed=0)
    assert len(losses) == 300 and not denoiser.training
    x = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1)) * math.sqrt(2.0)
    estimate, exact = ae.denoiser_score(denoiser, x, 1.0), -x / 2
    assert ((estimate - exact) ** 2).sum(1).mean() / (exact ** 2).sum(1).mean() < 0.05
    # the minimum of the squared error is E|x - E[x|x~]|^2 = D * 1/2 = 1 per point
    assert abs(sum(losses[-50:]) / 50 - 1.0) < 0.1
    with pytest.raises(ValueError):
        ae.denoiser_score(denoiser, x, 0.0)
    with pytest.raises(ValueError):
        ae.train_denoiser(torch.zeros(0, 2), 1.0)
