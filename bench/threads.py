"""Epoch time alone and beside one busy-looping process: every core (--threads = all cores, what
PyTorch takes by default) against the count vaekit chooses and revises each epoch.

Trains a model for --epochs epochs in each setting, in turn, and prints the median seconds of an
epoch over the second half of each run (the first epoch of the chosen count uses every core; from
the second it has measured the load). --model: the demo model (embedded digits), the MLP VAE of
binarized MNIST (784-300-300-40; --data) or the conv model on 10,000 of its images.

    python bench/threads.py [--epochs 16] [--rounds 2] [--model demo|mlp|conv] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


MODELS = {
    "demo": ([], "demo model (embedded digits)"),
    "mlp": (["--net", "mlp", "--hidden", "300,300", "--latent", "40", "--activation", "elu", "--batch-size", "100",
             "--compile", "off"], "MLP VAE on binarized MNIST (784-300-300-40, batch 100)"),
    "conv": (["--net", "conv", "--latent", "32", "--batch-size", "100", "--subset", "10000", "--compile", "off"],
             "conv VAE on 10,000 binarized MNIST images (batch 100)"),
}


def epoch_seconds(out: Path, threads: str | None, epochs: int, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "vaekit", "train", "--epochs", str(epochs), "--quiet", "--out", str(out), *extra]
    if threads:
        cmd += ["--threads", threads]
    subprocess.run(cmd, check=True, capture_output=True)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    return statistics.median(float(r["seconds"]) for r in rows[len(rows) // 2:])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", choices=list(MODELS), default="demo")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("VAEKIT_DATA", "../shared/data")))
    args = p.parse_args()
    extra, what = MODELS[args.model]
    if args.model != "demo":
        extra = ["--data", str(args.data / "binarized-mnist"), *extra]
    cores = len(os.sched_getaffinity(0))
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for beside in ("alone", "beside one busy process"):
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if beside != "alone" else None
                try:
                    for name, threads in ((f"{cores} threads (every core)", str(cores)), ("chosen by vaekit", None)):
                        out = Path(tmp) / f"{r}-{len(results)}-{name[:3]}-{beside[:5]}"
                        results.setdefault((beside, name), []).append(epoch_seconds(out, threads, args.epochs, extra))
                finally:
                    if busy:
                        busy.kill()
                        busy.wait()
    print(f"{cores} cores; {what}, median seconds an epoch over epochs "
          f"{args.epochs // 2 + 1}-{args.epochs}, {args.rounds} rounds\n")
    print("| machine | threads | seconds an epoch (each round) |\n|---|---|---|")
    for (beside, name), secs in results.items():
        print(f"| {beside} | {name} | {', '.join(f'{s:.3f}' for s in secs)} |")


if __name__ == "__main__":
    main()
