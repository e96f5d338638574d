"""Hyperspherical latents: a von Mises–Fisher posterior and the uniform prior on the sphere
(Davidson et al. 2018).

    z on S^(m-1) = {z in R^m : |z| = 1},  p(z) = 1 / A_m,  A_m = 2 pi^(m/2) / Gamma(m/2)
    q(z | x) = vMF(mu(x), kappa(x)) = C_m(kappa) exp(kappa mu'z),
    log C_m(kappa) = v log kappa - (v + 1) log 2 pi - log I_v(kappa),   v = m/2 - 1
    KL(q || p) = kappa I_(v+1)(kappa) / I_v(kappa) + log C_m(kappa) + log A_m

I_v is the modified Bessel function of the first kind; its logarithm is computed by SciPy
(``ive``, scaled so it does not overflow), with the gradient d/dk log I_v(k) = I_(v+1)(k) / I_v(k)
+ v / k, so the step runs on the host (it is neither compiled nor captured in a CUDA graph).

Draws follow Wood (1994): the component w = mu'z by rejection from a transformed Beta((m-1)/2,
(m-1)/2) proposal (for m = 3 exactly, by the inverse CDF), a uniform direction v orthogonal
to it, z' = (w, sqrt(1 - w^2) v) about e1, then the Householder reflection that takes e1 to mu.
The gradient to kappa goes through the accepted proposal's transformation with its Beta draw
held fixed; the correction term of the rejection sampler's reparameterisation (Naesseth et al.
2017) is left out, as in the authors' code, where it was found to matter little.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .priors import Prior
from .registry import PRIORS


class LogBesselI(torch.autograd.Function):
    """log I_v(x) for a fixed order v, elementwise, by SciPy in float64, with its gradient in x."""

    @staticmethod
    def forward(ctx, v: float, x: torch.Tensor) -> torch.Tensor:
        from scipy.special import ive

        xs = x.detach().double().cpu().numpy()
        ctx.v = v
        ctx.save_for_backward(x)
        with np.errstate(divide="ignore"):
            out = np.log(ive(v, xs)) + xs
        return torch.as_tensor(out, device=x.device).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        from scipy.special import ive

        (x,) = ctx.saved_tensors
        xs = x.detach().double().cpu().numpy()
        ratio = torch.as_tensor(ive(ctx.v + 1, xs) / ive(ctx.v, xs), device=x.device).to(x.dtype)
        return None, grad * (ratio + ctx.v / x)


def log_bessel_i(v: float, x: torch.Tensor) -> torch.Tensor:
    return LogBesselI.apply(float(v), x)


def log_sphere_area(m: int) -> float:
    """log of the area of S^(m-1), 2 pi^(m/2) / Gamma(m/2)."""
    return math.log(2) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


class VonMisesFisher:
    """vMF(loc, concentration) on S^(m-1): loc (B, m) unit vectors, concentration (B,) > 0."""

    def __init__(self, loc: torch.Tensor, concentration: torch.Tensor):
        self.loc, self.concentration = loc, concentration
        self.m = loc.shape[-1]

    @property
    def mean(self) -> torch.Tensor:
        """E[z] = I_(m/2)(k) / I_(m/2-1)(k) mu: inside the ball, shorter for a flatter q."""
        v = self.m / 2 - 1
        ratio = torch.exp(log_bessel_i(v + 1, self.concentration) - log_bessel_i(v, self.concentration))
        return ratio.unsqueeze(-1) * self.loc

    def log_normaliser(self) -> torch.Tensor:
        """log C_m(kappa) (B,)."""
        v, k = self.m / 2 - 1, self.concentration
        return v * torch.log(k) - (v + 1) * math.log(2 * math.pi) - log_bessel_i(v, k)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z) (..., B) for z (..., B, m) on the sphere."""
        return self.concentration * (z * self.loc).sum(-1) + self.log_normaliser()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z) shared equally by the m coordinates (..., B, m): the sum is the density."""
        return (self.log_density(z) / self.m).unsqueeze(-1).expand(z.shape)

    def kl_to_uniform(self) -> torch.Tensor:
        """KL(q || uniform on the sphere) (B,), in closed form."""
        v, k = self.m / 2 - 1, self.concentration
        ratio = torch.exp(log_bessel_i(v + 1, k) - log_bessel_i(v, k))
        return k * ratio + self.log_normaliser() + log_sphere_area(self.m)

    def _sample_w(self, shape: torch.Size) -> torch.Tensor:
        """The component along mu of each draw, (*shape, B)."""
        m = self.m
        k = self.concentration.expand(*shape, *self.concentration.shape)
        if m == 3:   # the inverse CDF, exactly: w = 1 + log(u + (1 - u) e^(-2 kappa)) / kappa
            u = torch.rand_like(k).clamp(1e-12, 1.0)
            return 1 + torch.log(u + (1 - u) * torch.exp(-2 * k)) / k
        root = torch.sqrt(4 * k.square() + (m - 1) ** 2)
        b = (m - 1) / (2 * k + root)             # = (-2k + root) / (m - 1), without the cancellation
        a = ((m - 1) + 2 * k + root) / 4
        d = 4 * a * b / (1 + b) - (m - 1) * math.log(m - 1)
        beta = torch.distributions.Beta(torch.tensor((m - 1) / 2, device=k.device),
                                        torch.tensor((m - 1) / 2, device=k.device))
        w = torch.zeros_like(k)
        done = torch.zeros(k.shape, dtype=torch.bool, device=k.device)
        for _ in range(1000):                     # each round accepts most draws (over half for any kappa)
            eps = beta.sample(k.shape).to(k.dtype)
            proposal = (1 - (1 + b) * eps) / (1 - (1 - b) * eps)
            t = 2 * a * b / (1 - (1 - b) * eps)
            accept = ((m - 1) * torch.log(t) - t + d) >= torch.log(torch.rand_like(k).clamp(min=1e-30))
            take = accept & ~done
            w = torch.where(take, proposal, w)
            done = done | accept
            if bool(done.all()):
                break
        return w

    def rsample(self, shape=()) -> torch.Tensor:
        shape = torch.Size(shape)
        w = self._sample_w(shape).unsqueeze(-1)                                   # (*shape, B, 1)
        v = F.normalize(torch.randn(*shape, *self.loc.shape[:-1], self.m - 1, device=self.loc.device,
                                    dtype=self.loc.dtype), dim=-1)
        about_e1 = torch.cat([w, torch.sqrt((1 - w.square()).clamp(min=1e-12)) * v], -1)
        e1 = torch.zeros_like(self.loc)
        e1[..., 0] = 1.0
        u = e1 - self.loc
        u = F.normalize(u, dim=-1, eps=1e-12)                                     # mu = e1: u = 0, no reflection
        return about_e1 - 2 * (about_e1 * u).sum(-1, keepdim=True) * u

    sample = rsample


class SphereHead(nn.Linear):
    """The encoder's last layer for a vMF posterior: features -> m direction values and one
    concentration value, float32."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return super().forward(h).float()


