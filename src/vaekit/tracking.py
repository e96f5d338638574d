"""Experiment tracking: what a run logs to TensorBoard and MLflow as it trains
(``--track tensorboard``, ``--track mlflow``, or both: ``--track tensorboard,mlflow``).

Both get the same things:

- each epoch, the row of metrics.csv: ``train/elbo``, ``train/rec``, ``train/kl``, ``valid/elbo``,
  ``valid/rec``, ``valid/kl``, ``valid/iwae`` (IWAE runs), ``valid/active_units``, ``beta``,
  ``lr``, ``examples_per_s``, ``skipped_steps``, at the epoch as its step;
- the resolved config: TensorBoard, as text and the main hyperparameters (its HParams view);
  MLflow, every option as a parameter (``model.latent``, ...) and config.yaml as an artifact;
- every ``--track-every`` epochs and at the last, 16 prior samples as the explorer shows them
  (a picture; lines of text; a spectrogram and the sound);
- ``vaekit evaluate``'s figures, at the run's last epoch (``test/nll``, ``test/elbo``, ...).

TensorBoard's event files go into ``<run>/tensorboard`` (``tensorboard --logdir runs`` shows
every run). MLflow logs where ``MLFLOW_TRACKING_URI`` points (a server, a database), else into
an SQLite file beside the run, ``<runs>/mlflow.db``, with the artifacts in ``<runs>/mlartifacts``
(``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`` shows them; MLflow's plain-folder
store is retired), in the experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``vaekit``); the
MLflow run is named after the run directory, and its id is kept in ``<run>/mlflow.json``.

A resume continues the same TensorBoard run and the same MLflow run and never logs an epoch
twice: TensorBoard's events newer than the checkpoint's epoch (written by the epochs a kill lost)
are purged; MLflow, whose figures cannot be taken back, gets an epoch's figures only once its
checkpoint is on disk, and on a resume the epochs of metrics.csv it has not yet had. Nothing is
logged from a process other than the main one of a distributed run.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from .errors import VaekitError

#: metrics.csv's columns that are logged, and their names in TensorBoard
SCALARS = {"train_elbo": "train/elbo", "train_rec": "train/rec", "train_kl": "train/kl", "valid_elbo": "valid/elbo",
           "valid_rec": "valid/rec", "valid_kl": "valid/kl", "valid_iwae": "valid/iwae", "beta": "beta", "lr": "lr",
           "valid_active_units": "valid/active_units", "examples_per_s": "examples_per_s",
           "skipped_steps": "skipped_steps", "valid_objective": "valid/objective", "codes_used": "codes_used",
           "code_perplexity": "code_perplexity", "grad_norm_max": "train/grad_norm_max"}
#: evaluation.json's figures that are logged
EVALUATION = {"nll_nats": "test/nll", "elbo_nats": "test/elbo", "rec_nats": "test/rec", "kl_nats": "test/kl",
              "bits_per_dim": "test/bits_per_dim", "active_units": "test/active_units", "perplexity": "test/perplexity"}
#: the hyperparameters shown in TensorBoard's HParams view
HPARAMS = ("model.net", "model.latent", "model.prior", "model.likelihood", "train.objective", "train.beta", "train.lr",
           "train.batch_size", "train.epochs", "train.seed")
FOLDER = "tensorboard"


class Tracker:
    """What the trainer and ``evaluate`` tell a tracker."""

    def epoch(self, row: dict) -> None:
        """An epoch's row of metrics.csv (written, its checkpoint not yet)."""

    def checkpointed(self) -> None:
        """The checkpoint of the epochs given so far is on disk."""

    def shown(self, shown: dict, step: int, tag: str = "samples") -> None:
        """What a kind's ``render`` returns: a PNG picture, lines of text, a WAV."""

    def evaluation(self, result: dict, step: int) -> None:
        """``evaluate``'s figures."""

    def close(self, finished: bool | None = None) -> None:
        """The end of training (``finished``: all its epochs done) or of an evaluation (None)."""


def _scalars(row: dict, names: dict) -> dict[str, float]:
    return {name: float(row[key]) for key, name in names.items()
            if isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool)}


class TensorBoard(Tracker):
    """A run's TensorBoard event files (``torch.utils.tensorboard``, which needs the tensorboard
    package: ``pip install 'vaekit[tensorboard]'``)."""

    def __init__(self, out: Path, config, first_epoch: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise VaekitError("--track tensorboard needs TensorBoard, which is not installed: "
                              "pip install 'vaekit[tensorboard]'.") from None
        self.config = config
        # a resume from epoch E drops the events of later epochs (the ones a kill lost)
        self.writer = SummaryWriter(log_dir=str(Path(out) / FOLDER), purge_step=first_epoch + 1 if first_epoch else None)
        if not first_epoch:
            cfg = config.to_dict()
            self.writer.add_text("config", "```\n" + yaml.safe_dump(cfg, sort_keys=False) + "```", 0)

    def epoch(self, row: dict) -> None:
        step = int(row["epoch"])
        for name, value in _scalars(row, SCALARS).items():
            self.writer.add_scalar(name, value, step)
        if step == 1:   # the HParams view: the config's main choices against the validation bound
            cfg = self.config.flat()
            hp = {k: _plain(cfg[k]) for k in HPARAMS}
            self.writer.add_hparams(hp, {"hparam/valid_elbo": float(row["valid_elbo"])}, run_name=".",
                                    global_step=step)
        self.writer.flush()

    def shown(self, shown: dict, step: int, tag: str = "samples") -> None:
        """What a kind's ``render`` returns: a PNG picture, lines of text, a WAV."""
        if "image" in shown:
            import numpy as np
            from PIL import Image

            with Image.open(io.BytesIO(_data(shown["image"]))) as im:
                self.writer.add_image(tag, np.asarray(im.convert("RGB")), step, dataformats="HWC")
        if "text" in shown:
            self.writer.add_text(tag, "    " + shown["text"].replace("\n", "\n    "), step)
        if "audio" in shown:
            import soundfile as sf

            wave, rate = sf.read(io.BytesIO(_data(shown["audio"])), dtype="float32")
            self.writer.add_audio(tag, wave.reshape(1, -1), step, sample_rate=rate)
        self.writer.flush()

    def evaluation(self, result: dict, step: int) -> None:
        for name, value in _scalars(result, EVALUATION).items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self, finished: bool | None = None) -> None:
        self.writer.close()


