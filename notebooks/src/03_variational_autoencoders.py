# %% [markdown]
# # 03 · Variational autoencoders
#
# **Learning objectives.** After this lesson you can
# - write a latent-variable model $p(x) = \int p(x \mid z)\, p(z)\, dz$ and say why its likelihood is hard;
# - derive the evidence lower bound (ELBO) twice, with Jensen's inequality and as $\log p(x)$ minus a KL gap,
#   and compute the Gaussian KL in closed form;
# - implement the reparameterization trick, and measure why it beats the score-function estimator;
# - train a VAE on digits, sample it from the **prior**, and measure how far its aggregate posterior is from
#   that prior;
# - explore a 2D latent space, and read the rate–distortion trade-off of $\beta$, including posterior collapse;
# - report a test likelihood the right way: the importance-weighted bound (IWAE) in nats and bits/dim on the
#   17-level discrete scale, next to the ELBO, the validation split and published figures.

# %% tags=["parameters"]
# Parameters: change them here, or set the environment variables before starting Jupyter.
import os

QUICK = os.environ.get("GENCOURSE_QUICK", "0") == "1"  # smallest settings: only checks that the lesson runs
SEED = int(os.environ.get("GENCOURSE_SEED", 0))
EPOCHS = int(os.environ.get("GENCOURSE_EPOCHS", 2 if QUICK else 150))  # the main VAE, at most (early stopping)
SMALL_EPOCHS = 2 if QUICK else 40  # the 2D explorer, the beta sweep and the decoder comparison
BETAS = [0.5, 1.0, 4.0, 16.0]  # the rate-distortion sweep
K_EVAL = int(os.environ.get("GENCOURSE_IWAE_K", 20 if QUICK else 1000))  # importance samples of the test NLL
N_SAMPLES = int(os.environ.get("GENCOURSE_SAMPLES", 100 if QUICK else 1000))  # samples that get scored
DEVICE = os.environ.get("GENCOURSE_DEVICE", "auto")

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import distributions as D

import gencourse
from gencourse import check, data, metrics, vae, viz

gencourse.setup(seed=SEED)
device = gencourse.get_device(DEVICE)
lesson_start = time.perf_counter()
train, val, test = (data.load("digits", split) for split in ("train", "val", "test"))
x_train, x_val, x_test = (ds.images.to(device) for ds in (train, val, test))
D_PIXELS, LEVELS = 64, data.LEVELS["digits"]

# %% [markdown]
# ## 1. A latent-variable model
#
# Lesson 02 ended with an autoencoder that could not sample: it had no distribution over its codes. Make that
# distribution part of the model. Draw a code from a fixed **prior**, then an image from a **decoder**:
#
# $$z \sim p(z) = \mathcal{N}(0, I), \qquad x \sim p_\theta(x \mid z), \qquad
#   p_\theta(x) = \int p_\theta(x \mid z)\, p(z)\, dz.$$
#
# Sampling is now easy and principled: $z$ from the prior, $x$ from the decoder. Training by maximum
# likelihood is not: the integral over $z$ has no closed form for a neural decoder, and estimating it by
# drawing $z$ from the prior wastes almost every draw, because for a given digit only a tiny region of
# codes explains it. The remedy is a second network, the **encoder** $q_\phi(z \mid x) =
# \mathcal{N}(\mu_\phi(x), \operatorname{diag} \sigma^2_\phi(x))$, that proposes codes likely for *this* $x$.
# The code calls $\log \sigma^2$ `logvar`.
#
# **The decoder, on the data's discrete scale.** Each pixel is one of 17 levels $k \in \{0, \dots, 16\}$, so
# $p_\theta(x \mid z) = \prod_d P_\theta(k_d \mid z)$ is a distribution over levels, and every likelihood in
# this lesson is an honest *discrete* one. We use the **discretized logistic** (Salimans et al., 2017): two
# numbers per pixel, a location $m$ and a log-scale $\log s$, and each level gets the logistic's mass on
# its bin of the line; the two edge bins take the tails, so the 17 probabilities sum to one.

# %%
gencourse.show(vae.discretized_logistic_log_pmf)

# %%
fig, ax = plt.subplots(figsize=(6, 2.4))
levels = torch.arange(LEVELS)
for loc, log_scale in [(-1.2, -1.0), (0.0, -2.0), (0.7, -3.0)]:
    pmf = vae.discretized_logistic_log_pmf(torch.tensor(loc), torch.tensor(log_scale), levels, LEVELS).exp()
    ax.bar(levels + 0.25 * (loc > 0) - 0.25 * (loc < 0), pmf, width=0.25, label=f"m = {loc}, log s = {log_scale}")
ax.set_xlabel("level k")
ax.set_xticks(range(0, LEVELS, 2))
ax.set_ylabel("P(k)")
ax.legend(fontsize=7)
ax.set_title("three decoder outputs for one pixel", fontsize=10)
plt.show()

