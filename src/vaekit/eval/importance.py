"""The one importance-sampling primitive: log-weights over k samples, in chunks.

    log w_i = log p(x, z_i) - log q(z_i | x),   z_i ~ q(z | x),   i = 1..k
    log p(x) ~= log (1/k) sum_i w_i            (a stochastic lower bound that tightens with k)

The k samples are drawn in chunks of at most ``chunk`` per pass, each one batched decoder pass
over (examples x samples) rows, so k = 5000 fits in memory. ``proposal`` replaces the
encoder's q(z | x) by any other distribution over the latent: a function
``(x, y, samples) -> posterior`` (``samples``: the slice of the k samples this pass draws) whose
result has ``rsample`` and a per-dimension ``log_prob``. Every proposal gives a valid estimate,
a better one a tighter one. ``evaluate``, the validation IWAE bound and the benchmark
scripts call this; the IWAE objective calls the model itself, so that DistributedDataParallel
sees the call.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..model.objectives import log_mean_exp

Proposal = Callable[[torch.Tensor, "torch.Tensor | None", slice], object]


def importance_terms(model, x: torch.Tensor, k: int, chunk: int | None = None, y=None,
                     proposal: Proposal | None = None) -> Iterator[dict]:
    """The model's :meth:`~vaekit.model.VAE.terms` for k samples per example of x, in passes of
    at most ``chunk`` samples (default: all k in one). With ``proposal``, the samples of each
    pass come from ``proposal(x, y, slice(first, first + size))``."""
    chunk = max(1, min(k, chunk or k))
    for j in range(0, k, chunk):
        s = min(chunk, k - j)
        q = None if proposal is None else proposal(x, y, slice(j, j + s))
        yield model.terms(x, s, y=y, q=q)


def log_weights(model, x: torch.Tensor, k: int, chunk: int | None = None, y=None,
                proposal: Proposal | None = None) -> torch.Tensor:
    """(k, B) log-weights log p(x, z_i) - log q(z_i | x) of k samples per example."""
    return torch.cat([t["log_px"] + t["log_pz"] - t["log_qz"]
                      for t in importance_terms(model, x, k, chunk, y, proposal)], 0)


def log_likelihood(model, x: torch.Tensor, k: int, chunk: int | None = None, y=None,
                   proposal: Proposal | None = None) -> torch.Tensor:
    """(B,) the k-sample importance-sampled estimate of log p(x) (the IWAE-k bound)."""
    return log_mean_exp(log_weights(model, x, k, chunk, y, proposal))
