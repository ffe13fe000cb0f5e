"""Grading with the locked test cells: a solved copy of a lesson earns every point, an unsolved one none."""
import nbformat
import pytest

from gencourse import authoring, grading
from gencourse.student import student_notebook

pytestmark = pytest.mark.student

LESSON = authoring.NOTEBOOKS / "00_welcome.ipynb"


@pytest.mark.skipif(not LESSON.exists(), reason="lesson 00 not built")
def test_solved_copy_earns_every_point_and_unsolved_none():
    solved = nbformat.read(LESSON, as_version=4)
    scores = grading.grade(solved, env={"GENCOURSE_QUICK": "1"})
    assert scores and all(earned == possible for earned, possible in scores.values()), scores
    unsolved = grading.grade(student_notebook(solved), env={"GENCOURSE_QUICK": "1"})
    assert unsolved.keys() == scores.keys()
    assert all(earned == 0 for earned, _ in unsolved.values()), unsolved
