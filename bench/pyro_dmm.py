"""vaekit's deep Markov model beside Pyro's (the networks of Pyro's ``examples/dmm.py``: emission
100 wide, gated transition 200, a ReLU RNN of 600 read backward, z of 100 a step) on JSB
Chorales, at the same epochs, batch, learning rate and KL warm-up: test negative ELBO per time
step and training seconds per epoch, both in this process with ``torch.set_flush_denormal(True)``.

    pip install pyro-ppl            # for this benchmark only; vaekit does not depend on it
    python bench/pyro_dmm.py --data ../shared/data/jsb-chorales/jsb-chorales-quarter.json [--epochs 40]

Both sides: batch 20, Adam at ``--lr`` (Pyro's ClippedAdam: gradients clamped at 10, with the
example's betas (0.96, 0.999) and no learning-rate decay or weight decay; vaekit: its Adam and
``--clip-grad 10``), the KL weight rising linearly from 0 to 1 over the first ``--warmup``
epochs. The example's scales are softplus outputs with no floor, which under flushed denormals
can reach 0 (Pyro then refuses the Normal): here they are floored at 1e-6. Pyro's ELBO is its Trace_ELBO (each step's KL estimated from the sample, as its example
does); vaekit's uses the closed-form KL of each step. Pyro's test figure averages ``--eval-draws``
single-sample estimates; vaekit's is its ``evaluate`` ELBO (and the IS-NLL at ``--k``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

import vaekit
from vaekit.kinds import load_data
from vaekit.model.nets.markov import lengths_of


def pyro_dmm(bundle, epochs: int, batch: int, lr: float, warmup: int, draws: int, seed: int = 0):
    """(test -ELBO a step, seconds an epoch) of Pyro's DMM trained here."""
    import pyro
    import pyro.distributions as dist
    import pyro.poutine as poutine
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import ClippedAdam

    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    z_dim, emission, transition, rnn_dim, keys = 100, 100, 200, 600, 88

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emit = nn.Sequential(nn.Linear(z_dim, emission), nn.ReLU(), nn.Linear(emission, emission), nn.ReLU(),
                                      nn.Linear(emission, keys), nn.Sigmoid())
            self.gate = nn.Sequential(nn.Linear(z_dim, transition), nn.ReLU(), nn.Linear(transition, z_dim),
                                      nn.Sigmoid())
            self.proposal = nn.Sequential(nn.Linear(z_dim, transition), nn.ReLU(), nn.Linear(transition, z_dim))
            self.sig = nn.Linear(z_dim, z_dim)
            self.z_to_loc = nn.Linear(z_dim, z_dim)
            with torch.no_grad():
                self.z_to_loc.weight.copy_(torch.eye(z_dim))
                self.z_to_loc.bias.zero_()
            self.comb_z = nn.Linear(z_dim, rnn_dim)
            self.comb_loc = nn.Linear(rnn_dim, z_dim)
            self.comb_scale = nn.Linear(rnn_dim, z_dim)
            self.rnn = nn.RNN(keys, rnn_dim, nonlinearity="relu", batch_first=True)
            self.z_0 = nn.Parameter(torch.zeros(z_dim))
            self.z_q_0 = nn.Parameter(torch.zeros(z_dim))
            self.h_0 = nn.Parameter(torch.zeros(1, 1, rnn_dim))

        def transition(self, z):
            g, proposed = self.gate(z), self.proposal(z)
            scale = nn.functional.softplus(self.sig(torch.relu(proposed)))
            return (1 - g) * self.z_to_loc(z) + g * proposed, scale.clamp(min=1e-6)

        def model(self, x, x_rev, mask, lengths, anneal=1.0):
            pyro.module("dmm", self)
            z = self.z_0.expand(x.shape[0], z_dim)
            with pyro.plate("batch", x.shape[0]):
                for t in pyro.markov(range(x.shape[1])):
                    loc, scale = self.transition(z)
                    with poutine.scale(scale=anneal):
                        z = pyro.sample(f"z_{t}", dist.Normal(loc, scale).mask(mask[:, t:t + 1]).to_event(1))
                    pyro.sample(f"x_{t}", dist.Bernoulli(self.emit(z)).mask(mask[:, t:t + 1]).to_event(1),
                                obs=x[:, t])

        def guide(self, x, x_rev, mask, lengths, anneal=1.0):
            pyro.module("dmm", self)
            h0 = self.h_0.expand(1, x.shape[0], rnn_dim).contiguous()
            packed = nn.utils.rnn.pack_padded_sequence(x_rev, lengths, batch_first=True, enforce_sorted=False)
            out, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed, h0)[0], batch_first=True,
                                                      total_length=x.shape[1])
            h = reverse(out, lengths)
            z = self.z_q_0.expand(x.shape[0], z_dim)
            with pyro.plate("batch", x.shape[0]):
                for t in pyro.markov(range(x.shape[1])):
                    c = 0.5 * (torch.tanh(self.comb_z(z)) + h[:, t])
                    loc, scale = self.comb_loc(c), nn.functional.softplus(self.comb_scale(c)).clamp(min=1e-6)
                    with poutine.scale(scale=anneal):
                        z = pyro.sample(f"z_{t}", dist.Normal(loc, scale).mask(mask[:, t:t + 1]).to_event(1))

    def reverse(x, lengths):
        t = torch.arange(x.shape[1]).expand(len(lengths), -1)
        idx = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)
        return x.gather(1, idx.unsqueeze(-1).expand_as(x))

    def tensors(split):
        x = split[:, :int(lengths_of(split).max())]
        lengths = lengths_of(x)
        return torch.nan_to_num(x), reverse(torch.nan_to_num(x), lengths), ~torch.isnan(x).all(-1), lengths

    net = Net()
    svi = SVI(net.model, net.guide, ClippedAdam({"lr": lr, "betas": (0.96, 0.999), "clip_norm": 10.0}),
              loss=Trace_ELBO())
    train = bundle.train
    steps_per_epoch = -(-len(train) // batch)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for i, idx in enumerate(torch.randperm(len(train)).split(batch)):
            anneal = min(1.0, (epoch * steps_per_epoch + i + 1) / max(1, warmup * steps_per_epoch))
            svi.step(*tensors(train[idx]), anneal)
    seconds = (time.perf_counter() - t0) / epochs
    test = tensors(bundle.test)
    steps = float(test[3].sum())
    with torch.no_grad():
        loss = sum(svi.evaluate_loss(*test) for _ in range(draws)) / draws
    return loss / steps, seconds


def vaekit_dmm(bundle, epochs: int, batch: int, lr: float, warmup: int, k: int,
               order: str = "auto") -> tuple[float, float, float]:
    """(test -ELBO a step, IS-NLL a step, seconds an epoch) of vaekit's DMM at Pyro's sizes, its
    batches drawn in ``order`` (random, or auto: sortish)."""
    cfg = vaekit.Config()
    m, t = cfg.model, cfg.train
    t.batch_order = order
    m.net, m.prior, m.latent, m.hidden, m.rnn_hidden = "dmm", "markov", 100, [200], 600
    t.epochs, t.batch_size, t.lr, t.warmup_epochs, t.clip_grad, t.threads = epochs, batch, lr, warmup, 10.0, 2
    steps = int(lengths_of(bundle.test).sum())
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        run = vaekit.train(cfg, Path(tmp) / "dmm", quiet=True, data=bundle, pictures=False)
        seconds = sum(r["seconds"] for r in run.metrics) / len(run.metrics)
        ev = run.evaluate(k=k, quiet=True)
    n = ev["n"]
    return -ev["elbo_nats"] * n / steps, ev["nll_nats"] * n / steps, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--eval-draws", type=int, default=10)
    ap.add_argument("--skip-pyro", action="store_true")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(2)
    cfg = vaekit.Config()
    cfg.data.source = args.data
    bundle = load_data(cfg.data)
    print(bundle.describe())
    print(f"batch {args.batch_size}, lr {args.lr:g}, KL warm-up {args.warmup} epochs, {args.epochs} epochs, "
          f"flush denormals on\n")
    print("| model | epochs | s / epoch | test -ELBO / step | test IS-NLL / step |")
    print("|---|---|---|---|---|")
    if not args.skip_pyro:
        import pyro

        loss, sec = pyro_dmm(bundle, args.epochs, args.batch_size, args.lr, args.warmup, args.eval_draws)
        print(f"| Pyro {pyro.__version__} DMM (its example's networks, Trace_ELBO) | {args.epochs} | {sec:.2f} | "
              f"{loss:.3f} | - |", flush=True)
    for order, what in (("random", "random batches"), ("auto", "batches of similar lengths (sortish)")):
        neg_elbo, nll, sec = vaekit_dmm(bundle, args.epochs, args.batch_size, args.lr, args.warmup, args.k, order)
        print(f"| vaekit DMM, latent 100, transition/emission 200, GRU 600, {what} | {args.epochs} | {sec:.2f} | "
              f"{neg_elbo:.3f} | {nll:.3f} (k={args.k}) |", flush=True)


if __name__ == "__main__":
    main()
