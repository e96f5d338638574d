"""Benchmark: the standard MLP VAE on statically binarized MNIST (Larochelle & Murray split).

Reports, on this machine:
  1. the float32 matmul peak (best of repeated large matrix products);
  2. training throughput of vaekit against a bare PyTorch loop with the same network,
     batch size, optimiser and ELBO, measured alternately in the same process, and the
     fraction of the matmul peak the training step reaches;
  3. a full training run with vaekit, then test ELBO and test NLL (importance sampling,
     k = 5000) in nats, and the time the NLL estimate took;
  4. optionally the same with the IWAE objective (--iwae-k 50).

    python bench/binarized_mnist.py --data ../shared/data/binarized-mnist
    python bench/binarized_mnist.py --data ... --throughput-only        # steps 1-2 only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import vaekit
from vaekit.kinds import load_data


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    """Best float32 GFLOP/s of an n x n x n matrix product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def linear_flops_per_example(sizes_enc, sizes_dec) -> int:
    """Multiply-adds x 2 of the linear layers for one forward pass of one example."""
    f = sum(2 * a * b for a, b in zip(sizes_enc[:-1], sizes_enc[1:]))
    return f + sum(2 * a * b for a, b in zip(sizes_dec[:-1], sizes_dec[1:]))


def bare_loop(x: torch.Tensor, hidden, latent, act, batch_size, lr, epochs=2, fused=False, guard=False,
              conv=False) -> float:
    """The same VAE written as a plain PyTorch loop, from a fresh model; img/s of the last epoch.
    ``guard``: with vaekit's non-finite guard added (the flag from the loss and one fused pass
    over the gradients, read by fused Adam, which skips a bad step)."""
    state = {"fused": fused, "guard": guard, "conv": conv}
    for _ in range(epochs):
        rate = bare_loop_epoch(x, hidden, latent, act, batch_size, lr, state)
    return rate


