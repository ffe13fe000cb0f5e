# %% [markdown]
# # 09 · Transformers
#
# **Learning objectives.** After this lesson you can
# - carry lesson 07's chain rule from pixels to the tokens of a text, and measure a language model in bits per
#   character on held-out text;
# - build the baselines a language model must beat: counts (a Kneser-Ney n-gram whose order is chosen on
#   validation) and a small MLP over a fixed window (Bengio et al. 2003), as in Karpathy's *makemore*;
# - write **scaled dot-product attention**, its **causal mask** and several heads, and say why a transformer needs
#   position embeddings and why its mask is MADE's after a shift by one position;
# - build and train a small GPT yourself, on text, end to end;
# - sample with a temperature, top-k and nucleus truncation, and measure what each trades;
# - write the **KV cache** and measure the time it saves as the sequence grows;
# - put the same GPT on digit pixels (an image GPT) and compare it with lesson 07's PixelCNN at equal parameters,
#   with the training seconds each needs.
#
# **Running time:** about 65 s on a 2-core laptop CPU (115 CPU seconds with two threads, measured by `make bench`); nothing to download; the
# text and digits GPTs compared here are the course's recipes (`make recipes`: the text GPT under 5 minutes per
# seed on the two cores, the digits ones a few minutes each on one core);
# on a GPU, `GENCOURSE_DEVICE=auto` trains the live models there.

# %% tags=["parameters"]
# Parameters: change them here, or set the environment variables before starting Jupyter.
import os

QUICK = os.environ.get("GENCOURSE_QUICK", "0") == "1"  # smallest settings: only checks that the lesson runs
SEED = int(os.environ.get("GENCOURSE_SEED", 0))
TEXT_STEPS = int(os.environ.get("GENCOURSE_TEXT_STEPS", 20 if QUICK else 300))  # the live character GPT
MLP_STEPS = int(os.environ.get("GENCOURSE_MLP_STEPS", 20 if QUICK else 300))  # the live window MLP
DIGITS_EPOCHS = int(os.environ.get("GENCOURSE_EPOCHS", 1 if QUICK else 8))  # the live image GPT
N_SAMPLES = int(os.environ.get("GENCOURSE_SAMPLES", 100 if QUICK else 1000))  # digit samples scored
SAMPLE_CHARS = int(os.environ.get("GENCOURSE_SAMPLE_CHARS", 100 if QUICK else 400))  # per text sample, 10 samples a model
STYLE_CHARS = int(os.environ.get("GENCOURSE_STYLE_CHARS", 63))  # per sample, section 7's sampler table (40 samples)
DEVICE = os.environ.get("GENCOURSE_DEVICE", "cpu")  # "auto" picks a GPU when there is one
DATASET = os.environ.get("GENCOURSE_DATASET", "digits")  # section 10: "mnist" / "fashion-mnist" (a GPU run)
EPOCHS_IMAGES = int(os.environ.get("GENCOURSE_EPOCHS_IMAGES", 1 if QUICK else 5))  # section 10's 28x28 image GPT
SUBSET = int(os.environ.get("GENCOURSE_SUBSET", 64 if QUICK else 0)) or None  # section 10: first SUBSET training images
PATCH = int(os.environ.get("GENCOURSE_PATCH", 1))  # section 10: a token per pixel (1) or per 2x2 patch (2, 4x cheaper)

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import gencourse
from gencourse import autoregressive as ar
from gencourse import basics, check, data, metrics, recipes, text, viz
from gencourse import transformer as tr

gencourse.setup(seed=SEED)
device = gencourse.get_device(DEVICE)


def verdict(ok, claim):
    """Print one checked claim: PASS or FAIL, then the claim with its tolerance."""
    print(("PASS " if ok else "FAIL ") + claim)


# %% [markdown]
# ## 1. From pixels to tokens
#
# Lesson 07 wrote the probability of a digit as a product of one-pixel conditionals, $p(k) = \prod_i p(k_i \mid
# k_{<i})$, each a softmax over 17 levels. Nothing in that rule is about pixels. A text is a sequence of
# **tokens** $x_1, \dots, x_N$ from a vocabulary of $V$ symbols, here single characters, and the same chain rule
# holds in the text's natural order:
#
# $$p(x_{1:N}) = \prod_{t=1}^{N} p(x_t \mid x_{<t}), \qquad
# \text{bits per character} = -\frac{1}{N}\sum_{t=1}^{N} \log_2 p(x_t \mid x_{<t}).$$
#
# Bits per character is the negative log-likelihood per dimension of lesson 01 in base 2: the length of the text's code, per
# character, under the model; a uniform guess over $V$ characters costs $\log_2 V$. A **language model** is a model
# of these conditionals; generating text is lesson 07's ancestral sampling, one token after the other.
#
# The corpus ships with every Python: the reference manual's topics that `help()` shows (`pydoc_data`), English
# prose with code in it. The manual restates itself (the topic on `try` repeats part of the one on compound
# statements): a paragraph that already appeared is dropped, about a fifth of the characters, so that no model is
# scored on text it could have memorized. The rest is cut into chunks of about 5,000 characters at paragraph
# breaks, and of every 20 chunks the 10th goes to validation, the 20th to test and the others to training
# (about 90/5/5). Each chunk is contiguous text; interleaving makes validation and test the same mix of topics.
# They are still different texts, so they differ in difficulty: models are compared on the same split only.

# %%
corpus = text.corpus()
train_text, val_text, test_text = text.splits(corpus)
tokenizer = text.CharTokenizer(corpus)
V = tokenizer.vocab_size
ids = {"train": tokenizer.encode(train_text), "val": tokenizer.encode(val_text), "test": tokenizer.encode(test_text)}
print(text.corpus_info())
print(f"{V} distinct characters; train {len(ids['train']):,}, val {len(ids['val']):,}, test {len(ids['test']):,}")
print(f"uniform over {V} characters: log2 {V} = {math.log2(V):.2f} bits per character")
print("-" * 80 + "\n" + val_text[2000:2400] + "\n" + "-" * 80)

# %% [markdown]
# ## 2. Counting: n-gram models
#
# The first language models counted. An **n-gram model** predicts a character from the $n - 1$ before it:
# $p(x_t \mid x_{t-n+1:t-1}) \approx c(x_{t-n+1:t}) / c(x_{t-n+1:t-1})$, with $c$ the counts in the training
# text. Long contexts are rarely seen twice, so the raw ratio is zero for most of what a new text holds, and every
# zero costs infinite bits. **Interpolated Kneser-Ney** smoothing (Chen & Goodman 1998), a standard strong recipe,
# takes a discount $D_n$ (one per order) off every count and gives the freed mass to the next shorter context,
# recursively down to a uniform floor. At the top order:
#
# $$p_{\text{KN}}(x \mid h) = \frac{\max(c(h x) - D_n, 0)}{c(h)} + \frac{D_n\, N_{1+}(h\,\cdot)}{c(h)}\;
# p_{\text{KN}}(x \mid h'),$$
#
# where $h'$ is $h$ without its oldest character and $N_{1+}(h\,\cdot)$ counts the distinct characters seen after
# $h$. The lower orders are always mixed in, with the weight the discounts freed, and they matter most where the
# higher order has little data. Hence Kneser-Ney's other idea: below the top order, the counts $c$ are replaced by
# *continuation* counts, $N_{1+}(\cdot\, h x)$, the number of different characters seen before $h x$: a string that
# appears often but always after the same prefix is no evidence for new contexts. (Chen & Goodman's strongest
# variant, *modified* Kneser-Ney, uses three discounts per order.) The order $n$ is chosen on the validation text.

# %%
start = time.perf_counter()
ngram = text.KneserNey(max_order=16).fit(ids["train"], V)
best_order, val_by_order = ngram.choose_order(ids["val"], orders=range(1, 17))
ngram_seconds = time.perf_counter() - start
ngram_bits = {split: ngram.nll(ids[split], best_order) for split in ("val", "test")}
print("order n    " + "".join(f"{n:>6}" for n in val_by_order))
print("val bits   " + "".join(f"{b:>6.2f}" for b in val_by_order.values()))
print(f"chosen on validation: n = {best_order}; val {ngram_bits['val']:.3f}, test {ngram_bits['test']:.3f} bits per "
      f"character (fitted and evaluated in {ngram_seconds:.1f} s)")
