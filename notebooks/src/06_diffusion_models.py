# %% [markdown]
# # 06 · Diffusion models
#
# **Learning objectives.** After this lesson you can
# - write the forward (noising) process in closed form, $q(x_t \mid x_0)$, and say what it does to an image
#   and what it does not do;
# - compare noise schedules by their signal-to-noise ratio;
# - derive the noise-prediction loss from the variational bound, and say what in it is maximum likelihood
#   and what is not;
# - train a diffusion model on 2D points and on digits, with a network that corrects a known denoiser
#   (preconditioning, measured by an ablation), and sample it with DDPM's ancestral sampler;
# - evaluate the variational bound in nats per image, see where its nats go, and tighten it with more steps
#   and in continuous time;
# - read the noise predictor as a scaled score, and draw the score field it has learned;
# - choose what the network predicts ($\epsilon$, $x_0$ or $v$), say how each weights the noise levels, and measure
#   where each fails;
# - compute the likelihood of the probability-flow ODE, and use the held-out likelihood and `memorization` to see
#   a model overfit as it trains longer;
# - sample in a few tens of steps with DDIM, and measure what fewer steps cost;
# - steer samples with classifier-free guidance, and measure what guidance trades away;
# - compare the sampling cost of diffusion with that of a one-pass generator.
#
# **Running time:** about 80 s on a 2-core laptop CPU (140 CPU seconds with two threads, measured by `make bench`); on one thread, the printout near the end gives the time of the run shown here (a machine's speed varies); nothing to download; the digits model is the course's recipe, loaded from its checkpoint (`RETRAIN = True` trains it here, about 45 s); on a GPU, `GENCOURSE_DEVICE=auto` trains there; raise `GENCOURSE_EPOCHS` with it, or set `GENCOURSE_DATASET=mnist` for sections 6-10 on 28×28 digits with a U-Net (a GPU run; not timed here).

# %% tags=["parameters"]
# Parameters: change them here, or set the environment variables before starting Jupyter.
import os

QUICK = os.environ.get("GENCOURSE_QUICK", "0") == "1"  # smallest settings: only checks that the lesson runs
SEED = int(os.environ.get("GENCOURSE_SEED", 0))
T = int(os.environ.get("GENCOURSE_T", 50 if QUICK else 200))  # diffusion steps of the digits model
DATASET = os.environ.get("GENCOURSE_DATASET", "digits")  # sections 6-10: "digits", or "mnist" / "fashion-mnist" (a U-Net; a GPU)
EPOCHS = int(os.environ.get("GENCOURSE_EPOCHS", 2 if QUICK else 300 if DATASET == "digits" else 20))  # of the image model
EPOCHS_2D = int(os.environ.get("GENCOURSE_EPOCHS_2D", 2 if QUICK else 30))  # epochs of the 2D model
RETRAIN = os.environ.get("GENCOURSE_RETRAIN", "0") == "1"  # train the digits model here instead of loading it
N_SAMPLES = int(os.environ.get("GENCOURSE_SAMPLES", 100 if QUICK else 1000))  # digits per measured sample set
N_SWEEP = int(os.environ.get("GENCOURSE_SWEEP_SAMPLES", 100 if QUICK else 1000))  # digits per guidance scale
N_2D = int(os.environ.get("GENCOURSE_SAMPLES_2D", 300 if QUICK else 2000))  # sampled 2D points
N_MC = int(os.environ.get("GENCOURSE_MC", 2000 if QUICK else 20_000))  # Monte Carlo runs of the forward chain
DEVICE = os.environ.get("GENCOURSE_DEVICE", "auto")  # "auto" trains on a GPU when there is one
SUBSET = int(os.environ.get("GENCOURSE_SUBSET", 512 if QUICK else 0)) or None  # 28x28 data: the first SUBSET training images
N_EVAL = int(os.environ.get("GENCOURSE_EVAL", 64 if QUICK else 500))  # 28x28 data: test images for the bounds (digits: all 447)

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import gencourse
from gencourse import basics, check, data, diffusion, metrics, parameterization, recipes, viz
from gencourse.diffusion import NoiseSchedule

gencourse.setup(seed=SEED)
device = gencourse.get_device(DEVICE)
lesson_start = time.perf_counter()
test = data.load("digits", "test")


def verdict(ok, text):
    """Print one checked claim: PASS or FAIL, then the claim with its tolerance."""
    print(("PASS " if ok else "FAIL ") + text)


def with_interval(q, key, digits=3):
    """A sample-quality figure with its 95% interval, e.g. ``0.904±.016``."""
    lo, hi = q["interval"][key]
    half = max(q[key] - lo, hi - q[key])
    return f"{q[key]:.{digits}f}±{half:.{digits}f}".replace("±0.", "±.")


def to_pixels(x):
    """Model space [-1, 1] -> pixels in [0, 1] for display (clamped: noisy images leave the range)."""
    return ((x + 1) / 2).clamp(0, 1)


# %% [markdown]
# ## 1. Destroying an image, one small step at a time
#
# A diffusion model learns to generate by learning to *undo* a process that destroys data. The destroying
# process, the **forward process**, is fixed and has no parameters: starting from a data point $x_0$ (a digit
# with pixels scaled to $[-1, 1]$), each step shrinks the image a little and adds a little Gaussian noise,
#
# $$q(x_t \mid x_{t-1}) = \mathcal N\big(\sqrt{1 - \beta_t}\, x_{t-1},\ \beta_t I\big), \qquad t = 1, \dots, T,$$
#
# with small variances $\beta_t$, the **noise schedule**. Write $\alpha_t = 1 - \beta_t$ and
# $\bar\alpha_t = \prod_{s \le t} \alpha_s$. Two steps compose into one: with independent
# $\epsilon_{t-1}, \epsilon_t \sim \mathcal N(0, I)$,
#
# $$x_t = \sqrt{\alpha_t}\, x_{t-1} + \sqrt{1-\alpha_t}\, \epsilon_t
#       = \sqrt{\alpha_t \alpha_{t-1}}\, x_{t-2} + \sqrt{\alpha_t (1 - \alpha_{t-1})}\, \epsilon_{t-1} + \sqrt{1 - \alpha_t}\, \epsilon_t ,$$
#
# and the two noise terms add up to one Gaussian of variance $\alpha_t(1-\alpha_{t-1}) + 1 - \alpha_t = 1 - \alpha_t\alpha_{t-1}$.
# By induction, **any** step is one draw away from the data:
#
# $$q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\, x_0,\ (1 - \bar\alpha_t) I\big), \qquad
#   x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon .$$
#
# When $\bar\alpha_T \approx 0$, $x_T$ is pure noise $\mathcal N(0, I)$, whatever the image was. In the code,
# index `t = 0 .. T-1` is the paper's step $t + 1$, and `schedule.alphas_cumprod[t]` is $\bar\alpha$ there.

# %%
schedule = NoiseSchedule.cosine(T)
print(schedule)

# %% [markdown]
# Here is one test digit pushed through the chain step by step (top) and drawn in one go from the closed form
# (bottom). The two rows are different random draws of the same distributions.

