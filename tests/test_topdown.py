"""The top-down two-layer VAE: q(z2 | x) q(z1 | x, z2), p(z2) p(z1 | z2) p(x | z1, z2)."""

import math

import pytest
import torch
from torch.distributions import Normal

import vaekit
from vaekit.config import ModelConfig
from vaekit.eval import evaluate
from vaekit.model import build_model
from vaekit.model.objectives import Objective
from vaekit.model.nets import TopDownEncoder, TopDownPosterior
from vaekit.model.priors import HierarchicalPrior, VampPrior

INFO = {"shape": [1, 1, 4], "value": "binary", "levels": None}


def small(top_prior="normal", latent=1, top=1, hidden=(8,), components=3, prior_hidden=None, prior_activation="tanh",
          latent_paths=False, logvar_range=None):
    return build_model(ModelConfig(latent=latent, hidden=list(hidden), activation="tanh", prior="hierarchical",
                                   inference="top-down", top_latent=top, top_prior=top_prior,
                                   prior_components=components, prior_hidden=prior_hidden,
                                   prior_activation=prior_activation, latent_paths=latent_paths,
                                   logvar_range=logvar_range), INFO)


@pytest.mark.parametrize("top_prior,prior_hidden,prior_activation,latent_paths",
                         [("normal", None, "tanh", False), ("vamp", None, "tanh", False),
                          ("vamp", [6, 5], "gated", False), ("vamp", None, "tanh", True)])
def test_top_down_nll_matches_exact_two_layer_likelihood(top_prior, prior_hidden, prior_activation, latent_paths):
    """p(x) = integral of p(x | z1, z2) p(z1 | z2) p(z2) over (z1, z2) by 2-D quadrature, against
    evaluate's k-sample estimate; with a VampPrior, p(z2) is the mixture of q(z2 | u_k). The
    third case has a deeper p(z1 | z2) of gated units (--prior-hidden, --prior-activation), the
    last one paths of their own for z1 and z2 (--latent-paths)."""
    torch.manual_seed(0)
    model = small(top_prior, prior_hidden=prior_hidden, prior_activation=prior_activation, latent_paths=latent_paths)
    if prior_hidden:
        assert [m.out_features for m in model.prior.down if isinstance(m, torch.nn.Linear)] == [12, 10, 2]
    if latent_paths:
        assert model.decoder.base.net[0].in_features == 16 and model.encoder.from_z.in_features == 8
    x = torch.tensor([[[[1.0, 0.0, 1.0, 1.0]]]])
    g1, g2 = torch.linspace(-10, 10, 801), torch.linspace(-8, 8, 641)
    z1, z2 = torch.meshgrid(g1, g2, indexing="ij")                                # (n1, n2)
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], -1)                         # [z1, z2]
    with torch.no_grad():
        log_px = model.decode(z).log_prob(x.expand(z.shape[0], 1, 1, 4))           # decoder reads both
        p1 = model.prior._normal(model.prior.down(z[:, 1:]))
        log_p1 = p1.log_prob(z[:, :1]).sum(-1)
        if top_prior == "normal":
            log_p2 = Normal(0.0, 1.0).log_prob(z[:, 1])
        else:
            mu2, logvar2 = model.encoder.base(torch.sigmoid(model.prior.top_prior.pseudo_logits))   # (3, 1)
            comps = Normal(mu2[:, 0], torch.exp(0.5 * logvar2[:, 0])).log_prob(z[:, 1:])           # (n, 3)
            log_p2 = torch.logsumexp(comps, 1) - math.log(3)
    cell = (g1[1] - g1[0]) * (g2[1] - g2[0])
    exact = (torch.logsumexp(log_px + log_p1 + log_p2, 0) + torch.log(cell)).item()
    torch.manual_seed(1)
    r = evaluate(model, x, k=50000, quiet=True)
    assert abs(r["nll_nats"] + exact) < 0.02
    assert -r["elbo_nats"] > r["nll_nats"]


