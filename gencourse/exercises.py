"""Instant checks for the exercises.

A check calls the learner's function on several cases, compares each answer with the reference, and
prints a verdict: what passed, what failed, and a hint. An unsolved exercise (it raises
``NotImplementedError``) prints "not attempted yet". Neither an unsolved nor a wrong answer raises,
so "Run All" always reaches the end of a lesson, which then continues with the reference
implementation. In grading mode (``GENCOURSE_GRADING=1``) a check that does not pass raises
:class:`ExerciseFailed`, so nbgrader's locked test cells can award points.

Hints come in two steps. A failed check says what is wrong: which cases failed and why, and, when the
answer matches one of the check's known mistakes (:class:`Mistake`: a sign error, a missing sum, the wrong axis,
variance for standard deviation, a detached gradient ...), that mistake's own message; then a conceptual
hint (which quantity, which equation). The reference code appears only when the learner asks for it:
``check.solution("<name>")`` prints the instructor edition's solution of that exercise.

A lesson's checks are written as::

    def gaussian_kl(fn):
        cases = [Case(mu, logvar) for ...]
        return run_check("gaussian_kl", fn, cases, reference=vae.gaussian_kl, hint="...",
                         mistakes=[Mistake("the variance where the log-variance belongs ...", wrong_fn), ...])

Every check records its mistakes in :data:`catalog` when it runs, so the tests can feed each known
mistake back to its check and assert that it is caught with its own message.
"""
from __future__ import annotations

import json
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"

# The latest verdict of each check by name, for tests and for an end-of-lesson summary.
results: dict = {}
# The known mistakes of each check by name, recorded when the check runs (the tests read them).
catalog: dict = {}


class ExerciseFailed(AssertionError):
    """Raised by a check in grading mode when the exercise does not pass."""


def grading_mode() -> bool:
    return os.environ.get("GENCOURSE_GRADING", "0").lower() in ("1", "true", "yes", "on")


@dataclass
class Mistake:
    """A typical wrong answer to an exercise.

    ``message`` is what a learner whose answer makes this mistake reads (what is wrong, not the code that is
    right). ``fn`` makes the mistake (same signature as the exercise): an answer whose outputs match ``fn``'s on
    every case is diagnosed with ``message``. A mistake without ``fn`` is one the check's ``compare`` detects
    itself (a detached gradient, say) and reports with the same message; ``example`` then gives a wrong
    answer that makes it, so the tests can show it is caught.
    """

    message: str
    fn: Callable | None = None
    example: Callable | None = None

    @property
    def wrong_answer(self) -> Callable | None:
        return self.fn if self.fn is not None else self.example


@dataclass
class Case:
    """One call of the learner's function: positional and keyword arguments, and a label for messages."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""

    def __init__(self, *args, label: str = "", **kwargs):
        self.args, self.kwargs, self.label = args, kwargs, label

    def describe(self) -> str:
        if self.label:
            return self.label
        parts = [_short(a) for a in self.args] + [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        return f"({', '.join(parts)})"

    def clone(self) -> "Case":
        """A copy whose tensors the learner's function may modify without harming the reference."""
        c = lambda v: v.clone() if isinstance(v, torch.Tensor) else v
        return Case(*[c(a) for a in self.args], label=self.label, **{k: c(v) for k, v in self.kwargs.items()})


@dataclass
class Verdict:
    name: str
    status: str
    passed: int = 0
    total: int = 0
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == PASSED

    def text(self) -> str:
        if self.status == PASSED:
            cases = "the case passed" if self.total == 1 else f"all {self.total} cases passed"
            return f"✅ {self.name}: {cases}. {self.message}".rstrip()
        if self.status == NOT_ATTEMPTED:
            return (f"⏳ {self.name}: not attempted yet — fill in the function between the solution markers and "
                    f"run this cell again. The lesson continues with the reference implementation.")
        return f"❌ {self.name}: {self.passed} of {self.total} cases passed.\n{self.message}"


def _short(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)}" if v.numel() > 4 else f"tensor({v.tolist()})"
    if isinstance(v, np.ndarray):
        return f"array{v.shape}"
    text = repr(v)
    return text if len(text) < 40 else text[:37] + "..."


