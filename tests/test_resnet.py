"""The deep hierarchical network of latent maps (--net resnet), its prior and posterior, the mixture
of discretized logistics, temperatures, and the trainer's skipped outlier updates."""

import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.config import ModelConfig
from vaekit.model import build_model
from vaekit.model.likelihoods import DiscretizedLogistic, LogisticMixtureLikelihood
from vaekit.model.nets.ladder import LadderPosterior, layout, resolutions, spectral_penalty

INFO = {"shape": [1, 12, 12], "value": "binary", "modality": "image", "classes": 0}


def small_model(likelihood="bernoulli", info=INFO, **kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(net="resnet", prior="ladder", likelihood=likelihood, **kw), info)


def test_the_layout_halves_to_4x4_then_1x1_and_counts_the_latent_maps():
    assert resolutions(28, 28) == [(28, 28), (14, 14), (7, 7), (4, 4), (1, 1)]
    assert resolutions(32, 20) == [(32, 20), (16, 10), (8, 5), (4, 3), (1, 1)]
    assert resolutions(3, 3) == [(3, 3), (1, 1)]
    lay = layout("small", [1, 28, 28])
    # small: 1 layer at 1x1, 2 at 4x4, 2 at 7x7, 1 at 14x14, none at full size; 8 channels each
    assert [(h, w) for _, h, w in lay.layers] == [(1, 1), (4, 4), (4, 4), (7, 7), (7, 7), (14, 14)]
    assert lay.dim == 8 * (1 + 2 * 16 + 2 * 49 + 196)
    model = small_model(info={**INFO, "shape": [1, 28, 28]})
    assert model.latent == lay.dim and [s for _, s in model.prior.layers] == [8, 128, 128, 392, 392, 1568]


def test_prior_posterior_and_decoder_read_one_pass_and_agree_when_it_is_recomputed():
    model = small_model().eval()
    x = (torch.rand(5, 1, 12, 12) > 0.5).float()
    t = model.terms(x, 3)
    z = t["z"]                                                           # (3, 5, D), the cached pass
    again = z.clone()                                                    # another tensor: a pass of its own
    torch.testing.assert_close(model.prior.log_prob(again), t["log_pz"])
    torch.testing.assert_close(t["q"].log_prob(again).sum(-1), t["log_qz"])
    torch.testing.assert_close(model.decoder(again.reshape(15, -1)), model.decoder(z.reshape(15, -1)))
    layer_kl = model.prior.layer_kl(t["q"], z)
    torch.testing.assert_close(sum(layer_kl.values()), t["log_qz"] - t["log_pz"], rtol=1e-4, atol=1e-3)
    assert model.log_weights(x, 4).shape == (4, 5) and torch.isfinite(model.log_weights(x, 4)).all()


def test_the_conditional_kl_per_unit_is_the_expected_log_ratio():
    model = small_model().eval()
    x = (torch.rand(2, 1, 12, 12) > 0.5).float()
    q = model.encode(x)
    kl, log_ratio = [], []
    for _ in range(400):
        z = q.rsample().unsqueeze(0)
        kl.append(model.prior.analytic_kl(q).sum(-1))                   # given the layers above as drawn
        log_ratio.append(q.log_prob(z).sum(-1)[0] - model.prior.log_prob(z)[0])
    kl, log_ratio = torch.stack(kl), torch.stack(log_ratio)
    # two unbiased estimates of KL(q || p): their means agree within a few standard errors
    se = (log_ratio.std(0) / math.sqrt(len(log_ratio)))
    assert ((kl.mean(0) - log_ratio.mean(0)).abs() < 4 * se + 0.05).all()
    assert model.prior.analytic_kl(q) is not None and q.rsample((2,)).shape[0] == 2
    assert model.prior.analytic_kl(q) is None                            # not after a k-sample draw


def test_temperatures_scale_each_layers_prior_and_zero_gives_its_means():
    model = small_model().eval()
    torch.manual_seed(1)
    a = model.prior.sample(4, temperature=0.0)
    torch.manual_seed(2)
    b = model.prior.sample(4, temperature=0.0)
    torch.testing.assert_close(a, b)                                    # no randomness at temperature 0
    noise = torch.randn(4, model.latent)
    top = model.prior.layers[0][1]
    cold_top = model.prior.draw(noise, temperature=[0.0, 1.0])          # the top layer at its mean
    torch.testing.assert_close(cold_top[:, :top], a[:, :top])
    assert not torch.allclose(cold_top[:, top:], a[:, top:])
    assert model.sample(3, temperature=[1.0, 0.5]).shape == (3, 1, 12, 12)
    posterior = model.encode(torch.zeros(2, 1, 12, 12))
    assert isinstance(posterior, LadderPosterior) and posterior.loc.shape == (2, model.latent)