# %% [markdown]
# Why not a softmax over the 17 levels of each pixel (a *categorical* decoder, Tomczak's `intro_dgm` choice)?
# It is the most flexible law per pixel, but it ignores that level 9 lies between 8 and 10, and it needs 17
# outputs per pixel. With 1000 training images that flexibility overfits; the logistic shares evidence
# between neighbouring levels. We measure it in section 5, once we can train.

# %% [markdown]
# ## 2. The evidence lower bound, derived twice
#
# **With Jensen's inequality.** Multiply and divide by $q_\phi(z \mid x)$ inside the integral, and use that
# $\log$ is concave, $\log \mathbb{E}[\cdot] \ge \mathbb{E}[\log \cdot]$:
#
# $$\log p_\theta(x) = \log \mathbb{E}_{q_\phi(z \mid x)}\!\left[\frac{p_\theta(x \mid z)\, p(z)}{q_\phi(z \mid x)}\right]
#   \;\ge\; \mathbb{E}_{q_\phi(z \mid x)}\!\left[\log \frac{p_\theta(x \mid z)\, p(z)}{q_\phi(z \mid x)}\right]
#   = \underbrace{\mathbb{E}_{q_\phi}[\log p_\theta(x \mid z)]}_{\text{reconstruction}}
#     - \underbrace{\mathrm{KL}\big(q_\phi(z \mid x) \,\|\, p(z)\big)}_{\text{rate}} =: \mathrm{ELBO}(x).$$
#
# **As $\log p(x)$ minus a gap.** Since $\log p_\theta(x)$ does not depend on $z$, and
# $p_\theta(x) = p_\theta(x, z) / p_\theta(z \mid x)$,
#
# $$\log p_\theta(x) = \mathbb{E}_{q_\phi}\!\left[\log \frac{p_\theta(x, z)}{q_\phi(z \mid x)}\right]
#   + \mathbb{E}_{q_\phi}\!\left[\log \frac{q_\phi(z \mid x)}{p_\theta(z \mid x)}\right]
#   = \mathrm{ELBO}(x) + \mathrm{KL}\big(q_\phi(z \mid x) \,\|\, p_\theta(z \mid x)\big).$$
#
# The second derivation says more: the bound is tight exactly when the encoder equals the true posterior,
# and maximizing the ELBO over $\phi$ pulls $q_\phi$ towards it, while maximizing over $\theta$ raises the
# likelihood. One objective trains both networks.
#
# **The KL in closed form.** For $q = \mathcal{N}(\mu, \operatorname{diag}\sigma^2)$ and $p = \mathcal{N}(0, I)$,
# integrating the log-ratio of the two Gaussians gives, summed over the latent dimensions $j$,
#
# $$\mathrm{KL}(q \,\|\, p) = \tfrac12 \sum_j \big(\mu_j^2 + \sigma_j^2 - 1 - \log \sigma_j^2\big).$$
#
# **Exercise 1.** Write `gaussian_kl(mu, logvar)`: the KL above for tensors `(B, ...)`, summed over every
# dimension but the batch, returning `(B,)`.

# %%
def gaussian_kl(mu, logvar):
    """KL(N(mu, diag exp(logvar)) || N(0, I)) summed over all non-batch dims: (B, ...) -> (B,)."""
    ### BEGIN SOLUTION
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
    ### END SOLUTION


# %%
check.gaussian_kl(gaussian_kl)

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(SEED)
mu_, logvar_ = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
reference = D.kl_divergence(D.Normal(mu_, torch.exp(0.5 * logvar_)), D.Normal(0.0, 1.0)).sum(1)
print("vae.gaussian_kl equals torch.distributions.kl_divergence (to 1e-10):",
      bool(torch.allclose(vae.gaussian_kl(mu_, logvar_), reference, atol=1e-10)))

# %% [markdown]
# ## 3. The reparameterization trick
#
# The reconstruction term $\mathbb{E}_{q_\phi}[\log p_\theta(x \mid z)]$ has no closed form, so we estimate it
# with a sample of $z$. But we also need its *gradient with respect to $\phi$*, and $\phi$ sits in the
# distribution we sample from. The trick: write the sample as a deterministic function of $\phi$ and of noise
# that does not depend on $\phi$,
#
# $$z = \mu + \sigma \odot \varepsilon, \qquad \sigma = \exp(\tfrac12 \log\sigma^2), \qquad \varepsilon \sim \mathcal{N}(0, I),$$
#
# so that $\nabla_\phi \mathbb{E}_{q_\phi}[f(z)] = \mathbb{E}_\varepsilon[\nabla_\phi f(\mu + \sigma \odot \varepsilon)]$:
# the gradient flows through the sample, by ordinary backpropagation. (The alternative, the
# *score-function* or REINFORCE estimator $\mathbb{E}_q[f(z)\, \nabla_\phi \log q_\phi(z)]$, needs no
# gradient of $f$; section 6 measures what that costs.)
#
# **Exercise 2.** Write `reparameterize(mu, logvar)`, returning a sample of $\mathcal{N}(\mu, \operatorname{diag} e^{\text{logvar}})$
# that carries gradients to `mu` and `logvar`. The check draws 20000 samples and tests their mean, their
# standard deviation and their gradients.

