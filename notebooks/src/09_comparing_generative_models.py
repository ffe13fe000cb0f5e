# %% [markdown]
# # 09 · Comparing generative models
#
# **Learning objectives.** After this lesson you can
# - compare generative models of different families on equal terms: one data split, one set of metrics, one
#   machine, and the numbers of simple baselines and real images beside every figure;
# - read a comparison table: which figures are exact likelihoods, which are bounds, which families have none,
#   and what sample quality, coverage, memorization and sampling cost each say;
# - show, with a measurement, that a good likelihood does not imply good samples, and the reverse
#   (Theis, van den Oord & Bethge 2016);
# - choose a family for a task from measured trade-offs rather than from folklore.

# %% tags=["parameters"]
# Parameters: change them here, or set the environment variables before starting Jupyter.
import os

QUICK = os.environ.get("GENCOURSE_QUICK", "0") == "1"  # smallest settings: only checks that the lesson runs
SEED = int(os.environ.get("GENCOURSE_SEED", 0))
RETRAIN = os.environ.get("GENCOURSE_RETRAIN", "0") == "1"  # True: train all seven recipes here (about 3 min on a CPU)
N_SAMPLES = int(os.environ.get("GENCOURSE_SAMPLES", 100 if QUICK else 1000))  # samples scored per model
DEVICE = os.environ.get("GENCOURSE_DEVICE", "cpu")  # "auto" picks a GPU when there is one

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import gencourse
from gencourse import check, data, metrics, recipes, viz

gencourse.setup(seed=SEED)
device = gencourse.get_device(DEVICE)
train, val, test = (data.load("digits", split) for split in ("train", "val", "test"))
lesson_start = time.perf_counter()

# %% [markdown]
# ## 1. Seven recipes, one protocol
#
# Every model lesson ended with a digits model trained by its family's recipe, `train_digits`. The module
# `gencourse.recipes` names those seven recipes, so that this lesson and the lessons use the same code:

# %%
# NBVAL_CHECK_OUTPUT
for name in recipes.NAMES:
    r = recipes.recipe(name)
    print(f"{r.name:14s} lesson {r.lesson}   likelihood: {r.likelihood:5s}   sampler: {r.sampler}")

# %% [markdown]
# Training all seven takes a few minutes of CPU, more than this lesson's budget. So by default the
# lesson **loads checkpoints**: `state_dict`s that `python -m gencourse.recipes` wrote after training each
# recipe exactly as its lesson does, read back with `torch.load(..., weights_only=True)` into the architecture
# the recipe builds. Each checkpoint records how many seconds its training took and on which machine.
# Set `RETRAIN = True` in the parameters cell to train every recipe here instead.

# %%
gencourse.show(recipes.load)

# %%
models, train_seconds = {}, {}
for name in recipes.NAMES:
    if RETRAIN:
        models[name], train_seconds[name] = recipes.train(name, seed=SEED, quick=QUICK, device=device)
        origin = "trained in this run"
    else:
        models[name], meta = recipes.load(name, with_meta=True)
        models[name].to(device)
        train_seconds[name] = meta["train_seconds"]
        origin = f"checkpoint from {meta['date']}, trained on {meta['machine'].split(',')[0]}"
    print(f"{recipes.recipe(name).name:14s} {train_seconds[name]:5.1f} s of training   ({origin})")

# %% [markdown]
# ## 2. The samples, side by side
#
# Each model draws its headline samples: temperature 1, no guidance, the decoder's *samples* where a decoder
# defines a distribution. The autoencoder has no prior, so its row is the claim "sample the latent space" taken
# literally: decoder means of random codes $z \sim \mathcal N(0, I)$. Two baselines from lesson 01 join them: the uniform model over the 17
# levels and the per-pixel categorical model, each pixel drawn on its own.

# %%
rows = recipes.baselines(n=N_SAMPLES, seed=SEED)
for name in recipes.NAMES:
    start = time.perf_counter()
    row = recipes.measure(name, models[name], n=N_SAMPLES, seed=SEED)
    r = recipes.recipe(name)
    row.update(train_seconds=train_seconds[name], intro_dgm=r.intro_dgm if r.intro_dgm else ("n/c" if r.intro_dgm_note else None))
    rows.append(row)
    print(f"{row['name']:14s} measured in {time.perf_counter() - start:4.1f} s")
