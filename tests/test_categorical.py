"""Categorical latents trained with the Gumbel-softmax: the posterior, the prior, the exact NLL."""

import itertools
import math

import torch
from torch.distributions import Categorical, Normal, kl_divergence

import vaekit
from vaekit.config import ModelConfig
from vaekit.eval import evaluate
from vaekit.model import build_model
from vaekit.model.categorical import CategoricalPosterior, CategoricalPrior
from vaekit.model.objectives import Objective
from vaekit.serve import create_app

INFO = {"shape": [1, 3, 3], "value": "binary", "modality": "image", "classes": 0}


def test_the_posterior_kl_draws_and_log_prob():
    torch.manual_seed(0)
    logits = torch.randn(5, 2 * 4)                                   # 2 variables of 4 categories
    q = CategoricalPosterior(logits, 4, temperature=0.7)
    exact = kl_divergence(Categorical(logits=logits.view(5, 2, 4)), Categorical(probs=torch.full((5, 2, 4), 0.25)))
    torch.testing.assert_close(q.kl_to_uniform(), exact)
    prior = CategoricalPrior(2, 4)
    kl = prior.analytic_kl(q)
    assert kl.shape == (5, 8) and (kl >= 0).all()
    torch.testing.assert_close(kl.sum(-1), exact.sum(-1))
    # without gradients: exact one-hot draws, at the posterior's frequencies, with their log-probability
    with torch.no_grad():
        z = q.rsample((20000,))
    assert z.shape == (20000, 5, 8) and set(z.unique().tolist()) == {0.0, 1.0}
    assert (z.view(20000, 5, 2, 4).sum(-1) == 1).all()
    torch.testing.assert_close(z.mean(0), q.loc, atol=0.015, rtol=0)
    expected = Categorical(logits=logits.view(5, 2, 4)).log_prob(z.view(20000, 5, 2, 4).argmax(-1)).sum(-1)
    torch.testing.assert_close(q.log_prob(z).sum(-1), expected)
    # with gradients: relaxed draws on the simplex, sharper at a lower temperature
    y = q.rsample((1000,))
    torch.testing.assert_close(y.view(1000, 5, 2, 4).sum(-1), torch.ones(1000, 5, 2))
    assert 0 < y.min() and y.max() < 1
    cold = CategoricalPosterior(logits, 4, temperature=0.05).rsample((1000,))
    assert cold.view(1000, 5, 2, 4).max(-1).values.mean() > y.view(1000, 5, 2, 4).max(-1).values.mean() + 0.1
    # straight-through: one-hot forward, and the relaxed gradient reaches the logits
    leaf = logits.clone().requires_grad_()
    st = CategoricalPosterior(leaf, 4, temperature=0.7, straight_through=True).rsample()
    assert set(st.detach().unique().tolist()) == {0.0, 1.0}
    (st * torch.randn(5, 8)).sum().backward()
    assert leaf.grad.abs().sum() > 0


def test_a_mixed_latent_is_a_gaussian_beside_the_categorical_variables():
    torch.manual_seed(1)
    params = torch.randn(4, 2 * 3 + 2 * 5)                           # 3 Gaussian dims, 2 variables of 5
    q = CategoricalPosterior(params, 5, continuous=3)
    prior = CategoricalPrior(2, 5, continuous=3)
    gauss = Normal(params[:, :3], torch.exp(0.5 * params[:, 3:6]))
    kl = prior.analytic_kl(q)
    assert kl.shape == (4, 13)
    torch.testing.assert_close(kl[:, :3], kl_divergence(gauss, Normal(0.0, 1.0)))
    torch.testing.assert_close(kl[:, 3:].sum(-1), q.kl_to_uniform().sum(-1))
    with torch.no_grad():
        z = q.rsample((7,))
    assert z.shape == (7, 4, 13) and (z[..., 3:].view(7, 4, 2, 5).sum(-1) == 1).all()
    expected = gauss.log_prob(z[..., :3]).sum(-1) + Categorical(logits=params[:, 6:].view(4, 2, 5)).log_prob(
        z[..., 3:].view(7, 4, 2, 5).argmax(-1)).sum(-1)
    torch.testing.assert_close(q.log_prob(z).sum(-1), expected)
    torch.testing.assert_close(prior.log_prob(z), Normal(0.0, 1.0).log_prob(z[..., :3]).sum(-1) - 2 * math.log(5))
    noise = torch.randn(6, 13)
    drawn = prior.draw(noise, temperature=0.5)
    torch.testing.assert_close(drawn[:, :3], 0.5 * noise[:, :3])
    assert (drawn[:, 3:].view(6, 2, 5).argmax(-1) == noise[:, 3:].view(6, 2, 5).argmax(-1)).all()
    torch.testing.assert_close(q.loc[:, :3], params[:, :3])


def test_the_prior_draws_uniformly_and_the_temperature_falls_to_its_floor():
    prior = CategoricalPrior(3, 5, temperature=2.0, min_temperature=0.5, anneal=1e-3)
    z = prior.sample(30000)
    assert z.shape == (30000, 15)
    torch.testing.assert_close(z.mean(0), torch.full((15,), 0.2), atol=0.01, rtol=0)
    torch.testing.assert_close(prior.log_prob(z[:4]), torch.full((4,), -3 * math.log(5)))
    prior.at_step(0)
    assert prior.temperature == 2.0
    prior.at_step(693)
    assert abs(prior.temperature - 1.0) < 1e-3
    prior.at_step(10**6)
    assert prior.temperature == 0.5