# %%
def reparameterize(mu, logvar):
    """mu, logvar: (B, d) -> z (B, d) = mu + exp(logvar / 2) * eps, eps ~ N(0, I)."""
    ### BEGIN SOLUTION
    std = torch.exp(0.5 * logvar)
    return mu + std * torch.randn_like(mu)
    ### END SOLUTION


# %%
check.reparameterize(reparameterize)

# %% [markdown]
# **Exercise 3.** Put the pieces together. Write `elbo_estimate(x, mu, logvar, eps, log_likelihood)`, the
# one-sample ELBO of each example for a *given* noise `eps` (so it can be checked): $z = \mu + \sigma \odot
# \varepsilon$, then $\log p(x \mid z) - \mathrm{KL}(q \,\|\, p)$. Here `log_likelihood(x, z)` is the decoder's
# $\log p(x \mid z)$, shape `(B,)`; `mu`, `logvar`, `eps` are `(B, d)`.

# %%
def elbo_estimate(x, mu, logvar, eps, log_likelihood):
    """One-sample ELBO per example: log p(x | z) - KL(q(z | x) || p(z)) with z = mu + sigma * eps -> (B,)."""
    ### BEGIN SOLUTION
    z = mu + torch.exp(0.5 * logvar) * eps
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
    return log_likelihood(x, z) - kl
    ### END SOLUTION


# %%
check.elbo_estimate(elbo_estimate)

# %% [markdown]
# The reference model computes exactly this. Its encoder and decoder are MLPs with two hidden layers of 256
# units (LeakyReLU, dropout 0.1 against overfitting 1000 images), and a 16-dimensional code:

# %%
gencourse.show(vae.VAE.elbo_terms)

# %% [markdown]
# ## 4. Training on digits
#
# We maximize the ELBO averaged over the training images with Adam, and keep the weights of the epoch with the
# best validation ELBO (early stopping on the validation split; test images are shown and scored in this lesson,
# but nothing is ever chosen by them).

# %%
vae_model, history = vae.train_digits(epochs=EPOCHS, seed=SEED, device=device)
history.plot(title="-ELBO (nats per image)")
plt.show()

# %%
with torch.no_grad():
    mu_test, logvar_test = vae_model.encode(x_test[:12])
    recon_mean = vae_model.decode_images(mu_test, mean=True)
    recon_sample = vae_model.decode_images(vae.reparameterize(mu_test, logvar_test))
viz.image_grid(torch.cat([x_test[:12], recon_mean, recon_sample]).cpu(), nrow=12,
               title="test digits / decoder mean at z = mu / a sample z ~ q(z|x), x ~ p(x|z)")
plt.show()

# %% [markdown]
# The middle row is the decoder's *mean* image at the most likely code: smooth. The bottom row is an actual
# sample of the model: each pixel drawn independently from its discretized logistic, hence the speckle.
# A VAE with a pixel-independent decoder does not *blur* its samples; it blurs its means and speckles its
# samples. Both are ways of expressing the same uncertainty.

# %% [markdown]
# ## 5. Which decoder? Measured
#
# Train two small VAEs with the same short recipe (40 epochs, the best validation epoch kept), one with the
# discretized logistic and one with a categorical decoder (17 logits per pixel), and compare their -ELBO on
# validation and test. The same recipe serves the $\beta$ sweep of section 9.

# %%
def train_small(decoder="logistic", beta=1.0):
    """A 16-dimensional VAE on the short recipe: SMALL_EPOCHS epochs, batch 128, lr 2e-3, best val epoch kept."""
    gencourse.seed_everything(SEED)
    model = vae.VAE(train.shape, latent_dim=16, decoder=decoder).to(device)
    hist = vae.train_vae(model, train, val, epochs=SMALL_EPOCHS, lr=2e-3, batch_size=128, patience=None,
                         beta=beta, seed=SEED, desc=f"{decoder}, beta = {beta:g}", verbose=False)
    return model.eval(), hist


small = {decoder: train_small(decoder) for decoder in ("logistic", "categorical")}
decoder_rows = {}
for name, (model, hist) in small.items():
    b_val, b_test = (vae.evaluate_bounds(model, x, k=1) for x in (x_val, x_test))
    decoder_rows[name] = (b_val["elbo_nats"], b_test["elbo_nats"])
    print(f"{name:12s} best epoch {hist.best_epoch:3d} of {hist.epochs}   -ELBO val {b_val['elbo_nats']:6.1f}  "
          f"test {b_test['elbo_nats']:6.1f} nats   ({sum(p.numel() for p in model.parameters()):,} parameters)")

# %%
# NBVAL_CHECK_OUTPUT
better = decoder_rows["logistic"][1] < decoder_rows["categorical"][1] - 2.0
print("PASS the discretized logistic beats the categorical decoder on test by > 2 nats" if better
      else "FAIL the discretized logistic does not clearly beat the categorical decoder")

