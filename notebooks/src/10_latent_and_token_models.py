# %% [markdown]
# # 10 · Latent and token models
#
# *How today's image generators are built, in miniature.*
#
# **Learning objectives.** After this lesson you can
# - say why large image generators first **compress** the image with an autoencoder and then model the code, and
#   what that buys (a smaller problem for the prior: fewer positions, and for a token GPT fewer steps) and what it
#   costs (the decoder limits quality and likelihood);
# - write **vector quantization**: the nearest code, the **straight-through** gradient, and the codebook and
#   commitment terms with their stop-gradients; measure a codebook's health (perplexity, dead codes) and repair it;
# - train a **VQ-VAE** that turns an 8×8 digit into 16 tokens (the lesson loads the course's trained one), and put
#   lesson 09's GPT on those tokens: an
#   autoregressive prior with an exact token likelihood, sampled by a loop you write;
# - decode tokens in parallel with **MaskGIT** and measure what fewer network evaluations cost in quality;
# - **inpaint**: complete the lower half of a digit from its upper half's tokens;
# - run lesson 08's **flow matching in a continuous latent** (latent diffusion's recipe), with an MLP and with a tiny
#   **diffusion transformer** (DiT, adaLN-Zero), against flow matching on the pixels at equal parameters.
#
# **Running time:** about 70 s on a 2-core laptop CPU (130 CPU seconds with two threads, measured by `make bench`); nothing to
# download. The first stages and the token GPT are the course's recipes (`make recipes`), loaded from their
# checkpoints: the VQ-VAE with its GPT prior, and the autoencoder (whose recipe DiT appears once, as a reference
# row); `RETRAIN = True` trains both recipes here (a few minutes more). The experiments on top of them (dead
# codes, the grid sweep, MaskGIT, the flow-matching comparison) train live, for fewer epochs than the library's
# defaults (the parameters cell says which); on a GPU, `GENCOURSE_DEVICE=auto` trains them there.

# %% tags=["parameters"]
# Parameters: change them here, or set the environment variables before starting Jupyter.
import os

QUICK = os.environ.get("GENCOURSE_QUICK", "0") == "1"  # smallest settings: only checks that the lesson runs
SEED = int(os.environ.get("GENCOURSE_SEED", 0))
RETRAIN = os.environ.get("GENCOURSE_RETRAIN", "0") == "1"  # train the two recipes here instead of loading them
VQ_EPOCHS = int(os.environ.get("GENCOURSE_VQ_EPOCHS", 2 if QUICK else 10))  # section 3's dead-code runs (recipe: 30)
SWEEP_EPOCHS = int(os.environ.get("GENCOURSE_SWEEP_EPOCHS", 1 if QUICK else 4))  # the grid x K sweep
MASKGIT_EPOCHS = int(os.environ.get("GENCOURSE_MASKGIT_EPOCHS", 2 if QUICK else 30))  # MaskGIT (library default: 100)
FM_EPOCHS = int(os.environ.get("GENCOURSE_FM_EPOCHS", 2 if QUICK else 100))  # latent and pixel MLPs (library default: 300)
DIT_EPOCHS = int(os.environ.get("GENCOURSE_DIT_EPOCHS", 2 if QUICK else 40))  # the DiT (library default: 600)
N_SAMPLES = int(os.environ.get("GENCOURSE_SAMPLES", 100 if QUICK else 1000))  # samples scored per model
DEVICE = os.environ.get("GENCOURSE_DEVICE", "cpu")  # "auto" picks a GPU when there is one
DATASET = os.environ.get("GENCOURSE_DATASET", "digits")  # section 8: "mnist" / "fashion-mnist" (sections 1-7: digits)
SUBSET = int(os.environ.get("GENCOURSE_SUBSET", 512 if QUICK else 0)) or None  # section 8: first SUBSET training images
EPOCHS_28 = {  # section 8's five trainings on 28x28 images (defaults: about 10 min on a free Colab GPU, an estimate)
    "vqvae": int(os.environ.get("GENCOURSE_VQ28_EPOCHS", 1 if QUICK else 8)),
    "prior": int(os.environ.get("GENCOURSE_PRIOR28_EPOCHS", 1 if QUICK else 20)),
    "autoencoder": int(os.environ.get("GENCOURSE_AE28_EPOCHS", 1 if QUICK else 10)),
    "latent flow": int(os.environ.get("GENCOURSE_FM28_EPOCHS", 2 if QUICK else 40)),
    "pixel flow": int(os.environ.get("GENCOURSE_PIXEL28_EPOCHS", 1 if QUICK else 20)),
}

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
from torch.nn import functional as F

import gencourse
from gencourse import check, data, latent, metrics, nets, recipes, viz, vq
from gencourse import flow_matching as fm
from gencourse.train import train_annealed

gencourse.setup(seed=SEED)
device = gencourse.get_device(DEVICE)


def verdict(ok, claim):
    """Print one checked claim: PASS or FAIL, then the claim with its tolerance."""
    print(("PASS " if ok else "FAIL ") + claim)


