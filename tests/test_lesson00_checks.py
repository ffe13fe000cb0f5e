"""The checks of lesson 00: the solutions pass, every typical mistake is caught with its own message, an
unsolved exercise is "not attempted", grading mode raises, and the reference is an independent computation."""
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gencourse import check, data, exercises, metrics
from gencourse.check import lesson00

SOURCE = Path(__file__).resolve().parent.parent / "notebooks" / "src" / "00_welcome.py"
CHECKS = {"mean_image": lesson00.MEAN_IMAGE_MISTAKES, "memorization_ratio": lesson00.MEMORIZATION_MISTAKES}


def _lesson_solution(name):
    """The function as the lesson's source writes it (markers included: they are comments)."""
    block = re.search(rf"^def {name}\(.*?(?=^# %%)", SOURCE.read_text(), re.S | re.M).group(0)
    namespace = {"torch": torch}
    exec(block, namespace)
    return namespace[name]


def _run(name, fn):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        verdict = getattr(check, name)(fn)
    return verdict, out.getvalue()


@pytest.fixture(autouse=True)
def _not_grading(monkeypatch):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_lesson_solution_passes(name):
    verdict, _ = _run(name, _lesson_solution(name))
    assert verdict.status == exercises.PASSED, verdict.message


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_mistake_is_caught_with_its_own_message_and_no_solution_code(name):
    mistakes = CHECKS[name]
    assert len(mistakes) >= 2 and all(m.fn is not None for m in mistakes)
    code_lines = [line.strip() for line in re.search(rf"^def {name}\(.*?(?=^# %%)", SOURCE.read_text(), re.S | re.M)
                  .group(0).split("\n")[2:] if len(line.strip()) >= 16 and not line.strip().startswith("#")]
    for mistake in mistakes:
        verdict, printed = _run(name, mistake.fn)
        assert verdict.status == exercises.FAILED, mistake.message
        assert f"What looks wrong: {mistake.message}" in printed
        assert f'check.solution("{name}")' in printed  # the second step is offered, not shown
        for line in code_lines:
            assert line not in printed, f"the failed verdict shows the solution's code: {line}"
    assert name in exercises.catalog and exercises.catalog[name] == mistakes


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_unsolved_is_not_attempted_and_an_unknown_wrong_answer_gets_the_hint(name):
    def unsolved(*args):
        raise NotImplementedError

    verdict, printed = _run(name, unsolved)
    assert verdict.status == exercises.NOT_ATTEMPTED and "not attempted yet" in printed
    verdict, printed = _run(name, lambda *args: torch.zeros(3))
    assert verdict.status == exercises.FAILED and "Hint:" in printed and "What looks wrong" not in printed


def test_grading_mode_raises_on_a_wrong_answer_and_passes_the_solution(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        _run("mean_image", lesson00._sum_over_batch)
    with pytest.raises(exercises.ExerciseFailed):
        _run("memorization_ratio", lesson00._squared_distances)
    for name in CHECKS:
        assert _run(name, _lesson_solution(name))[0].status == exercises.PASSED


def test_solution_prints_the_lessons_code():
    with contextlib.redirect_stdout(io.StringIO()) as out:
        shown = check.solution("mean_image")
    assert "mean_image" in out.getvalue() and "images.mean(dim=0)" in str(shown)
    with pytest.raises(ValueError, match="known exercises"):
        check.solution("no_such_exercise")


def test_memorization_reference_is_the_protocols_figure():
    """The check's pairwise reference agrees with metrics.memorization (a matrix-product implementation) on real
    digits, and with a NumPy computation on the check's first case."""
    train, val, test = (data.load("digits", s).images for s in ("train", "val", "test"))
    for images in (val, train[:101], torch.rand(51, 1, 8, 8, generator=torch.Generator().manual_seed(1))):
        ours = lesson00._reference_memorization_ratio(images, train, test)
        assert ours == pytest.approx(metrics.memorization(images), rel=1e-6)
    g = torch.Generator().manual_seed(3)
    s, t, r = torch.rand(21, 1, 4, 4, generator=g), torch.rand(40, 1, 4, 4, generator=g), torch.rand(15, 1, 4, 4, generator=g)
    near = lambda x: np.sqrt(((x.reshape(len(x), 1, -1).numpy() - t.reshape(1, len(t), -1).numpy()) ** 2).sum(-1)).min(1)
    assert lesson00._reference_memorization_ratio(s, t, r) == pytest.approx(float(np.median(near(s)) / np.median(near(r))))
    assert lesson00._reference_memorization_ratio(t[:11], t, r) == 0.0  # copies


def test_mean_image_reference_against_a_loop():
    x = torch.rand(6, 2, 3, 5, generator=torch.Generator().manual_seed(2))
    loop = sum(x[i] for i in range(len(x))) / len(x)
    assert torch.allclose(lesson00._reference_mean_image(x), loop)
