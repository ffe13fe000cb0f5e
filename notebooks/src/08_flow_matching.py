# %% [markdown]
# # 08 · Flow matching
#
# **Learning objectives.** After this lesson you can
# - explain how flow matching joins the two previous families: a *continuous* normalizing flow (lesson 05)
#   trained by a *regression* like diffusion's (lesson 06), without simulating the ODE during training;
# - write a probability path, its conditional target velocity, and the conditional flow-matching loss, and
#   say why the conditional loss has the same gradient as the marginal one;
# - sample with Euler and Heun steps and measure quality against the number of steps, next to DDIM;
# - compute a likelihood by the instantaneous change of variables, exactly in 2D and with Hutchinson's
#   estimator on digits, on the course's discrete scale.
#
# **Running time:** about 34 s on a 2-core laptop CPU (measured by `make bench`, two threads); nothing to download; on a GPU, `GENCOURSE_DEVICE=auto` trains there; raise `GENCOURSE_EPOCHS` with it.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("GENCOURSE_QUICK", "0") == "1"  # smallest settings: only checks that the lesson runs
SEED = int(os.environ.get("GENCOURSE_SEED", 0))
EPOCHS_2D = int(os.environ.get("GENCOURSE_EPOCHS_2D", 2 if QUICK else 40))  # 2D flow matching and diffusion
EPOCHS = int(os.environ.get("GENCOURSE_EPOCHS", 2 if QUICK else 200))  # digits
N_SAMPLES = int(os.environ.get("GENCOURSE_SAMPLES", 200 if QUICK else 1000))  # samples for sample_quality
LIK_STEPS = int(os.environ.get("GENCOURSE_LIK_STEPS", 2 if QUICK else 32))  # Heun steps of the likelihood ODE
DEVICE = os.environ.get("GENCOURSE_DEVICE", "cpu")

# %%
import math
import time

import matplotlib.pyplot as plt
import torch

import gencourse
from gencourse import basics, check, data, diffusion, gan, metrics, recipes, viz
from gencourse import flow_matching as fm

gencourse.setup(seed=SEED)

# %% [markdown]
# ## From flows and diffusion to flow matching
#
# A normalizing flow (lesson 05) is an invertible map from noise to data, trained by maximum likelihood:
# exact, but every layer must be invertible with a cheap Jacobian. Diffusion (lesson 06) trains an
# unconstrained network by *regression* on noised data, then samples with many small steps; DDIM showed
# that those steps follow a deterministic ODE.
#
# Flow matching takes the best of both. Define the model as an ODE,
# $\frac{dx}{dt} = v_\theta(x, t)$ for $t$ from 0 (noise, $x_0 \sim \mathcal N(0, I)$) to 1 (data):
# a *continuous* flow, invertible by construction (run the ODE backwards), with any network $v_\theta$.
# Train it like diffusion, by regression, on points of a **probability path** that joins a noise draw
# $x_0$ to a data point $x_1$:
#
# $$x_t = \alpha_t\, x_1 + \sigma_t\, x_0, \qquad u_t(x_t \mid x_0, x_1) = \frac{d x_t}{dt} = \dot\alpha_t\, x_1 + \dot\sigma_t\, x_0 .$$
#
# The **linear** (rectified-flow) path has $\alpha_t = t$, $\sigma_t = 1 - t$, so $u_t = x_1 - x_0$: straight
# lines at constant speed. The **Gaussian path of diffusion** (variance preserving) has
# $\alpha_t = \sin(\pi t/2)$, $\sigma_t = \cos(\pi t/2)$: lesson 06's cosine schedule with
# $\bar\alpha = \alpha_t^2$, in continuous time.

# %%
gencourse.show(fm.GaussianPath)

# %% [markdown]
# **Exercise 1.** Write the point at time `t` (a tensor `(B,)`) on the straight line from noise `x0` to
# data `x1` (both `(B, ...)`).

