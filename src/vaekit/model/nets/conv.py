"""Convolutional encoder and decoder.

Encoder: blocks of 3x3 convolution + ReLU + 2x2 max pooling, then a fully connected layer
to (mu, logvar). Decoder: a fully connected layer, then blocks of upsampling + 3x3
transposed convolution back to the image size; the last block outputs the likelihood
parameters (for Bernoulli, the logits before the sigmoid). Upsampling goes to the sizes
recorded on the way down, so any image size works, odd ones included.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .mlp import GaussianHead


class ConvEncoder(nn.Module):
    def __init__(self, shape, latent, channels, extra: int = 0):
        super().__init__()
        c, h, w = shape
        layers, self.sizes = [], [(h, w)]
        for ch in channels:
            layers += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c, h, w = ch, (h + 1) // 2, (w + 1) // 2
            self.sizes.append((h, w))
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.fc = GaussianHead(c * h * w + extra, latent)

    @property
    def head(self) -> GaussianHead:
        """The last layer: hidden features -> (mu, logvar)."""
        return self.fc

    def hidden(self, x, cond=None):
        """The features the head reads: flattened conv features [and the condition]."""
        h = self.features(x)
        if cond is not None:  # a condition joins the flattened features
            h = torch.cat([h, cond], -1)
        return h

    def forward(self, x, cond=None):
        return self.fc(self.hidden(x, cond)).chunk(2, dim=-1)


class ConvDecoder(nn.Module):
    def __init__(self, shape, latent, channels, n_params):
        super().__init__()
        c, h, w = shape
        sizes = ConvEncoder(shape, 1, channels).sizes  # spatial sizes on the way down
        self.start = (channels[-1], *sizes[-1])
        self.fc = nn.Sequential(nn.Linear(latent, channels[-1] * sizes[-1][0] * sizes[-1][1]), nn.ReLU())
        outs = list(reversed(channels[:-1])) + [n_params * c]
        blocks, cin = [], channels[-1]
        self.activation_floats = channels[-1] * sizes[-1][0] * sizes[-1][1]  # per example, to size batches
        for i, (cout, size) in enumerate(zip(outs, reversed(sizes[:-1]))):
            blocks += [nn.Upsample(size=size, mode="nearest"), nn.ConvTranspose2d(cin, cout, 3, padding=1)]
            self.activation_floats += (2 * cin + 2 * cout) * size[0] * size[1]  # upsampled, conv, ReLU
            if i < len(outs) - 1:
                blocks.append(nn.ReLU())
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out_shape = (n_params, c, h, w)

    def forward(self, z):
        y = self.blocks(self.fc(z).view(z.shape[0], *self.start))
        return y.view(z.shape[0], *self.out_shape)
