"""Sphinx configuration of the course's website (``make book``; see gencourse/book.py).

The site is built from a staged copy of the repository's pages (``build/book_src/``: the executed lessons, the
guides in docs/, and a home page made from README.md's lesson table), with this folder as the configuration
directory. Lessons are never executed here: what the site shows is what the committed notebooks hold.
Everything a page needs at view time is in the site itself (MathJax is vendored in _static/mathjax/).
"""
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
# Sphinx re-reads every page when a config value changes, not when an extension's code does: this digest of
# the extension makes an edit to it rebuild the pages it shapes.
course_site_digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted((HERE / "_ext").glob("*.py")))).hexdigest()

project = "gencourse"
author = "the gencourse authors"
copyright = "the gencourse authors; code MIT, lesson text and figures CC BY 4.0"

extensions = ["myst_nb", "course_site"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# --- notebooks: shown as committed, never executed ---------------------------------------------------------
nb_execution_mode = "off"
nb_merge_streams = True
nb_ipywidgets_js = {}  # no widget manager from a CDN: explorers are a bonus on top of static figures (COURSE.md §4)
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# --- mathematics: MathJax 3, bundled (docs/_static/mathjax/, Apache-2.0), never a CDN -----------------------
mathjax_path = "mathjax/tex-chtml.js"

# --- HTML -------------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "gencourse: deep generative models"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_last_updated_fmt = None
html_theme_options = {
    "repository_branch": "main",
    "use_repository_button": True,
    "use_issues_button": True,
    "use_download_button": True,
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "navigation_with_keys": False,
    "navbar_persistent": [],
}
# The repository's address is read by the course_site extension from gencourse.REPO_URL (one place).

# Lessons use a heading per section and a few deeper ones; a jump of two levels inside a lesson is a matter of
# the lesson's text, not a broken site, so it does not fail the build (every other warning does: make book -W).
suppress_warnings = ["myst.header"]
