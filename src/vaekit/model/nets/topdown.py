"""Top-down inference for a hierarchical VAE: q(z1, z2 | x) = q(z2 | x) q(z1 | x, z2), and
with more layers q(zL | x) q(zL-1 | x, zL) ... q(z1 | x, z2).

This is the inference model of Tomczak & Welling's two-layer VAE (2018), in the top-down order
of the ladder VAE: the top layer is inferred from x, then each layer below from x *and* the
layer above it, so the posterior of z1 can follow z2 as the prior p(z1 | z2) does. Any encoder
(MLP, conv, recurrent) gives the deterministic features h(x) (its ``hidden``); its head reads
the top layer's posterior from them, and one small network per layer below reads
q(z_l | x, z_l+1) from h(x) and z_l+1. h(x) is computed once per example; only those small
networks run once per sample, which keeps the k-sample bounds cheap.

The latent of the model is z = [z1, ..., zL] (z1 first); priors and decoders see the whole of it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributions import Normal

from ..priors import normal_from_params as _normal
from .mlp import GaussianHead, activation_module, mlp_layers, widened


class TopDownPosterior:
    """q(z | x) for z = [z1, z2, ...]: q(z2, ... | x) times q(z1 | x, z2).

    Has the parts of ``torch.distributions.Normal`` that the VAE uses: ``rsample``,
    ``log_prob`` (per dimension, so ``.sum(-1)`` gives log q(z | x)) and ``loc``, the point
    decoded for reconstructions and maps: z2 at its mean, z1 at the mean of q(z1 | x, mu2).
    """

    def __init__(self, top, bottom):
        # top: q(z2 | x), a Normal, or for more layers a TopDownPosterior over [z2, ..., zL];
        # bottom([z2, ..., zL]) -> Normal over z1
        self.top, self._bottom = top, bottom
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

    def map(self, fn) -> "TopDownPosterior":
        """The same structure with each layer's Normal ``n`` replaced by ``fn(n, layer)`` (layer 1
        is z1, 2 is z2, ...): another proposal built from this one, e.g. with wider scales."""
        top = self.top.map(lambda n, layer: fn(n, layer + 1)) if isinstance(self.top, TopDownPosterior) \
            else fn(self.top, 2)
        return TopDownPosterior(top, lambda rest, bottom=self._bottom: fn(bottom(rest), 1))


def path(n_in: int, width: int, activation: str) -> nn.Sequential:
    """A hidden layer of its own for one input: Linear to ``width`` units, then the nonlinearity."""
    return nn.Sequential(*mlp_layers([n_in, width], activation))


class TopDownEncoder(nn.Module):
    """Wraps an encoder for the layers above z1: its posterior (``base.head``'s Normal, or a
    wrapped :class:`TopDownEncoder`'s posterior over [z2, ..., zL]) gives q(z2, ... | x); a
    network of one hidden layer (``width`` units) on [h(x), z2] gives q(z1 | x, z2). Returns
    a :class:`TopDownPosterior`. Wrapping one in another adds a layer below: the encoder of an
    L-layer model is L - 1 of them around the encoder built for zL, all sharing its h(x).

    With ``paths``, z2 first passes through a hidden layer of its own (``top_path``), as in
    Tomczak & Welling's q(z1 | x, z2), instead of entering the joint layer linearly."""

    def __init__(self, base: nn.Module, latent: int, top: int, width: int, activation: str = "relu",
                 paths: bool = False):
        super().__init__()
        self.base, self.latent, self.top = base, latent, top
        self.features = base.features if isinstance(base, TopDownEncoder) else base.head.in_features
        # the first layer on the concatenation [h, z2], split so that W_h h is computed once per x
        self.from_x = nn.Linear(self.features, widened(width, activation))
        self.top_path = path(top, width, activation) if paths else nn.Identity()
        self.from_z = nn.Linear(width if paths else top, widened(width, activation), bias=False)
        self.out = nn.Sequential(activation_module(activation)(), GaussianHead(width, latent))

    def hidden(self, x, c=None) -> torch.Tensor:
        """h(x): the features of the encoder at the bottom of the chain, computed once."""
        return self.base.hidden(x, c)

    def posterior(self, h: torch.Tensor) -> TopDownPosterior:
        above = self.base.posterior(h) if isinstance(self.base, TopDownEncoder) else _normal(self.base.head(h))
        hx = self.from_x(h)
        def bottom(rest):  # rest = [z2, ..., zL]; z1 depends on z2 only
            return _normal(self.out(hx + self.from_z(self.top_path(rest[..., :self.top]))))

        return TopDownPosterior(above, bottom)

    def forward(self, x, c=None) -> TopDownPosterior:
        return self.posterior(self.hidden(x, c))


class PathsDecoder(nn.Module):
    """A decoder that reads z = [z1, ..., zL] (and a condition c after them) through one hidden
    layer per stochastic layer, [act(A1 z1), ..., act(AL zL), c], as the decoder p(x | z1, z2) of
    Tomczak & Welling's two-layer VAE does, instead of the concatenation [z1, ..., zL, c]. ``base``
    is any non-autoregressive decoder built for inputs of L * width (+ condition) values."""

    def __init__(self, base: nn.Module, sizes: list[int], width: int, activation: str = "relu"):
        super().__init__()
        self.base, self.sizes = base, list(sizes)
        self.paths = nn.ModuleDict({f"z{i}": path(size, width, activation) for i, size in enumerate(self.sizes, 1)})
        # per example, to size evaluation batches (VAE.floats_per_row)
        self.activation_floats = getattr(base, "activation_floats", 0) + len(sizes) * (widened(width, activation) + width)

    def forward(self, zc: torch.Tensor) -> torch.Tensor:
        *zs, c = zc.split([*self.sizes, zc.shape[-1] - sum(self.sizes)], -1)
        return self.base(torch.cat([net(z) for net, z in zip(self.paths.values(), zs)] + [c], -1))
