"""Checks for lesson 05 (normalizing flows).

References are independent of the package's formulas where the exercise is a formula: the inverse is checked
by composing with :func:`gencourse.flows.coupling_forward`, the logit log-det against autograd, the variational
dequantization bound against ``torch.distributions`` (a Gaussian pushed through a sigmoid). The coupling flow the
learner builds and trains is checked by what it achieves: a normalized density and a held-out NLL.
"""
import math

import torch
from torch import distributions as D
from torch import nn

from gencourse import basics, data, flows, viz
from gencourse.exercises import Case, Mistake, run_check

__all__ = ["affine_coupling_forward", "affine_coupling_inverse", "fit_moons_flow", "logit_transform",
           "variational_dequantization_bound"]


# ----------------------------------------------------------------------------------------------
# The coupling layer and its inverse
# ----------------------------------------------------------------------------------------------

def _coupling_cases(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for b, d, mask, label in ((4, 2, [1.0, 0.0], "2D points, mask [1, 0]"),
                              (3, 6, [0.0, 1.0, 0.0, 1.0, 0.0, 1.0], "6-vectors, alternating mask"),
                              (2, 5, [0.0, 0.0, 1.0, 1.0, 0.0], "5-vectors, mask [0, 0, 1, 1, 0]")):
        x = torch.randn(b, d, generator=g, dtype=torch.float64)
        s, t = torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)
        cases.append(Case(x, torch.tensor(mask, dtype=torch.float64), s, t, label=label))
    return cases


def _forward_log_det_all(x, mask, s, t):
    z, _ = flows.coupling_forward(x, mask, s, t)
    return z, s.sum(1)


def _forward_log_det_kept(x, mask, s, t):
    z, _ = flows.coupling_forward(x, mask, s, t)
    return z, (mask * s).sum(1)


def _forward_all_entries(x, mask, s, t):
    return x * torch.exp(s) + t, ((1 - mask) * s).sum(1)


def _forward_exp_minus_s(x, mask, s, t):
    keep = 1 - mask
    return mask * x + keep * (x * torch.exp(-s) + t), (keep * s).sum(1)


def affine_coupling_forward(fn):
    """``fn(x, mask, s, t) -> (z, log_det)``: the affine coupling, data to latent."""
    return run_check(
        "affine_coupling_forward", fn, _coupling_cases(), reference=flows.coupling_forward,
        hint="the entries with mask 1 are copied unchanged; the others are scaled by e^s and shifted by t. The "
             "Jacobian is triangular, so log|det| is the sum of the logs of its diagonal: one number per example, "
             "from the transformed entries only.",
        mistakes=[
            Mistake("the log-det sums s over every entry: the copied entries (mask 1) have a 1 on the Jacobian's "
                    "diagonal, and log 1 = 0, whatever s holds there", _forward_log_det_all),
            Mistake("the log-det sums s over the copied entries (mask 1) instead of the transformed ones (mask 0)",
                    _forward_log_det_kept),
            Mistake("the copied entries (mask 1) are transformed too: they must pass through unchanged, since s and "
                    "t are computed from them", _forward_all_entries),
            Mistake("z uses exp(-s): the forward pass multiplies by e^s, and the log-det +s must describe that "
                    "stretch", _forward_exp_minus_s),
        ])


def _inverse_cases():
    cases = []
    for c in _coupling_cases(1):
        x, mask, s, t = c.args
        cases.append(Case(flows.coupling_forward(x, mask, s, t)[0], mask, s, t, label=c.label))
    return cases


def _inverse_wrong_order(z, mask, s, t):
    return mask * z + (1 - mask) * (z * torch.exp(-s) - t)


def _inverse_exp_plus_s(z, mask, s, t):
    return mask * z + (1 - mask) * (z - t) * torch.exp(s)


def _inverse_all_entries(z, mask, s, t):
    return (z - t) * torch.exp(-s)


def affine_coupling_inverse(fn):
    """``fn(z, mask, s, t) -> x``: the inverse of the affine coupling (each case's ``z`` comes from a known ``x``)."""
    originals = [c.args[0] for c in _coupling_cases(1)]
    return run_check(
        "affine_coupling_inverse", fn, _inverse_cases(), expected=originals, atol=1e-9,
        hint="solve z = x e^s + t for x on the transformed entries, undoing the last operation first; the copied "
             "entries are equal in x and z, which is why s and t can be recomputed from z.",
        mistakes=[
            Mistake("the steps are undone in the wrong order: t was added after scaling, so it must be removed "
                    "before dividing by e^s", _inverse_wrong_order),
            Mistake("the inverse multiplies by e^s again: undoing a stretch by e^s divides by it", _inverse_exp_plus_s),
            Mistake("the copied entries (mask 1) are changed: they pass through the inverse untouched",
                    _inverse_all_entries),
        ])


