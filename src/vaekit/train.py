"""The training loop: read it top to bottom.

data bundle -> model -> for each epoch: shuffled index slices of the in-memory training
tensor, one optimiser step per batch, statistics accumulated on the device (one host sync
per epoch) -> validation ELBO -> metrics.csv row, checkpoints -> pictures at the end.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import save_state, save_weights
from .config import Config, save_yaml
from .data import Bundle, load_data
from .errors import VaekitError
from .evaluate import elbo as valid_elbo
from .model import build_model, likelihood_name
from .objectives import Objective
from .run import Run, resolve_device

METRIC_FIELDS = ["epoch", "train_loss", "train_elbo", "train_rec", "train_kl", "valid_elbo", "valid_rec",
                 "valid_kl", "beta", "lr", "seconds", "examples_per_s"]


def check_data_fits(config: Config, bundle: Bundle) -> None:
    lik = likelihood_name(config.model, bundle.info())
    if lik == "bernoulli" and bundle.value != "binary":
        raise VaekitError(f"{config.data.source}: the Bernoulli likelihood needs binary pixels but the data are "
                          f"{bundle.value}; add --binarize dynamic (or static/threshold), or use another likelihood.")


def default_run_dir(bundle: Bundle) -> Path:
    return Path("runs") / f"{Path(bundle.name).stem or 'data'}-{datetime.now():%Y%m%d-%H%M%S}"


def _prepare_dir(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VaekitError(f"{out}: already exists and is not empty; choose another --out.")
    try:
        (out / "state").mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
    except OSError as e:
        raise VaekitError(f"{out}: cannot create the run directory ({e.strerror}).") from None
    return out


def make_scheduler(opt, cfg, epochs):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=cfg.min_lr)
    if cfg.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=10,
                                                          min_lr=cfg.min_lr)
    return None


def train(config: Config, out: str | Path | None = None, quiet: bool = False, data: Bundle | None = None,
          pictures: bool = True) -> Run:
    """Train a VAE as described by ``config``; write and return its run directory."""
    config.check()
    tc = config.train
    torch.manual_seed(tc.seed)
    device = resolve_device(tc.device)
    bundle = data if data is not None else load_data(config.data)
    check_data_fits(config, bundle)
    info = bundle.info()
    bundle.to(device)

    model = build_model(config.model, info).to(device)
    out = _prepare_dir(Path(out) if out else default_run_dir(bundle))
    save_yaml({"vaekit": __version__, **config.to_dict(), "data_info": info}, out / "config.yaml")

    n = bundle.train.shape[0]
    bs = min(tc.batch_size, n)
    steps_per_epoch = math.ceil(n / bs)
    objective = Objective.from_config(tc, steps_per_epoch)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = make_scheduler(opt, tc, tc.epochs)
    gen = torch.Generator(device=device).manual_seed(tc.seed)
    # Batches are gathered from a 2-D view: indexing rows of (N, D) is much faster on CPU
    # than indexing the first dimension of (N, C, H, W).
    train_rows = bundle.train.reshape(n, -1)

    log = print if not quiet else (lambda *a, **k: None)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"data   {bundle.describe()}")
    log(f"model  {config.model.net} VAE, latent {config.model.latent}, "
        f"{likelihood_name(config.model, info)} likelihood, {n_params:,} parameters, on {device}")
    log(f"run    {out}")

    metrics_file = open(out / "metrics.csv", "w", newline="")
    writer = csv.DictWriter(metrics_file, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    best, best_epoch, step = -math.inf, 0, 0
    tty = sys.stderr.isatty()
    bar = tqdm(total=tc.epochs * n, unit="ex", unit_scale=True, disable=quiet, dynamic_ncols=True,
               mininterval=0.2 if tty else 30.0,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]{postfix}")
    try:
        for epoch in range(1, tc.epochs + 1):
            bar.set_description(f"epoch {epoch}/{tc.epochs}")
            model.train()
            t0 = time.perf_counter()
            totals = torch.zeros(3, device=device)
            perm = torch.randperm(n, device=device, generator=gen)
            for i in range(0, n, bs):
                x = train_rows[perm[i:i + bs]].view(-1, *bundle.shape)
                if bundle.dynamic:
                    x = torch.bernoulli(x, generator=gen)
                loss, stats = objective(model, x, step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if tc.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
                opt.step()
                totals += stats
                step += 1
                bar.update(x.shape[0])
            train_rec, train_kl, train_loss = (totals / n).tolist()
            train_elbo = -(train_rec + train_kl)
            seconds = time.perf_counter() - t0
            if not math.isfinite(train_loss):
                raise VaekitError(f"training diverged in epoch {epoch} (the loss is not finite); the best "
                                  f"checkpoint in {out} is intact. Try a lower --lr or --clip-grad.")
            v = valid_elbo(model, bundle.valid)
            lr = opt.param_groups[0]["lr"]
            row = {"epoch": epoch, "train_loss": train_loss, "train_elbo": train_elbo, "train_rec": train_rec,
                   "train_kl": train_kl, "valid_elbo": v["elbo"], "valid_rec": v["rec"], "valid_kl": v["kl"],
                   "beta": objective.beta_at(step - 1), "lr": lr, "seconds": seconds, "examples_per_s": n / seconds}
            writer.writerow({k: (f"{val:.6g}" if isinstance(val, float) else val) for k, val in row.items()})
            metrics_file.flush()
            bar.set_postfix_str(f"train ELBO {train_elbo:.2f}, valid ELBO {v['elbo']:.2f}")
            if not quiet and (epoch == 1 or epoch % max(1, tc.epochs // 10) == 0 or epoch == tc.epochs):
                bar.write(f"epoch {epoch:4d}  train ELBO {train_elbo:9.3f}  valid ELBO {v['elbo']:9.3f}  "
                          f"(rec {v['rec']:.3f}, KL {v['kl']:.3f})  {n / seconds:,.0f} ex/s")

            improved = v["elbo"] > best
            if improved:
                best, best_epoch = v["elbo"], epoch
                save_weights(model.state_dict(), out / "model.safetensors")
            save_weights(model.state_dict(), out / "state" / "last.safetensors")
            save_state({"epoch": epoch, "step": step, "best_valid_elbo": best, "best_epoch": best_epoch,
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched else {},
                        "torch_rng": torch.get_rng_state(), "gen_rng": gen.get_state()},
                       out / "state" / "trainer.pt")
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(v["elbo"])
            elif sched is not None:
                sched.step()
            if tc.patience and epoch - best_epoch >= tc.patience:
                bar.write(f"early stop: valid ELBO has not improved for {tc.patience} epochs (best {best:.3f} "
                          f"at epoch {best_epoch})") if not quiet else None
                break
    finally:
        bar.close()
        metrics_file.close()

    run = Run.load(out, device=str(device))
    log(f"best valid ELBO {best:.3f} nats at epoch {best_epoch}")
    if pictures:
        from .generate import write_run_pictures

        files = write_run_pictures(run, bundle)
        log("pictures:")
        for f in files:
            log(f"  {f}")
    return run
