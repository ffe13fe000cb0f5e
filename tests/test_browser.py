"""A learner's view: JupyterLab in headless Chromium runs a lesson with widgets, and everything renders.

Starts JupyterLab from the course environment on a free local port with a token, opens the lesson, runs
all cells, and asserts that figures appear, that widget sliders and progress bars render (no "Error
displaying widget"), that moving a slider changes the picture, and that no cell shows an error. The
screenshot is kept as ``build/browser/<lesson>.png``. The server is stopped in every outcome.

Needs Debian's ``chromium`` (``make test`` installs it where it can) and Python ``playwright``; it never
downloads a browser of its own.
"""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The lesson with a slider explorer and progress bars; the first of these that exists is used.
CANDIDATES = ["03_variational_autoencoders.ipynb", "05_normalizing_flows.ipynb"]
LESSON = next((name for name in CANDIDATES if (ROOT / "notebooks" / name).exists()), None)

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on 127.0.0.1 with a token, serving a copy of notebooks/; stopped afterwards."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `apt-get install -y chromium` (make test does this as root)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    work = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", work, ignore=shutil.ignore_patterns("src"))
    port, token = _free_port(), secrets.token_hex(16)
    # Render every cell (JupyterLab 4 otherwise renders only the cells in view), so all outputs can be read.
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    # Quick settings, except that the main model trains long enough (seconds) for its progress bar to be seen.
    env = {**os.environ, "GENCOURSE_QUICK": "1", "GENCOURSE_EPOCHS": "20", "GENCOURSE_PROGRESS": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings")}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--ServerApp.open_browser=False",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
                time.sleep(1)
        yield url, token, tmp_path / "jupyterlab.log"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _kernel_states(url: str, token: str) -> list:
    with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=5) as response:
        return [kernel["execution_state"] for kernel in json.load(response)]


def _wait_for_idle_kernel(page, url: str, token: str, timeout_s: float = 180) -> None:
    """The notebook's kernel has started and is idle (asked of the server, not of the page). A kernel
    selection dialog, should JupyterLab show one, is accepted with its default (the course's python3)."""
    deadline, states = time.time() + timeout_s, []
    while time.time() < deadline:
        states = _kernel_states(url, token)
        if "idle" in states:
            return
        accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        if accept.count():
            accept.first.click()
        time.sleep(1)
    raise AssertionError(f"the lesson's kernel was not idle after {timeout_s} s (kernel states: {states})")


def _run_all_cells(page, attempts: int = 3) -> None:
    """Run > Run All Cells, with the notebook made the current widget first (the command is disabled
    otherwise); retried until a cell is queued or running."""
    for _ in range(attempts):
        page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").first.click()
        page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
        page.click("li.lm-Menu-item:has-text('Run All Cells')")
        deadline = time.time() + 30
        while time.time() < deadline:
            prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
            if any("*" in p or any(c.isdigit() for c in p) for p in prompts):
                return
            time.sleep(0.5)
        page.keyboard.press("Escape")  # close the menu if it is still open
    page.screenshot(path=str(ARTIFACTS / "not_started.png"), full_page=False)
    raise AssertionError(f"Run All Cells started no cell after {attempts} attempts")


ERROR_OUTPUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
PROGRESS = ".jp-OutputArea-output .widget-progress, .jp-OutputArea-output [class*='progress']"
# Training bars close themselves when done (leave=False), so polling can miss a short one: an observer in the
# page records every progress bar that is ever added to the notebook.
WATCH_PROGRESS = """selector => {
    window.__progressSeen = document.querySelector(selector) !== null;
    new MutationObserver(() => {
        if (!window.__progressSeen && document.querySelector(selector)) window.__progressSeen = true;
    }).observe(document.body, {childList: true, subtree: true});
}"""


def _wait_until_all_ran(page, timeout_s=400) -> None:
    """Wait until every code cell shows an execution count."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        # Run All stops at a failing cell and leaves the rest unrun: report the error at once.
        failed = [t for t in page.locator(".jp-OutputArea-output").all_inner_texts() if "Traceback" in t]
        if failed or page.locator(ERROR_OUTPUT).count():
            page.screenshot(path=str(ARTIFACTS / "error.png"), full_page=False)
            raise AssertionError(f"a cell failed while the lesson ran in JupyterLab: {(failed or ['(error output)'])[0][-3000:]}")
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        pending = [p for p in prompts if "*" in p or p.strip() in ("[ ]:", "")]
        if prompts and not pending:
            return
        time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / "timeout.png"), full_page=False)
    dialogs = page.locator(".jp-Dialog").all_inner_texts()
    status = page.locator(".jp-Notebook-ExecutionIndicator, .jp-KernelStatus").all_inner_texts()
    raise AssertionError(f"cells still running or not run after {timeout_s} s: {len(pending)} of {len(prompts)} "
                         f"pending ({pending[:5]}); kernel status {status}; dialogs {dialogs}")


@pytest.mark.skipif(LESSON is None, reason="no lesson with widgets built yet")
def test_lesson_runs_in_jupyterlab_with_widgets(jupyterlab):
    from playwright.sync_api import sync_playwright

    url, token, server_log = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{Path(LESSON).stem}.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run", "--disable-sync",
                                          "--disable-dev-shm-usage", "--disable-quic"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/{LESSON}?token={token}", wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
            _wait_for_idle_kernel(page, url, token)
            page.evaluate(WATCH_PROGRESS, PROGRESS)
            _run_all_cells(page)
            try:
                _wait_until_all_ran(page)
            except AssertionError as err:
                raise AssertionError(f"{err}\nJupyterLab log (end):\n{server_log.read_text()[-4000:]}") from None
            time.sleep(3)
            page.screenshot(path=str(shot), full_page=False)
            text = page.locator(".jp-Notebook").inner_text()
            assert "Error displaying widget" not in text
            errors = page.locator(ERROR_OUTPUT)
            tracebacks = [t for t in page.locator(".jp-OutputArea-output").all_inner_texts() if "Traceback" in t]
            assert errors.count() == 0 and not tracebacks, tracebacks[:1]
            assert page.locator(".jp-RenderedImage img").count() >= 3, "figures did not appear"
            widgets = page.locator(".jp-OutputArea-output .jupyter-widgets").count()
            text_bars = [t[-200:] for t in page.locator(".jp-OutputArea-output").all_inner_texts() if "it/s]" in t]
            saw_progress = page.evaluate("window.__progressSeen === true")
            assert saw_progress, (f"no progress bar rendered while the lesson trained ({widgets} widget views on the "
                                  f"page; text progress bars instead: {text_bars[:2]})")
            sliders = page.locator(".widget-slider, .jupyter-widget-slider")
            assert sliders.count() >= 1, "no slider widget rendered"
            slider = sliders.first
            slider.scroll_into_view_if_needed()
            widget_box = slider.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')][1]")
            before = widget_box.locator("img").first.get_attribute("src")
            handle = slider.locator(".noUi-handle, .ui-slider-handle, input[type=range]").first
            handle.focus()
            for _ in range(5):
                page.keyboard.press("ArrowRight")
            deadline, after = time.time() + 30, before  # the kernel redraws the figure: wait for it, up to 30 s
            while after == before and time.time() < deadline:
                time.sleep(1)
                after = widget_box.locator("img").first.get_attribute("src")
            page.screenshot(path=str(ARTIFACTS / f"{Path(LESSON).stem}_slider.png"))
            assert before and after and before != after, "moving the slider did not change the picture"
        finally:
            browser.close()