# %% [markdown]
# The categorical decoder has more than twice the parameters, 16 free probabilities per pixel, and only 1000
# images to fit them: its best validation figure is several nats worse. Both are exact discrete likelihoods;
# the one that knows the levels are ordered generalizes better. (The main model of section 4 is the
# logistic one trained longer, with dropout.)
#
# ## 6. Why the reparameterization trick matters, measured
#
# Both estimators of $\nabla_\mu\, \mathbb{E}_{q}[\log p_\theta(x \mid z)]$ are unbiased. Compare their spread on
# the trained model: 64 test digits, 500 one-draw estimates each, for every latent dimension.

# %%
gencourse.show(vae.mu_gradient_estimates)

# %%
with torch.no_grad():
    mu_g, logvar_g = vae_model.encode(x_test[:64])
decoder_loglik = lambda z: vae_model.log_likelihood(x_test[:64], z)
n_draws = 100 if QUICK else 500
grad_rep = vae.mu_gradient_estimates(decoder_loglik, mu_g, logvar_g, n_draws)
grad_score = vae.mu_gradient_estimates(decoder_loglik, mu_g, logvar_g, n_draws, estimator="score")
var_rep, var_score = grad_rep.var(0).mean().item(), grad_score.var(0).mean().item()
print(f"mean variance of a one-draw gradient estimate: reparameterization {var_rep:.3g}, score function {var_score:.3g}"
      f" (ratio {var_score / var_rep:.2g})")
j = int(logvar_g[0].argmin())  # the most informative latent dimension of the first digit
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
for ax, (name, est) in zip(axes, (("reparameterization", grad_rep), ("score function", grad_score))):
    values = est[:, 0, j].cpu().numpy()
    ax.hist(values, bins=40, color="C0" if name.startswith("re") else "C1")
    ax.axvline(values.mean(), color="k", lw=1)
    ax.set_title(f"{name}: std {values.std():.3g}", fontsize=10)
    ax.set_xlabel(f"one-draw estimate of d/d mu_{j} E[log p(x|z)]")
plt.suptitle("the same gradient for one test digit, two estimators (mind the x scales)", fontsize=10, y=1.03)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print("PASS score-function gradients have > 100 x the variance of reparameterized ones"
      if var_score > 100 * var_rep else "FAIL the variance gap is smaller than 100 x")

# %% [markdown]
# The score-function estimator multiplies the *value* of $\log p(x \mid z)$, around $-80$ nats, by a zero-mean
# factor: huge swings that average out only over very many draws. The reparameterized one uses the gradient
# of the decoder, which says directly which way to move $z$. This is why VAEs train in seconds.
#
# ## 7. Sampling: from the prior
#
# To generate, the VAE draws $z \sim p(z) = \mathcal{N}(0, I)$ and then $x \sim p_\theta(x \mid z)$. The encoder
# plays no part: it is used in training and to infer codes of given images, while generation samples the
# prior. The course's headline samples are these **true samples**, scored next to the real row; the
# decoder's *mean* at a prior code (smoother, but not a sample of the model) is shown separately, labelled.

# %%
g = torch.Generator(device=device).manual_seed(SEED)
samples = vae_model.sample(N_SAMPLES, generator=g).cpu()
sample_means = vae_model.sample(N_SAMPLES, mean=True, generator=g).cpu()
fig, axes = plt.subplots(1, 3, figsize=(12, 2.6))
viz.image_grid(samples[:40], nrow=10, ax=axes[0], title="true samples: z ~ p(z), x ~ p(x|z)")
viz.image_grid(sample_means[:40], nrow=10, ax=axes[1], title="decoder means E[x|z], z ~ p(z) (a trick)")
viz.image_grid(test.images[:40], nrow=10, ax=axes[2], title="real test digits")
plt.show()


# %%
real = metrics.reference_quality()
q_samples = metrics.sample_quality(samples)
q_means = metrics.sample_quality(sample_means)
print(f"{N_SAMPLES} images each")
print(metrics.format_quality({"true samples": q_samples, "means (trick)": q_means}, real))
hq_recognized = gencourse.headline("VAE true samples: recognized", q_samples["recognized"], "{:.2f}")
hq_frechet = gencourse.headline("VAE true samples: frechet", q_samples["frechet"], "{:.0f}")

# %% [markdown]
# Read it against the real column. The true samples are new, not copies (memorization above 1: the
# per-pixel speckle puts them farther from the training digits than real digits are), and their predicted
# labels spread over the classes almost as evenly as real digits' (label entropy). But the independent
# per-pixel noise costs them everywhere else: the classifier recognizes far fewer of them than real digits,
# their Fréchet distance is many times the real one, and they reach only about half of the reference
# digits that real digits reach (recall, the coverage). They are also far worse than the samples of lesson
# 01's ten class-conditional Gaussians, which the classifier recognized most of the time: a full covariance
# keeps the correlations between pixels, while this decoder draws every pixel on its own given $z$. A
# decoder that models those correlations is the remedy (lesson 07's autoregressive models). The decoder
# means drop the speckle: they are recognized far more often and reach more of the reference digits, but
# they are smooth averages, not samples of the model. Neither is mode collapse; the VAE's failure modes are
# noise (samples) and blur (means).

