"""The VAE math: likelihoods, KL, bounds and the importance-sampled NLL."""

import math

import pytest
import torch
import torch.nn.functional as F

from vaekit.config import ModelConfig
from vaekit.eval import evaluate
from vaekit.model.likelihoods import BernoulliLikelihood, DiscretizedLogistic, GaussianLikelihood
from vaekit.model import build_model
from vaekit.model.objectives import Objective, logsumexp
from vaekit.model.priors import StandardNormal


def test_bernoulli_log_prob_is_negative_bce():
    torch.manual_seed(0)
    logits = torch.randn(5, 1, 1, 3, 3)
    x = torch.bernoulli(torch.full((5, 1, 3, 3), 0.5))
    lp = BernoulliLikelihood((1, 3, 3)).dist(logits).log_prob(x)
    expected = -F.binary_cross_entropy_with_logits(logits[:, 0], x, reduction="none").sum((1, 2, 3))
    assert lp.shape == (5,)
    torch.testing.assert_close(lp, expected)


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discretized_logistic_sums_to_one(levels):
    loc = torch.tensor([0.0, 0.3, 0.5, 0.97, 1.0])
    for log_scale in (-6.0, -2.0, 0.5):
        d = DiscretizedLogistic(loc[:, None], torch.full((5, 1), log_scale), levels)
        values = torch.linspace(0, 1, levels)[None, :]
        total = d.log_prob(values).exp().sum(-1)
        torch.testing.assert_close(total, torch.ones(5), atol=2e-3, rtol=0)


def test_discretized_logistic_samples_lie_on_the_grid():
    d = DiscretizedLogistic(torch.full((1000,), 0.4), torch.full((1000,), -2.0), 17)
    s = d.sample()
    torch.testing.assert_close(s * 16, (s * 16).round())
    assert 0.3 < s.mean() < 0.5


def test_gaussian_likelihood_fixed_and_learned_std():
    fixed = GaussianLikelihood((1, 2, 2), std=0.5)
    learned = GaussianLikelihood((1, 2, 2), std=None)
    assert not any(p.requires_grad for p in fixed.parameters())
    assert sum(p.numel() for p in learned.parameters()) == 4
    params = torch.zeros(3, 1, 1, 2, 2)  # mean sigmoid(0) = 0.5
    x = torch.full((3, 1, 2, 2), 0.5)
    expected = 4 * (-math.log(0.5) - 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(fixed.dist(params).log_prob(x), torch.full((3,), expected))


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(0)
    prior = StandardNormal(3)
    q = torch.distributions.Normal(torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[0.3, 1.5, 0.8]]))
    z = q.sample((200000,))
    mc = (q.log_prob(z).sum(-1) - prior.log_prob(z)).mean()
    assert abs(prior.analytic_kl(q).sum().item() - mc.item()) < 0.02


def tiny_model(latent=1, d=4, seed=0):
    torch.manual_seed(seed)
    info = {"shape": [1, 1, d], "value": "binary", "levels": None}
    return build_model(ModelConfig(latent=latent, hidden=[8], activation="tanh"), info)


def exact_log_px(model, x):
    """log p(x) = log integral N(z; 0, 1) p(x | z) dz by quadrature over a 1-D latent."""
    z = torch.linspace(-12, 12, 24001)[:, None]
    dz = z[1, 0] - z[0, 0]
    with torch.no_grad():
        log_px_z = model.decode(z).log_prob(x.expand(z.shape[0], *x.shape[1:]))
        return torch.logsumexp(log_px_z + model.prior.log_prob(z), 0) + torch.log(dz)


