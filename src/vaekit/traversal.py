"""Latent traversals: one latent dimension varied at a time, the others held, and decoded.

The picture that shows what each dimension of a (disentangled) latent encodes (Higgins et al.
2017): a row per dimension, a column per value. The point held is a test example's posterior
mean, or z = 0 (the prior's mean); the varied dimension takes the values of ``span`` evenly
(the values themselves, not offsets: the prior is N(0, 1) per dimension). Rows are ordered by
how much each dimension carries, the KL of q(z_d | x) from p(z_d) averaged over the test split
(or, for priors that are not factorised, the variance of the posterior means): dimensions the
model does not use come last and look the same at every step.

:func:`traversal` computes the latents (``Traversal.flat()``, with the labels ``Traversal.y``, is what
to decode); the run's media (``Media.traverse``, ``traversal_html``) decode and show them, as pictures, lines of text, or spectrograms and sound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import VaekitError
from .eval.metrics import kl_per_dimension, posterior_means

#: at most this many dimensions by default (those that carry the most)
MAX_DIMS = 16


@dataclass
class Traversal:
    z: torch.Tensor              # (rows, steps, latent)
    dims: list[int]              # the dimension each row varies
    strength: list[float]        # what each of those carries (KL in nats, or the variance of the means)
    measure: str                 # "KL" or "variance"
    values: list[float]          # the values every row runs through
    origin: str                  # the point held, in words
    y: torch.Tensor | None = None  # the label a conditional model decodes with, one per latent

    def labels(self) -> list[str]:
        """One label per row: the dimension and what it carries."""
        unit = " nats" if self.measure == "KL" else ""
        what = "KL" if self.measure == "KL" else "var"
        return [f"z{d}  {what} {s:.2f}{unit}" for d, s in zip(self.dims, self.strength)]

    def flat(self) -> torch.Tensor:
        return self.z.reshape(-1, self.z.shape[-1])


def vary(base: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """(len(dims), len(values), latent): the latent ``base`` with, in row r, dimension dims[r] set
    to each of ``values`` in turn."""
    z = base.expand(len(dims), len(values), base.shape[-1]).clone()
    for r, d in enumerate(dims):
        z[r, :, d] = values
    return z


def traversal(model, x: torch.Tensor, y=None, dims: list[int] | None = None, span=(-3.0, 3.0), steps: int = 9,
              at: torch.Tensor | None = None, at_y=None, origin: str = "the example", max_dims: int = MAX_DIMS) -> Traversal:
    """The latents of a traversal of ``model`` around the posterior mean of the example ``at``
    (with label ``at_y`` for a conditional model; said as ``origin``), or around z = 0 when ``at``
    is None. ``dims``: the dimensions to vary, in the order given (default: the ``max_dims`` that
    carry most over x, most first); x and y (labels, for a conditional model) are what the
    ordering is measured on."""
    latent = model.latent
    if steps < 2:
        raise VaekitError(f"--steps must be at least 2, got {steps}.")
    lo, hi = (float(v) for v in span)
    if not lo < hi:
        raise VaekitError(f"--range must be LO,HI with LO < HI, got {lo:g},{hi:g}.")
    if dims is not None:
        bad = [d for d in dims if not 0 <= d < latent]
        if bad:
            raise VaekitError(f"--dims {','.join(map(str, bad))}: the latent has {latent} dimensions (0-{latent - 1}).")
        if not dims:
            raise VaekitError("--dims names no dimension.")
    strength, measure = kl_per_dimension(model, x, y)
    order = list(dims) if dims is not None else sorted(range(latent), key=lambda d: -strength[d])[:max_dims]
    label = None
    if at is None:
        base, origin = torch.zeros(latent, device=x.device), "z = 0"
        if model.classes:
            label = torch.zeros((), dtype=torch.long, device=x.device)
            origin += ", class 0"
    else:
        label = None if at_y is None else torch.as_tensor(at_y, device=x.device).reshape(())
        base = posterior_means(model, at.unsqueeze(0), None if label is None else label.reshape(1))[0]
    values = torch.linspace(lo, hi, steps, device=x.device)
    z = vary(base, order, values)
    ys = None if label is None else label.expand(len(order) * steps)
    return Traversal(z, order, [strength[d] for d in order], measure, values.tolist(), origin, ys)
