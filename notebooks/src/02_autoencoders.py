# %% [markdown]
# # 02 · Autoencoders
#
# **Learning objectives.** After this lesson you can
# - explain an autoencoder as compression through a bottleneck, train one, and read its reconstruction error
#   against the size of the code (and against PCA, the linear autoencoder);
# - read a 2D latent space coloured by label;
# - train a *denoising* autoencoder and measure what it gains on corrupted inputs;
# - turn reconstruction error into an anomaly score and measure it with the ROC AUC;
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
DEVICE = os.environ.get("GENCOURSE_DEVICE", "auto")

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.decomposition import PCA
from torch.nn import functional as F

import gencourse
from gencourse import autoencoder as ae
from gencourse import check, data, metrics, viz

gencourse.setup(seed=SEED)
device = gencourse.get_device(DEVICE)
lesson_start = time.perf_counter()

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
#   = \sum_{d=1}^{D} \Big[\operatorname{softplus}(l_d) - x_d\, l_d\Big], \qquad l = g(f(x)).$$
#
# The right-hand form is computed from the logits $l$, which is what
# `F.binary_cross_entropy_with_logits` does (section 7 shows why that matters). The reference code:

# %%
gencourse.show(ae.Autoencoder.loss)

# %% [markdown]
# The digits are 8×8, so $D = 64$. We start with a code of only $d = 2$ numbers, so that we can draw it.
# The encoder is an MLP $64 \to 256 \to 128 \to 2$ and the decoder mirrors it; `fit` trains with Adam and
# stops when the validation loss stops improving (never looking at the test split).

# %%
train, val, test = (data.load(DATASET, split) for split in ("train", "val", "test"))
if DATASET != "digits":  # MNIST-sized data: a subset keeps the lesson short; raise it on a GPU
    train.images, train.labels = train.images[:10_000], train.labels[:10_000]
    val.images, val.labels = val.images[:2_000], val.labels[:2_000]
    test.images, test.labels = test.images[:2_000], test.labels[:2_000]
x_train, x_val, x_test = (ds.images.to(device) for ds in (train, val, test))
SHAPE = train.shape


def make_autoencoder(latent_dim, **kwargs):
    """An MLP autoencoder for 8x8 digits, a small convolutional one for 28x28 images."""
    if DATASET == "digits":
        return ae.MLPAutoencoder(SHAPE, latent_dim=latent_dim, **kwargs).to(device)
    return ae.ConvAutoencoder(SHAPE, latent_dim=latent_dim, **kwargs).to(device)


def train_autoencoder(latent_dim, desc, **kwargs):
    gencourse.seed_everything(SEED)
    model = make_autoencoder(latent_dim, **kwargs)
    history = ae.train_autoencoder(model, x_train, x_val, epochs=EPOCHS, seed=SEED, desc=desc)
    return model.eval(), history


model2, history2 = train_autoencoder(2, "autoencoder, d = 2")
history2.plot(title="autoencoder with a 2-number code")
plt.show()

# %%
with torch.no_grad():
    recon2 = model2(x_test[:12])
viz.image_grid(torch.cat([x_test[:12], recon2]).cpu(), nrow=12, title="test digits (top) and their reconstructions from 2 numbers")
plt.show()

# %% [markdown]
# Two numbers are enough to get the rough shape of many digits, and not enough for the details: several
# reconstructions are a different, "prototypical" digit. To say *how* good they are we need a number.
#
# **Exercise 1.** Write `reconstruction_error(x, x_hat)`: the squared error summed over the pixels of each
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
fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
sc = axes[0].scatter(codes_test[:, 0], codes_test[:, 1], c=test.labels, cmap="tab10", s=8, vmin=-0.5, vmax=9.5)
fig.colorbar(sc, ax=axes[0], ticks=range(10), label="label")
axes[0].set_title("codes of the test digits, coloured by label", fontsize=10)
axes[0].set_xlabel("$z_1$")
axes[0].set_ylabel("$z_2$")
# decode a regular grid of codes over the region the data occupy
lo, hi = codes_train.quantile(0.01, 0).tolist(), codes_train.quantile(0.99, 0).tolist()
n_grid = 12
g1, g2 = torch.linspace(lo[0], hi[0], n_grid), torch.linspace(hi[1], lo[1], n_grid)
grid_codes = torch.stack(torch.meshgrid(g2, g1, indexing="ij")[::-1], -1).reshape(-1, 2)
with torch.no_grad():
    viz.image_grid(model2.decode(grid_codes.to(device)).cpu(), nrow=n_grid, ax=axes[1],
                   title="decoded grid of codes over the same region")
