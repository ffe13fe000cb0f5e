"""The exercise checks: verdicts for right, wrong, unsolved and crashing answers; grading mode raises."""
import pytest
import torch

from gencourse import check, exercises
from gencourse.exercises import Case, evaluate


def _square_cases():
    return [Case(torch.tensor([1.0, 2.0])), Case(torch.tensor([-3.0])), Case(2.0, label="a number")]


def test_right_wrong_unsolved_and_crashing_answers():
    ref = lambda x: x * x
    assert evaluate("sq", lambda x: x ** 2, _square_cases(), reference=ref).status == exercises.PASSED
    wrong = evaluate("sq", lambda x: x * 2, _square_cases(), reference=ref, hint="multiply x by itself")
    assert wrong.status == exercises.FAILED and wrong.passed == 1 and "Hint: multiply" in wrong.message

    def unsolved(x):
        raise NotImplementedError

    assert evaluate("sq", unsolved, _square_cases(), reference=ref).status == exercises.NOT_ATTEMPTED
    crash = evaluate("sq", lambda x: x.undefined, _square_cases(), reference=ref)
    assert crash.status == exercises.FAILED and "AttributeError" in crash.message
    not_fn = evaluate("sq", 3, _square_cases(), reference=ref)
    assert not_fn.status == exercises.FAILED and "function" in not_fn.message


def test_shape_mismatch_is_explained():
    verdict = evaluate("s", lambda x: x.sum(), [Case(torch.ones(2, 3))], reference=lambda x: x.sum(0))
    assert "expected shape (3,)" in verdict.message


def test_learner_cannot_corrupt_the_reference_inputs():
    def in_place(x):
        x.mul_(0)
        return x

    verdict = evaluate("id", in_place, [Case(torch.ones(3))], reference=lambda x: x)
    assert verdict.status == exercises.FAILED


def test_report_prints_and_never_raises_outside_grading(capsys, monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    check.mean_image(lambda x: x.sum())
    out = capsys.readouterr().out
    assert "❌ mean_image" in out and "Hint" in out
    assert exercises.results["mean_image"].status == exercises.FAILED
    check.mean_image(lambda x: x.mean(0))
    assert "✅ mean_image" in capsys.readouterr().out


def test_grading_mode_raises_for_wrong_and_unsolved(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        check.mean_image(lambda x: x.sum())

    def unsolved(images):
        raise NotImplementedError

    with pytest.raises(exercises.ExerciseFailed, match="not attempted"):
        check.mean_image(unsolved)
    check.mean_image(lambda x: x.mean(0))  # a right answer passes in grading mode too


def test_close_compares_nested_values():
    assert exercises.close((torch.ones(2), 3.0), (torch.ones(2), 3.0))[0]
    ok, why = exercises.close((torch.ones(2),), (torch.ones(2), 1.0))
    assert not ok and "tuple of 2" in why
    ok, why = exercises.close("text", 1.0)
    assert not ok and "number" in why


def test_every_check_name_is_unique_and_callable():
    names = [n for n in check.__all__ if n not in ("grading_mode", "results", "summary")]
    assert len(names) == len(set(names))
    assert all(callable(getattr(check, n)) for n in names)
