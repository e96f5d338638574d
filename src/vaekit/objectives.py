"""Training objectives over the same model parts.

ELBO:      L = E_q[log p(x|z)] - beta_t * KL(q(z|x) || p(z))
           beta_t = beta * min(1, step / warm-up steps)           (KL warm-up)
           free bits: KL = sum_j max(lambda, mean_batch KL_j)     (Kingma et al. 2016)
IWAE:      L_k = E[log (1/k) sum_i w_i], w_i = p(x, z_i) / q(z_i | x)  (Burda et al. 2016)

Every objective returns the loss to minimise and per-batch sums of ELBO, reconstruction
and KL (as one tensor, so the trainer can accumulate on the device without a host sync).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Objective:
    kind: str = "elbo"
    k: int = 1
    beta: float = 1.0
    warmup_steps: int = 0
    free_bits: float = 0.0

    @classmethod
    def from_config(cls, train_cfg, steps_per_epoch: int) -> "Objective":
        return cls(kind=train_cfg.objective, k=train_cfg.k if train_cfg.objective == "iwae" else 1,
                   beta=train_cfg.beta, warmup_steps=int(train_cfg.warmup_epochs * steps_per_epoch),
                   free_bits=train_cfg.free_bits)

    def beta_at(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, (step + 1) / self.warmup_steps)

    def __call__(self, model, x: torch.Tensor, step: int = 0):
        t = model.terms(x, self.k)
        log_px, log_pz, log_qz, kl_dim = t["log_px"], t["log_pz"], t["log_qz"], t["kl_dim"]
        kl = kl_dim.sum(-1) if kl_dim is not None else (log_qz - log_pz).mean(0)   # (B,)
        rec = -log_px.mean(0)                                                       # (B,)
        stats = torch.stack([(-rec - kl).sum(), rec.sum(), kl.sum()]).detach()
        if self.kind == "iwae":
            log_w = log_px + log_pz - log_qz
            bound = torch.logsumexp(log_w, 0) - math.log(self.k)
            return -bound.mean(), stats
        beta = self.beta_at(step)
        if self.free_bits > 0:
            if kl_dim is not None:
                kl_term = kl_dim.mean(0).clamp(min=self.free_bits).sum()
            else:
                kl_term = kl.mean().clamp(min=self.free_bits * model.latent)
        else:
            kl_term = kl.mean()
        return rec.mean() + beta * kl_term, stats
