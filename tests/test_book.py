"""The course as a website (``make book``): built offline from the committed lessons without executing them.

It builds (warnings are errors); every relative link and anchor in its HTML resolves; no page loads a script,
style sheet, font or image from the network; its home page is README's lesson table and refuses to drift from
notebooks/; every lesson page shows the lesson's figures and mathematics and opens with its launch targets,
made from ``gencourse.REPO_URL``; and a lesson opened in headless Chromium with every non-file request blocked
shows its mathematics typeset by the bundled MathJax and every figure loaded (screenshot kept in
``build/browser/book_<lesson>.png``).

Run by ``make book-test`` (part of ``make test``); the Chromium test needs Debian's ``chromium`` and Python
``playwright`` (never ``playwright install``).
"""
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from gencourse import book

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import course_site  # noqa: E402

pytestmark = pytest.mark.book
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "build" / "browser"
LESSONS = book.lessons()
# The lesson opened in the browser: math, figures and a widget explorer (whose note must not break the page).
BROWSER_LESSON = next((n for n in LESSONS if n.startswith("03_")), LESSONS[0] if LESSONS else None)


@pytest.fixture(scope="module")
def site():
    """The site, built now into build/book (incremental after ``make book``: a few seconds)."""
    seconds = book.build(book.OUT)
    print(f"site built in {seconds:.1f} s")
    return book.OUT


def _html(site, page):
    return (site / page).read_text(encoding="utf-8")


def test_site_has_every_page(site):
    assert (site / "index.html").is_file()
    for name in LESSONS:
        assert (site / "notebooks" / f"{name}.html").is_file(), f"no page for lesson {name}"
    for name, _ in book.GUIDES:
        assert (site / "docs" / name.replace(".md", ".html")).is_file(), f"no page for docs/{name}"


def test_every_internal_link_and_anchor_resolves(site):
    problems = book.check_links(site)
    assert not problems, f"{len(problems)} broken links:\n" + "\n".join(problems[:30])


def test_no_page_loads_anything_from_the_network(site):
    remote = book.remote_assets(site)
    assert not remote, "pages would load from the network:\n" + "\n".join(remote[:30])
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not bundled in the site"
    for name in LESSONS:
        page = _html(site, f"notebooks/{name}.html")
        if 'class="math' in page:
            assert re.search(r'<script[^>]+src="(\.\./)?_static/mathjax/tex-chtml\.js', page), (
                f"{name}: its mathematics is not rendered by the bundled MathJax")


def test_link_checker_catches_broken_links_anchors_and_remote_assets(tmp_path):
    """The checks above can fail: a missing page, a missing anchor, a link out of the site, a CDN script."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="sub/page.html#here">ok</a> <a href="sub/page.html#nowhere">bad anchor</a>'
        '<a href="missing.html">missing</a> <a href="#top">self</a> <a href="https://example.org/x.js">fine</a>'
        '<img src="pic.png"><div id="top"></div>')
    (tmp_path / "sub" / "page.html").write_text(
        '<h1 id="here">x</h1><a href="../index.html">up</a><a href="../../outside.html">out</a>'
        '<script src="https://cdn.example.org/mathjax.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/f.css">')
    (tmp_path / "style.css").write_text("@font-face { src: url(https://fonts.example.org/x.woff2); }")
    problems = book.check_links(tmp_path)
    assert len(problems) == 4, problems
    assert any("nowhere" in p for p in problems) and any("missing.html" in p for p in problems)
    assert any("pic.png" in p for p in problems) and any("outside the site" in p for p in problems)
    remote = book.remote_assets(tmp_path)
    assert len(remote) == 3, remote  # the script, the style sheet and the font; the <a> to example.org is a link


def test_home_page_is_the_readme_lesson_table(site):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = book.readme_lesson_table(readme)
    assert book.table_lessons(table) == LESSONS
    index = _html(site, "index.html")
    for name in LESSONS:
        assert f'href="notebooks/{name}.html"' in index, f"the home page does not link lesson {name}"
    for label in re.findall(r"\[([^\]]+)\]\(notebooks/", table):  # the README's own labels
        assert f">{label}</span></a>" in index or f">{label}</a>" in index, f"the home page lacks {label!r}"


def test_home_page_refuses_a_table_that_drifted_from_the_lessons():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = next(line for line in book.readme_lesson_table(readme).splitlines() if "](notebooks/" in line)
    with pytest.raises(book.BookError, match="lessons without a row"):
        book.home_page(readme.replace(first + "\n", ""), LESSONS)
    with pytest.raises(book.BookError, match="rows without a lesson"):
        book.home_page(readme, LESSONS[1:])
    with pytest.raises(book.BookError, match="no '## The lessons' section"):
        book.home_page(readme.replace("## The lessons", "## Lessons"), LESSONS)


def test_site_lessons_are_the_committed_notebooks_less_their_badge_cell():
    for name in LESSONS:
        committed = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
        shown = json.loads(book.site_notebook(ROOT / "notebooks" / f"{name}.ipynb"))
        dropped = [c for c in committed["cells"] if c not in shown["cells"]]
        assert len(dropped) == 1 and dropped[0]["cell_type"] == "markdown", name
        assert "colab.research.google.com" in "".join(dropped[0]["source"]), name
        assert [c for c in committed["cells"] if c != dropped[0]] == shown["cells"]


def _image_outputs(name):
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
    return sum(1 for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_page_shows_outputs_math_and_launch_targets(site, name):
    from gencourse import REPO_URL, authoring

    page = _html(site, f"notebooks/{name}.html")
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == _image_outputs(name), f"{name}: {len(images)} figures on the page, " \
                                                  f"{_image_outputs(name)} in the notebook"
    assert page.count('class="math') >= 1, f"{name}: no mathematics on the page"
    launch = dict(re.findall(r'data-launch="([\w-]+)" href="([^"]+)"', page))
    gh = REPO_URL.replace("https://github.com/", "")
    assert launch.get("colab") == authoring.colab_url(name)
    assert launch.get("colab-student") == authoring.colab_url(name, student=True)
    assert launch.get("kaggle") == f"https://kaggle.com/kernels/welcome?src={REPO_URL}/blob/main/notebooks/{name}.ipynb"
    assert launch.get("binder") == f"https://mybinder.org/v2/gh/{gh}/main?labpath=notebooks%2F{name}.ipynb"
    assert launch.get("source") == f"{REPO_URL}/blob/main/notebooks/{name}.ipynb"
    assert (ROOT / "notebooks" / "student" / f"{name}.ipynb").is_file(), f"{name}: no student edition to launch"
    # the launch bar sits under the title, before the lesson's first paragraph
    body = page[page.index('<article class="bd-article"'):]
    assert body.index("launch-bar") < body.index("<p>"), f"{name}: the launch bar is not under the title"


def test_launch_targets_come_from_the_one_repository_address(site):
    from gencourse import REPO_URL

    assert course_site.repo_url() == REPO_URL
    links = course_site.lesson_links("03_x", "https://github.com/someone/fork")
    assert all("someone/fork" in href for _, _, href in links)
    with pytest.raises(ValueError, match="GitHub"):
        course_site.lesson_links("03_x", "https://gitlab.com/a/b")
    for page in ["index.html", *(f"docs/{n.replace('.md', '.html')}" for n, _ in book.GUIDES)]:
        assert 'data-launch="binder"' in _html(site, page), f"{page} has no launch targets"


def test_widget_views_become_a_note(site):
    """The site ships no widget manager (it would come from a CDN): each explorer's place says how to use it."""
    for name in LESSONS:
        nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
        views = sum(1 for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                    if "application/vnd.jupyter.widget-view+json" in o.get("data", {}))
        page = _html(site, f"notebooks/{name}.html")
        assert "application/vnd.jupyter.widget-view+json" not in page, name
        assert page.count('class="widget-note"') == views, name


