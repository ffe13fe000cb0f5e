# %% [markdown]
# # 00 · Welcome to the course on deep generative models
#
# **Learning objectives.** After this lesson you can
# - run the course on your laptop, on Colab or on a GPU, and change a lesson's settings;
# - name the three rungs of the course's data ladder and load each one;
# - solve an exercise, read its instant check, and ask for a hint's second step, the reference solution;
# - read the tables of likelihood and sample-quality figures the later lessons print, because you have seen
#   the same figures for real digits, for noise, for a collapsed model and for copied training images.
#
# **Running time:** about 14 s on a 2-core laptop CPU (14 CPU seconds with two threads, measured by `make bench`); nothing to download; nothing here needs a GPU.

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
# Each lesson is a notebook that runs top to bottom, offline, on a laptop CPU in at most a minute and a half
# (measured with two threads on a 2-core machine; the README's `make bench` table has each lesson's seconds).
# It follows the same path: a motivation, the idea, the equation, the code, a picture, a **measured** result,
# and exercises. The models live in the `gencourse` package, where they are tested; a lesson shows their
# source where it matters, so what you read is what runs.
#
# | lesson | what you learn | builds on | what it measures |
# | --- | --- | --- | --- |
# | 00 welcome | the course, the data, exercises, how to read the tables | Python, a little NumPy | reference figures for real digits, noise, a collapsed set and copies |
# | 01 discriminative vs generative | $p(y\mid x)$ vs $p(x, y)$, maximum likelihood, KL, bits/dim | 00; probability basics | accuracy vs training size, the baselines' NLL |
# | 02 autoencoders | compression, latent spaces, denoising, anomalies | 01; PyTorch's training loop | reconstruction error, ROC AUC, decoded random codes |
# | 03 variational autoencoders | ELBO, reparameterization, IWAE | 01, 02 | test NLL (ELBO and IWAE), sample quality |
# | 04 GANs | the minimax game, saturation, mode collapse, WGAN-GP | 01, 02 | modes covered, sample quality, sampling cost |
# | 05 normalizing flows | change of variables, coupling layers, dequantization | 01; Jacobians, determinants | exact test NLL bound, sample quality |
# | 06 diffusion | forward noising, noise prediction and its bound, DDPM, DDIM, guidance | 03 (the ELBO) | the bound in nats, sample quality vs steps, sampling cost |
# | 07 autoregressive models | the chain rule, masked and causal models | 01, 02 | exact test NLL, sampling cost |
# | 08 flow matching | probability paths, conditional flow matching, ODE sampling | 05, 06 | few-step sample quality, likelihood |
# | 09 transformers | attention, the causal mask, a GPT on text and on pixels, sampling, the KV cache | 07 | bits per character against n-grams, the cache's cost, exact test NLL |
# | 10 latent and token models | vector quantization, a VQ-VAE with a GPT and a MaskGIT prior, inpainting, latent flow matching with a DiT | 02, 08, 09 | token NLL, codebook health, sample quality against the decoder's ceiling, cost against pixel space |
# | 11 comparing generative models | every family on the same data and metrics, with seeds | 03-09 | one table of every figure |
#
# One notation runs through the course; where the literature has two (diffusion's $t = 0$ is data, flow matching's
# is noise; two scales for guidance), the lesson names both. The notation sheet collects them:
# [`docs/notation.md`](../docs/notation.md).
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
# The source of any function of the package is one call away:

# %%
gencourse.show(data.load)

# %% [markdown]
# MNIST is one call away when you are online. Offline, `load` says so and points back to the digits:

# %%
try:
    data.load("mnist", "train", download=False)
    print("MNIST is cached on this machine.")
except data.DatasetUnavailableError as err:
    print(str(err).split(" [")[0])

