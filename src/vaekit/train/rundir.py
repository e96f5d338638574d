"""The run directory: where it goes, its metrics file, and its checkpoint's place.

    runs/<name>/
      config.yaml         data, model and training config (every "auto" resolved), plus the data description
      model.safetensors   the best weights (by the validation bound)
      state/last.pt       last weights and optimiser/trainer state, for --resume
      metrics.csv         one row per epoch
      samples/            pictures, text, sound
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import VaekitError

if TYPE_CHECKING:
    from ..kinds import Bundle

METRIC_FIELDS = ["epoch", "train_loss", "train_elbo", "train_rec", "train_kl", "valid_elbo", "valid_rec",
                 "valid_kl", "beta", "lr", "seconds", "examples_per_s", "skipped_steps", "valid_iwae"]
STATE_FILE = Path("state") / "last.pt"


class MetricsLog:
    """metrics.csv, opened for appending: one row per epoch, flushed as it is written."""

    def __init__(self, out: Path):
        self.file = open(Path(out) / "metrics.csv", "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=METRIC_FIELDS)
        if self.file.tell() == 0:
            self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def default_run_dir(bundle: Bundle) -> Path:
    return Path("runs") / f"{Path(bundle.name).stem or 'data'}-{datetime.now():%Y%m%d-%H%M%S}"


def prepare_dir(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VaekitError(f"{out}: already exists and is not empty; choose another --out (or --resume it).")
    try:
        (out / "state").mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
    except OSError as e:
        raise VaekitError(f"{out}: cannot create the run directory ({e.strerror}).") from None
    return out


def truncate_metrics(path: Path, epoch: int) -> None:
    """Drop rows written after the checkpoint (a run killed between the two writes)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    keep = [r for r in rows if int(r["epoch"]) <= epoch]
    if len(keep) != len(rows) or header != METRIC_FIELDS:  # (also a file written before a column was added)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            w.writeheader()
            w.writerows(keep)

