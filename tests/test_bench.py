"""`make bench`'s measurement: a lesson's wall and CPU seconds and its headline figures, and the table."""
import sys

import nbformat
import pytest

from gencourse import bench


def test_run_lesson_counts_the_kernels_cpu_seconds_and_headlines(tmp_path):
    """A notebook that burns about a CPU second in its kernel: the parent's own CPU time would miss it."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end:\n"
                                  "    pass"),
        nbformat.v4.new_code_cell("import gencourse\n_ = gencourse.headline('burnt', 1.0, '{:.1f}')"),
    ])
    path = tmp_path / "99_probe.ipynb"
    nbformat.write(nb, path)
    seconds, cpu, figures = bench.run_lesson(path)
    if sys.platform == "win32":
        assert cpu is None
    else:
        assert 0.9 <= cpu <= seconds + 30  # at least the burnt second; the kernel's start-up is on top
    assert seconds >= 1.0
    assert figures == [{"name": "burnt", "value": 1.0, "text": "1.0"}]


def test_table_gives_wall_and_cpu_seconds_with_totals():
    rows = [("00_a", 8.2, 9.6, [{"name": "x", "text": "1"}]), ("01_b", 12.0, 20.4, [])]
    text = bench.table(rows)
    assert "| lesson | seconds | CPU seconds | headline figures |" in text
    assert "| 00_a | 8 | 10 | x: 1 |" in text and "| 01_b | 12 | 20 | — |" in text
    assert "| **course total** | **20** (0.3 min) | **30** | |" in text
    assert "| 00_a | 8 | — | x: 1 |" in bench.table([("00_a", 8.2, None, [{"name": "x", "text": "1"}])])


def test_headline_rejects_an_empty_name():
    with pytest.raises(ValueError, match="non-empty name"):
        bench.headline("", 1.0)