def ms_per_1000(sample_fn, n):
    """Wall-clock milliseconds per 1000 samples of sample_fn(n) (the best of two runs; the result of the last)."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        out = sample_fn(n)
        best = min(best, time.perf_counter() - start)
    return 1000 * best * 1000 / n, out


# %% [markdown]
# ## 1. Why compress first
#
# An 8×8 digit is 64 pixels of 17 levels. Lessons 07 and 09 modelled it pixel by pixel, and sampling one digit
# took 64 network evaluations. Most of those pixels are predictable: the border is black, strokes are smooth,
# and a pixel is nearly fixed by its neighbours. A model that spends one step per pixel spends most steps on
# what it could have guessed.
#
# Large image generators split the work in two (Rombach et al. 2022; van den Oord et al. 2017; Esser et al. 2021):
#
# 1. an **autoencoder** compresses the image to a much smaller **code**, a grid of discrete *tokens* or of
#    continuous vectors, and decodes it back; it is trained once, for reconstruction;
# 2. a **generative model of the codes**: a transformer over tokens (this lesson's sections 4-6), or diffusion /
#    flow matching over continuous latents (section 7). A sample is a generated code, decoded once.
#
# What it buys: the generative model works on 16 numbers or tokens instead of 64 pixels (on real images, a
# 256×256×3 image becomes a 32×32×4 latent: 64 times fewer positions, 48 times fewer numbers), so on large images
# each step is cheaper and, for an autoregressive model, there are fewer steps. What it costs: **the decoder is a
# ceiling**. No prior can produce a digit the decoder cannot draw, so the decoded *real* codes are the reference a
# perfect prior would reach, and a
# likelihood of the tokens is a likelihood of the code, not of the pixels. We measure both sides.

# %%
if DATASET not in data.LEVELS:
    raise ValueError(f"DATASET must be one of {', '.join(data.LEVELS)}; got {DATASET!r}")
train_set, val_set, test_set = (data.load("digits", split) for split in ("train", "val", "test"))
train_x, val_x, test_x = train_set.images, val_set.images, test_set.images
print(f"digits: {len(train_x)} train, {len(val_x)} val, {len(test_x)} test images of shape {tuple(train_x.shape[1:])}")
print(f"as pixels: 64 positions x 17 levels; uniform guess {64 * math.log(17):.1f} nats per image")
print(f"as tokens: 16 positions x 32 codes;  uniform guess {16 * math.log(32):.1f} nats per image")

# %% [markdown]
# ## 2. Vector quantization
#
# An encoder $f$ (lesson 02's notation) maps an image to a grid of vectors $z_e = f(x)$, shape $(D, g, g)$: here
# $D = 16$ numbers at each of $g \times g = 4 \times 4$ positions. A **codebook** holds $K$ vectors
# $e_1, \dots, e_K \in \mathbb R^D$. Quantization replaces every grid vector by its nearest code:
#
# $$k_{ij} = \operatorname*{arg\,min}_{k}\, \lVert z_{e,ij} - e_k \rVert_2, \qquad z_{q,ij} = e_{k_{ij}} . \tag{1}$$
#
# The digit is now 16 integers $k_{ij} \in \{0, \dots, K-1\}$, its **tokens**, and the decoder $g$ maps $z_q$
# back to an image, $\hat x = g(z_q)$.
#
# **The gradient.** The argmin is piecewise constant: its gradient is zero almost everywhere, so the encoder
# would learn nothing from the reconstruction. The **straight-through estimator** (Bengio et al. 2013) pretends
# that quantization is the identity on the way back: it copies the decoder's gradient at $z_q$ onto $z_e$. With
# $\operatorname{sg}[\cdot]$ the stop-gradient (`.detach()`: the value passes, the gradient does not),
#
# $$z_{q,ij} = z_{e,ij} + \operatorname{sg}[e_{k_{ij}} - z_{e,ij}]: \qquad \text{value } e_{k_{ij}}, \qquad \frac{\partial z_q}{\partial z_e} = I . \tag{2}$$
#
# **Exercise 1 (the quantizer).** Write `vector_quantize(z, codebook)`: `z` `(B, D, H, W)`, `codebook` `(K, D)`;
# return `z_q` like `z`, by eq. (2), and the indices `(B, H, W)` (int64) of eq. (1). The check looks at the values
# *and* at where the gradient goes.

# %%
def vector_quantize(z, codebook):
    """Nearest code of every grid vector, straight-through -> (z_q (B, D, H, W), indices (B, H, W) int64)."""
    ### BEGIN SOLUTION
    B, D, H, W = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, D)  # (B*H*W, D): one row per grid position
    d2 = (flat ** 2).sum(1, keepdim=True) - 2 * flat @ codebook.T + (codebook ** 2).sum(1)  # (B*H*W, K)
    indices = d2.argmin(1)
    e = codebook[indices].view(B, H, W, D).permute(0, 3, 1, 2)
    return z + (e - z).detach(), indices.view(B, H, W)
    ### END SOLUTION


# %%
check.vector_quantize(vector_quantize)

# %% [markdown]
# **Training the codebook.** With eq. (2) nothing moves the codes: the decoder's gradient skips them. VQ-VAE adds
# two terms (van den Oord et al. 2017, eq. 3), each a mean over all elements here:
#
# $$\mathcal L = \underbrace{\lVert x - g(z_q) \rVert^2}_{\text{reconstruction}}
# + \underbrace{\lVert \operatorname{sg}[z_e] - e \rVert^2}_{\text{codebook}}
# + \beta\, \underbrace{\lVert z_e - \operatorname{sg}[e] \rVert^2}_{\text{commitment}} . \tag{3}$$
#
# The **codebook** term pulls each chosen code toward the encoder outputs assigned to it (a gradient step of
# $k$-means); the **commitment** term, weighted by $\beta = 0.25$, keeps the encoder near its codes so that its
# outputs do not drift away faster than the codes can follow. The two stop-gradients decide which side each term
# trains.
#
# **Exercise 2 (the two terms).** Write `vq_loss(z, e, beta)`: `z` the encoder outputs, `e` the chosen codes, shaped
# like `z` (`codebook[indices]` moved back to channels first, before the straight-through); return the scalar codebook + $\beta$ · commitment
# of eq. (3). The check differentiates your loss with respect to `z` and to `e` separately.

# %%
def vq_loss(z, e, beta):
    """Codebook term + beta * commitment term of eq. (3), means over all elements -> scalar."""
    ### BEGIN SOLUTION
    return F.mse_loss(e, z.detach()) + beta * F.mse_loss(z, e.detach())
    ### END SOLUTION


# %%
check.vq_loss(vq_loss)

# %% [markdown]
# The library's quantizer does both in one module (its distance is expanded as
# $\lVert z\rVert^2 - 2 z\cdot e + \lVert e\rVert^2$, one matrix product):

# %%
gencourse.show(vq.VectorQuantizer.forward)

# %% [markdown]
# Autograd confirms eq. (2) on the library's quantizer: the Jacobian of $z_q$ with respect to $z_e$ is the identity
# (so the gradient of $\sum z_q$ is all ones), and the codebook gets its gradient from the loss alone.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(SEED)
quantizer = vq.VectorQuantizer(8, 4)
z_probe = torch.randn(2, 4, 3, 3, requires_grad=True)
z_q, _, probe_loss = quantizer(z_probe)
grad_z, grad_codes = torch.autograd.grad(z_q.sum(), [z_probe, quantizer.codebook], allow_unused=True)
verdict(torch.equal(grad_z, torch.ones_like(z_probe)), "d(sum z_q)/d z_e is all ones: the straight-through Jacobian is I")
verdict(grad_codes is None, "no gradient reaches the codebook through z_q")
grad_codes = torch.autograd.grad(probe_loss, quantizer.codebook)[0]
verdict(grad_codes.abs().sum() > 0, "the codebook term of the loss does reach the codebook")

# %% [markdown]
# ## 3. A VQ-VAE on digits
#
# The encoder is two convolutions and one stride-2 convolution ($8 \to 4$), so a digit becomes a $4 \times 4$
# grid of $D = 16$ numbers, quantized with $K = 32$ codes; the decoder mirrors it and ends in a sigmoid. The
# decoder is deterministic: decoded tokens *are* the image. The lesson's VQ-VAE is the course's `tokens` recipe,
# trained by `make recipes` with `vq.train_digits`: 30 epochs with the **dead-code restart** explained below, then
# the token GPT of section 4 on its tokens (about 50 CPU seconds for both; `RETRAIN = True` trains them here).
# Below, six shorter runs measure what the restart does.

# %%
if RETRAIN:
    token_recipe, _ = vq.train_digits(seed=SEED, quick=QUICK, device=device)
else:
    token_recipe, token_meta = recipes.load("tokens", seed=SEED, with_meta=True)
    print(f"the tokens recipe, seed {SEED}: trained in {token_meta['cpu_seconds']:.0f} CPU s on {token_meta['machine']}")
vqvae, ar_prior = token_recipe.vqvae.cpu(), token_recipe.prior.cpu()  # the VQ-VAE and (section 4) its token GPT

# %%
test_tokens = vqvae.encode(test_x)  # (447, 4, 4) int64
recon = vqvae.decode(test_tokens)
fig, axes = plt.subplots(1, 2, figsize=(10, 2.6))
viz.image_grid(test_x[:20], nrow=10, ax=axes[0], title="real test digits")
viz.image_grid(recon[:20], nrow=10, ax=axes[1], title="decoded from their 16 tokens")
plt.show()
print("the tokens of the first test digit:\n", test_tokens[0].numpy())

# %% [markdown]
# Sixteen integers per digit carry most of the picture: the strokes keep their shape and the digit its identity;
# what is lost is the exact intensity along a stroke, which comes back a little smoothed.
#
# **Codebook health.** A code that no encoder output picks gets no gradient from eq. (3) and never moves: a
# **dead code**, capacity paid for and unused. Two numbers describe the usage $p_k$ (the share of grid positions
# that pick code $k$): the **dead share**, and the **perplexity** $\exp(H(p)) = \exp(-\sum_k p_k \ln p_k)$, the
# effective number of codes in use ($K$ when all are used equally, 1 when one code takes everything).
#
# **Exercise 3 (codebook usage).** Write `codebook_perplexity(indices, num_codes)` -> `(perplexity, dead_share)`,
# two Python floats, for indices of any shape: the dead share is the share of the $K$ codes with $p_k = 0$, and
# unused codes add nothing to the entropy ($0 \ln 0 = 0$).

# %%
def codebook_perplexity(indices, num_codes):
    """exp(entropy of the code usage) and the share of codes never used -> (float, float)."""
    ### BEGIN SOLUTION
    counts = torch.bincount(indices.flatten(), minlength=num_codes).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return entropy.exp().item(), (counts == 0).double().mean().item()
    ### END SOLUTION


# %%
check.codebook_perplexity(codebook_perplexity)

# %% [markdown]
# The remedy used by Jukebox (Dhariwal et al. 2020): every few epochs, move each code that no batch picked onto a
# randomly chosen recent encoder output, where it is at once some output's nearest code.

# %%
gencourse.show(vq.restart_dead_codes)

# %% [markdown]
# **The experiment.** The same VQ-VAE trained for `VQ_EPOCHS` epochs with and without restarts, on the training
# seeds 0, 1 and 2: how many codes die depends on the run.

# %%
# about 20 s on 2 threads at VQ_EPOCHS = 10 (six VQ-VAEs)
runs = {(s, restart): vq.train_vqvae(train_x, val_x, num_codes=32, grid=4, epochs=VQ_EPOCHS, seed=s,
                                     restart_dead=restart, device=device, verbose=False)
        for s in (0, 1, 2) for restart in (True, False)}
usage = {key: vq.codebook_usage(model.cpu().encode(train_x), 32) for key, (model, _) in runs.items()}
mse = {key: vq.reconstruction_mse(model, val_x) for key, (model, _) in runs.items()}
print(f"{'VQ-VAE 4x4, K = 32':<24}{'val MSE':>9}{'perplexity':>12}{'dead codes':>12}   ({VQ_EPOCHS} epochs)")
for (s, restart), u in usage.items():
    name = f"seed {s}, {'with' if restart else 'without'} restarts"
    print(f"{name:<24}{mse[s, restart]:>9.4f}{u['perplexity']:>12.1f}{100 * u['dead_share']:>11.0f}%")
loaded = vq.codebook_usage(vqvae.encode(train_x), 32)  # the recipe: 30 epochs with restarts
print(f"{'the loaded recipe':<24}{vq.reconstruction_mse(vqvae, val_x):>9.4f}{loaded['perplexity']:>12.1f}"
      f"{100 * loaded['dead_share']:>11.0f}%   (seed {SEED}, 30 epochs with restarts)")
fig, ax = plt.subplots(figsize=(5, 3))
for s in (0, 1, 2):
    ax.plot(runs[s, True][1]["perplexity"], color="C0", label="with restarts" if s == 0 else None)
    ax.plot(runs[s, False][1]["perplexity"], color="C1", label="without restarts" if s == 0 else None)
ax.axhline(32, color="grey", ls=":", label="K = 32")
ax.set(xlabel="epoch", ylabel="perplexity of the code usage", title="codebook usage during training")
ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
dead = {restart: [usage[s, restart]["dead_share"] for s in (0, 1, 2)] for restart in (True, False)}
verdict(max(dead[True]) <= 0.05, "with restarts, at most 5% of the 32 codes are dead, on every seed")
verdict(sum(dead[False]) / 3 >= 0.1 and max(dead[False]) >= 0.2,
        "without restarts, 10% or more of the codes are dead on average over the seeds, 20% or more on the worst")
verdict(all(usage[s, True]["perplexity"] > usage[s, False]["perplexity"] for s in (0, 1, 2)),
        "restarts raise the perplexity (the codes in effective use) on every seed")
verdict(all(mse[s, True] < mse[s, False] for s in (0, 1, 2)),
        f"at {VQ_EPOCHS} epochs, restarts lower the reconstruction error on validation on every seed")

# %% [markdown]
# (The last row is the VQ-VAE the lesson loaded: the same model after three times the epochs.) Without restarts
# part of the codebook dies in the first epochs and stays dead: over a third of the codes on each of seeds 0-2 in
# these runs (the table; the verdict checks at least a fifth on the worst). With them no code stays dead and the perplexity comes closer to $K$. In
# runs this short the revived codes also pay in reconstruction: the validation error is lower with restarts on
# every seed (the last verdict), plausibly because a dead code is capacity the decoder never gets to use. How large the gap
# stays after longer training was not measured here.
#
# **How many tokens, how many codes?** A short sweep: a $2 \times 2$ grid (4 tokens, one more stride-2
# convolution) or $4 \times 4$, and $K = 8, 32, 128$, each trained for only `SWEEP_EPOCHS` epochs (under two
# seconds each), with restarts after the second epoch only. The errors are therefore higher than above; the
# comparison is at equal epochs.

# %%
# about 10 s on 2 threads at SWEEP_EPOCHS = 4 (six VQ-VAEs)
sweep = {}
for grid in (2, 4):
    for K in (8, 32, 128):
        model, hist = vq.train_vqvae(train_x, val_x, num_codes=K, grid=grid, epochs=SWEEP_EPOCHS, seed=SEED,
                                     device=device, verbose=False)
        u = vq.codebook_usage(model.cpu().encode(train_x), K)
        sweep[grid, K] = (hist["val_mse"][-1], u["perplexity"], u["dead_share"])
print(f"{'grid':>6}{'K':>6}{'bits per digit':>16}{'val MSE':>10}{'perplexity':>12}{'dead':>7}   ({SWEEP_EPOCHS} epochs each)")
for (grid, K), (m, ppl, dead) in sweep.items():
    print(f"{f'{grid}x{grid}':>6}{K:>6}{grid * grid * math.log2(K):>16.0f}{m:>10.4f}{ppl:>12.1f}{100 * dead:>6.0f}%")

# %%
# NBVAL_CHECK_OUTPUT
verdict(all(sweep[4, K][0] < sweep[2, K][0] for K in (8, 32, 128)),
        "at every K, 16 tokens (4x4) reconstruct better than 4 tokens (2x2) at equal epochs")

# %% [markdown]
# At every $K$ the $4 \times 4$ grid beats the $2 \times 2$ one at equal epochs (one seed, 4 epochs: a first look,
# not a law). A larger $K$ stores more bits per token, $\log_2 K$, but at 4 epochs it need not reconstruct better
# even where its codes are used (compare the $4 \times 4$ rows' perplexity and error in the table); in a run this
# short, the $2 \times 2$ grid with $K = 32$ or $128$ can collapse onto a few codes (look at its perplexity and dead share
# in the table), and one round of restarts does not revive every code (the dead column).

# %% [markdown]
# ## 4. Tokens as a language
#
# A digit is now a sentence of 16 words from a vocabulary of 32. Lesson 09's GPT models it unchanged: in raster
# order, after a start token, output $t$ predicts token $t$ given the tokens before it,
#
# $$p(k) = \prod_{t=1}^{16} p(k_t \mid k_{<t}), \qquad \text{bits per token} = \frac{-\log p(k)}{16 \ln 2}, \tag{4}$$
#
# an **exact** likelihood of the tokens. (It is not a likelihood of the pixels: the decoder is deterministic, and
# the 447 test digits' tokens are what is scored.) This is the recipe of VQ-VAE's PixelCNN prior, DALL-E, VQGAN and
# Parti, at the scale of a toy. The baselines: a uniform guess, $16 \ln 32$, and a **per-position categorical**,
# each of the 16 positions with its own histogram of codes from the training tokens (add-½ smoothing).
#
# The GPT is the `tokens` recipe's, loaded in section 3 (`ar_prior`): `vq.train_token_prior("ar", ...)` on the
# VQ-VAE's training tokens, 150 epochs with dropout 0.3, the epoch with the best validation NLL kept.

# %%
train_tokens, val_tokens = vqvae.encode(train_x), vqvae.encode(val_x)
print(f"token GPT: {latent.num_parameters(ar_prior):,} parameters, a context of {ar_prior.num_tokens} tokens "
      f"after the start token")

# %%
def per_position_nll(tokens, fitted_on, K=32, alpha=0.5):
    """NLL (nats per image, (N,)) of a categorical per position fitted on `fitted_on` with add-alpha smoothing."""
    flat, ref = tokens.reshape(len(tokens), -1), fitted_on.reshape(len(fitted_on), -1)
    counts = torch.stack([torch.bincount(ref[:, t], minlength=K) for t in range(ref.shape[1])]).double() + alpha
    log_p = (counts / counts.sum(1, keepdim=True)).log()  # (T, K)
    return -log_p.gather(1, flat.T).sum(0)


with torch.no_grad():
    ar_nll = {"val": ar_prior.nll(val_tokens).mean().item(), "test": ar_prior.nll(test_tokens).mean().item()}
rows = [("uniform over 32 codes", 16 * math.log(32), 16 * math.log(32)),
        ("per-position categorical", per_position_nll(val_tokens, train_tokens).mean().item(),
         per_position_nll(test_tokens, train_tokens).mean().item()),
        ("token GPT (the recipe)", ar_nll["val"], ar_nll["test"])]
print(f"{'model':<32}{'val':>8}{'test':>8}{'bits/token':>12}   (nats per image of 16 tokens; exact)")
for name, v, t in rows:
    print(f"{name:<32}{v:>8.1f}{t:>8.1f}{t / 16 / math.log(2):>12.2f}")
_ = gencourse.headline("token GPT: test NLL (nats per 16 tokens)", ar_nll["test"], "{:.1f}")

# %%
# NBVAL_CHECK_OUTPUT
verdict(rows[2][2] < rows[1][2] - 4, "the token GPT beats the per-position categorical by more than 4 nats on test")
verdict(rows[1][2] < rows[0][2], "the per-position categorical beats the uniform guess")

# %% [markdown]
# The tokens are far from random: the per-position histograms already save about 10 nats over the uniform
# guess, and the GPT, which sees the tokens before each one, saves several more (the table). These
# numbers are per 16 tokens, and the pixel models' (lessons 07 and 09) are per 64 pixels: they measure different
# things and are not compared.
#
# **Exercise 4 (ancestral sampling).** Write `sample_tokens(prior, n, temperature)`: start `n` sequences with the
# start token `prior.start`; `prior.num_tokens` times (16 here), run `prior.gpt` on the sequence so far (it returns
# logits `(n, length, K)`, one row per position, the last predicting the next token), take the logits at the last
# position, divide by the temperature, draw one token per sequence and append it. Return the drawn tokens, without
# the start token, as `(n, prior.grid, prior.grid)`. The check draws 10,000 grids from a tiny prior of 3 codes on a $2 \times 2$
# grid and compares their frequencies with the exact probabilities of all 81 grids.

# %%
@torch.no_grad()
def sample_tokens(prior, n, temperature=1.0):
    """n token grids (n, g, g) int64 from an autoregressive token prior, one token at a time."""
    ### BEGIN SOLUTION
    tokens = torch.full((n, 1), prior.start, dtype=torch.long)
    for _ in range(prior.num_tokens):
        logits = prior.gpt(tokens)[:, -1] / temperature  # (n, K): the next token given all drawn so far
        tokens = torch.cat([tokens, torch.multinomial(F.softmax(logits, -1), 1)], 1)
    return tokens[:, 1:].reshape(n, prior.grid, prior.grid)
    ### END SOLUTION


# %%
check.sample_tokens(sample_tokens)

# %% [markdown]
# The library's sampler is the same loop with lesson 09's KV cache:

# %%
gencourse.show(vq.TokenGPT.sample)

# %% [markdown]
# Samples at temperature 1, decoded, scored like every family's, beside two references: **the decoder's ceiling**
# (the tokens of the 350 validation digits, decoded: what a perfect prior would give; scored like the real row,
# which holds the same digits undecoded) and real held-out digits.

# %%
gen = torch.Generator().manual_seed(SEED)
ar_ms, ar_tokens = ms_per_1000(lambda n: ar_prior.sample(n, generator=gen), N_SAMPLES)
ar_samples = vqvae.decode(ar_tokens)
quality = {"token GPT": metrics.sample_quality(ar_samples),
           "decoder ceiling": metrics.sample_quality(vqvae.decode(vqvae.encode(val_x)))}
real = metrics.reference_quality()
print(metrics.format_quality(quality, real))
print(f"{N_SAMPLES} token GPT samples: {ar_ms:.0f} ms per 1000 including the decoder (16 network evaluations each)")
_ = gencourse.headline("token GPT samples: recognized", quality["token GPT"]["recognized"], "{:.2f}")
fig, axes = plt.subplots(1, 2, figsize=(10, 2.6))
viz.image_grid(ar_samples[:30], nrow=10, ax=axes[0], title="token GPT samples (decoded), temperature 1")
viz.image_grid(vqvae.decode(vqvae.encode(val_x[:30])), nrow=10, ax=axes[1],
               title="decoder ceiling: real validation tokens, decoded")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(metrics.compare_to_real(quality["decoder ceiling"], "recognized", 0.9, real), "(decoded real tokens)")
print(metrics.compare_to_real(quality["token GPT"], "recognized", 0.75, real), "(token GPT samples)")
verdict(metrics.beats(quality["decoder ceiling"], quality["token GPT"], "recognized"),
        "the decoder's ceiling is recognized more often than the token GPT's samples (beyond the 95% intervals)")
verdict(quality["token GPT"]["memorization"] >= 0.8, "the token GPT's samples are new digits (memorization >= 0.8)")

# %% [markdown]
# The decoded real tokens are recognized about as often as the real digits they come from: the decoder costs
# little. The prior is the weak link: its samples are recognized less often than the ceiling (the table). Their
# memorization is near real held-out digits' 1: they are new digits, not copies (the verdict).

# %% [markdown]
# ## 5. MaskGIT: many tokens per step
#
# The GPT needs 16 network evaluations (NFE) per sample, one per token. **MaskGIT** (Chang et al. 2022) trains a
# *bidirectional* transformer to fill in masked tokens: replace a random share $\gamma(r) = \cos(\pi r / 2)$,
# $r \sim U(0, 1)$, of a digit's tokens by a `[MASK]` id and predict them from the others. Sampling starts from all
# `[MASK]` and runs $S$ steps: at step $s$ it predicts every masked token at once, draws each, keeps the most
# confident draws (ranked by their log-probability plus Gumbel noise of scale $2(1 - s/S)$, MaskGIT's "choice
# temperature", which keeps the early choices from all going to the easiest tokens), and masks the rest again, so that $\lfloor 16 \cos(\pi s / 2S) \rfloor$ stay masked. $S$ steps
# are $S$ NFE. It has no exact likelihood: the conditionals it learns for different masks need not come from one
# joint distribution. The schedule, for $S = 4$ and $8$:

# %%
# NBVAL_CHECK_OUTPUT
for S in (4, 8):
    still = [16] + [math.floor(16 * vq.cosine_mask_ratio(s / S)) if s < S else 0 for s in range(1, S + 1)]
    print(f"S = {S}: masked tokens after each step {still}; fixed per step {[a - b for a, b in zip(still, still[1:])]}")

# %% [markdown]
# Few tokens are fixed first, when the model knows least; many at the end, when the context nearly fixes them.

# %%
# about 18 s on 2 threads at MASKGIT_EPOCHS = 30 (vq.train_token_prior's default: 100), sampling included
maskgit, maskgit_history = vq.train_token_prior("maskgit", train_tokens, val_tokens, num_codes=32,
                                                epochs=MASKGIT_EPOCHS, seed=SEED, device=device)
maskgit = maskgit.cpu()
maskgit_samples, maskgit_ms = {}, {}
for S in (4, 8):
    gen = torch.Generator().manual_seed(SEED)
    maskgit_ms[S], tokens = ms_per_1000(lambda n: maskgit.sample(n, steps=S, generator=gen), N_SAMPLES)
    maskgit_samples[S] = vqvae.decode(tokens)
    quality[f"MaskGIT, {S} NFE"] = metrics.sample_quality(maskgit_samples[S])
print(metrics.format_quality({k: quality[k] for k in ("token GPT", "MaskGIT, 4 NFE", "MaskGIT, 8 NFE")}, real))
print(f"{'sampler':<18}{'NFE':>5}{'ms per 1000':>13}")
for name, nfe, ms in (("token GPT", 16, ar_ms), ("MaskGIT", 4, maskgit_ms[4]), ("MaskGIT", 8, maskgit_ms[8])):
    print(f"{name:<18}{nfe:>5}{ms:>13.0f}")
fig, axes = plt.subplots(1, 2, figsize=(10, 2.6))
for ax, S in zip(axes, (4, 8)):
    viz.image_grid(maskgit_samples[S][:30], nrow=10, ax=ax, title=f"MaskGIT, {S} steps (decoded)")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
verdict(metrics.beats(quality["token GPT"], quality["MaskGIT, 4 NFE"], "recognized"),
        "with 4 NFE MaskGIT's samples are recognized less often than the token GPT's 16-NFE samples "
        "(beyond the 95% intervals)")
verdict(quality["MaskGIT, 8 NFE"]["recognized"] >= quality["MaskGIT, 4 NFE"]["recognized"],
        "MaskGIT with 8 steps is recognized at least as often as with 4 (point estimates)")
verdict(maskgit_ms[8] > ar_ms, "at this size MaskGIT's 8 steps take longer than the GPT's 16 cached steps")

# %% [markdown]
# **MaskGIT loses here, and says why it wins elsewhere.** At 4 NFE its samples are recognized less often than the
# GPT's at 16 (beyond the intervals), but that compares two models trained differently (objective, dropout, and
# `MASKGIT_EPOCHS` epochs here, on the loaded VQ-VAE's tokens, against the recipe GPT's 150), not the steps alone.
# With 8 steps the same MaskGIT is recognized at least as often as with 4 (the verdict, on point estimates; by how
# much varies from run to run), still below the GPT; its Fréchet distance stays far behind the GPT's (the table),
# and its other figures need not improve with the steps. Nor is it faster at this size:
# each of its
# steps reruns the whole bidirectional transformer over all 16 positions, while the GPT with its KV cache computes
# one new position per step, so 8 MaskGIT steps cost more than 16 cached GPT steps (the printed milliseconds).
# MaskGIT's advantage is for long sequences, where $S \ll T$: a 32×32 token grid is 1024 GPT steps against
# MaskGIT's 8-12.

# %% [markdown]
# ## 6. Inpainting
#
# In raster order, the first 8 tokens are the top two rows of the $4 \times 4$ grid: roughly the top half of the
# digit (roughly, because each token's convolutions also see a pixel or two across the line). An autoregressive
# prior completes a sequence from any prefix: feed the start token and a digit's first 8 tokens, and draw the
# other 8. Three completions of each of six test digits:

# %%
n_show, n_draws = 6, 3
top_tokens = test_tokens.reshape(len(test_tokens), -1)[:, :8]  # (447, 8): the top two rows, in raster order
gen = torch.Generator().manual_seed(SEED)
completed = ar_prior.complete(top_tokens.repeat(n_draws, 1), generator=gen)  # (3 * 447, 4, 4)
completions = vqvae.decode(completed)  # (n_draws * 447, 1, 8, 8): draw-major
top_half = test_x.clone()
top_half[:, :, 4:] = 0.5  # what the prior is given, roughly: the lower half hidden (grey)
panel = torch.cat([test_x[:n_show], top_half[:n_show]] +
                  [completions[d * len(test_x):d * len(test_x) + n_show] for d in range(n_draws)])
viz.image_grid(panel, nrow=n_show, title="rows: real digit, top half given, three completions by the token GPT")
plt.show()

# %% [markdown]
# Measured on all 447 test digits, three completions each: the share that the classifier assigns the digit's own
# label, beside two references: the decoded real tokens (the ceiling) and unconditional samples (what ignoring the
# top half would give).

# %%
labels = test_set.labels
same_label = {
    "completions of the top half": (metrics.classify(completions).argmax(1) == labels.repeat(n_draws)).double().mean().item(),
    "decoded real tokens (ceiling)": (metrics.classify(recon).argmax(1) == labels).double().mean().item(),
    "unconditional samples": (metrics.classify(ar_samples[:len(labels)]).argmax(1) == labels[:len(ar_samples)]).double().mean().item(),
}
for name, share in same_label.items():
    print(f"{name:<32} assigned the original digit's label: {share:.2f}")

# %%
# NBVAL_CHECK_OUTPUT
verdict(same_label["completions of the top half"] > 3 * same_label["unconditional samples"],
        "completions keep the original label more than 3x as often as unconditional samples")
verdict(same_label["completions of the top half"] < same_label["decoded real tokens (ceiling)"] - 0.1,
        "and more than 0.1 less often than the decoded real tokens: the top half does not always decide the digit")

# %% [markdown]
# The top half steers the completion: the completions keep the label more than three times as often as
# unconditional samples, which match it only by chance (about one in ten). It does not always decide it (the second
# verdict): a top half is often completed into another digit than the one it came from. Infilling other regions
# (a centre, the left half) needs a prior that conditions on any subset of tokens: MaskGIT's bidirectional model
# does that by construction.

# %% [markdown]
# ## 7. Latent flow matching
#
# Stable Diffusion's recipe (Rombach et al. 2022) keeps the latent **continuous**: an autoencoder with a small
# spatial latent, trained once, and diffusion (here, lesson 08's flow matching) in its latent space.
#
# **The autoencoder.** Its encoder gives a diagonal Gaussian $q(z \mid x)$ over a latent of shape $(4, 2, 2)$: 16
# numbers, as many as the tokens above, but real-valued. It is trained by a reconstruction loss (binary
# cross-entropy summed over the 64 pixels, in nats) plus a *light* KL term
# (weight 0.01), which keeps the latent compact and makes nearby latents decode to nearby images; it is not a VAE's
# prior match. Then the latents are **standardized** with two numbers fitted on the training split (Stable
# Diffusion's scale factor), so that the data end of the path has unit variance like the noise end:
#
# $$z = \frac{\mu(x) - \text{shift}}{\text{scale}}, \qquad \text{shift} = \operatorname{mean}\mu(x_\text{train}),
# \quad \text{scale} = \operatorname{std}\mu(x_\text{train}) . \tag{5}$$
#
# **Flow matching** on $z$ is lesson 08's, with its convention: $t = 0$ is noise, $t = 1$ is data,
#
# $$z_t = t\, z_1 + (1 - t)\, z_0, \quad z_0 \sim \mathcal N(0, I), \qquad
# \mathcal L_\text{FM} = \mathbb E\, \lVert v_\theta(z_t, t) - (z_1 - z_0) \rVert^2 , \tag{6}$$
#
# and sampling integrates $dz/dt = v_\theta$ from noise and decodes **once**: $x = g(\text{scale}\cdot z_1 +
# \text{shift})$. Cost: NFE velocity evaluations of a network on 16 numbers, plus one decoder pass.

# The autoencoder is the course's `latent` recipe's (`latent.train_digits`: 60 epochs, the best validation epoch
# kept; the recipe then trains a DiT on its latent for 1000 epochs, which section 7 uses at the end).

# %%
if RETRAIN:
    latent_recipe, _ = latent.train_digits(seed=SEED, quick=QUICK, device=device)
else:
    latent_recipe, latent_meta = recipes.load("latent", seed=SEED, with_meta=True)
    print(f"the latent recipe, seed {SEED}: trained in {latent_meta['cpu_seconds']:.0f} CPU s (autoencoder and DiT)")
latent_recipe = latent_recipe.cpu()
ae = latent_recipe.autoencoder
z_train = ae.encode(train_x)
ae_ceiling = metrics.sample_quality(latent.quantize(ae(val_x)))  # decoded validation digits, like the real row
print(f"latent {ae.latent_shape}; test reconstruction MSE {latent.reconstruction_mse(ae, test_x):.4f} per pixel; "
      f"standardized training latents: mean {z_train.mean():.2e}, variance {z_train.var():.4f}")

# %%
# NBVAL_CHECK_OUTPUT
verdict(abs(z_train.mean().item()) < 1e-4 and abs(z_train.var().item() - 1) < 1e-3,
        "eq. (5): the standardized training latents have mean 0 and variance 1 (within 1e-4 and 1e-3)")

# %% [markdown]
# **Exercise 5 (train a velocity on latents).** Write `train_latent_velocity(z_train)`: build a velocity network
# `latent.build_network("mlp", z_train.shape[1:])` (lesson 06's MLP on the 16 flattened numbers; it takes
# `(z, t)` with `z` `(B, 4, 2, 2)` and `t` `(B,)`, one time per example), and train it with the loss (6) written by
# hand: shuffled minibatches, fresh noise and times in every batch, Adam, for the stub's default epochs, learning
# rate and batch size. Return the network. The check trains it on 1000 synthetic latents of the same shape (10 tight
# clusters, standardized) and passes when its held-out loss is at most half the zero velocity's (a few seconds).

# %%
def train_latent_velocity(z_train, epochs=60, lr=2e-3, batch_size=128):
    """z_train: (N, c, h, w) standardized latents -> a trained velocity network v(z, t) -> like z."""
    ### BEGIN SOLUTION
    net = latent.build_network("mlp", tuple(z_train.shape[1:]))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in torch.randperm(len(z_train)).split(batch_size):
            z1 = z_train[batch]
            z0, t = torch.randn_like(z1), torch.rand(len(z1))
            tt = t.view(-1, 1, 1, 1)
            loss = (net(tt * z1 + (1 - tt) * z0, t) - (z1 - z0)).pow(2).flatten(1).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()
    ### END SOLUTION


# %%
check.train_latent_velocity(train_latent_velocity)  # about 2 s

# %% [markdown]
# The library's training adds lesson 08's schedule (Adam with a warm-up and a cosine decay, the final weights
# kept) and a validation loss with its draws fixed:

# %%
gencourse.show(latent.train_latent_fm)

# %% [markdown]
# **Which network?** Two velocity networks of about the same size: the MLP above, and a tiny **diffusion
# transformer** (DiT; Peebles & Xie 2023). The DiT treats each of the $2 \times 2$ latent cells as a token (its 4
# channels, embedded, plus a learned position), runs bidirectional attention blocks, and feeds the time to every
# block by **adaLN-Zero**: from the time embedding $e$ each block computes a shift, a scale and a gate for each of
# its two halves (one linear map of $\operatorname{SiLU}(e)$),
#
# $$h \leftarrow h + \text{gate}_1 \odot \operatorname{Attn}\!\big(\operatorname{LN}(h)(1 + \text{scale}_1) + \text{shift}_1\big),
# \qquad h \leftarrow h + \text{gate}_2 \odot \operatorname{MLP}\!\big(\operatorname{LN}(h)(1 + \text{scale}_2) + \text{shift}_2\big),
# \tag{7}$$
#
# with the map to (shift, scale, gate) initialized to zero, so that every block starts as the identity. (The
# library's docstrings number their own equations: their (3) is eq. (6) here and their (4) is eq. (7).)

# %%
gencourse.show(latent.AdaLNBlock)

# %% [markdown]
# And the control: **flow matching on the pixels**, the same MLP (widened at its input and output to 64 numbers),
# the same standardization by two numbers, the same optimizer, batch size and epochs; its samples are mapped back
# to $[0, 1]$ and rounded to the 17 levels, as the decoded latents are. A fourth row is the `latent` recipe's DiT,
# the same network trained for 1000 epochs: what a longer run of the DiT gives. Every sampler takes 4 Heun steps
# (8 NFE).

# %%
# about 20 s on 2 threads at the defaults, sampling and scoring included; the library's defaults are 300
# epochs (MLP) and 600 (DiT)
steps, method = 4, "heun"
lfm, lfm_seconds = {}, {}
for kind, epochs in (("mlp", FM_EPOCHS), ("dit", DIT_EPOCHS)):
    start = time.process_time()
    lfm[kind], _ = latent.train_latent_fm(ae, network=kind, epochs=epochs, seed=SEED, device=device)
    lfm[kind] = lfm[kind].cpu()
    lfm_seconds[kind] = time.process_time() - start

gencourse.seed_everything(SEED)
pixel_shift, pixel_scale = train_x.mean(), train_x.std()
pixel_net = nets.MLPDenoiser(64, hidden=128, depth=2)
start = time.process_time()
train_annealed(pixel_net, (train_x - pixel_shift) / pixel_scale, None, epochs=FM_EPOCHS, lr=2e-3, batch_size=128,
               seed=SEED, loss_fn=lambda x1: fm.cfm_loss(pixel_net, x1), desc="flow matching on pixels (mlp)")
lfm_seconds["pixels"] = time.process_time() - start


@torch.no_grad()
def pixel_sample(n, generator=None):
    x1 = fm.SAMPLERS[method](pixel_net, torch.randn((n, 1, 8, 8), generator=generator), steps)
    return latent.quantize((x1 * pixel_scale + pixel_shift).clamp(0, 1))


fm_samples, fm_ms, fm_params = {}, {}, {}
for name, sampler, net in (("latent, MLP", lambda n: lfm["mlp"].sample(n, steps, method, generator=gen), lfm["mlp"].net),
                           ("latent, DiT", lambda n: lfm["dit"].sample(n, steps, method, generator=gen), lfm["dit"].net),
                           ("pixels, MLP", lambda n: pixel_sample(n, generator=gen), pixel_net),
                           ("DiT, recipe", lambda n: latent_recipe.sample(n, steps, method, generator=gen),
                            latent_recipe.net)):
    gen = torch.Generator().manual_seed(SEED)
    fm_ms[name], fm_samples[name] = ms_per_1000(sampler, N_SAMPLES)
    fm_params[name] = latent.num_parameters(net)
    quality[f"FM {name}"] = metrics.sample_quality(fm_samples[name])
quality["AE ceiling"] = ae_ceiling
print(metrics.format_quality({k: quality[k] for k in ("FM latent, MLP", "FM latent, DiT", "FM pixels, MLP",
                                                       "FM DiT, recipe", "AE ceiling")}, real))
train_epochs = {"latent, MLP": FM_EPOCHS, "latent, DiT": DIT_EPOCHS, "pixels, MLP": FM_EPOCHS, "DiT, recipe": 1000}
cpu_seconds = {"latent, MLP": lfm_seconds["mlp"], "latent, DiT": lfm_seconds["dit"], "pixels, MLP": lfm_seconds["pixels"]}
print(f"{'flow matching':<16}{'params':>9}{'epochs':>8}{'train CPU s':>13}{'NFE':>5}{'ms per 1000':>13}")
for name in fm_samples:
    seconds = f"{cpu_seconds[name]:>13.1f}" if name in cpu_seconds else f"{'(recipe)':>13}"
    print(f"{name:<16}{fm_params[name]:>9,}{train_epochs[name]:>8}{seconds}"
          f"{latent.LatentFlowMatching.nfe(method, steps):>5}{fm_ms[name]:>13.0f}")
print(f"(the latent samplers' milliseconds include the decoder; the autoencoder, {latent.num_parameters(ae, trainable=False):,} "
      "parameters, is not counted in params or training seconds)")
_ = gencourse.headline("latent FM (MLP) samples: recognized", quality["FM latent, MLP"]["recognized"], "{:.2f}")
fig, axes = plt.subplots(1, 4, figsize=(20, 2.6))
for ax, name in zip(axes, fm_samples):
    viz.image_grid(fm_samples[name][:30], nrow=10, ax=ax, title=f"flow matching, {name}, 8 NFE")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
verdict(metrics.beats(quality["FM latent, MLP"], quality["FM pixels, MLP"], "recognized"),
        "at about equal parameters and equal epochs, flow matching in the latent is recognized more often than on "
        "the pixels (beyond the 95% intervals)")
print(metrics.compare_to_real(quality["FM latent, MLP"], "recognized", 0.85, real), "(latent flow matching, MLP, 8 NFE)")
verdict(quality["FM latent, MLP"]["memorization"] >= 0.8, "its samples are new digits (memorization >= 0.8)")
verdict(abs(fm_params["latent, MLP"] - fm_params["pixels, MLP"]) < 0.15 * fm_params["latent, MLP"],
        "the latent and pixel MLPs differ by less than 15% in parameters")
verdict(fm_ms["latent, DiT"] > 2 * fm_ms["latent, MLP"], "the DiT samples more than 2x slower than the MLP at equal NFE")
verdict(quality["FM latent, DiT"]["recognized"] < quality["FM latent, MLP"]["recognized"],
        "the DiT, trained here for fewer epochs, is recognized less often than the MLP (point estimates)")
verdict(metrics.beats(quality["FM DiT, recipe"], quality["FM latent, DiT"], "recognized"),
        f"the recipe's DiT (1000 epochs) is recognized more often than the same DiT after {DIT_EPOCHS} "
        "(beyond the 95% intervals)")
verdict(quality["FM DiT, recipe"]["recognized"] >= quality["FM latent, MLP"]["recognized"],
        f"and at least as often as the MLP after {FM_EPOCHS} (point estimates)")
verdict(fm_ms["latent, MLP"] > fm_ms["pixels, MLP"],
        "at equal NFE the latent MLP's samples, decoder included, take longer than the pixel MLP's")

# %% [markdown]
# **The latent wins at about equal velocity-network parameters.** The same MLP (widened at its ends for the
# pixels), trained live for the same epochs on the loaded autoencoder's latents or on the pixels, gives
# samples recognized far
# more often in the latent than on the pixels (the table): the autoencoder has already learned what digits
# look like, and the flow only has to place 16 well-behaved numbers. The price sits in the autoencoder: its own
# training and parameters (not counted in the table), its ceiling (the "AE ceiling" column: the reference a
# perfect flow would reach), and its decoder pass at every sample. At equal velocity-network size, on 8×8 digits
# the latent buys quality, not speed (lesson 11 shows that at equal quality it lets a smaller network sample
# faster): the velocity MLP costs about the same on 16 numbers as on 64, and the decoder comes on top, so the latent
# sampler is the slower one here (the milliseconds).
#
# **The DiT is slow to fit.** It has about the MLP's parameters; trained here for `DIT_EPOCHS` epochs, which cost
# more CPU seconds than the MLP's `FM_EPOCHS` (the table), it is behind, and it samples more than
# twice as slowly. It is not unable: the recipe's DiT, the same network and learning rate trained for 1000
# epochs, is recognized more often than the DiT trained here and at least as often as the MLP (the verdicts; the
# last comparison is not controlled: ten times the MLP's epochs). Its memorization is below 1, like the
# autoencoder's ceiling (decoded real digits; the two within noise of each other): decoding pulls images toward
# the training digits. With four tokens of four channels, attention has little structure to exploit; transformers take over
# from U-Nets and MLPs when the latent is a large grid, e.g. the 32×32×4 latent of a 256×256 image, where their
# scaling with width and depth is what DiT showed.

# %% [markdown]
# ## 8. On 28×28 digits
#
# Sections 1 to 7 always run on the 8×8 digits, whatever `DATASET` says. There the latent bought sample quality
# but not speed (section 7): a velocity network on 16 latent numbers costs about what one on 64 pixels costs, and
# the decoder comes on top. That is the wrong size to see what latent models are for. On 28×28 images (784
# pixels, 256 levels) the recipe keeps its ideas and changes its sizes:
#
# - **tokens**: the VQ-VAE with two stride-2 convolutions ($28 \to 14 \to 7$), so an image is 49 tokens from
#   $K = 128$ codes (its reconstruction term is a binary cross-entropy here, and dead codes restart after every
#   epoch: `vq.VQVAE` and `vq.train_images` say why), and lesson 09's GPT over them (49 network evaluations per
#   sample; 8 MaskGIT steps against 49 is the regime its parallel decoding was made for, not tried here);
# - **latent flow matching**: the autoencoder with a $(4, 7, 7)$ latent, 196 numbers for 784 pixels, and a DiT
#   over its 49 cells (1×1 patches: 7 is odd, so 2×2 patches would not tile the grid), sized to the parameters
#   of the control (within 10%);
# - **the control**: lesson 08's flow matching on the pixels with its small U-Net (`flow_matching.train_images`),
#   sampled the same way: Euler, 10 steps, 10 NFE.
#
# First the cost that does not depend on training: floating-point operations per sample, counted by torch's
# `FlopCounterMode` while each sampler draws one image (the weights do not change the count), for section 7's
# 8×8 samplers and for the 28×28 ones.

# %%
from torch.utils.flop_counter import FlopCounterMode


def mflop(fn):
    """Millions of floating-point operations (a multiply-add counts 2) in one call of fn()."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops() / 1e6


