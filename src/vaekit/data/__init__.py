"""Data sources, loaded into a :class:`Bundle` of in-memory tensors.

One module per modality; :func:`load_data` picks the loader from the source.
"""

from __future__ import annotations

from .bundle import Bundle
from .images import load_images


def load_data(cfg) -> Bundle:
    """Load the data described by a :class:`vaekit.config.DataConfig`."""
    return load_images(cfg)


__all__ = ["Bundle", "load_data", "load_images"]