class UniformSphere(Prior):
    """p(z) uniform on the unit sphere S^(m-1) of the m = --latent dimensions; the posterior is a
    von Mises–Fisher (see the module docstring)."""

    host_step = "the Bessel functions of its von Mises-Fisher posterior are computed by SciPy on the host"
    export_blocker = ("the exported encoder gives a Gaussian's mean and log-variance per layer, and this latent's "
                      "posterior is a von Mises-Fisher distribution")

    def __init__(self, dim: int):
        super().__init__(dim)
        self.register_buffer("zero", torch.zeros(()))

    def head(self, features: int) -> nn.Module:
        return SphereHead(features, self.dim + 1)

    def posterior(self, params: torch.Tensor) -> VonMisesFisher:
        """mu = the first m values normalised; kappa = softplus(the last) + 1 (as Davidson et al.,
        so q never flattens to the uniform, where the sampler's formulas degenerate)."""
        return VonMisesFisher(F.normalize(params[..., :-1], dim=-1), F.softplus(params[..., -1]) + 1.0)

    def log_prob(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return torch.full(z.shape[:-1], -log_sphere_area(self.dim), dtype=z.dtype, device=z.device)

    @property
    def noise_dim(self) -> int:
        return self.dim

    def draw(self, noise, u=None, c=None, temperature=1.0):
        """Normal noise normalised: uniform on the sphere. ``temperature`` has no meaning here."""
        return F.normalize(noise, dim=-1)

    def analytic_kl(self, q, c=None):
        """The closed-form KL shared equally by the m coordinates (B, m)."""
        if not isinstance(q, VonMisesFisher):
            return None
        return (q.kl_to_uniform() / self.dim).unsqueeze(-1).expand(q.loc.shape)


def _sphere_fits(m, info) -> str | None:
    if m.flow:
        return "a flow transforms a posterior in R^d, and the hyperspherical latent lives on the sphere"
    if m.latent < 2:
        return "the hyperspherical latent needs at least 2 dimensions (the circle)"
    return None


@PRIORS.register("sphere", "hyperspherical: the uniform prior on the unit sphere in --latent dimensions with a von "
                           "Mises-Fisher posterior (Davidson et al. 2018)", _sphere_fits,
                 family="a von Mises-Fisher distribution on the sphere")
def _sphere(m, info, classes):
    return UniformSphere(m.latent)
