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
    """Write a picture; a path without a suffix gets ``.png``, another suffix picks Pillow's
    format for it (``.jpg``, ``.webp``, ...). Returns the path written."""
    path = Path(path)
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    if Image.registered_extensions().get(path.suffix.lower()) not in Image.SAVE:  # checked before mkdir
        raise VaekitError(f"{path}: cannot write the picture: Pillow writes no image format with the suffix "
                          f"{path.suffix} (use .png).")
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
    shown = spread(x.shape[0], max_points).to(x.device)
    x, y = x[shown], None if y is None else y[shown]
    mu = torch.cat([model.encode(x[i:i + 2000], None if y is None else y[i:i + 2000]).loc
                    for i in range(0, x.shape[0], 2000)]).cpu().numpy()
    if mu.shape[1] > 2 and mu.shape[0] >= 2:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2).fit(mu)
        ev = pca.explained_variance_ratio_
        return pca.transform(mu), (f"PC 1 ({ev[0]:.0%} of variance)", f"PC 2 ({ev[1]:.0%})"), pca
    mu = mu[:, :2]
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
        y = labels[spread(labels.shape[0], max_points).to(labels.device)].cpu().numpy()  # as latent_points
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


def spread(total: int, n: int) -> torch.Tensor:
    """n indices spread evenly over 0..total-1 (all of them when total <= n): the examples a
    picture shows. A data set stored sorted by class (as some test sets are) then shows every
    class, not only the first."""
    return torch.linspace(0, total - 1, min(n, total)).round().long()


