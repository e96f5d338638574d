"""Categorical latents: N variables of K categories each, trained with the Gumbel-softmax.

    z = [onehot(c_1), ..., onehot(c_N)]  (N K values),  p(c_n) = 1/K,  q(c_n | x) = softmax(l_n(x))
    KL(q || p) = sum_n sum_k q_nk (log q_nk + log K)                      (exact)

Training draws the concrete relaxation (Jang et al. 2017; Maddison et al. 2017) of each one-hot,
    y_n = softmax((log q_n + g_n) / tau),  g_nk ~ Gumbel(0, 1),
at a temperature tau = max(tau_min, tau_0 exp(-r t)) that falls with the step t; with
``straight_through`` the forward pass takes the one-hot of argmax y_n and the gradient that of
y_n. Without gradients (validation, ``evaluate``, sampling) the draws are exact one-hot
samples of q, whose log q(z | x) is the categorical's: the validation ELBO and the
importance-sampled NLL are those of the discrete model, while the relaxation is only a way to
train it. The KL is exact in both, so the training ELBO differs from the discrete one only in
its reconstruction term.

A mixed latent puts D Gaussian dimensions before the one-hots, z = [u, onehot(c_1), ...], with
p(u) = N(0, I) and q(u | x) a diagonal Gaussian from the same encoder: for labelled or discrete
factors beside continuous ones (the categorical part can learn a class, the Gaussian part the
style).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .priors import Prior, normal_from_params
from .registry import PRIORS


class LogitsHead(nn.Linear):
    """The last layer of an encoder of a categorical latent: features -> N K logits, float32."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return super().forward(h).float()


class CategoricalPosterior:
    """q(z | x) of N categorical variables of K categories, z the N one-hot vectors side by side
    (..., B, N K), after ``continuous`` Gaussian dimensions when the latent is mixed; ``params``:
    the head's [mean, log-variance] of the Gaussian part, then the N K logits. See the module
    docstring for its draws."""

    def __init__(self, params: torch.Tensor, categories: int, temperature: float = 1.0,
                 straight_through: bool = False, continuous: int = 0):
        self.k, self.d = categories, continuous
        self.gaussian = normal_from_params(params[..., :2 * continuous]) if continuous else None
        self.log_probs = params[..., 2 * continuous:].unflatten(-1, (-1, categories)).log_softmax(-1)  # (B, N, K)
        self.temperature, self.straight_through = temperature, straight_through

    def _with_gaussian(self, gaussian_part, categorical_part: torch.Tensor) -> torch.Tensor:
        return categorical_part if self.gaussian is None else torch.cat([gaussian_part, categorical_part], -1)

    @property
    def probs(self) -> torch.Tensor:
        return self.log_probs.exp()

    @property
    def loc(self) -> torch.Tensor:
        """The posterior mean of z (B, D + N K): the Gaussian's mean, then each variable's
        category probabilities."""
        return self._with_gaussian(self.gaussian and self.gaussian.loc, self.probs.flatten(-2))

    def mode(self) -> torch.Tensor:
        """The Gaussian's mean and the most probable category of each variable, as one-hots."""
        onehot = F.one_hot(self.log_probs.argmax(-1), self.k).to(self.log_probs.dtype).flatten(-2)
        return self._with_gaussian(self.gaussian and self.gaussian.loc, onehot)

    def rsample(self, shape=()) -> torch.Tensor:
        shape = torch.Size(shape)
        logits = self.log_probs.expand(*shape, *self.log_probs.shape)
        if not torch.is_grad_enabled():   # exact draws of q
            pick = torch.distributions.Categorical(logits=logits).sample()
            y = F.one_hot(pick, self.k).to(logits.dtype)
        else:
            u = torch.rand_like(logits).clamp(1e-10, 1 - 1e-7)
            y = torch.softmax((logits - torch.log(-torch.log(u))) / self.temperature, -1)
            if self.straight_through:
                y = y + (F.one_hot(y.argmax(-1), self.k).to(y.dtype) - y).detach()
        return self._with_gaussian(self.gaussian and self.gaussian.rsample(shape), y.flatten(-2))

    sample = rsample

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Per unit (..., B, D + N K), summing to log q(z | x) for one-hot z: the Gaussian's
        log-density per dimension, then for each variable the unit of the chosen category holds
        that category's log-probability, the others 0."""
        cat = (z[..., self.d:].unflatten(-1, (-1, self.k)) * self.log_probs).flatten(-2)
        return self._with_gaussian(self.gaussian and self.gaussian.log_prob(z[..., :self.d]), cat)

    def kl_to_uniform(self) -> torch.Tensor:
        """KL(q(c_n | x) || uniform) of each variable (B, N), exactly."""
        return (self.probs * (self.log_probs + math.log(self.k))).sum(-1)


