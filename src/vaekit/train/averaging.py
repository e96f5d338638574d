"""Weight averaging (``--ema``): an exponential moving average of the weights, kept beside the
raw weights the optimiser steps. Validation, the choice of the best epoch and
``model.safetensors`` use the average; the optimiser never sees it.

(torch.optim.swa_utils.AveragedModel would read its step counter on the host every step;
this is one fused op per step with no host sync.)
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


def start(raw: list[torch.Tensor]) -> list[torch.Tensor]:
    """The average, started from the weights as they are."""
    return [w.clone() for w in raw]


def update(ema: list[torch.Tensor], raw: list[torch.Tensor], decay: float, step: int) -> None:
    """ema <- d ema + (1 - d) w. Over the first steps the decay is min(d, (1 + t) / (10 + t)),
    so the average does not lag behind the initial weights."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(ema, raw, 1.0 - d)


@contextmanager
def swapped_in(raw: list[torch.Tensor], ema: list[torch.Tensor] | None):
    """Inside the block the weights hold the average (when there is one); the raw weights are
    put back afterwards, also after an error."""
    if ema is None:
        yield
        return
    with torch.no_grad():
        live = [w.clone() for w in raw]
        for w, e in zip(raw, ema):
            w.copy_(e)
    try:
        yield
    finally:
        with torch.no_grad():
            for w, saved in zip(raw, live):
                w.copy_(saved)


def saved_weights(model: torch.nn.Module, ema: list[torch.Tensor] | None) -> dict:
    """The model's state dict, with the averaged parameters when there is an average."""
    state = model.state_dict()
    if ema is not None:
        names = [name for name, _ in model.named_parameters()]
        state.update(zip(names, ema))
    return state
