"""Structured priors: mixture of Gaussians and VampPrior, through training, IWAE and evaluate."""

import math

import pytest
import torch

import vaekit
from vaekit.config import ModelConfig
from vaekit.eval import evaluate
from vaekit.model import build_model
from vaekit.model.priors import ClassPrior, MixtureOfGaussians, VampPrior, diagonal_mixture_log_prob


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


@pytest.mark.parametrize("weighted", [False, True])
def test_mixture_log_prob_by_matrix_products_matches_torch_distributions(weighted):
    torch.manual_seed(0)
    means, log_vars = torch.randn(50, 6), torch.randn(50, 6) - 2
    logits = torch.randn(50) if weighted else None
    z = 2 * torch.randn(3, 7, 6)                                  # any batch shape
    comp = torch.distributions.Independent(torch.distributions.Normal(means, torch.exp(0.5 * log_vars)), 1)
    mix = torch.distributions.Categorical(logits=logits if weighted else torch.zeros(50))
    expected = torch.distributions.MixtureSameFamily(mix, comp).log_prob(z)
    got = diagonal_mixture_log_prob(z, means, log_vars, logits)
    assert got.shape == (3, 7)
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=1e-5)


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


def test_conditional_vae_generates_the_class_asked_for(tmp_path, cli):
    rc, _, err = cli("train", "--conditional", "--epochs", "40", "--quiet", "--out", tmp_path / "c")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "c")
    assert run.model.classes == 10
    # a nearest-class-mean classifier on the test set labels samples asked for each digit
    test, labels = run.data.test, run.data.test_labels
    means = torch.stack([test[labels == c].mean(0) for c in range(10)]).flatten(1)
    torch.manual_seed(0)
    hits = 0
    for c in range(10):
        x = run.model.sample(20, y=torch.full((20,), c)).flatten(1)
        hits += (torch.cdist(x, means).argmin(1) == c).sum().item()
    assert hits / 200 > 0.8
    rc, out, _ = cli("sample", tmp_path / "c", "--label", "3", "-n", "8", "--out", tmp_path / "three.png")
    assert rc == 0
    rc, _, err = cli("sample", tmp_path / "c", "--label", "12")
    assert rc == 2 and "--label 12" in err
    for verb in (("reconstruct",), ("interpolate", "--between", "0", "4"), ("evaluate", "--k", "10", "--quiet"),
                 ("report",)):
        rc, _, err = cli(verb[0], tmp_path / "c", *verb[1:])
        assert rc == 0, (verb, err)


def test_class_prior_density_kl_and_samples():
    torch.manual_seed(0)
    p = ClassPrior(3, classes=4)
    with torch.no_grad():
        p.scaled_means.copy_(3 * torch.randn(4, 3) / p.SCALE)
        p.scaled_log_vars.copy_(torch.randn(4, 3) / p.SCALE)
    y = torch.tensor([2, 0, 3])
    c = torch.nn.functional.one_hot(y, 4).float()
    pz = torch.distributions.Normal(p.means[y], torch.exp(0.5 * p.log_vars[y]))
    z = torch.randn(5, 3, 3)                                       # (k, B, dim)
    torch.testing.assert_close(p.log_prob(z, c), pz.log_prob(z).sum(-1))
    q = torch.distributions.Normal(torch.randn(3, 3), torch.rand(3, 3) + 0.1)
    torch.testing.assert_close(p.analytic_kl(q, c), torch.distributions.kl_divergence(q, pz))
    draws = p.sample(20000, torch.nn.functional.one_hot(torch.full((20000,), 1), 4).float())
    torch.testing.assert_close(draws.mean(0), p.means[1].detach(), atol=0.06, rtol=0)
    torch.testing.assert_close(draws.std(0), torch.exp(0.5 * p.log_vars[1]).detach(), atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="needs labels"):
        p.log_prob(z)