rows.append(recipes.real_row())
by_name = {row["name"]: row for row in rows}

# %%
fig, axes = plt.subplots(2, 5, figsize=(12, 5.4))
for ax, row in zip(axes.flat, rows):
    viz.image_grid(row["samples"][:36], nrow=6, ax=ax, title=row["name"])
plt.suptitle("36 samples of each model (real test images last)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. One table
#
# The same figures for every model, measured in this run on the same 447 test images and `N_SAMPLES`
# samples each (the evaluation protocol of lesson 00):
#
# - **NLL**: nats per image on the 17-level scale, test with validation beside it, and bits per dimension.
#   *Exact* for the autoregressive model and the baselines; an upper *bound* for the VAE (IWAE, k = 1000) and
#   for the continuous models seen through dequantization (RealNVP, flow matching, whose ODE figure is also a
#   stochastic estimate). Lower is better; a bound can only overstate a model's NLL, never flatter it.
# - **recognized**, **classes**, **Fréchet**, **precision**, **recall**, **memorization**: the digits
#   classifier's view of the samples (lesson 00), next to real test images in the last row.
# - **NFE**: network evaluations per sample; **ms/1000**: milliseconds to draw 1000 samples here;
#   **train s**: training seconds of the recipe; **params**: trained parameters (a GAN's discriminator included).
# - **intro_dgm**: the test figure of the public reference code for this split (the companion code of Tomczak's
#   *Deep Generative Modeling*; see the README); "n/c" where
#   their number is not a comparable likelihood.

# %%
for key, name, fmt in (("nll_test", "PixelCNN", "{:.1f}"), ("recognized", "diffusion", "{:.3f}"),
                       ("recognized", "GAN", "{:.3f}"), ("recognized", "flow matching", "{:.3f}")):
    gencourse.headline(f"{name}: {key.replace('nll_test', 'test NLL (nats)')}", by_name[name][key], fmt)
print(recipes.format_table(rows))

# %% [markdown]
# Every family that has an intro_dgm figure is held to it, on test:

# %%
# NBVAL_CHECK_OUTPUT
for row in rows:
    if isinstance(row.get("intro_dgm"), float):
        verdict = "PASS" if row["nll_test"] < row["intro_dgm"] else "FAIL"
        print(f"{verdict} {row['name']}: test NLL below intro_dgm's {row['intro_dgm']:.1f} nats")

# %% [markdown]
# ## 4. Quality against cost, likelihood against quality
#
# Sampling cost differs by orders of magnitude between families. Some families can trade cost for quality at sampling time:
# diffusion with DDIM over fewer steps, flow matching with fewer or more ODE steps. Those extra settings are
# drawn hollow.

# %%
extra = []
settings = [("diffusion", "DDIM 20", lambda m, n: m.sample(n, steps=20), 20),
            ("flow_matching", "Euler 4", lambda m, n: m.sample(n, steps=4, method="euler"), 4),
            ("flow_matching", "Heun 10", lambda m, n: m.sample(n, steps=10, method="heun"), 20)]
for name, label, sampler, nfe in settings:
    torch.manual_seed(SEED)
    start = time.perf_counter()
    samples = sampler(models[name], N_SAMPLES).float().cpu()
    ms = (time.perf_counter() - start) * 1e6 / N_SAMPLES
    extra.append({"name": f"{recipes.recipe(name).name}, {label}", "nfe": nfe, "ms_per_1000": ms,
                  **metrics.sample_quality(samples)})
    print(f"{extra[-1]['name']:22s} NFE {nfe:3d}  {ms:6.0f} ms/1000  recognized {extra[-1]['recognized']:.3f}")
costs = [row["ms_per_1000"] for row in rows if row.get("nfe")]
print(f"the slowest headline sampler takes {max(costs) / min(costs):.0f} times as long as the fastest")

# %%
models_rows = [row for row in rows if row["name"] in {recipes.recipe(n).name for n in recipes.NAMES}]
real = by_name["real test images"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
for row in models_rows + extra:
    hollow = any(row is e for e in extra)
    for ax, key in ((ax1, "recognized"), (ax2, "frechet")):
        ax.scatter(max(row["ms_per_1000"], 0.5), row[key], s=45, facecolors="none" if hollow else "C0", edgecolors="C0")
        ax.annotate(row["name"], (max(row["ms_per_1000"], 0.5), row[key]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
for ax, key, label in ((ax1, "recognized", "recognized (higher is better)"), (ax2, "frechet", "Fréchet distance (lower is better)")):
    ax.axhline(real[key], color="k", ls="--", lw=1, label="real test images")
    ax.set(xscale="log", xlabel="milliseconds per 1000 samples (log scale)", ylabel=label)
    ax.legend(loc="best", fontsize=8)
ax2.set_yscale("log")
plt.suptitle("Sample quality against sampling cost")
plt.tight_layout()
plt.show()

# %% [markdown]
# And the figure that gives this lesson its warning: every model with a likelihood, placed by its test NLL
# and by how many of its samples the classifier recognizes.

# %%
def plot_likelihood_against_quality(points, highlight=()):
    """Each row with a test NLL as a point (baselines orange, ``highlight`` red)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for row in points:
        color = "C3" if any(row is h for h in highlight) else "C1" if row.get("lesson") == "01" else "C0"
        ax.scatter(row["nll_test"], row["recognized"], s=45, color=color)
        ax.annotate(row["name"], (row["nll_test"], row["recognized"]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.axhline(real["recognized"], color="k", ls="--", lw=1, label="real test images")
    ax.set(xlabel="test NLL, nats per image (lower is better)", ylabel="recognized (higher is better)",
           title="Likelihood against sample quality")
    ax.legend(fontsize=8)
    plt.show()


with_nll = [row for row in rows if "nll_test" in row]
plot_likelihood_against_quality(with_nll)

# %% [markdown]
# ### Exercise 1 · The Fréchet distance from two Gaussians
#
# The `frechet` column fits a Gaussian to the classifier features of the samples and another to those of the
# test images, and reports the squared 2-Wasserstein distance between them:
#
# $$d^2 = \lVert \mu_a - \mu_b \rVert^2 + \operatorname{Tr}\left(\Sigma_a + \Sigma_b - 2\,(\Sigma_a \Sigma_b)^{1/2}\right).$$
#
# Write it from the moments. `scipy.linalg.sqrtm` computes a matrix square root (keep its real part).

# %%
def frechet_from_moments(mu_a, cov_a, mu_b, cov_b):
    ### BEGIN SOLUTION
    from scipy import linalg

    root = np.real(linalg.sqrtm(np.asarray(cov_a) @ np.asarray(cov_b)))
    diff = np.asarray(mu_a) - np.asarray(mu_b)
    return float(diff @ diff + np.trace(np.asarray(cov_a)) + np.trace(np.asarray(cov_b)) - 2 * np.trace(root))
    ### END SOLUTION


# %%
check.frechet_from_moments(frechet_from_moments)

# %% [markdown]
# ## 5. Likelihood is not sample quality
#
# Theis, van den Oord & Bethge (2016) showed that the two can disagree almost arbitrarily. The table already
# hints at it: the per-pixel categorical model is far from the worst on likelihood, yet hardly any of its
# samples is a digit, while the GAN and the autoencoder have no likelihood at all.

# %%
cat, vae_row = by_name["per-pixel categorical"], by_name["VAE"]
print(f"per-pixel categorical: test NLL {cat['nll_test']:.1f} nats, recognized {cat['recognized']:.3f}")
print(f"VAE:                   test NLL {vae_row['nll_test']:.1f} nats, recognized {vae_row['recognized']:.3f}")
print(f"uniform:               test NLL {by_name['uniform']['nll_test']:.1f} nats, recognized {by_name['uniform']['recognized']:.3f}")

# %% [markdown]
# **A good model mixed with noise.** Take the best model by likelihood, the PixelCNN with density $p$, and
# mix it with uniform noise $u$: $q = w\,p + (1 - w)\,u$ with $w = 0.01$. Ninety-nine samples in a hundred
# are noise. Yet $q(x) \ge w\,p(x)$, so
#
# $$-\log q(x) \;\le\; -\log p(x) - \log w = -\log p(x) + 4.6 \text{ nats}:$$
#
# the likelihood barely moves. (In $D$ = 64 dimensions, 4.6 nats is 0.1 bits per dimension.)
#
# ### Exercise 2 · The NLL of a mixture
#
# Given each test image's NLL under the model (`nll_model`) and under the noise (`nll_noise`), both in nats,
# return its NLL under $q$. Work in log space: $e^{-180}$ is far below what float32 can hold.

# %%
def noise_mixture_nll(nll_model, nll_noise, weight):
    ### BEGIN SOLUTION
    a = torch.as_tensor(nll_model, dtype=torch.float64)
    b = torch.as_tensor(nll_noise, dtype=torch.float64).expand_as(a)
    return -torch.logsumexp(torch.stack([math.log(weight) - a, math.log(1 - weight) - b]), dim=0)
    ### END SOLUTION


# %%
check.noise_mixture_nll(noise_mixture_nll)

# %%
W = 0.01
pixelcnn = models["autoregressive"]
with torch.no_grad():
    nll_p = pixelcnn.nll(test.images.to(device)).double().cpu()
nll_u = torch.full_like(nll_p, by_name["uniform"]["nll_test"])
nll_q = recipes.noise_mixture_nll(nll_p, nll_u, W)
g = torch.Generator().manual_seed(SEED)
from_model = torch.rand(N_SAMPLES, generator=g) < W
noise = torch.randint(0, 17, (N_SAMPLES, 1, 8, 8), generator=g).float() / 16
mixed = torch.where(from_model.view(-1, 1, 1, 1), by_name["PixelCNN"]["samples"], noise)
q_mixed = metrics.sample_quality(mixed)
print(f"PixelCNN p:          test NLL {nll_p.mean():6.2f} nats   recognized {by_name['PixelCNN']['recognized']:.3f}")
print(f"q = 0.01 p + 0.99 u: test NLL {nll_q.mean():6.2f} nats   recognized {q_mixed['recognized']:.3f}")
mixture_row = {"name": "0.01 PixelCNN + 0.99 noise", "nll_test": nll_q.mean().item(), **q_mixed}
plot_likelihood_against_quality(with_nll + [mixture_row], highlight=[mixture_row])

# %%
# NBVAL_CHECK_OUTPUT
gap = (nll_q - nll_p).max().item()
print(f"{'PASS' if gap <= -math.log(W) + 1e-9 else 'FAIL'} the mixture costs at most -log w = {-math.log(W):.2f} nats per test image")
print(f"{'PASS' if q_mixed['recognized'] < 0.1 * by_name['PixelCNN']['recognized'] else 'FAIL'} "
      "its samples are recognized less than a tenth as often as the PixelCNN's")

# %% [markdown]
# **The reverse: perfect samples, no likelihood.** A "model" that returns a random *training* image is as
# good as real data by every sample figure except one, and it assigns probability zero to every test image
# that is not a copy of a training image:

# %%
pick = torch.randint(0, len(train), (N_SAMPLES,), generator=g)
copies = metrics.sample_quality(train.images[pick])
train_set = {tuple(row.tolist()) for row in data.to_levels(train.images, 17).flatten(1)}
test_in_train = sum(tuple(row.tolist()) in train_set for row in data.to_levels(test.images, 17).flatten(1))
print(f"training-set copies: recognized {copies['recognized']:.3f}, Fréchet {copies['frechet']:.1f}, "
      f"memorization {copies['memorization']:.2f} (real: {real['recognized']:.3f}, {real['frechet']:.1f}, 1.00)")
print(f"test images that are exact copies of a training image: {test_in_train} of {len(test)}: test NLL = infinity")

# %% [markdown]
# The memorization column exists for this reason: near 0 means copies. So report both kinds of figure, with
# the likelihood's kind (exact, bound, none) named, and never rank models by one of them alone.
#
# ## 6. The common claims, with the numbers just measured
#
# Texts about generative models often make the claims below. Each lesson tested one or two; here they are
# again, each printed from this run's table.

# %%
gan, dif, ddim = by_name["GAN"], by_name["diffusion"], next(row for row in extra if "DDIM" in row["name"])
print(f"1. 'Diffusion is cheap to sample, unlike GANs': the GAN needs {gan['nfe']} network evaluation per sample and "
      f"{gan['ms_per_1000']:.0f} ms per 1000 samples; diffusion {dif['nfe']} evaluations and {dif['ms_per_1000']:.0f} ms "
      f"({dif['ms_per_1000'] / gan['ms_per_1000']:.0f} times as long), DDIM {ddim['nfe']} and {ddim['ms_per_1000']:.0f} ms.")
blurrier = "lower" if vae_row["precision"] < gan["precision"] else "not lower"
wider = "higher" if vae_row["recall"] > gan["recall"] else "not higher"
print(f"2. 'VAEs suffer from mode collapse': VAE precision {vae_row['precision']:.2f} and recall {vae_row['recall']:.2f}, "
      f"{vae_row['classes_covered']:.0f} classes covered; GAN precision {gan['precision']:.2f} and recall {gan['recall']:.2f}, "
      f"{gan['classes_covered']:.0f} classes. The VAE's precision is {blurrier} and its recall {wider} than the GAN's"
      + (": its samples stray off the digits (blur) more than they miss modes." if (blurrier, wider) == ("lower", "higher")
         else ", so this run does not show the usual picture (VAE blur, GAN lost modes).")
      + " Lesson 04 measured collapse on the ring.")
ae = by_name["autoencoder"]
torch.manual_seed(SEED)
fitted = metrics.sample_quality(models["autoencoder"].sample(N_SAMPLES).cpu())
print(f"3. 'Sample an autoencoder's latent space to generate': codes z ~ N(0, I) give recognized {ae['recognized']:.2f}. "
      f"A Gaussian fitted to the training codes (a second model, fitted after the first) gives {fitted['recognized']:.2f}, "
      f"against {vae_row['recognized']:.2f} for the VAE's samples from its prior.")

# %%
vae_model = models["vae"]
with torch.no_grad():
    mu, logvar = vae_model.encode(train.images[:N_SAMPLES].to(device))
    z_post = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    from_posterior = vae_model.decode_images(z_post).cpu()
post = metrics.sample_quality(from_posterior)
print(f"4. 'The VAE samples the encoder's distribution': generation draws z from the prior N(0, I): recognized "
      f"{vae_row['recognized']:.2f}. Decoding z from the encoder's posteriors of training images instead gives "
      f"{post['recognized']:.2f}: a different distribution, which needs data to draw from.")
schedule = models["diffusion"].schedule
x0 = test.images.flatten(1).to(device)
t = torch.full((len(x0),), schedule.T // 2, dtype=torch.long, device=device)
noise_part = schedule.q_sample(x0, t, torch.randn_like(x0)) - schedule.alphas_cumprod[t][:, None].sqrt() * x0
neighbours = torch.corrcoef(torch.stack([noise_part[:, :-1].flatten(), noise_part[:, 1:].flatten()]))[0, 1]
print(f"5. 'Diffusion spreads information between neighbouring pixels': the correlation of the forward process's "
      f"noise between horizontal neighbours at t = T/2 is {neighbours:.3f}; each pixel is noised on its own.")
print(f"6. 'Each diffusion step is trained by maximum likelihood': the recipe regresses the noise, so its row has "
      f"no likelihood (NLL is '{dif['likelihood']}'); the noise regression is a reweighted variational bound (lesson 06).")
best_nll = min((row for row in rows if row.get("likelihood") in ("exact", "bound") and row["lesson"] != "01"),
               key=lambda row: row["nll_test"])
flow = by_name["RealNVP"]
print(f"7. 'Flows are mainly for text': here the flow models dequantized, continuous pixels (test bound "
      f"{flow['nll_test']:.1f} nats); the best likelihood belongs to the {best_nll['name']} ({best_nll['nll_test']:.1f} nats), "
      "the autoregressive family that text uses.")

# %% [markdown]
# ## 7. Which model when
#
# The table, not folklore, answers the practical question. The cell below reads the choices off the rows:

# %%
samplers = [row for row in models_rows if row["name"] != "autoencoder"]
good = [row for row in samplers if row["recognized"] >= 0.8 * real["recognized"]]
picks = {
    "best likelihood (compression, density, anomaly scores)": min((r for r in samplers if "nll_test" in r), key=lambda r: r["nll_test"]),
    "best sample quality (lowest Fréchet)": min(samplers, key=lambda r: r["frechet"]),
    "fastest sampler recognized >= 0.8 x real": min(good, key=lambda r: r["ms_per_1000"]) if good else None,
    "best coverage (recall)": max(samplers, key=lambda r: r["recall"]),
    "cheapest to train": min(samplers, key=lambda r: r["train_seconds"]),
}
for need, row in picks.items():
    print(f"{need:58s} {row['name'] if row else '(none)'}")

# %% [markdown]
# How to read these choices:
#
# - **You need probabilities** (compression, anomaly detection, model comparison): an autoregressive model gives
#   them exactly, at the price of sequential sampling. A flow gives a bound and samples in one pass; a VAE gives
#   a bound and a latent space.
# - **You need samples, fast**: a GAN samples in one network evaluation but has no likelihood to check coverage
#   with; watch recall and classes covered. Diffusion and flow matching buy quality with many evaluations per
#   sample, and let you choose the number of steps when you sample.
# - **You need a representation**: the VAE's encoder gives codes with a prior; a plain autoencoder gives codes
#   without a way to sample them.
# - **You care about both**: report a likelihood and sample figures, name the likelihood's kind, and compare
#   against baselines and real data, as this table does.
#
# These are the choices at this scale: 1000 training images of 8×8 pixels and a minute of CPU per model.
# With more data and compute the ranking of sample quality can change, which is why the recipes can be
# retrained with larger settings (`RETRAIN`, and each lesson's parameters cell).
#
# ### Exercise 3 · Add a family to the table
#
# Lesson 01's simplest generative model, one Gaussian over the 64 pixels fitted to the training images,
# joins the comparison. Write its sampler: `mean + eps @ scale_tril.T` for standard normal `eps` of shape
# `(n, 64)`, clipped to [0, 1] and rounded to the nearest of the 17 levels $k/16$, shaped `(n, 1, 8, 8)`.

# %%
def gaussian_digits(mean, scale_tril, eps):
    ### BEGIN SOLUTION
    y = (mean + eps @ scale_tril.T).clamp(0, 1)
    return (torch.round(y * 16) / 16).view(len(eps), 1, 8, 8)
    ### END SOLUTION


# %%
check.gaussian_digits(gaussian_digits)

# %%
x_train = train.images.flatten(1).double()
mean, cov = x_train.mean(0), torch.cov(x_train.T) + 1e-4 * torch.eye(64, dtype=torch.float64)
scale_tril = torch.linalg.cholesky(cov)
start = time.perf_counter()
eps = torch.randn(N_SAMPLES, 64, generator=g, dtype=torch.float64)
gauss = recipes.gaussian_digits(mean, scale_tril, eps).float()
gauss_row = {"name": "Gaussian (lesson 01)", "likelihood": "none", "nfe": 0, "params": 64 + 64 * 65 // 2,
             "ms_per_1000": (time.perf_counter() - start) * 1e6 / N_SAMPLES, "train_seconds": 0.0,
             **metrics.sample_quality(gauss)}
print(recipes.format_table([gauss_row, *models_rows, real]))
beaten = [row["name"] for row in models_rows if row["recognized"] < gauss_row["recognized"]]
print(f"\nmodels whose samples are recognized less often than the Gaussian's: {', '.join(beaten) or 'none'}")
print(f"lesson computed in {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# A baseline this simple, with no network at all, tells how much each network adds: one more reason to put
# simple baselines in every table.
#
# ## Summary
#
# - Seven families, one protocol: the same split, the same metrics, the same machine, baselines and real
#   images in the same table. Likelihoods are labelled exact, bound or none, and reported in nats and bits/dim
#   with validation beside test.
# - The autoregressive model holds the best likelihood and pays with sequential sampling; the GAN samples in
#   one evaluation with no likelihood to check it; diffusion and flow matching trade evaluations for quality.
# - Likelihood and sample quality answer different questions: a model mixed with 99% noise loses at most
#   4.6 nats, and copying the training set gives real-looking samples with a test likelihood of zero.
# - The common claims hold or fail by measurement (section 6): a GAN samples in one network evaluation and
#   diffusion in hundreds, the forward diffusion process noises each pixel on its own, and the VAE's
#   samples are judged by precision and recall, not by folklore.
#
# **Further reading:** Theis, van den Oord & Bethge, *A note on the evaluation of generative models* (2016);
# Kynkäänniemi et al., *Improved precision and recall metric for assessing generative models* (2019);
# Heusel et al. (2017) for the Fréchet distance; Bond-Taylor et al., *Deep generative modelling: a comparative
# review* (2022); and Tomczak's *Deep Generative Modeling*, whose digits split this course shares.
