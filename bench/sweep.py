"""A sweep as a user runs it: `vaekit sweep docs/sweep.yaml --trials 24 --jobs 2` on the embedded digits.

Printed: the wall time of the sweep, how many trials were complete and pruned, the best trial's
validation bound and values, and the validation bound of the default configuration (the sweep
file's base with vaekit's defaults for the searched fields: beta 1, latent 16, learning rate 1e-3)
trained the same way.

    python bench/sweep.py [--trials 24] [--jobs 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import vaekit
from vaekit.sweep import Space

ROOT = Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--space", type=Path, default=ROOT / "docs" / "sweep.yaml")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep"
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "vaekit", "sweep", str(args.space), "--trials", str(args.trials),
                               "--jobs", str(args.jobs), "--out", str(out), "--quiet"], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode:
            raise SystemExit(done.stderr)
        lines = done.stdout.splitlines()
        print(f"`vaekit sweep {args.space.relative_to(ROOT)} --trials {args.trials} --jobs {args.jobs}`: {wall:.0f} s")
        for line in lines:   # the counts of trials, the best one and its command line
            if " trials: " in line or line.startswith(("best:", "  vaekit train")):
                print(line.strip())
        base = Space(args.space).config({}, None)
        t0 = time.perf_counter()
        run = vaekit.train(base, out=Path(tmp) / "default", quiet=True, pictures=False)
        best = run.best()
        print(f"default configuration (beta 1, latent 16, lr 1e-3): best valid ELBO {best[0][best[1]]:.3f} "
              f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
