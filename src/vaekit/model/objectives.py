"""Training objectives over the same model parts.

ELBO:      L = E_q[log p(x|z)] - beta_t * KL(q(z|x) || p(z))
           beta_t = beta * min(1, step / warm-up steps)           (KL warm-up)
           free bits: KL = sum_j max(lambda, mean_batch KL_j)     (Kingma et al. 2016)
IWAE:      L_k = E[log (1/k) sum_i w_i], w_i = p(x, z_i) / q(z_i | x)  (Burda et al. 2016)
           doubly reparameterised (``dreg``, Tucker et al. 2019): the same gradient for the model,
           and for the encoder E[sum_i w~_i^2 d log w_i / d z_i  d z_i / d phi], w~ = w / sum w,
           with log q(z_i | x) read with phi held fixed: no score-function term
MIWAE:     (1/M) sum_m L_K over M groups of K samples each (Rainforth et al. 2018), for model and encoder
PIWAE:     the model by the IWAE bound of all M K samples, the encoder by the MIWAE bound
CIWAE:     beta ELBO_K + (1 - beta) L_K, the ELBO averaged over the same K samples
           Their gradients are weighted sums of d log w_i: per sample w~_i (IWAE over all MK),
           w~_i of its group / M (MIWAE). PIWAE takes the encoder's from the MIWAE bound and adds,
           on the model's parameters alone (z held fixed, a second decoder pass), the difference of
           the two weightings, so each part gets its own bound's gradient in one backward pass.

Matching the aggregate posterior q(z) = E_x q(z|x) to p(z) by a maximum mean discrepancy (MMD²,
the unbiased estimate over the batch's z ~ q(z|x) and as many draws of p(z)):
WAE-MMD:   -log p(x|z) + lambda MMD²(q(z), p(z))                         (Tolstikhin et al. 2018)
InfoVAE:   -log p(x|z) + (1 - alpha) beta_t KL + (alpha + lambda - 1) MMD²  (Zhao et al. 2019)
           kernels: RBF exp(-|z - z'|^2 / C) and inverse multiquadratic sum_s sC / (sC + |z - z'|^2)
           over s in {0.1, 0.2, 0.5, 1, 2, 5, 10}, C = 2 D sigma^2 (D: the latent size, sigma^2
           the prior's variance times --mmd-scale), as in the WAE paper

Disentangling objectives: the ELBO (KL weight beta_t, as above) plus a penalty on the aggregate
posterior q(z) = E_x q(z|x), which the ELBO's KL contains (Hoffman & Johnson 2016):
β-TCVAE:   KL = MI + TC + DW, per sample (Chen et al. 2018):
           MI = log q(z|x) - log q(z),  TC = log q(z) - sum_d log q(z_d),  DW = sum_d log q(z_d) - log p(z);
           q(z) and q(z_d) by minibatch-weighted sampling, log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log(N B);
           loss = -log p(x|z) + w_t (alpha MI + beta TC + gamma DW), w_t the warm-up
FactorVAE: + gamma E[log D(z) / (1 - D(z))], D a discriminator of q(z) against the product of its
           marginals (the batch's z with every dimension permuted), trained beside the VAE (Kim & Mnih 2018)
Capacity:  -log p(x|z) + gamma |KL - C_t|, C_t rising linearly to C_max (Burgess et al. 2018)
DIP-VAE:   + l_od sum_{i!=j} C_ij^2 + l_d sum_i (C_ii - 1)^2 with C = Cov_x[mu(x)] (I) or
           Cov_x[mu(x)] + E_x[diag sigma^2(x)] (II), the covariance of q(z) (Kumar et al. 2018)

Every objective returns the loss to minimise and the per-batch sums of reconstruction, KL
and loss (one tensor, so the trainer accumulates on the device without a host sync; the
ELBO is minus reconstruction minus KL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .registry import OBJECTIVES, PRIORS


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


def draws(objective: str, k: int, groups: int = 1) -> tuple[int, int]:
    """(samples of z per example in a training step, the k of the IWAE bound the run is
    validated by, 0 for the ELBO) of the objective of that name with --k and --groups, as its
    registry entry's ``draws`` trait says (an objective without one draws once, ELBO)."""
    entry = OBJECTIVES.entries.get(objective)
    rule = entry.traits.get("draws") if entry is not None else None
    return rule(k, groups) if rule else (1, 0)


