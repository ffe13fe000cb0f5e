# %% [markdown]
# # 02 · Autoencoders
#
# *About 40 s on a 2-core laptop CPU (60 CPU seconds with two threads, measured by `make bench`); nothing to download. On a GPU set `GENCOURSE_DATASET=mnist` for the
# convolutional autoencoder on 28×28 digits.*
#
# **Learning objectives.** After this lesson you can
# - explain an autoencoder as compression through a bottleneck, build and train one yourself, and read its
#   reconstruction error against the size of the code (and against PCA, the linear autoencoder);
# - read a 2D latent space coloured by label;
# - train a *denoising* autoencoder, measure what it gains on corrupted inputs, and read the **score**
#   $\nabla_x \log p$ off a denoiser (the idea that diffusion models are built on), checked against the exact
#   score of a 2D toy;
# - turn reconstruction error into an anomaly score, measure it with the ROC AUC, and know why even a
#   likelihood is not a reliable anomaly score;
# - test the claim "sample the latent space of an autoencoder to generate data", and say why a plain
#   autoencoder is not a sampler: the reason the next lesson adds a prior (the VAE);
# - avoid two loss/activation pitfalls: BCE on data in $[-1, 1]$, and a sigmoid followed by `BCELoss`.

# %% tags=["parameters"]
# Parameters: change them here, or set the environment variables before starting Jupyter.
import os

QUICK = os.environ.get("GENCOURSE_QUICK", "0") == "1"  # smallest settings: only checks that the lesson runs
SEED = int(os.environ.get("GENCOURSE_SEED", 0))
DATASET = os.environ.get("GENCOURSE_DATASET", "digits")  # "mnist" or "fashion-mnist" need the internet once
EPOCHS = int(os.environ.get("GENCOURSE_EPOCHS", 2 if QUICK else 100))  # at most; early stopping on validation
LATENT_SIZES = [2, 8] if QUICK else [1, 2, 4, 8, 16, 32]  # code sizes of the compression curve
N_SAMPLES = int(os.environ.get("GENCOURSE_SAMPLES", 100 if QUICK else 1000))  # decoded random codes to score
NOISE_STD, MASK_PROB = 0.3, 0.25  # the corruption of the denoising autoencoder
TOY_SIGMA = 0.5  # the Gaussian noise of the 2D denoiser (section 5)
TOY_STEPS = int(os.environ.get("GENCOURSE_TOY_STEPS", 100 if QUICK else 1000))  # its training steps
DEVICE = os.environ.get("GENCOURSE_DEVICE", "auto")

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier
from torch import nn
from torch.nn import functional as F

import gencourse
from gencourse import autoencoder as ae
from gencourse import check, data, metrics, viz

gencourse.setup(seed=SEED)
device = gencourse.get_device(DEVICE)
lesson_start = time.perf_counter()


def verdict(ok, text):
    """Print a checked finding: PASS or FAIL, then what was checked."""
    print(f"{'PASS' if ok else 'FAIL'} {text}")

# %% [markdown]
# ## 1. Compression through a bottleneck
#
# An **autoencoder** is two networks trained together. The *encoder* $f$ maps an image $x$ with $D$ pixels
# to a short *code* $z = f(x)$ of $d \ll D$ numbers; the *decoder* $g$ maps the code back to an image
# $\hat x = \sigma(g(z))$, where $\sigma$ is the sigmoid and $g(z)$ are per-pixel *logits*. Because $z$ is
# small, the pair cannot learn the identity: it must find what the images have in common and keep only
# what tells one from another. Training minimizes the reconstruction loss, here the binary cross-entropy
# summed over pixels with intensities $x_d \in [0, 1]$ as soft targets,
#
# $$\mathcal{L}(x) = \sum_{d=1}^{D} \Big[-x_d \log \hat x_d - (1 - x_d)\log(1 - \hat x_d)\Big]
#   = \sum_{d=1}^{D} \Big[\operatorname{softplus}(l_d) - x_d\, l_d\Big], \qquad l = g(f(x)), \tag{1}$$
#
# averaged over the images of a batch. The right-hand form is computed from the logits $l$, which is what
# `F.binary_cross_entropy_with_logits` does (section 8 shows why that matters).
#
# The digits are 8×8, so $D = 64$.

# %%
train, val, test = (data.load(DATASET, split) for split in ("train", "val", "test"))
if DATASET != "digits":  # MNIST-sized data: a subset keeps the lesson short; raise it on a GPU
    train.images, train.labels = train.images[:10_000], train.labels[:10_000]
    val.images, val.labels = val.images[:2_000], val.labels[:2_000]
    test.images, test.labels = test.images[:2_000], test.labels[:2_000]
x_train, x_val, x_test = (ds.images.to(device) for ds in (train, val, test))
SHAPE = train.shape
print(f"{DATASET}: {len(train)} training images, shape {SHAPE}, {train.levels} levels")

# %% [markdown]
# **Exercise 1 (build and train).** Write `train_my_autoencoder(x_train, latent_dim)`, all of it:
# - an `encoder`, an `nn.Module` mapping images `(B, 1, 8, 8)` to codes `(B, latent_dim)` (flatten, a hidden
#   layer of, say, 128 units with a nonlinearity, then a linear layer to the code);
# - a `decoder` mapping codes back to one *logit* per pixel, `(B, 1, 8, 8)` (no sigmoid at its end);
# - the loss (1) from the logits, summed over the pixels of each image and averaged over the batch;
# - a training loop: Adam (learning rate about $2\cdot 10^{-3}$), some tens of epochs over shuffled
#   mini-batches of about 64 images.
#
# Return the pair `(encoder, decoder)`. The check trains it (with a fixed seed) on the 1000 training digits
# with codes of 2 and 8 numbers, and measures the squared error of $\sigma(g(f(x)))$ on the 350 validation
# digits. To pass, it must beat **PCA** with the same number of components, the best *linear* encoder and
# decoder. It takes a few seconds.

# %%
def train_my_autoencoder(x_train, latent_dim):
    """x_train (N, 1, H, W) in [0, 1] -> (encoder, decoder), trained: encoder (B, 1, H, W) -> (B, latent_dim),
    decoder (B, latent_dim) -> logits (B, 1, H, W)."""
    ### BEGIN SOLUTION
    pixels = x_train[0].numel()
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, 128), nn.LeakyReLU(), nn.Linear(128, latent_dim))
    decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.LeakyReLU(), nn.Linear(128, pixels),
                            nn.Unflatten(1, tuple(x_train.shape[1:])))
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=2e-3)
    for epoch in range(40):
        for batch in x_train[torch.randperm(len(x_train))].split(64):
            logits = decoder(encoder(batch))
            loss = F.binary_cross_entropy_with_logits(logits, batch, reduction="none").flatten(1).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return encoder, decoder
    ### END SOLUTION


