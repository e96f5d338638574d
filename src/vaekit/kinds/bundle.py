"""The Dataset bundle: train/valid/test tensors in memory plus what the model must know."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import VaekitError

#: data.source of a run trained on data given in memory (``vaekit.train(cfg, data=...)``)
IN_MEMORY = "<in memory>"


@dataclass
class Bundle:
    """Everything the trainer and the model need from a data source.

    modality: ``image``: float tensors (N, C, H, W) in [0, 1]; ``text``: int64 token ids
        (N, L), padded with 0 after the end-of-line token; ``audio``: normalised log-mel
        spectrograms (N, 1, mels, frames).
    value: ``binary`` (0/1), ``levels`` (``levels`` evenly spaced values k/(levels-1)),
        ``continuous`` (in [0, 1]), ``real`` (unbounded) or ``tokens``.
    meta: what the modality must remember to rebuild the model and decode its output
        (vocabulary size, sample rate, normalisation, ...); saved in ``info()``.
    vocab: a text bundle's :class:`vaekit.kinds.text.Vocab` (saved as vocab.json in a run).
    dynamic: when True, training images are probabilities and each batch draws fresh
        binary pixels from them (dynamic binarisation); valid/test hold one fixed draw.
    *_factors: (N, F) float values of known generative factors (dSprites', or an .npz's
        ``factors``), named by ``factor_names``, for the disentanglement metrics; kept on the CPU.
    """

    name: str
    shape: tuple[int, ...]
    value: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    levels: int | None = None
    dynamic: bool = False
    train_labels: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    label_names: list[str] | None = None
    modality: str = "image"
    meta: dict[str, Any] = field(default_factory=dict)
    vocab: Any = None
    origin: str | None = None   # the source it was loaded from (load_data); None: built in memory
    train_factors: torch.Tensor | None = None
    valid_factors: torch.Tensor | None = None
    test_factors: torch.Tensor | None = None
    factor_names: list[str] | None = None

    @property
    def dim(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def classes(self) -> int:
        """Number of classes (largest label + 1 over all splits), 0 without labels."""
        labs = [t for t in (self.train_labels, self.valid_labels, self.test_labels) if t is not None and t.numel()]
        if not labs:
            return 0
        return max(len(self.label_names or []), int(max(t.max() for t in labs)) + 1)

    def split(self, name: str) -> torch.Tensor:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)

    def labels(self, name: str) -> torch.Tensor | None:
        return getattr(self, f"{name}_labels")

    def factors(self, name: str) -> torch.Tensor | None:
        return getattr(self, f"{name}_factors")

    def to(self, device) -> "Bundle":
        for name in ("train", "valid", "test", "train_labels", "valid_labels", "test_labels"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self

    def info(self) -> dict:
        """What a saved model needs to be rebuilt without the data (kept in config.yaml)."""
        return {
            "name": self.name,
            "modality": self.modality,
            "shape": list(self.shape),
            "value": self.value,
            "levels": self.levels,
            "label_names": self.label_names,
            "classes": self.classes,
            "factors": self.factor_names,
            "sizes": {s: int(self.split(s).shape[0]) for s in ("train", "valid", "test")},
            **self.meta,
        }

    def describe(self) -> str:
        """One line on the data set, in the words of its kind of data."""
        from .media import kind

        return kind(self.modality).describe(self)


def split_indices(n: int, valid_fraction: float, test_fraction: float, seed: int, with_test: bool):
    """Shuffled (train, valid, test) indices of n examples; ``seed`` fixes the split."""
    perm = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, int(round(n * valid_fraction)))
    n_test = max(1, int(round(n * test_fraction))) if with_test else 0
    if n - n_valid - n_test < 1:
        raise VaekitError(f"only {n} example(s): too few to split into train, valid and test.")
    return perm[n_test + n_valid:], perm[n_test:n_test + n_valid], perm[:n_test]