_ = gencourse.headline("n-gram: test bits/char", ngram_bits["test"], "{:.3f}")

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(list(val_by_order), list(val_by_order.values()), "o-")
ax.axvline(best_order, color="C3", ls="--", lw=1, label=f"chosen: n = {best_order}")
ax.axhline(math.log2(V), color="grey", ls=":", label=f"uniform ({math.log2(V):.2f})")
ax.set(xlabel="order n (characters of context: n - 1)", ylabel="validation bits / char",
       title="Kneser-Ney n-grams on the corpus")
ax.legend()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
verdict(val_by_order[2] < val_by_order[1] - 0.75,
        "one character of context (n = 2) saves more than 0.75 bit per character")
verdict(best_order >= 10, "the order chosen on validation is at least 10: long contexts keep paying")
verdict(val_by_order[best_order] < val_by_order[5] - 0.1,
        "the chosen order beats n = 5 by more than 0.1 bit per character")
verdict(abs(val_by_order[16] - val_by_order[12]) < 0.02,
        "from n = 12 to n = 16 the validation figure moves by less than 0.02 bit: the curve has flattened, so "
        "the search up to 16 has found its level")

# %% [markdown]
# Counting goes a long way on this corpus: the order chosen on validation uses many characters of context (beyond
# about 12 the gains are hundredths of a bit, so which long order wins is nearly a tie), and text sampled from it
# is locally fluent. It is also blind beyond its window: it cannot know what was said
# $n$ characters ago.

# %%
ngram_sample = tokenizer.decode(ngram.sample(SAMPLE_CHARS, best_order, seed=SEED, prompt_ids=ids["val"][:1]))
print(ngram_sample)

# %% [markdown]
# ## 3. A window of embeddings: the MLP language model
#
# Counts do not generalize: `"dict("` and `"list("` are followed by much the same characters, but their counts
# are separate, and backing off shares only what the contexts end with (`"t("`). Bengio et al. (2003) replaced the table by a network: **embed** each of the last $c$ characters as a learned vector,
# concatenate them, and let an MLP output the $V$ logits of the next character. Similar characters get similar
# vectors and the model shares what it learns between contexts. The second step of *makemore*, in ten lines; it
# takes a sequence `(B, T)` and returns logits `(B, T, V)`, so the GPT's training loop trains it unchanged.

# %%
class WindowMLP(nn.Module):
    """Bengio et al. (2003): the last `context` characters, embedded and concatenated, through an MLP.

    idx (B, T) -> logits (B, T, V); logits[:, t] see idx[:, t-context+1 .. t] (positions before 0 read token 0)."""

    def __init__(self, vocab_size, block_size=64, context=8, n_embd=16, hidden=256):
        super().__init__()
        self.block_size, self.context = block_size, context
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.mlp = nn.Sequential(nn.Linear(context * n_embd, hidden), nn.Tanh(), nn.Linear(hidden, vocab_size))

    def forward(self, idx):
        padded = F.pad(idx, (self.context - 1, 0))  # (B, T + context - 1)
        windows = padded.unfold(1, self.context, 1)  # (B, T, context): the window that ends at each position
        return self.mlp(self.embedding(windows).flatten(2))


torch.manual_seed(SEED)
window_mlp = WindowMLP(V).to(device)
mlp_history = tr.train_text(window_mlp, ids["train"], ids["val"], steps=MLP_STEPS, batch_size=32, lr=3e-3,
                            seed=SEED, desc="window MLP")
mlp_bits = tr.bits_per_token(window_mlp, ids["val"]).mean().item()
print(f"window MLP (8 characters, {tr.count_parameters(window_mlp):,} parameters): val {mlp_bits:.3f} bits per "
      f"character after {MLP_STEPS} steps; the 3-gram: {val_by_order[3]:.3f}, the {best_order}-gram: "
      f"{ngram_bits['val']:.3f}")

# %% [markdown]
# After a few seconds of training the MLP is still behind a 3-gram: 300 steps of 32 windows of 64 characters
# are under two passes over the 340k training characters, too few gradient steps to learn what the counts take
# from one pass. It is under-trained: how far a longer-trained MLP would go is not measured here (the GPT recipe
# below shows what minutes of training buy a transformer).

# %% [markdown]
# ## 4. Attention
#
# A window of fixed size is still a window. To use the whole past, each position needs a way to *look up* what it
# needs in the positions before it, however far back. **Attention** does it with three vectors per position,
# made from its state $h_s$ by learned linear maps: a **query** $q_t$ (what position $t$ is looking for), a **key**
# $k_s$ (what position $s$ offers) and a **value** $v_s$ (what it hands over). Position $t$ weighs each earlier
# position by how well its key matches $t$'s query, and takes the weighted mean of their values:
#
# $$a_{ts} = \operatorname{softmax}_s\!\Big(\frac{q_t \cdot k_s}{\sqrt d} + m_{ts}\Big), \qquad
# y_t = \sum_s a_{ts}\, v_s, \qquad m_{ts} = \begin{cases} 0 & s \le t \\ -\infty & s > t \end{cases}
# \tag{1}$$
#
# In matrix form, for all positions at once, $Y = \operatorname{softmax}(QK^\top/\sqrt d + M)\,V$. The scale
# $1/\sqrt d$ keeps the scores' spread independent of the dimension $d$: a dot product of $d$ terms of unit variance
# has variance $d$, and large scores would saturate the softmax. The **causal mask** $M$ sets the scores of later
# positions to $-\infty$, so their weights are exactly zero: position $t$ sees $x_{\le t}$.
#
# **Exercise 1 (attention).** Write `scaled_dot_product_attention(q, k, v, mask)`: `q (..., Tq, d)`,
# `k (..., Tk, d)`, `v (..., Tk, dv)`, `mask (Tq, Tk)` bool (True where a query may attend) or None; return
# `(..., Tq, dv)`, eq. (1).

