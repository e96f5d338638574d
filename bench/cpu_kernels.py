"""Benchmark: vaekit's CPU log-sum-exp and k-sample pass size against the plain choices, on a
trained run (a VampPrior's components only spread out once trained).

    OMP_NUM_THREADS=1 python bench/cpu_kernels.py RUN [--examples 24] [--rounds 3]

Reports, each measured alternately in the same process, so that the ratios hold on a busy machine:
  1. log-sum-exp over the VampPrior components of a batch of the run's test data:
     ``torch.logsumexp`` against ``vaekit.model.objectives.logsumexp``, forward, and forward + backward;
  2. the training step (the run's objective and batch size on its training data, Adam) with
     either log-sum-exp in the prior;
  3. the k = 5000 NLL of the first --examples test images: with torch.logsumexp and 32,768-row
     passes (the earlier defaults), with vaekit's log-sum-exp and 32,768-row passes, and with
     the default passes of ``vaekit.eval.pass_rows``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import vaekit
import vaekit.model.priors
from vaekit.eval import evaluate, pass_rows
from vaekit.model.objectives import Objective, logsumexp


def best_ms(f, reps: int = 20) -> float:
    f()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def mixture_components(model, z: torch.Tensor) -> torch.Tensor:
    """(N, K) log N(z; m_k, v_k) of the run's VampPrior; for a hierarchical prior, over its top
    layer (the prior's ``layer_means`` of z)."""
    vamp = model.prior
    while isinstance(vamp, vaekit.model.priors.HierarchicalPrior):
        vamp = vamp.top_prior
    if not isinstance(vamp, vaekit.model.priors.VampPrior):
        raise SystemExit("this benchmark needs a run with a VampPrior (--prior vamp or --top-prior vamp)")
    z_top = z if vamp is model.prior else list(model.prior.layer_means(z).values())[-1]
    return vaekit.model.priors.component_log_probs(z_top, *vamp.components())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a trained run directory with a VampPrior")
    p.add_argument("--examples", type=int, default=24, help="test images for the NLL timing (default 24)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=40, help="training steps per timing (default 40)")
    a = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}")
    run = vaekit.Run.load(a.run)
    model = run.model
    test = run.data.split("test")

    # 1. log-sum-exp over the components
    with torch.no_grad():
        z = model.encode(test[:4096]).rsample()
        comps = mixture_components(model, z)
    far = (comps - comps.amax(-1, keepdim=True) < -87).float().mean().item()
    print(f"\n1. log-sum-exp over {comps.shape[1]} components, {comps.shape[0]} rows "
          f"({far:.0%} of the terms lie more than 87 below their row's largest)")
    x = comps.clone().requires_grad_()

    def fwd_bwd(f):
        x.grad = None
        f(x, -1).sum().backward()

    for name, f in [("torch.logsumexp", torch.logsumexp), ("vaekit logsumexp", logsumexp)]:
        with torch.no_grad():
            fw = best_ms(lambda: f(comps, -1))
        print(f"   {name:18s} forward {fw:7.2f} ms   forward + backward {best_ms(lambda: fwd_bwd(f)):7.2f} ms")

    # 2. the training step with either log-sum-exp
    tc = run.config.train
    batch = tc.batch_size or 200
    opt = torch.optim.Adam(model.parameters(), lr=1e-6)
    rows = run.data.split("train")
    objective = Objective.from_config(tc, rows.shape[0] // batch)
    model.train()

    def steps() -> float:
        t = time.perf_counter()
        for s in range(a.steps):
            xb = rows[(s * batch) % (rows.shape[0] - batch):][:batch]
            loss, _ = objective(model, xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return a.steps * batch / (time.perf_counter() - t)

    rates = {"torch.logsumexp": [], "vaekit logsumexp": []}
    for r in range(a.rounds):
        for name, f in (list(rates.items()) if r % 2 == 0 else list(rates.items())[::-1]):
            vaekit.model.priors.logsumexp = torch.logsumexp if name == "torch.logsumexp" else logsumexp
            f.append(steps())
    vaekit.model.priors.logsumexp = logsumexp
    t_rate, v_rate = (statistics.median(v) for v in rates.values())
    print(f"\n2. training step, batch {batch}, {tc.objective}: torch.logsumexp {t_rate:,.0f} img/s, "
          f"vaekit {v_rate:,.0f} img/s: {v_rate / t_rate:.2f}x")

    # 3. k = 5000 NLL passes
    model.eval()
    xs = test[:a.examples]
    default = pass_rows(model, xs.device)
    setups = {"before: torch.logsumexp, 32,768-row passes": (torch.logsumexp, 32768),
              "32,768-row passes": (logsumexp, 32768),
              f"{default:,}-row passes (default)": (logsumexp, default)}
    times = {name: [] for name in setups}
    for r in range(a.rounds):
        for name in (list(setups) if r % 2 == 0 else list(setups)[::-1]):
            vaekit.model.priors.logsumexp, rows_ = setups[name]
            t = time.perf_counter()
            evaluate(model, xs, k=5000, batch_rows=rows_, quiet=True)
            times[name].append(time.perf_counter() - t)
    vaekit.model.priors.logsumexp = logsumexp
    med = {name: statistics.median(v) for name, v in times.items()}
    before, now = med[next(iter(med))], med[f"{default:,}-row passes (default)"]
    print(f"\n3. k = 5000 NLL of {a.examples} test images:")
    for name, t in med.items():
        print(f"   {name:45s} {t:6.2f} s   {before / t:.2f}x")
    print(f"   the {len(test):,} test images would take about {now / a.examples * len(test) / 60:.0f} min "
          f"(before: {before / a.examples * len(test) / 60:.0f} min)")

if __name__ == "__main__":
    main()
