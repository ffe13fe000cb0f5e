"""Checks for lesson 06 (diffusion models).

- ``diffusion_q_sample``: a draw of q(x_t | x_0) for a batch with one index per example;
- ``diffusion_training_loss``: Ho et al.'s L_simple, the mean squared error of the predicted noise;
- ``ddpm_reverse_step``: one ancestral step, the posterior mean with x_0 replaced by its estimate from the noise;
- ``train_eps_model``: a noise predictor for 2D points built and trained in seconds, judged by the samples that the
  course's ancestral sampler draws with it;
- ``ddim_update``: the DDIM update between any two indices.

Each check declares its typical mistakes (:class:`gencourse.exercises.Mistake`); the first four are recognized by
their outputs on the cases, the build-and-train check's by probing the learner's trained noise predictor.
"""
import torch

from gencourse import data
from gencourse import diffusion as D
from gencourse.exercises import Case, Mistake, close, run_check

__all__ = ["diffusion_q_sample", "diffusion_training_loss", "ddpm_reverse_step", "train_eps_model", "ddim_update"]


def _schedules():
    return [(D.NoiseSchedule.linear(100), "linear T=100"), (D.NoiseSchedule.cosine(50), "cosine T=50")]


def _bcast(values, like):
    """``values (B,)`` -> ``(B, 1, ..., 1)`` to broadcast over ``like (B, ...)`` (for the mistakes' answers)."""
    return values.to(like.dtype).view(-1, *[1] * (like.dim() - 1))


# ----------------------------------------------------------------------------------------------
# 1. q(x_t | x_0)
# ----------------------------------------------------------------------------------------------

