"""Disentangling: dSprites and data with known factors, the β-TCVAE, FactorVAE and DIP-VAE
objectives, latent traversals, and the metrics in `vaekit evaluate`."""

import math

import numpy as np
import pytest
import torch

import vaekit
from vaekit.config import Config, without_effect
from vaekit.errors import VaekitError
from vaekit.kinds import load_data
from vaekit.kinds.images import dsprites
from vaekit.model import Objective, build_model
from vaekit.model.objectives import TCVAE, permute_dims


# ----------------------------------------------------------------------------- dSprites

def test_dsprites_draws_the_factors_it_is_given():
    idx = np.array([[0, 5, 0, 0, 0], [0, 5, 0, 31, 0], [0, 5, 0, 0, 31], [0, 0, 0, 16, 16],
                    [1, 5, 0, 16, 16], [2, 5, 0, 16, 16], [0, 5, 5, 16, 16]])
    x = dsprites.draw(idx, 64)[:, 0]
    assert x.shape == (7, 64, 64) and set(x.unique().tolist()) == {0.0, 1.0}
    area = x.sum((1, 2)).tolist()
    assert area[0] == pytest.approx((0.2 * 64) ** 2, rel=0.1)          # a square 0.2 of the frame wide at scale 1
    assert area[3] == pytest.approx(area[0] / 4, rel=0.25)             # scale 0.5: a quarter of the area
    assert area[4] < area[0] and area[5] < area[0]                       # the ellipse and the heart fit in the square
    assert area[6] == pytest.approx(area[0], rel=0.1)                   # turning keeps the area
    assert not torch.equal(x[6], x[0]) and not torch.equal(x[4], x[5])
    cols = torch.arange(64.0)

    def centre(img):
        return float((img.sum(0) * cols).sum() / img.sum()), float((img.sum(1) * cols).sum() / img.sum())

    (x0, y0), (x1, _), (_, y2) = centre(x[0]), centre(x[1]), centre(x[2])
    assert x1 - x0 == pytest.approx(0.6 * 64, abs=1.5) and y2 - y0 == pytest.approx(0.6 * 64, abs=1.5)
    # no shape leaves the frame: the border is black at every angle, scale and position
    every = dsprites.draw(dsprites.indices_of(np.arange(0, dsprites.SIZE, 97)), 32)[:, 0]
    assert every[:, 0].sum() == every[:, -1].sum() == every[:, :, 0].sum() == every[:, :, -1].sum() == 0


def test_dsprites_as_data_carries_its_factors():
    cfg = Config()
    cfg.data.source, cfg.data.subset, cfg.data.image_size = "dsprites", 600, [16]
    b = load_data(cfg.data)
    assert b.shape == (1, 16, 16) and b.value == "binary"
    assert b.train.shape[0] + b.valid.shape[0] + b.test.shape[0] == 600
    assert b.info()["factors"] == dsprites.FACTOR_NAMES and b.label_names == ["square", "ellipse", "heart"]
    for split in ("train", "valid", "test"):
        f = b.factors(split)
        assert f.shape == (b.split(split).shape[0], 5)
        assert torch.equal(f[:, 0].long(), b.labels(split))
    again = load_data(cfg.data)
    assert torch.equal(again.train, b.train) and torch.equal(again.train_factors, b.train_factors)
    f = b.train_factors
    assert f[:, 1].min() >= 0.5 and f[:, 1].max() <= 1 and f[:, 2].max() <= 2 * math.pi + 1e-6
    # the images are the ones the factors say
    vals = dsprites.factor_values()
    first = np.array([[int(np.argmin(abs(vals[j] - float(f[0, j])))) for j in range(5)]])
    assert torch.equal(dsprites.draw(first, 16)[0], b.train[0])
    cfg.data.image_size = [8, 12]
    with pytest.raises(VaekitError, match="square"):
        load_data(cfg.data)


def test_an_npz_with_factors(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((200, 6, 6)) > 0.5).astype(np.float32)
    f = rng.integers(0, 4, (200, 3))
    np.savez(tmp_path / "d.npz", X=x, factors=f, factor_names=np.array(["a", "b", "c"]))
    cfg = Config()
    cfg.data.source = str(tmp_path / "d.npz")
    b = load_data(cfg.data)
    assert b.factor_names == ["a", "b", "c"]
    total = torch.cat([b.train_factors, b.valid_factors, b.test_factors])
    assert sorted(map(tuple, total.long().tolist())) == sorted(map(tuple, f.tolist()))
    cfg.data.subset = 50
    assert load_data(cfg.data).train.shape[0] + load_data(cfg.data).valid.shape[0] + \
        load_data(cfg.data).test.shape[0] == 50
    np.savez(tmp_path / "bad.npz", X=x, factors=f[:150])
    cfg.data.source, cfg.data.subset = str(tmp_path / "bad.npz"), None
    with pytest.raises(VaekitError, match=r"bad.npz: 'factors' must be a numeric \(N, F\) array"):
        load_data(cfg.data)


