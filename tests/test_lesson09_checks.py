"""Each lesson-09 check: the reference passes, an unsolved answer is "not attempted", a wrong type is refused
(the known mistakes are fed back to every check by test_exercise_catalog.py)."""
import pytest
import torch
from torch.nn import functional as F

from gencourse import autoregressive as ar
from gencourse import check, exercises
from gencourse import transformer as tr
from gencourse.check import lesson09


def unsolved(*args, **kwargs):
    raise NotImplementedError("fill in the solution")


def _kv(q, k, v, kc, vc):
    kc, vc = torch.cat([kc, k], -2), torch.cat([vc, v], -2)
    return tr.attention(q, kc, vc), kc, vc


@pytest.mark.parametrize("name,answer", [
    ("scaled_dot_product_attention", tr.attention),
    ("causal_mask", lambda tq, tk: tr.causal_mask(tq, tk)),
    ("next_token_probs", lambda logits, temperature=1.0, top_k=None, top_p=None: F.softmax(
        ar.filtered_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p), -1)),
    ("kv_cache_step", _kv),
])
def test_check_accepts_the_library_and_marks_unsolved(name, answer, capsys):
    fn = getattr(check, name)
    fn(answer)  # the course's own implementation, independent of the check's reference
    assert exercises.results[name].status == exercises.PASSED, capsys.readouterr().out
    fn(unsolved)
    assert exercises.results[name].status == exercises.NOT_ATTEMPTED


def test_reference_probs_match_the_library_filters():
    for case in lesson09._probs_cases():
        logits, *rest = case.args
        temperature, top_k, top_p = (list(rest) + [1.0, None, None][len(rest):])[:3]
        want = F.softmax(ar.filtered_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p), -1)
        torch.testing.assert_close(lesson09._reference_probs(logits, temperature, top_k, top_p), want,
                                   atol=1e-6, rtol=1e-5)


def test_tiny_gpt_check_refuses_a_non_model(capsys):
    check.train_tiny_gpt(lambda ids, vocab: 3)
    assert exercises.results["train_tiny_gpt"].status == exercises.FAILED
    assert "expected the trained GPT" in capsys.readouterr().out
    check.train_tiny_gpt(unsolved)
    assert exercises.results["train_tiny_gpt"].status == exercises.NOT_ATTEMPTED