def test_importance_sampled_nll_matches_exact_likelihood():
    model = tiny_model()
    x = torch.tensor([[[[1.0, 0.0, 1.0, 1.0]]], [[[0.0, 0.0, 0.0, 1.0]]]])
    exact = torch.stack([exact_log_px(model, x[i:i + 1]) for i in range(2)])
    for rows in (3000, None):  # 7 passes of about 2,860 samples per example, or one pass
        torch.manual_seed(1)
        r = evaluate(model, x, k=20000, quiet=True, batch_rows=rows)
        assert abs(r["nll_nats"] - (-exact.mean().item())) < 0.025  # the estimate's sd here: 0.005
    # the ELBO is a lower bound on log p(x): -ELBO >= NLL
    assert -r["elbo_nats"] >= -exact.mean().item() - 0.01
    assert r["bits_per_dim"] == pytest.approx(r["nll_nats"] / (4 * math.log(2)))


def test_iwae_bound_tightens_with_k():
    model = tiny_model(latent=2, d=6)
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((64, 1, 1, 6), 0.5))
    values = []
    for k in (1, 10, 100):
        torch.manual_seed(0)
        loss, _ = Objective(kind="iwae", k=k)(model, x.repeat(20, 1, 1, 1))
        values.append(-loss.item())
    assert values[0] < values[1] < values[2]


def test_elbo_objective_equals_rec_plus_kl_and_gradients_flow():
    model = tiny_model(latent=2, d=6)
    x = torch.bernoulli(torch.full((16, 1, 1, 6), 0.5))
    loss, stats = Objective()(model, x)
    rec, kl, loss_sum = (stats / 16).tolist()
    assert loss.item() == pytest.approx(rec + kl, rel=1e-5)
    assert loss_sum == pytest.approx(loss.item(), rel=1e-5)
    assert rec > 0 and kl > 0
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_warmup_and_beta_scale_the_kl():
    obj = Objective(beta=2.0, warmup_steps=10)
    assert obj.beta_at(0) == pytest.approx(0.2)
    assert obj.beta_at(4) == pytest.approx(1.0)
    assert obj.beta_at(100) == pytest.approx(2.0)
    model = tiny_model(latent=2, d=6)
    x = torch.bernoulli(torch.full((16, 1, 1, 6), 0.5))
    torch.manual_seed(0)
    l0, s = Objective(beta=0.0)(model, x)
    torch.manual_seed(0)
    l1, _ = Objective(beta=1.0)(model, x)
    assert (l1 - l0).item() == pytest.approx(s[1].item() / 16, rel=1e-4)


@pytest.mark.parametrize("free_bits", [0.0, 0.5])
def test_kl_weight_given_as_a_tensor_equals_the_scheduled_float(free_bits):
    """A step captured in a CUDA graph reads the KL weight from a device tensor."""
    obj = Objective(warmup_steps=10, free_bits=free_bits)
    model = tiny_model(latent=2, d=6)
    x = torch.bernoulli(torch.full((16, 1, 1, 6), 0.5))
    for step in (3, 50):  # in the warm-up, and after it (beta exactly 1)
        torch.manual_seed(0)
        as_float, stats_f = obj(model, x, step)
        torch.manual_seed(0)
        as_tensor, stats_t = obj(model, x, 0, beta=torch.tensor(obj.beta_at(step)))
        torch.testing.assert_close(as_tensor, as_float)
        torch.testing.assert_close(stats_t, stats_f)


def test_free_bits_floor_each_dimension():
    model = tiny_model(latent=2, d=6)
    x = torch.bernoulli(torch.full((16, 1, 1, 6), 0.5))
    torch.manual_seed(0)
    loss_fb, stats = Objective(free_bits=50.0)(model, x)
    rec = stats[0].item() / 16
    # each of the 2 dimensions has KL far below 50 nats, so the KL term is exactly 2 * 50
    assert loss_fb.item() == pytest.approx(rec + 100.0, rel=1e-5)


def test_active_units_and_kl_per_dim():
    model = tiny_model(latent=3, d=6)
    # make dimension 0 unused: its mean is constant and its variance is the prior's
    with torch.no_grad():
        last = model.encoder.net[-1]
        last.weight[[0, 3]] = 0
        last.bias[[0, 3]] = 0
    x = torch.bernoulli(torch.full((200, 1, 1, 6), 0.5))
    r = evaluate(model, x, k=10, quiet=True)
    assert r["kl_per_dim"][0] == pytest.approx(0.0, abs=1e-6)
    assert r["active_units"] <= 2
    assert r["kl_nats"] == pytest.approx(sum(r["kl_per_dim"]))


