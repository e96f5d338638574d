"""Scoring new data: the scores, the thresholds, the out-of-distribution figures and the errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from test_text import make_names
from vaekit.config import ModelConfig
from vaekit.kinds import kind
from vaekit.model import build_model
from vaekit.run import Run
from vaekit.score import has_llr, ood_metrics, score_examples

IMAGE = {"shape": [1, 8, 8], "value": "binary", "modality": "image"}


def noise_pngs(folder, n=40, seed=0):
    """8 x 8 grey pictures of uniform noise: nothing like handwritten digits."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"noise-{i:02d}.png")
    return folder


def test_the_bound_and_its_parts_agree_and_the_llr_is_for_top_down_models():
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(6, 1, 8, 8))
    for options, llr in (({}, False), ({"prior": "hierarchical", "inference": "top-down"}, True),
                         ({"prior": "hierarchical"}, False), ({"prior": "hierarchical", "inference": "top-down",
                                                              "flow": 1}, False)):
        m = ModelConfig(latent=4, hidden=[16], net="mlp", likelihood="bernoulli", **options)
        model = build_model(m, IMAGE).eval()
        s = score_examples(model, kind("image")(IMAGE, {}), x, k=50)
        assert has_llr(model) == llr and ("llr" in s) == llr
        # the k-sample bound is at least the average of its log-weights: nll <= -ELBO, for every example
        assert torch.all(s["nll"] <= s["neg_elbo"] + 1e-9)
        torch.testing.assert_close(s["neg_elbo"], s["reconstruction"] + s["kl"])
        assert s["nll"].shape == (6,) and s["nll"].dtype == torch.float64


def test_the_compressors_see_simple_inputs_as_simple():
    images = kind("image")(IMAGE, {})
    blank, noisy = torch.zeros(1, 1, 8, 8), torch.bernoulli(torch.full((1, 1, 8, 8), 0.5))
    assert images.complexity_bits(blank)[0] < images.complexity_bits(noisy)[0]
    grey = kind("image")({"shape": [3, 16, 16], "value": "levels"}, {})
    assert grey.complexity_bits(torch.zeros(1, 3, 16, 16))[0] < grey.complexity_bits(torch.rand(1, 3, 16, 16))[0]


def test_ood_metrics_of_separated_and_identical_scores():
    a, b = {"s": torch.arange(100.0)}, {"s": torch.arange(100.0) + 1000}
    m = ood_metrics(a, b, ["s"])["s"]
    assert m["auroc"] == 1.0 and m["auprc"] == 1.0 and m["fpr_at_95_tpr"] == 0.0
    assert ood_metrics(a, {"s": torch.arange(100.0)}, ["s"])["s"]["auroc"] == pytest.approx(0.5)


def test_score_command_flags_and_tells_noise_from_digits(digits_run, cli, tmp_path):
    noise = noise_pngs(tmp_path / "noise")
    rc, out, err = cli("score", digits_run, "--k", "20", "--data-ood", noise, "--by", "nll", "--quiet")
    assert rc == 0, err
    assert "scored 180 examples of test split" in out and "flagged by nll" in out
    rows = list(csv.DictReader(open(digits_run / "scores" / "test-split.csv")))
    assert len(rows) == 180 and rows[0]["name"] == "test[0]"
    assert set(rows[0]) == {"name", "nll", "neg_elbo", "reconstruction", "kl", "complexity", "typicality", "flagged"}
    # the noise is nothing like the digits: the likelihood finds it, and the corrected score (noise is
    # complex: the compressor needs many bits for it, which the correction subtracts) still does
    summary = json.loads((digits_run / "scores" / "summary.json").read_text())
    metrics = summary["ood"]["metrics"]
    assert metrics["nll"]["auroc"] > 0.9 and metrics["complexity"]["auroc"] > 0.75
    assert "typicality, batches of 16" in metrics
    assert (digits_run / "scores" / "roc.png").is_file()
    noise_rows = list(csv.DictReader(open(digits_run / "scores" / "noise.csv")))
    assert noise_rows[0]["name"] == "noise-00.png"
    assert sum(int(r["flagged"]) for r in noise_rows) > 30
    # the report gains the section
    rc, _, err = cli("report", digits_run)
    html = (digits_run / "report.html").read_text()
    assert rc == 0 and "Scoring new data" in html and "AUROC" in html


def test_the_api_scores_one_example_a_batch_or_a_folder_in_chunks(digits_run, tmp_path):
    run = Run.load(digits_run)
    x = run.data.split("test")[:5]
    one = run.score(x[0], k=10)
    assert one["nll"].shape == (1,) and one["flagged"].shape == (1,) and "typicality" in one
    batch = run.score(x, k=10, fpr=None)
    assert batch["nll"].shape == (5,) and "flagged" not in batch
    folder = noise_pngs(tmp_path / "noise", n=7)
    streamed = run.score(folder, k=10, chunk=3)      # read three files at a time
    whole = run.score(folder, k=10, chunk=100)
    assert streamed["names"] == [f"noise-{i:02d}.png" for i in range(7)]
    torch.testing.assert_close(streamed["complexity"] - streamed["nll"] / np.log(2),
                               whole["complexity"] - whole["nll"] / np.log(2))   # the same compressor bits
    assert (streamed["nll"] - whole["nll"]).abs().max() < 5.0   # the same estimate, other random draws
    cached = sorted((digits_run / "scores").glob("reference-*.json"))
    assert cached   # the validation reference is kept and reused while the weights are the same


def test_text_scores_lines_by_file_and_line_number(tmp_path, cli):
    src = make_names(tmp_path / "names.txt", n=200)
    rc, _, err = cli("train", "--data", src, "--epochs", "1", "--latent", "2", "--embedding", "8", "--rnn-hidden",
                     "16", "--quiet", "--out", tmp_path / "run")
    assert rc == 0, err
    other = tmp_path / "other.txt"
    other.write_text("anna\n\nqqqqzzzzxxxx\n")
    rc, out, err = cli("score", tmp_path / "run", "--data", other, "--k", "5", "--quiet")
    assert rc == 0, err
    rows = list(csv.DictReader(open(tmp_path / "run" / "scores" / "other.txt.csv")))
    assert [r["name"] for r in rows] == ["other.txt:1", "other.txt:3"]
    assert float(rows[1]["nll"]) > float(rows[0]["nll"])   # a made-up string is less likely than a name


def test_data_of_another_shape_or_kind_is_one_sentence(digits_run, cli, tmp_path):
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((4, 28, 28), np.uint8))
    rc, _, err = cli("score", digits_run, "--data", big)
    assert rc == 2 and "[1, 28, 28]" in err and "[1, 8, 8]" in err and "Traceback" not in err
    rc, _, err = cli("score", digits_run, "--data", tmp_path / "missing")
    assert rc == 2 and "missing" in err and "no such file" in err
    lines = tmp_path / "lines.txt"
    lines.write_text("anna\nbob\n")
    rc, _, err = cli("score", digits_run, "--data", lines)
    assert rc == 2 and "looks like text data" in err and "image data of shape [1, 8, 8]" in err
    rc, _, err = cli("score", digits_run, "--by", "llr")
    assert rc == 2 and "top-down hierarchical model" in err
    rc, _, err = cli("score", digits_run, "--fpr", "1.5")
    assert rc == 2 and "between 0 and 1" in err
