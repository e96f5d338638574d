"""Priors p(z). Any prior implements ``log_prob``, ``sample`` and optionally ``analytic_kl``."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence


class Prior(nn.Module):
    """Interface for priors over a latent of size ``dim``.

    log_prob(z): (..., dim) -> (...) in nats.
    sample(n): (n, dim).
    analytic_kl(q): KL(q || p) per latent dimension, (B, dim), when it has a closed form,
        else None (the objective then uses the Monte Carlo estimate log q(z) - log p(z)).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, n: int) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def analytic_kl(self, q: Normal) -> torch.Tensor | None:
        return None


class StandardNormal(Prior):
    """p(z) = N(0, I)."""

    def __init__(self, dim: int):
        super().__init__(dim)
        self.register_buffer("zero", torch.zeros(()))

    def _dist(self, shape=()) -> Distribution:
        loc = self.zero.expand(*shape, self.dim)
        return Independent(Normal(loc, torch.ones_like(loc), validate_args=False), 1)

    def log_prob(self, z):
        return self._dist().log_prob(z)

    def sample(self, n):
        return self._dist((n,)).sample()

    def analytic_kl(self, q: Normal):
        return kl_divergence(q, Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale)))


def build_prior(name: str, dim: int) -> Prior:
    if name == "normal":
        return StandardNormal(dim)
    raise ValueError(f"unknown prior {name!r}")