# ----------------------------------------------------------------------------------------------
# Build and train a coupling flow on the moons
# ----------------------------------------------------------------------------------------------

MOONS_THRESHOLD = 2.6  # nats per point on held-out moons; a full Gaussian scores about 3.3, RealNVP about 2.3
_moons_test: dict = {}

NOT_NORMALIZED = ("your density does not integrate to 1 over the plane, so it is not a density: the log-det of "
                  "each layer enters log p(x) with a plus sign (eq. 1) and must be accumulated over all layers")
NEGATED = ("your function returns -log p(x) (the loss), not log p(x): exp(-output) integrates to 1")
NOT_LEARNED = ("the held-out NLL is no better than a single Gaussian's: the flow has not learned the moons. "
               "Does every step compute the mean of -log p on a batch, call backward, and step the optimizer?")


def _moons_case(seed):
    train = data.toy2d("moons", 2000, seed=seed)
    test = data.toy2d("moons", 5000, seed=seed + 1)
    mu, cov = basics.gaussian_mle(train)
    gauss_nll = -basics.gaussian_log_prob(test, mu, cov).mean().item()
    case = Case(train, label=f"2000 moons points (seed {seed}), scored on 5000 fresh ones")
    _moons_test[case.label] = (test, gauss_nll)
    return case


def _compare_moons(log_prob, expected, case):
    test, gauss_nll = _moons_test[case.label]
    if not callable(log_prob):
        return False, f"expected a function log_prob(x) -> (B,), got {type(log_prob).__name__}"
    points, cell = viz.grid2d(6.0, 300)
    with torch.no_grad():
        try:
            grid = torch.as_tensor(log_prob(points)).detach().double().flatten()
            held_out = torch.as_tensor(log_prob(test)).detach().double()
        except Exception as err:  # the learner's function, called on new points
            return False, f"your log_prob raised {type(err).__name__}: {err}"
    if held_out.shape != (len(test),):
        return False, f"log_prob(x) must return one number per point, shape ({len(test)},), got {tuple(held_out.shape)}"
    if not torch.isfinite(held_out).all():
        return False, "log_prob returned inf or nan on held-out points: is the scale s bounded (e.g. by a tanh)?"
    mass = (grid.exp().sum() * cell).item()
    if not abs(mass - 1) < 0.05:
        if abs((-grid).exp().sum().item() * cell - 1) < 0.05:
            return False, NEGATED
        return False, f"{NOT_NORMALIZED} (it integrates to {mass:.3g})"
    nll = -held_out.mean().item()
    if nll >= gauss_nll:
        return False, f"{NOT_LEARNED} (held-out NLL {nll:.2f} nats, a full Gaussian: {gauss_nll:.2f})"
    if nll > MOONS_THRESHOLD:
        return False, (f"held-out NLL {nll:.2f} nats, not below {MOONS_THRESHOLD}: the flow learned something "
                       f"(a Gaussian scores {gauss_nll:.2f}) but not enough; train longer or use more couplings")
    return True, ""


def _train_moons(points, *, log_det_sign=1.0, step=True, negate=False, num_couplings=6, hidden=32, steps=300):
    """The mistakes' examples: a correct RealNVP on 2D points, except for the one thing each gets wrong."""
    masks = [torch.tensor([1.0, 0.0]) if i % 2 == 0 else torch.tensor([0.0, 1.0]) for i in range(num_couplings)]
    nets = nn.ModuleList(nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                       nn.Linear(hidden, 4)) for _ in masks)

    def log_prob(x):
        log_det = torch.zeros(len(x))
        for mask, net in zip(masks, nets):
            s, t = net(mask * x).chunk(2, dim=1)
            x, ld = flows.coupling_forward(x, mask, torch.tanh(s), t)
            log_det = log_det + ld
        return flows.standard_normal_log_prob(x) + log_det_sign * log_det

    optimizer = torch.optim.Adam(nets.parameters(), lr=5e-3)
    for _ in range(steps):
        loss = -log_prob(points[torch.randint(len(points), (256,))]).mean()
        optimizer.zero_grad()
        loss.backward()
        if step:
            optimizer.step()
    return (lambda x: -log_prob(x)) if negate else log_prob


def _moons_log_det_subtracted(points):
    return _train_moons(points, log_det_sign=-1.0)


def _moons_no_step(points):
    return _train_moons(points, step=False)


