"""Checks for lesson 07 (autoregressive models): the exact log-likelihood, MADE's masks from degrees, a small
MADE built and trained on digits, a PixelCNN mask, the pixel-by-pixel sampler and nucleus (top-p) sampling.

Each check declares the typical wrong answers it recognizes (:class:`gencourse.exercises.Mistake`); the
wrong answers themselves are written below, next to the check that catches them.
"""
import itertools

import torch
from torch import nn

from gencourse import autoregressive as ar
from gencourse.exercises import Case, Mistake, close, run_check, under_seed

__all__ = ["autoregressive_nll", "made_masks", "train_made", "causal_conv_mask", "sample_pixels", "nucleus_probs"]


# ----------------------------------------------------------------------------------------------
# The exact log-likelihood
# ----------------------------------------------------------------------------------------------

def _nll_mean_over_pixels(logits, k):
    return ar.categorical_nll(logits, k) / k.shape[1]


def _nll_log_of_softmax(logits, k):
    return -torch.log(torch.softmax(logits, -1)).gather(-1, k.unsqueeze(-1)).squeeze(-1).sum(-1)


def _nll_plus_sign(logits, k):
    return -ar.categorical_nll(logits, k)


def _nll_softmax_over_pixels(logits, k):
    return -torch.log_softmax(logits, 1).gather(-1, k.unsqueeze(-1)).squeeze(-1).sum(-1)


def autoregressive_nll(fn):
    """``fn(logits (B, D, L), k (B, D)) -> (B,)``: the exact NLL in nats, summed over pixels."""
    g = torch.Generator().manual_seed(0)
    big = torch.zeros(2, 3, 4)
    big[:, :, 0] = 150.0  # level 0 is almost certain; the levels asked for below are ~150 nats unlikely
    cases = [
        Case(torch.randn(4, 64, 17, generator=g), torch.randint(0, 17, (4, 64), generator=g),
             label="4 images of 64 pixels, 17 levels"),
        Case(torch.randn(1, 3, 5, generator=g) * 3, torch.tensor([[4, 0, 2]]), label="1 image, 3 pixels, 5 levels"),
        Case(big, torch.tensor([[1, 2, 3], [0, 3, 1]]), label="large logits (numerical stability)"),
    ]
    return run_check(
        "autoregressive_nll", fn, cases, reference=ar.categorical_nll, rtol=1e-4, atol=1e-3,
        hint="each pixel's conditional is a softmax over the L levels (the last axis); the image's NLL is minus "
             "the sum over its pixels of the log-probability of the level it has: one number per image. Compute "
             "log-probabilities with a log-softmax, which stays finite where the softmax rounds to zero.",
        mistakes=[
            Mistake("the answer is the NLL divided by the number of pixels: an image's NLL is the SUM of its "
                    "pixels' terms (the chain rule multiplies the conditionals).", fn=_nll_mean_over_pixels),
            Mistake("the answer is infinite where a level is very unlikely: log(softmax(.)) rounds the probability "
                    "to zero first; a log-softmax computes the same log-probabilities stably.", fn=_nll_log_of_softmax),
            Mistake("the sign is flipped: this is the log-likelihood; the NLL is its negative (positive numbers).",
                    fn=_nll_plus_sign),
            Mistake("the softmax normalizes over the pixel axis: each pixel's conditional is a distribution over "
                    "its L levels, the last axis.", fn=_nll_softmax_over_pixels),
        ])


# ----------------------------------------------------------------------------------------------
# MADE's masks from degrees
# ----------------------------------------------------------------------------------------------