def bare_loop_epoch(x: torch.Tensor, hidden, latent, act, batch_size, lr, state):
    """One epoch of the reference loop: the reference for framework overhead."""
    if "enc" not in state and state.get("conv"):
        # the conv network: vaekit's own modules (the same layers), trained by the plain loop below
        torch.manual_seed(0)
        model = vaekit.build_model(vaekit.ModelConfig(net="conv", latent=latent, likelihood="bernoulli"),
                                   {"shape": list(x.shape[1:]), "value": "binary", "levels": None})
        state["enc"] = lambda xb: model.encoder.head(model.encoder.hidden(xb))
        state["dec"] = lambda z: model.decoder(z).squeeze(1)
        state["opt"] = torch.optim.Adam(model.parameters(), lr, fused=state.get("fused", False))
    if "enc" not in state:
        torch.manual_seed(0)
        A = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}[act]
        enc, dec, d = [], [], x.shape[1]
        for a, b in zip([d, *hidden], hidden):
            enc += [nn.Linear(a, b), A()]
        for a, b in zip([latent, *reversed(hidden)], list(reversed(hidden))):
            dec += [nn.Linear(a, b), A()]
        state["enc"] = nn.Sequential(*enc, nn.Linear(hidden[-1], 2 * latent))
        state["dec"] = nn.Sequential(*dec, nn.Linear(hidden[0], d))
        params = list(state["enc"].parameters()) + list(state["dec"].parameters())
        state["opt"] = torch.optim.Adam(params, lr, fused=state.get("fused", False))
    enc, dec, opt = state["enc"], state["dec"], state["opt"]
    params = [p for group in opt.param_groups for p in group["params"]]
    found, one = torch.zeros(()), torch.ones(())
    n = x.shape[0]
    total = torch.zeros(())
    t = time.perf_counter()
    perm = torch.randperm(n)
    for i in range(0, n, batch_size):
        xb = x[perm[i:i + batch_size]]
        mu, logvar = enc(xb).chunk(2, -1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        rec = F.binary_cross_entropy_with_logits(dec(z), xb, reduction="none").flatten(1).sum(-1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        loss = (rec + kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if state.get("guard"):
            found.copy_(torch.isfinite(loss).logical_not())
            torch._amp_foreach_non_finite_check_and_unscale_([p.grad for p in params], found, one)
            opt.found_inf = found
        opt.step()
        total += loss.detach()
    total.item()
    return n / (time.perf_counter() - t)


def config_for(args, epochs: int) -> vaekit.Config:
    cfg = vaekit.Config()
    cfg.data.source = str(args.data.resolve())
    cfg.model.net, cfg.model.hidden, cfg.model.latent = args.net, args.hidden, args.latent
    cfg.model.activation, cfg.model.likelihood = args.activation, "bernoulli"
    cfg.model.prior, cfg.model.prior_components, cfg.model.top_latent = args.prior, args.prior_components, args.top_latent
    cfg.model.top_prior, cfg.model.inference = args.top_prior, args.inference
    t = cfg.train
    t.epochs, t.batch_size, t.lr, t.lr_schedule = epochs, args.batch_size, args.lr, args.lr_schedule
    t.warmup_epochs, t.seed, t.device = args.warmup, args.seed, "cpu"
    return cfg


def throughput(args, bundle) -> dict:
    conv = args.net == "conv"
    x = bundle.train if conv else bundle.train.flatten(1)
    bare, fused, guarded, kit, compiled = [], [], [], [], []

    def run_bare():
        same = (x, args.hidden, args.latent, args.activation, args.batch_size, args.lr)
        bare.append(bare_loop(*same, conv=conv))
        fused.append(bare_loop(*same, fused=True, conv=conv))
        guarded.append(bare_loop(*same, fused=True, guard=True, conv=conv))

    def run_kit(tmp, r):
        # a fresh model each round, like the bare loop; two epochs, the second timed (the first compiles)
        for mode, rates in (("off", kit), ("on", compiled)):
            cfg = config_for(args, 2)
            cfg.train.compile = mode
            run = vaekit.train(cfg, out=Path(tmp) / f"r{r}{mode}", quiet=True, data=bundle, pictures=False)
            rates.append(run.metrics[-1]["examples_per_s"])

    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            if r % 2 == 0:  # alternate the order, so neither always runs first
                run_bare()
                run_kit(tmp, r)
            else:
                run_kit(tmp, r)
                run_bare()
            print(f"  round {r + 1}: bare loop {bare[-1]:,.0f} img/s (fused Adam {fused[-1]:,.0f}, with the guard "
                  f"{guarded[-1]:,.0f}), vaekit {kit[-1]:,.0f} img/s, compiled {compiled[-1]:,.0f} img/s", flush=True)
    d = x[0].numel()
    flops = 3 * linear_flops_per_example([d, *args.hidden, 2 * args.latent],
                                         [args.latent, *reversed(args.hidden), d]) if not conv else float("nan")
    b, f, k = float(np.median(bare)), float(np.median(fused)), float(np.median(kit))
    g, c = float(np.median(guarded)), float(np.median(compiled))
    return {"bare_img_per_s": b, "bare_fused_adam_img_per_s": f, "vaekit_img_per_s": k, "vaekit_over_bare": k / b,
            "vaekit_over_bare_fused_adam": k / f, "bare_guarded_img_per_s": g, "guard_cost": 1 - g / f,
            "vaekit_compiled_img_per_s": c, "compiled_over_bare_fused_adam": c / f, "compiled_over_bare": c / b,
            "train_flops_per_img": flops, "vaekit_gflops": flops * k / 1e9}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("VAEKIT_DATA", "../shared/data"))
                   / "binarized-mnist")
    p.add_argument("--net", choices=["mlp", "conv"], default="mlp",
                   help="the MLP VAE, or vaekit's conv network (its default channels) for the throughput")
    p.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[300, 300])
    p.add_argument("--latent", type=int, default=40)
    p.add_argument("--activation", default="elu")
    p.add_argument("--prior", default="normal", choices=["normal", "mog", "vamp", "hierarchical"])
    p.add_argument("--prior-components", type=int, default=None)
    p.add_argument("--top-latent", type=int, default=None)
    p.add_argument("--top-prior", default="normal", choices=["normal", "vamp"])
    p.add_argument("--inference", default="bottom-up", choices=["bottom-up", "top-down"])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--lr-schedule", default="cosine")
    p.add_argument("--warmup", type=float, default=20)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=5000, help="importance samples for the test NLL")
    p.add_argument("--iwae-k", type=int, default=0, help="also train with the IWAE bound with this k")
    p.add_argument("--iwae-epochs", type=int, default=None)
    p.add_argument("--rounds", type=int, default=6, help="alternating throughput rounds")
    p.add_argument("--throughput-only", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--train-examples", type=int, default=None,
                   help="the throughput on the first N training images (the conv model's epochs are long)")
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    args = p.parse_args()
    if not (args.data / "train.npz").exists():
        print(f"skipped: {args.data} has no train.npz (set --data or VAEKIT_DATA)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)

    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                          f"{torch.get_num_threads()} threads", "args": {k: str(v) for k, v in vars(args).items()}}
    bundle = load_data(vaekit.DataConfig(source=str(args.data)))
    print(f"data: {bundle.describe()}")
    peak = matmul_peak()
    results["matmul_peak_gflops"] = peak
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s")
    if args.train_examples:
        import dataclasses

        n = args.train_examples
        small = dataclasses.replace(bundle, train=bundle.train[:n], valid=bundle.valid[:n // 5],
                                    train_labels=None if bundle.train_labels is None else bundle.train_labels[:n],
                                    valid_labels=None if bundle.valid_labels is None else bundle.valid_labels[:n // 5])
        tp = throughput(args, small)
    else:
        tp = throughput(args, bundle)
    tp["fraction_of_peak"] = tp["vaekit_gflops"] / peak
    results["throughput"] = tp
    print(f"throughput: bare {tp['bare_img_per_s']:,.0f} img/s (default Adam), "
          f"{tp['bare_fused_adam_img_per_s']:,.0f} img/s (fused Adam); vaekit {tp['vaekit_img_per_s']:,.0f} img/s; "
          f"ratio {tp['vaekit_over_bare']:.3f} and {tp['vaekit_over_bare_fused_adam']:.3f}; compiled "
          f"{tp['vaekit_compiled_img_per_s']:,.0f} img/s, ratio {tp['compiled_over_bare']:.3f} and "
          f"{tp['compiled_over_bare_fused_adam']:.3f}; the guard costs the bare loop {tp['guard_cost']:.1%}; "
          f"{tp['vaekit_gflops']:.1f} GFLOP/s = "
          f"{tp['fraction_of_peak']:.1%} of the matmul peak")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.throughput_only:
        runs = [("elbo", args.epochs, 1)]
        if args.iwae_k:
            runs.append(("iwae", args.iwae_epochs or args.epochs, args.iwae_k))
        for objective, epochs, k in runs:
            cfg = config_for(args, epochs)
            cfg.train.objective, cfg.train.k = objective, k
            name = f"{objective}{k if objective == 'iwae' else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
            t0 = time.perf_counter()
            run = vaekit.train(cfg, out=args.out / name, data=bundle)
            train_s = time.perf_counter() - t0
            ev = run.evaluate(k=args.k, quiet=False)
            row = {"run": str(run.path), "objective": objective, "k_train": k, "epochs": len(run.metrics),
                   "train_seconds": train_s, "test_nll_nats": ev["nll_nats"], "test_elbo_nats": ev["elbo_nats"],
                   "bits_per_dim": ev["bits_per_dim"], "active_units": ev["active_units"],
                   "nll_k": ev["k"], "nll_seconds": ev["seconds"]}
            results[objective] = row
            print(f"{objective}: {row['epochs']} epochs in {train_s / 60:.1f} min; test NLL (k={args.k}) "
                  f"{ev['nll_nats']:.2f} nats, test ELBO {ev['elbo_nats']:.2f}, {ev['active_units']} active "
                  f"units; NLL took {ev['seconds']:.0f} s", flush=True)
    out = args.out / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
