"""Sample quality offline: the Fréchet distance, precision and recall in a feature network's space,
the feature network trained once per run and shared between runs on the same data."""

import json
import shutil

import numpy as np
import pytest
import torch

import vaekit
from vaekit.eval.quality import VERSION, frechet_distance, precision_recall


def test_the_frechet_distance_of_diagonal_gaussians_has_its_closed_form():
    torch.manual_seed(0)
    n, d = 200_000, 3
    sa, sb = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([1.5, 1.0, 0.5])
    mu = torch.tensor([0.0, 1.0, -2.0])
    a = torch.randn(n, d) * sa
    b = torch.randn(n, d) * sb + mu
    expected = (mu ** 2).sum() + ((sa - sb) ** 2).sum()
    assert abs(frechet_distance(a, b) - expected.item()) < 0.05
    assert abs(frechet_distance(a, a)) < 1e-6


def test_precision_and_recall_tell_coverage_from_fidelity():
    torch.manual_seed(0)
    real = torch.randn(500, 2)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    far = torch.randn(500, 2) + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    collapsed = torch.randn(500, 2) * 0.05      # samples all near the centre: faithful, not diverse
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.9 and recall < 0.3


def test_sample_quality_trains_its_feature_network_once_and_reports_it(cli, digits_run):
    run = vaekit.Run.load(digits_run)
    q = run.sample_quality(n=200, quiet=True)
    assert q["features"] == "classifier" and q["accuracy"] > 0.8       # a classifier of the digits' labels
    assert 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1 and 0 <= q["confident_share"] <= 1
    assert q["confident_share_real"] > 0.5                               # the share real test images get
    assert q["frechet_distance"] > q["frechet_distance_train_vs_test"] >= 0
    assert "not Inception" in q["note"] or "not comparable" in q["note"]
    weights = digits_run / "quality" / "features.safetensors"
    made = weights.stat().st_mtime_ns
    again = run.sample_quality(n=200, quiet=True)                       # the cached network, the same figures
    assert weights.stat().st_mtime_ns == made and again["frechet_distance"] == pytest.approx(q["frechet_distance"])
    rc, out, err = cli("evaluate", digits_run, "--k", "2", "--sample-quality", "--samples", "150")
    assert rc == 0, err
    assert "Frechet distance" in out and "not comparable with papers' FID" in out
    assert json.loads((digits_run / "evaluation.json").read_text())["sample_quality"]["n_samples"] == 150
    rc, _, _ = cli("report", digits_run)
    assert rc == 0 and "precision, recall" in (digits_run / "report.html").read_text()


def test_a_feature_network_of_other_data_is_refused(cli, digits_run, tmp_path):
    other = tmp_path / "other"
    rc, _, err = cli("train", "--epochs", "1", "--hidden", "16", "--latent", "2", "--binarize", "threshold",
                     "--quiet", "--out", other)
    assert rc == 0, err
    vaekit.Run.load(digits_run).feature_net(quiet=True)
    rc, _, err = cli("evaluate", other, "--k", "2", "--sample-quality", "--features", digits_run)
    assert rc != 0 and "other data" in err and len(err.strip().splitlines()) == 1
    rc, _, err = cli("evaluate", other, "--k", "2", "--sample-quality", "--features", tmp_path)
    assert rc != 0 and "no feature network there" in err
    rc, _, err = cli("evaluate", other, "--k", "2", "--features", digits_run)
    assert rc != 0 and "options of --sample-quality" in err


def test_a_feature_network_of_an_older_design_is_trained_again_or_refused(cli, digits_run, tmp_path):
    vaekit.Run.load(digits_run).feature_net(quiet=True)
    run_dir = tmp_path / "copy"
    shutil.copytree(digits_run, run_dir)
    about = run_dir / "quality" / "features.json"
    meta = json.loads(about.read_text())
    del meta["version"]                                                 # as an older vaekit wrote it
    about.write_text(json.dumps(meta))
    rc, _, err = cli("evaluate", digits_run, "--k", "2", "--sample-quality", "--samples", "50",
                     "--features", run_dir, "--quiet")
    assert rc != 0 and "older vaekit" in err and len(err.strip().splitlines()) == 1
    net, again = vaekit.Run.load(run_dir).feature_net(quiet=True)       # its own: trained again and kept
    assert again["version"] == json.loads(about.read_text())["version"] == VERSION
    assert not net.training


def test_unlabelled_images_get_an_autoencoder_for_features(cli, tmp_path):
    from sklearn.datasets import load_digits

    from vaekit.report import quality_rows

    images = tmp_path / "images.npy"
    np.save(images, (load_digits().images * 15).astype(np.uint8))        # 8x8 grey levels, no labels
    out = tmp_path / "unlabelled"
    rc, _, err = cli("train", "--data", images, "--epochs", "1", "--hidden", "16", "--latent", "2", "--quiet",
                     "--out", out)
    assert rc == 0, err
    q = vaekit.Run.load(out).sample_quality(n=100, quiet=True)
    assert q["features"] == "autoencoder" and 0 < q["reconstruction_mse"] < 0.1 and "confident_share" not in q
    assert q["frechet_distance"] > q["frechet_distance_train_vs_test"] >= 0
    assert "features of an autoencoder" in quality_rows(q)[0][1]


def test_text_runs_are_refused_in_one_sentence(cli, tmp_path):
    lines = tmp_path / "names.txt"
    lines.write_text("\n".join(["anna", "bert", "carl", "dora", "emil", "fritz", "greta", "hans"] * 10))
    out = tmp_path / "text"
    rc, _, err = cli("train", "--data", lines, "--epochs", "1", "--latent", "2", "--quiet", "--out", out)
    assert rc == 0, err
    rc, _, err = cli("evaluate", out, "--k", "2", "--sample-quality", "--quiet")
    assert rc != 0 and "not lines of text or sequences" in err and len(err.strip().splitlines()) == 1
    assert not (out / "evaluation.json").exists()                        # refused before any work
