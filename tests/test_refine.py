"""Refining the encoder of a trained model (--refine-encoder): q(z | x) trains, p(x, z) stays as it was."""

import pytest
import torch

from vaekit.checkpoint import load_weights
from vaekit.run import Run

VAMP = ["--prior", "vamp", "--prior-components", "8"]
TOP_DOWN = ["--prior", "hierarchical", "--inference", "top-down", "--top-prior", "vamp", "--prior-components", "8",
            "--top-latent", "3", "--logvar-range=-6,2"]


def _same_model(a: Run, b: Run) -> None:
    """The generative parts of two runs give the same p(z) and p(x | z)."""
    torch.manual_seed(0)
    z = torch.randn(16, a.model.latent)
    with torch.no_grad():
        torch.testing.assert_close(a.model.prior.log_prob(z), b.model.prior.log_prob(z), rtol=0, atol=0)
        torch.testing.assert_close(a.model.decoder(z), b.model.decoder(z), rtol=0, atol=0)
    torch.manual_seed(1)
    za = a.model.prior.sample(5)
    torch.manual_seed(1)
    torch.testing.assert_close(za, b.model.prior.sample(5), rtol=0, atol=0)


@pytest.mark.parametrize("model", [VAMP, TOP_DOWN], ids=["vamp", "top-down-vamp"])
def test_refining_the_encoder_keeps_the_model(model, cli, tmp_path):
    base, ref = tmp_path / "base", tmp_path / "ref"
    rc, _, err = cli("train", *model, "--latent", "4", "--hidden", "32", "--epochs", "2", "--batch-size", "64",
                     "--quiet", "--out", base)
    assert rc == 0, err
    rc, _, err = cli("train", "--init", base, "--refine-encoder", "--objective", "iwae", "--k", "4", "--epochs", "2",
                     "--lr", "3e-3", "--quiet", "--out", ref)
    assert rc == 0, err
    before, after = load_weights(base / "model.safetensors"), load_weights(ref / "model.safetensors")
    assert set(after) == set(before) | {"prior_" + k for k in before if k.startswith("encoder.")}
    for k, v in before.items():
        if k.startswith("encoder."):
            assert torch.equal(after["prior_" + k], v), k   # the prior's copy: the encoder it was trained with
        else:
            assert torch.equal(after[k], v), k              # decoder, pseudo-inputs, p(z1 | z2): untouched
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("encoder."))
    _same_model(Run.load(base), Run.load(ref))

    rc, info, _ = cli("info", ref)
    assert rc == 0 and "encoder refit to the fixed model of" in info and str(base.resolve()) in info
    assert "of them the prior's copy of the encoder" in info
    rc, _, err = cli("evaluate", ref, "--k", "20", "--quiet")
    assert rc == 0, err

    # a refined run resumes frozen as it was, and can be refined again
    rc, _, err = cli("train", "--resume", ref, "--epochs", "3", "--quiet")
    assert rc == 0, err
    again = tmp_path / "again"
    rc, _, err = cli("train", "--init", ref, "--refine-encoder", "--objective", "iwae", "--k", "4", "--epochs", "1",
                     "--lr", "3e-3", "--quiet", "--out", again)
    assert rc == 0, err
    _same_model(Run.load(base), Run.load(again))


def test_refining_the_encoder_needs_a_run_and_its_model(digits_run, cli, tmp_path):
    rc, _, err = cli("train", "--refine-encoder", "--epochs", "1", "--quiet", "--out", tmp_path / "a")
    assert rc == 2 and "--init RUN" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    rc, _, err = cli("train", "--init", digits_run, "--refine-encoder", "--likelihood", "gaussian", "--quiet",
                     "--out", tmp_path / "b")
    assert rc == 2 and str(digits_run) in err and "likelihood" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow  # a benchmark script end to end: make test-slow