def test_posterior_is_q_z2_given_x_times_q_z1_given_x_and_z2():
    torch.manual_seed(0)
    model = small(latent=3, top=2, hidden=(16, 8))
    enc = model.encoder
    assert isinstance(enc, TopDownEncoder) and model.latent == 5 and model.prior.dim == 5
    x = torch.rand(4, 1, 1, 4).round()
    q = model.encode(x)
    assert isinstance(q, TopDownPosterior)
    z = q.rsample((6,))                                                          # (6, 4, 5) = [z1, z2]
    assert z.shape == (6, 4, 5)
    # written out: q(z2 | x) from the base encoder, q(z1 | x, z2) from [h(x), z2]
    h = enc.base.hidden(x)
    mu2, logvar2 = enc.base.head(h).chunk(2, -1)
    mu1, logvar1 = enc.out(enc.from_x(h) + enc.from_z(z[..., 3:])).chunk(2, -1)
    expected = torch.cat([Normal(mu1, torch.exp(0.5 * logvar1)).log_prob(z[..., :3]),
                          Normal(mu2, torch.exp(0.5 * logvar2)).log_prob(z[..., 3:])], -1)
    torch.testing.assert_close(q.log_prob(z), expected)                          # the sample just drawn
    torch.testing.assert_close(q.log_prob(z.clone()), expected)                  # any other tensor
    other = torch.randn(6, 4, 5)
    mu1o, logvar1o = enc.out(enc.from_x(h) + enc.from_z(other[..., 3:])).chunk(2, -1)
    torch.testing.assert_close(q.log_prob(other)[..., :3], Normal(mu1o, torch.exp(0.5 * logvar1o)).log_prob(other[..., :3]))
    one = q.rsample().unsqueeze(0)                                               # the k = 1 path of VAE.terms
    torch.testing.assert_close(q.log_prob(one), q.log_prob(one.clone()))
    # the point decoded for reconstructions: z2 at its mean, z1 at the mean given it
    torch.testing.assert_close(q.loc, torch.cat([enc.out(enc.from_x(h) + enc.from_z(mu2)).chunk(2, -1)[0], mu2], -1))
    # samples of z1 follow their z2
    m1, _ = enc.out(enc.from_x(h) + enc.from_z(z[..., 3:])).chunk(2, -1)
    assert ((z[..., :3] - m1).abs() < 6 * torch.exp(0.5 * logvar1)).all()


def test_prior_density_and_samples_over_both_layers():
    torch.manual_seed(0)
    prior = HierarchicalPrior(3, top=2, hidden=8, inference="top-down")
    assert prior.dim == 5 and not hasattr(prior, "up")
    z = torch.randn(7, 5)
    p1 = prior._normal(prior.down(z[:, 3:]))
    expected = p1.log_prob(z[:, :3]).sum(-1) + Normal(0.0, 1.0).log_prob(z[:, 3:]).sum(-1)
    torch.testing.assert_close(prior.log_prob(z), expected)
    torch.testing.assert_close(prior.log_prob(z.view(1, 7, 5)), expected.view(1, 7))
    torch.manual_seed(1)
    s = prior.sample(4000)
    assert s.shape == (4000, 5)
    assert abs(s[:, 3:].mean()) < 0.05 and abs(s[:, 3:].std() - 1) < 0.05      # z2 ~ N(0, I)
    with pytest.raises(ValueError, match="inference"):
        HierarchicalPrior(3, inference="sideways")