def test_the_spectral_penalty_is_the_sum_of_largest_singular_values():
    model = small_model(spectral_reg=0.1)
    for _ in range(60):
        value = spectral_penalty(model.decoder)
    exact = sum(torch.linalg.matrix_norm(m.weight.flatten(1), 2) for m in model.decoder.modules()
                if isinstance(m, torch.nn.Conv2d))
    torch.testing.assert_close(value, exact, rtol=1e-3, atol=1e-4)
    q = model.train().encode(torch.zeros(2, 1, 12, 12))
    assert q.aux_loss.requires_grad and float(q.aux_loss.detach()) > 0
    assert not hasattr(model.eval().encode(torch.zeros(2, 1, 12, 12)), "aux_loss")


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_the_logistic_mixture_sums_to_one_and_samples_its_distribution(channels):
    torch.manual_seed(channels)
    levels = 5
    lik = LogisticMixtureLikelihood((channels, 1, 1), mixtures=3, levels=levels)
    params = torch.randn(1, lik.n_params, channels, 1, 1)
    values = torch.tensor(list(itertools.product(range(levels), repeat=channels)), dtype=torch.float32) / (levels - 1)
    x = values.view(-1, channels, 1, 1)
    p = lik.log_prob(params.expand(len(x), -1, -1, -1, -1), x).exp()
    torch.testing.assert_close(p.sum(), torch.tensor(1.0))
    draws = lik.dist(params.expand(20000, -1, -1, -1, -1)).sample().view(20000, channels)
    exact_mean = (p.view(-1, 1) * values).sum(0)
    torch.testing.assert_close(draws.mean(0), exact_mean, atol=0.02, rtol=0)
    mean = lik.mean(params)[0].flatten()
    assert (mean - exact_mean).abs()[0] < 0.01            # the first channel's mean is exact


def test_one_component_of_one_channel_is_the_discretized_logistic_on_the_1_1_scale():
    lik = LogisticMixtureLikelihood((1, 2, 2), mixtures=1, levels=256)
    params = torch.randn(3, 3, 1, 2, 2)
    x = torch.randint(0, 256, (3, 1, 2, 2)).float() / 255
    expected = DiscretizedLogistic(0.5 * (params[:, 1] + 1), params[:, 2].clamp(min=-7) - math.log(2), 256)
    torch.testing.assert_close(lik.log_prob(params, x), expected.log_prob(x).flatten(1).sum(-1))


