"""Vector-quantised latents (the VQ-VAE of van den Oord et al. 2017), the first stage.

The encoder gives N vectors z_e of size d; each is replaced by its nearest of K code vectors e_k,
z_q = e_argmin |z_e - e_k|, and the decoder reads the N code vectors. Gradients pass straight
through the quantisation (z = z_e + sg(z_q - z_e)), the commitment loss beta |z_e - sg(z_q)|^2
keeps the encoder near its codes, and the codebook follows its assignments by exponential moving
averages (decay gamma, with Laplace smoothing of the counts) instead of a gradient. A code that
no longer gets assignments (its moving count below ``DEAD``) is restarted at a random encoder
output of the batch. The codebook starts at zero, so at the first step every vector is nearest to
code 0, which takes their mean, and every other code starts at one of them.

As a latent-variable model the posterior is a point mass on the codes and the prior, until a
prior over the codes is fitted, uniform: KL = N log K, and the ELBO log p(x | z_q) - N log K is
also the importance-sampled estimate (every importance weight is the same). That is a bound on
log p(x), not the likelihood of a model with a learned prior; nor can this stage sample: codes
drawn uniformly decode to noise, so ``vaekit sample`` refuses until a prior over the codes exists:
``vaekit train-prior`` fits one (:mod:`vaekit.codeprior`), and it then takes the uniform's place.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .priors import Prior
from .registry import PRIORS


class CodeHead(nn.Linear):
    """The encoder's last layer for a quantised latent: features -> N d values, float32."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return super().forward(h).float()


class MapCodeHead(nn.Module):
    """The conv encoder's last layer for a code map: its flattened feature map (C, h, w) -> a
    1x1 convolution to d values at each of the h w places, position-major (B, h w d), float32."""

    def __init__(self, channels: int, height: int, width: int, code_dim: int):
        super().__init__()
        self.map = (channels, height, width)
        self.conv = nn.Conv2d(channels, code_dim, 1)

    @property
    def in_features(self) -> int:
        return self.map[0] * self.map[1] * self.map[2]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h.view(h.shape[0], *self.map)).permute(0, 2, 3, 1).flatten(1).float()