# %%
check.autoencoder_from_scratch(train_my_autoencoder)

# %% [markdown]
# The lesson continues with the course's reference models. `MLPAutoencoder` is the same design with two
# hidden layers, $64 \to 256 \to 128 \to d$ and back (LeakyReLU between layers, no activation on the code
# or the logits):

# %%
gencourse.show(ae.MLPAutoencoder)

# %% [markdown]
# The parts every autoencoder of the course shares: `encode` feeds the encoder $2x - 1$, the pixels centred
# on $[-1, 1]$ (centred inputs train a little faster; the targets of the loss stay $x \in [0, 1]$), and `loss`
# is eq. (1). A *denoising* autoencoder (section 4) corrupts the input inside `loss`:

# %%
gencourse.show(ae.Autoencoder.encode)

# %%
gencourse.show(ae.Autoencoder.loss)

# %% [markdown]
# We start with a code of only $d = 2$ numbers, so that we can draw it. `train_autoencoder` trains with Adam
# and keeps the weights of the epoch with the lowest validation loss, stopping when it has not improved for 15
# epochs (never looking at the test split).

# %%
def make_autoencoder(latent_dim, **kwargs):
    """An MLP autoencoder for 8x8 digits, a small convolutional one for 28x28 images."""
    if DATASET == "digits":
        return ae.MLPAutoencoder(SHAPE, latent_dim=latent_dim, **kwargs).to(device)
    return ae.ConvAutoencoder(SHAPE, latent_dim=latent_dim, **kwargs).to(device)


def train_autoencoder(latent_dim, desc, select_on="clean", epochs=EPOCHS, **kwargs):
    gencourse.seed_everything(SEED)
    model = make_autoencoder(latent_dim, **kwargs)
    history = ae.train_autoencoder(model, x_train, x_val, epochs=epochs, seed=SEED, desc=desc, select_on=select_on)
    return model.eval(), history


model2, history2 = train_autoencoder(2, "autoencoder, d = 2")
history2.plot(title="autoencoder with a 2-number code")
plt.show()

# %%
with torch.no_grad():
    recon2 = model2(x_test[:16])
viz.image_grid(torch.cat([x_test[:16], recon2]).cpu(), nrow=16, tile_inches=0.7,
               title="test digits (top) and their reconstructions from 2 numbers (bottom)")
plt.show()

# %% [markdown]
# Two numbers are enough to get the rough shape of many digits, and not enough for the details: several
# reconstructions are a different, "prototypical" digit. To say *how* good they are we need a number.
#
# **Exercise 2.** Write `reconstruction_error(x, x_hat)`: the squared error summed over the pixels of each
# image, one number per image, $e(x) = \sum_d (x_d - \hat x_d)^2$. Shapes `(B, C, H, W)` → `(B,)`.

# %%
def reconstruction_error(x, x_hat):
    """x, x_hat: (B, C, H, W) -> (B,), the squared error summed over each image's pixels."""
    ### BEGIN SOLUTION
    return (x - x_hat).pow(2).flatten(1).sum(1)
    ### END SOLUTION


# %%
check.reconstruction_error(reconstruction_error)

# %% [markdown]
# The lesson continues with the reference, `Autoencoder.reconstruction_error`:

# %%
error2 = model2.reconstruction_error(x_test).mean().item()
print(f"test reconstruction error with d = 2: {error2:.2f} (squared error per image, {x_test[0].numel()} pixels)")
print(f"predicting the mean training image instead:  {(x_test - x_train.mean(0)).pow(2).flatten(1).sum(1).mean().item():.2f}")

# %% [markdown]
# ## 2. The latent space
#
# Every test digit becomes a point $z = f(x)$ in the plane. Colour the points by their label, which the
# autoencoder never saw:

# %%
with torch.no_grad():
    codes_test = model2.encode(x_test).cpu()
    codes_train = model2.encode(x_train).cpu()
fig, ax = plt.subplots(figsize=(6, 5))
sc = ax.scatter(codes_test[:, 0], codes_test[:, 1], c=test.labels, cmap="tab10", s=10, vmin=-0.5, vmax=9.5)
fig.colorbar(sc, ax=ax, ticks=range(10), label="label")
ax.set_title("codes of the test digits, coloured by label", fontsize=10)
ax.set_xlabel("$z_1$")
ax.set_ylabel("$z_2$")
plt.show()

# %% [markdown]
# Now decode a regular 12×12 grid of codes spanning the region the training codes occupy (from their 1% to
# their 99% quantile on each axis; $z_1$ grows to the right, $z_2$ upwards, as in the scatter plot):

# %%
lo, hi = codes_train.quantile(0.01, 0).tolist(), codes_train.quantile(0.99, 0).tolist()
n_grid = 12
g1, g2 = torch.linspace(lo[0], hi[0], n_grid), torch.linspace(hi[1], lo[1], n_grid)
grid_codes = torch.stack(torch.meshgrid(g2, g1, indexing="ij")[::-1], -1).reshape(-1, 2)
with torch.no_grad():
    viz.image_grid(model2.decode(grid_codes.to(device)).cpu(), nrow=n_grid, tile_inches=0.55,
                   title="decoded grid of codes over the region of the training codes")
plt.show()

# %% [markdown]
# The autoencoder has sorted the digits by shape without labels: most classes gather in a region of their
# own, and similar digits (4 and 9, 3 and 5 and 8) are neighbours or overlap, near the centre of the plot,
# where two numbers cannot keep them apart. Notice two things that will matter in section 7: the codes are
# not spread evenly, but lie on arms and clusters with empty space between them; and their scale is whatever
# training made it (look at the axes), nothing ties it to, say, a unit Gaussian.

# %% [markdown]
# ## 3. How much does a bigger code buy?
#
# Train the same architecture with codes of several sizes, and compare with **PCA**, the best *linear*
# encoder and decoder with $d$ components: an autoencoder with linear layers and squared error learns the
# same subspace (Baldi & Hornik, 1989). The nonlinear autoencoder should beat it most where the code is
# smallest.

