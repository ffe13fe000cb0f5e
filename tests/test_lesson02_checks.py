"""The checks of lesson 02: the reference passes, typical mistakes fail with their own message, an unsolved
exercise is "not attempted", and grading mode raises on a wrong answer. The build-and-train check is judged
by what the learner's model achieves, so its mistakes are caught by its compare (tested here directly)."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gencourse import autoencoder, check, exercises
from gencourse.check import lesson02


def _recon_error(x, x_hat):
    return ((x - x_hat) ** 2).flatten(1).sum(1)


def _bce(logits, x):
    return F.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="none").flatten(1).sum(1).mean()


def _auc_pairwise(a, b):
    return float((b[:, None] > a[None, :]).double().mean() + 0.5 * (b[:, None] == a[None, :]).double().mean())


CASES = [
    ("reconstruction_error", _recon_error, lesson02._recon_mean_per_image),
    ("reconstruction_error", _recon_error, lesson02._recon_total),
    ("reconstruction_error", _recon_error, lesson02._recon_norm),
    ("autoencoder_bce", _bce, lesson02._bce_sigmoid_then_bceloss),
    ("autoencoder_bce", _bce, lesson02._bce_unmapped_targets),
    ("autoencoder_bce", _bce, lesson02._bce_mean_over_pixels),
    ("anomaly_roc_auc", autoencoder.roc_auc, lesson02._auc_strict),
    ("anomaly_roc_auc", _auc_pairwise, lesson02._auc_wrong_direction),
    ("noised_mixture_score", autoencoder.mixture_score, lesson02._score_noise_variance_only),
    ("noised_mixture_score", autoencoder.mixture_score, lesson02._score_equal_weights),
]


@pytest.mark.parametrize("name,right,wrong", CASES, ids=[f"{c[0]}-{c[2].__name__}" for c in CASES])
def test_right_passes_wrong_fails_unsolved_is_not_attempted(name, right, wrong, check_verdicts):
    check_verdicts(name, right, wrong)


def test_the_score_reference_is_autograd_through_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x, centers = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(lesson02._reference_mixture_score(x, centers, 0.8, 0.3),
                               autoencoder.mixture_score(x, centers, 0.8, 0.3))


def test_the_bce_reference_is_the_logits_form():
    logits, x = torch.randn(3, 1, 8, 8) * 5, torch.randint(0, 17, (3, 1, 8, 8)) / 8.0 - 1
    torch.testing.assert_close(lesson02._reference_bce(logits, x), _bce(logits, x), rtol=1e-5, atol=1e-4)


# -- autoencoder_from_scratch: the compare sees the mistakes ------------------------------------

def _case(d):
    x_train, _ = lesson02._digits_splits()
    return exercises.Case(x_train, d)


def test_from_scratch_compare_names_each_mistake_on_a_small_model():
    """The compare's diagnosis, on untrained parts (fast): wrong code size, probabilities instead of logits."""
    x_train, x_val = lesson02._digits_splits()
    bar = lesson02._pca_error(x_train, x_val, 4)
    enc, dec = lesson02._ae_parts(x_train, 4, bottleneck=False)
    ok, why = lesson02._compare_autoencoder((enc, dec), bar, _case(4))
    assert not ok and lesson02._NO_CODE in why
    enc, dec = lesson02._ae_parts(x_train, 4, sigmoid_out=True)
    ok, why = lesson02._compare_autoencoder((enc, dec), bar, _case(4))
    assert not ok and lesson02._NOT_LOGITS in why
    enc, dec = lesson02._ae_parts(x_train, 4)              # untrained: poor reconstructions
    ok, why = lesson02._compare_autoencoder((enc, dec), bar, _case(4))
    assert not ok and lesson02._POOR in why
    ok, why = lesson02._compare_autoencoder(nn.Linear(64, 4), bar, _case(4))
    assert not ok and "pair (encoder, decoder)" in why


def test_pca_bar_is_the_best_rank_d_reconstruction():
    """The bar equals scikit-learn's PCA error (up to the clip to [0, 1], applied by both)."""
    from sklearn.decomposition import PCA

    x_train, x_val = lesson02._digits_splits()
    for d in (2, 8):
        pca = PCA(n_components=d).fit(x_train.flatten(1).numpy())
        back = pca.inverse_transform(pca.transform(x_val.flatten(1).numpy())).clip(0, 1)
        expected = float(((x_val.flatten(1).numpy() - back) ** 2).sum(1).mean())
        assert abs(lesson02._pca_error(x_train, x_val, d) - expected) < 1e-3


def test_from_scratch_reference_passes_with_margin_on_several_seeds():
    """The verdict is robust: the reference beats PCA by a clear margin whatever torch's seed."""
    x_train, x_val = lesson02._digits_splits()
    bar = lesson02._pca_error(x_train, x_val, 8)
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        encoder, decoder = lesson02._ae_reference(x_train, 8)
        with torch.no_grad():
            error = float((torch.sigmoid(decoder(encoder(x_val))) - x_val).pow(2).flatten(1).sum(1).mean())
        assert error < 0.85 * bar, (seed, error, bar)


def test_unsolved_from_scratch_is_not_attempted(monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)

    def unsolved(x_train, latent_dim):
        raise NotImplementedError

    check.autoencoder_from_scratch(unsolved)
    assert exercises.results["autoencoder_from_scratch"].status == exercises.NOT_ATTEMPTED


def test_grading_mode_raises_on_a_wrong_answer(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        check.anomaly_roc_auc(lesson02._auc_strict)
    with pytest.raises(exercises.ExerciseFailed):
        check.noised_mixture_score(lesson02._score_sign)
    with pytest.raises(exercises.ExerciseFailed):
        check.autoencoder_from_scratch(lambda x_train, d: lesson02._ae_parts(x_train, d))  # untrained


def test_checks_do_not_print_memory_addresses(monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    check.autoencoder_from_scratch(lambda x_train, d: lesson02._ae_parts(x_train, d, bottleneck=False))
    check.noised_mixture_score(lesson02._score_equal_weights)
    assert " at 0x" not in capsys.readouterr().out
