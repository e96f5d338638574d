"""Encoders and decoders by shape of data.

An encoder maps a batch x (B, *shape) to (mu, logvar), each (B, latent).
A decoder maps z (B, latent) to likelihood parameters (B, n_params, *shape).
"""

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLPDecoder, MLPEncoder

__all__ = ["MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder"]
