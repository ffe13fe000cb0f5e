"""The lessons follow the conventions of COURSE.md §4 and §5, read from the committed notebooks."""
import re
from pathlib import Path

import nbformat
import pytest

import gencourse
from gencourse import authoring

NOTEBOOKS = sorted(authoring.NOTEBOOKS.glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
BEGIN = "### BEGIN SOLUTION"


def _read(path):
    return nbformat.read(path, as_version=4)


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _texts(cell):
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            yield out.text
        elif out.output_type in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "image/png" not in data:  # a figure's text/plain twin ("<Figure size ...>") is not shown
                yield data.get("text/plain", "")


def test_there_are_lessons_and_each_has_a_source():
    assert NOTEBOOKS, "no lessons in notebooks/"
    sources = {p.stem for p in authoring.SOURCES.glob("*.py")}
    assert {p.stem for p in NOTEBOOKS} == sources


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_name_title_objectives_and_order(path):
    assert authoring.NAME_PATTERN.match(path.stem), f"{path.name}: lessons are named NN_slug.ipynb"
    nb = _read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.stem[:2]} ")
    assert "learning objectives" in first.source.lower()
    badge, boot = nb.cells[1], nb.cells[2]
    assert badge.source == authoring.colab_badge(path.stem), "the Colab badge is out of step with REPO_URL"
    assert boot.cell_type == "code" and boot.source == authoring.colab_bootstrap(), "Colab bootstrap cell out of step"
    assert gencourse.REPO_URL in boot.source
    params = nb.cells[3]
    assert params.cell_type == "code" and "parameters" in params.metadata.get("tags", [])
    assert "GENCOURSE_QUICK" in params.source and "os.environ" in params.source
    setup = next(c for c in nb.cells[4:] if c.cell_type == "code")
    assert "gencourse.setup(" in setup.source, "the imports cell after the parameters seeds with gencourse.setup"
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "summary" in last.source.lower()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_exercises_have_nbgrader_metadata_and_a_check(path):
    nb = _read(path)
    cells = nb.cells
    exercises = [i for i, c in enumerate(cells) if c.cell_type == "code" and BEGIN in c.source]
    minimum = 1 if path.stem.startswith("00") else 3
    assert len(exercises) >= minimum, f"{path.name}: {len(exercises)} exercises, at least {minimum} expected"
    for i in exercises:
        cell = cells[i]
        meta = cell.metadata.get("nbgrader", {})
        assert meta.get("solution") is True and meta.get("grade") is False and meta.get("locked") is False
        assert meta.get("schema_version") == 3 and meta.get("grade_id")
        assert "### END SOLUTION" in cell.source
        name = re.search(r"def\s+(\w+)\s*\(", cell.source).group(1)
        nxt = next(c for c in cells[i + 1:] if c.cell_type == "code")
        assert re.search(rf"check\.\w+\(\s*{name}\b", nxt.source), f"{path.name}: no check of {name} after it"
        graded = nxt.metadata.get("nbgrader", {})
        assert graded.get("grade") is True and graded.get("locked") is True and graded.get("points", 0) > 0, (
            f"{path.name}: the check of {name} is not a locked nbgrader test cell")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_executed_clean_and_small(path):
    assert path.stat().st_size < 2_000_000, f"{path.name} is over 2 MB"
    nb = _read(path)
    counts = [c.execution_count for c in _code(nb) if c.source.strip()]
    assert None not in counts, f"{path.name}: not every code cell was executed"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: not executed top to bottom in one fresh run"
    for cell in _code(nb):
        for out in cell.outputs:
            assert out.output_type != "error", f"{path.name}: error output in\n{cell.source[:200]}"
        for text in _texts(cell):
            assert not re.search(r"at 0x[0-9a-fA-F]{6,}", text), f"{path.name}: memory address in an output"
            assert not re.search(r"^\[<matplotlib|^<Figure size|^Text\(", text, re.M), f"{path.name}: stray plot repr"
            assert "Error displaying widget" not in text
            # a traceback's header at a line start (lesson 09 prints text sampled from Python's manual, which
            # mentions tracebacks inside sentences)
            assert not re.search(r"^Traceback \(most recent call last\)", text, re.M), f"{path.name}: a traceback"
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                assert "Traceback" not in out.text, f"{path.name}: a traceback on stderr"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_matches_its_source(path):
    expected = authoring.notebook_from_source(authoring.SOURCES / f"{path.stem}.py")
    actual = _read(path)
    assert [c.source for c in actual.cells] == [c.source for c in expected.cells], (
        f"{path.name} differs from notebooks/src/{path.stem}.py: rebuild it with `make notebooks LESSONS={path.stem[:2]}`")


PACKAGE_LINES = [line for f in sorted(Path(gencourse.__file__).parent.glob("*.py"))
                 for line in f.read_text().splitlines() + [""]]


def _in_package(shown: str) -> bool:
    """Whether ``shown`` (dedented source) occurs in a gencourse module at some indentation."""
    lines = shown.rstrip("\n").splitlines()
    for i in range(len(PACKAGE_LINES) - len(lines) + 1):
        indent = len(PACKAGE_LINES[i]) - len(lines[0])
        if indent < 0 or PACKAGE_LINES[i] != " " * indent + lines[0]:
            continue
        if all(have[indent:] == want or not (have.strip() or want.strip())
               for have, want in zip(PACKAGE_LINES[i:i + len(lines)], lines)):
            return True
    return False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_the_source_a_lesson_shows_is_the_current_code(path):
    """A cell ``gencourse.show(f)`` printed f's source when the notebook ran: it must still be f's source."""
    stale = []
    for cell in _code(_read(path)):
        if cell.source.strip().startswith("gencourse.show(") and cell.source.strip().count("\n") == 0:
            shown = [t for t in _texts(cell) if t]
            if not shown or not _in_package(shown[0]):
                stale.append(cell.source.strip())
    assert not stale, (f"{path.name} shows code that is no longer in gencourse: {stale}; rebuild it with "
                       f"`make notebooks LESSONS={path.stem[:2]}`")