def test_closed_form_kl_equals_torch_distributions():
    q = torch.distributions.Normal(torch.randn(7, 5), torch.rand(7, 5) + 0.1)
    expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(StandardNormal(5).analytic_kl(q), expected)


def test_likelihood_fast_log_prob_equals_the_distribution():
    torch.manual_seed(0)
    params = torch.randn(6, 1, 1, 4, 5)
    x = torch.bernoulli(torch.full((6, 1, 4, 5), 0.5))
    lik = BernoulliLikelihood((1, 4, 5))
    torch.testing.assert_close(lik.log_prob(params, x), lik.dist(params).log_prob(x))


def test_gated_units_are_a_times_sigmoid_b():
    """--activation gated: each hidden layer is (W x + b) * sigmoid(V x + c), in the MLP nets and
    in the top-down encoder's q(z1 | x, z2) layer."""
    torch.manual_seed(0)
    info = {"shape": [1, 1, 4], "value": "binary", "levels": None}
    model = build_model(ModelConfig(latent=2, hidden=[6, 5], activation="gated"), info)
    x = torch.rand(3, 1, 1, 4).round()
    h = x.flatten(1)
    for layer in (model.encoder.net[0], model.encoder.net[2]):
        a, b = layer(h).chunk(2, -1)
        h = a * torch.sigmoid(b)
    assert h.shape == (3, 5)
    torch.testing.assert_close(model.encoder.hidden(x), h)
    assert model.decode(torch.zeros(3, 2)).log_prob(x).shape == (3,)
    td = build_model(ModelConfig(latent=2, hidden=[6], activation="gated", prior="hierarchical",
                                 inference="top-down", top_latent=3), info)
    assert td.encoder.from_x.out_features == 12 and td.encoder.from_z.out_features == 12
    assert td.encoder(x).rsample().shape == (3, 5)


def test_logsumexp_equals_torch_with_gradients():
    """The clamped CPU logsumexp gives torch's values and gradients, also where most terms lie
    far below the largest (a trained VampPrior's components) and for rows of -inf."""
    torch.manual_seed(0)
    for scale, dtype in ((1.0, torch.float32), (60.0, torch.float32), (60.0, torch.float64), (1e4, torch.float64)):
        x = (scale * torch.randn(64, 500, dtype=dtype)).requires_grad_()
        y = x.detach().clone().requires_grad_()
        for dim in (-1, 0):
            want, got = torch.logsumexp(y, dim), logsumexp(x, dim)
            torch.testing.assert_close(got, want)
            w = torch.randn_like(want)
            (gx,), (gy,) = torch.autograd.grad(got, x, w), torch.autograd.grad(want, y, w)
            torch.testing.assert_close(gx, gy)
    x = torch.tensor([[float("-inf")] * 3, [0.0, float("-inf"), -200.0], [1.0, 2.0, 3.0]])
    torch.testing.assert_close(logsumexp(x), torch.logsumexp(x, -1))
    half = torch.randn(8, 50).bfloat16()
    assert logsumexp(half).dtype == torch.float32
    torch.testing.assert_close(logsumexp(half), torch.logsumexp(half.float(), -1))


def test_release_freed_memory_finds_glibc_trim():
    import platform
    import importlib
    ev = importlib.import_module("vaekit.eval.metrics")
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert ev._TRIM is not None
    ev.release_freed_memory()     # must not raise, with or without malloc_trim


DREG_MODELS = {
    "normal": {},
    "top-down vamp": dict(prior="hierarchical", inference="top-down", top_latent=2, top_prior="vamp",
                          prior_components=3),
}


def _encoder_grads(model, objective, x):
    params = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    loss, _ = objective(model, x)
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


