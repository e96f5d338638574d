"""Observation models p(x | z): the decoder outputs their parameters.

Each likelihood says how many parameters it needs per data value (``n_params``) and
turns the decoder output, shaped (B, n_params, *event_shape), into a
``torch.distributions.Distribution`` whose ``log_prob(x)`` is one number per example in
nats (the event dimensions are summed, via ``Independent``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal, constraints

from .registry import LIKELIHOODS


class Likelihood(nn.Module):
    """Base class: ``dist(params)`` -> distribution over one example per batch row."""

    n_params: int = 1

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__()
        self.event_shape = tuple(event_shape)

    def dist(self, params: torch.Tensor) -> Distribution:  # pragma: no cover - interface
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per example, (B,), in nats; in float32, also under mixed precision."""
        return self.dist(params.float()).log_prob(x)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The expected image, for pictures: E[x | z]."""
        return self.dist(params).mean

    def parameters_of(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """The distribution's parameters by name, each (B, *event_shape), from the decoder's output
        (B, n_params, *event_shape): what an exported decoder gives besides the mean."""
        raise NotImplementedError  # pragma: no cover - interface

    #: what :meth:`parameters_of` gives, in words (for an exported model's manifest)
    about: str = ""

    def dims(self, x: torch.Tensor) -> torch.Tensor:
        """How many values of each example the likelihood scores, (B,): the denominator of
        bits per dimension (and, for text, of the per-token perplexity)."""
        return torch.full((x.shape[0],), math.prod(self.event_shape), device=x.device)

    def trim(self, x: torch.Tensor) -> torch.Tensor:
        """x without the trailing positions that no example of the batch scores (padding after
        the longest line of a batch of text), which scores the same and computes less: the
        k-sample estimates run batches of examples of similar lengths, each trimmed."""
        return x


class BernoulliLikelihood(Likelihood):
    """p(x | z) = prod_i Bernoulli(x_i; sigmoid(logit_i)) for binary pixels."""

    def dist(self, params):
        # squeeze, not params[:, 0]: a view whose backward allocates nothing
        return Independent(Bernoulli(logits=params.squeeze(1), validate_args=False), len(self.event_shape))

    def log_prob(self, params, x):
        # The expression torch's Bernoulli.log_prob evaluates, without building the
        # distribution objects: this is the training hot path (a test checks they agree).
        return -F.binary_cross_entropy_with_logits(params.squeeze(1), x, reduction="none").flatten(1).sum(-1)

    about = "logits: p(x_i = 1) = sigmoid(logits_i); mean: that probability"

    def parameters_of(self, params):
        return {"logits": params.squeeze(1)}


class GaussianLikelihood(Likelihood):
    """p(x | z) = prod_i N(x_i; m_i, sigma_i^2).

    For values in [0, 1] (``bounded``) the mean is sigmoid(m_i); for unbounded values (the
    normalised log-mel spectrograms of audio) it is m_i itself. sigma is fixed (``std``)
    or, when ``std`` is None, a learned parameter per dimension.
    """

    def __init__(self, event_shape, std: float | None = None, bounded: bool = True):
        super().__init__(event_shape)
        self.bounded = bounded
        if std is None:  # start at a tenth of the range of [0, 1] values, or at the unit scale of normalised ones
            self.log_std = nn.Parameter(torch.full(self.event_shape, math.log(0.1 if bounded else 1.0)))
        else:
            self.register_buffer("log_std", torch.full(self.event_shape, math.log(std)))

    def dist(self, params):
        mean = torch.sigmoid(params.squeeze(1)) if self.bounded else params.squeeze(1)
        std = self.log_std.clamp(min=math.log(1e-3)).exp().expand_as(mean)
        return Independent(Normal(mean, std, validate_args=False), len(self.event_shape))

    about = "x_i ~ Normal(mean_i, std_i^2)"

    def parameters_of(self, params):
        d = self.dist(params).base_dist
        return {"mean": d.loc, "std": d.scale}


class DiscretizedLogistic(Distribution):
    """A logistic distribution discretized to ``levels`` evenly spaced values in [0, 1].

    P(x) = CDF(x + h) - CDF(x - h) with half bin width h = 1 / (2 (levels - 1)); the
    first and last bins take the tails (Salimans et al. 2017, PixelCNN++). torch.distributions
    has no discretized distribution, hence this small class; the edge bins and the
    log-space differences are written for numerical stability.
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, loc, log_scale, levels: int = 256, validate_args=False):
        self.loc, self.log_scale, self.levels = loc, log_scale, levels
        super().__init__(batch_shape=loc.shape, validate_args=validate_args)

    @property
    def mean(self):
        return self.loc.clamp(0.0, 1.0)

    def log_prob(self, x):
        half = 0.5 / (self.levels - 1)
        inv_s = torch.exp(-self.log_scale)
        centred = x - self.loc
        plus = inv_s * (centred + half)
        minus = inv_s * (centred - half)
        log_cdf_plus = F.logsigmoid(plus)             # log CDF at the upper edge
        log_one_minus_cdf_minus = -F.softplus(minus)  # log (1 - CDF) at the lower edge
        cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
        mid = inv_s * centred
        # log of the density at the centre times the bin width, when the difference underflows
        log_pdf_mid = mid - self.log_scale - 2.0 * F.softplus(mid) + math.log(2 * half)
        inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid)
        return torch.where(x < half, log_cdf_plus, torch.where(x > 1 - half, log_one_minus_cdf_minus, inner))

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, device=self.loc.device).clamp(1e-5, 1 - 1e-5)
        x = self.loc + torch.exp(self.log_scale) * (torch.log(u) - torch.log1p(-u))
        return (torch.round(x.clamp(0, 1) * (self.levels - 1)) / (self.levels - 1)).detach()


