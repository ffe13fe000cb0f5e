"""Checks for lesson 07 (autoregressive models): a PixelCNN mask, a MADE mask, the exact log-likelihood,
and the pixel-by-pixel sampler."""
import itertools

import torch

from gencourse import autoregressive as ar
from gencourse.exercises import Case, close, run_check

__all__ = ["causal_conv_mask", "made_layer_mask", "autoregressive_nll", "sample_pixels"]


def causal_conv_mask(fn):
    """``fn(kernel_size, mask_type) -> (k, k)`` float mask of a PixelCNN convolution ("A" or "B")."""
    cases = [Case(k, t, label=f"kernel_size={k}, mask_type={t!r}") for k in (3, 5, 7) for t in ("A", "B")]
    cases.append(Case(1, "A", label="kernel_size=1, mask_type='A' (sees nothing)"))
    return run_check("causal_conv_mask", fn, cases, reference=ar.conv_mask,
                     compare=lambda got, want, case: close(torch.as_tensor(got).float(), want),
                     hint="ones on every row above the centre, and on the centre row left of the centre; type 'B' "
                          "also keeps the centre, type 'A' does not. Everything below is zero.")


def made_layer_mask(fn):
    """``fn(in_degrees, out_degrees, output) -> (len(out), len(in))`` float mask of one MADE layer."""
    g = torch.Generator().manual_seed(7)
    d_in = torch.arange(1, 6)
    hidden = torch.randint(1, 5, (8,), generator=g)
    hidden2 = torch.randint(1, 5, (6,), generator=g)
    cases = [
        Case(d_in, hidden, False, label="inputs 1..5 -> 8 hidden units (output=False)"),
        Case(hidden, hidden2, False, label="8 hidden -> 6 hidden units (output=False)"),
        Case(hidden, d_in, True, label="8 hidden -> outputs 1..5 (output=True)"),
        Case(d_in, d_in, True, label="inputs 1..5 -> outputs 1..5 directly (output=True)"),
    ]
    return run_check("made_layer_mask", fn, cases, reference=lambda i, o, out: ar.made_mask(i, o, output=out),
                     compare=lambda got, want, case: close(torch.as_tensor(got).float(), want),
                     hint="the mask has one row per *output* unit and one column per input unit: shape "
                          "(len(out_degrees), len(in_degrees)). Hidden layers keep out >= in; the output layer "
                          "keeps out > in (strict), so pixel d never sees itself.")


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
    return run_check("autoregressive_nll", fn, cases, reference=ar.categorical_nll, rtol=1e-4, atol=1e-3,
                     hint="take log_softmax over the last axis (stable; log(softmax(.)) underflows to -inf), pick "
                          "each pixel's true level with gather, and sum minus those over the pixels: one number per image.")


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


def _tiny_joint(temperature):
    """Exact distribution (27,) of per-step tempered ancestral sampling from the tiny model, by enumeration."""
    probs = []
    for seq in itertools.product(range(_LEVELS), repeat=_PIXELS):
        k = torch.tensor([seq])
        p = 1.0
        for i in range(_PIXELS):
            p *= torch.softmax(_tiny_logits(k, i)[0] / temperature, 0)[seq[i]].item()
        probs.append(p)
    return torch.tensor(probs)


def _compare_samples(got, want, case):
    n = case.args[1]
    if not isinstance(got, torch.Tensor):
        return False, f"expected a tensor of levels (n, num_pixels), got {type(got).__name__}"
    if tuple(got.shape) != (n, _PIXELS):
        return False, f"expected shape ({n}, {_PIXELS}), got {tuple(got.shape)}"
    if got.dtype.is_floating_point and not torch.equal(got, got.round()):
        return False, "expected integer levels (e.g. from torch.multinomial), got fractional values"
    got = got.long()
    if got.min() < 0 or got.max() >= _LEVELS:
        return False, f"levels must lie in 0..{_LEVELS - 1}, got values in {got.min().item()}..{got.max().item()}"
    index = (got * torch.tensor([_LEVELS ** 2, _LEVELS, 1])).sum(1)
    freq = torch.bincount(index, minlength=_LEVELS ** _PIXELS).double() / n
    gap = (freq - want.double()).abs().max().item()
    if gap > 0.02:
        return False, (f"the samples do not follow the model: a sequence's frequency is off by {gap:.3f} "
                       f"(tolerance 0.02 with {n} samples)")
    return True, ""


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
    return run_check("sample_pixels", fn, cases, expected=expected, compare=_compare_samples,
                     hint="start from a blank canvas of zeros (n, num_pixels); for i = 0, 1, ... in order, get the "
                          "logits of pixel i from the canvas, divide them by the temperature, softmax, draw one "
                          "level per row (torch.multinomial) and write it into column i before moving on.")