# %%
sweep = {}
for d in LATENT_SIZES:
    model, history = (model2, history2) if d == 2 else train_autoencoder(d, f"autoencoder, d = {d}")
    sweep[d] = {"model": model, "error": model.reconstruction_error(x_test).mean().item(), "epochs": history.epochs}
flat_train, flat_test = x_train.flatten(1).cpu().numpy(), x_test.flatten(1).cpu().numpy()
for d in LATENT_SIZES:
    pca = PCA(n_components=d, random_state=SEED).fit(flat_train)
    back = pca.inverse_transform(pca.transform(flat_test)).clip(0, 1)
    sweep[d]["pca"] = float(((flat_test - back) ** 2).sum(1).mean())
print(" d   autoencoder   PCA    (test squared error per image)")
for d in LATENT_SIZES:
    print(f"{d:2d}   {sweep[d]['error']:9.2f}   {sweep[d]['pca']:6.2f}")
headline_error = gencourse.headline("autoencoder d=2: test reconstruction error", sweep[2]["error"] if 2 in sweep else error2, "{:.2f}")

# %%
fig, ax = plt.subplots(figsize=(5, 3.3))
ax.plot(LATENT_SIZES, [sweep[d]["error"] for d in LATENT_SIZES], "o-", label="autoencoder (MLP)")
ax.plot(LATENT_SIZES, [sweep[d]["pca"] for d in LATENT_SIZES], "s--", label="PCA (linear)")
ax.set_xscale("log", base=2)
ax.set_xlabel("code size d")
ax.set_ylabel("test reconstruction error")
ax.legend()
ax.set_title("reconstruction error against code size (measured)", fontsize=10)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
errors = [sweep[d]["error"] for d in LATENT_SIZES]
small = min(LATENT_SIZES)
verdict(errors[-1] < 0.6 * errors[0], "the error falls as the code grows (largest code < 0.6 x smallest code)")
verdict(sweep[small]["error"] < sweep[small]["pca"], "with the smallest code the autoencoder beats PCA")

# %% [markdown]
# The error falls quickly up to a code of about 16 numbers and hardly at all after: most of what varies between
# digits is captured by a handful of directions. With small codes the nonlinear autoencoder is far better
# than PCA, because it can bend its 2D or 4D "surface" of digits. With large codes PCA catches up and, at
# half of the 64 dimensions, wins (0.15 against 0.59). PCA keeps 32 exact directions and minimizes the
# squared error directly, the very measure of this table, while the network is trained with cross-entropy (1)
# on 1000 images and, at d = 32, ran into the 100-epoch cap (best validation loss at epoch 90): it is not a
# perfect identity. Autoencoders earn their keep at strong compression.
#
# **Codes as features.** The main practical use of an autoencoder is often its encoder: the code is a
# compact description of the image for a downstream task. A quick test is a $k$-nearest-neighbour
# classifier ($k = 5$) that labels each test digit by its neighbours among the training digits, once on
# the codes and once on the 64 raw pixels. The autoencoder never saw a label.

# %%
def knn_accuracy(features_train, features_test):
    knn = KNeighborsClassifier(n_neighbors=5).fit(features_train, train.labels.numpy())
    return float((knn.predict(features_test) == test.labels.numpy()).mean())


probe = {"pixels (64 numbers)": knn_accuracy(flat_train, flat_test)}
for d in LATENT_SIZES:
    with torch.no_grad():
        z_tr, z_te = (sweep[d]["model"].encode(x).cpu().numpy() for x in (x_train, x_test))
    probe[f"codes, d = {d}"] = knn_accuracy(z_tr, z_te)
for name, acc in probe.items():
    print(f"5-NN test accuracy on {name:<20} {acc:.3f}")

# %%
# NBVAL_CHECK_OUTPUT
probe_d = 16 if 16 in LATENT_SIZES else max(LATENT_SIZES)
verdict(probe[f"codes, d = {probe_d}"] >= probe["pixels (64 numbers)"] - 0.05,
        f"codes of {probe_d} numbers classify within 0.05 of the 64 raw pixels (5-NN test accuracy)")
verdict(probe["codes, d = 2"] < probe[f"codes, d = {probe_d}"] - 0.1,
        f"codes of 2 numbers lose more than 0.1 of accuracy against codes of {probe_d}")

# %% [markdown]
# Sixteen numbers found without labels keep nearly all the class information of the 64 pixels (5-NN accuracy
# within 0.05 of theirs); two numbers lose much of it (the overlapping classes of section 2). Other ways to
# make the code useful rather than small: a **sparse** autoencoder (Ng, 2011) allows a wide code but
# penalizes how many units are active; a **contractive** one (Rifai et al., 2011) penalizes the encoder's
# Jacobian, so that small changes of the input barely move the code; and **masked autoencoders** (He et al.,
# 2022), today's main use of the idea, hide most patches of an image and train a transformer to fill them in,
# which makes an encoder whose features transfer to other tasks. Masking is a corruption, and filling in is denoising: the next section.

# %% [markdown]
# ## 4. Denoising autoencoders
#
# An autoencoder with a large code could learn something close to the identity and learn little about
# digits. A **denoising autoencoder** (Vincent et al., 2008) is given a *corrupted* copy $\tilde x$ and must
# reconstruct the *clean* $x$:
#
# $$\mathcal{L}_\text{DAE}(x) = \mathcal{L}\big(x;\, g(f(\tilde x))\big), \qquad
#   \tilde x = \operatorname{clip}\big(m \odot (x + \sigma \varepsilon)\big),\;
#   \varepsilon \sim \mathcal{N}(0, I),\; m_d \sim \text{Bernoulli}(1 - p).$$
#
# Here $\sigma = 0.3$ and a share $p = 0.25$ of the pixels is blanked. The code is 16 numbers. It is
# selected (early stopping) on what it is trained for: the loss of reconstructing the clean validation
# digits from one fixed corrupted copy of them, `select_on="corrupted"`. (On the clean validation loss, the
# criterion of the plain autoencoder, it would be picked for a task it is not trained to do.) Denoising is
# the harder task and learns more slowly, so it may train up to three times as many epochs; early stopping
# ends it when the corrupted validation loss stops improving.

# %%
gencourse.show(ae.corrupt)

# %%
dae, dae_history = train_autoencoder(16, "denoising autoencoder, d = 16", select_on="corrupted", epochs=3 * EPOCHS,
                                     noise_std=NOISE_STD, mask_prob=MASK_PROB)