def test_per_example_proposal_benchmark_runs(cli, tmp_path):
    """bench/per_example_proposal.py fits a proposal per test example and prints both estimates."""
    import subprocess
    import sys
    from pathlib import Path

    run = tmp_path / "td"
    rc, _, err = cli("train", *TOP_DOWN, "--latent", "4", "--hidden", "32", "--epochs", "1", "--batch-size", "64",
                     "--quiet", "--out", run)
    assert rc == 0, err
    script = Path(__file__).resolve().parents[1] / "bench" / "per_example_proposal.py"
    p = subprocess.run([sys.executable, str(script), str(run), "--examples", "4", "--k", "64", "--steps", "5"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("encoder's proposal:") and lines[1].startswith("per-example proposal:")
    a, b = (float(line.split("NLL ")[1].split()[0]) for line in lines[:2])
    assert abs(float(lines[2].split()[1]) - (a - b)) < 2e-3
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "nothing")], capture_output=True, text=True)
    assert p.returncode == 1 and "not a run directory" in p.stderr and "Traceback" not in p.stderr


def test_nll_convergence_benchmark_nests_its_draws(cli, tmp_path):
    """bench/nll_convergence.py: the estimate at each k over the first k of the same draws, and
    at the smallest k with the proposal widened, next to factor 1 with the same draws."""
    import subprocess
    import sys
    from pathlib import Path

    run = tmp_path / "td"
    rc, _, err = cli("train", *TOP_DOWN, "--latent", "4", "--hidden", "32", "--epochs", "1", "--batch-size", "64",
                     "--quiet", "--out", run)
    assert rc == 0, err
    script = Path(__file__).resolve().parents[1] / "bench" / "nll_convergence.py"
    p = subprocess.run([sys.executable, str(script), str(run), "--examples", "6", "--batch", "6", "--k", "8,64",
                        "--widen", "1.5", "--threads", "1"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    nll = [float(line.split("NLL ")[1].split()[0]) for line in lines[1:]]
    assert lines[1].startswith("k = 8:") and lines[2].startswith("k = 64:") and len(nll) == 4
    assert abs(float(lines[2].split("(")[1].split()[0]) - (nll[1] - nll[0])) < 2e-3
    assert lines[3].startswith("k = 8, standard deviations x 1:") and "x 1.5:" in lines[4]
    assert nll[3] != nll[2] and abs(nll[2] - nll[0]) < 0.05 * nll[0]   # two estimates of one NLL


def test_refining_with_doubly_reparameterised_gradients(cli, tmp_path):
    """--estimator dreg trains the encoder with the IWAE bound's doubly reparameterised gradient:
    the model stays fixed, the encoder moves, and the run says which gradient it took."""
    base, ref = tmp_path / "base", tmp_path / "ref"
    rc, _, err = cli("train", *TOP_DOWN, "--latent", "4", "--hidden", "32", "--epochs", "2", "--batch-size", "64",
                     "--quiet", "--out", base)
    assert rc == 0, err
    rc, _, err = cli("train", "--init", base, "--refine-encoder", "--objective", "iwae", "--k", "8", "--estimator",
                     "dreg", "--epochs", "2", "--lr", "3e-3", "--quiet", "--out", ref)
    assert rc == 0, err
    before, after = load_weights(base / "model.safetensors"), load_weights(ref / "model.safetensors")
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("encoder."))
    _same_model(Run.load(base), Run.load(ref))
    rc, info, _ = cli("info", ref)
    assert rc == 0 and "IWAE k=8, doubly reparameterised gradient" in info


@pytest.mark.slow  # a benchmark script end to end: make test-slow
def test_nll_samplers_benchmark(cli, tmp_path):
    """bench/nll_samplers.py: antithetic noises are pairs e, -e; Sobol noises are standard normal;
    the proposal draws z = mean + std * noise in every layer; each sampler estimates the same NLL;
    a flow posterior is refused in one sentence."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "nll_samplers.py"
    spec = importlib.util.spec_from_file_location("nll_samplers", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    gen = torch.Generator().manual_seed(0)
    e = bench.noises("antithetic", 10, 3, 5, gen, 0)
    assert e.shape == (10, 3, 5) and torch.equal(e[:5], -e[5:])
    s = bench.noises("qmc", 4096, 2, 6, gen, 1)
    assert s.shape == (4096, 2, 6) and torch.isfinite(s).all()
    assert s.mean().abs() < 0.02 and (s.std() - 1).abs() < 0.02 and not torch.equal(s[:, 0], s[:, 1])

    run = tmp_path / "td"
    rc, _, err = cli("train", *TOP_DOWN, "--latent", "4", "--hidden", "32", "--epochs", "1", "--batch-size", "64",
                     "--quiet", "--out", run)
    assert rc == 0, err
    loaded = Run.load(run)
    model, x = loaded.model.eval(), loaded.data.test[:3]
    with torch.no_grad():
        q = model.encode(x)
        noise = torch.randn(7, 3, model.latent)
        z = bench.with_noise(q, noise).rsample((7,))
        z2 = q.top.loc + q.top.scale * noise[..., :3]
        q1 = q._bottom(z2)
        torch.testing.assert_close(z, torch.cat([q1.loc + q1.scale * noise[..., 3:], z2], -1))

    p = subprocess.run([sys.executable, str(script), str(run), "--examples", "6", "--batch", "3", "--k", "64",
                        "--seeds", "0,1", "--threads", "1"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    figures = {}
    for line in lines[1:]:
        name = line.split()[0].rstrip(":")
        if " seed " in line:
            figures.setdefault(name, []).append(float(line.split("NLL ")[1].split()[0]))
        else:
            assert abs(float(line.split("mean ")[1].split()[0]) - sum(figures[name]) / 2) < 1e-3
    assert set(figures) == {"mc", "antithetic", "qmc"}
    mc = figures["mc"][0]
    assert all(abs(v - mc) < 0.05 * mc for vs in figures.values() for v in vs)   # estimates of one NLL
    p = subprocess.run([sys.executable, str(script), str(run), "--samplers", "mc,sobol", "--k", "8"],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "unknown sampler 'sobol'" in p.stderr and "NLL" not in p.stdout   # before any work

    flow = tmp_path / "flow"
    rc, _, err = cli("train", "--latent", "4", "--hidden", "32", "--flow", "1", "--epochs", "1", "--quiet",
                     "--out", flow)
    assert rc == 0, err
    p = subprocess.run([sys.executable, str(script), str(flow), "--k", "8"], capture_output=True, text=True)
    assert p.returncode == 1 and "not a flow" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow  # a benchmark script end to end: make test-slow
def test_amp_precision_benchmark(cli, tmp_path):
    """bench/amp_precision.py prints how far each term moves under bfloat16 autocast; the
    log-densities of the latent stay close (float32), and a path that is not a run is refused."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "amp_precision.py"
    run = tmp_path / "td"
    rc, _, err = cli("train", *TOP_DOWN, "--latent", "4", "--hidden", "32", "--epochs", "1", "--batch-size", "64",
                     "--quiet", "--out", run)
    assert rc == 0, err
    p = subprocess.run([sys.executable, str(script), str(run), "--examples", "5", "--k", "4"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = {ln.split()[0]: ln.split() for ln in p.stdout.splitlines()[1:5]}
    assert set(lines) == {"log_px", "log_pz", "log_qz", "bound"}
    assert 0 < float(lines["log_qz"][2]) < 0.1
    cond = tmp_path / "cond"     # a conditional model scores the first images with their own labels
    rc, _, err = cli("train", "--conditional", "--prior", "class", "--latent", "4", "--hidden", "32", "--epochs", "1",
                     "--quiet", "--out", cond)
    assert rc == 0, err
    p = subprocess.run([sys.executable, str(script), str(cond), "--examples", "5", "--k", "4"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "nothing")], capture_output=True, text=True)
    assert p.returncode == 2 and "not a run directory" in p.stderr
