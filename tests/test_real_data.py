"""Long tests on the reference data sets; run with `make test-slow` (VAEKIT_DATA=../shared/data)."""

import os
from pathlib import Path

import pytest

import vaekit

DATA = Path(os.environ.get("VAEKIT_DATA", "../shared/data"))
MNIST = DATA / "binarized-mnist"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (MNIST / "train.npz").exists(), reason=f"{MNIST} not found (set VAEKIT_DATA)")]


def test_binarized_mnist_short_training_reaches_a_sane_likelihood(tmp_path):
    cfg = vaekit.Config()
    cfg.data.source = str(MNIST)
    cfg.model.hidden, cfg.model.latent, cfg.model.activation = [300, 300], 40, "elu"
    cfg.train.epochs, cfg.train.batch_size = 5, 100
    run = vaekit.train(cfg, out=tmp_path / "r", quiet=True)
    assert run.info["shape"] == [1, 28, 28] and run.info["value"] == "binary"
    r = run.evaluate(k=100, quiet=True)
    assert r["n"] == 10000
    # five epochs of the standard VAE: well under 110 nats, and a tighter bound than the ELBO
    assert 85 < r["nll_nats"] < 110
    assert r["nll_nats"] < -r["elbo_nats"]
    assert r["active_units"] >= 10