torch.manual_seed(SEED)  # untrained 28x28 networks: their operation counts do not depend on the weights
arch_28 = {"tokens": vq.image_model("mnist"), "latent": latent.image_model("mnist"), "pixels": fm.image_model("mnist")}
cost_rows = [  # (image, sampler, parameters of the sampling network, NFE, MFLOP per sample, of which the decoder)
    ("8x8", "pixels, MLP (section 7)", fm_params["pixels, MLP"], 8, mflop(lambda: pixel_sample(1)), 0.0),
    ("8x8", "latent, MLP + decoder", fm_params["latent, MLP"], 8, mflop(lambda: lfm["mlp"].sample(1, steps, method)),
     mflop(lambda: ae.decode(torch.zeros(1, *ae.latent_shape)))),
    ("28x28", "pixels, U-Net", latent.num_parameters(arch_28["pixels"]), 10,
     mflop(lambda: arch_28["pixels"].sample(1, steps=10, method="euler")), 0.0),
    ("28x28", "latent, DiT + decoder", latent.num_parameters(arch_28["latent"].net), 10,
     mflop(lambda: arch_28["latent"].sample(1, steps=10, method="euler")),
     mflop(lambda: arch_28["latent"].autoencoder.decode(torch.zeros(1, 4, 7, 7)))),
    ("28x28", "tokens, GPT + decoder", latent.num_parameters(arch_28["tokens"].prior), 49,
     mflop(lambda: arch_28["tokens"].sample(1)),
     mflop(lambda: arch_28["tokens"].vqvae.decode(torch.zeros(1, 7, 7, dtype=torch.long)))),
]
print(f"{'image':<7}{'sampler':<26}{'params':>9}{'NFE':>5}{'MFLOP per sample':>18}{'decoder':>9}")
for image, name, params, nfe, total, decoder in cost_rows:
    print(f"{image:<7}{name:<26}{params:>9,}{nfe:>5}{total:>18.2f}{decoder:>9.2f}")
