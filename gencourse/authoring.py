"""Writing lessons: sources in ``notebooks/src/NN_slug.py`` become executed ``notebooks/NN_slug.ipynb``.

A lesson's source is a Python file in jupytext's "percent" format (``# %%`` starts a code cell,
``# %% [markdown]`` a text cell, ``# %% tags=["parameters"]`` a tagged one), so lessons are reviewed
as plain diffs. Building a lesson

1. converts it to a notebook,
2. inserts, after the title cell, the "Open in Colab" badge and the Colab bootstrap cell, both made
   from :data:`gencourse.REPO_URL` (the one place the repository's address is written),
3. gives every cell holding ``### BEGIN SOLUTION`` nbgrader's solution metadata, and
4. executes it top to bottom with nbclient (``GENCOURSE_PROGRESS=0``) and writes it with its outputs.

    python -m gencourse.authoring                 # every lesson
    python -m gencourse.authoring 03 05           # lessons whose file name starts with 03 or 05
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SOURCES = NOTEBOOKS / "src"
NAME_PATTERN = re.compile(r"^(\d\d)_[a-z0-9_]+$")
BEGIN = "### BEGIN SOLUTION"


def repo_url() -> str:
    from gencourse import REPO_URL

    return REPO_URL


def colab_badge(name: str, url: str | None = None) -> str:
    """The markdown of the "Open in Colab" badge for ``notebooks/<name>.ipynb``."""
    url = url or repo_url()
    path = url.replace("https://github.com/", "")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/main/notebooks/{name}.ipynb)")


def colab_bootstrap(url: str | None = None) -> str:
    """The one Colab bootstrap cell: installs the course package on Colab, does nothing elsewhere."""
    url = url or repo_url()
    return (
        "# On Google Colab: install the course package (and its dependencies) once. Elsewhere: nothing to do.\n"
        "import subprocess, sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"gencourse @ git+{url}\"], check=True)"
    )


def solution_metadata(source: str, index: int) -> dict:
    """nbgrader's metadata for a solution cell; its grade_id is the exercise function's name."""
    match = re.search(r"def\s+(\w+)\s*\(", source)
    return {"solution": True, "grade": False, "locked": False,
            "grade_id": match.group(1) if match else f"exercise_{index}", "schema_version": 3}


def test_metadata(grade_id: str, points: int = 1) -> dict:
    """nbgrader's metadata for the locked test cell that checks exercise ``grade_id`` (raises in grading mode)."""
    return {"solution": False, "grade": True, "locked": True, "points": points,
            "grade_id": f"check_{grade_id}", "schema_version": 3}


def notebook_from_source(path: Path) -> nbformat.NotebookNode:
    """The unexecuted notebook for a lesson source (header cells inserted, nbgrader metadata added)."""
    import jupytext

    name = path.stem
    if not NAME_PATTERN.match(name):
        raise ValueError(f"lesson sources are named NN_slug.py (two digits, lowercase), got {path.name}")
    nb = jupytext.read(path, fmt="py:percent")
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        raise ValueError(f"{path.name}: the first cell must be the markdown title with the learning objectives")
    header = [nbformat.v4.new_markdown_cell(colab_badge(name), metadata={"tags": ["colab"]}),
              nbformat.v4.new_code_cell(colab_bootstrap(), metadata={"tags": ["colab"]})]
    cells = [nb.cells[0], *header, *nb.cells[1:]]
    exercise = None
    for i, cell in enumerate(cells):
        cell.metadata.pop("lines_to_next_cell", None)
        cell.metadata.pop("lines_to_end_of_cell_marker", None)
        if cell.cell_type != "code":
            continue
        if BEGIN in cell.source:
            cell.metadata["nbgrader"] = exercise = solution_metadata(cell.source, i)
        elif exercise is not None:
            if cell.source.lstrip().startswith("check."):
                cell.metadata["nbgrader"] = test_metadata(exercise["grade_id"])
            exercise = None
    out = nbformat.v4.new_notebook(cells=cells)
    out.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    for i, cell in enumerate(out.cells):  # stable ids keep diffs small
        cell.id = f"c{i:03d}"
    return out


@contextlib.contextmanager
def execute_env(env: dict | None = None):
    """Environment for a kernel started inside the block: no progress bars, plus ``env``."""
    saved = dict(os.environ)
    os.environ.update({"GENCOURSE_PROGRESS": "0", **(env or {})})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def execute(nb: nbformat.NotebookNode, *, cwd: Path = NOTEBOOKS, timeout: int = 600, env: dict | None = None):
    """Run ``nb`` top to bottom in a fresh kernel; returns the seconds it took."""
    from nbclient import NotebookClient

    with execute_env(env):
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
        return time.perf_counter() - start


def build(path: Path, *, run: bool = True) -> float:
    """Build (and execute) one lesson into ``notebooks/``; returns the execution seconds."""
    nb = notebook_from_source(path)
    seconds = execute(nb) if run else 0.0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, NOTEBOOKS / f"{path.stem}.ipynb")
    return seconds


def sources(prefixes=()) -> list[Path]:
    paths = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in prefixes)]
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lessons", nargs="*", help="lesson number prefixes, e.g. 03 (default: all)")
    parser.add_argument("--no-run", action="store_true", help="convert without executing")
    args = parser.parse_args(argv)
    paths = sources(args.lessons)
    if not paths:
        print(f"no lesson sources match {args.lessons} in {SOURCES}", file=sys.stderr)
        return 2
    for path in paths:
        seconds = build(path, run=not args.no_run)
        print(f"{path.stem}: built" + ("" if args.no_run else f", executed in {seconds:.1f} s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
