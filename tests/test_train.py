"""Training, the run directory, the Python API and every CLI verb."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from conftest import blobs


def test_run_directory_contents(digits_run):
    for name in ("config.yaml", "model.safetensors", "metrics.csv", "state/last.pt"):
        assert (digits_run / name).is_file(), name
    for name in ("prior_samples.png", "reconstructions.png", "interpolations.png", "latent_map.png"):
        img = Image.open(digits_run / "samples" / name)
        assert img.size[0] > 100 and np.asarray(img).std() > 5, name  # not blank
    rows = list(csv.DictReader(open(digits_run / "metrics.csv")))
    assert len(rows) == 3
    for col in ("train_elbo", "valid_elbo", "train_rec", "train_kl", "seconds", "examples_per_s"):
        assert np.isfinite(float(rows[-1][col]))


def test_training_improves_the_elbo_and_reconstructs(tmp_path):
    cfg = vaekit.Config()
    cfg.model.hidden, cfg.model.latent = [128], 8
    cfg.train.epochs, cfg.train.batch_size = 15, 32
    run = vaekit.train(cfg, out=tmp_path / "r", quiet=True, pictures=False)
    m = run.metrics
    assert m[-1]["valid_elbo"] > m[0]["valid_elbo"] + 10
    assert m[-1]["train_kl"] > 1.0  # the latent is used
    x = run.data.test[:50]
    err_model = (run.model.reconstruct(x) - x).abs().mean()
    err_mean = (run.data.train.mean(0, keepdim=True) - x).abs().mean()
    assert err_model < 0.6 * err_mean


def test_load_gives_the_same_model(digits_run):
    a, b = vaekit.Run.load(digits_run), vaekit.Run.load(digits_run)
    x = a.data.test[:4]
    torch.testing.assert_close(a.model.reconstruct(x), b.model.reconstruct(x))
    assert a.model.sample(5).shape == (5, 1, 8, 8)


def test_trainer_state_loads_without_pickle(digits_run):
    from vaekit.checkpoint import load_state

    state = load_state(digits_run / "state" / "last.pt")
    assert state["epoch"] == 3 and "optimizer" in state and "model" in state


def test_same_seed_same_result(tmp_path):
    def once(name):
        cfg = vaekit.Config()
        cfg.model.hidden, cfg.train.epochs = [32], 2
        return vaekit.train(cfg, out=tmp_path / name, quiet=True, pictures=False).metrics[-1]["valid_elbo"]

    assert once("a") == once("b")


def test_objectives_and_schedules_train(tmp_path):
    for i, (objective, extra) in enumerate([("iwae", {"k": 5}), ("elbo", {"free_bits": 0.2, "warmup_epochs": 1,
                                                                         "beta": 0.5, "lr_schedule": "cosine",
                                                                         "clip_grad": 5.0}),
                                            ("elbo", {"lr_schedule": "plateau", "patience": 1})]):
        cfg = vaekit.Config()
        cfg.model.hidden, cfg.train.epochs, cfg.train.objective = [32], 3, objective
        for k, v in extra.items():
            setattr(cfg.train, k, v)
        run = vaekit.train(cfg, out=tmp_path / str(i), quiet=True, pictures=False)
        assert np.isfinite(run.metrics[-1]["valid_elbo"])


def test_conv_model_on_rgb_arrays(tmp_path):
    x, y = blobs(80, size=12)
    rgb = np.stack([x, x[::-1], 255 - x], -1).astype(np.uint8)
    np.savez(tmp_path / "rgb.npz", X=rgb, y=y)
    cfg = vaekit.Config()
    cfg.data.source = str(tmp_path / "rgb.npz")
    cfg.model.net, cfg.model.channels, cfg.train.epochs = "conv", [8, 16], 2
    run = vaekit.train(cfg, out=tmp_path / "r", quiet=True)
    assert run.model.sample(3).shape == (3, 3, 12, 12)
    assert (run.path / "samples" / "latent_map.png").exists()


def test_conv_handles_odd_sizes():
    from vaekit.model.nets import ConvDecoder, ConvEncoder

    for shape in [(1, 8, 8), (1, 28, 28), (3, 7, 9)]:
        enc, dec = ConvEncoder(shape, 5, [4, 8]), ConvDecoder(shape, 5, [4, 8], 2)
        mu, logvar = enc(torch.zeros(2, *shape))
        assert mu.shape == (2, 5)
        assert dec(mu).shape == (2, 2, *shape)


def test_gaussian_and_bernoulli_pipelines(tmp_path, cli):
    rc, out, err = cli("train", "--epochs", "2", "--hidden", "32", "--likelihood", "gaussian", "--quiet",
                       "--out", tmp_path / "g")
    assert rc == 0, err
    rc, out, err = cli("train", "--epochs", "2", "--hidden", "32", "--binarize", "dynamic", "--quiet",
                       "--out", tmp_path / "b")
    assert rc == 0, err
    rc, out, err = cli("info", tmp_path / "b")
    assert "bernoulli" in out


def test_gated_mlp_trains_and_reloads(tmp_path, cli):
    rc, _, err = cli("train", "--epochs", "3", "--hidden", "32", "--activation", "gated", "--quiet",
                     "--out", tmp_path / "g")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "g")
    assert run.config.model.activation == "gated" and isinstance(run.model.encoder.net[1], torch.nn.GLU)
    assert run.metrics[-1]["valid_elbo"] > run.metrics[0]["valid_elbo"]
    rc, _, err = cli("train", "--activation", "swish", "--epochs", "1", "--quiet", "--out", tmp_path / "s")
    assert rc == 2 and "Traceback" not in err


def test_decoder_dropout_regularises_training_only(tmp_path, cli):
    """--decoder-dropout: p(x|z) is random in training and deterministic in evaluation; the weights
    are named as without it, so runs with and without load each other's weights (--init)."""
    info = {"shape": [1, 8, 8], "value": "binary", "levels": None}
    plain = vaekit.model.build_model(vaekit.config.ModelConfig(hidden=[32, 16]), info)
    model = vaekit.model.build_model(vaekit.config.ModelConfig(hidden=[32, 16], decoder_dropout=0.5), info)
    assert plain.state_dict().keys() == model.state_dict().keys()
    model.load_state_dict(plain.state_dict())
    z = torch.randn(64, 16)
    model.train()
    assert not torch.equal(model.decoder(z), model.decoder(z))        # a new mask on each pass
    model.eval()
    torch.testing.assert_close(model.decoder(z), plain.decoder(z))    # dropout off: the same network
    dropped = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropped) == 2 and all(m.p == 0.5 for m in dropped)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.encoder.modules())

    rc, _, err = cli("train", "--epochs", "3", "--hidden", "32", "--decoder-dropout", "0.2", "--quiet",
                     "--out", tmp_path / "d")
    assert rc == 0, err
    run = vaekit.Run.load(tmp_path / "d")
    assert run.config.model.decoder_dropout == 0.2 and not run.model.training
    assert run.metrics[-1]["valid_elbo"] > run.metrics[0]["valid_elbo"]
    rc, out, _ = cli("info", tmp_path / "d")
    assert rc == 0 and "decoder dropout 0.2" in out
    rc, _, err = cli("train", "--init", tmp_path / "d", "--hidden", "32", "--decoder-dropout", "0", "--epochs", "1",
                     "--quiet", "--out", tmp_path / "plain")
    assert rc == 0, err
    for bad, words in ((["--decoder-dropout", "1"], "model.decoder_dropout must be in [0, 1)"),
                       (["--decoder-dropout", "0.1", "--net", "conv"], "for the mlp network's decoder, not conv")):
        rc, _, err = cli("train", *bad, "--epochs", "1", "--quiet", "--out", tmp_path / "bad")
        assert rc == 2 and words in err and "Traceback" not in err, err
        assert not (tmp_path / "bad").exists()


