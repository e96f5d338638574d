"""The VAE: encoder + prior + decoder + likelihood, and nothing about images, text or audio.

    q(z | x) = N(mu(x), diag sigma^2(x)),  z = mu + sigma * eps  (reparameterised)
    p(x, z)  = p(z) p(x | z)
    ELBO(x)  = E_q[log p(x | z)] - KL(q(z | x) || p(z))
    log w_i  = log p(x | z_i) + log p(z_i) - log q(z_i | x),   z_i ~ q(z | x)

Everything else (objectives, evaluation) is computed from :meth:`VAE.terms`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.distributions import Normal

from .likelihoods import Likelihood, build_likelihood, resolve_likelihood
from .nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .priors import Prior, build_prior


class VAE(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: Prior, likelihood: Likelihood):
        super().__init__()
        self.encoder, self.decoder, self.prior, self.likelihood = encoder, decoder, prior, likelihood
        if hasattr(prior, "attach"):  # priors built from the encoder (VampPrior)
            prior.attach(encoder)

    @property
    def latent(self) -> int:
        return self.prior.dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, x: torch.Tensor) -> Normal:
        """q(z | x) as a batch of diagonal Gaussians, batch shape (B, latent)."""
        mu, logvar = self.encoder(x)
        return Normal(mu, torch.exp(0.5 * logvar), validate_args=False)

    def decode(self, z: torch.Tensor):
        """p(x | z) for a batch of latents (B, latent); ``log_prob(x)`` gives (B,)."""
        return self.likelihood.dist(self.decoder(z))

    def terms(self, x: torch.Tensor, k: int = 1, log_weights: bool = True) -> dict[str, torch.Tensor]:
        """Draw k reparameterised samples z ~ q(z|x) and return the pieces of every bound.

        log_px, log_pz, log_qz: (k, B) in nats; kl_dim: analytic KL per latent dimension
        (B, latent) when the prior has one, else None; q: the posterior.
        With ``log_weights=False`` and an analytic KL, log_pz and log_qz are skipped (None):
        the single-sample ELBO does not need them, and the training step is faster without.
        """
        q = self.encode(x)
        b = x.shape[0]
        if k == 1:  # no sample dimension to expand: fewer operations in the training step
            z = q.rsample().unsqueeze(0)                      # (1, B, latent)
            xk = x
        else:
            z = q.rsample((k,))                               # (k, B, latent)
            xk = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        log_px = self.likelihood.log_prob(self.decoder(z.view(k * b, -1)), xk).view(k, b)
        kl_dim = self.prior.analytic_kl(q)
        if log_weights or kl_dim is None:
            log_pz, log_qz = self.prior.log_prob(z), q.log_prob(z).sum(-1)
        else:
            log_pz = log_qz = None
        return {"log_px": log_px, "log_pz": log_pz, "log_qz": log_qz, "kl_dim": kl_dim, "q": q}

    def forward(self, x: torch.Tensor, k: int = 1, log_weights: bool = True) -> dict[str, torch.Tensor]:
        """Same as :meth:`terms`; objectives call the model, so DistributedDataParallel sees it."""
        return self.terms(x, k, log_weights)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, generator_seed: int | None = None) -> torch.Tensor:
        """Draw n latents from the prior and decode them: the mean of p(x|z), or a sample."""
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        z = self.prior.sample(n).to(self.device)
        return self.decode_to_data(z, mean)

    @torch.no_grad()
    def decode_to_data(self, z: torch.Tensor, mean: bool = True) -> torch.Tensor:
        params = self.decoder(z)
        return self.likelihood.mean(params) if mean else self.likelihood.dist(params).sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Decode the posterior mean of each input."""
        return self.decode_to_data(self.encode(x).loc, mean)

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
        """Decode points on the straight line between the posterior means of x_a and x_b.

        x_a, x_b: (B, *shape); returns (B, steps, *shape).
        """
        za, zb = self.encode(x_a).loc, self.encode(x_b).loc
        t = torch.linspace(0, 1, steps, device=za.device).view(1, steps, 1)
        z = (1 - t) * za.unsqueeze(1) + t * zb.unsqueeze(1)
        out = self.decode_to_data(z.reshape(-1, za.shape[-1]))
        return out.view(x_a.shape[0], steps, *out.shape[1:])


def build_model(model_cfg, data_info: dict) -> VAE:
    """Build a VAE from a ModelConfig and the data description saved with a run."""
    shape = tuple(data_info["shape"])
    lik = build_likelihood(model_cfg.likelihood, shape, data_info["value"], data_info.get("levels"),
                           model_cfg.gaussian_std)
    if model_cfg.net == "mlp":
        enc = MLPEncoder(shape, model_cfg.latent, model_cfg.hidden, model_cfg.activation)
        dec = MLPDecoder(shape, model_cfg.latent, model_cfg.hidden, lik.n_params, model_cfg.activation)
    elif model_cfg.net == "conv":
        if len(shape) != 3:
            raise ValueError("the conv network needs (C, H, W) images")
        enc = ConvEncoder(shape, model_cfg.latent, model_cfg.channels)
        dec = ConvDecoder(shape, model_cfg.latent, model_cfg.channels, lik.n_params)
    else:
        raise ValueError(f"unknown net {model_cfg.net!r}")
    prior = build_prior(model_cfg.prior, model_cfg.latent, shape, model_cfg.prior_components)
    return VAE(enc, dec, prior, lik)


def likelihood_name(model_cfg, data_info) -> str:
    return resolve_likelihood(model_cfg.likelihood, data_info["value"])


def bits_per_dim(nats: float, dim: int) -> float:
    return nats / (dim * math.log(2))
