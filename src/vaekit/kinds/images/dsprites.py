"""dSprites, drawn in-process: the data set of known factors that disentanglement is measured on.

The specification is Matthey et al. 2017 (github.com/deepmind/dsprites-dataset): binary 64 x 64
images of one white shape on black, the product of five factors,

    shape        3 values   square, ellipse, heart          (factor value 0, 1, 2)
    scale        6 values   linspace(0.5, 1, 6)
    orientation 40 values   linspace(0, 2 pi, 40) radians   (the first and last are the same angle)
    position x  32 values   linspace(0, 1, 32)
    position y  32 values   linspace(0, 1, 32)

3 x 6 x 40 x 32 x 32 = 737,280 images, indexed in that order (the last factor fastest). The
pictures are drawn here from implicit shapes, not read from the published file, so they are
close to the original ones, not equal to them: at scale 1 a square is 0.2 of the frame wide, and
the centre moves from 0.2 to 0.8 of the frame, so every shape stays inside at every angle.
``draw`` renders any list of factor indices; :func:`load_dsprites` a random subset.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ["shape", "scale", "orientation", "position x", "position y"]
FACTOR_SIZES = (3, 6, 40, 32, 32)
SIZE = int(np.prod(FACTOR_SIZES))          # 737,280
HALF_WIDTH = 0.1                           # half the side of a square at scale 1, as a share of the frame
CENTRE_RANGE = (0.2, 0.8)                  # where the centre goes as the position runs from 0 to 1


def factor_values() -> list[np.ndarray]:
    """The values of each factor, as the published ``latents_values`` holds them (shape as 0, 1, 2)."""
    return [np.arange(3, dtype=np.float64), np.linspace(0.5, 1, 6), np.linspace(0, 2 * math.pi, 40),
            np.linspace(0, 1, 32), np.linspace(0, 1, 32)]


def indices_of(flat: np.ndarray) -> np.ndarray:
    """The (N, 5) factor indices of flat image numbers 0 .. 737,279 (the last factor fastest)."""
    return np.stack(np.unravel_index(np.asarray(flat, dtype=np.int64), FACTOR_SIZES), axis=1)


def _inside(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether the point (u, v), in the shape's own frame (units of HALF_WIDTH x scale, v up), is
    inside it."""
    square = torch.maximum(u.abs(), v.abs()) <= 1
    ellipse = (u / 1.0) ** 2 + (v / 0.55) ** 2 <= 1
    # the heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3 spans x in [-1.14, 1.14], y in [-1, 1.25]:
    # scaled by 1.15 and lowered by 0.12 so that it is as wide and high as the square
    hu, hv = u * 1.15, v * 1.15 + 0.12
    heart = (hu ** 2 + hv ** 2 - 1) ** 3 <= hu ** 2 * hv ** 3
    return torch.where(shape == 0, square, torch.where(shape == 1, ellipse, heart))


def draw(index: np.ndarray, size: int = 64, chunk: int = 8192) -> torch.Tensor:
    """The images (N, 1, size, size) of factor indices ``index`` (N, 5), as float 0/1 pixels.
    Each pixel is decided at its centre, within a window around the shape (no shape reaches
    further than sqrt(2) half-widths from its centre); at other sizes than 64 the same shapes are
    drawn at that resolution."""
    index = np.asarray(index, dtype=np.int64)
    vals = factor_values()
    out = torch.zeros(len(index), 1, size, size)
    lo, hi = CENTRE_RANGE
    w = int(math.ceil(2 * math.sqrt(2) * HALF_WIDTH * size)) + 3            # the window's side in pixels
    steps = torch.arange(w)
    for s in range(0, len(index), chunk):
        idx = index[s:s + chunk]
        f = [torch.as_tensor(vals[j][idx[:, j]], dtype=torch.float32)[:, None, None] for j in range(5)]
        shape, scale, angle, px, py = f
        cx, cy = (lo + (hi - lo) * px) * size, (lo + (hi - lo) * py) * size   # in pixels, y down
        x0 = (cx - w / 2).round().long().clamp(0, size - w)
        y0 = (cy - w / 2).round().long().clamp(0, size - w)
        cols, rows = x0 + steps[None, None, :], y0 + steps[None, :, None]      # (n, 1, w), (n, w, 1)
        dx, dy = cols + 0.5 - cx, -(rows + 0.5 - cy)                            # y up
        c, si = torch.cos(angle), torch.sin(angle)
        r = HALF_WIDTH * scale * size
        u, v = (c * dx + si * dy) / r, (-si * dx + c * dy) / r                 # rotate the frame by -angle
        n = torch.arange(s, s + len(idx))[:, None, None]
        out[n, 0, rows, cols] = _inside(shape, u, v).float()
    return out


def load_dsprites(subset: int | None, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random subset of ``subset`` dSprites images (all 737,280 when None), drawn at ``size``
    pixels, and their (N, 5) factor values; the subset is fixed by ``seed``."""
    rng = np.random.default_rng(seed + 5417)
    flat = np.arange(SIZE) if subset is None or subset >= SIZE else np.sort(rng.choice(SIZE, subset, replace=False))
    index = indices_of(flat)
    vals = factor_values()
    factors = np.stack([vals[j][index[:, j]] for j in range(5)], axis=1).astype(np.float32)
    return draw(index, size).numpy(), factors
