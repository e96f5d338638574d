"""The IWAE bound trained with the standard and the doubly reparameterised encoder gradient.

For each seed, trains the same model twice, once with `--estimator standard` and once with
`--estimator dreg` (same seed, same data, same flags otherwise), evaluates each on the test set
with --eval-k samples, and prints the test NLL, the best validation IWAE-k bound, and the
training time of each, with the mean difference over the seeds. Writes the figures to --json.

    python bench/estimators.py --data digits --k 32 --epochs 150 --seeds 0,1
    python bench/estimators.py --data ../shared/data/binarized-mnist --k 50 --epochs 300 --seeds 0 \\
        --flags "--likelihood bernoulli --hidden 300,300 --latent 40 --activation elu --batch-size 200 \\
                 --lr 1e-3 --lr-schedule cosine --amp off" --device cuda
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import tempfile
from pathlib import Path

import torch

import vaekit
from vaekit.cli import apply_flags, build_parser


def train_and_evaluate(flags: list[str], out: Path, eval_k: int) -> dict:
    cfg = apply_flags(vaekit.Config(), build_parser().parse_args(["train", *flags]))
    run = vaekit.train(cfg, out=out, quiet=True, pictures=False)
    ev = run.evaluate(k=eval_k, quiet=True)
    return {"test_nll": ev["nll_nats"], "test_elbo": ev["elbo_nats"],
            "best_valid_iwae": max(r["valid_iwae"] for r in run.metrics),
            "step_seconds": sum(r["seconds"] for r in run.metrics)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="digits")
    p.add_argument("--k", type=int, default=32, help="samples of the training bound")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--eval-k", type=int, default=5000)
    p.add_argument("--flags", default="", help="more `vaekit train` flags, as one string")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="write the figures here too")
    args = p.parse_args()
    base = ["--data", args.data, "--objective", "iwae", "--k", str(args.k), "--epochs", str(args.epochs),
            "--device", args.device, *shlex.split(args.flags)]
    print(f"data {args.data}, IWAE k = {args.k}, {args.epochs} epochs, test NLL with k = {args.eval_k}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'seed':>4} {'estimator':>9} {'test NLL':>9} {'valid IWAE':>11} {'steps (s)':>10}")
    results = {"data": args.data, "k": args.k, "epochs": args.epochs, "eval_k": args.eval_k,
               "flags": args.flags, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds.split(","):
            for estimator in ("standard", "dreg"):
                r = train_and_evaluate(base + ["--seed", seed, "--estimator", estimator],
                                       Path(tmp) / f"{estimator}-{seed}", args.eval_k)
                results["runs"].append({"seed": int(seed), "estimator": estimator, **r})
                print(f"{seed:>4} {estimator:>9} {r['test_nll']:>9.3f} {r['best_valid_iwae']:>11.3f} "
                      f"{r['step_seconds']:>10.1f}", flush=True)
    by = {e: [r for r in results["runs"] if r["estimator"] == e] for e in ("standard", "dreg")}
    gain = statistics.mean(a["test_nll"] - b["test_nll"] for a, b in zip(by["standard"], by["dreg"]))
    cost = statistics.mean(b["step_seconds"] / a["step_seconds"] for a, b in zip(by["standard"], by["dreg"]))
    results.update(nll_gain_of_dreg=gain, step_time_ratio=cost)
    print(f"dreg: test NLL {gain:+.3f} nats better on average (standard minus dreg), "
          f"{cost:.2f}x the training step time")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