flops = {name: total for _, name, _, _, total, _ in cost_rows}

# %%
# NBVAL_CHECK_OUTPUT
verdict(flops["latent, MLP + decoder"] > 1.5 * flops["pixels, MLP (section 7)"],
        "8x8: the latent sampler, decoder included, needs more than 1.5x the pixel MLP's operations per sample")
verdict(flops["latent, DiT + decoder"] < flops["pixels, U-Net"] / 4,
        "28x28: at 10 NFE the latent sampler, decoder included, needs less than 1/4 of the U-Net's operations")
verdict(flops["tokens, GPT + decoder"] < flops["latent, DiT + decoder"],
        "28x28: the token GPT's 49 cached steps and decoder need fewer operations than the latent flow's 10")
verdict(abs(cost_rows[3][2] - cost_rows[2][2]) < 0.1 * cost_rows[2][2],
        "28x28: the DiT and the U-Net differ by less than 10% in parameters")

# %% [markdown]
# This is where the latent space pays, in operations at least. On 8×8 digits the decoder costs more than the
# flow it saves, so the latent sampler is the more expensive one (the first two rows). On 28×28 images the U-Net
# convolves all 784 pixels at every one of its 10 evaluations, while the DiT of about the same parameters reads
# 49 tokens, and the decoder runs once: the latent sampler needs a fraction of the operations per sample (the
# verdicts), and a training step runs the same velocity network forward and backward. The token GPT needs fewer
# operations still, but its 49 steps run one after another, each computing one new token per image.
#
# Operations are not quality. With `DATASET = "mnist"` (or `"fashion-mnist"`) the next cells train the three
# models on 28×28 images and measure what the count leaves open: sample quality against real images and the
# decoders' ceilings, milliseconds per 1000 samples with the decoder, and training seconds. The epochs in the
# parameters cell (`EPOCHS_28`) are sized for about ten minutes on a free Colab GPU (an estimate: this course's
# build machines have no GPU); `GENCOURSE_QUICK=1` trains each model for an epoch or two on `SUBSET` images, which
# only checks that the code runs. On the digits these cells only say how to run them.

