"""The run directory: where it goes, its metrics file, its checkpoint's place, the lock that
keeps one writer on it, and the signals that stop a run cleanly.

    runs/<name>/
      config.yaml         data, model and training config (every "auto" resolved), plus the data description
      model.safetensors   the best weights (by the validation bound)
      state/last.pt       last weights and optimiser/trainer state, for --resume
      metrics.csv         one row per epoch
      samples/            pictures, text, sound
"""

from __future__ import annotations

import csv
import os
import signal
import threading
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Preempted, VaekitError
from ..run import METRIC_COLUMNS

if TYPE_CHECKING:
    from ..kinds import Bundle

METRIC_FIELDS = ["epoch", "train_loss", "train_elbo", "train_rec", "train_kl", "valid_elbo", "valid_rec",
                 "valid_kl", "beta", "lr", "seconds", "examples_per_s", "skipped_steps", "valid_iwae", "recoveries",
                 "valid_active_units", "valid_objective", "codes_used", "code_perplexity", "grad_norm_max"]
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
    """Drop rows written after the checkpoint (a run killed between the two writes), and rows that
    are damaged (not a whole row of numbers)."""
    if not path.exists():
        return
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error):
        rows, header = [], []

    def whole(r) -> bool:   # what read_metrics accepts: every value a number, and the columns every row has
        try:
            parsed = {k: float(v) for k, v in r.items() if k is not None and v not in ("", None)}
        except (TypeError, ValueError):
            return False
        return all(c in parsed and parsed[c] == parsed[c] for c in METRIC_COLUMNS)

    keep = [{k: v for k, v in r.items() if k in METRIC_FIELDS} for r in rows if whole(r) and float(r["epoch"]) <= epoch]
    if len(keep) != len(rows) or header != METRIC_FIELDS:  # (also a file written before a column was added)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            w.writeheader()
            w.writerows(keep)



#: the signals that stop training cleanly: SIGTERM (schedulers, ``docker stop``), SIGUSR1 (SLURM's
#: warning before a time limit); SIGINT is Python's KeyboardInterrupt and stops it the same way
PREEMPTION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


@contextmanager
def preemption_signals():
    """Inside the block, SIGTERM and SIGUSR1 raise :class:`~vaekit.errors.Preempted` in the
    training loop, as Ctrl-C raises KeyboardInterrupt: the epoch in progress is abandoned and the
    last epoch's checkpoint (written atomically) stays on disk. The handlers before are put back
    after. Only the main thread can take signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Preempted(signum)

    before = {s: signal.signal(s, stop) for s in PREEMPTION_SIGNALS}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


class RunLock:
    """One writer per run directory: an exclusive advisory lock (``flock``) on ``<run>/state/lock``,
    held while a process trains the run. The operating system drops it when the process ends, so a
    killed run never leaves a stale lock. A second writer is refused with one sentence naming the
    process that holds it. Where ``fcntl`` does not exist (Windows) there is no lock."""

    def __init__(self, run: Path):
        self.run, self.file = Path(run), None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        path = self.run / "state" / "lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "a+")
        except OSError as e:
            raise VaekitError(f"{path}: cannot open the run's lock file ({e.strerror or e}).") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise VaekitError(f"{self.run}: {holder} is training this run already; wait for it to finish or stop "
                              f"it, then resume.") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {os.uname().nodename}" if hasattr(os, "uname") else f"process {os.getpid()}")
        f.flush()
        self.file = f
        return self

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing the file drops the lock
            self.file = None