def test_nll_with_a_class_prior_matches_exact_conditional_likelihood():
    """log p(x | y) = log integral p(x | z, y) p(z | y) dz, by quadrature, against evaluate."""
    torch.manual_seed(0)
    info = {"shape": [1, 1, 4], "value": "binary", "levels": None, "classes": 3}
    model = build_model(ModelConfig(latent=1, hidden=[8], activation="tanh", prior="class", conditional=True), info)
    with torch.no_grad():
        # near the untrained encoder's posteriors, so that q is a good proposal
        model.prior.scaled_means.copy_(torch.tensor([[-0.8], [0.3], [0.6]]) / model.prior.SCALE)
        model.prior.scaled_log_vars.copy_(torch.tensor([[-0.5], [0.0], [-0.2]]) / model.prior.SCALE)
    x = torch.tensor([[[[1.0, 0.0, 1.0, 1.0]]]])
    zs = torch.linspace(-15, 15, 30001)[:, None]
    for label in (0, 2):
        y = torch.full((zs.shape[0],), label)
        with torch.no_grad():
            log_joint = (model.decode(zs, y).log_prob(x.expand(zs.shape[0], 1, 1, 4))
                         + model.prior.log_prob(zs, model.onehot(y)))
        exact = (torch.logsumexp(log_joint, 0) + torch.log(zs[1, 0] - zs[0, 0])).item()
        torch.manual_seed(1)
        r = evaluate(model, x, k=20000, quiet=True, y=torch.tensor([label]))
        assert abs(r["nll_nats"] + exact) < 0.01


def test_class_prior_trains_samples_and_evaluates(tmp_path, cli):
    rc, _, err = cli("train", "--prior", "class", "--epochs", "1", "--quiet", "--out", tmp_path / "r")
    assert rc == 2 and "needs a conditional model" in err and "Traceback" not in err
    rc, _, err = cli("train", "--conditional", "--prior", "class", "--epochs", "2", "--hidden", "32",
                     "--objective", "iwae", "--k", "4", "--quiet", "--out", tmp_path / "c")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "c")
    assert isinstance(run.model.prior, ClassPrior) and run.model.prior.means.shape == (10, 16)
    assert run.model.sample(4, y=3).shape == (4, 1, 8, 8)
    for verb in (("sample", "--label", "3", "-n", "8", "--out", tmp_path / "three.png"),
                 ("evaluate", "--k", "10", "--quiet"), ("interpolate", "--between", "0", "4"), ("report",)):
        rc, out, err = cli(verb[0], tmp_path / "c", *verb[1:])
        assert rc == 0, (verb, err)


def test_conditional_needs_labels(tmp_path, cli):
    import numpy as np

    np.save(tmp_path / "nolab.npy", np.random.default_rng(0).random((40, 4, 4)).astype(np.float32))
    rc, _, err = cli("train", "--conditional", "--data", tmp_path / "nolab.npy", "--out", tmp_path / "r")
    assert rc == 2 and "needs labels" in err


def test_conditional_explorer(tmp_path, cli):
    from vaekit.serve import create_app

    rc, _, err = cli("train", "--conditional", "--epochs", "1", "--hidden", "16", "--quiet", "--out", tmp_path / "c")
    assert rc == 0, err
    client = create_app(vaekit.Run.load(tmp_path / "c")).test_client()
    assert client.get("/api/info").get_json()["classes"] == 10
    a = client.post("/api/decode", json={"z": [0.0] * 16, "label": 1}).get_json()["image"]
    b = client.post("/api/decode", json={"z": [0.0] * 16, "label": 7}).get_json()["image"]
    assert a != b
    assert client.post("/api/decode", json={"z": [0.0] * 16, "label": 10}).status_code == 400


@pytest.mark.parametrize("top_prior", ["normal", "vamp"])
def test_hierarchical_nll_matches_exact_two_layer_likelihood(top_prior):
    """p(x) = integral of p(x|z1) p(z1|z2) p(z2) over (z1, z2), by 2-D quadrature; p(z2) is
    N(0, I) or the VampPrior at the top, the mixture of q(z2 | mu1(u_k))."""
    torch.manual_seed(0)
    info = {"shape": [1, 1, 4], "value": "binary", "levels": None}
    model = build_model(ModelConfig(latent=1, hidden=[8], activation="tanh", prior="hierarchical", top_latent=1,
                                    top_prior=top_prior, prior_components=3), info)
    x = torch.tensor([[[[1.0, 0.0, 1.0, 1.0]]]])
    z1 = torch.linspace(-12, 12, 2401)[:, None]
    z2 = torch.linspace(-9, 9, 1801)[:, None]
    with torch.no_grad():
        log_px = model.decode(z1).log_prob(x.expand(z1.shape[0], 1, 1, 4))                    # (n1,)
        p1 = model.prior._normal(model.prior.down(z2))                                       # batch (n2, 1)
        log_p1 = p1.log_prob(z1[:, None, :]).sum(-1)                                         # (n1, n2)
        if top_prior == "normal":
            log_p2 = torch.distributions.Normal(0.0, 1.0).log_prob(z2[:, 0])                 # (n2,)
        else:
            mu1, _ = model.encoder(torch.sigmoid(model.prior.top_prior.pseudo_logits))      # (3, 1)
            top = model.prior._normal(model.prior.up(mu1))                                   # batch (3, 1)
            log_p2 = torch.logsumexp(top.log_prob(z2[:, None, :]).sum(-1), 1) - math.log(3)
    cell = (z1[1, 0] - z1[0, 0]) * (z2[1, 0] - z2[0, 0])
    exact = (torch.logsumexp(log_px[:, None] + log_p1 + log_p2[None, :], (0, 1)) + torch.log(cell)).item()
    torch.manual_seed(1)
    r = evaluate(model, x, k=50000, quiet=True)
    assert abs(r["nll_nats"] + exact) < 0.02
    assert -r["elbo_nats"] > r["nll_nats"]


