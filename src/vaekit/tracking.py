"""Experiment tracking: what a run logs to TensorBoard as it trains (``--track tensorboard``).

Event files go into ``<run>/tensorboard`` (``tensorboard --logdir runs`` shows every run):

- each epoch, the row of metrics.csv: ``train/elbo``, ``train/rec``, ``train/kl``, ``valid/elbo``,
  ``valid/rec``, ``valid/kl``, ``valid/iwae`` (IWAE runs), ``beta``, ``lr``, ``examples_per_s``,
  ``skipped_steps``, at the epoch as its step;
- at the first epoch, the resolved config (text) and the main hyperparameters (TensorBoard's
  HParams view);
- every ``--track-every`` epochs and at the last, 16 prior samples as the explorer shows them
  (a picture; lines of text; a spectrogram and the sound);
- ``vaekit evaluate``'s figures, at the run's last epoch (``test/nll``, ``test/elbo``, ...).

A resume appends to the same event files: events newer than the checkpoint's epoch (written by
the epochs a kill lost) are purged, so no epoch is logged twice. Nothing is logged from a
process other than the main one of a distributed run.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import yaml

from .errors import VaekitError

#: metrics.csv's columns that are logged, and their names in TensorBoard
SCALARS = {"train_elbo": "train/elbo", "train_rec": "train/rec", "train_kl": "train/kl", "valid_elbo": "valid/elbo",
           "valid_rec": "valid/rec", "valid_kl": "valid/kl", "valid_iwae": "valid/iwae", "beta": "beta", "lr": "lr",
           "examples_per_s": "examples_per_s", "skipped_steps": "skipped_steps"}
#: evaluation.json's figures that are logged
EVALUATION = {"nll_nats": "test/nll", "elbo_nats": "test/elbo", "rec_nats": "test/rec", "kl_nats": "test/kl",
              "bits_per_dim": "test/bits_per_dim", "active_units": "test/active_units", "perplexity": "test/perplexity"}
#: the hyperparameters shown in TensorBoard's HParams view
HPARAMS = ("model.net", "model.latent", "model.prior", "model.likelihood", "train.objective", "train.beta", "train.lr",
           "train.batch_size", "train.epochs", "train.seed")
FOLDER = "tensorboard"


class TensorBoard:
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
        for key, name in SCALARS.items():
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(name, value, step)
        if step == 1:   # the HParams view: the config's main choices against the validation bound
            cfg = self.config.to_dict()
            hp = {k: _plain(cfg[k.split(".")[0]][k.split(".")[1]]) for k in HPARAMS}
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
        for key, name in EVALUATION.items():
            value = result.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _plain(v):
    """A hyperparameter as TensorBoard takes it: a number, a string or a bool."""
    return v if isinstance(v, (int, float, str, bool)) else str(v)


def _data(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


TRACKERS = {"tensorboard": TensorBoard}


def trackers(out: Path, config, first_epoch: int = 0) -> list:
    """The trackers ``config.train.track`` names, opened on the run directory ``out``."""
    return [TRACKERS[name](out, config, first_epoch) for name in ([] if config.train.track == "none"
                                                                    else [config.train.track])]
