"""Acceleration policy: mixed precision (AMP), the training step compiled (``--compile``), and
the training step replayed as a CUDA graph.

With ``--compile`` the objective (forward and backward) of a full batch is compiled once with
``torch.compile`` (:class:`CompiledLoss`): the elementwise work of a small network fuses into
few loops, where it otherwise dominates the step. The module itself is not wrapped, so the
weights and checkpoints are the same with and without it, and a run resumes either way.

On CUDA (``--cuda-graph auto``), the step of a full batch is captured once in a CUDA graph
(:class:`GraphedStep`) and replayed: forward, backward, the non-finite check and Adam in one
launch, where a small network otherwise spends its time launching kernels one by one.
Mixed precision is float16 with a loss scaler on CUDA and bfloat16 on a CPU, where it is fast
only with native bfloat16 arithmetic.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ..compiling import Compiled, compiler_missing, module_blocker, plan, slower_compiled
from ..config import Config
from ..errors import VaekitError

if TYPE_CHECKING:
    from .loop import Trainer


class Precision:
    """Whether the step runs under autocast, in which type, and the float16 loss scaler."""

    def __init__(self, amp: str, device: torch.device):
        self.enabled = amp == "on" or (amp == "auto" and device.type == "cuda")
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 12) \
            if self.enabled and device.type == "cuda" else None
        self.device_type = device.type

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512 on x86, BF16 on ARM), as oneDNN
    sees it. Without it, bfloat16 autocast is emulated: on an AVX2-only CPU the one-layer
    IWAE-50 step ran 12.6 times slower than in float32 (bench/RESULTS.md)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or a stripped build: assume it has it
        return True


def slow_amp_warning(device: torch.device, use_amp: bool) -> str | None:
    """A warning for mixed precision on a CPU that would emulate bfloat16; None otherwise."""
    if not use_amp or device.type != "cpu" or native_bfloat16():
        return None
    return ("warning: --amp on: this CPU has no native bfloat16 arithmetic, so mixed precision is emulated and "
            "can train ten times slower than float32 here (--amp off).")


def refuse_cuda_graph(blocker: str) -> VaekitError:
    return VaekitError(f"--cuda-graph on: this run cannot capture its training step in a CUDA graph: {blocker}.")


def cuda_graph_blocker(config: Config, device: torch.device, distributed: bool) -> str | None:
    """Why this run's training step cannot be captured in a CUDA graph; None if it can."""
    if device.type != "cuda":
        return f"it trains on {device.type}, not CUDA"
    if distributed:
        return "it trains on several processes (DistributedDataParallel)"
    if config.train.amp != "off":
        return "float16 mixed precision scales the loss on the host (add --amp off)"
    if config.model.net == "rnn":
        return "the recurrent network packs its sequences on the host"
    if config.model.net == "resnet":
        return "the resnet's prior, posterior and decoder share one top-down pass through a cache kept on the host"
    return None