# ----------------------------------------------------------------------------- objectives

def _model(latent=3, **model):
    cfg = Config()
    cfg.model.latent, cfg.model.hidden, cfg.model.likelihood, cfg.model.net = latent, [16], "bernoulli", "mlp"
    for k, v in model.items():
        setattr(cfg.model, k, v)
    info = {"shape": [1, 4, 4], "value": "binary", "modality": "image", "classes": 0}
    return cfg, build_model(cfg.model, info)


def test_tcvae_parts_add_up_to_the_kl_and_weights_of_one_are_the_elbo():
    cfg, model = _model()
    x = torch.bernoulli(torch.full((32, 1, 4, 4), 0.3))
    cfg.train.objective = "tcvae"
    tc = Objective.from_config(cfg.train, 10, examples=1000, model=model)
    assert isinstance(tc, TCVAE) and tc.examples == 1000
    t = model(x, 1, log_weights=True)
    mi, total, dw = tc.decomposition(t)
    assert torch.allclose(mi + total + dw, t["log_qz"][0] - t["log_pz"][0], atol=1e-4)
    cfg.train.objective = "elbo"
    elbo = Objective.from_config(cfg.train, 10)
    torch.manual_seed(1)
    a, _ = tc(model, x)
    torch.manual_seed(1)
    b, _ = elbo(model, x)
    assert a.item() == pytest.approx(b.item(), abs=1e-5)
    cfg.train.objective, cfg.train.beta = "tcvae", 6.0
    torch.manual_seed(1)
    c, _ = Objective.from_config(cfg.train, 10, examples=1000, model=model)(model, x)
    torch.manual_seed(1)
    assert c.item() != pytest.approx(a.item(), abs=1e-3)
    c.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_minibatch_weighted_total_correlation_sees_dependence():
    cfg, model = _model(latent=2)
    cfg.train.objective = "tcvae"
    tc = Objective.from_config(cfg.train, 1, examples=512, model=model)

    class Q:
        def __init__(self, loc):
            self.loc, self.scale = loc, torch.full_like(loc, 0.05)

    g = torch.Generator().manual_seed(0)
    u = torch.randn(512, 1, generator=g)
    independent, dependent = torch.randn(512, 2, generator=g), torch.cat([u, u], 1)
    values = []
    for loc in (independent, dependent):
        t = {"q": Q(loc), "z": loc.unsqueeze(0), "log_qz": torch.zeros(1, 512), "log_pz": torch.zeros(1, 512)}
        values.append(tc.decomposition(t)[1].mean().item())
    assert values[1] > values[0] + 1.0      # two copies of one variable: a large total correlation


def test_dip_penalty_is_small_for_the_identity_and_large_for_correlated_means():
    cfg, model = _model(latent=2)
    for variant in ("dip-i", "dip-ii"):
        cfg.train.objective = variant
        dip = Objective.from_config(cfg.train, 1)
        assert dip.lambda_d == (100.0 if variant == "dip-i" else 10.0)

        class Q:
            def __init__(self, loc, var):
                self.loc, self.scale = loc, torch.full_like(loc, var).sqrt()

        g = torch.Generator().manual_seed(0)
        white = torch.randn(4096, 2, generator=g)
        u = torch.randn(4096, 1, generator=g)
        var = 0.0 if variant == "dip-i" else 0.5
        scale = 1.0 if variant == "dip-i" else math.sqrt(0.5)   # Cov[mu] + E[sigma^2] = I for dip-ii
        low = dip.penalty({"q": Q(white * scale, var)}, 1.0).item()
        high = dip.penalty({"q": Q(torch.cat([u, u], 1) * scale, var)}, 1.0).item()
        assert high > 4 and low < 0.03 * high


def test_permuted_latents_keep_each_marginal():
    z = torch.arange(12.0).view(6, 2)
    p = permute_dims(z)
    assert torch.equal(p.sort(0).values, z)


def test_the_objectives_refuse_what_they_cannot_read_and_say_which_options_go_unused(cli, tmp_path):
    rc, _, err = cli("train", "--objective", "tcvae", "--flow", "2", "--epochs", "1", "--out", tmp_path / "a")
    assert rc == 2 and "factorised Gaussian posterior" in err
    cfg = Config()
    cfg.train.gamma, cfg.train.dip_lambda = 10.0, 2.0
    said = without_effect(cfg)
    assert any("--gamma" in s and "factor" in s for s in said) and any("--dip-lambda" in s for s in said)
    cfg.train.objective = "factor"
    assert not any("--gamma" in s for s in without_effect(cfg))
    cfg.data.subset, cfg.data.modality = 100, "text"
    assert any("--subset takes a random subset of images" in s for s in without_effect(cfg))