plain = sweep[16]["model"] if 16 in sweep else train_autoencoder(16, "autoencoder, d = 16")[0]
g = torch.Generator().manual_seed(SEED)
x_noisy = ae.corrupt(x_test.cpu(), noise_std=NOISE_STD, mask_prob=MASK_PROB, generator=g).to(device)
with torch.no_grad():
    rows = [x_test[:12], x_noisy[:12], plain(x_noisy[:12]), dae(x_noisy[:12])]
viz.image_grid(torch.cat(rows).cpu(), nrow=12, tile_inches=0.7,
               title="rows: clean / corrupted / plain autoencoder / denoising autoencoder")
plt.show()

# %%
err_plain = plain.reconstruction_error(x_test, inputs=x_noisy).mean().item()
err_dae = dae.reconstruction_error(x_test, inputs=x_noisy).mean().item()
err_input = (x_noisy - x_test).pow(2).flatten(1).sum(1).mean().item()
clean_plain = plain.reconstruction_error(x_test).mean().item()
clean_dae = dae.reconstruction_error(x_test).mean().item()
print(f"squared error to the clean test digits: corrupted input {err_input:.2f}, "
      f"plain autoencoder {err_plain:.2f}, denoising autoencoder {err_dae:.2f}")
print(f"on clean inputs: plain {clean_plain:.2f}, denoising {clean_dae:.2f} ({clean_dae / clean_plain:.1f} x)")
headline_dae = gencourse.headline("denoising AE: error on corrupted test digits", err_dae, "{:.2f}")

# %%
# NBVAL_CHECK_OUTPUT
verdict(err_dae < 0.8 * err_plain, "the denoising autoencoder cleans corrupted digits better than the plain one (error < 0.8 x)")
verdict(1.3 * clean_plain < clean_dae < 3 * clean_plain,
        "on clean digits the denoising autoencoder's error is 1.3 to 3 times the plain one's")

# %% [markdown]
# The plain autoencoder, never shown noise, passes much of it through; the denoising one has learned where
# the strokes of a digit go, and fills blanked pixels back in. On clean inputs the plain one is better (it
# was trained for exactly that): the denoising one's error there is about twice as large (2.0 times here; the
# check above asks for 1.3 to 3 times), the price of robustness.
#
# ## 5. What a denoiser knows: the score
#
# Why does "learn to undo a corruption" teach a model about the data? For Gaussian noise and the squared
# error, what the ideal denoiser encodes is the **score** $\nabla_x \log p$ of the (noised) data density. (The
# digits denoiser above also blanks pixels and uses cross-entropy, so we test the identity below on 2D
# points, with Gaussian noise and the squared error.) Corrupt $x \sim p$ with
# $\tilde x = x + \sigma\varepsilon$; the noisy points have the density $p_\sigma = p * \mathcal N(0, \sigma^2 I)$.
# The denoiser $r$ that minimizes the squared error $\mathbb E\,\lVert r(\tilde x) - x\rVert^2$ is the
# posterior mean $r^*(\tilde x) = \mathbb E[x \mid \tilde x]$, and **Tweedie's formula** says
#
# $$r^*(\tilde x) = \tilde x + \sigma^2\, \nabla_{\tilde x} \log p_\sigma(\tilde x)
#   \qquad\Longleftrightarrow\qquad
#   \nabla \log p_\sigma(\tilde x) = \frac{r^*(\tilde x) - \tilde x}{\sigma^2}. \tag{2}$$
#
# (Differentiate $p_\sigma(\tilde x) = \int p(x)\,\mathcal N(\tilde x; x, \sigma^2 I)\,dx$ under the integral:
# $\nabla p_\sigma(\tilde x) = \int p(x)\,\mathcal N(\tilde x; x, \sigma^2 I)\,(x - \tilde x)/\sigma^2\,dx$, and
# divide by $p_\sigma$.) So a trained denoiser's correction, divided by $\sigma^2$, estimates the score of the
# *noised* density; Vincent (2011) showed that training a denoiser is score matching, and Alain & Bengio (2014)
# that as $\sigma \to 0$ it recovers the score of $p$ itself. The score points towards more probable data:
# follow it, and you move noise towards data. That is how diffusion models (lesson 06) generate.
#
# Test eq. (2) where everything is known: the 8-Gaussians ring of 2D points, a mixture of eight Gaussians
# $\mathcal N(c_k, \mathrm{std}^2 I)$ with equal weights. Its noised density is again such a mixture, so its score is
# exact.
#
# **Exercise 3 (derive it).** Write `noised_mixture_score(x, centers, std, sigma)`: the score
# $\nabla_x \log p_\sigma(x)$ of $p = \frac1K\sum_k \mathcal N(c_k, \mathrm{std}^2 I)$ after adding
# $\mathcal N(0, \sigma^2 I)$ noise. Shapes: `x (B, D)`, `centers (K, D)` → `(B, D)`. Two steps: what
# does adding independent Gaussian noise do to each component? Then differentiate the log of a sum of Gaussian
# densities, and write the result so that a point far from every centre gives no overflow.

# %%
def noised_mixture_score(x, centers, std, sigma):
    """x (B, D), centers (K, D), std and sigma floats -> (B, D): grad_x log p_sigma(x)."""
    ### BEGIN SOLUTION
    variance = std ** 2 + sigma ** 2                        # noise adds variances
    diff = centers[None, :, :] - x[:, None, :]              # (B, K, D): c_k - x
    log_weights = -(diff ** 2).sum(-1) / (2 * variance)     # log N(x; c_k, variance I) up to a constant
    responsibilities = torch.softmax(log_weights, dim=1)    # (B, K), the posterior over components
    return (responsibilities[..., None] * diff).sum(1) / variance
    ### END SOLUTION


# %%
check.noised_mixture_score(noised_mixture_score)

# %% [markdown]
# The lesson continues with the reference, `autoencoder.mixture_score` (eq. 3 in its docstring):

# %%
gencourse.show(ae.mixture_score)

# %% [markdown]
# Now train a denoiser on ring points with $\sigma = 0.5$: a small MLP $r(\tilde x) = \tilde x +
# \mathrm{net}(\tilde x)$, squared error against the clean point, fresh noise at every step. It never sees a
# density or a score.

# %%
gencourse.show(ae.train_denoiser)