def test_cli_verbs(digits_run, cli, tmp_path):
    rc, out, _ = cli("sample", digits_run, "-n", "12", "--out", tmp_path / "s.png")
    assert rc == 0 and Image.open(tmp_path / "s.png").size[0] > 0
    rc, out, _ = cli("sample", digits_run, "--random")
    assert rc == 0 and (digits_run / "samples" / "samples-seed0.png").exists()
    rc, out, _ = cli("reconstruct", digits_run, "-n", "8")
    assert rc == 0 and "reconstructions-test.png" in out
    rc, out, _ = cli("interpolate", digits_run, "--between", "0", "5", "--steps", "6", "--out", tmp_path / "i.png")
    assert rc == 0 and Image.open(tmp_path / "i.png").size[0] > Image.open(tmp_path / "i.png").size[1]
    rc, out, _ = cli("evaluate", digits_run, "--k", "20", "--quiet", "--json", tmp_path / "e.json")
    assert rc == 0 and "NLL" in out and "bits/dim" in out and "active units" in out
    r = json.loads((tmp_path / "e.json").read_text())
    assert r["k"] == 20 and r["n"] == 180 and len(r["kl_per_dim"]) == 4
    assert "peak memory" in out and "decoder passes            not compiled" in out   # 3,600 rows: too few
    assert r["peak_memory_bytes"] is None or r["peak_memory_bytes"] > 10e6
    assert r["nll_nats"] <= -r["elbo_nats"] + 1e-6
    assert json.loads((digits_run / "evaluation.json").read_text())["k"] == 20
    rc, out, _ = cli("info", digits_run)
    assert rc == 0 and "latent 4" in out and "NLL" in out


