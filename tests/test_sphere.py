"""Hyperspherical latents: the von Mises–Fisher posterior against SciPy's, the uniform prior, runs."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import ive

from vaekit.model.sphere import UniformSphere, VonMisesFisher, log_bessel_i, log_sphere_area


def unit(v):
    return torch.nn.functional.normalize(torch.as_tensor(v, dtype=torch.float64), dim=-1)


def test_log_bessel_and_its_gradient():
    x = torch.tensor([0.5, 3.0, 40.0, 400.0], dtype=torch.float64, requires_grad=True)
    for v in (0.0, 0.5, 4.0, 19.0):
        torch.testing.assert_close(log_bessel_i(v, x), torch.as_tensor(np.log(ive(v, x.detach().numpy())) + x.detach().numpy()))
        assert torch.autograd.gradcheck(lambda t: log_bessel_i(v, t), (x,))


@pytest.mark.parametrize("m, kappa", [(2, 1.5), (3, 8.0), (5, 1.0), (10, 30.0), (40, 200.0)])
def test_the_density_and_kl_agree_with_scipy(m, kappa):
    rng = np.random.default_rng(0)
    mu = unit(rng.normal(size=m))
    q = VonMisesFisher(mu.unsqueeze(0), torch.tensor([kappa], dtype=torch.float64))
    ref = stats.vonmises_fisher(mu.numpy(), kappa)
    z = unit(rng.normal(size=(6, m))).unsqueeze(1)                               # (6, 1, m)
    torch.testing.assert_close(q.log_density(z)[:, 0], torch.as_tensor(ref.logpdf(z[:, 0].numpy())))
    torch.testing.assert_close(q.log_prob(z).sum(-1), q.log_density(z))
    # KL to the uniform = -entropy + log area
    torch.testing.assert_close(q.kl_to_uniform()[0], torch.tensor(-ref.entropy() + log_sphere_area(m),
                                                                  dtype=torch.float64))


@pytest.mark.parametrize("m, kappa", [(3, 5.0), (6, 2.0), (20, 50.0)])
def test_the_draws_follow_scipys_distribution(m, kappa):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    mu = unit(rng.normal(size=m))
    q = VonMisesFisher(mu.unsqueeze(0), torch.tensor([kappa], dtype=torch.float64))
    z = q.rsample((20000,))[:, 0]                                                  # (n, m)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(20000, dtype=torch.float64))
    ours = (z @ mu).numpy()
    theirs = stats.vonmises_fisher(mu.numpy(), kappa).rvs(20000, random_state=2) @ mu.numpy()
    assert stats.ks_2samp(ours, theirs).pvalue > 0.001
    # about mu, every direction alike: the mean is A(kappa) mu
    torch.testing.assert_close(z.mean(0), q.mean[0], atol=0.02, rtol=0)


def test_the_draws_are_reparameterised():
    torch.manual_seed(0)
    loc = torch.randn(4, 5, requires_grad=True)
    kappa = torch.tensor([2.0, 5.0, 10.0, 30.0], requires_grad=True)
    q = VonMisesFisher(torch.nn.functional.normalize(loc, dim=-1), kappa)
    z = q.rsample((3,))
    (z * torch.randn(3, 4, 5)).sum().backward()
    assert loc.grad.abs().sum() > 0 and kappa.grad.abs().sum() > 0 and torch.isfinite(kappa.grad).all()
    # a sharper posterior lies closer to its direction
    w = (q.rsample((2000,)) * q.loc).sum(-1).mean(0)
    assert (w[1:] > w[:-1]).all()


def test_the_uniform_prior():
    prior = UniformSphere(4)
    z = prior.sample(50000)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(50000))
    torch.testing.assert_close(z.mean(0), torch.zeros(4), atol=0.015, rtol=0)
    torch.testing.assert_close(prior.log_prob(z[:3]), torch.full((3,), -math.log(2 * math.pi ** 2)))
    q = prior.posterior(torch.randn(7, 5))
    assert isinstance(q, VonMisesFisher) and (q.concentration > 1).all()
    torch.testing.assert_close(prior.analytic_kl(q).sum(-1), q.kl_to_uniform())


def test_a_hyperspherical_run_from_the_command_line(tmp_path, cli):
    common = ["--prior", "sphere", "--latent", "5", "--binarize", "static", "--likelihood", "bernoulli",
              "--hidden", "64", "--batch-size", "64", "--epochs", "2", "--quiet"]
    out = tmp_path / "s"
    rc, _, err = cli("train", *common, "--out", out)
    assert rc == 0, err
    rc, said, err = cli("evaluate", out, "--k", "50")
    assert rc == 0 and "NLL" in said, err
    rc, _, err = cli("sample", out, "-n", "8", "--out", tmp_path / "s.png")
    assert rc == 0, err
    rc, _, err = cli("train", *common, "--objective", "iwae", "--k", "3", "--estimator", "dreg", "--out", tmp_path / "i")
    assert rc == 0, err
    for extra, said in ((["--flow", "1"], "lives on the sphere"),
                        (["--objective", "dip-i"], "posterior is a von Mises-Fisher distribution"),
                        (["--latent", "1"], "at least 2 dimensions")):
        rc, _, err = cli("train", *common, *extra, "--out", tmp_path / "x")
        assert rc == 2 and said in err and len(err.strip().splitlines()) == 1, err
