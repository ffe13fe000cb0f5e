"""Checks for lesson 10 (latent and token models).

Two of the checks judge *where the gradient goes* as well as what
is computed: the learner's function is called on fresh leaf tensors, a fixed random weighting of its output is
back-propagated, and the gradients are compared with the reference's (a straight-through estimator and a pair of
stop-gradients have the right values with the wrong gradients, so values alone cannot tell them apart). The
sampler is judged against the exact distribution of a tiny token prior, enumerated; the training loop by the
held-out flow-matching loss of what it trained.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from gencourse.exercises import Case, Mistake, run_check, under_seed

__all__ = ["vector_quantize", "vq_loss", "codebook_perplexity", "sample_tokens", "train_latent_velocity"]


def _grads_of(fn, *, grad_weight_seed=11):
    """``fn`` called on leaf copies of its tensor arguments; returns its outputs (detached) followed by the
    gradients of ``sum(w * first output)`` with respect to each float tensor argument (zeros where none flows),
    ``w`` a fixed random weighting. Exceptions (NotImplementedError included) pass through. Idempotent: a
    function it already wrapped (a known mistake fed back to its check) is returned as it is."""
    if getattr(fn, "_reports_gradients", False) or not callable(fn):
        return fn

    def wrapped(*args):
        leaves = [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point()
                  else a for a in args]
        out = fn(*leaves)
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        first = outputs[0]
        floats = [a for a in leaves if isinstance(a, torch.Tensor) and a.is_floating_point()]
        if isinstance(first, torch.Tensor) and first.requires_grad:
            w = torch.randn(first.shape, generator=torch.Generator().manual_seed(grad_weight_seed))
            grads = torch.autograd.grad((w * first).sum(), floats, allow_unused=True)
            grads = [torch.zeros_like(a) if g is None else g for a, g in zip(floats, grads)]
        else:
            grads = [torch.zeros_like(a) for a in floats]
        detached = tuple(o.detach() if isinstance(o, torch.Tensor) else o for o in outputs)
        return (*detached, *grads)
    wrapped._reports_gradients = True
    return wrapped


# ----------------------------------------------------------------------------------------------
# Exercise 1: the nearest code, with a straight-through gradient
# ----------------------------------------------------------------------------------------------

def _reference_quantize(z, codebook):
    # brute force, independent of the library's expanded distance: every grid vector against every code
    B, D, H, W = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, D)                             # (B*H*W, D)
    d2 = ((flat[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)           # (B*H*W, K)
    idx = d2.argmin(1)
    e = codebook[idx].view(B, H, W, D).permute(0, 3, 1, 2)
    return z + (e - z).detach(), idx.view(B, H, W)


def _quantize_cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    for B, D, H, W, K, label in ((2, 3, 2, 2, 5, "2 images, code_dim 3, a 2x2 grid, K = 5"),
                                 (3, 4, 4, 4, 8, "3 images, code_dim 4, a 4x4 grid, K = 8"),
                                 (1, 16, 2, 3, 32, "1 image, code_dim 16, a 2x3 grid, K = 32")):
        codebook = torch.randn(K, D, generator=g)
        z = torch.randn(B, D, H, W, generator=g) * 1.2
        cases.append(Case(z, codebook, label=label))
    return cases


def _quantize_argmax(z, codebook):
    B, D, H, W = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, D)
    idx = ((flat[:, None] - codebook[None]) ** 2).sum(-1).argmax(1)
    e = codebook[idx].view(B, H, W, D).permute(0, 3, 1, 2)
    return z + (e - z).detach(), idx.view(B, H, W)


def _quantize_dot(z, codebook):
    B, D, H, W = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, D)
    idx = (flat @ codebook.T).argmax(1)                                      # ignores ||e||^2
    e = codebook[idx].view(B, H, W, D).permute(0, 3, 1, 2)
    return z + (e - z).detach(), idx.view(B, H, W)


def _quantize_no_straight_through(z, codebook):
    _, idx = _reference_quantize(z.detach(), codebook.detach())
    B, D, H, W = z.shape
    return codebook[idx.flatten()].view(B, H, W, D).permute(0, 3, 1, 2), idx


def _quantize_flat_wrong(z, codebook):
    B, D, H, W = z.shape
    flat = z.reshape(-1, D)                                                  # mixes channels and positions
    idx = ((flat[:, None] - codebook[None]) ** 2).sum(-1).argmin(1)
    e = codebook[idx].view(B, D, H, W)
    return z + (e - z).detach(), idx.view(B, H, W)


def vector_quantize(fn):
    """``fn(z (B, D, H, W), codebook (K, D)) -> (z_q like z, indices (B, H, W) int64)``: the nearest code of
    every grid vector, with a straight-through gradient (d z_q / d z = identity, nothing to the codebook)."""
    return run_check(
        "vector_quantize", _grads_of(fn), _quantize_cases(), reference=_grads_of(_reference_quantize),
        rtol=1e-4, atol=1e-5,
        hint="each grid vector z[b, :, i, j] (the D channels at one position) is compared with every code by "
             "squared Euclidean distance; its index is the code at the smallest distance. z_q holds those codes "
             "in z's layout, written so that its value is the code but its gradient is the identity with respect "
             "to z: add to z the difference (code - z) with the gradient stopped (.detach()).",
        mistakes=[
            Mistake("the FARTHEST code is picked: the nearest code minimizes the distance (argmin, not argmax).",
                    fn=_grads_of(_quantize_argmax)),
            Mistake("the codes are ranked by the dot product z . e alone: the squared distance "
                    "||z||^2 - 2 z . e + ||e||^2 also depends on the code's norm ||e||^2, so long codes win wrongly.",
                    fn=_grads_of(_quantize_dot)),
            Mistake("z_q is the looked-up codes themselves: its value is right, but no gradient reaches the encoder "
                    "(the argmin has none) and the decoder's gradient trains the codebook instead. Use the "
                    "straight-through form z_q = z + sg[e - z].", fn=_grads_of(_quantize_no_straight_through)),
            Mistake("the grid vectors are cut from z in its (B, D, H, W) memory order: a vector is the D channels at "
                    "one position, so move the channel axis last (permute(0, 2, 3, 1)) before reshaping to (-1, D).",
                    fn=_grads_of(_quantize_flat_wrong)),
        ])


# ----------------------------------------------------------------------------------------------
# Exercise 2: the codebook and commitment terms, with their stop-gradients
# ----------------------------------------------------------------------------------------------

def _reference_vq_loss(z, e, beta):
    return F.mse_loss(e, z.detach()) + beta * F.mse_loss(z, e.detach())


def _vq_loss_cases():
    g = torch.Generator().manual_seed(1)
    return [Case(torch.randn(2, 3, 2, 2, generator=g), torch.randn(2, 3, 2, 2, generator=g), 0.25,
                 label="(2, 3, 2, 2) latents, beta = 0.25"),
            Case(torch.randn(4, 16, 4, 4, generator=g), torch.randn(4, 16, 4, 4, generator=g), 0.5,
                 label="(4, 16, 4, 4) latents, beta = 0.5"),
            Case(torch.randn(3, 8, 2, 2, generator=g), torch.randn(3, 8, 2, 2, generator=g), 1.5,
                 label="(3, 8, 2, 2) latents, beta = 1.5")]


def vq_loss(fn):
    """``fn(z (B, D, H, W), e like z, beta) -> scalar``: ``mean((sg[z] - e)^2) + beta mean((z - sg[e])^2)``, where
    ``e`` holds the chosen codes; judged by its value and by its gradients with respect to ``z`` and ``e``."""
    def _beta_on_codebook(z, e, beta):
        return beta * F.mse_loss(e, z.detach()) + F.mse_loss(z, e.detach())

    def _no_stop_gradients(z, e, beta):
        return (1 + beta) * F.mse_loss(z, e)

    def _commitment_reaches_codebook(z, e, beta):
        return F.mse_loss(e, z.detach()) + beta * F.mse_loss(z, e)

    def _sum_not_mean(z, e, beta):
        return F.mse_loss(e, z.detach(), reduction="sum") + beta * F.mse_loss(z, e.detach(), reduction="sum")

    return run_check(
        "vq_loss", _grads_of(fn), _vq_loss_cases(), reference=_grads_of(_reference_vq_loss), rtol=1e-4, atol=1e-6,
        hint="two squared errors between the same two tensors, each a mean over all elements: the codebook term "
             "moves the codes toward the encoder outputs (only e may receive its gradient, so z is stopped in it); "
             "the commitment term, weighted by beta, keeps the encoder near its codes (only z may receive its "
             "gradient).",
        mistakes=[
            Mistake("beta weights the codebook term: beta belongs to the COMMITMENT term (the one that trains the "
                    "encoder), the codebook term has weight 1.", fn=_grads_of(_beta_on_codebook)),
            Mistake("there is no stop-gradient: the value is right, but both terms then train both the encoder and "
                    "the codes. Stop z in the codebook term and e in the commitment term (.detach()).",
                    fn=_grads_of(_no_stop_gradients)),
            Mistake("the commitment term lacks its stop-gradient on e: it then pulls the codes toward the encoder "
                    "too, with weight beta; only the codebook term may move the codes.",
                    fn=_grads_of(_commitment_reaches_codebook)),
            Mistake("the squared errors are summed: each term is a mean over all B x D x H x W elements "
                    "(F.mse_loss's default), so that beta and the learning rate do not depend on the grid's size.",
                    fn=_grads_of(_sum_not_mean)),
        ])


# ----------------------------------------------------------------------------------------------
# Exercise 3: codebook usage
# ----------------------------------------------------------------------------------------------

def _reference_perplexity(indices, num_codes):
    counts = torch.tensor([(indices == k).sum().item() for k in range(num_codes)], dtype=torch.float64)
    p = counts / counts.sum()
    h = -sum(pk * math.log(pk) for pk in p.tolist() if pk > 0)
    return math.exp(h), (counts == 0).double().mean().item()


def _perplexity_cases():
    g = torch.Generator().manual_seed(2)
    skewed = torch.multinomial(torch.tensor([8.0, 4, 2, 1, 1, 0, 0, 0]), 600, replacement=True, generator=g)
    return [Case(torch.arange(16).repeat(5).view(5, 4, 4), 16, label="all 16 codes used equally (5 grids)"),
            Case(skewed.view(6, 10, 10), 8, label="8 codes, 3 of them never used"),
            Case(torch.randint(0, 7, (20, 2, 2), generator=g), 32, label="32 codes, at most 7 used"),
            Case(torch.zeros(3, 4, 4, dtype=torch.long), 4, label="one code takes everything")]


def _compare_perplexity(got, want, case):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return False, "expected two numbers back: (perplexity, dead_share)"
    try:
        ppl, dead = float(got[0]), float(got[1])
    except (TypeError, ValueError):
        return False, f"expected two numbers, got {type(got[0]).__name__} and {type(got[1]).__name__}"
    if not math.isfinite(ppl):
        return False, f"the perplexity is {ppl}: unused codes have p = 0, and 0 log 0 counts as 0 (leave them out)"
    if not math.isclose(ppl, want[0], rel_tol=1e-4, abs_tol=1e-6):
        return False, f"perplexity {ppl:.5g}, expected {want[0]:.5g}"
    if not math.isclose(dead, want[1], rel_tol=1e-6, abs_tol=1e-9):
        return False, f"dead_share {dead:.5g}, expected {want[1]:.5g}"
    return True, ""


def codebook_perplexity(fn):
    """``fn(indices (any shape) int64, num_codes) -> (perplexity, dead_share)``: ``exp(H(p))`` of the usage ``p``
    and the share of codes never used."""
    def _bits(indices, num_codes):
        ppl, dead = _reference_perplexity(indices, num_codes)
        return 2 ** math.log(ppl), dead

    def _dead_count(indices, num_codes):
        ppl, dead = _reference_perplexity(indices, num_codes)
        return ppl, dead * num_codes

    def _entropy_only(indices, num_codes):
        ppl, dead = _reference_perplexity(indices, num_codes)
        return math.log(ppl), dead

    return run_check(
        "codebook_perplexity", fn, _perplexity_cases(), reference=_reference_perplexity, compare=_compare_perplexity,
        hint="count how often each of the num_codes codes is picked (torch.bincount with minlength), divide by "
             "the total to get p; the entropy is -sum p_k ln p_k over the codes with p_k > 0; the perplexity is its "
             "exponential (the effective number of codes). The dead share is the share of codes with count 0.",
        mistakes=[
            Mistake("the perplexity is 2 ** H with H in nats: the exponential must match the logarithm, exp of "
                    "an entropy in nats (or 2 ** an entropy in bits).", fn=_bits),
            Mistake("dead_share is a count: divide the number of unused codes by num_codes.", fn=_dead_count),
            Mistake("that is the entropy H(p): the perplexity is exp(H), an effective NUMBER of codes (num_codes "
                    "when all are used equally).", fn=_entropy_only),
        ])


# ----------------------------------------------------------------------------------------------
# Exercise 4: sampling the autoregressive token prior by hand
# ----------------------------------------------------------------------------------------------

SAMPLE_N = 10000           # draws per case
TV_PASS = 0.05             # total variation to the exact distribution that passes (sampling noise is about 0.02)
TV_MATCH = 0.06            # ... and that identifies a known wrong distribution


def _tiny_prior():
    """A TokenGPT over a 2x2 grid of 3 codes (81 token grids), with random weights large enough that every
    conditional is far from uniform and depends on the tokens before it."""
    from gencourse.vq import TokenGPT

    prior = TokenGPT(3, 2, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in prior.parameters():
            p.copy_(0.6 * torch.randn(p.shape, generator=g))
        prior.gpt.head.weight.mul_(3.0)
    return prior.eval()


def _all_grids(prior):
    K, T = prior.num_codes, prior.num_tokens
    codes = torch.arange(K ** T)
    digits = torch.stack([(codes // K ** (T - 1 - i)) % K for i in range(T)], 1)   # (K^T, T), base-K digits
    return digits.view(-1, prior.grid, prior.grid)


@torch.no_grad()
def _exact_probs(prior, temperature, *, independent=False):
    """Probability of every grid under the sampler at ``temperature``: the product of the tempered conditionals
    (``independent``: every token from the first conditional, the distribution of a loop that never feeds back)."""
    grids = _all_grids(prior)
    logits = prior.logits(grids).double() / temperature                          # (K^T, T, K)
    if independent:
        logits = logits[:, :1].expand_as(logits)
    logp = F.log_softmax(logits, -1).gather(-1, grids.view(len(grids), -1, 1)).squeeze(-1).sum(1)
    return logp.exp()


def _empirical(prior, samples):
    K = prior.num_codes
    flat = samples.reshape(len(samples), -1)
    code = sum(flat[:, i] * K ** (flat.shape[1] - 1 - i) for i in range(flat.shape[1]))
    return torch.bincount(code, minlength=K ** prior.num_tokens).double() / len(samples)


_ARGMAX = ("every sample is the same grid: the loop takes the most likely token (argmax) at each step. A sampler "
           "DRAWS each token from softmax(logits / temperature) (torch.multinomial), or it has no variety at all.")
_TEMPERATURE_TIMES = ("the samples follow the distribution at temperature 1 / T: divide the logits by the "
                      "temperature (T < 1 sharpens, T > 1 flattens), do not multiply them.")
_NOT_FED_BACK = ("the tokens are drawn independently, all from the first position's distribution: at step t feed "
                 "the start token and the t tokens drawn so far, and draw from the logits at the LAST position.")


def _compare_samples(got, want, case):
    prior, n = case.args[0], case.args[1]
    temperature = case.kwargs.get("temperature", case.args[2] if len(case.args) > 2 else 1.0)
    shape = (n, prior.grid, prior.grid)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != shape:
        return False, f"expected token grids of shape {shape}, got {getattr(got, 'shape', type(got).__name__)}"
    if got.dtype != torch.long or got.min() < 0 or got.max() >= prior.num_codes:
        return False, f"expected int64 code ids in 0..{prior.num_codes - 1} (no start token), got {got.dtype} " \
                      f"in {got.min().item()}..{got.max().item()}"
    emp = _empirical(prior, got)
    tv = 0.5 * (emp - want).abs().sum().item()
    if tv <= TV_PASS:
        return True, ""
    if (emp > 0).sum() == 1:
        return False, _ARGMAX
    if temperature != 1 and 0.5 * (emp - _exact_probs(prior, 1 / temperature)).abs().sum() <= TV_MATCH:
        return False, _TEMPERATURE_TIMES
    if 0.5 * (emp - _exact_probs(prior, temperature, independent=True)).abs().sum() <= TV_MATCH:
        return False, _NOT_FED_BACK
    return False, (f"the samples' distribution is {tv:.2f} in total variation from the model's (at most {TV_PASS} "
                   "is sampling noise)")


def _sampler(*, argmax=False, times=False, feed_back=True):
    def sample_tokens(prior, n, temperature=1.0):
        tokens = torch.full((n, 1), prior.start, dtype=torch.long)
        with torch.no_grad():
            for _ in range(prior.num_tokens):
                context = tokens if feed_back else tokens[:, :1]
                logits = prior.gpt(context)[:, -1]
                logits = logits * temperature if times else logits / temperature
                nxt = logits.argmax(-1, keepdim=True) if argmax else torch.multinomial(F.softmax(logits, -1), 1)
                tokens = torch.cat([tokens, nxt], 1)
        return tokens[:, 1:].reshape(n, prior.grid, prior.grid)
    return sample_tokens


def sample_tokens(fn):
    """``fn(prior: vq.TokenGPT, n, temperature=1.0) -> (n, g, g) int64``: ancestral sampling, one token at a time.
    Judged against the exact distribution of a tiny prior (2x2 grid, 3 codes: all 81 grids enumerated)."""
    fn = under_seed(fn)
    prior = _tiny_prior()
    cases = [Case(prior, SAMPLE_N, 1.0, label=f"{SAMPLE_N} grids at temperature 1"),
             Case(prior, SAMPLE_N, 0.5, label=f"{SAMPLE_N} grids at temperature 0.5"),
             Case(prior, SAMPLE_N, 2.0, label=f"{SAMPLE_N} grids at temperature 2")]
    return run_check(
        "sample_tokens", fn, cases, expected=[_exact_probs(prior, c.args[2]) for c in cases],
        compare=_compare_samples,
        hint="start every sequence with the start token (prior.start); for t = 0..T-1 run prior.gpt on the "
             "sequence so far, take the logits at its last position, divide by the temperature, draw one token per "
             "row from the softmax and append it. Return the T drawn tokens, without the start token, as (n, g, g).",
        mistakes=[Mistake(_ARGMAX, example=_sampler(argmax=True)),
                  Mistake(_TEMPERATURE_TIMES, example=_sampler(times=True)),
                  Mistake(_NOT_FED_BACK, example=_sampler(feed_back=False))])


# ----------------------------------------------------------------------------------------------
# Exercise 5: a velocity network trained on latents
# ----------------------------------------------------------------------------------------------

LATENT_SHAPE = (4, 2, 2)
VELOCITY_GOAL = 0.5        # held-out CFM loss at most this share of the zero-velocity loss (the reference: about 0.4)


def _raw_latents(n, seed):
    """10 tight clusters in 16 dimensions: a stand-in for the digits' latents that takes no autoencoder."""
    centres = torch.randn(10, math.prod(LATENT_SHAPE), generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(seed)
    return centres[torch.randint(0, 10, (n,), generator=g)] + 0.15 * torch.randn(n, centres.shape[1], generator=g)


def _standardized(raw):
    """Standardized like eq. (2), with the shift and scale of the training latents (seed 0)."""
    train = _raw_latents(1000, 0)
    return ((raw - train.mean()) / train.std()).view(len(raw), *LATENT_SHAPE)


def _synthetic_latents(n, seed):
    return _standardized(_raw_latents(n, seed))


def _heldout():
    z1 = _synthetic_latents(600, 1)
    g = torch.Generator().manual_seed(8)
    return z1, torch.randn(z1.shape, generator=g), torch.rand(len(z1), generator=g)


@torch.no_grad()
def _cfm_losses(net, z1, x0, t):
    """Held-out losses of ``net`` under three conventions: the lesson's (noise at t = 0, target z1 - x0), the
    target's sign flipped, and time reversed (noise at t = 1, target x0 - z1)."""
    tt = t.view(-1, 1, 1, 1)
    forward = tt * z1 + (1 - tt) * x0
    backward = tt * x0 + (1 - tt) * z1
    err = lambda v, u: (v - u).pow(2).flatten(1).sum(1).mean().item()  # noqa: E731
    return {"right": err(net(forward, t), z1 - x0), "sign": err(net(forward, t), x0 - z1),
            "reversed": err(net(backward, t), x0 - z1), "zero": err(torch.zeros_like(z1), z1 - x0)}


_NOT_LEARNED = ("the network has not learned: it outputs the same as at initialization (zero velocity). Does every "
                "training step update the weights after the backward pass?")
_SIGN = ("the network learned the velocity with the wrong sign: on the path x_t = t z1 + (1 - t) x0 the target is "
         "d x_t / dt = z1 - x0 (toward the data), not x0 - z1.")
_REVERSED = ("time runs the other way: noise sits at t = 0 and data at t = 1 in this course's flow matching "
             "(x_t = t z1 + (1 - t) x0); your path puts the noise at t = 1, as diffusion's convention does, so the "
             "course's samplers, which start from noise at t = 0, would carry noise away from the data.")


def _compare_velocity(got, want, case):
    if not isinstance(got, nn.Module):
        return False, f"expected the trained velocity network (an nn.Module), got {type(got).__name__}"
    got.eval()
    z1, x0, t = _heldout()
    try:
        losses = _cfm_losses(got, z1, x0, t)
    except Exception as err:  # a network with the wrong signature is a verdict, not a crash
        return False, f"calling net(z (B, 4, 2, 2), t (B,)) raised {type(err).__name__}: {err}"
    ratio = losses["right"] / losses["zero"]
    if ratio <= VELOCITY_GOAL:
        return True, ""
    if abs(losses["right"] - losses["zero"]) < 1e-6 * losses["zero"]:
        return False, _NOT_LEARNED
    if losses["sign"] < losses["right"] and losses["sign"] <= losses["reversed"]:
        return False, _SIGN
    if losses["reversed"] < losses["right"]:
        return False, _REVERSED
    return False, (f"held-out flow-matching loss {losses['right']:.1f}, {ratio:.2f} of the zero velocity's "
                   f"{losses['zero']:.1f} (goal <= {VELOCITY_GOAL}): it learns, but not enough. Train longer or "
                   f"with a larger learning rate.")


def _velocity_trainer(*, sign=1.0, reversed_time=False, step=True):
    from gencourse.latent import build_network

    def train_latent_velocity(z_train, epochs=60, lr=2e-3, batch_size=128):
        net = build_network("mlp", tuple(z_train.shape[1:]))
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in range(epochs):
            for batch in torch.randperm(len(z_train)).split(batch_size):
                z1 = z_train[batch]
                x0, t = torch.randn_like(z1), torch.rand(len(z1))
                tt = t.view(-1, 1, 1, 1)
                if reversed_time:
                    zt, target = tt * x0 + (1 - tt) * z1, x0 - z1
                else:
                    zt, target = tt * z1 + (1 - tt) * x0, sign * (z1 - x0)
                loss = (net(zt, t) - target).pow(2).flatten(1).sum(1).mean()
                optimizer.zero_grad()
                loss.backward()
                if step:
                    optimizer.step()
        return net.eval()
    return train_latent_velocity


def train_latent_velocity(fn):
    """``fn(z_train (N, 4, 2, 2)) -> velocity network v(z, t)``, judged by its held-out flow-matching loss on
    latents of the same distribution (goal: at most VELOCITY_GOAL of the zero velocity's)."""
    fn = under_seed(fn)
    z_train = _synthetic_latents(1000, 0)
    return run_check(
        "train_latent_velocity", fn,
        [Case(z_train, label=f"1000 standardized latents (4, 2, 2) from 10 clusters; goal: held-out loss <= "
                             f"{VELOCITY_GOAL} x the zero velocity's")],
        expected=[None], compare=_compare_velocity,
        hint="build latent.build_network('mlp', z_train.shape[1:]); for each shuffled minibatch z1 draw noise x0 "
             "and times t ~ U[0, 1] (one per example), form x_t = t z1 + (1 - t) x0 and regress net(x_t, t) on "
             "z1 - x0 (squared error summed over a latent's elements, averaged over the batch); Adam, a few dozen "
             "epochs.",
        mistakes=[Mistake(_NOT_LEARNED, example=_velocity_trainer(step=False)),
                  Mistake(_SIGN, example=_velocity_trainer(sign=-1.0)),
                  Mistake(_REVERSED, example=_velocity_trainer(reversed_time=True))])
