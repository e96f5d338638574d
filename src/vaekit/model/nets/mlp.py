"""Fully connected encoder and decoder (the classic VAE of Kingma & Welling 2014)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def activation_module(name: str) -> type[nn.Module]:
    """The nonlinearity after a linear layer. ``gated`` is the gated linear unit of Dauphin et
    al. (2017), a * sigmoid(b) over the two halves of its input (the element-wise nonlinearity
    of Tomczak & Welling's VAEs), so the layer before it is twice as wide: see :func:`widened`."""
    return getattr(nn, {"relu": "ReLU", "tanh": "Tanh", "elu": "ELU", "gelu": "GELU", "gated": "GLU"}[name])


def widened(width: int, activation: str) -> int:
    """The output size of the linear layer before ``activation``, for ``width`` units after it."""
    return 2 * width if activation == "gated" else width


class GaussianHead(nn.Linear):
    """The last layer of a network that gives a diagonal Gaussian: features -> [mean, log-variance].

    With ``logvar_range = (lo, hi)`` the log-variance is clipped to [lo, hi] by a hard tanh, as in
    Tomczak & Welling's VAEs ([-6, 2]: standard deviations from 0.05 to 2.7). A lower bound keeps a
    posterior from becoming sharper than the data can support, a regulariser where the model
    overfits. The weights are those of an ``nn.Linear`` (saved runs load either way);
    :func:`vaekit.model.build_model` sets the range on every head of a model.

    The output is float32 under mixed precision too: the network computes in bfloat16 or
    float16, the Gaussian it gives (its samples and log-densities, summed over the latent) does
    not. In bfloat16 a log-density of -50 would be rounded to a multiple of 0.25.
    """

    def __init__(self, d_in: int, latent: int, bias: bool = True):
        super().__init__(d_in, 2 * latent, bias)
        self.logvar_range: tuple[float, float] | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = super().forward(h).float()
        if self.logvar_range is None:
            return out
        mu, logvar = out.chunk(2, -1)
        return torch.cat([mu, F.hardtanh(logvar, *self.logvar_range)], -1)


def mlp_layers(sizes, activation, dropout: float = 0.0) -> list[nn.Module]:
    """Linear layers from sizes[0] to sizes[-1], each followed by the nonlinearity (and, with
    ``dropout`` > 0, by dropout; the two share one slot, so the weights' names do not change)."""
    act = activation_module(activation)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        after = nn.Sequential(act(), nn.Dropout(dropout)) if dropout else act()
        layers += [nn.Linear(a, widened(b, activation)), after]
    return layers


class MLPEncoder(nn.Module):
    """x -> flatten [-> concatenate a condition] -> hidden layers -> (mu, logvar)."""

    def __init__(self, shape, latent, hidden, activation="relu", extra: int = 0):
        super().__init__()
        d = math.prod(shape)
        self.flatten = nn.Flatten()
        self.net = nn.Sequential(*mlp_layers([d + extra, *hidden], activation), GaussianHead(hidden[-1], latent))

    @property
    def head(self) -> GaussianHead:
        """The last layer: hidden features -> (mu, logvar)."""
        return self.net[-1]

    def hidden(self, x, c=None):
        """The features the head reads (the last hidden layer's output)."""
        h = self.flatten(x)
        if c is not None:
            h = torch.cat([h, c], -1)
        return self.net[:-1](h)

    def forward(self, x, c=None):
        return self.head(self.hidden(x, c)).chunk(2, dim=-1)


class MLPDecoder(nn.Module):
    """z -> hidden layers (the encoder's, reversed) -> likelihood parameters; ``dropout``: on the
    hidden layers' outputs in training (a regulariser of p(x|z) where it overfits)."""

    def __init__(self, shape, latent, hidden, n_params, activation="relu", dropout: float = 0.0):
        super().__init__()
        self.out_shape = (n_params, *shape)
        sizes = [latent, *reversed(hidden)]
        self.net = nn.Sequential(*mlp_layers(sizes, activation, dropout),
                                 nn.Linear(sizes[-1], math.prod(self.out_shape)))

    def forward(self, z):
        return self.net(z).view(z.shape[0], *self.out_shape)
