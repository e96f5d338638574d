"""Latents and objectives beside each other.

``--part objectives`` (default): trains one model per objective (the ELBO, IWAE, MIWAE, PIWAE, CIWAE, WAE-MMD, InfoVAE) with the
same network, data, seed and epochs, then evaluates each on the whole test set: the
importance-sampled NLL (k = --eval-k) and the ELBO in nats, the reconstruction's share of it,
the KL, the active units, the squared error of the posterior mean's reconstruction (summed over
pixels, in [0, 1] values), and the training time. Each run's prior samples are copied to
--pictures, to look at.

    python bench/latents.py --data ../shared/data/binarized-mnist --epochs 10 --k 4 --groups 4

With ``--quality``, each run's sample quality too (``Run.sample_quality``: the Fréchet distance,
precision and recall of 2,000 prior samples, in the features of one network trained on the first
run's training split and shared by the others), e.g. the ELBO against WAE and InfoVAE on the
labelled digits:

    python bench/latents.py --data digits --only elbo,wae,infovae --epochs 100 --quality \
        --flags "--hidden 256,128 --latent 8 --batch-size 64"

``--part categorical``: the categorical VAE of Jang et al. (2017), 30 variables of 10 categories
with the Gumbel-softmax (their 512-256 networks, temperature from 1 down to 0.5 at rate 3e-5 a
step), on --data: the test ELBO and the importance-sampled NLL; then one 10-way variable on
the labelled digits of scikit-learn (binarized), whose category, by the Hungarian matching of
categories to labels, gives a cluster accuracy on their test split.

    python bench/latents.py --part categorical --data ../shared/data/binarized-mnist --epochs 100

``--part sphere``: the hyperspherical VAE (von Mises-Fisher posterior, uniform prior) against the
Gaussian one at latent sizes 2, 5 and 10 (Davidson et al. 2018's comparison; their 256-128
networks), the same epochs each: the test IS-NLL and ELBO.

    python bench/latents.py --part sphere --data ../shared/data/binarized-mnist --epochs 30

``--part vq``: a VQ-VAE (16 positions of 64 codes of 8 values, 512-256 networks) and then its
prior over the codes (``vaekit train-prior``, --prior-epochs): reconstruction, codes used and
their perplexity, the code prior's validation NLL against the uniform's N log K, and the test
bound -log p(x | z_q) - log p(c); the prior samples go to --pictures.

    python bench/latents.py --part vq --data ../shared/data/binarized-mnist --epochs 8 --prior-epochs 10
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import tempfile
from pathlib import Path

import torch

import vaekit
from vaekit.cli import apply_flags, build_parser
from vaekit.report import quality_rows

NETWORK = "--likelihood bernoulli --hidden 300,300 --latent 40 --activation elu --batch-size 100 --lr 1e-3"


def objectives(k: int, groups: int, mmd_weight: float) -> dict[str, list[str]]:
    """Each objective's flags; the multi-sample ones draw k x groups samples a step."""
    m = k * groups
    return {"elbo": ["--objective", "elbo"],
            "iwae": ["--objective", "iwae", "--k", str(m)],
            "miwae": ["--objective", "miwae", "--k", str(k), "--groups", str(groups)],
            "piwae": ["--objective", "piwae", "--k", str(k), "--groups", str(groups)],
            "ciwae": ["--objective", "ciwae", "--k", str(m), "--ciwae-beta", "0.5"],
            "wae": ["--objective", "wae", "--mmd-weight", f"{mmd_weight:g}"],
            "infovae": ["--objective", "infovae", "--info-alpha", "0", "--mmd-weight", f"{mmd_weight:g}"]}


@torch.no_grad()
def reconstruction_error(run) -> float:
    """Mean over test images of the squared error of the posterior mean's decoded mean, summed over pixels."""
    x = run.data.test
    total = 0.0
    for i in range(0, len(x), 1000):
        batch = x[i:i + 1000].to(run.model.device)
        total += (run.model.reconstruct(batch) - batch).square().flatten(1).sum(1).sum().item()
    return total / len(x)


def train(argv: list[str], out: Path, pictures: bool = True):
    cfg = apply_flags(vaekit.Config(), build_parser().parse_args(["train", *argv]))
    return vaekit.train(cfg, out=out, quiet=True, pictures=pictures)


