"""The checks of lessons 02 and 03: the reference passes, typical mistakes fail, an unsolved exercise is
"not attempted", and grading mode raises on a wrong answer."""
import math

import pytest
import torch
from torch.nn import functional as F

from gencourse import autoencoder, check, exercises, vae



# --- lesson 02 -------------------------------------------------------------------------------

def _recon_error(x, x_hat):
    return ((x - x_hat) ** 2).flatten(1).sum(1)


def _recon_error_mean(x, x_hat):
    return ((x - x_hat) ** 2).flatten(1).mean(1)


def _recon_error_total(x, x_hat):
    return ((x - x_hat) ** 2).sum()


def _bce(logits, x):
    return F.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="none").flatten(1).sum(1).mean()


def _bce_sigmoid_then_bceloss(logits, x):
    return F.binary_cross_entropy(torch.sigmoid(logits), (x + 1) / 2, reduction="none").flatten(1).sum(1).mean()


def _bce_on_minus_one_to_one(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()


def _bce_mean_over_pixels(logits, x):
    return F.binary_cross_entropy_with_logits(logits, (x + 1) / 2)


def _auc_strict(a, b):
    return float((b[:, None] > a[None, :]).double().mean())


def _auc_wrong_direction(a, b):
    return float((a[:, None] > b[None, :]).double().mean() + 0.5 * (a[:, None] == b[None, :]).double().mean())


def _auc_pairwise(a, b):
    return float((b[:, None] > a[None, :]).double().mean() + 0.5 * (b[:, None] == a[None, :]).double().mean())


# --- lesson 03 -------------------------------------------------------------------------------

def _reparam(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _reparam_std_is_exp_logvar(mu, logvar):
    return mu + torch.exp(logvar) * torch.randn_like(mu)


def _reparam_torch_normal(mu, logvar):
    return torch.normal(mu, torch.exp(0.5 * logvar))


def _reparam_detached(mu, logvar):
    return (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach()


def _kl(mu, logvar):
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def _kl_without_half(mu, logvar):
    return (mu ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def _kl_last_dim_only(mu, logvar):
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)


def _elbo(x, mu, logvar, eps, log_likelihood):
    z = mu + torch.exp(0.5 * logvar) * eps
    return log_likelihood(x, z) - 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)


def _elbo_plus_kl(x, mu, logvar, eps, log_likelihood):
    z = mu + torch.exp(0.5 * logvar) * eps
    return log_likelihood(x, z) + 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)


def _elbo_std_is_logvar(x, mu, logvar, eps, log_likelihood):
    z = mu + logvar * eps
    return log_likelihood(x, z) - 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)


def _log_weights(x, mu, logvar, eps, log_likelihood):
    z = mu + torch.exp(0.5 * logvar) * eps
    return log_likelihood(x, z) + vae.gaussian_log_prob(z) - vae.gaussian_log_prob(z, mu, logvar)


def _iwae(x, mu, logvar, eps, log_likelihood):
    return torch.logsumexp(_log_weights(x, mu, logvar, eps, log_likelihood), 0) - math.log(len(eps))


def _iwae_naive(x, mu, logvar, eps, log_likelihood):
    return _log_weights(x, mu, logvar, eps, log_likelihood).exp().mean(0).log()


def _iwae_mean_of_logs(x, mu, logvar, eps, log_likelihood):
    return _log_weights(x, mu, logvar, eps, log_likelihood).mean(0)


CASES = [
    ("reconstruction_error", _recon_error, _recon_error_mean),
    ("reconstruction_error", _recon_error, _recon_error_total),
    ("autoencoder_bce", _bce, _bce_sigmoid_then_bceloss),
    ("autoencoder_bce", _bce, _bce_on_minus_one_to_one),
    ("autoencoder_bce", _bce, _bce_mean_over_pixels),
    ("anomaly_roc_auc", autoencoder.roc_auc, _auc_strict),
    ("anomaly_roc_auc", _auc_pairwise, _auc_wrong_direction),
    ("reparameterize", vae.reparameterize, _reparam_std_is_exp_logvar),
    ("reparameterize", _reparam, _reparam_torch_normal),
    ("reparameterize", _reparam, _reparam_detached),
    ("gaussian_kl", vae.gaussian_kl, _kl_without_half),
    ("gaussian_kl", _kl, _kl_last_dim_only),
    ("elbo_estimate", _elbo, _elbo_plus_kl),
    ("elbo_estimate", _elbo, _elbo_std_is_logvar),
    ("iwae_estimate", _iwae, _iwae_naive),
    ("iwae_estimate", _iwae, _iwae_mean_of_logs),
]


@pytest.mark.parametrize("name,right,wrong", CASES, ids=[f"{c[0]}-{c[2].__name__}" for c in CASES])
def test_right_passes_wrong_fails_unsolved_is_not_attempted(name, right, wrong, check_verdicts):
    check_verdicts(name, right, wrong)


def test_grading_mode_raises_on_a_wrong_answer(monkeypatch):
    monkeypatch.setenv("GENCOURSE_GRADING", "1")
    with pytest.raises(exercises.ExerciseFailed):
        check.gaussian_kl(_kl_without_half)
    with pytest.raises(exercises.ExerciseFailed):
        check.anomaly_roc_auc(_auc_strict)


def test_checks_do_not_print_memory_addresses(monkeypatch, capsys):
    monkeypatch.delenv("GENCOURSE_GRADING", raising=False)
    check.iwae_estimate(_iwae_naive)
    check.elbo_estimate(_elbo_plus_kl)
    assert " at 0x" not in capsys.readouterr().out