def test_instructor_guide_lists_every_exercise_of_every_lesson():
    """Each lesson's section of docs/instructor_guide.md has one exercise-table row per exercise, naming the
    learner's function or its check, and names no exercise the notebook does not have."""
    guide = (authoring.NOTEBOOKS.parent / "docs" / "instructor_guide.md").read_text()
    parts = re.split(r"^## (\d\d) · ", guide, flags=re.M)
    sections = dict(zip(parts[1::2], parts[2::2]))
    for path in NOTEBOOKS:
        number = path.stem[:2]
        assert number in sections, f"docs/instructor_guide.md has no section '## {number} · ...'"
        rows = [line for line in sections[number].splitlines() if re.match(r"^\| `", line)]
        named = [set(re.findall(r"`(?:check\.)?(\w+)`", row.split("|")[1])) for row in rows]
        cells = _read(path).cells
        exercises = {}
        for i, c in enumerate(cells):
            if c.cell_type == "code" and BEGIN in c.source:
                fn = re.search(r"def\s+(\w+)\s*\(", c.source).group(1)
                nxt = next(n for n in cells[i + 1:] if n.cell_type == "code")
                exercises[fn] = {fn, re.search(r"check\.(\w+)\(", nxt.source).group(1)}
        for fn, names in exercises.items():
            assert any(names & row for row in named), f"guide section {number} has no row for exercise {fn}"
        for row in named:
            assert any(row & names for names in exercises.values()), f"guide section {number} names {row}, not an exercise"


# Lessons whose exercises follow every rule of COURSE.md §5; the others are brought up to it by their rebuilds.
STRICT = ("01", "02", "03", "04", "05", "06", "07", "09", "10")


def _exercises(nb):
    """(cell index, function name, check name, solution lines) of each exercise, in order."""
    cells, found = nb.cells, []
    for i, c in enumerate(cells):
        if c.cell_type == "code" and BEGIN in c.source:
            fn = re.search(r"def\s+(\w+)\s*\(", c.source).group(1)
            nxt = next(n for n in cells[i + 1:] if n.cell_type == "code")
            called = re.search(r"check\.(\w+)\(", nxt.source).group(1)
            region = c.source.split(BEGIN, 1)[1].split("### END SOLUTION", 1)[0]
            lines = [ln for ln in region.splitlines() if ln.strip() and not ln.strip().startswith("#")]
            found.append((i, fn, called, lines))
    return found


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem[:2] in STRICT], ids=lambda p: p.stem)
def test_exercise_mix(path):
    """4-6 exercises, at most one a one-liner (COURSE.md §5)."""
    found = _exercises(_read(path))
    assert 4 <= len(found) <= 6, f"{path.name}: {len(found)} exercises, 4 to 6 expected"
    one_liners = [fn for _, fn, _, lines in found if len(lines) <= 1]
    assert len(one_liners) <= 1, f"{path.name}: more than one one-line exercise: {one_liners}"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem[:2] in STRICT], ids=lambda p: p.stem)
def test_no_reference_shown_before_its_exercise(path):
    """gencourse.show(...) of an exercise's reference comes after the exercise, never before it."""
    nb = _read(path)
    for i, fn, called, _ in _exercises(nb):
        names = {fn, called}
        for cell in nb.cells[:i]:
            if cell.cell_type != "code":
                continue
            for shown in re.findall(r"show\(([\w.]+)\)", cell.source):
                last = shown.split(".")[-1]
                assert not any(last == n or n.endswith(last) or last.endswith(n) for n in names), (
                    f"{path.name}: show({shown}) appears before the exercise {fn} it solves")


COST = re.compile(r"[Aa]bout (\d+) s on a 2-core laptop CPU \((\d+) CPU seconds with two threads, measured by "
                  r"`make bench`\)")


def _bench_rows():
    """{lesson: (wall seconds, CPU seconds)} from the README's `make bench` table."""
    text = (authoring.NOTEBOOKS.parent / "README.md").read_text()
    table = text.split("<!-- bench:start -->")[1].split("<!-- bench:end -->")[0]
    return {m[1]: (int(m[2]), int(m[3])) for m in re.finditer(r"^\| (\d\d_\w+) \| (\d+) \| (\d+) \|", table, re.M)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_the_header_gives_the_cost_measured_by_make_bench(path):
    """COURSE.md §4: a lesson opens with what it costs, and the figure is `make bench`'s row in the README (to 5 s
    and 10 CPU seconds), so neither drifts from the other."""
    found = COST.findall(_read(path).cells[0].source)
    assert len(found) == 1, f"{path.name}: the first cell must say 'about N s on a 2-core laptop CPU (M CPU seconds " \
                            "with two threads, measured by `make bench`)' once"
    wall, cpu = map(int, found[0])
    rows = _bench_rows()
    assert path.stem in rows, f"README's bench table has no row for {path.stem}: run `make bench` (with --readme)"
    assert abs(wall - rows[path.stem][0]) <= 5 and abs(cpu - rows[path.stem][1]) <= 10, \
        f"{path.name}: the header says {wall} s / {cpu} CPU s, the README's bench row {rows[path.stem]}"
