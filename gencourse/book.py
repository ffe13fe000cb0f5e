"""The course as a website: the executed lessons, as committed, with their mathematics and figures.

``make book`` (``python -m gencourse.book``) builds a static site into ``build/book/`` with Sphinx and myst-nb,
offline and without executing any lesson:

1. :func:`stage` lays out the site's sources in ``build/book_src/`` as the repository lays them out (so the
   lessons' and guides' relative links hold): ``notebooks/NN_slug.ipynb`` (the committed, executed lessons,
   less the markdown cell of Colab badges, which the site's launch bar replaces), ``docs/*.md`` (the guides
   and the changelog) and ``index.md``, the home page, made from README.md's lesson table (checked against
   the lessons in ``notebooks/``, so the two cannot drift apart);
2. :func:`build` runs Sphinx on it with ``docs/`` as the configuration folder (``docs/conf.py``, the
   ``course_site`` extension in ``docs/_ext/`` that adds the launch targets, MathJax vendored in
   ``docs/_static/mathjax/``), warnings as errors;
3. :func:`check_links` and :func:`remote_assets` read the built HTML: every relative link and anchor must
   resolve, and no page may load a script, style sheet, font or image from the network.

Besides ``build/book/``, a build leaves ``build/book_src/``, ``build/book_doctrees/`` and
``build/jupyter_execute/`` (myst-nb's figures, beside the output folder), which make the next build incremental.

    python -m gencourse.book                 # build/book/index.html
    python -m gencourse.book --out /tmp/site
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DOCS = ROOT / "docs"
README = ROOT / "README.md"
OUT = ROOT / "build" / "book"
STAGE = ROOT / "build" / "book_src"
LESSON = re.compile(r"^\d\d_[a-z0-9_]+$")
# The guides in docs/ that the site shows, in the order of its navigation.
GUIDES = [("notation.md", "The notation"), ("instructor_guide.md", "The instructor's guide"),
          ("jupyterhub.md", "Teaching on a JupyterHub"), ("changelog.md", "Changelog")]


class BookError(RuntimeError):
    """The site cannot be built as asked; the message says why and what to do."""


def lessons() -> list[str]:
    """The lessons' names (``NN_slug``) in ``notebooks/``, in order."""
    return sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if LESSON.match(p.stem))


# --- the home page, from README.md ---------------------------------------------------------------------------

def readme_title_and_intro(text: str) -> tuple[str, str]:
    """README's first heading and the paragraphs before its first ``##`` section (badge lines left out: their
    images live on the network)."""
    lines = text.splitlines()
    title_at = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if title_at is None:
        raise BookError("README.md has no '# ' title for the site's home page")
    intro = []
    for line in lines[title_at + 1:]:
        if line.startswith("## "):
            break
        if not line.lstrip().startswith("[!["):
            intro.append(line)
    return lines[title_at][2:].strip(), "\n".join(intro).strip()


def readme_lesson_table(text: str) -> str:
    """The markdown table under README's ``## The lessons`` heading."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "## The lessons"), None)
    if start is None:
        raise BookError("README.md has no '## The lessons' section: the site's home page is made from its table")
    table = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    if len(table) < 3:
        raise BookError("README.md's '## The lessons' section has no table (a header, a rule and a row per lesson)")
    return "\n".join(table)


def table_lessons(table: str) -> list[str]:
    """The lessons a README table links to, in its order."""
    return re.findall(r"\]\(notebooks/(\d\d_[a-z0-9_]+)\.ipynb\)", table)


def home_page(readme: str, names: list[str]) -> str:
    """``index.md``: README's title, introduction and lesson table, the guides, and the site's navigation."""
    title, intro = readme_title_and_intro(readme)
    table = readme_lesson_table(readme)
    linked = table_lessons(table)
    if linked != names:
        missing = [n for n in names if n not in linked]
        extra = [n for n in linked if n not in names]
        raise BookError("README.md's lesson table and notebooks/ disagree"
                        + (f"; lessons without a row: {missing}" if missing else "")
                        + (f"; rows without a lesson: {extra}" if extra else "")
                        + ("" if missing or extra else f"; the table's order is {linked}")
                        + ". Update the table in README.md (one row per notebooks/NN_slug.ipynb, in order).")
    guides = "\n".join(f"- [{label}](docs/{name})" for name, label in GUIDES)
    lesson_toc = "\n".join(f"notebooks/{n}" for n in names)
    guide_toc = "\n".join(f"docs/{Path(name).stem}" for name, _ in GUIDES)
    return f"""# {title}

{intro}

Every lesson below is shown as it was executed, with its outputs: read it here, then run it where you like
(the buttons under each lesson's title open it in Colab, as the instructor or the student edition, in Kaggle or
on Binder; or clone the repository and `make lab`).

## The lessons

{table}

## Guides

{guides}

```{{toctree}}
:hidden:
:caption: Lessons

{lesson_toc}
```

