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
gencourse.show(gencourse.data.load)

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
# | 09 comparing generative models | every family on the same data and metrics, with seeds | one table of every figure |
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
threads = torch.get_num_threads()
print(f"device      {device}  (torch uses {threads} CPU thread{'s' if threads != 1 else ''})")

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
#    The split is that of the companion code of J. Tomczak's book *Deep Generative Modeling*, so our figures
#    can be set beside its: the first 1000 images of `load_digits()` for training, the next 350 for
#    validation, the last 447 for testing.
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
# comparable by *dequantization*: they see $y = (k + u)/17$ with $u \sim U[0, 1)^D$, and
# $-\log P(k) \le \mathbb{E}_u\left[-\log p\big((k + u)/17\big)\right] + D \ln 17$ (Jensen's inequality over
# $u$; one draw of $u$ gives an estimate of this bound, not a bound). Lesson 05 derives it.

# %%
# NBVAL_CHECK_OUTPUT
uniform_nll = 64 * torch.log(torch.tensor(17.0)).item()
print(f"uniform over 17 levels: {uniform_nll:.1f} nats per image = {metrics.bits_per_dim(uniform_nll, 64):.2f} bits/dim")

# %% [markdown]
# **Sample quality.** A small digits classifier ships with the package. Besides the ten digits it has an
# eleventh class, "not a digit", learned from noise, blank images, scrambled digits and images whose pixels
# are drawn independently. It was trained on the 1000 **training** digits only: the 350 validation and 447
# test digits are as new to it as a model's samples, and they play two roles. The 447 test digits are the
# **reference set** that samples are measured against; the 350 validation digits are the **real row**, scored
# exactly like a model's samples. From the classifier, `metrics.sample_quality(images)` computes:
#
# | figure | meaning | good |
# | --- | --- | --- |
# | `recognized` | share of samples the classifier calls a digit with probability ≥ 0.9 | high, near real digits |
# | `classes_covered` | digit classes that hold ≥ 5% of the samples | 10 |
# | `label_entropy` | entropy of the predicted labels, nats (uniform over 10: 2.30) | near 2.30 |
# | `frechet` | Fréchet distance between Gaussians fitted to the classifier's features of samples and of the reference set | low |
# | `precision` | share of samples inside the reference manifold: within the ball around a reference digit that reaches its 5th nearest reference neighbour | high |
# | `recall` | share of reference digits whose ball holds at least one sample: the *coverage* of Naeem et al. (2020) | high |
# | `memorization` | median distance from a sample to its nearest training image, over the same for reference digits | near 1; near 0 means copies; above 1, farther from the data than real digits are |
#
# `recall` uses only the reference digits' balls, so a noisy sample far from every digit adds nothing to it.
# (The k-NN recall of Kynkäänniemi et al. draws a ball around each *sample*; a far-off noisy sample has a
# large ball that swallows real digits, and noise then looks like variety.)
#
# **Set-level figures depend on how many samples you score.** `frechet`, `precision` and `recall` compare a
# whole set of samples with the reference set, and their values move with the set's size $N$ even when the
# images are all real. Watch the real validation digits:

# %%
# NBVAL_CHECK_OUTPUT
by_n = {n: metrics.sample_quality(val.images[:n]) for n in (50, 100, 200, 350)}
for n, q in by_n.items():
    print(f"N = {n:3d} real digits: frechet {q['frechet']:6.1f}   recall (coverage) {q['recall']:.3f}")
grows = by_n[350]["recall"] > by_n[50]["recall"] + 0.2 and by_n[350]["frechet"] < by_n[50]["frechet"] / 2
print(f"{'PASS' if grows else 'FAIL'} the same real digits: more of them cover more and sit closer in Fréchet distance")

# %% [markdown]
# So the protocol fixes $N$: set-level figures are computed at $N_\text{set} = 350$, the size of the real
# row. A model's 1000 samples are scored as the mean over random subsets of 350, so its figures sit on the
# same scale as the real row's; a smaller sample set is compared with a real row of its own size.
#
# **Every figure comes with its uncertainty.** Draw another 1000 samples and every figure moves a little.
# `sample_quality` reports a 95% interval for each (`q["interval"]`), and tables print it as `0.853±.021`.
# Per-image figures get a bootstrap interval (resampling the samples). Set-level figures get one from random
# halves of the set, drawn without replacement: for a figure that is an average over samples, the spread
# of a half-set's figure equals the sampling spread of the whole set's; for the others it is an
# approximation. A set larger than $N_\text{set}$ is averaged over several subsets, which narrows its
# interval (by about $\sqrt{N_\text{set}/N}$). A lesson says "A beats B" only where the gap is larger than the intervals
# (`metrics.differs`); otherwise the two are within noise.
#
# Figures only mean something next to the same figures for known inputs. Here they are for the real row,
# for uniform noise, for blank images, for samples of the *per-pixel-independent* model (each pixel drawn
# on its own from its training distribution: the simplest generative model), and for copies of training
# images.

