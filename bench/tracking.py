"""What --track tensorboard costs: training time with it on against off, interleaved in one process.

Pairs of identical runs (same data, model and seed), one with ``--track tensorboard`` at the
default interval (the metrics every epoch, 16 prior samples every 10 epochs and at the last),
one without, alternating which goes first. Timed: the training loop (``Trainer.fit``: epochs,
validation, checkpoints and the logging), not loading the data, which is the same in both.
Printed: each pair's seconds and the overhead, and the median overhead.

    python bench/tracking.py --data ../shared/data/binarized-mnist [--pairs 3] [--epochs 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import vaekit
from vaekit.kinds import load_data
from vaekit.train import loop


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    cfg = vaekit.Config()
    cfg.data.source, cfg.train.epochs, cfg.train.threads = args.data, args.epochs, 2
    bundle = load_data(cfg.data)
    timed = {}
    fit = loop.Trainer.fit

    def timed_fit(self, pictures=True):   # the loop alone: epochs, validation, checkpoints and the logging
        t0 = time.perf_counter()
        out = fit(self, pictures=False)
        timed["fit"] = time.perf_counter() - t0
        return out

    loop.Trainer.fit = timed_fit
    print(f"{bundle.describe()}; MLP 512-256, latent 16, {args.epochs} epochs, 2 threads\n")
    print("| pair | off: training loop s | tensorboard: training loop s | overhead |")
    print("|---|---|---|---|")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            seconds = {}
            for track in (("none", "tensorboard") if i % 2 == 0 else ("tensorboard", "none")):
                cfg.train.track = track
                vaekit.train(cfg, Path(tmp) / f"{track}-{i}", quiet=True, data=bundle, pictures=False)
                seconds[track] = timed["fit"]
            ratios.append(seconds["tensorboard"] / seconds["none"] - 1)
            print(f"| {i + 1} | {seconds['none']:.2f} | {seconds['tensorboard']:.2f} | {100 * ratios[-1]:+.2f}% |")
    print(f"\nmedian overhead of --track tensorboard: {100 * statistics.median(ratios):+.2f}% (target <= 1%)")


if __name__ == "__main__":
    main()