def rgb_folder(path, n=24, size=10):
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.zeros((size, size, 3), np.uint8)
        img[..., i % 3] = 180 + rng.integers(0, 60)
        img[: size // 2] //= 2
        Image.fromarray(img).save(path / f"{i}.png")
    return path


def test_resnet_trains_samples_evaluates_and_reports_on_colour_images(cli, tmp_path):
    data = rgb_folder(tmp_path.joinpath("rgb").mkdir() or tmp_path / "rgb")
    out = tmp_path / "run"
    rc, _, err = cli("train", "--data", data, "--net", "resnet", "--likelihood", "logistic-mixture", "--mixtures",
                     "2", "--epochs", "2", "--batch-size", "8", "--skip-grad-norm", "1e9", "--clip-grad", "200",
                     "--quiet", "--out", out)
    assert rc == 0, err
    config = (out / "config.yaml").read_text()
    assert "prior: ladder" in config and "net: resnet" in config
    rc, files, err = cli("sample", out, "-n", "4", "--temperature", "1,0.7", "--out", tmp_path / "s.png")
    assert rc == 0, err
    assert Image.open(tmp_path / "s.png").mode == "RGB"
    rc, text, err = cli("evaluate", out, "--k", "3")
    assert rc == 0, err
    assert "bits/dim" in text and "z1 1x1x8" in text                   # each stochastic layer's KL
    rc, _, err = cli("report", out)
    assert rc == 0 and "z6 10x10x8" in (out / "report.html").read_text()


def test_resnet_refusals_are_one_sentence(cli, tmp_path, digits_run):
    for extra, words in ((["--prior", "vamp"], "hierarchy of latent maps"),
                         (["--objective", "iwae", "--k", "2", "--estimator", "dreg"], "--estimator standard"),
                         (["--conditional"], "--conditional is not available")):
        rc, _, err = cli("train", "--net", "resnet", "--epochs", "1", "--out", tmp_path / "x", *extra)
        assert rc != 0 and words in err and len(err.strip().splitlines()) == 1, err
    rc, _, err = cli("train", "--prior", "ladder", "--epochs", "1", "--out", tmp_path / "y")
    assert rc != 0 and "top-down pass of the resnet network" in err
    rc, _, err = cli("sample", digits_run, "--temperature", "1,0.5")
    assert rc != 0 and "one positive temperature" in err


def metrics_with_outliers(tmp_path, monkeypatch, outlier, **train) -> list[dict]:
    """metrics.csv of one epoch on the digits whose objective is a million times larger (its
    gradients too) where ``outlier(step, calls)`` says so; ``train``: TrainConfig fields."""
    import csv

    import vaekit
    from vaekit.model.objectives import Objective

    original, calls = Objective.__call__, [0]

    def call(self, model, x, step, y=None, beta=None):
        loss, stats = original(self, model, x, step, y, beta)
        calls[0] += 1
        return (loss * 1e6, stats) if outlier(step, calls[0]) else (loss, stats)

    monkeypatch.setattr(Objective, "__call__", call)
    cfg = vaekit.Config()
    cfg.train.epochs, cfg.train.batch_size, cfg.train.skip_grad_norm = 1, 64, 1e5
    for key, value in train.items():
        setattr(cfg.train, key, value)
    cfg.model.hidden, cfg.model.latent = [32], 2
    run = vaekit.train(cfg, out=tmp_path / "run", quiet=True, pictures=False)
    return list(csv.DictReader((run.path / "metrics.csv").open()))


def test_outlier_updates_are_skipped_and_counted(tmp_path, monkeypatch):
    rows = metrics_with_outliers(tmp_path, monkeypatch, lambda step, calls: step in (2, 3))
    assert int(rows[-1]["skipped_steps"]) == 2
    assert float(rows[-1]["grad_norm_max"]) > 1e5            # the largest norm of the epoch, before clipping


def test_a_recovery_forgets_the_gradient_norms_of_the_attempt_it_abandons(tmp_path, monkeypatch):
    # the first attempt at epoch 1: outlier after outlier, until it is abandoned
    rows = metrics_with_outliers(tmp_path, monkeypatch, lambda step, calls: calls <= 5, max_bad_steps=5)
    assert rows[-1]["recoveries"] == "1" and rows[-1]["skipped_steps"] == "0"
    assert 0 < float(rows[-1]["grad_norm_max"]) < 1e5       # not the outliers of the abandoned attempt


def test_the_explorer_moves_the_top_layer_and_the_layers_below_follow(tmp_path):
    import vaekit
    from vaekit.serve import create_app

    run = vaekit.train(vaekit.Config.from_dict({"data": {"source": "digits"}, "model": {"net": "resnet"},
                                                "train": {"epochs": 1, "batch_size": 64}}),
                       out=tmp_path / "r", quiet=True, pictures=False)
    top = run.model.prior.layers[0][1]
    client = create_app(vaekit.Run.load(run.path)).test_client()
    info = client.get("/api/info").get_json()
    assert info["latent"] == top == 8 and sorted(info["order"]) == list(range(8)) and len(info["ranges"]) == 8
    a = client.post("/api/decode", json={"z": [0.0] * 8}).get_json()["image"]
    b = client.post("/api/decode", json={"z": [3.0] * 8}).get_json()["image"]
    assert a.startswith("data:image/png;base64,") and a != b                 # the top layer moves the picture
    assert len(client.get("/api/example/2").get_json()["z"]) == 8
    r = client.post("/api/traverse", json={"z": [0.0] * 8, "dim": 0, "steps": 4})
    assert r.status_code == 200 and len(r.get_json()["values"]) == 4
    whole = run.model.prior.completed(torch.zeros(2, 8))
    assert whole.shape == (2, run.model.latent) and torch.equal(whole[:, :8], torch.zeros(2, 8))


def test_resnet_composes_with_the_iwae_bound_and_resumes_bit_for_bit(tmp_path):
    import vaekit
    from vaekit.checkpoint import load_weights

    def config(epochs, **train):
        return vaekit.Config.from_dict({"data": {"source": "digits"}, "model": {"net": "resnet"},
                                        "train": {"epochs": epochs, "batch_size": 128, "threads": 1, **train}})

    run = vaekit.train(config(1, objective="iwae", k=2), out=tmp_path / "iwae", quiet=True, pictures=False)
    assert math.isfinite(float(run.metrics[-1]["valid_iwae"]))
    straight = vaekit.train(config(2), out=tmp_path / "a", quiet=True, pictures=False)
    vaekit.train(config(1), out=tmp_path / "b", quiet=True, pictures=False)
    resumed = vaekit.resume(tmp_path / "b", epochs=2, quiet=True, pictures=False)
    a, b = load_weights(straight.path / "model.safetensors"), load_weights(resumed.path / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_options_of_the_resnet_and_the_mixture_are_said_to_have_no_effect_elsewhere():
    from vaekit.config import Config, without_effect

    cfg = Config()
    cfg.model.net, cfg.model.likelihood, cfg.model.resnet, cfg.model.mixtures = "mlp", "logistic", "base", 3
    said = " ".join(without_effect(cfg))
    assert "--resnet and --spectral-reg shape the resnet network" in said and "--mixtures is the logistic" in said
    cfg.model.net, cfg.model.latent = "resnet", 32
    assert any("--resnet small|base|gpu does" in w for w in without_effect(cfg))
