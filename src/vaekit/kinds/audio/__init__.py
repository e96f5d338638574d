"""Audio: folders of WAV files as log-mel spectrograms of fixed-length clips."""

from .loader import LogMel, is_audio_source, load_audio, load_clips
from .media import Audio

__all__ = ["Audio", "LogMel", "is_audio_source", "load_audio", "load_clips"]
