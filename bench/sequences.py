"""The deep Markov model on JSB Chorales (quarter notes, the literature's split): test negative
ELBO and importance-sampled NLL per time step in nats, and training seconds per epoch, beside the
exact NLL of the frame-wise baseline that ignores time (each key an independent Bernoulli with
its training frequency).

    python bench/sequences.py --data ../shared/data/jsb-chorales/jsb-chorales-quarter.json \
        [--epochs 300] [--k 500] [--latent 32] [--hidden 200] [--rnn-hidden 400] [--warmup 50]

The per-step figures are totals over the test set divided by its number of time steps (4,725 at
quarter-note resolution), over the 88 piano keys, as the papers report them.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

import vaekit
from vaekit.kinds import load_data
from vaekit.model.nets.markov import lengths_of


def frame_wise_nll(bundle) -> float:
    """Nats per step of independent Bernoulli keys at their training frequencies (add-one smoothed)."""
    train, test = bundle.train, bundle.test
    seen = ~torch.isnan(train)
    p = (torch.nan_to_num(train).sum((0, 1)) + 1) / (seen[..., 0].sum() + 2)
    x = torch.nan_to_num(test)
    inside = ~torch.isnan(test).all(-1)
    ll = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    return -(ll * inside).sum().item() / inside.sum().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--rnn-hidden", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cfg = vaekit.Config()
    cfg.data.source = args.data
    m, t = cfg.model, cfg.train
    m.latent, m.hidden, m.rnn_hidden = args.latent, [args.hidden], args.rnn_hidden
    t.epochs, t.warmup_epochs, t.batch_size, t.lr, t.threads = args.epochs, args.warmup, args.batch_size, args.lr, 2
    bundle = load_data(cfg.data)
    steps = int(lengths_of(bundle.test).sum())
    print(bundle.describe())
    print(f"test steps: {steps}; frame-wise baseline (exact): {frame_wise_nll(bundle):.3f} nats a step\n")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "dmm"
        t0 = time.perf_counter()
        run = vaekit.train(cfg, out, quiet=True, data=bundle, pictures=False)
        seconds = time.perf_counter() - t0
        per_epoch = sum(r["seconds"] for r in run.metrics) / len(run.metrics)
        ev = run.evaluate(k=args.k, quiet=True)
    n = ev["n"]
    print(f"| model | epochs | s / epoch | test -ELBO / step | test IS-NLL / step (k={args.k}) | active units |")
    print("|---|---|---|---|---|---|")
    print(f"| vaekit DMM, latent {args.latent}, transition/emission {args.hidden}, GRU {args.rnn_hidden} | "
          f"{len(run.metrics)} | {per_epoch:.2f} | {-ev['elbo_nats'] * n / steps:.3f} | "
          f"{ev['nll_nats'] * n / steps:.3f} | {ev['active_units']} of {ev['latent']} |")
    print(f"\ntraining took {seconds:.0f} s; bits a frame value {ev['bits_per_dim']:.4f} "
          f"({math.log(2) * ev['bits_per_dim'] * 88:.3f} nats a step over 88 keys)")


if __name__ == "__main__":
    main()