# %% [markdown]
# ## How exercises work
#
# Each lesson has exercises: a function with a gap between two marker comments that open and close its
# solution. The cell after it, `check.<name>(<your function>)`, is the **instant check**: it runs your
# function on several cases against the reference and prints a verdict.
#
# - ✅ all cases passed; ⏳ "not attempted yet" while the function still raises `NotImplementedError`.
# - ❌ a failed check is the **first step of a hint**: which cases failed and how, *what looks wrong* when your
#   answer matches a typical mistake the check knows (a sum for a mean, the wrong axis, a missing square
#   root ...), and a conceptual hint (which quantity, which equation), never the code.
# - The **second step** only when you ask: `check.solution("<name>")` prints the reference solution.
# - Neither an unsolved nor a wrong exercise stops "Run All": the lesson continues with the reference
#   implementation.
#
# **Two editions.** The two badges at the top of every lesson open it on Colab: "Open in Colab" opens the
# *instructor edition*, solved and run; the "student edition" badge opens the same lesson with every solution
# replaced by `# YOUR CODE HERE` and a `raise NotImplementedError(...)`, and no outputs (the files are in
# `notebooks/student/`; the student edition's header says which one you are reading). Work in the student
# edition; the solutions stay one click away.
#
# **For instructors.** Each check cell is a locked nbgrader test cell worth one point. With
# `GENCOURSE_GRADING=1` a check that does not pass raises instead of printing, so nbgrader's autograder (or
# `python -m gencourse.grading NOTEBOOK.ipynb`) awards the point exactly when the exercise passes;
# `docs/instructor_guide.md` lists every exercise with its typical wrong answers.
#
# **Exercise 1.** Write `mean_image(images)` that returns the average image of a batch
# `images: (N, C, H, W)`: the image of shape `(C, H, W)` whose pixel $(c, h, w)$ is
# $\frac{1}{N}\sum_{n=1}^{N} \text{images}[n, c, h, w]$.

# %%
def mean_image(images):
    """images: (N, C, H, W) -> (C, H, W), the pixel-wise mean over the batch."""
    ### BEGIN SOLUTION
    return images.mean(dim=0)
    ### END SOLUTION


# %%
check.mean_image(mean_image)

# %% [markdown]
# Here is what a wrong answer reads. This one adds the images up instead of averaging them; the check
# recognizes the mistake and says so. (The `try` is there for grading mode, where a failed check raises.)

# %%
# NBVAL_CHECK_OUTPUT
def mean_image_wrong(images):
    return images.sum(dim=0)


try:
    check.mean_image(mean_image_wrong)
except gencourse.exercises.ExerciseFailed:
    pass

# %% [markdown]
# And the second step, asked for:

# %%
check.solution("mean_image")

# %% [markdown]
# The mean digit is a blur: the average of many images is not an image of the data. Keep this picture in
# mind: a model that predicts the *mean* of what is plausible draws blurry digits, and much of this course is
# about sampling from a distribution instead.

# %%
class_means = torch.stack([test.images[test.labels == c].mean(dim=0) for c in range(10)])
all_means = torch.cat([test.images.mean(dim=0, keepdim=True), class_means])
viz.image_grid(all_means, nrow=11, labels=["all", *range(10)], tile_inches=1.0,
               title="the mean test digit (all), then the mean test digit of each class")
plt.show()

