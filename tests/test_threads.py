"""Threads that fit the machine: the cores this process may use, less those others keep busy."""

from __future__ import annotations

import subprocess
import sys
import time

import torch

from vaekit import threads
from vaekit.threads import Load, Threads, usable_cores


def test_usable_cores_respect_omp_num_threads(monkeypatch):
    cores, _ = usable_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert usable_cores() == (1, "OMP_NUM_THREADS") or cores == 1


def test_the_count_leaves_the_cores_other_processes_use(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: (4, "CPU affinity"))
    before = torch.get_num_threads()
    try:
        t = Threads()
        assert t.n == 4 and "revised each epoch" in t.describe()
        assert t._choose(0.2)[0] == 4            # a little noise is not a process
        assert t._choose(1.1)[0] == 3            # one busy process: one core fewer
        assert t._choose(7.5)[0] == 1            # never fewer than one
        monkeypatch.setattr(t.load, "others", lambda: 2.0)
        assert t.revise() is None                # too short a time to tell another process from noise
        t.load.wall -= t.MIN_SECONDS
        assert t.revise() == "threads 4 -> 2 (4 by CPU affinity, other processes busy on 2.0)"
        t.load.wall -= t.MIN_SECONDS
        assert torch.get_num_threads() == 2 and t.revise() is None   # unchanged: nothing said
        fixed = Threads(3)
        assert fixed.n == 3 and fixed.revise() is None and fixed.describe() == "3 threads (--threads)"
    finally:
        torch.set_num_threads(before)


def test_the_load_of_a_busy_process_is_seen():
    load = Load()
    if load.busy is None:   # no /proc/stat here
        return
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        load.reset()
        time.sleep(1.0)
        assert load.others() > 0.5
    finally:
        busy.kill()
        busy.wait()


def test_the_run_header_says_how_many_threads(tmp_path, cli):
    rc, out, err = cli("train", "--epochs", "1", "--threads", "1", "--hidden", "16", "--out", tmp_path / "r")
    assert rc == 0, err
    assert "cpu    1 thread (--threads)" in out + err


def test_nproc_processes_split_the_cores(monkeypatch):
    """vaekit train --nproc N gives each torchrun process the usable cores / N, unless
    OMP_NUM_THREADS says otherwise."""
    import subprocess
    from types import SimpleNamespace

    from vaekit.cli import verbs
    from vaekit.threads import usable_cores

    seen = {}
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda cmd, env=None: seen.update(cmd=cmd, env=env) or
                        SimpleNamespace(returncode=0))
    assert verbs._torchrun(2) == 0
    assert "--nproc_per_node=2" in seen["cmd"]
    assert seen["env"]["OMP_NUM_THREADS"] == str(max(1, usable_cores()[0] // 2))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    verbs._torchrun(2)
    assert seen["env"]["OMP_NUM_THREADS"] == "3"
