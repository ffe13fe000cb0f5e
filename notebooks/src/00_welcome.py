# %% [markdown]
# # 00 · Welcome to the course on deep generative models
#
# **Learning objectives.** After this lesson you can
# - run the course on your laptop, on Colab or on a GPU, and change a lesson's settings;
# - name the three rungs of the course's data ladder and load each one;
# - read every table of sample-quality and likelihood figures the later lessons print, because you
#   have seen the same figures for real digits, for noise and for copied training images;
# - solve an exercise and read its instant check.

# %% tags=["parameters"]
# Parameters: change them here, or set the environment variables before starting Jupyter
# (e.g. GENCOURSE_SEED=1), or pass them with papermill.
import os

QUICK = os.environ.get("GENCOURSE_QUICK", "0") == "1"  # smallest settings: only checks that the lesson runs
SEED = int(os.environ.get("GENCOURSE_SEED", 0))
N_SAMPLES = int(os.environ.get("GENCOURSE_SAMPLES", 200 if QUICK else 1000))  # images per reference set
DEVICE = os.environ.get("GENCOURSE_DEVICE", "auto")

# %%
import platform

import matplotlib.pyplot as plt
import torch

import gencourse
from gencourse import check, data, metrics, viz

gencourse.setup(seed=SEED)

# %% [markdown]
# ## How the course works
#
# Each lesson is a notebook that runs top to bottom on a laptop CPU in about a minute and a half,
# offline. It follows the same path: a motivation, the idea, the equation, the code, a picture, a
# **measured** result, and exercises. The models live in the `gencourse` package, where they are tested;
# a lesson shows their source where it matters, so what you read is what runs:

# %%
gencourse.show(gencourse.data.dequantize)

# %% [markdown]
# | lesson | what you learn | what it measures |
# | --- | --- | --- |
# | 00 welcome | the course, the data, the evaluation protocol | reference figures for real, noise and copied images |
# | 01 discriminative vs generative | $p(y\mid x)$ vs $p(x, y)$, maximum likelihood, KL, bits/dim | accuracy vs training size, the baselines' NLL |
# | 02 autoencoders | compression, latent spaces, denoising, anomalies | reconstruction error, ROC AUC, decoded random codes |
# | 03 variational autoencoders | ELBO, reparameterization, IWAE | test NLL (ELBO and IWAE), sample quality |
# | 04 GANs | the minimax game, saturation, mode collapse, WGAN-GP | modes covered, sample quality, sampling cost |
# | 05 normalizing flows | change of variables, coupling layers, dequantization | exact test NLL bound, sample quality |
# | 06 diffusion | forward noising, noise prediction, DDPM, DDIM, guidance | sample quality vs steps, sampling cost |
# | 07 autoregressive models | the chain rule, masked and causal models | exact test NLL, sampling cost |
# | 08 flow matching | probability paths, conditional flow matching, ODE sampling | few-step sample quality, likelihood |
# | 09 comparing generative models | every family on equal terms | one table of every figure |
#
# The **parameters** cell near the top of every lesson holds what you may change: the number of epochs,
# the dataset, the device. The defaults are small so the lesson runs in minutes on a CPU; on a GPU or
# on Colab, scale them up.

# %% [markdown]
# ## Your environment

# %%
device = gencourse.get_device(DEVICE)
print(f"Python      {platform.python_version()}")
print(f"torch       {torch.__version__}")
print(f"gencourse   {gencourse.__version__}")
print(f"device      {device}  (torch uses {torch.get_num_threads()} CPU threads)")

# %%
# NBVAL_CHECK_OUTPUT
major, minor = (int(v) for v in torch.__version__.split(".")[:2])
print("PASS torch >= 2.2" if (major, minor) >= (2, 2) else "FAIL: the course needs torch >= 2.2")

# %% [markdown]
# ## The data ladder
#
# The course climbs three rungs:
#
# 1. **2D toy distributions**: we can draw them, often know their density exactly, and train on them in
#    seconds. `data.toy2d(name, n)` gives `n` points.
# 2. **scikit-learn's 8×8 handwritten digits**: real data that ships with scikit-learn, so it works offline.
#    Each pixel takes one of 17 intensity levels $k \in \{0, \dots, 16\}$; `data.load` gives $k/16 \in [0, 1]$.
#    The split is the one the literature uses: the first 1000 images of `load_digits()` for training, the
#    next 350 for validation, the last 447 for testing.
# 3. **MNIST and Fashion-MNIST** (28×28, 256 levels) through torchvision: they need the internet once,
#    so they are opt-in (set `DATASET = "mnist"` in a lesson's parameters cell, e.g. on Colab).

