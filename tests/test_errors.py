"""Bad input: one sentence naming the file and the problem, exit code 2, no traceback."""

import gzip
import subprocess
import sys

import numpy as np
import pytest

from conftest import blobs, write_idx


def check(result, *fragments):
    rc, out, err = result
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err
    for f in fragments:
        assert str(f) in err, (f, err)
    assert len(err.strip().splitlines()) <= 3


def test_missing_path(cli, tmp_path):
    check(cli("train", "--data", tmp_path / "nope.npz", "--out", tmp_path / "r"), "nope.npz", "no such file")


def test_unknown_data_set_name(cli, tmp_path):
    check(cli("train", "--data", "mnist-nonexistent", "--out", tmp_path / "r"), "mnist-nonexistent", "known data set")


def test_unreadable_array_file(cli, tmp_path):
    f = tmp_path / "bad.npz"
    f.write_bytes(b"this is not a zip file at all")
    check(cli("train", "--data", f, "--out", tmp_path / "r"), "bad.npz", "not a readable")


def test_pickled_object_array_is_refused(cli, tmp_path):
    f = tmp_path / "obj.npy"
    np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    check(cli("train", "--data", f, "--out", tmp_path / "r"), "obj.npy")


def test_wrongly_shaped_array(cli, tmp_path):
    f = tmp_path / "flat.npy"
    np.save(f, np.zeros((10, 50), np.uint8))
    check(cli("train", "--data", f, "--out", tmp_path / "r"), "flat.npy", "--shape")
    f5 = tmp_path / "five.npy"
    np.save(f5, np.zeros((2, 3, 4, 5, 6), np.uint8))
    check(cli("train", "--data", f5, "--out", tmp_path / "r"), "five.npy", "shape")


def test_shape_that_does_not_fit(cli, tmp_path):
    f = tmp_path / "a.npy"
    np.save(f, np.zeros((10, 64), np.uint8))
    check(cli("train", "--data", f, "--shape", "5x5", "--out", tmp_path / "r"), "a.npy", "--shape 5x5")


def test_truncated_idx_and_wrong_magic(cli, tmp_path):
    x, _ = blobs(10, size=4)
    f = write_idx(tmp_path / "t.idx3-ubyte", x)
    f.write_bytes(f.read_bytes()[:-7])
    check(cli("train", "--data", f, "--out", tmp_path / "r"), "t.idx3-ubyte", "truncated")
    g = tmp_path / "m.idx3-ubyte.gz"
    with gzip.open(g, "wb") as fh:
        fh.write(b"\x12\x34\x08\x03" + b"\x00" * 40)
    check(cli("train", "--data", g, "--out", tmp_path / "r"), "m.idx3-ubyte.gz", "magic")


def test_nan_and_out_of_range_values(cli, tmp_path):
    x = np.random.default_rng(0).random((20, 16)).astype(np.float32)
    x[3, 3] = np.nan
    np.save(tmp_path / "nan.npy", x)
    check(cli("train", "--data", tmp_path / "nan.npy", "--out", tmp_path / "r"), "nan.npy", "NaN")
    np.save(tmp_path / "big.npy", np.full((20, 16), 3.7, np.float32))
    check(cli("train", "--data", tmp_path / "big.npy", "--out", tmp_path / "r"), "big.npy", "3.7")


def test_bernoulli_on_grey_values(cli, tmp_path):
    check(cli("train", "--likelihood", "bernoulli", "--out", tmp_path / "r"), "digits", "--binarize")


def test_broken_image_in_folder(cli, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    check(cli("train", "--data", tmp_path, "--out", tmp_path / "r"), "broken.png", "not a readable image")


def test_not_a_run_directory(cli, tmp_path):
    check(cli("sample", tmp_path / "missing"), "missing", "not a run directory")
    (tmp_path / "empty").mkdir()
    check(cli("evaluate", tmp_path / "empty"), "empty", "no config.yaml")


def test_run_whose_weights_do_not_match(cli, tmp_path, digits_run):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(digits_run, bad)
    text = (bad / "config.yaml").read_text().replace("latent: 4", "latent: 6")
    (bad / "config.yaml").write_text(text)
    check(cli("sample", bad), "model.safetensors", "do not match")
    (bad / "model.safetensors").write_bytes(b"\x00" * 10)
    check(cli("sample", bad), "model.safetensors", "not a readable safetensors")


def test_output_directory_not_empty(cli, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x").write_text("keep me")
    check(cli("train", "--epochs", "1", "--out", tmp_path / "r"), "already exists")
    assert (tmp_path / "r" / "x").read_text() == "keep me"


def test_bad_flags_exit_2(cli, tmp_path):
    rc, _, err = cli("train", "--epochs", "0")
    assert rc == 2 and "positive" in err
    rc, _, err = cli("train", "--hidden", "12,-3")
    assert rc == 2
    rc, _, err = cli("train", "--no-such-flag")
    assert rc == 2


def test_real_process_prints_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "vaekit", "train", "--data", str(tmp_path / "x.npz")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "x.npz" in p.stderr