def pick_pairs(n: int, pairs: int, seed: int = 0, allow_one: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Random disjoint pairs of indices below n; with ``allow_one``, a lone example is paired
    with itself (the pictures at the end of training must not fail on a tiny test split)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[: 2 * pairs]
    if idx.numel() == 1 and allow_one:
        return idx, idx
    if idx.numel() < 2:
        raise VaekitError("interpolation needs at least two test examples.")
    half = idx.numel() // 2
    return idx[:half], idx[half:2 * half]


# ----------------------------------------------------------------------------- text

def encode_lines(vocab, lines: list[str], device=None) -> torch.Tensor:
    """Lines -> (B, L) token ids with </s> and padding, as the text loader stores them."""
    from .data.text import EOS

    ids = [vocab.encode(line) for line in lines]
    if any(not i for i in ids):
        raise VaekitError("an empty line cannot be encoded; give at least one token.")
    out = torch.zeros(len(ids), max(len(i) for i in ids) + 1, dtype=torch.long)
    for r, i in enumerate(ids):
        out[r, :len(i)] = torch.tensor(i)
        out[r, len(i)] = EOS
    return out.to(device) if device is not None else out


def text_samples(model, vocab, n: int = 10, method: str = "sample", temperature: float = 1.0, beam: int = 5,
                 seed: int | None = 0) -> list[str]:
    """Lines decoded from n latents drawn from the prior."""
    if seed is not None:
        torch.manual_seed(seed)
    return vocab.decode_batch(model.sample(n, method=method, temperature=temperature, beam=beam))


def text_reconstructions(model, vocab, x: torch.Tensor, method: str = "greedy", beam: int = 5) -> list[tuple[str, str]]:
    """(input line, the line decoded from its posterior mean) pairs."""
    rec = model.reconstruct(x, method=method, beam=beam)
    return list(zip(vocab.decode_batch(x), vocab.decode_batch(rec)))


def text_interpolation(model, vocab, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8,
                       method: str = "greedy", beam: int = 5) -> list[list[str]]:
    """For each pair, the lines decoded along the straight path between the posterior means
    (the homotopies of Bowman et al. 2016); the first and last are decoded from the ends."""
    path = model.interpolate(x_a, x_b, steps, method=method, beam=beam)     # (B, steps, L)
    return [vocab.decode_batch(p) for p in path]


def write_text(lines: list[str], path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as e:
        raise VaekitError(f"{path}: cannot write the file ({e.strerror or e}).") from None
    return path


SAMPLE_METHODS = (("greedy", "greedy decoding"), ("sample", "sampling at temperature 1"),
                  ("beam", "beam search, width 5"))


def text_outputs(model, vocab, test: torch.Tensor, n_rec: int = 20, pairs: int = 4) -> dict[str, list[str]]:
    """What a text run shows, as lines: 10 prior samples per generation method,
    ``test line  ->  reconstruction`` lines, and interpolations between test lines (each path
    followed by an empty line). Written to files after training and shown in the report."""
    samples = {label: text_samples(model, vocab, 10, method) for method, label in SAMPLE_METHODS}
    shown = spread(test.shape[0], n_rec).to(test.device)
    rec = [f"{a}  ->  {b}" for a, b in text_reconstructions(model, vocab, test[shown])]
    a, b = (i.to(test.device) for i in pick_pairs(test.shape[0], pairs, allow_one=True))
    inter = [line for path in text_interpolation(model, vocab, test[a], test[b], 8) for line in path + [""]]
    return {"samples": samples, "reconstructions": rec, "interpolations": inter}


def write_text_outputs(run, bundle) -> list[Path]:
    """Samples (greedy, sampled, beam), reconstructions and interpolations of a text run."""
    out, test = run.path / "samples", bundle.test
    t = text_outputs(run.model, run.vocab, test)
    samples = [line for label, lines in t["samples"].items() for line in [f"# {label}", *lines, ""]]
    return [write_text(samples, out / "samples.txt"), write_text(t["reconstructions"], out / "reconstructions.txt"),
            write_text(t["interpolations"], out / "interpolations.txt"),
            latent_map_png(run.model, test, bundle.test_labels, out / "latent_map.png", bundle.label_names)]


def write_run_pictures(run, bundle=None) -> list[Path]:
    """The pictures (and text, and sound) written at the end of training, into ``<run>/samples/``."""
    bundle = bundle if bundle is not None else run.data
    if run.modality == "text":
        return write_text_outputs(run, bundle)
    if run.modality == "audio":
        return write_audio_outputs(run, bundle)
    model, out = run.model, run.path / "samples"
    test, y = bundle.test, (bundle.test_labels if model.classes else None)
    a, b = (i.to(test.device) for i in pick_pairs(test.shape[0], 8, allow_one=True))
    ya, yb = (None, None) if y is None else (y[a], y[b])
    shown = spread(test.shape[0], 32).to(test.device)
    return [
        samples_png(model, out / "prior_samples.png"),
        reconstructions_png(model, test[shown], out / "reconstructions.png", y=None if y is None else y[shown]),
        interpolations_png(model, test[a], test[b], out / "interpolations.png", 10, ya, yb),
        latent_map_png(model, test, bundle.test_labels, out / "latent_map.png", bundle.label_names),
    ]


# ----------------------------------------------------------------------------- audio

def audio_clips(x: torch.Tensor, info: dict, iterations: int = 60) -> list[np.ndarray]:
    """Normalised log-mel spectrograms (B, 1, mels, frames) -> waveforms by Griffin-Lim."""
    from .data.audio import LogMel

    waves = LogMel.from_info(info).to_wave(x, info["clip_samples"], iterations)
    return [w.numpy() for w in waves]


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """A 16-bit PCM WAV file in memory."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1, 1), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def write_wav(wave: np.ndarray, sample_rate: int, path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav_bytes(wave, sample_rate))
    except OSError as e:
        raise VaekitError(f"{path}: cannot write the sound file ({e.strerror or e}).") from None
    return path


def spectrogram_figure(x: torch.Tensor, info: dict, titles: list[str] | None = None, cols: int = 4):
    """Log-mel spectrograms (in dB of mel power) as a grid of images, time across, low pitch at the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data.audio import LogMel

    db = LogMel.from_info(info).denormalise(x.detach().float().cpu()) * (10 / np.log(10))  # log-mel in dB
    n = db.shape[0]
    cols = min(cols, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.1 * rows), squeeze=False)
    seconds = info["clip_samples"] / info["sample_rate"]
    vmax = float(db.max())
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(db[i].numpy(), origin="lower", aspect="auto", cmap="magma", vmin=vmax - 60, vmax=vmax,
                  extent=(0, seconds, 0, db.shape[1]))
        ax.set_title(titles[i] if titles else f"{i}", fontsize=8)
        ax.tick_params(labelsize=6)
        if i % cols == 0:
            ax.set_ylabel("mel bin", fontsize=7)
        if i >= n - cols:
            ax.set_xlabel("seconds", fontsize=7)
    fig.tight_layout()
    return fig


def spectrogram_png(x: torch.Tensor, info: dict, path, titles=None, cols: int = 4) -> Path:
    import matplotlib.pyplot as plt

    fig = spectrogram_figure(x, info, titles, cols)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sampled_clips(model, n: int = 8, seed: int | None = 0, label=None, label_names=None):
    """Prior samples as spectrograms with a name each; a conditional model without a label
    gives one per class."""
    if seed is not None:
        torch.manual_seed(seed)
    if model.classes and label is None:
        y = torch.arange(model.classes, device=model.device)
        return model.sample(model.classes, y=y), [f"label-{label_names[c] if label_names else c}"
                                                   for c in range(model.classes)]
    x = sample_images(model, n, n, True, label)
    tag = "" if label is None else f"-{label_names[label] if label_names else label}"
    return x, [f"sample{tag}-{i}" for i in range(x.shape[0])]


def reconstructed_clips(model, x: torch.Tensor, y=None):
    """Each clip followed by its reconstruction, with names."""
    both = torch.stack([x, model.reconstruct(x, y=y)], 1).flatten(0, 1)
    return both, [f"{i}-{kind}" for i in range(x.shape[0]) for kind in ("original", "reconstruction")]


def interpolated_clips(model, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8, y_a=None, y_b=None):
    """The clips decoded along the straight path between two clips' posterior means, with names."""
    return model.interpolate(x_a[:1], x_b[:1], steps, y_a, y_b)[0], [f"step-{i}" for i in range(steps)]


def audio_outputs(model, test: torch.Tensor, y=None, label_names=None, n_rec: int = 4, steps: int = 8) -> dict:
    """What an audio run shows, each as (spectrograms, names): prior samples, test clips with
    their reconstructions, and an interpolation between two test clips. Written as WAV and PNG
    after training (``write_audio_outputs``) and played in the report."""
    a, b = (i.to(test.device) for i in pick_pairs(test.shape[0], 1, allow_one=True))
    shown = spread(test.shape[0], n_rec).to(test.device)
    return {"samples": sampled_clips(model, label_names=label_names),
            "reconstructions": reconstructed_clips(model, test[shown], None if y is None else y[shown]),
            "interpolation": interpolated_clips(model, test[a], test[b], steps,
                                                *((None, None) if y is None else (y[a], y[b])))}


def clip_columns(kind: str, names: list[str]) -> int:
    """Columns of a clip set's spectrogram grid: 4 samples a row, a clip next to its
    reconstruction, an interpolation in one row."""
    return {"samples": 4, "reconstructions": 2}.get(kind, len(names))


def write_clip_set(clips, info: dict, folder, kind: str) -> list[Path]:
    """WAV files of a clip set (spectrograms, names) from ``audio_outputs`` in ``folder``, a PNG of
    their spectrograms (``<kind>.png``), and for an interpolation one more WAV that plays the steps
    in turn."""
    x, names = clips
    waves = audio_clips(x, info)
    files = [write_wav(w, info["sample_rate"], Path(folder) / f"{nm}.wav") for w, nm in zip(waves, names)]
    if kind == "interpolation":
        gap = np.zeros(int(0.15 * info["sample_rate"]), dtype=np.float32)
        files.append(write_wav(np.concatenate([c for w in waves for c in (w, gap)]), info["sample_rate"],
                               Path(folder) / "interpolation.wav"))
    return files + [spectrogram_png(x, info, Path(folder) / f"{kind}.png", names, cols=clip_columns(kind, names))]


def audio_samples(model, info: dict, folder, n: int = 8, seed: int | None = 0, label=None,
                  label_names=None) -> list[Path]:
    """Prior samples as WAV files and one PNG of their spectrograms."""
    return write_clip_set(sampled_clips(model, n, seed, label, label_names), info, folder, "samples")


def audio_reconstructions(model, info: dict, x: torch.Tensor, folder, y=None) -> list[Path]:
    """Each clip and its reconstruction, side by side: WAV pairs and one PNG."""
    return write_clip_set(reconstructed_clips(model, x, y), info, folder, "reconstructions")


def audio_interpolation(model, info: dict, x_a: torch.Tensor, x_b: torch.Tensor, folder, steps: int = 8,
                        y_a=None, y_b=None) -> list[Path]:
    """The clips decoded along the path between two clips' posterior means, as WAV files,
    one WAV that plays them in turn, and a PNG."""
    return write_clip_set(interpolated_clips(model, x_a, x_b, steps, y_a, y_b), info, folder, "interpolation")


def write_audio_outputs(run, bundle) -> list[Path]:
    """Samples, reconstructions and an interpolation of an audio run, as WAV and PNG."""
    model, info, out, test = run.model, run.info, run.path / "samples", bundle.test
    o = audio_outputs(model, test, bundle.test_labels if model.classes else None, bundle.label_names)
    folders = {"samples": "prior", "reconstructions": "reconstructions", "interpolation": "interpolation"}
    files = [f for kind, clips in o.items() for f in write_clip_set(clips, info, out / folders[kind], kind)]
    files.append(latent_map_png(model, test, bundle.test_labels, out / "latent_map.png", bundle.label_names))
    return [f for f in files if f.suffix == ".png"] + [out / "prior", out / "reconstructions", out / "interpolation"]