# %%
if DATASET == "digits":
    print('Section 8 trains on 28x28 images with DATASET = "mnist" or "fashion-mnist" (a GPU is best): '
          "set it in the parameters cell.")
else:
    big_train, big_val, big_test = (data.load(DATASET, split) for split in ("train", "val", "test"))
    print(f"{DATASET}: {len(big_train)} training images, shape {big_test.shape}, {big_test.levels} levels"
          + (f"; the first {SUBSET} used" if SUBSET else ""))
    seconds_28 = {}
    start = time.perf_counter()
    token_model, token_history = vq.train_images(DATASET, vq_epochs=EPOCHS_28["vqvae"],
                                                 prior_epochs=EPOCHS_28["prior"], subset=SUBSET, quick=QUICK,
                                                 seed=SEED, device=device)
    seconds_28["tokens"] = (token_history["vqvae"]["seconds"], time.perf_counter() - start)
    start = time.perf_counter()
    latent_model, latent_history = latent.train_images(DATASET, ae_epochs=EPOCHS_28["autoencoder"],
                                                       fm_epochs=EPOCHS_28["latent flow"], subset=SUBSET,
                                                       quick=QUICK, seed=SEED, device=device)
    seconds_28["latent"] = (latent_history["autoencoder"].seconds, time.perf_counter() - start)
    start = time.perf_counter()
    pixel_model, pixel_history = fm.train_images(DATASET, epochs=EPOCHS_28["pixel flow"], subset=SUBSET,
                                                 quick=QUICK, seed=SEED, device=device)
    seconds_28["pixels"] = (0.0, time.perf_counter() - start)  # the models stay on `device`, and sample there

