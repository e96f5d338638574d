"""How far the terms of a run's bounds move under bfloat16 autocast (`--amp on` on a CPU).

Draws the same k samples per test image (same seed) with autocast off and on, and prints the mean
and largest absolute difference of log p(x | z), log p(z) and log q(z | x) over the samples, and of
the k-sample bound per image. The networks compute in bfloat16 under autocast, so some difference
is expected; the Gaussians, the samples and the log-densities themselves are kept in float32.

    python bench/amp_precision.py runs/x --examples 100 --k 50
"""

from __future__ import annotations

import argparse
import sys

import torch

from vaekit.errors import VaekitError
from vaekit.model.objectives import log_mean_exp
from vaekit.run import Run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--examples", type=int, default=100, help="the first N test images")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        run = Run.load(args.run)
        x = run.data.test[:args.examples]
        y = run.labels("test")
    except VaekitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    y = None if y is None else y[:args.examples]
    model = run.model.eval()
    terms = {}
    for amp in (False, True):
        torch.manual_seed(args.seed)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            t = model.terms(x, args.k, y=y)
        terms[amp] = {n: t[n].float() for n in ("log_px", "log_pz", "log_qz")}
        terms[amp]["bound"] = log_mean_exp(terms[amp]["log_px"] + terms[amp]["log_pz"] - terms[amp]["log_qz"], 0)
    print(f"{args.run}: {args.examples} test images, k = {args.k}; |bfloat16 autocast - float32| in nats")
    for name in ("log_px", "log_pz", "log_qz", "bound"):
        d = (terms[True][name] - terms[False][name]).abs()
        print(f"  {name:<7} mean {d.mean():.4f}  max {d.max():.4f}")
    print(f"  bound, mean over the images: float32 {terms[False]['bound'].mean():.4f}, "
          f"bfloat16 autocast {terms[True]['bound'].mean():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