def test_the_importance_sampled_nll_finds_the_exact_likelihood_of_a_discrete_latent_model():
    """With 2 variables of 3 categories there are 9 latent values: log p(x) is a sum of 9 terms.
    The k-sample estimate with the (discrete) posterior as proposal lands on it."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(net="mlp", latent=2, categories=3, hidden=[16], likelihood="bernoulli",
                                    prior="categorical"), INFO)
    x = (torch.rand(6, 1, 3, 3) > 0.5).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    objective = Objective()
    for step in range(60):                                           # a little training: a sharper q
        loss, _ = objective(model, x, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.prior.temperature < 1.0
    values = torch.tensor([sum(([float(a == i) for i in range(3)], [float(b == i) for i in range(3)]), [])
                           for a, b in itertools.product(range(3), range(3))])          # (9, 6)
    with torch.no_grad():
        log_joint = model.log_joint(x, values.unsqueeze(1).expand(9, 6, 6))             # (9, B)
    exact = -torch.logsumexp(log_joint, 0).mean().item()
    r = evaluate(model, x, k=3000)
    assert abs(r["nll_nats"] - exact) < 0.02, (r["nll_nats"], exact)
    assert r["nll_nats"] <= -r["elbo_nats"] + 0.05


def test_a_categorical_run_from_the_command_line(tmp_path, cli):
    common = ["--prior", "categorical", "--latent", "6", "--categories", "4", "--binarize", "static",
              "--likelihood", "bernoulli", "--hidden", "64", "--batch-size", "64", "--epochs", "3", "--quiet"]
    out = tmp_path / "cat"
    rc, _, err = cli("train", *common, "--straight-through", "--out", out)
    assert rc == 0, err
    rc, said, _ = cli("info", out)
    assert "latent 6 categorical variables of 4" in said and "categorical prior" in said
    rc, said, err = cli("evaluate", out, "--k", "50")
    assert rc == 0, err
    rc, _, err = cli("sample", out, "-n", "8", "--out", tmp_path / "s.png")
    assert rc == 0 and (tmp_path / "s.png").exists(), err
    rc, _, err = cli("train", "--resume", out, "--epochs", "4", "--quiet")
    assert rc == 0, err
    rc, _, err = cli("export", out, "--out", tmp_path / "exp")
    assert rc == 2 and "this latent is categorical" in err and not (tmp_path / "exp").exists()
    for extra, said in ((["--objective", "iwae", "--k", "4"], "relaxed, not categorical"),
                        (["--flow", "1"], "a flow transforms a continuous posterior"),
                        (["--objective", "tcvae"], "posterior is categorical")):
        rc, _, err = cli("train", *common, *extra, "--out", tmp_path / "x")
        assert rc == 2 and said in err and len(err.strip().splitlines()) == 1, err
    client = create_app(vaekit.Run.load(out)).test_client()       # the explorer: a slider per variable
    info = client.get("/api/info").get_json()
    assert info["variables"] == [[4 * n, 4] for n in range(6)] and info["latent"] == 24
    r = client.post("/api/traverse", json={"z": [0.0] * 24, "dim": 8, "steps": 9}).get_json()
    assert r["values"] == [0.0, 1.0, 2.0, 3.0] and "image" in r
    rc, _, err = cli("train", *common, "--continuous", "2", "--out", tmp_path / "mixed")
    assert rc == 0, err
    rc, said, _ = cli("info", tmp_path / "mixed")
    assert "latent 6 categorical variables of 4 and 2 Gaussian dimensions" in said
    rc, said, err = cli("evaluate", tmp_path / "mixed", "--k", "20")
    assert rc == 0 and "active units" in said, err
    rc, _, err = cli("train", "--categories", "4", "--epochs", "1", "--quiet", "--out", tmp_path / "w")
    assert rc == 0 and "--categories shape the categorical latent" in err


def test_the_explorer_page_of_a_mixed_latent_in_headless_chromium(tmp_path, cli):
    from test_serve import explorer_page

    rc, _, err = cli("train", "--prior", "categorical", "--latent", "3", "--categories", "5", "--continuous", "2",
                     "--binarize", "static", "--likelihood", "bernoulli", "--hidden", "32", "--epochs", "1", "--quiet",
                     "--out", tmp_path / "r")
    assert rc == 0, err
    with explorer_page(create_app(vaekit.Run.load(tmp_path / "r"))) as (page, errors):
        sliders = page.locator("#sliders input")
        assert sliders.count() == 3 + 2                                   # 3 variables, 2 Gaussian dimensions
        variable = page.locator("#sliders input[data-variable]").first
        assert variable.get_attribute("max") == "4"
        before = page.locator("#decoded").get_attribute("src")
        variable.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("s => document.querySelector('#decoded').src !== s", arg=before, timeout=15000)
        page.click("#sliders button >> nth=0")
        page.wait_for_function("() => document.querySelector('#trav').src.startsWith('data:image/png')",
                               timeout=15000)
        assert "each of the 5 categories" in page.locator("#travStatus").inner_text()
    assert not errors, errors
