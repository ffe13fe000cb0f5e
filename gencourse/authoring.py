"""Writing lessons: sources in ``notebooks/src/NN_slug.py`` become executed ``notebooks/NN_slug.ipynb``.

A lesson's source is a Python file in jupytext's "percent" format (``# %%`` starts a code cell,
``# %% [markdown]`` a text cell, ``# %% tags=["parameters"]`` a tagged one), so lessons are reviewed
as plain diffs. Building a lesson

1. converts it to a notebook,
2. inserts, after the title cell, the "Open in Colab" badges (instructor and student edition) and the
   Colab bootstrap cell, all made from :data:`gencourse.REPO_URL` (the one place the repository's address
   is written),
3. gives every cell holding ``### BEGIN SOLUTION`` nbgrader's solution metadata,
4. executes it top to bottom with nbclient (``GENCOURSE_PROGRESS=0``) and writes it with its outputs, and
5. writes its editions: the student edition to ``notebooks/student/`` (what the second badge opens) and its
   exercises' solutions to ``gencourse/assets/solutions.json`` (what ``check.solution(name)`` prints).

    python -m gencourse.authoring                 # every lesson
    python -m gencourse.authoring 03 05           # lessons whose file name starts with 03 or 05
    python -m gencourse.authoring --editions      # only rewrite badges, student editions and solutions
    python -m gencourse.authoring 03 --text-only  # after a markdown-only edit: keep the executed outputs
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


STUDENT = NOTEBOOKS / "student"
# The kernel as ipykernel's own kernelspec names it. JupyterLab writes the running kernel's spec into the
# notebook when the kernel starts: any other display name (nbformat's "Python 3" was used before) marks a lesson
# as changed ("unsaved changes" on its tab) the moment a learner opens it.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
COLAB_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
STUDENT_SVG = "https://img.shields.io/badge/Colab-student%20edition-F9AB00?logo=googlecolab"


def colab_url(name: str, *, student: bool = False, url: str | None = None) -> str:
    """Colab's address of ``notebooks/<name>.ipynb`` (or of its student edition in ``notebooks/student/``)."""
    path = (url or repo_url()).replace("https://github.com/", "")
    folder = "notebooks/student" if student else "notebooks"
    return f"https://colab.research.google.com/github/{path}/blob/main/{folder}/{name}.ipynb"


def colab_badge(name: str, url: str | None = None) -> str:
    """The markdown of the instructor edition's badges: "Open in Colab", and the student edition on Colab."""
    return (f"[![Open In Colab]({COLAB_SVG})]({colab_url(name, url=url)}) "
            f"[![Student edition in Colab]({STUDENT_SVG})]({colab_url(name, student=True, url=url)})")


def student_badge(name: str, url: str | None = None) -> str:
    """The student edition's header: its own Colab badge, and the solutions one click away."""
    return (f"[![Open In Colab]({COLAB_SVG})]({colab_url(name, student=True, url=url)}) "
            f"**Student edition**: the exercises are yours to solve. A check that fails gives a hint; "
            f"`check.solution(\"<name>\")` prints the reference solution of one exercise, and "
            f"[the instructor edition]({colab_url(name, url=url)}) has them all, run.")


# The packages whose versions every lesson prints first (its figures depend on them).
VERSIONED = ("torch", "torchvision", "numpy", "scikit-learn", "gencourse")


def colab_bootstrap(url: str | None = None) -> str:
    """The one bootstrap cell, every lesson's first: installs the course package on Colab (nothing elsewhere) and
    prints the versions of Python and of :data:`VERSIONED`."""
    url = url or repo_url()
    return (
        "# On Google Colab: install the course package (and its dependencies) once. Elsewhere: nothing to do.\n"
        "import subprocess, sys\n"
        "from importlib import metadata\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"gencourse @ git+{url}\"], check=True)\n"
        "# The versions that matter: where a figure differs from the committed one, look here first.\n"
        f"packages = {VERSIONED!r}\n"
        "print(f\"Python {sys.version.split()[0]}\", *(f\"{p} {metadata.version(p)}\" for p in packages), sep=\" · \")"
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
        "kernelspec": dict(KERNELSPEC),
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
    """Build (and execute) one lesson into ``notebooks/``, then its editions; returns the execution seconds."""
    nb = notebook_from_source(path)
    seconds = execute(nb) if run else 0.0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, NOTEBOOKS / f"{path.stem}.ipynb")
    write_editions(path.stem, nb)
    return seconds


