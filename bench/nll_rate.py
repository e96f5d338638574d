"""Benchmark: the importance-sampled NLL against this machine's matmul peak, and the text NLL.

    python bench/nll_rate.py [--data ../shared/data] [--rounds 3] [--examples 40] [--k 5000] [--lines 100]
                             [--models mlp,vamp,conv] [--skip-text]

1. Image models of binarized MNIST (weights as initialised: the rate does not depend on them):
   the one-layer MLP VAE (784-300-300-40, ELU, Bernoulli), the top-down two-layer VAE with a
   VampPrior of 500 components, and the conv VAE (--models picks some). For each, the k-sample NLL of --examples test images by
   ``vaekit.evaluate``, eager and compiled (``compile="on"``, its compile time apart), in turn,
   with the float32 matmul peak (best of 2048^3 products) measured between them. FLOPs are what
   ``torch.utils.flop_counter`` counts in one pass: the matrix products of the decoder for every
   row, of the encoder once an example, of the prior's networks; elementwise work (activations,
   the likelihood, the log-densities of p(z) and q) counts as nothing, so the fraction of the
   peak is a lower bound on how busy the machine is.
2. Text (needs text/tinyshakespeare.txt): a one-epoch Shakespeare model of bench/text.py's size;
   the k = 1000 NLL of the first --lines test lines, lines a second: the earlier pass (each line
   padded to the longest of the data, repeated k times through nn.GRU) against vaekit's (lines
   of similar lengths, cut after the longest, the line's input projection once).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import vaekit
from vaekit.config import ModelConfig
from vaekit.eval import evaluate
from vaekit.kinds import load_data
from vaekit.model import build_model
from vaekit.model.nets.recurrent import RecurrentDecoder

sys.path.insert(0, str(Path(__file__).parent))
from binarized_mnist import matmul_peak  # noqa: E402

IMAGE_MODELS = {  # name: (what it is, its model config)
    "mlp": ("one-layer MLP", dict(latent=40, hidden=[300, 300], activation="elu", likelihood="bernoulli")),
    "vamp": ("top-down VampPrior", dict(latent=40, hidden=[300, 300], activation="gated", likelihood="bernoulli",
                                       prior="hierarchical", top_prior="vamp", top_latent=40, prior_components=500,
                                       inference="top-down")),
    "conv": ("conv", dict(net="conv", latent=40, likelihood="bernoulli")),
}


def pass_flops(model, x1: torch.Tensor, rows: int) -> int:
    """Matmul FLOPs of one k-sample pass of ``rows`` samples of one example."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.log_weights(x1, rows)
    return fc.get_total_flops()


def matmul_ceiling(model, rows: int, reps: int = 10) -> float | None:
    """GFLOP/s of the decoder's linear layers alone, each on (rows, in) inputs, best of ``reps``:
    what the pass would reach with no elementwise work at all (None for a decoder with
    convolutions, whose work this does not time)."""
    if any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.decoder.modules()):
        return None
    flops, seconds = 0, 0.0
    with torch.no_grad():
        for layer in model.decoder.modules():
            if isinstance(layer, torch.nn.Linear):
                h = torch.randn(rows, layer.in_features)
                layer(h)
                best = math.inf
                for _ in range(reps):
                    t = time.perf_counter()
                    layer(h)
                    best = min(best, time.perf_counter() - t)
                flops += 2 * rows * layer.in_features * layer.out_features
                seconds += best
    return flops / seconds / 1e9


