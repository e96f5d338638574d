"""Decode latency and throughput of exported models: onnxruntime against PyTorch eager on the CPU.

Trains (or takes) an MLP and a conv model of the embedded digits, exports each decoder to ONNX,
and times z -> (the likelihood's parameters, mean) at batch 1 (latency: median of many calls)
and batch 256 (throughput: decoded examples a second). The two engines are timed in alternating
rounds in the same process, so the ratio is fair on a noisy machine; each uses its own default
threads. Prints a Markdown table.

    python bench/export.py [--mlp RUN] [--conv RUN] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import vaekit
from vaekit.export import Decode, exportable_copy
from vaekit.run import Run


def train(net: str, out: Path) -> Path:
    cfg = vaekit.Config()
    cfg.model.net = net
    cfg.train.epochs = 5
    return vaekit.train(cfg, out=out, quiet=True, pictures=False).path


def timed(fn, calls: int) -> float:
    """Seconds per call: the median of 5 blocks of ``calls`` calls."""
    blocks = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        blocks.append((time.perf_counter() - start) / calls)
    return statistics.median(blocks)


def bench(run_dir: Path, rounds: int, tmp: Path) -> dict:
    import onnxruntime

    run = Run.load(run_dir)
    run.export("onnx", tmp / run_dir.name, ["decoder"], check=True)
    session = onnxruntime.InferenceSession(str(tmp / run_dir.name / "decoder.onnx"),
                                           providers=["CPUExecutionProvider"])
    eager = Decode(exportable_copy(run.model))
    out = {"params": sum(p.numel() for p in run.model.parameters()), "net": run.config.model.net}
    for batch, calls in ((1, 2000), (256, 40)):
        z = torch.randn(batch, run.model.latent)
        feed = {"z": z.numpy()}

        def torch_call():
            with torch.inference_mode():
                eager(z)

        def ort_call():
            session.run(None, feed)

        torch_call(), ort_call()  # warm up
        t_torch, t_ort = [], []
        for _ in range(rounds):   # alternate, so that both see the same machine
            t_torch.append(timed(torch_call, calls))
            t_ort.append(timed(ort_call, calls))
        out[batch] = (statistics.median(t_torch), statistics.median(t_ort))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mlp", type=Path, help="a digits run with the mlp network (default: train one, 5 epochs)")
    p.add_argument("--conv", type=Path, help="a digits run with the conv network (default: train one, 5 epochs)")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [args.mlp or train("mlp", tmp / "mlp"), args.conv or train("conv", tmp / "conv")]
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads; onnxruntime "
              f"{__import__('onnxruntime').__version__}; python {sys.version.split()[0]}")
        print()
        print("| model | batch | PyTorch eager | onnxruntime | onnxruntime / eager |")
        print("|---|---|---|---|---|")
        for run_dir in runs:
            r = bench(run_dir, args.rounds, tmp)
            name = f"{r['net']} digits ({r['params']:,} parameters)"
            t, o = r[1]
            print(f"| {name} | 1 | {t * 1e6:.0f} µs a call | {o * 1e6:.0f} µs a call | {t / o:.2f}x faster |")
            t, o = r[256]
            print(f"| {name} | 256 | {256 / t:,.0f} examples/s | {256 / o:,.0f} examples/s | {t / o:.2f}x faster |")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
