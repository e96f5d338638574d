"""Training and evaluation on an accelerator, with the defaults a GPU user gets (`--amp auto`:
mixed precision on CUDA), for each kind of model.

These run where CUDA is available, or on the device VAEKIT_TEST_DEVICE names (e.g.
`VAEKIT_TEST_DEVICE=cpu make test` runs them on the CPU); elsewhere they are skipped with the
reason.
"""

import math
import os

import pytest
import torch

import vaekit
from vaekit.cli import apply_flags, build_parser
from vaekit.train import GraphedStep

DEVICE = os.environ.get("VAEKIT_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else None)
pytestmark = pytest.mark.skipif(DEVICE is None, reason="no CUDA device; VAEKIT_TEST_DEVICE=cpu runs these on the CPU")

KINDS = {
    "mlp": [],
    "vamp": ["--prior", "vamp", "--prior-components", "20"],
    "mog": ["--prior", "mog"],
    "top-down": ["--prior", "hierarchical", "--top-prior", "vamp", "--prior-components", "20",
                 "--inference", "top-down", "--logvar-range=-6,2"],
    "bottom-up": ["--prior", "hierarchical", "--prior-hidden", "64,64"],
    "iwae": ["--objective", "iwae", "--k", "5"],
    "conv": ["--net", "conv"],
    "resnet": ["--net", "resnet"],
    "conditional": ["--conditional", "--prior", "class"],
    "flow": ["--prior", "vamp", "--prior-components", "20", "--flow", "2"],
    "dreg": ["--prior", "hierarchical", "--top-prior", "vamp", "--prior-components", "20", "--inference", "top-down",
             "--objective", "iwae", "--k", "5", "--estimator", "dreg"],
}


@pytest.mark.parametrize("kind", KINDS)
def test_training_and_evaluation_on_the_device(tmp_path, kind):
    args = build_parser().parse_args(["train", "--hidden", "64,64", "--latent", "8", "--epochs", "4",
                                      "--batch-size", "64", "--device", DEVICE, *KINDS[kind]])
    cfg = apply_flags(vaekit.Config(), args)
    run = vaekit.train(cfg, out=tmp_path / kind, quiet=True, pictures=False)
    assert next(run.model.parameters()).device.type == DEVICE
    m = run.metrics
    assert all(math.isfinite(r["valid_elbo"]) and not r["skipped_steps"] for r in m)
    assert m[-1]["valid_elbo"] > m[0]["valid_elbo"]
    ev = run.evaluate(k=20, quiet=True, write=False)
    assert math.isfinite(ev["nll_nats"])
    assert ev["nll_nats"] <= -ev["elbo_nats"] + 0.5  # the importance-sampled bound is the tighter one
    conditional = kind == "conditional"
    x = run.model.sample(6, y=torch.arange(6, device=DEVICE) if conditional else None)
    assert x.shape == (6, 1, 8, 8) and torch.isfinite(x).all()
    # the saved weights load back on the CPU and give the same reconstructions
    cpu = vaekit.Run.load(run.path)
    t, y = run.data.test[:8], run.labels("test")[:8] if conditional else None
    torch.testing.assert_close(cpu.model.reconstruct(t.cpu(), y=None if y is None else y.cpu()),
                               run.model.reconstruct(t, y=y).cpu(), atol=1e-4, rtol=1e-4)


GRAPH_KINDS = {k: KINDS[k] for k in ("mlp", "iwae", "top-down", "conv", "conditional", "flow", "dreg")}
GRAPH_KINDS["warm-up, free bits, EMA"] = ["--warmup", "2", "--free-bits", "0.1", "--ema", "0.99"]


@pytest.mark.skipif(DEVICE != "cuda", reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("kind", GRAPH_KINDS)
def test_the_step_replayed_as_a_cuda_graph_trains_as_the_ordinary_one(tmp_path, kind, monkeypatch):
    replays = []
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda g: (replays.append(1), replay(g))[1])
    # batch 64 leaves a partial last batch, which takes the ordinary step between replays
    flags = ["train", "--hidden", "64,64", "--latent", "8", "--epochs", "4", "--batch-size", "64", "--device",
             "cuda", "--amp", "off", "--lr-schedule", "cosine", *GRAPH_KINDS[kind]]
    runs = {}
    for mode in ("off", "on"):
        cfg = apply_flags(vaekit.Config(), build_parser().parse_args(flags + ["--cuda-graph", mode]))
        runs[mode] = vaekit.train(cfg, out=tmp_path / mode, quiet=True, pictures=False)
        if mode == "off":
            assert not replays
    steps = 4 * math.ceil(runs["on"].data.train.shape[0] / 64)
    full = 4 * (runs["on"].data.train.shape[0] // 64)
    assert len(replays) == full - GraphedStep.WARMUP, (len(replays), steps)  # every full batch after the warm-up
    eager, graphed = runs["off"].metrics, runs["on"].metrics
    assert all(math.isfinite(r["valid_elbo"]) and not r["skipped_steps"] for r in graphed)
    assert graphed[-1]["valid_elbo"] > graphed[0]["valid_elbo"]
    # other draws of the sampling noise, the same training: within a nat or two after 4 epochs
    assert abs(graphed[-1]["valid_elbo"] - eager[-1]["valid_elbo"]) < 2.0, (eager[-1], graphed[-1])
    assert [r["lr"] for r in graphed] == [r["lr"] for r in eager]  # the schedule reaches the graph
    assert [r["beta"] for r in graphed] == [r["beta"] for r in eager]
