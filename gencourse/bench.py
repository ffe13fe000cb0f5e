"""Headline figures: lessons report what they measure, ``make bench`` collects it into one table.

``headline(name, value)`` returns ``value`` unchanged, so it wraps a computation in place. When the
environment variable ``GENCOURSE_HEADLINES`` names a file, each figure is appended to it as a JSON line.
"""
import json
import os


def headline(name: str, value, fmt: str = "{:.3g}"):
    """Record a lesson's headline figure (e.g. ``headline("test NLL (nats)", nll)``) and return it."""
    if not isinstance(name, str) or not name:
        raise ValueError("headline needs a non-empty name, e.g. headline('test NLL (nats)', 84.2)")
    number = float(value)
    path = os.environ.get("GENCOURSE_HEADLINES")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"name": name, "value": number, "text": fmt.format(number)}) + "\n")
    return value


# ----------------------------------------------------------------------------------------------
# make bench: execute every lesson, time it, and print its headline figures as one table
# ----------------------------------------------------------------------------------------------

def machine() -> str:
    """A one-line description of this machine: processor, cores, torch version and threads."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"


def children_cpu_seconds() -> float | None:
    """CPU seconds (user + system) of this process's finished child processes, or None where the platform does
    not count them (Windows). A lesson's kernel is such a child once it has shut down."""
    try:
        import resource
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_lesson(path) -> tuple[float, float | None, list]:
    """Execute one lesson in a fresh kernel -> ``(wall seconds, CPU seconds, headline figures)``. The CPU seconds
    are the kernel's, all its threads together (None where the platform does not count them): with two threads
    they can exceed the wall seconds."""
    import tempfile

    import nbformat

    from gencourse.authoring import execute

    nb = nbformat.read(path, as_version=4)
    cpu_before = children_cpu_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        record = os.path.join(tmp, "headlines.jsonl")
        seconds = execute(nb, cwd=path.parent, env={"GENCOURSE_HEADLINES": record})
        figures = []
        if os.path.exists(record):
            with open(record) as fh:
                figures = [json.loads(line) for line in fh if line.strip()]
    cpu_after = children_cpu_seconds()
    cpu = None if cpu_before is None else cpu_after - cpu_before
    return seconds, cpu, figures


def table(rows) -> str:
    """Markdown table of ``(lesson, wall seconds, CPU seconds or None, figures)`` rows with the course total."""
    lines = ["| lesson | seconds | CPU seconds | headline figures |", "| --- | ---: | ---: | --- |"]
    for name, seconds, cpu, figures in rows:
        text = "; ".join(f"{f['name']}: {f['text']}" for f in figures) or "—"
        lines.append(f"| {name} | {seconds:.0f} | {'—' if cpu is None else f'{cpu:.0f}'} | {text} |")
    total = sum(row[1] for row in rows)
    cpus = [row[2] for row in rows]
    cpu_total = "—" if None in cpus else f"**{sum(cpus):.0f}**"
    lines.append(f"| **course total** | **{total:.0f}** ({total / 60:.1f} min) | {cpu_total} | |")
    return "\n".join(lines)


def update_readme(text: str, readme="README.md") -> None:
    """Replace the table between the ``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers."""
    import re

    with open(readme) as fh:
        content = fh.read()
    pattern = re.compile(r"(<!-- bench:start -->\n).*?(\n<!-- bench:end -->)", re.S)
    if not pattern.search(content):
        raise ValueError(f"{readme} has no <!-- bench:start --> ... <!-- bench:end --> markers")
    with open(readme, "w") as fh:
        fh.write(pattern.sub(lambda m: m.group(1) + text + m.group(2), content))


def main(argv=None) -> int:
    import argparse
    import datetime
    import sys
    from pathlib import Path

    from gencourse.authoring import NOTEBOOKS

    parser = argparse.ArgumentParser(description="Execute every lesson; print seconds and headline figures.")
    parser.add_argument("lessons", nargs="*", help="lesson number prefixes (default: all)")
    parser.add_argument("--readme", action="store_true", help="also write the table into README.md")
    args = parser.parse_args(argv)
    paths = sorted(Path(NOTEBOOKS).glob("[0-9][0-9]_*.ipynb"))
    if args.lessons:
        paths = [p for p in paths if any(p.name.startswith(x) for x in args.lessons)]
    if not paths:
        print("no lessons to run", file=sys.stderr)
        return 2
    rows = []
    for path in paths:
        seconds, cpu, figures = run_lesson(path)
        print(f"{path.stem}: {seconds:.1f} s" + ("" if cpu is None else f", {cpu:.1f} CPU s"), flush=True)
        rows.append((path.stem, seconds, cpu, figures))
    text = (f"Measured {datetime.date.today()} on {machine()}: wall seconds, and the kernel's CPU seconds "
            "(both threads together).\n\n" + table(rows))
    print("\n" + text)
    if args.readme:
        update_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