# %%
def per_pixel_independent_samples(images, n, generator):
    """Each pixel drawn independently from its empirical distribution over ``images: (N, 1, 8, 8)``."""
    flat = images.flatten(1)
    rows = torch.randint(0, len(flat), (n, flat.shape[1]), generator=generator)
    return flat.gather(0, rows).view(n, *images.shape[1:])


g = torch.Generator().manual_seed(SEED)
reference_sets = {
    "real (val)": val.images,
    "uniform noise": torch.randint(0, 17, (N_SAMPLES, 1, 8, 8), generator=g) / 16.0,
    "blank images": torch.zeros(N_SAMPLES, 1, 8, 8),
    "per-pixel independent": per_pixel_independent_samples(train.images, N_SAMPLES, g),
    "copies of training images": train.images[:N_SAMPLES],
}
quality = {name: metrics.sample_quality(images) for name, images in reference_sets.items()}
print(metrics.format_quality(quality, reference=False))

# %%
fig, axes = plt.subplots(1, len(reference_sets), figsize=(3.2 * len(reference_sets), 2.4))
for ax, (name, images) in zip(axes, reference_sets.items()):
    viz.image_grid(images[:24], nrow=6, ax=ax, title=name)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
real, copies = quality["real (val)"], quality["copies of training images"]
gencourse.headline("real digits: recognized", real["recognized"], "{:.2f}")
print("PASS real digits: recognized >= 0.9" if real["recognized"] >= 0.9 else "FAIL real recognized")
print("PASS real digits: 10 classes covered" if real["classes_covered"] == 10 else "FAIL real coverage")
ok = 0.9 <= real["memorization"] <= 1.1
print(f"{'PASS' if ok else 'FAIL'} real digits: memorization within 0.1 of 1 (as far from training images as the reference)")
for name in ("uniform noise", "blank images", "per-pixel independent"):
    ok = quality[name]["recognized"] <= 0.1 and quality[name]["recall"] <= 0.1
    print(f"{'PASS' if ok else 'FAIL'} {name}: recognized <= 0.1 and recall <= 0.1")
ok = copies["memorization"] < 0.05 and copies["recognized"] >= real["recognized"]
print(f"{'PASS' if ok else 'FAIL'} copies of training images: recognized at least real's, memorization near 0")
stopped = not metrics.goal(copies, "recognized", 0.9) and bool(metrics.goal(real, "recognized", 0.9))
print(f"{'PASS' if stopped else 'FAIL'} the goal 'recognized >= 0.9 x real' with its memorization guard: "
      "met by the real row, refused to the copies")

# %% [markdown]
# Read later tables against these rows. The real row is where a perfect model would land, give or take its
# interval. Copies of training images show what copying buys: the classifier has seen them, so they are
# recognized even more often than unseen digits (the practical ceiling of `recognized`), and their precision
# and recall are within noise of the real row's or below it; only `memorization`, near 0, gives them away. That is why every sample-quality goal in the course comes
# with a **memorization guard** (`metrics.goal`): all 10 classes covered and `memorization` ≥ 0.8, so no goal
# can be met by copying the training set wholesale (the last line above). The guard reads a median, so a
# model that copied a minority of its samples would pass it: read `memorization` beside every goal.
#
# Each figure alone can be fooled. `recognized` and `precision` reward a model that draws one perfect digit
# over and over (its `classes_covered` and `recall` give it away); `frechet` is biased upwards at small $N$
# and has wide intervals at $N = 350$ (compare it only at equal $N$); `recall` needs the samples to land near
# the real digits, so a model that draws plausible digits in a style unlike the reference set is
# undercounted. Read the figures together.
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
class_means = torch.stack([test.images[test.labels == c].mean(dim=0) for c in range(10)])
fig, axes = plt.subplots(1, 2, figsize=(9, 2.2), gridspec_kw={"width_ratios": [1, 5]})
viz.image_grid(test.images.mean(dim=0, keepdim=True), nrow=1, ax=axes[0], title="mean test digit")
viz.image_grid(class_means, nrow=10, ax=axes[1], title="mean test digit of each class")
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
#   from a classifier that never saw the held-out digits, with 95% intervals, next to the real row computed
#   the same way at the same $N$: real digits are recognized at the rate printed above, noise and per-pixel
#   samples almost never, and copies betray themselves by `memorization` near 0, which the goals' guard checks.
#
# **Next:** lesson 01 asks what makes a model *generative*, and fits the first ones.
