"""The vector-quantised latent (VQ-VAE, first stage): quantisation, codebook, training, refusals."""

import math

import pytest
import torch

import vaekit
from vaekit.config import ModelConfig
from vaekit.model import build_model
from vaekit.model.objectives import Objective
from vaekit.model.vq import QuantisedPosterior, VQPrior

INFO = {"shape": [1, 4, 4], "value": "binary", "modality": "image", "classes": 0}


def test_quantisation_picks_the_nearest_code_and_passes_the_gradient_straight_through():
    torch.manual_seed(0)
    prior = VQPrior(positions=3, codebook=5, code_dim=2).eval()
    prior.codebook.copy_(torch.randn(5, 2))
    z_e = torch.randn(4, 6, requires_grad=True)
    q = QuantisedPosterior(z_e, prior)
    nearest = torch.cdist(z_e.detach().view(4, 3, 2), prior.codebook.expand(4, 5, 2)).argmin(-1)
    assert torch.equal(q.codes, nearest)
    torch.testing.assert_close(q.z.detach(), prior.codebook[nearest].flatten(-2))
    torch.testing.assert_close(q.aux_loss, 0.25 * (z_e.detach().view(4, 3, 2) - prior.codebook[nearest]).square().sum((1, 2)))
    w = torch.randn(4, 6)
    (q.z * w).sum().backward()
    torch.testing.assert_close(z_e.grad, w)                         # straight through
    assert q.rsample((7,)).shape == (7, 4, 6) and (q.log_prob(q.z) == 0).all()
    torch.testing.assert_close(prior.analytic_kl(q).sum(-1), torch.full((4,), 3 * math.log(5)))
    torch.testing.assert_close(prior.log_prob(q.z), torch.full((4,), -3 * math.log(5)))


def test_the_codebook_follows_its_assignments_and_dead_codes_restart():
    torch.manual_seed(1)
    prior = VQPrior(positions=1, codebook=4, code_dim=2, decay=0.5)
    ze = torch.tensor([[[1.0, 0.0]], [[1.2, 0.0]], [[-1.0, 0.0]], [[-1.1, 0.0]]])
    prior.update(ze, torch.zeros(4, 1, dtype=torch.long))   # the first step: every vector is nearest to code 0
    torch.testing.assert_close(prior.codebook[0], ze[:, 0].mean(0), atol=1e-4, rtol=0)   # their mean
    assert all(any(torch.equal(c, v) for v in ze[:, 0]) for c in prior.codebook[1:])     # the rest: batch vectors
    prior.codebook.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [5.0, 5.0], [6.0, 6.0]]))
    prior.ema_count.copy_(torch.tensor([1.0, 1.0, 0.0, 0.0]))
    prior.ema_sum.copy_(prior.codebook * prior.ema_count.unsqueeze(-1))
    prior.usage.zero_()
    codes = torch.tensor([[0], [0], [1], [1]])
    prior.update(ze, codes)
    # code 0: (0.5 * 1 + 0.5 * 2.2) / (0.5 * 1 + 0.5 * 2), Laplace smoothing aside
    torch.testing.assert_close(prior.codebook[0], torch.tensor([1.6 / 1.5, 0.0]), atol=1e-4, rtol=0)
    assert all(any(torch.equal(prior.codebook[k], v) for v in ze[:, 0]) for k in (2, 3))   # unused: restarted
    stats = prior.take_stats()
    assert stats == {"codes_used": 2, "code_perplexity": stats["code_perplexity"]}
    assert abs(stats["code_perplexity"] - 2.0) < 1e-5 and prior.take_stats() == {}


def test_the_commitment_loss_is_part_of_the_objective_and_validation_is_the_discrete_elbo():
    torch.manual_seed(0)
    model = build_model(ModelConfig(net="mlp", latent=2, hidden=[16], likelihood="bernoulli", prior="vq",
                                    codebook=8, code_dim=3), INFO)
    x = (torch.rand(5, 1, 4, 4) > 0.5).float()
    model.eval()
    torch.manual_seed(1)
    loss, stats = Objective()(model, x)
    q = model.encode(x)
    t = model(x, 1, log_weights=False)
    expected = (t["kl_dim"].sum(-1) - t["log_px"][0]).mean() + q.aux_loss.mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(stats[1], torch.tensor(5 * 2 * math.log(8)))