@pytest.mark.parametrize("kind", list(DREG_MODELS))
def test_doubly_reparameterised_gradient_has_the_iwae_gradient_as_its_mean(kind):
    """Averaged over many draws, the encoder's DReG gradient is the gradient of the IWAE bound
    (also where q(z1 | x, z2) reads the sampled z2, and where the VampPrior reads the encoder);
    the model's gradient is the same estimator in both; and the reported loss is minus the bound."""
    torch.manual_seed(0)
    info = {"shape": [1, 4, 4], "value": "binary", "modality": "image", "classes": 0}
    model = build_model(ModelConfig(net="mlp", latent=2, hidden=[8], likelihood="bernoulli", **DREG_MODELS[kind]),
                        info)
    x = (torch.rand(3, 1, 4, 4) > 0.5).float().repeat(50000, 1, 1, 1)
    standard, dreg = Objective(kind="iwae", k=5), Objective(kind="iwae", k=5, dreg=True)
    torch.manual_seed(1)
    a = _encoder_grads(model, standard, x)
    torch.manual_seed(1)
    b = _encoder_grads(model, dreg, x)
    assert (a - b).norm() < 0.05 * a.norm()
    torch.manual_seed(2)
    loss_a, _ = standard(model, x[:6])
    decoder = [p for n, p in model.named_parameters() if n.startswith("decoder.")]
    ga = torch.autograd.grad(loss_a, decoder)
    torch.manual_seed(2)
    loss_b, _ = dreg(model, x[:6])
    gb = torch.autograd.grad(loss_b, decoder)
    torch.testing.assert_close(loss_a, loss_b)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v)


def test_doubly_reparameterised_gradient_is_less_noisy_for_many_samples():
    torch.manual_seed(0)
    info = {"shape": [1, 4, 4], "value": "binary", "modality": "image", "classes": 0}
    model = build_model(ModelConfig(net="mlp", latent=2, hidden=[8], likelihood="bernoulli"), info)
    x = (torch.rand(1, 1, 4, 4) > 0.5).float()

    def spread(objective):
        g = torch.stack([_encoder_grads(model, objective, x) for _ in range(200)])
        return (g.var(0).sum() / g.mean(0).square().sum()).item()   # noise over signal

    torch.manual_seed(1)
    noise_standard = spread(Objective(kind="iwae", k=64))
    torch.manual_seed(1)
    noise_dreg = spread(Objective(kind="iwae", k=64, dreg=True))
    assert noise_dreg < 0.5 * noise_standard