# %%
def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d) + m) v, with m = -inf where mask is False -> (..., Tq, dv)."""
    ### BEGIN SOLUTION
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
    ### END SOLUTION


# %%
check.scaled_dot_product_attention(scaled_dot_product_attention)

# %% [markdown]
# **Exercise 2 (the causal mask).** Write `causal_mask(t_query, t_key)`: a bool `(t_query, t_key)` tensor, True
# where query $i$ may attend to key $j$. Training feeds whole sequences ($t_\text{query} = t_\text{key}$), but
# section 8 will feed one new token at a time against the keys of all earlier ones: then the queries are the
# *last* $t_\text{query}$ of the $t_\text{key}$ positions. Write the general case.

# %%
def causal_mask(t_query, t_key):
    """(t_query, t_key) bool: query i (position t_key - t_query + i) may attend to keys j <= its position."""
    ### BEGIN SOLUTION
    position = torch.arange(t_query)[:, None] + (t_key - t_query)
    return torch.arange(t_key)[None, :] <= position
    ### END SOLUTION


# %%
check.causal_mask(causal_mask)

# %%
gencourse.show(tr.attention)

# %% [markdown]
# **Many heads.** One attention computes one weighted mean per position: one question. A layer runs $H$ heads in
# parallel, each with its own query, key and value maps of size $d = n_\text{embd} / H$ (where $n_\text{embd}$ is the
# width of each position's state $h_t$), and a last linear map mixes their outputs. Around it a **block** adds a per-position MLP, residual connections and layer norms;
# a **GPT** (Radford et al. 2018) embeds each token, adds an embedding of its position, stacks blocks, and maps each
# position's final state to $V$ logits. Its output at $t$ is the prediction of token $t + 1$.
#
# **The mask is MADE's, shifted.** MADE's output $i$ may depend on inputs $< i$ (lesson 07): the strict triangle.
# A GPT's output $t$ depends on tokens $\le t$, the triangle with its diagonal, because output $t$ predicts token
# $t + 1$: shifting the targets by one position turns one mask into the other. Autograd confirms it on an untrained
# GPT: the derivative of each output with respect to each input position.

# %%
torch.manual_seed(SEED)
probe = tr.GPT(V, 16, n_layer=2, n_head=4, n_embd=32).eval()
inputs = probe.token_embedding(ids["val"][None, :16]).detach().requires_grad_(True)
positions = probe.position_embedding(torch.arange(16))


def through_blocks(h):
    for block in probe.blocks:
        h = block(h)
    return probe.head(probe.ln_f(h))


jac = torch.autograd.functional.jacobian(lambda e: through_blocks(e + positions).sum(-1), inputs)  # (1, 16, 1, 16, 32)
depends = jac[0, :, 0].abs().sum(-1) > 0  # [t, s]: output t moves with input s
fig, ax = plt.subplots(figsize=(3.2, 3.2))
ax.imshow(depends, cmap="Greys")
ax.set(xlabel="input position s", ylabel="output position t", title="output t depends on input s")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
verdict(torch.equal(depends, torch.ones(16, 16).tril().bool()),
        "by autograd, GPT output t depends on exactly the inputs s <= t (the triangle with its diagonal)")

# %% [markdown]
# **Positions.** Attention itself ignores order: the weighted mean in eq. (1) is the same whichever order the
# earlier positions come in. Measured on untrained GPTs with their position embeddings zeroed: shuffle the first 15
# tokens of a 16-token text and look at the output at the last position.

# %%
shuffled = ids["val"][:16].clone()
shuffled[:15] = shuffled[torch.randperm(15, generator=torch.Generator().manual_seed(SEED))]


@torch.no_grad()
def change_when_shuffled(model):
    """Largest change of the last position's logits when the 15 tokens before it are shuffled."""
    return (model(ids["val"][None, :16])[0, -1] - model(shuffled[None])[0, -1]).abs().max().item()


shuffle_effect = {}
for layers in (1, 2):
    torch.manual_seed(SEED)
    net = tr.GPT(V, 16, n_layer=layers, n_head=4, n_embd=32).eval()
    shuffle_effect[layers, "with positions"] = change_when_shuffled(net)
    with torch.no_grad():
        net.position_embedding.weight.zero_()
    shuffle_effect[layers, "without"] = change_when_shuffled(net)
for (layers, kind), change in shuffle_effect.items():
    print(f"{layers} block(s), {kind:<15} largest change of the last logits: {change:.1e}")

# %%
# NBVAL_CHECK_OUTPUT
verdict(shuffle_effect[1, "without"] < 1e-5 < shuffle_effect[1, "with positions"],
        "one block without position embeddings: the last output ignores the order of the past (< 1e-5); with them it "
        "does not")
verdict(shuffle_effect[2, "without"] > 1e-3,
        "two blocks without position embeddings: the last output does change (> 1e-3) when the past is shuffled")

# %% [markdown]
# One block cannot tell `"ab"` from `"ba"` in its past without position embeddings. Two blocks can: in
# the first block each earlier position attends over *its own* prefix, so its output depends on where it stands, and
# the second block reads those outputs. The causal mask itself leaks order (Haviv et al. 2022 train language models
# this way). GPTs add position embeddings all the same: learned vectors, one per position, as here.

# %% [markdown]
# ## 5. A GPT on text
#
# Training is **teacher forcing**: cut a window of $T + 1$ characters of real text, feed its first $T$, and score
# the $T$ outputs against its last $T$ (the window shifted by one). Every position is a training example, all computed in one
# pass, thanks to the mask. The same loop trained the window MLP above.
#
# **Exercise 3 (a GPT, trained end to end).** Write `train_tiny_gpt(train_ids, vocab_size)`: build a
# `tr.GPT(vocab_size, block_size)` (a context of 32 characters is enough here), and train it for a few hundred
# steps on random windows (`tr.random_windows(train_ids, batch_size, block_size + 1)`) with cross-entropy and AdamW.
# Return the model. The check trains it (a few seconds) and scores it on the first 4000 validation characters: it
# passes below 3.3 bits per character (a 2-gram scores 3.70 on the whole validation text).

