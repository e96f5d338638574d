"""The catalogue of bad inputs: each gets one clear sentence naming the file or flag and the
problem, exit code 2, and no traceback. ``CASES`` is the list; README's Reliability section
counts it."""

import gzip
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import blobs, write_idx


def npy(tmp, name, array, **kw):
    p = tmp / name
    np.save(p, array, **kw)
    return p


def train(tmp, *args):
    return ["train", "--epochs", "1", "--hidden", "16", "--quiet", "--out", tmp / "out", *args]


def _truncated_idx(t):
    f = write_idx(t / "t.idx3-ubyte", blobs(10, 4)[0])
    f.write_bytes(f.read_bytes()[:-7])
    return train(t, "--data", f), ["t.idx3-ubyte", "truncated"]


def _idx_extra_bytes(t):
    f = write_idx(t / "x.idx3-ubyte", blobs(10, 4)[0])
    f.write_bytes(f.read_bytes() + b"\x00\x01")
    return train(t, "--data", f), ["x.idx3-ubyte", "extra bytes"]


def _wrong_magic(t):
    g = t / "m.idx3-ubyte.gz"
    with gzip.open(g, "wb") as fh:
        fh.write(b"\x12\x34\x08\x03" + b"\x00" * 40)
    return train(t, "--data", g), ["m.idx3-ubyte.gz", "magic"]


def _corrupt_gzip(t):
    g = t / "c.idx3-ubyte.gz"
    g.write_bytes(b"\x1f\x8b\x08\x00garbage")
    return train(t, "--data", g), ["c.idx3-ubyte.gz", "cannot read"]


def _mixed_sizes(t):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(t / "a.png")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(t / "b.png")
    return train(t, "--data", t), ["b.png", "--image-size"]


def _broken_png(t):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(t / "ok.png")
    (t / "broken.png").write_bytes(b"\x89PNG garbage")
    return train(t, "--data", t), ["broken.png", "not a readable image"]


def _empty_folder(t):
    (t / "imgs").mkdir()
    return train(t, "--data", t / "imgs"), ["imgs", "no PNG or JPEG"]


def _split_dir_without_train(t):
    np.savez(t / "valid.npz", X=np.zeros((5, 16), np.uint8))
    return train(t, "--data", t), ["no train.npz"]


def _splits_of_different_shapes(t):
    np.savez(t / "train.npz", X=np.zeros((20, 16), np.uint8))
    np.savez(t / "test.npz", X=np.zeros((5, 25), np.uint8))
    return train(t, "--data", t), ["different image shapes"]


def _labels_mismatch(t):
    np.savez(t / "l.npz", X=np.zeros((20, 4, 4), np.uint8), y=np.zeros(7))
    return train(t, "--data", t / "l.npz"), ["20 images but 7 labels"]


def _ambiguous_npz(t):
    np.savez(t / "amb.npz", a=np.zeros((5, 4, 4)), b=np.zeros((5, 4, 4)))
    return train(t, "--data", t / "amb.npz"), ["amb.npz", "which array"]


def _empty_array(t):
    return train(t, "--data", npy(t, "e.npy", np.zeros((0, 4, 4), np.uint8))), ["e.npy", "no examples"]


def _too_few_examples(t):
    return train(t, "--data", npy(t, "two.npy", np.zeros((2, 4, 4), np.uint8))), ["too few"]


def _bad_config_yaml(t):
    (t / "c.yaml").write_text("model: [unclosed")
    return ["train", "--config", t / "c.yaml"], ["c.yaml", "not valid YAML"]


def _unknown_config_key(t):
    (t / "c.yaml").write_text("model:\n  latnet: 3\n")
    return ["train", "--config", t / "c.yaml"], ["c.yaml", "latnet"]


def _invalid_config_value(t):
    (t / "c.yaml").write_text("train:\n  objective: magic\n")
    return ["train", "--config", t / "c.yaml"], ["train.objective", "magic"]


def _not_a_run(t):
    return ["sample", t / "missing"], ["missing", "not a run directory"]


def _run_without_config(t):
    (t / "empty").mkdir()
    return ["evaluate", t / "empty"], ["empty", "no config.yaml"]


def _run_without_weights(t):
    (t / "r").mkdir()
    (t / "r" / "config.yaml").write_text("data_info: {shape: [1, 8, 8], value: binary, levels: null}\n")
    return ["info", t / "r"], ["model.safetensors", "not found"]


def _resume_without_state(t):
    (t / "r").mkdir()
    (t / "r" / "config.yaml").write_text("train: {epochs: 2}\n")
    return ["train", "--resume", t / "r"], ["last.pt", "no checkpoint"]


