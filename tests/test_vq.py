"""Tests of gencourse.vq: the quantizer against brute force and autograd, codebook health, the token priors."""
import itertools
import math

import pytest
import torch

from gencourse import vq


def _latents(B=3, D=4, H=2, W=3, seed=0):
    return torch.randn(B, D, H, W, generator=torch.Generator().manual_seed(seed))


def _quantizer(K=5, D=4, beta=0.25, seed=0):
    q = vq.VectorQuantizer(K, D, beta=beta)
    with torch.no_grad():  # codes on the scale of the latents, so that several are used
        q.codebook.copy_(torch.randn(K, D, generator=torch.Generator().manual_seed(seed + 100)))
    return q


# ----------------------------------------------------------------------------------------------
# The quantizer
# ----------------------------------------------------------------------------------------------

def test_nearest_code_is_the_brute_force_argmin():
    q = _quantizer(K=7, D=4)
    z = _latents(B=5, D=4, H=3, W=3)
    z_q, idx, _ = q(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    expected = torch.cdist(flat.double(), q.codebook.detach().double()).argmin(1).view(5, 3, 3)
    assert idx.dtype == torch.long and idx.shape == (5, 3, 3)
    assert torch.equal(idx, expected)
    # z_q holds those codes, laid out like z
    assert z_q.shape == z.shape
    torch.testing.assert_close(z_q, q.codebook.detach()[expected].permute(0, 3, 1, 2))
    torch.testing.assert_close(q.lookup(idx), z_q)


def test_straight_through_jacobian_is_the_identity():
    q = _quantizer(K=5, D=2)
    z = _latents(B=1, D=2, H=2, W=2).requires_grad_()
    jac = torch.autograd.functional.jacobian(lambda t: q(t)[0], z)  # (1,2,2,2, 1,2,2,2)
    torch.testing.assert_close(jac.reshape(z.numel(), z.numel()), torch.eye(z.numel()))


def test_loss_value_and_which_term_trains_what():
    beta = 0.4
    q = _quantizer(K=6, D=4, beta=beta)
    z = _latents(B=2, D=4, H=2, W=2).requires_grad_()
    _, idx, loss = q(z)
    e = q.codebook.detach()[idx].permute(0, 3, 1, 2)  # the chosen codes, (B, D, H, W)
    n = z.numel()
    by_hand = ((z.detach() - e) ** 2).sum() / n * (1 + beta)  # codebook + beta * commitment, same value
    torch.testing.assert_close(loss, by_hand)
    loss.backward()
    # the encoder's gradient: only the commitment term, beta * 2 (z - e) / n
    torch.testing.assert_close(z.grad, beta * 2 * (z.detach() - e) / n)
    # the codebook's gradient: only the codebook term, 2 (e_k - z) / n summed over the vectors assigned to code k
    flat_z = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    expected = torch.zeros_like(q.codebook)
    expected.index_add_(0, idx.flatten(), 2 * (q.codebook.detach()[idx.flatten()] - flat_z) / n)
    torch.testing.assert_close(q.codebook.grad, expected)
    # beta does not reach the codebook
    q2 = _quantizer(K=6, D=4, beta=3.0)
    q2(z.detach())[2].backward()
    torch.testing.assert_close(q2.codebook.grad, expected)


def test_quantizer_rejects_bad_input():
    q = vq.VectorQuantizer(8, 4)
    with pytest.raises(ValueError, match="code_dim=4"):
        q(torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, code_dim"):
        q(torch.randn(2, 4, 2))
    bad = torch.randn(2, 4, 2, 2)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        q(bad)
    with pytest.raises(ValueError, match="0..7"):
        q.lookup(torch.full((1, 2, 2), 8, dtype=torch.long))
    with pytest.raises(ValueError, match="int64"):
        q.lookup(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="num_codes"):
        vq.VectorQuantizer(0, 4)
    with pytest.raises(ValueError, match="beta"):
        vq.VectorQuantizer(4, 4, beta=-1.0)


# ----------------------------------------------------------------------------------------------
# Codebook health
# ----------------------------------------------------------------------------------------------

def test_usage_perplexity_and_dead_share():
    K = 8
    uniform = vq.codebook_usage(torch.arange(K).repeat(5), K)
    assert uniform["perplexity"] == pytest.approx(K)
    assert uniform["dead_share"] == 0.0
    assert torch.equal(uniform["counts"], torch.full((K,), 5))
    single = vq.codebook_usage(torch.full((4, 2, 2), 3, dtype=torch.long), K)
    assert single["perplexity"] == pytest.approx(1.0)
    assert single["dead_share"] == pytest.approx((K - 1) / K)
    half = vq.codebook_usage(torch.tensor([0, 0, 1, 1]), K)  # two codes used equally: exp(ln 2) = 2
    assert half["perplexity"] == pytest.approx(2.0) and half["dead_share"] == pytest.approx(6 / 8)
    with pytest.raises(ValueError, match="0..7"):
        vq.codebook_usage(torch.tensor([8]), K)


def test_restart_revives_dead_codes():
    q = _quantizer(K=16, D=4)
    with torch.no_grad():
        q.codebook[4:] += 50.0  # twelve codes far from every latent: dead
    z = _latents(B=8, D=4, H=2, W=2)
    before = vq.codebook_usage(q(z)[1], 16)
    assert before["dead_share"] >= 12 / 16
    moved = vq.restart_dead_codes(q, before["counts"], z.permute(0, 2, 3, 1).reshape(-1, 4),
                                  generator=torch.Generator().manual_seed(0))
    assert moved == (before["counts"] == 0).sum().item()
    after = vq.codebook_usage(q(z)[1], 16)
    assert after["dead_share"] < before["dead_share"]
    assert after["dead_share"] <= 4 / 16
    assert vq.restart_dead_codes(q, after["counts"].clamp_min(1), z.permute(0, 2, 3, 1).reshape(-1, 4)) == 0


# ----------------------------------------------------------------------------------------------
# The VQ-VAE
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("grid", [2, 4])
def test_vqvae_shapes(grid):
    torch.manual_seed(0)
    model = vq.VQVAE(16, grid=grid, code_dim=8, hidden=8)
    x = torch.rand(5, 1, 8, 8)
    recon, idx, loss = model(x)
    assert recon.shape == (5, 1, 8, 8) and 0 <= recon.min() and recon.max() <= 1
    assert idx.shape == (5, grid, grid) and idx.dtype == torch.long and loss.dim() == 0
    assert torch.equal(model.encode(x), idx)
    images = model.decode(idx)
    assert images.shape == (5, 1, 8, 8)
    torch.testing.assert_close(images, recon.detach())  # the decoded tokens are the reconstruction
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model.encode(torch.rand(5, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.encode(2 * x)
    with pytest.raises(ValueError, match=f"\\(B, {grid}, {grid}\\)"):
        model.decode(torch.zeros(5, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="grid"):
        vq.VQVAE(16, grid=3)


def test_train_vqvae_restarts_dead_codes():
    from gencourse.data import load

    x = load("digits", "train").images[:200]
    kw = dict(num_codes=64, grid=4, code_dim=8, hidden=8, epochs=6, restart_every=1, progress=False, verbose=False)
    _, off = vq.train_vqvae(x, x[:50], restart_dead=False, **kw)
    _, on = vq.train_vqvae(x, x[:50], restart_dead=True, **kw)
    assert len(on["val_mse"]) == 6 and off["restarted"] == [0] * 6 and sum(on["restarted"]) > 0
    # from the paper's tiny uniform init, one code wins nearly every vector; restarts revive the rest
    assert off["dead_share"][-1] >= 0.5 and on["dead_share"][-1] <= 0.25
    assert on["perplexity"][-1] > 2 * off["perplexity"][-1]


# ----------------------------------------------------------------------------------------------
# The priors
# ----------------------------------------------------------------------------------------------

def test_token_gpt_nll_is_categorical_and_normalized():
    torch.manual_seed(0)
    model = vq.TokenGPT(3, grid=2, n_layer=1, n_head=2, n_embd=16, dropout=0.0).eval()
    with torch.no_grad():  # weights large enough that the conditionals are far from uniform
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    k = torch.randint(0, 3, (6, 2, 2))
    logits = model.logits(k)
    expected = -torch.distributions.Categorical(logits=logits).log_prob(k.reshape(6, 4)).sum(1)
    torch.testing.assert_close(model.nll(k), expected)
    # a distribution: summed over all 3^4 grids, p = exp(-nll) adds up to 1
    every = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 2)
    assert torch.exp(-model.nll(every).double()).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_token_gpt_is_causal_and_samples():
    torch.manual_seed(0)
    model = vq.TokenGPT(5, grid=2, n_layer=1, n_head=2, n_embd=16, dropout=0.0).eval()
    k = torch.randint(0, 5, (4, 2, 2))
    base = model.logits(k)
    for j in range(4):
        changed = k.clone().view(4, 4)
        changed[:, j] = (changed[:, j] + 1) % 5
        out = model.logits(changed.view(4, 2, 2))
        torch.testing.assert_close(out[:, :j + 1], base[:, :j + 1])  # logits of tokens 0..j never see token j
        if j < 3:
            assert (out[:, j + 1:] - base[:, j + 1:]).abs().max() > 1e-6
    s = model.sample(7, generator=torch.Generator().manual_seed(0))
    assert s.shape == (7, 2, 2) and s.dtype == torch.long and 0 <= s.min() and s.max() < 5


def test_token_gpt_completes_a_prefix_from_the_conditionals():
    torch.manual_seed(1)
    model = vq.TokenGPT(3, grid=2, n_layer=1, n_head=2, n_embd=16, dropout=0.0).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    prefix = torch.tensor([[2, 0]]).repeat(20_000, 1)  # the top row given; the bottom row drawn
    out = model.complete(prefix, generator=torch.Generator().manual_seed(0))
    assert out.shape == (20_000, 2, 2) and torch.equal(out.view(-1, 4)[:, :2], prefix)
    # the third token follows p(k_2 | k_0 = 2, k_1 = 0), computed from the joint by brute force over its grids
    every = torch.tensor([[2, 0, a, b] for a in range(3) for b in range(3)]).view(-1, 2, 2)
    joint = torch.exp(-model.nll(every).double()).view(3, 3)
    expected = joint.sum(1) / joint.sum()
    drawn = torch.bincount(out.view(-1, 4)[:, 2], minlength=3).double() / 20_000
    assert (drawn - expected).abs().max() < 0.015
    for bad, match in ((torch.zeros(2, 4, dtype=torch.long), "fewer than 4"), (torch.zeros(2, 1), "int64"),
                       (torch.full((2, 1), 3), "0..2")):
        with pytest.raises(ValueError, match=match):
            model.complete(bad)


def test_maskgit_samples_valid_tokens_in_exactly_steps_calls():
    torch.manual_seed(0)
    model = vq.MaskedTokenModel(6, grid=4, n_layer=1, n_head=2, n_embd=16)
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    for steps in (1, 4, 8, 16):
        calls.clear()
        s = model.sample(9, steps, generator=torch.Generator().manual_seed(steps))
        assert len(calls) == steps
        assert s.shape == (9, 4, 4) and s.dtype == torch.long
        assert s.min() >= 0 and s.max() < 6  # no [MASK] (id 6) left
    with pytest.raises(ValueError, match="steps"):
        model.sample(2, 17)
    assert model.training  # sample restores the mode


def test_maskgit_is_bidirectional_and_its_loss_scores_masked_tokens_only():
    torch.manual_seed(0)
    model = vq.MaskedTokenModel(6, grid=2, n_layer=1, n_head=2, n_embd=16, dropout=0.0).eval()
    tokens = torch.randint(0, 6, (3, 4))
    changed = tokens.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 6
    assert (model(changed)[:, 0] - model(tokens)[:, 0]).abs().max() > 1e-6  # the first token sees the last
    k = tokens.view(3, 2, 2)
    mask = torch.tensor([[True, False, False, True]] * 3)
    logits = model(tokens.masked_fill(mask, 6))
    by_hand = -torch.distributions.Categorical(logits=logits[mask]).log_prob(tokens[mask]).mean()
    torch.testing.assert_close(model.loss(k, mask), by_hand)
    m = model.random_mask(1000, torch.Generator().manual_seed(0))
    assert m.any(1).all()  # at least one masked token per row
    # E[ceil(4 cos(pi r / 2))] / 4 for r ~ U(0, 1): the shares 1, 3/4, 1/2, 1/4 on intervals set by arccos
    edges = [2 / math.pi * math.acos(c / 4) for c in (3, 2, 1)]
    expected = (edges[0] * 4 + (edges[1] - edges[0]) * 3 + (edges[2] - edges[1]) * 2 + (1 - edges[2])) / 4
    assert m.double().mean().item() == pytest.approx(expected, abs=0.03)


def test_train_token_priors_run_and_reject_bad_input():
    k = torch.randint(0, 8, (64, 2, 2), generator=torch.Generator().manual_seed(0))
    for kind in vq.PRIOR_KINDS:
        model, history = vq.train_token_prior(kind, k, k[:16], num_codes=8, epochs=2, n_layer=1, n_embd=16,
                                              verbose=False)
        assert len(history.val_loss) == 2 and history.best_epoch in (1, 2)
        assert model.sample(3).shape == (3, 2, 2)
    with pytest.raises(ValueError, match="kind"):
        vq.train_token_prior("pixelcnn", k, num_codes=8)
    with pytest.raises(ValueError, match="0..3"):
        vq.train_token_prior("ar", k, num_codes=4)


# --- the digits recipe: one model, a likelihood bound through a stochastic head ---------------

def test_discretized_gaussian_matches_normal_cdf_and_sums_to_one():
    from scipy.stats import norm

    g = torch.Generator().manual_seed(0)
    mean, scale = torch.rand(4, 1, 8, 8, generator=g), 0.2
    x = torch.randint(0, 17, (4, 1, 8, 8), generator=g) / 16
    normal = torch.distributions.Normal(mean.double(), scale)
    lo, hi = normal.cdf(x.double() - 1 / 32), normal.cdf(x.double() + 1 / 32)
    p = torch.where(x == 0, hi, torch.where(x == 1, 1 - lo, hi - lo))
    torch.testing.assert_close(vq.discretized_gaussian_nll(x, mean, scale).double(), -p.log().flatten(1).sum(1),
                               rtol=1e-5, atol=1e-4)
    pixels = mean.reshape(-1, 1, 1, 1).double()
    total = sum(torch.exp(-vq.discretized_gaussian_nll(torch.full_like(pixels, k / 16), pixels, 0.07)) for k in range(17))
    torch.testing.assert_close(total, torch.ones_like(total))
    # a far tail stays finite and exact: a white pixel where the decoder says black
    far = vq.discretized_gaussian_nll(torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), 0.05)
    assert far.item() == pytest.approx(-norm.logsf(15.5 / 16 / 0.05), rel=1e-5)


def test_token_image_model_bound_is_above_the_exact_nll_by_enumeration():
    torch.manual_seed(0)
    model = vq.TokenImageModel(3, grid=2, code_dim=4, hidden=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0).eval()
    model.head_scale.fill_(0.15)
    x = torch.randint(0, 17, (5, 1, 8, 8), generator=torch.Generator().manual_seed(1)) / 16
    grids = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 2)  # all 81 token grids
    with torch.no_grad():
        log_prior = -model.prior.nll(grids)
        torch.testing.assert_close(log_prior.exp().sum(), torch.tensor(1.0))
        means = model.vqvae.decode(grids)
        log_joint = torch.stack([log_prior - vq.discretized_gaussian_nll(xi.expand_as(means), means, 0.15) for xi in x])
    exact = -torch.logsumexp(log_joint.double(), 1)  # -log sum_k p(k) p(x | k)
    bound = model.nll(x)
    torch.testing.assert_close(bound, model.token_nll(x) + model.decoder_nll(x))
    assert (bound.double() >= exact - 1e-3).all()
    # the bound is the joint's term of the encoder's tokens
    k = model.vqvae.encode(x).view(5, -1)
    index = (k * torch.tensor([27, 9, 3, 1])).sum(1)
    torch.testing.assert_close(bound.double(), -log_joint.double()[torch.arange(5), index], rtol=1e-5, atol=1e-3)


def test_fit_head_finds_the_best_scale():
    torch.manual_seed(0)
    model = vq.TokenImageModel(8, grid=4, code_dim=4, hidden=8, n_layer=1, n_head=2, n_embd=16).eval()
    from gencourse.data import load

    x = load("digits", "train").images[:100]
    scale = model.fit_head(x)
    assert 1e-3 < scale < 1 and model.head_scale.item() == pytest.approx(scale)
    best = model.decoder_nll(x).mean()
    for factor in (0.9, 1.1):
        model.head_scale.fill_(scale * factor)
        assert model.decoder_nll(x).mean() > best
    with pytest.raises(ValueError, match="scale"):
        vq.discretized_gaussian_nll(x, x, 0.0)


def test_train_digits_quick_gives_a_token_image_model():
    model, history = vq.train_digits(quick=True, verbose=False)
    assert isinstance(model, vq.TokenImageModel) and not model.training
    assert set(history) == {"vqvae", "prior"}
    x = model.sample(4)
    assert x.shape == (4, 1, 8, 8) and 0 <= x.min() and x.max() <= 1


# --- 28x28 images: the same VQ-VAE with two stride-2 convolutions, 49 tokens, and its token GPT ------------

@pytest.mark.parametrize("grid, downs", [(7, 2), (14, 1)])
def test_vqvae_28x28_shapes(grid, downs):
    torch.manual_seed(0)
    model = vq.VQVAE(16, grid=grid, code_dim=4, hidden=8, image_size=28).eval()
    x = torch.rand(3, 1, 28, 28)
    k = model.encode(x)
    assert k.shape == (3, grid, grid) and k.dtype == torch.long and model.num_tokens == grid * grid
    assert model.decode(k).shape == (3, 1, 28, 28)
    recon, idx, loss = model(x)
    assert recon.shape == x.shape and torch.equal(idx, k) and loss.dim() == 0
    strided = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == downs
    assert vq.VQVAE(8, image_size=28).grid == 7 and vq.VQVAE(8).grid == 4  # the defaults per size


def test_vqvae_28x28_encodes_in_chunks_like_one_pass(monkeypatch):
    torch.manual_seed(0)
    model = vq.VQVAE(16, code_dim=4, hidden=8, image_size=28).eval()
    x = torch.rand(10, 1, 28, 28)
    whole = model.encode(x)
    monkeypatch.setattr(vq, "CHUNK", 3)
    assert torch.equal(model.encode(x), whole)
    torch.testing.assert_close(model.decode(whole), torch.cat([model.decode(k[None]) for k in whole]))


def test_vqvae_8x8_keeps_its_parameters_and_messages():
    # the parameter counts of the 8x8 models before 28x28 was added (the stored recipes load into these)
    assert sum(p.numel() for p in vq.VQVAE().parameters()) == 57617
    assert sum(p.numel() for p in vq.VQVAE(grid=2).parameters()) == 90449
    with pytest.raises(ValueError, match=r"expected digits images \(B, 1, 8, 8\)"):
        vq.VQVAE().encode(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"tokens per side of an 8x8 digit"):
        vq.VQVAE(grid=7)


def test_28x28_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match=r"\(7, 14\)"):
        vq.VQVAE(8, grid=4, image_size=28)
    with pytest.raises(ValueError, match="image_size"):
        vq.VQVAE(8, image_size=16)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        vq.VQVAE(8, image_size=28).encode(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vq.VQVAE(8, image_size=28).encode(torch.full((2, 1, 28, 28), 2.0))
    with pytest.raises(ValueError, match=r"\(7, 14\)"):
        vq.train_vqvae(torch.rand(4, 1, 28, 28), grid=4, epochs=1, verbose=False, progress=False)
    with pytest.raises(ValueError, match="7x7"):
        vq.TokenSampler(vq.VQVAE(8, image_size=28), vq.TokenGPT(8, 4))
    with pytest.raises(ValueError, match="TokenGPT"):
        vq.TokenSampler(vq.VQVAE(8, image_size=28), vq.MaskedTokenModel(8, 7))
    with pytest.raises(ValueError, match="unknown dataset"):
        vq.image_model("cifar10")
    with pytest.raises(ValueError, match="unknown settings"):
        vq.image_model("mnist", codes=64)
    with pytest.raises(ValueError, match="unknown dataset"):
        vq.train_images("cifar10")
    with pytest.raises(ValueError, match="vq_epochs"):
        vq.train_images("mnist", vq_epochs=0)


def test_token_gpt_over_49_tokens_is_causal_and_samples_7x7_grids():
    torch.manual_seed(0)
    prior = vq.TokenGPT(16, 7, n_layer=1, n_head=2, n_embd=16, dropout=0.0).eval()
    k = torch.randint(0, 16, (2, 7, 7))
    changed = k.clone()
    changed[:, 2, 6] = (k[:, 2, 6] + 1) % 16  # token 20 (raster order) changes the predictions after it only
    a, b = prior.logits(k), prior.logits(changed)
    torch.testing.assert_close(a[:, :21], b[:, :21])
    assert not torch.allclose(a[:, 21], b[:, 21])
    assert prior.sample(3).shape == (3, 7, 7) and prior.nll(k).shape == (2,)


def test_train_images_quick_on_28x28(fake_mnist):
    model, history = vq.train_images("mnist", quick=True, verbose=False, num_codes=16, n_layer=1, n_embd=32)
    assert isinstance(model, vq.TokenSampler) and not model.training and set(history) == {"vqvae", "prior"}
    assert len(history["vqvae"]["train_loss"]) == 2 and model.nfe == 49
    x = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    from gencourse import data

    nll = model.token_nll(data.load("mnist", "val").images)
    assert nll.shape == (24,) and torch.isfinite(nll).all() and (nll > 0).all()


def test_reconstruction_terms_mse_on_8x8_and_bce_on_28x28():
    torch.manual_seed(0)
    small = vq.VQVAE(8, code_dim=4, hidden=8)
    x = torch.rand(4, 1, 8, 8)
    recon, _, vq_loss = small(x)
    assert small.recon == "mse"
    torch.testing.assert_close(small.loss(x), torch.nn.functional.mse_loss(recon, x) + vq_loss)  # as before
    big = vq.VQVAE(8, code_dim=4, hidden=8, image_size=28)
    x = torch.rand(4, 1, 28, 28)
    recon, _, vq_loss = big(x)
    assert big.recon == "bce"
    bce = -(x * recon.log() + (1 - x) * (1 - recon).log()).mean()  # on the sigmoid's output, directly
    torch.testing.assert_close(big.loss(x), bce + vq_loss, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="recon"):
        vq.VQVAE(8, recon="l1")

