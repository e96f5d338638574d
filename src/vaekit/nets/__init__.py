"""Encoders and decoders by shape of data.

An encoder maps a batch x (B, *shape) to (mu, logvar), each (B, latent); its ``hidden``
gives the features its last layer, ``head`` (a :class:`~vaekit.nets.mlp.GaussianHead`), reads.
A top-down encoder (topdown.py) returns a structured posterior over two stochastic layers instead.
A decoder maps z (B, latent) to likelihood parameters (B, n_params, *shape); an
autoregressive decoder (``autoregressive = True``) also takes x (teacher forcing) and has
``generate(z, ...)``.
"""

from .conv import ConvDecoder, ConvEncoder
from .mlp import GaussianHead, MLPDecoder, MLPEncoder
from .recurrent import RecurrentDecoder, RecurrentEncoder
from .topdown import PathsDecoder, TopDownEncoder, TopDownPosterior

__all__ = ["GaussianHead", "MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "RecurrentEncoder",
           "RecurrentDecoder", "PathsDecoder", "TopDownEncoder", "TopDownPosterior"]
