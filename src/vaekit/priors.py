"""Priors p(z). Any prior implements ``log_prob``, ``sample`` and optionally ``analytic_kl``."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributions import Distribution, Independent, Normal


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
        """KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1) / 2 - log s, per dimension.

        The same value as ``kl_divergence(q, Normal(0, 1))`` (a test checks it); written out
        because the general Normal-Normal formula costs several extra tensor operations
        per training step, which is measurable on CPU with small networks.
        """
        return 0.5 * (q.loc.square() + q.scale.square() - 1.0) - q.scale.log()


def build_prior(name: str, dim: int) -> Prior:
    if name == "normal":
        return StandardNormal(dim)
    raise ValueError(f"unknown prior {name!r}")