def test_iwae_gradients_reach_every_part():
    torch.manual_seed(0)
    model = small("vamp", latent=2, top=2, hidden=(8,))
    loss, _ = Objective(kind="iwae", k=4)(model, torch.rand(5, 1, 1, 4).round())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_top_down_cli_train_sample_evaluate(tmp_path, cli):
    rc, _, err = cli("train", "--inference", "top-down", "--epochs", "1", "--quiet", "--out", tmp_path / "x")
    assert rc == 2 and "--prior hierarchical" in err and "Traceback" not in err
    rc, _, err = cli("train", "--prior", "hierarchical", "--inference", "top-down", "--top-prior", "vamp",
                     "--prior-components", "6", "--top-latent", "3", "--latent", "4", "--hidden", "32",
                     "--objective", "iwae", "--k", "3", "--epochs", "3", "--quiet", "--out", tmp_path / "td")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "td")
    assert run.config.model.inference == "top-down" and run.model.latent == 7
    assert isinstance(run.model.prior.top_prior, VampPrior)
    assert run.model.prior.top_prior.pseudo_logits.shape == (6, 1, 8, 8)
    assert not any("_encoder" in k or "_head" in k for k in run.model.state_dict())
    rows = run.metrics
    assert rows[-1]["valid_elbo"] > rows[0]["valid_elbo"]                          # it learns
    assert run.model.sample(5).shape == (5, 1, 8, 8)
    for verb in (("sample", "-n", "8", "--out", tmp_path / "s.png"), ("reconstruct", "-n", "4"),
                 ("interpolate", "--between", "0", "4"), ("report",)):
        rc, _, err = cli(verb[0], tmp_path / "td", *verb[1:])
        assert rc == 0, (verb, err)
    from vaekit.serve import create_app

    client = create_app(run).test_client()   # the explorer: one slider per dimension of [z1, z2]
    assert client.get("/api/info").get_json()["latent"] == 7
    assert client.post("/api/decode", json={"z": [0.0] * 7}).status_code == 200
    rc, out, _ = cli("info", tmp_path / "td")
    assert rc == 0 and "top-down inference, z2 3, VampPrior over z2" in out
    rc, out, _ = cli("evaluate", tmp_path / "td", "--k", "20", "--quiet")
    assert rc == 0 and "NLL" in out and "z1: " in out and " of 4 active" in out and " of 3 active" in out
    rc, out, _ = cli("info", tmp_path / "td")
    assert rc == 0 and "active units (z1 " in out
    rc, _, _ = cli("report", tmp_path / "td")
    assert rc == 0 and "stochastic layers" in (tmp_path / "td" / "report.html").read_text()
    ev = run.evaluate(k=20, quiet=True)
    assert ev["latent"] == 7 and ev["nll_nats"] <= -ev["elbo_nats"] + 1e-3


def test_top_down_with_conv_nets_and_labels(tmp_path, cli):
    rc, _, err = cli("train", "--prior", "hierarchical", "--inference", "top-down", "--top-latent", "2",
                     "--net", "conv", "--channels", "8,16", "--conditional", "--epochs", "1", "--quiet",
                     "--out", tmp_path / "c")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "c")
    assert run.model.sample(4, y=3).shape == (4, 1, 8, 8)
    rc, out, err = cli("evaluate", tmp_path / "c", "--k", "5", "--quiet")
    assert rc == 0 and "NLL" in out, err


def test_top_down_text_vae(tmp_path, cli):
    from test_text import make_names

    src = make_names(tmp_path / "names.txt", 120)
    rc, _, err = cli("train", "--data", src, "--prior", "hierarchical", "--inference", "top-down", "--latent", "3",
                     "--top-latent", "2", "--embedding", "8", "--rnn-hidden", "16", "--epochs", "1", "--quiet",
                     "--out", tmp_path / "t")
    assert rc == 0, err
    rc, out, err = cli("sample", tmp_path / "t", "-n", "3")
    assert rc == 0 and len(out.strip().splitlines()) == 3, err