# %%
fig, axes = plt.subplots(1, len(data.TOY2D), figsize=(2.0 * len(data.TOY2D), 2.2))
for ax, name in zip(axes, data.TOY2D):
    viz.scatter2d(data.toy2d(name, 2000, seed=SEED), ax=ax, title=name, s=1)
plt.show()

# %%
train, val, test = (data.load("digits", split) for split in ("train", "val", "test"))
viz.image_grid(train.images[:40], nrow=20, title="the first 40 training digits")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
for ds in (train, val, test):
    print(ds)
levels = sorted(set((train.images * 16).round().int().flatten().tolist()))
print(f"intensity levels k: {levels[0]}..{levels[-1]} ({len(levels)} values); LEVELS['digits'] = {data.LEVELS['digits']}")

# %% [markdown]
# A dataset yields `(image, label)` pairs like torchvision's; for these small sets the whole split is
# also at hand as two tensors, `.images` of shape `(N, 1, 8, 8)` and `.labels` of shape `(N,)`.
#
# MNIST is one call away when you are online. Offline, `load` says so and points back to the digits:

# %%
try:
    data.load("mnist", "train", download=False)
    print("MNIST is cached on this machine.")
except data.DatasetUnavailableError as err:
    print(str(err).split(" [")[0])

# %% [markdown]
# ## The evaluation protocol
#
# Every model family in this course is measured the same way, so their figures can be compared.
#
# **Likelihood.** The negative log-likelihood of the test images, in nats per image and in **bits per
# dimension**, $\text{bits/dim} = \dfrac{\text{NLL}}{D \ln 2}$ with $D = 64$ pixels, always on the data's
# discrete scale of 17 levels, with the validation figure beside it. A model that knows nothing, uniform over
# the 17 levels, scores $64 \ln 17 = 181.3$ nats ($\log_2 17 = 4.09$ bits/dim). Continuous models are made
# comparable by *dequantization*: they see $y = (k + u)/17$ with $u \sim U[0, 1)$, and
# $-\log P(k) \le -\log p(y) + D \ln 17$.

# %%
# NBVAL_CHECK_OUTPUT
uniform_nll = 64 * torch.log(torch.tensor(17.0)).item()
print(f"uniform over 17 levels: {uniform_nll:.1f} nats per image = {metrics.bits_per_dim(uniform_nll, 64):.2f} bits/dim")

# %% [markdown]
# **Sample quality.** A small digits classifier ships with the package. Besides the ten digits it has an
# eleventh class, "not a digit", learned from noise, blank images, scrambled digits and images whose pixels
# are drawn independently. From it, `metrics.sample_quality(images)` computes:
#
# | figure | meaning | good |
# | --- | --- | --- |
# | `recognized` | share of samples the classifier calls a digit with probability ≥ 0.9 | high, near real images |
# | `classes_covered` | digit classes that hold ≥ 5% of the samples | 10 |
# | `label_entropy` | entropy of the predicted labels, nats (uniform over 10: 2.30) | near 2.30 |
# | `frechet` | Fréchet distance between classifier features of samples and of test images | low |
# | `precision` | share of samples that fall on the manifold of real test images | high |
# | `recall` | share of real test images that fall on the manifold of the samples | high |
# | `memorization` | median distance to the nearest training image, divided by the same for test images | near 1; near 0 means copies |
#
# Figures only mean something next to the same figures for known inputs. Here they are for real test
# images, for uniform noise, for blank images, for samples of the *per-pixel-independent* model (each
# pixel drawn on its own from its training distribution: the simplest generative model), and for copies of
# training images.

# %%
def per_pixel_independent_samples(images, n, generator):
    """Each pixel drawn independently from its empirical distribution over ``images: (N, 1, 8, 8)``."""
    flat = images.flatten(1)
    rows = torch.randint(0, len(flat), (n, flat.shape[1]), generator=generator)
    return flat.gather(0, rows).view(n, *images.shape[1:])


g = torch.Generator().manual_seed(SEED)
reference_sets = {
    "real test images": test.images,
    "uniform noise": torch.randint(0, 17, (N_SAMPLES, 1, 8, 8), generator=g) / 16.0,
    "blank images": torch.zeros(N_SAMPLES, 1, 8, 8),
    "per-pixel independent": per_pixel_independent_samples(train.images, N_SAMPLES, g),
    "copies of training images": train.images[:N_SAMPLES],
}
quality = {name: metrics.sample_quality(images) for name, images in reference_sets.items()}
# Test images against themselves would give frechet 0, precision 1, recall 1 by construction; the real
# row that every lesson prints compares the *validation* images with the test images instead.
quality["real test images"] = metrics.reference_quality()
print(metrics.format_quality(quality, reference=False))

