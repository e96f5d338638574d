"""Text: one example per line, character or word tokens."""

from .loader import Vocab, is_text_source, load_text
from .media import Text

__all__ = ["Text", "Vocab", "is_text_source", "load_text"]
