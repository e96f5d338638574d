"""Forecasting and imputing with a sequence model: filter a context, roll the transition forward,
decode; or fill the missing values of a sequence from its posterior.

For a deep Markov model (:mod:`vaekit.model.nets.markov`) the forecast of a sequence from its
first N steps is

    z_1:N ~ q(z_1:N | x_1:N)                    the inference network on the context alone
    z_N+h ~ p(z_N+h | z_N+h-1),  h = 1..H      the transition, from the last z of the context
    x_N+h ~ p(x | z_N+h)                       the emission

drawn S times: S sample paths of the H steps after the context, a predictive distribution for
each future value. :func:`crps` and :func:`coverage` score such samples against what happened.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import VaekitError


@dataclass
class Forecast:
    """``context`` (B, N, D) the steps given; ``samples`` (S, B, H, D) draws of the H steps
    after them; ``truth`` (B, H, D) what followed, NaN where unknown (None without it). All in
    the model's units (a series' standardised values)."""

    context: torch.Tensor
    samples: torch.Tensor
    truth: torch.Tensor | None = None

    def quantiles(self, q) -> torch.Tensor:
        """(len(q), B, H, D) the given quantiles of the samples, e.g. (0.05, 0.5, 0.95)."""
        return torch.quantile(self.samples, torch.tensor(q, dtype=self.samples.dtype), dim=0)


@torch.no_grad()
def forecast(model, x: torch.Tensor, context: int, horizon: int, samples: int = 100, mean: bool = False,
             name: str = "the sequences") -> Forecast:
    """Forecast the ``horizon`` steps after the first ``context`` steps of each sequence of x
    (B, T, D); the steps of x after the context, where there are any, are the truth.
    ``mean``: each path's emission mean instead of a draw from it (a piano roll's key
    probabilities, say)."""
    if not hasattr(model.prior, "roll"):
        raise VaekitError("forecasting needs a model of sequences with a Markov latent (--net dmm).")
    if context < 1 or horizon < 1:
        raise VaekitError(f"--context and --horizon must be at least 1, got {context} and {horizon}.")
    from .model.nets.markov import lengths_of

    short = (lengths_of(x) < context).nonzero().flatten().tolist()
    if short:
        raise VaekitError(f"{name}: sequence {short[0]} has {int(lengths_of(x)[short[0]])} steps, fewer than "
                          f"--context {context}.")
    was = model.training
    model.eval()
    ctx = x[:, :context]
    q = model.encode(ctx)
    latent = model.latent
    last = q.rsample((samples,))[..., -latent:]                         # (S, B, latent)
    path = model.prior.roll(last, horizon)                              # (S, B, H * latent)
    s, b = path.shape[:2]
    params = model.decoder(path.reshape(s * b, -1))
    dist = model.likelihood.dist(params)
    draws = (dist.mean if mean else dist.sample()).reshape(s, b, horizon, -1)
    model.train(was)
    truth = None
    if x.shape[1] > context:
        truth = torch.full((b, horizon, x.shape[2]), float("nan"), device=x.device)
        after = x[:, context:context + horizon]
        truth[:, :after.shape[1]] = after
    return Forecast(ctx, draws, truth)


def crps(samples: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The continuous ranked probability score of the predictive distribution the samples
    (S, ...) stand for at the values y (...), by its sample estimate
    E|X - y| - E|X - X'| / 2 (lower is better; NaN where y is NaN). O(S log S) through the
    sorted samples: E|X - X'| = 2 / S^2 sum_i (2i - S - 1) x_(i)."""
    s = samples.shape[0]
    first = (samples - y).abs().mean(0)
    ordered = samples.sort(0).values
    weights = (2 * torch.arange(1, s + 1, device=samples.device, dtype=samples.dtype) - s - 1)
    spread = (weights.view(-1, *[1] * (samples.dim() - 1)) * ordered).sum(0) * 2 / (s * s)
    return first - spread / 2


def coverage(samples: torch.Tensor, y: torch.Tensor, level: float = 0.9) -> torch.Tensor:
    """1 where y lies in the central ``level`` interval of the samples, 0 where not, NaN where y
    is NaN."""
    lo, hi = torch.quantile(samples, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=samples.dtype,
                                                   device=samples.device), dim=0)
    inside = ((y >= lo) & (y <= hi)).to(samples.dtype)
    return torch.where(torch.isnan(y), torch.nan, inside)


def scores(fc: Forecast, horizons, scale: torch.Tensor | None = None) -> dict:
    """CRPS (in the data's units when ``scale``, the per-dimension standard deviation, is given:
    the CRPS scales with the values) and the 90% interval's coverage at each horizon, averaged
    over the sequences and dimensions whose truth is known: ``{h: {"crps", "coverage_90", "n"}}``."""
    out = {}
    c = crps(fc.samples, fc.truth)
    if scale is not None:
        c = c * scale.to(c.device)
    cov = coverage(fc.samples, fc.truth)
    for h in horizons:
        if h > fc.truth.shape[1]:
            continue
        known = ~torch.isnan(fc.truth[:, h - 1])
        if known.any():
            out[int(h)] = {"crps": c[:, h - 1][known].mean().item(), "coverage_90": cov[:, h - 1][known].mean().item(),
                           "n": int(known.sum())}
    return out


@torch.no_grad()
def impute(model, x: torch.Tensor, samples: int = 100) -> torch.Tensor:
    """x (B, T, D) with its missing values (NaN inside a sequence) filled in: the mean over
    ``samples`` latent paths z ~ q(z | observed x) of the emission's mean at each missing value
    (for binary frames, a key's probability, which the caller may round). Values after a
    sequence's end are padding, not missing, and stay NaN (what follows a sequence is a forecast)."""
    if not hasattr(model.prior, "roll"):
        raise VaekitError("imputing needs a model of sequences with a Markov latent (--net dmm).")
    from .model.nets.markov import cut, lengths_of

    was = model.training
    model.eval()
    xc = cut(x)
    z = model.encode(xc).rsample((samples,))                      # (S, B, T * latent)
    s, b = z.shape[:2]
    means = model.likelihood.mean(model.decoder(z.reshape(s * b, -1))).reshape(s, b, *xc.shape[1:]).mean(0)
    model.train(was)
    inside = torch.arange(xc.shape[1], device=x.device) < lengths_of(xc).unsqueeze(1)
    filled = torch.where(torch.isnan(xc) & inside.unsqueeze(-1), means, xc)
    out = x.clone()
    out[:, :xc.shape[1]] = filled
    return out
