"""Sphinx extension of the course's website: launch targets on every page, from the one repository address.

Every lesson page (``notebooks/NN_slug``) opens, under its title, with a bar of launch targets: Colab for the
instructor edition and for the student edition (``notebooks/student/``), Kaggle, Binder, and the notebook on
the repository's host. Every other page gets the course on Binder and the repository. All addresses are made
here from ``gencourse.REPO_URL`` (read from gencourse/__init__.py without importing the package, so the build
needs no torch), the one place the repository's address is written.

Display mathematics with a ``\\tag`` and a line break is written so that MathJax accepts it (see
:func:`_tags_outside_split`). Interactive widget outputs (ipywidgets) need a running kernel; the static site
shows a note in their place that says so, next to the static figures the lessons always have.
"""
from __future__ import annotations

import ast
import html
import re
from pathlib import Path
from urllib.parse import quote

from docutils import nodes

ROOT = Path(__file__).resolve().parents[2]
BRANCH = "main"
LESSON_DOC = re.compile(r"^notebooks/(\d\d_[a-z0-9_]+)$")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def repo_url(init: Path = ROOT / "gencourse" / "__init__.py") -> str:
    """``gencourse.REPO_URL``, read from the package's source (the one place it is written)."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "REPO_URL" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"{init} defines no REPO_URL: the site's launch targets are made from it")


def _github_path(url: str) -> str:
    if not url.startswith("https://github.com/"):
        raise ValueError(f"launch targets are made for a GitHub repository, got REPO_URL = {url!r}")
    return url.removeprefix("https://github.com/").rstrip("/")


def lesson_links(name: str, url: str | None = None) -> list[tuple[str, str, str]]:
    """``(key, label, address)`` of the launch targets of lesson ``name`` (e.g. ``03_variational_autoencoders``)."""
    url = url or repo_url()
    gh = _github_path(url)
    notebook = f"notebooks/{name}.ipynb"
    student = f"notebooks/student/{name}.ipynb"
    return [
        ("colab", "Open in Colab", f"https://colab.research.google.com/github/{gh}/blob/{BRANCH}/{notebook}"),
        ("colab-student", "Student edition in Colab",
         f"https://colab.research.google.com/github/{gh}/blob/{BRANCH}/{student}"),
        ("kaggle", "Open in Kaggle", f"https://kaggle.com/kernels/welcome?src={url}/blob/{BRANCH}/{notebook}"),
        ("binder", "Launch on Binder", f"https://mybinder.org/v2/gh/{gh}/{BRANCH}?labpath={quote(notebook, safe='')}"),
        ("source", "Notebook on GitHub", f"{url}/blob/{BRANCH}/{notebook}"),
    ]


def course_links(url: str | None = None) -> list[tuple[str, str, str]]:
    """Launch targets of a page that is not a lesson: the whole course on Binder, and the repository."""
    url = url or repo_url()
    gh = _github_path(url)
    return [
        ("binder", "Launch the course on Binder", f"https://mybinder.org/v2/gh/{gh}/{BRANCH}?urlpath=lab/tree/notebooks"),
        ("colab", "Lesson 00 in Colab",
         f"https://colab.research.google.com/github/{gh}/blob/{BRANCH}/notebooks/00_welcome.ipynb"),
        ("source", "The repository", url),
    ]


def launch_bar(links: list[tuple[str, str, str]], label: str) -> str:
    buttons = "".join(
        f'<a class="launch-button launch-{key}" data-launch="{key}" href="{html.escape(href)}" '
        f'target="_blank" rel="noopener">{html.escape(text)}</a>'
        for key, text, href in links)
    return (f'<div class="launch-bar" role="navigation" aria-label="{html.escape(label)}">'
            f'<span class="launch-label">{html.escape(label)}:</span>{buttons}</div>')


def _insert_launch_bar(app, doctree) -> None:
    docname = app.env.docname
    match = LESSON_DOC.match(docname)
    if match:
        raw = launch_bar(lesson_links(match.group(1), app.config.course_repo_url), "Run this lesson")
    else:
        raw = launch_bar(course_links(app.config.course_repo_url), "Run the course")
    bar = nodes.raw("", raw, format="html")
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is not None and section.children and isinstance(section[0], nodes.title):
        section.insert(1, bar)
    else:
        doctree.insert(0, bar)


WIDGET_NOTE = ('<p class="widget-note">An interactive explorer (ipywidgets) is here when the lesson runs: it '
               'needs a live kernel. Open the lesson in JupyterLab, Colab, Kaggle or Binder to use it; the '
               'static figures of the lesson do not depend on it.</p>')


def _replace_widget_views(app, doctree, docname) -> None:
    """myst-nb writes a widget's view as a script for a widget manager; the site ships none (no CDN)."""
    for node in list(doctree.findall(nodes.raw)):
        if WIDGET_VIEW in node.astext():
            node.parent.replace(node, nodes.raw("", WIDGET_NOTE, format="html"))


TAG = re.compile(r"\\tag\*?\{[^{}]*\}")


def _tags_outside_split(app, doctree) -> None:
    r"""Sphinx wraps display mathematics that holds a line break (``\\``, even inside ``cases``) in
    ``\begin{split}``, where MathJax refuses ``\tag`` ("\tag not allowed in split environment"); JupyterLab
    and Colab render the same cell fine. Such a block is written out here with its tags after the split."""
    for node in doctree.findall(nodes.math_block):
        text = node.astext()
        if node.get("nowrap") or not TAG.search(text) or "\n\n" in text.strip():
            continue
        tags = "".join(TAG.findall(text))
        body = TAG.sub("", text).strip()
        if "\\\\" in body:
            body = "\\begin{split}" + body + "\\end{split}"
        node[:] = [nodes.Text("\\[" + body + tags + "\\]")]
        node["nowrap"] = True


def _config_inited(app, config) -> None:
    if not config.course_repo_url:
        config.course_repo_url = repo_url()
    _github_path(config.course_repo_url)  # a clear error now rather than wrong addresses on every page
    options = dict(config.html_theme_options or {})
    options.setdefault("repository_url", config.course_repo_url)
    config.html_theme_options = options


def setup(app):
    app.add_config_value("course_repo_url", "", "env")
    app.add_config_value("course_site_digest", "", "env")
    app.connect("config-inited", _config_inited)
    app.connect("doctree-read", _insert_launch_bar)
    app.connect("doctree-read", _tags_outside_split)
    app.connect("doctree-resolved", _replace_widget_views)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
