"""Sequences: frames over time (piano rolls, real-valued series), for the deep Markov model."""

from .loader import load_sequences, roll_to_midi
from .media import Sequences

__all__ = ["Sequences", "load_sequences", "roll_to_midi"]
