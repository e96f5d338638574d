"""Surviving what goes wrong: resume, kills, non-finite steps, Ctrl-C, full disks, unsafe
files, and training with more than one process (DistributedDataParallel under torchrun)."""

import csv
import errno
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vaekit
import importlib

train_mod = importlib.import_module("vaekit.train")
from vaekit.checkpoint import load_state, load_weights
from vaekit.model.objectives import Objective

PY = [sys.executable, "-m", "vaekit"]


def small_config(epochs=4, **train):
    cfg = vaekit.Config()
    cfg.model.hidden, cfg.model.latent = [64], 4
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr_schedule = epochs, 64, "cosine"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def last_weights(run_dir):
    return load_state(Path(run_dir) / "state" / "last.pt")["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def rows(run_dir):
    return list(csv.DictReader(open(Path(run_dir) / "metrics.csv")))


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_after_interrupt_is_bit_identical(tmp_path, monkeypatch, ema):
    vaekit.train(small_config(ema=ema), out=tmp_path / "full", quiet=True, pictures=False)

    original = train_mod.Trainer.save_checkpoint

    def stop_after_epoch_2(self):
        original(self)
        if self.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod.Trainer, "save_checkpoint", stop_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        vaekit.train(small_config(ema=ema), out=tmp_path / "cut", quiet=True, pictures=False)
    monkeypatch.setattr(train_mod.Trainer, "save_checkpoint", original)
    assert load_state(tmp_path / "cut" / "state" / "last.pt")["epoch"] == 2

    train_mod.resume(tmp_path / "cut", quiet=True, pictures=False)
    assert_same_weights(last_weights(tmp_path / "full"), last_weights(tmp_path / "cut"))
    averages = [load_state(tmp_path / r / "state" / "last.pt")["ema"] for r in ("full", "cut")]
    n_params = len(list(vaekit.Run.load(tmp_path / "full").model.parameters()))
    assert len(averages[0]) == (n_params if ema else 0)
    assert all(torch.equal(a, b) for a, b in zip(*averages))
    assert_same_weights(*(load_weights(tmp_path / r / "model.safetensors") for r in ("full", "cut")))
    full, cut = rows(tmp_path / "full"), rows(tmp_path / "cut")
    assert [r["valid_elbo"] for r in full] == [r["valid_elbo"] for r in cut]


def test_sigkill_mid_epoch_then_resume(tmp_path):
    args = ["train", "--epochs", "8", "--hidden", "256,256", "--batch-size", "16", "--quiet"]
    out = tmp_path / "killed"
    p = subprocess.Popen(PY + args + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        # a row is written before its epoch's checkpoint: with 4 rows, epoch 3's checkpoint is on disk
        if (out / "metrics.csv").exists() and len(rows(out)) >= 4:
            break
        time.sleep(0.05)
    time.sleep(0.1)  # into the next epoch
    assert p.poll() is None, "training finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    saved = load_state(out / "state" / "last.pt")["epoch"]
    assert 3 <= saved < 8
    # (a kill inside a checkpoint's write leaves its partial temporary file, never last.pt itself;
    # the next write replaces it)

    rc = subprocess.run(PY + ["train", "--resume", str(out), "--quiet"], capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    assert not list((out / "state").glob(".*tmp")), "a temporary file was left behind"
    subprocess.run(PY + args + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    assert_same_weights(last_weights(tmp_path / "whole"), last_weights(out))
    assert [r["epoch"] for r in rows(out)] == [str(i) for i in range(1, 9)]


def poison(monkeypatch, bad_steps):
    """Make the objective return a NaN loss on the given steps (or all steps: None)."""
    original = Objective.__call__

    def call(self, model, x, step=0, y=None, beta=None):
        loss, stats = original(self, model, x, step, y, beta)
        if bad_steps is None or step in bad_steps:
            loss = loss * float("nan")
            stats = torch.cat([stats[:2], (loss * x.shape[0]).detach().view(1)])
        return loss, stats

    monkeypatch.setattr(Objective, "__call__", call)


def test_non_finite_steps_are_skipped_and_counted(tmp_path, monkeypatch):
    poison(monkeypatch, {2, 3, 4, 30})
    run = vaekit.train(small_config(epochs=2), out=tmp_path / "r", quiet=True, pictures=False)
    skipped = [int(r["skipped_steps"]) for r in rows(run.path)]
    assert skipped == [3, 1]
    for v in last_weights(run.path).values():
        assert torch.isfinite(v).all()
    assert math.isfinite(run.metrics[-1]["train_elbo"])


def test_too_many_bad_steps_stop_with_the_checkpoint_intact(tmp_path, monkeypatch, cli):
    vaekit.train(small_config(epochs=1), out=tmp_path / "r", quiet=True, pictures=False)
    poison(monkeypatch, None)
    rc, out, err = cli("train", "--resume", tmp_path / "r", "--epochs", "3", "--quiet")
    assert rc == 2 and "epoch 2" in err and "step" in err and "non-finite" in err and "Traceback" not in err
    state = load_state(tmp_path / "r" / "state" / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_ctrl_c_saves_and_says_how_to_resume(tmp_path):
    out = tmp_path / "r"
    # a shell that started us in the background may have set SIGINT to "ignore", which the child
    # would inherit (and then Python installs no Ctrl-C handler): give it the default back
    p = subprocess.Popen(PY + ["train", "--epochs", "500", "--hidden", "64", "--out", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    # 3 rows: epoch 2's checkpoint is on disk (each row is written before its epoch's checkpoint)
    while time.time() < deadline and not ((out / "metrics.csv").exists() and len(rows(out)) >= 3):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert f"vaekit train --resume {out}" in err and "Traceback" not in err
    saved = load_state(out / "state" / "last.pt")["epoch"]
    assert saved >= 2
    rc = subprocess.run(PY + ["train", "--resume", str(out), "--epochs", str(saved + 1), "--quiet"],
                        capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, cli):
    import vaekit.checkpoint as ck

    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 3:  # epoch 0 and epoch 1 succeed, epoch 2 hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ck.torch, "save", failing_save)
    rc, out, err = cli("train", "--epochs", "4", "--hidden", "32", "--quiet", "--out", tmp_path / "r")
    assert rc == 2 and "No space left on device" in err and "last.pt" in err and "intact" in err
    assert load_state(tmp_path / "r" / "state" / "last.pt")["epoch"] == 1


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_never_run(tmp_path, digits_run, cli):
    import shutil

    run = tmp_path / "evil"
    shutil.copytree(digits_run, run)
    marker = tmp_path / "pwned"
    torch.save({"epoch": Exploit(marker)}, run / "state" / "last.pt")
    rc, _, err = cli("train", "--resume", run)
    assert rc == 2 and "refused" in err and "last.pt" in err
    torch.save({"w": Exploit(marker)}, run / "model.safetensors")
    rc, _, err = cli("sample", run)
    assert rc == 2 and "model.safetensors" in err
    assert not marker.exists(), "loading ran code from a pickle"


def test_truncated_weights_are_refused(tmp_path, digits_run, cli):
    import shutil

    run = tmp_path / "cut"
    shutil.copytree(digits_run, run)
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    rc, _, err = cli("info", run)
    assert rc == 2 and "model.safetensors" in err and "Traceback" not in err


def test_resume_refuses_what_it_cannot_continue(tmp_path, digits_run, cli):
    rc, _, err = cli("train", "--resume", tmp_path)
    assert rc == 2 and "no config.yaml" in err
    rc, _, err = cli("train", "--resume", digits_run)
    assert rc == 2 and "already trained for 3 of 3 epochs" in err
    rc, _, err = cli("train", "--resume", digits_run, "--lr", "0.1")
    assert rc == 2 and "--lr" in err


def torchrun(nproc, out, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "vaekit", "train", "--epochs", "12", "--hidden", "128", "--batch-size", "64", "--seed", "1",
           "--quiet", "--out", str(out), *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow  # two torchrun trainings of 12 epochs (20 s); test_nproc_flag_starts_torchrun keeps DDP in the default suite
def test_two_processes_with_torchrun_match_one(tmp_path):
    p = torchrun(2, tmp_path / "ddp")
    assert p.returncode == 0, p.stderr[-2000:]
    ddp = rows(tmp_path / "ddp")
    assert len(ddp) == 12 and (tmp_path / "ddp" / "samples" / "prior_samples.png").exists()
    one = torchrun(1, tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    single = rows(tmp_path / "one")
    a, b = float(ddp[-1]["valid_elbo"]), float(single[-1]["valid_elbo"])
    # same global batch and epochs: the same validation ELBO within noise (a few percent)
    assert abs(a - b) < 0.05 * abs(b), (a, b)
    # every example is seen once per epoch across the two processes
    assert float(ddp[0]["examples_per_s"]) * float(ddp[0]["seconds"]) == pytest.approx(1408, abs=1)


def test_nproc_flag_starts_torchrun(tmp_path):
    p = subprocess.run(PY + ["train", "--nproc", "2", "--epochs", "1", "--hidden", "32", "--batch-size", "32",
                             "--quiet", "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "2 processes" not in p.stdout  # --quiet
    assert len(rows(tmp_path / "r")) == 1


def test_mixed_precision_on_cpu_when_asked(tmp_path):
    run = vaekit.train(small_config(epochs=2, amp="on"), out=tmp_path / "amp", quiet=True, pictures=False)
    m = run.metrics
    assert len(m) == 2 and all(math.isfinite(r["valid_elbo"]) for r in m)
    assert m[-1]["skipped_steps"] == 0


def test_resume_rewrites_metrics_written_before_a_column_was_added(tmp_path):
    """A run whose metrics.csv has no valid_iwae column (older vaekit) resumes with aligned rows."""
    vaekit.train(small_config(epochs=2), out=tmp_path / "r", quiet=True, pictures=False)
    path = tmp_path / "r" / "metrics.csv"
    old = [{k: v for k, v in r.items() if k != "valid_iwae"} for r in rows(tmp_path / "r")]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(old[0]))
        w.writeheader()
        w.writerows(old)
    vaekit.resume(tmp_path / "r", epochs=3, quiet=True, pictures=False)
    assert next(csv.reader(open(path))) == train_mod.METRIC_FIELDS
    got = rows(tmp_path / "r")
    assert [int(r["epoch"]) for r in got] == [1, 2, 3]
    assert all(float(r["valid_elbo"]) < 0 and r["valid_iwae"] == "" for r in got)
    assert len(vaekit.Run.load(tmp_path / "r").metrics) == 3


def test_a_closed_pipe_ends_quietly(digits_run):
    """`vaekit info RUN | head -1`: the reader leaves early; no traceback, the pipe's exit code."""
    p = subprocess.Popen(PY + ["info", str(digits_run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # nothing will read what info prints
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and "Traceback" not in err and "BrokenPipe" not in err


def test_a_diverging_run_recovers_and_ends_better_than_its_first_epoch(tmp_path, cli):
    """Adam at a learning rate of 10 diverges at once: training goes back to its last checkpoint
    with half the learning rate, as often as it takes (each time one line), and ends finite."""
    rc, out, err = cli("train", "--lr", "10", "--epochs", "3", "--hidden", "64", "--latent", "4", "--quiet",
                       "--out", tmp_path / "r")
    assert rc == 0, err
    assert out.strip() == str(tmp_path / "r")  # --quiet: the recoveries go to stderr
    lines = [line for line in err.splitlines() if line.startswith("recovered: ")]
    assert lines and "learning rate halved to 5" in lines[0] and len(lines) <= 6
    r = rows(tmp_path / "r")
    assert int(r[-1]["recoveries"]) == len(lines) and float(r[-1]["lr"]) == 10 / 2 ** len(lines)
    valid = [float(x["valid_elbo"]) for x in r]
    assert all(math.isfinite(v) for v in valid) and valid[-1] > valid[0]


def test_on_divergence_stop_stops_with_the_checkpoint_intact(tmp_path, cli):
    rc, _, err = cli("train", "--lr", "10", "--epochs", "3", "--hidden", "64", "--on-divergence", "stop", "--quiet",
                     "--out", tmp_path / "r")
    assert rc == 2 and "non-finite" in err and "checkpoint of epoch 0" in err and "recovered" not in err
    assert load_state(tmp_path / "r" / "state" / "last.pt")["epoch"] == 0


def test_posterior_collapse_is_said_once_and_shown_in_the_report(tmp_path, cli):
    """A text VAE without free bits lets its KL fall to nothing: one warning line names it and the
    remedies, and the report shows the epoch; the demo's kind of run says nothing."""
    from vaekit.eval import collapse_epoch

    rows_ = [{"epoch": e, "valid_kl": kl, "beta": b} for e, kl, b in
             [(1, 0.01, 0.5), (2, 0.01, 1), (3, 0.02, 1), (4, 0.5, 1), (5, 0.05, 1), (6, 0.04, 1), (7, 0.03, 1)]]
    assert collapse_epoch(rows_) == 5  # warm-up epochs do not count, and a recovered KL restarts the count
    assert collapse_epoch(rows_[:6]) is None

    lines = tmp_path / "names.txt"
    lines.write_text("".join(f"{n}\n" for n in ["anna", "bob", "carla", "dieter", "eva", "fritz", "gus"] * 30))
    rc, _, err = cli("train", "--data", lines, "--free-bits", "0", "--word-dropout", "0", "--epochs", "6",
                     "--rnn-hidden", "64", "--quiet", "--out", tmp_path / "text")
    assert rc == 0, err
    said = [line for line in err.splitlines() if "posterior collapse" in line]
    assert len(said) == 1 and "--free-bits" in said[0]
    assert "posterior collapse" in (tmp_path / "text" / "report.html").read_text()
    rc, _, err = cli("train", "--epochs", "6", "--hidden", "64", "--quiet", "--out", tmp_path / "digits")
    assert rc == 0 and "collapse" not in err
    assert "posterior collapse" not in (tmp_path / "digits" / "report.html").read_text()