class MLflow(Tracker):
    """A run's MLflow run (``pip install 'vaekit[mlflow]'``), through ``mlflow.MlflowClient``."""

    RECORD = "mlflow.json"

    def __init__(self, out: Path, config, first_epoch: int = 0):
        try:
            import mlflow
        except ImportError:
            raise VaekitError("--track mlflow needs MLflow, which is not installed: "
                              "pip install 'vaekit[mlflow]'.") from None
        from mlflow.entities import Metric, Param

        self.Metric, self.out = Metric, Path(out)
        runs = self.out.resolve().parent
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{runs / 'mlflow.db'}"
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        record = self.out / self.RECORD
        known = json.loads(record.read_text()) if record.exists() else {}
        self.run_id = known.get("run_id") if known.get("tracking_uri") == uri else None
        if self.run_id is not None:
            try:
                self.client.get_run(self.run_id)
            except mlflow.exceptions.MlflowException:   # deleted from the store since: a new one
                self.run_id = None
        self.pending: list[dict] = []
        self.logged = 0   # the last epoch logged
        if self.run_id is None:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "vaekit"
            found = self.client.get_experiment_by_name(name)
            experiment = found.experiment_id if found else self.client.create_experiment(
                name, artifact_location=None if "MLFLOW_TRACKING_URI" in os.environ
                else (runs / "mlartifacts").as_uri())
            self.run_id = self.client.create_run(experiment, run_name=self.out.name,
                                                 tags={"vaekit.run": str(self.out.resolve())}).info.run_id
            record.write_text(json.dumps({"tracking_uri": uri, "run_id": self.run_id}, indent=2) + "\n")
            params = [Param(k, ",".join(map(str, v)) if isinstance(v, list) else str(v))
                      for k, v in config.flat().items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[i:i + 100])
            self.client.log_text(self.run_id, yaml.safe_dump(config.to_dict(), sort_keys=False), "config.yaml")
        else:   # a resume: the epochs metrics.csv has and MLflow has not (a kill before they were logged)
            history = self.client.get_metric_history(self.run_id, SCALARS["valid_elbo"])
            self.logged = max((m.step for m in history), default=0)
            self.pending = [r for r in _read_rows(self.out / "metrics.csv") if r["epoch"] <= first_epoch]
            self.checkpointed()

    def _log(self, values: dict[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)
        metrics = [self.Metric(name, value, stamp, step) for name, value in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def epoch(self, row: dict) -> None:
        self.pending.append(row)

    def checkpointed(self) -> None:
        for row in self.pending:
            if int(row["epoch"]) > self.logged:   # (epochs a resume from an older checkpoint trains again are not)
                self._log(_scalars(row, SCALARS), int(row["epoch"]))
                self.logged = int(row["epoch"])
        self.pending = []

    def shown(self, shown: dict, step: int, tag: str = "samples") -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for key, suffix in (("image", "png"), ("audio", "wav")):
                if key in shown:
                    f = Path(tmp) / f"epoch_{step:04d}.{suffix}"
                    f.write_bytes(_data(shown[key]))
                    self.client.log_artifact(self.run_id, str(f), tag)
        if "text" in shown:
            self.client.log_text(self.run_id, shown["text"] + "\n", f"{tag}/epoch_{step:04d}.txt")

    def evaluation(self, result: dict, step: int) -> None:
        self._log(_scalars(result, EVALUATION), step)

    def close(self, finished: bool | None = None) -> None:
        self.checkpointed()
        if finished is not None:
            self.client.set_terminated(self.run_id, "FINISHED" if finished else "KILLED")


def _read_rows(path: Path) -> list[dict]:
    """metrics.csv's rows as numbers (empty cells left out)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if k and v not in ("", None)} for r in csv.DictReader(f)]


def _plain(v):
    """A hyperparameter as TensorBoard takes it: a number, a string or a bool."""
    return v if isinstance(v, (int, float, str, bool)) else str(v)


def _data(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


TRACKERS = {"tensorboard": TensorBoard, "mlflow": MLflow}


def tracked(config) -> list[str]:
    """The trackers ``config.train.track`` names ("none", or names separated by commas)."""
    return [] if config.train.track == "none" else config.train.track.split(",")


def trackers(out: Path, config, first_epoch: int = 0) -> list[Tracker]:
    """The trackers ``config.train.track`` names, opened on the run directory ``out``."""
    return [TRACKERS[name](out, config, first_epoch) for name in tracked(config)]
