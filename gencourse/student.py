"""The student edition: every lesson with its exercises unsolved.

    python -m gencourse.student notebooks build/student     (what ``make student`` runs)

For each notebook: the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
``# YOUR CODE HERE`` and ``raise NotImplementedError(...)`` at the same indentation, outputs and
execution counts are cleared, and cells tagged ``instructor-only`` are removed. The sources (the
instructor edition) keep nbgrader's metadata, so nbgrader's own tools still work on them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
INSTRUCTOR_TAG = "instructor-only"
STUB = "# YOUR CODE HERE\nraise NotImplementedError(\"exercise not solved yet: replace this line with your code\")"


def strip_solutions(source: str) -> str:
    """Replace every solution region of a cell's source with the stub, keeping its indentation."""
    lines, out, inside = source.split("\n"), [], False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError(f"nested '{BEGIN}' in cell:\n{source}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + s for s in STUB.split("\n"))
        elif stripped.startswith(END):
            if not inside:
                raise ValueError(f"'{END}' without '{BEGIN}' in cell:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"'{BEGIN}' without '{END}' in cell:\n{source}")
    return "\n".join(out)


def student_notebook(nb: nbformat.NotebookNode, name: str | None = None) -> nbformat.NotebookNode:
    """The student edition of one notebook (a new object; ``nb`` is left unchanged).

    With the lesson's ``name`` (``NN_slug``), its badge cell becomes the student edition's header
    (:func:`gencourse.authoring.student_badge`)."""
    nb = nbformat.from_dict(nb)
    cells = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if INSTRUCTOR_TAG in tags:
            continue
        if name is not None and cell.cell_type == "markdown" and "colab" in tags and "colab-badge.svg" in cell.source:
            from gencourse.authoring import student_badge

            cell.source = student_badge(name)
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    nb.cells = cells
    return nb


def build(source_dir, out_dir) -> list[Path]:
    """Write the student edition of every ``*.ipynb`` in ``source_dir`` to ``out_dir``; return the paths."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    notebooks = sorted(source_dir.glob("*.ipynb"))
    if not notebooks:
        raise ValueError(f"no notebooks (*.ipynb) found in {source_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = student_notebook(nbformat.read(path, as_version=4), name=path.stem)
        target = out_dir / path.name
        nbformat.write(nb, target)
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default="notebooks", help="folder of instructor notebooks")
    parser.add_argument("out", nargs="?", default="build/student", help="folder for the student edition")
    args = parser.parse_args(argv)
    for path in build(args.source, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
