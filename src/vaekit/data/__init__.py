"""Data sources, loaded into a :class:`Bundle` of in-memory tensors.

One module per modality; :func:`load_data` picks the loader from the source.
"""

from __future__ import annotations

from pathlib import Path

from .bundle import Bundle
from .images import load_images
from .text import Vocab, is_text_source, load_text


def detect_modality(cfg) -> str:
    """``cfg.modality``, or when it is ``auto``: text files -> text, WAV folders -> audio, else image."""
    if cfg.modality != "auto":
        return cfg.modality
    path = Path(str(cfg.source)).expanduser()
    if str(cfg.source) in ("digits", "fashion-mnist") or not path.exists():
        return "image"
    from .audio import is_audio_source

    if is_audio_source(path):
        return "audio"
    if is_text_source(path):
        return "text"
    return "image"


def load_data(cfg, saved: dict | None = None) -> Bundle:
    """Load the data described by a :class:`vaekit.config.DataConfig`.

    saved: what a trained run keeps about its data (``vocab`` for text, the normalisation
    statistics for audio), so the data are encoded exactly as in training.
    """
    saved = saved or {}
    modality = detect_modality(cfg)
    if modality == "text":
        return load_text(cfg, saved.get("vocab"))
    if modality == "audio":
        from .audio import load_audio

        return load_audio(cfg, saved)
    return load_images(cfg)


__all__ = ["Bundle", "Vocab", "detect_modality", "load_data", "load_images", "load_text"]
