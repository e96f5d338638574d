"""Sample, reconstruct, interpolate, map the latent space; write the pictures as PNG.

Grids are assembled with numpy and written with Pillow (torchvision's make_grid is not
available here); the latent map is a matplotlib scatter plot, PCA by scikit-learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import VaekitError


def grid(images: torch.Tensor, nrow: int, pad: int = 1, min_cell: int = 40) -> Image.Image:
    """Tile (N, C, H, W) images in [0, 1] into one picture, ``nrow`` images per row.

    Small images are enlarged by an integer factor (nearest neighbour) so that 8x8
    digits stay visible.
    """
    x = images.detach().float().clamp(0, 1).cpu().numpy()
    n, c, h, w = x.shape
    scale = max(1, int(np.ceil(min_cell / max(h, w))))
    if scale > 1:
        x = x.repeat(scale, axis=2).repeat(scale, axis=3)
        h, w = h * scale, w * scale
    rows = int(np.ceil(n / nrow))
    canvas = np.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 0.5, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, nrow)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = x[i]
    arr = (canvas * 255).round().astype(np.uint8)
    return Image.fromarray(arr[0] if c == 1 else arr.transpose(1, 2, 0), mode="L" if c == 1 else "RGB")


def save_png(img: Image.Image, path: Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
    except OSError as e:
        raise VaekitError(f"{path}: cannot write the picture ({e.strerror or e}).") from None
    return path


def sample_images(model, n: int = 64, nrow: int = 8, mean: bool = True, label=None):
    """Decoded prior samples; a conditional model without a label shows one row per class."""
    if model.classes and label is None:
        rows = min(model.classes, 20)
        y = torch.arange(rows, device=model.device).repeat_interleave(nrow)
        return model.sample(y.numel(), mean=mean, y=y)
    if label is not None and not 0 <= int(label) < max(model.classes, 1):
        raise VaekitError(f"--label {label} is not a class of this model (0 to {model.classes - 1}).")
    return model.sample(n, mean=mean, y=None if label is None else torch.full((n,), int(label)))


def samples_png(model, path, n: int = 64, nrow: int = 8, seed: int | None = 0, mean: bool = True,
                label=None) -> Path:
    """A grid of decoded prior samples (for a conditional model: of ``label``, or each class)."""
    if seed is not None:
        torch.manual_seed(seed)
    return save_png(grid(sample_images(model, n, nrow, mean, label), nrow), path)


def reconstructions_png(model, x: torch.Tensor, path, nrow: int = 8, y=None) -> Path:
    """Rows of test images, each followed by the row of their reconstructions."""
    rec = model.reconstruct(x, y=y)
    rows = []
    for i in range(0, x.shape[0], nrow):
        rows += [x[i:i + nrow], rec[i:i + nrow]]
    return save_png(grid(torch.cat(rows), nrow), path)


def interpolations_png(model, x_a: torch.Tensor, x_b: torch.Tensor, path, steps: int = 10, y_a=None,
                       y_b=None) -> Path:
    """One row per pair: x_a, the decoded path between their posterior means, x_b."""
    path_images = model.interpolate(x_a, x_b, steps, y_a, y_b)          # (B, steps, C, H, W)
    rows = torch.cat([x_a.unsqueeze(1), path_images, x_b.unsqueeze(1)], 1)
    return save_png(grid(rows.flatten(0, 1), steps + 2), path)


@torch.no_grad()
def latent_points(model, x: torch.Tensor, max_points: int = 5000, y=None):
    """Posterior means of x in 2-D: PCA (scikit-learn) when the latent is larger.

    Returns (xy (N, 2) numpy, axis names, the fitted PCA or None).
    """
    x = x[:max_points]
    y = None if y is None else y[:max_points]
    mu = torch.cat([model.encode(x[i:i + 2000], None if y is None else y[i:i + 2000]).loc
                    for i in range(0, x.shape[0], 2000)]).cpu().numpy()
    if mu.shape[1] > 2:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2).fit(mu)
        ev = pca.explained_variance_ratio_
        return pca.transform(mu), (f"PC 1 ({ev[0]:.0%} of variance)", f"PC 2 ({ev[1]:.0%})"), pca
    return np.pad(mu, ((0, 0), (0, 2 - mu.shape[1]))), ("z 1", "z 2"), None


def latent_map_figure(model, x: torch.Tensor, labels: torch.Tensor | None, label_names=None,
                      max_points: int = 5000):
    """Scatter plot of posterior means of x, coloured by label when there are labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy, axes, _ = latent_points(model, x, max_points, labels if model.classes else None)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=110)
    if labels is not None:
        y = labels[:max_points].cpu().numpy()
        classes = np.unique(y)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, c in enumerate(classes):
            m = y == c
            name = label_names[c] if label_names is not None and c < len(label_names) else str(c)
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.7, color=cmap(i % cmap.N), label=name)
        ax.legend(markerscale=3, fontsize=8, loc="best", framealpha=0.8)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"Posterior means of {len(xy):,} test examples")
    fig.tight_layout()
    return fig


def latent_map_png(model, x: torch.Tensor, labels: torch.Tensor | None, path, label_names=None,
                   max_points: int = 5000) -> Path:
    import matplotlib.pyplot as plt

    fig = latent_map_figure(model, x, labels, label_names, max_points)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def pick_pairs(n: int, pairs: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[: 2 * pairs]
    if idx.numel() < 2:
        raise VaekitError("interpolation needs at least two test examples.")
    half = idx.numel() // 2
    return idx[:half], idx[half:2 * half]


def write_run_pictures(run, bundle=None) -> list[Path]:
    """The pictures written at the end of training, into ``<run>/samples/``."""
    bundle = bundle if bundle is not None else run.data
    model, out = run.model, run.path / "samples"
    test, y = bundle.test, (bundle.test_labels if model.classes else None)
    a, b = (i.to(test.device) for i in pick_pairs(test.shape[0], 8))
    ya, yb = (None, None) if y is None else (y[a], y[b])
    return [
        samples_png(model, out / "prior_samples.png"),
        reconstructions_png(model, test[:32], out / "reconstructions.png", y=None if y is None else y[:32]),
        interpolations_png(model, test[a], test[b], out / "interpolations.png", 10, ya, yb),
        latent_map_png(model, test, bundle.test_labels, out / "latent_map.png", bundle.label_names),
    ]
