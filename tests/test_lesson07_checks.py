"""The checks of lesson 07: the reference passes, typical mistakes fail, an unsolved exercise is "not attempted"."""
import pytest
import torch

from gencourse import autoregressive as ar
from gencourse import check, exercises



# --- causal_conv_mask -------------------------------------------------------------------------

def _mask_without_centre_row(kernel_size, mask_type):
    mask = torch.zeros(kernel_size, kernel_size)
    mask[: kernel_size // 2] = 1
    return mask


def _mask_types_swapped(kernel_size, mask_type):
    return ar.conv_mask(kernel_size, "B" if mask_type == "A" else "A")


def _mask_transposed(kernel_size, mask_type):
    return ar.conv_mask(kernel_size, mask_type).T


# --- made_layer_mask --------------------------------------------------------------------------

def _made_not_strict(in_degrees, out_degrees, output):
    return (out_degrees[:, None] >= in_degrees[None, :]).float()


def _made_transposed(in_degrees, out_degrees, output):
    return ar.made_mask(in_degrees, out_degrees, output=output).T


# --- autoregressive_nll -----------------------------------------------------------------------

def _nll_mean_over_pixels(logits, k):
    return ar.categorical_nll(logits, k) / k.shape[1]


def _nll_log_of_softmax(logits, k):
    return -torch.log(torch.softmax(logits, -1)).gather(-1, k.unsqueeze(-1)).squeeze(-1).sum(-1)


def _nll_plus_sign(logits, k):
    return -ar.categorical_nll(logits, k)


# --- sample_pixels ----------------------------------------------------------------------------

def _reference_sampler(logits_fn, n, num_pixels, temperature=1.0, generator=None):
    return ar.sample_autoregressive(logits_fn, n, num_pixels, temperature=temperature, generator=generator)


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


CASES = [
    ("causal_conv_mask", ar.conv_mask, _mask_without_centre_row),
    ("causal_conv_mask", ar.conv_mask, _mask_types_swapped),
    ("causal_conv_mask", ar.conv_mask, _mask_transposed),
    ("made_layer_mask", lambda i, o, out: ar.made_mask(i, o, output=out), _made_not_strict),
    ("made_layer_mask", lambda i, o, out: ar.made_mask(i, o, output=out), _made_transposed),
    ("autoregressive_nll", ar.categorical_nll, _nll_mean_over_pixels),
    ("autoregressive_nll", ar.categorical_nll, _nll_log_of_softmax),
    ("autoregressive_nll", ar.categorical_nll, _nll_plus_sign),
    ("sample_pixels", _reference_sampler, _sampler_ignores_temperature),
    ("sample_pixels", _reference_sampler, _sampler_multiplies_by_temperature),
    ("sample_pixels", _reference_sampler, _sampler_all_at_once),
    ("sample_pixels", _reference_sampler, _sampler_greedy),
]


@pytest.mark.parametrize("name,reference,wrong", CASES, ids=[f"{c[0]}-{c[2].__name__}" for c in CASES])
def test_reference_passes_wrong_fails_unsolved_is_not_attempted(name, reference, wrong, check_verdicts):
    check_verdicts(name, reference, wrong)


def test_grading_mode_raises_on_a_wrong_answer(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        check.autoregressive_nll(_nll_plus_sign)
    check.autoregressive_nll(ar.categorical_nll)  # the reference passes without raising


def test_the_sampler_check_accepts_a_sampler_that_ignores_the_generator():
    """Any correct sampler passes, whatever its random numbers: the check judges the distribution."""
    def unseeded(logits_fn, n, num_pixels, temperature=1.0, generator=None):
        return ar.sample_autoregressive(logits_fn, n, num_pixels, temperature=temperature)

    torch.manual_seed(123)
    assert check.sample_pixels(unseeded).status == exercises.PASSED
