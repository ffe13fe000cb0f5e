"""Colab, conda/Binder and pip describe the same course: the bootstrap cell, environment.yml, pyproject.toml."""
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import gencourse
from gencourse import authoring

ROOT = Path(__file__).resolve().parent.parent

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_repository_url_lives_in_one_place():
    assert _pyproject()["project"]["urls"]["Homepage"] == gencourse.REPO_URL
    assert gencourse.REPO_URL in authoring.colab_bootstrap()
    assert gencourse.REPO_URL.replace("https://github.com/", "") in authoring.colab_badge("00_welcome")


def _run_bootstrap(monkeypatch, on_colab: bool):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(authoring.colab_bootstrap(), {})
    return calls


def test_bootstrap_installs_the_course_on_colab(monkeypatch):
    calls = _run_bootstrap(monkeypatch, on_colab=True)
    assert len(calls) == 1
    cmd, kwargs = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert cmd[-1] == f"gencourse @ git+{gencourse.REPO_URL}"
    assert kwargs.get("check") is True


def test_bootstrap_leaves_other_environments_alone(monkeypatch):
    assert _run_bootstrap(monkeypatch, on_colab=False) == []


def test_bootstrap_prints_the_versions_that_matter(monkeypatch, capsys):
    import importlib.metadata
    import platform

    _run_bootstrap(monkeypatch, on_colab=False)
    printed = capsys.readouterr().out.strip().split(" · ")
    assert printed[0] == f"Python {platform.python_version()}"
    assert printed[1:] == [f"{p} {importlib.metadata.version(p)}" for p in authoring.VERSIONED]
    assert {"torch", "torchvision", "numpy", "gencourse"} <= set(authoring.VERSIONED)


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    import yaml

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = {{"pytorch": "torch"}.get(_name(d), _name(d)) for d in specs} - {"python", "pip"}
    pip = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    dev = {_name(r) for r in _pyproject()["project"]["optional-dependencies"]["dev"]}
    assert pip <= conda, f"only in pyproject.toml: {pip - conda}"
    tools = conda - pip
    assert tools <= dev, f"only in environment.yml: {tools - dev} (neither a dependency nor a dev tool)"
    assert {"pytest", "nbval"} <= tools, "environment.yml names the tools the course is validated with (pytest, nbval)"
    assert "-e ." in pip_section, "environment.yml installs the course itself with pip -e ."
    assert "python=3.11" in specs and env["channels"] == ["conda-forge"]


def test_no_exact_pins_and_colab_friendly_ranges():
    deps = _pyproject()["project"]["dependencies"]
    assert not [d for d in deps if "==" in d], "give ranges, never exact pins (Colab ships its own torch)"
    widgets = next(d for d in deps if _name(d) == "ipywidgets")
    assert widgets.replace(" ", "") == "ipywidgets>=7.6", "Colab renders ipywidgets 7.x"


def test_lessons_name_their_kernel_as_jupyter_does():
    """JupyterLab writes the running kernel's spec into a notebook when its kernel starts: a lesson that names its
    kernel otherwise (nbformat's "Python 3") shows "unsaved changes" on its tab as soon as a learner opens it."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert authoring.KERNELSPEC == {"display_name": spec.display_name, "language": spec.language, "name": "python3"}
    source = sorted(authoring.SOURCES.glob("[0-9][0-9]_*.py"))[0]
    assert authoring.notebook_from_source(source).metadata["kernelspec"] == authoring.KERNELSPEC
