"""Out-of-distribution detection with `vaekit score`: AUROC of every score on three pairs.

1. images: a model of Fashion-MNIST, statically binarised (one fixed Bernoulli draw, as binarized
   MNIST was made), scores its own test images (in) against binarized MNIST's test images (out):
   the pair on which a likelihood fails (Nalisnick et al. 2019).
2. audio: a model of the spoken digits 0-4 of FSDD scores held-out recordings of 0-4 (in)
   against recordings of 5-9 (out).
3. text: a model of names.txt scores held-out names (in) against Shakespeare's lines and against
   names with their characters shuffled (out).

Each prints the AUROC of each score and the seconds to score 10,000 examples. The runs are
trained here unless given.

    python bench/ood.py --data ../shared/data [--pairs images,audio,text] [--epochs 8] [--k 100] [--k-audio 10]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VAEKIT = [sys.executable, "-m", "vaekit"]


def sh(*args) -> str:
    out = subprocess.run([*VAEKIT, *map(str, args)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return out.stdout


def report(title: str, stdout: str, n: int, seconds: float):
    print(f"\n### {title}\n")
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("score "))
    print("| score | AUROC | AUPRC | FPR at 95% TPR |\n|---|---|---|---|")
    for line in lines[start + 1:]:
        if line.startswith("ROC"):
            break
        *name, auroc, auprc, fpr = line.split()
        print(f"| {' '.join(name)} | {auroc} | {auprc} | {fpr} |")
    print(f"\nscoring time: {seconds:.1f} s for {n:,} examples in and out, "
          f"{10000 * seconds / n:.0f} s per 10,000 examples")


def count(stdout: str) -> int:
    line = next(line for line in stdout.splitlines() if line.startswith("in: "))
    parts = line.replace(",", "").split()
    return int(parts[parts.index("examples;") - 1]) + int(parts[-2])


def images(data: Path, work: Path, epochs: int, k: int):
    run = work / "fashion"
    if not run.exists():
        sh("train", "--data", "fashion-mnist", "--binarize", "static", "--latent", "32", "--batch-size", "256",
           "--epochs", epochs, "--quiet", "--out", run)
    start = time.perf_counter()
    out = sh("score", run, "--data", "fashion-mnist", "--data-ood", data / "binarized-mnist", "--k", k, "--quiet")
    seconds = time.perf_counter() - start
    report("Fashion-MNIST (in) against MNIST (out), both binarised", out, count(out), seconds)


def audio(data: Path, work: Path, epochs: int, k: int):
    src = data / "fsdd" / "recordings"
    low, high = work / "digits-0-4", work / "digits-5-9"
    for folder, digits in ((low, "01234"), (high, "56789")):
        folder.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.wav"):
            if f.name[0] in digits and not (folder / f.name).exists():
                (folder / f.name).symlink_to(f.resolve())
    held = work / "digits-0-4-test"
    held.mkdir(exist_ok=True)
    for f in low.glob("*_[0-4].wav"):   # takes 0-4 of each speaker: the usual test split
        if not (held / f.name).exists():
            (held / f.name).symlink_to(f.resolve())
    run = work / "fsdd"
    if not run.exists():
        sh("train", "--data", low, "--test-data", "*_[0-4].wav", "--epochs", 4 * epochs, "--quiet", "--out", run)
    start = time.perf_counter()
    out = sh("score", run, "--data", held, "--data-ood", high, "--k", k, "--quiet")
    report("FSDD: digits 0-4 (in, held-out takes) against 5-9 (out)", out, count(out), time.perf_counter() - start)


def text(data: Path, work: Path, epochs: int, k: int):
    names = (data / "text" / "names.txt").read_text().split()
    rng = random.Random(0)
    rng.shuffle(names)
    train, held = names[:-2000], names[-2000:]
    (work / "names-train.txt").write_text("\n".join(train) + "\n")
    (work / "names-held.txt").write_text("\n".join(held) + "\n")
    shuffled = ["".join(rng.sample(n, len(n))) for n in held]
    (work / "names-shuffled.txt").write_text("\n".join(shuffled) + "\n")
    lines = [line for line in (data / "text" / "tinyshakespeare.txt").read_text().splitlines()
             if line.strip() and len(line) <= 20][:2000]
    (work / "shakespeare.txt").write_text("\n".join(lines) + "\n")
    run = work / "names"
    if not run.exists():
        sh("train", "--data", work / "names-train.txt", "--epochs", epochs, "--quiet", "--out", run)
    for other, title in (("shakespeare.txt", "Shakespeare's lines of up to 20 characters"),
                         ("names-shuffled.txt", "the same names with their characters shuffled")):
        start = time.perf_counter()
        out = sh("score", run, "--data", work / "names-held.txt", "--data-ood", work / other, "--k", k, "--quiet")
        report(f"names (in, 2,000 held out) against {title} (out)", out, count(out), time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the reference data folder (../shared/data)")
    p.add_argument("--pairs", default="images,audio,text")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--k-audio", type=int, default=10,
                   help="samples for the audio pair (default 10: its conv decoder over 64 x 63 spectrograms "
                        "costs about 0.36 s an example at k = 100 on 2 cores)")
    p.add_argument("--work", type=Path, help="keep the runs here (default: a temporary folder)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    try:
        for pair in args.pairs.split(","):
            k = args.k_audio if pair == "audio" else args.k
            {"images": images, "audio": audio, "text": text}[pair](args.data, work, args.epochs, k)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