# %%
def train_tiny_gpt(train_ids, vocab_size, steps=500, block_size=32, batch_size=32, lr=3e-3):
    """A small GPT trained with teacher forcing on windows of train_ids (N,) -> the trained model."""
    ### BEGIN SOLUTION
    model = tr.GPT(vocab_size, block_size, n_layer=2, n_head=4, n_embd=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        window = tr.random_windows(train_ids, batch_size, block_size + 1)
        logits = model(window[:, :-1])  # (B, T, V): position t predicts token t + 1
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), window[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
    ### END SOLUTION


# %%
check.train_tiny_gpt(train_tiny_gpt)

# %% [markdown]
# The reference loop adds what longer runs need: AdamW's weight decay on the weight matrices only, a warm-up and a
# cosine decay of the learning rate, gradient clipping, a validation curve, a progress bar and a NaN guard.

# %%
gencourse.show(tr.train_text)

# %% [markdown]
# Now a GPT trained here, small enough for a few hundred steps (2 blocks, 4 heads, 64 dimensions, a context of 64
# characters), and the text recipe: a GPT of 3 blocks and 96 dimensions, trained for 6000 steps by `make recipes`
# on the seeds 0, 1 and 2 (each seed with both cores, in under five minutes on the machine that built the course;
# the printout gives each seed's seconds). Its settings were chosen on validation among about fifteen runs (listed in
# `tr.train_text_recipe`'s docstring): 340,000 characters are few for 362k weights. Without dropout the model fits
# its training text far better than validation, and twice the steps bought almost nothing (seed 0: 1.736 bits on
# validation at 3000 steps, 1.729 at 6000, while the training text fell to 1.17); with dropout 0.1 the longer run
# pays (1.660 in the search at 6000 steps and weight decay 0.1, the settings kept; learning rate 4e-3). Validation
# chose the n-gram's order too. Test was printed beside validation during this search but did not choose: the
# settings kept are the best of the search on validation. Test is no longer untouched, though, so read its
# figures as slightly optimistic. Every character is scored with at least 32 characters of context
# (`tr.bits_per_token`).

# %%
torch.manual_seed(SEED)
live_gpt = tr.text_model(V, n_layer=2, n_embd=64, dropout=0.0).to(device)
live_history = tr.train_text(live_gpt, ids["train"], ids["val"], steps=TEXT_STEPS, lr=3e-3, seed=SEED, eval_every=100)
live_bits = tr.bits_per_token(live_gpt, ids["val"]).mean().item()

recipe_gpts, recipe_meta = {}, {}
for s in tr.TEXT_SEEDS:
    recipe_gpts[s], recipe_meta[s] = tr.load_text_recipe(s, with_meta=True)
RECIPE_STEPS = recipe_meta[0]["steps"]
context = recipe_gpts[0].block_size // 2  # bits_per_token scores characters context + 1 onwards
gpt_token_bits = {(split, s): tr.bits_per_token(recipe_gpts[s], ids[split]) for split in ("val", "test")
                  for s in tr.TEXT_SEEDS}
gpt_bits = {split: np.array([gpt_token_bits[split, s].mean().item() for s in tr.TEXT_SEEDS]) for split in ("val", "test")}
ngram_token_bits = {split: -ngram.token_log_probs(ids[split], best_order) / math.log(2) for split in ("val", "test")}
ngram_aligned = {split: ngram_token_bits[split][context + 1:].mean().item() for split in ("val", "test")}  # GPT's chars
unigram = torch.bincount(ids["train"], minlength=V).double() + 0.5
unigram_bits = {split: (-torch.log2(unigram / unigram.sum())[ids[split]]).mean().item() for split in ("val", "test")}

rows = [("uniform", math.log2(V), math.log2(V), "-", "-"),
        ("unigram (character counts)", unigram_bits["val"], unigram_bits["test"], "-", "counting"),
        (f"Kneser-Ney {best_order}-gram", ngram_bits["val"], ngram_bits["test"], "-", f"{ngram_seconds:.1f} s"),
        (f"window MLP, {MLP_STEPS} steps (here)", mlp_bits, float("nan"), f"{tr.count_parameters(window_mlp):,}",
         f"{mlp_history['seconds']:.0f} s"),
        (f"small GPT, {TEXT_STEPS} steps (here)", live_bits, float("nan"), f"{tr.count_parameters(live_gpt):,}",
         f"{live_history['seconds']:.0f} s"),
        ("GPT recipe (mean of seeds 0-2)", gpt_bits["val"].mean(), gpt_bits["test"].mean(),
         f"{tr.count_parameters(recipe_gpts[0]):,}",
         f"{np.mean([recipe_meta[s]['train_seconds'] for s in tr.TEXT_SEEDS]):.0f} s, "
         f"{recipe_meta[0]['threads']} thr")]
print(f"{'model':<34}{'val bits':>9}{'test bits':>10}{'params':>10}{'training':>14}")
for name, v, t, p, secs in rows:
    print(f"{name:<34}{v:>9.3f}{t:>10.3f}{p:>10}{secs:>14}".replace("nan", "  -"))
print("GPT recipe per seed: training seconds " + ", ".join(f"{recipe_meta[s]['train_seconds']:.0f}" for s in tr.TEXT_SEEDS)
      + f" ({recipe_meta[0]['threads']} threads); val " + ", ".join(f"{b:.3f}" for b in gpt_bits["val"])
      + "; test " + ", ".join(f"{b:.3f}" for b in gpt_bits["test"]))
print(f"the {best_order}-gram on the characters the GPT scores (from character {context + 1} on): "
      f"val {ngram_aligned['val']:.3f}, test {ngram_aligned['test']:.3f}")
lead = {split: ngram_aligned[split] - gpt_bits[split] for split in ("val", "test")}  # > 0: the GPT is ahead
spread = {split: gpt_bits[split].max() - gpt_bits[split].min() for split in ("val", "test")}
print("the GPT recipe's lead over the n-gram, per seed (bits/char): " + "; ".join(
    f"{split} " + ", ".join(f"{g:+.3f}" for g in lead[split]) + f" (seeds' spread {spread[split]:.3f})"
    for split in ("val", "test")))
_ = gencourse.headline("GPT recipe: test bits/char", gpt_bits["test"].mean(), "{:.3f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(live_history["val_steps"], live_history["val_bits"], "o-", label=f"small GPT, here ({TEXT_STEPS} steps)")
ax.plot(mlp_history["val_steps"], mlp_history["val_bits"], "s-", label=f"window MLP, here ({MLP_STEPS} steps)")
ax.axhline(ngram_bits["val"], color="C3", ls="--", label=f"{best_order}-gram")
ax.axhline(gpt_bits["val"].mean(), color="C2", ls=":", label=f"GPT recipe ({RECIPE_STEPS} steps)")
ax.set(xlabel="training step", ylabel="validation bits / char", ylim=(1.5, 5))
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# (The curves use 64 fixed validation windows; the table scores every validation character.)
#
# After as few steps the small GPT trained here is behind even the window MLP (and far behind the n-gram); it has
# more weights to fit, and attention must first learn where to look, which 300 steps on a decaying learning rate
# leave it little time for (a likely reason, not isolated here). Exercise 3's bar of 3.3 bits is for its own
# settings (500 steps at a constant rate, a context of 32). Minutes of training change the picture: the recipe.
#
# The two kinds of model are wrong in different places. A **mixture** $p = w\,p_\text{GPT} + (1 - w)\,p_\text{n-gram}$
# of the two conditionals is again a language model; its weight $w$ is chosen on validation and it is scored on
# test, character by character on the same positions as the GPT.

# %%
def mixture_bits(split, seed, w):
    p_gpt = torch.exp2(-gpt_token_bits[split, seed].double())
    p_ngram = torch.exp2(-ngram_token_bits[split][context + 1:])  # the same characters as the GPT's
    return -torch.log2(w * p_gpt + (1 - w) * p_ngram).mean().item()


weights = np.linspace(0.1, 0.9, 9)
mixture = {}
for s in tr.TEXT_SEEDS:
    w = weights[np.argmin([mixture_bits("val", s, w) for w in weights])]
    mixture[s] = (w, mixture_bits("val", s, w), mixture_bits("test", s, w),
                  ngram_token_bits["test"][context + 1:].mean().item())
print(f"{'seed':>4}{'w (val)':>9}{'mixture val':>13}{'mixture test':>14}{'GPT test':>10}{'n-gram test':>13}"
      f"{'GPT surer':>11}   (bits/char; GPT surer: share of test characters it gives the higher probability)")
for s, (w, mv, mt, nt) in mixture.items():
    surer = (gpt_token_bits["test", s].double() < ngram_token_bits["test"][context + 1:]).double().mean().item()
    print(f"{s:>4}{w:>9.1f}{mv:>13.3f}{mt:>14.3f}{gpt_bits['test'][s]:>10.3f}{nt:>13.3f}{surer:>11.2f}")

# how much of the held-out text a table of long contexts could simply recall: verbatim 32-character strings
train_32 = {train_text[i:i + 32] for i in range(len(train_text) - 31)}
repeats = {split: np.mean([t[i:i + 32] in train_32 for i in range(0, len(t) - 31, 4)])
           for split, t in (("val", val_text), ("test", test_text))}
print(f"share of 32-character strings found verbatim in the training text: val {repeats['val']:.2f}, "
      f"test {repeats['test']:.2f}")

# %%
# NBVAL_CHECK_OUTPUT
verdict(live_bits < unigram_bits["val"] - 1, "the small GPT trained here beats character counts by more than a bit per "
        "character")
verdict(all(b < mlp_bits for b in gpt_bits["val"]), f"every GPT recipe seed ({RECIPE_STEPS} steps, minutes) beats the window "
        f"MLP trained here ({MLP_STEPS} steps, seconds) on validation")
verdict(all(g > 0 for g in lead["val"]), f"on validation every GPT recipe seed is ahead of the {best_order}-gram "
        "(point estimates; the lead is not checked against the seeds' spread there)")
verdict(all(g > spread["test"] for g in lead["test"]), f"on test too, every GPT recipe seed is ahead of the "
        f"{best_order}-gram by more than the seeds' spread")
verdict(all(g < 0.1 for g in lead["val"]) and all(g < 0.15 for g in lead["test"]),
        "the leads are small: under 0.1 bit per character on validation, under 0.15 on test")
verdict(all(mt < min(gpt_bits["test"][s], nt) - 0.05 for s, (_, _, mt, nt) in mixture.items()),
        "the mixture beats both of its parts on test by more than 0.05 bit per character, on every seed")
verdict(max(repeats.values()) < 0.06, "validation and test each repeat the training text verbatim rarely (under 6% "
        "of their 32-character strings)")

# %% [markdown]
# **Ahead, by a little.** On 340,000 characters of technical prose and under five minutes of two CPU cores, the
# GPT recipe is ahead of the Kneser-Ney n-gram on both held-out splits, on every seed (checked): on test by 0.10
# to 0.11 bit per character, more than ten times the seeds' spread there, and on validation by only 0.01 to 0.04,
# where one seed's lead is smaller than the seeds' spread (the printout). The lead differs between the splits by
# more than the seeds' spread: each split is only three or four chunks of 5,000 characters, so which topics fall
# into it moves the comparison, and the seeds' spread does not measure that text-to-text variation. (Tuning on
# validation cannot explain the difference: it would favour the GPT on validation, where its lead is the smaller.)
# By the protocol, test's figure is the one to quote; validation's says not to read it as a wide margin. The
# held-out texts are fair to both: neither repeats the training text verbatim more than a few percent of the time
# (the last printout), because repeated paragraphs were removed before the split. The n-gram fits and scores the
# corpus in about a second; the GPT spends 6000 steps learning what counts get for free, with a context of 64
# characters and 362k parameters, and it needed more steps and dropout to get ahead: at 3000 steps no run of the
# search in the docstring was ahead on validation (the best, 1.699, was level with the n-gram). Transformers rule text with millions to billions of tokens and the compute to
# read them; at this scale they are only just ahead. (Test is easier than validation for both models: the two
# splits are different texts, so their levels differ; compare models within one split.)
#
# The two models are wrong in different places: their mixture beats both on every seed, by about 0.1 bit per
# character against the GPT on test and about 0.2 against the n-gram. The GPT gives the higher probability on only
# about half the test characters (the "GPT surer" column), yet its test average is the better one, so where the
# n-gram is surer it wins by less, on average, than it loses where it is not. Mixing the two gains nearly as much
# over the GPT as the GPT gains over the n-gram. Section 6 finds one place where the GPT is right.

# %% [markdown]
# ## 6. What attention sees that counts cannot
#
# Overall bits per character mix easy characters (the rest of a word) with hard ones. A place where the
# window matters: a **closing bracket**. Whether `)` may come next depends on whether a `(` is still open, and
# that `(` can lie farther back than the chosen n-gram's context. Below, every closing bracket of the validation
# and test texts is scored by both models, split by how far back its opener is.

# %%
def closing_brackets(split):
    """Positions (within the GPT's scored characters) and opener distances of the split's closing brackets."""
    found = text.bracket_positions(val_text if split == "val" else test_text)
    keep = found.positions > context  # the GPT scores characters context + 1 onwards
    return found.positions[keep], found.distances[keep]


def paired_gap(seed, far):
    """n-gram bits minus GPT bits on each closing bracket of val and test, opener beyond (far) or within the
    n-gram's context: the mean and its bootstrap 95% interval (pairs resampled together)."""
    gaps = []
    for split in ("val", "test"):
        pos, dist = closing_brackets(split)
        sel = pos[(dist > best_order - 1) if far else (dist <= best_order - 1)]
        gaps.append(ngram_token_bits[split][sel] - gpt_token_bits[split, seed][sel - context - 1].double())
    gaps = torch.cat(gaps)
    boot = gaps[torch.randint(0, len(gaps), (4000, len(gaps)), generator=torch.Generator().manual_seed(0))].mean(1)
    return gaps.mean().item(), boot.quantile(0.025).item(), boot.quantile(0.975).item(), len(gaps)


brackets = {(s, far): paired_gap(s, far) for s in tr.TEXT_SEEDS for far in (False, True)}
print(f"closing brackets of val and test: bits the GPT saves over the {best_order}-gram on each (95% interval)")
for s in tr.TEXT_SEEDS:
    print(f"GPT seed {s}:   " + "   ".join(
        f"opener {'beyond' if far else 'within'} {best_order - 1} characters: {m:+.2f} [{lo:+.2f}, {hi:+.2f}] "
        f"(n = {n})" for far in (False, True) for m, lo, hi, n in [brackets[s, far]]))
overall = [ngram_token_bits["val"][context + 1:].mean().item() - gpt_bits["val"][s] for s in tr.TEXT_SEEDS]
print("for comparison, on all validation characters: " + ", ".join(f"{g:+.3f}" for g in overall))

# %% [markdown]
# Samples show the same thing from the other side: generate text from both models and count the brackets that
# close nothing or stay open at the end of a paragraph (`text.unbalanced_share`). Real text scores close to zero.

# %%
prompts = ids["val"][torch.arange(10) * 2000][:, None]  # ten one-character prompts
gen = torch.Generator().manual_seed(SEED)
gpt_samples = [tokenizer.decode(row) for row in recipe_gpts[SEED % 3].generate(prompts, SAMPLE_CHARS, generator=gen)]
ngram_samples = [tokenizer.decode(ngram.sample(SAMPLE_CHARS, best_order, seed=SEED + i, prompt_ids=p))
                 for i, p in enumerate(prompts)]
real_chunks = [val_text[i:i + SAMPLE_CHARS] for i in range(0, 10 * 2000, 2000)]
unbalanced = {name: text.unbalanced_share("\n\n".join(chunks))
              for name, chunks in (("real validation text", real_chunks), ("GPT recipe samples", gpt_samples),
                                   (f"{best_order}-gram samples", ngram_samples))}
for name, share in unbalanced.items():
    print(f"{name:<24} unbalanced brackets: {share:.2f}")
print("\nGPT recipe, temperature 1:\n" + gpt_samples[0] + "\n\n" + f"{best_order}-gram:\n" + ngram_samples[0])

# %%
# NBVAL_CHECK_OUTPUT
verdict(all(brackets[s, False][1] > 0 for s in tr.TEXT_SEEDS),
        "on closing brackets whose opener is within the n-gram's context, every GPT seed costs fewer bits than the "
        "n-gram (the paired 95% interval is above 0)")
verdict(all(brackets[s, True][1] > 0 for s in tr.TEXT_SEEDS),
        "on closing brackets whose opener is beyond the n-gram's context, every GPT seed costs fewer bits than the "
        "n-gram too (the paired 95% interval is above 0)")
verdict(unbalanced["GPT recipe samples"] < unbalanced[f"{best_order}-gram samples"],
        "the GPT's samples leave fewer brackets unbalanced than the n-gram's (point estimates, ten samples each)")

# %% [markdown]
# At closing brackets the GPT pays far less than the n-gram: over all validation characters it is ahead by only
# 0.01 to 0.04 bit (the last printed line), on test by about 0.1. With the opener in the n-gram's view it saves
# about a bit per bracket, and the interval is above zero on every seed. That the n-gram pays so much even where it could see
# the opener is a surprise; a likely reason, not measured here, is that a context of 15 characters has seldom been
# seen in training, so Kneser-Ney backs off to shorter contexts that have lost the opener, while the GPT shares
# what it learned across contexts. With the opener beyond the n-gram's context the saving is above zero on every seed as
# well, which is what a model that can look back to the opener should show; but there are few such brackets, their
# intervals are wide (two start below a tenth of a bit) and overlap the near ones: these runs do not show that the
# saving grows with the distance. The samples agree: the GPT's leave fewer brackets unbalanced than the n-gram's
# (about a third against 0.47 to 0.65 on the lesson's seeds 0-2; ten samples of one seed each, with no interval:
# too few to weigh much), and both far more than
# real text (a real excerpt scores above zero only because it is cut from a longer text): this small GPT has
# learned the rule only in part.

# %% [markdown]
# ## 7. Sampling: temperature, top-k, nucleus
#
# Lesson 07 measured three tricks on pixels. On text they are the knobs of every chat interface: a
# **temperature** $T$ divides the logits (sharper below 1), **top-k** keeps the $k$ most likely tokens, and the
# **nucleus** keeps the smallest set of most likely tokens whose probability reaches $p$; what is kept is
# renormalized.
#
# **Exercise 4 (the sampler's distribution).** Write `next_token_probs(logits, temperature=1.0, top_k=None,
# top_p=None)`: logits `(B, V)`; apply the temperature, then top-k, then the nucleus (of the top-k tokens,
# renormalized), and return the probabilities `(B, V)` a sampler draws from.

# %%
def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """The distribution of the next token: logits / T, top-k, then nucleus, renormalized -> (B, V)."""
    ### BEGIN SOLUTION
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_k is not None:
        kth = probs.topk(top_k, dim=-1).values[..., -1:]
        probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    if top_p is not None:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the tokens ranked above each one
        keep = torch.zeros_like(probs).scatter(-1, order, (before < top_p).float())
        probs = probs * keep
        probs = probs / probs.sum(-1, keepdim=True)
    return probs
    ### END SOLUTION


# %%
check.next_token_probs(next_token_probs)

# %% [markdown]
# What each trick trades, measured on the GPT recipe (seed 0): forty samples of `STYLE_CHARS` = 63 characters for
# each setting (with the one-character prompt they fill the model's 64-position context, so the KV cache serves
# every step), scored by the share of
# their words that are words of the training text (a crude check of spelling, not of sense) and the share of their
# 4-character strings that are distinct (variety; low values mean repetition). Real validation text, cut to the
# same length, is the reference, but not a ceiling: it has topic words the training text lacks. These are tricks, labelled as such:
# the recipe's own distribution is $T = 1$ with nothing cut.

# %%
train_words = set(train_text.split())


def word_share(samples):
    words = [w for s in samples for w in s.split()[1:-1]]  # the first and last may be cut
    return np.mean([w in train_words for w in words])


def distinct_4grams(samples):
    grams = [s[i:i + 4] for s in samples for i in range(len(s) - 3)]
    return len(set(grams)) / len(grams)


settings = {"T = 1 (the model)": {}, "T = 0.7": {"temperature": 0.7}, "T = 0.4": {"temperature": 0.4},
            "top-k 5": {"top_k": 5}, "top-p 0.8": {"top_p": 0.8}}
stride = len(ids["val"]) // 40  # forty one-character prompts spread over the validation text
style_prompts = ids["val"][torch.arange(40) * stride][:, None]
style_chunks = [val_text[i * stride:i * stride + 1 + STYLE_CHARS] for i in range(40)]  # prompt + as many characters
sampling = {"real validation text": (word_share(style_chunks), distinct_4grams(style_chunks))}
for name, kw in settings.items():
    gen = torch.Generator().manual_seed(SEED)
    out = [tokenizer.decode(r) for r in recipe_gpts[0].generate(style_prompts, STYLE_CHARS, generator=gen, **kw)]
    sampling[name] = (word_share(out), distinct_4grams(out))
print(f"{'setting':<24}{'known words':>12}{'distinct 4-grams':>18}")
for name, (w, d) in sampling.items():
    print(f"{name:<24}{w:>12.2f}{d:>18.2f}")

# %%
# NBVAL_CHECK_OUTPUT
w1, d1 = sampling["T = 1 (the model)"]
w4, d4 = sampling["T = 0.4"]
verdict(w4 > w1 and d4 < d1, "T = 0.4 trades variety for spelling: more known words, fewer distinct 4-grams than T = 1")
verdict(all(sampling[k][0] > w1 for k in ("top-k 5", "top-p 0.8")),
        "top-k 5 and top-p 0.8 both raise the share of known words above T = 1's")

# %% [markdown]
# At $T = 1$ about 85% of the words are known ones (0.84 to 0.88 on the lesson's seeds 0-2), against about nine in ten in real text, and the samples
# read as gibberish: many short words are real, and the measure checks words, not sense. At $T = 0.4$ almost every
# word is a known one, but the share of distinct 4-character strings falls to a fraction of $T = 1$'s: the sampler
# loops on its favourite phrases. Top-k and the nucleus sit in between on both measures (the table).

# %% [markdown]
# **Exposure bias.** Training always conditions on real text; sampling conditions on the model's own output. A
# mistake early in a sample is a context the model never saw in training, and nothing in training taught it to
# recover (lesson 07 measured this on digits). Truncation and low temperatures draw fewer unlikely tokens, which is
# one reason they look cleaner, at the cost of variety (the table above); whether they reduce the drift itself is
# not measured here.

# %% [markdown]
# ## 8. The KV cache
#
# Generating $N$ tokens naively recomputes every earlier position at every step: step $t$ costs a pass over $t$
# positions, $O(N^2)$ position-passes in all (and attention's own cost grows with $t$ too). But the keys and values
# of earlier positions never change: position $s$'s state depends on $x_{\le s}$ only (section 4). Keep them, and
# each step computes one new position: its query, key and value, and its attention over the cached keys.
#
# **Exercise 5 (one step with the cache).** Write `kv_cache_step(q_new, k_new, v_new, k_cache, v_cache)`: the new
# token's query, key and value `(B, H, 1, d)` and the caches `(B, H, T, d)`; return the new token's attention output
# `(B, H, 1, d)` and the two caches with its key and value appended `(B, H, T + 1, d)`.

# %%
def kv_cache_step(q_new, k_new, v_new, k_cache, v_cache):
    """One new token's attention with a KV cache -> (output (B, H, 1, d), k_cache', v_cache')."""
    ### BEGIN SOLUTION
    k_cache = torch.cat([k_cache, k_new], dim=-2)
    v_cache = torch.cat([v_cache, v_new], dim=-2)
    # the new token is the last position: it may see every key, its own included (no mask needed)
    out = torch.softmax(q_new @ k_cache.transpose(-2, -1) / math.sqrt(q_new.shape[-1]), dim=-1) @ v_cache
    return out, k_cache, v_cache
    ### END SOLUTION


# %%
check.kv_cache_step(kv_cache_step)

# %%
gencourse.show(tr.CausalSelfAttention)

# %% [markdown]
# The reference keeps one cache per block, filled by the forward pass (above); `generate(..., use_cache=True)` feeds only
# the newest token. The cost per new token, with and without the cache, as the context grows (a 4-block model with
# a context of 512; its weights do not matter for the timing), and the check that both return the same tokens:

# %%
torch.manual_seed(SEED)
timing_model = tr.GPT(V, 512, n_layer=4, n_head=4, n_embd=128).eval()
lengths = [16, 64, 128, 256, 511] if not QUICK else [16, 64]
context_ids = ids["val"][None, :512]


@torch.no_grad()
def ms_per_token(length, cached, repeats=5):
    """Milliseconds to compute the logits of token `length` given `length` earlier tokens."""
    best = float("inf")
    for _ in range(repeats):
        if cached:
            cache = timing_model.new_cache()
            timing_model(context_ids[:, :length - 1], cache)  # the cache as generation leaves it
            start = time.perf_counter()
            timing_model(context_ids[:, length - 1:length], cache)
        else:
            start = time.perf_counter()
            timing_model(context_ids[:, :length])
        best = min(best, time.perf_counter() - start)
    return 1000 * best


kv_times = {n: (ms_per_token(n, False), ms_per_token(n, True)) for n in lengths}
print(f"{'context':>8}{'no cache (ms)':>15}{'cache (ms)':>12}{'speed-up':>10}")
for n, (plain, cached) in kv_times.items():
    print(f"{n:>8}{plain:>15.2f}{cached:>12.2f}{plain / cached:>10.1f}")
gen_a, gen_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
same = torch.equal(timing_model.generate(context_ids[:, :8], 100, generator=gen_a, use_cache=True),
                   timing_model.generate(context_ids[:, :8], 100, generator=gen_b, use_cache=False))

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(lengths, [kv_times[n][0] for n in lengths], "o-", label="no cache: a pass over the whole context")
ax.plot(lengths, [kv_times[n][1] for n in lengths], "s-", label="KV cache: one new position")
ax.set(xlabel="context length", ylabel="ms per new token", title="the cost of one generation step")
ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
speedups = [kv_times[n][0] / kv_times[n][1] for n in lengths]
verdict(same, "with the same random state, generation with and without the cache returns the same 100 tokens")
verdict(speedups[-1] > 2 * speedups[0] and speedups[-1] > 3,
        f"the cache's speed-up grows with the context: more than 3x at {lengths[-1]} tokens and more than twice "
        f"the speed-up at {lengths[0]}")

# %% [markdown]
# ## 9. The same GPT on pixels
#
# Nothing in the GPT knows it reads text. An 8×8 digit in raster order is a sequence of 64 tokens from a vocabulary
# of 17 levels, preceded by a start token: Chen et al. (2020)'s image GPT, in miniature. Its output $i$ is the
# softmax of pixel $i$ given the pixels before it, so lesson 07's exact likelihood and sampler apply unchanged
# (`tr.DigitsGPT` is an `ar.AutoregressiveModel`). A short training here:

# %%
digits_train, digits_val, digits_test = (data.load("digits", split) for split in ("train", "val", "test"))
cpu_start = time.process_time()
live_digits, digits_history = tr.train_digits(epochs=DIGITS_EPOCHS, seed=SEED, device=device)
live_digits_cpu = time.process_time() - cpu_start
live_digits_nll = live_digits.nll(digits_val.images).mean().item()
# the control: lesson 07's PixelCNN, the same epochs, seed and batches, timed on this machine
cpu_start = time.process_time()
live_cnn, _ = ar.train_digits(epochs=DIGITS_EPOCHS, seed=SEED, device=device)
live_cnn_cpu = time.process_time() - cpu_start
live_cnn_nll = live_cnn.nll(digits_val.images).mean().item()

# %% [markdown]
# The image GPT recipe (2 blocks, 64 dimensions, dropout 0.2, 100 epochs with a cosine schedule, the best
# validation epoch kept) has the PixelCNN recipe's parameter count. Both recipes, on the seeds 0, 1 and 2, with the
# training seconds each took (one core), and two variants that ask what seconds buy: the image GPT recipe with its
# schedule squeezed into 40 epochs, and the PixelCNN recipe allowed up to 160 epochs (still stopped early when
# validation stops improving for 8 epochs):

# %%
@torch.no_grad()
def recipe_row(name, seed):
    model, meta = recipes.load(name, seed=seed, with_meta=True)
    return model, {"test": model.nll(digits_test.images).mean().item(), "val": model.nll(digits_val.images).mean().item(),
                   "seconds": meta["train_seconds"], "cpu": meta["cpu_seconds"], "params": recipes.count_parameters(model)}


digits_models, digits_rows = {}, {}
for name in ("transformer", "transformer_short", "autoregressive", "autoregressive_long"):
    for s in recipes.SEEDS:
        digits_models[name, s], digits_rows[name, s] = recipe_row(name, s)
# epochs trained: the variants' checkpoints keep their validation curves (the long PixelCNN's early stopping decides)
for s in recipes.SEEDS:
    digits_rows["transformer", s]["epochs"] = tr.train_digits.__kwdefaults__["default_epochs"]
    digits_rows["autoregressive", s]["epochs"] = ar.RECIPES["pixelcnn"][1]
    for name in ("transformer_short", "autoregressive_long"):
        digits_rows[name, s]["epochs"] = len(recipes.load(name, seed=s, with_meta=True)[1]["history"]["val_loss"])
per_pixel = basics.PixelCategorical(levels=17, alpha=0.1).fit(digits_train.images)
baseline_rows = [("uniform over 17 levels", 64 * math.log(17), 64 * math.log(17)),
                 ("per-pixel categorical", per_pixel.nll(digits_test.images).mean().item(),
                  per_pixel.nll(digits_val.images).mean().item())]
print(f"{'model':<34}{'test NLL':>9}{'bits/dim':>9}{'val NLL':>8}{'epochs':>7}{'train s':>8}{'CPU s':>6}{'params':>9}"
      "   (nats per image, exact)")
for label, t, v in baseline_rows:
    print(f"{label:<34}{t:>9.1f}{metrics.bits_per_dim(t, 64):>9.3f}{v:>8.1f}{'-':>7}{'-':>8}{'-':>6}{'-':>9}")
digits_labels = {"transformer": "image GPT", "transformer_short": "image GPT, 40 epochs",
                 "autoregressive": "PixelCNN", "autoregressive_long": "PixelCNN, up to 160 epochs"}
for name, label in digits_labels.items():
    for s in recipes.SEEDS:
        r = digits_rows[name, s]
        print(f"{label + f' seed {s}':<34}{r['test']:>9.1f}{metrics.bits_per_dim(r['test'], 64):>9.3f}{r['val']:>8.1f}"
              f"{r['epochs']:>7}{r['seconds']:>8.0f}{r['cpu']:>6.0f}{r['params']:>9,}")
gpt_seconds = np.mean([digits_rows["transformer", s]["seconds"] for s in recipes.SEEDS])
cnn_seconds = np.mean([digits_rows["autoregressive", s]["seconds"] for s in recipes.SEEDS])
print(f"the image GPT recipe trained {gpt_seconds / cnn_seconds:.0f}x the PixelCNN recipe's seconds "
      f"(each seed on one thread, three side by side on two cores)")
print(f"trained here, {DIGITS_EPOCHS} epochs each: image GPT val {live_digits_nll:.1f} ({live_digits_cpu:.0f} s of CPU), "
      f"PixelCNN val {live_cnn_nll:.1f} ({live_cnn_cpu:.0f} s of CPU)")
gpt_test, gpt_short_test, cnn_test, cnn_long_test = (np.array([digits_rows[name, s]["test"] for s in recipes.SEEDS])
                                                     for name in digits_labels)
_ = gencourse.headline("image GPT: test NLL (nats)", gpt_test.mean(), "{:.1f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
for (name, label), marker in zip(digits_labels.items(), "o^sv"):
    ax.scatter([digits_rows[name, s]["cpu"] for s in recipes.SEEDS],
               [digits_rows[name, s]["test"] for s in recipes.SEEDS], marker=marker, label=label)
ax.set(xscale="log", xlabel="training CPU seconds (one core)", ylabel="test NLL (nats per image)",
       title="what training seconds buy (seeds 0-2)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Samples of the image GPT recipe (seed of this run), temperature 1, scored like every family's:

# %%
gen = torch.Generator().manual_seed(SEED)
start = time.perf_counter()
digit_samples = digits_models["transformer", SEED % 3].sample(N_SAMPLES, generator=gen)
digit_seconds = time.perf_counter() - start
gpt_quality = metrics.sample_quality(digit_samples)
cnn_quality = metrics.sample_quality(digits_models["autoregressive", SEED % 3].sample(N_SAMPLES, generator=gen))
real = metrics.reference_quality()
print(metrics.format_quality({"image GPT": gpt_quality, "PixelCNN": cnn_quality}, real))
print(f"{N_SAMPLES} image GPT samples in {digit_seconds:.1f} s (64 network evaluations each)")
_ = gencourse.headline("image GPT samples: recognized", gpt_quality["recognized"], "{:.2f}")
viz.image_grid(digit_samples[:60], nrow=15, title="image GPT samples, temperature 1")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
verdict(all(g < baseline_rows[1][1] - 15 for g in gpt_test),
        "every image GPT seed beats independent pixels (the per-pixel categorical) by > 15 nats")
verdict(abs(gpt_test.mean() - cnn_test.mean()) < 1.5,
        "at equal parameters, the image GPT's test NLL is within 1.5 nats of the PixelCNN's (mean of seeds 0-2)")
verdict(gpt_seconds > 5 * cnn_seconds, "the image GPT recipe was trained for more than 5x the PixelCNN's seconds to "
        "get there")
long_epochs = [digits_rows["autoregressive_long", s]["epochs"] for s in recipes.SEEDS]
verdict(max(long_epochs) < 40 and abs(cnn_long_test.mean() - cnn_test.mean()) < 0.5,
        f"allowed up to {recipes.PIXELCNN_LONG_EPOCHS} epochs, the PixelCNN stops early on every seed (before epoch "
        "40) and its test NLL moves by less than 0.5 nats (mean of seeds 0-2)")
verdict(all(g > c + 2 for g, c in zip(gpt_short_test, cnn_test)),
        f"with its schedule squeezed into {digits_rows['transformer_short', 0]['epochs']} epochs, every image GPT seed is more than 2 nats "
        "behind the PixelCNN recipe of its seed on test")
verdict(min(digits_rows["transformer_short", s]["cpu"] for s in recipes.SEEDS)
        > max(digits_rows[name, s]["cpu"] for name in ("autoregressive", "autoregressive_long") for s in recipes.SEEDS),
        f"and those {digits_rows['transformer_short', 0]['epochs']} epochs took more CPU seconds, on every seed, than any PixelCNN run")
verdict(live_digits_nll > live_cnn_nll + 10,
        f"trained here for the same {DIGITS_EPOCHS} epochs on the same batches, the image GPT is > 10 nats behind the PixelCNN on val")
if device.type == "cpu":
    verdict(live_digits_cpu > live_cnn_cpu, "and its epochs took more CPU seconds than the PixelCNN's")
else:
    print("(the CPU-seconds comparison is skipped when the models train on a GPU)")
print(metrics.compare_to_real(gpt_quality, "recognized", 0.5, real), "(image GPT samples; recognized alone, "
      "the 10-class guard is discussed below)")
verdict(not metrics.beats(cnn_quality, gpt_quality, "recognized"),
        "the image GPT's samples are not recognized less often than the PixelCNN's (beyond the 95% intervals)")
verdict(gpt_quality["memorization"] >= 0.8, "image GPT samples are new digits, not copies (memorization >= 0.8)")

# %% [markdown]
# **Level likelihood, at a price in seconds.** At equal parameters, the image GPT's exact test NLL is level with the
# PixelCNN's (means over the seeds in the table; within 1.5 nats, checked), but its recipe trained about 19 times
# as many seconds (the printout): 100 epochs against the PixelCNN recipe's 20, about 3.7 times the seconds per epoch.
#
# It needs more than 40 epochs: with the same schedule squeezed into 40, it is more than 2 nats behind on every
# seed, having already spent more CPU seconds than any PixelCNN run (whether fewer than 100 would do is not
# measured). And more epochs of its recipe buy the PixelCNN nothing: allowed 160, its early stopping ends training
# within 40 (27 to 30, the table) and its test NLL barely moves (checked above; the figure puts each run at its
# seconds). So at no training budget measured here is the image GPT ahead: at its recipe's seconds the two are
# level, because the PixelCNN stops after well under a tenth of them; at 40 epochs, and at 8 (below), it is behind. Trained here beside a PixelCNN for the same 8 epochs on the same
# batches, the image GPT is more than 10 nats behind on validation, and its epochs took more CPU seconds (the
# printout). A likely reason: a convolution has locality built in (the neighbouring pixels
# matter most, and one small kernel serves the whole image), while attention must learn it from 1000 digits,
# the 2D layout included, through its position embeddings. The runs do not isolate this cause: the two models
# also differ in depth, dropout and schedule.
#
# Its samples are recognized at least as often as the PixelCNN's and are new digits, not copies. The protocol's
# guard also asks for all 10 classes, each the label of at least 5% of the samples: the `classes_covered` row. It is
# not met on every draw, for either model (a class may fall just below the 5% line):
# the course's full sample goal is borderline here, which is why the verdict above checks recognized alone and says
# so.

# %% [markdown]
# ## 10. On 28×28 digits
#
# With `DATASET = "mnist"` (or `"fashion-mnist"`) the same GPT reads MNIST's 784 pixels of 256 levels as 784
# tokens (4 blocks, 128 dimensions): attention over 784 positions, so a GPU run; it samples with the KV cache, one
# pixel per step. The likelihood is exact, reported in bits per dimension as is usual for MNIST.
#
# `PATCH = 2` makes a token of each 2×2 patch instead, as vision transformers do: 196 tokens, each embedded by a
# linear map of its 4 values, and the head gives each of the next patch's 4 pixels its own categorical over the
# 256 levels, given the earlier patches. The chain rule is then coarser: pixels inside a patch are independent
# given the past, so the model cannot make neighbours agree except through earlier patches; its likelihood is
# still exact. A quarter of the positions cost a quarter of the MLPs' work and a sixteenth of the attention
# matrix's, so a CPU can run a few epochs. A few are not enough: in the README's `make bench-mnist` table, after 3
# epochs on 7,500 digits its samples are speckled strokes, few of them digits.

# %%
if DATASET == "digits":
    print('Section 10 runs with DATASET = "mnist" or "fashion-mnist" (a GPU is best): set it in the parameters cell.')
else:
    big_train, big_test = data.load(DATASET, "train"), data.load(DATASET, "test")
    print(f"{DATASET}: {len(big_train)} training images, shape {big_test.shape}, {big_test.levels} levels"
          + (f"; the first {SUBSET} used" if SUBSET else ""))
    big_model, big_history = tr.train_images(DATASET, epochs=EPOCHS_IMAGES, subset=SUBSET, seed=SEED, quick=QUICK,
                                             batch_size=8 if QUICK else 64, patch=PATCH, device=device)
    with torch.no_grad():
        big_nll = torch.cat([big_model.nll(b.to(device)).cpu() for b in big_test.images[:N_SAMPLES].split(100)])
    name = f"image GPT on {DATASET}" + (f", {PATCH}x{PATCH} patches" if PATCH > 1 else "")
    print(f"{name}: test NLL {big_nll.mean():.1f} nats per image, "
          f"{metrics.bits_per_dim(big_nll.mean().item(), big_model.num_pixels):.3f} bits/dim (exact; "
          f"{len(big_nll)} test images)")
    gen = torch.Generator().manual_seed(SEED)
    big_samples = big_model.sample(min(N_SAMPLES, 200), generator=gen)
    print(metrics.format_quality({name: metrics.sample_quality(big_samples, DATASET)},
                                 dataset=DATASET))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    viz.image_grid(big_samples[:32], nrow=8, ax=axes[0], title=f"{name}, temperature 1")
    viz.image_grid(big_test.images[:32], nrow=8, ax=axes[1], title=f"real {DATASET} test images")
    plt.show()

# %% [markdown]
# ## 11. Tokens beyond characters
#
# Characters keep this lesson small. Practical language models read **subword tokens** built by byte-pair encoding
# (BPE; Sennrich et al. 2016): start from single characters (or bytes), and repeatedly merge the most frequent
# adjacent pair into a new token until the vocabulary reaches its size. Frequent words become one token, rare ones
# a few. Trained on this corpus's training text (with the `tokenizers` library) and measured on the validation
# text:

# %%
bpe = text.bpe_example(train_text, (256, 512, 1024), val_text=val_text)
print(f"{'vocabulary':>10}{'characters per token':>22}   the example sentence, token by token ('▁' marks a space)")
print(f"{V:>10}{1.0:>22.2f}   (characters)")
for size, r in bpe.items():
    print(f"{size:>10}{r['chars_per_token']:>22.2f}   {' | '.join(r['tokens'][:14])}")

# %% [markdown]
# Fewer tokens per text means a longer text fits in the same context and costs fewer steps to generate, at the
# price of a larger softmax and embedding table. Bits per *character* stay the comparable measure across
# tokenizers: a model's total bits over a text divided by its characters.

# %% [markdown]
# ## Summary
#
# - A language model is lesson 07's chain rule over tokens; bits per character on held-out text measure it.
# - Counts with Kneser-Ney smoothing are a strong baseline on a small corpus; a window MLP shares statistics
#   between contexts; attention looks up any earlier position.
# - Attention is $\operatorname{softmax}(QK^\top/\sqrt d + M)V$; the causal mask is MADE's after a shift by one;
#   without position embeddings one block cannot see the order of the past (two blocks can, through the
#   mask); GPTs learn an embedding per position.
# - On 340k characters (repeated paragraphs removed) and under five minutes of two CPU cores, the GPT is ahead of
#   a Kneser-Ney n-gram (order chosen on validation), but by little: about 0.1 bit per character on test and a few
#   hundredths on validation. Their mixture beats both (they are right in different places), and at closing brackets
#   the GPT saves about a bit per bracket, whether or not the opener is in the n-gram's view (the intervals of the
#   few farther ones are wide).
# - Temperature, top-k and the nucleus trade variety for known words; with the KV cache each step computes one new
#   position (its attention still reads every cached key), and the same tokens come out.
# - The same GPT on pixels is level with the PixelCNN's likelihood at equal parameters; its recipe trained about 19
#   times the PixelCNN's seconds and needs more than 40 epochs (at 40 it is behind), while more epochs buy the
#   PixelCNN nothing (its early stopping ends training within 40).
#
# **Next:** lesson 10 puts this GPT to work on the tokens of a compressed image, the recipe of today's image
# generators; lesson 11 compares every family on the same digits, with the same metrics, the image GPT among them.
