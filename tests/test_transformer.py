"""gencourse.transformer: attention against a direct computation and torch's own kernel, causality by
perturbation and by autograd, the KV cache (same logits, same tokens), sampling filters, held-out bits, the
digits model's exact likelihood, and input checks."""
import math

import pytest
import torch
from torch.nn import functional as F

from gencourse import autoregressive as ar
from gencourse import transformer as tr


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"n_layer": 2, "n_head": 4, "n_embd": 32, **kw}
    return tr.GPT(kw.pop("vocab_size", 11), kw.pop("block_size", 12), **kw).eval()


def _perturb(model, seed=0, scale=0.3):
    """Random weights everywhere, so no dependency hides behind GPT-2's small init or zero biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model


# ----------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------

def test_attention_matches_a_loop_over_positions():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    out = tr.attention(q, k, v, tr.causal_mask(5))
    expected = torch.zeros_like(out)
    for t in range(5):  # position t: weights over s = 0..t, exp of scaled dots, normalized by their sum
        scores = torch.stack([(q[..., t, :] * k[..., s, :]).sum(-1) / 2.0 for s in range(t + 1)], -1)
        w = scores.exp() / scores.exp().sum(-1, keepdim=True)
        expected[..., t, :] = sum(w[..., s, None] * v[..., s, :] for s in range(t + 1))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_causal_mask_with_past_positions():
    mask = tr.causal_mask(2, 5)  # the last two of five positions
    assert mask.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    assert torch.equal(tr.causal_mask(4), torch.ones(4, 4).tril().bool())


def _torch_attention_like(layer):
    """torch's MultiheadAttention with ``layer``'s weights copied in."""
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(layer.qkv.weight)
        mha.in_proj_bias.copy_(layer.qkv.bias)
        mha.out_proj.weight.copy_(layer.proj.weight)
        mha.out_proj.bias.copy_(layer.proj.bias)
    return mha


def test_self_attention_layer_matches_torch_multihead_attention():
    torch.manual_seed(0)
    layer = tr.CausalSelfAttention(16, 4).eval()
    mha = _torch_attention_like(layer)
    h = torch.randn(3, 7, 16)
    blocked = ~tr.causal_mask(7)  # torch's bool mask marks what may NOT be attended
    expected, _ = mha(h, h, h, attn_mask=blocked, need_weights=False)
    torch.testing.assert_close(layer(h), expected, atol=1e-5, rtol=1e-5)


def test_bidirectional_layer_matches_torch_multihead_attention_without_a_mask():
    torch.manual_seed(1)
    layer = tr.CausalSelfAttention(16, 4, causal=False).eval()
    mha = _torch_attention_like(layer)
    h = torch.randn(3, 7, 16)
    expected, _ = mha(h, h, h, need_weights=False)
    torch.testing.assert_close(layer(h), expected, atol=1e-5, rtol=1e-5)
    block = tr.Block(16, 4, causal=False).eval()
    changed = h.clone()
    changed[:, -1] += torch.randn(16)  # the last position moves the first one's output only without the mask
    assert (block(changed)[:, 0] - block(h)[:, 0]).abs().amax() > 1e-4
    causal = tr.Block(16, 4).eval()
    causal.load_state_dict(block.state_dict())  # same weights; the mask is the only difference
    assert torch.equal(causal(changed)[:, 0], causal(h)[:, 0])


def test_fused_attention_is_the_same_equation_with_and_without_the_cache():
    slow = _perturb(_model(), scale=0.2)
    fast = _model(fused=True)
    fast.load_state_dict(slow.state_dict())
    assert fast.blocks[0].attn.fused and not slow.blocks[0].attn.fused
    idx = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(fast(idx), slow(idx), atol=1e-5, rtol=1e-5)
    for cuts in ((5, 6, 7, 8, 9, 10, 11), (3, 7)):  # with a cache the queries are the last positions: the explicit
        cache, edges = fast.new_cache(), (0, *cuts, 12)  # mask, for one new token at a time and for several
        parts = [fast(idx[:, a:b], cache) for a, b in zip(edges, edges[1:])]
        torch.testing.assert_close(torch.cat(parts, 1), slow(idx), atol=1e-5, rtol=1e-5)
    changed = idx.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 11  # later tokens leave earlier logits alone in the fused kernel too
    torch.testing.assert_close(fast(changed)[:, :8], fast(idx)[:, :8], atol=1e-6, rtol=0)
    bidirectional = tr.CausalSelfAttention(16, 4, causal=False, fused=True).eval()
    h = torch.randn(2, 6, 16)
    expected, _ = _torch_attention_like(bidirectional)(h, h, h, need_weights=False)
    torch.testing.assert_close(bidirectional(h), expected, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Causality
# ----------------------------------------------------------------------------------------------

def test_logits_do_not_depend_on_later_tokens():
    model = _perturb(_model())
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 11, (4, 12), generator=g)
    base = model(idx)
    for t in range(12):
        changed = idx.clone()
        changed[:, t:] = (changed[:, t:] + 1 + torch.randint(0, 10, changed[:, t:].shape, generator=g)) % 11
        out = model(changed)
        assert torch.equal(out[:, :t], base[:, :t]), f"logits before {t} changed with tokens >= {t}"
        assert (out[:, t:] - base[:, t:]).abs().amax() > 1e-4, f"logits at {t} ignore the token at {t}"


def test_causality_by_autograd():
    model = _perturb(_model())
    idx = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(2))
    store = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        store["embedded"] = output

    handle = model.token_embedding.register_forward_hook(keep)
    try:
        for t in (0, 5, 11):
            logits = model(idx)
            v = torch.randn(11, generator=torch.Generator().manual_seed(t))
            (logits[:, t] @ v).sum().backward()
            grad = store["embedded"].grad.abs().sum((0, 2))  # (T,): how much output t moves with each input
            assert torch.all(grad[t + 1:] == 0), f"output {t} has a gradient from later positions"
            assert torch.all(grad[:t + 1] > 0), f"output {t} ignores an earlier position"
            model.zero_grad()
    finally:
        handle.remove()


# ----------------------------------------------------------------------------------------------
# The KV cache
# ----------------------------------------------------------------------------------------------

def test_cached_forward_gives_the_full_pass_logits():
    model = _perturb(_model(), scale=0.2)
    idx = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(3))
    full = model(idx)
    cache = model.new_cache()
    parts = [model(idx[:, :4], cache)] + [model(idx[:, t:t + 1], cache) for t in range(4, 12)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    assert cache[0]["k"].shape == (3, 4, 12, 8)


@pytest.mark.parametrize("kw", [{}, {"temperature": 0.7, "top_k": 4}, {"top_p": 0.8}])
def test_generate_with_and_without_cache_gives_the_same_tokens(kw):
    model = _model(block_size=8)  # 3 + 20 tokens: the window slides past block_size
    prompt = torch.randint(0, 11, (5, 3), generator=torch.Generator().manual_seed(4))
    outs = [model.generate(prompt, 20, use_cache=c, generator=torch.Generator().manual_seed(9), **kw)
            for c in (True, False)]
    assert outs[0].shape == (5, 23)
    assert torch.equal(outs[0][:, :3], prompt)
    assert torch.equal(outs[0], outs[1])


def test_top_k_one_is_greedy_decoding():
    model = _perturb(_model(), scale=0.2)
    prompt = torch.randint(0, 11, (3, 2), generator=torch.Generator().manual_seed(5))
    out = model.generate(prompt, 6, top_k=1)
    for t in range(2, 8):
        assert torch.equal(out[:, t], model(out[:, :t])[:, -1].argmax(-1))


def test_samples_follow_the_model_conditional():
    model = _perturb(_model(vocab_size=5), scale=0.3)
    prompt = torch.tensor([[1, 3]]).repeat(20000, 1)
    out = model.generate(prompt, 1, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(out[:, -1], minlength=5).float() / 20000
    probs = F.softmax(model(prompt[:1])[0, -1], -1)
    assert (freq - probs).abs().max() < 0.015


# ----------------------------------------------------------------------------------------------
# Held-out bits and the likelihood
# ----------------------------------------------------------------------------------------------

def test_bits_per_token_scores_each_token_once_with_enough_context():
    model = _perturb(_model(), scale=0.2)
    ids = torch.randint(0, 11, (53,), generator=torch.Generator().manual_seed(6))
    bits = tr.bits_per_token(model, ids, context=4)
    assert bits.shape == (53 - 5,) and torch.isfinite(bits).all()
    for p in (5, 17, 30, 52):  # token p, scored from some window that holds >= 4 tokens before it
        windows = [s for s in range(0, p) if p - s <= 12 and p - s - 1 >= 4]
        direct = {round(-F.log_softmax(model(ids[None, s:p]).double()[0, -1], -1)[ids[p]].item() / math.log(2), 6)
                  for s in windows}
        assert round(bits[p - 5].item(), 6) in direct


def test_gpt_nll_is_the_sum_of_conditionals():
    model = _perturb(_model(), scale=0.2)
    idx = torch.randint(0, 11, (2, 9), generator=torch.Generator().manual_seed(7))
    expected = torch.zeros(2)
    for t in range(1, 9):
        expected -= torch.distributions.Categorical(logits=model(idx[:, :t])[:, -1]).log_prob(idx[:, t])
    torch.testing.assert_close(model.nll(idx), expected, atol=1e-4, rtol=1e-5)


def test_digits_gpt_is_autoregressive_and_exact():
    torch.manual_seed(0)
    model = _perturb(tr.DigitsGPT(n_layer=1, n_head=2, n_embd=16, dropout=0.0), scale=0.2).eval()
    g = torch.Generator().manual_seed(8)
    x = torch.randint(0, 17, (3, 64), generator=g).float() / 16
    logits = model(x)
    assert logits.shape == (3, 64, 17)
    for i in (0, 10, 63):
        changed = x.clone()
        changed[:, i:] = torch.randint(0, 17, changed[:, i:].shape, generator=g).float() / 16
        assert torch.equal(model(changed)[:, :i + 1], logits[:, :i + 1])  # pixel i sees pixels < i only
        torch.testing.assert_close(model.pixel_logits(x, i), logits[:, i], atol=1e-5, rtol=1e-5)
    k = torch.round(x * 16).long()
    expected = -torch.distributions.Categorical(logits=logits).log_prob(k).sum(1)
    torch.testing.assert_close(model.nll(x.view(3, 1, 8, 8)), expected, atol=1e-4, rtol=1e-5)
    images = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 8, 8)
    assert torch.equal(images * 16, torch.round(images * 16))


def test_digits_gpt_cached_sampling_matches_the_full_pass():
    """The KV cache in lesson 07's sampling loop changes the cost, never the result: the same logits as a full
    pass at every step, the same draws from the same generator, and completions keep the given pixels."""
    torch.manual_seed(0)
    model = _perturb(tr.DigitsGPT(n_layer=2, n_head=2, n_embd=16, dropout=0.0), scale=0.2).eval()
    k = torch.randint(0, 17, (5, 64), generator=torch.Generator().manual_seed(3))
    cached = model.sampling_logits()
    for i in range(7, 64):  # the first call feeds the start token and the given prefix k[:, :7]
        torch.testing.assert_close(cached(k, i), model.pixel_logits(k.float() / 16, i), atol=1e-5, rtol=1e-5)
    full = ar.AutoregressiveModel.sampling_logits(model)  # the base class's pass over the whole prefix
    draws_full = ar.sample_autoregressive(full, 6, 64, generator=torch.Generator().manual_seed(1))
    images = model.sample(6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.round(images.view(6, 64) * 16).long(), draws_full)
    x = k[:2].float().view(2, 1, 8, 8) / 16
    done = model.complete(x, 20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(done.view(2, 64)[:, :20], x.view(2, 64)[:, :20])
    with pytest.raises(RuntimeError, match="raster order"):
        out_of_order = model.sampling_logits()
        out_of_order(k, 3)
        out_of_order(k, 9)


def test_train_digits_quick_runs_and_learns():
    model, history = tr.train_digits(quick=True, verbose=False)
    assert history.epochs == 2 and history.val_loss[-1] < history.val_loss[0] + 1.0
    assert isinstance(model, tr.DigitsGPT) and not model.training


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

def test_bad_input_is_refused_with_a_clear_message():
    model = _model()
    with pytest.raises(ValueError, match="exceeds block_size"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        model(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="int64"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="multiple"):
        tr.GPT(5, 8, n_head=3, n_embd=32)
    with pytest.raises(ValueError, match="vocab_size"):
        tr.GPT(0, 8)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.zeros(1, 1, dtype=torch.long), 3, temperature=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(torch.zeros(1, 1, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="k must be"):
        model.generate(torch.zeros(1, 1, dtype=torch.long), 2, top_k=0)


# ----------------------------------------------------------------------------------------------
# The text recipe's checkpoints
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", tr.TEXT_SEEDS)
def test_text_recipe_checkpoint_is_current_and_its_figures_reproduce(seed):
    model, meta = tr.load_text_recipe(seed, with_meta=True)
    assert meta["fingerprint"] == tr.text_fingerprint(), (
        "the text recipe changed since its checkpoint was trained: run `make recipes RECIPES=gpt_text`")
    _, ids = tr.text_data()
    bits = tr.bits_per_token(model, ids["val"]).mean().item()
    assert abs(bits - meta["val_bits"]) < 1e-3
    assert 1.0 < bits < 2.5, "the text recipe's validation bits per character are out of any sensible range"
    assert meta["seed"] == seed and meta["train_seconds"] > 0


def test_missing_text_checkpoint_says_how_to_train_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make recipes|gencourse.recipes gpt_text"):
        tr.load_text_recipe(0, directory=tmp_path)


def test_image_gpt_likelihood_is_the_sum_of_its_conditionals_and_samples_lie_on_the_grid():
    torch.manual_seed(0)
    model = _perturb(tr.ImageGPT(4, 5, n_layer=1, n_head=2, n_embd=16), scale=0.2).eval()
    x = torch.randint(0, 5, (3, 1, 4, 4), generator=torch.Generator().manual_seed(1)).float() / 4
    k = torch.round(x.view(3, 16) * 4).long()
    expected = torch.zeros(3)
    for i in range(16):  # the conditional of pixel i from the prefix alone (start token, then pixels < i)
        prefix = torch.cat([torch.full((3, 1), 5), k[:, :i]], 1)
        expected -= torch.distributions.Categorical(logits=model.gpt(prefix)[:, -1]).log_prob(k[:, i])
    torch.testing.assert_close(model.nll(x), expected, atol=1e-4, rtol=1e-5)
    samples = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (6, 1, 4, 4) and torch.equal(samples * 4, torch.round(samples * 4))
    assert model.gpt.head.out_features == 5  # the start token is read, never written
    with pytest.raises(ValueError, match="grid"):
        model.nll(torch.full((1, 1, 4, 4), 0.1))
    with pytest.raises(ValueError, match=r"\(B, 1, 4, 4\)"):
        model.nll(torch.zeros(1, 16))


def test_patch_image_gpt_likelihood_normalizes_and_matches_its_conditionals():
    """patch=2: each 2x2 patch's pixels are independent categoricals given the earlier patches, so the model's
    probabilities over all images sum to 1 (checked by enumeration of the 4x4 images of 2 levels: 4 patches, a chain
    rule over them), and the one-pass NLL equals the conditionals computed from each prefix alone, and the KV-cache
    loop the sampler runs gives them too."""
    torch.manual_seed(0)
    tiny = _perturb(tr.ImageGPT(4, 2, patch=2, n_layer=2, n_head=2, n_embd=8), scale=0.3).eval()
    grid = torch.cartesian_prod(*[torch.arange(2)] * 16).float().view(-1, 1, 4, 4)  # all 65,536 4x4 images
    with torch.no_grad():
        total = torch.cat([torch.exp(-tiny.nll(x).double()) for x in grid.split(8192)]).sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), atol=1e-5, rtol=0)

    model = _perturb(tr.ImageGPT(4, 5, patch=2, n_layer=2, n_head=2, n_embd=16), scale=0.2).eval()
    x = torch.randint(0, 5, (3, 1, 4, 4), generator=torch.Generator().manual_seed(1)).float() / 4
    k = model.tokens(x)  # (3, 4 patches, 4 pixels)
    assert k.shape == (3, 4, 4) and torch.equal(model.image(k), x)
    assert torch.equal(k[:, 1], torch.round(x[:, 0, :2, 2:].reshape(3, 4) * 4).long())  # patch 1: top right
    expected = torch.zeros(3)
    for t in range(4):
        inputs = torch.cat([model._start(3, "cpu"), model._embed_patches(k[:, :t])], 1)
        logits = model.gpt(None, embeddings=inputs)[:, -1].view(3, 4, 5)
        expected -= torch.distributions.Categorical(logits=logits).log_prob(k[:, t]).sum(1)
    torch.testing.assert_close(model.nll(x), expected, atol=1e-4, rtol=1e-5)
    cache, h, cached = model.gpt.new_cache(), model._start(3, "cpu"), torch.zeros(3)
    for t in range(4):  # the sampler's loop, fed the true patches
        logits = model.gpt(None, cache, embeddings=h)[:, -1].view(3, 4, 5)
        cached -= torch.distributions.Categorical(logits=logits).log_prob(k[:, t]).sum(1)
        h = model._embed_patches(k[:, t])[:, None]
    torch.testing.assert_close(cached, expected, atol=1e-4, rtol=1e-5)
    samples = model.sample(500, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (500, 1, 4, 4) and torch.equal(samples * 4, torch.round(samples * 4))
    first = torch.softmax(model.gpt(None, embeddings=model._start(1, "cpu"))[0, -1].view(4, 5), -1)
    counts = torch.stack([torch.bincount(p, minlength=5) for p in model.tokens(samples)[:, 0].T]) / 500
    assert (counts - first).abs().max() < 0.08  # the first patch's pixels follow the model's conditionals
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=0.0)
    with pytest.raises(ValueError, match="divide"):
        tr.ImageGPT(5, 3, patch=2)
    with pytest.raises(ValueError, match="not both"):
        model.gpt(torch.zeros(1, 2, dtype=torch.long), embeddings=torch.zeros(1, 2, 16))
    with pytest.raises(ValueError, match=r"T <= block_size"):
        model.gpt(None, embeddings=torch.zeros(1, 5, 16))


@pytest.mark.parametrize("patch", [1, 2])
def test_train_images_quick_on_28x28_pixels_and_patches(fake_mnist, patch):
    from gencourse import data

    model, history = tr.train_images("mnist", quick=True, patch=patch, batch_size=16, verbose=False, n_layer=1,
                                     n_embd=16)
    assert model.gpt.block_size == 784 // patch ** 2 and len(history.train_loss) == 1
    x = data.load("mnist", "val").images[:4]
    nll = model.nll(x)
    assert nll.shape == (4,) and torch.isfinite(nll).all() and (nll > 0).all()
    samples = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 28, 28) and torch.equal(samples * 255, torch.round(samples * 255))
