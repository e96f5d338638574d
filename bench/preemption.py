"""Benchmark: what a SIGTERM costs a training run, and what the lock and the monitors cost it.

A real `vaekit train` process is stopped with SIGTERM in the middle of an epoch and resumed; the
same run is also trained without a stop. Printed:
  - stop latency: seconds from the signal to the process's exit (it ends the epoch in progress
    at once; the last epoch's checkpoint is on disk);
  - training repeated: seconds of training done after the last checkpoint and so done again;
  - the extra wall-clock time of stop + resume over the uninterrupted run;
  - the cost of the run lock (acquire and release) and of the monitors: the validation of the
    initial weights (the yardstick of divergence), as a share of the run's training time.

    python bench/preemption.py                                 # the embedded digits
    python bench/preemption.py --data ../shared/data/binarized-mnist --epochs 6
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import vaekit
from vaekit.checkpoint import load_state
from vaekit.train.rundir import RunLock

PY = [sys.executable, "-m", "vaekit"]


def rows(run: Path) -> list[dict]:
    f = run / "metrics.csv"
    return list(csv.DictReader(open(f))) if f.exists() else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--stop-after", type=int, default=None, help="epochs done before the signal (default half)")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    a = ap.parse_args()
    flags = ["train", "--data", a.data, "--epochs", str(a.epochs), "--quiet"]
    if "mnist" in a.data:
        flags += ["--likelihood", "bernoulli", "--hidden", "300,300", "--latent", "40", "--batch-size", "100"]
    stop_after = a.stop_after or a.epochs // 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        subprocess.run(PY + flags + ["--out", str(tmp / "whole")], check=True, capture_output=True)
        whole_wall = time.perf_counter() - t0
        epoch_s = statistics.median(float(r["seconds"]) for r in rows(tmp / "whole"))

        out = tmp / "stopped"
        t0 = time.perf_counter()
        p = subprocess.Popen(PY + flags + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
        while p.poll() is None and len(rows(out)) < stop_after:
            time.sleep(0.01)
        time.sleep(epoch_s / 2)  # into the middle of the next epoch
        t_signal = time.perf_counter()
        wall_signal = time.time()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate()
        latency = time.perf_counter() - t_signal
        part1 = time.perf_counter() - t0
        assert p.returncode == 128 + signal.SIGTERM, err
        saved = load_state(out / "state" / "last.pt")["epoch"]
        repeated = wall_signal - (out / "state" / "last.pt").stat().st_mtime
        t0 = time.perf_counter()
        subprocess.run(PY + ["train", "--resume", str(out), "--quiet"], check=True, capture_output=True)
        part2 = time.perf_counter() - t0
        same = vaekit.Run.load(out).metrics[-1]["valid_elbo"] == vaekit.Run.load(tmp / "whole").metrics[-1]["valid_elbo"]

        lock_s = []
        for _ in range(200):
            t = time.perf_counter()
            RunLock(tmp / "whole").acquire().release()
            lock_s.append(time.perf_counter() - t)
        run = vaekit.Run.load(tmp / "whole")
        valid = run.data.valid  # loaded before the clock starts
        vaekit.eval.elbo_sums(run.model, valid[:8])  # and the first call's set-up done
        t = time.perf_counter()
        vaekit.eval.elbo_sums(run.model, valid)
        initial_validation = time.perf_counter() - t
        train_s = sum(float(r["seconds"]) for r in rows(tmp / "whole"))

    figures = {
        "data": a.data, "epochs": a.epochs, "median_epoch_s": epoch_s, "signal_after_epoch": saved,
        "stop_latency_s": latency, "training_repeated_s": repeated,
        "extra_wall_s": part1 + part2 - whole_wall, "uninterrupted_wall_s": whole_wall,
        "resumed_equals_uninterrupted": same,
        "lock_ms": 1e3 * statistics.median(lock_s),
        "initial_validation_s": initial_validation, "monitor_share_of_training": initial_validation / train_s,
    }
    print(f"{a.data}, {a.epochs} epochs of {epoch_s:.2f} s (median); SIGTERM half-way through epoch {saved + 1}:")
    print(f"  stopped {latency:.2f} s after the signal; {repeated:.2f} s of training repeated (since the checkpoint "
          f"of epoch {saved}); stop + resume took {figures['extra_wall_s']:+.1f} s over the uninterrupted "
          f"{whole_wall:.1f} s; resumed run's last valid ELBO equals the uninterrupted one's: {same}")
    print(f"  lock: {figures['lock_ms']:.2f} ms per run; validation of the initial weights: {initial_validation:.3f} s, "
          f"{100 * figures['monitor_share_of_training']:.2f}% of the {train_s:.1f} s of training")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