CASES = {
    "missing path": lambda t: (train(t, "--data", t / "nope.npz"), ["nope.npz", "no such file"]),
    "unknown data set name": lambda t: (train(t, "--data", "mnist-nonexistent"), ["mnist-nonexistent", "known"]),
    "not a zip .npz": lambda t: ((t / "bad.npz").write_bytes(b"not a zip"),
                                 train(t, "--data", t / "bad.npz"))[1:] + (["bad.npz", "not a readable"],),
    "pickled object array": lambda t: (train(t, "--data", npy(t, "obj.npy", np.array([{}], dtype=object),
                                                                allow_pickle=True)), ["obj.npy"]),
    "flat array that is not square": lambda t: (train(t, "--data", npy(t, "f.npy", np.zeros((10, 50), np.uint8))),
                                                ["f.npy", "--shape"]),
    "five-dimensional array": lambda t: (train(t, "--data", npy(t, "d5.npy", np.zeros((2, 3, 4, 5, 6)))),
                                         ["d5.npy", "shape"]),
    "--shape that does not fit": lambda t: (train(t, "--data", npy(t, "a.npy", np.zeros((10, 64), np.uint8)),
                                                  "--shape", "5x5"), ["a.npy", "--shape 5x5"]),
    "a thread count no machine has": lambda t: (train(t, "--threads", "100000"), ["train.threads is 100000"]),
    "VampPrior for a conditional model": lambda t: (train(t, "--prior", "vamp", "--conditional"),
                                                    ["VampPrior", "conditional model", "--prior class"]),
    "truncated IDX": _truncated_idx,
    "IDX with extra bytes": _idx_extra_bytes,
    "IDX with a wrong magic number": _wrong_magic,
    "corrupt gzip": _corrupt_gzip,
    "NaN in an array": lambda t: (train(t, "--data", npy(t, "nan.npy", np.full((20, 16), np.nan, np.float32))),
                                  ["nan.npy", "NaN"]),
    "values outside [0, 1]": lambda t: (train(t, "--data", npy(t, "big.npy", np.full((20, 16), 3.7, np.float32))),
                                        ["big.npy", "3.7"]),
    "negative values": lambda t: (train(t, "--data", npy(t, "neg.npy", np.full((20, 16), -0.5, np.float32))),
                                  ["neg.npy", "-0.5"]),
    "non-numeric array": lambda t: (train(t, "--data", npy(t, "s.npy", np.array([["a"] * 16] * 20)),
                                          "--shape", "4x4"), ["s.npy", "non-numeric"]),
    "Bernoulli on grey values": lambda t: (train(t, "--likelihood", "bernoulli"), ["--binarize"]),
    "images of mixed sizes": _mixed_sizes,
    "broken PNG in a folder": _broken_png,
    "folder without images": _empty_folder,
    "a single image instead of a folder": lambda t: (Image.fromarray(np.zeros((4, 4), np.uint8)).save(t / "one.png"),
                                                     train(t, "--data", t / "one.png"))[1:] + (["one.png"],),
    "split folder without train": _split_dir_without_train,
    "splits of different shapes": _splits_of_different_shapes,
    "labels of the wrong length": _labels_mismatch,
    "ambiguous .npz": _ambiguous_npz,
    "empty array": _empty_array,
    "too few examples to split": _too_few_examples,
    "bad YAML config": _bad_config_yaml,
    "unknown config key": _unknown_config_key,
    "invalid config value": _invalid_config_value,
    "unknown flag": lambda t: (["train", "--no-such-flag"], ["--no-such-flag"]),
    "zero epochs": lambda t: (["train", "--epochs", "0"], ["--epochs", "positive"]),
    "negative batch size": lambda t: (["train", "--batch-size", "-4"], ["--batch-size"]),
    "zero latent size": lambda t: (["train", "--latent", "0"], ["--latent"]),
    "negative hidden size": lambda t: (["train", "--hidden", "12,-3"], ["--hidden"]),
    "zero image size": lambda t: (["train", "--image-size", "0"], ["--image-size"]),
    "zero in --shape": lambda t: (["train", "--shape", "0x5"], ["--shape"]),
    "negative beta": lambda t: (["train", "--beta", "-1"], ["--beta"]),
    "not a number": lambda t: (["train", "--lr", "fast"], ["--lr"]),
    "epochs not an integer": lambda t: (["train", "--epochs", "2.5"], ["--epochs", "positive integer", "'2.5'"]),
    "zero clip length": lambda t: (["train", "--clip-seconds", "0"], ["--clip-seconds", "positive number"]),
    "clip length not a number": lambda t: (["train", "--clip-seconds", "long"], ["--clip-seconds", "a number"]),
    "free bits not a number": lambda t: (["train", "--free-bits", "x"], ["--free-bits", "a number", "'x'"]),
    "NaN beta": lambda t: (["train", "--beta", "nan"], ["--beta", "non-negative"]),
    "log-variance range the wrong way round": lambda t: (["train", "--logvar-range=2,-6"],
                                                         ["--logvar-range", "LO < HI", "'2,-6'"]),
    "log-variance range of one number": lambda t: (["train", "--logvar-range=-6"], ["--logvar-range", "two numbers"]),
    "CUDA graph on the CPU": lambda t: (["train", "--cuda-graph", "on", "--device", "cpu", "--out", str(t / "g")],
                                        ["--cuda-graph on", "cpu"]),
    "DReG without the IWAE bound": lambda t: (["train", "--estimator", "dreg", "--out", str(t / "d")],
                                              ["train.estimator 'dreg'", "--objective iwae"]),
    "DReG with a flow": lambda t: (["train", "--objective", "iwae", "--estimator", "dreg", "--flow", "2",
                                    "--out", str(t / "d")], ["--flow or --estimator dreg"]),
    "a negative number of flow steps": lambda t: (["train", "--flow", "-1", "--out", str(t / "d")],
                                                  ["--flow", "non-negative integer"]),
    "not a run directory": _not_a_run,
    "run without config.yaml": _run_without_config,
    "run without weights": _run_without_weights,
    "resume without a checkpoint": _resume_without_state,
    "unknown verb": lambda t: (["fly"], ["fly"]),
    "unknown option after a verb": lambda t: (["train", "--epochs", "1", "--bogus", "--out", t / "r"],
                                              ["vaekit train: error: unrecognized arguments: --bogus",
                                               "See 'vaekit train --help'."]),
    "zero-length WAV": lambda t: ((t / "empty.wav").write_bytes(b""),
                                  train(t, "--data", t / "empty.wav"))[1:] + (["empty.wav", "not a readable audio file"],),
    "binary garbage as text": lambda t: ((t / "garbage.txt").write_bytes(bytes(range(256)) * 4),
                                         train(t, "--data", t / "garbage.txt"))[1:] + (["garbage.txt"],),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, cli):
    args, fragments = CASES[name](tmp_path)
    rc, out, err = cli(*args)
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err
    for f in fragments:
        assert str(f) in err, (f, err)
    assert len(err.strip().splitlines()) <= 3, err