@torch.no_grad()
def cluster_accuracy(run, split: str = "test") -> tuple[float, int]:
    """(accuracy, categories used) of the first categorical variable's most probable category as
    a cluster of the labels, matched one to one by the Hungarian method."""
    from scipy.optimize import linear_sum_assignment

    x, y = run.data.split(split), run.data.labels(split)
    q = run.model.encode(x.to(run.model.device))
    pick = q.log_probs[:, 0].argmax(-1).cpu().numpy()
    labels = torch.as_tensor(y).cpu().numpy()
    k = q.k
    counts = torch.zeros(k, int(labels.max()) + 1, dtype=torch.long)
    for c, label in zip(pick, labels):
        counts[c, label] += 1
    rows, cols = linear_sum_assignment(-counts.numpy())
    return counts[rows, cols].sum().item() / len(labels), len(set(pick.tolist()))


def categorical(args) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        flags = ["--data", args.data, "--prior", "categorical", "--latent", "30", "--categories", "10",
                 "--hidden", "512,256", "--likelihood", "bernoulli", "--batch-size", "100", "--lr", "1e-3",
                 "--gumbel-anneal", "3e-5", "--epochs", str(args.epochs), "--seed", str(args.seed)]
        run = train(flags, Path(tmp) / "jang")
        ev = run.evaluate(k=args.eval_k, quiet=True, factors=False)
        out["jang"] = {"test_elbo": ev["elbo_nats"], "test_nll": ev["nll_nats"], "kl": ev["kl_nats"],
                       "train_seconds": sum(m["seconds"] for m in run.metrics)}
        shutil.copy(Path(tmp) / "jang" / "samples" / "prior_samples.png", args.pictures / "categorical.png")
        print(f"30 x 10 categorical, {args.epochs} epochs: test ELBO {ev['elbo_nats']:.2f}, IS-NLL (k = {args.eval_k}) "
              f"{ev['nll_nats']:.2f} nats, KL {ev['kl_nats']:.2f}, {out['jang']['train_seconds']:.0f} s", flush=True)
        for st in (False, True):
            name = "straight-through" if st else "relaxed"
            run = train(["--data", "digits", "--binarize", "static", "--prior", "categorical", "--latent", "1",
                         "--categories", "10", "--hidden", "256,128", "--likelihood", "bernoulli", "--batch-size",
                         "64", "--epochs", str(args.cluster_epochs), "--seed", str(args.seed),
                         *(["--straight-through"] if st else [])], Path(tmp) / name, pictures=False)
            acc, used = cluster_accuracy(run)
            out[f"clusters_{name}"] = {"accuracy": acc, "categories_used": used}
            print(f"one 10-way variable on the digits ({name}): cluster accuracy {acc:.3f}, {used} of 10 "
                  f"categories used", flush=True)
    return out


