"""Checks for lesson 08 (flow matching)."""
import torch

from gencourse import flow_matching as fm
from gencourse.exercises import Case, Mistake, run_check, under_seed

__all__ = ["cfm_loss_linear", "train_velocity_2d", "heun_sampler", "hutchinson_divergence",
           "gaussian_optimal_velocity"]


# ----------------------------------------------------------------------------------------------
# The conditional flow-matching loss on the linear path
# ----------------------------------------------------------------------------------------------

def _wavy_field(x, t):
    # a velocity that depends on position and time, nonlinearly, so each wrong input shows
    tt = t.view(-1, *([1] * (x.dim() - 1)))
    return torch.sin(1.3 * x + 2 * tt) - 0.5 * x * tt + 0.2


def _cfm_cases(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for shape, label in (((6, 2), "6 points in 2D"), ((3, 1, 8, 8), "3 images of 8x8"), ((5, 7), "5 vectors of 7")):
        x1, x0 = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        t = torch.rand(shape[0], generator=g)
        cases.append(Case(_wavy_field, x1, x0, t, label=label + ", one t per example"))
    return cases


def _reference_cfm(velocity_fn, x1, x0, t):
    # written out, independent of gencourse's path classes
    tt = t.view(-1, *([1] * (x1.dim() - 1)))
    xt = tt * x1 + (1 - tt) * x0
    return (velocity_fn(xt, t) - (x1 - x0)).pow(2).flatten(1).sum(1).mean()


def _cfm_reversed_target(velocity_fn, x1, x0, t):
    tt = t.view(-1, *([1] * (x1.dim() - 1)))
    xt = tt * x1 + (1 - tt) * x0
    return (velocity_fn(xt, t) - (x0 - x1)).pow(2).flatten(1).sum(1).mean()


def _cfm_swapped_ends(velocity_fn, x1, x0, t):
    tt = t.view(-1, *([1] * (x1.dim() - 1)))
    xt = tt * x0 + (1 - tt) * x1
    return (velocity_fn(xt, t) - (x1 - x0)).pow(2).flatten(1).sum(1).mean()


def _cfm_mean_over_dims(velocity_fn, x1, x0, t):
    tt = t.view(-1, *([1] * (x1.dim() - 1)))
    xt = tt * x1 + (1 - tt) * x0
    return (velocity_fn(xt, t) - (x1 - x0)).pow(2).mean()


def _cfm_at_data(velocity_fn, x1, x0, t):
    return (velocity_fn(x1, t) - (x1 - x0)).pow(2).flatten(1).sum(1).mean()


def cfm_loss_linear(fn):
    """``fn(velocity_fn, x1, x0, t) -> scalar``: the CFM loss of the linear path for given draws."""
    return run_check(
        "cfm_loss_linear", fn, _cfm_cases(), reference=_reference_cfm,
        hint="three steps: the point x_t on the straight line from the noise x0 (t = 0) to the data x1 (t = 1); "
             "the target, the time derivative of that line; the squared error of velocity_fn(x_t, t) against it, "
             "summed over each example's dimensions and averaged over the batch.",
        mistakes=[
            Mistake("the target points from the data to the noise: the velocity must carry the noise (t = 0) to the "
                    "data (t = 1), so it is d x_t / dt of the path, not its negative.", fn=_cfm_reversed_target),
            Mistake("the path runs the wrong way: at t = 0 the point must be the noise x0, at t = 1 the data x1.",
                    fn=_cfm_swapped_ends),
            Mistake("the squared error is averaged over the dimensions: the loss of eq. (3) is the squared norm of "
                    "each example's error (a sum over its dimensions), averaged over the batch.",
                    fn=_cfm_mean_over_dims),
            Mistake("the network is evaluated at the data x1: it must see the point x_t on the path, the only thing "
                    "it will see when it samples.", fn=_cfm_at_data),
        ])


# ----------------------------------------------------------------------------------------------
# A velocity network, built and trained on the 8-Gaussians ring
# ----------------------------------------------------------------------------------------------

MODES_GOAL, QUALITY_GOAL = 6, 0.6  # of 8 modes covered; share of samples within 2 std of a mode (real: 0.865)
_NOT_LEARNED = ("the model has not learned: its loss on held-out draws is that of a zero velocity. Does every step "
                "update the weights (the optimizer's step after the backward pass)?")
_REVERSED = ("the model learned a velocity that points from the data to the noise: its loss against x1 - x0 on "
             "held-out draws is worse than a zero velocity's. Check the target's sign.")
_NO_TIME = ("the velocity does not depend on t: the network must see the time, since the marginal velocity at a "
            "point changes along the path (pass t to the network).")
_TOO_FEW = ("the model trained, but its samples do not separate the ring's modes well enough. Train longer, or "
            "check that the noise and the times are drawn afresh for every batch.")


def _velocity_trainer(*, step=True, sign=1.0, use_time=True):
    """A learner's ``train_velocity_2d`` with one mistake switched on (each keyword off its default)."""
    from gencourse.nets import MLPDenoiser

    def train_velocity_2d(points, epochs=40, lr=3e-3, batch_size=256):
        net = MLPDenoiser(2, 128, 3)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in range(epochs):
            for batch in torch.randperm(len(points)).split(batch_size):
                x1 = points[batch]
                x0, t = torch.randn_like(x1), torch.rand(len(x1))
                xt = t[:, None] * x1 + (1 - t[:, None]) * x0
                v = net(xt, t if use_time else torch.zeros_like(t))  # without time: the same t for every x
                loss = (v - sign * (x1 - x0)).pow(2).sum(1).mean()
                optimizer.zero_grad()
                loss.backward()
                if step:
                    optimizer.step()
        return net if use_time else (lambda x, t: net(x, torch.zeros_like(t)))

    return train_velocity_2d


def _ring_points(n, seed):
    from gencourse.data import toy2d

    return toy2d("8gaussians", n, seed=seed)


@torch.no_grad()
def _compare_velocity(got, want, case):
    from gencourse.gan import ring_coverage

    if not callable(got):
        return False, f"expected the trained velocity (a network or function of (x, t)), got {type(got).__name__}"
    if isinstance(got, torch.nn.Module):
        got.eval()
    g = torch.Generator().manual_seed(11)
    x1 = _ring_points(2000, 12)
    x0, t = torch.randn(x1.shape, generator=g), torch.rand(len(x1), generator=g)
    xt = t[:, None] * x1 + (1 - t[:, None]) * x0
    try:
        v = got(xt, t)
    except Exception as err:  # the learner's network, called the way the lesson calls it
        return False, f"calling the velocity as velocity(x (B, 2), t (B,)) raised {type(err).__name__}: {err}"
    if not isinstance(v, torch.Tensor) or v.shape != xt.shape:
        return False, f"the velocity of x (B, 2) must have shape (B, 2), got {getattr(v, 'shape', type(v).__name__)}"
    if not torch.isfinite(v).all():
        return False, "the velocity is not finite (NaN or infinity)"
    loss = (v - (x1 - x0)).pow(2).sum(1).mean().item()
    zero = (x1 - x0).pow(2).sum(1).mean().item()
    if loss > 1.02 * zero:
        return False, _REVERSED + f" (held-out loss {loss:.2f}, zero velocity {zero:.2f})"
    if loss > 0.95 * zero:
        return False, _NOT_LEARNED + f" (held-out loss {loss:.2f}, zero velocity {zero:.2f})"
    if (got(xt, torch.zeros_like(t)) - got(xt, torch.full_like(t, 0.9))).abs().max() < 1e-6:
        return False, _NO_TIME
    q = ring_coverage(fm.heun_sample(got, torch.randn(2000, 2, generator=g), 10))
    if q["modes_covered"] >= MODES_GOAL and q["high_quality"] >= QUALITY_GOAL:
        return True, ""
    return False, _TOO_FEW + (f" (modes covered {q['modes_covered']} of 8, goal >= {MODES_GOAL}; near a mode "
                              f"{q['high_quality']:.2f}, goal >= {QUALITY_GOAL})")


def train_velocity_2d(fn):
    """``fn(points) -> velocity``: build a velocity network and train it with the CFM loss on 4000 ring points.

    Judged by what it learned: a held-out CFM loss below a zero velocity's, a velocity that depends on ``t``, and
    samples (10 Heun steps) that cover at least ``MODES_GOAL`` of the 8 modes with at least ``QUALITY_GOAL`` of
    them near a mode. The learner's function runs under a fixed torch seed (the lesson's random state is kept).
    """
    fn = under_seed(fn)
    cases = [Case(_ring_points(4000, 0), label=f"trained on 4000 points of the ring, judged by 2000 samples "
                                               f"(goal: >= {MODES_GOAL} modes covered, >= {QUALITY_GOAL} near a mode)")]
    return run_check(
        "train_velocity_2d", fn, cases, expected=[None], compare=_compare_velocity,
        hint="a network that takes (x (B, 2), t (B,)) and returns (B, 2) (nets.MLPDenoiser(2, 128, 3) does); "
             "Adam over shuffled minibatches for the given epochs; in each batch draw fresh noise and times and "
             "minimize your cfm_loss_linear; return the network.",
        mistakes=[
            Mistake(_NOT_LEARNED, example=_velocity_trainer(step=False)),
            Mistake(_REVERSED, example=_velocity_trainer(sign=-1.0)),
            Mistake(_NO_TIME, example=_velocity_trainer(use_time=False)),
        ])


# ----------------------------------------------------------------------------------------------
# Heun's sampler
# ----------------------------------------------------------------------------------------------

def _rotation_field(x, t):
    # dx/dt = A x + b(t): a rotation plus a time-dependent drift
    a = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=x.dtype)
    return x @ a.T + torch.stack([t, -t * t], dim=1)


