"""Training, by responsibility: the loop (:mod:`.loop`), the acceleration policy (:mod:`.accel`),
weight averaging (:mod:`.averaging`), the run directory (:mod:`.rundir`), starting and resuming
a run (:mod:`.start`), and torchrun DDP (:mod:`.distributed`)."""

from .accel import GraphedStep, cuda_graph_blocker, native_bfloat16, slow_amp_warning
from .loop import Trainer
from .rundir import METRIC_FIELDS, STATE_FILE
from .start import _describe, resume, train

__all__ = ["train", "resume", "Trainer", "GraphedStep", "cuda_graph_blocker", "native_bfloat16", "slow_amp_warning",
           "METRIC_FIELDS", "STATE_FILE", "_describe"]
