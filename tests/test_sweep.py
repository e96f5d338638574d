"""vaekit sweep: trials as runs, pruning, the summary, and a killed sweep that continues."""

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("optuna")

SPACE = """
base:
  train: {epochs: EPOCHS, batch_size: 64}
  model: {hidden: [32]}
space:
  train.beta: {float: [0.5, 2.0], log: true}
  model.latent: {int: [2, 6]}
pruner: PRUNER
"""


def space(tmp_path, epochs=3, pruner="median"):
    f = tmp_path / "space.yaml"
    f.write_text(SPACE.replace("EPOCHS", str(epochs)).replace("PRUNER", pruner))
    return f


def test_a_sweep_trains_runs_and_summarises(tmp_path, cli):
    rc, out, err = cli("sweep", space(tmp_path), "--trials", "5", "--out", tmp_path / "s", "--quiet")
    assert rc == 0, err
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and not ln.startswith("| trial")]
    assert len(rows) >= 5 and all(r.split("|")[2].strip() in ("complete", "pruned") for r in rows)
    assert "best: trial" in out and "vaekit train --config" in out and "--beta " in out and "--latent " in out
    assert (tmp_path / "s" / "study.db").exists() and (tmp_path / "s" / "history.png").exists()
    complete = [r.split("|")[-2].strip() for r in rows if "complete" in r]
    assert all((tmp_path / "s" / os.path.basename(p) / "model.safetensors").exists() for p in complete)


@pytest.mark.parametrize("text,message", [
    ("space: {train.betta: {float: [0, 1]}}", "'train.betta' is not a config field"),
    ("space: {train.beta: {float: [1, 0]}}", "low < high"),
    ("space: {train.beta: [1, 2]}", "must be one of"),
    ("space: {train.beta: {float: [0.5, 1]}}\nobjective: loss", "objective must be one of"),
    ("base: {train: {epochs: -1}}\nspace: {train.beta: {float: [0.5, 1]}}", "train.epochs"),
])
def test_a_bad_sweep_file_is_one_sentence(text, message, tmp_path, cli):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    rc, _, err = cli("sweep", f, "--trials", "2", "--out", tmp_path / "s")
    assert rc == 2 and message in err and "Traceback" not in err


def test_a_killed_sweep_continues_where_it_stopped(tmp_path, cli, monkeypatch):
    import vaekit.sweep as sweep_module

    f, out = space(tmp_path, epochs=30, pruner="none"), tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "sweep", str(f), "--trials", "2", "--out", str(out),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "trial-0" / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    f.write_text(SPACE.replace("EPOCHS", "2").replace("PRUNER", "none"))   # the rest of the sweep: quicker trials
    monkeypatch.setattr(sweep_module, "GRACE_S", 1)
    monkeypatch.setattr(sweep_module, "HEARTBEAT_S", 1)
    time.sleep(1.5)
    rc, text, err = cli("sweep", f, "--trials", "2", "--out", out, "--quiet")
    assert rc == 0, err
    assert "2 complete" in text and "1 failed" in text       # the killed trial, failed by its silent heartbeat
    import optuna

    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'study.db'}").get_trials()
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed[0].params in [t.params for t in trials if t.state.name == "COMPLETE"]   # and tried again
