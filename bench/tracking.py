"""What --track costs: training time with each tracker on against off, interleaved in one process.

Triples of identical runs (same data, model and seed): one with ``--track tensorboard``, one
with ``--track mlflow`` (its default store, an SQLite file beside the runs), at the default
interval (the metrics every epoch, 16 prior samples every 10 epochs and at the last), and one
without, rotating which goes first. Timed: the training loop (``Trainer.fit``: epochs,
validation, checkpoints and the logging), not loading the data, which is the same in both.
Printed: each triple's seconds and the overheads, and the median overhead of each tracker.

    python bench/tracking.py --data ../shared/data/binarized-mnist [--pairs 3] [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import vaekit
from vaekit.kinds import load_data
from vaekit import tracking
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

    def timing(f):   # the time spent in the trackers' calls, rendering the samples included
        def wrapped(*a, **k):
            t0 = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                timed["tracker"] = timed.get("tracker", 0.0) + time.perf_counter() - t0
        return wrapped

    loop.trackers = timing(loop.trackers)
    loop.Trainer.track = timing(loop.Trainer.track)
    for klass in tracking.TRACKERS.values():
        klass.checkpointed, klass.close = timing(klass.checkpointed), timing(klass.close)
    print(f"{bundle.describe()}; MLP 512-256, latent 16, {args.epochs} epochs, 2 threads\n")
    trackers = [t for t in ("tensorboard", "mlflow") if _installed(t)]
    print("| triple | off: training loop s | " + " | ".join(f"{t}: s | overhead" for t in trackers) + " |")
    print("|---|---|" + "---|---|" * len(trackers))
    ratios, direct = {t: [] for t in trackers}, {}
    order = ["none", *trackers]
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            seconds = {}
            for track in order[i % len(order):] + order[:i % len(order)]:
                cfg.train.track = track
                timed["tracker"] = 0.0
                vaekit.train(cfg, Path(tmp) / f"{track}-{i}", quiet=True, data=bundle, pictures=False)
                seconds[track] = timed["fit"]
                direct.setdefault(track, []).append(timed["tracker"] / timed["fit"])
            cells = []
            for t in trackers:
                ratios[t].append(seconds[t] / seconds["none"] - 1)
                cells.append(f"{seconds[t]:.2f} | {100 * ratios[t][-1]:+.2f}%")
            print(f"| {i + 1} | {seconds['none']:.2f} | " + " | ".join(cells) + " |")
    print()
    for t in trackers:
        print(f"median overhead of --track {t}: {100 * statistics.median(ratios[t]):+.2f}% (target <= 1%); "
              f"its calls timed directly: " + ", ".join(f"{100 * r:.2f}%" for r in direct[t])
              + " of the training loop (the first run of a process imports the tracker)")


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None

if __name__ == "__main__":
    main()