def close(answer, expected, *, rtol: float = 1e-4, atol: float = 1e-5) -> tuple[bool, str]:
    """Compare an answer with the expected value: numbers, tensors, arrays, or tuples of these.

    Returns ``(ok, why_not)``; ``why_not`` names a shape, type or value mismatch.
    """
    if isinstance(expected, (tuple, list)):
        if not isinstance(answer, (tuple, list)) or len(answer) != len(expected):
            return False, f"expected a tuple of {len(expected)} values, got {_short(answer)}"
        for i, (a, e) in enumerate(zip(answer, expected)):
            ok, why = close(a, e, rtol=rtol, atol=atol)
            if not ok:
                return False, f"item {i}: {why}"
        return True, ""
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        exp = torch.as_tensor(expected).detach().double()
        if not isinstance(answer, (torch.Tensor, np.ndarray, float, int)):
            return False, f"expected a tensor of shape {tuple(exp.shape)}, got {type(answer).__name__}"
        ans = torch.as_tensor(answer).detach().double()
        if ans.shape != exp.shape:
            return False, f"expected shape {tuple(exp.shape)}, got shape {tuple(ans.shape)}"
        if not torch.allclose(ans, exp, rtol=rtol, atol=atol, equal_nan=False):
            diff = (ans - exp).abs()
            i = int(diff.flatten().argmax())
            return False, (f"values differ: largest difference {diff.max().item():.4g} at flat index {i} "
                           f"(expected {exp.flatten()[i].item():.6g}, got {ans.flatten()[i].item():.6g})")
        return True, ""
    if isinstance(expected, (float, int, np.floating, np.integer)) and not isinstance(expected, bool):
        try:
            ans = float(answer)
        except (TypeError, ValueError):
            return False, f"expected a number, got {_short(answer)}"
        if not np.isclose(ans, float(expected), rtol=rtol, atol=atol):
            return False, f"expected {float(expected):.6g}, got {ans:.6g}"
        return True, ""
    return (answer == expected, f"expected {expected!r}, got {answer!r}")