plt.show()

# %% [markdown]
# The autoencoder has sorted the digits by shape without labels: each class sits in its own region,
# and similar digits (4 and 9, 3 and 5 and 8) are neighbours. Notice two things that will matter in section 6:
# the codes are not spread evenly, but lie on arms and clusters with empty space between them; and their
# scale is whatever training made it (look at the axes), nothing ties it to, say, a unit Gaussian.

# %% [markdown]
# ## 3. How much does a bigger code buy?
#
# Train the same architecture with codes of several sizes, and compare with **PCA**, the best *linear*
# encoder and decoder with $d$ components: an autoencoder with linear layers and squared error learns the
# same subspace. The nonlinear autoencoder should beat it most where the code is smallest.

# %%
sweep = {}
for d in LATENT_SIZES:
    model, history = train_autoencoder(d, f"autoencoder, d = {d}")
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
print("PASS the error falls as the code grows (largest code < 0.6 x smallest code)"
      if errors[-1] < 0.6 * errors[0] else "FAIL the error does not fall with the code size")
print("PASS with the smallest code the autoencoder beats PCA"
      if sweep[small]["error"] < sweep[small]["pca"] else "FAIL PCA beats the autoencoder at the smallest code")

# %% [markdown]
# The error falls quickly up to a code of about 8 numbers and slowly after: most of what varies between
# digits is captured by a handful of directions. With small codes the nonlinear autoencoder is far better
# than PCA, because it can bend its 2D or 4D "surface" of digits. With large codes PCA catches up and, at
# half of the 64 dimensions, wins: it keeps 32 exact directions, while the small network, trained on 1000
# images and stopped early, is not a perfect identity. Autoencoders earn their keep at strong compression.

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
# Here $\sigma = 0.3$ and a share $p = 0.25$ of the pixels is blanked. The code is 16 numbers.

# %%
gencourse.show(ae.corrupt)

# %%
dae, _ = train_autoencoder(16, "denoising autoencoder, d = 16", noise_std=NOISE_STD, mask_prob=MASK_PROB)
plain = sweep[16]["model"] if 16 in sweep else train_autoencoder(16, "autoencoder, d = 16")[0]
g = torch.Generator().manual_seed(SEED)
x_noisy = ae.corrupt(x_test.cpu(), noise_std=NOISE_STD, mask_prob=MASK_PROB, generator=g).to(device)
with torch.no_grad():
    rows = [x_test[:10], x_noisy[:10], plain(x_noisy[:10]), dae(x_noisy[:10])]
viz.image_grid(torch.cat(rows).cpu(), nrow=10,
               title="clean / corrupted / plain autoencoder / denoising autoencoder")
plt.show()

# %%
err_plain = plain.reconstruction_error(x_test, inputs=x_noisy).mean().item()
err_dae = dae.reconstruction_error(x_test, inputs=x_noisy).mean().item()
err_input = (x_noisy - x_test).pow(2).flatten(1).sum(1).mean().item()
print(f"squared error to the clean test digits: corrupted input {err_input:.2f}, "
      f"plain autoencoder {err_plain:.2f}, denoising autoencoder {err_dae:.2f}")
print(f"on clean inputs: plain {plain.reconstruction_error(x_test).mean().item():.2f}, "
      f"denoising {dae.reconstruction_error(x_test).mean().item():.2f}")
headline_dae = gencourse.headline("denoising AE: error on corrupted test digits", err_dae, "{:.2f}")

# %%
# NBVAL_CHECK_OUTPUT
print("PASS the denoising autoencoder cleans corrupted digits better than the plain one (error < 0.8 x)"
      if err_dae < 0.8 * err_plain else "FAIL the denoising autoencoder is not clearly better on corrupted digits")

# %% [markdown]
# The plain autoencoder, never shown noise, passes much of it through; the denoising one has learned where
# the strokes of a digit go, and fills blanked pixels back in. On clean inputs the plain one is better (it
# was trained for exactly that): the denoising one pays a little accuracy for robustness. The same idea,
# "learn to undo a corruption", is the training signal of diffusion models (lesson 06).