def _q_one_step_alpha(schedule, x0, t, noise):
    a = _bcast(schedule.alphas[t], x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def _q_no_square_roots(schedule, x0, t, noise):
    abar = _bcast(schedule.alphas_cumprod[t], x0)
    return abar * x0 + (1 - abar) * noise


def _q_swapped(schedule, x0, t, noise):
    abar = _bcast(schedule.alphas_cumprod[t], x0)
    return (1 - abar).sqrt() * x0 + abar.sqrt() * noise


Q_SAMPLE_MISTAKES = [
    Mistake("the noise level is one step's alpha_t: x_t is reached from x_0 through all steps 0..t, so its signal "
            "factor is the product of the alphas up to t (the cumulative product, abar_t).", fn=_q_one_step_alpha),
    Mistake("the coefficients are variances where standard deviations belong: x_t's signal part has variance "
            "abar_t and its noise part variance 1 - abar_t, so each multiplies by the square root.",
            fn=_q_no_square_roots),
    Mistake("the two coefficients are swapped: at small t (abar_t near 1) x_t must be nearly x_0, so the data's "
            "factor is the one that goes to 1 with abar_t.", fn=_q_swapped),
]


def diffusion_q_sample(fn):
    """``fn(schedule, x0, t, noise) -> x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for (s, name), shape in zip(_schedules(), [(4, 2), (3, 1, 8, 8)]):
        t = torch.randint(1, s.T, (shape[0],), generator=g)
        cases.append(Case(s, torch.randn(shape, generator=g), t, torch.randn(shape, generator=g),
                          label=f"{name}, x0 {shape}, t = {t.tolist()}"))
    s = D.NoiseSchedule.linear(100)
    cases.append(Case(s, torch.randn(2, 3, generator=g), torch.tensor([0, 99]), torch.randn(2, 3, generator=g),
                      label="linear T=100, the first and the last index"))
    return run_check(
        "diffusion_q_sample", fn, cases, reference=lambda s, x0, t, noise: s.q_sample(x0, t, noise),
        mistakes=Q_SAMPLE_MISTAKES,
        hint="x_t keeps the fraction sqrt(abar_t) of the signal and adds noise of standard deviation "
             "sqrt(1 - abar_t), where abar_t is the cumulative product of the alphas up to index t. Each example of "
             "the batch has its own index, so its own abar_t must multiply all of that example's entries (and only "
             "them), whatever the number of dimensions after the batch one.")


# ----------------------------------------------------------------------------------------------
# 2. The training loss L_simple
# ----------------------------------------------------------------------------------------------

class _ToyPredictor:
    """A fixed noise predictor for the checks: ``eps(x_t, t) = 0.5 tanh(x_t) + t / T``."""

    def __init__(self, T):
        self.T = T

    def __call__(self, xt, t):
        return 0.5 * torch.tanh(xt) + (t.float() / self.T).view(-1, *[1] * (xt.dim() - 1))

    def __repr__(self):
        return "toy predictor"


def _xt(schedule, x0, t, noise):
    abar = _bcast(schedule.alphas_cumprod[t], x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def _loss_regresses_x0(eps_model, schedule, x0, t, noise):
    return ((x0 - eps_model(_xt(schedule, x0, t, noise), t)) ** 2).mean()


def _loss_regresses_xt(eps_model, schedule, x0, t, noise):
    xt = _xt(schedule, x0, t, noise)
    return ((xt - eps_model(xt, t)) ** 2).mean()


def _loss_summed(eps_model, schedule, x0, t, noise):
    return ((noise - eps_model(_xt(schedule, x0, t, noise), t)) ** 2).sum()


def _loss_summed_over_dims(eps_model, schedule, x0, t, noise):
    return ((noise - eps_model(_xt(schedule, x0, t, noise), t)) ** 2).flatten(1).sum(1).mean()


def _loss_sees_x0(eps_model, schedule, x0, t, noise):
    return ((noise - eps_model(x0, t)) ** 2).mean()


LOSS_MISTAKES = [
    Mistake("the network's output is compared with the clean data x_0: it is a noise predictor, so its target is "
            "the noise that made x_t.", fn=_loss_regresses_x0),
    Mistake("the network's output is compared with its own input x_t: its target is the noise that made x_t.",
            fn=_loss_regresses_xt),
    Mistake("the squared errors are summed: L_simple is their mean over the batch and every dimension, one number "
            "that does not grow with the batch size.", fn=_loss_summed),
    Mistake("the squared errors are summed over each example's dimensions and averaged over the batch only: "
            "average over the dimensions too.", fn=_loss_summed_over_dims),
    Mistake("the network is shown the clean x_0: it must predict the noise from the noised x_t (from x_0, t and the "
            "given noise by the forward process), which is all it will have when sampling.", fn=_loss_sees_x0),
]


def diffusion_training_loss(fn):
    """``fn(eps_model, schedule, x0, t, noise) -> scalar``: mean of ``(noise - eps_model(x_t, t))^2``."""
    g = torch.Generator().manual_seed(1)
    cases = []
    for (s, name), shape in zip(_schedules(), [(8, 2), (5, 1, 8, 8)]):
        t = torch.randint(0, s.T, (shape[0],), generator=g)
        cases.append(Case(_ToyPredictor(s.T), s, torch.randn(shape, generator=g), t, torch.randn(shape, generator=g),
                          label=f"{name}, x0 {shape}"))
    return run_check(
        "diffusion_training_loss", fn, cases, reference=D.noise_prediction_loss, mistakes=LOSS_MISTAKES,
        hint="noise the clean data by the forward process with the given t and noise (your first exercise), show "
             "the network the noised points and their indices, and score its answer against the noise that was "
             "added: the mean squared difference over the batch and every dimension, one number.")


# ----------------------------------------------------------------------------------------------
# 3. One ancestral step (the posterior mean in the noise form)
# ----------------------------------------------------------------------------------------------

def _step_cases(seed):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for s, name in _schedules():
        for t in (s.T - 1, s.T // 3, 0):
            xt, eps, noise = (torch.randn(3, 4, generator=g) for _ in range(3))
            cases.append(Case(s, eps, xt, t, noise, label=f"{name}, t = {t}"))
    return cases


def _make_ddpm(*, variance="posterior", noise_at_0=False, alpha="alpha", eps_coef="sqrt"):
    def step(schedule, eps, xt, t, noise):
        beta, alpha_t, abar = schedule.betas[t], schedule.alphas[t], schedule.alphas_cumprod[t]
        scale = abar if alpha == "abar" else alpha_t
        coef = beta / (1 - abar).sqrt() if eps_coef == "sqrt" else beta / (1 - abar)
        mean = (xt - coef * eps) / scale.sqrt()
        if t == 0 and not noise_at_0:
            return mean
        abar_prev = schedule.alphas_cumprod[t - 1]  # index -1 at t = 0: the LAST entry
        var = beta if variance == "beta" else beta * (1 - abar_prev) / (1 - abar)
        return mean + var.sqrt() * noise
    return step


DDPM_MISTAKES = [
    Mistake("the step's variance is beta_t, the forward step's: the reverse step uses the posterior's variance "
            "beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t).", fn=_make_ddpm(variance="beta")),
    Mistake("noise is added at t = 0: the last step returns the mean (there abar_{t-1} = 1, so beta~_0 = 0; "
            "the index t - 1 = -1 would read the LAST entry of the schedule).", fn=_make_ddpm(noise_at_0=True)),
    Mistake("the mean divides by sqrt(abar_t): one reverse step undoes one forward step, which scaled x by "
            "sqrt(alpha_t), so the mean divides by sqrt(alpha_t).", fn=_make_ddpm(alpha="abar")),
    Mistake("the noise's coefficient in the mean divides beta_t by 1 - abar_t: it divides by its square root, "
            "the standard deviation of the noise in x_t.", fn=_make_ddpm(eps_coef="plain")),
]


def ddpm_reverse_step(fn):
    """``fn(schedule, eps, xt, t, noise) -> x_{t-1}``: one ancestral step, no noise added at ``t = 0``."""
    return run_check(
        "ddpm_reverse_step", fn, _step_cases(2), reference=D.ddpm_step, rtol=1e-4, atol=1e-5,
        mistakes=DDPM_MISTAKES,
        hint="the step's mean is the posterior mean of q(x_{t-1} | x_t, x_0) with x_0 replaced by its estimate from "
             "x_t and the predicted noise; substituting gives a mean in x_t and eps alone (section 3). Its variance "
             "is the posterior's beta~_t, which vanishes at index 0, where the step returns the mean and no noise.")


# ----------------------------------------------------------------------------------------------
# 4. Build and train a noise predictor (judged by its samples)
# ----------------------------------------------------------------------------------------------

TRAIN_T = 50
TOLERANCE = 1.75

NO_TIME = ("the network's prediction does not depend on t: it gives the same noise estimate at every noise level, "
           "but how much of x_t is noise depends on the level. Give the network the time (t / T, or an embedding "
           "of it) as an input.")
PREDICTS_DATA = ("the network predicts the clean data (or x_t itself), not the noise: its outputs are closer to "
                 "x_0 than to the noise that was added, but the sampler reads them as the noise. Regress the noise.")
NOT_LEARNED = ("the trained model predicts the noise no better than the constant guess 0 (noise-prediction loss "
               "near 1 or above): the network has not learned. Does each step compute the loss on a batch, clear the "
               "old gradients, call backward and step the optimizer?")
OFF_DATA = ("the samples lie farther from the data, or cover it worse, than {tol} x what held-out real points "
            "achieve: the model has learned something (its noise-prediction loss is {loss:.2f}) but not enough. "
            "Train longer, or with a wider network.")

def _train_case(seed):
    return Case(seed, label=f"2000 moons points (seed {seed}), cosine schedule T = {TRAIN_T}, 2000 samples")


def _distances(samples, seed):
    """(samples -> fresh data, held-out -> samples, the same two for held-out real points): median distances."""
    fresh, held = data.toy2d("moons", 5000, seed=seed + 100), data.toy2d("moons", 2000, seed=seed + 101)
    other = data.toy2d("moons", 2000, seed=seed + 102)
    med = lambda a, b: torch.cdist(a, b).min(1).values.median().item()
    return med(samples, fresh), med(held, samples), med(held, fresh), med(held, other)


def _probe(eps_model, points, schedule):
    """Probe the predictor on noised data: does it use t, what does it regress, its noise-prediction loss."""
    g = torch.Generator().manual_seed(7)
    x0 = points[torch.randint(len(points), (1000,), generator=g)]
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, schedule.T, (len(x0),), generator=g)
    xt = schedule.q_sample(x0, t, noise)
    with torch.no_grad():
        out = torch.as_tensor(eps_model(xt, t)).float()
        early = torch.as_tensor(eps_model(xt, torch.zeros_like(t))).float()
        late = torch.as_tensor(eps_model(xt, torch.full_like(t, schedule.T - 1))).float()
    ignores_time = bool(torch.allclose(early, late, atol=1e-6))
    mse = lambda target: ((out - target) ** 2).mean().item()
    return ignores_time, mse(noise), min(mse(x0), mse(xt))


def _train_outcome(fn, seed):
    points, schedule = data.toy2d("moons", 2000, seed=seed), D.NoiseSchedule.cosine(TRAIN_T)
    with torch.random.fork_rng(devices=[]):  # the verdict must not depend on the lesson's random state
        torch.manual_seed(0)
        eps_model = fn(points, schedule)
    if not callable(eps_model):
        return f"expected a function eps_model(xt, t), got {type(eps_model).__name__}"
    g = torch.Generator().manual_seed(99)
    try:
        with torch.no_grad():
            out = eps_model(torch.zeros(5, 2), torch.full((5,), schedule.T // 2, dtype=torch.long))
        if not isinstance(out, torch.Tensor) or out.shape != (5, 2):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return f"eps_model(xt (B, 2), t (B,)) must return a noise estimate of shape (B, 2), got {shape}"
        samples, _ = D.sample_ancestral(eps_model, schedule, torch.randn(2000, 2, generator=g), generator=g)
        probe = _probe(eps_model, points, schedule)
    except Exception as err:  # the learner's model, called by the sampler
        return f"your eps_model raised {type(err).__name__}: {err}"
    samples = samples.detach().float()
    if not torch.isfinite(samples).all():
        return ("the samples are not finite", probe)
    return _distances(samples, seed), probe


def _compare_training(got, want, case):
    if isinstance(got, str):
        return False, got
    dist, (ignores_time, loss, data_mse) = got
    if not isinstance(dist, str):
        on, covered, on_real, covered_real = dist
        if on <= TOLERANCE * on_real and covered <= TOLERANCE * covered_real:
            return True, ""
        summary = (f"median distance sample -> data {on:.3f} (real points: {on_real:.3f}), held-out -> samples "
                   f"{covered:.3f} (real points: {covered_real:.3f})")
    else:
        summary = dist
    if ignores_time:
        return False, f"{summary}: {NO_TIME}"
    if data_mse < loss:
        return False, f"{summary}: {PREDICTS_DATA}"
    if loss >= 0.9:
        return False, f"{summary}: {NOT_LEARNED} (loss {loss:.2f})"
    return False, f"{summary}: {OFF_DATA.format(tol=TOLERANCE, loss=loss)}"


def fit_eps_reference(points, schedule, *, steps=1500, time_input=True, target="noise", optimizer_steps=True):
    """The exercise's recipe (an MLP on (x_t, t / T), Adam, batches of 256), or one of its typical mistakes."""
    T = schedule.T
    net = torch.nn.Sequential(torch.nn.Linear(3, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128), torch.nn.SiLU(),
                              torch.nn.Linear(128, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)

    def eps_model(xt, t):
        time = t.float()[:, None] / T if time_input else torch.zeros(len(xt), 1)
        return net(torch.cat([xt, time], 1))

    for _ in range(steps):
        x0 = points[torch.randint(len(points), (256,))]
        t = torch.randint(0, T, (len(x0),))
        noise = torch.randn_like(x0)
        out = eps_model(schedule.q_sample(x0, t, noise), t)
        loss = ((out - (noise if target == "noise" else x0)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        if optimizer_steps:
            optimizer.step()
    return eps_model


def _fit_without_time(points, schedule):
    return fit_eps_reference(points, schedule, steps=500, time_input=False)


def _fit_regressing_x0(points, schedule):
    return fit_eps_reference(points, schedule, steps=500, target="x0")


def _fit_without_optimizer_steps(points, schedule):
    return fit_eps_reference(points, schedule, steps=300, optimizer_steps=False)


TRAIN_MISTAKES = [Mistake(NO_TIME, example=_fit_without_time),
                  Mistake(PREDICTS_DATA, example=_fit_regressing_x0),
                  Mistake(NOT_LEARNED, example=_fit_without_optimizer_steps)]


def _run_training(fn):
    def run(seed):
        return _train_outcome(fn, seed)
    return run


def train_eps_model(fn):
    """``fn(points (N, 2), schedule) -> eps_model(xt (B, 2), t LongTensor (B,)) -> (B, 2)``: a noise predictor
    built and trained on 2D points, judged by what the course's ancestral sampler draws with it.

    Passes when 2000 samples lie as close to fresh data points, and cover held-out points, as well as held-out real
    points do, within a factor 1.75 (median nearest-neighbour distances); the reference reaches 1.1 to 1.4 on seeds
    0-2 and 10 in about 2.5 s. A failure is diagnosed by probing the predictor: a prediction independent of t, a
    prediction closer to x_0 than to the noise, a noise-prediction loss no better than predicting 0."""
    return run_check(
        "train_eps_model", _run_training(fn), [_train_case(10)], expected=[None], compare=_compare_training,
        mistakes=TRAIN_MISTAKES,
        hint="one network serves every noise level, so it needs both the noised point and the time as inputs, and "
             "its output is the noise estimate (2 numbers). Each training step draws a batch of data points, a "
             "random index and fresh Gaussian noise per point, noises the points by the forward process, and "
             "minimizes the noise-prediction loss of your second exercise with Adam; a thousand or more steps of "
             "batches of a few hundred points.")


# ----------------------------------------------------------------------------------------------
# 5. DDIM
# ----------------------------------------------------------------------------------------------

def _make_ddim(*, wrap=False, sigma_in_eps=True, sigma_full=True, x0_sqrt=True):
    def update(schedule, eps, xt, t, t_prev, eta, noise):
        abar = schedule.alphas_cumprod[t]
        abar_prev = schedule.alphas_cumprod[t_prev] if (t_prev >= 0 or wrap) else torch.tensor(1.0)
        x0_hat = (xt - (1 - abar).sqrt() * eps) / (abar.sqrt() if x0_sqrt else abar)
        ratio = (1 - abar_prev) / (1 - abar) if sigma_full else torch.tensor(1.0)
        sigma = eta * (ratio * (1 - abar / abar_prev)).sqrt()
        coef = (1 - abar_prev - sigma ** 2) if sigma_in_eps else (1 - abar_prev)
        return abar_prev.sqrt() * x0_hat + coef.clamp(min=0).sqrt() * eps + sigma * noise
    return update


DDIM_MISTAKES = [
    Mistake("t_prev = -1 reads the LAST entry of alphas_cumprod (Python's index -1), the noisiest level: a negative "
            "t_prev means the clean sample, abar_prev = 1.", fn=_make_ddim(wrap=True)),
    Mistake("the noise's share sigma^2 is missing under the square root of eps's coefficient: the variance of "
            "x_prev around sqrt(abar_prev) x0_hat is 1 - abar_prev in all, split between eps and the fresh noise.",
            fn=_make_ddim(sigma_in_eps=False)),
    Mistake("sigma lacks the factor sqrt((1 - abar_prev) / (1 - abar_t)) of eq. 16: with eta = 1 and t_prev = t - 1 "
            "sigma^2 must equal the posterior variance beta~_t.", fn=_make_ddim(sigma_full=False)),
    Mistake("x0_hat divides by abar_t: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, so solving for x_0 divides by "
            "its square root.", fn=_make_ddim(x0_sqrt=False)),
]


def _close_or_same_nans(got, want, case):
    """Numeric comparison in which NaN matches NaN at the same places (the reference never gives NaN, so this only
    lets a mistake that produces NaN be recognized)."""
    if isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor) and got.shape == want.shape:
        g, w = got.detach().double(), want.detach().double()
        if torch.isnan(g).any() and torch.equal(torch.isnan(g), torch.isnan(w)):
            keep = ~torch.isnan(g)
            return close(g[keep], w[keep], rtol=1e-4, atol=1e-5)
    return close(got, want, rtol=1e-4, atol=1e-5)


def ddim_update(fn):
    """``fn(schedule, eps, xt, t, t_prev, eta, noise) -> x at t_prev``: the DDIM update (t_prev < 0: clean)."""
    g = torch.Generator().manual_seed(3)
    cases = []
    for s, name in _schedules():
        for t, t_prev, eta in ((s.T - 1, s.T // 2, 0.0), (s.T // 2, s.T // 4, 1.0), (s.T // 4, 3, 0.5), (3, -1, 0.0)):
            xt, eps, noise = (torch.randn(3, 4, generator=g) for _ in range(3))
            cases.append(Case(s, eps, xt, t, t_prev, eta, noise, label=f"{name}, {t} -> {t_prev}, eta = {eta}"))
    return run_check(
        "ddim_update", fn, cases, reference=D.ddim_step, compare=_close_or_same_nans, mistakes=DDIM_MISTAKES,
        hint="estimate x_0 from x_t and eps by inverting the forward process; rebuild the sample at t_prev from that "
             "estimate at t_prev's signal level, plus eps and fresh noise sharing the remaining variance "
             "1 - abar_prev (sigma^2 to the fresh noise, with sigma from eq. 16). A negative t_prev means the clean "
             "end of the chain, where abar = 1.")
