"""Shared test helpers."""
import pytest

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
