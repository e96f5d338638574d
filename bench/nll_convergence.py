"""How far is a run's k-sample NLL estimate from converged, and would a wider proposal help?

On the first N test examples, draw max(k) importance samples per example from the encoder's
posterior once, and print the estimate -log (1/k) sum_i p(x, z_i) / q(z_i | x) over the first k
of them for each k (nested draws: the k = 5000 figure uses the first 5,000 of the same samples),
so the steps between k's show how much more samples would still take off. Then, with
``--widen``, the estimate at the smallest k with the proposal's standard deviations multiplied by
each factor (every layer of a hierarchical posterior), next to factor 1, all with the same
standard-normal draws: a proposal too narrow for the true posterior gains from a factor above 1.

    python bench/nll_convergence.py RUN --examples 400 --k 500,5000,50000 --widen 1.1,1.2
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.distributions import Normal

import vaekit
from vaekit.errors import VaekitError
from vaekit.model.nets.topdown import TopDownPosterior
from vaekit.model.objectives import log_mean_exp
from vaekit.run import Run


def widened(q, factor: float):
    """The proposal q with every standard deviation multiplied by ``factor``."""
    def wider(n, layer=1):
        return Normal(n.loc, n.scale * factor, validate_args=False)
    return q.map(wider) if isinstance(q, TopDownPosterior) else wider(q)


@torch.no_grad()
def log_weights(model, x: torch.Tensor, k: int, factor: float = 1.0, chunk: int = 500) -> torch.Tensor:
    """(k, B) log-weights of k draws from the encoder's proposal widened by ``factor``, in passes of ``chunk``."""
    q = model.encode(x)
    q = q if factor == 1.0 else widened(q, factor)
    return vaekit.log_weights(model, x, k, chunk, proposal=lambda x, y, samples: q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--examples", type=int, default=400)
    ap.add_argument("--k", default="500,5000,50000", help="sample counts, comma-separated")
    ap.add_argument("--widen", default="", help="factors for the proposal's standard deviations, e.g. 1.1,1.2")
    ap.add_argument("--batch", type=int, default=20, help="examples per pass")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ks = sorted(int(v) for v in args.k.split(","))
    factors = [float(v) for v in args.widen.split(",") if v]
    try:
        run = Run.load(args.run)
    except VaekitError as e:
        raise SystemExit(f"error: {e}") from None
    model = run.model.eval()
    if model.classes:
        raise SystemExit(f"{args.run}: this benchmark reads unlabelled test data; the run is a conditional model.")
    x = run.data.test[:args.examples]
    batches = [x[i:i + args.batch] for i in range(0, x.shape[0], args.batch)]

    torch.manual_seed(0)
    t = time.perf_counter()
    lw = [log_weights(model, xb, ks[-1]) for xb in batches]
    print(f"{x.shape[0]} test examples, {ks[-1]} samples each ({time.perf_counter() - t:.0f} s)")
    previous = None
    for k in ks:
        nll = torch.cat([-log_mean_exp(w[:k]) for w in lw]).mean().item()
        step = f"  ({nll - previous:+.3f} from the k before)" if previous is not None else ""
        print(f"k = {k}: NLL {nll:.3f} nats{step}")
        previous = nll
    for f in [1.0] + [f for f in factors if f != 1.0] if factors else []:
        torch.manual_seed(1)   # the same draws for every factor: z = mean + factor * std * noise
        nll = torch.cat([-log_mean_exp(log_weights(model, xb, ks[0], f)) for xb in batches]).mean().item()
        print(f"k = {ks[0]}, standard deviations x {f:g}: NLL {nll:.3f} nats")


if __name__ == "__main__":
    main()
