"""Kinds of data, one folder each (its loader and its media class), and the registry of kinds.

A data source is loaded into a :class:`Bundle` (train/valid/test tensors in memory plus what
the model must know); the kind's :class:`Media` shows the run's decoded data. Registration
order is detection order: images (the default), then audio, then text, then sequences.
"""

from .bundle import IN_MEMORY, Bundle, split_indices
from .media import KINDS, Media, Written, as_bundle, detect_modality, kind, load_data, register_kind
from .images import Images  # noqa: E402  (registered in this order)
from .audio import Audio  # noqa: E402
from .text import Text, Vocab  # noqa: E402
from .sequences import Sequences  # noqa: E402

__all__ = ["IN_MEMORY", "as_bundle", "Bundle", "split_indices", "KINDS", "Media", "Written", "detect_modality", "kind", "load_data",
           "register_kind", "Images", "Text", "Audio", "Sequences", "Vocab"]