def test_console_script_and_module_entry_point(tmp_path):
    exe = [sys.executable, "-m", "vaekit"]
    p = subprocess.run(exe + ["--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "train" in p.stdout
    p = subprocess.run(exe + ["train", "--epochs", "1", "--hidden", "16", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "prior_samples.png" in p.stdout and str(tmp_path / "r") in p.stdout


def test_init_fine_tunes_from_a_run(digits_run, cli, tmp_path):
    """--init starts a new run from another run's weights and config; flags change the training."""
    from vaekit.checkpoint import load_weights
    from vaekit.config import load_yaml

    out = tmp_path / "ft"
    rc, _, err = cli("train", "--init", digits_run, "--objective", "iwae", "--k", "3", "--epochs", "1",
                     "--lr", "1e-12", "--quiet", "--out", out)
    assert rc == 0, err
    cfg = load_yaml(out / "config.yaml")
    assert cfg["train"]["init"] == str(digits_run.resolve())
    assert cfg["train"]["warmup_epochs"] == 0 and cfg["train"]["objective"] == "iwae"
    assert cfg["model"] == load_yaml(digits_run / "config.yaml")["model"]
    # with a learning rate of 1e-12 the weights are still those it started from
    before, after = load_weights(digits_run / "model.safetensors"), load_weights(out / "model.safetensors")
    assert before.keys() == after.keys()
    for k in before:
        assert torch.allclose(before[k], after[k], atol=1e-6), k
    # an IWAE run is judged by its validation bound, which is at least its validation ELBO
    row = next(csv.DictReader(open(out / "metrics.csv")))
    assert float(row["valid_iwae"]) > float(row["valid_elbo"])
    rc, info, _ = cli("info", out)
    assert rc == 0 and str(digits_run.resolve()) in info


def test_init_refuses_what_it_cannot_start_from(digits_run, cli, tmp_path):
    rc, _, err = cli("train", "--init", tmp_path / "nothing", "--quiet", "--out", tmp_path / "a")
    assert rc == 2 and "no config.yaml" in err and "Traceback" not in err
    rc, _, err = cli("train", "--init", digits_run, "--latent", "3", "--quiet", "--out", tmp_path / "b")
    assert rc == 2 and "model.safetensors" in err and "shape" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()  # nothing written for a refused start
    rc, _, err = cli("train", "--init", digits_run, "--resume", digits_run)
    assert rc == 2 and "one of them" in err
    rc, _, err = cli("train", "--init", digits_run, "--config", digits_run / "config.yaml")
    assert rc == 2 and "--config" in err


def test_best_iwae_weights_are_kept_by_the_validation_bound(tmp_path):
    from vaekit.checkpoint import load_state
    from vaekit.eval import iwae_sum

    cfg = vaekit.Config()
    cfg.model.hidden, cfg.model.latent = [64], 4
    cfg.train.epochs, cfg.train.batch_size, cfg.train.objective, cfg.train.k = 3, 64, "iwae", 4
    vaekit.train(cfg, out=tmp_path / "r", quiet=True, pictures=False)
    rows = list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    bounds = [float(r["valid_iwae"]) for r in rows]
    state = load_state(tmp_path / "r" / "state" / "last.pt")
    assert state["best_epoch"] == 1 + int(np.argmax(bounds))
    assert abs(state["best_valid_elbo"] - max(bounds)) < 1e-3 * abs(max(bounds))
    # iwae_sum is the mean over examples of log (1/k) sum_i w_i, as computed from the model's terms
    run = vaekit.Run.load(tmp_path / "r")
    x = run.data.valid[:50]
    torch.manual_seed(3)
    got = iwae_sum(run.model, x, 4)
    torch.manual_seed(3)
    t = run.model.terms(x, 4, log_weights=True)
    want = (torch.logsumexp(t["log_px"] + t["log_pz"] - t["log_qz"], 0) - np.log(4)).sum()
    assert torch.allclose(got, want.reshape(1), rtol=1e-5)


def test_import_does_not_need_the_web_stack():
    """Flask is imported by the explorer only: training and evaluation work without it."""
    code = ("import sys; sys.modules['flask'] = None; sys.modules['werkzeug'] = None\n"
            "import vaekit, vaekit.cli, vaekit.serve\n"
            "print(vaekit.Config().model.latent)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_pictures_spread_their_examples_over_the_split():
    """A test set sorted by class must not show only its first class."""
    from vaekit.kinds.media import spread

    idx = spread(10000, 32)
    assert idx.numel() == 32 and idx[0] == 0 and idx[-1] == 9999 and bool((idx.diff() > 0).all())
    labels = torch.arange(10).repeat_interleave(1000)  # sorted, as binarized MNIST's test set
    assert set(labels[idx].tolist()) == set(range(10))
    assert spread(5, 32).tolist() == [0, 1, 2, 3, 4]


def test_ema_update_rule_and_swap():
    from types import SimpleNamespace

    from vaekit.train import Trainer

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    stub = SimpleNamespace(config=SimpleNamespace(train=SimpleNamespace(ema=0.5)), step=0,
                           raw=[p.detach() for p in params], ema=[p.detach().clone() for p in params])
    want = [p.detach().clone() for p in params]
    for t in range(4):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn_like(p))
        stub.step = t
        Trainer._update_average(stub)
        d = min(0.5, (1 + t) / (10 + t))  # 0.1, 0.18..., 0.25, 0.3077: the early steps follow the weights
        want = [d * w + (1 - d) * p.detach() for w, p in zip(want, params)]
    for e, w in zip(stub.ema, want):
        assert torch.allclose(e, w, atol=1e-6)
    live = [p.detach().clone() for p in params]
    try:
        with Trainer.averaged(stub):
            assert all(torch.equal(p, e) for p, e in zip(params, stub.ema))
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert all(torch.equal(p, w) for p, w in zip(params, live))  # the raw weights are back, even after an error


def test_ema_run_saves_the_averaged_weights_and_resumes(tmp_path, cli):
    from vaekit.checkpoint import load_state, load_weights

    rc, _, err = cli("train", "--epochs", "2", "--hidden", "32", "--latent", "4", "--ema", "0.9", "--quiet",
                     "--out", tmp_path / "e")
    assert rc == 0, err
    state = load_state(tmp_path / "e" / "state" / "last.pt")
    saved = load_weights(tmp_path / "e" / "model.safetensors")
    names = [n for n, _ in vaekit.Run.load(tmp_path / "e").model.named_parameters()]
    assert len(state["ema"]) == len(names)
    assert state["best_epoch"] == 2  # so model.safetensors holds the averaged weights of the last epoch
    assert all(torch.equal(saved[n], e) for n, e in zip(names, state["ema"]))
    assert not all(torch.equal(saved[n], state["model"][n]) for n in names)
    rc, _, err = cli("train", "--resume", tmp_path / "e", "--epochs", "3", "--quiet")
    assert rc == 0, err
    assert vaekit.Run.load(tmp_path / "e").config.train.ema == 0.9
    rc, out, _ = cli("info", tmp_path / "e")
    assert rc == 0 and "moving average, decay 0.9" in out
    rc, _, err = cli("train", "--ema", "1", "--epochs", "1", "--quiet", "--out", tmp_path / "bad")
    assert rc == 2 and "train.ema" in err and "Traceback" not in err


def test_every_budget_run_job_is_a_valid_train_command():
    """bench/budget_runs.py spends a lent GPU's minutes on its jobs: a flag that the CLI
    rejects, or a config that fails its check, would lose the whole lease."""
    import importlib.util
    from pathlib import Path

    from vaekit.cli import apply_flags, build_parser

    path = Path(__file__).resolve().parents[1] / "bench" / "budget_runs.py"
    spec = importlib.util.spec_from_file_location("budget_runs", path)
    budget = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(budget)
    assert {"iwae50-b500", "tdvamp-wu200-b500"} <= set(budget.JOBS)
    for name, flags in budget.JOBS.items():
        args = build_parser().parse_args(["train", *budget.for_epochs(flags, 3), "--data", "digits", "--ema", "0.999"])
        config = apply_flags(vaekit.Config(), args)
        config.check()
        if name.endswith("-b500"):
            assert config.train.batch_size == 500 and config.train.lr == 1.5e-3, name


def test_cuda_graph_on_where_it_cannot_be_used_is_refused_before_anything_is_written(tmp_path, cli):
    rc, _, err = cli("train", "--cuda-graph", "on", "--device", "cpu", "--epochs", "1", "--out", tmp_path / "g")
    assert rc == 2 and "--cuda-graph on" in err and "cpu" in err
    assert not (tmp_path / "g").exists()
    # auto (the default) on the CPU is the ordinary step, and the config records the choice
    run = cli("train", "--epochs", "1", "--hidden", "16", "--latent", "2", "--out", tmp_path / "a")
    assert run[0] == 0, run
    assert "cuda_graph: auto" in (tmp_path / "a" / "config.yaml").read_text()


@pytest.mark.parametrize("amp, graphed, expected", [
    ("off", True, "replayed as one CUDA graph"),
    ("auto", False, "the ordinary step, not a CUDA graph: float16 mixed precision scales the loss on the host "
                    "(add --amp off)"),
])
def test_a_cuda_run_says_whether_its_step_is_a_cuda_graph(amp, graphed, expected):
    from types import SimpleNamespace

    from vaekit.train import _describe, cuda_graph_blocker

    config = vaekit.Config()
    config.train.amp = amp
    trainer = SimpleNamespace(config=config, device=torch.device("cuda"), d=SimpleNamespace(active=False, world=1),
                              graph_blocker=cuda_graph_blocker(config, torch.device("cuda"), False),
                              model=SimpleNamespace(parameters=lambda: [torch.zeros(3)], classes=0),
                              bundle=SimpleNamespace(describe=lambda: "data"), info={"value": "binary"},
                              use_amp=amp != "off", out="runs/x", graphed=object() if graphed else None,
                              threads=None, compile_said="not compiled (--compile off)")
    lines = []
    _describe(trainer, lines.append)
    assert any(line.startswith("step   ") and expected in line for line in lines), lines


def test_mixed_precision_on_a_cpu_without_native_bfloat16_warns_and_trains(tmp_path, cli, monkeypatch):
    """bfloat16 autocast on a CPU that emulates it is many times slower than float32: the run says
    so on stderr, under --quiet too, and trains as asked; a CPU with bfloat16 units gets no warning."""
    import importlib

    module = importlib.import_module("vaekit.train.accel")  # the acceleration policy's module
    assert isinstance(module.native_bfloat16(), bool)
    args = ["train", "--epochs", "1", "--hidden", "16", "--latent", "2", "--quiet"]
    monkeypatch.setattr(module, "native_bfloat16", lambda: False)
    rc, out, err = cli(*args, "--amp", "on", "--out", tmp_path / "slow")
    assert rc == 0 and out.strip() == str(tmp_path / "slow")  # --quiet: only the run directory
    assert "no native bfloat16" in err and "--amp off" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "slow" / "model.safetensors").exists()
    rc, _, err = cli(*args, "--amp", "off", "--out", tmp_path / "off")  # float32: nothing to warn about
    assert rc == 0 and "bfloat16" not in err
    monkeypatch.setattr(module, "native_bfloat16", lambda: True)
    rc, _, err = cli(*args, "--amp", "on", "--out", tmp_path / "fast")
    assert rc == 0 and "bfloat16" not in err
