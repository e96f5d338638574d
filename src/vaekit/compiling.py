"""``--compile``: torch.compile where it works, and the eager code where it does not.

torch.compile turns a function into fused code: on a GPU through Triton, on a CPU through a C++
compiler, which a machine may not have. :func:`compiler_missing` tells before trying;
:class:`Compiled` tries on the first call and, where compiling fails all the same, goes on with
the function itself after one line (``strict``: stops with the reason instead).
"""

from __future__ import annotations

import os
import shutil
import sys

import torch
import torch.nn as nn

from .errors import VaekitError


def compiler_missing(device: torch.device) -> str | None:
    """Why torch.compile cannot build code for ``device`` here; None if it can."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton, which it needs on a GPU, is not installed"
        return None
    if device.type != "cpu":
        return f"it runs on {device.type}"
    names = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    if not any(name and shutil.which(name) for name in names):
        return "no C++ compiler (g++ or clang++) was found, which it needs on a CPU"
    return None


def module_blocker(model: nn.Module) -> str | None:
    """Why a model's computation is not compiled at all; None if it can be."""
    if any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return "its recurrent network runs step by step"
    for m in model.modules():   # a part that says why itself (the resnet's cached top-down pass)
        why = getattr(m, "compile_blocker", None)
        if why:
            return why
    return None


def slower_compiled(model: nn.Module, device: torch.device) -> str | None:
    """Why compiling is expected to make this model's training step slower here (``auto`` then
    does not compile it; ``on`` does); None otherwise."""
    if device.type == "cpu" and any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        # measured: the conv VAE's compiled step ran at 0.7 times the eager one (bench/RESULTS.md)
        return "compiled convolutions ran slower than eager ones on a CPU"
    return None


def plan(mode: str, what: str, blocker: str | None, skip: str | None) -> tuple[bool, str]:
    """Whether to compile, and why in words, for ``--compile`` ``mode`` (auto/on/off): never
    where ``blocker`` says it cannot (``on`` is then refused in one sentence naming ``what``),
    and under ``auto`` not where ``skip`` says it would not pay."""
    if mode == "off":
        return False, "not compiled (--compile off)"
    if blocker:
        if mode == "on":
            raise VaekitError(f"--compile on: {what} cannot be compiled: {blocker}.")
        return False, f"not compiled: {blocker}"
    if mode == "auto" and skip:
        return False, f"not compiled: {skip} (--compile on compiles anyway)"
    return True, "compiled with torch.compile"


class Compiled:
    """``fn`` compiled with ``torch.compile`` (fixed shapes first; a second shape compiles once
    more with dynamic ones). The first call compiles; if that fails, this says so in one line
    (``quiet``: not at all) and calls ``fn`` itself from then on; with ``strict`` it stops with
    a :class:`VaekitError` naming ``what`` and the reason."""

    def __init__(self, fn, what: str, strict: bool = False, quiet: bool = False):
        self.eager, self.what, self.strict, self.quiet = fn, what, strict, quiet
        self.fn = torch.compile(fn)
        self.ready = self.failed = False

    def __call__(self, *args):
        if self.failed:
            return self.eager(*args)
        try:
            out = self.fn(*args)
        except Exception as e:
            # the first call compiles, and its failures share no type (compiler, lowering, tracing);
            # a later call compiles again only for new shapes, where a failure is one of torch's own
            if self.ready and not type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            if self.strict:
                raise VaekitError(f"--compile on: compiling {self.what} failed ({why}).") from None
            self.failed = True
            if not self.quiet:
                print(f"note: compiling {self.what} failed ({why}); it goes on without compiling "
                      f"(--compile off skips the attempt).", file=sys.stderr)
            return self.eager(*args)
        self.ready = True
        return out
