"""Evaluation: ELBO, importance-sampled NLL, bits/dim, KL per latent dimension, active units.

    log p(x) >= log (1/k) sum_{i=1..k} p(x, z_i) / q(z_i | x),  z_i ~ q(z | x)

The estimate is an upper bound on the NLL that tightens with k (k = 5000 in papers). It is
computed in chunks of (examples x samples) rows, each chunk one large batched decoder pass.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import time

import torch

from ..compiling import Compiled, compiler_missing, module_blocker, plan
from ..memory import PeakMemory
from ..model.objectives import log_mean_exp
from ..progress import progress
from .importance import Proposal, importance_terms, log_likelihood


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (macOS, musl, Windows)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give the heap memory freed by the passes back to the system.

    The top-down model's passes allocate tensors of many sizes; glibc keeps the freed blocks in
    its heap, fragmented, and a k = 5000 evaluation of binarized MNIST grew to 23 GB of
    resident memory. Trimming every few passes keeps it flat.
    """
    if _TRIM is not None:
        _TRIM(0)


@torch.no_grad()
def elbo_sums(model, x: torch.Tensor, batch_size: int = 2000, y=None, moments: bool = False) -> torch.Tensor:
    """Sums over x of the single-sample (reconstruction, KL): a tensor that can be all-reduced.
    With ``moments``, then the sums over x of the posterior means and of their squares (a latent's
    worth each), from which :func:`active_units_of` counts the active units."""
    was = model.training
    model.eval()
    total = torch.zeros(2 + (2 * model.latent if moments else 0), device=x.device)
    for i in range(0, x.shape[0], batch_size):
        t = model.terms(x[i:i + batch_size], 1, log_weights=False, y=None if y is None else y[i:i + batch_size])
        kl = t["kl_dim"].sum(-1) if t["kl_dim"] is not None else (t["log_qz"] - t["log_pz"])[0]
        total[:2] += torch.stack([-t["log_px"].sum(), kl.sum()])
        if moments:
            mu = unit_means(t["q"]).double()
            total[2:] += torch.cat([mu.sum(0), mu.square().sum(0)]).to(total.dtype)
    model.train(was)
    return total


def unit_means(q) -> torch.Tensor:
    """(rows, latent) the posterior means the latent units take: a row per example, or for a
    sequence's posterior (:class:`~vaekit.model.nets.markov.MarkovPosterior`) a row per step."""
    step_means = getattr(q, "step_means", None)
    return step_means() if step_means is not None else q.loc


def active_units_of(moments: torch.Tensor, n: int, threshold: float = 0.01) -> int:
    """Active units (Burda et al. 2016) from :func:`elbo_sums`'s moments over n examples: the
    dimensions whose posterior mean varies over the data by more than ``threshold``."""
    if n < 2:
        return 0
    s1, s2 = moments.double().chunk(2)
    return int(((s2 - s1.square() / n) / (n - 1) > threshold).sum().item())


