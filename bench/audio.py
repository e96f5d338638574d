"""Audio VAE on the Free Spoken Digit Dataset: reconstruction quality, NLL, and conditional samples
that a classifier recognises.

    python bench/audio.py --data ../shared/data/fsdd

Split: the usual one, takes 0-4 of every speaker and digit are the test set (300 files), the
rest train (2,700; 10% of them held out for validation). Clips: 1 s at 8 kHz, 64 mel bins.

1. An unconditional conv VAE: test NLL (k importance samples) in nats and bits per
   dimension of the normalised log-mel, spectral convergence and log-spectral distance of
   the test reconstructions (mel spectrograms), training time.
2. A conditional conv VAE (the digit as extra input, and a class prior p(z | y)): 50 samples
   per digit, labelled by a small CNN classifier trained here on the training spectrograms;
   reports the fraction classified as the digit asked for, next to the classifier's own test
   accuracy.

Prints the figures and writes bench/out/audio.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import vaekit
from vaekit.kinds import load_data


# The conditional model: a small latent (and beta) leave the digit's identity to the label,
# so that samples asked for a digit say that digit; z keeps speaker and timing. The class prior
# p(z | y) draws each digit's z from where that digit's posteriors are.
CONDITIONAL = {"latent": 2, "beta": 2.0, "prior": "class"}


class DigitClassifier(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((4, 4)),
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 16, classes))

    def forward(self, x):
        return self.net(x)


def train_classifier(bundle, epochs=20, seed=0, log=print):
    torch.manual_seed(seed)
    clf = DigitClassifier(bundle.classes)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    x, y = bundle.train, bundle.train_labels
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        clf.train()
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], 64):
            idx = perm[i:i + 64]
            xb = x[idx] + 0.1 * torch.randn_like(x[idx])  # a little noise: samples are smoother than data
            loss = F.cross_entropy(clf(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        log(f"  classifier epoch {epoch + 1}: test accuracy {accuracy(clf, bundle.test, bundle.test_labels):.3f}")
    return clf


@torch.no_grad()
def accuracy(clf, x, y):
    clf.eval()
    return float((clf(x).argmax(1) == y).float().mean())


def config(data, conditional, epochs, latent):
    cfg = vaekit.Config()
    cfg.data.source = str(Path(data).resolve())
    cfg.data.test = "*_[0-4].wav"
    cfg.data.label_from = "{label}_*"
    cfg.data.clip_seconds, cfg.data.sample_rate, cfg.data.n_mels = 1.0, 8000, 64
    cfg.model.net, cfg.model.channels, cfg.model.latent = "conv", [16, 32, 64], latent
    cfg.model.conditional = conditional
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.lr_schedule = epochs, 64, 1e-3, "cosine"
    return cfg


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/fsdd", help="the FSDD folder (with recordings/)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--k", type=int, default=500, help="importance samples for the test NLL")
    p.add_argument("--samples-per-digit", type=int, default=50)
    p.add_argument("--cond-latent", type=int, default=CONDITIONAL["latent"],
                   help="latent size of the conditional model")
    p.add_argument("--cond-beta", type=float, default=CONDITIONAL["beta"], help="beta of the conditional model")
    p.add_argument("--cond-prior", choices=["normal", "class"], default=CONDITIONAL["prior"],
                   help="prior of the conditional model: N(0, I) or a learned Gaussian per digit")
    p.add_argument("--part", choices=["all", "unconditional", "conditional"], default="all")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    log = (lambda *x: None) if a.quiet else print
    src = Path(a.data) / "recordings" if (Path(a.data) / "recordings").is_dir() else Path(a.data)
    if not src.is_dir():
        print(f"{a.data}: not found; pass --data path/to/shared/data/fsdd", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    result = {"data": "FSDD", "split": "takes 0-4 test", "epochs": a.epochs, "latent": a.latent, "k": a.k,
              "cond_latent": a.cond_latent, "cond_beta": a.cond_beta, "cond_prior": a.cond_prior}
    prev = a.out / "audio.json"
    if a.part != "all" and prev.exists():  # keep the other part's figures
        result = {**json.loads(prev.read_text()), **result}

    cfg = config(src, False, a.epochs, a.latent)
    bundle = load_data(cfg.data)
    print(bundle.describe())
    result["sizes"] = {s: int(bundle.split(s).shape[0]) for s in ("train", "valid", "test")}

    import shutil

    if a.part != "conditional":
        unconditional(a, src, bundle, result)
    if a.part != "unconditional":
        shutil.rmtree(a.out / "audio-cvae", ignore_errors=True)
        conditional(a, src, bundle, result, log)
    (a.out / "audio.json").write_text(json.dumps(result, indent=2))
    return 0


def unconditional(a, src, bundle, result):
    import shutil

    shutil.rmtree(a.out / "audio-vae", ignore_errors=True)
    cfg = config(src, False, a.epochs, a.latent)
    t0 = time.perf_counter()
    run = vaekit.train(cfg, out=a.out / "audio-vae", quiet=a.quiet, data=bundle)
    result["train_seconds"] = time.perf_counter() - t0
    ev = run.evaluate(k=a.k, quiet=a.quiet)
    result["vae"] = {key: ev[key] for key in ("nll_nats", "bits_per_dim", "elbo_nats", "kl_nats", "active_units",
                                              "spectral_convergence", "log_spectral_distance_db", "seconds")}
    print(f"unconditional: test NLL {ev['nll_nats']:.1f} nats = {ev['bits_per_dim']:.4f} bits/dim (k={a.k}), "
          f"ELBO {ev['elbo_nats']:.1f}, KL {ev['kl_nats']:.1f}, active units {ev['active_units']}/{a.latent}")
    print(f"  reconstructions: spectral convergence {ev['spectral_convergence']:.4f}, log-spectral distance "
          f"{ev['log_spectral_distance_db']:.2f} dB; training {result['train_seconds']:.0f} s")


def conditional(a, src, bundle, result, log):
    cfg = config(src, True, a.epochs, a.cond_latent)
    cfg.train.beta = a.cond_beta
    cfg.model.prior = a.cond_prior
    t0 = time.perf_counter()
    crun = vaekit.train(cfg, out=a.out / "audio-cvae", quiet=a.quiet, data=bundle)
    result["cvae_train_seconds"] = time.perf_counter() - t0
    cev = crun.evaluate(k=a.k, quiet=a.quiet)
    result["cvae"] = {key: cev[key] for key in ("nll_nats", "bits_per_dim", "kl_nats", "spectral_convergence",
                                                "log_spectral_distance_db")}

    clf = train_classifier(bundle, log=log)
    result["classifier_test_accuracy"] = accuracy(clf, bundle.test, bundle.test_labels)
    torch.manual_seed(0)
    per_digit = {}
    for d in range(bundle.classes):
        x = crun.model.sample(a.samples_per_digit, y=torch.full((a.samples_per_digit,), d))
        per_digit[bundle.label_names[d]] = accuracy(clf, x, torch.full((a.samples_per_digit,), d))
    result["samples_classified_as_asked"] = sum(per_digit.values()) / len(per_digit)
    result["per_digit"] = per_digit
    print(f"conditional: test NLL {cev['bits_per_dim']:.4f} bits/dim; training {result['cvae_train_seconds']:.0f} s")
    print(f"  classifier test accuracy {result['classifier_test_accuracy']:.3f}; samples classified as the digit "
          f"asked for: {result['samples_classified_as_asked']:.3f} (target >= 0.90)")
    print("  per digit: " + ", ".join(f"{d}: {v:.2f}" for d, v in per_digit.items()))


if __name__ == "__main__":
    sys.exit(main())