# %%
if DATASET != "digits":
    big_real = metrics.reference_quality(DATASET, min(N_SAMPLES, 1000))
    big_ref = big_val.images[:1000]  # the real row's images: the ceilings decode these
    samplers_28 = {"token GPT": (lambda n: token_model.sample(n, generator=gen), token_model.nfe),
                   "latent FM, DiT": (lambda n: latent_model.sample(n, 10, "euler", generator=gen).cpu(), 10),
                   "pixel FM, U-Net": (lambda n: pixel_model.sample(n, steps=10, method="euler", generator=gen).cpu(),
                                       10)}
    samples_28, ms_28, quality_28 = {}, {}, {}
    for name, (sampler, _) in samplers_28.items():
        gen = torch.Generator().manual_seed(SEED)
        ms_28[name], samples_28[name] = ms_per_1000(sampler, N_SAMPLES)
        quality_28[name] = metrics.sample_quality(samples_28[name], DATASET)
    set_size = quality_28["token GPT"]["set_size"]
    quality_28["VQ-VAE ceiling"] = metrics.sample_quality(
        token_model.vqvae.decode(token_model.vqvae.encode(big_ref)), DATASET, set_size=set_size)
    quality_28["AE ceiling"] = metrics.sample_quality(
        latent.quantize(latent_model.autoencoder(big_ref.to(device)).cpu(), 256), DATASET, set_size=set_size)
    print(metrics.format_quality(quality_28, big_real, dataset=DATASET))
    test_tokens_28 = token_model.vqvae.encode(big_test.images)
    token_nll_28 = token_model.token_nll(big_test.images).mean().item()
    baseline_28 = per_position_nll(test_tokens_28, token_model.vqvae.encode(big_train.images[:SUBSET]), K=128).mean()
    vq_final = {key: token_history["vqvae"][key][-1] for key in ("val_mse", "dead_share")}
    print(f"token GPT: test NLL {token_nll_28:.1f} nats per 49 tokens (exact; per-position categorical "
          f"{baseline_28:.1f}, uniform {49 * math.log(128):.1f}); VQ-VAE: val MSE {vq_final['val_mse']:.4f}, "
          f"dead codes {100 * vq_final['dead_share']:.0f}%")
    print(f"\n{'model':<17}{'params':>9}{'first stage s':>15}{'total train s':>15}{'NFE':>5}{'ms per 1000':>13}")
    params_28 = {"token GPT": latent.num_parameters(token_model.prior),
                 "latent FM, DiT": latent.num_parameters(latent_model.net),
                 "pixel FM, U-Net": latent.num_parameters(pixel_model)}
    for (name, (_, nfe)), key in zip(samplers_28.items(), ("tokens", "latent", "pixels")):
        first, total = seconds_28[key]
        print(f"{name:<17}{params_28[name]:>9,}{first:>15.1f}{total:>15.1f}{nfe:>5}{ms_28[name]:>13.0f}")
    print(f"(params: the prior or velocity network; the first stages, the VQ-VAE "
          f"{latent.num_parameters(token_model.vqvae):,} and the autoencoder "
          f"{latent.num_parameters(latent_model.autoencoder, trainable=False):,} parameters, are not counted; "
          f"ms include the decoder; device {device})")
    per_epoch = {"latent": latent_history["flow"].seconds / latent_history["flow"].epochs,
                 "pixels": pixel_history.seconds / pixel_history.epochs}
    verdict(ms_28["latent FM, DiT"] < ms_28["pixel FM, U-Net"],
            "at 10 NFE the latent sampler, decoder included, is faster than the pixel U-Net's")
    verdict(per_epoch["latent"] < per_epoch["pixels"], "an epoch of latent flow matching takes less time than one "
            "of pixel flow matching (the autoencoder's own epochs aside)")
    verdict(metrics.beats(quality_28["latent FM, DiT"], quality_28["pixel FM, U-Net"], "recognized"),
            "latent flow matching's samples are recognized more often than pixel flow matching's "
            "(beyond the 95% intervals)")
    print(metrics.goal(quality_28["latent FM, DiT"], "recognized", 0.9, big_real, dataset=DATASET), "(latent FM)")
    print(metrics.goal(quality_28["token GPT"], "recognized", 0.85, big_real, dataset=DATASET), "(token GPT)")
    fig, axes = plt.subplots(1, 4, figsize=(16, 2.8))
    for ax, name in zip(axes, samples_28):
        viz.image_grid(samples_28[name][:24], nrow=8, ax=ax, title=f"{name}, {samplers_28[name][1]} NFE")
    viz.image_grid(big_test.images[:24], nrow=8, ax=axes[3], title=f"real {DATASET} test images")
    plt.show()

