"""Damaged files never end in a traceback: a seeded loop of byte flips, truncations and type swaps in
a run's config.yaml, metrics.csv, checkpoint and weights, each run through `info`, `sample` and
`train --resume`. Each case ends in success or one sentence with exit 2, nothing is written outside
the run directory, and a run that was refused keeps its checkpoint as it was."""

from __future__ import annotations

import hashlib
import random
import shutil

import yaml

CASES = 32  # the README's Reliability table counts them


def flip(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if b:
            i = rng.randrange(len(b))
            b[i] = rng.randrange(256)
    return bytes(b)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(max(1, len(data)))]


def swap_type(text: str, rng: random.Random) -> str:
    """config.yaml with one value replaced by a value of another type."""
    raw = yaml.safe_load(text)
    section = rng.choice(["data", "model", "train"])
    key = rng.choice(sorted(raw[section]))
    raw[section][key] = rng.choice(["ten", -3, 0, 1e30, [1, "a"], {"x": 1}, None, True, 2.5, ""])
    return yaml.safe_dump(raw, sort_keys=False)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def test_damaged_run_files_give_one_sentence_or_work(digits_run, tmp_path, cli, monkeypatch):
    rng = random.Random(20261203)
    monkeypatch.chdir(tmp_path)  # anything written by mistake to the working directory would show here
    targets = ["config.yaml", "metrics.csv", "state/last.pt", "model.safetensors"]
    outcomes = {"ok": 0, "refused": 0}
    for case in range(CASES):
        run = tmp_path / f"case{case}"
        shutil.copytree(digits_run, run)
        name = targets[case % len(targets)]
        f = run / name
        how = rng.choice(["flip", "truncate", "swap"] if name == "config.yaml" else ["flip", "truncate"])
        if how == "swap":
            f.write_text(swap_type(f.read_text(), rng))
        else:
            f.write_bytes((flip if how == "flip" else truncate)(f.read_bytes(), rng))
        before = digest(run / "state" / "last.pt")
        for verb in (["info", run], ["sample", run, "-n", "4", "--out", run / "samples" / "fuzz.png"],
                     ["train", "--resume", run, "--epochs", "4", "--quiet"]):
            rc, _, err = cli(*verb)
            assert "Traceback" not in err, (case, name, how, verb[0], err)
            assert rc in (0, 2), (case, name, how, verb[0], rc, err)
            if rc == 2:
                said = err.strip().splitlines()  # (recoveries from a learning rate of 1e30 say a line each)
                assert said[-1].startswith("vaekit: error: "), (case, err)
                assert all(s.startswith(("vaekit: error: ", "recovered: ", "warning: ")) for s in said), (case, err)
                outcomes["refused"] += 1
                if verb[0] == "train":
                    assert digest(run / "state" / "last.pt") == before, (case, name, how, err)
            else:
                outcomes["ok"] += 1
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"case{i}" for i in range(case + 1))
    assert outcomes["refused"] > CASES  # most damage is found; what is harmless (a flipped digit in a CSV) works
