"""Forecasting against the classical anchors: vaekit's deep Markov model, a seasonal-naive
forecast and a seasonal ARIMA (statsmodels' SARIMAX), on the same held-out stretch.

Two series: the embedded El Niño sea-surface temperature (monthly, 1950-2010) and a synthetic
series with a known generating process (a seasonal mean plus an AR(1) noise,
y_t = 10 + 3 sin(2 pi t / 12) + u_t, u_t = 0.8 u_t-1 + e_t, e_t ~ N(0, 0.5^2), 732 months). Each is
cut as vaekit cuts its embedded series: the first 70% for training, the next 15% for validation,
the last 15% held out, in windows of 48 months. Every held-out window is forecast from its first
24 months; CRPS (in the series' units) and the share of the truth inside the 90% interval at
horizons 1, 4, 12 and 24.

- seasonal naive: y_N+h = y_N+h-12k, k = ceil(h / 12), with Gaussian errors of the training
  residuals' spread times sqrt(k);
- SARIMAX (1,0,0)(0,1,1)_12, fitted once on the training stretch, then run over each window's
  context with the fitted parameters (``apply``); its Gaussian predictive distribution;
- vaekit: ``vaekit.train`` on the same windows, then ``run.forecast`` with 200 sample paths.

    python bench/forecast.py [--epochs 400] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

import vaekit
from vaekit.forecast import coverage, crps
from vaekit.kinds.sequences.loader import series_splits, series_values

HORIZONS = (1, 4, 12, 24)
WINDOW, CONTEXT, SEASON = 48, 24, 12


def gaussian_crps(mean, sd, y):
    z = (y - mean) / sd
    n = torch.distributions.Normal(0.0, 1.0)
    return sd * (z * (2 * n.cdf(z) - 1) + 2 * n.log_prob(z).exp() - 1 / math.sqrt(math.pi))


def synthetic(n: int = 732, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = np.zeros(n)
    for t in range(1, n):
        u[t] = 0.8 * u[t - 1] + rng.normal(0, 0.5)
    return (10 + 3 * np.sin(2 * np.pi * np.arange(n) / 12) + u).astype(np.float32).reshape(-1, 1)


def table(name, windows, scores):
    print(f"\n{name}: {len(windows)} held-out windows, forecast from {CONTEXT} months")
    print("| forecaster | " + " | ".join(f"CRPS h={h}" for h in HORIZONS) + " | "
          + " | ".join(f"90% cover h={h}" for h in HORIZONS) + " |")
    print("|---|" + "---|" * (2 * len(HORIZONS)))
    for who, (c, cov) in scores.items():
        print(f"| {who} | " + " | ".join(f"{c[h - 1]:.3f}" for h in HORIZONS) + " | "
              + " | ".join(f"{100 * cov[h - 1]:.0f}%" for h in HORIZONS) + " |")


def naive(train: np.ndarray, windows: np.ndarray):
    resid = train[SEASON:, 0] - train[:-SEASON, 0]
    sd = float(np.nanstd(resid))
    horizon = WINDOW - CONTEXT
    c, cov = np.zeros(horizon), np.zeros(horizon)
    for h in range(1, horizon + 1):
        k = math.ceil(h / SEASON)
        point = torch.tensor(windows[:, CONTEXT + h - 1 - SEASON * k, 0])
        y = torch.tensor(windows[:, CONTEXT + h - 1, 0])
        s = sd * math.sqrt(k)
        c[h - 1] = gaussian_crps(point, torch.tensor(s), y).mean()
        cov[h - 1] = ((y - point).abs() <= 1.645 * s).float().mean()
    return c, cov


def sarimax(train: np.ndarray, windows: np.ndarray):
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    fit = SARIMAX(train[:, 0], order=(1, 0, 0), seasonal_order=(0, 1, 1, SEASON)).fit(disp=False)
    horizon = WINDOW - CONTEXT
    c, cov = np.zeros((len(windows), horizon)), np.zeros((len(windows), horizon))
    for i, w in enumerate(windows):
        f = fit.apply(w[:CONTEXT, 0]).get_forecast(horizon)
        mean, sd = torch.tensor(f.predicted_mean), torch.tensor(np.sqrt(f.var_pred_mean))
        y = torch.tensor(w[CONTEXT:, 0])
        c[i] = gaussian_crps(mean, sd, y)
        cov[i] = ((y - mean).abs() <= 1.645 * sd).numpy()
    return c.mean(0), cov.mean(0)


def dmm(name, values, args):
    """vaekit's DMM on the series' training windows (the embedded series by name, the synthetic one
    handed over in memory, split the same way), forecasting the held-out windows."""
    splits = series_splits(values, WINDOW)
    cfg = vaekit.Config()
    cfg.data.source = name
    cfg.train.epochs, cfg.train.batch_size, cfg.train.warmup_epochs, cfg.train.threads = (
        args.epochs, args.batch_size, args.warmup, 2)
    with tempfile.TemporaryDirectory() as tmp:
        data = None if name == "elnino" else bundle_of(splits)
        run = vaekit.train(cfg, Path(tmp) / "run", quiet=True, data=data, pictures=False)
        torch.manual_seed(0)
        fc, _ = run.forecast(torch.from_numpy(np.stack(splits["test"])), CONTEXT, WINDOW - CONTEXT, samples=200)
    c = (crps(fc.samples, fc.truth) * torch.tensor(run.info["std"])).mean((0, 2))
    return c.numpy(), coverage(fc.samples, fc.truth).mean((0, 2)).numpy()


def bundle_of(splits):
    """Windows of a series as a Bundle, standardised with the training windows' statistics."""
    from vaekit.kinds.bundle import Bundle
    from vaekit.kinds.sequences.loader import pad

    train = np.concatenate(splits["train"])
    mean, std = train.mean(0), train.std(0)
    norm = {s: [(w - mean) / std for w in v] for s, v in splits.items()}
    return Bundle(name="synthetic", shape=(WINDOW, 1), value="real", train=pad(norm["train"]),
                  valid=pad(norm["valid"]), test=pad(norm["test"]), modality="sequence",
                  meta={"steps_per_quarter": 1, "frames": "series", "frame": 1, "steps": WINDOW,
                        "mean": mean.tolist(), "std": std.tolist(),
                        "lengths": {s: [WINDOW] * len(v) for s, v in splits.items()}})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()
    for name, values in (("elnino", series_values("elnino")), ("synthetic", synthetic())):
        n = len(values)
        train = values[:int(n * 0.7)]
        windows = np.stack(series_splits(values, WINDOW)["test"])
        table(name, windows, {"seasonal naive": naive(train, windows), "SARIMAX (1,0,0)(0,1,1)12": sarimax(train, windows),
                              f"vaekit DMM ({args.epochs} epochs)": dmm(name, values, args)})


if __name__ == "__main__":
    main()