# %% [markdown]
# ## How to read the tables
#
# Every model family in this course is measured the same way, so their figures can be compared. This box
# says what the figures mean and calibrates them on inputs we understand; the lessons named in it build each
# piece.
#
# > **A refresher, if you need one.** A discrete variable has a probability *mass* $P(k) \in [0, 1]$, and the
# > masses sum to 1; a continuous one has a *density* $p(y)$, which integrates to 1 and may exceed 1, so
# > $-\log p(y)$ can be negative and is not comparable with $-\log P(k)$ until the density is turned back into
# > mass. Logarithms to base $e$ count **nats**, to base 2 **bits**: 1 nat $= 1/\ln 2 \approx 1.443$ bits. The
# > Kullback–Leibler divergence $\mathrm{KL}(p \,\|\, q) = \mathbb{E}_{x \sim p}[\log p(x) - \log q(x)]$ is
# > $\ge 0$, and 0 only when $p = q$; lesson 01 shows that maximizing likelihood minimizes
# > $\mathrm{KL}(p_\text{data} \,\|\, p_\theta)$. More in d2l.ai's chapter on
# > [probability](https://d2l.ai/chapter_preliminaries/probability.html) and its appendix on
# > [information theory](https://d2l.ai/chapter_appendix-mathematics-for-deep-learning/information-theory.html).
#
# **Likelihood.** The negative log-likelihood (NLL) of the test images, in nats per image and in **bits per
# dimension**, $\text{bits/dim} = \dfrac{\text{NLL}}{D \ln 2}$ with $D = 64$ pixels, always on the data's
# discrete scale of 17 levels, with the validation figure beside it. A model that knows nothing, uniform over
# the 17 levels, scores $64 \ln 17$ nats (below); lesson 01 fits the per-pixel categorical baseline, which is
# printed beside every model's NLL. Continuous models (lessons 05, 06, 08) are made comparable by *dequantization*: they see
# $y = (k + u)/17$ with $u \sim U[0, 1)^D$, not the $k/16$ that `data.load` gives. The mass of the digit $k$
# is its density integrated over a cube of
# volume $17^{-D}$, $P(k) = 17^{-D}\,\mathbb{E}_u\big[p\big((k + u)/17\big)\big]$, and Jensen's inequality
# ($\log \mathbb{E} \ge \mathbb{E} \log$) gives the bound
# $-\log P(k) \le \mathbb{E}_u\big[-\log p\big((k + u)/17\big)\big] + D \ln 17$: one draw of $u$ gives an
# estimate of this bound, not a bound. So every likelihood figure says what it is, *exact* (lesson 07), *a
# bound* (lesson 03's ELBO) or *an estimate of a bound*, and how it was computed.

# %%
# NBVAL_CHECK_OUTPUT
uniform_nll = 64 * torch.log(torch.tensor(17.0)).item()
print(f"uniform over 17 levels: {uniform_nll:.1f} nats per image = {metrics.bits_per_dim(uniform_nll, 64):.2f} bits/dim")

# %% [markdown]
# **Sample quality.** A small digits classifier ships with the package. Besides the ten digits it has an
# eleventh class, "not a digit", learned from noise, blank images, scrambled digits, images whose pixels
# are drawn independently and smooth blobs. It was trained on the 1000 **training** digits only, so the held-out digits are as
# new to it as a model's samples: the 447 test digits are the **reference set** every set of images is measured
# against, and the 350 validation digits are the **real row**, scored exactly like a model's samples (the
# column "real (val)" below). `metrics.sample_quality(images)` computes:
#
# | figure | meaning | good |
# | --- | --- | --- |
# | `recognized` | share of samples the classifier calls a digit with probability ≥ 0.9 | high, near real digits |
# | `classes_covered` | digit classes that hold ≥ 5% of the samples | 10 |
# | `label_entropy` | entropy of the predicted labels of the samples whose top class is a digit (samples called "not a digit" are left out), nats (uniform over 10: 2.30) | near 2.30 |
# | `frechet` | Fréchet distance between Gaussians fitted to the classifier's features of samples and of the reference set | low |
# | `precision` | share of samples inside the reference manifold: within the ball around a reference digit that reaches its 5th nearest reference neighbour | high |
# | `recall` | share of reference digits whose ball holds at least one sample: the *coverage* of Naeem et al. (2020) | high |
# | `memorization` | how far samples lie from the training images, relative to how far unseen real digits lie (exercise 2) | near 1; near 0 means copies; above 1, farther from the data than real digits are |
#
# The tables print each figure with its 95% interval: `0.963±.023` reads "0.963, and the interval lies within
# 0.023 of it". A count prints as its value and then its interval, so `2 (0-3)` reads "2 classes, interval 0
# to 3"; a count printed alone has an interval of that single value. `label_entropy` is 0 when no sample's top
# class is a digit.
#
# Each figure alone can be fooled; read them together.
# - `recognized` and `precision` reward a model that draws one kind of digit well over and over (*mode
#   collapse*, lesson 04); `classes_covered`, `label_entropy` and `recall` give it away (the "only zeros" column
#   below).
# - `frechet` is biased upwards at small $N$ and has wide intervals at $N = 350$: compare it only at equal $N$.
# - `precision` and `recall` count k-nearest-neighbour balls, so they depend on $k$ (a larger $k$ makes every
#   ball bigger, which can only raise both; the course fixes $k = 5$), and `recall` depends on $N$ (more
#   samples reach more balls).
#   `recall` uses only the reference digits' balls, so a noisy sample far from every digit adds nothing to it
#   (the k-NN recall of Kynkäänniemi et al. draws a ball around each *sample*: a far-off noisy sample has a large
#   ball that swallows real digits, and noise then looks like variety). A model that draws plausible digits in
#   a style unlike the reference set is undercounted.
# - `memorization` reads a median, so a model that copies a minority of its samples passes it.
# - `recognized` accepts many images that are only partly digits (the chimeras below).
#
# The dependence on $N$ is not small. Watch the real validation digits:

# %%
# NBVAL_CHECK_OUTPUT
by_n = {n: metrics.sample_quality(val.images[:n]) for n in (50, 100, 200, 350)}
for n, q in by_n.items():
    print(f"N = {n:3d} real digits: frechet {q['frechet']:6.1f}   recall (coverage) {q['recall']:.3f}")
grows = by_n[350]["recall"] > by_n[50]["recall"] + 0.2 and by_n[350]["frechet"] < by_n[50]["frechet"] / 2
print(f"{'PASS' if grows else 'FAIL'} the same real digits: more of them cover more and sit closer in Fréchet distance")

# %% [markdown]
# So the protocol fixes $N$: set-level figures (`frechet`, `precision`, `recall`) are computed at
# $N_\text{set} = 350$, the size of the real row. A model's 1000 samples are scored as the mean over random
# subsets of 350, so its figures sit on the same scale as the real row's; a smaller sample set is compared
# with a real row of its own size.
#
# **Every figure comes with its uncertainty.** Draw another 1000 samples and every figure moves a little.
# `sample_quality` reports a 95% interval for each (`q["interval"]`), and tables print it as `0.853±.021`:
# a bootstrap over the samples for per-image figures, random half-sets for set-level ones. A lesson says
# "A beats B" only where the gap is larger than the intervals (`metrics.differs`, `metrics.beats`);
# otherwise the two are within noise.
#
# **Exercise 2.** The one figure that does not come from the classifier. For samples $x_1, \dots, x_N$,
# training images $t_1, \dots, t_T$ and reference images $s_1, \dots, s_M$, each image a vector of pixels,
#
# $$\text{memorization} = \frac{\operatorname{median}_{i} \, \min_{j} \lVert x_i - t_j \rVert_2}
# {\operatorname{median}_{k} \, \min_{j} \lVert s_k - t_j \rVert_2}.$$
#
# Write `memorization_ratio(samples, train, reference)` for images of shape `(N, C, H, W)`, `(T, C, H, W)`
# and `(M, C, H, W)`; it returns a number. Before you run the check: what does it give for copies of
# training images, and for real digits the training set has never seen?

# %%
def memorization_ratio(samples, train, reference):
    """samples (N, C, H, W), train (T, C, H, W), reference (M, C, H, W) -> float: the median distance from a
    sample to its nearest training image over the same median for the reference images."""
    ### BEGIN SOLUTION
    def nearest(images):  # (K,): the distance from each image to its nearest training image
        return torch.cdist(images.flatten(1), train.flatten(1)).min(dim=1).values

    return (nearest(samples).median() / nearest(reference).median()).item()
    ### END SOLUTION