# %%
ring_points = data.toy2d("8gaussians", 20_000, seed=SEED)
t0 = time.perf_counter()
denoiser, toy_losses = ae.train_denoiser(ring_points, TOY_SIGMA, steps=TOY_STEPS, seed=SEED)
print(f"2D denoiser: {TOY_STEPS} steps in {time.perf_counter() - t0:.1f} s, final loss {np.mean(toy_losses[-50:]):.3f}")

# noisy points drawn from p_sigma, where the density is not negligible: the score is compared there
g = torch.Generator().manual_seed(SEED + 1)
x_eval = data.toy2d("8gaussians", 4000, seed=SEED + 1000)
x_eval = x_eval + TOY_SIGMA * torch.randn(x_eval.shape, generator=g)
centers = data.RING_CENTERS
score_dae = ae.denoiser_score(denoiser, x_eval, TOY_SIGMA)
score_true = ae.mixture_score(x_eval, centers, data.RING_STD, TOY_SIGMA)
score_clean = ae.mixture_score(x_eval, centers, data.RING_STD, 0.0)  # the score of p itself, not p_sigma


def relative_error(estimate, exact):
    """E|estimate - exact|^2 / E|exact|^2 over the points: 0 is perfect, 1 is no better than predicting 0."""
    return ((estimate - exact) ** 2).sum(1).mean().item() / (exact ** 2).sum(1).mean().item()


cosine = F.cosine_similarity(score_dae, score_true, dim=1)
rel_true, rel_clean = relative_error(score_dae, score_true), relative_error(score_dae, score_clean)
print(f"on {len(x_eval)} points from p_sigma: mean cosine between (r(x~) - x~)/sigma^2 and the exact score of "
      f"p_sigma {cosine.mean().item():.3f} (median {cosine.median().item():.3f})")
print(f"relative squared error against the score of p_sigma: {rel_true:.3f}; against the score of the "
      f"un-noised p: {rel_clean:.3f}")
gencourse.headline("2D denoiser: mean cosine with the exact score", cosine.mean().item(), "{:.3f}")

# %%
lim, n_arrows = 4.5, 25
ticks = torch.linspace(-lim, lim, n_arrows)
arrows_at = torch.stack(torch.meshgrid(ticks, ticks, indexing="xy"), -1).reshape(-1, 2)


def log_p_sigma(x):
    """log p_sigma up to a constant: the noised ring is a mixture of N(c_k, (std^2 + sigma^2) I)."""
    return torch.logsumexp(-((x[:, None] - centers) ** 2).sum(-1) / (2 * (data.RING_STD ** 2 + TOY_SIGMA ** 2)), 1)


# arrows only where p_sigma is at least 1/100 of its peak: elsewhere there are (almost) no training points
arrows_at = arrows_at[log_p_sigma(arrows_at) > log_p_sigma(centers).max() - math.log(100)]
density_grid, _ = viz.grid2d(lim, 150)
fields = {"exact score of $p_\\sigma$": ae.mixture_score(arrows_at, centers, data.RING_STD, TOY_SIGMA),
          "denoiser's $(r(\\tilde x) - \\tilde x)/\\sigma^2$": ae.denoiser_score(denoiser, arrows_at, TOY_SIGMA)}
fig, axes = plt.subplots(1, 2, figsize=(10, 5))
for ax, (name, field) in zip(axes, fields.items()):
    ax.imshow(log_p_sigma(density_grid).exp().reshape(150, 150).numpy(), extent=(-lim, lim, -lim, lim),
              origin="lower", cmap="Greys", alpha=0.5)
    ax.quiver(arrows_at[:, 0], arrows_at[:, 1], field[:, 0], field[:, 1], color="C0", angles="xy",
              scale_units="xy", scale=8, width=0.004)
    ax.set_title(name, fontsize=11)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
fig.suptitle(f"score fields of the noised ring, sigma = {TOY_SIGMA} (grey: the density p_sigma; arrows where it "
             "is at least 1% of its peak, same scale in both panels)",
             fontsize=10)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
verdict(cosine.mean().item() >= 0.9, "the denoiser's score points where the exact score of p_sigma points (mean cosine >= 0.9)")
verdict(rel_true <= 0.15, "and has its size: relative squared error against the exact score <= 0.15")
verdict(rel_true < 0.5 * rel_clean, "it estimates the score of the NOISED density p_sigma, not of p "
        "(error against p's score more than twice as large)")

# %% [markdown]
# The denoiser, trained only to clean up points, has learned the score field of the noised ring: its arrows
# point where the exact ones point (mean cosine 0.979 here; the check asks for at least 0.9) with about the
# right length, and they
# agree with $p_\sigma$'s score much better than with the sharper $p$'s. That is the trade-off diffusion
# models resolve: a large $\sigma$ gives a smooth score that is easy to learn everywhere but describes a
# blurred density; a small $\sigma$ gives the score of the data itself but only near it. Lesson 06 trains one
# network for all noise levels at once (its noise predictor is this correction, rescaled) and follows the
# scores from large $\sigma$ down to small, which turns noise into samples.

# %% [markdown]
# ## 6. Anomaly scores from reconstruction error
#
# An autoencoder reconstructs well what resembles its training data. So the reconstruction error $e(x)$
# is an **anomaly score**: high for inputs unlike the training set. We score the test digits (normal) and
# five kinds of out-of-distribution inputs: noise, digits with their pixels scrambled, inverted digits
# $1 - x$ (black ink on white, where the data are white ink on black), and digits flipped upside-down or
# mirrored, which are still strokes of the right thickness in the right place, the hard case.

# %%
def out_of_distribution(x, generator):
    """Five kinds of inputs that are not digits of the training distribution, each like x (N, C, H, W)."""
    n, pixels = len(x), x[0].numel()
    levels = data.LEVELS[DATASET]
    return {
        "uniform noise": torch.randint(0, levels, x.shape, generator=generator) / (levels - 1),
        "scrambled pixels": x.flatten(1)[:, torch.randperm(pixels, generator=generator)].view_as(x),
        "inverted (1 - x)": 1 - x,
        "upside-down": torch.flip(x, dims=(2,)),
        "mirrored": torch.flip(x, dims=(3,)),
    }


ood = {k: v.to(device) for k, v in out_of_distribution(x_test.cpu(), g).items()}
detector = sweep[8]["model"] if 8 in sweep else sweep[max(LATENT_SIZES)]["model"]
score_normal = detector.reconstruction_error(x_test).cpu()
score_ood = {k: detector.reconstruction_error(v).cpu() for k, v in ood.items()}
fig, axes = plt.subplots(1, len(ood), figsize=(2.9 * len(ood), 3.2))
for axi, (name, x) in zip(axes, ood.items()):
    viz.image_grid(x[:16].cpu(), nrow=4, ax=axi, title=name)