# %% [markdown]
# ### The prior and the aggregate posterior
#
# The encoder maps the training set to a cloud of codes, the **aggregate posterior**
# $q_\phi(z) = \frac1N \sum_n q_\phi(z \mid x_n)$. The KL term pulls each $q_\phi(z \mid x_n)$ towards the prior, and
# so pulls $q_\phi(z)$ towards $\mathcal{N}(0, I)$, but not all the way: the decoder has learned the codes the
# encoder actually uses. Decode codes from both (decoder means, to compare the codes alone):

# %%
with torch.no_grad():
    mu_train, logvar_train = vae_model.encode(x_train)
idx = torch.randint(0, len(x_train), (N_SAMPLES,), generator=torch.Generator().manual_seed(SEED)).to(device)
z_aggregate = vae.reparameterize(mu_train[idx], logvar_train[idx])
z_prior = torch.randn(N_SAMPLES, vae_model.latent_dim, device=device)
from_prior = vae_model.decode_images(z_prior, mean=True).cpu()
from_aggregate = vae_model.decode_images(z_aggregate, mean=True).cpu()
fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
viz.image_grid(from_prior[:40], nrow=10, ax=axes[0], title="decoded z ~ p(z), the prior")
viz.image_grid(from_aggregate[:40], nrow=10, ax=axes[1], title="decoded z ~ q(z), the aggregate posterior")
plt.show()
q_prior, q_aggregate = metrics.sample_quality(from_prior), metrics.sample_quality(from_aggregate)
print(metrics.format_quality({"prior codes": q_prior, "aggregate codes": q_aggregate}, real))
print(f"aggregate posterior: mean of |mean| per dim {z_aggregate.mean(0).abs().mean().item():.2f}, "
      f"std per dim from {z_aggregate.std(0).min().item():.2f} to {z_aggregate.std(0).max().item():.2f}")

# %%
# NBVAL_CHECK_OUTPUT
print("PASS aggregate-posterior codes decode closer to real digits than prior codes (lower Frechet)"
      if q_aggregate["frechet"] < q_prior["frechet"] else "FAIL prior codes decode as well as aggregate codes")
print("PASS decoded prior codes are recognized at >= 0.5 x real (the holes of lesson 02 are mostly closed)"
      if q_prior["recognized"] >= 0.5 * real["recognized"] else "FAIL decoded prior codes are rarely recognized")
print("PASS decoder means are recognized more often than true samples (blur vs noise)"
      if q_means["recognized"] > q_samples["recognized"] else "FAIL means are not recognized more often")
ok = q_samples["recall"] < q_means["recall"] < real["recall"] and metrics.differs(q_samples, q_means, "recall")
print(f"{'PASS' if ok else 'FAIL'} true samples reach fewer reference digits than the means, the means fewer than "
      "real digits (recall, beyond the intervals)")
ok = q_samples["recognized"] < 0.7 * real["recognized"] and q_samples["frechet"] > 3 * real["frechet"]
print(f"{'PASS' if ok else 'FAIL'} true samples: recognized < 0.7 x real and Frechet > 3 x real (the per-pixel speckle)")

# %% [markdown]
# Each coordinate of the aggregate posterior looks standard normal (means near 0, standard deviations near
# 1), yet decoded prior codes are worse digits than decoded aggregate-posterior codes: the two distributions
# differ jointly, and some prior codes still fall where no training digit was encoded. Compared with lesson
# 02, where standard-normal codes decoded to few classes and poor digits, the prior now works as a sampler;
# closing the remaining gap is what richer priors and hierarchical VAEs are for.
#
# ### Interpolations
#
# Walk in a straight line between the codes $\mu$ of two test digits and decode along the way:

# %%
pairs = [(0, 1), (2, 3), (4, 5), (6, 7)]
steps = torch.linspace(0, 1, 10, device=device)[:, None]
with torch.no_grad():
    mu_pairs, _ = vae_model.encode(x_test[:8])
rows = [vae_model.decode_images((1 - steps) * mu_pairs[a] + steps * mu_pairs[b], mean=True) for a, b in pairs]
viz.image_grid(torch.cat(rows).cpu(), nrow=10, title="decoded means along straight lines between test digits")
plt.show()

# %% [markdown]
# ## 8. A latent explorer
#
# With a 2-dimensional code we can look at the whole decoded manifold. Train a small VAE with $d = 2$ (a few
# seconds), then decode a grid of codes placed at the quantiles of the prior,
# $z = (\Phi^{-1}(u_1), \Phi^{-1}(u_2))$, so that each cell holds the same prior mass.

# %%
gencourse.seed_everything(SEED)
explorer = vae.VAE(train.shape, latent_dim=2).to(device)
explorer_history = vae.train_vae(explorer, train, val, epochs=SMALL_EPOCHS, lr=2e-3, batch_size=128, patience=None,
                                 seed=SEED, desc="VAE, d = 2")