def under_seed(fn, seed: int = 0):
    """``fn`` run under a fixed torch seed, the caller's random state left as it was (for checks that train the
    learner's model: the verdict must not depend on the lesson's random state). Non-callables pass through."""
    if not callable(fn):
        return fn

    def seeded(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return fn(*args, **kwargs)

    return seeded


def run_check(
    name: str,
    fn: Callable,
    cases: list,
    *,
    reference: Callable | None = None,
    expected: list | None = None,
    compare: Callable | None = None,
    hint: str = "",
    mistakes: tuple | list = (),
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> Verdict:
    """Evaluate ``fn`` on ``cases`` against ``reference(*case)`` (or the ``expected`` values), report, return.

    ``compare(answer, expected, case) -> (ok, why_not)`` replaces the numeric comparison when given.
    ``hint`` is the conceptual hint of the first step (never the code); ``mistakes`` the typical wrong answers
    this check recognizes (:class:`Mistake`).
    """
    verdict = evaluate(name, fn, cases, reference=reference, expected=expected, compare=compare,
                       hint=hint, mistakes=mistakes, rtol=rtol, atol=atol)
    return report(verdict)


def evaluate(name, fn, cases, *, reference=None, expected=None, compare=None, hint="", mistakes=(),
             rtol=1e-4, atol=1e-5) -> Verdict:
    """Like :func:`run_check` without printing: the :class:`Verdict` alone."""
    catalog[name] = list(mistakes)
    if not callable(fn):
        return Verdict(name, FAILED, 0, len(cases), f"expected a function, got {type(fn).__name__}; pass the function itself, without calling it.")
    if (reference is None) == (expected is None):
        raise ValueError("give exactly one of reference= or expected=")
    passed, failures, answers = 0, [], {}
    for i, case in enumerate(cases):
        want = reference(*case.args, **case.kwargs) if reference is not None else expected[i]
        mine = case.clone()
        try:
            got = fn(*mine.args, **mine.kwargs)
        except NotImplementedError:
            if i == 0:
                return Verdict(name, NOT_ATTEMPTED, 0, len(cases))
            failures.append(f"  case {case.describe()}: raised NotImplementedError")
            continue
        except Exception as err:  # a learner's bug is a verdict, not a crash of the lesson
            where = traceback.extract_tb(err.__traceback__)[-1]
            failures.append(f"  case {case.describe()}: raised {type(err).__name__}: {err} (line {where.lineno})")
            continue
        answers[i] = got
        ok, why = compare(got, want, case) if compare else close(got, want, rtol=rtol, atol=atol)
        if ok:
            passed += 1
        else:
            failures.append(f"  case {case.describe()}: {why}")
    if passed == len(cases):
        return Verdict(name, PASSED, passed, len(cases))
    message = "\n".join(failures[:3])
    if len(failures) > 3:
        message += f"\n  ... and {len(failures) - 3} more"
    diagnosis = _diagnose(answers, cases, mistakes, compare=compare, rtol=rtol, atol=atol)
    if diagnosis:
        message += f"\nWhat looks wrong: {diagnosis}"
    if hint:
        message += f"\nHint: {hint}"
    message += f'\nStill stuck? Run check.solution("{name}") to see the reference solution.'
    return Verdict(name, FAILED, passed, len(cases), message)


def _diagnose(answers: dict, cases: list, mistakes, *, compare=None, rtol=1e-4, atol=1e-5) -> str:
    """The message of the first known mistake whose outputs the learner's answers match on every case."""
    if not answers:
        return ""
    for mistake in mistakes:
        if mistake.fn is None:
            continue
        matched = True
        for i, got in answers.items():
            case = cases[i].clone()
            try:
                wrong = mistake.fn(*case.args, **case.kwargs)
            except Exception:
                matched = False
                break
            ok, _ = compare(got, wrong, cases[i]) if compare else close(got, wrong, rtol=rtol, atol=atol)
            if not ok:
                matched = False
                break
        if matched:
            return mistake.message
    return ""


def report(verdict: Verdict) -> Verdict:
    """Print the verdict, remember it, and in grading mode raise unless it passed. Returns it silently."""
    results[verdict.name] = verdict
    print(verdict.text())
    if grading_mode() and not verdict.ok:
        raise ExerciseFailed(verdict.text())
    return _Silent(verdict)


class _Silent(Verdict):
    """A verdict that does not echo itself as a cell's output (the printed text is the output)."""

    def __init__(self, verdict: Verdict):
        super().__init__(verdict.name, verdict.status, verdict.passed, verdict.total, verdict.message)

    def _repr_pretty_(self, p, cycle):  # IPython: print nothing more
        pass

    def __repr__(self) -> str:
        return f"<{self.name}: {self.status}>"

    def _ipython_display_(self):
        pass


SOLUTIONS_FILE = Path(__file__).resolve().parent / "assets" / "solutions.json"


def solutions() -> dict:
    """Every exercise's reference solution: ``{check name: {"lesson": slug, "function": name, "code": source}}``,
    taken from the instructor edition of the lessons when they are built (``gencourse.authoring``)."""
    if not SOLUTIONS_FILE.exists():
        return {}
    return json.loads(SOLUTIONS_FILE.read_text())


def solution(name: str):
    """Show the reference solution of exercise ``name`` (the name after ``check.``): the second step of a hint.

    Prints the instructor edition's code of that exercise, highlighted in a notebook.
    """
    from gencourse.showsource import _Source

    known = solutions()
    key = name.__name__ if callable(name) else str(name)
    if key.startswith("check."):
        key = key[len("check."):]
    if key not in known:
        for entry_name, entry in known.items():  # the learner's function name works too
            if entry.get("function") == key:
                key = entry_name
                break
        else:
            raise ValueError(f"no exercise named {name!r}; known exercises: {', '.join(sorted(known)) or 'none'}. "
                             f"Pass the name that follows 'check.' in the check cell, e.g. check.solution(\"{next(iter(sorted(known)), 'mean_image')}\").")
    entry = known[key]
    print(f"Reference solution of {key} (lesson {entry['lesson']}):")
    return _Source(entry["code"])


def summary() -> str:
    """One line per exercise checked so far in this session."""
    if not results:
        return "No exercise checked yet."
    return "\n".join(f"{v.name:<32} {v.status}" for v in results.values())