def sphere(args) -> dict:
    out = {}
    print(f"{'latent':>6} {'prior':>7} {'test NLL':>9} {'test ELBO':>10} {'KL':>7} {'train s':>8}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for d in (2, 5, 10):
            for prior in ("normal", "sphere"):
                run = train(["--data", args.data, "--prior", prior, "--latent", str(d), "--hidden", "256,128",
                             "--likelihood", "bernoulli", "--batch-size", "64", "--lr", "1e-3", "--epochs",
                             str(args.epochs), "--seed", str(args.seed)], Path(tmp) / f"{prior}{d}")
                ev = run.evaluate(k=args.eval_k, quiet=True, factors=False)
                r = {"test_nll": ev["nll_nats"], "test_elbo": ev["elbo_nats"], "kl": ev["kl_nats"],
                     "train_seconds": sum(m["seconds"] for m in run.metrics)}
                out[f"{prior}{d}"] = r
                shutil.copy(Path(tmp) / f"{prior}{d}" / "samples" / "prior_samples.png",
                            args.pictures / f"{prior}{d}.png")
                print(f"{d:>6} {prior:>7} {r['test_nll']:>9.2f} {r['test_elbo']:>10.2f} {r['kl']:>7.2f} "
                      f"{r['train_seconds']:>8.1f}", flush=True)
    return out


def vq(args) -> dict:
    from vaekit.codeprior import fit

    with tempfile.TemporaryDirectory() as tmp:
        run = train(["--data", args.data, "--prior", "vq", "--latent", "16", "--codebook", "64", "--code-dim", "8",
                     "--hidden", "512,256", "--epochs", str(args.epochs), "--seed", str(args.seed)], Path(tmp) / "vq",
                    pictures=False)
        first = run.evaluate(k=1, quiet=True, factors=False, write=False)
        last = run.metrics[-1]
        stage2 = fit(run, epochs=args.prior_epochs, quiet=True)
        second = run.evaluate(k=1, quiet=True, factors=False, write=False)
        run.media.sample(run, args.pictures / "vq.png", 64, 0)
    out = {"reconstruction": first["rec_nats"], "codes_used": last["codes_used"],
           "code_perplexity": last["code_perplexity"], "bound_uniform": first["nll_nats"],
           "codes_nll_valid": stage2["valid_nll_codes"], "codes_nll_uniform": stage2["uniform_nll_codes"],
           "bound_learned": second["nll_nats"], "prior_seconds": stage2["seconds"]}
    print(f"VQ-VAE: reconstruction {out['reconstruction']:.2f} nats, {out['codes_used']:.0f} codes used, perplexity "
          f"{out['code_perplexity']:.1f}; codes' valid NLL {out['codes_nll_valid']:.2f} (uniform "
          f"{out['codes_nll_uniform']:.2f}); test bound {out['bound_uniform']:.2f} -> {out['bound_learned']:.2f} nats",
          flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("objectives", "categorical", "sphere", "vq"), default="objectives")
    p.add_argument("--prior-epochs", type=int, default=10, help="--part vq: epochs of the prior over the codes")
    p.add_argument("--data", default="digits")
    p.add_argument("--cluster-epochs", type=int, default=100)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--k", type=int, default=4, help="samples of each group (miwae, piwae); iwae and ciwae use k x groups")
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--mmd-weight", type=float, default=10.0)
    p.add_argument("--eval-k", type=int, default=500)
    p.add_argument("--quality", action="store_true", help="objectives: each run's sample quality too")
    p.add_argument("--only", default="", help="a comma-separated subset of the objectives")
    p.add_argument("--flags", default=NETWORK, help="the network and training flags, as one string")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pictures", type=Path, default=Path("bench/out/latents"))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    args.pictures.mkdir(parents=True, exist_ok=True)
    if args.part in ("categorical", "sphere", "vq"):
        results = {"categorical": categorical, "sphere": sphere, "vq": vq}[args.part](args)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    chosen = objectives(args.k, args.groups, args.mmd_weight)
    if args.only:
        chosen = {n: chosen[n] for n in args.only.split(",")}
    args.pictures.mkdir(parents=True, exist_ok=True)
    print(f"data {args.data}, {args.epochs} epochs, flags: {args.flags}; test NLL with k = {args.eval_k}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    head = f"{'objective':>9} {'test NLL':>9} {'test ELBO':>10} {'rec':>8} {'KL':>7} {'AU':>3} {'sq.err':>7} {'train s':>8}"
    print(head, flush=True)
    results = {"data": args.data, "epochs": args.epochs, "flags": args.flags, "eval_k": args.eval_k, "runs": {}}
    features_from = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in chosen.items():
            argv = ["train", "--data", args.data, "--epochs", str(args.epochs), "--seed", str(args.seed),
                    *shlex.split(args.flags), *flags]
            run = train(argv[1:], Path(tmp) / name)
            ev = run.evaluate(k=args.eval_k, quiet=True, factors=False)
            r = {"test_nll": ev["nll_nats"], "test_elbo": ev["elbo_nats"], "rec": ev["rec_nats"], "kl": ev["kl_nats"],
                 "active_units": ev["active_units"], "squared_error": reconstruction_error(run),
                 "train_seconds": sum(m["seconds"] for m in run.metrics)}
            results["runs"][name] = r
            shutil.copy(Path(tmp) / name / "samples" / "prior_samples.png", args.pictures / f"{name}.png")
            print(f"{name:>9} {r['test_nll']:>9.2f} {r['test_elbo']:>10.2f} {r['rec']:>8.2f} {r['kl']:>7.2f} "
                  f"{r['active_units']:>3d} {r['squared_error']:>7.2f} {r['train_seconds']:>8.1f}", flush=True)
            if args.quality:
                q = r["quality"] = run.sample_quality(features_from=features_from, quiet=True)
                features_from = features_from or run.path
                print(f"{'':>9} " + "; ".join(f"{k} {v}" for k, v in quality_rows(q)[1:]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
