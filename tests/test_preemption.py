"""A run has one writer, and a scheduler's signal stops it cleanly: a real training process gets
SIGTERM or SIGUSR1, says how to resume, exits with 128 + the signal, and resumes to the same
weights as a run that was never stopped."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vaekit.checkpoint import load_state

PY = [sys.executable, "-m", "vaekit"]
ARGS = ["train", "--epochs", "6", "--hidden", "64", "--latent", "4", "--batch-size", "16"]


def rows(run_dir):
    return list(csv.DictReader(open(Path(run_dir) / "metrics.csv")))


def wait_for_rows(p, out: Path, n: int, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and p.poll() is None:
        if (out / "metrics.csv").exists() and len(rows(out)) >= n:
            return
        time.sleep(0.02)
    assert p.poll() is None, "training ended before the signal could be sent"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_stops_training_cleanly_and_it_resumes_bit_identical(tmp_path, sig):
    out = tmp_path / "stopped"
    p = subprocess.Popen(PY + ARGS + ["--epochs", "200", "--out", str(out)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    wait_for_rows(p, out, 2)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    assert f"vaekit train --resume {out}" in err and signal.Signals(sig).name in err and "Traceback" not in err
    saved = load_state(out / "state" / "last.pt")["epoch"]
    assert 1 <= saved < 200
    if sig != signal.SIGTERM:
        return  # the same path as SIGTERM from here on

    # continue to 6 epochs, and compare with 6 epochs in one go
    done = subprocess.run(PY + ["train", "--resume", str(out), "--epochs", "6", "--quiet"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    subprocess.run(PY + ARGS + ["--quiet", "--out", str(tmp_path / "whole")], check=True, capture_output=True)
    a = load_state(out / "state" / "last.pt")["model"]
    b = load_state(tmp_path / "whole" / "state" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in rows(out)] == [str(i) for i in range(1, 7)]  # no epoch twice


def test_a_second_writer_is_refused_while_the_first_trains(tmp_path, cli):
    out = tmp_path / "busy"
    p = subprocess.Popen(PY + ARGS + ["--epochs", "500", "--out", str(out)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_for_rows(p, out, 1)
        rc, _, err = cli("train", "--resume", out)
        assert rc == 2 and f"process {p.pid}" in err and "is training this run already" in err, err
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    # the lock dies with its process: nothing stale is left to refuse the next writer
    saved = load_state(out / "state" / "last.pt")["epoch"]
    rc, _, err = cli("train", "--resume", out, "--epochs", str(saved + 1), "--quiet")
    assert rc == 0, err