def _shrink_field(x, t):
    return -x * (1 + 2 * t).view(-1, *([1] * (x.dim() - 1)))


def _heun(velocity_fn, x0, steps, *, second_time=1.0, weights=(0.5, 0.5)):
    x, h = x0.clone(), 1.0 / steps
    for i in range(steps):
        t = torch.full((len(x),), i * h, dtype=x.dtype)
        v = velocity_fn(x, t)
        v2 = velocity_fn(x + h * v, t + second_time * h)
        x = x + h * (weights[0] * v + weights[1] * v2)
    return x


def _reference_heun(velocity_fn, x0, steps):
    return _heun(velocity_fn, x0, steps)


def heun_sampler(fn):
    """``fn(velocity_fn, x0, steps) -> x_1``: Heun's method from t = 0 to 1 in ``steps`` equal steps."""
    g = torch.Generator().manual_seed(2)
    cases = [Case(_rotation_field, torch.randn(6, 2, generator=g), 1, label="a rotating field with drift, 1 step"),
             Case(_rotation_field, torch.randn(6, 2, generator=g), 7, label="a rotating field with drift, 7 steps"),
             Case(_shrink_field, torch.randn(3, 1, 4, 4, generator=g), 5, label="a shrinking field on images, 5 steps")]
    return run_check(
        "heun_sampler", fn, cases, reference=_reference_heun,
        hint="each step predicts with Euler, x' = x + h v(x, t), evaluates the velocity again at the predicted "
             "point and the END of the step, and moves from x by h times the average of the two velocities.",
        mistakes=[
            Mistake("the second velocity is read at the start of the step: it belongs at the predicted point and "
                    "the end of the step, t + h.", fn=lambda v, x0, s: _heun(v, x0, s, second_time=0.0)),
            Mistake("this is Euler's method: the second evaluation is not used. Heun averages the velocity at the "
                    "start with the one at the predicted end.", fn=lambda v, x0, s: _heun(v, x0, s, weights=(1, 0))),
            Mistake("the step uses only the second velocity: Heun's step is the average of both (the trapezoid "
                    "rule).", fn=lambda v, x0, s: _heun(v, x0, s, weights=(0, 1))),
        ])