# --- the browser ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def offline_page(site):
    """A headless Chromium page in which every request that is not for a local file is blocked and recorded."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `apt-get install -y chromium` (make test does this as root)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run", "--disable-sync",
                                          "--disable-dev-shm-usage", "--disable-quic"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            blocked, failed = [], []

            def route(r):
                if r.request.url.startswith("file://"):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("requestfailed", lambda r: failed.append(r.url))
            yield page, blocked, failed
        finally:
            browser.close()


def _open(page, path: Path, timeout_ms=60_000):
    page.goto(path.resolve().as_uri(), wait_until="load", timeout=timeout_ms)
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=timeout_ms)
    page.evaluate("() => MathJax.startup.promise")


@pytest.mark.skipif(BROWSER_LESSON is None, reason="no lessons")
def test_lesson_page_offline_renders_math_and_figures(site, offline_page):
    page, blocked, failed = offline_page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _open(page, site / "notebooks" / f"{BROWSER_LESSON}.html")
    math = page.locator("span.math, div.math").count()
    typeset = page.locator("mjx-container").count()
    errors = page.evaluate("() => [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error'))")
    images = page.evaluate("() => [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    page.screenshot(path=str(ARTIFACTS / f"book_{BROWSER_LESSON}.png"), full_page=False)
    assert math > 10 and typeset == math, f"{typeset} of {math} formulas typeset by MathJax"
    assert not errors, f"MathJax errors: {errors[:5]}"
    assert len(images) == _image_outputs(BROWSER_LESSON) >= 3
    unloaded = [src for src, complete, width in images if not (complete and width > 0)]
    assert not unloaded, f"figures not loaded: {unloaded[:5]}"
    assert page.locator(".launch-bar a.launch-button").count() == 5
    assert not blocked, f"the page asked the network for {blocked[:5]}"
    assert not failed, f"requests failed: {failed[:5]}"
    print(f"{BROWSER_LESSON}: {typeset} formulas, {len(images)} figures in {time.perf_counter() - start:.1f} s")


# Display formulas whose start lies left of their column: cut off where no scrollbar reaches.
CUT_OFF = """() => [...document.querySelectorAll('div.math')].filter(d => {
    const m = d.querySelector('mjx-math'); return m && m.getBoundingClientRect().left < d.getBoundingClientRect().left - 1;
}).map(d => d.textContent.slice(0, 60))"""


def test_every_lesson_typesets_without_a_mathjax_error(site, offline_page):
    """MathJax refuses what JupyterLab accepts only after Sphinx wraps it (e.g. \\tag inside split), and a wide
    formula must scroll rather than be cut: every lesson page."""
    page, blocked, _ = offline_page
    problems = []
    for name in LESSONS:
        _open(page, site / "notebooks" / f"{name}.html")
        errors = page.evaluate(
            "() => [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error'))")
        math = page.locator("span.math, div.math").count()
        typeset = page.locator("mjx-container").count()
        cut = page.evaluate(CUT_OFF)
        if errors or typeset != math or cut:
            problems.append(f"{name}: {typeset} of {math} typeset; errors {errors[:3]}; cut off on the left {cut[:3]}")
    assert not problems, "\n".join(problems)
    assert not blocked, f"pages asked the network for {blocked[:5]}"