def describe(t) -> str:
    """The objective of the training config ``t`` and its settings, in a few words (``vaekit info``)."""
    o = t.objective
    dreg = ", doubly reparameterised gradient" if t.estimator == "dreg" else ""
    if o == "iwae":
        return f"IWAE k={t.k}{dreg}"
    if o in ("miwae", "piwae"):
        return f"{o.upper()} {t.groups} groups of k={t.k}{dreg}"
    if o == "ciwae":
        return f"CIWAE k={t.k}, ELBO share {t.ciwae_beta:g}"
    mmd = f"MMD weight {t.mmd_weight:g} ({t.mmd_kernel} kernel, scale {t.mmd_scale:g})"
    if o == "wae":
        return f"WAE, {mmd}"
    if o == "capacity":
        return f"capacity: gamma {t.capacity_weight:g} x |KL - C|, C to {t.capacity:g} nats over {t.capacity_epochs:g} epochs"
    elbo = f"ELBO, beta {t.beta:g}, warm-up {t.warmup_epochs:g} epochs, free bits {t.free_bits or 0:g}"
    if o == "infovae":
        return f"InfoVAE alpha {t.info_alpha:g}: {elbo}, {mmd}"
    return elbo if o == "elbo" else f"{o}: {elbo}"


def unwrapped(model):
    """The VAE itself, where the trainer hands the objective a DistributedDataParallel wrapper."""
    return getattr(model, "module", model)