plt.show()

# %% [markdown]
# How well does a score separate two groups? Pick a threshold; everything above is flagged. The **ROC
# curve** plots the share of anomalies flagged against the share of normal inputs flagged, for every
# threshold; the area under it, the **ROC AUC**, is the probability that a random anomaly scores higher
# than a random normal input (ties count one half). 1 is perfect, 0.5 is a coin.
#
# **Exercise 4.** Write `roc_auc(scores_normal, scores_anomalous)` →
# $\Pr(s_\text{anomalous} > s_\text{normal}) + \tfrac12 \Pr(s_\text{anomalous} = s_\text{normal})$ over all
# pairs of one normal and one anomalous score, as a Python float. (This is the Mann–Whitney statistic: the
# area under the ROC curve equals it, because sweeping the threshold past each normal score adds a strip of
# width $1/n$ whose height is the share of anomalies scored above it.)

# %%
def roc_auc(scores_normal, scores_anomalous):
    """scores_normal (n,), scores_anomalous (m,) -> float: P(anomalous > normal) + 0.5 P(equal)."""
    ### BEGIN SOLUTION
    normal, anomalous = scores_normal[None, :], scores_anomalous[:, None]   # (1, n) and (m, 1): all pairs
    higher = (anomalous > normal).double().mean()
    ties = (anomalous == normal).double().mean()
    return float(higher + 0.5 * ties)
    ### END SOLUTION


# %%
check.anomaly_roc_auc(roc_auc)

# %% [markdown]
# The lesson continues with the reference, `autoencoder.roc_auc`, which computes the same statistic from ranks
# (no $n \times m$ table of pairs):

# %%
gencourse.show(ae.roc_auc)

# %%
aucs = {name: ae.roc_auc(score_normal, s) for name, s in score_ood.items()}
for name, auc in aucs.items():
    print(f"ROC AUC {auc:.3f}  test digits vs {name}")