def _moons_returns_nll(points):
    return _train_moons(points, negate=True)


def fit_moons_flow(fn):
    """``fn(points (N, 2)) -> log_prob``: build a coupling flow, train it, return its ``log p(x)`` function."""
    def run(points):  # a fixed torch seed, so the verdict does not depend on the lesson's random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return fn(points)

    return run_check(
        "fit_moons_flow", run, [_moons_case(10)], expected=[None], compare=_compare_moons,
        hint="each coupling computes s and t from the entries its mask keeps, transforms the others with the "
             "coupling of the first exercise, and the masks alternate so every coordinate gets transformed; "
             "log p(x) is the standard normal log-density of the final z plus the sum of all layers' log-dets "
             "(eq. 1); train by minimizing the mean of -log p(x) over random batches with Adam.",
        mistakes=[
            Mistake(NOT_NORMALIZED, example=_moons_log_det_subtracted),
            Mistake(NEGATED, example=_moons_returns_nll),
            Mistake(NOT_LEARNED, example=_moons_no_step),
        ])


# ----------------------------------------------------------------------------------------------
# The logit transform: its log-det, derived
# ----------------------------------------------------------------------------------------------

def _reference_logit(y, alpha):
    """``s`` from torch's logit, the log-det from autograd: ``ds_i/dy_i`` of the elementwise map, logged and summed."""
    p = alpha + (1 - 2 * alpha) * y
    s = torch.logit(p)
    with torch.enable_grad():
        v = y.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.logit(alpha + (1 - 2 * alpha) * v).sum(), v)
    return s, grad.log().flatten(1).sum(1)


def _logit_no_factor(y, alpha):
    p = alpha + (1 - 2 * alpha) * y
    return torch.logit(p), (-torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)


def _logit_flipped(y, alpha):
    s, log_det = flows.logit_transform(y, alpha)
    return s, -log_det


def _logit_of_y(y, alpha):
    p = alpha + (1 - 2 * alpha) * y
    return torch.logit(p), (math.log(1 - 2 * alpha) - torch.log(y) - torch.log1p(-y)).flatten(1).sum(1)


def logit_transform(fn):
    """``fn(y, alpha) -> (s, log_det)``: s = logit(alpha + (1 - 2 alpha) y) and the log-det of ds/dy."""
    g = torch.Generator().manual_seed(3)
    r = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)
    cases = [Case(r(4, 3), 0.05, label="y (4, 3), alpha 0.05"),
             Case(r(2, 64), 0.01, label="y (2, 64), alpha 0.01"),
             Case(r(3, 1, 8, 8), 0.1, label="images (3, 1, 8, 8), alpha 0.1")]
    return run_check(
        "logit_transform", fn, cases, reference=_reference_logit, rtol=1e-6, atol=1e-8,
        hint="the map acts on each entry alone, so its Jacobian is diagonal: differentiate s(y) by the chain rule "
             "(through p, then through the logit), take the log of each entry's derivative and sum over every "
             "non-batch dimension: shape (B,).",
        mistakes=[
            Mistake("the log-det misses the chain rule's inner factor: p depends on y with slope 1 - 2 alpha",
                    _logit_no_factor),
            Mistake("the log-det has the wrong sign: it is the log-det of the inverse map (s -> y). The logit "
                    "stretches (0, 1) onto the whole line, so log|ds/dy| is positive", _logit_flipped),
            Mistake("the derivative of the logit is taken at y instead of at p = alpha + (1 - 2 alpha) y",
                    _logit_of_y),
        ])


# ----------------------------------------------------------------------------------------------
# Variational dequantization: the bound with a learned noise q(u | k)
# ----------------------------------------------------------------------------------------------

def _reference_variational(log_prob_y, x, eps, mu, log_sigma, levels):
    """torch.distributions: a Normal pushed through a sigmoid gives q(u | k)."""
    k = torch.round(x * (levels - 1))
    a = mu + torch.exp(log_sigma) * eps
    u = torch.sigmoid(a)
    q = D.TransformedDistribution(D.Normal(mu, torch.exp(log_sigma)), [D.transforms.SigmoidTransform()])
    log_q = q.log_prob(u).flatten(1).sum(1)
    return -log_prob_y((k + u) / levels) + log_q + x[0].numel() * math.log(levels)


def _variational_parts(x, eps, mu, log_sigma, levels):
    k = torch.round(x * (levels - 1))
    a = mu + torch.exp(log_sigma) * eps
    u = torch.sigmoid(a)
    log_normal = (-0.5 * (eps ** 2 + math.log(2 * math.pi)) - log_sigma).flatten(1).sum(1)
    log_sigmoid_slope = (torch.log(u) + torch.log1p(-u)).flatten(1).sum(1)
    return k, u, log_normal, log_sigmoid_slope