# %% [markdown]
# How to read the run: the operation count above says where the work goes; the milliseconds say what this
# machine makes of it, decoder included; the decoders' ceilings bound what each two-stage model can reach, as on
# the digits. The training seconds follow the epochs in `EPOCHS_28`, not an equal budget, so the third verdict
# (are the latent model's samples also *better*?) compares the models as trained here, and it is checked rather
# than assumed. `python -m gencourse.latent_bench` runs the controlled comparison on a CPU: latent and pixel flow
# matching trained for the same number of seconds on the MNIST stand-in, then scored the same way.

# %% [markdown]
# ## Summary
#
# - Modern image generators compress first: an autoencoder turns the image into a small grid of tokens or
#   continuous latents, and a generative model works on that grid. It buys fewer positions (on large images,
#   cheaper and fewer steps; on 8×8 digits, at equal network size, sample quality rather than speed); the decoder sets a
#   ceiling, measured here as the decoded real codes.
# - Vector quantization picks the nearest code; the straight-through estimator $z_e + \operatorname{sg}[e - z_e]$
#   lets the gradient reach the encoder; the codebook and commitment terms, with their stop-gradients, train the
#   codes and keep the encoder near them. Dead codes are common; restarts revived them in the 10-epoch 4×4 runs
#   on every seed, and lowered the reconstruction error.
# - Over 16 tokens, lesson 09's GPT is an autoregressive prior with an exact token likelihood, well below the
#   per-position baseline; its decoded samples are recognized less often than the decoder's ceiling. The same
#   model completes a digit from its upper half.
# - MaskGIT decodes many tokens per step; with 16 tokens, at 4 steps its samples were recognized less often than
#   the GPT's (a differently trained model), and it saved no time: its gain is for long sequences.
# - Flow matching in a standardized continuous latent beats flow matching on the pixels at about equal
#   velocity-network parameters and equal epochs, at a higher sampling cost here (the decoder); a tiny DiT, trained
#   briefly, was behind the MLP and slower; the recipe's 1000-epoch run of the same DiT caught up with the MLP:
#   slow to fit, not unable to.
#
# **Next:** lesson 11 compares the families of lessons 02-09 on the same digits, with the same metrics; its
# section 10 adds this lesson's two recipes (the models loaded here, on three seeds) and measures what the latent buys and costs against the larger pixel-space recipes.