def test_factorvae_trains_its_discriminator_and_resumes_bit_identically(tmp_path, cli):
    common = ["--objective", "factor", "--gamma", "10", "--discriminator", "32,32", "--latent", "3", "--hidden",
              "32", "--batch-size", "128", "--quiet"]
    rc, _, err = cli("train", *common, "--epochs", "2", "--out", tmp_path / "whole")
    assert rc == 0, err
    rc, _, err = cli("train", *common, "--epochs", "1", "--out", tmp_path / "half")
    assert rc == 0, err
    first = torch.load(tmp_path / "half" / "state" / "last.pt", weights_only=True)["objective"]
    rc, _, err = cli("train", "--resume", tmp_path / "half", "--epochs", "2", "--quiet")
    assert rc == 0, err
    whole = torch.load(tmp_path / "whole" / "state" / "last.pt", weights_only=True)
    half = torch.load(tmp_path / "half" / "state" / "last.pt", weights_only=True)
    for k, v in whole["objective"]["discriminator"].items():
        assert torch.equal(v, half["objective"]["discriminator"][k]), k
        assert not torch.equal(v, first["discriminator"][k])       # it trained in the second epoch
    for k, v in whole["model"].items():
        assert torch.equal(v, half["model"][k]), k
    # the discriminator is the trainer's, not the model's: model.safetensors holds the VAE alone
    run = vaekit.Run.load(tmp_path / "whole")
    assert not any("disc" in k for k in run.model.state_dict())


# ----------------------------------------------------------------------------- traversal and metrics

def test_traverse_images(digits_run, cli, tmp_path):
    run = vaekit.Run.load(digits_run)
    t = run.traversal(dims=[2, 0], span=(-2, 2), steps=5, index=3)
    assert t.z.shape == (2, 5, 4) and t.dims == [2, 0]
    mu = run.model.encode(run.data.test[3:4]).loc[0]
    assert torch.allclose(t.z[0, :, 0], mu[0].expand(5)) and t.z[0, :, 2].tolist() == [-2, -1, 0, 1, 2]
    assert t.values == [-2, -1, 0, 1, 2] and "test example 3" in t.origin
    t = run.traversal()
    assert sorted(t.dims) == [0, 1, 2, 3] and t.strength == sorted(t.strength, reverse=True)
    held = t.z.clone()
    for r, d in enumerate(t.dims):
        held[r, :, d] = 0
    assert (held == 0).all()        # around z = 0: only the row's own dimension moves
    rc, out, err = cli("traverse", digits_run, "--dims", "1,3", "--steps", "4", "--range=-1,1", "--from", "0",
                       "--out", tmp_path / "t.png")
    assert rc == 0, err
    from PIL import Image

    with Image.open(tmp_path / "t.png") as im:
        assert im.height > 2 * 40 and im.width > 4 * 40
    for bad, message in ((["--dims", "9"], "the latent has 4 dimensions"), (["--from", "100000"], "test split has"),
                         (["--range=1,-1"], "LO < HI"), (["--steps", "1"], "at least 2")):
        rc, _, err = cli("traverse", digits_run, *bad)
        assert rc == 2 and message in err, (bad, err)
    assert "Latent traversal" in (digits_run / "report.html").read_text()


def test_evaluate_reports_disentanglement_when_the_data_carry_factors(tmp_path, cli):
    rng = np.random.default_rng(0)
    f = rng.integers(0, 4, (600, 2))                      # a 2x2 square at one of 4 x 4 places
    x = np.zeros((600, 8, 8), np.float32)
    for i, (c, r) in enumerate(f):
        x[i, 2 * r:2 * r + 2, 2 * c:2 * c + 2] = 1
    np.savez(tmp_path / "squares.npz", X=x, factors=f, factor_names=np.array(["column", "row"]))
    out = tmp_path / "run"
    rc, _, err = cli("train", "--data", tmp_path / "squares.npz", "--latent", "3", "--hidden", "32", "--epochs", "3",
                     "--quiet", "--out", out)
    assert rc == 0, err
    rc, text, err = cli("evaluate", out, "--k", "4", "--quiet")
    assert rc == 0, err
    assert "MIG" in text and "DCI" in text and "FactorVAE score" in text
    d = vaekit.Run.load(out).evaluation["disentanglement"]
    assert d["factors"] == ["column", "row"] and 0 <= d["mig"] <= 1 and 0 <= d["dci_disentanglement"] <= 1
    assert d["dci_informativeness"] > 0.5              # the codes tell where the square is
    rc, _, _ = cli("report", out)
    assert rc == 0 and "MIG" in (out / "report.html").read_text()
    rc, text, _ = cli("evaluate", out, "--k", "4", "--quiet", "--no-factors")
    assert rc == 0 and "MIG" not in text


def test_metrics_without_factors_are_one_sentence(digits_run, cli):
    rc, _, err = cli("evaluate", digits_run, "--k", "2", "--quiet", "--factors")
    assert rc == 2 and "carry no known factors" in err