def _degrees_then_masks(num_inputs, hidden_sizes, hidden_degree, hidden_rule, output_rule):
    degrees = [torch.arange(1, num_inputs + 1)] + [hidden_degree(torch.arange(h), num_inputs) for h in hidden_sizes]
    masks = [hidden_rule(d_out[:, None], d_in[None, :]).float() for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append(output_rule(degrees[0][:, None], degrees[-1][None, :]).float())
    return masks


def _cycle(h, d):
    return h % (d - 1) + 1


def _made_output_not_strict(num_inputs, hidden_sizes):
    return _degrees_then_masks(num_inputs, hidden_sizes, _cycle, torch.ge, torch.ge)


def _made_hidden_strict(num_inputs, hidden_sizes):
    return _degrees_then_masks(num_inputs, hidden_sizes, _cycle, torch.gt, torch.gt)


def _made_degrees_from_zero(num_inputs, hidden_sizes):
    return _degrees_then_masks(num_inputs, hidden_sizes, lambda h, d: h % (d - 1), torch.ge, torch.gt)


def _made_degrees_up_to_d(num_inputs, hidden_sizes):
    return _degrees_then_masks(num_inputs, hidden_sizes, lambda h, d: h % d + 1, torch.ge, torch.gt)


def _made_masks_transposed(num_inputs, hidden_sizes):
    return [m.T for m in ar.made_masks(num_inputs, hidden_sizes)]


def made_masks(fn):
    """``fn(num_inputs, hidden_sizes) -> [mask_1, ..., mask_out]``: every mask of a MADE, from the degrees."""
    cases = [Case(5, (8, 8), label="D = 5, hidden layers (8, 8)"),
             Case(4, (3,), label="D = 4, one hidden layer of 3"),
             Case(6, (10, 7), label="D = 6, hidden layers (10, 7)"),
             Case(3, (), label="D = 3, no hidden layer (inputs straight to outputs)"),
             Case(64, (128,), label="D = 64, one hidden layer of 128 (the digits)")]

    def compare(got, want, case):
        if not isinstance(got, (list, tuple)):
            return False, f"expected a list of {len(want)} masks, got {type(got).__name__}"
        return close([torch.as_tensor(m).float() for m in got], want)

    return run_check(
        "made_masks", fn, cases, reference=ar.made_masks, compare=compare,
        hint="first the degrees: inputs 1..D, and hidden unit h of every layer gets h mod (D - 1) + 1, so hidden "
             "degrees run through 1..D-1. A mask has one row per unit of the layer it feeds and one column per "
             "unit it reads. Hidden layers keep a weight when the receiving degree is >= the sending one; the "
             "output layer (one row per input, degrees 1..D) only when it is > (strict).",
        mistakes=[
            Mistake("the output layer's mask is not strict: output d then reaches input d itself through a hidden "
                    "unit of degree d, and the model can copy the pixel it predicts.", fn=_made_output_not_strict),
            Mistake("the hidden layers use the strict rule too: a hidden unit of degree m must keep the units of "
                    "degree m below it (>=); only the output layer is strict.", fn=_made_hidden_strict),
            Mistake("the hidden degrees start at 0: a unit of degree 0 sees no input at all. Hidden degrees run "
                    "through 1..D-1 (off by one).", fn=_made_degrees_from_zero),
            Mistake("the hidden degrees run through 1..D: a hidden unit of degree D could only feed an output "
                    "after the last pixel, so it is wasted. They run through 1..D-1.", fn=_made_degrees_up_to_d),
            Mistake("the masks are transposed: like nn.Linear's weight, a mask has one ROW per receiving unit and "
                    "one COLUMN per sending unit, shape (units out, units in).", fn=_made_masks_transposed),
        ])


# ----------------------------------------------------------------------------------------------
# A small MADE, built and trained: judged by what it achieves on held-out digits
# ----------------------------------------------------------------------------------------------

MADE_NLL_GOAL = 104.0  # nats on the validation split; independent pixels reach 110.5, the reference ~101
_PEEKS = ("the model peeks: the logits of some pixel depend on that pixel itself or a later one (autograd). Its "
          "likelihood is then no distribution at all. The output layer's mask must be strict.")
_NOT_LEARNED = ("the model has not learned: its held-out NLL is near the uniform 181 nats of an untrained model. "
                "Does every step update the weights (the optimizer's step after the backward pass)?")
_WRONG_AXIS = ("the model was trained with a softmax over the pixel axis: its logits fit a distribution over "
               "the 64 positions, not over each pixel's 17 levels (the last axis).")
_TOO_HIGH = ("the model trained, but its held-out NLL stays above the goal: are the gradients reset before "
             "every backward pass, and is the loss the mean exact NLL of the batch?")


def _made_trainer(*, strict=True, step=True, softmax_axis=-1, zero_grad=True):
    """A learner's ``train_made`` with one mistake switched on (each keyword off its default)."""

    def train_made(k_train, hidden=128, epochs=15, lr=5e-3, batch_size=50):
        n, d = k_train.shape
        levels = ar.LEVELS
        mask_hidden, mask_out = ar.made_masks(d, (hidden,))
        if not strict:
            mask_out = (torch.arange(1, d + 1)[:, None] >= (torch.arange(hidden) % (d - 1) + 1)[None, :]).float()
        model = nn.Sequential(ar.MaskedLinear(d, hidden, mask_hidden), nn.ReLU(),
                              ar.MaskedLinear(hidden, d * levels, mask_out.repeat_interleave(levels, 0)),
                              nn.Unflatten(1, (d, levels)))
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        x = k_train.float() / (levels - 1)
        for _ in range(epochs):
            for batch in torch.randperm(n).split(batch_size):
                log_p = torch.log_softmax(model(x[batch]), softmax_axis)
                loss = -log_p.gather(-1, k_train[batch].unsqueeze(-1)).sum((1, 2)).mean()
                if zero_grad:
                    optimizer.zero_grad()
                loss.backward()
                if step:
                    optimizer.step()
        return model

    return train_made


def _digits_levels(split):
    from gencourse.data import load

    return ar.image_levels(load("digits", split).images)


def _nll_with_level_offsets(logits, k):
    """The mean NLL after adding the best constant per level to every pixel's logits (17 numbers fitted here).

    A softmax over the pixel axis cannot see such constants, so a model trained that way leaves them arbitrary:
    fitted, its logits score well. A model trained with the right softmax gains little from them."""
    offsets = torch.zeros(logits.shape[-1], requires_grad=True)
    optimizer = torch.optim.LBFGS([offsets], max_iter=50)

    def closure():
        optimizer.zero_grad()
        loss = ar.categorical_nll(logits + offsets, k).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return ar.categorical_nll(logits + offsets, k).mean().item()


@torch.no_grad()
def _changes_with_later_inputs(model, x):
    """Whether the logits of some pixel j change when the inputs j, j+1, ... are redrawn (a direct test that
    also sees dependencies autograd cannot, through rounding or integer indexing)."""
    b, d = x.shape
    g = torch.Generator().manual_seed(3)
    redrawn = torch.randint(0, ar.LEVELS, (d, b, d), generator=g).float() / (ar.LEVELS - 1)
    later = torch.arange(d)[None, :] >= torch.arange(d)[:, None]  # (d, d): [j, i] True for inputs i >= j
    x_changed = torch.where(later[:, None, :], redrawn, x[None])  # (d, b, d): copy j has inputs >= j redrawn
    before, after = model(x), model(x_changed.reshape(d * b, d)).reshape(d, b, d, -1)
    changed = (after - before[None]).abs().amax((1, 3))  # (d, d): [j, i] largest change of output i in copy j
    must_stay = torch.arange(d)[None, :] <= torch.arange(d)[:, None]  # outputs i <= j
    return bool((changed[must_stay] > 1e-4 * (1 + before.abs().max())).any())


def _compare_trained(got, want, case):
    k_val = _digits_levels("val")
    if not isinstance(got, nn.Module):
        return False, f"expected the trained model (an nn.Module), got {type(got).__name__}"
    x_val = k_val.float() / (ar.LEVELS - 1)
    got.eval()
    try:
        with torch.no_grad():
            logits = got(x_val)
    except Exception as err:  # the learner's model, called the way the lesson calls it
        return False, (f"calling the model on x = k / 16 of shape {tuple(x_val.shape)} raised "
                       f"{type(err).__name__}: {err}")
    want_shape = (len(k_val), ar.NUM_PIXELS, ar.LEVELS)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != want_shape:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        return False, (f"the model should map x (B, 64) to logits {want_shape[1:]} per image, got {shape} "
                       f"for B = {len(k_val)}")
    if not torch.isfinite(logits).all():
        return False, "the model's logits are not finite (NaN or infinity)"
    if ar.dependency_matrix(got).triu().any() or _changes_with_later_inputs(got, x_val[:8]):
        return False, _PEEKS
    nll = ar.categorical_nll(logits, k_val).mean().item()
    if nll <= MADE_NLL_GOAL:
        return True, ""
    measured = f" (held-out NLL {nll:.1f} nats; the goal is <= {MADE_NLL_GOAL:.0f})"
    if nll > 170:
        return False, _NOT_LEARNED + measured
    if _nll_with_level_offsets(logits, k_val) <= MADE_NLL_GOAL:
        return False, _WRONG_AXIS + measured
    return False, _TOO_HIGH + measured


def train_made(fn):
    """``fn(k_train) -> model``: build a one-hidden-layer MADE and train it on the digits' train split.

    Judged by what the trained model achieves: logits of the right shape, no output depending on its own
    or a later input (autograd), and an exact NLL on the validation split of at most ``MADE_NLL_GOAL``.
    The learner's function runs under a fixed torch seed (the lesson's random state is left alone).
    """
    fn = under_seed(fn)
    cases = [Case(_digits_levels("train"),
                  label=f"trained on the 1000 train digits, judged on the 350 validation digits (goal <= "
                        f"{MADE_NLL_GOAL:.0f} nats)")]
    return run_check(
        "train_made", fn, cases, expected=[None], compare=_compare_trained,
        hint="the model is an MLP with one hidden layer whose two weight matrices are multiplied by MADE's masks "
             "(your made_masks); the output layer has 17 logits per pixel, all with that pixel's mask row, "
             "reshaped to (B, 64, 17). The loss is the mean over the batch of the exact NLL (your "
             "autoregressive_nll); an Adam loop over shuffled minibatches for the given epochs; return the model.",
        mistakes=[
            Mistake(_PEEKS, example=_made_trainer(strict=False)),
            Mistake(_NOT_LEARNED, example=_made_trainer(step=False)),
            Mistake(_WRONG_AXIS, example=_made_trainer(softmax_axis=1)),
            Mistake(_TOO_HIGH, example=_made_trainer(zero_grad=False)),
        ])


# ----------------------------------------------------------------------------------------------
# PixelCNN's mask
# ----------------------------------------------------------------------------------------------

def _mask_without_centre_row(kernel_size, mask_type):
    mask = torch.zeros(kernel_size, kernel_size)
    mask[: kernel_size // 2] = 1
    return mask


def _mask_types_swapped(kernel_size, mask_type):
    return ar.conv_mask(kernel_size, "B" if mask_type == "A" else "A")


def _mask_transposed(kernel_size, mask_type):
    return ar.conv_mask(kernel_size, mask_type).T


def _mask_right_of_centre(kernel_size, mask_type):
    return ar.conv_mask(kernel_size, mask_type).flip(1)


def causal_conv_mask(fn):
    """``fn(kernel_size, mask_type) -> (k, k)`` float mask of a PixelCNN convolution ("A" or "B")."""
    cases = [Case(k, t, label=f"kernel_size={k}, mask_type={t!r}") for k in (3, 5, 7) for t in ("A", "B")]
    cases.append(Case(1, "A", label="kernel_size=1, mask_type='A' (sees nothing)"))
    return run_check(
        "causal_conv_mask", fn, cases, reference=ar.conv_mask,
        compare=lambda got, want, case: close(torch.as_tensor(got).float(), want),
        hint="keep exactly the kernel positions that come before the centre in raster order (row by row, left "
             "to right). Type 'B' also keeps the centre, type 'A' does not.",
        mistakes=[
            Mistake("the centre row is empty: in raster order the pixels left of the centre, on its own row, "
                    "come before it too.", fn=_mask_without_centre_row),
            Mistake("types A and B are swapped: the FIRST layer (type 'A') must not see the centre, the pixel it "
                    "predicts; later layers (type 'B') keep it, because their centre already holds features "
                    "of earlier pixels only.", fn=_mask_types_swapped),
            Mistake("the mask is transposed: raster order goes row by row, so the rows ABOVE the centre are "
                    "visible, not the columns to its left.", fn=_mask_transposed),
            Mistake("the centre row keeps the pixels to the RIGHT of the centre: raster order reads left to "
                    "right, so only those to the left come before it.", fn=_mask_right_of_centre),
        ])


# ----------------------------------------------------------------------------------------------
# The sampler: checked by the distribution of what it draws on a tiny model with a known joint
# ----------------------------------------------------------------------------------------------

_PIXELS, _LEVELS = 3, 3
_W = torch.tensor([[[1.5, 0.0, -1.0]] * 3,
                   [[2.0, -1.0, 0.0], [-1.0, 2.0, 0.0], [0.0, -1.0, 2.0]],
                   [[0.0, 2.5, 0.0], [2.5, 0.0, 0.0], [0.0, 0.0, 2.5]]])  # W[i, k_{i-1}] = logits of pixel i


def _tiny_logits(k, i):
    """A tiny autoregressive model over 3 pixels with 3 levels: the logits ``(n, 3)`` of pixel ``i`` given
    the canvas ``k: (n, 3)``; pixel 1 depends on pixel 0, pixel 2 on pixel 1."""
    if i == 0:
        return _W[0, 0].expand(len(k), _LEVELS).clone()
    return _W[i, k[:, i - 1]]


def _tiny_joint(temperature, *, blank=False):
    """Exact distribution (27,) of per-step tempered ancestral sampling from the tiny model, by enumeration.
    ``blank``: every pixel drawn from the logits of a blank canvas (no conditioning on what was drawn)."""
    probs = []
    for seq in itertools.product(range(_LEVELS), repeat=_PIXELS):
        k = torch.zeros(1, _PIXELS, dtype=torch.long) if blank else torch.tensor([seq])
        p = 1.0
        for i in range(_PIXELS):
            p *= torch.softmax(_tiny_logits(k, i)[0] / temperature, 0)[seq[i]].item()
        probs.append(p)
    return torch.tensor(probs)


_SAMPLE_TOLERANCE = 0.02
_IGNORES_T = ("the samples follow the model at temperature 1 whatever the temperature: divide every "
              "conditional's logits by T before the softmax.")
_MULTIPLIES_T = ("the samples follow the model at temperature 1/T: the logits are multiplied by the temperature; "
                 "they must be divided by it (T < 1 sharpens, T > 1 flattens).")
_NO_CONDITIONING = ("every pixel was drawn without the pixels drawn before it: the samples follow the product "
                    "of the blank-canvas conditionals. Write each drawn level into the canvas before asking "
                    "for the next pixel's logits, one pixel after the other.")
_GREEDY = ("every sample is the same sequence: the levels are chosen by argmax (greedy decoding). Sampling "
           "draws each level at random from its softmax.")


def _frequencies(k):
    index = (k * torch.tensor([_LEVELS ** 2, _LEVELS, 1])).sum(1)
    return torch.bincount(index, minlength=_LEVELS ** _PIXELS).double() / len(k)


def _compare_samples(got, want, case):
    n, temperature = case.args[1], case.kwargs["temperature"]
    if not isinstance(got, torch.Tensor):
        return False, f"expected a tensor of levels (n, num_pixels), got {type(got).__name__}"
    if tuple(got.shape) != (n, _PIXELS):
        return False, f"expected shape ({n}, {_PIXELS}), got {tuple(got.shape)}"
    if got.dtype.is_floating_point and not torch.equal(got, got.round()):
        return False, "expected integer levels (e.g. from torch.multinomial), got fractional values"
    got = got.long()
    if got.min() < 0 or got.max() >= _LEVELS:
        return False, f"levels must lie in 0..{_LEVELS - 1}, got values in {got.min().item()}..{got.max().item()}"
    freq = _frequencies(got)
    gap = lambda joint: (freq - joint.double()).abs().max().item()
    if gap(want) <= _SAMPLE_TOLERANCE:
        return True, ""
    if (freq == 1).any():
        return False, _GREEDY
    for joint, message in ((_tiny_joint(1.0), _IGNORES_T), (_tiny_joint(1.0 / temperature), _MULTIPLIES_T),
                           (_tiny_joint(temperature, blank=True), _NO_CONDITIONING)):
        if gap(joint) <= _SAMPLE_TOLERANCE:
            return False, message
    return False, (f"the samples do not follow the model: a sequence's frequency is off by {gap(want):.3f} "
                   f"(tolerance {_SAMPLE_TOLERANCE} with {n} samples)")


def _sampler_ignores_temperature(logits_fn, n, num_pixels, temperature=1.0, generator=None):
    return ar.sample_autoregressive(logits_fn, n, num_pixels, generator=generator)


def _sampler_multiplies_by_temperature(logits_fn, n, num_pixels, temperature=1.0, generator=None):
    return ar.sample_autoregressive(lambda k, i: logits_fn(k, i) * temperature ** 2, n, num_pixels,
                                    temperature=temperature, generator=generator)


def _sampler_all_at_once(logits_fn, n, num_pixels, temperature=1.0, generator=None):
    """Every pixel drawn from the blank canvas: no conditioning on the pixels drawn before."""
    blank = torch.zeros(n, num_pixels, dtype=torch.long)
    cols = [torch.multinomial(torch.softmax(logits_fn(blank, i) / temperature, -1), 1, generator=generator)
            for i in range(num_pixels)]
    return torch.cat(cols, 1)


def _sampler_greedy(logits_fn, n, num_pixels, temperature=1.0, generator=None):
    k = torch.zeros(n, num_pixels, dtype=torch.long)
    for i in range(num_pixels):
        k[:, i] = logits_fn(k, i).argmax(-1)
    return k


def sample_pixels(fn):
    """``fn(logits_fn, n, num_pixels, temperature=1.0, generator=None) -> (n, num_pixels)`` int levels.

    Judged by the frequencies of the 27 sequences of a tiny 3-pixel, 3-level model against its exact
    (per-step tempered) joint distribution, on 20,000 samples.
    """
    n = 20_000
    temperatures = (1.0, 0.5, 2.0)
    cases = [Case(_tiny_logits, n, _PIXELS, temperature=t, generator=torch.Generator().manual_seed(i),
                  label=f"a 3-pixel model, temperature {t}") for i, t in enumerate(temperatures)]
    expected = [_tiny_joint(t) for t in temperatures]
    return run_check(
        "sample_pixels", fn, cases, expected=expected, compare=_compare_samples,
        hint="ancestral sampling follows the chain rule: pixel i is drawn from its conditional given the pixels "
             "already drawn, so the pixels are drawn one after the other, in order, each written into the canvas "
             "before the next one's logits are computed. The temperature divides each conditional's logits.",
        mistakes=[
            Mistake(_IGNORES_T, example=_sampler_ignores_temperature),
            Mistake(_MULTIPLIES_T, example=_sampler_multiplies_by_temperature),
            Mistake(_NO_CONDITIONING, example=_sampler_all_at_once),
            Mistake(_GREEDY, example=_sampler_greedy),
        ])


# ----------------------------------------------------------------------------------------------
# Nucleus (top-p) sampling's distribution
# ----------------------------------------------------------------------------------------------

def _reference_nucleus(logits, p):
    return torch.softmax(ar.top_p_logits(logits, p), -1)


def _nucleus_strict(logits, p):
    """Keeps only the levels whose cumulative mass, themselves included, stays below p."""
    probs = torch.softmax(logits, -1)
    sorted_probs, order = probs.sort(-1, descending=True)
    keep = torch.zeros_like(probs).scatter(-1, order, (sorted_probs.cumsum(-1) < p).float())
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def _nucleus_not_renormalized(logits, p):
    probs = torch.softmax(logits, -1)
    return probs * (_reference_nucleus(logits, p) > 0)


def _nucleus_least_likely(logits, p):
    """Ranks the levels from the least likely up."""
    probs = torch.softmax(logits, -1)
    sorted_probs, order = probs.sort(-1, descending=False)
    keep = torch.zeros_like(probs).scatter(-1, order, (sorted_probs.cumsum(-1) - sorted_probs < p).float())
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def _nucleus_softmax_over_rows(logits, p):
    probs = torch.softmax(logits, 0)
    sorted_probs, order = probs.sort(-1, descending=True)
    keep = torch.zeros_like(probs).scatter(-1, order, (sorted_probs.cumsum(-1) - sorted_probs < p).float())
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def _nucleus_cases():
    g = torch.Generator().manual_seed(71)
    cases = [
        Case(torch.randn(4, 10, generator=g), 0.9, label="4 rows of 10 logits, p = 0.9"),
        Case(torch.randn(2, 3, 17, generator=g) * 0.7, 0.5, label="logits (2, 3, 17), p = 0.5"),
        Case(torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0], [0.0, 0.3, 0.1, -0.2, 0.2]]), 0.8,
             label="2 rows of 5 logits, p = 0.8"),
        Case(torch.randn(3, 6, generator=g) * 0.5, 1.0, label="3 rows of 6 logits, p = 1 (keeps every level)"),
    ]
    return cases


