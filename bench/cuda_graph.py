"""Training throughput with and without the CUDA-graph step (`--cuda-graph on` / `off`), or
with and without mixed precision (`--compare amp`: `--amp off` / `on`, bfloat16 autocast on a CPU).

For each configuration of bench/budget_runs.py named in --jobs, trains --epochs epochs with the
ordinary step and then with the step replayed as one CUDA graph (same seed, same process, one
after the other), and prints the training examples per second of each: the median over the
epochs after the first (the first holds the warm-up steps and the capture), validation and
checkpoint excluded, as metrics.csv times them, and the validation bound after the last epoch.
With --compare amp both runs take the ordinary step (`--cuda-graph off`), so that only the
precision differs. Writes the figures to --json.

    python bench/cuda_graph.py --data ../shared/data/binarized-mnist --jobs iwae50-wd,tdvamp-wd-lv
    python bench/cuda_graph.py --data ../shared/data/binarized-mnist --jobs iwae50-wd --compare amp --device cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

import vaekit
from budget_runs import JOBS, for_epochs
from vaekit.cli import apply_flags, build_parser
from vaekit.train import native_bfloat16


def throughput(flags: list[str], option: str, mode: str, out: Path) -> dict:
    cfg = apply_flags(vaekit.Config(), build_parser().parse_args(["train", *flags, option, mode]))
    run = vaekit.train(cfg, out=out, quiet=True, pictures=False)
    rows = run.metrics[1:] or run.metrics
    return {"examples_per_s": statistics.median(r["examples_per_s"] for r in rows),
            "step_seconds_per_epoch": statistics.median(r["seconds"] for r in rows),
            "valid_bound_last": rows[-1].get("valid_iwae") or rows[-1]["valid_elbo"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--jobs", default="iwae50-wd,tdvamp-wd-lv", help=f"comma-separated, from: {', '.join(JOBS)}")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--device", default="cuda")
    p.add_argument("--compare", choices=["cuda-graph", "amp"], default="cuda-graph",
                   help="the option trained off, then on (default: cuda-graph)")
    p.add_argument("--json", type=Path, help="write the figures here too")
    args = p.parse_args()
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else \
        f"{args.device} ({torch.backends.cpu.get_cpu_capability()}, native bfloat16: " \
        f"{'yes' if native_bfloat16() else 'no'}), {torch.get_num_threads()} threads"
    option = "--" + args.compare
    on = "CUDA graph" if args.compare == "cuda-graph" else "mixed prec."
    print(f"device: {device}, torch {torch.__version__}; {args.epochs} epochs each, median of epochs 2..; "
          f"{option} off, then on")
    print(f"{'job':<22} {'ordinary ex/s':>14} {on + ' ex/s':>16} {'speed-up':>9} {'valid bound off / on':>22}")
    results = {"device": device, "torch": torch.__version__, "epochs": args.epochs, "compare": args.compare,
               "jobs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.jobs.split(","):
            flags = for_epochs(JOBS[name], args.epochs) + ["--data", str(args.data), "--device", args.device]
            if args.compare == "amp":  # only the precision differs: float16 on CUDA would refuse the graph anyway
                flags += ["--cuda-graph", "off"]
            r = {mode: throughput(flags, option, mode, Path(tmp) / f"{name}-{mode}") for mode in ("off", "on")}
            r["speedup"] = r["on"]["examples_per_s"] / r["off"]["examples_per_s"]
            r["flags"] = flags + [option, "off|on"]  # what each pair of runs was trained with
            results["jobs"][name] = r
            print(f"{name:<22} {r['off']['examples_per_s']:>14,.0f} {r['on']['examples_per_s']:>16,.0f} "
                  f"{r['speedup']:>8.2f}x {r['off']['valid_bound_last']:>10.3f} / {r['on']['valid_bound_last']:.3f}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
