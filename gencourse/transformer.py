"""A small GPT, written out: causal self-attention, blocks, sampling and a KV cache (lesson 09).

A sequence of tokens ``x_0 .. x_{T-1}`` from a vocabulary of ``V`` symbols has, by the chain rule, exactly

    p(x) = prod_t p(x_t | x_{<t}),        -log p(x) = sum_t -log softmax(f_t(x_{<t}))_{x_t}

like lesson 07's pixels. A transformer computes every ``f_t`` in one pass. Each position ``t`` holds a vector
``h_t`` (its token's embedding plus its position's embedding); a block lets every position gather information
from the positions *before* it by **attention**, then transforms each position on its own with an MLP:

    q_t = W_q h_t,  k_s = W_k h_s,  v_s = W_v h_s
    a_{ts} = softmax_s( q_t . k_s / sqrt(d) + m_{ts} ),   m_{ts} = 0 if s <= t else -inf     (the causal mask)
    y_t = sum_s a_{ts} v_s

Several heads run this in parallel on slices of ``h`` (:class:`CausalSelfAttention`); residual connections and
layer norms wrap both parts (:class:`Block`, "pre-LN" as in GPT-2). Output ``t`` predicts token ``t + 1``, so
the logits at ``t`` depend on ``x_{<=t}`` only: MADE's mask (lesson 07) after a shift by one position.

**Sampling** draws one token at a time (:meth:`GPT.generate`): a temperature, top-k and nucleus truncation of
each conditional are lesson 07's :func:`gencourse.autoregressive.filtered_logits`. A new token attends to the
keys and values of every earlier position, which do not change once computed: the **KV cache** keeps them, so
each step costs one position's work instead of the whole prefix's. It changes the cost, never the result.

    model = GPT(vocab_size=65, block_size=128)
    logits = model(idx)                                   # (B, T, V), causal
    out = model.generate(idx[:, :1], 200, temperature=0.8, top_k=10)

:class:`DigitsGPT` is the same network on 8x8 digits read as 64 tokens of 17 levels (Chen et al. 2020's
image GPT, in miniature), with lesson 07's exact likelihood and sampler; :func:`train_digits` is its recipe.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gencourse import autoregressive as ar


# ----------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------

def causal_mask(t_query: int, t_key: int | None = None, *, device=None) -> torch.Tensor:
    """``(t_query, t_key)`` bool mask, True where query ``i`` may attend to key ``j``.

    Queries are the *last* ``t_query`` of ``t_key`` positions (with a KV cache the keys include earlier
    positions), so query ``i`` sits at position ``t_key - t_query + i`` and may see keys ``j <= `` that position.
    """
    t_key = t_query if t_key is None else t_key
    offset = t_key - t_query
    rows = torch.arange(t_query, device=device)[:, None] + offset
    return torch.arange(t_key, device=device)[None, :] <= rows


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention (Vaswani et al. 2017, eq. 1): ``softmax(q k^T / sqrt(d) + m) v``.

    ``q: (..., Tq, d)``, ``k: (..., Tk, d)``, ``v: (..., Tk, dv)``, ``mask: (Tq, Tk)`` bool (True = may attend)
    -> ``(..., Tq, dv)``. Masked scores become ``-inf`` before the softmax, so their weights are exactly 0.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return F.softmax(scores, dim=-1) @ v


class CausalSelfAttention(nn.Module):
    """``n_head`` heads of causal self-attention over ``(B, T, n_embd)`` -> ``(B, T, n_embd)``.

    ``causal=False`` drops the mask: every position attends to every other, as in a bidirectional (BERT-style)
    encoder, a masked-token model (MaskGIT) or a diffusion transformer (DiT); lesson 10 uses those.

    One linear map makes queries, keys and values for all heads; each head attends over its ``n_embd / n_head``
    slice; a last linear map mixes the heads. ``cache``: a dict that, when given, holds this layer's keys and
    values of the positions seen so far (``"k"``, ``"v"``: ``(B, n_head, T_past, head_dim)``); the new positions'
    keys and values are appended and the queries attend over all of them.

    ``fused=True`` computes the same equation with PyTorch's fused kernel (``F.scaled_dot_product_attention``,
    equal to :func:`attention` up to float rounding): it never stores the ``T x T`` weights, several times faster
    for the 784 positions of a 28x28 image (per layer, forward and backward, 16 images, one core: about 0.15 s
    against 1.3 s with 4 heads of 16 dimensions, 0.4 s against 1.6-2.4 s with 4 heads of 32).
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, *, causal: bool = True, fused: bool = False):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.n_head, self.causal, self.fused = n_head, causal, fused
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        B, T, C = h.shape
        q, k, v = (part.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)   # (B, heads, T, head_dim)
                   for part in self.qkv(h).split(C, dim=2))
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        mask = causal_mask(T, k.shape[2], device=h.device) if self.causal else None
        if self.fused:  # without a cache the mask is the plain lower triangle, which the kernel builds itself
            y = (F.scaled_dot_product_attention(q, k, v, is_causal=True) if self.causal and T == k.shape[2]
                 else F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        else:
            y = attention(q, k, v, mask)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        return self.dropout(self.proj(y))


class Block(nn.Module):
    """A transformer block, pre-LN: ``h + attn(LN(h))``, then ``h + MLP(LN(h))`` (MLP: 4x wider, GELU).
    ``causal=False``: bidirectional attention; ``fused``: PyTorch's fused kernel (see :class:`CausalSelfAttention`)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, *, causal: bool = True, fused: bool = False):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, causal=causal, fused=fused)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd),
                                 nn.Dropout(dropout))

    def forward(self, h: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        h = h + self.attn(self.ln1(h), cache)
        return h + self.mlp(self.ln2(h))


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class GPT(nn.Module):
    """A decoder-only transformer over tokens ``0..vocab_size-1`` with contexts of at most ``block_size``.

    Token and learned position embeddings, ``n_layer`` :class:`Block` s, a final layer norm and a linear head.
    ``forward(idx: (B, T) int64, T <= block_size) -> logits (B, T, vocab_size)``; ``logits[:, t]`` is the
    model's ``f_t``, the prediction of token ``t + 1``, and depends on ``idx[:, :t+1]`` only. ``out_size``: predict
    only the first ``out_size`` tokens (an image GPT reads a start token it never writes); default ``vocab_size``.
    ``fused``: attention by PyTorch's fused kernel, for long sequences (see :class:`CausalSelfAttention`).
    """

    def __init__(self, vocab_size: int, block_size: int, *, n_layer: int = 2, n_head: int = 4, n_embd: int = 64,
                 dropout: float = 0.0, out_size: int | None = None, fused: bool = False):
        super().__init__()
        self.vocab_size = _positive_int("vocab_size", vocab_size)
        self.out_size = self.vocab_size if out_size is None else _positive_int("out_size", out_size)
        self.block_size = _positive_int("block_size", block_size)
        _positive_int("n_layer", n_layer), _positive_int("n_head", n_head), _positive_int("n_embd", n_embd)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.token_embedding = nn.Embedding(vocab_size, n_embd)
        self.position_embedding = nn.Embedding(block_size, n_embd)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, fused=fused) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, self.out_size)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):  # GPT-2's N(0, 0.02), zero biases
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def check_tokens(self, idx: torch.Tensor, *, past: int = 0) -> None:
        """``ValueError`` unless ``idx`` is an int64 ``(B, T)`` of tokens in range with ``past + T <= block_size``."""
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype != torch.long:
            raise ValueError(f"idx must be an int64 tensor (B, T) of token ids, got "
                             f"{tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__}"
                             f"{'' if not isinstance(idx, torch.Tensor) else ' ' + str(idx.dtype)}")
        if past + idx.shape[1] > self.block_size:
            raise ValueError(f"sequence length {past + idx.shape[1]} exceeds block_size {self.block_size}: "
                             f"crop the context to its last {self.block_size} tokens")
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got "
                             f"min {idx.min().item()}, max {idx.max().item()}")

    def forward(self, idx: torch.Tensor | None, cache: list | None = None, *,
                embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """``idx: (B, T)`` -> logits ``(B, T, vocab_size)``. With ``cache`` (a list of one dict per block, as
        :meth:`new_cache` makes) ``idx`` holds only the *new* tokens, placed after the cached ones.
        ``embeddings: (B, T, n_embd)`` instead of ``idx``: inputs embedded by the caller (an image GPT's patches)."""
        past = cache[0]["k"].shape[2] if cache and "k" in cache[0] else 0
        if embeddings is None:
            self.check_tokens(idx, past=past)
            embeddings = self.token_embedding(idx)
        elif idx is not None:
            raise ValueError("give idx or embeddings, not both")
        elif embeddings.dim() != 3 or past + embeddings.shape[1] > self.block_size:
            raise ValueError(f"embeddings must be (B, T, n_embd) with T <= block_size - cached positions = "
                             f"{self.block_size - past}; got {tuple(embeddings.shape)}")
        positions = torch.arange(past, past + embeddings.shape[1], device=embeddings.device)
        h = self.dropout(embeddings + self.position_embedding(positions))
        for i, block in enumerate(self.blocks):
            h = block(h, None if cache is None else cache[i])
        return self.head(self.ln_f(h))

    def new_cache(self) -> list:
        """An empty KV cache: one dict per block, filled by :meth:`forward`."""
        return [{} for _ in self.blocks]

    def nll(self, idx: torch.Tensor) -> torch.Tensor:
        """Teacher-forced NLL in nats of tokens ``1..T-1`` given their prefixes: ``idx (B, T)`` -> ``(B,)``,
        ``-sum_{t>=1} log p(x_t | x_{<t})`` (the first token is the given context)."""
        logits = self(idx[:, :-1])
        return F.cross_entropy(logits.transpose(1, 2), idx[:, 1:], reduction="none").sum(1)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue every prompt of ``idx (B, T0)`` by ``max_new_tokens`` tokens -> ``(B, T0 + max_new_tokens)``.

        Each new token is drawn from ``softmax(filtered_logits(f_t / temperature))`` (top-k, then nucleus
        top-p truncation when given; lesson 07's :func:`~gencourse.autoregressive.filtered_logits`). A context
        longer than ``block_size`` is cropped to its last ``block_size`` tokens. ``use_cache``: keep the keys and
        values of earlier positions (the KV cache) so each step feeds only the newest token; once the context
        is full and the window slides, the positions shift and the cache is rebuilt from the cropped context,
        as the uncached sampler computes it. Either way the same tokens come out for the same random state.
        Runs in eval mode (no dropout) and restores the previous mode.
        """
        self.check_tokens(idx[:, -self.block_size:])
        max_new_tokens = _positive_int("max_new_tokens", max_new_tokens)
        ar.filtered_logits(torch.zeros(1, 2), temperature=temperature, top_k=top_k, top_p=top_p)  # validates them
        was_training = self.training
        self.eval()
        out, cache, fed = idx, None, 0  # fed: how many tokens of `out` the cache holds
        for _ in range(max_new_tokens):
            context = out[:, -self.block_size:]
            if not use_cache:
                logits = self(context)[:, -1]
            else:
                if cache is None or out.shape[1] > self.block_size:  # (re)build it from the whole context
                    cache, new = self.new_cache(), context
                else:
                    new = out[:, fed:]
                logits = self(new, cache)[:, -1]
                fed = out.shape[1]
            probs = F.softmax(ar.filtered_logits(logits.float(), temperature=temperature, top_k=top_k, top_p=top_p), -1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(out.device)
            out = torch.cat([out, nxt], 1)
        self.train(was_training)
        return out


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------
# Text: windows of characters, bits per character
# ----------------------------------------------------------------------------------------------

def random_windows(ids: torch.Tensor, batch_size: int, length: int, generator: torch.Generator | None = None):
    """``batch_size`` random windows of ``length`` consecutive tokens of ``ids (N,)`` -> ``(batch_size, length)``."""
    starts = torch.randint(0, len(ids) - length + 1, (batch_size,), generator=generator)
    return ids[starts[:, None] + torch.arange(length)]


@torch.no_grad()
def bits_per_token(model: GPT, ids: torch.Tensor, *, context: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """Held-out cost of every token of ``ids (N,)`` but the first ``context + 1``: ``(N - context - 1,)`` bits, each
    token conditioned on at least ``context`` and at most ``block_size`` tokens before it (element ``i`` is token
    ``i + context + 1``).

    Windows of ``block_size`` tokens step by ``block_size - context``; in each, only the last
    ``block_size - context`` predictions are scored (the first ones would see too short a context).
    ``context`` defaults to ``block_size // 2``. Its mean is the held-out **bits per character** of a text.
    """
    block = model.block_size
    context = block // 2 if context is None else int(context)
    if not 0 < context < block:
        raise ValueError(f"context must lie in 1..{block - 1}, got {context}")
    if ids.dim() != 1 or len(ids) <= block:
        raise ValueError(f"ids must be a 1-D tensor longer than block_size ({block}), got {tuple(ids.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    stride = block - context
    starts = list(range(0, len(ids) - block, stride))
    if starts[-1] + block < len(ids) - 1:
        starts.append(len(ids) - 1 - block)
    bits, covered = torch.full((len(ids),), float("nan"), dtype=torch.float64), context + 1
    for chunk in range(0, len(starts), batch_size):
        s = torch.tensor(starts[chunk:chunk + batch_size])
        windows = ids[s[:, None] + torch.arange(block + 1)].to(device)  # (b, block + 1)
        logp = F.log_softmax(model(windows[:, :-1]).double(), -1)
        token_bits = -logp.gather(-1, windows[:, 1:, None]).squeeze(-1).cpu() / math.log(2)  # (b, block)
        for row, start in enumerate(s.tolist()):
            first = max(context, covered - 1 - start)  # score only positions not scored before
            bits[start + 1 + first:start + 1 + block] = token_bits[row, first:]
            covered = max(covered, start + 1 + block)
    model.train(was_training)
    return bits[context + 1:]


def train_text(model: GPT, train_ids: torch.Tensor, val_ids: torch.Tensor | None = None, *, steps: int = 1000,
               batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 0.1, max_seconds: float | None = None,
               eval_every: int = 200, seed: int = 0, desc: str = "GPT on text", verbose: bool = True) -> dict:
    """Train a character model on random windows of ``train_ids (N,)`` with AdamW, a cosine schedule and
    teacher forcing: the loss is the mean ``-log p(x_t | x_{<t})`` in nats over every position of every window.

    Returns a history dict: ``steps``, ``train_bits`` (per logged step), ``val_bits`` (every ``eval_every`` steps
    on a fixed set of validation windows), ``seconds``. ``max_seconds`` stops early (the schedule then ends
    unfinished). A NaN loss stops training with :class:`gencourse.train.TrainingDiverged`.
    """
    from gencourse.train import check_finite, progress

    steps = _positive_int("steps", steps)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    block = model.block_size
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)) + 0.02))
    val_windows = None
    if val_ids is not None:
        val_windows = random_windows(val_ids, 64, block + 1, torch.Generator().manual_seed(1234)).to(device)
    history = {"steps": [], "train_bits": [], "val_steps": [], "val_bits": [], "seconds": 0.0}
    start = time.perf_counter()
    bar = progress(range(1, steps + 1), desc=desc)
    model.train()
    for step in bar:
        batch = random_windows(train_ids, batch_size, block + 1, generator).to(device)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        check_finite(loss, epoch=1, step=step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        history["steps"].append(step)
        history["train_bits"].append(loss.item() / math.log(2))
        if val_windows is not None and (step % eval_every == 0 or step == steps):
            model.eval()
            with torch.no_grad():
                vl = model(val_windows[:, :-1])
                vloss = F.cross_entropy(vl.reshape(-1, vl.shape[-1]), val_windows[:, 1:].reshape(-1)).item()
            model.train()
            history["val_steps"].append(step)
            history["val_bits"].append(vloss / math.log(2))
            bar.set_postfix(val_bits=f"{history['val_bits'][-1]:.3f}")
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    bar.close()
    model.eval()
    history["seconds"] = time.perf_counter() - start
    if verbose:
        val = f"; val {history['val_bits'][-1]:.3f} bits/char" if history["val_bits"] else ""
        print(f"{desc}: {len(history['steps'])} steps in {history['seconds']:.1f} s; "
              f"train {np.mean(history['train_bits'][-50:]):.3f} bits/char (last 50 steps){val}")
    return history


# ----------------------------------------------------------------------------------------------
# Digits as 64 tokens: an image GPT
# ----------------------------------------------------------------------------------------------

class DigitsGPT(ar.AutoregressiveModel):
    """A :class:`GPT` on 8x8 digits as 64 tokens of 17 levels in raster order (image GPT in miniature).

    The input sequence is a start token (id 17) followed by pixels ``k_0..k_62``; output ``i`` gives the 17
    logits of ``k_i`` given ``k_{<i}``. ``forward(x: (B, 64) in [0, 1]) -> (B, 64, 17)``, so the exact NLL,
    the probabilities and pixel-by-pixel sampling are lesson 07's (:class:`~gencourse.autoregressive.AutoregressiveModel`).
    """

    START = ar.LEVELS  # token 17 marks the start of an image

    def __init__(self, *, n_layer: int = 2, n_head: int = 4, n_embd: int = 64, dropout: float = 0.1):
        super().__init__()
        self.gpt = GPT(ar.LEVELS + 1, ar.NUM_PIXELS, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.round(x * (self.levels - 1)).long()
        tokens = torch.cat([torch.full_like(k[:, :1], self.START), k[:, :-1]], 1)
        return self.gpt(tokens)[..., :self.levels]  # the start token is never a pixel's value

    def pixel_logits(self, canvas: torch.Tensor, i: int) -> torch.Tensor:
        """Logits ``(n, 17)`` of pixel ``i``: a pass over the first ``i + 1`` positions only (causal, so the
        result is the full pass's)."""
        k = torch.round(canvas[:, :i] * (self.levels - 1)).long()
        tokens = torch.cat([torch.full_like(canvas[:, :1], self.START, dtype=torch.long), k], 1)
        return self.gpt(tokens)[:, -1, :self.levels]

    def sampling_logits(self):
        """Lesson 07's sampling loop with lesson 09's KV cache: the first call runs the start token and the given
        pixels ``k[:, :i]``; each later call feeds only the pixels drawn since, one new position on top of the
        cached keys and values, instead of a pass over the whole prefix (:meth:`pixel_logits`). Same logits up
        to rounding; the calls must come in order ``i = start, start + 1, ...``, as sampling makes them."""
        device, cache, fed = self._device(), self.gpt.new_cache(), [0]  # fed: tokens in the cache

        def logits_fn(k, i):
            k = k.to(device)
            if fed[0] == 0:
                new = torch.cat([torch.full_like(k[:, :1], self.START), k[:, :i]], 1)
            elif i == fed[0]:
                new = k[:, fed[0] - 1:i]
            else:
                raise RuntimeError(f"cached sampling asked for pixel {i} after {fed[0] - 1}: call in raster order")
            fed[0] = i + 1
            return self.gpt(new, cache)[:, -1, :self.levels].float().cpu()

        return logits_fn


def train_digits(*, epochs: int | None = None, seed: int = 0, quick: bool = False, n_layer: int = 2, n_head: int = 4,
                 n_embd: int = 64, dropout: float = 0.2, lr: float = 2e-3, batch_size: int = 32, default_epochs: int = 100,
                 patience: int | None = None, max_seconds: float | None = None, device=None, verbose: bool = True):
    """Train :class:`DigitsGPT` on the digits' train split by the exact NLL (nats per image): the recipe has PixelCNN's
    parameter count (about 107k) and trains about 3 minutes on one CPU core. Adam with a warm-up
    and a cosine decay over ``epochs`` (default ``default_epochs``), keeping the weights of the best validation
    epoch (model selection on val, as for the PixelCNN). ``quick``: 2 epochs on 200 images, to check the code runs.
    Returns ``(model, history)`` in eval mode. ``device``: where to train (default CPU).
    """
    from gencourse.data import load
    from gencourse.train import CosineAdam, fit, seed_everything

    epochs = (2 if quick else default_epochs) if epochs is None else _positive_int("epochs", epochs)
    seed_everything(seed)
    model = DigitsGPT(n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout)
    model.to(device if device is not None else "cpu")
    train, val = load("digits", "train").images, load("digits", "val").images
    if quick:
        train, val = train[:200], val[:100]
    optimizer = CosineAdam(model.parameters(), lr, epochs * math.ceil(len(train) / batch_size))
    history = fit(model, lambda batch: model.nll(batch).mean(), train, val_data=val, epochs=epochs, lr=lr,
                  batch_size=batch_size, optimizer=optimizer, patience=patience, seed=seed, max_seconds=max_seconds,
                  device=device, desc="image GPT", verbose=verbose)
    return model, history


# ----------------------------------------------------------------------------------------------
# The text recipe: a character GPT on the lesson's corpus, trained by `make recipes`
# ----------------------------------------------------------------------------------------------

TEXT_SEEDS = (0, 1, 2)


def text_data():
    """The lesson's corpus as token ids: ``(tokenizer, {"train", "val", "test"} -> LongTensor (N,))``."""
    from gencourse import text

    corpus = text.corpus()
    tokenizer = text.CharTokenizer(corpus)
    return tokenizer, dict(zip(("train", "val", "test"), (tokenizer.encode(s) for s in text.splits(corpus))))


def text_model(vocab_size: int, *, block_size: int = 64, n_layer: int = 3, n_head: int = 4, n_embd: int = 96,
               dropout: float = 0.1) -> GPT:
    """The text recipe's architecture: a context of 64 characters, 3 blocks of 4 heads, 96 dimensions, dropout 0.1
    (about 362k parameters; see :func:`train_text_recipe` for how the regularization was chosen)."""
    return GPT(vocab_size, block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout)


def train_text_recipe(*, seed: int = 0, steps: int = 6000, batch_size: int = 32, lr: float = 4e-3,
                      weight_decay: float = 0.1, quick: bool = False, device=None, verbose: bool = True):
    """The text recipe: :func:`text_model` trained by :func:`train_text` for ``steps`` steps (about 4.3 minutes on
    two CPU cores with two threads; ``quick``: 20 steps). Returns ``(model, history)``; the final, annealed weights
    are kept.

    The settings were chosen on validation bits (seed 0 unless said). At 3000 steps: dropout 0.1 and weight decay
    0.1 at lr 2e-3 gave 1.857; no dropout at lr 4e-3 / 6e-3 / 1e-2, 1.762 / 1.737 / 1.750; at lr 6e-3, weight decay
    0.5 / 1 / 2 gave 1.699 / 1.732 / 1.913 (0.5 on seeds 1 and 2: 1.740, 1.733); lr 4e-3 with weight decay 0.5 on
    seed 1, 1.723, on seed 0 (the earlier recipe), 1.736; a context of 128 characters in batches of 16 (the same
    characters per step), 1.798. Without dropout the 340k training characters are few for 362k weights: at 6000
    steps (lr 4e-3, weight decay 0.5) the model fits the training text at 1.17 bits and validation at 1.729, hardly
    better than 1.736 at 3000. With dropout 0.1 the longer run pays: 6000 steps at weight decay 0.5 gave 1.677
    (seed 1: 1.668), at weight decay 0.1 1.660 (seed 1: 1.665), kept; 5000 steps at weight decay 0.1, 1.691. (These
    search runs used one thread; the checkpoints, trained with two, differ from them in the third decimal.)"""
    from gencourse.train import seed_everything

    tokenizer, ids = text_data()
    seed_everything(seed)
    model = text_model(tokenizer.vocab_size).to(device if device is not None else "cpu")
    history = train_text(model, ids["train"], ids["val"], steps=20 if quick else steps, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, seed=seed, desc="character GPT", verbose=verbose)
    return model, history


def text_checkpoint(seed: int = 0, directory=None):
    """Where the text recipe's checkpoint for ``seed`` lives (beside the digits recipes)."""
    from pathlib import Path

    from gencourse.recipes import CHECKPOINTS

    return Path(directory or CHECKPOINTS) / f"gpt_text-seed{seed}.pt"


def text_fingerprint() -> str:
    """A hash of the text recipe: its training function's source and defaults, the architecture's, and how the
    corpus is split (a change of splits changes what the recipe trains on)."""
    from gencourse import text
    from gencourse.recipes import source_fingerprint

    return source_fingerprint(train_text_recipe, text_model, train_text, text_data, text.deduplicate, text.splits,
                              prefix=f"chunk {text.SPLIT_CHUNK} period {text.SPLIT_PERIOD} "
                                     f"min {text.DEDUP_MIN_LENGTH}")


def load_text_recipe(seed: int = 0, directory=None, *, with_meta: bool = False):
    """The text recipe's trained GPT for ``seed`` (``weights_only=True``), in eval mode; with ``with_meta`` also
    its metadata (training seconds, held-out bits, fingerprint)."""
    from gencourse.train import load_checkpoint

    path = text_checkpoint(seed, directory)
    if not path.exists():
        raise FileNotFoundError(f"no text recipe checkpoint at {path}: train it with "
                                f"`make recipes RECIPES=gpt_text` (about 4.3 minutes per seed on two cores)")
    tokenizer, _ = text_data()
    model = text_model(tokenizer.vocab_size)
    meta = load_checkpoint(model, path)
    model.eval()
    return (model, meta) if with_meta else model


def save_text_recipe(seed: int = 0, directory=None, *, quick: bool = False, verbose: bool = False) -> str:
    """Train the text recipe for ``seed``, measure its held-out bits per character and write its checkpoint."""
    import time

    from gencourse.train import save_checkpoint

    stamp, cpu = text_fingerprint(), time.process_time()
    model, history = train_text_recipe(seed=seed, quick=quick, verbose=verbose)
    cpu = time.process_time() - cpu
    _, ids = text_data()
    bits = {split: bits_per_token(model, ids[split]).mean().item() for split in ("val", "test")}
    path = text_checkpoint(seed, directory)
    save_checkpoint(model, path, recipe="gpt_text", seed=seed, train_seconds=history["seconds"], cpu_seconds=cpu,
                    threads=torch.get_num_threads(), fingerprint=stamp, torch=str(torch.__version__),
                    steps=len(history["steps"]), val_bits=bits["val"], test_bits=bits["test"])
    return f"trained in {history['seconds']:.1f} s, val {bits['val']:.3f} / test {bits['test']:.3f} bits/char -> {path}"


# ----------------------------------------------------------------------------------------------
# 28x28 images: the same GPT on MNIST's pixels (a GPU run), or on its 2x2 patches
# ----------------------------------------------------------------------------------------------

class ImageGPT(nn.Module):
    """A :class:`GPT` over ``side x side`` images with ``levels`` intensity levels, in raster order, after a start
    token: the exact NLL in one pass and sampling with the KV cache. ``x: (B, 1, side, side)`` in [0, 1] on the
    grid ``k / (levels - 1)``.

    ``patch=1`` (default): one token per pixel, ``D = side**2`` tokens, each pixel's level embedded like a word
    (start token: id ``levels``), ``-log p(x) = -sum_i log p(k_i | k_{<i})``. ``patch=p > 1``: one token per
    ``p x p`` patch, ``side**2 / p**2`` tokens, 4x (p = 2) fewer positions to attend over. A patch is embedded by a
    linear map of its ``p**2`` values, and the head gives every pixel of the *next* patch its own categorical over
    the levels, given all earlier patches; pixels inside a patch are independent given that past:

        -log p(x) = -sum_t sum_{j in patch t} log p(k_j | patches_{<t})

    still an exact likelihood of a valid model, with a coarser chain rule (it cannot correlate neighbours inside
    one patch except through the past)."""

    def __init__(self, side: int = 28, levels: int = 256, *, patch: int = 1, n_layer: int = 4, n_head: int = 4,
                 n_embd: int = 128, dropout: float = 0.0):
        super().__init__()
        self.side, self.levels, self.patch = side, levels, _positive_int("patch", patch)
        if side % patch:
            raise ValueError(f"patch ({patch}) must divide the image side ({side})")
        self.num_pixels, self.num_tokens = side * side, (side // patch) ** 2
        vocab = levels + 1 if patch == 1 else 1  # patches are embedded by `patch_embedding`; id 0 is the start token
        self.gpt = GPT(vocab, self.num_tokens, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout,
                       out_size=levels * patch * patch, fused=True)
        self.patch_embedding = nn.Linear(patch * patch, n_embd) if patch > 1 else None

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, side, side)`` -> their levels ``(B, D)`` int64, raster order (patch by patch when
        ``patch > 1``: ``(B, T, p*p)``); anything else raises ``ValueError``."""
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != (1, self.side, self.side):
            raise ValueError(f"expected images (B, 1, {self.side}, {self.side}) in [0, 1], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        k = torch.round(x.reshape(len(x), -1) * (self.levels - 1))
        if (k - x.reshape(len(x), -1) * (self.levels - 1)).abs().max() > 1e-3 or k.min() < 0 or k.max() >= self.levels:
            raise ValueError(f"expected pixel values on the grid k / {self.levels - 1}, k in 0..{self.levels - 1}")
        if self.patch == 1:
            return k.long()
        p, n = self.patch, self.side // self.patch
        return k.long().view(len(x), n, p, n, p).permute(0, 1, 3, 2, 4).reshape(len(x), n * n, p * p)

    def image(self, k: torch.Tensor) -> torch.Tensor:
        """Levels ``(B, D)`` or patches ``(B, T, p*p)`` -> images ``(B, 1, side, side)`` in [0, 1]."""
        p, n = self.patch, self.side // self.patch
        k = k.reshape(len(k), n, n, p, p).permute(0, 1, 3, 2, 4)
        return (k.float() / (self.levels - 1)).reshape(len(k), 1, self.side, self.side)

    def _embed_patches(self, k: torch.Tensor) -> torch.Tensor:
        return self.patch_embedding(k.float() / (self.levels - 1))

    def _start(self, n: int, device) -> torch.Tensor:
        """The start token, ``(n, 1)`` ids (pixels) or ``(n, 1, n_embd)`` embeddings (patches)."""
        if self.patch == 1:
            return torch.full((n, 1), self.levels, dtype=torch.long, device=device)
        return self.gpt.token_embedding(torch.zeros(n, 1, dtype=torch.long, device=device))

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Exact NLL in nats per image, ``(B,)`` (the equations above)."""
        device = next(self.parameters()).device
        k = self.tokens(x).to(device)
        if self.patch == 1:
            return ar.categorical_nll(self.gpt(torch.cat([self._start(len(k), device), k[:, :-1]], 1)), k)
        inputs = torch.cat([self._start(len(k), device), self._embed_patches(k[:, :-1])], 1)  # (B, T, n_embd)
        logits = self.gpt(None, embeddings=inputs).view(*k.shape, self.levels)  # (B, T, p*p, levels)
        return ar.categorical_nll(logits.flatten(1, 2), k.flatten(1))

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, 1, side, side)``, token by token with the KV cache (``T`` network evaluations)."""
        n = _positive_int("n", n)
        device = next(self.parameters()).device
        if self.patch == 1:
            k = self.gpt.generate(self._start(n, device), self.num_pixels, temperature=temperature,
                                  generator=generator)[:, 1:]
            return self.image(k).cpu()
        ar.filtered_logits(torch.zeros(1, 2), temperature=temperature)  # validates it before the loop
        was_training = self.training
        self.eval()
        cache, h, patches = self.gpt.new_cache(), self._start(n, device), []
        for _ in range(self.num_tokens):
            logits = self.gpt(None, cache, embeddings=h)[:, -1].view(n * self.patch ** 2, self.levels)
            probs = F.softmax(ar.filtered_logits(logits.float(), temperature=temperature), -1)
            k = torch.multinomial(probs.cpu(), 1, generator=generator)
            patches.append(k.view(n, self.patch ** 2).to(device))
            h = self._embed_patches(patches[-1])[:, None]
        self.train(was_training)
        return self.image(torch.stack(patches, 1)).cpu()


def train_images(dataset: str = "mnist", *, epochs: int = 10, seed: int = 0, quick: bool = False, lr: float = 1e-3,
                 batch_size: int = 64, subset: int | None = None, device=None, verbose: bool = True, **model_kwargs):
    """Train an :class:`ImageGPT` on a 28x28 dataset's train split by the exact NLL (cosine schedule, the best
    validation epoch kept, validation on at most 1000 images). ``subset``: only the first ``subset`` training
    images; ``quick``: 1 epoch. Returns ``(model, history)``; ``"digits"`` is :func:`train_digits`."""
    from gencourse.data import LEVELS, load
    from gencourse.train import CosineAdam, fit, seed_everything

    if dataset == "digits":
        return train_digits(epochs=epochs, seed=seed, quick=quick, device=device, verbose=verbose)
    if dataset not in LEVELS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(LEVELS)}")
    epochs = 1 if quick else _positive_int("epochs", epochs)
    seed_everything(seed)
    train, val = load(dataset, "train"), load(dataset, "val")
    images = train.images[:subset]
    model = ImageGPT(train.images.shape[-1], LEVELS[dataset], **model_kwargs).to(device or "cpu")
    optimizer = CosineAdam(model.parameters(), lr, epochs * math.ceil(len(images) / batch_size))
    return model, fit(model, lambda batch: model.nll(batch).mean(), images, val_data=val.images[:min(1000, subset or 1000)],
                      epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, seed=seed, device=device,
                      desc=f"image GPT ({dataset})", verbose=verbose)