def test_interpolate_index_out_of_range(digits_run, cli):
    rc, _, err = cli("interpolate", digits_run, "--between", "0", "9999")
    assert rc == 2 and "9999" in err and "outside the test set" in err


def test_run_whose_weights_do_not_match(tmp_path, digits_run, cli):
    bad = tmp_path / "bad"
    shutil.copytree(digits_run, bad)
    text = (bad / "config.yaml").read_text().replace("latent: 4", "latent: 6")
    (bad / "config.yaml").write_text(text)
    rc, _, err = cli("sample", bad)
    assert rc == 2 and "model.safetensors" in err and "do not match" in err
    (bad / "model.safetensors").write_bytes(b"\x00" * 10)
    rc, _, err = cli("sample", bad)
    assert rc == 2 and "not a readable safetensors" in err


def test_output_directory_not_empty_is_left_alone(tmp_path, cli):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x").write_text("keep me")
    rc, _, err = cli("train", "--epochs", "1", "--out", tmp_path / "r")
    assert rc == 2 and "already exists" in err
    assert (tmp_path / "r" / "x").read_text() == "keep me"


def test_real_process_prints_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "vaekit", "train", "--data", str(tmp_path / "x.npz")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "x.npz" in p.stderr


def test_config_batch_size_zero(tmp_path, cli):
    (tmp_path / "c.yaml").write_text("train:\n  batch_size: 0\n")
    rc, _, err = cli("train", "--config", tmp_path / "c.yaml")
    assert rc == 2 and "train.batch_size must be positive" in err


