"""Image sources: sklearn digits, IDX (MNIST / Fashion-MNIST), arrays, folders of images.

Every loader returns numpy arrays; :func:`load_images` turns them into a :class:`Bundle`
with values in [0, 1], a deterministic split, and the chosen binarisation.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import torch

from ...errors import VaekitError
from ..bundle import Bundle, split_indices
from ..media import skip_or_stop

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
ARRAY_SUFFIXES = {".npz", ".npy"}
DSPRITES_SUBSET = 50_000   # the images --data dsprites draws without --subset (of 737,280)
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot"]


# ----------------------------------------------------------------------------- readers

def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or gzip), the format of MNIST and Fashion-MNIST.

    No library on our dependency list reads IDX, and the format is a 4-byte header
    (two zero bytes, a type code, the number of dimensions), big-endian sizes, then data.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found.") from None
    except (OSError, EOFError) as e:
        raise VaekitError(f"{path}: cannot read the file ({e}).") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise VaekitError(f"{path}: not an IDX file (wrong magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise VaekitError(f"{path}: IDX header is truncated.")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise VaekitError(f"{path}: IDX file is truncated or has extra bytes "
                          f"(header says {dims}, {expected:,} bytes of data; found {len(raw) - header:,}).")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_array(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read images (and labels if present) from a .npy or .npz file, never unpickling."""
    x, y, _ = read_arrays(path)
    return x, y


