"""The VQ-VAE's second stage: a learned prior over its codes (``vaekit train-prior RUN``).

A small causal transformer reads a run's N code positions in order and gives each the
distribution of its code given the ones before (p(c) = prod_n p(c_n | c_<n)), trained by maximum
likelihood on the codes the trained encoder gives the training split, and kept by its
validation NLL. It is saved beside the run (``code_prior.safetensors`` and
``code_prior.json``), and once there the run's prior is it: ``sample`` draws codes from it and
decodes them, and the KL and the importance-sampled estimate use log p(c) in place of N log K.
The VQ-VAE's likelihood figure is then -log p(x | z_q(x)) - log p(c(x)), the bound of a point-mass
posterior: the decoder's term plus the prior's NLL of the codes. It is an upper bound on the
model's negative log-likelihood, not an estimate of it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import load_weights, save_weights
from .errors import VaekitError

WEIGHTS, SETTINGS = "code_prior.safetensors", "code_prior.json"


class CodePrior(nn.Module):
    """p(c_1, ..., c_N) over codes in [0, K): a causal transformer with learned positions."""

    def __init__(self, positions: int, codebook: int, width: int = 128, layers: int = 2, heads: int = 4,
                 dropout: float = 0.1):
        super().__init__()
        self.positions, self.codebook = positions, codebook
        self.settings = {"positions": positions, "codebook": codebook, "width": width, "layers": layers,
                         "heads": heads, "dropout": dropout}
        self.embed = nn.Embedding(codebook + 1, width)          # the last: the start token
        self.where = nn.Parameter(torch.zeros(positions, width))
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.out = nn.Linear(width, codebook)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(positions), persistent=False)

    def logits(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, N, K): the logits of each position's code given the codes before it."""
        start = torch.full_like(codes[:, :1], self.codebook)
        h = self.embed(torch.cat([start, codes[:, :-1]], 1)) + self.where
        return self.out(self.body(h, mask=self.mask, is_causal=True))

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(c) (B,) of code sequences (B, N)."""
        return -F.cross_entropy(self.logits(codes).transpose(1, 2), codes, reduction="none").sum(-1)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """n code sequences (n, N), drawn position by position (``temperature`` divides the logits)."""
        codes = torch.zeros(n, self.positions, dtype=torch.long, device=self.where.device)
        for i in range(self.positions):
            logits = self.logits(codes)[:, i] / max(float(temperature), 1e-6)
            codes[:, i] = torch.distributions.Categorical(logits=logits).sample()
        return codes


def load(run_dir: Path) -> CodePrior | None:
    """The run's code prior, or None when it has none (safetensors and JSON: no code is run)."""
    weights, settings = Path(run_dir) / WEIGHTS, Path(run_dir) / SETTINGS
    if not weights.exists():
        return None
    try:
        cfg = json.loads(settings.read_text())
        model = CodePrior(**{k: cfg[k] for k in ("positions", "codebook", "width", "layers", "heads", "dropout")})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise VaekitError(f"{settings}: cannot read the code prior's settings ({e}).") from None
    state = load_weights(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise VaekitError(f"{weights}: its weights do not match {settings}.") from None
    return model.eval()


@torch.no_grad()
def codes_of(model, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """The code sequence (n, N) the trained encoder gives each example."""
    was = model.training
    model.eval()
    out = torch.cat([model.encode(x[i:i + batch]).codes for i in range(0, x.shape[0], batch)])
    model.train(was)
    return out


def fit(run, epochs: int = 30, width: int = 128, layers: int = 2, heads: int = 4, lr: float = 1e-3,
        batch_size: int = 128, seed: int = 0, quiet: bool = False) -> dict:
    """Fit a code prior to the codes of the run's training split, keep the epoch with the best
    validation NLL, save it beside the run and attach it; return the figures."""
    from .progress import progress

    prior = run.model.prior
    if not hasattr(prior, "attach_codes"):
        raise VaekitError(f"{run.path}: train-prior fits a prior over a VQ-VAE's codes, and this run's latent is "
                          f"{run.config.model.prior}, not vq.")
    if width % heads:
        raise VaekitError(f"--width {width} must be a multiple of --heads {heads}.")
    torch.manual_seed(seed)
    data = run.data
    train, valid = codes_of(run.model, data.train), codes_of(run.model, data.valid)
    model = CodePrior(prior.positions, prior.k, width, layers, heads).to(train.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    uniform = prior.positions * math.log(prior.k)
    best, best_state, rows = math.inf, None, []
    bar = progress(len(train) * epochs, quiet, unit="ex", unit_scale=True, desc="code prior")
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train), device=train.device)
        total = 0.0
        for i in range(0, len(train), batch_size):
            codes = train[order[i:i + batch_size]]
            loss = -model.log_prob(codes).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(codes)
            bar.update(len(codes))
        model.eval()
        with torch.no_grad():
            nll = -torch.cat([model.log_prob(valid[i:i + 1000]) for i in range(0, len(valid), 1000)]).mean().item()
        rows.append({"epoch": epoch, "train_nll": total / len(train), "valid_nll": nll})
        if nll < best:
            best, best_state = nll, {k: v.detach().clone() for k, v in model.state_dict().items()}
        bar.set_postfix_str(f"valid NLL {nll:.2f} nats (uniform {uniform:.2f})", refresh=False)
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    save_weights(model.state_dict(), run.path / WEIGHTS)
    (run.path / SETTINGS).write_text(json.dumps({**model.settings, "epochs": rows}, indent=2))
    prior.attach_codes(model)
    return {"valid_nll_codes": best, "uniform_nll_codes": uniform, "epochs": rows,
            "seconds": time.perf_counter() - t0}
