"""Synthetic colour images for the logistic mixture's checks: N 16x16 RGB images (uint8), each a
filled circle or square (radius 3 to 5) of a random bright colour (150-255 a channel) at a random
place on a dark background of a random colour (0-79 a channel), saved as one (N, 16, 16, 3) array.

    python bench/shapes.py bench/out/shapes.npy
    vaekit train --data bench/out/shapes.npy --net resnet --likelihood logistic-mixture --epochs 60 \
        --clip-grad 200 --threads 1
"""

import argparse
from pathlib import Path

import numpy as np


def shapes(n: int = 3000, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        background, colour = rng.integers(0, 80, 3), rng.integers(150, 256, 3)
        r = rng.integers(3, 6)
        cy, cx = rng.integers(r, size - r, 2)
        if rng.random() < 0.5:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            inside = (abs(yy - cy) <= r - 1) & (abs(xx - cx) <= r - 1)
        out[i] = background
        out[i][inside] = colour
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the .npy file to write")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, shapes(args.n, seed=args.seed))
    print(f"{args.n} images written to {args.out}")


if __name__ == "__main__":
    main()