def read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None, tuple[np.ndarray, list[str]] | None]:
    """Read images, labels and factors from a .npy or .npz file, never unpickling: the factors
    are an (N, F) array named ``factors`` (the values of known generative factors, for the
    disentanglement metrics), named by ``factor_names`` when it is there."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False), None, None
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if not keys:
                raise VaekitError(f"{path}: the .npz file holds no arrays.")
            xkey = next((k for k in ("X", "x", "images", "data", "arr_0") if k in keys), None)
            if xkey is None:
                if len(keys) == 1:
                    xkey = keys[0]
                else:
                    raise VaekitError(f"{path}: cannot tell which array holds the images "
                                      f"(keys {keys}; name it 'X' or 'images').")
            ykey = next((k for k in ("y", "Y", "labels", "targets") if k in keys), None)
            x = z[xkey]
            factors = None
            if "factors" in keys:
                f = z["factors"]
                if f.ndim == 1:
                    f = f[:, None]
                if f.ndim != 2 or len(f) != len(x) or not np.issubdtype(f.dtype, np.number):
                    raise VaekitError(f"{path}: 'factors' must be a numeric (N, F) array with one row per image "
                                      f"({len(x)}); it has shape {list(f.shape)} and type {f.dtype}.")
                if not np.isfinite(f).all():
                    raise VaekitError(f"{path}: 'factors' holds values that are not finite.")
                names = [str(v) for v in z["factor_names"]] if "factor_names" in keys else []
                if len(names) != f.shape[1]:
                    names = [f"factor {j}" for j in range(f.shape[1])]
                factors = (f.astype(np.float32), names)
            return x, (z[ykey] if ykey else None), factors
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found.") from None
    except VaekitError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VaekitError(f"{path}: not a readable numpy array file ({msg}).") from None


def read_image_folder(root: Path, size: list[int] | None, cfg=None,
                      skipped: list[str] | None = None) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """Read every PNG/JPEG under ``root``; sub-folder names become labels when present. An
    unreadable file stops the load, or with ``--bad-files skip`` is noted in ``skipped``."""
    skipped = [] if skipped is None else skipped
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise VaekitError(f"{root}: no PNG or JPEG images found in this folder.")
    classes = sorted({p.parent.relative_to(root).parts[0] for p in files if p.parent != root})
    if classes and any(p.parent == root for p in files):
        classes = []  # mixed layout: no labels
    images = []
    grey = True
    opened, kept = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                im.load()
                opened.append(im.copy())
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            skip_or_stop(cfg, "stop", VaekitError(f"{p}: not a readable image ({e.__class__.__name__})."), skipped)
            continue
        kept.append(p)
        if opened[-1].mode not in ("1", "L", "LA", "I;16", "I", "F"):
            grey = False
    files = kept
    if not files:
        raise VaekitError(f"{root}: none of its images could be read; the first problem: {skipped[0]}")
    if size is None:
        w, h = opened[0].size
        for p, im in zip(files, opened):
            if im.size != (w, h):
                raise VaekitError(f"{p}: is {im.size[0]}x{im.size[1]} but {files[0].name} is {w}x{h}; "
                                  f"pass --image-size to resize all images to one size.")
    else:
        h, w = (size[0], size[0]) if len(size) == 1 else (size[0], size[1])
    mode = "L" if grey else "RGB"
    for im in opened:
        im = im.convert(mode)
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.BILINEAR)
        images.append(np.asarray(im, dtype=np.uint8))
    x = np.stack(images)
    labels = None
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[p.relative_to(root).parts[0]] for p in files])
    return x, labels, (classes or None)


# ----------------------------------------------------------------------------- shapes and values

def to_nchw(x: np.ndarray, shape: list[int] | None, origin: str) -> np.ndarray:
    """Bring (N,H,W), (N,H,W,C) or flat (N,D) arrays to (N,C,H,W)."""
    if x.ndim == 0 or x.shape[0] == 0:
        raise VaekitError(f"{origin}: holds no examples (array shape {tuple(x.shape)}).")
    if shape is not None:
        shape = [int(s) for s in shape]
        chw = shape if len(shape) == 3 else ([1] + shape if len(shape) == 2 else None)
        if chw is None:
            raise VaekitError(f"--shape must be HxW or CxHxW, got {shape}.")
        per = int(np.prod(x.shape[1:]))
        if per != int(np.prod(chw)):
            raise VaekitError(f"{origin}: --shape {'x'.join(map(str, shape))} has {int(np.prod(chw))} values "
                              f"per example but the array has {per} (shape {tuple(x.shape)}).")
        if x.ndim == 4 and x.shape[-1] == chw[0] and x.shape[1:3] == tuple(chw[1:]):
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x.reshape(x.shape[0], *chw)
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise VaekitError(f"{origin}: flat array of {x.shape[1]} values per example is not a square "
                              f"image; give its shape with --shape HxW or CxHxW.")
        return x.reshape(x.shape[0], 1, side, side)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3):
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if x.shape[1] in (1, 3):
            return x
        raise VaekitError(f"{origin}: array of shape {tuple(x.shape)} is not (N,H,W,C) with 1 or 3 channels.")
    raise VaekitError(f"{origin}: array of shape {tuple(x.shape)} is not (N,H,W), (N,H,W,C) or (N,D).")


def scale_values(x: np.ndarray, origin: str) -> tuple[np.ndarray, str, int | None]:
    """Map raw values to [0, 1] and say what kind they are: binary, levels or continuous."""
    if x.dtype == np.uint8:
        if x.max() <= 1:
            return x.astype(np.float32), "binary", None
        return x.astype(np.float32) / 255.0, "levels", 256
    if x.dtype == bool:
        return x.astype(np.float32), "binary", None
    if not np.issubdtype(x.dtype, np.number):
        raise VaekitError(f"{origin}: array has non-numeric type {x.dtype}.")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise VaekitError(f"{origin}: array contains NaN or infinite values.")
    lo, hi = float(x.min()), float(x.max())
    if np.isin(x, (0.0, 1.0)).all():
        return x.astype(np.float32), "binary", None
    if lo >= 0 and hi <= 1:
        return x.astype(np.float32), "continuous", None
    if lo >= 0 and hi <= 255 and np.all(x == np.round(x)):
        return (x / 255.0).astype(np.float32), "levels", 256
    raise VaekitError(f"{origin}: values range from {lo:g} to {hi:g}; expected [0, 1] or 8-bit integers 0-255.")


# ----------------------------------------------------------------------------- sources

def _load_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    # 8x8 images with integer values 0..16: 17 evenly spaced levels.
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return x, d.target.astype(np.int64), "levels", 17, [str(i) for i in range(10)]


def _find_idx_pairs(folder: Path) -> dict[str, tuple[Path, Path | None]]:
    """Find {train,test} image files (and their labels) in a folder of IDX files."""
    found = {}
    for split, stems in (("train", ("train",)), ("test", ("t10k", "test"))):
        for stem in stems:
            for suffix in ("-images-idx3-ubyte", "-images.idx3-ubyte"):
                for ext in ("", ".gz"):
                    p = folder / f"{stem}{suffix}{ext}"
                    if p.exists():
                        lab = None
                        for lext in ("", ".gz"):
                            q = folder / f"{stem}{suffix.replace('images', 'labels').replace('idx3', 'idx1')}{lext}"
                            if q.exists():
                                lab = q
                        found.setdefault(split, (p, lab))
    return found


def _arrays_in(folder: Path) -> dict[str, Path]:
    out = {}
    for split in ("train", "valid", "test"):
        for ext in (".npz", ".npy"):
            p = folder / f"{split}{ext}"
            if p.exists():
                out[split] = p
                break
    return out


def load_images(cfg) -> Bundle:
    """Load an image source described by a DataConfig into a Bundle."""
    source = str(cfg.source)
    splits: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray | None] = {}
    value, levels, label_names = None, None, None
    factors: dict[str, np.ndarray | None] = {}   # known generative factors, per split (dsprites, 'factors' arrays)
    factor_names: list[str] | None = None
    name = source
    skipped: list[str] = []  # unreadable files skipped under --bad-files skip

    if source == "dsprites":
        from .dsprites import FACTOR_NAMES, load_dsprites

        size = (cfg.image_size or [64])[0]
        if cfg.image_size and len(cfg.image_size) == 2 and cfg.image_size[0] != cfg.image_size[1]:
            raise VaekitError(f"dsprites: the images are square; --image-size {cfg.image_size} is not.")
        if not 8 <= size <= 512:
            raise VaekitError(f"dsprites: --image-size {size} is outside 8-512 pixels.")
        x, f = load_dsprites(cfg.subset if cfg.subset is not None else DSPRITES_SUBSET, size, cfg.split_seed)
        splits["all"], labels["all"], factors["all"] = x, f[:, 0].astype(np.int64), f
        value, levels, label_names, factor_names = "binary", None, ["square", "ellipse", "heart"], FACTOR_NAMES
    elif source == "digits":
        x, y, value, levels, label_names = _load_digits()
        splits["all"], labels["all"] = x, y
    elif source == "fashion-mnist":
        if not FASHION_MNIST_DIR.is_dir():
            raise VaekitError(f"{FASHION_MNIST_DIR}: Fashion-MNIST is not installed; "
                              f"install Debian's dataset-fashion-mnist or pass the IDX folder with --data.")
        splits, labels = _load_idx_folder(FASHION_MNIST_DIR, cfg.shape)
        label_names = FASHION_LABELS
    else:
        path = Path(source).expanduser()
        if not path.exists():
            if "/" not in source and not path.suffix:
                raise VaekitError(f"'{source}' is neither a known data set (digits, fashion-mnist, dsprites) nor an existing path.")
            raise VaekitError(f"{path}: no such file or directory.")
        name = path.name
        if path.is_dir():
            arrays = _arrays_in(path)
            if arrays:
                if "train" not in arrays:
                    raise VaekitError(f"{path}: has {', '.join(arrays)} arrays but no train.npz or train.npy.")
                for split, p in arrays.items():
                    x, y, f = read_arrays(p)
                    splits[split] = to_nchw(x, cfg.shape, str(p))
                    labels[split] = y
                    factors[split], factor_names = (f[0], f[1]) if f else (None, factor_names)
                if len({f is None for f in factors.values()}) > 1:
                    raise VaekitError(f"{path}: some of the split arrays have 'factors' and some do not.")
            elif _find_idx_pairs(path):
                splits, labels = _load_idx_folder(path, cfg.shape)
            else:
                x, y, label_names = read_image_folder(path, cfg.image_size, cfg, skipped)
                splits["all"], labels["all"] = to_nchw(x, None, str(path)), y
        elif path.suffix in ARRAY_SUFFIXES:
            x, y, f = read_arrays(path)
            splits["all"], labels["all"] = to_nchw(x, cfg.shape, str(path)), y
            factors["all"], factor_names = (f[0], f[1]) if f else (None, None)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            raise VaekitError(f"{path}: a single image is not a data set; pass the folder that holds the images.")
        elif "idx" not in path.name.lower() and "ubyte" not in path.name.lower():
            raise VaekitError(f"{path}: not a data file vaekit reads (IDX files, .npz/.npy arrays, or a folder "
                              f"of images or of train/valid/test arrays).")
        else:
            x = read_idx(path)
            splits["all"], labels["all"] = to_nchw(x, cfg.shape, str(path)), None

    return _assemble(cfg, source, name, splits, labels, factors, value, levels, label_names, factor_names, skipped)


def _assemble(cfg, source: str, name: str, splits: dict, labels: dict, factors: dict, value=None, levels=None,
              label_names=None, factor_names=None, skipped=()) -> Bundle:
    """A Bundle of images read as numpy arrays (N, C, H, W) per split (or ``all``, split here):
    values scaled to [0, 1], a random ``--subset``, the held-out splits a source lacks, and
    ``--binarize``; labels and factors follow their images."""
    shapes = {k: v.shape[1:] for k, v in splits.items()}
    if len(set(shapes.values())) > 1:
        raise VaekitError(f"{source}: the splits have different image shapes ({shapes}).")
    scaled = {}
    for k, v in splits.items():
        if value is not None and source == "digits":
            scaled[k] = v
            continue
        scaled[k], kind, lv = scale_values(v, f"{source} ({k})" if len(splits) > 1 else source)
        if value is None or kind == "continuous" or (kind == "levels" and value == "binary"):
            value, levels = kind, lv
    for k, y in labels.items():
        if y is not None and len(y) != len(scaled[k]):
            raise VaekitError(f"{source}: {k} has {len(scaled[k])} images but {len(y)} labels.")

    # Deterministic split for whatever the source does not provide.
    def part(arrays: dict, key: str, idx):
        a = arrays.get(key)
        return None if a is None else a[idx]

    if "all" in scaled:
        if cfg.subset is not None and source != "dsprites" and cfg.subset < len(scaled["all"]):
            keep = np.sort(np.random.default_rng(cfg.split_seed + 5417).choice(len(scaled["all"]), cfg.subset,
                                                                               replace=False))
            for arrays in (scaled, labels, factors):
                arrays["all"] = part(arrays, "all", keep)
        tr, va, te = split_indices(len(scaled["all"]), cfg.valid_fraction, cfg.test_fraction, cfg.split_seed, True)
        for split, idx in (("train", tr), ("valid", va), ("test", te)):
            for arrays in (scaled, labels, factors):
                arrays[split] = part(arrays, "all", idx)
        for arrays in (scaled, labels, factors):
            arrays.pop("all", None)
    elif cfg.subset is not None and cfg.subset < len(scaled["train"]):   # the source's own split: the training part
        keep = np.sort(np.random.default_rng(cfg.split_seed + 5417).choice(len(scaled["train"]), cfg.subset,
                                                                           replace=False))
        for arrays in (scaled, labels, factors):
            arrays["train"] = part(arrays, "train", keep)
    for held, fraction, seed in (("valid", cfg.valid_fraction, cfg.split_seed), ("test", cfg.test_fraction,
                                                                                   cfg.split_seed + 1)):
        if held not in scaled:
            tr, va, _ = split_indices(len(scaled["train"]), fraction, 0, seed, False)
            for arrays in (scaled, labels, factors):
                arrays[held] = part(arrays, "train", va)
                arrays["train"] = part(arrays, "train", tr)

    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in scaled.items()}
    dynamic = False
    if cfg.binarize != "none":
        if value == "binary":
            pass  # already binary: nothing to do
        else:
            gen = torch.Generator().manual_seed(cfg.split_seed + 12345)
            for k in ("train", "valid", "test"):
                t = tensors[k]
                if cfg.binarize == "threshold":
                    tensors[k] = (t > 0.5).float()
                elif cfg.binarize == "static" or k != "train":
                    tensors[k] = torch.bernoulli(t, generator=gen)
            dynamic = cfg.binarize == "dynamic"
        value, levels = "binary", None

    def lab(k):
        y = labels.get(k)
        return None if y is None else torch.from_numpy(np.asarray(y).astype(np.int64))

    def fac(k):
        f = factors.get(k)
        return None if f is None else torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32))

    return Bundle(
        name=name, shape=tuple(int(s) for s in tensors["train"].shape[1:]), value=value,
        train=tensors["train"], valid=tensors["valid"], test=tensors["test"], levels=levels,
        dynamic=dynamic, train_labels=lab("train"), valid_labels=lab("valid"), test_labels=lab("test"),
        label_names=label_names, meta={"skipped": list(skipped)} if skipped else {},
        train_factors=fac("train"), valid_factors=fac("valid"), test_factors=fac("test"),
        factor_names=factor_names if factors.get("train") is not None else None,
    )


def bundle_from_arrays(data, cfg) -> Bundle:
    """Images given in memory (``vaekit.train(cfg, data=...)``) as a Bundle, read as a file's
    would be: a numpy array or torch tensor (N, H, W), (N, C, H, W), (N, H, W, C) or flat (N, D)
    with ``--shape``; a tuple (images, labels); a dict with ``train`` (and ``valid``, ``test``)
    arrays or (images, labels) pairs; or a ``torch.utils.data.Dataset`` whose items are images or
    (image, label) pairs."""
    import torch.utils.data as tud

    def array(a, what):
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        a = np.asarray(a)
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise VaekitError(f"data: the {what} must be numbers, got an array of {a.dtype}.")
        return a

    def pair(d, what):
        if isinstance(d, tud.Dataset):    # map-style: items are images, or (image, label) pairs
            items = [d[i] for i in range(len(d))]
            if not items:
                raise VaekitError(f"data: the {what} dataset is empty.")
            pairs = isinstance(items[0], (tuple, list))
            x = np.stack([array(i[0] if pairs else i, what) for i in items])
            labelled = pairs and len(items[0]) > 1
            return x, (np.asarray([int(i[1]) for i in items], dtype=np.int64) if labelled else None)
        if isinstance(d, (tuple, list)) and len(d) == 2:
            return array(d[0], what), array(d[1], f"{what} labels").astype(np.int64)
        return array(d, what), None

    parts = data if isinstance(data, dict) else {"all": data}
    unknown = set(parts) - {"train", "valid", "test", "all"}
    if unknown or ("all" not in parts and "train" not in parts):
        raise VaekitError(f"data: a dict of splits needs 'train' (and 'valid', 'test'), got {sorted(parts)}.")
    splits, labels = {}, {}
    for split, d in parts.items():
        x, y = pair(d, f"{split} images" if split != "all" else "images")
        splits[split], labels[split] = to_nchw(x, cfg.shape, "data"), y
        if y is not None and len(y) != len(x):
            raise VaekitError(f"data: {len(x)} {'' if split == 'all' else split + ' '}images but {len(y)} labels.")
    return _assemble(cfg, "data", "in-memory", splits, labels, {})


def _load_idx_folder(folder: Path, shape):
    pairs = _find_idx_pairs(folder)
    splits, labels = {}, {}
    for split, (img, lab) in pairs.items():
        splits[split] = to_nchw(read_idx(img), shape, str(img))
        labels[split] = read_idx(lab).astype(np.int64) if lab is not None else None
    if "train" not in splits:
        raise VaekitError(f"{folder}: found test IDX files but no train-images-idx3-ubyte[.gz].")
    return splits, labels


# ----------------------------------------------------------------------------- new data, in chunks

def stream_images(source, cfg, info: dict, chunk: int):
    """New images for a trained run, in chunks of at most ``chunk``, each image named, encoded as
    the run's were: (names, x (n, C, H, W) float32). A folder of PNG/JPEG files is read a chunk at a
    time (any number of files); an array, an IDX file, a folder of IDX pairs or of train/valid/test
    arrays (its test split) and the built-in names are read whole, then cut. ``cfg``: the run's
    DataConfig (image size, binarisation); ``info``: its data description (shape, kind of value)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(str(source)).expanduser()
    shape = tuple(info["shape"])
    if path.is_dir() and not _arrays_in(path) and not _find_idx_pairs(path):
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise VaekitError(f"{path}: no PNG or JPEG images found in this folder.")
        mode = "L" if shape[0] == 1 else "RGB"
        for i in range(0, len(files), chunk):
            images = []
            for p in files[i:i + chunk]:
                try:
                    with Image.open(p) as im:
                        im = im.convert(mode)
                        if cfg.image_size:
                            im = im.resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
                        images.append(np.asarray(im, dtype=np.uint8))
                except (UnidentifiedImageError, OSError, SyntaxError) as e:
                    raise VaekitError(f"{p}: not a readable image ({e.__class__.__name__}).") from None
                if images[-1].shape[:2] != shape[1:]:
                    raise VaekitError(f"{p}: is {images[-1].shape[1]}x{images[-1].shape[0]}, but the run was trained "
                                      f"on {shape[2]}x{shape[1]} images.")
            x = to_nchw(np.stack(images), None, str(path))
            yield ([str(p.relative_to(path)) for p in files[i:i + chunk]], _as_trained(x, str(path), cfg, info))
        return
    x, name = _whole_source(source, path, cfg)
    x = _as_trained(x, name, cfg, info)
    for i in range(0, len(x), chunk):
        yield [f"{name}[{j}]" for j in range(i, min(i + chunk, len(x)))], x[i:i + chunk]


