"""gencourse.autoencoder: shapes, the loss against an independent BCE, corruption statistics, sampling."""
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
