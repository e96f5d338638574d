"""The deep Markov model on JSB Chorales (quarter notes, the literature's split): test negative
ELBO and importance-sampled NLL per time step in nats, and training seconds per epoch, beside the
exact NLL of the frame-wise baseline that ignores time (each key an independent Bernoulli with
its training frequency) and, with ``--baselines``, two models trained here on the same tensors:
an LSTM over the frames (p(x_t | x_<t), each key a Bernoulli given the state: an exact NLL) of
the DMM's recurrent size, and a frame-wise VAE (vaekit's MLP VAE on single frames, no time:
its IS-NLL a frame is a step's).

    python bench/sequences.py --data ../shared/data/jsb-chorales/jsb-chorales-quarter.json \
        [--epochs 300] [--k 500] [--latent 32] [--hidden 200] [--rnn-hidden 400] [--warmup 10]
        [--batch-size 8] [--lr 3e-3] [--lr-schedule cosine] [--flow 0] [--dropout 0] [--weight-decay 0]

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


def music_figures(rolls: torch.Tensor) -> tuple[float, float, float]:
    """What a listener hears, in three numbers over binary rolls (N, T, 88), NaN after the end:
    notes sounding a step, the share of steps whose chord differs from the one before (a held
    chord: 0), and the share of the notes in each sequence's 7 most used pitch classes (music in
    a key: about 0.95; random chords: about 0.7)."""
    notes, changes, diatonic = [], [], []
    for r in rolls:
        r = r[~torch.isnan(r).all(-1)]
        notes.append(r.sum(-1).mean().item())
        changes.append((r[1:] != r[:-1]).any(-1).float().mean().item())
        pcs = torch.zeros(12).index_add_(0, (torch.arange(88) + 21) % 12, r.sum(0))
        diatonic.append((pcs.sort(descending=True).values[:7].sum() / pcs.sum().clamp(min=1)).item())
    return tuple(sum(v) / len(v) for v in (notes, changes, diatonic))


def observed_frames(x: torch.Tensor) -> torch.Tensor:
    """The frames (n, 88) of a padded split that lie inside their sequences."""
    return x[~torch.isnan(x).all(-1)]


def lstm_nll(bundle, hidden: int, epochs: int, batch: int, lr: float) -> tuple[float, float, int]:
    """(test NLL a step, seconds an epoch, the epoch chosen) of an LSTM of the frames trained
    here: the test NLL at the epoch of the best validation NLL (it overfits 229 chorales soon)."""
    torch.manual_seed(0)
    rnn, head = torch.nn.LSTM(88, hidden, batch_first=True), torch.nn.Linear(hidden, 88)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr)

    def nll(x):   # summed over the steps inside the sequences
        seen = ~torch.isnan(x)
        x0 = torch.nan_to_num(x)
        inputs = torch.cat([torch.zeros_like(x0[:, :1]), x0[:, :-1]], 1)
        logits = head(rnn(inputs)[0])
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x0, reduction="none")
        return (bce * seen).sum()

    train, seconds, best = bundle.train, 0.0, (math.inf, math.nan, 0)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        for i in torch.randperm(len(train)).split(batch):
            loss = nll(train[i]) / len(i)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
        seconds += time.perf_counter() - t0
        with torch.no_grad():
            valid = nll(bundle.valid).item()
            if valid < best[0]:
                best = (valid, nll(bundle.test).item() / int(lengths_of(bundle.test).sum()), epoch)
    return best[1], seconds / epochs, best[2]


def frame_vae_nll(bundle, epochs: int, k: int, latent: int, hidden: int) -> tuple[float, float, float]:
    """(test -ELBO, IS-NLL a step, seconds an epoch) of vaekit's MLP VAE on single frames."""
    from vaekit.kinds import Bundle

    frames = {s: observed_frames(bundle.split(s)).view(-1, 1, 8, 11) for s in ("train", "valid", "test")}
    b = Bundle(name="jsb-frames", shape=(1, 8, 11), value="binary", modality="image", **frames)
    cfg = vaekit.Config()
    cfg.model.latent, cfg.model.hidden, cfg.model.likelihood = latent, [hidden, hidden], "bernoulli"
    cfg.train.epochs, cfg.train.batch_size, cfg.train.threads, cfg.train.warmup_epochs = epochs, 100, 2, 10
    with tempfile.TemporaryDirectory() as tmp:
        run = vaekit.train(cfg, Path(tmp) / "frames", quiet=True, data=b, pictures=False)
        ev = run.evaluate(k=k, quiet=True)
        seconds = sum(r["seconds"] for r in run.metrics) / len(run.metrics)
    return -ev["elbo_nats"], ev["nll_nats"], seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--rnn-hidden", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--flow", type=int, default=0, help="IAF steps on each step's q(z_t | .)")
    ap.add_argument("--dropout", type=float, default=0.0, help="dropout on the emission's hidden layers")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="Adam's weight decay")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--lr-schedule", default="cosine", choices=("none", "cosine", "plateau"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--baselines", action="store_true", help="also train the LSTM and the frame-wise VAE")
    ap.add_argument("--baseline-epochs", type=int, default=200)
    ap.add_argument("--skip-dmm", action="store_true", help="the baselines alone")
    ap.add_argument("--lstm-only", action="store_true", help="of the baselines, the LSTM alone")
    args = ap.parse_args()
    cfg = vaekit.Config()
    cfg.data.source = args.data
    m, t = cfg.model, cfg.train
    m.latent, m.hidden, m.rnn_hidden = args.latent, [args.hidden], args.rnn_hidden
    m.flow, m.decoder_dropout, t.weight_decay = args.flow, args.dropout, args.weight_decay
    t.epochs, t.warmup_epochs, t.batch_size, t.lr, t.threads = args.epochs, args.warmup, args.batch_size, args.lr, 2
    t.lr_schedule = args.lr_schedule
    bundle = load_data(cfg.data)
    steps = int(lengths_of(bundle.test).sum())
    print(bundle.describe())
    print(f"test steps: {steps}; frame-wise baseline (exact): {frame_wise_nll(bundle):.3f} nats a step\n")
    print("| model | epochs | s / epoch | test -ELBO / step | test NLL / step | active units |")
    print("|---|---|---|---|---|---|")
    if args.baselines:
        nll, sec, chosen = lstm_nll(bundle, args.rnn_hidden, args.baseline_epochs, args.batch_size, 1e-3)
        print(f"| LSTM of the frames, {args.rnn_hidden} units (exact; the best validation epoch, {chosen}) | "
              f"{args.baseline_epochs} | {sec:.2f} | - | {nll:.3f} | - |", flush=True)
        if args.lstm_only:
            return
        neg_elbo, nll, sec = frame_vae_nll(bundle, args.baseline_epochs, args.k, args.latent, args.hidden)
        print(f"| frame-wise VAE, MLP {args.hidden}-{args.hidden}, latent {args.latent} (IS, k={args.k}) | "
              f"{args.baseline_epochs} | {sec:.2f} | {neg_elbo:.3f} | {nll:.3f} | - |")
    if args.skip_dmm:
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "dmm"
        t0 = time.perf_counter()
        run = vaekit.train(cfg, out, quiet=True, data=bundle, pictures=False)
        seconds = time.perf_counter() - t0
        per_epoch = sum(r["seconds"] for r in run.metrics) / len(run.metrics)
        ev = run.evaluate(k=args.k, quiet=True)
    n = ev["n"]
    extras = (f", IAF {args.flow}" if args.flow else "") + (f", dropout {args.dropout:g}" if args.dropout else "") \
        + (f", weight decay {args.weight_decay:g}" if args.weight_decay else "")
    print(f"| vaekit DMM, latent {args.latent}, transition/emission {args.hidden}, GRU {args.rnn_hidden}{extras}, batch "
          f"{args.batch_size}, lr {args.lr:g} {args.lr_schedule} (IS, k={args.k}) | "
          f"{len(run.metrics)} | {per_epoch:.2f} | {-ev['elbo_nats'] * n / steps:.3f} | "
          f"{ev['nll_nats'] * n / steps:.3f} | {ev['active_units']} of {ev['latent']} |")
    torch.manual_seed(0)
    drawn = run.model.sample(64, mean=False, steps=int(lengths_of(bundle.test).median()))
    for what, rolls in (("test chorales", bundle.test), ("prior samples (drawn, not thresholded means)", drawn)):
        notes, changes, diatonic = music_figures(rolls)
        print(f"{what}: {notes:.2f} notes a step, the chord changes at {100 * changes:.0f}% of the steps, "
              f"{100 * diatonic:.1f}% of the notes in the 7 most used pitch classes")
    print(f"\ntraining took {seconds:.0f} s; bits a frame value {ev['bits_per_dim']:.4f} "
          f"({math.log(2) * ev['bits_per_dim'] * 88:.3f} nats a step over 88 keys)")

if __name__ == "__main__":
    main()