class MapCodeInput(nn.Module):
    """The conv decoder's first layer for a code map: the h w code vectors (B, h w d) -> a 1x1
    convolution to the decoder's first feature map (C, h, w), flattened, after a ReLU."""

    def __init__(self, code_dim: int, channels: int, height: int, width: int):
        super().__init__()
        self.shape = (height, width, code_dim)
        self.conv = nn.Conv2d(code_dim, channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        grid = z.view(z.shape[0], *self.shape).permute(0, 3, 1, 2)
        return torch.relu(self.conv(grid)).flatten(1)


def map_shape(shape, channels) -> tuple[int, int, int]:
    """(C, h, w) of the conv encoder's last feature map for data of ``shape`` (C, H, W): each
    block halves the size, rounding up (as :class:`~vaekit.model.nets.conv.ConvEncoder`)."""
    h, w = int(shape[1]), int(shape[2])
    for _ in channels:
        h, w = (h + 1) // 2, (w + 1) // 2
    return int(channels[-1]), h, w


class QuantisedPosterior:
    """The point mass q(z | x) at the nearest codes of the encoder's vectors; ``z`` passes the
    gradient straight through to them, ``aux_loss`` (B,) is the commitment loss, ``codes`` (B, N)
    the chosen code of each vector."""

    def __init__(self, z_e: torch.Tensor, prior: "VQPrior"):
        ze = z_e.unflatten(-1, (prior.positions, prior.code_dim))                         # (B, N, d)
        self.codes = prior.codes_of(z_e)
        zq = prior.codebook[self.codes]
        if torch.is_grad_enabled() and prior.training:
            prior.update(ze.detach(), self.codes)
            zq = prior.codebook[self.codes]
        self.aux_loss = prior.commitment * (ze - zq.detach()).square().sum((-2, -1))
        self.z = (ze + (zq - ze).detach()).flatten(-2)

    @property
    def loc(self) -> torch.Tensor:
        return self.z

    def rsample(self, shape=()) -> torch.Tensor:
        return self.z.expand(*torch.Size(shape), *self.z.shape)

    sample = rsample

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q = 0 at the point mass, per unit."""
        return torch.zeros_like(z)


class VQPrior(Prior):
    """The uniform prior over K codes at each of N positions, and the codebook (K, d) with its
    moving averages; see the module docstring."""

    #: a code whose moving count of assignments falls below this is restarted
    DEAD = 1e-3
    host_step = "its codebook is updated in place at each step"
    export_blocker = ("the exported encoder gives a Gaussian's mean and log-variance per layer, and this latent is "
                      "quantised")
    #: the learned prior over the codes (``vaekit train-prior``), kept outside the module's weights
    codes_prior = None

    @property
    def sample_blocker(self) -> str | None:
        """Why this VQ-VAE cannot sample yet (no prior over its codes), else None."""
        if self.codes_prior is not None:
            return None
        return ("this VQ-VAE has no prior over its codes yet, and codes drawn uniformly decode to noise: fit one "
                "with `vaekit train-prior RUN` (reconstruct, interpolate and evaluate work without it)")

    def attach_codes(self, model: nn.Module | None) -> None:
        """Make ``model`` (a :class:`~vaekit.codeprior.CodePrior`) the prior over the codes: sampling
        draws from it, and log p(z) and the KL are its. Not registered as a submodule, so the
        VAE's weights stay those of the first stage."""
        self.__dict__["codes_prior"] = model
        if model is not None:
            model.to(self.codebook.device)

    def codes_of(self, z: torch.Tensor) -> torch.Tensor:
        """The nearest code of each position of latents z (..., N d), (..., N)."""
        zs = z.unflatten(-1, (self.positions, self.code_dim))
        book = self.codebook
        d2 = zs.square().sum(-1, keepdim=True) - 2 * zs @ book.T + book.square().sum(-1)
        return d2.argmin(-1)

    def __init__(self, positions: int, codebook: int, code_dim: int, commitment: float = 0.25, decay: float = 0.99,
                 code_map: tuple[int, int, int] | None = None):
        super().__init__(positions * code_dim)
        self.positions, self.k, self.code_dim = positions, codebook, code_dim
        self.code_map = code_map    # (C, h, w) of the conv feature map the codes form, or None
        self.commitment, self.decay = commitment, decay
        self.register_buffer("codebook", torch.zeros(codebook, code_dim))
        self.register_buffer("ema_count", torch.zeros(codebook))
        self.register_buffer("ema_sum", torch.zeros(codebook, code_dim))
        self.register_buffer("usage", torch.zeros(codebook), persistent=False)   # assignments since take_stats

    @torch.no_grad()
    def update(self, ze: torch.Tensor, codes: torch.Tensor) -> None:
        """One moving-average step of the codebook from a batch's vectors ze (B, N, d) and their
        codes (B, N), then the restart of dead codes at random vectors of the batch."""
        flat, idx = ze.reshape(-1, self.code_dim), codes.reshape(-1)
        counts = torch.bincount(idx, minlength=self.k).to(flat.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)
        self.usage += counts
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.k * 1e-5) * n                 # Laplace smoothing
        live = self.ema_count >= self.DEAD
        self.codebook.copy_(torch.where(live.unsqueeze(-1), self.ema_sum / smoothed.unsqueeze(-1), self.codebook))
        dead = (~live).nonzero().squeeze(-1)
        if dead.numel():
            pick = torch.randint(flat.shape[0], (dead.numel(),), device=flat.device)
            self.codebook[dead] = flat[pick]
            self.ema_sum[dead] = flat[pick]
            self.ema_count[dead] = 1.0

    def take_stats(self) -> dict:
        """The codes used since the last call and the perplexity of their use, exp(entropy) (a
        host read; the trainer logs them each epoch)."""
        total = self.usage.sum()
        if total <= 0:
            return {}
        p = self.usage / total
        perplexity = torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum()).item()
        used = int((self.usage > 0).sum().item())
        self.usage.zero_()
        return {"codes_used": used, "code_perplexity": perplexity}

    def head(self, features: int) -> nn.Module:
        return MapCodeHead(*self.code_map, self.code_dim) if self.code_map else CodeHead(features, self.dim)

    def decoder_input(self) -> nn.Module | None:
        """The conv decoder's first layer for a code map (a 1x1 convolution); None: its own."""
        return MapCodeInput(self.code_dim, *self.code_map) if self.code_map else None

    def posterior(self, params: torch.Tensor) -> QuantisedPosterior:
        return QuantisedPosterior(params, self)

    def log_prob(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z) of latents on the codebook: the code prior's log p(c), or N log K uniform."""
        if self.codes_prior is None:
            return torch.full(z.shape[:-1], -self.positions * math.log(self.k), dtype=z.dtype, device=z.device)
        codes = self.codes_of(z)
        return self.codes_prior.log_prob(codes.reshape(-1, self.positions)).view(codes.shape[:-1]).to(z.dtype)

    def analytic_kl(self, q, c=None):
        """KL(point mass || uniform) = N log K, shared equally by the N d units; with a learned
        prior over the codes none (the objective takes -log p(c), since log q = 0)."""
        if not isinstance(q, QuantisedPosterior) or self.codes_prior is not None:
            return None
        return torch.full_like(q.z, math.log(self.k) / self.code_dim)

    @torch.no_grad()
    def sample(self, n: int, c=None, temperature: float = 1.0) -> torch.Tensor:
        """n latents: codes from the prior over the codes (at ``temperature``), or uniform."""
        if self.codes_prior is None:
            return super().sample(n, c, temperature)
        return self.codebook[self.codes_prior.sample(n, temperature)].flatten(-2)

    @property
    def noise_dim(self) -> int:
        return self.positions * self.k

    def draw(self, noise, u=None, c=None, temperature=1.0):
        """Codes drawn uniformly (the argmax of K normal values at each position), as vectors."""
        pick = noise.unflatten(-1, (self.positions, self.k)).argmax(-1)
        return self.codebook[pick].flatten(-2)


