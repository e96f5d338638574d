"""Safe, atomic files: weights in safetensors, trainer state via torch.load(weights_only=True).

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed
over the target, so a killed process leaves either the old file or the new one.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import VaekitError


def _atomic(path: Path, write) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise VaekitError(f"{path}: cannot write the file ({e.strerror or e}); the previous version is intact.") from None


def save_weights(state_dict: dict, path: Path) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    _atomic(path, lambda p: save_file(tensors, str(p)))


def load_weights(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise VaekitError(f"{path}: weights file not found.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise VaekitError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]}).") from None


def save_state(state: dict, path: Path) -> None:
    _atomic(path, lambda p: torch.save(state, p))


def load_state(path: Path) -> dict:
    """Load trainer state without unpickling arbitrary objects (weights_only=True)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise VaekitError(f"{path}: trainer state not found.") from None
    except Exception as e:  # the unpickler raises many types; all mean "refused"
        raise VaekitError(f"{path}: refused to load the trainer state ({type(e).__name__}); "
                          f"only plain tensors and numbers are accepted.") from None