def rebuild_text(path: Path) -> None:
    """Rebuild a lesson whose code cells are unchanged (only its markdown was edited) without executing it:
    every code cell keeps the outputs of the committed run. Raises if any code cell differs."""
    old = nbformat.read(NOTEBOOKS / f"{path.stem}.ipynb", as_version=4)
    nb = notebook_from_source(path)
    old_code = [c for c in old.cells if c.cell_type == "code"]
    new_code = [c for c in nb.cells if c.cell_type == "code"]
    if [c.source for c in old_code] != [c.source for c in new_code]:
        raise ValueError(f"{path.stem}: code cells changed since the last run; execute it "
                         f"(python -m gencourse.authoring {path.stem[:2]})")
    for new, previous in zip(new_code, old_code):
        new.outputs, new.execution_count = previous.outputs, previous.execution_count
    nb.metadata = old.metadata  # the kernel's language_info of the run that made the outputs
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nbformat.write(nb, NOTEBOOKS / f"{path.stem}.ipynb")
    write_editions(path.stem, nb)


def solutions_of(nb: nbformat.NotebookNode, lesson: str) -> dict:
    """``{check name: {"lesson", "order", "function", "code"}}`` for every exercise of a notebook: the solution
    cell's code (markers removed), keyed by the name its check cell calls (``check.<name>(...)``); ``order`` counts
    the lesson's exercises from 1 (a solution may call the solutions of earlier exercises)."""
    found, cells = {}, nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or BEGIN not in cell.source:
            continue
        function = re.search(r"def\s+(\w+)\s*\(", cell.source)
        nxt = next((c for c in cells[i + 1:] if c.cell_type == "code"), None)
        called = re.search(r"check\.(\w+)\(", nxt.source) if nxt is not None else None
        if function is None or called is None:
            raise ValueError(f"{lesson}: an exercise cell must define a function and be followed by its check cell:\n"
                             f"{cell.source[:300]}")
        code = "\n".join(line for line in cell.source.split("\n")
                         if not line.strip().startswith(("### BEGIN SOLUTION", "### END SOLUTION")))
        found[called.group(1)] = {"lesson": lesson, "order": len(found) + 1, "function": function.group(1), "code": code}
    return found


def write_editions(name: str, nb: nbformat.NotebookNode | None = None) -> None:
    """Write lesson ``name``'s student edition and its solutions, from ``nb`` (default: the committed notebook).

    Also brings the committed notebook's badge cell in step with :func:`colab_badge`."""
    import json

    from gencourse import exercises
    from gencourse.student import student_notebook

    path = NOTEBOOKS / f"{name}.ipynb"
    if nb is None:
        nb = nbformat.read(path, as_version=4)
        badge = nb.cells[1]
        if "colab" in badge.metadata.get("tags", []) and badge.source != colab_badge(name):
            badge.source = colab_badge(name)
            nbformat.write(nb, path)
    STUDENT.mkdir(exist_ok=True)
    nbformat.write(student_notebook(nb, name=name), STUDENT / f"{name}.ipynb")
    known = {k: v for k, v in exercises.solutions().items() if v["lesson"] != name}
    known.update(solutions_of(nb, name))
    exercises.SOLUTIONS_FILE.parent.mkdir(parents=True, exist_ok=True)
    exercises.SOLUTIONS_FILE.write_text(json.dumps(dict(sorted(known.items())), indent=1, ensure_ascii=False) + "\n")


def sources(prefixes=()) -> list[Path]:
    paths = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in prefixes)]
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lessons", nargs="*", help="lesson number prefixes, e.g. 03 (default: all)")
    parser.add_argument("--no-run", action="store_true", help="convert without executing")
    parser.add_argument("--editions", action="store_true",
                        help="only rewrite the badges, student editions and solutions from the committed notebooks")
    parser.add_argument("--text-only", action="store_true",
                        help="after a markdown-only edit: rebuild keeping the committed outputs (refuses if code changed)")
    args = parser.parse_args(argv)
    paths = sources(args.lessons)
    if not paths:
        print(f"no lesson sources match {args.lessons} in {SOURCES}", file=sys.stderr)
        return 2
    if args.text_only:
        for path in paths:
            rebuild_text(path)
            print(f"{path.stem}: markdown rebuilt, outputs kept")
        return 0
    if args.editions:
        for path in paths:
            write_editions(path.stem)
            print(f"{path.stem}: student edition and solutions written")
        return 0
    for path in paths:
        seconds = build(path, run=not args.no_run)
        print(f"{path.stem}: built" + ("" if args.no_run else f", executed in {seconds:.1f} s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
