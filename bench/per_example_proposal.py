"""How much of a top-down model's k-sample NLL estimate is the encoder's amortisation?

For the first N test examples of a run (a top-down hierarchical VAE), estimate the NLL with k
importance samples twice, with the same random draws: once with the encoder's posterior
q(z2 | x) q(z1 | x, z2) as the proposal, and once with a proposal fit to each example on its own:
per-example offsets of the means and log-scales of q(z2 | x) and of q(z1 | x, z2), optimised
with Adam on that example's IWAE bound (a few samples per step), the model and the encoder
fixed. Any proposal gives a stochastic upper bound on the NLL, so the difference is how much
tighter a per-example proposal of the same family makes the estimate.

    python bench/per_example_proposal.py RUN --examples 200 --steps 300 --k-fit 10 --lr 0.03
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.distributions import Normal

import vaekit
from vaekit.errors import VaekitError
from vaekit.model.nets.topdown import TopDownEncoder, TopDownPosterior
from vaekit.run import Run


def shifted(q: TopDownPosterior, up: torch.Tensor, down: torch.Tensor) -> TopDownPosterior:
    """q with per-example offsets of the mean and log-scale of z2 (``up``, (B, 2, |z2|)) and of
    z1 given z2 (``down``, (B, 2, |z1|))."""
    offsets = {1: down, 2: up}
    return q.map(lambda n, layer: Normal(n.loc + offsets[layer][:, 0], n.scale * torch.exp(offsets[layer][:, 1]),
                                         validate_args=False))


@torch.no_grad()
def nll(model, x, posterior, k: int, chunk: int = 1000) -> float:
    out = []
    for i in range(x.shape[0]):
        q = posterior(i)
        out.append(-vaekit.log_likelihood(model, x[i:i + 1], k, chunk, proposal=lambda x, y, samples: q))
    return torch.cat(out).mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--k", type=int, default=5000, help="importance samples of the NLL estimate")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--k-fit", type=int, default=10, help="samples per step of the per-example fit")
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        run = Run.load(args.run)
    except VaekitError as e:
        raise SystemExit(f"error: {e}") from None
    model = run.model.eval()
    if not isinstance(model.encoder, TopDownEncoder) or isinstance(model.encoder.base, TopDownEncoder):
        raise SystemExit(f"{args.run}: this benchmark needs a top-down hierarchical model of two layers.")
    for p in model.parameters():
        p.requires_grad_(False)
    x = run.data.test[:args.examples]
    with torch.no_grad():
        h = model.encoder.hidden(x)

    torch.manual_seed(0)
    t = time.perf_counter()
    amortised = nll(model, x, lambda i: model.encoder.posterior(h[i:i + 1]), args.k)
    print(f"encoder's proposal:     NLL {amortised:.3f} nats (k={args.k}, {args.examples} test examples, "
          f"{time.perf_counter() - t:.0f} s)", flush=True)

    up = torch.zeros(x.shape[0], 2, model.encoder.top, requires_grad=True)
    down = torch.zeros(x.shape[0], 2, model.encoder.latent, requires_grad=True)
    opt = torch.optim.Adam([up, down], lr=args.lr)
    q0 = model.encoder.posterior(h)
    t = time.perf_counter()
    for _ in range(args.steps):
        proposal = shifted(q0, up, down)
        loss = -vaekit.log_likelihood(model, x, args.k_fit, proposal=lambda x, y, samples: proposal).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    fit = time.perf_counter() - t
    up, down = up.detach(), down.detach()
    torch.manual_seed(0)
    fitted = nll(model, x, lambda i: shifted(model.encoder.posterior(h[i:i + 1]), up[i:i + 1], down[i:i + 1]), args.k)
    print(f"per-example proposal:   NLL {fitted:.3f} nats ({args.steps} Adam steps on IWAE-{args.k_fit}, "
          f"lr {args.lr}, {fit:.0f} s)")
    print(f"difference:             {amortised - fitted:.3f} nats")


if __name__ == "__main__":
    main()