def test_picture_out_without_a_suffix_or_with_one_pillow_cannot_write(digits_run, cli, tmp_path):
    """`--out grid` writes grid.png; `--out x.jpg` a JPEG; a suffix no image format has is one
    sentence naming the file, exit 2, and nothing written (not even its folder)."""
    from PIL import Image

    for verb in ("sample", "reconstruct", "interpolate"):
        rc, out, _ = cli(verb, digits_run, "--out", tmp_path / verb)
        assert rc == 0 and out.strip() == str(tmp_path / f"{verb}.png")
        assert Image.open(tmp_path / f"{verb}.png").format == "PNG"
    rc, out, _ = cli("sample", digits_run, "--out", tmp_path / "grid.jpg")
    assert rc == 0 and Image.open(tmp_path / "grid.jpg").format == "JPEG"
    rc, _, err = cli("sample", digits_run, "--out", tmp_path / "new" / "grid.xyz")
    assert rc == 2 and "Traceback" not in err
    assert str(tmp_path / "new" / "grid.xyz") in err and "no image format with the suffix .xyz" in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("edit, expected", [
    ({"model": {"latent": "sixteen"}}, "model.latent must be an integer, got 'sixteen'"),
    ({"train": {"epochs": "ten"}}, "train.epochs must be an integer, got 'ten'"),
    ({"model": {"latent": 100000000}}, "needs about"),
    ({"vaekit": "99.0.0"}, "newer than this vaekit"),
])
def test_a_run_whose_config_yaml_was_edited_badly(tmp_path, digits_run, cli, edit, expected):
    import yaml

    bad = tmp_path / "edited"
    shutil.copytree(digits_run, bad)
    raw = yaml.safe_load((bad / "config.yaml").read_text())
    for key, value in edit.items():
        if isinstance(value, dict):
            raw[key].update(value)
        else:
            raw[key] = value
    (bad / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for verb in (["sample"], ["info"], ["train", "--resume"]):
        rc, _, err = cli(*verb, bad)
        assert rc == 2 and expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_model_too_large_for_memory_is_refused_before_it_is_allocated(tmp_path, cli):
    rc, _, err = cli("train", "--latent", "100000000", "--out", tmp_path / "huge")
    assert rc == 2 and "parameters" in err and "available" in err and "--latent" in err
    assert not (tmp_path / "huge").exists()


def test_an_option_that_does_nothing_here_is_one_warning_line(tmp_path, cli):
    rc, out, err = cli("train", "--epochs", "1", "--hidden", "16", "--k", "5", "--prior-components", "3", "--quiet",
                       "--out", tmp_path / "r")
    warnings = err.strip().splitlines()
    assert rc == 0 and out.strip() == str(tmp_path / "r") and len(warnings) == 2
    assert "--k 5 is the number of importance samples of the importance-weighted objectives" in warnings[0]
    assert "--prior-components" in warnings[1] and "normal prior" in warnings[1]
    rc, _, err = cli("train", "--epochs", "1", "--hidden", "16", "--quiet", "--out", tmp_path / "quiet")
    assert rc == 0 and err == ""  # nothing to say about a plain run


def test_an_output_folder_on_a_read_only_file_system_is_one_sentence(tmp_path, cli):
    """--out on a read-only file system (a tmpfs mounted read-only; root writes anywhere else):
    one sentence naming the run directory, exit 2, nothing written."""
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root and mount rights)")
    try:
        rc, _, err = cli("train", "--epochs", "1", "--hidden", "16", "--quiet", "--out", ro / "run")
        assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert f"{ro / 'run'}: cannot create the run directory (Read-only file system)" in err
        assert not (ro / "run").exists()
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_bad_files_skip_or_stop_as_the_user_chooses(tmp_path, cli):
    """Images stop at an unreadable file unless --bad-files skip; audio skips unless --bad-files stop.
    Either way each such file is named."""
    import soundfile as sf

    for i in range(12):
        Image.fromarray(np.full((4, 4), 20 * i, np.uint8)).save(tmp_path / f"img{i}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    rc, _, err = cli(*train(tmp_path, "--data", tmp_path))
    assert rc == 2 and "broken.png: not a readable image" in err
    rc, out, err = cli("train", "--data", tmp_path, "--bad-files", "skip", "--epochs", "1", "--hidden", "16",
                       "--out", tmp_path / "skipped")
    assert rc == 0 and "skipped 1 unusable file(s)" in out and "broken.png" in out, err
    assert "broken.png: not a readable image" in (tmp_path / "skipped" / "skipped.txt").read_text()

    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for i in range(8):
        sf.write(wavs / f"{i}.wav", (0.3 * np.sin(np.arange(4000) * (i + 1) / 20)).astype(np.float32), 8000)
    (wavs / "bad.wav").write_bytes(b"RIFF garbage")
    rc, _, err = cli("train", "--data", wavs, "--bad-files", "stop", "--epochs", "1", "--out", tmp_path / "a")
    assert rc == 2 and "bad.wav: not a readable audio file" in err