@pytest.mark.parametrize("inference", ["top-down", "bottom-up"])
def test_per_layer_kl_and_active_units(inference):
    """Each layer's KL share sums to log q(z | x) - log p(z), and evaluate reports every layer."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent=3, hidden=[16], activation="tanh", prior="hierarchical",
                                    inference=inference, top_latent=2, top_prior="vamp", prior_components=4), INFO)
    x = torch.rand(6, 1, 1, 4).round()
    with torch.no_grad():
        q = model.encode(x)
        z = q.rsample((5,))
        torch.manual_seed(1)   # bottom-up, both draw z2 ~ q(z2 | z1): the same draw
        total = q.log_prob(z).sum(-1) - model.prior.log_prob(z)
        torch.manual_seed(1)
        parts = model.prior.layer_kl(q, z)
    assert set(parts) == {"z1", "z2"} and parts["z1"].shape == (5, 6)
    torch.testing.assert_close(parts["z1"] + parts["z2"], total)
    means = model.prior.layer_means(q.loc)
    assert means["z1"].shape == (6, 3) and means["z2"].shape == (6, 2)
    if inference == "top-down":
        torch.testing.assert_close(torch.cat([means["z1"], means["z2"]], -1), q.loc)
    r = evaluate(model, x, k=64, quiet=True)
    assert [(name, v["size"]) for name, v in r["layers"].items()] == [("z1", 3), ("z2", 2)]
    assert abs(r["layers"]["z1"]["kl_nats"] + r["layers"]["z2"]["kl_nats"] - r["kl_nats"]) < 0.5
    assert all(0 <= v["active_units"] <= v["size"] for v in r["layers"].values())
    if inference == "top-down":
        assert sum(v["active_units"] for v in r["layers"].values()) == r["active_units"]
    one_layer = build_model(ModelConfig(latent=3, hidden=[16]), INFO)
    assert evaluate(one_layer, x, k=8, quiet=True)["layers"] is None


def test_prior_networks_keep_their_saved_names_and_can_be_deeper(tmp_path, cli):
    """By default p(z1 | z2) is one tanh layer of the last hidden size, its weights named as in
    runs saved before --prior-hidden existed; --prior-hidden/--prior-activation reshape it."""
    for inference, names in (("top-down", {"down"}), ("bottom-up", {"down", "up"})):
        model = build_model(ModelConfig(latent=3, hidden=[16, 12], prior="hierarchical", inference=inference), INFO)
        keys = {k for k in model.prior.state_dict() if k.split(".")[0] in names}
        assert keys == {f"{n}.{i}.{w}" for n in names for i in (0, 2) for w in ("weight", "bias")}
        assert isinstance(model.prior.down[1], torch.nn.Tanh) and model.prior.down[0].out_features == 12
    rc, _, err = cli("train", "--prior-hidden", "16,16", "--epochs", "1", "--quiet", "--out", tmp_path / "x")
    assert rc == 2 and "--prior hierarchical" in err and "Traceback" not in err
    rc, _, err = cli("train", "--prior", "hierarchical", "--prior-hidden", "0", "--epochs", "1", "--out", tmp_path / "x")
    assert rc == 2 and "Traceback" not in err
    rc, _, err = cli("train", "--prior", "hierarchical", "--inference", "top-down", "--top-latent", "3",
                     "--latent", "4", "--hidden", "32", "--prior-hidden", "24,20", "--prior-activation", "elu",
                     "--epochs", "2", "--quiet", "--out", tmp_path / "d")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "d")
    down = run.model.prior.down
    assert [m.out_features for m in down if isinstance(m, torch.nn.Linear)] == [24, 20, 8]
    assert isinstance(down[1], torch.nn.ELU) and run.metrics[-1]["valid_elbo"] > run.metrics[0]["valid_elbo"]
    rc, out, _ = cli("info", tmp_path / "d")
    assert rc == 0 and "p(z1|z2) hidden [24, 20] elu" in out
    rc, out, _ = cli("evaluate", tmp_path / "d", "--k", "10", "--quiet")
    assert rc == 0 and "NLL" in out


def test_latent_paths_keep_z1_and_z2_apart_until_a_joint_layer(tmp_path, cli):
    """--latent-paths: the decoder reads [act(A z1), act(B z2)] and q(z1 | x, z2) reads act(C z2);
    without it the saved names are those of earlier runs; it needs the top-down model."""
    plain = small(latent=3, top=2, hidden=(16,))
    assert not any("path" in k for k in plain.state_dict())
    model = small(latent=3, top=2, hidden=(16,), latent_paths=True)
    names = {k for k in model.state_dict() if "path" in k}
    assert names == {f"{p}.0.{w}" for p in ("decoder.paths.z1", "decoder.paths.z2", "encoder.top_path")
                     for w in ("weight", "bias")}
    dec = model.decoder
    assert (dec.paths["z1"][0].in_features, dec.paths["z2"][0].in_features) == (3, 2)
    # z2 reaches the decoder only through its path: changing z2 changes just that path's output
    z = torch.randn(5, 5)
    z_other = z.clone()
    z_other[:, 3:] += 1.0
    assert torch.equal(dec.paths["z1"](z[:, :3]), dec.paths["z1"](z_other[:, :3]))
    assert not torch.allclose(model.decode(z).mean, model.decode(z_other).mean)
    x = torch.bernoulli(torch.full((6, 1, 1, 4), 0.5))
    loss, _ = Objective(kind="iwae", k=3)(model, x)
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "path" in n)

    rc, _, err = cli("train", "--latent-paths", "--prior", "hierarchical", "--epochs", "1", "--out", tmp_path / "x")
    assert rc == 2 and "--inference top-down" in err and "Traceback" not in err
    text = tmp_path / "lines.txt"
    text.write_text("the cat sat\non the mat\n" * 20)
    rc, _, err = cli("train", "--data", text, "--prior", "hierarchical", "--inference", "top-down", "--latent-paths",
                     "--epochs", "1", "--out", tmp_path / "x")
    assert rc == 2 and "mlp or conv network, not rnn" in err and "Traceback" not in err
    rc, _, err = cli("train", "--prior", "hierarchical", "--inference", "top-down", "--top-latent", "3",
                     "--latent", "4", "--hidden", "32", "--top-prior", "vamp", "--prior-components", "20",
                     "--latent-paths", "--epochs", "2", "--quiet", "--out", tmp_path / "d")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "d")
    assert run.config.model.latent_paths and isinstance(run.model.decoder, vaekit.model.nets.PathsDecoder)
    rc, out, _ = cli("info", tmp_path / "d")
    assert rc == 0 and "one path of 32 units per layer" in out
    rc, out, _ = cli("evaluate", tmp_path / "d", "--k", "10", "--quiet")
    assert rc == 0 and "NLL" in out
    rc, out, _ = cli("sample", tmp_path / "d", "-n", "4", "--out", tmp_path / "s.png")
    assert rc == 0 and (tmp_path / "s.png").exists()


@pytest.mark.parametrize("inference", ["top-down", "bottom-up"])
def test_three_layer_nll_matches_exact_likelihood(inference):
    """Three stochastic layers (--top-latent 1,1), a VampPrior over z3: p(x) = the integral of
    p(x | z) p(z1 | z2) p(z2 | z3) p(z3) over (z1, z2, z3) by 3-D quadrature, against evaluate's
    k-sample estimate. The decoder reads [z1, z2, z3] top-down, z1 bottom-up; p(z3) is the mixture
    of q(z3 | u_k), which bottom-up is q(z3 | z2 = mean of q(z2 | z1 = mu1(u_k)))."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent=1, hidden=[8], activation="tanh", prior="hierarchical",
                                    inference=inference, top_latent=[1, 1], top_prior="vamp",
                                    prior_components=3), INFO)
    prior, middle = model.prior, model.prior.top_prior
    assert [name for name, _ in prior.layers] == ["z1", "z2", "z3"]
    x = torch.tensor([[[[1.0, 0.0, 1.0, 1.0]]]])
    g = torch.linspace(-8, 8, 161)
    z = torch.stack([v.reshape(-1) for v in torch.meshgrid(g, g, g, indexing="ij")], -1)    # [z1, z2, z3]
    with torch.no_grad():
        decoded = model.decode(z if inference == "top-down" else z[:, :1])
        log_px = decoded.log_prob(x.expand(z.shape[0], 1, 1, 4))
        log_p1 = prior._normal(prior.down(z[:, 1:2])).log_prob(z[:, :1]).sum(-1)
        log_p2 = middle._normal(middle.down(z[:, 2:3])).log_prob(z[:, 1:2]).sum(-1)
        u = torch.sigmoid(middle.top_prior.pseudo_logits)
        if inference == "top-down":
            mu3, logvar3 = model.encoder.base.base(u)
        else:
            mu2 = prior.up(model.encoder(u)[0]).chunk(2, -1)[0]
            mu3, logvar3 = middle.up(mu2).chunk(2, -1)
        comps = Normal(mu3[:, 0], torch.exp(0.5 * logvar3[:, 0])).log_prob(z[:, 2:3])           # (n, 3)
        log_p3 = torch.logsumexp(comps, 1) - math.log(3)
    exact = (torch.logsumexp(log_px + log_p1 + log_p2 + log_p3, 0) + 3 * torch.log(g[1] - g[0])).item()
    torch.manual_seed(1)
    r = evaluate(model, x, k=200000, quiet=True)
    # sd of the estimate: 0.003 top-down, 0.014 bottom-up (z2 and z3 drawn once per sample of z1)
    assert abs(r["nll_nats"] + exact) < 0.045
    assert -r["elbo_nats"] > r["nll_nats"]
    assert list(r["layers"]) == ["z1", "z2", "z3"]
    with torch.no_grad():  # the layers' shares add up to log q(z | x) - log p(z), for the same draws
        q = model.encode(x.expand(6, 1, 1, 4))
        zs = q.rsample((5,))
        torch.manual_seed(2)
        shares = prior.layer_kl(q, zs)
        torch.manual_seed(2)
        total = q.log_prob(zs).sum(-1) - prior.log_prob(zs)
    torch.testing.assert_close(sum(shares.values()), total)
    assert model.sample(5).shape == (5, 1, 1, 4)


