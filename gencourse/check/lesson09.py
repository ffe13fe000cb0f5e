"""Checks for lesson 09 (transformers)."""
import math

import torch
from torch.nn import functional as F

from gencourse.exercises import Case, Mistake, run_check, under_seed

__all__ = ["scaled_dot_product_attention", "causal_mask", "next_token_probs", "kv_cache_step", "train_tiny_gpt"]


# ----------------------------------------------------------------------------------------------
# Scaled dot-product attention
# ----------------------------------------------------------------------------------------------

def _tril(tq, tk):
    return torch.ones(tq, tk).tril(tk - tq).bool()


def _attention_cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    for shape_q, shape_k, dv, mask, label in (
            ((5, 4), (5, 4), 4, None, "one sequence of 5, d = 4, no mask"),
            ((2, 3, 6, 8), (2, 3, 6, 8), 8, _tril(6, 6), "batch 2, 3 heads, 6 positions, d = 8, causal mask"),
            ((1, 2, 3, 16), (1, 2, 7, 16), 5, _tril(3, 7), "3 new queries over 7 keys (a cache), d = 16, dv = 5")):
        q, k = 1.5 * torch.randn(shape_q, generator=g), 1.5 * torch.randn(shape_k, generator=g)
        v = torch.randn(*shape_k[:-1], dv, generator=g)
        cases.append(Case(q, k, v, mask, label=label))
    return cases


def _reference_attention(q, k, v, mask):
    # torch's own kernel, independent of the course's code; its bool mask marks what may be attended
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _attention(q, k, v, mask, *, scale=None, axis=-1, mask_after=False):
    scale = math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) / scale
    if mask is not None and not mask_after:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = F.softmax(scores, dim=axis)
    if mask is not None and mask_after:
        weights = weights * mask
    return weights @ v


def scaled_dot_product_attention(fn):
    """``fn(q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv), mask (Tq, Tk) bool or None) -> (..., Tq, dv)``."""
    return run_check(
        "scaled_dot_product_attention", fn, _attention_cases(), reference=_reference_attention, rtol=1e-4, atol=1e-5,
        hint="scores: every query against every key, q k^T, divided by sqrt(d); where the mask is False the score "
             "becomes -inf; a softmax over the keys turns each query's row into weights that sum to 1; the output "
             "is those weights times v.",
        mistakes=[
            Mistake("the scores are not scaled: divide q k^T by sqrt(d), the head dimension, so that their spread "
                    "does not grow with d and saturate the softmax.", fn=lambda q, k, v, m: _attention(q, k, v, m, scale=1.0)),
            Mistake("the scores are divided by d: the scale is sqrt(d) (a dot product of d unit-variance terms has "
                    "variance d).", fn=lambda q, k, v, m: _attention(q, k, v, m, scale=q.shape[-1])),
            Mistake("the softmax runs over the queries: each query's weights over the KEYS must sum to one (the last "
                    "axis of the scores).", fn=lambda q, k, v, m: _attention(q, k, v, m, axis=-2)),
            Mistake("the mask is applied after the softmax: zeroing weights afterwards leaves rows that no longer sum "
                    "to one. Set masked scores to -inf before the softmax.",
                    fn=lambda q, k, v, m: _attention(q, k, v, m, mask_after=True)),
        ])


# ----------------------------------------------------------------------------------------------
# The causal mask
# ----------------------------------------------------------------------------------------------

def _reference_mask(t_query, t_key):
    # query i is position t_key - t_query + i; it may see every key j at or before that position
    return torch.tensor([[j <= t_key - t_query + i for j in range(t_key)] for i in range(t_query)])


def _compare_mask(got, want, case):
    if not isinstance(got, torch.Tensor):
        return False, f"expected a tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(want.shape):
        return False, f"expected shape {tuple(want.shape)} (queries, keys), got {tuple(got.shape)}"
    if got.dtype != torch.bool:
        return False, f"expected a bool tensor (True = may attend), got {got.dtype}"
    if not torch.equal(got, want):
        wrong = (got != want).nonzero()[0].tolist()
        return False, f"entry [{wrong[0]}, {wrong[1]}] is {bool(got[tuple(wrong)])}, expected {bool(want[tuple(wrong)])}"
    return True, ""


