"""latent: the autoencoder, its standardization, the DiT and latent flow matching, against independent
computations (torch.distributions' KL, explicit permutations, counted network calls, autograd)."""
import pytest
import torch
from torch.nn import functional as F

from gencourse import latent
from gencourse.data import load


def _images(n=32, seed=0):
    return torch.randint(0, 17, (n, 1, 8, 8), generator=torch.Generator().manual_seed(seed)).float() / 16


def _randomize(module, seed=0):
    """Give every parameter (the zero-initialized ones included) random values, so nothing is trivially 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module


@pytest.mark.parametrize("c,s", [(4, 2), (2, 4), (3, 1)])
def test_encode_decode_shapes_and_range(c, s):
    torch.manual_seed(0)
    ae = latent.LatentAutoencoder(c, s).eval()
    x = _images(5)
    z = ae.encode(x)
    assert z.shape == (5, c, s, s) and ae.latent_shape == (c, s, s)
    y = ae.decode(z)
    assert y.shape == (5, 1, 8, 8) and y.min() >= 0 and y.max() <= 1
    assert ae(x).shape == x.shape


def test_fit_scale_standardizes_train_latents_and_decode_inverts_it():
    torch.manual_seed(0)
    ae = latent.LatentAutoencoder(4, 2).eval()
    x = _images(200)
    with torch.no_grad():
        mu = ae.encoder(2 * x - 1)[:, :4]                       # the raw posterior means, computed by hand
    ae.fit_scale(x)
    z = ae.encode(x)
    assert abs(z.mean().item()) < 1e-5 and abs(z.var().item() - 1) < 1e-4
    torch.testing.assert_close(z * mu.std() + mu.mean(), mu, atol=1e-5, rtol=1e-5)
    # decode undoes the standardization: the decoder sees the raw latent
    torch.testing.assert_close(ae.decode(z), torch.sigmoid(ae.decoder(mu)), atol=1e-5, rtol=1e-5)


def test_autoencoder_loss_is_bce_plus_beta_kl():
    torch.manual_seed(0)
    ae = latent.LatentAutoencoder(2, 4, beta=0.3).eval()       # eval: z = mu, no sampling
    x = _images(6)
    mu, logvar = ae.posterior(x)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    bce = F.binary_cross_entropy(torch.sigmoid(ae.decoder(mu)), x, reduction="none").flatten(1).sum(1)
    torch.testing.assert_close(ae.loss(x), (bce + 0.3 * kl).mean(), atol=1e-4, rtol=1e-4)


def test_untrained_dit_outputs_zero_and_adaln_zero_blocks_are_identity():
    torch.manual_seed(0)
    net = latent.DiT((4, 2, 2), n_embd=32, n_layer=2)
    z, t = torch.randn(7, 4, 2, 2), torch.rand(7)
    assert torch.equal(net(z, t), torch.zeros_like(z))
    h, e = torch.randn(7, 4, 32), torch.randn(7, 32)
    assert torch.equal(net.blocks[0](h, e), h)
    _randomize(net)
    assert net(z, t).abs().min() > 0                              # once trained (randomized) it is not zero


def test_dit_without_positions_is_permutation_equivariant_over_cells():
    torch.manual_seed(0)
    z, t = torch.randn(3, 2, 4, 4), torch.rand(3)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))

    def permute(a):                                               # shuffle the 16 cells of every channel
        return a.flatten(2)[:, :, perm].view_as(a)

    net = _randomize(latent.DiT((2, 4, 4), n_embd=32, positions=False))
    torch.testing.assert_close(net(permute(z), t), permute(net(z, t)), atol=1e-5, rtol=1e-5)
    with_pos = _randomize(latent.DiT((2, 4, 4), n_embd=32, positions=True))
    assert (with_pos(permute(z), t) - permute(with_pos(z, t))).abs().max() > 1e-3   # positions break it


def test_dit_attention_is_bidirectional_and_depends_on_time():
    net = _randomize(latent.DiT((2, 2, 2), n_embd=16, n_layer=1, n_head=2))
    z = torch.randn(1, 2, 2, 2, requires_grad=True)
    out = net(z, torch.tensor([0.3]))
    (grad,) = torch.autograd.grad(out[0, :, 0, 0].sum(), z)       # the first cell's output ...
    assert grad[0, :, 1, 1].abs().sum() > 0                      # ... sees the last cell (no causal mask)
    assert not torch.allclose(net(z, torch.tensor([0.1])), net(z, torch.tensor([0.9])))


def test_mlp_network_is_lesson_06s_denoiser():
    from gencourse.nets import MLPDenoiser

    net = latent.build_network("mlp", (4, 2, 2), hidden=32, depth=1)
    assert isinstance(net, MLPDenoiser)
    z = torch.randn(3, 4, 2, 2)
    assert net(z, torch.rand(3)).shape == z.shape


@pytest.mark.parametrize("method,steps,expected", [("euler", 3, 3), ("heun", 3, 6), ("euler", 1, 1), ("heun", 1, 2)])
def test_sampling_uses_the_stated_nfe(method, steps, expected):
    torch.manual_seed(0)
    ae = latent.LatentAutoencoder(4, 2).eval()
    model = latent.LatentFlowMatching(ae, latent.build_network("dit", ae.latent_shape, n_embd=16, n_layer=1))
    calls = []
    inner = model.net.forward
    model.net.forward = lambda z, t: (calls.append(len(z)), inner(z, t))[1]
    x = model.sample(5, steps, method)
    assert len(calls) == expected == model.nfe(method, steps) and all(c == 5 for c in calls)
    assert x.shape == (5, 1, 8, 8)
    torch.testing.assert_close(x * 16, torch.round(x * 16))       # on the data's 17 levels


def test_zero_velocity_leaves_the_noise_and_sample_decodes_it():
    torch.manual_seed(0)
    ae = latent.LatentAutoencoder(4, 2).eval()
    model = latent.LatentFlowMatching(ae, latent.DiT(ae.latent_shape, n_embd=16, n_layer=1))  # untrained: v = 0
    z = model.sample_latents(4, 3, "heun", generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(z, torch.randn((4, 4, 2, 2), generator=torch.Generator().manual_seed(5)))
    x = model.sample(4, 3, "euler", quantized=False, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(x, ae.decode(z))


def test_loss_is_the_cfm_loss_on_the_latents():
    torch.manual_seed(0)
    ae = latent.LatentAutoencoder(4, 2).eval()
    model = latent.LatentFlowMatching(ae, _randomize(latent.build_network("mlp", ae.latent_shape, hidden=16, depth=1)))
    z1 = torch.randn(64, 4, 2, 2)
    torch.manual_seed(3)
    got = model.loss(z1)
    torch.manual_seed(3)                                          # cfm_loss draws x0 first, then t
    x0, t = torch.randn(z1.shape), torch.rand(64)
    zt = t.view(-1, 1, 1, 1) * z1 + (1 - t.view(-1, 1, 1, 1)) * x0
    want = (model.net(zt, t) - (z1 - x0)).pow(2).sum((1, 2, 3)).mean()
    torch.testing.assert_close(got, want)


def test_training_runs_and_standardizes_on_the_train_split():
    ae, hist = latent.train_autoencoder(epochs=2, verbose=False)
    z = ae.encode(load("digits", "train").images)
    assert abs(z.mean().item()) < 1e-4 and abs(z.var().item() - 1) < 1e-3
    assert not any(p.requires_grad for p in ae.parameters())
    model, hist = latent.train_latent_fm(ae, network="mlp", epochs=2, hidden=32, depth=1, verbose=False)
    assert hist.epochs == 2 and all(map(torch.isfinite, map(torch.tensor, hist.train_loss)))
    assert model.sample(3, 2).shape == (3, 1, 8, 8)


def test_bad_inputs_raise_value_errors():
    ae = latent.LatentAutoencoder(4, 2).eval()
    model = latent.LatentFlowMatching(ae, latent.build_network("mlp", ae.latent_shape, hidden=8, depth=1))
    with pytest.raises(ValueError, match="latent_size"):
        latent.LatentAutoencoder(4, 3)
    with pytest.raises(ValueError, match="latent_channels"):
        latent.LatentAutoencoder(0, 2)
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        ae.encode(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ae.encode(torch.rand(2, 1, 8, 8) * 2 - 1)
    with pytest.raises(ValueError, match=r"\(B, 4, 2, 2\)"):
        ae.decode(torch.randn(2, 2, 4, 4))
    with pytest.raises(ValueError, match="network"):
        latent.build_network("cnn", (4, 2, 2))
    with pytest.raises(ValueError, match="method"):
        model.sample(2, 2, "rk4")
    with pytest.raises(ValueError, match="steps"):
        model.sample(2, 0)
    with pytest.raises(ValueError, match="n must"):
        model.sample(0, 2)
    with pytest.raises(ValueError, match="LatentAutoencoder"):
        latent.train_latent_fm(object())
    with pytest.raises(ValueError, match="latent_shape"):
        latent.DiT((4, 2))


def test_recipe_trains_quick_and_loads_into_digits_model():
    model, history = latent.train_digits(quick=True, verbose=False)
    assert set(history) == {"autoencoder", "flow"} and not model.training
    fresh = latent.digits_model()
    fresh.load_state_dict(model.state_dict())  # the recipe's architecture is what a checkpoint loads into
    torch.manual_seed(0)
    a = fresh.eval().sample(3)
    torch.manual_seed(0)
    torch.testing.assert_close(a, model.sample(3))


# --- 28x28 images: a (4, 7, 7) latent and a DiT over its 49 cells ---------------------------------------

@pytest.mark.parametrize("s, downs", [(7, 2), (14, 1)])
def test_28x28_autoencoder_shapes(s, downs):
    torch.manual_seed(0)
    ae = latent.LatentAutoencoder(4, s, width=8, image_size=28).eval()
    x = torch.rand(3, 1, 28, 28)
    z = ae.encode(x)
    assert z.shape == (3, 4, s, s) and ae.latent_shape == (4, s, s) and ae.levels == 256
    assert ae.decode(z).shape == (3, 1, 28, 28) and ae(x).shape == x.shape
    strided = [m for m in ae.encoder if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == downs


def test_8x8_autoencoder_keeps_its_parameters_and_messages():
    # the parameter counts before 28x28 was added (the stored recipes load into these)
    assert sum(p.numel() for p in latent.LatentAutoencoder().parameters()) == 198281
    assert sum(p.numel() for p in latent.LatentAutoencoder(2, 4).parameters()) == 66693
    assert latent.LatentAutoencoder().levels == 17
    with pytest.raises(ValueError, match=r"expected digit images of shape \(B, 1, 8, 8\)"):
        latent.LatentAutoencoder().encode(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="latent_size must be 1, 2 or 4"):
        latent.LatentAutoencoder(4, 7)


def test_28x28_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="latent_size must be 7 or 14"):
        latent.LatentAutoencoder(4, 2, image_size=28)
    with pytest.raises(ValueError, match="image_size"):
        latent.LatentAutoencoder(4, 2, image_size=16)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        latent.LatentAutoencoder(4, 7, image_size=28).encode(_images(2))
    with pytest.raises(ValueError, match="unknown dataset"):
        latent.image_model("cifar10")
    with pytest.raises(ValueError, match="network"):
        latent.image_model("mnist", network="unet")
    with pytest.raises(ValueError, match="unknown dataset"):
        latent.train_images("cifar10")
    with pytest.raises(ValueError, match="fm_epochs"):
        latent.train_images("mnist", fm_epochs=0)
    with pytest.raises(ValueError, match="takes 8x8 images"):
        latent.train_latent_fm(latent.LatentAutoencoder(), dataset="mnist")


def test_28x28_samples_lie_on_the_256_levels():
    torch.manual_seed(0)
    model = latent.image_model("mnist", n_embd=16, n_layer=1)
    assert model.latent_shape == (4, 7, 7) and isinstance(model.net, latent.DiT)
    x = model.sample(3, steps=2, method="euler")
    assert x.shape == (3, 1, 28, 28)
    torch.testing.assert_close(x * 255, torch.round(x * 255))
    assert latent.image_model("mnist", network="mlp").net.__class__.__name__ == "MLPDenoiser"
    digits = latent.image_model("digits")  # the recipe's architecture
    assert digits.latent_shape == (4, 2, 2) and latent.num_parameters(digits.net) == \
        latent.num_parameters(latent.digits_model().net)


def test_28x28_dit_has_about_the_pixel_unet_parameters():
    from gencourse import flow_matching as fm

    dit = latent.num_parameters(latent.image_model("mnist").net)
    unet = latent.num_parameters(fm.image_model("mnist"))
    assert abs(dit - unet) < 0.1 * unet


def test_train_images_quick_on_28x28(fake_mnist):
    model, history = latent.train_images("mnist", quick=True, verbose=False, n_embd=16, n_layer=1)
    assert set(history) == {"autoencoder", "flow"} and not model.training
    assert len(history["flow"].train_loss) == 2
    from gencourse import data

    z = model.autoencoder.encode(data.load("mnist", "train").images)  # standardized on the training images
    assert abs(z.mean().item()) < 1e-4 and abs(z.var().item() - 1) < 1e-3
    x = model.sample(4, steps=2, method="euler")
    assert x.shape == (4, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