def test_three_layers_from_the_command_line(tmp_path, cli):
    """--top-latent 3,2 gives z2 and z3 above z1, in both directions of inference; the layers
    are named in info and evaluate, the samples decode, and bad sizes exit 2."""
    for inference in ("top-down", "bottom-up"):
        out = tmp_path / inference
        rc, _, err = cli("train", "--prior", "hierarchical", "--inference", inference, "--top-latent", "3,2",
                         "--top-prior", "vamp", "--prior-components", "10", "--latent", "4", "--hidden", "32",
                         "--epochs", "2", "--quiet", "--out", out)
        assert rc == 0, err
        run = vaekit.Run.load(out)
        assert run.config.model.top_latent == [3, 2] and run.model.latent == (9 if inference == "top-down" else 4)
        rc, text, _ = cli("info", out)
        assert rc == 0 and "z2 3, z3 2, VampPrior over z3" in text
        rc, text, _ = cli("evaluate", out, "--k", "10", "--quiet")
        assert rc == 0 and "z3: " in text and "of 2 active" in text
        assert run.model.sample(4).shape[0] == 4
    rc, _, err = cli("train", "--prior", "hierarchical", "--top-latent", "3,0", "--epochs", "1", "--out", tmp_path / "x")
    assert rc == 2 and "Traceback" not in err