# %% [markdown]
# ## 5. Anomaly scores from reconstruction error
#
# An autoencoder reconstructs well what resembles its training data. So the reconstruction error $e(x)$
# is an **anomaly score**: high for inputs unlike the training set. We score the test digits (normal) and
# five kinds of out-of-distribution inputs: noise, digits with their pixels scrambled, inverted digits
# (white ink on black), and digits flipped upside-down or mirrored, which are still strokes of the right
# thickness in the right place, the hard case.

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
fig, axes = plt.subplots(1, len(ood), figsize=(2.3 * len(ood), 1.3))
for axi, (name, x) in zip(axes, ood.items()):
    viz.image_grid(x[:8].cpu(), nrow=4, ax=axi, title=name)
plt.show()

# %% [markdown]
# How well does a score separate two groups? Pick a threshold; everything above is flagged. The **ROC
# curve** plots the share of anomalies flagged against the share of normal inputs flagged, for every
# threshold; the area under it, the **ROC AUC**, is the probability that a random anomaly scores higher
# than a random normal input (ties count one half). 1 is perfect, 0.5 is a coin.
#
# **Exercise 2.** Write `roc_auc(scores_normal, scores_anomalous)` →
# $\Pr(s_\text{anomalous} > s_\text{normal}) + \tfrac12 \Pr(s_\text{anomalous} = s_\text{normal})$ over all pairs,
# as a Python float.

# %%
def roc_auc(scores_normal, scores_anomalous):
    """scores_normal (n,), scores_anomalous (m,) -> float: P(anomalous > normal) + 0.5 P(equal)."""
    ### BEGIN SOLUTION
    a, b = scores_normal[None, :], scores_anomalous[:, None]
    return float((b > a).double().mean() + 0.5 * (b == a).double().mean())
    ### END SOLUTION


# %%
check.anomaly_roc_auc(roc_auc)

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
    print(f"{'PASS' if aucs[name] >= 0.95 else 'FAIL'} {name}: ROC AUC >= 0.95")
ok = 0.6 <= flipped_auc < 0.99
print(f"{'PASS' if ok else 'FAIL'} flipped digits: 0.6 <= ROC AUC < 0.99 (better than chance, not perfect)")

# %% [markdown]
# Noise, scrambled and inverted digits are caught every time. Flipped digits are harder, and not only
# because the detector is imperfect: an upside-down 0, 1 or 8 *is* a plausible digit. The flipped inputs
# that score as most normal show it:

# %%
flipped = torch.cat([ood["upside-down"], ood["mirrored"]]).cpu()
most_normal = torch.cat([score_ood["upside-down"], score_ood["mirrored"]]).argsort()[:12]
viz.image_grid(flipped[most_normal], nrow=12, title="flipped inputs with the lowest anomaly scores")
plt.show()

# %% [markdown]
# A reconstruction-error detector knows only "looks like my training data". That is useful (and
# widely used for defects and fraud), but it is a heuristic: it does not give a *probability* of the
# input. A model with a likelihood $p(x)$ gives a principled score, $-\log p(x)$, and lesson 03 builds one.
#
# ## 6. "Sample the latent space to generate data"
#
# A popular claim: train an autoencoder, then decode random codes to make new images. But random codes
# drawn *how*? The autoencoder defines no distribution over codes. The natural guess is a standard normal
# $z \sim \mathcal{N}(0, I)$; a more careful one fits a Gaussian $\mathcal{N}(m, S)$ to the codes of the
# training images and samples that. We try both, with codes of 2 and 16 numbers, and score the decoded
# images with the course's sample-quality figures next to the real row.

# %%
gencourse.show(ae.Autoencoder.sample)

# %%
g = torch.Generator().manual_seed(SEED)
decoded = {}
for d in (2, 16):
    model = sweep[d]["model"] if d in sweep else train_autoencoder(d, f"autoencoder, d = {d}")[0]
    with torch.no_grad():
        decoded[f"d={d}, N(0, I) codes"] = model.decode(torch.randn(N_SAMPLES, d, generator=g).to(device)).cpu()
    model.fit_code_distribution(x_train)
    decoded[f"d={d}, fitted Gaussian"] = model.sample(N_SAMPLES, generator=g).cpu()