def test_a_vq_run_from_the_command_line(tmp_path, cli):
    common = ["--prior", "vq", "--latent", "4", "--codebook", "16", "--code-dim", "4", "--binarize", "static",
              "--likelihood", "bernoulli", "--hidden", "64", "--batch-size", "64", "--epochs", "3", "--quiet"]
    out = tmp_path / "vq"
    rc, _, err = cli("train", *common, "--out", out)
    assert rc == 0, err
    m = vaekit.Run.load(out).metrics
    assert all(1 <= r["codes_used"] <= 16 and 1 <= r["code_perplexity"] <= 16 for r in m)
    assert not (out / "samples" / "prior_samples.png").exists() and (out / "samples" / "reconstructions.png").exists()
    rc, said, _ = cli("info", out)
    assert "latent 4 positions of 16 codes of 4" in said
    rc, said, err = cli("evaluate", out, "--k", "5")
    assert rc == 0, err
    rc, _, err = cli("sample", out)
    assert rc == 2 and "no prior over its codes" in err and len(err.strip().splitlines()) == 1
    rc, _, err = cli("train", "--resume", out, "--epochs", "4", "--quiet")
    assert rc == 0, err
    before = vaekit.Run.load(out).evaluate(k=3, quiet=True, write=False)
    # the second stage: a prior over the codes, then sampling, and its log p(c) in the bound
    rc, said, err = cli("train-prior", out, "--epochs", "3", "--width", "32", "--heads", "2")
    assert rc == 0, err
    assert "valid NLL of the codes" in said and (out / "code_prior.safetensors").exists()
    run = vaekit.Run.load(out)
    weights = run.model.state_dict()
    assert not any(k.startswith("prior.codes_prior") for k in weights)         # the first stage's weights unchanged
    after = run.evaluate(k=3, quiet=True, write=False)
    assert after["rec_nats"] == pytest.approx(before["rec_nats"], abs=1e-4)
    assert after["kl_nats"] < before["kl_nats"] == pytest.approx(4 * math.log(16), abs=1e-4)
    assert after["nll_nats"] == pytest.approx(after["rec_nats"] + after["kl_nats"], abs=1e-3)
    rc, _, err = cli("sample", out, "-n", "8", "--out", tmp_path / "s.png")
    assert rc == 0 and (tmp_path / "s.png").exists(), err
    z = run.model.prior.sample(5)
    assert torch.equal(run.model.prior.codebook[run.model.prior.codes_of(z)].flatten(-2), z)   # codes of the book
    for extra, said in ((["--objective", "iwae", "--k", "3"], "every importance weight is the same"),
                        (["--objective", "tcvae"], "a point mass at the nearest code"),
                        (["--codebook-decay", "1"], "decay between 0 and 1")):
        rc, _, err = cli("train", *common, *extra, "--out", tmp_path / "x")
        assert rc == 2 and said in err and len(err.strip().splitlines()) == 1, err
    rc, _, err = cli("train", "--codebook", "8", "--epochs", "1", "--quiet", "--out", tmp_path / "w")
    assert rc == 0 and "--codebook shape the vector-quantised latent" in err
    rc, _, err = cli("train-prior", tmp_path / "w", "--epochs", "1")
    assert rc == 2 and "not vq" in err and len(err.strip().splitlines()) == 1


def test_a_code_map_on_the_conv_network(tmp_path, cli):
    from vaekit.model.vq import MapCodeHead, MapCodeInput

    info = {"shape": [1, 9, 7], "value": "binary", "modality": "image", "classes": 0}
    model = build_model(ModelConfig(net="conv", channels=[4, 8], likelihood="bernoulli", prior="vq", code_map=True,
                                    codebook=8, code_dim=3), info)
    assert isinstance(model.encoder.fc, MapCodeHead) and isinstance(model.decoder.fc, MapCodeInput)
    assert model.prior.positions == 3 * 2 and model.latent == 6 * 3            # 9x7 -> 5x4 -> 3x2 places
    x = (torch.rand(5, 1, 9, 7) > 0.5).float()
    q = model.encode(x)
    assert q.codes.shape == (5, 6) and model.decode(q.z).log_prob(x).shape == (5,)
    # each place's code comes from that place's features alone (a 1x1 convolution)
    feats = model.encoder.hidden(x).view(5, 8, 3, 2)
    head = model.encoder.fc.conv
    place = torch.einsum("bc,dc->bd", feats[:, :, 1, 0], head.weight[:, :, 0, 0]) + head.bias
    torch.testing.assert_close(model.encoder.fc(model.encoder.hidden(x)).view(5, 3, 2, 3)[:, 1, 0], place)
    common = ["--prior", "vq", "--code-map", "--net", "conv", "--channels", "8,16", "--codebook", "16", "--code-dim",
              "4", "--epochs", "2", "--quiet"]
    rc, _, err = cli("train", *common, "--out", tmp_path / "m")
    assert rc == 0, err
    rc, said, _ = cli("info", tmp_path / "m")
    assert "a code map of 16 codes of 4" in said
    rc, _, err = cli("train-prior", tmp_path / "m", "--epochs", "1", "--width", "16", "--heads", "2", "--quiet")
    assert rc == 0, err
    rc, _, err = cli("sample", tmp_path / "m", "-n", "4", "--out", tmp_path / "s.png")
    assert rc == 0 and (tmp_path / "s.png").exists(), err
    rc, _, err = cli("train", "--prior", "vq", "--code-map", "--epochs", "1", "--out", tmp_path / "x")
    assert rc == 2 and "conv network's last feature map" in err


def test_the_explorer_shows_the_code_map_and_a_slider_per_position(tmp_path, cli):
    from test_serve import explorer_page
    from vaekit.serve import create_app

    rc, _, err = cli("train", "--prior", "vq", "--code-map", "--net", "conv", "--channels", "8,16", "--codebook", "8",
                     "--code-dim", "3", "--epochs", "1", "--quiet", "--out", tmp_path / "r")
    assert rc == 0, err
    app = create_app(vaekit.Run.load(tmp_path / "r"))
    info = app.test_client().get("/api/info").get_json()
    assert info["codes"]["map"] == [2, 2] and info["codes"]["positions"] == 4 and len(info["codes"]["vectors"]) == 8
    with explorer_page(app) as (page, errors):
        assert page.locator("#codemap td").count() == 4
        assert page.locator("#sliders input[data-code]").count() == 4
        before = page.locator("#decoded").get_attribute("src")
        slider = page.locator("#sliders input[data-code]").first
        slider.focus()
        start = int(slider.input_value())
        page.keyboard.press("ArrowRight" if start < 7 else "ArrowLeft")
        page.wait_for_function("s => document.querySelector('#decoded').src !== s", arg=before, timeout=15000)
        assert page.locator("#codemap td").first.inner_text() == str(start + 1 if start < 7 else start - 1)
    assert not errors, errors
