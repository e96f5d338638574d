"""The deep hierarchical network (--net resnet) beside the conv model at the same wall-clock budget.

For each model: a one-epoch probe measures the seconds an epoch takes (validation included) under
the same threads, then a run trains as many epochs as fit in --budget seconds (a cosine learning
rate over exactly those), then:
- the test NLL by importance sampling (k = --k) on --eval-n test examples (spread evenly over the
  test set, or the first ones with --eval-subset first), in nats and
  bits/dim (a discrete likelihood on the data's levels: -log2 P(x) / D, which is the bits/dim of
  the continuous density of uniformly dequantised data on [0, levels)^D scaled to a unit bin);
- sample quality (``Run.sample_quality``) for --samples prior samples at each --temperatures, in
  the features of one network trained on the first run's training split and shared by the other,
  so their Fréchet distances compare: the distance, precision, recall, and with labels the share
  of samples classified with probability >= 0.9.
Each run's prior samples are copied to --out, to look at; the figures go to --out/summary.json.

    python bench/images.py --data ../shared/data/binarized-mnist --budget 1800 --eval-n 500 --k 500 --threads 1 \
        --eval-subset first
    python bench/images.py --data fashion-mnist --likelihood logistic-mixture --budget 7200 --k 1000 \
        --skip-grad-norm 0
    python bench/images.py --data ../shared/data/binarized-mnist --models resnet --resnet gpu --device cuda \
        --budget 420 --eval-n 10000 --k 1000 --batch-size 128     # the GPU run: within 10 minutes in all
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import torch

import vaekit
from vaekit.cli import apply_flags, build_parser
from vaekit.eval import evaluate
from vaekit.kinds.media import spread
from vaekit.report import quality_rows

MODELS = {
    "conv": ["--net", "conv"],
    "resnet": ["--net", "resnet"],
}


def train(argv: list[str], out: Path, pictures: bool = True):
    cfg = apply_flags(vaekit.Config(), build_parser().parse_args(["train", *argv]))
    return vaekit.train(cfg, out=out, quiet=True, pictures=pictures)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--models", default="conv,resnet")
    p.add_argument("--likelihood", default="auto")
    p.add_argument("--budget", type=float, default=7200, help="training seconds for each model")
    p.add_argument("--epochs", type=int, default=0,
                   help="train this many epochs instead of those a probe fits in --budget (an epoch's time known)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-n", type=int, default=1000)
    p.add_argument("--eval-subset", choices=["spread", "first"], default="spread")
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--temperatures", default="1.0,0.8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resnet", default="small", choices=["small", "base", "gpu"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--clip-grad", default="200", help="the resnet's gradient clipping")
    p.add_argument("--skip-grad-norm", default="2000",
                   help="the resnet's threshold for skipping an update; gradient norms grow with the data's size "
                        "(about 100 on binarized MNIST; 20,000 to 43,000 in the first epochs on 8-bit Fashion-MNIST, "
                        "where 25,000 made runs recover: 0 there, clipping alone)")
    p.add_argument("--flags", default="", help="more train flags for every model")
    p.add_argument("--out", type=Path, default=Path("bench/out/images"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    common = ["--data", args.data, "--likelihood", args.likelihood, "--batch-size", str(args.batch_size),
              "--threads", str(args.threads), "--device", args.device, *args.flags.split()]
    summary, features_from = {}, None
    for name in args.models.split(","):
        flags = [*common, *MODELS[name], *(["--resnet", args.resnet, "--clip-grad", args.clip_grad,
                                            "--skip-grad-norm", args.skip_grad_norm] if name == "resnet" else [])]
        if args.epochs:
            epochs = args.epochs
        else:
            with tempfile.TemporaryDirectory() as tmp:
                probe = train([*flags, "--epochs", "1"], Path(tmp) / "probe", pictures=False)
                per_epoch = float(probe.metrics[-1]["seconds"])
            epochs = max(1, int(args.budget // per_epoch))
            print(f"{name}: {per_epoch:.0f} s an epoch, {epochs} epochs in {args.budget:.0f} s", flush=True)
        start = time.perf_counter()
        run = train([*flags, "--epochs", str(epochs), "--lr-schedule", "cosine"], args.out / name)
        seconds = time.perf_counter() - start
        test = run.data.split("test")
        test = test[:args.eval_n] if args.eval_subset == "first" else test[spread(len(test), args.eval_n).to(test.device)]
        ev = evaluate(run.model, test, k=args.k, quiet=True)
        dims = math.prod(test.shape[1:])
        row = {"epochs": epochs, "train_seconds": seconds, "parameters": sum(p.numel() for p in run.model.parameters()),
               "test_n": len(test), "k": args.k, "nll_nats": ev["nll_nats"], "elbo_nats": ev["elbo_nats"],
               "kl_nats": ev["kl_nats"], "bits_per_dim": ev["nll_nats"] / dims / math.log(2),
               "valid_elbo_last": float(run.metrics[-1]["valid_elbo"]), "quality": {}}
        print(f"{name}: test NLL {row['nll_nats']:.2f} nats ({row['bits_per_dim']:.4f} bits/dim; k = {args.k}, "
              f"{len(test)} examples), ELBO {row['elbo_nats']:.2f}, KL {row['kl_nats']:.2f}, {epochs} epochs in "
              f"{seconds:.0f} s", flush=True)
        temps = [float(t) for t in args.temperatures.split(",")] if name == "resnet" else [1.0]
        for t in temps:
            q = run.sample_quality(n=args.samples, temperature=t, features_from=features_from, quiet=True)
            row["quality"][str(t)] = q
            print(f"{name} T={t}: " + "; ".join(f"{k} {v}" for k, v in quality_rows(q)[1:]), flush=True)
            run.media.sample(run, args.out / f"{name}-T{t}.png", 64, 0, None, nrow=8, temperature=t)
        features_from = features_from or run.path
        summary[name] = row
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
        shutil.rmtree(run.path / "state", ignore_errors=True)


if __name__ == "__main__":
    main()