def test_logvar_range_bounds_every_gaussian_the_networks_give(tmp_path, cli):
    """--logvar-range: q(z2 | x), q(z1 | x, z2), p(z1 | z2) and the VampPrior's components all have
    log-variances in [lo, hi]; the weights are named as without it, so either kind of run loads."""
    torch.manual_seed(0)
    plain = small("vamp", latent=3, top=2, hidden=(16,))
    model = small("vamp", latent=3, top=2, hidden=(16,), logvar_range=[-1.0, 0.5])
    assert plain.state_dict().keys() == model.state_dict().keys()
    model.load_state_dict(plain.state_dict())
    heads = [m for m in model.modules() if isinstance(m, vaekit.model.nets.GaussianHead)]
    assert len(heads) == 3 and all(h.logvar_range == (-1.0, 0.5) for h in heads)   # q(z2|x), q(z1|x,z2), p(z1|z2)
    with torch.no_grad():   # large weights: unbounded, the log-variances reach far outside the range
        for m in (plain, model):
            for h in m.modules():
                if isinstance(h, vaekit.model.nets.GaussianHead):
                    h.weight.mul_(50.0)
        x = torch.bernoulli(torch.full((64, 1, 1, 4), 0.5))
        lo, hi = math.exp(-0.5), math.exp(0.25)            # the standard deviations the range allows
        for m, inside in ((model, True), (plain, False)):
            q = m.encode(x)
            z = q.rsample()
            scales = [q.top.scale, q._bottom(z[:, 3:]).scale, m.prior._normal(m.prior.down(z[:, 3:])).scale,
                      torch.exp(0.5 * m.prior.top_prior.components()[1])]
            within = all(bool(((s >= lo - 1e-6) & (s <= hi + 1e-6)).all()) for s in scales)
            assert within == inside
        # inside the range the bound changes nothing
        a = torch.randn(5, 16)
        heads[0].logvar_range = (-1e9, 1e9)
        torch.testing.assert_close(heads[0](a), torch.nn.Linear.forward(heads[0], a))

    rc, _, err = cli("train", "--prior", "hierarchical", "--inference", "top-down", "--top-latent", "3",
                     "--latent", "4", "--hidden", "32", "--top-prior", "vamp", "--prior-components", "20",
                     "--logvar-range=-6,2", "--weight-decay", "1e-4", "--epochs", "2", "--warmup", "2",
                     "--quiet", "--out", tmp_path / "d")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "d")
    assert run.config.model.logvar_range == [-6.0, 2.0]
    assert all(m.logvar_range == (-6.0, 2.0) for m in run.model.modules() if isinstance(m, vaekit.model.nets.GaussianHead))
    rc, out, _ = cli("info", tmp_path / "d")
    assert rc == 0 and "log-variances in [-6, 2]" in out and "weight decay 0.0001" in out
    assert "warm-up 2 epochs" in out  # as given, not 2.0
    rc, out, _ = cli("evaluate", tmp_path / "d", "--k", "10", "--quiet")
    assert rc == 0 and "NLL" in out


def test_posterior_map_rebuilds_every_layer():
    """TopDownPosterior.map: each layer's Normal goes through fn with its layer number (1 = z1);
    the identity gives the same posterior, and a change to one layer changes only that layer."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent=2, hidden=[8], activation="tanh", prior="hierarchical",
                                    inference="top-down", top_latent=[3, 2]), INFO)
    x = torch.bernoulli(torch.full((5, 1, 1, 4), 0.5))
    q = model.encode(x)
    seen = []
    same = q.map(lambda n, layer: seen.append(layer) or n)
    z = q.sample((7,))
    torch.testing.assert_close(same.log_prob(z), q.log_prob(z))
    assert sorted(set(seen)) == [1, 2, 3]
    wider = q.map(lambda n, layer: Normal(n.loc, n.scale * (2.0 if layer == 2 else 1.0)))
    changed = (wider.log_prob(z) - q.log_prob(z)).abs().amax((0, 1)) > 1e-6   # per dimension of [z1, z2, z3]
    assert changed.tolist() == [False, False, True, True, True, False, False]