```{{toctree}}
:hidden:
:caption: Guides

{guide_toc}
```
"""


# --- staging ---------------------------------------------------------------------------------------------

def site_notebook(path: Path) -> str:
    """A lesson as the site shows it: the committed notebook less its markdown cell of Colab badges (tag
    ``colab``; the site's launch bar replaces it, and its badge images live on the network)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb["cells"] = [c for c in nb["cells"]
                   if not (c.get("cell_type") == "markdown" and "colab" in c.get("metadata", {}).get("tags", []))]
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    """Unchanged files keep their times, so Sphinx rebuilds only what changed."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def stage(dest: Path = STAGE) -> list[Path]:
    """Lay out the site's sources in ``dest`` (see the module's docstring); returns the files written."""
    names = lessons()
    if not names:
        raise BookError(f"no lessons in {NOTEBOOKS} (notebooks/NN_slug.ipynb)")
    files = {dest / "index.md": home_page(README.read_text(encoding="utf-8"), names)}
    for name in names:
        files[dest / "notebooks" / f"{name}.ipynb"] = site_notebook(NOTEBOOKS / f"{name}.ipynb")
    for name, _ in GUIDES:
        if not (DOCS / name).exists():
            raise BookError(f"docs/{name} is missing: the site shows it")
        files[dest / "docs" / name] = (DOCS / name).read_text(encoding="utf-8")
    for path, text in files.items():
        _write_if_changed(path, text)
    if dest.exists():  # a lesson or guide that was removed leaves the site too
        for old in [p for p in dest.rglob("*") if p.is_file() and p not in files]:
            old.unlink()
    return sorted(files)


def build(out: Path = OUT, *, src: Path = STAGE, jobs: int | str | None = None, quiet: bool = True) -> float:
    """Stage and build the site into ``out``; returns the seconds the build took. Any Sphinx warning (a broken
    cross-reference, a missing image) fails the build with Sphinx's message."""
    start = time.perf_counter()
    stage(src)
    jobs = jobs or os.environ.get("GENCOURSE_BOOK_JOBS") or min(2, os.cpu_count() or 1)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(DOCS), "-W", "--keep-going",
           "-j", str(jobs), "-d", str(out.parent / (out.name + "_doctrees")), str(src), str(out)]
    if quiet:
        cmd.insert(3, "-q")
    try:
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError as err:
        raise BookError(f"the site needs Sphinx and myst-nb ({err}): pip install -e '.[dev]' (make book does)") from None
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        raise BookError(f"Sphinx failed (exit {result.returncode}); its messages are above. Command: {' '.join(cmd)}")
    return time.perf_counter() - start


# --- checks on the built HTML ------------------------------------------------------------------------------

class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str, dict]] = []  # (tag, attribute, value, all attributes)

    def handle_starttag(self, tag, attrs):
        attrs = {k: (v or "") for k, v in attrs}
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for attr in ("href", "src"):
            if attrs.get(attr):
                self.refs.append((tag, attr, attrs[attr], attrs))


def _pages(site: Path) -> list[Path]:
    """The site's HTML pages (the theme's Jinja macros that it copies into _static/ are not pages)."""
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


EXTERNAL = ("http:", "https:", "mailto:", "javascript:", "data:", "tel:", "ftp:")


def check_links(site: Path) -> list[str]:
    """Every relative ``href`` / ``src`` in the site's HTML names a file of the site, and every ``#anchor`` an
    element of its page. Returns the problems, one line each (empty when all resolve)."""
    pages = {p: _parse(p) for p in _pages(site)}
    problems = []
    for path, page in pages.items():
        for tag, attr, value, _ in page.refs:
            if value.startswith(EXTERNAL) or value.startswith("//"):
                continue
            parts = urlsplit(value)
            if parts.scheme:  # e.g. file: or an unknown scheme: not a link within the site
                problems.append(f"{path.relative_to(site)}: <{tag} {attr}={value!r}> is not a relative link")
                continue
            target = path if not parts.path else (path.parent / unquote(parts.path))
            if parts.path.endswith("/"):
                target = target / "index.html"
            target = Path(os.path.normpath(target))
            where = f"{path.relative_to(site)}: <{tag} {attr}={value!r}>"
            try:
                target.relative_to(site)
            except ValueError:
                problems.append(f"{where} points outside the site")
                continue
            if not target.is_file():
                problems.append(f"{where}: {target.relative_to(site)} does not exist")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if fragment not in ids:
                    problems.append(f"{where}: no element with id {fragment!r} in {target.relative_to(site)}")
    return problems


REMOTE_TAGS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src", "audio": "src",
               "embed": "src"}
REMOTE_LINK_RELS = {"stylesheet", "icon", "preload", "modulepreload", "prefetch", "manifest"}


def remote_assets(site: Path) -> list[str]:
    """What a page would load from the network: scripts, style sheets, fonts, images, frames (links that a
    reader clicks, such as the launch targets, are fine). Returns one line per asset (empty when none)."""
    found = []
    for path in _pages(site):
        for tag, attr, value, attrs in _parse(path).refs:
            remote = value.startswith(("http:", "https:", "//"))
            if not remote:
                continue
            if REMOTE_TAGS.get(tag) == attr or (
                    tag == "link" and REMOTE_LINK_RELS & set(attrs.get("rel", "").lower().split())):
                found.append(f"{path.relative_to(site)}: <{tag} {attr}={value!r}>")
    for path in site.rglob("*.css"):
        text = path.read_text(encoding="utf-8", errors="replace")
        for url in re.findall(r"""(?:url\(\s*['"]?|@import\s+['"])((?:https?:)?//[^'")\s]+)""", text):
            found.append(f"{path.relative_to(site)}: loads {url}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="the site's folder (default build/book)")
    parser.add_argument("--jobs", default=None, help="Sphinx's parallel jobs (default: 2 at most)")
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    try:
        seconds = build(out, src=out.parent / (out.name + "_src"), jobs=args.jobs, quiet=not args.verbose)
    except BookError as err:
        print(f"make book: {err}", file=sys.stderr)
        return 1
    problems = check_links(out) + remote_assets(out)
    for line in problems[:50]:
        print(f"make book: {line}", file=sys.stderr)
    if problems:
        print(f"make book: {len(problems)} broken link(s) or remote asset(s) in {out}", file=sys.stderr)
        return 1
    pages = len(_pages(out))
    print(f"make book: {pages} pages in {out} ({seconds:.0f} s); open {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
