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