# %%
fig, axes = plt.subplots(1, len(reference_sets), figsize=(3.0 * len(reference_sets), 1.9))
for ax, (name, images) in zip(axes, reference_sets.items()):
    viz.image_grid(images[:24], nrow=8, ax=ax, title=name)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
real = quality["real test images"]
gencourse.headline("real digits: recognized", real["recognized"], "{:.2f}")
print("PASS real test images: recognized >= 0.9" if real["recognized"] >= 0.9 else "FAIL real recognized")
print("PASS real test images: 10 classes covered" if real["classes_covered"] == 10 else "FAIL real coverage")
for name in ("uniform noise", "blank images", "per-pixel independent"):
    ok = quality[name]["recognized"] <= 0.1
    print(f"{'PASS' if ok else 'FAIL'} {name}: recognized <= 0.1")
ok = quality["copies of training images"]["memorization"] < 0.05
print(f"{'PASS' if ok else 'FAIL'} copies of training images: memorization near 0")

# %% [markdown]
# Read later tables against these rows. A model whose samples score `recognized` near the real images'
# figure, cover all 10 classes, keep precision *and* recall high, and have `memorization` near 1 makes new,
# varied, recognizable digits. Two figures are fooled easily on their own: copies of training images score
# perfectly on everything except `memorization`, and a model that makes one perfect digit over and over has
# high precision but low recall and few classes covered.
#
# Headline figures use **true samples**: temperature 1, no guidance, samples from the decoder rather than
# its mean. Tricks that trade variety for neatness are shown separately, labelled.
#
# **Sampling cost** is counted in network evaluations per sample (NFE) and milliseconds per 1000 samples.

# %% [markdown]
# ## How exercises work
#
# Each lesson has exercises: a function with a gap between two marker comments that open and close its solution
# (in the student edition the gap says `# YOUR CODE HERE`). The cell after it checks your function
# instantly against the reference on several cases and says what passed, what failed, and gives a hint.
# An unsolved exercise says "not attempted yet" and never stops the lesson: it continues with the
# reference implementation.
#
# **Exercise 1.** Write `mean_image(images)` that returns the average image of a batch
# `images: (N, C, H, W)`, shape `(C, H, W)`.

# %%
def mean_image(images):
    """images: (N, C, H, W) -> (C, H, W), the pixel-wise mean over the batch."""
    ### BEGIN SOLUTION
    return images.mean(dim=0)
    ### END SOLUTION


# %%
check.mean_image(mean_image)

# %% [markdown]
# The mean digit is a blur: the average of many images is not an image of the data. Keep this picture in
# mind: a model that predicts the *mean* of what is plausible draws blurry digits, and much of this course is
# about sampling from a distribution instead.

# %%
viz.image_grid(test.images.mean(dim=0, keepdim=True), nrow=1, title="mean test digit")
plt.show()

# %% [markdown]
# ## Bigger data on Colab or a GPU
#
# 1. Open a lesson with its "Open in Colab" badge and run the first code cell: it installs the course.
# 2. In the parameters cell set `DATASET = "mnist"` (or `"fashion-mnist"`) and, under Runtime → Change
#    runtime type, pick a GPU; `DEVICE = "auto"` then finds it.
# 3. Raise the epochs. The first run downloads the data to `data/` (or to `$GENCOURSE_DATA`).
#
# ## Using generative models responsibly
#
# The methods in this course make images, audio and text that can pass for real. The same tools make
# deceptive media, copy the work of artists and the faces of people without their consent, and reproduce
# the biases of their training data. Memorization is measurable (you have just seen the figure): a model that
# copies its training set leaks it. When you train on data about people, ask whose data it is, whether they
# agreed, and what your samples could be used for; label generated content as generated.
#
# ## Summary
#
# - The course runs offline on a laptop; the parameters cell scales each lesson up.
# - Data ladder: 2D toys → 8×8 digits (17 levels, split 1000/350/447) → MNIST.
# - Every model is measured the same way: NLL in nats and bits/dim on the discrete scale, and sample quality
#   next to real images: real test digits are recognized at the rate printed above, noise and per-pixel
#   samples almost never, and copies betray themselves by `memorization` near 0.
#
# **Next:** lesson 01 asks what makes a model *generative*, and fits the first ones.