flipped_auc = ae.roc_auc(score_normal, torch.cat([score_ood["upside-down"], score_ood["mirrored"]]))
gencourse.headline("anomaly ROC AUC: digits vs flipped digits", flipped_auc, "{:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
bins = np.linspace(0, float(torch.cat([score_normal, *score_ood.values()]).quantile(0.98)), 40)
axes[0].hist(score_normal.numpy(), bins=bins, alpha=0.6, density=True, label="test digits")
for name in ("upside-down", "mirrored", "inverted (1 - x)"):
    axes[0].hist(score_ood[name].numpy(), bins=bins, alpha=0.4, density=True, label=name)
axes[0].set_xlabel("reconstruction error")
axes[0].legend(fontsize=8)
axes[0].set_title("anomaly scores", fontsize=10)
for name, s in score_ood.items():
    labels_all = np.r_[np.zeros(len(score_normal)), np.ones(len(s))]
    order = np.argsort(-np.r_[score_normal.numpy(), s.numpy()], kind="stable")
    tpr = np.cumsum(labels_all[order]) / len(s)
    fpr = np.cumsum(1 - labels_all[order]) / len(score_normal)
    axes[1].plot(np.r_[0, fpr], np.r_[0, tpr], label=f"{name} ({aucs[name]:.2f})")
axes[1].plot([0, 1], [0, 1], "k:", lw=1)
axes[1].set_xlabel("normal digits flagged")
axes[1].set_ylabel("anomalies flagged")
axes[1].legend(fontsize=7)
axes[1].set_title("ROC curves", fontsize=10)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
for name in ("uniform noise", "scrambled pixels", "inverted (1 - x)"):
    verdict(aucs[name] >= 0.95, f"{name}: ROC AUC >= 0.95")
verdict(0.6 <= flipped_auc < 0.99, "flipped digits: 0.6 <= ROC AUC < 0.99 (better than chance, not perfect)")

# %% [markdown]
# Noise, scrambled and inverted digits are caught every time. Flipped digits are harder, and not only
# because the detector is imperfect: an upside-down 0, 1 or 8 *is* a plausible digit. The flipped inputs
# that score as most normal show it:

# %%
flipped = torch.cat([ood["upside-down"], ood["mirrored"]]).cpu()
most_normal = torch.cat([score_ood["upside-down"], score_ood["mirrored"]]).argsort()[:12]
viz.image_grid(flipped[most_normal], nrow=12, tile_inches=0.8, title="flipped inputs with the lowest anomaly scores")
plt.show()

# %% [markdown]
# A reconstruction-error detector knows only "looks like my training data". That is useful (and
# widely used for defects and fraud), but it is a heuristic: it does not give a *probability* of the
# input. Would a model with a likelihood $p(x)$ do better, with $-\log p(x)$ as the score? It is the natural
# candidate, and lesson 03 builds such a model, but a high likelihood does not mean "in distribution":
# Nalisnick et al. (2019) found that deep generative models trained on one image set often give *higher*
# likelihood to another, simpler one (flows, VAEs and PixelCNNs trained on CIFAR-10 rate SVHN house numbers as
# more likely than CIFAR-10's own test images), because likelihood tracks how simple an image is as much as
# what it shows. Lesson 05 measures this with its flow on digits: blank images and noise against real
# digits. Whatever the score, judge it the way this section does: on the anomalies you care about, with a
# ROC AUC.
#
# ## 7. "Sample the latent space to generate data"
#
# A popular claim: train an autoencoder, then decode random codes to make new images. But random codes
# drawn *how*? The autoencoder defines no distribution over codes. The natural guess is a standard normal
# $z \sim \mathcal{N}(0, I)$; a more careful one fits a Gaussian $\mathcal{N}(m, S)$ to the codes of the
# training images and samples that. We try both, with codes of 2 and 16 numbers, and score the decoded
# images with the course's sample-quality figures next to the real row. `sample` draws from the fitted
# Gaussian and refuses to run before `fit_code_distribution` has fitted it (an unfitted model would otherwise
# silently sample $\mathcal N(0, I)$):

# %%
gencourse.show(ae.Autoencoder.sample_codes)

# %%
g = torch.Generator().manual_seed(SEED)
decoded = {}
for d in (2, 16):
    model = sweep[d]["model"] if d in sweep else train_autoencoder(d, f"autoencoder, d = {d}")[0]
    with torch.no_grad():
        decoded[f"d={d}, N(0, I) codes"] = model.decode(torch.randn(N_SAMPLES, d, generator=g).to(device)).cpu()
    model.fit_code_distribution(x_train)
    decoded[f"d={d}, fitted Gaussian"] = model.sample(N_SAMPLES, generator=g).cpu()
fig, axes = plt.subplots(2, 2, figsize=(10.5, 6.2))
for axi, (name, x) in zip(axes.flat, decoded.items()):
    viz.image_grid(x[:32], nrow=8, ax=axi, title=name)
plt.show()

# %%
short = {"d=2, N(0, I) codes": "d2 N(0,I)", "d=2, fitted Gaussian": "d2 fitted",
         "d=16, N(0, I) codes": "d16 N(0,I)", "d=16, fitted Gaussian": "d16 fitted"}
quality = {short[name]: metrics.sample_quality(x, DATASET) for name, x in decoded.items()}
real = metrics.reference_quality(DATASET)
print(f"decoded random codes, {N_SAMPLES} per set")
print(metrics.format_quality(quality, real))
headline_naive = gencourse.headline("AE d=16, N(0, I) codes: recognized", quality["d16 N(0,I)"]["recognized"], "{:.2f}")

# %% [markdown]
# Read the table against the "real" column. Standard-normal codes are the naive reading of "sample the
# latent space", and they fail: with 2 numbers they cover only a few classes, with 16 many decoded images
# are not recognized as digits, and in both cases the Fréchet distance is many times the real one. The
# autoencoder's codes were never asked to look like $\mathcal{N}(0, I)$: their scale and centre are
# arbitrary (section 2). A Gaussian fitted to the training codes is already a small generative model bolted
# onto the autoencoder afterwards. It improves the Fréchet distance, the classes covered and `recall` at both
# sizes, and `recognized` at d = 16 (0.691 against 0.480); at d = 2 `recognized` is a tie (0.830 against
# 0.826). It is not better everywhere: at d = 16 `precision` does not improve (0.760 against 0.692 here). Even so, the decoded
# images (blurry at d = 2, distorted and high-contrast at d = 16) reach far fewer of the reference digits
# than real digits do (`recall`, the coverage, 0.387 and 0.392 against 0.839 here: well under the real row's,
# below 0.7 times it on every seed, so much of the variety of real digits is missing), and with 16 numbers about a third is not recognized as
# digits. Why? The **holes**: codes of real digits fill only part of the code space, and
# the decoder has never been trained on the rest. Measure how far random codes fall from the nearest
# training code, relative to how far *test* codes fall:

# %%
def nearest_distance(a, b):
    """For each row of a (N, d), the Euclidean distance to its nearest row of b (M, d)."""
    return torch.cdist(a, b).min(1).values


holes = {}
for d in (2, 16):
    model = sweep[d]["model"] if d in sweep else None
    if model is None:
        continue
    with torch.no_grad():
        z_train, z_test = model.encode(x_train).cpu(), model.encode(x_test).cpu()
    z_random = model.sample_codes(N_SAMPLES, generator=g).cpu()  # the Gaussian fitted to this model's codes
    holes[d] = (nearest_distance(z_random, z_train).median() / nearest_distance(z_test, z_train).median()).item()
    print(f"d = {d:2d}: random codes from the fitted Gaussian lie {holes[d]:.1f} x farther from the nearest "
          f"training code than test codes do")

# %% [markdown]
# In two dimensions we can look. The coloured points are the training codes of the $d = 2$ autoencoder (the
# model of sections 1 and 2); black x marks are $\mathcal N(0, I)$ codes; open black circles are codes from the Gaussian
# fitted to these very training codes (`model2.sample_codes`, after `fit_code_distribution` in the cell above):

# %%
z_random2 = model2.sample_codes(300, generator=g).cpu()
fig, ax = plt.subplots(figsize=(6.5, 5.5))
ax.scatter(codes_train[:, 0], codes_train[:, 1], c=train.labels, cmap="tab10", s=7, vmin=-0.5, vmax=9.5, alpha=0.6)
ax.scatter(*torch.randn(300, 2, generator=g).T, marker="x", c="k", s=14, lw=0.8, label="codes from N(0, I)")
ax.scatter(z_random2[:, 0], z_random2[:, 1], marker="o", facecolors="none", edgecolors="k", s=18, lw=0.8,
           label="codes from the fitted Gaussian")
ax.legend(fontsize=8, loc="lower right")
ax.set_xlabel("$z_1$")
ax.set_ylabel("$z_2$")
ax.set_title("training codes (coloured by label) and random codes, d = 2", fontsize=10)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
q_naive = quality["d16 N(0,I)"]
print("PASS decoded N(0, I) codes (d = 16): recognized < 0.8 x real"
      if q_naive["recognized"] < 0.8 * real["recognized"] else "FAIL decoded N(0, I) codes are recognized like real digits")
print("PASS decoded N(0, I) codes (d = 16): fewer than 10 classes covered or Frechet > 4 x real"
      if q_naive["classes_covered"] < 10 or q_naive["frechet"] > 4 * real["frechet"] else "FAIL N(0, I) codes cover like real")
ok = all(quality[k]["recall"] < 0.7 * real["recall"] for k in ("d2 fitted", "d16 fitted"))
print(f"{'PASS' if ok else 'FAIL'} decoded codes of the fitted Gaussians: recall < 0.7 x real (much of the variety missing)")
print("PASS random codes fall in holes: farther from training codes than test codes are (d = 16)"
      if holes.get(16, 2.0) > 1.0 else "FAIL random codes are as close to the data as test codes")
spread = codes_train.std(0)
verdict(((z_random2.mean(0) - codes_train.mean(0)).abs() < 0.25 * spread).all()
        and ((z_random2.std(0) / spread - 1).abs() < 0.25).all(),
        "the open circles of the d = 2 figure come from the Gaussian fitted to that model's codes "
        "(mean within 0.25 std, std within 25%)")

# %% [markdown]
# So a plain autoencoder is not a sampler. It has no distribution over codes, so "random code" has no
# meaning until we invent one, and the decoder is only trained where the real codes are. The fix is to
# make the distribution over codes part of the model and to *train* for it: choose a prior $p(z)$, say
# $\mathcal{N}(0, I)$, and train encoder and decoder so that codes drawn from the prior decode to
# digits. That is the variational autoencoder of lesson 03; it also gives a bound on the likelihood that
# section 6 was missing.
#
# ## 8. Two pitfalls: the loss and the last activation
#
# Many tutorials normalize images to $[-1, 1]$ (for a `tanh` output) and then use binary cross-entropy,
# which needs targets in $[0, 1]$. PyTorch's `BCELoss` refuses such targets, but `BCEWithLogitsLoss` does
# not check, and the loss then has no minimum: for a target $t = -1$ the per-pixel loss
# $\operatorname{softplus}(l) - t\,l = \operatorname{softplus}(l) + l$ decreases without bound as
# $l \to -\infty$. Measured:

# %%
logits = torch.tensor([-3.0, -10.0, -30.0])
target = torch.full((3,), -1.0)  # a background pixel of an image in [-1, 1]
print("BCEWithLogitsLoss with target -1 at logits -3, -10, -30:",
      F.binary_cross_entropy_with_logits(logits, target, reduction="none").tolist())
try:
    F.binary_cross_entropy(torch.sigmoid(logits), target)
    bce_refuses = False
except (RuntimeError, ValueError):
    bce_refuses = True
print("BCELoss with target -1 raises an error:", bce_refuses)

# %% [markdown]
# The second pitfall: a decoder ending in `torch.sigmoid` followed by `BCELoss`. In float32,
# $\sigma(40)$ rounds to exactly 1, $\log(1 - 1) = -\infty$, and `BCELoss` clamps the log at $-100$: a
# confidently wrong pixel gets a wrong loss and *no gradient*, so training cannot fix it. Working with the
# logits, $\operatorname{softplus}(l) - t\,l$ is exact and its gradient $\sigma(l) - t$ is never lost:

# %%
l = torch.tensor([5.0, 40.0, 150.0], requires_grad=True)  # logits; the target of every pixel is 0
t = torch.zeros(3)
loss_a = F.binary_cross_entropy(torch.sigmoid(l), t, reduction="none")
(grad_a,) = torch.autograd.grad(loss_a.sum(), l)
loss_b = F.binary_cross_entropy_with_logits(l, t, reduction="none")
(grad_b,) = torch.autograd.grad(loss_b.sum(), l)
print(f"sigmoid + BCELoss:  loss {[round(v, 3) for v in loss_a.tolist()]}, gradient {[round(v, 3) for v in grad_a.tolist()]}")
print(f"BCEWithLogitsLoss:  loss {[round(v, 3) for v in loss_b.tolist()]}, gradient {[round(v, 3) for v in grad_b.tolist()]}")

# %% [markdown]
# **Exercise 5.** Your colleague's data loader gives images `x` on $[-1, 1]$, and the decoder gives logits.
# Write `autoencoder_bce(logits, x)`: the binary cross-entropy from the logits with the targets mapped back
# to $[0, 1]$, summed over the pixels of each image and averaged over the batch, exact even for saturated logits.
# The reduction is the one you wrote in Exercise 1. What is left to work out is
# the target: which map takes $[-1, 1]$ to $[0, 1]$ (the cells above showed what goes wrong if `x` is passed
# as it is).

# %%
def autoencoder_bce(logits, x):
    """logits (B, C, H, W), images x in [-1, 1] of the same shape -> scalar: mean over images of the summed BCE."""
    ### BEGIN SOLUTION
    target = (x + 1) / 2
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1).mean()
    ### END SOLUTION


