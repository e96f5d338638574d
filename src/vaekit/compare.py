"""Runs side by side: what differs in their configs, their headline figures, their learning
curves overlaid, and their samples next to each other.

    vaekit compare runs/a runs/b runs/sweep/ [--csv table.csv] [--out compare.html]

A folder that is not a run but holds runs (a sweep's, a seed study's) stands for every run
under it. Nothing is loaded but the run's files (config.yaml, metrics.csv, evaluation.json and
the pictures in samples/), so runs whose data are gone, or of different kinds, compare too.
"""

from __future__ import annotations

import csv
import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import VaekitError
from .kinds import kind
from .kinds.media import figure_uri, pyplot
from .run import read_config, read_metrics


@dataclass
class Entry:
    """One run as its files describe it."""

    path: Path
    config: dict        # flattened: "model.latent" -> 16
    metrics: list[dict]
    evaluation: dict | None

    @property
    def name(self) -> str:
        return self.path.name


def find_runs(paths) -> list[Path]:
    """The run directories ``paths`` name: each a run (it has config.yaml), or a folder whose
    runs (at any depth) it stands for, in name order."""
    out = []
    for p in map(Path, paths):
        if (p / "config.yaml").is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted((q.parent for q in p.rglob("config.yaml")), key=_natural)
            if not found:
                raise VaekitError(f"{p}: neither a run directory nor a folder of runs (no config.yaml under it).")
            out += found
        else:
            raise VaekitError(f"{p}: no such run directory.")
    seen, unique = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    if len(unique) < 2:
        raise VaekitError(f"compare needs at least two runs; {', '.join(map(str, paths))} hold{'s' if len(paths) == 1 else ''} "
                          f"{len(unique)}.")
    return unique


def _natural(p: Path):
    """trial-2 before trial-10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


def load(paths) -> list[Entry]:
    """Every run of ``paths`` (:func:`find_runs`), read from its files."""
    entries = []
    for p in find_runs(paths):
        config, info, _ = read_config(p)
        metrics = read_metrics(p / "metrics.csv") if (p / "metrics.csv").exists() else []
        ev = p / "evaluation.json"
        try:
            evaluation = json.loads(ev.read_text()) if ev.exists() else None
        except (OSError, ValueError) as e:
            raise VaekitError(f"{ev}: not readable JSON ({e}).") from None
        entries.append(Entry(p, {**config.flat(), "data.kind": info.get("modality", "image")}, metrics,
                             evaluation if isinstance(evaluation, dict) else None))
    return entries


def differences(entries: list[Entry]) -> list[str]:
    """The config keys whose values are not the same in every run."""
    keys = sorted({k for e in entries for k in e.config})
    return [k for k in keys if len({json.dumps(e.config.get(k), sort_keys=True) for e in entries}) > 1]


#: the headline columns, in order: (key, heading)
HEADLINE = (("epochs", "epochs"), ("best_valid", "best valid bound"), ("final_valid_elbo", "final valid ELBO"),
            ("test_nll", "test NLL"), ("kl", "KL"), ("active_units", "active units"), ("seconds", "time (s)"))


def headline(e: Entry) -> dict:
    """A run's figures: epochs trained, the best validation value the run was kept by (its own
    objective's for wae/infovae, the IWAE bound for an importance-weighted run, else the ELBO) and
    the last validation ELBO, the test NLL, KL and active units of its
    evaluation (the last validation KL and active units without one), and the training time."""
    m, ev = e.metrics, e.evaluation or {}
    key = next((k for k in ("valid_objective", "valid_iwae") if m and all(k in r for r in m)), "valid_elbo")
    return {"epochs": len(m), "best_valid": max(r[key] for r in m) if m else None,
            "final_valid_elbo": m[-1]["valid_elbo"] if m else None, "test_nll": ev.get("nll_nats"),
            "kl": ev.get("kl_nats", m[-1]["valid_kl"] if m else None),
            "active_units": ev.get("active_units", m[-1].get("valid_active_units") if m else None),
            "seconds": sum(r["seconds"] for r in m) if m else None}


def _cell(v, figure: bool = False) -> str:
    """A table cell: a figure in nats with three decimals, a config value as it is (to 6 digits)."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if figure and math.isfinite(v) and abs(v) < 1e5 else f"{v:.6g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def table(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """(headings, rows): one row per run, its name, the config values that differ, its headline."""
    diff = differences(entries)
    heads = ["run", *diff, *(h for _, h in HEADLINE)]
    rows = []
    for e in entries:
        h = headline(e)
        rows.append([e.name, *(_cell(e.config.get(k)) for k in diff), *(_cell(h[k], True) for k, _ in HEADLINE)])
    return heads, rows


def text_table(entries: list[Entry]) -> list[str]:
    """The table as aligned lines, for a terminal."""
    heads, rows = table(entries)
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [heads, *rows]]


def write_csv(entries: list[Entry], path) -> Path:
    heads, rows = table(entries)
    try:
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([heads, *rows])
    except OSError as e:
        raise VaekitError(f"{path}: cannot write the table ({e.strerror or e}).") from None
    return Path(path)


def curves_figure(entries: list[Entry]):
    """The validation ELBO (and the training ELBO, dashed) of every run per epoch, in one plot."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, e in enumerate(entries):
        if not e.metrics:
            continue
        epochs = [r["epoch"] for r in e.metrics]
        line, = ax.plot(epochs, [r["valid_elbo"] for r in e.metrics], label=e.name)
        ax.plot(epochs, [r["train_elbo"] for r in e.metrics], ls="--", lw=0.8, color=line.get_color())
    lows = [r["valid_elbo"] for e in entries for r in e.metrics[len(e.metrics) // 5:]]
    if lows:   # the first epochs' bounds are far below the rest: start the axis where the runs have settled
        ax.set_ylim(bottom=min(lows) - 0.05 * (max(lows) - min(lows) + 1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats): valid, train dashed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def samples_html(e: Entry) -> str:
    """What a run's samples/ folder shows at a glance, as its kind keeps them."""
    return kind(e.config["data.kind"]).samples_html(e.path) or "<p>(no samples written)</p>"


def write_html(entries: list[Entry], out) -> Path:
    """One self-contained HTML page: the table, the learning curves and the samples side by side."""
    heads, rows = table(entries)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    cells = "".join(f"<figure><figcaption>{html.escape(e.name)}</figcaption>{samples_html(e)}</figure>"
                    for e in entries)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vaekit compare</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;font-size:.9em}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}} figure{{display:inline-block;vertical-align:top;margin:.5em}}
img{{max-width:320px;image-rendering:pixelated}} pre{{font-size:.8em}}</style></head><body>
<h1>{len(entries)} runs compared</h1>
<p>Columns between the run's name and the figures: the config values that differ between the runs.</p>
<table><tr>{head}</tr>{body}</table>
<h2>Learning curves</h2><img style="max-width:900px" alt="learning curves" src="{figure_uri(curves_figure(entries))}">
<h2>Samples</h2>{cells}
</body></html>
"""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as e:
        raise VaekitError(f"{out}: cannot write the page ({e.strerror or e}).") from None
    return out