def causal_mask(fn):
    """``fn(t_query, t_key) -> (t_query, t_key) bool``: queries are the last ``t_query`` of ``t_key`` positions."""
    cases = [Case(4, 4, label="4 queries, 4 keys"), Case(1, 6, label="1 new query over 6 keys (a KV cache)"),
             Case(3, 7, label="3 new queries over 7 keys")]
    return run_check(
        "causal_mask", fn, cases, reference=_reference_mask, compare=_compare_mask,
        hint="number the keys 0..t_key-1 by position; the queries are the LAST t_query positions, so query i sits at "
             "position t_key - t_query + i. It may attend to every key at or before its own position.",
        mistakes=[
            Mistake("the diagonal is masked: a position may attend to itself (its own token is known; it predicts "
                    "the NEXT token). The strict triangle is MADE's mask before the shift by one.",
                    fn=lambda tq, tk: torch.ones(tq, tk).tril(tk - tq - 1).bool()),
            Mistake("the mask is transposed: query i may see keys j <= its position, the lower triangle, not the "
                    "upper one.", fn=lambda tq, tk: torch.ones(tq, tk).triu(tk - tq).bool()),
            Mistake("the queries are placed at positions 0..t_query-1: with a cache they are the last t_query "
                    "positions, so each sees every cached key.", fn=lambda tq, tk: torch.ones(tq, tk).tril().bool()),
        ])


# ----------------------------------------------------------------------------------------------
# Temperature, top-k and nucleus
# ----------------------------------------------------------------------------------------------

def _reference_probs(logits, temperature=1.0, top_k=None, top_p=None):
    # sort-based, written out in float64; order: temperature, then top-k, then top-p
    z = logits.double() / temperature
    p = torch.softmax(z, -1)
    out = torch.zeros_like(p)
    for row in range(len(p)):
        order = sorted(range(p.shape[1]), key=lambda j: (-p[row, j].item(), j))
        keep = order[:top_k] if top_k is not None else order
        if top_k is not None:  # ties at the k-th value are kept
            kth = p[row, order[top_k - 1]].item()
            keep = [j for j in order if p[row, j].item() >= kth]
        if top_p is not None:
            q = p[row, keep] / p[row, keep].sum()
            kept, mass = [], 0.0
            for j, qj in zip(keep, q.tolist()):
                if mass < top_p:
                    kept.append(j)
                mass += qj
            keep = kept
        out[row, keep] = p[row, keep] / p[row, keep].sum()
    return out.float()


def _probs_cases():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(4, 12, generator=g) * 2
    return [Case(base, label="temperature 1, no truncation"),
            Case(base, 0.5, label="temperature 0.5"),
            Case(base, 1.0, 3, label="top-k = 3"),
            Case(base, 0.8, None, 0.6, label="temperature 0.8, then nucleus p = 0.6"),
            Case(base, 1.5, 5, 0.7, label="temperature 1.5, top-k = 5, then nucleus p = 0.7")]