# ----------------------------------------------------------------------------------------------
# Hutchinson's estimator of the divergence
# ----------------------------------------------------------------------------------------------

def _linear_field(a):
    return lambda x, t: (x @ a.T) * (1 + t.view(-1, 1))


def _mlp_field(seed):
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(5, 16, generator=g) / 2, torch.randn(16, 5, generator=g) / 4

    def field(x, t):
        return torch.tanh(x @ w1 + t.view(-1, 1)) @ w2
    return field


def _hutchinson_cases():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(3, 3, generator=g)
    cases = []
    for field, dim, label in ((_linear_field(a), 3, "a linear field (1 + t) A x in 3D"),
                              (_mlp_field(5), 5, "a small tanh network in 5D")):
        x, t = torch.randn(7, dim, generator=g), torch.rand(7, generator=g)
        eps = (torch.randint(0, 2, (7, dim), generator=g) * 2 - 1).float()
        cases.append(Case(field, x, t, eps, label=label + ", Rademacher probes"))
    return cases


def _reference_hutchinson(velocity_fn, x, t, eps):
    # the full Jacobian of each example by autograd, then eps^T J eps: independent of the vector-Jacobian trick
    out = []
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda y: velocity_fn(y[None], t[i:i + 1])[0], x[i])
        out.append(eps[i] @ jac @ eps[i])
    return torch.stack(out)


def _hutch_no_jacobian(velocity_fn, x, t, eps):
    return (velocity_fn(x, t) * eps).sum(1)