explorer.eval()
n_grid = 15
u = torch.linspace(0.03, 0.97, n_grid)
quantiles = D.Normal(0.0, 1.0).icdf(u)
grid_z = torch.stack(torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij")[::-1], -1).reshape(-1, 2)
with torch.no_grad():
    mu_explore, _ = explorer.encode(x_test)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
viz.image_grid(explorer.decode_images(grid_z.to(device), mean=True).cpu(), nrow=n_grid, ax=axes[0],
               title="decoded means on a grid of prior quantiles")
sc = axes[1].scatter(*mu_explore.cpu().T, c=test.labels, cmap="tab10", s=8, vmin=-0.5, vmax=9.5)
fig.colorbar(sc, ax=axes[1], ticks=range(10), label="label")
axes[1].set_xlim(-3, 3)
axes[1].set_ylim(-3, 3)
axes[1].set_title("encoder means of the test digits", fontsize=10)
plt.show()

# %% [markdown]
# Unlike the autoencoder's codes in lesson 02, these sit inside the prior's bulk ($\pm 2$), with no
# arbitrary scale, and the whole grid decodes to digit-like images that morph smoothly into each other.
# If you run the notebook yourself, move the sliders below to decode any code (the figure above shows the
# same manifold for readers of the static page):

# %%
try:
    import ipywidgets as widgets

    def show_code(z1=0.0, z2=0.0):
        z = torch.tensor([[z1, z2]], device=device)
        with torch.no_grad():
            mean = explorer.decode_images(z, mean=True).cpu()
            draws = explorer.decode_images(z.expand(3, 2)).cpu()
        viz.image_grid(torch.cat([mean, draws]), nrow=4, title="mean and three samples at z")
        plt.show()

    slider = dict(min=-3.0, max=3.0, step=0.1, value=0.0, continuous_update=False)
    widgets.interact(show_code, z1=widgets.FloatSlider(description="z1", **slider),
                     z2=widgets.FloatSlider(description="z2", **slider))
except ImportError:
    print("ipywidgets is not installed; the static grid above shows the same manifold.")

# %% [markdown]
# ## 9. Rate, distortion and posterior collapse
#
# Read the negative ELBO as two costs: the **rate** $R = \mathbb{E}_x \mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z))$,
# the nats the code carries about $x$, and the **distortion** $\mathcal{D} = -\mathbb{E}_x \mathbb{E}_{q_\phi}
# \log p_\theta(x \mid z)$, the nats the decoder still needs. Weighting the KL by $\beta$ (the $\beta$-VAE,
# Higgins et al. 2017) trades one for the other: $-\mathrm{ELBO}_\beta = \mathcal{D} + \beta R$. We train the
# same model for a few $\beta$ with the short recipe of section 5 and measure both on validation.

# %%
gencourse.show(vae.rate_distortion)

# %%
sweep = {}
for beta in BETAS:
    model = small["logistic"][0] if beta == 1.0 else train_small("logistic", beta)[0]  # beta = 1: section 5's
    sweep[beta] = vae.rate_distortion(model, x_val)
    informative = sum(kl > 0.1 for kl in sweep[beta]["kl_per_dim"])
    print(f"beta = {beta:4g}: rate {sweep[beta]['rate']:5.1f}  distortion {sweep[beta]['distortion']:6.1f}  "
          f"-ELBO {sweep[beta]['rate'] + sweep[beta]['distortion']:6.1f} nats   dimensions with KL > 0.1 nats: "
          f"{informative:2d} of 16   active units: {sweep[beta]['active_units']:2d}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot([sweep[b]["rate"] for b in BETAS], [sweep[b]["distortion"] for b in BETAS], "o-")
for b in BETAS:
    axes[0].annotate(f"β={b:g}", (sweep[b]["rate"], sweep[b]["distortion"]), textcoords="offset points", xytext=(5, 3), fontsize=8)
axes[0].set_xlabel("rate R (nats)")
axes[0].set_ylabel("distortion D (nats)")
axes[0].set_title("rate-distortion on validation", fontsize=10)
width = 0.8 / len(BETAS)
for i, b in enumerate(BETAS):
    kl_dims = sorted(sweep[b]["kl_per_dim"], reverse=True)
    axes[1].bar(np.arange(16) + i * width, kl_dims, width=width, label=f"β={b:g}")
axes[1].set_xlabel("latent dimension (sorted by its KL)")
axes[1].set_ylabel("KL per dimension (nats)")
axes[1].legend(fontsize=8)
axes[1].set_title("which dimensions carry information", fontsize=10)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
rates, distortions = [sweep[b]["rate"] for b in BETAS], [sweep[b]["distortion"] for b in BETAS]
print("PASS the rate falls and the distortion rises as beta grows"
      if all(a > b for a, b in zip(rates, rates[1:])) and all(a < b for a, b in zip(distortions, distortions[1:]))
      else "FAIL rate and distortion do not trade off monotonically")
print(f"PASS beta = {BETAS[-1]:g}: posterior collapse (rate < 1 nat)" if rates[-1] < 1.0
      else f"FAIL beta = {BETAS[-1]:g}: no collapse")

# %% [markdown]
# Small $\beta$ buys sharper reconstructions with more nats in the code; large $\beta$ squeezes the code. At
# $\beta = 16$ the rate is essentially zero: **posterior collapse**. Every $q_\phi(z \mid x)$ equals the prior, the
# code carries nothing, and the decoder models each pixel on its own, which is lesson 01's per-pixel model
# (its distortion here is close to that baseline). Even at $\beta = 1$ only a handful of the 16 dimensions
# carry more than 0.1 nats (the bars): the model spends only the nats that pay for themselves, and lets the
# other dimensions collapse to the prior. "Active units" (Burda et al.: the encoder mean varies with the
# input, $\operatorname{Var}_x \mathbb{E}_q[z_j] > 0.01$) is a looser test and counts some nearly silent ones. Collapse is the VAE's own failure;
# it is not "mode collapse", which belongs to GANs (lesson 04).

# %% [markdown]
# ## 10. The test likelihood, properly
#
# The ELBO is a lower bound, loose by $\mathrm{KL}(q_\phi(z \mid x) \,\|\, p_\theta(z \mid x))$. The
# **importance-weighted bound** (Burda et al., 2016) averages $k$ importance weights *inside* the log,
#
# $$\mathcal{L}_k(x) = \mathbb{E}\left[\log \frac1k \sum_{i=1}^k w_i\right], \qquad
#   w_i = \frac{p_\theta(x \mid z_i)\, p(z_i)}{q_\phi(z_i \mid x)}, \quad z_i \sim q_\phi(z \mid x),$$
#
# with $\mathcal{L}_1 = \mathrm{ELBO} \le \mathcal{L}_k \le \mathcal{L}_{k+1} \le \log p_\theta(x)$ and
# $\mathcal{L}_k \to \log p_\theta(x)$ as $k \to \infty$. The weights are around $e^{-90}$, so the average must be
# computed in log space: $\log \frac1k \sum_i w_i = \operatorname{logsumexp}_i(\log w_i) - \log k$.
#
# **Exercise 4.** Write `iwae_estimate(x, mu, logvar, eps, log_likelihood)` for given noise `eps` of shape
# `(k, B, d)`: $z_i = \mu + \sigma \odot \varepsilon_i$, $\log w_i = \log p(x \mid z_i) + \log \mathcal{N}(z_i; 0, I) -
# \log \mathcal{N}(z_i; \mu, \sigma^2)$ (each summed over $d$), then the logsumexp. Returns `(B,)`.

# %%
def iwae_estimate(x, mu, logvar, eps, log_likelihood):
    """IWAE estimate per example for given noise eps (k, B, d): logsumexp_i log w_i - log k -> (B,)."""
    ### BEGIN SOLUTION
    std = torch.exp(0.5 * logvar)
    z = mu + std * eps
    log_prior = D.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_q = D.Normal(mu, std).log_prob(z).sum(-1)
    log_w = log_likelihood(x, z) + log_prior - log_q
    return torch.logsumexp(log_w, dim=0) - math.log(len(eps))
    ### END SOLUTION


# %%
check.iwae_estimate(iwae_estimate)

# %% [markdown]
# The reference, `vae.iwae_bound`, draws the $k$ samples in chunks so that $k = 1000$ fits in memory:

# %%
gencourse.show(vae.iwae_bound)

# %%
t0 = time.perf_counter()
torch.manual_seed(SEED)
bounds = {split: vae.evaluate_bounds(vae_model, x, k=K_EVAL) for split, x in (("val", x_val), ("test", x_test))}
eval_seconds = time.perf_counter() - t0
ks = [k for k in (1, 10, 100) if k < K_EVAL] + [K_EVAL]
with torch.no_grad():
    by_k = [(-vae.iwae_bound(vae_model, x_test, k)).mean().item() for k in ks[:-1]] + [bounds["test"]["iwae_nats"]]
print(f"IWAE with k = {K_EVAL} on {len(x_val) + len(x_test)} images: {eval_seconds:.1f} s")
print(f"{'':28}{'validation':>22}{'test':>22}")
for name, key in (("-ELBO", "elbo"), (f"IWAE NLL bound, k = {K_EVAL}", "iwae")):
    cells = "".join(f"{bounds[s][key + '_nats']:10.2f} nats {bounds[s][key + '_bpd']:5.3f} b/d" for s in ("val", "test"))
    print(f"{name:28}{cells}")
nll_test = gencourse.headline(f"VAE test NLL, IWAE k={K_EVAL} (nats)", bounds["test"]["iwae_nats"], "{:.1f}")
elbo_test = gencourse.headline("VAE test -ELBO (nats)", bounds["test"]["elbo_nats"], "{:.1f}")

# %%
reference_figures = [
    ("uniform over 17 levels", 64 * math.log(17)),
    ("per-pixel categorical, add-0.1 (lesson 01)", 106.3),
    ("intro_dgm VAE, -ELBO (categorical decoder)", 96.6),
    ("intro_dgm VAE, IWAE k = 1000", 93.5),
    ("this VAE, -ELBO", bounds["test"]["elbo_nats"]),
    (f"this VAE, IWAE k = {K_EVAL}", bounds["test"]["iwae_nats"]),
    ("intro_dgm autoregressive (exact)", 86.4),
]
print(f"{'test split, 17 levels':46}{'nats':>8}{'bits/dim':>10}")
for name, nats in reference_figures:
    print(f"{name:46}{nats:8.1f}{metrics.bits_per_dim(nats, D_PIXELS):10.3f}")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(ks, by_k, "o-", label="IWAE bound $-\\mathcal{L}_k$")
ax.axhline(bounds["test"]["elbo_nats"], color="gray", ls=":", label="-ELBO")
ax.set_xscale("log")
ax.set_xlabel("k (importance samples)")
ax.set_ylabel("test NLL bound (nats)")
ax.legend(fontsize=8)
ax.set_title("the bound tightens with k", fontsize=10)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"PASS test IWAE NLL bound (k = {K_EVAL}) <= 90 nats" if bounds["test"]["iwae_nats"] <= 90.0
      else f"FAIL test IWAE NLL bound (k = {K_EVAL}) > 90 nats")
print("PASS test -ELBO <= 95 nats (intro_dgm's VAE: 96.6)" if bounds["test"]["elbo_nats"] <= 95.0
      else "FAIL test -ELBO > 95 nats")
print("PASS the bound tightens as k grows" if all(a > b for a, b in zip(by_k, by_k[1:]))
      else "FAIL the bound does not tighten monotonically with k")
print("PASS validation is harder than test (as for every model on this split)"
      if bounds["val"]["iwae_nats"] > bounds["test"]["iwae_nats"] else "FAIL validation is easier than test")

# %% [markdown]
# The IWAE bound with $k = 1000$ is a few nats tighter than the ELBO: that much of the ELBO's looseness was
# the encoder's, not the model's. On the same split this VAE beats `intro_dgm`'s VAE (−ELBO 96.6, IWAE 93.5) and
# the per-pixel baseline by a wide margin, and comes close to `intro_dgm`'s exact autoregressive model (86.4,
# 5 to 11 minutes of training), which predicts each pixel from the previous ones instead of drawing all
# pixels independently given $z$. The validation split is harder than test, as the course's reference
# figures say for every model. Remember what the number is: an *upper bound* on the NLL, so the true
# $-\log p_\theta(x)$ is lower still.
#
# Why not estimate $p(x)$ by sampling $z$ from the prior, $\log \frac1k \sum_i p_\theta(x \mid z_i)$? It is
# also a valid bound, but the prior rarely proposes the codes that explain a given digit. Measured with the
# same $k$:

# %%
with torch.no_grad():
    z_from_prior = torch.randn(K_EVAL, 64, vae_model.latent_dim, device=device)
    prior_estimate = (torch.logsumexp(vae_model.log_likelihood(x_test[:64], z_from_prior), 0) - math.log(K_EVAL)).mean()
    encoder_estimate = vae.iwae_bound(vae_model, x_test[:64], K_EVAL).mean()
print(f"first 64 test digits, k = {K_EVAL}: NLL bound sampling the prior {-prior_estimate.item():.2f} nats, "
      f"sampling the encoder {-encoder_estimate.item():.2f} nats")
print(f"lesson run time: {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Summary
#
# - A VAE is a latent-variable model $p(z)\,p_\theta(x \mid z)$ trained with an encoder $q_\phi(z \mid x)$ by
#   maximizing the ELBO $= \mathbb{E}_q \log p_\theta(x \mid z) - \mathrm{KL}(q \,\|\, p)$, which is $\log p(x)$
#   minus the KL from $q$ to the true posterior. The Gaussian KL is closed form; the reconstruction term is
#   estimated with reparameterized samples, whose gradients are many orders of magnitude less noisy than the
#   score function's (measured above).
# - The decoder gives an exact discrete likelihood on the 17 levels; the discretized logistic generalizes
#   better than a categorical on 1000 images (measured).
# - Generation samples the **prior**; decoded prior codes are now mostly digits, though the aggregate
#   posterior still differs from the prior (measured). True samples are noisy, means are blurred: a
#   pixel-independent decoder's two faces. Not mode collapse.
# - $\beta$ trades rate for distortion; at large $\beta$ the posterior collapses and the VAE becomes the
#   per-pixel model.
# - The test likelihood is reported as the IWAE bound with $k = 1000$, in nats and bits/dim, next to the
#   ELBO and the validation split; it beats the published VAE figure on this split.
#
# **Next:** lesson 04 drops the likelihood altogether and trains a generator against a discriminator: GANs.
#
# **Further reading:** Kingma & Welling (2014), *Auto-encoding variational Bayes*; Rezende, Mohamed & Wierstra
# (2014); Burda, Grosse & Salakhutdinov (2016), *Importance weighted autoencoders*; Higgins et al. (2017),
# *β-VAE*; Alemi et al. (2018), *Fixing a broken ELBO*; Kingma & Welling (2019), *An introduction to
# variational autoencoders*; J. Tomczak, *Deep Generative Modeling* (2022), chapter 4.
