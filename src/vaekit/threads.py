"""How many threads PyTorch's CPU kernels use: the cores this process may use, less what other
processes are using now.

PyTorch starts with one thread per core of the machine. On a busy machine that is the wrong
number: beside one busy-looping process on 2 cores, an epoch of the digits model took 0.62-0.87 s
with 2 threads and 0.18-0.27 s with 1 (alone: 0.14-0.17 s), because each step waits for the
thread that lost its core. So vaekit counts:

- the cores it may use: the CPU affinity mask (``taskset``, a scheduler's allocation), a cgroup
  v2 quota (``cpu.max``: a container's share), and ``OMP_NUM_THREADS`` when set;
- the cores other processes keep busy: from ``/proc/stat``, the machine's busy time less this
  process's own CPU time, over each epoch (so that a job that starts or stops beside a training
  is followed, epoch by epoch, over at least 3 s; the first epochs use every core it may);

and uses the cores left, at least one. (Under DistributedDataParallel on the CPU the other
processes of the run are such processes, so they share the cores.) A count that changes
mid-run can change the last bits of some kernels' results (the GRU's among them): a resume is
bit-identical to an uninterrupted run when the count stayed the same, as on a machine whose
load does not change, or with ``--threads``. ``--threads N`` fixes the number. Where ``/proc/stat``
cannot be read (not Linux), only the first count applies.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch


def usable_cores() -> tuple[int, str]:
    """The cores this process may use, and what limits them."""
    try:
        n, why = len(os.sched_getaffinity(0)), "CPU affinity"
    except AttributeError:  # not Linux
        n, why = os.cpu_count() or 1, "cores"
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0 and math.ceil(int(quota) / int(period)) < n:
            n, why = max(1, math.ceil(int(quota) / int(period))), "cgroup CPU quota"
    except (OSError, ValueError):
        pass
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and 0 < int(omp) < n:
        n, why = int(omp), "OMP_NUM_THREADS"
    return n, why


def _busy_seconds() -> float | None:
    """Seconds of CPU time all cores of the machine have spent busy since boot, or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(v) for v in fields]
    except (OSError, ValueError, IndexError):
        return None
    busy = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)   # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


class Load:
    """The cores other processes kept busy between two readings of /proc/stat."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.wall, self.cpu, self.busy = time.perf_counter(), time.process_time(), _busy_seconds()

    def others(self) -> float | None:
        """Cores used by other processes since the last reset (None where it cannot be known)."""
        busy = _busy_seconds()
        wall = time.perf_counter() - self.wall
        if busy is None or self.busy is None or wall <= 0:
            return None
        return max(0.0, (busy - self.busy - (time.process_time() - self.cpu)) / wall)


class Threads:
    """The thread count of one process: fixed (``requested``), or chosen from the cores left and
    revised by :meth:`revise` as the machine's load changes."""

    def __init__(self, requested: int | None = None):
        self.cores, self.limit = usable_cores()
        self.requested = requested
        self.load = Load()
        if requested:
            self.n, self.why = requested, "--threads"
        else:
            self.n, self.why = self._choose(None)
        torch.set_num_threads(self.n)

    def _choose(self, others: float | None) -> tuple[int, str]:
        if others is None or others < 0.5:
            return self.cores, f"{self.limit}: {self.cores}" + ("" if self.requested or others is not None
                                                                else "; revised each epoch for other processes")
        busy = min(self.cores - 1, round(others))
        return max(1, self.cores - busy), f"{self.cores} by {self.limit}, other processes busy on {others:.1f}"

    #: the shortest interval a revision measures: /proc/stat counts in ticks of 10 ms, so over a
    #: short epoch its difference from this process's own CPU time is noise, not another process
    MIN_SECONDS = 3.0

    def revise(self) -> str | None:
        """After an epoch: the count for the load measured since the last revision (epochs are
        pooled until MIN_SECONDS have passed); a line saying so when it changed."""
        if self.requested or time.perf_counter() - self.load.wall < self.MIN_SECONDS:
            return None
        others = self.load.others()
        if others is not None:
            n, why = self._choose(others)
            self.load.reset()
            if n != self.n:
                old, self.n, self.why = self.n, n, why
                torch.set_num_threads(n)
                return f"threads {old} -> {n} ({why})"
        return None

    def describe(self) -> str:
        return f"{self.n} thread{'s' if self.n != 1 else ''} ({self.why})"
