"""The checks of lesson 07: the reference passes, typical mistakes fail with their own message, an unsolved
exercise is "not attempted", and what the generic catalog test cannot see (the trained-model check's
diagnoses, a sampler judged by its distribution, grading mode)."""
import pytest
import torch

from gencourse import autoregressive as ar
from gencourse import check, exercises
from gencourse.check import lesson07


def _reference_sampler(logits_fn, n, num_pixels, temperature=1.0, generator=None):
    return ar.sample_autoregressive(logits_fn, n, num_pixels, temperature=temperature, generator=generator)


REFERENCES = {
    "autoregressive_nll": ar.categorical_nll,
    "made_masks": ar.made_masks,
    "train_made": lambda k_train: ar.train_made(k_train),
    "causal_conv_mask": ar.conv_mask,
    "sample_pixels": _reference_sampler,
    "nucleus_probs": lesson07._reference_nucleus,
}


def _mistakes(name):
    """Run the check once with the reference, so its mistakes are in the catalog; return them."""
    getattr(check, name)(REFERENCES[name])
    return exercises.catalog[name]


CASES = [(name, i) for name, n in (("autoregressive_nll", 4), ("made_masks", 5), ("causal_conv_mask", 4),
                                   ("sample_pixels", 4), ("nucleus_probs", 4)) for i in range(n)]


@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_reference_passes_wrong_fails_unsolved_is_not_attempted(name, index, check_verdicts, capsys):
    mistake = _mistakes(name)[index]
    check_verdicts(name, REFERENCES[name], mistake.wrong_answer)
    getattr(check, name)(mistake.wrong_answer)
    out = capsys.readouterr().out
    assert mistake.message in out, f"{name}: the mistake is not named:\n{out}"


def test_every_check_declares_at_least_two_mistakes_with_a_wrong_answer():
    for name in REFERENCES:
        assert len([m for m in _mistakes(name) if m.wrong_answer is not None]) >= 2, name


# The reference and every declared mistake of this build-and-train check run in tests/test_exercise_catalog.py
# (the lesson's own solution, each mistake with its own message); they are not trained a second time here.


def test_train_made_rejects_a_model_that_is_not_a_module_or_has_the_wrong_shape(capsys):
    def returns_a_function(k_train):
        return lambda x: torch.zeros(len(x), 64, 17)

    def flat_logits(k_train):
        return torch.nn.Linear(64, 64 * 17)

    assert check.train_made(returns_a_function).status == exercises.FAILED
    assert "nn.Module" in capsys.readouterr().out
    assert check.train_made(flat_logits).status == exercises.FAILED
    assert "(64, 17)" in capsys.readouterr().out
    assert check.train_made(42).status == exercises.FAILED


def test_train_made_leaves_the_lessons_random_state_alone(capsys):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    check.train_made(lambda k_train: ar.train_made(k_train, epochs=1))
    assert torch.equal(torch.rand(3), before)


def test_a_peeking_model_fails_even_with_a_low_nll(capsys):
    """A model that sees the pixel it predicts can score far below the goal; the autograd test still fails it."""

    class Copier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(60.0))

        def forward(self, x):
            k = (x * 16).round().long()
            return self.scale * torch.nn.functional.one_hot(k, 17).float() * (1 + 0 * x.unsqueeze(-1))

    verdict = check.train_made(lambda k_train: Copier())
    assert verdict.status == exercises.FAILED and lesson07._PEEKS in verdict.message


def test_grading_mode_raises_on_a_wrong_answer(monkeypatch, capsys):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        check.autoregressive_nll(lesson07._nll_plus_sign)
    check.autoregressive_nll(ar.categorical_nll)  # the reference passes without raising


def test_the_sampler_check_accepts_a_sampler_that_ignores_the_generator(capsys):
    """Any correct sampler passes, whatever its random numbers: the check judges the distribution."""
    def unseeded(logits_fn, n, num_pixels, temperature=1.0, generator=None):
        return ar.sample_autoregressive(logits_fn, n, num_pixels, temperature=temperature)

    torch.manual_seed(123)
    assert check.sample_pixels(unseeded).status == exercises.PASSED


def test_nucleus_cases_have_a_nucleus_larger_than_one_level():
    """Every row's top level holds less than p, so a nucleus that drops the crossing level is never empty
    (the strict mistake stays a finite, diagnosable answer)."""
    for case in lesson07._nucleus_cases():
        logits, p = case.args
        assert torch.softmax(logits, -1).max() < p