def _hutch_missing_eps(velocity_fn, x, t, eps):
    x = x.detach().requires_grad_(True)
    g, = torch.autograd.grad(velocity_fn(x, t), x, grad_outputs=eps)
    return g.sum(1)


def _hutch_mean(velocity_fn, x, t, eps):
    x = x.detach().requires_grad_(True)
    g, = torch.autograd.grad(velocity_fn(x, t), x, grad_outputs=eps)
    return (g * eps).mean(1)


def hutchinson_divergence(fn):
    """``fn(velocity_fn, x, t, eps) -> (B,)``: Hutchinson's estimate ``eps^T (dv/dx) eps`` for given probes."""
    return run_check(
        "hutchinson_divergence", fn, _hutchinson_cases(), reference=_reference_hutchinson,
        hint="one vector-Jacobian product: make x require gradients, evaluate the velocity there, and ask "
             "autograd for its gradient with the probes as grad_outputs; that is eps^T J per example. Multiply it "
             "by eps and sum over each example's dimensions.",
        mistakes=[
            Mistake("eps^T v is not the divergence: the estimator needs the Jacobian dv/dx between the two probes, "
                    "eps^T (dv/dx) eps, obtained with one backward pass.", fn=_hutch_no_jacobian),
            Mistake("eps^T J alone is a vector: the estimate multiplies it by eps once more, eps^T J eps, summed "
                    "over each example's dimensions.", fn=_hutch_missing_eps),
            Mistake("the estimate is averaged over the dimensions: the trace is a sum over them.", fn=_hutch_mean),
        ])


# ----------------------------------------------------------------------------------------------
# The optimal velocity for Gaussian data
# ----------------------------------------------------------------------------------------------

def _gauss_cases():
    g = torch.Generator().manual_seed(6)
    cases = []
    for dim, n, label in ((2, 5, "2D data"), (64, 4, "64 pixels")):
        mu, var = torch.randn(dim, generator=g), torch.rand(dim, generator=g) * 2 + 0.05
        x = torch.randn(n, dim, generator=g) * 2
        t = torch.tensor([0.0, 0.3, 0.7, 0.99, 0.5][:n])
        cases.append(Case(x, t, mu, var, label=label + ", t from 0 to 0.99"))
    return cases


def _reference_gauss(x, t, mu, var):
    # by Gaussian conditioning of the pair (x1 - x0, x_t), each coordinate on its own (a 2x2 joint covariance)
    t = t.view(-1, 1).double()
    mu, var, x = mu.double(), var.double(), x.double()
    cov_ux = t * var - (1 - t)                      # Cov(x1 - x0, t x1 + (1 - t) x0)
    var_x = t**2 * var + (1 - t) ** 2               # Var(x_t)
    return (mu + cov_ux / var_x * (x - t * mu)).float()


def gaussian_optimal_velocity(fn):
    """``fn(x, t, mu, var) -> (B, D)``: ``E[x1 - x0 | x_t = x]`` on the linear path for data ``N(mu, diag(var))``."""
    def _t_not_squared(x, t, mu, var):
        t = t.view(-1, 1)
        return mu + (t * var - (1 - t)) / ((1 - t) ** 2 + t * var) * (x - t * mu)

    def _no_noise_term(x, t, mu, var):
        t = t.view(-1, 1)
        return mu + t * var / ((1 - t) ** 2 + t ** 2 * var) * (x - t * mu)

    def _centred_at_mu(x, t, mu, var):
        t = t.view(-1, 1)
        return mu + (t * var - (1 - t)) / ((1 - t) ** 2 + t ** 2 * var) * (x - mu)

    return run_check(
        "gaussian_optimal_velocity", fn, _gauss_cases(), reference=_reference_gauss, rtol=1e-4, atol=1e-4,
        hint="x_t = t x1 + (1 - t) x0 and the target x1 - x0 are jointly Gaussian. Write the mean of each, "
             "Var(x_t) and Cov(x1 - x0, x_t) per coordinate, then condition: E[a | b] = E[a] + Cov(a, b) / Var(b) "
             "(b - E[b]).",
        mistakes=[
            Mistake("Var(x_t) has t^2 var, not t var: x_t holds t x1, whose variance is t^2 times the data's.",
                    fn=_t_not_squared),
            Mistake("the covariance misses the noise's part: x1 - x0 and x_t share x0 too, which adds -(1 - t) to "
                    "Cov(x1 - x0, x_t).", fn=_no_noise_term),
            Mistake("x_t is centred at mu: its mean is t mu (the noise has mean 0), so the deviation is x - t mu.",
                    fn=_centred_at_mu),
        ])
