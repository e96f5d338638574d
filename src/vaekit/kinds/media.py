"""A kind of data, and the registry of kinds.

A kind (images, text, audio, ...) is one :class:`Media` subclass, registered by name. It owns
everything about that kind after the tensors: how its source is recognised and loaded into a
:class:`~vaekit.kinds.bundle.Bundle`, which network and free bits ``auto`` means for it, what a
run keeps to encode new data as in training (a vocabulary), and how decoded data are shown:
samples, reconstructions and interpolations as files (PNG, lines of text, WAV), the report's
sections, the explorer's rendering of a decoded point, and the one-line summary of a data set.
The verbs, the report and the explorer ask the run's media and never test the kind themselves.

Adding a kind of data is one loader and one subclass:

    @register_kind
    class Points(Media):
        name = "points"
        default_net = "mlp"
        @classmethod
        def load(cls, cfg, saved): ...          # -> Bundle(modality="points", ...)
        def sample(self, run, out, n, ...): ... # -> Written
        ...

This module also holds the helpers every kind uses: picture grids, PNG files, evenly spread
examples, random pairs, and the latent map (a matplotlib scatter of posterior means).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import VaekitError

KINDS: dict[str, type["Media"]] = {}


def register_kind(cls: type["Media"]) -> type["Media"]:
    """Class decorator: make a :class:`Media` subclass the kind of data ``cls.name``. The kinds
    are tried in registration order to recognise a source (``detect``); the first is the default."""
    if cls.name in KINDS and KINDS[cls.name] is not cls:
        raise ValueError(f"a kind of data named '{cls.name}' is registered twice")
    KINDS[cls.name] = cls
    return cls


def kind(name: str) -> type["Media"]:
    """The registered kind of data ``name`` (what a bundle's and a run's ``modality`` holds)."""
    try:
        return KINDS[name]
    except KeyError:
        raise VaekitError(f"unknown kind of data '{name}'; expected one of: {', '.join(KINDS)}.") from None


def detect_modality(cfg) -> str:
    """``cfg.modality``, or when it is ``auto``: the kind whose built-in data set the source names
    (``digits``) or whose options the config sets (``claims``: ``--sequence-id`` for sequences),
    else the first kind whose ``detect`` recognises the source (text files are text, folders of
    WAV files audio), else the default kind (images)."""
    if cfg.modality != "auto":
        return cfg.modality
    named = [name for name, k in KINDS.items() if str(cfg.source) in k.builtin_sources or k.claims(cfg)]
    if named:  # a built-in name wins over a folder of that name in the working directory
        return named[0]
    path = Path(str(cfg.source)).expanduser()
    default = next(iter(KINDS))
    if not path.exists():
        return default
    detected = [name for name, k in KINDS.items() if name != default and k.detect(path)]
    return detected[0] if detected else default


def load_data(cfg, saved: dict | None = None):
    """Load the data described by a :class:`vaekit.config.DataConfig` into a Bundle.

    saved: what a trained run keeps about its data (``vocab`` for text, the normalisation
    statistics for audio), so the data are encoded exactly as in training.
    """
    from .bundle import IN_MEMORY

    if str(cfg.source) == IN_MEMORY:
        raise VaekitError("this run was trained on data given in memory (vaekit.train(cfg, data=...)), which it "
                          "cannot read again: give them again, vaekit.Run.load(path, data=...) or "
                          "vaekit.resume(path, data=...).")
    bundle = kind(detect_modality(cfg)).load(cfg, saved or {})
    bundle.origin = str(cfg.source)
    return bundle


def as_bundle(data, cfg):
    """Data given in memory as a Bundle: a Bundle as it is; arrays, tensors or a torch Dataset of
    images (:func:`vaekit.kinds.images.loader.bundle_from_arrays`) read with the DataConfig ``cfg``."""
    from .bundle import Bundle
    from .images.loader import bundle_from_arrays

    return data if isinstance(data, Bundle) else bundle_from_arrays(data, cfg)


@dataclass
class Written:
    """What a verb produced: files, and for text the lines themselves (printed too)."""

    files: list[Path] = field(default_factory=list)
    lines: list[str] | None = None


class Media:
    """One kind of data. Class attributes and class methods describe the kind; an instance,
    ``Kind(info, saved)`` for a run's data description and what it keeps, shows its decoded data.

    Subclasses set ``name``, ``default_net`` and ``counts`` and implement ``load``, ``sample``,
    ``reconstruct``, ``interpolate``, ``run_outputs``, ``report_sections`` and ``render``; the rest
    have defaults that fit any tensor data.
    """

    name: ClassVar[str] = ""
    #: the network ``--net auto`` means for this kind
    default_net: ClassVar[str] = "mlp"
    #: the prior ``--prior auto`` means for this kind
    default_prior: ClassVar[str] = "normal"
    #: the free bits (nats per latent dimension) ``--free-bits`` defaults to
    default_free_bits: ClassVar[float] = 0.0
    #: default counts of the verbs: examples sampled, reconstructed
    counts: ClassVar[dict[str, int]] = {"sample": 64, "reconstruct": 32}
    #: what ``--between A B`` of ``vaekit interpolate`` takes for this kind
    between_help: ClassVar[str] = "two test-set indices"
    #: names of data sets built into vaekit that are of this kind (``--data digits``)
    builtin_sources: ClassVar[tuple[str, ...]] = ()
    #: whether its loader reads ``--subset`` (a random subset of the examples)
    takes_subset: ClassVar[bool] = False
    #: the word for one example, in summaries
    unit: ClassVar[str] = "examples"
    #: what ``--bad-files auto`` does with an unusable file in a folder: ``skip`` (naming it) or ``stop``
    default_bad_files: ClassVar[str] = "stop"
    #: the prior samples a finished run keeps, in its samples/ folder: a picture (.png) or lines (.txt)
    samples_file: ClassVar[str] = "prior_samples.png"

    @classmethod
    def default_batch_size(cls, n_train: int) -> int | None:
        """The batch size ``--batch-size`` defaults to for ``n_train`` training examples of this
        kind, or None for the general rule (32 under 20,000 examples, else 128)."""
        return None

    def __init__(self, info: dict, saved: dict | None = None):
        self.info, self.saved = info, saved or {}

    # ------------------------------------------------------------------ the kind
    @classmethod
    def samples_html(cls, run_dir: Path, style: str = "") -> str | None:
        """A run's prior samples at a glance, from its files (``samples_file``): an <img>, or
        the first 12 lines in a <pre>; None when the run has not written them."""
        import html

        f = Path(run_dir) / "samples" / cls.samples_file
        if not f.is_file():
            return None
        if f.suffix == ".png":
            return f'<img style="{style}" alt="samples of {html.escape(Path(run_dir).name)}" src="{png_uri(f.read_bytes())}">'
        lines = f.read_text(encoding="utf-8", errors="replace").splitlines()[:12]
        return "<pre>" + html.escape("\n".join(lines)) + "</pre>"

    @classmethod
    def detect(cls, path: Path) -> bool:
        """Whether ``path`` (an existing file or folder) holds this kind of data."""
        return False

    def reads(self, path: Path) -> bool:
        """Whether this run's data (``self.info``) can come from ``path``: by default, whether it
        is this kind of data (a sequence run of speech frames also reads WAV files)."""
        return type(self).detect(path)

    @classmethod
    def claims(cls, cfg) -> bool:
        """Whether the DataConfig ``cfg`` sets an option only this kind reads, so that the data are
        this kind whatever the file (a CSV read as sequences rather than lines of text)."""
        return False

    @classmethod
    def load(cls, cfg, saved: dict):  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def saved_state(cls, path: Path, info: dict) -> dict:
        """What a run at ``path`` keeps to encode data as in training, with its data description."""
        return dict(info)

    @classmethod
    def keep(cls, bundle, path: Path) -> None:
        """Write what :meth:`saved_state` reads back into a new run directory, and every skipped
        input file, with the reason, in ``<run>/skipped.txt``."""
        skipped = bundle.meta.get("skipped")
        if isinstance(skipped, list) and skipped:
            (Path(path) / "skipped.txt").write_text("\n".join(skipped) + "\n")

    @classmethod
    def describe(cls, bundle) -> str:
        """One line on a data set: its name, shape, kind of values and split sizes."""
        shape = "x".join(str(s) for s in bundle.shape)
        return f"{bundle.name}: {shape} {cls.unit}, {bundle.value}; {split_sizes(bundle)}" + skipped_text(bundle)

    # ------------------------------------------------------------------ one run's data
    def summary(self) -> str | None:
        """What ``vaekit info`` adds to its data line (a vocabulary, a sample rate), or None."""
        return None

    def same_shape(self, shape) -> bool:
        """Whether data of ``shape`` can be scored by a model trained on ``info['shape']``."""
        return list(shape) == list(self.info["shape"])

    def parse_between(self, run, between: list[str]):
        """The two examples ``vaekit interpolate --between A B`` names, as (x_a, x_b), or
        None when they are test-set indices."""
        return None

    def sample(self, run, out: Path | None, n: int | None, seed: int = 0, label=None, **options) -> Written:
        raise NotImplementedError  # pragma: no cover - interface

    def reconstruct(self, run, x: torch.Tensor, y, out: Path | None, split: str = "test", **options) -> Written:
        raise NotImplementedError  # pragma: no cover - interface

    def interpolate(self, run, x_a, x_b, y_a, y_b, out: Path | None, steps: int = 10, named: bool = False,
                    **options) -> Written:
        raise NotImplementedError  # pragma: no cover - interface

    def traverse(self, run, t, out: Path | None, **options) -> Written:
        """Show a latent traversal (:class:`vaekit.traversal.Traversal`): a row per dimension,
        decoded at each value; into ``out`` or ``<run>/samples/traversal...``. By default an HTML
        page of :meth:`traversal_html`."""
        path = Path(out or run.path / "samples" / "traversal.html")
        page = f"<!doctype html><meta charset='utf-8'><title>traversal</title>{self.traversal_html(run, t)}"
        return Written([write_text([page], path)])

    def traversal_html(self, run, t) -> str:
        """The traversal as HTML: by default, each row's decoded data as the explorer shows them
        (:meth:`render`), under the row's label."""
        x = run.model.decode_to_data(run.model.prior.path(t.flat()), True, t.y)
        steps, rows = len(t.values), []
        for r, label in enumerate(t.labels()):
            shown = self.render(x[r * steps:(r + 1) * steps])
            body = f'<img alt="{html.escape(label)}" src="{shown["image"]}">' if "image" in shown else ""
            body += pre(shown["text"].splitlines()) if "text" in shown else ""
            body += f'<audio controls src="{shown["audio"]}"></audio>' if "audio" in shown else ""
            rows.append(f"<p>{html.escape(label)}</p>{body}")
        return "".join(rows)

    def run_outputs(self, run, bundle) -> list[Path]:
        """What is written into ``<run>/samples/`` at the end of training."""
        raise NotImplementedError  # pragma: no cover - interface

    def report_sections(self, run, bundle) -> list[tuple[str, str]]:
        """The report's sections of decoded data, as (title, HTML)."""
        raise NotImplementedError  # pragma: no cover - interface

    def render(self, x: torch.Tensor) -> dict:
        """Decoded data as the explorer shows them: ``image`` (a PNG data URI), ``text``
        (lines), ``audio`` (a WAV data URI)."""
        raise NotImplementedError  # pragma: no cover - interface

    def render_path(self, x_a: torch.Tensor, path: torch.Tensor, x_b: torch.Tensor) -> dict:
        """The explorer's interpolation: the two ends and the decoded path between them."""
        return self.render(torch.cat([x_a, path, x_b]))

    def forecast_files(self, run, fc, out: Path, names: list[str]) -> Written:
        """A forecast (:mod:`vaekit.forecast`) written as files: only sequences forecast."""
        raise VaekitError(f"{run.path}: forecasting needs a model of sequences; this run's data are {self.name}.")

    def impute_files(self, run, filled, given, out: Path, names: list[str]) -> Written:
        """Imputed data written as files: only sequences are imputed."""
        raise VaekitError(f"{run.path}: imputing needs a model of sequences; this run's data are {self.name}.")

    def from_values(self, x):
        """Data in their own units as the model reads them (a sequence kind standardises series)."""
        return torch.as_tensor(x)

    def metrics(self, run, split: str) -> dict:
        """Figures of this kind added to ``evaluate``'s (e.g. spectral distances for audio)."""
        return {}

    def evaluation_lines(self, r: dict) -> list[str]:
        """The line(s) ``vaekit evaluate`` prints about the NLL, in this kind's units."""
        return [f"  NLL (importance sampled)  {r['nll_nats']:.3f} nats   {r['bits_per_dim']:.4f} bits/dim"]

    def metric_lines(self, r: dict) -> list[str]:
        """The lines ``vaekit evaluate`` prints last, about this kind's own figures (:meth:`metrics`)."""
        return []

    def stream(self, source, chunk: int, cfg):
        """New data from ``source`` for this run, in chunks of at most ``chunk`` examples, encoded
        as the run's data were: an iterator of (names, x). ``cfg``: the run's DataConfig."""
        raise VaekitError(f"{source}: vaekit cannot read new {self.name} data for scoring.")

    def complexity_bits(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) the bits a general-purpose lossless compressor needs for each example, the
        complexity estimate of Serra et al. (2020) that the complexity-corrected score subtracts."""
        raise VaekitError(f"vaekit has no compressor for {self.name} data.")  # pragma: no cover

    def made_up(self, n: int) -> torch.Tensor:
        """n inputs of the data's shape and kind of value, for when the data cannot be read: 0/1
        pixels, values in [0, 1] or Gaussian features (a kind with other inputs overrides it)."""
        g = torch.Generator().manual_seed(0)
        shape = (n, *self.info["shape"])
        value = self.info["value"]
        if value == "binary":
            return torch.bernoulli(torch.full(shape, 0.5), generator=g)
        if value == "levels":
            levels = (self.info.get("levels") or 256) - 1
            return torch.randint(0, levels + 1, shape, generator=g).float() / levels
        if value == "continuous":
            return torch.rand(shape, generator=g)
        return torch.randn(shape, generator=g)

    def export_info(self) -> dict:
        """What a program without vaekit needs to make the model's inputs and read its outputs
        (the data section of an exported model's manifest.json): shapes, ranges, vocabulary,
        feature settings, normalisation."""
        return {"shape": list(self.info["shape"]), "value": self.info["value"]}


def png_bits(pixels: np.ndarray) -> int:
    """The size in bits of one picture of 8-bit values, (H, W) grey or (H, W, 3) RGB, as a PNG at
    the highest compression (Pillow's zlib level 9)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True, compress_level=9)
    return 8 * buf.tell()


def deflate_bits(data: bytes) -> int:
    """The size in bits of ``data`` compressed by raw deflate (zlib level 9, no header or checksum)."""
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return 8 * len(c.compress(data) + c.flush())


def skipped_text(bundle) -> str:
    """"; skipped N unusable file(s) ...: the first three" for a bundle whose loader skipped files."""
    sk = bundle.meta.get("skipped")
    if not isinstance(sk, list) or not sk:
        return ""
    shown = "; ".join(sk[:3]) + ("; ..." if len(sk) > 3 else "")
    return f"; skipped {len(sk)} unusable file(s) (all in <run>/skipped.txt): {shown}"


def skip_or_stop(cfg, default: str, error, skipped: list[str]) -> None:
    """An unusable input file: note it in ``skipped`` under ``--bad-files skip``, raise under ``stop``."""
    mode = getattr(cfg, "bad_files", "auto")
    if (default if mode == "auto" else mode) == "stop":
        raise error
    skipped.append(str(error))


def split_sizes(bundle) -> str:
    return ", ".join(f"{s} {bundle.split(s).shape[0]:,}" for s in ("train", "valid", "test"))


# ----------------------------------------------------------------------------- shared helpers

def grid(images: torch.Tensor, nrow: int, pad: int = 1, min_cell: int = 40):
    """Tile (N, C, H, W) images in [0, 1] into one PIL picture, ``nrow`` images per row.

    Small images are enlarged by an integer factor (nearest neighbour) so that 8x8 digits stay
    visible. (Assembled with numpy: torchvision's make_grid is not a dependency.)
    """
    from PIL import Image

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


def labelled(img, labels: list[str], header: str | None = None):
    """A picture of equal rows (a grid) with a label left of each row, and a header above."""
    from PIL import Image, ImageDraw

    font = _font()
    draw = ImageDraw.Draw(img)
    width = max([int(draw.textlength(t, font=font)) for t in labels] + [0]) + 10
    top = 18 if header else 0
    out = Image.new(img.mode, (img.width + width, img.height + top), 255 if img.mode == "L" else (255, 255, 255))
    out.paste(img, (width, top))
    draw = ImageDraw.Draw(out)
    row = img.height / max(1, len(labels))
    for i, text in enumerate(labels):
        draw.text((4, top + row * (i + 0.5)), text, fill=0 if out.mode == "L" else (0, 0, 0), font=font, anchor="lm")
    if header:
        draw.text((width, 9), header, fill=0 if out.mode == "L" else (0, 0, 0), font=font, anchor="lm")
    return out


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=12)
    except TypeError:   # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def save_png(img, path: Path) -> Path:
    """Write a picture; a path without a suffix gets ``.png``, another suffix picks Pillow's
    format for it (``.jpg``, ``.webp``, ...). Returns the path written."""
    from PIL import Image

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


def write_text(lines: list[str], path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as e:
        raise VaekitError(f"{path}: cannot write the file ({e.strerror or e}).") from None
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


def prior_draws(model, n: int = 64, nrow: int = 8, mean: bool = True, label=None, **options):
    """Decoded prior samples; a conditional model without a label gives ``nrow`` per class.
    ``options``: of :meth:`~vaekit.model.VAE.sample` (a resnet prior's ``temperature``)."""
    if model.classes and label is None:
        rows = min(model.classes, 20)
        y = torch.arange(rows, device=model.device).repeat_interleave(nrow)
        return model.sample(y.numel(), mean=mean, y=y, **options)
    if label is not None and not 0 <= int(label) < max(model.classes, 1):
        raise VaekitError(f"--label {label} is not a class of this model (0 to {model.classes - 1}).")
    return model.sample(n, mean=mean, y=None if label is None else torch.full((n,), int(label)), **options)


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def picture_uri(img) -> str:
    """A PIL picture as a PNG data URI (for the report and the explorer)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return png_uri(buf.getvalue())


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_uri(fig, dpi: int = 100) -> str:
    """A matplotlib figure as a PNG data URI; the figure is closed."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return png_uri(buf.getvalue())


def pre(lines: list[str]) -> str:
    return "<pre>" + html.escape("\n".join(lines)) + "</pre>"


@torch.no_grad()
def latent_points(model, x: torch.Tensor, max_points: int = 5000, y=None, units: int | None = None):
    """Posterior means of x in 2-D: PCA (scikit-learn) when the latent is larger; ``units``: of the
    latent's first units only (the explorer's top layer of a deep hierarchy).

    Returns (xy (N, 2) numpy, axis names, the fitted PCA or None).
    """
    shown = spread(x.shape[0], max_points).to(x.device)
    x, y = x[shown], None if y is None else y[shown]
    mu = torch.cat([model.prior.coordinates(model.encode(x[i:i + 2000], None if y is None else y[i:i + 2000]))
                    for i in range(0, x.shape[0], 2000)])[:, :units].cpu().numpy()
    # a model trained to absurd weights still gets a map (of zeros where its means are not finite)
    mu = np.clip(np.nan_to_num(mu.astype(np.float64), nan=0.0, posinf=1e6, neginf=-1e6), -1e6, 1e6)
    if mu.shape[1] > 2 and mu.shape[0] >= 2:
        from sklearn.decomposition import PCA

        try:
            pca = PCA(n_components=2).fit(mu)
        except (np.linalg.LinAlgError, ValueError):
            pca = None
        if pca is not None:
            ev = np.nan_to_num(pca.explained_variance_ratio_)
            return pca.transform(mu), (f"PC 1 ({ev[0]:.0%} of variance)", f"PC 2 ({ev[1]:.0%})"), pca
    mu = mu[:, :2]
    return np.pad(mu, ((0, 0), (0, 2 - mu.shape[1]))), ("z 1", "z 2"), None


def latent_map_figure(model, x: torch.Tensor, labels: torch.Tensor | None, label_names=None,
                      max_points: int = 5000):
    """Scatter plot of posterior means of x, coloured by label when there are labels."""
    plt = pyplot()
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
    plt = pyplot()
    fig = latent_map_figure(model, x, labels, label_names, max_points)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