def test_estimators_benchmark_compares_both_gradients(tmp_path):
    """bench/estimators.py trains the same IWAE model with each estimator and reports both."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "estimators.py"
    p = subprocess.run([sys.executable, str(script), "--epochs", "1", "--k", "4", "--seeds", "0", "--eval-k", "8",
                        "--flags", "--latent 4 --hidden 32", "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert [x["estimator"] for x in r["runs"]] == ["standard", "dreg"]
    a, b = r["runs"]
    assert a["test_nll"] != b["test_nll"] and abs(r["nll_gain_of_dreg"] - (a["test_nll"] - b["test_nll"])) < 1e-9
    assert "dreg: test NLL" in p.stdout.splitlines()[-1]


def test_step_comparison_benchmark_trains_with_and_without_mixed_precision(tmp_path):
    """bench/cuda_graph.py --compare amp trains a job with --amp off, then on, and reports both."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", (rng.random((500, 8, 8)) < np.linspace(0.1, 0.9, 64).reshape(8, 8)).astype(np.float32))
    script = Path(__file__).resolve().parents[1] / "bench" / "cuda_graph.py"
    p = subprocess.run([sys.executable, str(script), "--data", str(tmp_path / "x.npy"), "--jobs", "elbo",
                        "--epochs", "2", "--device", "cpu", "--compare", "amp", "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    job = r["jobs"]["elbo"]
    assert r["compare"] == "amp" and abs(job["speedup"] - job["on"]["examples_per_s"] / job["off"]["examples_per_s"]) < 1e-9
    off, on = job["off"]["valid_bound_last"], job["on"]["valid_bound_last"]
    assert off != on and abs(off - on) < 1.0     # the same training, in another precision
    assert "--amp off, then on" in p.stdout
    assert " ".join(job["flags"]).endswith("--cuda-graph off --amp off|on")   # only the precision differs


MIXED_PRECISION_MODELS = {
    "normal": dict(likelihood="bernoulli"),
    "mog": dict(likelihood="gaussian", prior="mog", prior_components=4),
    "vamp": dict(likelihood="bernoulli", prior="vamp", prior_components=4),
    "top-down vamp": dict(likelihood="bernoulli", prior="hierarchical", inference="top-down", top_latent=2,
                          top_prior="vamp", prior_components=3),
    "bottom-up": dict(likelihood="logistic", prior="hierarchical", top_latent=2),
    "class": dict(likelihood="bernoulli", prior="class", conditional=True),
    "flow": dict(likelihood="gaussian", prior="vamp", prior_components=4, flow=2),
}


@pytest.mark.parametrize("kind", list(MIXED_PRECISION_MODELS))
def test_mixed_precision_keeps_the_latent_densities_in_float32(kind):
    """Under autocast (``--amp on``) the networks compute in bfloat16, but the Gaussians they give,
    their samples and every log-density of a bound come out in float32: a log-weight of -90 in
    bfloat16 would be rounded to a multiple of 0.5."""
    torch.manual_seed(0)
    info = {"shape": [1, 4, 4], "value": "binary", "levels": 256, "modality": "image",
            "classes": 3 if kind == "class" else 0}
    model = build_model(ModelConfig(net="mlp", latent=3, hidden=[16], **MIXED_PRECISION_MODELS[kind]), info)
    x = (torch.rand(5, 1, 4, 4) > 0.5).float()
    y = torch.arange(5) % 3 if kind == "class" else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.decoder(torch.zeros(2, model.latent + (3 if kind == "class" else 0))).dtype == torch.bfloat16
        t = model.terms(x, k=4, y=y)
    for name in ("log_px", "log_pz", "log_qz", "z"):
        assert t[name].dtype == torch.float32, name
    assert t["q"].loc.dtype == torch.float32


def test_mixture_component_densities_are_float32_under_autocast():
    """The two matrix products of a mixture's component densities add terms of hundreds of nats
    that cancel; under autocast they still give the float32 result (bfloat16 products miss it
    by nats)."""
    from vaekit.model.priors import component_log_probs

    torch.manual_seed(0)
    z, means = 3 * torch.randn(64, 40), 3 * torch.randn(500, 40)
    log_vars = torch.empty(500, 40).uniform_(-6, 0)
    want = component_log_probs(z, means, log_vars)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = component_log_probs(z, means, log_vars)
        rounded = torch.addmm(torch.zeros(500), z, (means * torch.exp(-log_vars)).T)
    torch.testing.assert_close(got, want)
    exact = z @ (means * torch.exp(-log_vars)).T
    assert (rounded.float() - exact).abs().max() > 1.0     # what plain autocast would do


def test_evaluate_memory_does_not_grow_with_k():
    """k = 2000 samples of 64 images would hold 400 MB of decoder outputs at once; in passes of
    512 rows the peak stays where k = 20 has it, and evaluate says what it was."""
    torch.manual_seed(0)
    info = {"shape": [1, 28, 28], "value": "binary", "levels": None}
    model = build_model(ModelConfig(latent=8, hidden=[64], activation="tanh"), info)
    x = torch.bernoulli(torch.full((64, 1, 28, 28), 0.3))
    small = evaluate(model, x, k=20, batch_rows=512, quiet=True)
    large = evaluate(model, x, k=2000, batch_rows=512, quiet=True)
    assert large["rows_per_pass"] <= 512
    if small["peak_memory_bytes"] is None:
        pytest.skip("this system does not tell a process's peak memory")
    assert large["peak_memory_bytes"] < small["peak_memory_bytes"] + 100e6
    assert "MB" in large["peak_memory"] or "GB" in large["peak_memory"]
