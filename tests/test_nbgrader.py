"""nbgrader's own tools on the course: every lesson goes through ``generate_assignment``, and ``autograde``
gives a solved copy of lesson 00 full points and the unsolved release none (checks in grading mode)."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from gencourse import authoring

pytestmark = pytest.mark.student
pytest.importorskip("nbgrader")


def _nbgrader(course: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)  # nbgrader calls the `alembic` script of its environment
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **(env or {})}
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "ERROR" not in result.stderr, result.stderr[-4000:]
    return result


@pytest.fixture
def course(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = 'gencourse'\nc.CourseDirectory.root = {str(tmp_path)!r}\n")
    return tmp_path


def test_every_lesson_releases_with_nbgrader(course):
    source = course / "source" / "lessons"
    source.mkdir(parents=True)
    lessons = sorted(authoring.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    for path in lessons:
        shutil.copy(path, source)
    _nbgrader(course, "generate_assignment", "lessons", "--force")
    for path in lessons:
        released = nbformat.read(course / "release" / "lessons" / path.name, as_version=4)
        solutions = [c for c in released.cells if c.metadata.get("nbgrader", {}).get("solution")]
        assert solutions, f"{path.name}: no solution cells"
        for cell in solutions:
            assert "BEGIN SOLUTION" not in cell.source and "NotImplementedError" in cell.source, path.name


def test_autograde_awards_points_only_for_solved_exercises(course):
    lesson = next(authoring.NOTEBOOKS.glob("00_*.ipynb"))
    (course / "source" / "lesson00").mkdir(parents=True)
    shutil.copy(lesson, course / "source" / "lesson00")
    _nbgrader(course, "generate_assignment", "lesson00", "--force")
    for student, version in (("solved", course / "source"), ("unsolved", course / "release")):
        folder = course / "submitted" / student / "lesson00"
        folder.mkdir(parents=True)
        shutil.copy(version / "lesson00" / lesson.name, folder)
    env = {"GENCOURSE_GRADING": "1", "GENCOURSE_QUICK": "1", "GENCOURSE_PROGRESS": "0"}
    _nbgrader(course, "autograde", "lesson00", "--create", "--force", env=env)
    _nbgrader(course, "export")
    with open(course / "grades.csv") as fh:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(fh)}
    assert scores["solved"][0] == scores["solved"][1] > 0
    assert scores["unsolved"] == (0.0, scores["solved"][1])