fig, axes = plt.subplots(1, 4, figsize=(13, 2.2))
for axi, (name, x) in zip(axes, decoded.items()):
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
# arbitrary (section 2). A Gaussian fitted to the training codes does better, and that is already a small
# generative model bolted onto the autoencoder afterwards. Even so, the decoded images are blurry
# prototypes that reach far fewer of the reference digits than real digits do (`recall`, the coverage, at
# most about two thirds of the real row's: much of the variety of real digits is missing), and with 16
# numbers a sizeable share is not recognized as digits. Why? The **holes**: codes of real digits fill only part of the code space, and
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
    z_random = model.code_mean.cpu() + torch.randn(N_SAMPLES, d, generator=g) @ model.code_scale_tril.cpu().T
    holes[d] = (nearest_distance(z_random, z_train).median() / nearest_distance(z_test, z_train).median()).item()
    print(f"d = {d:2d}: random codes from the fitted Gaussian lie {holes[d]:.1f} x farther from the nearest "
          f"training code than test codes do")

fig, ax = plt.subplots(figsize=(4.6, 4))
model2.fit_code_distribution(x_train)  # the Gaussian fitted to this model's own training codes
z_random2 = model2.code_mean.cpu() + torch.randn(300, 2, generator=g) @ model2.code_scale_tril.cpu().T
ax.scatter(codes_train[:, 0], codes_train[:, 1], c=train.labels, cmap="tab10", s=5, vmin=-0.5, vmax=9.5, alpha=0.6)
ax.scatter(*torch.randn(300, 2, generator=g).T, marker=".", c="red", s=8, alpha=0.6, label="codes from N(0, I)")
ax.scatter(z_random2[:, 0], z_random2[:, 1], marker="+", c="k", s=16, lw=0.8, label="codes from the fitted Gaussian")
ax.legend(fontsize=7, loc="lower right")
ax.set_title("training codes (coloured) and random codes, d = 2", fontsize=10)
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

# %% [markdown]
# So a plain autoencoder is not a sampler. It has no distribution over codes, so "random code" has no
# meaning until we invent one, and the decoder is only trained where the real codes are. The fix is to
# make the distribution over codes part of the model and to *train* for it: choose a prior $p(z)$, say
# $\mathcal{N}(0, I)$, and train encoder and decoder so that codes drawn from the prior decode to
# digits. That is the variational autoencoder of lesson 03; it also gives the likelihood that section 5
# was missing.
#
# ## 7. Two pitfalls: the loss and the last activation
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
# **Exercise 3.** Your colleague's data loader gives images `x` on $[-1, 1]$, and the decoder gives logits.
# Write `autoencoder_bce(logits, x)`: the binary cross-entropy from the logits with the targets mapped back
# to $[0, 1]$, summed over the pixels of each image and averaged over the batch, exact even for saturated logits.

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
# - An autoencoder compresses an image to a code and back; its reconstruction error falls with the code
#   size (measured from 1 to 32 numbers), and a nonlinear one beats PCA most at small codes.
# - Without labels, the code space sorts digits by shape; but the codes fill only part of it, at an
#   arbitrary scale.
# - A denoising autoencoder learns to undo corruption, and cleans corrupted digits far better than a plain one.
# - Reconstruction error is a usable anomaly score (ROC AUC near 1 for noise, lower for flipped digits,
#   some of which are real digits), but it is not a probability.
# - Decoding random codes is not sampling: $\mathcal{N}(0, I)$ codes decode to few classes and poor digits;
#   a Gaussian fitted afterwards helps but leaves holes. A generative model needs a prior it is trained for.
# - Compute BCE from logits (`BCEWithLogitsLoss`), with targets in $[0, 1]$.
#
# **Next:** lesson 03 adds the prior and a probabilistic decoder, derives the ELBO, and gets a likelihood
# and a sampler from the same architecture: the variational autoencoder.
#
# **Further reading:** Hinton & Salakhutdinov (2006), *Reducing the dimensionality of data with neural
# networks*; Vincent et al. (2008), *Extracting and composing robust features with denoising
# autoencoders*; Goodfellow, Bengio & Courville, *Deep Learning*, chapter 14.