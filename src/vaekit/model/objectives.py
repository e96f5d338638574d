"""Training objectives over the same model parts.

ELBO:      L = E_q[log p(x|z)] - beta_t * KL(q(z|x) || p(z))
           beta_t = beta * min(1, step / warm-up steps)           (KL warm-up)
           free bits: KL = sum_j max(lambda, mean_batch KL_j)     (Kingma et al. 2016)
IWAE:      L_k = E[log (1/k) sum_i w_i], w_i = p(x, z_i) / q(z_i | x)  (Burda et al. 2016)
           doubly reparameterised (``dreg``, Tucker et al. 2019): the same gradient for the model,
           and for the encoder E[sum_i w~_i^2 d log w_i / d z_i  d z_i / d phi], w~ = w / sum w,
           with log q(z_i | x) read with phi held fixed: no score-function term

Every objective returns the loss to minimise and the per-batch sums of reconstruction, KL
and loss (one tensor, so the trainer accumulates on the device without a host sync; the
ELBO is minus reconstruction minus KL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .registry import OBJECTIVES


# exp(-87) is about the smallest normal float32 (1.2e-38): a term that far below the largest
# adds nothing to a sum that includes exp(0) = 1, in float32 or float64.
EXP_FLOOR = -87.0


def logsumexp(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log sum exp(x) over ``dim``: the value of ``torch.logsumexp`` (a test checks it, with
    gradients), faster on CPU.

    The vectorised CPU exp leaves its fast path for arguments below -87, whose results are
    subnormal or zero, and runs 10 to 40 times slower there. In a trained VampPrior's
    log-density about a third of the 500 components lie that far below the largest. Clamping
    x - max(x) at -87 keeps exp on its fast path and changes no float32 result; on those
    components it is 5.5 times faster forward, 4.2 times with the backward
    (bench/cpu_kernels.py). On GPUs, which have no such path, this is ``torch.logsumexp``
    itself (one kernel).
    """
    if x.device.type != "cpu":
        return torch.logsumexp(x, dim)
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # as torch.logsumexp computes under autocast
    top = x.detach().amax(dim, keepdim=True)
    m = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    out = (x - m).clamp(min=EXP_FLOOR).exp().sum(dim).log() + m.squeeze(dim)
    return out.masked_fill(top.squeeze(dim) == -math.inf, -math.inf)  # a row of -inf: -inf, not -87 + log n


def log_mean_exp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/k) sum_i exp(log_w_i) over ``dim`` (k = its size), computed stably: with the
    log-weights log p(x, z_i) - log q(z_i | x), the k-sample importance-weighted bound."""
    return logsumexp(log_w, dim) - math.log(log_w.shape[dim])


@dataclass
class Objective:
    kind: str = "elbo"
    k: int = 1
    beta: float = 1.0
    warmup_steps: int = 0
    free_bits: float = 0.0
    dreg: bool = False

    @classmethod
    def from_config(cls, train_cfg, steps_per_epoch: int) -> "Objective":
        """The objective ``train_cfg.objective`` names, from its registry."""
        return OBJECTIVES.build(train_cfg.objective, train_cfg, steps_per_epoch)

    @property
    def name(self) -> str:
        """What the validation score of a run with this objective is called."""
        return f"IWAE-{self.k} bound" if self.kind == "iwae" else "ELBO"

    def beta_at(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, (step + 1) / self.warmup_steps)

    def __call__(self, model, x: torch.Tensor, step: int = 0, y=None, beta: torch.Tensor | None = None):
        """Return (loss, stats): stats = per-batch sums of (reconstruction, KL, loss).

        y: labels, for a conditional model. beta: the KL weight as a device tensor, in place of
        ``beta_at(step)`` (a step captured in a CUDA graph reads it from there at every replay)."""
        dreg = self.dreg and torch.is_grad_enabled()
        t = model(x, self.k, log_weights=self.kind == "iwae", y=y, stop_q=dreg)  # model may be wrapped in DDP
        log_px, log_pz, log_qz, kl_dim = t["log_px"], t["log_pz"], t["log_qz"], t["kl_dim"]
        kl = kl_dim.sum(-1) if kl_dim is not None else (log_qz - log_pz).mean(0)     # (B,)
        log_px_mean = log_px.squeeze(0) if self.k == 1 else log_px.mean(0)          # (B,)
        if self.kind == "iwae" and dreg:
            # log_qz holds phi fixed, so phi's gradient comes through z alone: sum_i w~_i d log w_i;
            # the hook on z makes it sum_i w~_i^2 d log w_i / d z_i (the model's stays sum_i w~_i)
            log_w = log_px + log_pz - log_qz
            w = torch.softmax(log_w.detach(), 0)
            t["z"].register_hook(lambda g: g * w.unsqueeze(-1))
            loss = -(w * log_w).sum(0).mean()
            loss = loss + (-log_mean_exp(log_w.detach()).mean() - loss).detach()   # the value: minus the bound
        elif self.kind == "iwae":
            bound = log_mean_exp(log_px + log_pz - log_qz)
            loss = -bound.mean()
        else:
            beta = self.beta_at(step) if beta is None else beta
            if self.free_bits <= 0:
                plain = isinstance(beta, float) and beta == 1.0
                loss = (kl - log_px_mean).mean() if plain else (beta * kl - log_px_mean).mean()
            else:
                if kl_dim is not None:  # free bits per dimension, on the batch-average KL
                    kl_term = kl_dim.mean(0).clamp(min=self.free_bits).sum()
                else:                   # no per-dimension KL: a floor on the total
                    kl_term = kl.mean().clamp(min=self.free_bits * t["q"].loc.shape[-1])
                loss = beta * kl_term - log_px_mean.mean()
        with torch.no_grad():
            stats = torch.stack([-log_px_mean.sum(), kl.sum(), loss * x.shape[0]])
        return loss, stats


@OBJECTIVES.register("elbo", "the evidence lower bound, with --beta, --warmup and --free-bits")
def _elbo(t, steps_per_epoch: int) -> Objective:
    return Objective(kind="elbo", beta=t.beta, warmup_steps=int(t.warmup_epochs * steps_per_epoch),
                     free_bits=t.free_bits or 0.0)


@OBJECTIVES.register("iwae", "the importance-weighted bound over --k samples (Burda et al. 2016)")
def _iwae(t, steps_per_epoch: int) -> Objective:
    return Objective(kind="iwae", k=t.k, beta=t.beta, warmup_steps=int(t.warmup_epochs * steps_per_epoch),
                     free_bits=t.free_bits or 0.0, dreg=t.estimator == "dreg")
