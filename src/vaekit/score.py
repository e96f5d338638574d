"""Scoring new data: how unlike the training data each example is, and a decision.

Every score is "higher = more unlike the training data":

- ``nll``: -log p(x), importance sampled with k samples (nats);
- ``neg_elbo``, ``reconstruction``, ``kl``: -ELBO = E_q[-log p(x | z)] + E_q[log q(z | x) - log p(z)],
  averaged over the same k samples (nats);
- ``complexity``: the NLL in bits minus the bits a general-purpose lossless compressor needs for x
  (PNG for images and spectrograms, deflate for text): the input-complexity correction of Serrà et
  al. (2020). A likelihood alone favours simple inputs (a model of Fashion-MNIST gives MNIST
  digits, with their plain black backgrounds, a higher likelihood than its own test images:
  Nalisnick et al. 2019); the compressor's bits measure that simplicity and take it out;
- ``typicality``: |NLL - the mean NLL of the validation split|, the typicality test of Nalisnick
  et al. (2019) for one example; over batches of M examples the mean NLL of the batch is compared
  (:func:`batch_typicality`), which is far stronger;
- ``llr`` (top-down hierarchical models): log p(x) - log p_{>1}(x), where p_{>1} draws z1 from the
  prior p(z1 | z2) instead of the posterior, so it sees x only through the upper layers: the
  likelihood ratio of Havtorn et al. (2021). Low-level statistics that any image shares
  explain much of log p(x) and little of this ratio.

A threshold per score is the (1 - fpr) quantile of that score on the run's validation split, so
that a fraction fpr of data like the training data is flagged.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import VaekitError
from .eval import importance_terms, pass_rows
from .model.nets.flow import FlowPosterior
from .model.nets.topdown import TopDownPosterior
from .model.objectives import log_mean_exp
from .model.priors import HierarchicalPrior, normal_from_params
from .progress import progress

SCORES = {
    "nll": "importance-sampled -log p(x), nats",
    "neg_elbo": "minus the ELBO, nats",
    "reconstruction": "E_q[-log p(x | z)], nats",
    "kl": "E_q[log q(z | x) - log p(z)], nats",
    "complexity": "NLL in bits minus a lossless compressor's bits (Serra et al. 2020)",
    "typicality": "|NLL - mean validation NLL|, nats (Nalisnick et al. 2019)",
    "llr": "log p(x) - log p(x | upper layers only), nats (Havtorn et al. 2021)",
}
DEFAULT_BY = "complexity"


def has_llr(model) -> bool:
    """Whether the model has the upper layers the likelihood ratio needs: a top-down hierarchy
    (without a flow, which mixes the layers)."""
    return (isinstance(model.prior, HierarchicalPrior) and model.prior.inference == "top-down"
            and model.flow is None)


def _upper_only(model):
    """The proposal of log p_{>1}(x): z2.. from q(z2.. | x), z1 from the prior p(z1 | z2)."""
    prior = model.prior

    def proposal(x, y, samples):
        q = model.encode(x, y)
        return TopDownPosterior(q.top, lambda rest: normal_from_params(prior.down(rest[..., :prior.top])))

    return proposal


@torch.no_grad()
def score_examples(model, media, x: torch.Tensor, y=None, k: int = 100, rows: int | None = None) -> dict:
    """The raw scores of a batch (every score but ``typicality``, which needs the validation
    statistics): a dict of (B,) float64 tensors on the CPU. A conditional model without labels
    ``y`` is scored by p(x) = (1/C) sum_c p(x | c); the other scores then use the most likely class."""
    was = model.training
    model.eval()
    try:
        rows = rows or pass_rows(model, x.device)
        per_pass = max(1, rows // k)
        parts = [_score_pass(model, x[i:i + per_pass], None if y is None else y[i:i + per_pass], k)
                 for i in range(0, x.shape[0], per_pass)]
    finally:
        model.train(was)
    out = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
    out["complexity"] = out["nll"] / math.log(2) - media.complexity_bits(x)
    return out


def _score_pass(model, x, y, k):
    classes = range(model.classes) if model.classes and y is None else [None]
    per_class = []
    for c in classes:
        yc = y if c is None else torch.full((x.shape[0],), c, device=x.device)
        t = next(importance_terms(model, x, k, y=yc))
        log_w = t["log_px"] + t["log_pz"] - t["log_qz"]
        s = {"log_px": log_mean_exp(log_w), "reconstruction": -t["log_px"].mean(0),
             "kl": (t["log_qz"] - t["log_pz"]).mean(0)}
        if has_llr(model):
            u = next(importance_terms(model, x, k, y=yc, proposal=_upper_only(model)))
            s["llr"] = s["log_px"] - log_mean_exp(u["log_px"] + u["log_pz"] - u["log_qz"])
        per_class.append(s)
    log_px = torch.stack([s["log_px"] for s in per_class])                 # (C, B)
    best = log_px.argmax(0)
    pick = lambda key: torch.stack([s[key] for s in per_class]).gather(0, best[None])[0]
    out = {"nll": -(torch.logsumexp(log_px, 0) - math.log(len(per_class)))}
    out["reconstruction"], out["kl"] = pick("reconstruction"), pick("kl")
    out["neg_elbo"] = out["reconstruction"] + out["kl"]
    if "llr" in per_class[0]:
        out["llr"] = pick("llr")
    return {key: v.double().cpu() for key, v in out.items()}


# ---------------------------------------------------------------------- the validation reference

@dataclass
class Reference:
    """What the run's validation split says about data like the training data: its mean NLL
    (the entropy estimate of the typicality test), its NLLs (for the batch test) and each score's
    threshold at the false-positive rate ``fpr``."""

    k: int
    fpr: float
    n: int
    entropy: float
    thresholds: dict
    valid_nll: list = field(repr=False)
    weights: str = ""           # size and time of model.safetensors, to know the cache is current

    def typicality(self, nll: torch.Tensor) -> torch.Tensor:
        return (nll - self.entropy).abs()


def reference(run, k: int, fpr: float, limit: int = 2000, quiet: bool = False) -> Reference:
    """The validation reference of a run for k samples, from its first ``limit`` validation
    examples; kept in <run>/scores/reference-k<k>.json and reused while the weights are the same."""
    weights = run.path / "model.safetensors"
    stamp = f"{weights.stat().st_size}:{weights.stat().st_mtime_ns}" if weights.exists() else ""
    cache = run.path / "scores" / f"reference-k{k}-n{limit}.json"
    raw = None
    if cache.is_file():
        try:
            saved = json.loads(cache.read_text())
            if saved.get("weights") == stamp and saved.get("k") == k:
                raw = {key: torch.tensor(v, dtype=torch.float64) for key, v in saved["scores"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            raw = None
    if raw is None:
        x = run.data.split("valid")[:limit]
        y = run.labels("valid")
        raw = score_all(run, [("valid", x, None if y is None else y[:limit])], k, quiet, "validation")
        raw.pop("names")
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"k": k, "weights": stamp, "scores": {key: v.tolist()
                                                                              for key, v in raw.items()}}))
        except OSError:
            pass  # a read-only run: computed again next time
    entropy = float(raw["nll"].mean())
    raw["typicality"] = (raw["nll"] - entropy).abs()
    thresholds = {key: float(torch.quantile(v, 1 - fpr)) for key, v in raw.items()}
    return Reference(k, fpr, int(raw["nll"].numel()), entropy, thresholds, raw["nll"].tolist(), stamp)


def score_all(run, chunks, k: int, quiet: bool = False, what: str = "") -> dict:
    """Scores of every chunk (names, x, y) of an iterator, concatenated, with ``names``."""
    names, parts = [], []
    bar = progress(None, quiet, desc=f"scoring {what}".strip(), unit="ex", leave=False)
    try:
        for chunk_names, x, y in chunks:
            x = x.to(run.model.device)
            parts.append(score_examples(run.model, run.media, x, y, k))
            names += list(chunk_names) if not isinstance(chunk_names, str) else [
                f"{chunk_names}[{i}]" for i in range(x.shape[0])]
            bar.update(x.shape[0])
    finally:
        bar.close()
    if not parts:
        raise VaekitError("there is nothing to score.")
    out = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
    out["names"] = names
    return out


# ---------------------------------------------------------------------- decisions and comparisons

def batch_typicality(nll: torch.Tensor, ref: Reference, m: int, draws: int = 2000, seed: int = 0):
    """The typicality test over batches of m examples in order: each batch's |mean NLL - H| and
    whether it exceeds epsilon, the (1 - fpr) quantile of the same statistic over ``draws`` random
    batches of m validation examples (bootstrap, as Nalisnick et al. 2019)."""
    g = np.random.default_rng(seed)
    valid = np.asarray(ref.valid_nll)
    boot = np.abs(valid[g.integers(0, len(valid), (draws, m))].mean(1) - ref.entropy)
    epsilon = float(np.quantile(boot, 1 - ref.fpr))
    stats = [abs(float(nll[i:i + m].mean()) - ref.entropy) for i in range(0, len(nll) - m + 1, m)]
    return epsilon, stats


def ood_metrics(inside: dict, outside: dict, keys) -> dict:
    """AUROC, AUPRC (out-of-distribution as the positive class) and the false-positive rate at
    95% true positives of each score, from the scores of in- and out-of-distribution examples."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    out = {}
    for key in keys:
        s = np.concatenate([inside[key].numpy(), outside[key].numpy()])
        t = np.concatenate([np.zeros(len(inside[key])), np.ones(len(outside[key]))])
        fpr, tpr, _ = roc_curve(t, s)
        out[key] = {"auroc": float(roc_auc_score(t, s)), "auprc": float(average_precision_score(t, s)),
                    "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95)])}
    return out


def batch_ood(inside: torch.Tensor, outside: torch.Tensor, ref: Reference, m: int, draws: int = 1000,
              seed: int = 0) -> dict:
    """AUROC of the typicality test over random batches of m in- and out-of-distribution NLLs."""
    g = np.random.default_rng(seed)
    stat = lambda v: np.abs(v[g.integers(0, len(v), (draws, m))].mean(1) - ref.entropy)
    return ood_metrics({"t": torch.from_numpy(stat(inside.numpy()))},
                       {"t": torch.from_numpy(stat(outside.numpy()))}, ["t"])["t"]


def roc_png(inside: dict, outside: dict, keys, path: Path, title: str) -> Path:
    """The ROC curve of each score, one figure."""
    from sklearn.metrics import roc_curve

    from .kinds.media import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for key in keys:
        s = np.concatenate([inside[key].numpy(), outside[key].numpy()])
        t = np.concatenate([np.zeros(len(inside[key])), np.ones(len(outside[key]))])
        fpr, tpr, _ = roc_curve(t, s)
        ax.plot(fpr, tpr, label=key)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5, linestyle="--")
    ax.set_xlabel("false-positive rate (in-distribution flagged)")
    ax.set_ylabel("true-positive rate (out-of-distribution flagged)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def write_csv(scores: dict, keys, path: Path, ref: Reference | None, by: str) -> Path:
    """One row per example: its name, each score, and (with a reference) whether ``by`` flags it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", *keys] + (["flagged"] if ref else []))
        for i, name in enumerate(scores["names"]):
            row = [name, *(f"{float(scores[key][i]):.6g}" for key in keys)]
            if ref:
                row.append(int(float(scores[by][i]) > ref.thresholds[by]))
            w.writerow(row)
    return path


def summary_json(path: Path, **parts) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: (asdict(v) if isinstance(v, Reference) else v) for k, v in parts.items()},
                               indent=1))
    return path