def _whole_source(source, path: Path, cfg) -> tuple[np.ndarray, str]:
    """All images of a source that is read whole, in its order, and how to name them."""
    if str(source) == "digits":
        return _load_digits()[0], "digits"
    if str(source) == "dsprites":   # the run's subset, drawn at the run's size
        from .dsprites import load_dsprites

        size = (cfg.image_size or [64])[0]
        return load_dsprites(cfg.subset if cfg.subset is not None else DSPRITES_SUBSET, size, cfg.split_seed)[0], \
            "dsprites"
    if str(source) == "fashion-mnist" or path.is_dir():
        folder = FASHION_MNIST_DIR if str(source) == "fashion-mnist" else path
        if str(source) == "fashion-mnist" and not FASHION_MNIST_DIR.is_dir():
            raise VaekitError(f"{FASHION_MNIST_DIR}: Fashion-MNIST is not installed; install Debian's "
                              f"dataset-fashion-mnist or pass the IDX folder with --data.")
        arrays = _arrays_in(folder)
        if arrays:
            key = "test" if "test" in arrays else next(iter(arrays))
            return to_nchw(read_array(arrays[key])[0], cfg.shape, str(arrays[key])), arrays[key].name
        splits, _ = _load_idx_folder(folder, cfg.shape)
        key = "test" if "test" in splits else "train"
        return splits[key], f"{'fashion-mnist' if str(source) == 'fashion-mnist' else path.name}:{key}"
    if not path.exists():
        raise VaekitError(f"{path}: no such file or directory.")
    if path.suffix in ARRAY_SUFFIXES:
        return to_nchw(read_array(path)[0], cfg.shape, str(path)), path.name
    return to_nchw(read_idx(path), cfg.shape, str(path)), path.name


def _as_trained(x: np.ndarray, origin: str, cfg, info: dict) -> torch.Tensor:
    """Images (N, C, H, W) as the run's model reads them: the same shape, values scaled to [0, 1],
    and binarised where the run's data were (thresholded, or one fixed draw)."""
    if tuple(x.shape[1:]) != tuple(info["shape"]):
        raise VaekitError(f"{origin}: images of shape {list(x.shape[1:])}, but the run was trained on "
                          f"{info['shape']}.")
    scaled, value, _ = scale_values(x, origin)
    t = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32))
    if info["value"] == "binary" and value != "binary":
        if cfg.binarize == "threshold":
            t = (t > 0.5).float()
        else:  # a fixed draw, as the run's validation and test images were binarised
            t = torch.bernoulli(t, generator=torch.Generator().manual_seed(cfg.split_seed + 12345))
    return t