def _vq_fits(m, info) -> str | None:
    if m.code_map and m.net != "conv":
        return f"a code map is the conv network's last feature map, and this network is {m.net}"
    if m.code_map and m.conditional:
        return "a code map is read from the conv features alone, and a conditional model adds its labels to them"
    if m.flow:
        return "a flow transforms a continuous posterior, and the quantised latent is a point mass on its codes"
    if not 0 < m.codebook_decay < 1:
        return f"the codebook's moving averages need a decay between 0 and 1, not {m.codebook_decay:g}"
    return None


@PRIORS.register("vq", "vector-quantised (VQ-VAE): --latent positions, each one of --codebook codes of --code-dim "
                       "values (moving-average codebook, --commitment)", _vq_fits,
                 width=lambda m, info=None: _positions(m, info) * m.code_dim, family="a point mass at the nearest code",
                 no_weights="its posterior is a point mass at the nearest code, so every importance weight is the "
                            "same: train with the ELBO")
def _vq(m, info, classes):
    grid = map_shape(info["shape"], m.channels) if m.code_map else None
    return VQPrior(_positions(m, info), m.codebook, m.code_dim, m.commitment, m.codebook_decay, grid)


def _positions(m, info) -> int:
    """N: --latent, or with --code-map the h w places of the conv network's last feature map."""
    if not m.code_map:
        return m.latent
    _, h, w = map_shape(info["shape"], m.channels)
    return h * w