def nucleus_probs(fn):
    """``fn(logits (..., L), p) -> (..., L)``: the nucleus distribution of every row of logits."""
    return run_check(
        "nucleus_probs", fn, _nucleus_cases(), reference=_reference_nucleus, rtol=1e-4, atol=1e-6,
        hint="work on probabilities (softmax over the last axis), ranked from the most likely level down. The "
             "nucleus is the SMALLEST top-ranked set whose mass reaches p, so the level that carries the mass "
             "across p belongs to it. Zero the other levels, then divide by the nucleus's mass so each row sums "
             "to one again. Return probabilities in the original order of the levels.",
        mistakes=[
            Mistake("the level that carries the mass across p is missing: the nucleus's mass must REACH p, so it "
                    "keeps every level whose higher-ranked levels hold less than p.", fn=_nucleus_strict),
            Mistake("the probabilities are not renormalized: the kept levels must be divided by the nucleus's "
                    "total mass, so that each row sums to one.", fn=_nucleus_not_renormalized),
            Mistake("the LEAST likely levels are kept: rank the levels from the most likely down.",
                    fn=_nucleus_least_likely),
            Mistake("the softmax normalizes over the wrong axis: every row's L levels (the last axis) form one "
                    "distribution.", fn=_nucleus_softmax_over_rows),
        ])