def pass_rows(model, device: torch.device) -> int:
    """Decoder rows (examples x samples) per pass of the k-sample estimates.

    On a GPU, large passes keep it busy: up to 32,768 rows, about 800 MB of activations. On a
    CPU, passes whose activations stay near the cache size (about 40 MB) are faster: on
    binarized MNIST 4,096-row passes take the k = 5000 NLL 1.8 times faster than 32,768-row ones.
    """
    budget = 2e8 if device.type != "cpu" else 1e7
    return max(256, min(32768, int(budget // model.floats_per_row())))


@torch.no_grad()
def iwae_sum(model, x: torch.Tensor, k: int, rows: int | None = None, y=None) -> torch.Tensor:
    """Sum over x of the k-sample importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i | x),
    the quantity the IWAE objective maximises (a one-element tensor that can be all-reduced)."""
    was = model.training
    model.eval()
    rows = rows or pass_rows(model, x.device)
    total = torch.zeros(1, device=x.device)
    step = max(1, rows // k)
    for i in range(0, x.shape[0], step):
        total += log_likelihood(model, x[i:i + step], k, y=None if y is None else y[i:i + step]).sum()
    model.train(was)
    return total


#: ``compile="auto"`` compiles the decoder passes of estimates of at least this many decoder rows
#: (examples x k): compiling takes 10-25 s on a 2-core CPU and saves about a quarter of each pass
#: (bench/RESULTS.md), which pays for itself after some 10 million rows.
AUTO_COMPILE_ROWS = 10_000_000


def compile_scoring(model, device: torch.device, mode: str, rows: int, quiet: bool) -> tuple[bool, str]:
    """Set ``model.scorer`` to the compiled decoder pass where ``mode`` (auto/on/off) says so
    (:func:`vaekit.compiling.plan`); returns (compiled?, in words). Convolutions are compiled
    too: their training step ran slower compiled on a CPU, but a decoder pass without gradients
    ran 2.6 times faster (bench/RESULTS.md)."""
    blocker = compiler_missing(device) or module_blocker(model) or (
        "its decoder is autoregressive" if model.autoregressive else None)
    skip = f"{rows:,} decoder rows are too few to pay for compiling" if rows < AUTO_COMPILE_ROWS else None
    compiling, said = plan(mode, "this model's decoder passes", blocker, skip)
    if compiling:
        model.scorer = Compiled(model.score_rows, "the decoder passes", strict=mode == "on", quiet=quiet)
    return compiling, said


@torch.no_grad()
def evaluate(model, x: torch.Tensor, k: int = 5000, batch_rows: int | None = None, quiet: bool = False,
             active_threshold: float = 0.01, y=None, proposal: Proposal | None = None,
             compile: str = "off") -> dict:
    """Evaluate a model on x (N, *shape) (with labels y for a conditional model).

    batch_rows: decoder rows per pass (examples x samples); default :func:`pass_rows`: up to
    32768 on a GPU, about 4,000 on a CPU for 28x28 images, fewer for large decoder outputs
    (text with a large vocabulary). proposal: another q for the importance samples
    (:mod:`vaekit.eval.importance`); the encoder's by default. compile: ``auto``, ``on`` or
    ``off``: the decoder passes compiled with torch.compile (:func:`compile_scoring`).
    Returns nats per example: nll (IS estimate with k samples), elbo (average of the same
    log-weights), rec, kl; bits_per_dim (over the values the likelihood scores: pixels, or
    tokens for text, where ``perplexity`` = exp(NLL per token) is added); kl_per_dim
    (analytic when the prior allows);
    active_units: dimensions whose posterior mean varies over the data by more than
    ``active_threshold`` (Burda et al. 2016);
    layers: for a model with several stochastic layers, each layer's size, active units and
    share of the KL (a Monte Carlo estimate from up to 16 of the k samples), else None;
    peak_memory_bytes: the most memory held while it ran (:class:`vaekit.memory.PeakMemory`),
    bounded by one pass of ``rows_per_pass`` decoder rows whatever k is.
    Examples of several lengths (lines of text) are scored in batches of similar lengths, each
    cut after its longest example (:meth:`~vaekit.model.likelihoods.Likelihood.trim`).
    """
    was = model.training
    model.eval()
    rows = batch_rows or pass_rows(model, x.device)
    n = x.shape[0]
    per_batch = max(1, min(n, rows // k))          # examples per pass
    passes = math.ceil(k / max(1, min(k, rows // per_batch)))   # passes over the k samples
    per_chunk = math.ceil(k / passes)                            # samples per pass, all about equal
    dims = torch.cat([model.likelihood.dims(x[i:i + 4096]) for i in range(0, x.shape[0], 4096)])
    total_dims = float(dims.sum())
    nll = torch.empty(n, device=x.device)
    elbo_sum = torch.zeros((), device=x.device)
    rec_sum = torch.zeros((), device=x.device)
    kl_dim_sum = torch.zeros(model.latent, device=x.device)
    kl_mc_sum = torch.zeros((), device=x.device)
    means = []
    layers = model.prior.layers
    layer_kl_sum = {name: torch.zeros((), device=x.device) for name, _ in layers or []}
    # examples of many lengths (lines of text) go in batches of similar lengths, each cut to its
    # longest (Likelihood.trim): the padding after a short line costs nothing
    order = torch.argsort(dims, descending=True, stable=True) if bool((dims != dims[0]).any()) else None
    start = time.perf_counter()
    bar = progress(n, quiet, desc=f"IS-NLL k={k}", unit="ex", leave=False)
    compiled, compile_note = compile_scoring(model, x.device, compile, n * k, quiet)
    try:
        with PeakMemory(x.device) as peak:   # bounded by one pass, whatever k is
            for i in range(0, n, per_batch):
                at = slice(i, i + per_batch) if order is None else order[i:i + per_batch]
                xb = model.likelihood.trim(x[at])
                yb = None if y is None else y[at]
                chunks = []
                for t in importance_terms(model, xb, k, per_chunk, y=yb, proposal=proposal):
                    log_w = t["log_px"] + t["log_pz"] - t["log_qz"]
                    chunks.append(log_w)
                    rec_sum += -t["log_px"].sum() / k
                    kl_mc_sum += (t["log_qz"] - t["log_pz"]).sum() / k
                log_w = torch.cat(chunks, 0)                                 # (k, b)
                nll[at] = -log_mean_exp(log_w)
                elbo_sum += log_w.mean(0).sum()
                q = t["q"]
                means.append(unit_means(q))
                if layers:
                    for name, kl in model.prior.layer_kl(q, t["z"][:16]).items():
                        layer_kl_sum[name] += kl.mean(0).sum()
                if t["kl_dim"] is not None:
                    kl_dim_sum += t["kl_dim"].sum(0)
                bar.update(xb.shape[0])
                if x.device.type == "cpu" and (i // per_batch) % 32 == 31:
                    release_freed_memory()
            bar.close()
    finally:
        model.scorer = None
    model.train(was)
    seconds = time.perf_counter() - start
    mu = torch.cat(means)
    activity = mu.var(0) if n > 1 else torch.zeros(model.latent, device=x.device)
    by_layer = None
    if layers:
        layer_mu = model.prior.layer_means(mu)
        by_layer = {name: {"size": size, "kl_nats": layer_kl_sum[name].item() / n,
                           "active_units": int((layer_mu[name].var(0) > active_threshold).sum().item())
                           if n > 1 else 0}
                    for name, size in layers}
    nll_mean = nll.mean().item()
    analytic = t["kl_dim"] is not None
    kl_per_dim = (kl_dim_sum / n).tolist() if analytic else None
    nll_sum = nll.sum().item()
    tokens = {}
    if x.dtype == torch.long:  # token ids: per-token figures
        tokens = {"tokens": int(total_dims), "nll_per_token": nll_sum / total_dims,
                  "perplexity": math.exp(nll_sum / total_dims)}
    return {
        "n": n,
        "k": k,
        "nll_nats": nll_mean,
        "elbo_nats": elbo_sum.item() / n,
        "rec_nats": rec_sum.item() / n,
        "kl_nats": sum(kl_per_dim) if analytic else kl_mc_sum.item() / n,
        "bits_per_dim": nll_sum / (total_dims * math.log(2)),
        "dims": total_dims / n,
        **tokens,
        "kl_per_dim": kl_per_dim,
        "active_units": int((activity > active_threshold).sum().item()),
        "active_threshold": active_threshold,
        "layers": by_layer,
        "latent": model.latent,
        "seconds": seconds,
        "rows_per_pass": per_batch * per_chunk,
        "compiled": compiled,
        "compile": compile_note,
        "peak_memory_bytes": peak.bytes,
        "peak_memory": peak.text(),
    }


def layers_text(layers: dict) -> str:
    """One line on the stochastic layers of an evaluation: active units and KL of each."""
    return ";  ".join(f"{name}: {v['active_units']} of {v['size']} active, KL {v['kl_nats']:.2f} nats"
                      for name, v in layers.items())


#: posterior collapse: the validation KL of the whole latent under this many nats ...
COLLAPSE_KL = 0.1
#: ... for this many epochs in a row, once the KL warm-up is over
COLLAPSE_EPOCHS = 3
COLLAPSE_REMEDIES = ("--free-bits 0.25 (a floor on each unit's KL), a KL warm-up (--warmup 10), --word-dropout 0.3 for "
                     "text, or a weaker decoder")


def collapse_epoch(rows: list[dict], threshold: float = COLLAPSE_KL, epochs: int = COLLAPSE_EPOCHS) -> int | None:
    """The epoch from which the posterior collapsed, or None: the first of ``epochs`` epochs in a
    row, after the KL warm-up (``beta`` at its final value), whose validation KL stayed below
    ``threshold`` nats for the whole latent. Then q(z | x) is the prior for every x and the decoder
    ignores z (the commonest failure of text VAEs and of VAEs with strong decoders)."""
    if not rows:
        return None
    final_beta = max(float(r.get("beta", 1.0)) for r in rows)
    run = []
    for r in rows:
        if float(r.get("beta", 1.0)) >= final_beta and float(r["valid_kl"]) < threshold:
            run.append(int(r["epoch"]))
            if len(run) >= epochs:
                return run[0]
        else:
            run = []
    return None


@torch.no_grad()
def posterior_means(model, x: torch.Tensor, y=None, chunk: int = 2048) -> torch.Tensor:
    """(N, latent) the posterior means E_q[z | x] (the point every layer of z decodes from),
    computed in chunks of examples: the codes the disentanglement metrics and the latent map read."""
    was = model.training
    model.eval()
    out = [model.prior.coordinates(model.encode(x[i:i + chunk], None if y is None else y[i:i + chunk]))
           for i in range(0, len(x), chunk)]
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, model.latent, device=x.device)


@torch.no_grad()
def kl_per_dimension(model, x: torch.Tensor, y=None, chunk: int = 2048) -> tuple[list[float], str]:
    """How much each latent dimension carries, averaged over x: the analytic KL(q(z_d | x) || p(z_d))
    in nats when the prior gives it per dimension (``"KL"``); otherwise, for priors that do not
    factorise (mixtures, VampPrior, hierarchies), the variance of the posterior means over x
    (``"variance"``, the active-units measure of Burda et al. 2016)."""
    was = model.training
    model.eval()
    total, n = torch.zeros(model.latent, device=x.device), 0
    means = []
    for i in range(0, len(x), chunk):
        yb = None if y is None else y[i:i + chunk]
        q = model.encode(x[i:i + chunk], yb)
        c = model.onehot(yb, len(x[i:i + chunk]))
        kl = model.prior.analytic_kl(q, c)
        if kl is None:
            means.append(q.loc)
        else:
            total += kl.sum(0)
            n += kl.shape[0]
    model.train(was)
    if means:
        mu = torch.cat(means)
        return (mu.var(0) if len(mu) > 1 else torch.zeros(model.latent)).tolist(), "variance"
    return (total / max(1, n)).tolist(), "KL"
