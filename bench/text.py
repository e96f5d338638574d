"""Text VAE against a plain recurrent language model with the same decoder and training budget.

    python bench/text.py --data ../shared/data/text            # names and tinyshakespeare
    python bench/text.py --data ../shared/data/text --corpus names --epochs 30

For each corpus: the lines are split by vaekit's loader (10% valid, 10% test, fixed seed);
the VAE is trained with `vaekit.train` and evaluated with the importance-sampled NLL
(k = 1000); the language model is the decoder's own architecture (embedding, GRU, linear
output, same sizes) without z, trained here with the same optimiser, schedule, batch size
and number of epochs, and scored exactly. Prints per-line NLL in nats, perplexity per token,
KL, active units, 10 samples and one interpolation, and writes bench/out/text-<corpus>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import vaekit
from vaekit.kinds import load_data
from vaekit.kinds.text.loader import BOS, PAD

SETTINGS = {  # corpus -> (file, epochs, latent, free bits per dimension, k, test lines scored with k)
    "names": ("names.txt", 30, 16, 0.25, 1000, None),
    "shakespeare": ("tinyshakespeare.txt", 12, 16, 0.25, 1000, 500),
}


class LanguageModel(nn.Module):
    """The VAE decoder without z: embedding -> GRU -> linear, teacher forcing."""

    def __init__(self, vocab, embedding, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding, padding_idx=PAD)
        self.rnn = nn.GRU(embedding, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def nll(self, x):
        """-log p(x) per line (B,), in nats: the sum over the line's tokens and its end."""
        inp = torch.cat([torch.full_like(x[:, :1], BOS), x[:, :-1]], 1)
        h, _ = self.rnn(self.embed(inp))
        return F.cross_entropy(self.out(h).transpose(1, 2), x, ignore_index=PAD, reduction="none").sum(-1)


def train_lm(bundle, cfg, log):
    torch.manual_seed(cfg.train.seed)
    lm = LanguageModel(len(bundle.vocab), cfg.model.embedding, cfg.model.rnn_hidden)
    opt = torch.optim.Adam(lm.parameters(), lr=cfg.train.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.train.epochs, eta_min=cfg.train.min_lr)
    x, n, bs = bundle.train, bundle.train.shape[0], cfg.train.batch_size
    gen = torch.Generator().manual_seed(cfg.train.seed)
    best, best_state, t0 = math.inf, None, time.perf_counter()
    for epoch in range(cfg.train.epochs):
        lm.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            loss = lm.nll(x[perm[i:i + bs]]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        v = score_lm(lm, bundle.valid)
        if v < best:
            best, best_state = v, {k: t.clone() for k, t in lm.state_dict().items()}
        log(f"  LM epoch {epoch + 1}: valid NLL {v:.3f}")
    lm.load_state_dict(best_state)
    return lm, time.perf_counter() - t0


@torch.no_grad()
def score_lm(lm, x):
    lm.eval()
    return float(torch.cat([lm.nll(x[i:i + 1024]) for i in range(0, x.shape[0], 1024)]).mean())


def run_corpus(name, data_dir, out_dir, epochs=None, quiet=False):
    log = (lambda *a: None) if quiet else print
    file, default_epochs, latent, free_bits, k, n_test = SETTINGS[name]
    cfg = vaekit.Config()
    cfg.data.source = str((Path(data_dir) / file).resolve())
    cfg.data.test_fraction = cfg.data.valid_fraction = 0.1
    cfg.model.latent, cfg.model.embedding, cfg.model.rnn_hidden = latent, 64, 256
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = epochs or default_epochs, 128, 2e-3
    cfg.train.lr_schedule, cfg.train.free_bits = "cosine", free_bits
    bundle = load_data(cfg.data)
    log(bundle.describe())

    run_dir = out_dir / f"text-{name}"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    run = vaekit.train(cfg, out=run_dir, quiet=quiet, data=bundle, pictures=False)
    vae_seconds = time.perf_counter() - t0
    test = bundle.test if n_test is None else bundle.test[:n_test]
    ev = vaekit.evaluate(run.model, test, k=k, quiet=quiet)

    lm, lm_seconds = train_lm(bundle, cfg, log)
    lm_nll = score_lm(lm, test)
    tokens = int((test != PAD).sum())
    result = {
        "corpus": name, "file": file, "test_lines": int(test.shape[0]), "tokens": tokens, "k": k,
        "epochs": cfg.train.epochs, "latent": latent, "free_bits": free_bits,
        "vae": {"nll_nats": ev["nll_nats"], "perplexity": ev["perplexity"], "elbo_nats": ev["elbo_nats"],
                "kl_nats": ev["kl_nats"], "active_units": ev["active_units"], "train_seconds": vae_seconds,
                "eval_seconds": ev["seconds"]},
        "lm": {"nll_nats": lm_nll, "perplexity": math.exp(lm_nll * test.shape[0] / tokens),
               "train_seconds": lm_seconds},
    }
    result["nll_ratio"] = ev["nll_nats"] / lm_nll
    torch.manual_seed(0)
    result["samples"] = run.media.samples(run.model, 10, "sample", seed=0)
    a, b = test[:1], test[1:2]
    result["interpolation"] = run.media.interpolations(run.model, a, b, 8)[0]
    result["interpolation_ends"] = [run.vocab.decode(a[0]), run.vocab.decode(b[0])]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"text-{name}.json").write_text(json.dumps(result, indent=2))

    v, m = result["vae"], result["lm"]
    print(f"\n{name}: {result['test_lines']:,} test lines, {tokens:,} tokens (with end of line), k = {k}")
    print(f"  VAE  NLL {v['nll_nats']:.3f} nats/line  perplexity {v['perplexity']:.3f}  KL {v['kl_nats']:.2f} nats  "
          f"active units {v['active_units']}/{latent}  (train {vae_seconds:.0f} s, NLL {v['eval_seconds']:.0f} s)")
    print(f"  LM   NLL {m['nll_nats']:.3f} nats/line  perplexity {m['perplexity']:.3f}  (train {lm_seconds:.0f} s)")
    print(f"  VAE / LM NLL: {result['nll_ratio']:.4f}  (target <= 1.02, KL >= 3, active units >= 4)")
    print("  samples: " + " | ".join(result["samples"]))
    print(f"  interpolation {result['interpolation_ends'][0]!r} -> {result['interpolation_ends'][1]!r}: "
          + " | ".join(result["interpolation"]))
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/text", help="folder with names.txt and tinyshakespeare.txt")
    p.add_argument("--corpus", choices=["names", "shakespeare", "all"], default="all")
    p.add_argument("--epochs", type=int, help="override the epochs of both models")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    if not Path(a.data).is_dir():
        print(f"{a.data}: not found; pass --data path/to/shared/data/text", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for name in (["names", "shakespeare"] if a.corpus == "all" else [a.corpus]):
        run_corpus(name, a.data, a.out, a.epochs, a.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
