"""The multi-sample bounds (MIWAE, PIWAE, CIWAE) and the MMD objectives (WAE, InfoVAE)."""

import math

import pytest
import torch

import vaekit
from vaekit.config import ModelConfig
from vaekit.model import build_model
from vaekit.model.objectives import MMDObjective, Objective, log_mean_exp, mmd

from test_sequences import note_lists

INFO = {"shape": [1, 4, 4], "value": "binary", "modality": "image", "classes": 0}


def small(prior="normal"):
    torch.manual_seed(0)
    return build_model(ModelConfig(net="mlp", latent=3, hidden=[16], likelihood="bernoulli", prior=prior), INFO)


def data(n=6):
    return (torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.5).float()


def grads(model, objective, x, seed, part):
    """The loss and the gradients of the parameters whose names start (encoder) or do not start
    (the model) with 'encoder.', for the draws of ``seed``."""
    torch.manual_seed(seed)
    loss, _ = objective(model, x)
    names = [n for n, _ in model.named_parameters() if n.startswith("encoder.") == (part == "encoder")]
    params = dict(model.named_parameters())
    return loss, torch.cat([g.flatten() for g in torch.autograd.grad(loss, [params[n] for n in names])])


def log_w(model, x, k, seed):
    torch.manual_seed(seed)
    return model.log_weights(x, k)


def test_miwae_is_the_mean_of_the_groups_iwae_bounds_and_ciwae_lies_between_elbo_and_iwae():
    model, x = small(), data()
    lw = log_w(model, x, 12, seed=3)                                    # the same draws as the objectives'
    torch.manual_seed(3)
    miwae, _ = Objective(kind="miwae", k=4, groups=3)(model, x)
    torch.testing.assert_close(miwae, -log_mean_exp(lw.view(3, 4, -1), 1).mean())
    for mix in (0.0, 0.3, 1.0):
        torch.manual_seed(3)
        ciwae, _ = Objective(kind="ciwae", k=12, mix=mix)(model, x)
        expected = -(mix * lw.mean(0) + (1 - mix) * log_mean_exp(lw)).mean()
        torch.testing.assert_close(ciwae, expected)
    # one group is the IWAE bound, with the same gradients
    a = grads(model, Objective(kind="miwae", k=5, groups=1), x, 4, "model")
    b = grads(model, Objective(kind="iwae", k=5), x, 4, "model")
    torch.testing.assert_close(a, b)
    assert Objective(kind="miwae", k=4, groups=3).samples == 12 and Objective(kind="miwae", k=4, groups=3).valid_k == 4
    assert Objective(kind="piwae", k=4, groups=3).valid_k == 12 and Objective(kind="ciwae", k=4).valid_k == 4
    assert Objective(kind="elbo").valid_k == 0 and Objective(kind="piwae", k=4, groups=3).name == "IWAE-12 bound"


@pytest.mark.parametrize("dreg", [False, True])
def test_piwae_gives_the_model_the_iwae_gradient_and_the_encoder_the_miwae_gradient(dreg):
    """PIWAE (Rainforth et al. 2018): the decoder's and prior's gradient is the IWAE bound's of all
    M k samples, the encoder's the MIWAE bound's (also with the doubly reparameterised estimator),
    for the same draws, in one backward pass; its value is minus the MIWAE bound."""
    model, x = small("mog"), data()      # a prior with parameters of its own: part of the model
    piwae = Objective(kind="piwae", k=3, groups=4, dreg=dreg)
    miwae = Objective(kind="miwae", k=3, groups=4, dreg=dreg)
    loss_p, model_p = grads(model, piwae, x, 7, "model")
    _, model_i = grads(model, Objective(kind="iwae", k=12), x, 7, "model")
    torch.testing.assert_close(model_p, model_i)
    _, enc_p = grads(model, piwae, x, 7, "encoder")
    loss_m, enc_m = grads(model, miwae, x, 7, "encoder")
    torch.testing.assert_close(enc_p, enc_m)
    torch.testing.assert_close(loss_p, loss_m)
    # and they are different gradients: the routing is not a no-op
    _, model_m = grads(model, miwae, x, 7, "model")
    assert (model_m - model_i).norm() > 1e-3 * model_i.norm()


def test_mmd_estimate_is_unbiased_and_sees_a_shift():
    g = torch.Generator().manual_seed(0)
    for kernel in ("imq", "rbf"):
        same = torch.stack([mmd(torch.randn(50, 4, generator=g), torch.randn(40, 4, generator=g), kernel)
                            for _ in range(400)])
        assert abs(same.mean()) < 4 * same.std() / math.sqrt(len(same))     # unbiased: mean 0 within noise
        shifted = mmd(torch.randn(50, 4, generator=g) + 1.0, torch.randn(40, 4, generator=g), kernel)
        assert shifted > same.mean() + 6 * same.std()
    # against the definition, term by term
    a, b = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g)
    c = 2 * 3 * 0.7

    def k(u, v):
        d2 = (u - v).square().sum()
        return sum(s * c / (s * c + d2) for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0))

    aa = sum(k(a[i], a[j]) for i in range(5) for j in range(5) if i != j) / 20
    bb = sum(k(b[i], b[j]) for i in range(4) for j in range(4) if i != j) / 12
    ab = sum(k(a[i], b[j]) for i in range(5) for j in range(4)) / 20
    torch.testing.assert_close(mmd(a, b, "imq", 0.7), aa + bb - 2 * ab)