# %%
check.memorization_ratio(memorization_ratio)

# %% [markdown]
# The package computes the same figure as `metrics.memorization(images)`, against the 1000 training digits
# and the 447 test digits, and `sample_quality` reports it.
#
# **Reference rows.** Figures only mean something next to the same figures for known inputs. Here they are
# for the real row, for uniform noise, for blank images, for samples of the *per-pixel-independent* model
# (each pixel drawn on its own from its training distribution: the simplest generative model), for a
# collapsed set (only the validation zeros, repeated), for copies of training images and for **chimeras**: the
# top half of one real validation digit over the bottom half of another, which only sometimes is a digit.

# %%
def per_pixel_independent_samples(images, n, generator):
    """Each pixel drawn independently from its empirical distribution over ``images: (N, 1, 8, 8)``."""
    flat = images.flatten(1)
    rows = torch.randint(0, len(flat), (n, flat.shape[1]), generator=generator)
    return flat.gather(0, rows).view(n, *images.shape[1:])


g = torch.Generator().manual_seed(SEED)
zeros = val.images[val.labels == 0]
reference_sets = {
    "real (val)": val.images,
    "uniform noise": torch.randint(0, 17, (N_SAMPLES, 1, 8, 8), generator=g) / 16.0,
    "blank images": torch.zeros(N_SAMPLES, 1, 8, 8),
    "per-pixel independent": per_pixel_independent_samples(train.images, N_SAMPLES, g),
    "only zeros (val)": zeros[torch.arange(N_SAMPLES) % len(zeros)],
    "copies of training images": train.images[:N_SAMPLES],
    # the same chimeras in every run (and in lesson 04): their own generator, seeded once
    "chimeras of real digits": metrics.chimeras(val.images, generator=torch.Generator().manual_seed(0)),
}
quality = {name: metrics.sample_quality(images) for name, images in reference_sets.items()}
print(metrics.format_quality(quality, reference=False))

# %%
fig, axes = plt.subplots(2, 4, figsize=(15, 5.6))
for ax, (name, images) in zip(axes.flat, reference_sets.items()):
    viz.image_grid(images[:24], nrow=6, ax=ax, title=name)
axes.flat[-1].axis("off")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
real, zeros_q, copies = (quality[k] for k in ("real (val)", "only zeros (val)", "copies of training images"))
gencourse.headline("real digits: recognized", real["recognized"], "{:.2f}")
print("PASS real digits: recognized >= 0.9" if real["recognized"] >= 0.9 else "FAIL real recognized")
print("PASS real digits: 10 classes covered" if real["classes_covered"] == 10 else "FAIL real coverage")
ok = 0.9 <= real["memorization"] <= 1.1
print(f"{'PASS' if ok else 'FAIL'} real digits: memorization within 0.1 of 1 (as far from training images as the reference)")
for name in ("uniform noise", "blank images", "per-pixel independent"):
    ok = quality[name]["recognized"] <= 0.1 and quality[name]["recall"] <= 0.1
    print(f"{'PASS' if ok else 'FAIL'} {name}: recognized <= 0.1 and recall <= 0.1")
ok = (zeros_q["recognized"] >= real["recognized"] and zeros_q["precision"] >= 0.9 * real["precision"]
      and zeros_q["classes_covered"] == 1 and zeros_q["recall"] <= 0.2)
print(f"{'PASS' if ok else 'FAIL'} only zeros: recognized at least real's, precision at least 0.9 x real's, "
      "yet 1 class covered and recall <= 0.2")
ok = copies["memorization"] < 0.05 and copies["recognized"] >= real["recognized"]
print(f"{'PASS' if ok else 'FAIL'} copies of training images: recognized at least real's, memorization near 0")
chimeras_q = quality["chimeras of real digits"]
ok = 0.3 <= chimeras_q["recognized"] <= real["recognized"] - 0.2
print(f"{'PASS' if ok else 'FAIL'} chimeras: recognized between 0.3 and real's - 0.2 (lenient, yet below real digits)")
stopped = (bool(metrics.goal(real, "recognized", 0.9)) and not metrics.goal(zeros_q, "recognized", 0.9)
           and not metrics.goal(copies, "recognized", 0.9))
