"""Train several likelihood configurations side by side within a wall-clock budget, then
evaluate each (test NLL with k importance samples).

Made for a GPU lent for a fixed time: every configuration runs in its own process on the
same device. Each first measures its own wall time per epoch, validation and checkpoint
included, as the difference between a 2-epoch and a 5-epoch run (with the others running, so
under the same contention; start-up and the end-of-training pictures cancel), then trains as
many epochs as fit before the common deadline (with a cosine schedule over exactly that many),
then runs `vaekit evaluate` (and with --finetune, an IWAE-50 fine-tune and an encoder refit,
each evaluated too). So the whole command takes --train-seconds plus the evaluation (about a
minute on an H200 with six jobs; the fine-tuning adds about a minute).
A summary with epochs, seconds and the evaluation goes to <out>/summary.json; each run
directory (without its trainer state, with its -ft and -q runs) is packed into <out>/<name>.tar.gz.

    python bench/budget_runs.py --data ../shared/data/binarized-mnist --train-seconds 420 \
        --device cuda --out /tmp/budget --jobs iwae50,vamp-iwae50,hvamp-iwae50
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import vaekit

MLP = ["--likelihood", "bernoulli", "--hidden", "300,300", "--latent", "40", "--activation", "elu",
       "--batch-size", "200", "--lr", "1e-3", "--lr-schedule", "cosine", "--amp", "off"]
VAMP = ["--prior", "vamp", "--prior-components", "500"]
HVAMP = ["--prior", "hierarchical", "--top-prior", "vamp", "--prior-components", "500"]
TDVAMP = HVAMP + ["--inference", "top-down", "--top-latent", "40"]
IWAE50 = ["--objective", "iwae", "--k", "50"]
DECAY = ["--weight-decay", "1e-4"]
JOBS = {
    "elbo": MLP + ["--warmup", "20"],
    "iwae50": MLP + IWAE50,
    "vamp": MLP + VAMP + ["--warmup", "20"],
    "vamp-iwae50": MLP + VAMP + IWAE50,
    "hvamp": MLP + HVAMP + ["--warmup", "20"],
    "hvamp-iwae50": MLP + HVAMP + IWAE50,
    "tdvamp": MLP + TDVAMP + ["--warmup", "20"],
    "tdvamp-iwae50": MLP + TDVAMP + IWAE50,
    # KL warm-up over 100 epochs, as in Tomczak & Welling (2018); with gated units, as their networks
    "hvamp-wu100": MLP + HVAMP + ["--warmup", "100"],
    "tdvamp-wu100": MLP + TDVAMP + ["--warmup", "100"],
    "tdvamp-wu200": MLP + TDVAMP + ["--warmup", "200"],
    "tdvamp-gated-wu100": MLP + TDVAMP + ["--warmup", "100", "--activation", "gated"],
    # Tomczak & Welling's two-layer networks: a two-layer p(z1|z2), and z1, z2 on paths of their own
    "tdvamp-tw-wu200": MLP + TDVAMP + ["--warmup", "200", "--prior-hidden", "300,300", "--prior-activation", "elu",
                                       "--latent-paths"],
    # three stochastic layers: z3 of 40 above z2 and z1
    "tdvamp3-wu200": MLP + HVAMP + ["--inference", "top-down", "--top-latent", "40,40", "--warmup", "200"],
    # IWAE-50 with Adam's L2 weight decay (1e-4 gained 0.29 nats of NLL for the top-down VampPrior): the one-layer
    # model, the same with a log-variance bounded to [-6, 2], the same with wider networks, and two stochastic
    # layers with N(0, I) over z2 and bottom-up inference, as in Burda et al. (2016)
    "iwae50-wd": MLP + IWAE50 + DECAY,
    "iwae50-wd-lv": MLP + IWAE50 + DECAY + ["--logvar-range=-6,2"],
    "iwae50-wd-w500": MLP + IWAE50 + DECAY + ["--hidden", "500,500"],
    "hnormal-iwae50-wd": MLP + ["--prior", "hierarchical", "--top-prior", "normal", "--top-latent", "40",
                                "--prior-hidden", "300,300", "--prior-activation", "elu"] + IWAE50 + DECAY,
    # the 83.28-nat top-down recipe (600 epochs, 200 of KL warm-up, on the CPU), its warm-up a third of
    # however many epochs the budget allows; and the same with a larger weight decay
    "tdvamp-wd-lv": MLP + TDVAMP + ["--prior-hidden", "300,300", "--prior-activation", "elu", "--logvar-range=-6,2",
                                    "--warmup", "EPOCHS/3"] + DECAY,
}
JOBS["tdvamp-wd3-lv"] = JOBS["tdvamp-wd-lv"] + ["--weight-decay", "3e-4"]
# the one-layer IWAE-50 model with the doubly reparameterised encoder gradient, and the top-down
# VampPrior with two steps of inverse autoregressive flow after its encoder (874 epochs of it on the
# CPU ended 0.45 nats behind the same recipe without the flow: bench/RESULTS.md)
JOBS["iwae50-wd-dreg"] = JOBS["iwae50-wd"] + ["--estimator", "dreg"]
JOBS["tdvamp-wd-lv-flow"] = JOBS["tdvamp-wd-lv"] + ["--flow", "2"]
# Larger batches, with Adam's learning rate grown about as the square root of the batch. While
# the GPU idles between kernel launches (two or three runs sharing it), a step costs about the
# same at batch 200 and 1000, so a fixed wall time buys more examples. With six runs sharing an
# H200 it was busy, and these gained nothing (bench/RESULTS.md).
LARGER = {500: "1.5e-3", 1000: "2e-3"}
for _name in ["iwae50", "vamp-iwae50", "tdvamp-wu100", "tdvamp-wu200", "tdvamp-gated-wu100", "tdvamp-tw-wu200",
              "tdvamp3-wu200"]:
    for _batch, _lr in LARGER.items():
        JOBS[f"{_name}-b{_batch}"] = JOBS[_name] + ["--batch-size", str(_batch), "--lr", _lr]
VAEKIT = [sys.executable, "-m", "vaekit"]


def for_epochs(flags: list[str], epochs: int) -> list[str]:
    """The flags for a run of this many epochs: "EPOCHS/3" stands for a third of them."""
    return [str(max(1, epochs // 3)) if f == "EPOCHS/3" else f for f in flags] + ["--epochs", str(epochs)]


def epoch_seconds(flags: list[str], probe: Path) -> float:
    """Wall seconds per epoch, validation and checkpoint included: the difference between a
    5-epoch and a 2-epoch run divided by 3, so that start-up, the first epoch's warm-up and the
    end-of-training pictures cancel. Never less than the median training step time of the
    longer run (the difference of two noisy wall times can come out too small)."""
    walls = []
    for epochs in (2, 5):
        t = time.time()
        subprocess.run(VAEKIT + ["train", *for_epochs(flags, epochs), "--out", str(probe)], check=True)
        walls.append(time.time() - t)
        steps = sorted(r["seconds"] for r in vaekit.Run.load(probe).metrics[1:])
        shutil.rmtree(probe)
    return max((walls[1] - walls[0]) / 3, steps[len(steps) // 2])


def train_and_evaluate(train_flags: list[str], out: Path, args) -> tuple[vaekit.Run, float, float]:
    """`vaekit train ... --out out`, then `vaekit evaluate out --k args.k`: the run, and the wall
    seconds of each."""
    t0 = time.time()
    subprocess.run(VAEKIT + ["train", *train_flags, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    t1 = time.time()
    subprocess.run(VAEKIT + ["evaluate", str(out), "--k", str(args.k), "--device", args.device, "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    return vaekit.Run.load(out), t1 - t0, time.time() - t1


def one(name: str, args) -> dict:
    flags = JOBS[name] + ["--data", str(args.data), "--device", args.device, "--seed", str(args.seed), "--quiet",
                          *args.extra.split()]
    out = args.out / name
    t = time.time()
    per_epoch = epoch_seconds(flags, args.out / f"{name}-probe")
    epochs = max(1, int((args.deadline - time.time() - 15) / per_epoch))
    probe_wall = time.time() - t
    run, train_wall, eval_wall = train_and_evaluate(for_epochs(flags, epochs), out, args)
    rows, ev, (best, _, _) = run.metrics, run.evaluation, run.best()
    result = {"job": name, "command": "vaekit train " + " ".join(for_epochs(flags, epochs)),
              "probe_seconds_per_epoch": per_epoch, "epochs": epochs, "train_wall_s": train_wall,
              "train_step_s": sum(r["seconds"] for r in rows), "eval_wall_s": eval_wall,
              "probe_wall_s": probe_wall, "nll_nats": ev["nll_nats"], "elbo_nats": ev["elbo_nats"],
              "active_units": ev["active_units"], "k": ev["k"],
              "best_epoch": int(best["epoch"]), "last_valid_elbo": rows[-1]["valid_elbo"]}
    if args.finetune:
        result["finetune"] = finetune(out, args)
    return result


# After training (--finetune): one epoch of the IWAE-50 bound on the whole model, then its encoder
# alone refit for 8 epochs, both at lr 3e-5 with a fresh Adam state, keeping the weights of the
# best validation bound (bench/RESULTS.md: on the top-down VampPrior these took 0.06 and 0.02
# nats off the k = 5000 estimate, in seconds on a GPU).
FINETUNE = {"ft": ["--objective", "iwae", "--k", "50", "--lr", "3e-5", "--lr-schedule", "cosine", "--epochs", "1"],
            "q": ["--refine-encoder", "--objective", "iwae", "--k", "50", "--lr", "3e-5", "--lr-schedule", "cosine",
                  "--epochs", "8"]}


def finetune(out: Path, args) -> dict:
    stages, start = {}, out
    for stage, flags in FINETUNE.items():
        target = out.with_name(f"{out.name}-{stage}")
        run, train_wall, eval_wall = train_and_evaluate(
            ["--init", str(start), *flags, "--device", args.device, "--quiet"], target, args)
        stages[stage] = {"command": f"vaekit train --init {start} " + " ".join(flags), "train_wall_s": train_wall,
                         "eval_wall_s": eval_wall, "nll_nats": run.evaluation["nll_nats"],
                         "elbo_nats": run.evaluation["elbo_nats"]}
        start = target
    return stages


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--jobs", default="iwae50,vamp-iwae50,hvamp-iwae50",
                   help=f"comma-separated, from: {', '.join(JOBS)}")
    p.add_argument("--train-seconds", type=float, default=420, help="wall seconds until training must end")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench/out/budget"))
    p.add_argument("--extra", default="", help="more flags for every `vaekit train`, e.g. \"--binarize dynamic\"")
    p.add_argument("--finetune", action="store_true",
                   help="after each run, fine-tune it with IWAE-50 for 1 epoch and refit its encoder for 8 "
                        "(runs <job>-ft and <job>-q), each evaluated like the run")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        result = one(args.one, args)
        (args.out / f"{args.one}.json").write_text(json.dumps(result, indent=2))
        return 0
    deadline = time.time() + args.train_seconds
    names = args.jobs.split(",")
    unknown = [n for n in names if n not in JOBS]
    if unknown:
        p.error(f"unknown job(s) {unknown}; known: {', '.join(JOBS)}")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    procs = {n: subprocess.Popen([sys.executable, __file__, "--one", n, "--deadline", str(deadline),
                                  "--data", str(args.data), "--k", str(args.k), "--device", args.device,
                                  "--seed", str(args.seed), "--out", str(args.out), "--extra=" + args.extra]
                                 + (["--finetune"] if args.finetune else []),
                                 env=env) for n in names}
    summary = {"device": _device(args.device), "train_seconds": args.train_seconds, "jobs": {}}
    for n, proc in procs.items():
        rc = proc.wait()
        f = args.out / f"{n}.json"
        summary["jobs"][n] = json.loads(f.read_text()) if rc == 0 and f.exists() else {"job": n, "exit": rc}
        with tarfile.open(args.out / f"{n}.tar.gz", "w:gz") as tar:
            for name in (n, f"{n}-ft", f"{n}-q"):
                if (args.out / name).is_dir():
                    tar.add(args.out / name, arcname=name, filter=lambda m: None if "/state" in m.name else m)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def _device(name: str) -> str:
    import torch

    if name == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"cpu, torch {torch.__version__}"


if __name__ == "__main__":
    sys.exit(main())
