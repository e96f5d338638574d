"""Sample quality without a download: a small feature network trained on the run's own training
split, and in its feature space the Fréchet distance between test data and model samples, and
precision and recall (Kynkäänniemi et al. 2019).

This is *not* the Inception FID: the features are those of a network trained here, on these data,
so the numbers compare models trained on the same data (with the same feature network: a run's
is cached and can be shared, ``features_from``), and cannot be compared with papers' FID.

The feature network (:class:`FeatureNet`) is a classifier when the data have labels (its own test
accuracy says how far its features can be trusted, and the share of samples it classifies with
probability >= 0.9, beside the share of real test examples it so classifies, says how
recognisable they are), else an autoencoder (its test reconstruction error stands in for the
accuracy). Three 3x3 convolutions with batch normalisation for (C, H, W) data, fully connected
layers otherwise; 128 features, the penultimate layer. Trained with a fixed seed, so the same data
give the same network on one machine.

    FD(real, fake) = |mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2))
    precision = share of samples inside the k-NN ball of some real example (k = 3)
    recall    = share of real examples inside the k-NN ball of some sample
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..progress import progress

FEATURES = 128
VERSION = 2          # of FeatureNet's layers and training; a cached network of another version is retrained
NOTE = ("features of a network trained on this run's training split, not Inception: compares models on the "
        "same data, not comparable with papers' FID")


def conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class FeatureNet(nn.Module):
    """Features (B, 128) of images (conv) or flat data (MLP); a classifier head or a decoder."""

    def __init__(self, shape, classes: int = 0):
        super().__init__()
        self.shape, self.classes = tuple(int(s) for s in shape), int(classes)
        n = math.prod(self.shape)
        if len(self.shape) == 3:
            c = self.shape[0]
            self.body = nn.Sequential(*conv(c, 32), nn.MaxPool2d(2, ceil_mode=True), *conv(32, 64),
                                      nn.MaxPool2d(2, ceil_mode=True), *conv(64, 128), nn.AdaptiveAvgPool2d(2),
                                      nn.Flatten(), nn.Linear(512, FEATURES), nn.ReLU())
        else:
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(n, 256), nn.BatchNorm1d(256), nn.ReLU(),
                                      nn.Linear(256, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, self.classes if self.classes else n)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def loss(self, x, y) -> torch.Tensor:
        out = self(x)
        if self.classes:
            return F.cross_entropy(out, y)
        return F.mse_loss(out, x.flatten(1).float())

    @torch.no_grad()
    def score(self, x, y) -> dict:
        """Its own quality on real data: accuracy (a classifier) or squared error per value (an autoencoder)."""
        self.eval()
        out = batched(self, x)
        if self.classes:
            return {"accuracy": (out.argmax(-1) == y).double().mean().item()}
        return {"reconstruction_mse": (out - x.flatten(1).float()).square().mean().item()}


@torch.enable_grad()
def fit_features(x: torch.Tensor, y: torch.Tensor | None, classes: int, examples: int | None = None,
                 batch: int = 128, seed: int = 0, quiet: bool = False) -> FeatureNet:
    """A feature network trained on x (and labels y, when ``classes``) for about ``examples``
    examples (default: 5 epochs, between 20,000 and 300,000 examples; at least one epoch), by Adam
    with a one-cycle learning rate (peak 3e-3) and a fixed seed. On Fashion-MNIST the default
    (300,000 examples) took about 135 s on 2 CPU cores and reached 92.3% test accuracy."""
    examples = examples or min(300_000, max(20_000, 5 * len(x)))
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureNet(x.shape[1:], classes if y is not None else 0).to(x.device)
    steps = max(math.ceil(len(x) / batch), math.ceil(examples / batch))
    opt = torch.optim.Adam(net.parameters())          # its learning rate set by the schedule
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    bar = progress(steps * batch, quiet, desc="feature network", unit="ex", leave=False)
    net.train()
    order = torch.randperm(len(x), generator=gen)
    at = 0
    for step in range(steps):
        if at + batch > len(order):
            order, at = torch.randperm(len(x), generator=gen), 0
        idx = order[at:at + batch].to(x.device)
        at += batch
        loss = net.loss(x[idx], None if y is None else y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        bar.update(batch)
    bar.close()
    return net.eval()


def batched(fn, x: torch.Tensor, size: int = 1000) -> torch.Tensor:
    """fn over x in batches of ``size`` rows, joined."""
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


@torch.no_grad()
def features_of(net: FeatureNet, x: torch.Tensor) -> torch.Tensor:
    return batched(net.features, x).double()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FD between Gaussians fitted to features a (N, F) and b (M, F)."""
    from scipy import linalg

    a, b = a.double().cpu().numpy(), b.double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        root = linalg.sqrtm(cov_a @ cov_b)
    if said or not np.isfinite(root).all():   # a singular product: a small ridge, as the reference FID code does
        eps = 1e-6 * np.eye(len(mu_a))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root.real))


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.'s improved precision and recall with k-NN balls in feature space."""
    def radii(x):
        d = torch.cdist(x, x)
        return d.kthvalue(k + 1, dim=1).values     # the k-th neighbour, the point itself aside

    def covered(points, centres, r):
        inside = torch.zeros(len(points), dtype=torch.bool)
        for i in range(0, len(points), 1000):
            inside[i:i + 1000] = (torch.cdist(points[i:i + 1000], centres) <= r.unsqueeze(0)).any(1)
        return inside.double().mean().item()

    real, fake = real.double().cpu(), fake.double().cpu()
    return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


@torch.no_grad()
def sample_quality(net: FeatureNet, real: torch.Tensor, fake: torch.Tensor, train: torch.Tensor | None = None,
                   real_labels: torch.Tensor | None = None) -> dict:
    """The figures for model samples ``fake`` against real test data (same shape, [0, 1]); ``train``:
    as many training examples, whose distance to the test data is the floor a perfect model would
    reach at this sample size."""
    net.eval()
    fr, ff = features_of(net, real), features_of(net, fake)
    precision, recall = precision_recall(fr, ff)
    out = {"n_real": len(real), "n_samples": len(fake), "frechet_distance": frechet_distance(fr, ff),
           "precision": precision, "recall": recall,
           "features": "classifier" if net.classes else "autoencoder", "note": NOTE}
    if train is not None:
        out["frechet_distance_train_vs_test"] = frechet_distance(features_of(net, train), fr)
    if net.classes:                                    # the head on the features already computed
        top = torch.softmax(net.head(ff.float()), -1).max(-1)
        out["confident_share"] = (top.values >= 0.9).double().mean().item()
        out["confident_share_real"] = (torch.softmax(net.head(fr.float()), -1).max(-1).values >= 0.9).double().mean().item()
        counts = torch.bincount(top.indices, minlength=net.classes).double()
        out["classes_covered"] = int((counts > 0).sum())
        out["class_entropy_bits"] = float(-(counts / counts.sum() * torch.log2((counts / counts.sum()).clamp(min=1e-12))).sum())
    if real_labels is not None and net.classes:
        out.update(net.score(real, real_labels))
    elif not net.classes:
        out.update(net.score(real, None))
    return out