# %%
def linear_path_point(x0, x1, t):
    """x_t = t x1 + (1 - t) x0; t: (B,), broadcast over each example."""
    ### BEGIN SOLUTION
    t = t.view(-1, *([1] * (x1.dim() - 1)))
    return t * x1 + (1 - t) * x0
    ### END SOLUTION


# %%
check.linear_path_point(linear_path_point)

# %% [markdown]
# **Exercise 2.** Write the conditional target velocity $u_t = dx_t/dt$ of the linear path.

# %%
def rectified_target_velocity(x0, x1, t):
    """u_t(x_t | x0, x1) for the linear path, shape (B, ...)."""
    ### BEGIN SOLUTION
    return x1 - x0
    ### END SOLUTION


# %%
check.rectified_target_velocity(rectified_target_velocity)

# %% [markdown]
# The reference paths give the same velocities as a finite difference of the path, for both paths:

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(SEED)
x0, x1 = torch.randn(256, 2, generator=g, dtype=torch.float64), torch.randn(256, 2, generator=g, dtype=torch.float64)
t = 0.01 + 0.98 * torch.rand(256, generator=g, dtype=torch.float64)
for path in (fm.LinearPath(), fm.VPPath()):
    fd = (path.sample(x0, x1, t + 1e-5) - path.sample(x0, x1, t - 1e-5)) / 2e-5
    err = (path.target_velocity(x0, x1, t) - fd).abs().max().item()
    print(f"{'PASS' if err < 1e-6 else 'FAIL'} {path.name} path: target velocity = finite difference of x_t (within 1e-6)")

# %% [markdown]
# ## The conditional objective and why it works
#
# We want $v_\theta$ to match the **marginal** velocity $u_t(x)$, the one that moves the whole noise
# distribution along the path to the data distribution. It is the average of the conditional velocities
# of all pairs whose path passes through $x$: $u_t(x) = \mathbb E[\,u_t(x_t \mid x_0, x_1) \mid x_t = x\,]$,
# which needs the whole data set at every point: intractable. The **conditional** flow-matching loss
#
# $$\mathcal L_{\text{CFM}}(\theta) = \mathbb E_{t \sim U[0,1],\, x_0,\, x_1}\, \big\| v_\theta(x_t, t) - u_t(x_t \mid x_0, x_1) \big\|^2$$
#
# needs one pair at a time. Expand both squares: they share $\|v_\theta\|^2$, and the cross terms agree
# because $\mathbb E[u_t(x_t\mid x_0,x_1) \mid x_t] = u_t(x_t)$; what differs does not depend on $\theta$.
# Same gradient, so the same minimizer (Lipman et al. 2023). We check it by Monte Carlo on Gaussian data,
# where the marginal velocity is known in closed form, for a linear model $v = W x + b$:

# %%
gencourse.show(fm.cfm_loss)

# %%
# NBVAL_CHECK_OUTPUT
mu, s = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])


def gaussian_marginal_velocity(x, t):
    """u_t(x) = E[x1 - x0 | x_t = x] for data N(mu, diag s^2), coordinate-wise, in closed form."""
    t = t.view(-1, 1)
    var = t**2 * s**2 + (1 - t) ** 2
    return mu + (t * s**2 - (1 - t)) / var * (x - t * mu)


g = torch.Generator().manual_seed(SEED)
n = 20_000 if QUICK else 400_000
X1 = mu + s * torch.randn(n, 2, generator=g)
X0, T = torch.randn(n, 2, generator=g), torch.rand(n, generator=g)
Xt = fm.LinearPath().sample(X0, X1, T)
W = torch.zeros(2, 2, requires_grad=True)
v = Xt @ W.T + 0.3
grad_cond, = torch.autograd.grad((v - (X1 - X0)).pow(2).sum(1).mean(), W, retain_graph=True)
grad_marg, = torch.autograd.grad((v - gaussian_marginal_velocity(Xt, T)).pow(2).sum(1).mean(), W)
rel = ((grad_cond - grad_marg).norm() / grad_marg.norm()).item()
print(f"{'PASS' if rel < 0.05 else 'FAIL'} conditional and marginal gradients agree (relative difference < 5%)")

