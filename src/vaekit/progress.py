"""The progress bar of long work (training, the k-sample NLL): tqdm with one set of settings."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(total: float, quiet: bool = False, **kwargs) -> tqdm:
    """A bar with rate and ETA on stderr, off under ``quiet``. On a terminal it redraws five
    times a second; written to a file or a pipe (a log under nohup, a job scheduler) it updates
    once every 30 seconds, not at every step."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, disable=quiet, dynamic_ncols=True, mininterval=0.2 if tty else 30.0, **kwargs)