@dataclass
class Objective:
    kind: str = "elbo"
    k: int = 1
    beta: float = 1.0
    warmup_steps: int = 0
    free_bits: float = 0.0
    dreg: bool = False
    groups: int = 1      # MIWAE/PIWAE: M groups of k samples
    mix: float = 0.5     # CIWAE: the ELBO's share beta of beta ELBO + (1 - beta) IWAE

    @property
    def samples(self) -> int:
        """Draws of z per example in a training step."""
        return draws(self.kind, self.k, self.groups)[0]

    @property
    def valid_k(self) -> int:
        """The k of the IWAE bound the run is validated and selected by; 0: the ELBO."""
        return draws(self.kind, self.k, self.groups)[1]

    @classmethod
    def from_config(cls, train_cfg, steps_per_epoch: int, examples: int = 0, model=None) -> "Objective":
        """The objective ``train_cfg.objective`` names, from its registry; ``examples``: the size of
        the training set, ``model``: the VAE it trains (what some objectives need to know)."""
        return OBJECTIVES.build(train_cfg.objective, train_cfg, steps_per_epoch, examples, model)

    # what an objective with parts of its own (FactorVAE's discriminator) adds to the trainer
    def after_step(self, found: torch.Tensor) -> None:
        """Called after each optimiser step of the model (``found``: 1.0 if that step was skipped)."""

    def state_dict(self) -> dict:
        """The objective's own trained state, for the trainer's checkpoint (none by default)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    #: whether the penalty reads log p(z) and log q(z|x) of the samples
    needs_log_weights = False
    #: False where the objective reads its step on the host (a warm-up weight as a float, its own
    #: optimiser): such a step is neither captured in a CUDA graph nor compiled
    traceable = True

    def penalty(self, t: dict, beta) -> torch.Tensor | float:
        """What a disentangling objective adds to the ELBO's loss, from the model's terms ``t``."""
        return 0.0

    def validation_terms(self, model, x: torch.Tensor, y=None) -> torch.Tensor | None:
        """Sums over the validation examples x of what the objective's own validation value needs
        beyond the ELBO's reconstruction and KL (a tensor, all-reduced over processes); None: the
        run is validated and kept by its ELBO, or by the IWAE bound of ``valid_k``."""
        return None

    def validation_value(self, rec: float, kl: float, terms: torch.Tensor, n: float) -> float:
        """Minus the objective's loss on the validation set, from the mean reconstruction term, the
        mean KL and the summed ``validation_terms`` over n examples."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """What the validation score of a run with this objective is called."""
        return f"IWAE-{self.valid_k} bound" if self.valid_k else "ELBO"

    def beta_at(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, (step + 1) / self.warmup_steps)

    def __call__(self, model, x: torch.Tensor, step: int = 0, y=None, beta: torch.Tensor | None = None):
        """Return (loss, stats): stats = per-batch sums of (reconstruction, KL, loss).

        y: labels, for a conditional model. beta: the KL weight as a device tensor, in place of
        ``beta_at(step)`` (a step captured in a CUDA graph reads it from there at every replay)."""
        prior = unwrapped(model).prior
        if getattr(prior, "host_step", None):    # a schedule of the latent (the Gumbel-softmax temperature)
            prior.at_step(step)
        dreg = self.dreg and torch.is_grad_enabled()
        weighted, n = self.valid_k > 0, self.samples
        t = model(x, n, log_weights=weighted or self.needs_log_weights, y=y, stop_q=dreg)  # model may be wrapped in DDP
        log_px, log_pz, log_qz, kl_dim = t["log_px"], t["log_pz"], t["log_qz"], t["kl_dim"]
        kl = kl_dim.sum(-1) if kl_dim is not None else (log_qz - log_pz).mean(0)     # (B,)
        log_px_mean = log_px.squeeze(0) if n == 1 else log_px.mean(0)                # (B,)
        if weighted:
            loss = self.weighted_loss(model, x, y, t, dreg)
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
            loss = loss + self.penalty(t, beta)
        aux = getattr(t["q"], "aux_loss", None)    # a posterior's own training loss (VQ's commitment)
        if aux is not None:
            loss = loss + aux.mean()
        with torch.no_grad():
            stats = torch.stack([-log_px_mean.sum(), kl.sum(), loss * x.shape[0]])
        return loss, stats


    def weighted_loss(self, model, x: torch.Tensor, y, t: dict, dreg: bool) -> torch.Tensor:
        """Minus the importance-weighted bound of the objective (IWAE, MIWAE, PIWAE, CIWAE) over
        the (samples, B) log-weights of ``t``, with the gradients the module docstring gives."""
        log_w = t["log_px"] + t["log_pz"] - t["log_qz"]                    # (samples, B)
        if self.kind == "ciwae":
            return -(self.mix * log_w.mean(0) + (1 - self.mix) * log_mean_exp(log_w)).mean()
        g = self.groups if self.kind in ("miwae", "piwae") else 1
        grouped = log_w.view(g, self.k, -1)                                 # (groups, k, B)
        if dreg:
            # log_qz holds phi fixed, so phi's gradient comes through z alone: sum_i w~_i d log w_i;
            # the hook on z makes it sum_i w~_i^2 d log w_i / d z_i (the model's stays sum_i w~_i)
            w = torch.softmax(grouped.detach(), 1).view_as(log_w)
            t["z"].register_hook(lambda grad: grad * w.unsqueeze(-1))
            loss = -(w * log_w).sum(0).mean() / g
            loss = loss + (-log_mean_exp(grouped.detach(), 1).mean() - loss).detach()  # the value: minus the bound
        else:
            loss = -log_mean_exp(grouped, 1).mean()                         # mean over groups and batch
        if self.kind == "piwae":   # the model's parameters: from the MIWAE weights to the IWAE-(M k) weights
            iwae = torch.softmax(log_w.detach(), 0)
            miwae = torch.softmax(grouped.detach(), 1).view_as(log_w) / g
            joint = unwrapped(model).log_joint(x, t["z"].detach(), y)       # z fixed: reaches the model alone
            extra = -((iwae - miwae) * joint).sum(0).mean()
            loss = loss + (extra - extra.detach())
        return loss


IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def mmd(a: torch.Tensor, b: torch.Tensor, kernel: str = "imq", scale: float = 1.0) -> torch.Tensor:
    """The unbiased estimate of MMD² between the samples a (n, D) and b (m, D) (Gretton et al.
    2012, the U-statistic: the kernel's means within each sample leave out i = j), with the RBF
    or the inverse multiquadratic kernel of the module docstring (C = 2 D ``scale``). In float32."""
    n, m, d = a.shape[0], b.shape[0], a.shape[-1]
    if n < 2 or m < 2:
        return a.sum() * 0.0
    with torch.autocast(a.device.type, enabled=False):
        both = torch.cat([a, b]).float()
        sq = both.square().sum(-1)
        d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * both @ both.T).clamp(min=0)
        c = 2.0 * d * scale
        if kernel == "rbf":
            k = torch.exp(-d2 / c)
        else:
            k = sum(s * c / (s * c + d2) for s in IMQ_SCALES)
        kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
        within = (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
        return within - 2 * kab.mean()


@dataclass
class MMDObjective(Objective):
    """WAE-MMD (``alpha`` = 1: no KL) and InfoVAE: the reconstruction, (1 - alpha) times the
    warmed-up KL, and (alpha + lambda - 1) times MMD² between the batch's z ~ q(z|x) and as many
    draws of the prior (with the batch's labels, for a prior p(z|y))."""

    alpha: float = 1.0
    weight: float = 10.0      # lambda
    kernel: str = "imq"
    scale: float = 1.0
    prior: nn.Module | None = field(default=None, repr=False)

    def beta_at(self, step: int) -> float:
        """The KL's weight: (1 - alpha) times the warmed-up beta (what metrics.csv shows)."""
        return (1 - self.alpha) * super().beta_at(step)

    def __call__(self, model, x, step: int = 0, y=None, beta=None):
        self.prior = unwrapped(model).prior
        return super().__call__(model, x, step, y, beta)

    def penalty(self, t: dict, beta) -> torch.Tensor:
        z = t["z"][0]                                                       # (B, D)
        drawn = self.prior.sample(z.shape[0], t.get("c")).to(z.dtype)
        return (self.alpha + self.weight - 1) * mmd(z, drawn, self.kernel, self.scale)

    #: examples per MMD estimate on the validation set (the estimate is unbiased at any size)
    VALID_BATCH = 1000

    @torch.no_grad()
    def validation_terms(self, model, x: torch.Tensor, y=None) -> torch.Tensor:
        """(sum over batches of size x MMD², examples in them): the MMD of each batch of the
        validation set's z ~ q(z|x) against as many draws of the prior."""
        vae = unwrapped(model)
        total = torch.zeros(2, device=x.device)
        for i in range(0, x.shape[0], self.VALID_BATCH):
            xb = x[i:i + self.VALID_BATCH]
            if xb.shape[0] < 2:
                continue
            c = vae.onehot(None if y is None else y[i:i + self.VALID_BATCH], xb.shape[0])
            z = vae.encode(xb, c).rsample()
            total += torch.stack([mmd(z, vae.prior.sample(xb.shape[0], c).to(z.dtype), self.kernel, self.scale)
                                  * xb.shape[0], z.new_tensor(float(xb.shape[0]))])
        return total

    def validation_value(self, rec: float, kl: float, terms: torch.Tensor, n: float) -> float:
        mmd2 = (terms[0] / terms[1]).item() if terms[1] > 0 else 0.0
        return -(rec + (1 - self.alpha) * self.beta * kl + (self.alpha + self.weight - 1) * mmd2)


def _gaussian_posterior(m, info) -> str | None:
    """The disentangling objectives read the factorised Gaussian q(z|x)'s mean and variance."""
    family = _trait(m.prior, "family")
    if family:
        return f"it needs a factorised Gaussian posterior q(z|x), and the {m.prior} prior's posterior is {family}"
    if m.flow:
        return "it needs a factorised Gaussian posterior q(z|x), and --flow makes it another distribution"
    if m.prior == "hierarchical":
        return "it needs one stochastic layer with a factorised Gaussian posterior, not --prior hierarchical"
    return None


@dataclass
class TCVAE(Objective):
    """β-TCVAE (Chen et al. 2018): the ELBO's KL split into index-code mutual information, total
    correlation and dimension-wise KL, weighted ``alpha``, ``beta`` and ``gamma``; q(z) by
    minibatch-weighted sampling over a training set of ``examples``."""

    alpha: float = 1.0
    gamma: float = 1.0
    examples: int = 1
    needs_log_weights = True
    traceable = False

    def decomposition(self, t: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per example (B,): MI, TC and DW, one sample each, which add up to log q(z|x) - log p(z)."""
        q, z = t["q"], t["z"][0]                                            # z: (B, D)
        b = z.shape[0]
        # log q(z_i,d | x_j) for every pair in the batch: (B, B, D)
        pair = torch.distributions.Normal(q.loc.unsqueeze(0), q.scale.unsqueeze(0)).log_prob(z.unsqueeze(1))
        norm = math.log(b * self.examples)
        log_qz = logsumexp(pair.sum(-1), 1) - norm                          # log q(z_i)
        log_prod = (logsumexp(pair.transpose(1, 2), -1) - norm).sum(-1)     # sum_d log q(z_i,d)
        log_qzx, log_pz = t["log_qz"][0], t["log_pz"][0]
        return log_qzx - log_qz, log_qz - log_prod, log_prod - log_pz

    def beta_at(self, step: int) -> float:
        """The warm-up's share w_t of every KL weight, times the TC weight (what metrics.csv shows)."""
        return self.beta * self.warmed(step)

    def warmed(self, step: int) -> float:
        return 1.0 if self.warmup_steps <= 0 else min(1.0, (step + 1) / self.warmup_steps)

    def __call__(self, model, x, step: int = 0, y=None, beta=None):
        # the ELBO part has KL weight w_t; beta (here the TC weight) enters through the penalty
        return super().__call__(model, x, step, y, beta=self.warmed(step))

    def penalty(self, t: dict, w) -> torch.Tensor:
        mi, tc, dw = self.decomposition(t)
        return (w * ((self.alpha - 1) * mi + (self.beta - 1) * tc + (self.gamma - 1) * dw)).mean()


@dataclass
class DIPVAE(Objective):
    """DIP-VAE I or II (Kumar et al. 2018): the ELBO plus a penalty that moves the covariance of
    the aggregate posterior towards the identity: ``lambda_od`` on its off-diagonal entries,
    ``lambda_d`` on the diagonal's distance from 1."""

    variant: str = "ii"
    lambda_od: float = 10.0
    lambda_d: float = 10.0

    def penalty(self, t: dict, beta) -> torch.Tensor:
        q = t["q"]
        mu = q.loc
        centred = mu - mu.mean(0, keepdim=True)
        cov = centred.T @ centred / mu.shape[0]                              # Cov_x[mu(x)]
        if self.variant == "ii":
            cov = cov + torch.diag(q.scale.pow(2).mean(0))                    # + E_x[diag sigma^2(x)]
        diag = torch.diagonal(cov)
        off = cov - torch.diag(diag)
        return self.lambda_od * off.pow(2).sum() + self.lambda_d * (diag - 1).pow(2).sum()


@dataclass
class CapacityVAE(Objective):
    """β-VAE with a controlled capacity (Burgess et al. 2018): -log p(x|z) + gamma |KL - C_t|
    per example, C_t rising linearly from 0 to ``capacity`` nats over ``capacity_steps`` steps, so
    the KL is let grow a little at a time and the latent takes on one factor after another."""

    weight: float = 1000.0          # gamma
    capacity: float = 25.0          # C_max, nats
    capacity_steps: int = 0
    traceable = False               # C_t is read from the step on the host
    target: float = field(default=0.0, repr=False)

    def capacity_at(self, step: int) -> float:
        if self.capacity_steps <= 0:
            return self.capacity
        return self.capacity * min(1.0, step / self.capacity_steps)

    def beta_at(self, step: int) -> float:
        """The weight gamma of |KL - C| (what metrics.csv shows as beta)."""
        return self.weight

    def __call__(self, model, x, step: int = 0, y=None, beta=None):
        self.target = self.capacity_at(step)
        return super().__call__(model, x, step, y, beta=0.0)

    def penalty(self, t: dict, beta) -> torch.Tensor:
        kl = t["kl_dim"].sum(-1) if t["kl_dim"] is not None else (t["log_qz"] - t["log_pz"]).mean(0)
        return self.weight * (kl - self.target).abs().mean()


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """The batch's z with each dimension shuffled across the batch on its own: draws from the
    product of q(z)'s marginals (Kim & Mnih 2018, Algorithm 1)."""
    order = torch.rand(z.shape, device=z.device).argsort(0)
    return z.gather(0, order)


class Discriminator(nn.Module):
    """FactorVAE's discriminator: an MLP with leaky ReLUs (slope 0.2) from z to two logits,
    (joint q(z), product of marginals)."""

    def __init__(self, latent: int, hidden: list[int]):
        super().__init__()
        layers, width = [], latent
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 2))

    def forward(self, z):
        return self.net(z)


@dataclass
class FactorVAE(Objective):
    """FactorVAE (Kim & Mnih 2018): the ELBO plus ``gamma`` times the discriminator's estimate of
    the total correlation, E[logit_joint - logit_product]. The discriminator learns beside the
    VAE: after each of the model's steps, one Adam step on that batch's samples (detached)
    against the same samples with their dimensions permuted; it is saved in the trainer's
    checkpoint, not in model.safetensors (sampling and evaluation never need it)."""

    gamma: float = 35.0
    traceable = False
    disc: nn.Module | None = None
    opt: torch.optim.Optimizer | None = None
    fused: bool = False
    last: torch.Tensor | None = field(default=None, repr=False)
    stats: torch.Tensor | None = field(default=None, repr=False)   # sums of the discriminator's loss, accuracy, steps

    def penalty(self, t: dict, beta) -> torch.Tensor:
        z = t["z"][0]
        if torch.is_grad_enabled():
            self.last = z.detach()
        frozen = {n: p.detach() for n, p in self.disc.named_parameters()}     # the VAE's loss does not train D
        logits = torch.func.functional_call(self.disc, frozen, (z,))
        return self.gamma * (logits[:, 0] - logits[:, 1]).mean()

    def after_step(self, found: torch.Tensor) -> None:
        z, self.last = self.last, None
        if z is None:
            return
        both = torch.cat([z, permute_dims(z)])
        target = torch.cat([torch.zeros(len(z), dtype=torch.long, device=z.device),
                            torch.ones(len(z), dtype=torch.long, device=z.device)])
        logits = self.disc(both)
        loss = F.cross_entropy(logits, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        bad = found.clone()
        grads = [p.grad for p in self.disc.parameters() if p.grad is not None]
        torch._amp_foreach_non_finite_check_and_unscale_(grads, bad, torch.ones_like(bad))
        bad.add_(torch.isfinite(loss).logical_not()).clamp_(max=1.0)
        if self.fused:
            self.opt.found_inf = bad
            self.opt.step()
        elif not bad.item():
            self.opt.step()
        with torch.no_grad():
            accuracy = (logits.argmax(1) == target).float().mean()
            self.stats += torch.stack([loss.detach(), accuracy, torch.ones_like(loss)]) * (1 - bad)

    def take_stats(self) -> dict:
        """The discriminator's mean loss and accuracy since the last call (a host read)."""
        loss, acc, n = self.stats.tolist()
        self.stats.zero_()
        return {"disc_loss": loss / n, "disc_accuracy": acc / n} if n else {}

    def state_dict(self) -> dict:
        return {"discriminator": self.disc.state_dict(), "discriminator_optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.disc.load_state_dict(state["discriminator"])
        self.opt.load_state_dict(state["discriminator_optimizer"])


@OBJECTIVES.register("elbo", "the evidence lower bound, with --beta, --warmup and --free-bits")
def _elbo(t, steps_per_epoch: int, examples: int = 0, model=None) -> Objective:
    return Objective(kind="elbo", beta=t.beta, warmup_steps=int(t.warmup_epochs * steps_per_epoch),
                     free_bits=t.free_bits or 0.0)


def _trait(prior: str, name: str):
    """A trait of the prior of that name (None where it has none, or is not registered)."""
    entry = PRIORS.entries.get(prior)
    return entry.traits.get(name) if entry is not None else None


def _relaxed(m, info) -> str | None:
    """Why the latent's posterior gives no importance weights to train on (its prior's
    ``no_weights`` trait: relaxed categorical draws, a point mass), or None."""
    return _trait(m.prior, "no_weights")


def _weighted(kind: str):
    def build(t, steps_per_epoch: int, examples: int = 0, model=None) -> Objective:
        return Objective(kind=kind, k=t.k, groups=t.groups, mix=t.ciwae_beta, dreg=t.estimator == "dreg")
    return build


OBJECTIVES.register("iwae", "the importance-weighted bound over --k samples (Burda et al. 2016)",
                    _relaxed, draws=lambda k, g: (k, k))(_weighted("iwae"))
OBJECTIVES.register("miwae", "the mean of --groups IWAE bounds of --k samples each (Rainforth et al. 2018)",
                    _relaxed, draws=lambda k, g: (k * g, k))(_weighted("miwae"))
OBJECTIVES.register("piwae", "the model by the IWAE bound of --groups x --k samples, the encoder by MIWAE's "
                             "(Rainforth et al. 2018)", _relaxed, draws=lambda k, g: (k * g, k * g))(_weighted("piwae"))
OBJECTIVES.register("ciwae", "--ciwae-beta x the ELBO + (1 - --ciwae-beta) x the IWAE bound, of the same --k "
                             "samples (Rainforth et al. 2018)", _relaxed, draws=lambda k, g: (k, k))(_weighted("ciwae"))


def _sequence_prior(m, info) -> str | None:
    if m.prior == "markov":
        return ("it compares the batch's latents with draws of a prior of fixed size, and the Markov prior's latent "
                "is a sequence of the data's length")
    return None


def _mmd(alpha: float | None):
    def build(t, steps_per_epoch: int, examples: int = 0, model=None) -> Objective:
        return MMDObjective(kind="wae" if alpha is not None else "infovae", beta=t.beta,
                            warmup_steps=int(t.warmup_epochs * steps_per_epoch), free_bits=t.free_bits or 0.0,
                            alpha=t.info_alpha if alpha is None else alpha, weight=t.mmd_weight,
                            kernel=t.mmd_kernel, scale=t.mmd_scale)
    return build


OBJECTIVES.register("wae", "WAE-MMD (Tolstikhin et al. 2018): the reconstruction plus --mmd-weight x MMD² between "
                           "q(z) and p(z), no KL", _sequence_prior)(_mmd(1.0))
OBJECTIVES.register("infovae", "InfoVAE (Zhao et al. 2019): the ELBO with (1 - --info-alpha) x the KL, plus "
                               "(--info-alpha + --mmd-weight - 1) x MMD² between q(z) and p(z)",
                    _sequence_prior)(_mmd(None))


@OBJECTIVES.register("tcvae", "beta-TCVAE (Chen et al. 2018): --beta weighs the total correlation, --mi-weight "
                              "and --dimkl-weight the other parts of the KL", _gaussian_posterior)
def _tcvae(t, steps_per_epoch: int, examples: int = 0, model=None) -> Objective:
    return TCVAE(kind="tcvae", beta=t.beta, warmup_steps=int(t.warmup_epochs * steps_per_epoch),
                 alpha=t.mi_weight, gamma=t.dimkl_weight, examples=max(1, examples))


@OBJECTIVES.register("factor", "FactorVAE (Kim & Mnih 2018): the ELBO plus --gamma times a discriminator's "
                               "estimate of the total correlation", _gaussian_posterior)
def _factor(t, steps_per_epoch: int, examples: int = 0, model=None) -> Objective:
    if model is None:
        raise ValueError("the factor objective needs the model, to size its discriminator")
    disc = Discriminator(model.latent, list(t.discriminator)).to(model.device)
    try:   # the paper's Adam settings (Kim & Mnih 2018, appendix); fused where PyTorch has the kernel
        opt, fused = torch.optim.Adam(disc.parameters(), lr=t.discriminator_lr, betas=(0.5, 0.9), fused=True), True
    except (RuntimeError, TypeError, ValueError):
        opt, fused = torch.optim.Adam(disc.parameters(), lr=t.discriminator_lr, betas=(0.5, 0.9)), False
    return FactorVAE(kind="factor", beta=t.beta, warmup_steps=int(t.warmup_epochs * steps_per_epoch),
                     free_bits=t.free_bits or 0.0, gamma=t.gamma, disc=disc, opt=opt, fused=fused,
                     stats=torch.zeros(3, device=model.device))


@OBJECTIVES.register("capacity", "β-VAE with a controlled capacity (Burgess et al. 2018): --capacity-weight x "
                                 "|KL - C|, C rising to --capacity nats over --capacity-epochs")
def _capacity(t, steps_per_epoch: int, examples: int = 0, model=None) -> Objective:
    return CapacityVAE(kind="capacity", weight=t.capacity_weight, capacity=t.capacity,
                       capacity_steps=int(t.capacity_epochs * steps_per_epoch))


def _dip(variant: str):
    def build(t, steps_per_epoch: int, examples: int = 0, model=None) -> Objective:
        lambda_d = t.dip_lambda_d if t.dip_lambda_d is not None else t.dip_lambda * (10.0 if variant == "i" else 1.0)
        return DIPVAE(kind=f"dip-{variant}", beta=t.beta, warmup_steps=int(t.warmup_epochs * steps_per_epoch),
                      free_bits=t.free_bits or 0.0, variant=variant, lambda_od=t.dip_lambda, lambda_d=lambda_d)
    return build


OBJECTIVES.register("dip-i", "DIP-VAE-I (Kumar et al. 2018): the ELBO plus --dip-lambda times the distance of "
                             "Cov[mu(x)] from the identity", _gaussian_posterior)(_dip("i"))
OBJECTIVES.register("dip-ii", "DIP-VAE-II: the same on the covariance of q(z), Cov[mu(x)] + E[sigma^2(x)]",
                    _gaussian_posterior)(_dip("ii"))
