"""A self-contained HTML report of a run: one file, images embedded as data URIs, no network.

It shows the configuration, learning curves, the evaluation numbers (when ``evaluate`` has
run, with the disentanglement metrics when the data carry known factors), samples,
reconstructions, interpolations, a latent traversal, the KL per latent dimension and the latent
map of the test set.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import torch
import yaml

from .eval import COLLAPSE_REMEDIES, collapse_epoch, layers_text
from .eval.metrics import COLLAPSE_KL, kl_per_dimension
from .kinds.media import figure_uri, latent_map_figure, pyplot, spread
from .traversal import traversal


def learning_curves(metrics: list[dict]):
    plt = pyplot()
    epochs = [m["epoch"] for m in metrics]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in zip(axes, ("elbo", "rec", "kl"), ("ELBO (nats)", "reconstruction -log p(x|z)", "KL(q||p)")):
        ax.plot(epochs, [m[f"train_{key}"] for m in metrics], label="train")
        ax.plot(epochs, [m[f"valid_{key}"] for m in metrics], label="valid")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return fig


def kl_bars(kl_per_dim: list[float]):
    plt = pyplot()
    kl = np.asarray(kl_per_dim)
    fig, ax = plt.subplots(figsize=(max(5, 0.25 * len(kl) + 2), 3.2))
    ax.bar(np.arange(len(kl)), kl, color=["C0" if v > 0.01 else "C7" for v in kl])
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    ax.set_title(f"KL per latent dimension (total {kl.sum():.2f} nats)")
    fig.tight_layout()
    return fig


def disentanglement_rows(d: dict | None) -> list[tuple[str, str]]:
    """The disentanglement metrics of an evaluation (``Run.disentanglement``) as (name, value)
    rows: the report's table and `vaekit evaluate`'s lines."""
    if not d:
        return []
    where = f"posterior means of {d['points']:,} {d['split']} examples against {', '.join(d['factors'])}"
    return [("disentanglement", where),
            ("MIG", f"{d['mig']:.3f}"),
            ("DCI", f"disentanglement {d['dci_disentanglement']:.3f}, completeness {d['dci_completeness']:.3f}, "
                    f"informativeness {d['dci_informativeness']:.3f}"),
            ("SAP", f"{d['sap']:.3f}"),
            ("FactorVAE score", f"{d['factorvae_score']:.3f}"),
            ("modularity, explicitness", f"{d['modularity']:.3f}, {d['explicitness']:.3f}")]


def quality_rows(q: dict | None) -> list[tuple[str, str]]:
    """The sample-quality figures of an evaluation (``Run.sample_quality``) as (name, value) rows."""
    if not q:
        return []
    own = (f"its test accuracy {q['accuracy']:.3f}" if "accuracy" in q else
           f"its test reconstruction error {q['reconstruction_mse']:.4f} per value")
    rows = [("sample quality", f"{q['n_samples']:,} prior samples against {q['n_real']:,} test examples in the "
                               f"features of {'an' if q['features'][0] in 'aeiou' else 'a'} {q['features']} trained on this run's data ({own}); {q['note']}"),
            ("Frechet distance", f"{q['frechet_distance']:.2f} (training against test examples: "
                                 f"{q['frechet_distance_train_vs_test']:.2f})"),
            ("precision, recall", f"{q['precision']:.3f}, {q['recall']:.3f}")]
    if "confident_share" in q:
        real = (f" (test examples: {100 * q['confident_share_real']:.1f}%)" if "confident_share_real" in q else "")
        rows.append(("samples classified", f"{100 * q['confident_share']:.1f}% with probability >= 0.9{real}; "
                                           f"{q['classes_covered']} classes, entropy {q['class_entropy_bits']:.2f} bits"))
    return rows


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) \
        + "</table>"


def scoring_section(folder: Path) -> str | None:
    """The latest ``vaekit score``: what was scored and flagged, and with --data-ood each score's
    AUROC, AUPRC and FPR at 95% TPR and the ROC curves; None before any."""
    import base64
    import json

    try:
        s = json.loads((folder / "summary.json").read_text())
        rows = [("data", f"{s['data']}, {s['examples']:,} examples, k = {s['k']}")]
        if "flagged" in s:
            rows.append(("flagged", f"{s['flagged']:,} by {s['by']} (above {s['threshold']:.4g}, "
                                    f"{100 * s['fpr']:g}% false positives on the validation split)"))
            rows.append((f"typicality test, batches of {s['batch']}",
                         f"{s['batches_flagged']} of {s['batches']} batches flagged"))
        out = _table(rows)
        if "ood" in s:
            o = s["ood"]
            out += (f"<p>Against {html.escape(o['data'])} ({o['examples']:,} examples) as out of distribution:</p>"
                    "<table><tr><th>score</th><th>AUROC</th><th>AUPRC</th><th>FPR at 95% TPR</th></tr>"
                    + "".join(f"<tr><td>{html.escape(k)}</td><td>{m['auroc']:.3f}</td><td>{m['auprc']:.3f}</td>"
                              f"<td>{m['fpr_at_95_tpr']:.3f}</td></tr>" for k, m in o["metrics"].items())
                    + "</table>")
            roc = folder / "roc.png"
            if roc.is_file():
                uri = "data:image/png;base64," + base64.b64encode(roc.read_bytes()).decode()
                out += f'<img alt="ROC curves" src="{uri}">'
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_report(run, out: Path | None = None, bundle=None) -> Path:
    """Write ``<run>/report.html`` (or ``out``) and return its path. The sections of decoded
    data (samples, reconstructions, interpolations) are the run's kind of data's."""
    bundle = bundle if bundle is not None else run.data
    model = run.model
    test = bundle.test
    torch.manual_seed(0)
    sections = []

    cfg = yaml.safe_dump(run.config.to_dict(), sort_keys=False)
    sections.append(("Configuration", f"<pre>{html.escape(cfg)}</pre>"))

    metrics = run.metrics
    if metrics:
        last, (best, key, what) = metrics[-1], run.best()
        collapsed = collapse_epoch(metrics)
        summary = _table([("epochs", str(len(metrics))),
                          (f"best {what}", f"{best[key]:.3f} nats (epoch {int(best['epoch'])})"),
                          ("last train ELBO", f"{last['train_elbo']:.3f} nats"),
                          ("training time", f"{sum(m['seconds'] for m in metrics):.0f} s"),
                          *([("posterior collapse", f"from epoch {collapsed}: the validation KL stayed under "
                                                    f"{COLLAPSE_KL:g} nats, so the decoder ignores z; remedies: "
                                                    f"{COLLAPSE_REMEDIES}")] if collapsed else [])])
        sections.append(("Learning curves", summary + f'<img alt="learning curves" src="{figure_uri(learning_curves(metrics))}">'))

    ev = run.evaluation
    if ev:
        sections.append(("Evaluation", _table([
            ("data", f"{ev['data']} {ev['split']} set, {ev['n']:,} examples"),
            ("NLL (importance sampled)", f"{ev['nll_nats']:.3f} nats, k = {ev['k']}"),
            ("bits per dimension", f"{ev['bits_per_dim']:.4f}"),
            ("ELBO", f"{ev['elbo_nats']:.3f} nats (reconstruction {ev['rec_nats']:.3f}, KL {ev['kl_nats']:.3f})"),
            ("active units", f"{ev['active_units']} of {ev['latent']}"),
            *([("stochastic layers", layers_text(ev["layers"]))] if ev.get("layers") else []),
            *disentanglement_rows(ev.get("disentanglement")), *quality_rows(ev.get("sample_quality"))])))
    else:
        sections.append(("Evaluation", "<p>Not evaluated yet: run <code>vaekit evaluate "
                                       f"{html.escape(str(run.path))}</code> and then <code>vaekit report</code>.</p>"))

    y = bundle.test_labels if model.classes else None
    sections += run.media.report_sections(run, bundle)
    shown = spread(test.shape[0], 2000).to(test.device)
    t = traversal(model, test[shown], None if y is None else y[shown], steps=9, max_dims=10)
    sections.append(("Latent traversal", f"<p>One latent dimension varied from {t.values[0]:g} to {t.values[-1]:g} "
                     f"at a time, the others held at {html.escape(t.origin)}; a row per dimension, those with the most "
                     f"{'KL' if t.measure == 'KL' else 'variance of the posterior means'} first "
                     f"(<code>vaekit traverse</code> for other dimensions, ranges and examples).</p>"
                     + run.media.traversal_html(run, t)))

    kls, measure = (ev["kl_per_dim"], "KL") if ev and ev.get("kl_per_dim") else kl_per_dimension(model, test, y)
    if kls is not None and measure == "KL":
        sections.append(("KL per latent dimension", f'<img alt="KL per dimension" src="{figure_uri(kl_bars(kls))}">'))

    fig = latent_map_figure(model, test, bundle.test_labels, bundle.label_names)
    sections.append(("Latent space", f'<img alt="latent map" src="{figure_uri(fig)}">'))
    scoring = scoring_section(run.path / "scores")
    if scoring:
        sections.append(("Scoring new data", scoring))

    body = "\n".join(f"<section><h2>{html.escape(t)}</h2>{c}</section>" for t, c in sections)
    title = f"vaekit run {run.path.name}"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.6em; }} h2 {{ font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }}
img {{ max-width: 100%; image-rendering: pixelated; }}
.clips {{ display: flex; flex-wrap: wrap; gap: .5em 1.5em; }} figure {{ margin: 0; }}
figcaption {{ font-size: .85em; color: #555; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .25em 1em .25em 0; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(bundle.describe())}</p>
{body}
</body></html>
"""
    out = Path(out) if out else run.path / "report.html"
    out.write_text(page)
    return out