def image_rates(data: Path, rounds: int, examples: int, k: int, models: list[str]) -> None:
    test = load_data(vaekit.DataConfig(source=str(data / "binarized-mnist"))).test[:examples]
    info = {"shape": [1, 28, 28], "value": "binary", "levels": None}
    for key in models:
        name, cfg = IMAGE_MODELS[key]
        torch.manual_seed(0)
        model = build_model(ModelConfig(**cfg), info).eval()
        rows = evaluate(model, test[:1], k=k, quiet=True)["rows_per_pass"]
        flops_row = pass_flops(model, test[:1], rows) / rows
        t = time.perf_counter()
        evaluate(model, test[:2], k=k, quiet=True, compile="on")      # compiles (its two shapes)
        compile_s = time.perf_counter() - t
        print(f"\n{name}: {flops_row / 1e3:,.0f} kFLOP a decoder row (passes of {rows:,} rows), "
              f"compiled in {compile_s:.0f} s")
        results = {"eager": [], "compiled": [], "peak": [], "ceiling": []}
        for r in range(rounds):
            for mode in ("eager", "compiled"):
                results["peak"].append(matmul_peak())
                results["ceiling"].append(matmul_ceiling(model, rows))
                torch.manual_seed(r)
                ev = evaluate(model, test, k=k, quiet=True, compile="on" if mode == "compiled" else "off")
                results[mode].append(examples * k / ev["seconds"])
            print(f"  round {r + 1}: eager {results['eager'][-1]:,.0f} rows/s, compiled "
                  f"{results['compiled'][-1]:,.0f} rows/s, peak {results['peak'][-1]:.0f} GFLOP/s")
        peak = statistics.median(results["peak"])
        if results["ceiling"][0] is not None:
            ceiling = statistics.median(results["ceiling"])
            print(f"  the decoder's matrix products alone, on {rows:,}-row passes: {ceiling:.1f} GFLOP/s, "
                  f"{ceiling / peak:.1%} of the peak")
        for mode in ("eager", "compiled"):
            rate = statistics.median(results[mode])
            gflops = rate * flops_row / 1e9
            print(f"  {mode:9s} {rate:,.0f} rows/s  {gflops:.1f} GFLOP/s  {gflops / peak:.1%} of the peak "
                  f"({peak:.0f} GFLOP/s, median of {len(results['peak'])})")


@contextlib.contextmanager
def earlier_text_pass(model):
    """The text NLL as it was: no trimming, every line's k samples through nn.GRU on repeated lines."""
    trim, repeated = type(model.likelihood).trim, RecurrentDecoder._repeated
    type(model.likelihood).trim = lambda self, x: x
    RecurrentDecoder._repeated = lambda self, z, x, r: self.forward(z, x.repeat(r, 1))
    try:
        yield
    finally:
        type(model.likelihood).trim, RecurrentDecoder._repeated = trim, repeated


def text_rates(data: Path, rounds: int, lines: int) -> None:
    source = data / "text" / "tinyshakespeare.txt"
    if not source.exists():
        print(f"\ntext: skipped, {source} not found")
        return
    cfg = vaekit.Config()
    cfg.data.source = str(source)
    cfg.data.test_fraction = cfg.data.valid_fraction = 0.1
    cfg.model.latent, cfg.model.embedding, cfg.model.rnn_hidden = 16, 64, 256
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.free_bits = 1, 128, 2e-3, 0.25
    bundle = load_data(cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        run = vaekit.train(cfg, out=Path(tmp) / "run", quiet=True, data=bundle, pictures=False)
    model, test = run.model.eval(), bundle.test[:lines]
    print(f"\ntext: Shakespeare, first {lines} of {bundle.test.shape[0]:,} test lines, k = 1000, "
          f"{float((bundle.test != 0).sum(1).float().mean()):.1f} tokens a line, lines padded to {bundle.test.shape[1]}")
    rates = {"earlier": [], "vaekit": []}
    for r in range(rounds):
        for mode in ("earlier", "vaekit"):
            torch.manual_seed(r)
            with earlier_text_pass(model) if mode == "earlier" else contextlib.nullcontext():
                ev = evaluate(model, test, k=1000, quiet=True)
            rates[mode].append(lines / ev["seconds"])
        print(f"  round {r + 1}: earlier {rates['earlier'][-1]:.2f} lines/s, vaekit {rates['vaekit'][-1]:.2f} lines/s")
    n = bundle.test.shape[0]
    for mode in rates:
        rate = statistics.median(rates[mode])
        print(f"  {mode:8s} {rate:.2f} lines/s: the whole test set in about {n / rate / 60:.1f} minutes")
    print(f"  ratio {statistics.median(rates['vaekit']) / statistics.median(rates['earlier']):.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("VAEKIT_DATA", "../shared/data")))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--examples", type=int, default=40, help="test images for the image NLL timings")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--lines", type=int, default=100, help="test lines for the text NLL timings")
    p.add_argument("--skip-text", action="store_true")
    p.add_argument("--models", default=",".join(IMAGE_MODELS),
                   help=f"image models, separated by commas (default all: {', '.join(IMAGE_MODELS)})")
    a = p.parse_args()
    if not (a.data / "binarized-mnist" / "train.npz").exists():
        print(f"skipped: {a.data} has no binarized-mnist (set --data or VAEKIT_DATA)")
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in IMAGE_MODELS]
    if unknown:
        p.error(f"unknown model {unknown[0]!r}; choose from {', '.join(IMAGE_MODELS)}")
    image_rates(a.data, a.rounds, a.examples, a.k, models)
    if not a.skip_text:
        text_rates(a.data, a.rounds, a.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