class GraphedStep:
    """The training step of a full batch, captured once in a CUDA graph and then replayed.

    A small network's step is a few hundred kernels of microseconds each; launched one by one
    from Python, the launches are most of the step on a GPU. Here the first ``WARMUP`` steps
    run as usual (on a side stream, as capture requires), the next one is captured, and every
    later full batch is copied into the graph's input tensors and replayed: one launch.
    Whatever changes between steps lives in tensors the graph reads: the batch, its labels,
    the KL weight, and the learning rate of each parameter group (fused Adam reads it from a
    device tensor while capturing; the scheduler's float is copied into it when it changes).
    The sampling noise is fresh at every replay (PyTorch advances the generator's offset).
    A batch of another size (the last, partial one) takes the ordinary step on the same
    weights and optimiser state.
    """

    WARMUP = 3

    def __init__(self, trainer: "Trainer"):
        self.t = trainer
        self.graph = None
        self.warm = 0
        self.x = self.y = self.out = None
        self.beta = torch.zeros((), device=trainer.device)
        self.beta_value = None
        self.lrs = [torch.zeros((), device=trainer.device) for _ in trainer.opt.param_groups]
        self.lr_values = [None] * len(self.lrs)

    def __call__(self, x: torch.Tensor, y) -> torch.Tensor:
        t = self.t
        if self.x is None:
            self.x = torch.empty_like(x)
            self.y = None if y is None else torch.empty_like(y)
        self.x.copy_(x)
        if y is not None:
            self.y.copy_(y)
        beta = t.objective.beta_at(t.step)
        if beta != self.beta_value:
            self.beta.fill_(beta)
            self.beta_value = beta
        if self.graph is None:
            if self.warm < self.WARMUP:
                self.warm += 1
                return self._on_side_stream(lambda: t._step(self.x, self.y, beta=self.beta))
            try:
                self._capture()
            except RuntimeError as e:
                why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                if t.config.train.cuda_graph == "on":
                    raise VaekitError(f"--cuda-graph on: capturing the training step in a CUDA graph failed "
                                      f"({why}).") from None
                t.graphed = None
                if not t.quiet:
                    print(f"note: capturing the training step in a CUDA graph failed ({why}); training goes on "
                          f"without it (--cuda-graph off skips the attempt).", file=sys.stderr)
                return t._step(x, y)
        for i, g in enumerate(t.opt.param_groups):
            if g["lr"] != self.lr_values[i]:
                self.lrs[i].fill_(g["lr"])
                self.lr_values[i] = g["lr"]
        self.graph.replay()
        return self.out

    def _on_side_stream(self, fn):
        device = self.t.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            out = fn()
        torch.cuda.current_stream(device).wait_stream(side)
        torch.cuda.synchronize(device)
        return out

    def _capture(self) -> None:
        t = self.t
        groups = t.opt.param_groups
        saved = [(g["lr"], g["capturable"]) for g in groups]
        for g, lr in zip(groups, self.lrs):
            lr.fill_(g["lr"])
            g["lr"], g["capturable"] = lr, True
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(t.device)
        try:
            with torch.cuda.graph(graph):
                self.out = t._step(self.x, self.y, beta=self.beta)
        finally:  # the optimiser's own settings stay plain floats (checkpoints, schedulers, eager steps)
            for g, (lr, capturable) in zip(groups, saved):
                g["lr"], g["capturable"] = lr, capturable
        self.lr_values = [lr for lr, _ in saved]
        self.graph = graph


#: ``--compile auto`` compiles runs of at least this many steps. Compiling the MLP VAE's step took
#: 9-25 s on a 2-core CPU and made it 1.2-1.3 times faster (bench/RESULTS.md): it pays for itself
#: after some 10,000 steps of a few milliseconds.
AUTO_COMPILE_STEPS = 20000


def compile_blocker(model: nn.Module, objective, device: torch.device, distributed: bool) -> str | None:
    """Why this run's training step is not compiled; None if it can be."""
    missing = compiler_missing(device) or module_blocker(model) or getattr(model.prior, "host_step", None)
    if missing:
        return missing
    if distributed:
        return "it trains on several processes (DistributedDataParallel)"
    if not objective.traceable:
        return f"--objective {objective.kind} reads its step on the host"
    return None


def compile_plan(config: Config, model: nn.Module, objective, device: torch.device, distributed: bool,
                 steps: int) -> tuple[bool, str]:
    """(compile?, the words for the run header) for ``--compile`` auto/on/off
    (:func:`vaekit.compiling.plan`)."""
    skip = slower_compiled(model, device) or (
        f"{steps:,} steps are too few to pay for compiling" if steps < AUTO_COMPILE_STEPS else None)
    return plan(config.train.compile, "this run's training step",
                compile_blocker(model, objective, device, distributed), skip)


class CompiledLoss:
    """The objective of a full batch, forward and backward, compiled once with ``torch.compile``
    (:class:`vaekit.compiling.Compiled`: where compiling fails, ``--compile auto`` trains on with
    the eager objective after one line, ``--compile on`` stops with the reason). The KL weight
    is a tensor filled when it changes: a float would compile the step again at every step of a
    warm-up."""

    def __init__(self, trainer: "Trainer"):
        self.t = trainer
        self.beta = torch.zeros((), device=trainer.device)
        self.beta_value = None
        self.fn = Compiled(self._loss, "the training step", strict=trainer.config.train.compile == "on",
                           quiet=trainer.quiet)

    def _loss(self, x, y, beta):
        return self.t.objective(self.t.net, x, 0, y, beta=beta)

    def __call__(self, x: torch.Tensor, y):
        """(loss, stats) as the objective gives them."""
        beta = self.t.objective.beta_at(self.t.step)
        if beta != self.beta_value:
            self.beta.fill_(beta)
            self.beta_value = beta
        compiles = not self.fn.ready
        out = self.fn(x, y, self.beta)
        if compiles and self.t.threads is not None:
            # the compiler's worker processes kept cores busy: not a load to make room for
            self.t.threads.load.reset()
        return out