def test_hierarchical_vae_with_conv_nets_and_iwae(tmp_path, cli):
    rc, _, err = cli("train", "--prior", "hierarchical", "--top-latent", "3", "--net", "conv", "--channels", "8,16",
                     "--objective", "iwae", "--k", "3", "--epochs", "2", "--quiet", "--out", tmp_path / "h")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "h")
    assert run.model.prior.top == 3 and run.model.sample(5).shape == (5, 1, 8, 8)
    rc, out, _ = cli("evaluate", tmp_path / "h", "--k", "20", "--quiet")
    assert rc == 0 and "NLL" in out


def test_hierarchical_vae_with_a_vampprior_at_the_top(tmp_path, cli):
    rc, _, err = cli("train", "--top-prior", "vamp", "--epochs", "1", "--quiet", "--out", tmp_path / "x")
    assert rc == 2 and "--prior hierarchical" in err and "Traceback" not in err
    rc, _, err = cli("train", "--prior", "hierarchical", "--top-prior", "vamp", "--prior-components", "6",
                     "--hidden", "32", "--objective", "iwae", "--k", "3", "--epochs", "2", "--quiet",
                     "--out", tmp_path / "hv")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "hv")
    top = run.model.prior.top_prior
    assert isinstance(top, VampPrior) and top.pseudo_logits.shape == (6, 1, 8, 8)
    assert not any("_encoder" in k or "_head" in k for k in run.model.state_dict())
    assert run.model.sample(5).shape == (5, 1, 8, 8)
    rc, out, _ = cli("evaluate", tmp_path / "hv", "--k", "20", "--quiet")
    assert rc == 0 and "NLL" in out


@pytest.mark.parametrize("prior", ["mog", "class"])
def test_logvar_range_bounds_the_learned_gaussians_of_the_mog_and_class_priors(prior):
    torch.manual_seed(0)
    info = {"shape": [1, 4, 4], "value": "binary", "modality": "image", "classes": 3}
    cfg = dict(net="mlp", latent=2, hidden=[8], likelihood="bernoulli", prior=prior, conditional=prior == "class")
    free, bound = build_model(ModelConfig(**cfg), info), build_model(ModelConfig(**cfg, logvar_range=[-6, 2]), info)
    bound.load_state_dict(free.state_dict())
    with torch.no_grad():
        for m in (free, bound):
            for name, p in m.prior.named_parameters():
                if "log_vars" in name:
                    p.fill_(-1.0 if prior == "mog" else -0.1)   # log-variance -1 (class: stored / 10)
                    p[0, 0] = 5.0 if prior == "mog" else 0.5    # one of 5, beyond the range
    z = torch.zeros(4, 2)
    c = None if prior == "mog" else torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    a, b = free.prior.log_prob(z, c), bound.prior.log_prob(z, c)
    assert not torch.allclose(a, b)
    # only the component / class with the out-of-range log-variance changed: its log-variance became 2
    if prior == "class":
        assert torch.equal(a[1:3], b[1:3]) and not torch.equal(a[0], b[0])
        torch.testing.assert_close(bound.prior.log_vars[0, 0], torch.tensor(2.0))
    else:
        assert (bound.prior.sample(2000).std(0)[0] < free.prior.sample(2000).std(0)[0])