class LogisticLikelihood(Likelihood):
    """Discretized logistic per value, for images with ``levels`` grey levels (8-bit: 256)."""

    n_params = 2

    def __init__(self, event_shape, levels: int = 256):
        super().__init__(event_shape)
        self.levels = levels

    def dist(self, params):
        loc, log_scale = self._loc_scale(params)
        return Independent(DiscretizedLogistic(loc, log_scale, self.levels), len(self.event_shape))

    @staticmethod
    def _loc_scale(params):
        loc, log_scale = params.unbind(1)
        return torch.sigmoid(loc), log_scale.clamp(min=-7.0)

    @property
    def about(self) -> str:
        return (f"a logistic(loc_i, exp(log_scale_i)) discretized to {self.levels} levels in [0, 1] "
                f"(PixelCNN++ edges); mean: loc clipped to [0, 1]")

    def parameters_of(self, params):
        loc, log_scale = self._loc_scale(params)
        return {"loc": loc, "log_scale": log_scale}


class LogisticMixture(Distribution):
    """PixelCNN++'s mixture of discretized logistics over the pixels of images (B, C, H, W) with
    ``levels`` levels in [0, 1] (Salimans et al. 2017): each pixel picks one of K components
    (``logits`` (B, K, H, W)); given it, channel c is a discretized logistic whose location is
    ``means`` (B, K, C, H, W) plus a linear function of the channels before it, with the
    coefficients ``coeffs`` (B, K, C, H, W) in (-1, 1) (slot 0: c1 on c0; slot 1: c2 on c0;
    slot 2: c2 on c1). The locations are read on PixelCNN++'s [-1, 1] scale (x' = 2x - 1).
    ``log_prob`` gives (B,) in nats: the pixels' log-probabilities summed."""

    arg_constraints = {}
    has_rsample = False

    def __init__(self, logits, means, log_scales, coeffs, levels: int = 256):
        self.logits, self.means, self.log_scales, self.coeffs, self.levels = logits, means, log_scales, coeffs, levels
        super().__init__(batch_shape=logits.shape[:1], validate_args=False)

    def _locations(self, x: torch.Tensor) -> torch.Tensor:
        """Each channel's location on [-1, 1] given the channels before it, (B, K, C, H, W)."""
        m, c = self.means, self.coeffs
        if m.shape[2] == 1:
            return m
        xs = 2.0 * x.unsqueeze(1) - 1.0                                   # (B, 1, C, H, W)
        shifted = [m[:, :, 0], m[:, :, 1] + c[:, :, 0] * xs[:, :, 0]]
        if m.shape[2] == 3:
            shifted.append(m[:, :, 2] + c[:, :, 1] * xs[:, :, 0] + c[:, :, 2] * xs[:, :, 1])
        return torch.stack(shifted, 2)

    def _channel(self, loc):
        """The discretized logistic of a location on [-1, 1], on the [0, 1] scale."""
        return DiscretizedLogistic(0.5 * (loc + 1.0), self.log_scales - math.log(2.0), self.levels)

    def log_prob(self, x):
        per = DiscretizedLogistic(0.5 * (self._locations(x) + 1.0), self.log_scales - math.log(2.0),
                                  self.levels).log_prob(x.unsqueeze(1)).sum(2)   # (B, K, H, W)
        return torch.logsumexp(per + torch.log_softmax(self.logits, 1), 1).flatten(1).sum(-1)

    @property
    def mean(self):
        """E[x]: per component, each channel's clipped logistic mean s (softplus(m/s) - softplus((m-1)/s))
        on [0, 1] (the discretized one's, up to rounding), a channel before it read at its mean
        (exact for one channel; for colour, the linear dependence taken at those means)."""
        pi = torch.softmax(self.logits, 1).unsqueeze(2)                    # (B, K, 1, H, W)
        m, c = self.means, self.coeffs
        scale = torch.exp(self.log_scales) / 2
        channels = []
        for i in range(m.shape[2]):
            loc = m[:, :, i] + sum(c[:, :, i - 1 + j] * (2 * channels[j] - 1) for j in range(i))
            mu, s = 0.5 * (loc + 1.0), scale[:, :, i]
            channels.append(s * (F.softplus(mu / s) - F.softplus((mu - 1) / s)))
        return (pi * torch.stack(channels, 2)).sum(1)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            k = torch.distributions.Categorical(logits=self.logits.movedim(1, -1)).sample()   # (B, H, W)
            pick = k.unsqueeze(1).unsqueeze(1).expand(-1, 1, self.means.shape[2], -1, -1)
            m, s, c = (t.gather(1, pick).squeeze(1) for t in (self.means, self.log_scales, self.coeffs))
            xs = []
            for i in range(m.shape[1]):
                loc = m[:, i]
                if i == 1:
                    loc = loc + c[:, 0] * xs[0]
                elif i == 2:
                    loc = loc + c[:, 1] * xs[0] + c[:, 2] * xs[1]
                u = torch.rand_like(loc).clamp(1e-5, 1 - 1e-5)
                v = (loc + torch.exp(s[:, i]) * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
                xs.append(torch.round((v + 1) / 2 * (self.levels - 1)) / (self.levels - 1) * 2 - 1)
            return (torch.stack(xs, 1) + 1) / 2


class LogisticMixtureLikelihood(Likelihood):
    """A mixture of K discretized logistics per pixel (PixelCNN++), with the linear dependence
    between colour channels; the decoder gives, per channel, K logits (channel 0's are read),
    K locations, K log-scales and, with more than one channel, K coefficients."""

    def __init__(self, event_shape, mixtures: int = 10, levels: int = 256):
        super().__init__(event_shape)
        self.k, self.levels, self.colour = mixtures, levels, event_shape[0] > 1
        self.n_params = (4 if self.colour else 3) * mixtures

    def dist(self, params):
        k = self.k
        logits = params[:, :k, 0]
        means, log_scales = params[:, k:2 * k], params[:, 2 * k:3 * k].clamp(min=-7.0)
        coeffs = torch.tanh(params[:, 3 * k:4 * k]) if self.colour else torch.zeros_like(means)
        return LogisticMixture(logits, means, log_scales, coeffs, self.levels)

    @property
    def about(self) -> str:
        return (f"a mixture of {self.k} logistics discretized to {self.levels} levels per pixel (PixelCNN++, "
                f"colour channels linearly dependent): logits, means and log_scales on the [-1, 1] scale, coeffs")

    def parameters_of(self, params):
        d = self.dist(params)
        return {"logits": d.logits, "means": d.means, "log_scales": d.log_scales, "coeffs": d.coeffs}


class CategoricalLikelihood(Likelihood):
    """p(x | z) = prod_t Categorical(x_t; softmax(logits_t)) over the tokens of a line.

    params: (B, vocab, L) logits; x: (B, L) token ids, where id 0 is padding after the end
    of the line: it is not scored, so log p(x | z) sums over the line's tokens and its
    end-of-line token only.
    """

    def __init__(self, event_shape, vocab: int):
        super().__init__(event_shape)
        self.n_params = vocab

    def dist(self, params):
        return Independent(Categorical(logits=params.transpose(1, 2), validate_args=False), 1)

    def log_prob(self, params, x):
        return -F.cross_entropy(params.float(), x, ignore_index=0, reduction="none").sum(-1)

    def mean(self, params):
        """The most likely token at each position (a mean of tokens does not exist)."""
        return params.argmax(1)

    about = ("one categorical per token: the decoder's log-probabilities of the next token, step by step "
             "(log_probs of decoder_step)")

    def dims(self, x):
        return (x != 0).sum(-1)

    def trim(self, x):
        # teacher forcing: the score of position t reads only tokens before it, so the padding
        # after the batch's longest line changes nothing
        return x[:, :max(1, int(self.dims(x).max()))] if x.shape[0] else x


#: the likelihood ``auto`` picks for each kind of value
DEFAULT_FOR_VALUE = {"binary": "bernoulli", "levels": "logistic", "continuous": "gaussian", "real": "gaussian",
                     "tokens": "categorical"}


def default_likelihood(value: str) -> str:
    """The likelihood that fits data of this kind of value (what ``auto`` resolves to)."""
    return DEFAULT_FOR_VALUE[value]


def _not_tokens(name):
    def fits(m, info):
        if info["value"] == "tokens":
            return f"the {name} likelihood is for numeric values, not tokens; text takes the categorical likelihood"
        return None
    return fits


def _bernoulli_fits(m, info):
    if info["value"] != "binary":
        return (f"the Bernoulli likelihood needs binary pixels but the data are {info['value']}; add --binarize "
                f"dynamic (or static/threshold), or use another likelihood")
    return None


def _logistic_fits(m, info):
    if info["value"] not in ("levels", "binary", "continuous"):
        return (f"the discretized logistic likelihood needs values in [0, 1], but these data are {info['value']}; "
                f"use --likelihood gaussian")
    return None


class FrameLikelihood(Likelihood):
    """A frame likelihood applied at every step of a sequence: parameters (B, n_params, T, D)
    against x (B, T_x, D) with T <= T_x. Values that are NaN (frames after a sequence's end,
    missing values) are not scored, and x is read only as far as the parameters go (the rest of
    a padded batch is NaN)."""

    def __init__(self, frame: Likelihood):
        super().__init__(frame.event_shape)
        self.frame = frame
        self.n_params = frame.n_params

    def dist(self, params):
        return Independent(self.frame.dist(params).base_dist, 2)

    def mean(self, params):
        return self.dist(params).mean

    def log_prob(self, params, x):
        x = x[:, :params.shape[2]]
        seen = ~torch.isnan(x)
        values = self.frame.dist(params.float()).base_dist.log_prob(torch.where(seen, x, 0.0))
        return torch.where(seen, values, 0.0).flatten(1).sum(-1)

    def dims(self, x):
        return (~torch.isnan(x)).flatten(1).sum(-1).to(torch.float32)

    @property
    def about(self):
        return self.frame.about + ", at every step"

    def parameters_of(self, params):
        return self.frame.parameters_of(params)


@LIKELIHOODS.register("bernoulli", "binary pixels", _bernoulli_fits)
def _bernoulli(m, info):
    return BernoulliLikelihood(info["shape"])


@LIKELIHOODS.register("gaussian", "a Gaussian, learned or fixed (--gaussian-std) std", _not_tokens("Gaussian"))
def _gaussian(m, info):
    return GaussianLikelihood(info["shape"], m.gaussian_std, bounded=info["value"] != "real")


@LIKELIHOODS.register("logistic", "discretized logistic over the value levels", _logistic_fits)
def _logistic(m, info):
    return LogisticLikelihood(info["shape"], info.get("levels") or 256)


def _mixture_fits(m, info):
    why = _logistic_fits(m, info)
    if why:
        return why.replace("discretized logistic likelihood", "logistic mixture")
    if len(info["shape"]) != 3 or int(info["shape"][0]) not in (1, 2, 3):
        return (f"the logistic mixture is for images of 1 to 3 channels, (C, H, W), not shape "
                f"{list(info['shape'])}; use --likelihood logistic")
    return None


@LIKELIHOODS.register("logistic-mixture", "images: a mixture of --mixtures discretized logistics per pixel, "
                                          "colour channels linearly dependent (PixelCNN++)", _mixture_fits)
def _logistic_mixture(m, info):
    return LogisticMixtureLikelihood(info["shape"], m.mixtures, info.get("levels") or 256)


@LIKELIHOODS.register("categorical", "one categorical per token (text)",
                      lambda m, info: None if info["value"] == "tokens" else
                      f"the categorical likelihood is for tokens, but these data are {info['value']}")
def _categorical(m, info):
    return CategoricalLikelihood(info["shape"], info.get("vocab_size"))
