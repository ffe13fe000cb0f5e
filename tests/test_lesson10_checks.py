"""Each lesson-10 check: an independent answer passes, an unsolved answer is "not attempted", and every known
mistake is caught with its own message (the catalog test feeds the mistakes back as well, once the lesson's
solutions are in solutions.json; this file does it directly, so the checks are tested before the lesson is built)."""
import pytest
import torch

from gencourse import check, exercises, vq
from gencourse.check import lesson10


def unsolved(*args, **kwargs):
    raise NotImplementedError("fill in the solution")


def _library_quantize(z, codebook):
    q = vq.VectorQuantizer(codebook.shape[0], codebook.shape[1])
    with torch.no_grad():
        q.codebook.copy_(codebook)
    z_q, indices, _ = q(z)
    return z_q, indices


def _written_vq_loss(z, e, beta):
    return ((e - z.detach()) ** 2).mean() + beta * ((z - e.detach()) ** 2).mean()


def _library_usage(indices, num_codes):
    u = vq.codebook_usage(indices, num_codes)
    return u["perplexity"], u["dead_share"]


ANSWERS = {
    "vector_quantize": _library_quantize,
    "vq_loss": _written_vq_loss,
    "codebook_perplexity": _library_usage,
    "sample_tokens": lambda prior, n, temperature=1.0: prior.sample(n, temperature=temperature),
    "train_latent_velocity": lesson10._velocity_trainer(),
}


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_check_accepts_an_independent_answer_and_marks_unsolved(name, capsys):
    fn = getattr(check, name)
    fn(ANSWERS[name])
    assert exercises.results[name].status == exercises.PASSED, capsys.readouterr().out
    fn(unsolved)
    assert exercises.results[name].status == exercises.NOT_ATTEMPTED
    assert "not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_every_known_mistake_is_caught_with_its_own_message(name, capsys):
    fn = getattr(check, name)
    fn(ANSWERS[name])  # records the check's mistakes in the catalog
    mistakes = exercises.catalog[name]
    assert len([m for m in mistakes if m.wrong_answer is not None]) >= 2
    messages = [m.message for m in mistakes]
    assert len(set(messages)) == len(messages), "two mistakes share a message"
    for mistake in mistakes:
        fn(mistake.wrong_answer)
        verdict = exercises.results[name]
        assert verdict.status == exercises.FAILED, f"{name} accepts the mistake: {mistake.message}"
        assert mistake.message in verdict.message, f"{name} misses the message of: {mistake.message}"
        others = [m for m in messages if m != mistake.message]
        assert not any(m in verdict.message for m in others), f"{name} gives another mistake's message too"
    capsys.readouterr()


def test_sampler_check_refuses_wrong_shapes_and_the_start_token(capsys):
    def with_start(prior, n, temperature=1.0):
        return torch.cat([torch.full((n, 1), prior.start), prior.sample(n, temperature=temperature).view(n, -1)], 1)

    check.sample_tokens(with_start)
    assert exercises.results["sample_tokens"].status == exercises.FAILED
    assert "expected token grids of shape" in capsys.readouterr().out


def test_velocity_check_refuses_a_non_model(capsys):
    check.train_latent_velocity(lambda z: 3)
    assert exercises.results["train_latent_velocity"].status == exercises.FAILED
    assert "expected the trained velocity network" in capsys.readouterr().out


def test_exact_distribution_of_the_tiny_prior_is_normalized():
    prior = lesson10._tiny_prior()
    for temperature in (0.5, 1.0, 2.0):
        p = lesson10._exact_probs(prior, temperature)
        assert p.shape == (81,) and abs(p.sum().item() - 1) < 1e-9
        # the library's exact NLL agrees at temperature 1
    with torch.no_grad():
        torch.testing.assert_close(lesson10._exact_probs(prior, 1.0),
                                   (-prior.nll(lesson10._all_grids(prior)).double()).exp(), atol=1e-6, rtol=1e-5)
