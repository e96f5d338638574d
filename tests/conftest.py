import gzip
import struct

import numpy as np
import pytest

from vaekit.cli import main


def write_idx(path, array, gz=False):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    data = header + array.tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def blobs(n=60, size=8, seed=0):
    """Small grey images: a bright square at one of four places, label = place."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 30, size=(n, size, size)).astype(np.uint8)
    y = np.arange(n) % 4
    h = size // 2
    for i, lab in enumerate(y):
        r, c = divmod(int(lab), 2)
        x[i, r * h:(r + 1) * h, c * h:(c + 1) * h] = 200 + rng.integers(0, 55)
    return x, y


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""

    def run(*args):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # argparse errors
            rc = e.code
        out = capsys.readouterr()
        return rc, out.out, out.err

    return run


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """One small run on the embedded digits, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    rc = main(["train", "--epochs", "3", "--batch-size", "64", "--latent", "4", "--hidden", "64",
               "--quiet", "--out", str(out)])
    assert rc == 0
    return out