# %%
check.autoencoder_bce(autoencoder_bce)

# %%
# NBVAL_CHECK_OUTPUT
print("PASS BCEWithLogitsLoss with targets in [-1, 1] goes below zero (no minimum)"
      if F.binary_cross_entropy_with_logits(torch.tensor(-30.0), torch.tensor(-1.0)) < 0 else "FAIL")
print("PASS BCELoss refuses targets outside [0, 1]" if bce_refuses else "FAIL BCELoss accepted a target of -1")
print("PASS sigmoid + BCELoss loses the gradient of a saturated pixel; logits keep it"
      if grad_a[2].abs() < 1e-6 and abs(grad_b[2].item() - 1.0) < 1e-6 else "FAIL")

# %%
print(f"lesson run time: {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Summary
#
# - An autoencoder compresses an image to a code and back; you built and trained one. Its reconstruction
#   error falls with the code size (measured from 1 to 32 numbers), and a nonlinear one beats PCA most at
#   small codes. Codes of 16 numbers, learned without labels, classify digits nearly as well as the pixels.
# - Without labels, the code space sorts digits by shape; but the codes fill only part of it, at an
#   arbitrary scale.
# - A denoising autoencoder learns to undo corruption, and cleans corrupted digits far better than a plain one,
#   at about twice the plain one's error on clean digits.
# - With Gaussian noise, a denoiser's correction is the score: $(r(\tilde x) - \tilde x)/\sigma^2 \approx
#   \nabla \log p_\sigma(\tilde x)$ (Tweedie; Vincent 2011), measured against the exact score of the noised
#   ring. Diffusion models (lesson 06) are built on it.
# - Reconstruction error is a usable anomaly score (ROC AUC near 1 for noise, lower for flipped digits,
#   some of which are real digits), but it is not a probability, and a likelihood is no reliable anomaly
#   score either (Nalisnick et al. 2019; lesson 05 measures it).
# - Decoding random codes is not sampling: with a 2-number code, $\mathcal{N}(0, I)$ codes decode to only a few
#   classes (3 here); with 16, only about half of them are recognized as digits. A Gaussian fitted afterwards helps on most
#   measures but leaves holes. A generative model needs a prior it is trained for.
# - Compute BCE from logits (`BCEWithLogitsLoss`), with targets in $[0, 1]$.
#
# **Next:** lesson 03 adds the prior and a probabilistic decoder, derives the ELBO, and gets a likelihood
# bound and a sampler from the same architecture: the variational autoencoder.
#
# **Further reading:** Hinton & Salakhutdinov (2006), *Reducing the dimensionality of data with neural
# networks*; Vincent et al. (2008), *Extracting and composing robust features with denoising
# autoencoders*; Vincent (2011), *A connection between score matching and denoising autoencoders*; Alain &
# Bengio (2014), *What regularized auto-encoders learn from the data-generating distribution*; Efron (2011),
# *Tweedie's formula and selection bias*; Nalisnick et al. (2019), *Do deep generative models know what they
# don't know?*; He et al. (2022), *Masked autoencoders are scalable vision learners*; Goodfellow, Bengio &
# Courville, *Deep Learning*, chapter 14.