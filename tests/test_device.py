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
    "conditional": ["--conditional", "--prior", "class"],
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
