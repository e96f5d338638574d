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


class PeakMemory:
    """The most memory a block of work held: on a GPU the most PyTorch allocated there, on a CPU
    the most resident memory of this process (VmHWM), counted from the start of the block where
    Linux lets a process reset its high-water mark (/proc/self/clear_refs), else over the whole
    process's life (``since_start`` False). ``bytes`` after the block; None where not told."""

    def __init__(self, device: torch.device):
        self.device, self.bytes, self.since_start = device, None, True

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.since_start = False
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
            return
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.bytes = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            self.bytes = None

    def text(self) -> str:
        if self.bytes is None:
            return "not measured here"
        where = "allocated on the GPU" if self.device.type == "cuda" else \
            "resident, the whole process" + ("" if self.since_start else " since it started")
        return f"{size_text(self.bytes)} ({where})"
