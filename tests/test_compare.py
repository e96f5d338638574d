"""vaekit compare: runs side by side."""

import csv
import shutil

import pytest

from vaekit.compare import differences, headline, load


def test_compare_two_runs_and_a_folder_of_runs(digits_run, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "sweep" / "b"
    rc, _, err = cli("train", "--epochs", "2", "--batch-size", "64", "--latent", "3", "--hidden", "64", "--beta", "2",
                     "--quiet", "--out", other)
    assert rc == 0, err
    shutil.copytree(other, tmp_path / "sweep" / "c")
    rc, out, err = cli("compare", digits_run, tmp_path / "sweep", "--csv", "t.csv")
    assert rc == 0, err
    lines = out.splitlines()
    head = lines[0].split()
    assert head[0] == "run" and "model.latent" in head and "train.beta" in head and "train.epochs" in head
    assert "train.lr" not in head                            # the same in every run: not a column
    assert [ln.split()[0] for ln in lines[1:4]] == ["digits", "b", "c"]
    rows = list(csv.reader(open(tmp_path / "t.csv")))
    assert rows[0][0] == "run" and len(rows) == 4 and "test NLL" in rows[0]
    col = rows[0].index("epochs")
    assert [r[col] for r in rows[1:]] == ["3", "2", "2"]
    page = (tmp_path / "compare.html").read_text()
    assert page.count("data:image/png;base64,") == 4        # the curves, and one sample grid per run
    entries = load([digits_run, other])
    assert differences(entries) == ["model.latent", "train.beta", "train.epochs"]
    h = headline(entries[1])
    assert h["epochs"] == 2 and h["best_valid"] == max(r["valid_elbo"] for r in entries[1].metrics)


@pytest.mark.parametrize("args,message", [
    (["nowhere"], "no such run directory"),
    (["."], "neither a run directory nor a folder of runs"),
])
def test_compare_refuses_what_is_not_runs(args, message, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli("compare", *args)
    assert rc == 2 and message in err


def test_compare_needs_two_runs(digits_run, cli):
    rc, _, err = cli("compare", digits_run)
    assert rc == 2 and "at least two runs" in err