def test_wae_is_the_reconstruction_plus_the_weighted_mmd_and_infovae_at_alpha_0_lambda_1_is_the_elbo():
    model, x = small(), data(8)
    torch.manual_seed(5)
    loss, stats = MMDObjective(kind="wae", alpha=1.0, weight=10.0)(model, x)
    torch.manual_seed(5)
    t = model(x, 1, log_weights=False)
    drawn = model.prior.sample(8)
    expected = -t["log_px"][0].mean() + 10.0 * mmd(t["z"][0], drawn)
    torch.testing.assert_close(loss, expected)
    assert MMDObjective(kind="wae", alpha=1.0).beta_at(0) == 0.0       # no KL
    torch.manual_seed(5)
    info, _ = MMDObjective(kind="infovae", alpha=0.0, weight=1.0)(model, x)
    torch.manual_seed(5)
    elbo, _ = Objective()(model, x)
    torch.testing.assert_close(info, elbo)


def test_the_objectives_from_the_command_line(tmp_path, cli):
    common = ["--epochs", "2", "--latent", "3", "--hidden", "32", "--batch-size", "64", "--quiet"]
    for objective, extra, bound in (("miwae", ["--k", "3", "--groups", "2"], "IWAE-3"),
                                    ("piwae", ["--k", "2", "--groups", "2", "--estimator", "dreg"], "IWAE-4"),
                                    ("ciwae", ["--k", "3", "--ciwae-beta", "0.2"], "IWAE-3"),
                                    ("wae", ["--mmd-kernel", "rbf"], "wae objective"),
                                    ("infovae", ["--info-alpha", "0.5", "--mmd-weight", "100"], "infovae objective")):
        out = tmp_path / objective
        rc, _, err = cli("train", "--objective", objective, *extra, *common, "--out", out)
        assert rc == 0, err
        rc, said, _ = cli("info", out)
        assert rc == 0 and f"best valid {bound}" in said, said
        rows = vaekit.Run.load(out).metrics
        assert len(rows) == 2 and ("valid_iwae" in rows[-1]) == (bound != "ELBO" and "objective" not in bound)
        assert ("valid_objective" in rows[-1]) == ("objective" in bound)
    rc, said, _ = cli("info", tmp_path / "piwae")
    assert "PIWAE 2 groups of k=2, doubly reparameterised gradient" in said
    rc, _, err = cli("train", "--resume", tmp_path / "miwae", "--epochs", "3", "--quiet")
    assert rc == 0, err
    rc, said, _ = cli("info", tmp_path / "miwae")
    assert "epochs   3" in said and "IWAE-3" in said
    # options of another objective are said to have no effect
    rc, _, err = cli("train", "--objective", "iwae", "--k", "2", "--groups", "3", "--epochs", "1", "--quiet",
                     "--out", tmp_path / "w")
    assert rc == 0 and "--groups shape --objective miwae or piwae" in err


def test_the_objectives_refuse_what_does_not_fit_in_one_sentence(tmp_path, cli):
    rc, _, err = cli("train", "--objective", "ciwae", "--estimator", "dreg", "--epochs", "1", "--out", tmp_path / "a")
    assert rc == 2 and "needs train.objective 'iwae', 'miwae' or 'piwae'" in err and len(err.splitlines()) == 1
    rc, _, err = cli("train", "--objective", "ciwae", "--ciwae-beta", "2", "--epochs", "1", "--out", tmp_path / "b")
    assert rc == 2 and "between 0 and 1" in err
    src = note_lists(tmp_path / "notes.json", n=8)
    rc, _, err = cli("train", "--data", src, "--objective", "wae", "--epochs", "1", "--out", tmp_path / "c")
    assert rc == 2 and "Markov prior's latent is a sequence" in err and len(err.splitlines()) == 1


def test_the_capacity_objective_holds_the_kl_near_a_rising_target(tmp_path, cli):
    from vaekit.model.objectives import CapacityVAE

    model, x = small(), data(8)
    objective = CapacityVAE(kind="capacity", weight=50.0, capacity=10.0, capacity_steps=100)
    assert objective.capacity_at(0) == 0.0 and objective.capacity_at(50) == 5.0 and objective.capacity_at(500) == 10.0
    torch.manual_seed(2)
    loss, stats = objective(model, x, step=30)
    torch.manual_seed(2)
    t = model(x, 1, log_weights=False)
    kl = t["kl_dim"].sum(-1)
    torch.testing.assert_close(loss, -t["log_px"][0].mean() + 50.0 * (kl - 3.0).abs().mean())
    assert not objective.traceable and objective.beta_at(30) == 50.0
    rc, _, err = cli("train", "--objective", "capacity", "--capacity", "3", "--capacity-epochs", "1", "--epochs", "2",
                     "--latent", "3", "--hidden", "32", "--quiet", "--out", tmp_path / "c")
    assert rc == 0, err
    kl = [r["valid_kl"] for r in vaekit.Run.load(tmp_path / "c").metrics]
    assert abs(kl[-1] - 3.0) < 1.0, kl
    rc, said, _ = cli("info", tmp_path / "c")
    assert "capacity: gamma 1000 x |KL - C|, C to 3 nats over 1 epochs" in said
