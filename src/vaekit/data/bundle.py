"""The Dataset bundle: train/valid/test tensors in memory plus what the model must know."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Bundle:
    """Everything the trainer and the model need from a data source.

    Images are float tensors of shape (N, C, H, W) with values in [0, 1].

    value: ``binary`` (0/1), ``levels`` (``levels`` evenly spaced values k/(levels-1)),
        or ``continuous``.
    dynamic: when True, training images are probabilities and each batch draws fresh
        binary pixels from them (dynamic binarisation); valid/test hold one fixed draw.
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
            "modality": "image",
            "shape": list(self.shape),
            "value": self.value,
            "levels": self.levels,
            "label_names": self.label_names,
            "classes": self.classes,
            "sizes": {s: int(self.split(s).shape[0]) for s in ("train", "valid", "test")},
        }

    def describe(self) -> str:
        sizes = ", ".join(f"{s} {self.split(s).shape[0]:,}" for s in ("train", "valid", "test"))
        kind = f"{self.levels} levels" if self.value == "levels" else self.value
        if self.dynamic:
            kind = "binary (dynamic binarisation)"
        shape = "x".join(str(s) for s in self.shape)
        return f"{self.name}: {shape} images, {kind}; {sizes}"
