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


def test_a_known_mistake_is_named_and_the_hint_comes_before_the_solution():
    ref = lambda x: x * x
    mistakes = [exercises.Mistake("doubled x instead of squaring it", fn=lambda x: x * 2),
                exercises.Mistake("squared the wrong sign", fn=lambda x: -x * x)]
    cases = _square_cases()
    doubled = evaluate("sq", lambda x: 2 * x, cases, reference=ref, hint="a square is a product", mistakes=mistakes)
    assert "What looks wrong: doubled x instead" in doubled.message
    assert doubled.message.index("What looks wrong") < doubled.message.index("Hint:") < doubled.message.index(
        'check.solution("sq")')
    negated = evaluate("sq", lambda x: -(x ** 2), cases, reference=ref, mistakes=mistakes)
    assert "squared the wrong sign" in negated.message and "doubled" not in negated.message
    unknown = evaluate("sq", lambda x: x + 1, cases, reference=ref, mistakes=mistakes)
    assert "What looks wrong" not in unknown.message and 'check.solution("sq")' in unknown.message
    assert exercises.catalog["sq"] == mistakes


def test_a_mistake_that_crashes_on_some_case_does_not_match():
    def fragile(x):
        if not isinstance(x, torch.Tensor):
            raise TypeError("tensors only")
        return x * 2
    verdict = evaluate("sq", lambda x: x + 100, _square_cases(), reference=lambda x: x * x,
                       mistakes=[exercises.Mistake("fragile", fn=fragile)])
    assert "fragile" not in verdict.message


def test_solution_prints_the_instructor_code_only_when_asked(capsys):
    known = exercises.solutions()
    assert known, "gencourse/assets/solutions.json is empty"
    name, entry = next(iter(known.items()))
    shown = check.solution(name)
    assert f"Reference solution of {name}" in capsys.readouterr().out
    assert repr(shown) == entry["code"] and "BEGIN SOLUTION" not in repr(shown)
    assert repr(check.solution(entry["function"])) == entry["code"]  # the learner's function name works too
    with pytest.raises(ValueError, match="known exercises"):
        check.solution("no_such_exercise")
