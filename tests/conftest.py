"""Shared test helpers."""
import pytest

import torch

from gencourse import check, exercises


def _unsolved(*args, **kwargs):
    raise NotImplementedError


@pytest.fixture
def check_verdicts(monkeypatch, capsys):
    """``check_verdicts(name, right, wrong)``: the check passes ``right``, fails ``wrong`` with a hint, and
    calls an unsolved exercise "not attempted" (outside grading mode)."""
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)

    def verify(name, right, wrong):
        run = getattr(check, name)
        run(right)
        assert exercises.results[name].status == exercises.PASSED, capsys.readouterr().out
        run(wrong)
        assert exercises.results[name].status == exercises.FAILED
        assert "Hint" in capsys.readouterr().out
        run(_unsolved)
        assert exercises.results[name].status == exercises.NOT_ATTEMPTED

    return verify


_THREADS_AT_START = torch.get_num_threads()  # when conftest is imported, before any test module is


@pytest.fixture(autouse=True)
def _torch_threads_unchanged(request):
    """A test that changes torch's thread count must put it back: two pytest workers that each run two threads
    on a 2-core machine spin against each other and made the whole suite about ten times slower."""
    yield
    now = torch.get_num_threads()
    if now != _THREADS_AT_START:
        torch.set_num_threads(_THREADS_AT_START)
        pytest.fail(f"{request.node.nodeid} left torch with {now} threads (it started with {_THREADS_AT_START}); "
                    "restore torch.set_num_threads in the test")
