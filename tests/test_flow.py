"""The inverse autoregressive flow posterior (--flow): its density, its identity start, and its use
from the CLI, trained from scratch or added to a trained model's encoder (--refine-encoder)."""

import pytest
import torch

from vaekit.checkpoint import load_weights
from vaekit.config import ModelConfig
from vaekit.model import build_model
from vaekit.model.nets.flow import InverseAutoregressiveFlow
from vaekit.run import Run

from test_refine import TOP_DOWN, _same_model

INFO = {"shape": [1, 8, 8], "value": "continuous", "modality": "image", "classes": 0}


def _random_flow(dim=5, context=7, steps=2, hidden=12, seed=0):
    torch.manual_seed(seed)
    flow = InverseAutoregressiveFlow(dim, context, steps, hidden)
    with torch.no_grad():
        for p in flow.parameters():  # away from the identity it starts at
            p.normal_(0, 0.5)
    return flow


def test_flow_log_scales_are_the_log_determinant_of_its_jacobian():
    flow = _random_flow()
    h = torch.randn(3, 7)
    ctx = flow.contexts(h)
    z0 = torch.randn(3, 5)
    z, log_scale = flow(z0, ctx)
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None], [c[b:b + 1] for c in ctx])[0][0], z0[b])
        torch.testing.assert_close(torch.linalg.slogdet(jac)[1], log_scale[b].sum(), rtol=1e-4, atol=1e-4)
    # each step is autoregressive: its Jacobian is triangular, lower for the ascending order (the first step)
    step = lambda v: flow.steps[0](v, ctx[0][:1])[0]
    jac = torch.autograd.functional.jacobian(step, z0[:1])[0, :, 0, :]
    assert torch.equal(jac.triu(1), torch.zeros_like(jac)) and jac.tril(-1).abs().sum() > 0
    back, log_scale_back = flow.inverse(z, ctx)
    torch.testing.assert_close(back, z0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(log_scale_back, log_scale, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["normal", "top-down"])
def test_flow_posterior_density_of_its_samples_and_of_any_z_agree(kind):
    extra = dict(prior="hierarchical", inference="top-down", top_latent=3, top_prior="vamp",
                 prior_components=4) if kind == "top-down" else {}
    cfg = ModelConfig(net="mlp", latent=4, hidden=[16], likelihood="gaussian", flow=2, **extra)
    model = build_model(cfg, INFO)
    with torch.no_grad():
        for p in model.flow.parameters():
            p.normal_(0, 0.3)
    x = torch.rand(6, 1, 8, 8)
    q = model.encode(x)
    z = q.rsample((5,))
    cached = q.log_prob(z)                      # the draw just made: looked up
    inverted = q.log_prob(z.clone())            # another tensor with the same values: inverted
    torch.testing.assert_close(cached, inverted, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(q.log_prob(z[:2]), cached[:2])   # a leading part, as the evaluation passes it
    # the density is that of the base posterior at z_0, changed by the flow's volume
    z0, log_scale = q._origin(z)
    torch.testing.assert_close(cached, q.base.log_prob(z0) - log_scale)
    assert q.loc.shape == (6, model.latent)


def test_a_new_flow_is_the_identity(tmp_path):
    """Added to a model's encoder, a flow starts from that encoder's proposal: the same
    importance weights, draw for draw."""
    cfg = dict(net="mlp", latent=4, hidden=[16], likelihood="gaussian", prior="vamp", prior_components=4)
    plain = build_model(ModelConfig(**cfg), INFO)
    flowed = build_model(ModelConfig(**cfg, flow=2, refine_encoder=True), INFO)
    flowed.load_state_dict(flowed.complete_weights(plain.state_dict()))
    x = torch.rand(6, 1, 8, 8)
    torch.manual_seed(3)
    a = plain.log_weights(x, 7)
    torch.manual_seed(3)
    b = flowed.log_weights(x, 7)
    torch.testing.assert_close(a, b)


def test_training_and_evaluating_with_a_flow(cli, tmp_path):
    run = tmp_path / "flow"
    rc, _, err = cli("train", "--flow", "2", "--flow-hidden", "24", "--latent", "4", "--hidden", "32",
                     "--epochs", "2", "--batch-size", "64", "--objective", "iwae", "--k", "3", "--quiet", "--out", run)
    assert rc == 0, err
    weights = load_weights(run / "model.safetensors")
    assert any(k.startswith("flow.steps.1.") for k in weights)
    rc, info, _ = cli("info", run)
    assert rc == 0 and "posterior with 2 IAF steps of 24 units" in info
    rc, out, err = cli("evaluate", run, "--k", "20", "--quiet")
    assert rc == 0, err
    ev = Run.load(run).evaluate(k=20, quiet=True)
    assert ev["kl_per_dim"] is None and ev["elbo_nats"] < -ev["nll_nats"] + 1e-3 < float("inf")


def test_refining_an_encoder_with_a_flow_keeps_the_model(cli, tmp_path):
    base, ref = tmp_path / "base", tmp_path / "ref"
    rc, _, err = cli("train", *TOP_DOWN, "--latent", "4", "--hidden", "32", "--epochs", "2", "--batch-size", "64",
                     "--quiet", "--out", base)
    assert rc == 0, err
    rc, _, err = cli("train", "--init", base, "--refine-encoder", "--flow", "2", "--objective", "iwae", "--k", "4",
                     "--epochs", "2", "--lr", "3e-3", "--quiet", "--out", ref)
    assert rc == 0, err
    before, after = load_weights(base / "model.safetensors"), load_weights(ref / "model.safetensors")
    assert {k for k in after if k.startswith("flow.")} and all(torch.equal(after[k], v) for k, v in before.items()
                                                                if not k.startswith("encoder."))
    assert any(after[k].abs().sum() > 0 for k in after if k.startswith("flow.") and k.endswith("out.weight"))
    _same_model(Run.load(base), Run.load(ref))
    rc, _, err = cli("evaluate", ref, "--k", "20", "--quiet")
    assert rc == 0, err


def test_flow_and_estimator_from_the_python_api(tmp_path):
    """cfg.model.flow and cfg.train.estimator are what --flow and --estimator set: a flow run's
    encode returns the flow posterior, and DReG with a flow is refused as on the command line."""
    import vaekit
    from vaekit.model.nets.flow import FlowPosterior

    cfg = vaekit.Config()
    cfg.model.hidden, cfg.model.latent, cfg.model.flow, cfg.model.flow_hidden = [32], 4, 2, 16
    cfg.train.epochs, cfg.train.batch_size = 1, 64
    run = vaekit.train(cfg, out=tmp_path / "flow", quiet=True, pictures=False)
    q = Run.load(tmp_path / "flow").model.encode(run.data.test[:5])
    assert isinstance(q, FlowPosterior)
    z = q.rsample(torch.Size([3]))
    assert z.shape == (3, 5, 4) and q.log_prob(z).shape == (3, 5, 4)
    cfg.train.objective, cfg.train.k, cfg.train.estimator = "iwae", 3, "dreg"
    with pytest.raises(vaekit.VaekitError, match="--flow or --estimator dreg"):
        vaekit.train(cfg, out=tmp_path / "dreg", quiet=True, pictures=False)
    assert not (tmp_path / "dreg" / "model.safetensors").exists()