def next_token_probs(fn):
    """``fn(logits (B, V), temperature=1.0, top_k=None, top_p=None) -> (B, V)``: the distribution a sampler draws
    from: logits / temperature, softmax, keep the top-k, then the nucleus (of the renormalized top-k), renormalize."""
    def _temperature_times(logits, temperature=1.0, top_k=None, top_p=None):
        return _reference_probs(logits * temperature, 1.0, top_k, top_p)

    def _temperature_last(logits, temperature=1.0, top_k=None, top_p=None):  # filter first, then temper
        p = _reference_probs(logits, 1.0, top_k, top_p)
        z = torch.where(p > 0, logits / temperature, torch.tensor(float("-inf")))
        return torch.softmax(z, -1)

    def _not_renormalized(logits, temperature=1.0, top_k=None, top_p=None):
        p = torch.softmax(logits.double() / temperature, -1)
        return (p * (_reference_probs(logits, temperature, top_k, top_p) > 0)).float()

    def _nucleus_drops_crossing(logits, temperature=1.0, top_k=None, top_p=None):
        p = _reference_probs(logits, temperature, top_k, None).double()
        if top_p is None:
            return p.float()
        sp, order = p.sort(-1, descending=True)
        keep_sorted = sp.cumsum(-1) <= top_p
        keep_sorted[:, 0] = True
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        q = p * keep
        return (q / q.sum(-1, keepdim=True)).float()

    return run_check(
        "next_token_probs", fn, _probs_cases(), reference=_reference_probs, rtol=1e-4, atol=1e-6,
        hint="divide the logits by the temperature and take the softmax; keep the k most likely tokens (zero the "
             "rest); of what is left, renormalized, keep the smallest set of most likely tokens whose mass reaches "
             "p (the token that crosses p is kept); renormalize once more.",
        mistakes=[
            Mistake("the temperature multiplies the logits: it divides them (T < 1 sharpens, T > 1 flattens).",
                    fn=_temperature_times),
            Mistake("the kept probabilities are not renormalized: after zeroing the truncated tokens, divide by the "
                    "mass that is left, so that each row sums to one.", fn=_not_renormalized),
            Mistake("the nucleus drops the token that crosses p: keep every token whose mass BEFORE it is below p, "
                    "so the nucleus reaches p.", fn=_nucleus_drops_crossing),
            Mistake("the temperature is applied after the truncation: it changes which tokens form the nucleus, so "
                    "it comes first.", fn=_temperature_last),
        ])


# ----------------------------------------------------------------------------------------------
# One step with a KV cache
# ----------------------------------------------------------------------------------------------

def _reference_kv(q_new, k_new, v_new, k_cache, v_cache):
    # the full causal attention over the whole sequence, of which we keep the last row: independent of caching
    k_all, v_all = torch.cat([k_cache, k_new], -2), torch.cat([v_cache, v_new], -2)
    t = k_all.shape[-2]
    q_all = torch.cat([torch.zeros_like(k_cache), q_new], -2)  # earlier queries do not matter for the last row
    out = F.scaled_dot_product_attention(q_all, k_all, v_all, is_causal=True)[..., -1:, :]
    return out, k_all, v_all


def _compare_kv(got, want, case):
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return False, "expected three tensors back: (output (B, H, 1, d), the new key cache, the new value cache)"
    for name, g, w in zip(("output", "key cache", "value cache"), got, want):
        if not isinstance(g, torch.Tensor) or tuple(g.shape) != tuple(w.shape):
            return False, f"the {name} must have shape {tuple(w.shape)}, got {getattr(g, 'shape', type(g).__name__)}"
        if not torch.allclose(g, w, rtol=1e-4, atol=1e-5):
            return False, f"the {name} differs from the full attention's (largest gap {(g - w).abs().max():.3g})"
    return True, ""


def _kv_cases():
    g = torch.Generator().manual_seed(5)
    cases = []
    for b, h, past, d, label in ((1, 1, 3, 4, "1 head, 3 cached positions"), (2, 4, 9, 8, "batch 2, 4 heads, 9 cached"),
                                 (3, 2, 0, 6, "an empty cache: the first token")):
        k_cache, v_cache = torch.randn(b, h, past, d, generator=g), torch.randn(b, h, past, d, generator=g)
        q, k, v = (torch.randn(b, h, 1, d, generator=g) for _ in range(3))
        cases.append(Case(q, k, v, k_cache, v_cache, label=label))
    return cases


def kv_cache_step(fn):
    """``fn(q_new, k_new, v_new (B, H, 1, d), k_cache, v_cache (B, H, T, d)) -> (out (B, H, 1, d), k_cache',
    v_cache')``: one new token's attention with a KV cache."""
    def _forgets_itself(q, k, v, kc, vc):
        if kc.shape[-2] == 0:
            return _reference_kv(q, k, v, kc, vc)
        out = F.softmax(q @ kc.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1) @ vc
        return out, torch.cat([kc, k], -2), torch.cat([vc, v], -2)

    def _not_stored(q, k, v, kc, vc):
        return _reference_kv(q, k, v, kc, vc)[0], kc, vc

    def _only_itself(q, k, v, kc, vc):
        return v, torch.cat([kc, k], -2), torch.cat([vc, v], -2)

    return run_check(
        "kv_cache_step", fn, _kv_cases(), expected=[_reference_kv(*c.args) for c in _kv_cases()], compare=_compare_kv,
        hint="append the new key and value to the caches along the positions axis (-2); the new token is the last "
             "position, so it may attend to every key, its own included: no mask is needed. Attend with its query "
             "over the extended caches and return the output and both caches.",
        mistakes=[
            Mistake("the new token attends only to the cached positions: append its own key and value first, a "
                    "token sees itself.", fn=_forgets_itself),
            Mistake("the output is right, but the caches come back as they were: return them with the new key and "
                    "value appended, or the next token will not see this one.", fn=_not_stored),
            Mistake("the output is the new token's own value: it must attend over every position, weighted by "
                    "softmax(q k^T / sqrt(d)).", fn=_only_itself),
        ])


