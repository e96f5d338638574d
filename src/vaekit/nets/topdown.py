"""Top-down inference for a two-layer VAE: q(z1, z2 | x) = q(z2 | x) q(z1 | x, z2).

This is the inference model of Tomczak & Welling's two-layer VAE (2018): the top layer z2 is
inferred from x, then z1 from x *and* z2, so the posterior of z1 can follow z2 as the prior
p(z1 | z2) does. Any encoder (MLP, conv, recurrent) gives the deterministic features h(x)
(its ``hidden``); its head reads q(z2 | x) from them, and a small network reads q(z1 | x, z2)
from h(x) and z2. h(x) is computed once per example; only that small network runs once per
sample of z2, which keeps the k-sample bounds cheap.

The latent of the model is z = [z1, z2] (z1 first); priors and decoders see the whole of it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributions import Normal

from ..priors import normal_from_params as _normal
from .mlp import activation_module, mlp_layers, widened


class TopDownPosterior:
    """q(z | x) for z = [z1, z2]: q(z2 | x) times q(z1 | x, z2).

    Has the parts of ``torch.distributions.Normal`` that the VAE uses: ``rsample``,
    ``log_prob`` (per dimension, so ``.sum(-1)`` gives log q(z | x)) and ``loc``, the point
    decoded for reconstructions and maps: z2 at its mean, z1 at the mean of q(z1 | x, mu2).
    """

    def __init__(self, top: Normal, bottom):
        self.top, self._bottom = top, bottom   # bottom(z2) -> Normal over z1
        self._last = None                      # (z, q(z1 | x, z2)) of the latest rsample

    def _bottom_for(self, z: torch.Tensor) -> Normal:
        last = self._last
        if last is not None and z.data_ptr() == last[0].data_ptr() and z.numel() == last[0].numel():
            return last[1]  # the sample just drawn (maybe reshaped): q(z1 | x, z2) is known
        return self._bottom(z[..., -self.top.loc.shape[-1]:])

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        z2 = self.top.rsample(sample_shape)
        q1 = self._bottom(z2)
        z = torch.cat([q1.rsample(), z2], -1)
        self._last = (z, q1)
        return z

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        d2 = self.top.loc.shape[-1]
        q1 = self._bottom_for(z)
        z1, z2 = z[..., :-d2], z[..., -d2:]
        if q1.loc.dim() != z1.dim():  # a reshaped view of the latest sample
            q1 = Normal(q1.loc.reshape(z1.shape), q1.scale.reshape(z1.shape), validate_args=False)
        return torch.cat([q1.log_prob(z1), self.top.log_prob(z2)], -1)

    @property
    def loc(self) -> torch.Tensor:
        return torch.cat([self._bottom(self.top.loc).loc, self.top.loc], -1)


def path(n_in: int, width: int, activation: str) -> nn.Sequential:
    """A hidden layer of its own for one input: Linear to ``width`` units, then the nonlinearity."""
    return nn.Sequential(*mlp_layers([n_in, width], activation))


class TopDownEncoder(nn.Module):
    """Wraps an encoder built for z2: its head gives q(z2 | x); a network of one hidden layer
    (``width`` units) on [h(x), z2] gives q(z1 | x, z2). Returns a :class:`TopDownPosterior`.

    With ``paths``, z2 first passes through a hidden layer of its own (``z2_path``), as in
    Tomczak & Welling's q(z1 | x, z2), instead of entering the joint layer linearly."""

    def __init__(self, base: nn.Module, latent: int, top: int, width: int, activation: str = "relu",
                 paths: bool = False):
        super().__init__()
        self.base, self.latent, self.top = base, latent, top
        # the first layer on the concatenation [h, z2], split so that W_h h is computed once per x
        self.from_x = nn.Linear(base.head.in_features, widened(width, activation))
        self.z2_path = path(top, width, activation) if paths else nn.Identity()
        self.from_z = nn.Linear(width if paths else top, widened(width, activation), bias=False)
        self.out = nn.Sequential(activation_module(activation)(), nn.Linear(width, 2 * latent))

    def forward(self, x, c=None) -> TopDownPosterior:
        h = self.base.hidden(x, c)
        hx = self.from_x(h)
        return TopDownPosterior(_normal(self.base.head(h)),
                                lambda z2: _normal(self.out(hx + self.from_z(self.z2_path(z2)))))


class PathsDecoder(nn.Module):
    """A decoder that reads z = [z1, z2] (and a condition c after them) through one hidden layer
    per stochastic layer, [act(A z1), act(B z2), c], as the decoder p(x | z1, z2) of Tomczak &
    Welling's two-layer VAE does, instead of the concatenation [z1, z2, c]. ``base`` is any
    non-autoregressive decoder built for inputs of 2 * width (+ condition) values."""

    def __init__(self, base: nn.Module, latent: int, top: int, width: int, activation: str = "relu"):
        super().__init__()
        self.base, self.latent, self.top = base, latent, top
        self.z1_path = path(latent, width, activation)
        self.z2_path = path(top, width, activation)
        # per example, to size evaluation batches (VAE.floats_per_row)
        self.activation_floats = getattr(base, "activation_floats", 0) + 2 * (widened(width, activation) + width)

    def forward(self, zc: torch.Tensor) -> torch.Tensor:
        z1, z2, c = zc.split([self.latent, self.top, zc.shape[-1] - self.latent - self.top], -1)
        return self.base(torch.cat([self.z1_path(z1), self.z2_path(z2), c], -1))