# %%
print(f"relative difference of the two gradients: {rel:.4f} (Monte Carlo, {n} draws)")

# %% [markdown]
# ## Flow matching in 2D
#
# We fit the 8-Gaussians ring with the linear path. The network $v_\theta(x, t)$ is an MLP that gets
# sinusoidal features of $t$ added to every hidden layer:

# %%
gencourse.show(fm.VelocityNet)

# %%
n_train = 2000 if QUICK else 4000
points = data.toy2d("8gaussians", n_train, seed=SEED)
val_points = data.toy2d("8gaussians", 2000, seed=SEED + 1)
net2d, hist2d = fm.fit_2d(points, val_points, epochs=EPOCHS_2D, seed=SEED)

# %% [markdown]
# **Exercise 3.** Sampling integrates $dx/dt = v(x, t)$ from $t=0$ to $1$. Write Euler's method with
# `steps` equal steps: $x_{t+h} = x_t + h\, v(x_t, t)$, $h = 1/\text{steps}$, with `t` a tensor `(B,)`.

# %%
def euler_ode_sampler(velocity_fn, x0, steps):
    """x0: (B, ...) noise -> x_1 (B, ...) after `steps` Euler steps."""
    ### BEGIN SOLUTION
    x, h = x0, 1.0 / steps
    for i in range(steps):
        x = x + h * velocity_fn(x, torch.full((len(x),), i * h))
    return x
    ### END SOLUTION


# %%
check.euler_ode_sampler(euler_ode_sampler)

# %% [markdown]
# The trajectories from noise to the ring. Each one is a curve (the *marginal* velocity averages over many
# crossing straight lines), but a gently bent one:

# %%
torch.manual_seed(SEED)
z = torch.randn(400, 2)
x_end, traj = fm.euler_sample(net2d, z, 50, return_trajectory=True)
traj = torch.stack(traj)  # (steps + 1, B, 2)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.3))
viz.scatter2d(z, ax=axes[0], title="t = 0: noise", s=3)
for i in range(60):
    axes[1].plot(traj[:, i, 0], traj[:, i, 1], lw=0.6, alpha=0.7)
axes[1].set(xlim=(-4.5, 4.5), ylim=(-4.5, 4.5), title="trajectories (50 Euler steps)")
axes[1].set_aspect("equal")
viz.scatter2d(x_end, ax=axes[2], title="t = 1: samples", s=3)
plt.show()

# %% [markdown]
# ### Quality against the number of steps, next to DDIM
#
# For a fair comparison we train a small diffusion model on the same points with the same network
# (it predicts the noise $\epsilon$ instead of a velocity; linear schedule, $T = 100$; lesson 06) and sample it
# with DDIM. Quality in 2D, with lesson 04's ring measures (`gan.ring_coverage`): the mean **true**
# log-density of the samples (the ring's density is known exactly; real points score its negative entropy,
# a ring of samples without modes about −3.4 to −3.9), the modes *reached* (a mode's core holds ≥ 1% of the
# samples) and the modes *covered* (the core also holds twice the samples of the gaps beside it: the mode
# stands out from the ring).

# %%
schedule = diffusion.NoiseSchedule.linear(100)
gencourse.seed_everything(SEED)
eps_net = fm.VelocityNet(2, 128, 3)


def diffusion_loss(x):
    t = torch.randint(0, schedule.T, (len(x),))
    noise = torch.randn_like(x)
    return (eps_net(schedule.q_sample(x, t, noise), t.float() / schedule.T) - noise).pow(2).sum(1).mean()


hist_eps = gencourse.train.fit(eps_net, diffusion_loss, points, val_data=val_points, epochs=EPOCHS_2D, lr=3e-3,
                               batch_size=512, seed=SEED, desc="diffusion (noise prediction) on 8gaussians")


