"""Does drawing the k importance samples with less variance tighten a run's k-sample NLL estimate?

The estimate -log (1/k) sum_i p(x, z_i) / q(z_i | x) is an upper bound on the NLL in expectation,
loose by about half the relative variance of the weights over k. Two ways of drawing the k
standard-normal noises e_i (z_i = mean + std * e_i, every layer of a hierarchical posterior) keep
each z_i distributed as q, so the estimate stays a bound, but spread the draws more evenly:

- ``antithetic``: k/2 noises and their negatives, e and -e;
- ``qmc``: a scrambled Sobol sequence of k points in as many dimensions as the latent, mapped
  through the normal quantile function, a new scrambling for every test example.

On the first N test examples, each sampler's estimate with k samples, for each seed, next to the
plain ``mc`` draws:

    python bench/nll_samplers.py RUN --examples 500 --k 5000 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.distributions import Normal

import vaekit
from vaekit.errors import VaekitError
from vaekit.model.nets.topdown import TopDownPosterior
from vaekit.run import Run


class GivenNoise(Normal):
    """A Normal whose rsample returns mean + std * noise for noise drawn beforehand."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, noise: torch.Tensor):
        super().__init__(loc, scale, validate_args=False)
        self.noise = noise

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.loc + self.scale * self.noise.expand(self._extended_shape(sample_shape))


def noises(sampler: str, k: int, b: int, d: int, gen: torch.Generator, seed: int) -> torch.Tensor:
    """(k, b, d) standard-normal noises for b examples, drawn by ``sampler``."""
    if sampler == "mc":
        return torch.randn(k, b, d, generator=gen)
    if sampler == "antithetic":
        half = torch.randn((k + 1) // 2, b, d, generator=gen)
        return torch.cat([half, -half])[:k]
    points = []
    for j in range(b):
        u = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed * 100003 + j).draw(k)
        points.append(torch.special.ndtri(u.clamp(1e-7, 1 - 1e-7)))
    return torch.stack(points, 1)


def with_noise(q, e: torch.Tensor):
    """The proposal q drawing its samples from the noises e (k, b, latent); z = [z1, z2, ...]."""
    if isinstance(q, Normal):
        return GivenNoise(q.loc, q.scale, e)
    if not isinstance(q, TopDownPosterior) or not isinstance(q.top, Normal):
        raise VaekitError("this benchmark takes a Gaussian posterior with at most two layers, not a flow.")
    d2 = q.top.loc.shape[-1]
    return q.map(lambda n, layer: GivenNoise(n.loc, n.scale, e[..., :d2] if layer == 2 else e[..., d2:]))


@torch.no_grad()
def estimate(model, x: torch.Tensor, k: int, sampler: str, seed: int, batch: int, chunk: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    nll = []
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch]
        q = model.encode(xb)
        e = noises(sampler, k, xb.shape[0], model.latent, gen, seed * 1000 + i)
        nll.append(-vaekit.log_likelihood(model, xb, k, chunk, proposal=lambda x, y, samples: with_noise(q, e[samples])))
    return torch.cat(nll).mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--examples", type=int, default=500)
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--samplers", default="mc,antithetic,qmc")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data", help="the data set, if it has moved since training")
    ap.add_argument("--batch", type=int, default=20, help="examples per pass")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        run = Run.load(args.run)
        if args.data:
            run.config.data.source = args.data
        model = run.model.eval()
        if model.classes:
            raise VaekitError(f"{args.run}: this benchmark reads unlabelled test data; the run is a conditional model.")
        x = run.data.test[:args.examples]
        with_noise(model.encode(x[:1]), torch.zeros(1, 1, model.latent))   # refuses a posterior it can't drive
    except VaekitError as e:
        raise SystemExit(f"error: {e}") from None
    seeds = [int(s) for s in args.seeds.split(",")]
    samplers = args.samplers.split(",")
    unknown = [s for s in samplers if s not in ("mc", "antithetic", "qmc")]
    if unknown:
        raise SystemExit(f"error: unknown sampler {unknown[0]!r}; the samplers are mc, antithetic and qmc.")
    print(f"{x.shape[0]} test examples, k = {args.k}")
    for sampler in samplers:
        figures = []
        for seed in seeds:
            t = time.perf_counter()
            figures.append(estimate(model, x, args.k, sampler, seed, args.batch, chunk=500))
            print(f"{sampler} seed {seed}: NLL {figures[-1]:.4f} nats ({time.perf_counter() - t:.0f} s)", flush=True)
        spread = f", standard deviation {statistics.stdev(figures):.4f}" if len(figures) > 1 else ""
        print(f"{sampler}: mean {statistics.mean(figures):.4f} nats{spread}")


if __name__ == "__main__":
    main()
