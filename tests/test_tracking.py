"""--track tensorboard: what a run logs, read back with TensorBoard's own reader."""

import shutil

import pytest

import vaekit

pytest.importorskip("tensorboard")


def events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_logs_what_metrics_csv_holds_and_a_resume_never_logs_an_epoch_twice(tmp_path, cli):
    run = tmp_path / "r"
    common = ["--track", "tensorboard", "--track-every", "2", "--latent", "3", "--hidden", "32", "--batch-size", "128",
              "--quiet"]
    rc, _, err = cli("train", *common, "--epochs", "2", "--out", run)
    assert rc == 0, err
    saved = tmp_path / "epoch2.pt"
    shutil.copy(run / "state" / "last.pt", saved)
    rc, _, err = cli("train", "--resume", run, "--epochs", "4", "--quiet")
    assert rc == 0, err
    # as if a kill had lost epochs 3 and 4 after they were logged: back to epoch 2, and resume again
    shutil.copy(saved, run / "state" / "last.pt")
    rc, _, err = cli("train", "--resume", run, "--epochs", "4", "--quiet")
    assert rc == 0, err
    acc = events(run)
    metrics = vaekit.Run.load(run).metrics
    for tag, column in (("valid/elbo", "valid_elbo"), ("train/kl", "train_kl"), ("lr", "lr")):
        logged = acc.Scalars(tag)
        assert [e.step for e in logged] == [1, 2, 3, 4], tag
        assert [e.value for e in logged] == pytest.approx([r[column] for r in metrics], rel=1e-5), tag
    assert [e.step for e in acc.Images("samples")] == [2, 4]
    assert "config/text_summary" in acc.Tags()["tensors"]
    rc, _, err = cli("evaluate", run, "--k", "4", "--quiet")
    assert rc == 0, err
    acc = events(run)
    nll = acc.Scalars("test/nll")
    assert [e.step for e in nll] == [4] and nll[0].value == pytest.approx(vaekit.Run.load(run).evaluation["nll_nats"])


def test_text_samples_are_logged_as_text(tmp_path, cli):
    from test_text import make_names

    src = make_names(tmp_path / "names.txt", 120)
    rc, _, err = cli("train", "--data", src, "--epochs", "1", "--latent", "2", "--embedding", "8", "--rnn-hidden", "16",
                     "--track", "tensorboard", "--quiet", "--out", tmp_path / "t")
    assert rc == 0, err
    acc = events(tmp_path / "t")
    assert "samples/text_summary" in acc.Tags()["tensors"]


def test_a_tracked_run_trains_to_the_same_weights(tmp_path, cli):
    from safetensors.torch import load_file

    common = ["--latent", "3", "--hidden", "32", "--batch-size", "128", "--epochs", "2", "--quiet"]
    assert cli("train", *common, "--out", tmp_path / "plain")[0] == 0
    assert cli("train", *common, "--track", "tensorboard", "--track-every", "1", "--out", tmp_path / "tracked")[0] == 0
    a, b = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "tracked" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
