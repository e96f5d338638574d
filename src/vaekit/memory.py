"""How much memory a model needs, and whether the machine has it: checked before anything is
allocated, so an impossible size is one sentence, not a traceback from the allocator."""

from __future__ import annotations

import torch

from .errors import VaekitError


def available_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device``: the GPU's free memory, or the operating
    system's estimate of available memory (MemAvailable); None where it cannot be told."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def size_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover


def require(needed: int, what: str, device: torch.device, advice: str) -> None:
    """Refuse, in one sentence, when ``needed`` bytes are more than ``device`` has available."""
    have = available_bytes(device)
    if have is not None and needed > have:
        raise VaekitError(f"{what} needs about {size_text(needed)} of memory, and {device.type} has "
                          f"{size_text(have)} available; {advice}.")
