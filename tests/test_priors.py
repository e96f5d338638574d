"""Structured priors: mixture of Gaussians and VampPrior, through training, IWAE and evaluate."""

import math

import pytest
import torch

import vaekit
from vaekit.config import ModelConfig
from vaekit.evaluate import evaluate
from vaekit.model import build_model
from vaekit.priors import MixtureOfGaussians, VampPrior


def test_mixture_of_gaussians_density():
    torch.manual_seed(0)
    p = MixtureOfGaussians(3, components=4)
    z = torch.randn(5, 3)
    comps = torch.stack([torch.distributions.Normal(p.means[k], torch.exp(0.5 * p.log_vars[k])).log_prob(z).sum(-1)
                         for k in range(4)])
    expected = torch.logsumexp(comps + torch.log_softmax(p.logits, 0)[:, None], 0)
    torch.testing.assert_close(p.log_prob(z), expected)
    assert p.sample(7).shape == (7, 3)
    assert p.analytic_kl(torch.distributions.Normal(torch.zeros(2, 3), torch.ones(2, 3))) is None


def test_vampprior_is_a_mixture_of_encoder_posteriors_and_is_stored_once():
    info = {"shape": [1, 1, 6], "value": "binary", "levels": None}
    model = build_model(ModelConfig(latent=2, hidden=[8], prior="vamp", prior_components=5), info)
    assert isinstance(model.prior, VampPrior)
    keys = list(model.state_dict())
    assert not any(k.startswith("prior.encoder") or k.startswith("prior._encoder") for k in keys)
    assert "prior.pseudo_logits" in keys
    z = torch.randn(4, 2)
    mu, logvar = model.encoder(torch.sigmoid(model.prior.pseudo_logits))
    comps = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z[:, None]).sum(-1)   # (4, 5)
    torch.testing.assert_close(model.prior.log_prob(z), torch.logsumexp(comps, 1) - math.log(5))
    assert model.prior.sample(3).shape == (3, 2)


def test_nll_with_a_vampprior_matches_exact_likelihood():
    torch.manual_seed(0)
    info = {"shape": [1, 1, 4], "value": "binary", "levels": None}
    model = build_model(ModelConfig(latent=1, hidden=[8], activation="tanh", prior="vamp", prior_components=3), info)
    x = torch.tensor([[[[1.0, 0.0, 1.0, 1.0]]]])
    zs = torch.linspace(-15, 15, 30001)[:, None]
    with torch.no_grad():
        log_joint = model.decode(zs).log_prob(x.expand(zs.shape[0], 1, 1, 4)) + model.prior.log_prob(zs)
    exact = (torch.logsumexp(log_joint, 0) + torch.log(zs[1, 0] - zs[0, 0])).item()
    torch.manual_seed(1)
    r = evaluate(model, x, k=20000, quiet=True)
    assert abs(r["nll_nats"] + exact) < 0.01
    assert r["kl_per_dim"] is None and r["kl_nats"] > 0


@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_training_and_sampling_with_structured_priors(prior, tmp_path, cli):
    rc, _, err = cli("train", "--prior", prior, "--prior-components", "8", "--epochs", "2", "--hidden", "32",
                     "--objective", "iwae", "--k", "4", "--quiet", "--out", tmp_path / "r")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "r")
    assert type(run.model.prior).__name__ == {"mog": "MixtureOfGaussians", "vamp": "VampPrior"}[prior]
    assert run.model.sample(4).shape == (4, 1, 8, 8)
    rc, out, _ = cli("evaluate", tmp_path / "r", "--k", "20", "--quiet")
    assert rc == 0 and "NLL" in out
    rc, _, err = cli("train", "--prior", prior, "--free-bits", "0.1", "--epochs", "1", "--hidden", "16", "--quiet",
                     "--out", tmp_path / "fb")
    assert rc == 0, err