def eps_fn(x, t):
    return eps_net(x, t.float() / schedule.T)


def ring_quality(x):
    """(mean true log-density, modes covered, modes reached) of samples x: (N, 2)."""
    q = gan.ring_coverage(x)
    return q["log_density"], q["modes_covered"], q["modes_reached"]


n_eval = 1000 if QUICK else 5000
z = torch.randn(n_eval, 2, generator=torch.Generator().manual_seed(SEED))
real_lp = ring_quality(data.toy2d("8gaussians", n_eval, seed=SEED + 2))[0]
rows = {}
with torch.no_grad():
    for nfe_budget in (1, 2, 4, 8, 16, 32):
        rows[nfe_budget] = {
            "flow matching, Euler": ring_quality(fm.euler_sample(net2d, z, nfe_budget)),
            "flow matching, Heun": ring_quality(fm.heun_sample(net2d, z, nfe_budget // 2)) if nfe_budget >= 2 else None,
            "diffusion, DDIM": ring_quality(diffusion.sample_ddim(eps_fn, schedule, z, nfe_budget)),
        }
print(f"mean true log-density of the samples (real points: {real_lp:.2f}); modes covered / reached of 8")
print(f"{'NFE':>4}" + "".join(f"{name:>28}" for name in rows[1]))
for k, row in rows.items():
    print(f"{k:>4}" + "".join(f"{'-':>28}" if q is None else f"{q[0]:>18.2f} ({q[1]}/{q[2]} modes)" for q in row.values()))
better = rows[8]["flow matching, Heun"][0] > rows[8]["diffusion, DDIM"][0]
print(f"at 8 NFE flow matching (Heun) is {'ahead of' if better else 'behind'} DDIM on the same network and data")

# %%
fig, ax = plt.subplots(figsize=(5, 3.3))
for name in rows[1]:
    ks = [k for k in rows if rows[k][name] is not None]
    ax.plot(ks, [rows[k][name][0] for k in ks], marker="o", label=name)
ax.axhline(real_lp, color="k", ls="--", lw=1, label="real points")
ax.set(xscale="log", xlabel="network evaluations per sample (NFE)", ylabel="mean true log-density")
ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
fm8, ddim8 = rows[8]["flow matching, Heun"][0], rows[8]["diffusion, DDIM"][0]
ok = rows[8]["flow matching, Heun"][2] == 8
print(f"{'PASS' if ok else 'FAIL'} flow matching with 8 NFE (4 Heun steps) reaches all 8 modes")
ok = rows[32]["flow matching, Heun"][0] < real_lp - 0.5 and rows[32]["flow matching, Heun"][1] < 8
print(f"{'PASS' if ok else 'FAIL'} but even with 32 NFE its samples stay > 0.5 nats below real points' log-density "
      "and not all 8 modes stand out from the ring")
ok = rows[8]["flow matching, Heun"][0] >= rows[32]["flow matching, Heun"][0] - 0.5
print(f"{'PASS' if ok else 'FAIL'} flow matching with 8 NFE is within 0.5 nats of its own 32-NFE figure")

# %% [markdown]
# Read the table: with one or two evaluations every sampler lands *between* the modes (a large step
# follows the average direction). Flow matching's nearly straight paths settle by about 8 evaluations;
# DDIM, with the same network and the same training, needs more here (its first step divides by
# $\sqrt{\bar\alpha_T}$, which magnifies the network's error). Neither reaches the real points' figure, and
# not by a little: the samples reach every mode's region but spread along the ring between them, so their
# log-density sits near or below that of a ring with no modes at all, and hardly any mode stands out from the ring
# (the picture above shows it too). More steps stop helping once the velocity's own error dominates: this
# small network, trained for seconds, has not learned to separate the modes.
#
# ### Likelihood by the instantaneous change of variables
#
# A flow's density changes along the ODE by the divergence of the velocity (Chen et al. 2018):
#
# $$\log p_1(x_1) = \log \mathcal N(x_0; 0, I) - \int_0^1 \nabla\!\cdot v_\theta(x_t, t)\, dt ,$$
#
# integrated backwards from the data point $x_1$ to its noise $x_0$. In 2D the divergence is two autograd
# passes, exact. We check that the density integrates to 1 over a grid:

# %%
gencourse.show(fm.ode_log_prob)

# %%
lim, m = 6.0, 30 if QUICK else 60
grid = torch.stack(torch.meshgrid(torch.linspace(-lim, lim, m), torch.linspace(-lim, lim, m), indexing="xy"), -1).view(-1, 2)
log_p = fm.ode_log_prob(net2d, grid, steps=16)
mass = (log_p.exp().sum() * (2 * lim / (m - 1)) ** 2).item()
held_out_nll = -fm.ode_log_prob(net2d, val_points[:1000], steps=16).mean().item()
true_nll = -data.ring_log_prob(val_points[:1000]).mean().item()
print(f"mass of the density on [-6, 6]^2: {mass:.3f}")
print(f"held-out NLL: flow matching {held_out_nll:.3f} nats, the true density {true_nll:.3f} nats")
fig, axes = plt.subplots(1, 2, figsize=(7, 3.3))
axes[0].imshow(log_p.exp().view(m, m), origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma")
axes[0].set_title("flow matching density")
axes[1].imshow(data.ring_log_prob(grid).exp().view(m, m), origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma")
axes[1].set_title("true density")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'PASS' if abs(mass - 1) < 0.05 else 'FAIL'} the ODE density integrates to 1 over the window (within 0.05)")
print(f"{'PASS' if true_nll - 0.1 < held_out_nll < true_nll + 1.0 else 'FAIL'} held-out NLL above the truth's (beyond noise) and within 1 nat of it")

# %% [markdown]
# ## Digits
#
# Images $x = k/16$ are dequantized, $y = (k + u)/17$, and rescaled to $z = 2y - 1 \in [-1, 1)$, the data end
# of a linear path. Samples are quantized back to $k = \lfloor 17 y \rfloor$.
#
# **Start from the answer for Gaussian data.** If the data were Gaussian, $x_1 \sim \mathcal N(\mu, \Sigma)$,
# the marginal velocity would be known exactly. Along the linear path $x_t = t x_1 + (1 - t) x_0$ is Gaussian with
# mean $t\mu$ and covariance $S_t = (1-t)^2 I + t^2 \Sigma$, and $x_1 - x_0$ is jointly Gaussian with it, with
# $\operatorname{Cov}(x_1 - x_0, x_t) = t\Sigma - (1 - t) I$. Conditioning a Gaussian gives
#
# $$v^*(x, t) = \mathbb E[x_1 - x_0 \mid x_t = x] = \mu + \big(t\Sigma - (1 - t) I\big)\, S_t^{-1} (x - t\mu),$$
#
# linear in $x$, and cheap: in the eigenbasis of $\Sigma = U \operatorname{diag}(\lambda) U^\top$ the matrix
# $S_t$ is diagonal. (It is the 2D formula of the gradient check above, with a full covariance.) What $v^*$ cannot
# predict has covariance $U \operatorname{diag}(\lambda / S_t) U^\top$: 1 per pixel near the data, the data's own
# variance near the noise. So the model keeps $v^*$ for $\mu, \Sigma$ fitted to the training images and lets the
# network learn only the correction, scaled by that standard deviation $s_t$:
#
# $$v_\theta(z, t) = v^*(z, t) + s_t \odot F_\theta(z, t).$$
#
# Lesson 06's diffusion model does the same with its noise predictor. $F_\theta$ is lesson 06's MLP on the 64
# pixels (it sees the whole digit) plus two 3×3 convolutions (they see neighbouring pixels, where the fine detail
# that a likelihood rewards lives); both start at zero, so the untrained model *is* the Gaussian. $\mu$ and
# $\Sigma$'s eigenvectors sit in buffers, so a saved `state_dict` holds everything needed to sample.

# %%
gencourse.show(fm.gaussian_velocity)
gencourse.show(fm.DigitsFlowMatching.velocity)

# %% [markdown]
# What the Gaussian alone gives, before any training (the same sampler as below, Heun with 5 steps):

# %%
train_images = data.load("digits", "train").images
gaussian_only = fm.DigitsFlowMatching().fit_gaussian(train_images).to(DEVICE)
g = torch.Generator().manual_seed(SEED)
q_gauss = metrics.sample_quality(gaussian_only.sample(N_SAMPLES, steps=5, method="heun", generator=g))
print(metrics.format_quality({"Gaussian v* alone (untrained)": q_gauss}))

# %% [markdown]
# Blurry strokes that the classifier often refuses: the Gaussian knows which pixels go together, not that a
# digit is made of sharp strokes. The recipe `fm.train_digits` fits the Gaussian, then trains the correction with
# the CFM loss, Adam with a short warm-up and a cosine decay to zero for a fixed number of epochs, and keeps the
# final weights (lesson 06's `train_annealed`; the validation loss, its draws fixed once, is recorded each epoch).

# %%
model, history = fm.train_digits(epochs=EPOCHS, seed=SEED, quick=QUICK, device=DEVICE)
history.plot(title="CFM loss per image")
plt.show()

# %%
settings = {"Euler, 10 steps": ("euler", 10), "Heun, 5 steps": ("heun", 5), "Heun, 10 steps": ("heun", 10)}
samples, quality, ms = {}, {}, {}
for name, (method, steps) in settings.items():
    g = torch.Generator().manual_seed(SEED)
    start = time.perf_counter()
    samples[name] = model.sample(N_SAMPLES, steps=steps, method=method, generator=g).cpu()
    ms[name] = (time.perf_counter() - start) * 1000 * 1000 / N_SAMPLES
    quality[f"{name} ({fm.nfe(method, steps)} NFE)"] = metrics.sample_quality(samples[name])
print(metrics.format_quality(quality))
for name, (method, steps) in settings.items():
    print(f"{name}: {fm.nfe(method, steps)} network evaluations per sample, {ms[name]:.0f} ms per 1000 samples")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
viz.image_grid(samples["Heun, 5 steps"][:40], nrow=10, ax=axes[0], title="flow matching, Heun 5 steps (10 NFE)")
viz.image_grid(data.load("digits", "test").images[:40], nrow=10, ax=axes[1], title="real test images")
plt.show()

# %% [markdown]
# The headline sampler is fixed in advance, as in lesson 09: Euler with 10 steps, 10 network evaluations (NFE).
# The goal: recognized at least 0.9 × real digits' at 10 NFE, with the guard of every sample-quality goal (all 10
# classes, memorization at least 0.8, so that copying the training set cannot meet it).

# %%
# NBVAL_CHECK_OUTPUT
headline = quality["Euler, 10 steps (10 NFE)"]
gencourse.headline("flow matching: recognized (Euler, 10 NFE)", headline["recognized"], "{:.2f}")
print(metrics.goal(headline, "recognized", 0.9), "(Euler, 10 NFE)")
real = metrics.reference_quality()
ok = headline["recall"] < real["recall"] and metrics.differs(headline, real, "recall")
print(f"{'PASS' if ok else 'FAIL'} the samples cover less of the real digits than real digits do: recall below "
      "real's (intervals separate)")
ok = not metrics.differs(headline, real, "label_entropy")
print(f"{'PASS' if ok else 'FAIL'} their classes are as balanced as real digits': label entropy within noise of real's")
keys = ("recognized", "frechet", "recall")
heun5 = quality["Heun, 5 steps (10 NFE)"]
ok = not any(metrics.beats(heun5, headline, k) for k in keys)
print(f"{'PASS' if ok else 'FAIL'} at 10 NFE, Heun (5 steps) beats Euler (10 steps) on no figure beyond noise "
      "(recognized, frechet, recall)")
ok = not any(metrics.differs(headline, quality["Heun, 10 steps (20 NFE)"], k) for k in keys)
print(f"{'PASS' if ok else 'FAIL'} Heun with 10 steps (20 NFE) is within noise of Euler with 10 (recognized, "
      "frechet, recall)")

# %% [markdown]
# Read the table: with the Gaussian doing the linear part and the network only the correction, 10 network
# evaluations give samples recognized nearly as often as real digits, across all ten classes, in balanced
# proportions. What is still missing shows in recall: fewer real digits have a sample close by than have a real
# digit close by, so the samples cover less of the variety of styles *within* the classes. At the same 10 NFE,
# Heun with 5 steps does no better than Euler with 10 on any figure, and Heun with 10 steps (20 NFE) stays within
# the intervals of Euler with 10: at this budget the learned velocity, not the integrator, is the limit.
# More epochs (a GPU: raise `EPOCHS`) improve the samples further.
#
# ### The test likelihood
#
# The same formula gives the digits' likelihood. With $D = 64$ dimensions an exact divergence costs 64
# autograd passes per network evaluation, so we use **Hutchinson's estimator**,
# $\nabla\!\cdot v = \mathbb E_\epsilon[\epsilon^\top \tfrac{\partial v}{\partial x} \epsilon]$ with Rademacher
# probes $\epsilon$ (2 probes, averaged, kept fixed along each path), and check it against the exact trace
# on a subset. The discrete bound adds the rescaling's log-det and the dequantization:
# $-\log P(k) \le -\log p_z(2y - 1) - D \ln 2 + D \ln 17$.
#
# The ODE must be integrated finely enough. Near the data the velocity sharpens the density fast (the Gaussian
# part alone divides by $S_t$, as small as $\lambda$), so the Heun steps sit at $t_j = 1 - (j/N)^2$, finer
# near $t = 1$; with a few equal steps the estimate comes out several nats too *low*, flattering the model.
# We print the figure with half the steps beside it. Caveats, stated: it is an ODE *estimate* of the model's
# bound, with one dequantization per image.

# %%
test, val = data.load("digits", "test"), data.load("digits", "val")
start = time.perf_counter()
torch.manual_seed(SEED)
nll_test = model.nll(test.images, steps=LIK_STEPS, divergence="hutchinson", probes=2)
nll_val = model.nll(val.images, steps=LIK_STEPS, divergence="hutchinson", probes=2)
lik_seconds = time.perf_counter() - start
torch.manual_seed(SEED)
nll_half = model.nll(test.images, steps=max(LIK_STEPS // 2, 1), divergence="hutchinson", probes=2)
n_sub, sub_steps = (8, 2) if QUICK else (16, 8)
torch.manual_seed(SEED)
exact_sub = model.nll(test.images[:n_sub], steps=sub_steps, divergence="exact")
torch.manual_seed(SEED)
hutch_sub = model.nll(test.images[:n_sub], steps=sub_steps, divergence="hutchinson", probes=2)
# the fitted Gaussian alone, in closed form (torch.distributions), on the same discrete scale
cov = gaussian_only.gauss_basis @ torch.diag(gaussian_only.gauss_var) @ gaussian_only.gauss_basis.T
gauss = torch.distributions.MultivariateNormal(gaussian_only.gauss_mean.cpu(), covariance_matrix=cov.cpu())
torch.manual_seed(SEED)
z_test = gaussian_only.to_z(test.images.to(DEVICE)).flatten(1).cpu()
nll_gauss = -(gauss.log_prob(z_test) + 64 * math.log(2)) + 64 * math.log(17)
bpd = lambda v: metrics.bits_per_dim(v, 64)
gencourse.headline("flow matching: test NLL bound (nats)", nll_test.mean(), "{:.1f}")
print(f"discrete NLL bound, digits (17 levels), {LIK_STEPS} Heun steps, Hutchinson 2 probes ({lik_seconds:.1f} s)")
print(f"  validation {nll_val.mean():.1f} nats ({bpd(nll_val.mean()):.3f} bits/dim)")
print(f"  test       {nll_test.mean():.1f} nats ({bpd(nll_test.mean()):.3f} bits/dim); "
      f"with {max(LIK_STEPS // 2, 1)} steps {nll_half.mean():.1f}")
print(f"  the fitted Gaussian alone (closed form), test: {nll_gauss.mean():.1f} nats ({bpd(nll_gauss.mean()):.3f} bits/dim)")
print(f"exact divergence vs Hutchinson on {n_sub} test images ({sub_steps} steps, same dequantization): "
      f"{exact_sub.mean():.1f} vs {hutch_sub.mean():.1f} nats")
realnvp = recipes.load("flow")  # lesson 05's recipe, from the checkpoint lesson 09 also loads
torch.manual_seed(SEED)
nll_realnvp = realnvp.nll(test.images).mean()
per_pixel = basics.train_digits()[0].nll(test.images).mean()  # lesson 01's baseline, exact
print(f"baselines on test: uniform over 17 levels {64 * math.log(17):.1f} nats, per-pixel categorical {per_pixel:.1f} nats")
print(f"for comparison on test: lesson 05's RealNVP (discrete bound) {nll_realnvp:.1f} nats; intro_dgm's flow matching\n"
      "  printed 105.4, which is not a valid likelihood (its trace estimate averages to zero and is integrated the wrong way)")

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'PASS' if (exact_sub.mean() - hutch_sub.mean()).abs() < 3 else 'FAIL'} Hutchinson's estimate agrees with the exact divergence within 3 nats per image")
print(f"{'PASS' if nll_test.mean() < 64 * math.log(17) else 'FAIL'} the test bound beats uniform over 17 levels (181.3 nats)")
print(f"{'PASS' if nll_test.mean() < nll_gauss.mean() - 10 else 'FAIL'} the test bound beats the fitted Gaussian's by more than 10 nats")
print(f"{'PASS' if nll_test.mean() > per_pixel else 'FAIL'} the test bound loses to the per-pixel categorical baseline")

# %% [markdown]
# The likelihood is a by-product: flow matching was trained for its velocities, not for the density of each
# image, and a maximum-likelihood flow such as lesson 05's is trained for exactly that. Here it shows: the
# bound **loses to the per-pixel categorical baseline** of lesson 01, a model that draws every pixel on its
# own. Near the data end of the path a small error in this small network's velocity spreads the density over
# many nearby grid points, and the likelihood pays for it, while samples (which only follow the velocity)
# stay good. Continuous-time models trained at scale do much better (Lipman et al. 2023 on CIFAR-10); this
# 20-second recipe does not. Lesson 09 shows the figure against the number of ODE steps: it rises towards
# its converged value as the steps grow, so a coarse solve flatters the model.
#
# ## Summary
#
# - Flow matching trains a continuous flow by regression: points on a path $x_t = \alpha_t x_1 + \sigma_t x_0$,
#   targets $u_t = \dot\alpha_t x_1 + \dot\sigma_t x_0$ ($x_1 - x_0$ for the linear path). The conditional
#   loss has the marginal loss's gradient (measured above).
# - Sampling is an ODE solve, and solvers are compared at equal network evaluations (NFE): on digits at 10 NFE,
#   Heun's second-order steps do no better than Euler's. The 2D table puts flow matching next to DDIM on the
#   same network; this small 2D model reaches every mode of the ring but does not separate them.
# - For Gaussian data the marginal velocity is closed-form and linear; on digits the network learns only the
#   correction to it, and 10 network evaluations give digits the classifier recognizes nearly as often as real ones.
# - The likelihood comes from the instantaneous change of variables; on digits we estimate it with
#   Hutchinson's trace estimator, reported as a discrete bound in nats and bits/dim; this recipe's bound loses
#   to the per-pixel baseline.
#
# **Next:** lesson 09 compares every family on the same digits, with the same metrics.