print(f"{'PASS' if stopped else 'FAIL'} the goal 'recognized >= 0.9 x real' with its guard: "
      "met by the real row, refused to the zeros and to the copies")

# %% [markdown]
# Read later tables against these rows. The real row is where a perfect model would land, give or take its
# interval. The collapsed set is recognized at least as often as real digits and lies inside the reference
# manifold, yet covers one class and a small share of the reference digits. Copies of training images show
# what copying buys: the classifier has seen them, so they are recognized even more often than unseen digits
# (the practical ceiling of `recognized`), and their precision and recall are within noise of the real row's
# or below it; only `memorization`, near 0, gives them away. That is why every sample-quality goal in the
# course comes with a **memorization guard** (`metrics.goal`): all 10 classes covered and `memorization` ≥ 0.8,
# so no goal can be met by copying the training set or by collapsing onto one class (the last line above).
#
# The chimeras show a limit of `recognized` itself. The classifier recognizes more than half of them, though many
# are not digits anyone would write: the images it learned as "not a digit" were noise, blanks, scrambled digits,
# independently drawn pixels and smooth blobs, never halves of two digits. So `recognized` is lenient; the Fréchet
# distance (about five times real's), `precision` and `recall` do tell the chimeras apart. Far below real,
# `recognized` shows a failure; at the chimeras' level it cannot tell digits from digit-like strokes (a set half
# clean digits and half junk would score the same); only near real does it suggest digits, and the pictures must
# agree. Lesson 04 prints the chimeras beside a GAN for that reason.
#
# Headline figures use **true samples**: temperature 1, no guidance, samples from the decoder rather than
# its mean. Tricks that trade variety for neatness are shown separately, labelled.
#
# **Sampling cost** is counted in network evaluations per sample (NFE) and milliseconds per 1000 samples
# (lessons 04, 06 and 07 compare them).

# %% [markdown]
# ## Bigger data on Colab or a GPU
#
# 1. Open a lesson with its "Open in Colab" badge (or the student edition's) and run the first code cell: it
#    installs the course.
# 2. In the parameters cell set `DATASET = "mnist"` (or `"fashion-mnist"`) and, under Runtime → Change
#    runtime type, pick a GPU; `DEVICE = "auto"` then finds it.
# 3. Raise the epochs. The first run downloads the data to `data/` (or to `$GENCOURSE_DATA`).
#
# ## Using generative models responsibly
#
# The methods in this course make images, audio and text that can pass for real. The same tools make
# deceptive media, copy the work of artists and the faces of people without their consent, and reproduce
# the biases of their training data. Memorization is measurable (you have just computed the figure): a model
# that copies its training set leaks it. When you train on data about people, ask whose data it is, whether
# they agreed, and what your samples could be used for; label generated content as generated.
#
# ## Summary
#
# - The course runs offline on a laptop; the parameters cell scales each lesson up.
# - Data ladder: 2D toys → 8×8 digits (17 levels, split 1000/350/447) → MNIST.
# - Exercises are checked instantly; a failed check says what looks wrong and hints at the idea;
#   `check.solution("<name>")` shows the reference; the student edition has the exercises unsolved.
# - Every model is measured the same way: NLL in nats and bits/dim on the discrete scale, saying whether it is
#   exact, a bound or an estimate; and sample quality from a classifier that never saw the held-out digits,
#   with 95% intervals, next to the real row computed the same way at the same $N$. Real digits are recognized
#   at the rate printed above, noise and per-pixel samples almost never; a collapsed set betrays itself by
#   its coverage, copies by `memorization` near 0, and the goals' guard checks both.
#
# **Next:** lesson 01 asks what makes a model *generative*, and fits the first ones.
