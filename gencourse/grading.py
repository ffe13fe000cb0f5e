"""Grading a learner's notebook the way nbgrader's autograder does, without an nbgrader install.

Each exercise's check cell is a locked nbgrader test cell (``grade: true``, one point). Run with
``GENCOURSE_GRADING=1``, a check raises unless the exercise passes, so a test cell earns its points
exactly when it runs without an error. nbgrader's own ``autograde`` works on the same cells.

    python -m gencourse.grading build/student/00_welcome.ipynb
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def grade(nb: nbformat.NotebookNode, *, cwd=None, env: dict | None = None) -> dict:
    """Execute ``nb`` in grading mode; return ``{grade_id: (points earned, points possible)}``."""
    from nbclient import NotebookClient

    from gencourse.authoring import NOTEBOOKS, execute_env

    nb = nbformat.from_dict(nb)
    with execute_env({"GENCOURSE_GRADING": "1", **(env or {})}):
        NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(cwd or NOTEBOOKS)}}).execute()
    scores = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            failed = any(out.output_type == "error" for out in cell.outputs)
            possible = meta.get("points", 1)
            scores[meta["grade_id"]] = (0 if failed else possible, possible)
    if not scores:
        raise ValueError("this notebook has no graded cells (nbgrader metadata with grade: true)")
    return scores


def main(argv=None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    if not paths:
        print("usage: python -m gencourse.grading NOTEBOOK.ipynb [...]", file=sys.stderr)
        return 2
    for path in paths:
        scores = grade(nbformat.read(path, as_version=4), cwd=path.parent)
        earned = sum(e for e, _ in scores.values())
        possible = sum(p for _, p in scores.values())
        print(f"{path.name}: {earned}/{possible}")
        for grade_id, (e, p) in scores.items():
            print(f"  {grade_id:<36} {e}/{p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