# ----------------------------------------------------------------------------------------------
# A tiny GPT trained end to end
# ----------------------------------------------------------------------------------------------

TINY_GOAL_BITS = 3.3  # held-out bits per character; counts of pairs (a 2-gram) score 3.70 on validation


def _tiny_text(split):
    from gencourse import text

    train, val, _ = text.splits(text.corpus())
    tok = text.CharTokenizer(text.corpus())
    return tok.encode(train if split == "train" else val[:6000]), tok.vocab_size


def _tiny_trainer(*, shift=True, step=True):
    from gencourse.transformer import GPT, random_windows

    def train_tiny_gpt(train_ids, vocab_size, steps=500, block_size=32, batch_size=32, lr=3e-3):
        model = GPT(vocab_size, block_size, n_layer=2, n_head=4, n_embd=64)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        for _ in range(steps):
            w = random_windows(train_ids, batch_size, block_size + 1)
            inputs, targets = (w[:, :-1], w[:, 1:]) if shift else (w[:, :-1], w[:, :-1])
            logits = model(inputs)
            loss = F.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            if step:
                optimizer.step()
        return model.eval()
    return train_tiny_gpt


_NOT_SHIFTED = ("the model predicts the token it is given: the targets must be the inputs shifted by one "
                "position (logits at t predict token t + 1), or the model learns to copy and knows nothing of the "
                "next character.")
_NOT_LEARNED = "the model has not learned: its held-out bits are those of a uniform guess. Does every step update the weights?"


@torch.no_grad()
def _compare_tiny(got, want, case):
    from gencourse.transformer import GPT, bits_per_token

    if not isinstance(got, GPT):
        return False, f"expected the trained GPT (gencourse.transformer.GPT), got {type(got).__name__}"
    got.eval()
    val_ids, vocab = _tiny_text("val")
    bits = bits_per_token(got, val_ids[:4000]).mean().item()
    if bits > math.log2(vocab) - 0.3:
        copy = got(val_ids[None, :got.block_size])[0].argmax(-1).eq(val_ids[:got.block_size]).float().mean()
        return False, (_NOT_SHIFTED if copy > 0.5 else _NOT_LEARNED) + f" (held-out {bits:.2f} bits/char)"
    if bits > TINY_GOAL_BITS:
        return False, (f"held-out {bits:.2f} bits/char, goal <= {TINY_GOAL_BITS}: it learns, but not enough. Train "
                       "longer or with a larger learning rate.")
    return True, ""


def train_tiny_gpt(fn):
    """``fn(train_ids (N,), vocab_size) -> GPT``: judged by held-out bits per character (goal <= TINY_GOAL_BITS)."""
    fn = under_seed(fn)
    train_ids, vocab = _tiny_text("train")
    return run_check(
        "train_tiny_gpt", fn, [Case(train_ids, vocab, label=f"the lesson's corpus, judged on 4000 held-out "
                                                            f"characters (goal <= {TINY_GOAL_BITS} bits/char)")],
        expected=[None], compare=_compare_tiny,
        hint="a GPT(vocab_size, block_size); each step draws random windows of block_size + 1 characters "
             "(transformer.random_windows), feeds the first block_size and scores the logits against the window "
             "shifted by one with cross-entropy; AdamW, a few hundred steps.",
        mistakes=[Mistake(_NOT_SHIFTED, example=_tiny_trainer(shift=False)),
                  Mistake(_NOT_LEARNED, example=_tiny_trainer(step=False))])
