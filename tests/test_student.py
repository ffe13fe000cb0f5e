"""The student-edition builder: solution regions stubbed, outputs cleared, instructor-only cells removed."""
import nbformat
import pytest

from gencourse import student


def _notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 99 · Test"),
        nbformat.v4.new_code_cell(
            "def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n",
            metadata={"nbgrader": {"solution": True, "grade": False, "locked": False, "grade_id": "f", "schema_version": 3}},
            execution_count=3, outputs=[nbformat.v4.new_output("stream", text="hi")]),
        nbformat.v4.new_markdown_cell("answers", metadata={"tags": ["instructor-only"]}),
        nbformat.v4.new_code_cell("print(1)", execution_count=4),
    ]
    return nb


def test_strip_solutions_keeps_indentation_and_the_rest():
    out = student.strip_solutions("def f(x):\n    a = 1\n    ### BEGIN SOLUTION\n    return a\n    ### END SOLUTION\n")
    assert out == ("def f(x):\n    a = 1\n    # YOUR CODE HERE\n"
                   "    raise NotImplementedError(\"exercise not solved yet: replace this line with your code\")\n")
    compile(out, "<cell>", "exec")


def test_unbalanced_markers_are_errors():
    with pytest.raises(ValueError, match="without"):
        student.strip_solutions("### BEGIN SOLUTION\nx = 1\n")
    with pytest.raises(ValueError, match="without"):
        student.strip_solutions("x = 1\n### END SOLUTION\n")


def test_student_notebook(tmp_path):
    nb = _notebook()
    out = student.student_notebook(nb)
    assert len(out.cells) == 3
    code = out.cells[1]
    assert "NotImplementedError" in code.source and "x + 1" not in code.source
    assert code.outputs == [] and code.execution_count is None
    assert code.metadata["nbgrader"]["solution"]
    assert nb.cells[1].outputs, "the instructor notebook is left unchanged"
    nbformat.write(nb, tmp_path / "99_test.ipynb")
    written = student.build(tmp_path, tmp_path / "student")
    assert [p.name for p in written] == ["99_test.ipynb"]
    with pytest.raises(ValueError, match="no notebooks"):
        student.build(tmp_path / "student" / "empty", tmp_path / "x")


# The published student editions (notebooks/student/, what the second Colab badge opens) and the solutions that
# check.solution prints (gencourse/assets/solutions.json) are written when a lesson is built: they must be in
# step with the committed instructor notebooks.
from gencourse import authoring, exercises  # noqa: E402

LESSONS = sorted(authoring.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_published_student_edition_is_in_step(path):
    published = authoring.STUDENT / path.name
    assert published.exists(), f"no student edition {published}: run python -m gencourse.authoring --editions"
    expected = student.student_notebook(nbformat.read(path, as_version=4), name=path.stem)
    actual = nbformat.read(published, as_version=4)
    assert [(c.cell_type, c.source) for c in actual.cells] == [(c.cell_type, c.source) for c in expected.cells], (
        f"{published} is out of step with {path}: run python -m gencourse.authoring {path.stem[:2]} --editions")
    assert all(not c.get("outputs") for c in actual.cells if c.cell_type == "code")
    header = actual.cells[1].source
    assert authoring.colab_url(path.stem, student=True) in header and authoring.colab_url(path.stem) in header
    assert "check.solution" in header


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_solutions_are_in_step(path):
    expected = authoring.solutions_of(nbformat.read(path, as_version=4), path.stem)
    recorded = {k: v for k, v in exercises.solutions().items() if v["lesson"] == path.stem}
    assert recorded == expected, f"solutions.json is out of step with {path.name}: run python -m gencourse.authoring --editions"


def test_instructor_badges_open_both_editions():
    badge = authoring.colab_badge("03_variational_autoencoders")
    assert badge.count("colab.research.google.com/github/") == 2
    assert "/blob/main/notebooks/03_variational_autoencoders.ipynb" in badge
    assert "/blob/main/notebooks/student/03_variational_autoencoders.ipynb" in badge
