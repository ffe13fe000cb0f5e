"""Every exercise of every lesson, checked against its own reference solution and its known mistakes (COURSE.md §5).

The solutions are the instructor edition's code (``gencourse/assets/solutions.json``, written when a lesson
is built). For each exercise: the reference solution passes its check; every typical wrong answer the check
declares (:class:`gencourse.exercises.Mistake`) fails it *with its own message*; and, in the lessons whose
exercises follow the two-step hint rule, a failed check never prints the solution's code.
"""
import contextlib
import io
import re

import pytest

from gencourse import check, exercises

SOLUTIONS = exercises.solutions()
# Lessons whose exercises follow every rule of COURSE.md §5 (each check knows >= 2 typical mistakes, hints
# never show code). The others are brought up to it by their own rebuilds.
STRICT = ("00_", "01_", "02_", "03_", "04_", "05_", "06_", "07_", "08_", "09_", "10_")
PREAMBLE = """
import math
import numpy as np
import torch
from torch import distributions as D, nn
from torch.nn import functional as F
import gencourse
from gencourse import data, basics, autoencoder, vae, gan, flows, autoregressive, metrics, train, diffusion, flow_matching
from gencourse import text, transformer, vq, latent, nets
from gencourse import transformer as tr
"""


def _solution(name):
    """The reference function, defined after the earlier exercises of its lesson (a solution may call them)."""
    namespace, entry = {}, SOLUTIONS[name]
    exec(PREAMBLE, namespace)
    earlier = sorted((e for e in SOLUTIONS.values() if e["lesson"] == entry["lesson"] and e["order"] < entry["order"]),
                     key=lambda e: e["order"])
    for e in [*earlier, entry]:
        exec(e["code"], namespace)
    return namespace[entry["function"]]


def _run(name, fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return getattr(check, name)(fn)


def _code_lines(code):
    """Lines of a solution that are code (not the def line, a docstring or a comment), 16+ characters."""
    body, in_doc = [], False
    for line in code.split("\n"):
        s = line.strip()
        if s.startswith(('"""', "'''")):
            in_doc = not (len(s) > 3 and s.endswith(('"""', "'''"))) and not in_doc if not in_doc else False
            continue
        if in_doc or not s or s.startswith(("#", "def ", "@", "return None")):
            continue
        if len(re.sub(r"\s", "", s)) >= 16:
            body.append(s)
    return body


def test_every_solution_has_a_check():
    assert SOLUTIONS, "gencourse/assets/solutions.json is empty: build the lessons"
    for name in SOLUTIONS:
        assert hasattr(check, name), f"solutions.json names {name}, which has no check"


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_reference_passes_and_every_known_mistake_is_caught(name):
    verdict = _run(name, _solution(name))
    assert verdict.status == exercises.PASSED, f"the reference solution of {name} fails its check:\n{verdict.message}"
    mistakes = exercises.catalog.get(name, [])
    strict = SOLUTIONS[name]["lesson"].startswith(STRICT)
    if strict:
        assert len([m for m in mistakes if m.wrong_answer is not None]) >= 2, (
            f"check.{name} declares fewer than two typical mistakes with a wrong answer that makes them")
    for mistake in mistakes:
        if mistake.wrong_answer is None:
            continue
        wrong = _run(name, mistake.wrong_answer)
        assert wrong.status == exercises.FAILED, f"check.{name} accepts the mistake: {mistake.message}"
        assert mistake.message in wrong.message, (
            f"check.{name} fails the mistake '{mistake.message[:60]}...' without its message:\n{wrong.message}")
        if strict:
            for line in _code_lines(SOLUTIONS[name]["code"]):
                assert line not in wrong.message, f"check.{name}'s first hint shows the solution's code: {line}"