# %%
digit = 2 * test.images[12:13] - 1  # a test "2", (1, 1, 8, 8) in [-1, 1]
shown = [0, T // 20, T // 8, T // 4, T // 2, 3 * T // 4, T - 1]
g = torch.Generator().manual_seed(SEED)
chain, row_chain, row_closed = digit.clone(), [], []
for t in range(T):
    chain = schedule.alphas[t].sqrt() * chain + schedule.betas[t].sqrt() * torch.randn(chain.shape, generator=g)
    if t in shown:
        row_chain.append(chain.clone())
        row_closed.append(schedule.q_sample(digit, torch.tensor([t]), torch.randn(digit.shape, generator=g)))
fig, axes = plt.subplots(2, 1, figsize=(7, 2.6))
viz.image_grid(to_pixels(torch.cat(row_chain)), nrow=len(shown), ax=axes[0],
               title="step by step, t = " + ", ".join(str(t + 1) for t in shown))
viz.image_grid(to_pixels(torch.cat(row_closed)), nrow=len(shown), ax=axes[1], title="closed form q(x_t | x_0)")
plt.show()

# %% [markdown]
# The two are the same distribution: over many runs, the step-by-step chain has the closed form's mean
# $\sqrt{\bar\alpha_t}\,x_0$ and standard deviation $\sqrt{1 - \bar\alpha_t}$ at every pixel.

# %%
# NBVAL_CHECK_OUTPUT
n_mc, t_mc = N_MC, T // 4
g = torch.Generator().manual_seed(SEED)
chains = digit.expand(n_mc, 1, 8, 8).clone()
for t in range(t_mc + 1):
    chains = schedule.alphas[t].sqrt() * chains + schedule.betas[t].sqrt() * torch.randn(chains.shape, generator=g)
abar = schedule.alphas_cumprod[t_mc]
mean_err = (chains.mean(0) - abar.sqrt() * digit[0]).abs().max().item()
std_err = (chains.std(0) - (1 - abar).sqrt()).abs().max().item()
verdict(mean_err < 0.04, "chain mean = sqrt(abar) x0 at every pixel (max error < 0.04)")
verdict(std_err < 0.04, "chain std = sqrt(1 - abar) at every pixel (max error < 0.04)")

# %% [markdown]
# ### Does diffusion "spread information between neighbouring pixels"?
#
# It is often said that diffusion blurs an image, spreading each pixel into its neighbours as heat diffuses.
# The equation says otherwise: $x_t$ is the image *scaled* by $\sqrt{\bar\alpha_t}$ plus noise drawn
# independently at every pixel. Nothing moves between pixels. Two measurements make it concrete: the noise
# of neighbouring pixels is uncorrelated, and the average of many noisy copies, rescaled, is the original
# digit itself, sharp, not a blurred one. (A blur, for contrast, does mix neighbours.)

# %%
noise_part = chains - abar.sqrt() * digit  # what the forward process added
corr = torch.corrcoef(torch.stack([noise_part[..., :, :-1].flatten(), noise_part[..., :, 1:].flatten()]))[0, 1].item()
mean_image = chains.mean(0, keepdim=True) / abar.sqrt()
blur = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(digit, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
fig, axes = plt.subplots(1, 4, figsize=(8.5, 2.3))
for ax, img, title in zip(axes, [digit, chains[:1], mean_image, blur],
                          ["x_0", f"one x_t, t = {t_mc + 1}", "mean of x_t / sqrt(abar)", "3x3 blur (contrast)"]):
    viz.image_grid(to_pixels(img), nrow=1, ax=ax, title=title)
plt.show()
print(f"correlation of the added noise between horizontal neighbours: {corr:+.4f}")

# %%
# NBVAL_CHECK_OUTPUT
verdict(abs(corr) < 0.02, "the forward noise is independent across pixels (|corr| < 0.02)")
ok = (mean_image - digit).abs().max().item() < 0.06
verdict(ok, "E[x_t] / sqrt(abar) = x_0 pixel by pixel (max error < 0.06): the forward process does not blur")

# %% [markdown]
# Pixels do talk to each other in diffusion, but in the *learned reverse* process: to remove noise, the
# network looks at the whole image (we measure this in section 6).
#
# **Exercise 1.** Write `q_sample(schedule, x0, t, noise)`: $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$
# for a batch `x0: (B, ...)` with one index per example, `t: (B,)`, and `noise` shaped like `x0`.

# %%
def q_sample(schedule, x0, t, noise):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise; x0, noise: (B, ...), t: LongTensor (B,)."""
    ### BEGIN SOLUTION
    abar = schedule.alphas_cumprod[t].view(-1, *[1] * (x0.dim() - 1))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    ### END SOLUTION


# %%
check.diffusion_q_sample(q_sample)

# %% [markdown]
# The course's version, used from here on:

# %%
gencourse.show(NoiseSchedule.q_sample)

# %% [markdown]
# ## 2. Noise schedules
#
# The schedule decides how fast information is destroyed. Its natural measure is the **signal-to-noise ratio**
# $\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)$: the power of the scaled image against that of the noise.
#
# - **Linear** (Ho et al. 2020): $\beta_t$ from $10^{-4}$ to $0.02$ over $T = 1000$ steps. For other $T$ the
#   endpoints are scaled by $1000/T$ (Nichol & Dhariwal 2021), so the chain always ends in noise.
# - **Cosine** (Nichol & Dhariwal 2021): $\bar\alpha_t = f(t)/f(0)$ with
#   $f(t) = \cos^2\!\big(\tfrac{t/T + s}{1 + s}\cdot\tfrac{\pi}{2}\big)$, $s = 0.008$, and $\beta_t \le 0.999$.

# %%
linear = NoiseSchedule.linear(T)
schedules = {"linear": linear, "cosine": schedule}
fig, axes = plt.subplots(1, 2, figsize=(8.5, 2.8))
frac = (torch.arange(T) + 1) / T
for name, s in schedules.items():
    axes[0].plot(frac, s.alphas_cumprod, label=name)
    axes[1].plot(frac, torch.log10(s.snr()), label=name)
axes[0].set(xlabel="t / T", ylabel=r"$\bar\alpha_t$")
axes[1].set(xlabel="t / T", ylabel=r"$\log_{10}$ SNR")
axes[1].axhline(-2, color="gray", ls=":", lw=1)
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %%
fig, axes = plt.subplots(2, 1, figsize=(7, 2.6))
ts = [round(f * (T - 1)) for f in (0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9)]
e = torch.randn(len(ts), 1, 8, 8, generator=torch.Generator().manual_seed(SEED))
for ax, (name, s) in zip(axes, schedules.items()):
    xs = s.q_sample(digit.expand(len(ts), 1, 8, 8), torch.tensor(ts), e)
    viz.image_grid(to_pixels(xs), nrow=len(ts), ax=ax, title=f"{name}: t/T = 0.05, 0.15, 0.3, ..., 0.9 (same noise)")
plt.show()

# %% [markdown]
# The linear schedule destroys an 8×8 digit early: for much of the chain the image is already gone
# ($\mathrm{SNR} < 10^{-2}$, below the dotted line): steps spent there see almost no signal.
# The cosine schedule spends its steps more evenly. We use the cosine schedule from here on.

# %%
# NBVAL_CHECK_OUTPUT
for name, s in schedules.items():
    wasted = (s.snr() < 0.01).float().mean().item()
    ok = s.alphas_cumprod[-1].item() < 1e-3
    print(f"{name:>6}: abar at the last index {'< 1e-3' if ok else '>= 1e-3 (FAIL)'}; "
          f"steps with SNR < 0.01: {wasted:.0%}")

# %% [markdown]
# ## 3. The objective: from the variational bound to noise prediction
#
# The generative model runs the chain backwards: $x_T \sim \mathcal N(0, I)$, then
# $p_\theta(x_{t-1} \mid x_t) = \mathcal N\big(\mu_\theta(x_t, t), \sigma_t^2 I\big)$ down to $x_0$.
# Like the VAE of lesson 03 it is a latent-variable model (the latents are $x_1, \dots, x_T$), and the same
# argument gives a variational bound on the likelihood:
#
# $$-\log p_\theta(x_0) \le \mathbb E_q\Big[\underbrace{D_\mathrm{KL}\big(q(x_T\mid x_0)\,\|\,p(x_T)\big)}_{L_T}
#   + \sum_{t > 1} \underbrace{D_\mathrm{KL}\big(q(x_{t-1}\mid x_t, x_0)\,\|\,p_\theta(x_{t-1}\mid x_t)\big)}_{L_{t-1}}
#   - \log p_\theta(x_0 \mid x_1)\Big].$$
#
# Each $L_{t-1}$ compares the model's step with the **posterior** of the forward process, which Bayes' rule for
# Gaussians gives in closed form:
#
# $$q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I),\quad
#   \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0 + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t,\quad
#   \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\,\beta_t .$$

# %%
gencourse.show(NoiseSchedule.posterior_mean_variance)

# %% [markdown]
# A check against Bayes' rule done independently: the joint of $(x_{t-1}, x_t)$ given $x_0$ is Gaussian
# (mean $\sqrt{\bar\alpha_{t-1}}x_0$ and $\sqrt{\bar\alpha_t}x_0$, variances $1 - \bar\alpha_{t-1}$ and
# $1 - \bar\alpha_t$, covariance $\sqrt{\alpha_t}(1 - \bar\alpha_{t-1})$); condition it on $x_t$.

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(SEED)
x0_, xt_ = torch.randn(T, 3, generator=g), torch.randn(T, 3, generator=g)
mean_, var_ = schedule.posterior_mean_variance(x0_, xt_, torch.arange(T))
a = schedule.alphas.double()
ab = schedule.alphas_cumprod.double()
ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
m1, v1 = ab_prev.sqrt()[:, None] * x0_, (1 - ab_prev)[:, None]        # x_{t-1} | x0
m2, v2 = ab.sqrt()[:, None] * x0_, (1 - ab)[:, None]                  # x_t | x0
c12 = a.sqrt()[:, None] * v1                                          # their covariance
bayes_mean, bayes_var = m1 + c12 / v2 * (xt_ - m2), v1 - c12**2 / v2
err = max((mean_ - bayes_mean).abs().max().item(), (var_ - bayes_var).abs().max().item())
verdict(err < 1e-3, "posterior mean and variance = Bayes' rule at every step (max error < 1e-3)")

# %% [markdown]
# Both Gaussians in $L_{t-1}$ have fixed variances, so the KL is a squared distance between means,
# $\frac{1}{2\sigma_t^2}\|\tilde\mu_t - \mu_\theta\|^2$. Writing $x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$
# in $\tilde\mu_t$ gives $\tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon\big)$, so
# Ho et al. parameterize the mean the same way with a network $\epsilon_\theta(x_t, t)$ that **predicts the noise**:
#
# $$\mu_\theta(x_t, t) = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big)
#   \quad\Longrightarrow\quad
#   L_{t-1} = \lambda_t\, \mathbb E\,\|\epsilon - \epsilon_\theta(x_t, t)\|^2,\quad
#   \lambda_t = \frac{\beta_t^2}{2\sigma_t^2\,\alpha_t\,(1 - \bar\alpha_t)} .$$
#
# Then they drop the weights: $L_\text{simple} = \mathbb E_{t, x_0, \epsilon}\,\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon,\ t)\|^2$,
# with $t$ uniform. Training is a **regression of the noise**.
#
# What is and is not maximum likelihood here? A common claim says "each diffusion step is trained by maximum
# likelihood". Half of it is right: up to a constant, each $L_{t-1}$ is the expected negative log-likelihood of the
# Gaussian step $p_\theta(x_{t-1} \mid x_t)$ on pairs $(x_{t-1}, x_t)$ drawn from the forward process, so each step
# is fitted by maximum likelihood, which for a Gaussian of fixed variance is a regression (Nakkiran et al. 2024
# describe DDPM exactly so: regress $\mathbb E[x_{t-1} \mid x_t]$ at every step). What is not maximum likelihood is
# the model of the images, $p_\theta(x_0)$: the sum of the terms is only a bound on its negative log-likelihood,
# and $L_\text{simple}$ is not even the bound but the bound with its terms reweighted. With $\sigma_t^2 = \tilde\beta_t$
# (our choice, section 4), the weight has a readable form in the signal-to-noise ratio, $\lambda_t = \tfrac12\big(\mathrm{SNR}(t-1)/\mathrm{SNR}(t) - 1\big)$
# (Kingma et al. 2021): the bound weighs a step by how much signal it restores, relative to what is there.
# These are the weights that $L_\text{simple}$ replaces by 1:

# %%
snr = schedule.snr().double()
lam = 0.5 * (snr[:-1] / snr[1:] - 1)  # steps t = 2..T (indices 1..T-1)
lam_ho = (schedule.betas**2 / (2 * schedule.posterior_variance() * schedule.alphas * (1 - schedule.alphas_cumprod)))[1:]
fig, ax = plt.subplots(figsize=(4.5, 2.6))
ax.semilogy(frac[1:], lam)
ax.set(xlabel="t / T", ylabel=r"weight $\lambda_t$ in the bound")
plt.show()
print(f"weights: {lam[0]:.2f} at the smallest noise (t = 2), {lam.min():.3f} at their lowest (mid-chain), "
      f"{lam[-2]:.2f} just before the last step, {lam[-1]:.0f} at the last step; L_simple gives every step weight 1")

# %%
# NBVAL_CHECK_OUTPUT
verdict(torch.allclose(lam.float(), lam_ho.float(), rtol=1e-3),
        "the SNR form of the weights equals Ho et al.'s beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) at every step")

# %% [markdown]
# The weights rise towards both ends of the chain, from about 0.02 in the middle to about 0.7 at the smallest noise
# and 1.5 just before the last step: at both ends a step changes the SNR by a large factor. The spike at the very
# last step comes from the cap $\beta_t \le 0.999$, which takes the SNR from small to nearly zero in one step (a
# large ratio, on a term whose error is tiny: there $x_t$ is the noise itself). Section 7 evaluates the bound and
# shows what the small-noise end costs a model trained with $L_\text{simple}$.
#
# **Exercise 2.** Write the training loss `noise_prediction_loss(eps_model, schedule, x0, t, noise)`:
# noise the data with `q_sample`, ask `eps_model(x_t, t)` for the noise, and return the mean squared error
# over the batch and every dimension (one number).

# %%
def noise_prediction_loss(eps_model, schedule, x0, t, noise):
    """mean over (B, D) of (noise - eps_model(x_t, t))^2 with x_t from q(x_t | x0)."""
    ### BEGIN SOLUTION
    xt = q_sample(schedule, x0, t, noise)
    return ((noise - eps_model(xt, t)) ** 2).mean()
    ### END SOLUTION


# %%
check.diffusion_training_loss(noise_prediction_loss)

# %% [markdown]
# ## 4. A diffusion model of 2D points
#
# **The network.** $\epsilon_\theta(x_t, t)$ is a small MLP. It gets the step as a sinusoidal **time embedding**
# (as in transformers) added to every layer, so one network serves all $T$ noise levels.
#
# **Preconditioning.** The course's networks do not predict the noise from scratch: they learn a *correction* to a
# denoiser we can write down, scaled by the error that denoiser leaves,
# $\epsilon_\theta(x_t, t) = \epsilon_\text{base}(x_t, t) + s_\text{base}(x_t, t)\, F_\theta(x_t, t)$. This is the idea
# of EDM's preconditioning (Karras et al. 2022, whose $c_\text{skip}$ and $c_\text{out}$ do the same for the
# data-prediction form). Here the known denoiser is exact for Gaussian data $\mathcal N(\mu, \Sigma)$:
# $\mathbb E[\epsilon\mid x_t] = \sqrt{1-\bar\alpha_t}\,C_t^{-1}(x_t - \sqrt{\bar\alpha_t}\mu)$ with
# $C_t = \bar\alpha_t\Sigma + (1-\bar\alpha_t)I$, with $\mu, \Sigma$ fitted to the training data, and $s_\text{base}^2$ is
# the variance it leaves, the diagonal of $I - (1-\bar\alpha_t)C_t^{-1}$. Two things follow. The network's target,
# $(\epsilon - \epsilon_\text{base})/s_\text{base}$, has unit variance for Gaussian data, at every noise level. And at high
# noise, where $\epsilon_\text{base}$ is already right (there $x_t$ *is* the noise), $s_\text{base} \to 0$ multiplies the
# network's output by nearly zero, so its effort goes where the data's shape matters. The code calls
# $\epsilon_\text{base}$ the skip (`skip="gaussian"`); `skip="none"` removes it, and we measure the difference below.

# %%
gencourse.show(diffusion.Diffusion.eps_at)

# %% [markdown]
# We train on the swiss roll with $T = 100$ steps, minimizing $L_\text{simple}$ with Adam whose learning rate
# warms up and then decays to zero, and we keep the final weights. The validation loss is computed on points
# drawn with another seed, with its noise drawn once, so that its curve is smooth.

# %%
model2d, history2d = diffusion.train_toy2d("swissroll", epochs=EPOCHS_2D, seed=SEED, device=device)
history2d.plot(title="swiss roll: noise-prediction loss")
plt.show()

# %% [markdown]
# **Sampling (DDPM's ancestral sampler).** Start from noise and apply the learned reverse step $T$ times:
# $x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z$, $z \sim \mathcal N(0, I)$, with $\sigma_t^2 = \tilde\beta_t$ and no
# noise at the last step.
#
# **Exercise 3 (derive it).** Write one reverse step `ddpm_reverse_step(schedule, eps, xt, t, noise)` for an int
# index `t`. Its mean is the posterior mean $\tilde\mu_t(x_t, x_0)$ of section 3 with $x_0$ replaced by its estimate
# $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$: substitute, and simplify until only $x_t$
# and $\epsilon$ are left (the coefficients of $x_t$ combine into $1/\sqrt{\alpha_t}$; section 3 stated the result,
# derive it). Then add $\sqrt{\tilde\beta_t}\cdot$`noise` when `t > 0`. At code index 0 (paper step 1) the step before
# is the data itself, so its variance is 0 and the step returns the mean; for `t > 0`, $\bar\alpha_{t-1}$ is
# `alphas_cumprod[t-1]`. (Writing the mean directly from $\tilde\mu_t$ and $\hat x_0$, unsimplified, passes too.)

# %%
def ddpm_reverse_step(schedule, eps, xt, t, noise):
    """x_{t-1} from x_t (B, D) and the predicted noise eps (B, D); t is an int index."""
    ### BEGIN SOLUTION
    beta, alpha, abar = schedule.betas[t], schedule.alphas[t], schedule.alphas_cumprod[t]
    mean = (xt - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()
    if t == 0:
        return mean
    abar_prev = schedule.alphas_cumprod[t - 1]
    return mean + (beta * (1 - abar_prev) / (1 - abar)).sqrt() * noise
    ### END SOLUTION


# %%
check.ddpm_reverse_step(ddpm_reverse_step)

# %% [markdown]
# The course's sampler (`diffusion.sample_ancestral`, which calls `diffusion.ddpm_step`) keeps snapshots of the
# cloud on its way from noise to data:

# %%
T2 = model2d.schedule.T
keep = [T2, 3 * T2 // 4, T2 // 2, T2 // 4, T2 // 10, 0]
g = torch.Generator().manual_seed(SEED)
with torch.no_grad():
    x_T = torch.randn(N_2D, 2, generator=g).to(device)
    points, snapshots = diffusion.sample_ancestral(lambda x, t: model2d.eps(x, t), model2d.schedule, x_T,
                                                   generator=g, keep=keep)
fig, axes = plt.subplots(1, len(keep), figsize=(2.0 * len(keep), 2.2))
for ax, t in zip(axes, keep):
    viz.scatter2d(snapshots[t].cpu(), ax=ax, s=1, title=f"t = {t}" if t else "t = 0 (samples)")
plt.show()

# %% [markdown]
# How close are the samples to the roll, and do they cover all of it? For each sample, the distance to the
# nearest of 5000 fresh data points (on the roll: small); for each of 2000 held-out points, the distance to the
# nearest sample (covered: small). Each figure next to the same figure for real held-out points.

# %%
fresh, held = data.toy2d("swissroll", 5000, seed=SEED + 10), data.toy2d("swissroll", 2000, seed=SEED + 11)
points = points.cpu()
on_roll = torch.cdist(points, fresh).min(1).values.median().item()
on_roll_real = torch.cdist(held, fresh).min(1).values.median().item()
covered = torch.cdist(held, points).min(1).values.median().item()
covered_real = torch.cdist(held, data.toy2d("swissroll", 2000, seed=SEED + 12)).min(1).values.median().item()
print(f"median distance sample -> data:      {on_roll:.3f}   (real points: {on_roll_real:.3f})")
print(f"median distance held-out -> samples: {covered:.3f}   (real points: {covered_real:.3f})")

# %%
# NBVAL_CHECK_OUTPUT
verdict(on_roll <= 1.5 * on_roll_real, "samples lie on the roll (distance to data <= 1.5 x real points')")
verdict(covered <= 1.5 * covered_real, "samples cover the roll (distance from held-out points <= 1.5 x real points')")

# %% [markdown]
# **The ablation.** The same network, budget and seed without the Gaussian part (`skip="none"`): the bare MLP
# predicts the noise by itself.

# %%
bare2d, _ = diffusion.train_toy2d("swissroll", epochs=EPOCHS_2D, seed=SEED, skip="none", device=device)
with torch.no_grad():
    bare_points, _ = diffusion.sample_ancestral(lambda x, t: bare2d.eps(x, t), bare2d.schedule,
                                                torch.randn(N_2D, 2, generator=torch.Generator().manual_seed(SEED)).to(device))
bare_points = bare_points.cpu()
bare_on_roll = torch.cdist(bare_points, fresh).min(1).values.median().item()
bare_covered = torch.cdist(held, bare_points).min(1).values.median().item()
print(f"{'':<28}{'sample -> data':>16}{'held-out -> samples':>22}")
for name, a, b in (("with the Gaussian skip", on_roll, covered), ("bare network (no skip)", bare_on_roll, bare_covered),
                   ("real points", on_roll_real, covered_real)):
    print(f"{name:<28}{a:>16.3f}{b:>22.3f}")
fig, axes = plt.subplots(1, 2, figsize=(6, 2.8))
viz.scatter2d(points, ax=axes[0], s=1, title="with the Gaussian skip")
viz.scatter2d(bare_points, ax=axes[1], s=1, title="bare network")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
verdict(bare_on_roll > 1.25 * on_roll, "without the skip, at the same budget, samples lie farther from the roll "
        "(distance to data > 1.25 x with the skip)")

# %% [markdown]
# At this budget (30 epochs, about two seconds) the bare network leaves its samples about one and a half times
# farther from the roll (1.4 to 1.6 times on seeds 0-2): it has to learn what the Gaussian part gives for free.
# Whether the gap closes with more training we did not measure.

# %% [markdown]
# **Exercise 4 (build and train).** Build and train your own noise predictor for 2D points, without the course's
# preconditioning: `train_eps_model(points, schedule)` takes the data `points: (N, 2)` and a schedule, and returns a
# function `eps_model(xt, t)` with `xt: (B, 2)` and `t` a LongTensor `(B,)` of indices, giving the noise estimate
# `(B, 2)`. Use an MLP whose input is $x_t$ together with the time $t/T$ (3 numbers), two hidden layers of 128 units
# with SiLU, and 2 outputs; train it with your `noise_prediction_loss` and Adam (learning rate $3\cdot 10^{-3}$) for
# 1500 steps on random batches of 256 points, each point with a step index uniform in $0..T-1$ and fresh noise. It
# takes a few seconds. The check trains it on 2000 moons points with a cosine schedule of $T = 50$ steps, samples
# 2000 points with the course's ancestral sampler, and compares them with the data by this section's two distances:
# it passes when both medians are within 1.75 times those of real held-out points.

# %%
def train_eps_model(points, schedule):
    """A noise predictor eps(x_t, t) for 2D points: an MLP on (x_t, t / T), trained with L_simple."""
    ### BEGIN SOLUTION
    net = nn.Sequential(nn.Linear(3, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)

    def eps_model(xt, t):
        return net(torch.cat([xt, t.float()[:, None] / schedule.T], dim=1))

    for _ in range(1500):
        x0 = points[torch.randint(len(points), (256,))]
        t = torch.randint(0, schedule.T, (len(x0),))
        loss = noise_prediction_loss(eps_model, schedule, x0, t, torch.randn_like(x0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return eps_model
    ### END SOLUTION


# %%
check.train_eps_model(train_eps_model)

# %% [markdown]
# The course's model trains the same regression through `Diffusion.loss`, with the time embedding and the
# preconditioning of this section (`diffusion.train_toy2d`, used above):

# %%
gencourse.show(diffusion.Diffusion.loss)

# %% [markdown]
# ## 5. The score view
#
# The noise predictor is a **score** in disguise. By Tweedie's formula, the score of the noised data
# distribution $q_t$ is
#
# $$\nabla_{x_t}\log q_t(x_t) = -\frac{\mathbb E[\epsilon \mid x_t]}{\sqrt{1 - \bar\alpha_t}}
#   \quad\Longrightarrow\quad s_\theta(x_t, t) = -\frac{\epsilon_\theta(x_t, t)}{\sqrt{1-\bar\alpha_t}},$$
#
# so training $\epsilon_\theta$ is denoising score matching (Vincent 2011), and sampling follows the score
# uphill towards the data while noise keeps it exploring (Song et al. 2021 make this exact with a stochastic
# differential equation). The arrows below are the learned score at three noise levels, over samples of $q_t$.

# %%
gencourse.show(diffusion.Diffusion.score)

# %%
train2d = data.toy2d("swissroll", 4000, seed=SEED)
grid_axis = torch.linspace(-4, 4, 17)
gx, gy = torch.meshgrid(grid_axis, grid_axis, indexing="xy")
grid = torch.stack([gx.flatten(), gy.flatten()], 1)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
for ax, t in zip(axes, [T2 // 10, T2 // 3, 2 * T2 // 3]):
    xt = model2d.schedule.q_sample(train2d[:1500], torch.full((1500,), t), torch.randn(1500, 2))
    with torch.no_grad():
        sc = model2d.score(grid.to(device), torch.full((len(grid),), t, device=device)).cpu()
    sc = sc / sc.norm(dim=1, keepdim=True).clamp(min=1e-6) * sc.norm(dim=1, keepdim=True).clamp(max=3) / 3
    viz.scatter2d(xt, ax=ax, s=1, alpha=0.25, title=f"t = {t}, abar = {model2d.schedule.alphas_cumprod[t]:.2f}")
    ax.quiver(grid[:, 0], grid[:, 1], sc[:, 0], sc[:, 1], color="C3", scale=12, width=0.005)
plt.show()

# %% [markdown]
# Is it the right score? For the noised *training set* the exact score is computable: $q_t$ is then a mixture
# of Gaussians $\mathcal N(\sqrt{\bar\alpha_t}x_i, (1-\bar\alpha_t)I)$, one per training point. We compare directions
# at points drawn from $q_t$, halfway through the chain. (At low noise the exact score of the training set points
# at individual training points; a model that generalizes must not follow it there.)

# %%
t_half = T2 // 2
abar_h = model2d.schedule.alphas_cumprod[t_half]
xt = model2d.schedule.q_sample(train2d[:2000], torch.full((2000,), t_half), torch.randn(2000, 2)).requires_grad_(True)
log_q = torch.logsumexp(-((xt[:, None] - abar_h.sqrt() * train2d[None]) ** 2).sum(-1) / (2 * (1 - abar_h)), 1).sum()
(exact_score,) = torch.autograd.grad(log_q, xt)
with torch.no_grad():
    learned_score = model2d.score(xt.detach().to(device), torch.full((2000,), t_half, device=device)).cpu()
cosine = torch.nn.functional.cosine_similarity(learned_score, exact_score, dim=1).mean().item()
print(f"mean cosine between learned and exact score at t = {t_half}: {cosine:.3f}")

# %%
# NBVAL_CHECK_OUTPUT
verdict(cosine >= 0.9, "the learned score points where the exact score points (mean cosine >= 0.9)")

# %% [markdown]
# ### What the network predicts: $\epsilon$, $x_0$ or $v$
#
# The network need not predict the noise. Write $x_t = a_t x_0 + s_t\epsilon$ with $a_t = \sqrt{\bar\alpha_t}$ and
# $s_t = \sqrt{1-\bar\alpha_t}$ (so $a_t^2 + s_t^2 = 1$; `docs/notation.md` uses the same letters): given $x_t$, a guess
# of one of $x_0$ and $\epsilon$ fixes the other. So a network can be asked for the clean data $\hat x_0$
# (**$x_0$-prediction**), for the noise $\hat\epsilon = (x_t - a_t\hat x_0)/s_t$, for the score $-\hat\epsilon/s_t$ of this
# section, or for Salimans & Ho's (2022) **velocity** $v = a_t\epsilon - s_t x_0$. Trained to the conditional mean, all
# four give the same $\mathbb E[x_0 \mid x_t]$. What differs is the loss. An unweighted squared error on each target,
# written as an error on $x_0$ at the same $x_t$, weighs the noise levels differently (the second identity uses
# $a_t^2 + s_t^2 = 1$):
#
# $$\lVert\epsilon - \hat\epsilon\rVert^2 = \mathrm{SNR}_t\,\lVert x_0 - \hat x_0\rVert^2,\qquad
#   \lVert v - \hat v\rVert^2 = (\mathrm{SNR}_t + 1)\,\lVert x_0 - \hat x_0\rVert^2,\qquad \mathrm{SNR}_t = a_t^2/s_t^2 .$$
#
# So $L_\text{simple}$ leans on the small noise, an $x_0$ loss on the large, and $v$ behaves like $\epsilon$ at small noise
# and like $x_0$ at large noise. `gencourse.parameterization` holds the conversions, all through the pair
# $(x_0, \epsilon)$, and these weights (`loss_weight`); [`docs/notation.md`](../docs/notation.md) lists them beside
# lesson 08's velocity.

# %%
gencourse.show(parameterization.to_x0_eps)

# %% [markdown]
# We train the bare network of section 4's ablation twice more on the swiss roll, with the same budget and seed,
# once on each new target, with the unweighted error on that target (`prediction="x0"` and `"v"`). Every output is
# converted to a noise estimate for the same ancestral sampler. Two measures: section 4's distances, and the error
# of each model's $\hat x_0$ on held-out points at every noise level, with the same noise for the three models.

# %%
by_target = {"eps": bare2d}
for kind in ("x0", "v"):
    by_target[kind], _ = diffusion.train_toy2d("swissroll", epochs=EPOCHS_2D, seed=SEED, skip="none", prediction=kind,
                                               device=device, verbose=False)
distances, x0_error, radii = {}, {}, {"data": torch.quantile(held.norm(dim=1), torch.tensor([0.05, 0.95])).tolist()}
for kind, m in by_target.items():
    with torch.no_grad():
        x_T = torch.randn(N_2D, 2, generator=torch.Generator().manual_seed(SEED)).to(device)
        pts = diffusion.sample_ancestral(lambda x, t: m.eps(x, t), m.schedule, x_T)[0].cpu()
        g = torch.Generator().manual_seed(SEED)
        errors = []
        for t in range(T2):
            tt = torch.full((len(held),), t)
            xt = m.schedule.q_sample(held, tt, torch.randn(held.shape, generator=g))
            x0_hat = m.schedule.predict_x0(xt, tt, m.eps(xt.to(device), tt.to(device)).cpu())
            errors.append((x0_hat - held).pow(2).sum(1).mean().item())
    distances[kind] = (torch.cdist(pts, fresh).min(1).values.median().item(),
                       torch.cdist(held, pts).min(1).values.median().item())
    x0_error[kind] = errors
    radii[kind] = torch.quantile(pts.norm(dim=1), torch.tensor([0.05, 0.95])).tolist()
print(f"{'network predicts':<18}{'sample -> data':>16}{'held-out -> samples':>22}{'x0 error, t = 1':>18}{f'x0 error, t = {T2}':>20}")
for kind, (a, b) in distances.items():
    print(f"{kind:<18}{a:>16.3f}{b:>22.3f}{x0_error[kind][0]:>18.4f}{x0_error[kind][-1]:>20.1f}")
print(f"{'real points':<18}{on_roll_real:>16.3f}{covered_real:>22.3f}")
print("distance from the centre, 5th to 95th percentile: " + "; ".join(f"{k} {lo:.2f}-{hi:.2f}" for k, (lo, hi) in radii.items()))
fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), gridspec_kw={"width_ratios": [1.6, 1]})
for kind in by_target:
    axes[0].semilogy(np.arange(1, T2 + 1), x0_error[kind], label=f"{kind}-prediction")
axes[0].set(xlabel="step t", ylabel=r"$E\,\|\hat x_0 - x_0\|^2$", title="error of the clean-data estimate")
axes[0].legend(fontsize=8)
viz.scatter2d(pts, ax=axes[1], s=1, title="samples of the v-prediction network")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
verdict(distances["x0"][1] > 1.5 * distances["eps"][1], "x0-prediction covers the roll worse: held-out points lie "
        "more than 1.5 x farther from its samples than from eps-prediction's")
verdict(all(abs(distances["v"][i] - distances["eps"][i]) < 0.15 * distances["eps"][i] for i in (0, 1)),
        "v-prediction samples as well as eps-prediction (both distances within 15%)")
verdict(x0_error["x0"][0] > 5 * x0_error["eps"][0], "at the smallest noise, x0-prediction's clean-data error is "
        "more than 5 x eps-prediction's")
verdict(x0_error["eps"][-1] > 100 * x0_error["v"][-1], "at the largest noise, the x0 that eps-prediction implies "
        "is more than 100 x worse than v-prediction's")

# %% [markdown]
# Each target fails where its loss looks away. At the smallest noise an $x_0$ error counts with weight 1, against
# an SNR of about 1600 for the noise error, so the $x_0$ network leaves its estimate there many times worse (the
# table's first error column). Its samples also miss the two ends of the roll (their distances from the centre span
# a narrower range than the data's), and held-out points there have no sample nearby; which noise levels cause that
# we did not measure. At the largest noise the noise network cannot tell us $x_0$ at all:
# $\hat x_0 = (x_t - s_t\hat\epsilon)/a_t$ divides a small error by $a_t \approx 0.0005$, and misses $x_0$ by far: its squared
# error is over a hundred times the $x_0$ and $v$ networks' (the table's last column). The $x_0$ and $v$ networks reach the floor there: with no signal
# left, the best guess is the mean of the data, and the error is the data's own spread. The noise network's samples
# barely suffer, because the error lands in $x_{T-1}$, which is still almost pure noise, and the later steps hardly
# depend on where in that noise they start. But this is why DDPM's sampler clips $\hat x_0$ to the data range
# (section 6 measures that on the digits), and why $v$, which takes the good end of each, is the usual target for
# few-step samplers and distillation (Salimans & Ho 2022). The digits model keeps $\epsilon$: its skip corrects a
# noise estimate.

# %% [markdown]
# ## 6. Digits
#
# The same recipe on 8×8 digits, scaled to $[-1, 1]$, sampled with $T = 200$ cosine steps. The network is an MLP
# over the 64 pixels with a time embedding. It also takes a **class label**, for the guidance of section 9: during
# training each label is replaced by a "no label" token with probability 0.5 (label dropout), so one network
# learns both $\epsilon_\theta(x_t, t, y)$ and the unconditional $\epsilon_\theta(x_t, t)$. The headline samples
# below use the **unconditional** network (the "no label" token), with no guidance: true samples of the model.
#
# Two choices differ from the 2D model; section 7 measures what the first one does for the likelihood. The known denoiser the network corrects is
# the exact one for **independent pixels on the 17 levels**: each pixel's posterior over its levels given $x_t$,
# with the level frequencies of lesson 01's per-pixel baseline (`fit_pixels`). At small noise it snaps each pixel
# to its nearest level, which a regression rarely learns. And the network is trained in **continuous time**: each
# example draws a time $\tau$ uniform in $(0, 1]$ on the cosine schedule instead of one of 200 indices, so the same
# network can run with any number of steps (section 7 uses that).
#
# With `DATASET = "mnist"` (or `"fashion-mnist"`) sections 6 to 10 run on 28×28 images with 256 levels, and the
# MLP becomes a small U-Net (`diffusion.image_model`); sections 1 to 5 stay on the digits and the 2D toys. Sized
# for a GPU: on a CPU, set `GENCOURSE_SUBSET` to train on part of the data. The text's figures are the digits';
# the verdicts are computed for the dataset in use, and the parts that read digits recipes are skipped.

# %%
train_set, val_set, test_set = (data.load(DATASET, split) for split in ("train", "val", "test"))
eval_images = test_set.images if DATASET == "digits" else test_set.images[:N_EVAL]  # the bounds' test images
real = metrics.reference_quality(DATASET)
uniform_nll = basics.uniform_nll(math.prod(test_set.shape), test_set.levels)
pixels_nll = basics.PixelCategorical(test_set.levels).fit(train_set.images[:SUBSET]).nll(eval_images).mean().item()
print(f"{DATASET}: {len(train_set)} training images, shape {test_set.shape}, {test_set.levels} levels; bounds on "
      f"{len(eval_images)} test images; baselines there: uniform {uniform_nll:.1f}, independent pixels {pixels_nll:.1f} nats")

# %%
gencourse.show(diffusion.ImageDiffusion.pixel_denoiser)

# %% [markdown]
# `train_digits` is the recipe. It trains for a fixed number of epochs while the learning rate anneals to zero,
# and keeps the final weights, where `fit` would keep those of the best validation epoch: the validation loss
# barely moves over the last part of training (see the curve), so it cannot tell those epochs apart, while the
# annealing still changes the weights. On the digits, `make recipes` has run this training for each seed (about
# 45 s of one core): the lesson loads its weights and the loss curve recorded while they trained. On one thread a
# run here gives the same weights to the last bit (training is deterministic for a seed; more threads may sum in
# another order). `RETRAIN = True` trains it here instead.

# %%
gencourse.show(diffusion.train_digits)

# %%
IS_RECIPE = DATASET == "digits" and not RETRAIN and (T, EPOCHS) == (diffusion.DIGITS_T, diffusion.DIGITS_EPOCHS)
if IS_RECIPE:  # the same training, done once by `make recipes`: load its weights and its loss curve
    model, model_meta = recipes.load("diffusion", seed=SEED, with_meta=True)
    model = model.to(device)
    history = gencourse.train.History(**model_meta["history"])
    print(f"the recipe loaded from its checkpoint (seed {SEED}): trained for {model_meta['train_seconds']:.0f} s on "
          f"{model_meta['machine']}; RETRAIN = True trains it here")
else:
    model, history = diffusion.train_images(DATASET, T=T, epochs=EPOCHS, seed=SEED, quick=QUICK, subset=SUBSET,
                                            device=device)
    print(f"training took {history.seconds:.1f} s")
history.plot(title=f"{DATASET}: noise-prediction loss")
plt.show()

# %%
g = torch.Generator().manual_seed(SEED)
start = time.perf_counter()
samples = model.sample(N_SAMPLES, generator=g).cpu()
ancestral_seconds = time.perf_counter() - start
q_ancestral = metrics.sample_quality(samples, DATASET)
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
viz.image_grid(samples[:60], nrow=15, ax=axes[0], title=f"diffusion: ancestral samples, T = {T}, no guidance")
viz.image_grid(test_set.images[:60], nrow=15, ax=axes[1], title="real test images")
plt.show()
print(f"{N_SAMPLES} samples in {ancestral_seconds:.1f} s ({T} network evaluations each)")
print(metrics.format_quality(q_ancestral, real, dataset=DATASET, title="diffusion"))

# %%
# NBVAL_CHECK_OUTPUT
gencourse.headline(f"diffusion {DATASET}: recognized", q_ancestral["recognized"], "{:.3f}")
gencourse.headline(f"diffusion {DATASET}: frechet", q_ancestral["frechet"], "{:.1f}")
print(metrics.goal(q_ancestral, "recognized", 0.9, real, dataset=DATASET))

# %% [markdown]
# **Clipping $\hat x_0$.** Ho et al.'s sampler clamps $\hat x_0$ to the data range $[-1, 1]$ at every step
# (`clip=1.0` here), the remedy for the wild $\hat x_0$ of a noise network at high noise seen in section 5. We
# record how much of our model's $\hat x_0$ leaves the range on the way down (200 samples), and sample the same
# noise again with clipping.

# %%
excess = []  # per step: how far each x0_hat value lies outside [-1, 1] (0 inside)


def recording_eps(x, t):
    """The model's noise estimate; notes how far x0_hat leaves [-1, 1] at this step."""
    eps = model.eps(x, t)
    excess.append((model.schedule.predict_x0(x, t, eps).abs() - 1).clamp(min=0).flatten().cpu())
    return eps


with torch.no_grad():
    x_T = torch.randn(min(200, N_SAMPLES), *model.shape, generator=torch.Generator().manual_seed(SEED)).to(device)
    diffusion.sample_ancestral(recording_eps, model.schedule, x_T)
excess = torch.stack(excess)
g = torch.Generator().manual_seed(SEED)
q_clipped = metrics.sample_quality(model.sample(N_SAMPLES, generator=g, clip=1.0).cpu(), DATASET)
print(f"x0_hat values outside [-1, 1], over all {T} steps: {(excess > 0).float().mean():.1%}; by more than half a "
      f"level (1/16): {(excess > 1 / 16).float().mean():.2%}; the largest excess: {excess.max():.2f}")
print(f"{'':<16}{'recognized':>14}{'frechet':>13}{'recall':>14}")
for name, q in (("no clipping", q_ancestral), ("clip to [-1, 1]", q_clipped)):
    print(f"{name:<16}{with_interval(q, 'recognized'):>14}{with_interval(q, 'frechet', 1):>13}{with_interval(q, 'recall'):>14}")

# %%
# NBVAL_CHECK_OUTPUT
verdict(not any(metrics.differs(q_clipped, q_ancestral, k) for k in ("recognized", "frechet", "recall")),
        "clipping x0_hat changes no figure beyond noise (recognized, frechet, recall)")

# %% [markdown]
# Clipping changes nothing we can measure here. Our $\hat x_0$ leaves the range often, but by little (the printout):
# the per-pixel skip keeps the estimate near the 17 levels, where the bare noise network of section 5 missed $x_0$
# by far at the noisiest step. Clipping earns its place where $\hat x_0$ strays far: bare noise
# networks, strong guidance, large images (Saharia et al. 2022 replace it by a per-image "dynamic threshold" for
# that reason).

# %% [markdown]
# The reverse process on digits: each row is one sample at $t = T, \dots, 0$. Structure appears first
# (a blob of the right size and place), strokes last.

# %%
keep_d = [T, 3 * T // 4, T // 2, T // 3, T // 5, T // 10, T // 20, 0]
g = torch.Generator().manual_seed(SEED + 1)
with torch.no_grad():
    x_T = torch.randn(6, *model.shape, generator=g).to(device)
    _, snaps = diffusion.sample_ancestral(lambda x, t: model.eps(x, t), model.schedule, x_T, generator=g, keep=keep_d)
rows = torch.stack([to_pixels(snaps[t].cpu()) for t in keep_d], 1).flatten(0, 1)
viz.image_grid(rows, nrow=len(keep_d), title="t = " + ", ".join(map(str, keep_d)))
plt.show()

# %% [markdown]
# **Where pixels meet.** The forward process treats every pixel on its own: $\partial\,\mathbb E[x_t]/\partial x_0 = \sqrt{\bar\alpha_t}\,I$,
# a diagonal matrix. The learned denoiser does not: its estimate of a clean pixel,
# $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta)/\sqrt{\bar\alpha_t}$, depends on the other pixels.
# We measure the share of its Jacobian $\partial\hat x_0/\partial x_t$ (absolute values) that lies off the diagonal,
# at $t = T/3$, on 10 noised test digits.

# %%
t_j = T // 3
tt = torch.tensor([t_j], device=device)
shares = []
shape = (1, *model.shape)
for i in range(10 if DATASET == "digits" else 1):  # a 784 x 784 Jacobian costs 784 backward passes
    xt = model.schedule.q_sample(2 * test_set.images[i:i + 1].to(device) - 1, tt, torch.randn(shape, device=device))
    x0_hat = lambda z: model.schedule.predict_x0(z.view(shape), tt, model.eps(z.view(shape), tt)).flatten()
    J = torch.autograd.functional.jacobian(x0_hat, xt.flatten(), vectorize=True).abs()
    shares.append((1 - J.diagonal().sum() / J.sum()).item())
off_diagonal = float(np.mean(shares))
print(f"off-diagonal share of the denoiser's Jacobian: {off_diagonal:.2f} (forward process: 0)")

# %%
# NBVAL_CHECK_OUTPUT
verdict(off_diagonal > 0.3, "the learned reverse process combines pixels (off-diagonal share > 0.3)")

# %% [markdown]
# ## 7. The likelihood, evaluated
#
# "Diffusion models have no likelihood" is a common claim; section 3's bound says otherwise, and it can be
# computed. For each test digit we draw $x_t$ at every step and add up the terms: the prior term $L_T$, the KL
# terms $L_{t-1}$ (squared distances between posterior means, now with the network's $\hat x_0$), and the decoder
# $-\log p_\theta(x_0 \mid x_1)$. The decoder must give probabilities to the 17 levels: a Gaussian around $\hat x_0$
# with the first step's standard deviation $\sqrt{\beta_1}$, integrated over each level's bin (the outer bins
# reaching to infinity; Ho et al. 2020, eq. 13). The sum bounds the negative log-likelihood in nats per image on
# the discrete scale of lesson 01, so it stands beside the same baselines: uniform 181.3, independent pixels 106.3.

# %%
gencourse.show(diffusion.ImageDiffusion.elbo_terms)

# %%
g = torch.Generator().manual_seed(SEED)
terms = model.elbo_terms(eval_images.to(device), generator=g).cpu()
bound_200 = terms.sum(1).mean().item()
print(f"bound of the {T}-step model: {bound_200:.1f} nats per test digit "
      f"(decoder {terms[:, 0].mean():.2f}, prior term {terms[:, -1].mean():.4f}, the {T - 1} KL terms the rest)")
print(f"baselines: uniform {uniform_nll:.1f}, independent pixels {pixels_nll:.1f} (lesson 01)")
per_step = terms[:, 1:T].mean(0)
fig, ax = plt.subplots(figsize=(5.5, 2.6))
ax.plot(torch.arange(2, T + 1), per_step.cumsum(0))
ax.set(xscale="log", xlabel="step t (log scale)", ylabel="nats, summed up to t",
       title=f"where the bound's nats go ({T}-step model)")
plt.show()
small = per_step[:T // 10].sum().item()
print(f"the first {T // 10} of {T} steps (the least noise) hold {small:.0f} nats, {small / bound_200:.0%} of the bound")

# %% [markdown]
# The 200-step model loses to independent pixels, and the figure says where: the steps nearest the data hold most
# of the bound. Each term is $\lambda_t\,\mathbb E\lVert\epsilon - \hat\epsilon\rVert^2$, and near the data $\lambda_t$ is
# large (0.74 at $t = 2$ in section 3's plot): one step multiplies the SNR by about 2.5. There the noise is small
# next to the gap between two levels ($2/16$ on this scale), and any doubt about a pixel's level is paid at that
# rate. More steps make each ratio smaller.
#
# **More steps.** The network was trained in continuous time, so it runs with any number of steps; each number of
# steps is a model of its own, with a bound of its own. Kingma et al. (2021) show that between two fixed noise
# levels, more steps give a tighter bound. Write $\ell = \ln \mathrm{SNR}$ (the natural log; section 2 plotted
# $\log_{10}$). Here the added steps also move the first step closer to the data ($\ell$ = 8.3 at 200 steps, 10.1
# at 1000), so a tighter bound is not guaranteed: we measure it. When steps are small,
# $\lambda_t = \tfrac12(e^{\ell_{t-1} - \ell_t} - 1) \approx \tfrac12(\ell_{t-1} - \ell_t)$, and the sum of the KL terms
# becomes an integral, $\tfrac12\int \mathbb E\,\lVert\epsilon - \epsilon_\theta(x_\ell)\rVert^2\, d\ell$: the bound of the
# continuous-time model. We fix its ends at $\ell = -10$ and $\ell = 13$ (nearer the data than the first step of a
# 4000-step model, at 11.5), add the decoder at 13 and the prior term at $-10$ (negligible there), and estimate the
# integral from 64 values of $\ell$ per image.

# %%
g = torch.Generator().manual_seed(SEED)
bounds = {T: model.nll(eval_images.to(device), steps=T, generator=g).mean().item()}
if IS_RECIPE:  # `make recipes` computed this checkpoint's 1000- and 4000-step bounds (11 s and 45 s here): read them
    recorded = model_meta["likelihood"]["convergence"]
    bounds.update({steps: b for steps, b in zip(recorded["steps"], recorded["nll_test"]) if steps > T})
else:
    bounds[5 * T] = model.nll(eval_images.to(device), steps=5 * T, generator=g).mean().item()
limit = model.continuous_nll(eval_images.to(device), draws=64, generator=g).cpu()
limit_val = model.continuous_nll(val_set.images[:len(eval_images)].to(device), draws=64, generator=g).mean().item()
print(f"{'steps':>12}{'test bound (nats)':>20}")
for steps, b in bounds.items():
    print(f"{steps:>12}{b:>20.1f}" + ("   (make recipes: the same weights, draws of its own)" if steps > T and IS_RECIPE else ""))
print(f"{'continuous':>12}{limit.mean().item():>20.1f} ± {1.96 * limit.std().item() / len(limit) ** 0.5:.1f}   "
      f"(validation {limit_val:.1f}" + ("; validation is harder for every model, lesson 11: per-pixel 110.5 vs 106.3)"
                                        if DATASET == "digits" else ")"))
gencourse.headline(f"diffusion {DATASET}: test NLL bound (continuous time)", limit.mean().item(), "{:.1f}")
print(f"{metrics.bits_per_dim(limit.mean().item(), math.prod(test_set.shape)):.3f} bits per dimension")

# %% [markdown]
# **What the network adds, and what the Gaussian skip would have cost.** Two ablations. Switch the network off
# (its output layer set to zero) and the model is the per-pixel denoiser alone: its continuous-time bound should
# land on independent pixels' 106.3, since it is the exact denoiser of that model (with the exact denoiser the
# continuous-time bound is tight, apart from its end terms). And the same recipe with the Gaussian skip of
# section 4 instead, with the same network, epochs and seed: `make recipes` trained it (`diffusion_gaussian`) and
# computed its bounds with 200, 1000 and 4000 steps, which we read (digits only).

# %%
import copy

off = copy.deepcopy(model)
with torch.no_grad():
    off.net.out.weight.zero_()
    off.net.out.bias.zero_()
g = torch.Generator().manual_seed(SEED)
pixels_only = off.continuous_nll(eval_images.to(device), draws=64, generator=g).mean().item()
print(f"per-pixel denoiser alone (network off), continuous time: {pixels_only:.1f} nats "
      f"(independent pixels: {pixels_nll:.1f})")
if DATASET == "digits":
    gauss_figures = recipes.load("diffusion_gaussian", seed=SEED, with_meta=True)[1]["likelihood"]
    gauss_bounds = dict(zip(gauss_figures["convergence"]["steps"], gauss_figures["convergence"]["nll_test"]))
    print("Gaussian skip (recipe checkpoint): " + ", ".join(f"{b:.1f} nats with {steps} steps"
                                                            for steps, b in gauss_bounds.items())
          + f", {gauss_figures['nll_test']:.1f} in continuous time")

# %%
# NBVAL_CHECK_OUTPUT
verdict(bounds[T] > bounds[5 * T] > limit.mean().item(), f"more steps, a tighter bound: {T} > {5 * T} steps > continuous time")
verdict(limit.mean().item() < pixels_nll < bounds[T], f"the continuous-time bound beats independent pixels "
        f"({pixels_nll:.1f}); the {T}-step model's bound loses to them")
verdict(small > 0.5 * bound_200, f"the first {T // 10} steps hold more than half of the {T}-step bound")
verdict(abs(pixels_only - pixels_nll) < 3, f"with the network off, the bound is independent pixels' (within 3 nats "
        f"of {pixels_nll:.1f})")
if DATASET == "digits":
    verdict(gauss_bounds[4000] > gauss_bounds[1000] > gauss_bounds[200] > pixels_nll + 40, "with the Gaussian skip "
            "the bound is far worse (by more than 40 nats), and grows with more steps (200 < 1000 < 4000)")

# %% [markdown]
# The network takes the bound from independent pixels' 106 nats to about 93 or 94: that is what it learned about how
# pixels go together. As bounds, the continuous-time figure is level with RealNVP's importance-weighted bound
# (lesson 05: 94.6), below its Jensen bound (about 98, a looser estimator of the same flow), and above the VAE's
# and the PixelCNN's (lessons 03 and 07; each family's estimator differs, lesson 11 compares them); the capstone puts them side by side. It is the bound of a model we
# do not sample from: our samples come from the 200-step model, whose own bound is worse than independent pixels.
#
# With the Gaussian skip, at the same budget, the bound is far worse, worse even than the uniform model's 181.3 (a
# bound can be very loose), and it *grows* with the steps, to about 300 nats in continuous time: its steps near the
# data pay, and the added steps lie nearer still. $L_\text{simple}$ does not aim at the likelihood, and where the
# model is not told about the data's levels, its bound shows it. (We did not measure that model's samples.)
#
# **Training for the likelihood.** $L_\text{simple}$ draws the time uniformly. The bound weighs the noise levels
# differently: written in $\ell$, it is an unweighted noise error with $\ell$ drawn uniformly (Kingma et al. 2021).
# The recipe `diffusion_likelihood` draws half of its training times uniform in $\ell$ on $[-10, 13]$ and half
# uniform in $\tau$, and is otherwise the same (network, epochs, seed). `make recipes` trained it; we load the checkpoint of this seed and
# sample it like the model above.

# %%
if DATASET == "digits":  # the recipe was trained on the digits
    weighted, weighted_meta = recipes.load("diffusion_likelihood", seed=SEED, with_meta=True)
    weighted = weighted.to(device)
    g = torch.Generator().manual_seed(SEED)
    q_weighted = metrics.sample_quality(weighted.sample(N_SAMPLES, generator=g).cpu())
    bound_weighted = weighted_meta["likelihood"]["nll_test"]
    print(f"{'training times':<34}{'test bound':>11}{'recognized':>14}{'frechet':>13}{'recall':>14}")
    for name, b, q in (("uniform in time (L_simple)", limit.mean().item(), q_ancestral),
                       ("half uniform in log-SNR", bound_weighted, q_weighted)):
        print(f"{name:<34}{b:>11.1f}{with_interval(q, 'recognized'):>14}{with_interval(q, 'frechet', 1):>13}"
              f"{with_interval(q, 'recall'):>14}")
    print(f"(continuous-time bounds, nats per test digit; samples: {N_SAMPLES}, {T} ancestral steps each)")
else:
    print("skipped: this part reads a recipe trained on the 8x8 digits")

# %%
# NBVAL_CHECK_OUTPUT
if DATASET == "digits":
    verdict(bound_weighted < limit.mean().item() - 1, "weighting the noise levels like the bound lowers the bound "
            "by more than a nat")
    verdict(q_weighted["recognized"] < q_ancestral["recognized"] and q_weighted["frechet"] > q_ancestral["frechet"],
            "and its samples are no better: recognized lower, Frechet distance larger (point estimates)")
else:
    print("skipped: this part reads a recipe trained on the 8x8 digits")

# %% [markdown]
# A better likelihood (two to three nats on every seed), and no better samples from the same network and budget:
# on every seed recognized is a little lower and the Fréchet distance larger (point estimates; on the seed shown
# here both differences lie within the intervals), while recall moves either way. The two aims pull the training towards different
# noise levels. The bound cares most about the ends of the chain, the small noise near the data where pixels
# find their levels among them; what makes a sample look like a digit is plausibly decided at middle noise (we did
# not measure where), which the weighted training visits less (about half of its draws have $|\ell| < 3$, against 72% for uniform $\tau$). This is why image models trained for samples use $L_\text{simple}$ or weightings further from the
# bound, and models trained for likelihood (VDM) use the bound's own.
#
# **The same recipe's ODE likelihood.** The score of section 5 also defines a deterministic process, the
# **probability-flow ODE** (Song et al. 2021), $dx/d\tau = \dot a_\tau\,\hat x_0 + \dot s_\tau\,\hat\epsilon$ (the dot is
# $d/d\tau$), whose marginals are those of the noised data when the network is exact. An ODE is a flow: lesson 05's
# change of variables holds in continuous time, and the log-density changes by the integral of the velocity's
# divergence along the path. The divergence is the trace of a $64 \times 64$ Jacobian; Hutchinson's estimator,
# $\mathbb E_z[z^\top J z] = \operatorname{tr} J$ for random $z$ with identity covariance, replaces its 64 gradient passes
# by a couple (lesson 08 integrates such ODEs). On the 17 levels we use the ODE's density as the prior of a
# one-latent bound, as in lesson 03's VAE: noise each digit lightly, $z = a x_0 + s\epsilon$ at log-SNR 8, and
#
# $$-\log P(x_0) \le \mathbb E_{z \sim q(z \mid x_0)}\big[\log q(z \mid x_0) - \log p_\text{ODE}(z) - \log p(x_0 \mid z)\big],$$
#
# with the discrete decoder of the continuous-time bound (a Gaussian of std $s/a$ around $\hat x_0$, integrated over
# each level's bin). It is a bound because of the noising step; one draw per digit makes its estimate noisy, not
# looser. That takes a few hundred network evaluations, each with a gradient, per digit: minutes for the test and
# validation splits, too slow for this lesson. So `make recipes` computed it for this seed's checkpoint of the same
# recipe, and we read it with that checkpoint's own continuous-time bound beside it (an estimate with draws of its
# own, so it differs a little from section 7's figure above).

# %%
if DATASET == "digits":  # the recipe was trained on the digits
    _, diffusion_meta = recipes.load("diffusion", seed=SEED, with_meta=True)
    ode = diffusion_meta["likelihood"]["pf_ode"]
    elbo_checkpoint = diffusion_meta["likelihood"]["nll_test"]
    print(f"{'ODE steps':>12}" + "".join(f"{steps:>8}" for steps in ode["steps"]))
    print(f"{'test nats':>12}" + "".join(f"{value:>8.1f}" for value in ode["nll_test_by_steps"]))
    lo, hi = ode["interval"]["nll_test"]
    print(f"probability-flow ODE: test {ode['nll_test']:.1f} (95% interval {lo:.1f} to {hi:.1f}), "
          f"validation {ode['nll_val']:.1f}")
    print(f"the checkpoint's continuous-time bound: test {elbo_checkpoint:.1f}, "
          f"validation {diffusion_meta['likelihood']['nll_val']:.1f}")
    print(f"estimator: {ode['estimator']}")
    gencourse.headline("diffusion digits: test NLL, probability-flow ODE", ode["nll_test"], "{:.1f}")
else:
    print("skipped: this part reads a recipe trained on the 8x8 digits")

# %%
# NBVAL_CHECK_OUTPUT
if DATASET == "digits":
    steps_table = ode["nll_test_by_steps"]
    verdict(abs(steps_table[-1] - steps_table[-2]) < 0.5, f"the ODE figure has converged: {ode['steps'][-2]} -> "
            f"{ode['steps'][-1]} steps moves it by less than 0.5 nat")
    verdict(ode["nll_test"] < elbo_checkpoint < pixels_nll, "the ODE figure is below the same network's continuous-time "
            f"bound, and both beat independent pixels ({pixels_nll:.1f})")
else:
    print("skipped: this part reads a recipe trained on the 8x8 digits")

# %% [markdown]
# The ODE figure is about two nats below the bound of the same checkpoint, as Song et al. found on CIFAR-10. Read it
# with two cautions. It describes another model built from the same network: the deterministic ODE, not the
# stochastic sampler our samples come from. And it is an estimate (steps, trace probes) of a bound (one noise draw
# per digit), so it is not "the" likelihood of the diffusion model either, but the tighter of two descriptions of
# what the network learned. The capstone lists both.
#
# ### Longer training: better samples, closer copies
#
# With 1000 training digits, a strong model can learn the digits themselves instead of their distribution. The
# guard of every sample goal, `memorization` (lesson 00: the median distance from a sample to its nearest training
# digit, over the same for held-out digits), falls towards 0 as samples become copies, and a goal needs it at 0.8 or
# more. `make recipes` trained the same recipe for 100, 300 (the headline's length) and 1000 epochs, each run
# annealing its learning rate over its own length, and computed their continuous-time test bounds (section 7). We
# load the three checkpoints of this seed and draw their samples.

# %%
if DATASET == "digits":  # the recipes were trained on the digits
    by_length, recipe_samples = {}, {}
    for name, epochs in (("diffusion_short", recipes.SHORT_EPOCHS), ("diffusion", diffusion.DIGITS_EPOCHS),
                         ("diffusion_long", recipes.LONG_EPOCHS)):
        run, meta = recipes.load(name, seed=SEED, with_meta=True)
        g = torch.Generator().manual_seed(SEED)
        if name == "diffusion" and IS_RECIPE:  # section 6's model and noise: its samples are those already drawn
            recipe_samples[epochs] = samples
        else:
            recipe_samples[epochs] = run.to(device).sample(N_SAMPLES, generator=g).cpu()
        by_length[epochs] = (meta["likelihood"]["nll_test"], metrics.sample_quality(recipe_samples[epochs]))
    print(f"{'epochs':>7}{'test bound':>12}{'recognized':>14}{'frechet':>13}{'memorization':>15}")
    for epochs, (b, q) in by_length.items():
        print(f"{epochs:>7}{b:>12.1f}{with_interval(q, 'recognized'):>14}{with_interval(q, 'frechet', 1):>13}"
              f"{with_interval(q, 'memorization', 2):>15}")
    print(f"(recipe checkpoints of seed {SEED}; {N_SAMPLES} ancestral samples each; bounds from `make recipes`, "
          "with draws of their own)")
    fig, axes = plt.subplots(1, 2, figsize=(11, 2.4))
    for ax, epochs in zip(axes, (diffusion.DIGITS_EPOCHS, recipes.LONG_EPOCHS)):
        x = recipe_samples[epochs][:10]
        nearest = train_set.images[torch.cdist(x.flatten(1), train_set.images.flatten(1)).argmin(1)]
        viz.image_grid(torch.cat([x, nearest]), nrow=10, ax=ax,
                       title=f"{epochs} epochs: samples (top), nearest training digit (bottom)")
    plt.show()
else:
    print("skipped: this part reads a recipe trained on the 8x8 digits")

# %%
# NBVAL_CHECK_OUTPUT
if DATASET == "digits":
    mem = {epochs: q["memorization"] for epochs, (_, q) in by_length.items()}
    nll = {epochs: b for epochs, (b, _) in by_length.items()}
    short, mid, long = recipes.SHORT_EPOCHS, diffusion.DIGITS_EPOCHS, recipes.LONG_EPOCHS
    verdict(mem[short] > mem[mid] > mem[long], f"memorization falls with training length: {short} > {mid} > {long} epochs")
    verdict(mem[mid] >= 0.8 > mem[long],
            f"the {mid}-epoch model stays above the floor (>= 0.8); the {long}-epoch model falls below it")
    verdict(nll[long] > max(pixels_nll, nll[mid] + 10), f"the {long}-epoch model's test bound is worse than "
            f"independent pixels ({pixels_nll:.1f}) and than the {mid}-epoch model's by more than 10 nats")
    verdict(nll[short] < min(nll[mid], bound_weighted, ode["nll_test"]),
            f"the {short}-epoch model has the best test bound of the three, better than the likelihood-weighted "
            "recipe's and the ODE figure")
else:
    print("skipped: this part reads a recipe trained on the 8x8 digits")

# %% [markdown]
# Longer training buys better-looking samples: recognized climbs to the real digits' figure (within noise of it).
# It also brings them closer to the training digits: memorization falls with every longer run, and after 1000 epochs it is below the floor: its samples
# sit closer to a training digit than unseen real digits do, the start of copying rather than copies. Above 1, as at 100
# epochs, the figure flags poor samples, farther from every digit than real ones are, not originality.
#
# The held-out bound tells the story earlier and louder. The test bound is best at the shortest run (so is the
# validation bound, stored with each checkpoint, on every seed: about 92-93 nats after 100 epochs, 95-97 after 300,
# 138-142 after 1000), several nats better than the
# headline's and better than the likelihood-weighted recipe and the ODE figure above, and after 1000 epochs it is
# worse than independent pixels: the network has fitted the training digits at the cost of held-out ones. Recognized and
# Fréchet reward that overfitting; only memorization and the held-out likelihood flag it. The headline's 300 epochs is a
# choice made for the samples, above the memorization floor on seeds 0-2; a model chosen for its likelihood would
# train for about 100 epochs or fewer (we measured only 100, 300 and 1000, each run annealed over its own length).

# %% [markdown]
# ## 8. DDIM: the same model, far fewer steps
#
# Ancestral sampling takes all $T$ steps, one network evaluation each. Song, Meng and Ermon (2021) noticed that
# the training loss only involves the marginals $q(x_t \mid x_0)$, and many processes share them, including
# non-Markovian ones that can jump over steps. Their **DDIM** update goes from index $t$ to any earlier
# $t' < t$ (eq. 12), with $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta)/\sqrt{\bar\alpha_t}$:
#
# $$x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{t'} - \sigma^2}\;\epsilon_\theta(x_t, t) + \sigma z,
#   \qquad \sigma = \eta\,\sqrt{\frac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}}\,\sqrt{1 - \frac{\bar\alpha_t}{\bar\alpha_{t'}}}\quad\text{(eq. 16)}.$$
#
# With $\eta = 1$ and $t' = t-1$ it is the ancestral step; with $\eta = 0$ it is deterministic: the same noise
# always gives the same image. $t' < 0$ means the clean sample ($\bar\alpha = 1$). No retraining: the network
# is the one we have.
#
# **Exercise 5.** Write `ddim_update(schedule, eps, xt, t, t_prev, eta, noise)` for int indices `t` and `t_prev`
# (`t_prev < 0`: the clean sample). Careful: in Python `alphas_cumprod[-1]` is the *last* entry, the noisiest one.

# %%
def ddim_update(schedule, eps, xt, t, t_prev, eta, noise):
    """The DDIM update from int index t to t_prev (t_prev < 0: the clean sample)."""
    ### BEGIN SOLUTION
    abar = schedule.alphas_cumprod[t]
    abar_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0_hat = (xt - (1 - abar).sqrt() * eps) / abar.sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    return abar_prev.sqrt() * x0_hat + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps + sigma * noise
    ### END SOLUTION


# %%
check.ddim_update(ddim_update)

# %% [markdown]
# We keep $S$ evenly spaced indices $\tau_1 < \dots < \tau_S$ of the $T = 200$ (`diffusion.ddim_timesteps`) and
# measure quality and time against $S$, each on the same number of samples, with $\eta = 0$; then, at 20 steps,
# with noise added back ($\eta = 0.5$ and $1$).

# %%
ddim_rows = {}
settings = [(S, 0.0) for S in sorted({5, 10, 20, 50, T}) if S <= T] + [(20, 0.5), (20, 1.0)]
for S, eta in settings:
    g = torch.Generator().manual_seed(SEED + 2)
    start = time.perf_counter()
    x = model.sample(N_SAMPLES, steps=S, eta=eta, generator=g).cpu()
    seconds = time.perf_counter() - start
    ddim_rows[(S, eta)] = (metrics.sample_quality(x, DATASET), seconds, x)
table = [("ancestral (DDPM)", T, q_ancestral, ancestral_seconds)]
table += [(f"DDIM, eta = {eta:g}", S, q, seconds) for (S, eta), (q, seconds, _) in ddim_rows.items()]
print(f"{'sampler':<22}{'NFE':>5}{'recognized':>14}{'frechet':>13}{'recall':>14}{'ms / 1000':>11}")
for name, nfe, q, seconds in table:
    print(f"{name:<22}{nfe:>5}{with_interval(q, 'recognized'):>14}{with_interval(q, 'frechet', 1):>13}"
          f"{with_interval(q, 'recall'):>14}{1000 * seconds * 1000 / N_SAMPLES:>11.0f}")
print(f"{'real (validation images)':<27}{with_interval(real, 'recognized'):>14}{with_interval(real, 'frechet', 1):>13}"
      f"{with_interval(real, 'recall'):>14}")
print(f"(± = 95% interval; frechet and recall at N_set = {q_ancestral['set_size']})")

# %%
steps_0 = [S for S, eta in settings if eta == 0]
fig, axes = plt.subplots(1, 3, figsize=(11, 2.8), gridspec_kw={"width_ratios": [1, 1, 1.5]})
for ax, key in zip(axes[:2], ["recognized", "frechet"]):
    ax.plot(steps_0, [ddim_rows[(S, 0.0)][0][key] for S in steps_0], "o-", label="DDIM, eta = 0")
    ax.axhline(q_ancestral[key], color="C1", ls="--", label=f"ancestral, {T} steps")
    ax.axhline(real[key], color="gray", ls=":", label="real images (validation)")
    ax.set(xscale="log", xlabel="network evaluations per sample", title=key)
axes[0].legend(fontsize=7)
viz.image_grid(ddim_rows[(20, 0.0)][2][:40], nrow=10, ax=axes[2], title="DDIM, 20 steps, eta = 0")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the table for three things, each difference against its intervals. A few tens of DDIM steps keep most of
# the quality of 200 ancestral steps at a fraction of the time (recognized at least 0.9 times ancestral's; on some
# seeds the loss is beyond noise, and the Fréchet distance is worse). With $\eta = 0$, more steps stop helping
# after about 20: the rows from 20 to 200 steps agree within their intervals, and none is better than ancestral
# sampling; with the same 200 steps the deterministic sampler is even worse than ancestral beyond noise on at
# least one figure. At 20 steps, adding the noise back ($\eta = 1$) is worse than 200 ancestral steps on no figure
# beyond noise, and $\eta = 0$ is never better than $\eta = 1$. On the seed shown $\eta = 1$ even has the higher
# recall beyond noise (0.80 against 0.74): 20 coarse noisy steps give more variety than 200 fine ones, which we did
# not investigate. (The times are single runs: $\eta = 1$ costs more than $\eta = 0$ at the same steps, here more
# than the noise draws alone explain; we did not profile it.)
#
# That is the opposite of the DDIM paper's finding on CIFAR-10, where the deterministic sampler was far better
# than $\eta = 1$ at 10 to 100 steps. A likely reason: a
# deterministic path carries every error of the network to the end, while fresh noise lets later steps wash part
# of it out (Karras et al. 2022, section 4, make this argument for stochastic samplers), and our small network,
# trained in under a minute on 1000 digits, errs more than the paper's. Which $\eta$ is best depends on the
# model: measure it, do not assume it.

# %%
# NBVAL_CHECK_OUTPUT
q20 = ddim_rows[(20, 0.0)][0]
keys = ("recognized", "frechet", "recall")
gencourse.headline(f"diffusion {DATASET}: recognized, DDIM 20 steps", q20["recognized"], "{:.3f}")
verdict(q20["recognized"] >= 0.9 * q_ancestral["recognized"],
        f"DDIM with 20 steps: recognized >= 0.9 x ancestral with {T} steps")
verdict(not any(metrics.differs(q20, ddim_rows[(T, 0.0)][0], k) for k in keys),
        f"eta = 0: {T} steps are within noise of 20 steps (recognized, frechet, recall)")
verdict(not any(metrics.beats(ddim_rows[(S, 0.0)][0], q_ancestral, k) for S in steps_0 for k in keys),
        "no eta = 0 setting beats ancestral sampling beyond noise")
q20_noisy = ddim_rows[(20, 1.0)][0]
verdict(not any(metrics.beats(q_ancestral, q20_noisy, k) for k in keys),
        f"eta = 1 with 20 steps is at least as good as ancestral with {T} steps (worse on no figure beyond noise)")
verdict(not any(metrics.beats(q20, q20_noisy, k) for k in keys), "at 20 steps eta = 0 beats eta = 1 on no figure")
verdict(any(metrics.beats(q_ancestral, ddim_rows[(T, 0.0)][0], k) for k in keys),
        f"with the same {T} steps, eta = 0 is worse than ancestral sampling beyond noise on at least one figure")

# %% [markdown]
# ## 9. Classifier-free guidance
#
# Our network knows both $\epsilon_\theta(x_t, t, y)$ and $\epsilon_\theta(x_t, t)$. In score terms, the
# conditional score is $\nabla\log p(x\mid y) = \nabla\log p(x) + \nabla\log p(y\mid x)$. Guidance
# (Ho & Salimans 2021) turns up the second term by a scale $w$:
#
# $$\tilde\epsilon = \epsilon_\theta(x_t, t) + w\,\big(\epsilon_\theta(x_t, t, y) - \epsilon_\theta(x_t, t)\big),$$
#
# the score of $p_t(x)\,p_t(y \mid x)^w$ at each noise level $t$: $w = 0$ ignores the label, $w = 1$ samples
# $p(x \mid y)$, and $w > 1$ pushes towards images that are *unmistakably* class $y$. No separate classifier is
# needed; each step costs two network evaluations. Two cautions. The tilt holds for each noised marginal $p_t$,
# not for the samples: a guided sampler does not draw from $p_0(x)\,p_0(y \mid x)^w$ (Bradley & Nakkiran 2024;
# Chidambaram et al. 2024). And the literature uses two scales: Ho & Salimans write
# $(1 + w')\,\epsilon_\theta(x_t, t, y) - w'\,\epsilon_\theta(x_t, t)$, so their $w' = w - 1$, and their $w' = 0$ is our
# $w = 1$, plain conditional sampling (`docs/notation.md`).
#
# The course's guidance mix, one line:

# %%
gencourse.show(diffusion.guidance_mix)

# %% [markdown]
# These figures are **guided**, not the model's true samples: they are kept apart from the headline figures.
# We sample with DDIM (20 steps, as above) to keep the sweep quick. First one row per class at $w = 3$:

# %%
g = torch.Generator().manual_seed(SEED + 3)
labels = torch.arange(10).repeat_interleave(max(1, min(10, N_SWEEP // 10)))
grid_samples = model.sample(len(labels), steps=20, y=labels.to(device), guidance=3.0, generator=g).cpu()
viz.image_grid(grid_samples, nrow=len(labels) // 10, title="GUIDED (w = 3): one row per requested class 0..9")
plt.show()

# %% [markdown]
# Then the guidance scale against what it buys and what it costs: `recognized` (clear digits), the share of
# samples classified as the class that was asked for, and `recall` (the share of real digits with a sample close
# by: how much of their variety the samples cover), with balanced labels.

# %%
scales = [0.0, 1.0, 2.0, 3.0, 5.0]
sweep = {}
for w in scales:
    g = torch.Generator().manual_seed(SEED + 4)
    y = (torch.arange(N_SWEEP) % 10).to(device)
    x = model.sample(N_SWEEP, steps=20, y=y, guidance=w, generator=g).cpu()
    q = metrics.sample_quality(x, DATASET)
    q["asked_class"] = (metrics.classify(x, DATASET).argmax(1) == y.cpu()).float().mean().item()
    sweep[w] = q
print(f"{'guidance w':>10}{'recognized':>14}{'asked class':>13}{'classes':>9}{'recall':>14}{'frechet':>13}")
for w, q in sweep.items():
    print(f"{w:>10g}{with_interval(q, 'recognized'):>14}{q['asked_class']:>13.3f}{q['classes_covered']:>9d}"
          f"{with_interval(q, 'recall'):>14}{with_interval(q, 'frechet', 1):>13}")
print(f"({N_SWEEP} GUIDED samples per scale; ± = 95% interval; frechet and recall at N_set = {sweep[0.0]['set_size']})")
fig, ax = plt.subplots(figsize=(4.5, 2.8))
for key in ("recognized", "asked_class", "recall"):
    ax.plot(scales, [sweep[w][key] for w in scales], "o-", label=key)
ax.set(xlabel="guidance scale w (GUIDED samples)", ylim=(0, 1.05))
ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
verdict(sweep[1.0]["asked_class"] >= 0.85, "the label alone (w = 1, conditional sampling): at least 85% of samples "
        "show the asked class")
verdict(all(metrics.beats(sweep[w], sweep[1.0], "recognized") for w in (2.0, 3.0)),
        "guidance (w = 2 and 3) raises recognized above w = 1 (intervals separate)")
verdict(min(sweep[2.0]["asked_class"], sweep[3.0]["asked_class"]) >= 0.98,
        "at w = 2 and 3 at least 98% of samples show the asked class")
verdict(sweep[5.0]["recognized"] < sweep[3.0]["recognized"] and sweep[5.0]["recall"] < min(sweep[w]["recall"] for w in (1.0, 2.0, 3.0)),
        "a large scale costs: at w = 5 recognized falls below w = 3, and recall is the lowest of w = 1..5 (point estimates)")
verdict(all(q['classes_covered'] == 10 for q in sweep.values()), "balanced labels cover all 10 classes at every w")

# %% [markdown]
# Read the sweep in two steps. $w = 1$ is plain conditional sampling, $p(x \mid y)$, not guidance yet: about nine
# samples in ten show the asked class, and recognition is not much above the unconditional $w = 0$ (within noise
# of it on one training seed of three). Guidance proper does the rest: at $w = 2$ or $3$ nearly every sample is a
# clear digit of the asked class, well above $w = 1$. Up to $w = 2$ guidance costs nothing we can measure: recall
# holds and the Fréchet distance is at its lowest. At $w = 5$ recognition and recall fall (point estimates, on every
# seed; beyond noise on some), the trade of fidelity for variety that a large scale brings.
# Guided samples are not the model's distribution, which is why headline figures never use them.
#
# ## 10. What sampling costs
#
# A common claim: "diffusion models are cheap to sample, unlike the iterative sampling of GANs". It is the
# other way round. A GAN's generator (lesson 04) maps noise to an image in **one** network evaluation;
# diffusion needs one per step. We time, for 1000 samples, our sampler against a one-network-evaluation
# sampler such as lesson 04's GAN: an MLP of the same width and about the same size as our network
# (64 → 256, six 256 → 256 layers, → 64), run once. Its weights are random: only its cost matters here.

# %%
hidden_layers = [m for _ in range(6) for m in (nn.Linear(256, 256), nn.SiLU())]
D = math.prod(model.shape)  # 64 pixels for the digits
one_pass = nn.Sequential(nn.Linear(D, 256), nn.SiLU(), *hidden_layers, nn.Linear(256, D), nn.Sigmoid())
one_pass = one_pass.to(device).eval()
count = lambda net: sum(p.numel() for p in net.parameters())
print(f"parameters: one-pass generator {count(one_pass):,}, diffusion network {count(model.net):,}")


def ms_per_1000(fn, n=N_SAMPLES, repeats=3):
    """Milliseconds per 1000 samples of fn(n), the best of a few runs."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn(n)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 1000 * best * 1000 / n


with torch.no_grad():
    cost = {"one-pass generator (like lesson 04's GAN)":
            (1, ms_per_1000(lambda n: one_pass(torch.randn(n, D, device=device)).view(-1, *model.shape)))}
cost["diffusion, DDIM 5 steps"] = (5, ms_per_1000(lambda n: model.sample(n, steps=5)))
cost["diffusion, DDIM 20 steps"] = (20, ms_per_1000(lambda n: model.sample(n, steps=20)))
cost[f"diffusion, ancestral {T} steps"] = (T, 1000 * ancestral_seconds * 1000 / N_SAMPLES)  # timed in section 6
print(f"{'sampler':<44}{'NFE':>5}{'ms per 1000 samples':>22}")
for name, (nfe, ms) in cost.items():
    print(f"{name:<44}{nfe:>5}{ms:>22.1f}")
ms_ancestral = cost[f"diffusion, ancestral {T} steps"][1]
_ = gencourse.headline(f"diffusion {DATASET}: ms per 1000 samples (ancestral)", ms_ancestral, "{:.0f}")

# %%
fig, ax = plt.subplots(figsize=(5.5, 2.4))
ax.barh(list(cost), [ms for _, ms in cost.values()], color=["C2", "C0", "C0", "C1"])
ax.set(xscale="log", xlabel="ms per 1000 samples (log scale)")
ax.invert_yaxis()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"network evaluations per sample: one-pass generator 1, DDIM 20, ancestral {T}")
one = cost["one-pass generator (like lesson 04's GAN)"][1]
verdict(ms_ancestral > 20 * one, "ancestral diffusion sampling is more than 20x slower than one pass")
verdict(cost['diffusion, DDIM 20 steps'][1] > 10 * one, "even DDIM with 20 steps is more than 10x slower than one pass")

# %%
print(f"lesson run time so far: {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# DDIM narrows the gap from hundreds of evaluations to tens, but a one-pass generator remains more than ten times
# cheaper (the table above). Each diffusion step also costs more than one pass of the similar-sized MLP: the sampler
# computes the per-pixel denoiser and the update besides the network, which this comparison does not separate.
# Lesson 08's flow matching needs about as many evaluations on these digits (about 10), and its reflow, a
# straightening fine-tune, brings that to 2 at a measured cost in quality; distillation and consistency models, which train a network to jump from noise to data in one or two steps, are
# the ways to close it.
#
# ## Summary
#
# - The forward process $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ scales the image and adds
#   independent noise to every pixel: it does not blur or spread pixels into each other; the learned reverse
#   process is what combines pixels.
# - The schedule is best read through the SNR; for small images the cosine schedule wastes fewer steps on pure noise.
# - Training regresses the noise, $L_\text{simple}$: each step is a Gaussian fitted by maximum likelihood (a
#   regression), but $L_\text{simple}$ reweights the bound's terms, so the model of the images, $p_\theta(x_0)$, is not
#   trained by maximum likelihood.
# - The noise predictor is a scaled score, $s_\theta = -\epsilon_\theta/\sqrt{1-\bar\alpha_t}$.
# - $\epsilon$-, $x_0$- and $v$-prediction differ in how their losses weigh the noise levels ($\mathrm{SNR}$,
#   $1$, $\mathrm{SNR} + 1$ against an $x_0$ error): $x_0$-prediction is poor at small noise and covers the roll worse,
#   $\epsilon$-prediction cannot give $\hat x_0$ at large noise, $v$ does well at both ends. Clipping $\hat x_0$ changes
#   nothing measurable for our digits model.
# - Diffusion has a likelihood bound, and it can be computed: on the test digits the continuous-time bound of the
#   digits model beats independent pixels (about 93 to 94 against 106 nats), while the 200-step model we sample from
#   loses to them; its nats sit in the steps nearest the data, where the levels of the pixels must be learned
#   (here built in, by the per-pixel denoiser the network corrects).
# - Ancestral sampling needs $T$ network evaluations; DDIM reuses the same network with tens of steps: deterministic
#   ($\eta = 0$) it keeps recognized at 0.9 times ancestral's or more (0.02 lower at 20 steps on the seed shown); with the noise
#   added back ($\eta = 1$), 20 steps lose nothing measurable. A one-pass generator is
#   still far cheaper to sample.
# - Conditioning on the label gives samples mostly of the asked class; classifier-free guidance ($w$ = 2 or 3)
#   makes nearly all of them clear digits of that class, and a large scale costs recognition and coverage of the
#   real digits (recall). Guided figures are labelled and kept out of the headline.
# - Training for the likelihood (half of its training times drawn like the bound's weighting) lowers the bound and
#   does not improve the samples (slightly worse point estimates on every seed): the two aims pull the same network towards different noise levels. The probability-flow ODE of the
#   same recipe gives a figure about two nats below its bound.
# - Training longer makes better-looking samples while the held-out bound worsens (best at 100 epochs, worse than
#   independent pixels at 1000) and memorization falls below its floor: the held-out likelihood and `memorization`
#   see overfitting that recognized and Fréchet reward.
#
# **Next:** lesson 07 returns to exact likelihoods with autoregressive models; lesson 08 (flow matching) learns a
# velocity field instead of noise and samples in a handful of steps; [`docs/notation.md`](../docs/notation.md) puts the two notations
# side by side. To read further: Ho, Jain & Abbeel (2020),
# *Denoising Diffusion Probabilistic Models*; Nichol & Dhariwal (2021), *Improved DDPM*; Song, Meng & Ermon (2021),
# *DDIM*; Song et al. (2021), *Score-Based Generative Modeling through SDEs*; Ho & Salimans (2021),
# *Classifier-Free Diffusion Guidance*; Kingma, Salimans, Poole & Ho (2021), *Variational Diffusion Models*; Karras
# et al. (2022), *Elucidating the Design Space of Diffusion-Based Generative Models* (EDM).