def _variational_no_d_ln_l(log_prob_y, x, eps, mu, log_sigma, levels):
    k, u, log_normal, slope = _variational_parts(x, eps, mu, log_sigma, levels)
    return -log_prob_y((k + u) / levels) + log_normal - slope


def _variational_slope_added(log_prob_y, x, eps, mu, log_sigma, levels):
    k, u, log_normal, slope = _variational_parts(x, eps, mu, log_sigma, levels)
    return -log_prob_y((k + u) / levels) + log_normal + slope + x[0].numel() * math.log(levels)


def _variational_without_log_q(log_prob_y, x, eps, mu, log_sigma, levels):
    k, u, _, _ = _variational_parts(x, eps, mu, log_sigma, levels)
    return -log_prob_y((k + u) / levels) + x[0].numel() * math.log(levels)


def _variational_sigma_sign(log_prob_y, x, eps, mu, log_sigma, levels):
    k, u, log_normal, slope = _variational_parts(x, eps, mu, log_sigma, levels)
    return -log_prob_y((k + u) / levels) + log_normal + 2 * log_sigma.flatten(1).sum(1) - slope \
        + x[0].numel() * math.log(levels)


def _variational_bits(log_prob_y, x, eps, mu, log_sigma, levels):
    d = x[0].numel()
    return _reference_variational(log_prob_y, x, eps, mu, log_sigma, levels) / (d * math.log(2))


class _Density:
    """A density on ``[0, 1)^D`` with a readable name in messages."""

    def __init__(self, fn, name):
        self.fn, self.name = fn, name

    def __call__(self, y):
        return self.fn(y)

    def __repr__(self):
        return self.name


def variational_dequantization_bound(fn):
    """``fn(log_prob_y, x, eps, mu, log_sigma, levels) -> (B,)``: one draw of the variational bound, nats."""
    g = torch.Generator().manual_seed(4)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
    beta = D.Beta(torch.tensor(2.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    uniform = _Density(lambda y: torch.zeros(y.shape[0], dtype=y.dtype), "uniform density on [0, 1)^D")
    beta_density = _Density(lambda y: beta.log_prob(y).flatten(1).sum(1), "Beta(2, 2) density per entry")

    def digits(n):
        return torch.randint(0, 17, (n, 1, 8, 8), generator=g).double() / 16

    cases = [Case(uniform, digits(3), r(3, 1, 8, 8), 0.5 * r(3, 1, 8, 8), 0.3 * r(3, 1, 8, 8), 17,
                  label="uniform p, digits (3, 1, 8, 8), 17 levels"),
             Case(beta_density, digits(2), r(2, 1, 8, 8), r(2, 1, 8, 8), 0.5 * r(2, 1, 8, 8) - 0.5, 17,
                  label="Beta(2, 2) p, digits (2, 1, 8, 8)"),
             Case(beta_density, torch.randint(0, 256, (2, 10), generator=g).double() / 255, r(2, 10), r(2, 10),
                  0.2 * r(2, 10), 256, label="Beta(2, 2) p, 10 pixels of 256 levels")]
    return run_check(
        "variational_dequantization_bound", fn, cases, reference=_reference_variational, rtol=1e-6, atol=1e-6,
        hint="u is a function of eps (through a, then the sigmoid), so log q(u | k) is log N(eps; 0, 1) minus the "
             "log of |du/deps|, the product of the two steps' slopes (the change of variables, eq. 1, read "
             "backwards); then the bound is -log p((k + u) / L) + log q(u | k) + D ln L, summed over the D "
             "entries of one image, in nats.",
        mistakes=[
            Mistake("D ln L is missing: the density of y = (k + u) / L is L^D times the density of u, so the "
                    "discrete bound adds D ln L", _variational_no_d_ln_l),
            Mistake("the sigmoid's log-slope log u(1 - u) is added: log q(u) subtracts it, because the sigmoid "
                    "squeezes the line into (0, 1) and density grows where it squeezes", _variational_slope_added),
            Mistake("log q(u | k) is missing: with a learned q the bound is E_q[-log p + log q]; dropping log q "
                    "is only right for uniform noise, where log q = 0", _variational_without_log_q),
            Mistake("log sigma enters with the wrong sign: a = mu + sigma eps stretches by sigma, so "
                    "log q subtracts log sigma", _variational_sigma_sign),
            Mistake("the bound is in bits per dimension: this exercise asks for nats per image",
                    _variational_bits),
        ])