class CategoricalPrior(Prior):
    """p(z): N independent uniform categorical variables of K categories, z their one-hots
    (dim N K). Owns the posterior family (:meth:`posterior`, :meth:`head`) and the temperature
    schedule of its Gumbel-softmax draws, which the objective advances each step (on the host:
    a run with it is neither compiled nor captured in a CUDA graph)."""

    host_step = "its Gumbel-softmax temperature is set on the host at each step"
    export_blocker = ("the exported encoder gives a Gaussian's mean and log-variance per layer, and this latent is "
                      "categorical")

    def __init__(self, variables: int, categories: int, temperature: float = 1.0, min_temperature: float = 0.5,
                 anneal: float = 1e-4, straight_through: bool = False, continuous: int = 0):
        super().__init__(continuous + variables * categories)
        self.variables_count, self.k, self.d = variables, categories, continuous
        self.start, self.floor, self.rate, self.straight_through = temperature, min_temperature, anneal, straight_through
        self.temperature = temperature
        self.register_buffer("zero", torch.zeros(()))

    def variables(self) -> list[tuple[int, int]]:
        return [(self.d + n * self.k, self.k) for n in range(self.variables_count)]

    def at_step(self, step: int) -> None:
        """tau = max(tau_min, tau_0 exp(-r step)) (Jang et al. 2017 anneal it so, stepwise)."""
        self.temperature = max(self.floor, self.start * math.exp(-self.rate * step))

    def head(self, features: int) -> nn.Module:
        return LogitsHead(features, 2 * self.d + self.variables_count * self.k)

    def posterior(self, params: torch.Tensor) -> CategoricalPosterior:
        return CategoricalPosterior(params, self.k, self.temperature, self.straight_through, self.d)

    def log_prob(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z): -N log K for the one-hots of any categories, plus log N(u; 0, I) of a
        mixed latent's Gaussian part u."""
        out = torch.full(z.shape[:-1], -self.variables_count * math.log(self.k), dtype=z.dtype, device=z.device)
        if self.d:
            u = z[..., :self.d]
            out = out - 0.5 * (u.square().sum(-1) + self.d * math.log(2 * math.pi))
        return out

    @property
    def noise_dim(self) -> int:
        return self.dim

    def draw(self, noise, u=None, c=None, temperature=1.0):
        """The Gaussian part is the first D values times ``temperature``; each variable's
        category is the argmax of its K standard normal values: uniform over the K (the values
        are exchangeable), and a pure function of the noise, as an exported sampler needs."""
        pick = noise[..., self.d:].unflatten(-1, (self.variables_count, self.k)).argmax(-1)
        onehot = F.one_hot(pick, self.k).to(noise.dtype).flatten(-2)
        return torch.cat([noise[..., :self.d] * temperature, onehot], -1) if self.d else onehot

    def analytic_kl(self, q, c=None):
        """Per unit (B, D + N K): the Gaussian part's KL per dimension, then each variable's
        exact KL shared equally by its K units (the sum is the KL, and a floor of free bits per
        unit is K times that floor per variable)."""
        if not isinstance(q, CategoricalPosterior):
            return None
        cat = (q.kl_to_uniform() / self.k).unsqueeze(-1).expand(*q.log_probs.shape).flatten(-2)
        if not self.d:
            return cat
        g = q.gaussian
        return torch.cat([0.5 * (g.loc.square() + g.scale.square() - 1.0) - g.scale.log(), cat], -1)

    def coordinates(self, q) -> torch.Tensor:
        return q.loc


def _categorical_fits(m, info) -> str | None:
    if m.flow:
        return "a flow transforms a continuous posterior, and the categorical latent is discrete"
    if m.categories < 2:
        return f"a categorical variable needs at least 2 categories, not {m.categories}"
    return None


@PRIORS.register("categorical", "--latent categorical variables of --categories each, uniform, trained with the "
                                "Gumbel-softmax (--gumbel-temperature, --straight-through); with --continuous D "
                                "Gaussian dimensions beside them", _categorical_fits,
                 width=lambda m, info=None: m.continuous + m.latent * m.categories, family="categorical",
                 no_weights="its importance weights need log q(z|x) at the draws, and the Gumbel-softmax draws "
                            "that train a categorical latent are relaxed, not categorical: train with the ELBO "
                            "(evaluate still gives the importance-sampled NLL)")
def _categorical(m, info, classes):
    return CategoricalPrior(m.latent, m.categories, m.gumbel_temperature, m.gumbel_min_temperature,
                            m.gumbel_anneal, m.straight_through, m.continuous)
