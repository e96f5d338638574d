"""--track tensorboard / mlflow: what a run logs, read back with TensorBoard's own reader and
the MLflow client."""

import json
import shutil
from pathlib import Path

import pytest

import vaekit


def events(run):
    pytest.importorskip("tensorboard")
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


def test_text_samples_are_logged_as_text(tmp_path, cli, monkeypatch):
    from test_text import make_names

    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    src = make_names(tmp_path / "names.txt", 120)
    rc, _, err = cli("train", "--data", src, "--epochs", "1", "--latent", "2", "--embedding", "8", "--rnn-hidden", "16",
                     "--track", "tensorboard,mlflow", "--quiet", "--out", tmp_path / "t")
    assert rc == 0, err
    acc = events(tmp_path / "t")
    assert "samples/text_summary" in acc.Tags()["tensors"]
    record = json.loads((tmp_path / "t" / "mlflow.json").read_text())
    client = mlflow.MlflowClient(record["tracking_uri"])
    text = (Path(client.download_artifacts(record["run_id"], "samples/epoch_0001.txt", str(tmp_path)))).read_text()
    assert len(text.splitlines()) == 16


def test_a_tracked_run_trains_to_the_same_weights(tmp_path, cli):
    pytest.importorskip("tensorboard")
    from safetensors.torch import load_file

    common = ["--latent", "3", "--hidden", "32", "--batch-size", "128", "--epochs", "2", "--quiet"]
    assert cli("train", *common, "--out", tmp_path / "plain")[0] == 0
    assert cli("train", *common, "--track", "tensorboard", "--track-every", "1", "--out", tmp_path / "tracked")[0] == 0
    a, b = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "tracked" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)


@pytest.fixture
def mlflow_client(monkeypatch):
    """The client of a run's default MLflow store: ``<runs>/mlflow.db``."""
    mlflow = pytest.importorskip("mlflow")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    return lambda run: mlflow.MlflowClient(json.loads((run / "mlflow.json").read_text())["tracking_uri"])


def test_mlflow_logs_what_metrics_csv_holds_and_a_kill_before_logging_loses_no_epoch(tmp_path, cli, mlflow_client,
                                                                                      monkeypatch):
    from vaekit.tracking import MLflow

    run = tmp_path / "runs" / "r"
    common = ["--track", "mlflow,tensorboard", "--track-every", "2", "--latent", "3", "--hidden", "32",
              "--batch-size", "128", "--quiet"]
    checkpointed = MLflow.checkpointed

    def killed_at_3(self):    # a kill after epoch 3's checkpoint is written, before MLflow has its figures
        if any(r["epoch"] == 3 for r in self.pending):
            raise KeyboardInterrupt
        checkpointed(self)

    monkeypatch.setattr(MLflow, "checkpointed", killed_at_3)
    rc, _, err = cli("train", *common, "--epochs", "4", "--out", run)
    assert rc != 0 and "Resume with" in err
    monkeypatch.setattr(MLflow, "checkpointed", checkpointed)
    assert len(vaekit.Run.load(run).metrics) == 3
    saved = tmp_path / "epoch3.pt"
    shutil.copy(run / "state" / "last.pt", saved)
    rc, _, err = cli("train", "--resume", run, "--epochs", "5", "--quiet")
    assert rc == 0, err
    # a resume from an older checkpoint (epoch 3) trains epochs 4 and 5 again: not logged twice
    shutil.copy(saved, run / "state" / "last.pt")
    rc, _, err = cli("train", "--resume", run, "--epochs", "6", "--quiet")
    assert rc == 0, err
    client = mlflow_client(run)
    record = json.loads((run / "mlflow.json").read_text())
    assert record["tracking_uri"] == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    found = client.search_runs([client.get_experiment_by_name("vaekit").experiment_id])
    assert [r.info.run_id for r in found] == [record["run_id"]] and found[0].info.run_name == "r"
    assert found[0].info.status == "FINISHED"
    metrics = vaekit.Run.load(run).metrics
    for tag, column in (("valid/elbo", "valid_elbo"), ("train/kl", "train_kl"), ("lr", "lr"),
                        ("valid/active_units", "valid_active_units")):
        logged = sorted(client.get_metric_history(record["run_id"], tag), key=lambda m: m.step)
        assert [m.step for m in logged] == [1, 2, 3, 4, 5, 6], tag
        assert [m.value for m in logged] == pytest.approx([r[column] for r in metrics], rel=1e-5), tag
    params = found[0].data.params
    assert params["model.latent"] == "3" and params["model.hidden"] == "32" and params["train.track"] == "mlflow,tensorboard"
    artifacts = [a.path for a in client.list_artifacts(record["run_id"], "samples")]
    assert artifacts == [f"samples/epoch_{e:04d}.png" for e in (2, 4, 5, 6)]   # every 2 epochs, and each last
    assert (tmp_path / "runs" / "mlartifacts").is_dir()
    rc, _, err = cli("evaluate", run, "--k", "4", "--quiet")
    assert rc == 0, err
    nll = client.get_metric_history(record["run_id"], "test/nll")
    assert [m.step for m in nll] == [6] and nll[0].value == pytest.approx(vaekit.Run.load(run).evaluation["nll_nats"])
    assert sorted(e.step for e in events(run).Scalars("valid/elbo")) == [1, 2, 3, 4, 5, 6]


def test_a_missing_tracker_or_a_wrong_name_is_one_sentence(tmp_path, cli, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mlflow(name, *a, **k):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    rc, _, err = cli("train", "--track", "mlflow", "--epochs", "1", "--quiet", "--out", tmp_path / "r")
    assert rc != 0 and "pip install 'vaekit[mlflow]'" in err and "Traceback" not in err
    rc, _, err = cli("train", "--track", "tensorboard,wandb", "--epochs", "1", "--quiet", "--out", tmp_path / "s")
    assert rc == 2 and "expected none or some of tensorboard, mlflow separated by commas" in err
