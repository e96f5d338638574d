"""The training loop: read :meth:`Trainer.fit` top to bottom.

data bundle -> model -> for each epoch (:meth:`Trainer.train_epoch`): shuffled index slices of
the in-memory training tensor (under torchrun: this process's share of each global batch), one
optimiser step per batch (:meth:`Trainer._step`), statistics accumulated on the device ->
:meth:`Trainer.validate` -> :meth:`Trainer.end_epoch`: a metrics.csv row, the learning-rate
schedule, checkpoints -> :meth:`Trainer.finish`: pictures and report.

The rest lives beside it: the acceleration policy (:mod:`.accel`), weight averaging
(:mod:`.averaging`), the run directory, set-up and resume (:mod:`.rundir`, :mod:`.start`).

Surviving what goes wrong:
- a step whose loss or gradient is not finite (or, with ``skip_grad_norm``, whose gradient norm
  is an outlier) is skipped (fused Adam's ``found_inf``, no host sync) and counted; ``max_bad_steps`` in a row stop training;
- ``state/last.pt`` (weights, averaged weights, optimiser, scheduler, RNG, counters) is
  written atomically at the end of every epoch, never with non-finite weights;
  ``vaekit train --resume`` continues from it and ends with the same weights as an
  uninterrupted run (CPU, same seed);
- Ctrl-C stops with the last checkpoint on disk and says how to resume.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..threads import Threads
from ..tracking import trackers
from ..version import __version__
from ..config import Config, auto_batch_size
from ..errors import Preempted, VaekitError
from ..eval import active_units_of, elbo_sums, iwae_sum
from ..eval.metrics import COLLAPSE_KL, COLLAPSE_REMEDIES, collapse_epoch
from ..kinds import Bundle
from ..model import Objective, build_model
from ..progress import progress
from ..run import Run
from . import averaging
from . import distributed as dist
from .accel import CompiledLoss, GraphedStep, Precision, compile_plan, cuda_graph_blocker, refuse_cuda_graph
from ..checkpoint import load_state, save_state, save_weights
from .rundir import STATE_FILE, MetricsLog, preemption_signals


def make_scheduler(opt, cfg, epochs):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=cfg.min_lr)
    if cfg.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=10,
                                                          min_lr=cfg.min_lr)
    return None


def make_adam(params, cfg) -> tuple[torch.optim.Adam, bool]:
    """Adam, fused where PyTorch has the kernel: faster on CPU and GPU, and it can skip a
    step on a device-side non-finite flag without a host sync."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True), True
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay), False



def sortish(perm: torch.Tensor, lengths: torch.Tensor, batch: int, gen: torch.Generator, pool: int = 50) -> torch.Tensor:
    """A shuffled order ``perm`` rearranged into batches of sequences of similar lengths: cut into
    pools of ``pool`` batches, each pool sorted by length (longest first) and cut into batches,
    then the full batches shuffled with ``gen`` (a last partial batch stays last, where an epoch
    with a partial batch expects it). Every example still comes once an epoch, and which ones
    share a batch still changes from epoch to epoch."""
    n = len(perm)
    groups = [part[torch.argsort(lengths[part], descending=True, stable=True)] for part in perm.split(pool * batch)]
    batches = list(torch.cat(groups).split(batch))
    last = [batches.pop()] if n % batch else []
    order = torch.randperm(len(batches), device=perm.device, generator=gen).tolist()
    return torch.cat([batches[i] for i in order] + last)


class Diverged(Exception):
    """Training has diverged (the message says how); the trainer recovers or stops."""


@dataclass
class EpochSums:
    """One epoch's training sums over every process: reconstruction, KL, loss, examples used."""

    rec: float
    kl: float
    loss: float
    count: float
    skipped: int
    seconds: float


class Trainer:
    """Everything a training run holds between epochs; what ``state/last.pt`` saves."""

    def __init__(self, config: Config, bundle: Bundle, out: Path, d: dist.Dist, device: torch.device,
                 quiet: bool = False):
        config.check()
        self.config, self.bundle, self.out, self.d, self.device = config, bundle, Path(out), d, device
        self.quiet = quiet or not d.main
        tc = config.train
        self.threads = Threads(tc.threads) if device.type == "cpu" else None
        torch.manual_seed(tc.seed)  # the same initial weights on every rank
        self.info = bundle.info()
        self.model = build_model(config.model, self.info).to(device)
        self.net = self.model
        if d.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        n = bundle.train.shape[0]
        self.global_batch = min(tc.batch_size or auto_batch_size(n), n)
        if d.active and self.global_batch % d.world:
            raise VaekitError(f"--batch-size {self.global_batch} must be a multiple of the {d.world} processes.")
        # under DDP the last partial global batch is dropped, so every rank has the same batch size
        self.steps_per_epoch = n // self.global_batch if d.active else math.ceil(n / self.global_batch)
        if self.steps_per_epoch == 0:
            raise VaekitError(f"{config.data.source}: {n} training examples are fewer than one batch of "
                              f"{self.global_batch}.")
        self.objective = Objective.from_config(tc, self.steps_per_epoch, n, self.model)
        if d.active and self.objective.state_dict():
            raise VaekitError(f"--objective {tc.objective} trains a part of its own beside the model, which "
                              f"several processes (torchrun) would each train apart; train it in one process.")
        if config.model.refine_encoder:
            self.model.freeze_model()
        self.opt, self.fused = make_adam([p for p in self.model.parameters() if p.requires_grad], tc)
        self.raw = [p.detach() for p in self.model.parameters()]  # views of the weights' storage, made once
        self.ema = None  # with --ema: the averaged weights, one tensor per parameter
        self.restart_average()
        self.sched = make_scheduler(self.opt, tc, tc.epochs)
        self.gen = torch.Generator(device=device).manual_seed(tc.seed)  # data order: the same on every rank
        # examples of many lengths (a bundle whose meta has each split's lengths: sequences): batches of
        # similar lengths (sortish), so that a batch cut to its longest example computes few padded steps
        lengths = (bundle.meta or {}).get("lengths", {}).get("train")
        lengths = None if lengths is None or len(lengths) != n else torch.tensor(lengths, device=device)
        if tc.batch_order == "sortish" and lengths is None:
            raise VaekitError(f"{config.data.source}: --batch-order sortish groups sequences by length, and these "
                              f"data are not sequences of several lengths; use random.")
        self.train_lengths = None if tc.batch_order == "random" else lengths
        self.precision = Precision(tc.amp, device)
        self.use_amp, self.scaler = self.precision.enabled, self.precision.scaler
        # counters kept on the device; the host reads them only to decide whether to stop
        self.skipped = torch.zeros((), device=device)
        self.streak = torch.zeros((), device=device)
        self.norm_max = torch.zeros((), device=device)   # the epoch's largest gradient norm (with --clip-grad/--skip-grad-norm)
        # the step's non-finite flag and the unit scale of its gradient check: made once, so that a
        # step captured in a CUDA graph and the ordinary step share them
        self.found, self.one = torch.zeros((), device=device), torch.ones((), device=device)
        compiling, self.compile_said = compile_plan(config, self.model, self.objective, device, d.active,
                                                   tc.epochs * self.steps_per_epoch)
        self.graph_blocker = cuda_graph_blocker(config, device, d.active) or (
            None if self.fused else "no fused Adam here") or (
            None if self.objective.traceable else f"--objective {tc.objective} reads the step on the host") or (
            getattr(self.model.prior, "host_step", None)) or (
            "the step is compiled instead (--compile on)" if compiling and tc.compile == "on" else None)
        if tc.cuda_graph == "on" and self.graph_blocker:
            raise refuse_cuda_graph(self.graph_blocker)
        self.graphed = None if tc.cuda_graph == "off" or self.graph_blocker else GraphedStep(self)
        if compiling and self.graphed is not None:   # --compile auto on CUDA: the graph replays the whole step
            compiling, self.compile_said = False, "not compiled: the step is replayed as a CUDA graph"
        self.local_batch = self.global_batch // d.world
        # the objective of a full batch compiled (--compile); None: the eager objective
        self.compiled = CompiledLoss(self) if compiling else None
        self.epoch, self.step, self.best, self.best_epoch = 0, 0, -math.inf, 0
        self.recoveries = 0  # times training went back to its last checkpoint after diverging
        self.reference = -math.inf  # the validation bound of the initial weights: a run far below it diverged
        self.history: list[dict] = []  # this process's metrics rows, for the collapse monitor
        self.on_epoch = None  # called with each epoch's row after its checkpoint (vaekit.train's on_epoch)
        self.collapse_said = False
        if d.active and tc.seed is not None:
            torch.manual_seed(tc.seed + 1000003 * d.rank)  # different sampling noise per rank

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {"vaekit": __version__, "epoch": self.epoch, "step": self.step, "best_valid_elbo": self.best,
                "best_epoch": self.best_epoch, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched else {},
                "scaler": self.scaler.state_dict() if self.scaler else {},
                "torch_rng": torch.get_rng_state(), "gen_rng": self.gen.get_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.zeros(0),
                "skipped": self.skipped.cpu(), "streak": self.streak.cpu(), "recoveries": self.recoveries, "reference": self.reference,
                "ema": [e.cpu() for e in self.ema] if self.ema is not None else [],
                "objective": self.objective.state_dict()}

    def restore(self, s: dict, where: Path) -> None:
        try:
            self.model.load_state_dict(s["model"])
            self.opt.load_state_dict(s["optimizer"])
            if self.sched and s["scheduler"]:
                self.sched.load_state_dict(s["scheduler"])
            if self.scaler and s["scaler"]:
                self.scaler.load_state_dict(s["scaler"])
            self.epoch, self.step = int(s["epoch"]), int(s["step"])
            self.best, self.best_epoch = float(s["best_valid_elbo"]), int(s["best_epoch"])
            self.skipped.copy_(s["skipped"])
            self.streak.copy_(s["streak"])
            self.recoveries = int(s.get("recoveries", 0))  # (0 in checkpoints written before recovery existed)
            self.reference = float(s.get("reference", -math.inf))
            if self.objective.state_dict():
                self.objective.load_state_dict(s["objective"])
            if self.ema is not None:
                if len(s["ema"]) != len(self.ema):
                    raise ValueError("no averaged weights saved")
                for e, saved in zip(self.ema, s["ema"]):
                    e.copy_(saved)
            if self.d.main:
                torch.set_rng_state(s["torch_rng"])
            self.gen.set_state(s["gen_rng"])
            if self.device.type == "cuda" and s["cuda_rng"].numel():
                torch.cuda.set_rng_state(s["cuda_rng"], self.device)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise VaekitError(f"{where}: trainer state does not match this run's config "
                              f"({str(e).splitlines()[0][:160]}).") from None

    def save_checkpoint(self) -> None:
        if not self.d.main:
            return
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise VaekitError(f"the weights became non-finite in epoch {self.epoch}; nothing was written, and the "
                              f"checkpoint of epoch {self.epoch - 1} in {self.out / STATE_FILE} is intact.")
        save_state(self.state(), self.out / STATE_FILE)

    # ------------------------------------------------------------------ weight averaging
    def restart_average(self) -> None:
        """Start the moving average of the weights (with --ema) from the weights as they are."""
        if self.config.train.ema > 0:
            self.ema = averaging.start(self.raw)

    def _update_average(self) -> None:
        averaging.update(self.ema, self.raw, self.config.train.ema, self.step)

    def averaged(self):
        """With --ema, the averaged weights are in the model inside the block; else a no-op."""
        return averaging.swapped_in(self.raw, self.ema)

    def saved_weights(self) -> dict:
        """The state dict that model.safetensors gets: with --ema, the averaged parameters."""
        return averaging.saved_weights(self.model, self.ema)

    # ------------------------------------------------------------------ one step
    def _step(self, x: torch.Tensor, y, beta=None):
        """One optimiser step on batch x; returns its (rec, KL, loss) sums, zeros if skipped.
        Nothing in it reads a value back to the host, so it can be captured in a CUDA graph
        (then ``beta``, the KL weight, is a device tensor filled before every replay)."""
        tc, found = self.config.train, self.found
        with self.precision.autocast():
            if self.compiled is not None and x.shape[0] == self.local_batch:   # a partial batch: eager
                loss, stats = self.compiled(x, y)
            else:
                loss, stats = self.objective(self.net, x, self.step, y, beta=beta)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        # 1.0 where this step is bad: a loss that is not finite, or (the check GradScaler uses, one
        # fused pass over all gradients on the device, which sets the flag) a gradient
        found.copy_(torch.isfinite(stats[2]).logical_not())
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, self.one)
        if tc.skip_grad_norm > 0 or tc.clip_grad > 0:   # the norm before clipping, on the device
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_grad or float("inf"))
            self.norm_max.copy_(torch.maximum(self.norm_max, torch.where(torch.isfinite(norm), norm, 0.0)))
            if tc.skip_grad_norm > 0:   # an outlier update (VDVAE's skip)
                found.copy_(torch.maximum(found, (norm > tc.skip_grad_norm).to(found.dtype)))
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        elif self.fused:
            self.opt.found_inf = found  # fused Adam skips the update when this is non-zero
            self.opt.step()
        elif not found.item():
            self.opt.step()
        self.objective.after_step(found)
        self.skipped.add_(found)
        self.streak.add_(found).mul_(found)
        return torch.where(found > 0, 0.0, stats)

    # ------------------------------------------------------------------ the loop
    def fit(self, pictures: bool = True) -> Run:
        tc = self.config.train
        if self.epoch == 0:
            self.reference = self.initial_score()
            self.save_checkpoint()  # epoch 0: an interrupted first epoch can be resumed too
        metrics = MetricsLog(self.out) if self.d.main else None
        self.trackers = trackers(self.out, self.config, self.epoch) if self.d.main else []
        bar = progress((tc.epochs - self.epoch) * self.steps_per_epoch * self.global_batch, self.quiet, unit="ex",
                       unit_scale=True,
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]{postfix}")
        try:
            with preemption_signals():
                self._epochs(metrics, bar)
        except (KeyboardInterrupt, Preempted) as e:
            bar.close()
            if self.d.main:
                how = "interrupted" if isinstance(e, KeyboardInterrupt) else f"stopped by {e}"
                print(f"\n{how} in epoch {self.epoch + 1}; the checkpoint of epoch {self.epoch} is in "
                      f"{self.out / STATE_FILE}. Resume with:  vaekit train --resume {self.out}", file=sys.stderr)
            raise
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
            for t in self.trackers:
                t.close(finished=self.epoch >= tc.epochs)
        return self.finish(pictures)

    def _epoch(self, epoch: int, metrics, bar) -> None:
        """Train, validate and record one epoch; on divergence, recover (or stop) instead."""
        try:
            sums = self.train_epoch(epoch, bar)
            valid = self.validate()
            self.check_valid(epoch, valid)
        except Diverged as e:
            self.recover(e, bar)
            return
        self.end_epoch(epoch, sums, valid, metrics, bar)
        if self.on_epoch is not None:
            self.on_epoch(self.history[-1])
        changed = self.threads.revise() if self.threads is not None else None
        if changed and not self.quiet:
            bar.write(changed)

    def initial_score(self) -> float:
        """The validation bound of the weights as they start, the yardstick of divergence; its
        random draws leave the run's random streams as they were."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            score = self.validate()["score"]
        return score if math.isfinite(score) else -math.inf

    def check_valid(self, epoch: int, valid: dict) -> None:
        """Divergence seen in validation: a bound that is not finite, or one fallen more than half
        its size (and at least 10 nats) below the best so far or that of the initial weights."""
        what = self.objective.name
        if not math.isfinite(valid["elbo"]) or not math.isfinite(valid["score"]):
            raise Diverged(f"the validation {what if math.isfinite(valid['elbo']) else 'ELBO'} is not finite after "
                           f"epoch {epoch}")
        best = max(self.best, self.reference)
        if math.isfinite(best) and valid["score"] < best - max(10.0, 0.5 * abs(best)):
            raise Diverged(f"the validation {what} fell from {best:.2f} to {valid['score']:.2f} in epoch {epoch}")

    def recover(self, why: "Diverged", bar) -> None:
        """Go back to the last checkpoint with half the learning rate and a new data order
        (``--on-divergence recover``, at most ``--max-recoveries`` times), or stop with the
        checkpoint intact."""
        tc = self.config.train
        if tc.on_divergence == "stop" or self.recoveries >= tc.max_recoveries:
            tried = f" after {self.recoveries} recoveries" if self.recoveries else ""
            raise VaekitError(f"training stopped{tried}: {why}; the checkpoint of epoch {self.epoch} in "
                              f"{self.out / STATE_FILE} is intact. Try a lower --lr or --clip-grad.")
        count = self.recoveries + 1
        # the learning rates as they are now (lowered by the recoveries since the checkpoint), halved
        lrs = [g["lr"] * 0.5 for g in self.opt.param_groups]
        base = [lr * 0.5 for lr in self.sched.base_lrs] if hasattr(self.sched, "base_lrs") else None
        self.restore(load_state(self.out / STATE_FILE), self.out / STATE_FILE)
        self.recoveries = count
        self.norm_max.zero_()   # the epoch's row gives the largest norm of the attempt that completes it
        for g, lr in zip(self.opt.param_groups, lrs):
            g["lr"] = lr
        if base is not None:
            self.sched.base_lrs = base
        self.gen.manual_seed(tc.seed + 7919 * count)          # another data order
        torch.manual_seed(tc.seed + 7919 * count + 1)         # and other sampling noise
        if self.graphed is not None:                          # the optimiser's state tensors are new
            self.graphed = GraphedStep(self)
        if self.d.main:  # said under --quiet too (on stderr): the run is not the one that was asked for
            say = (lambda m: print(m, file=sys.stderr)) if self.quiet else bar.write
            say(f"recovered: {why}; back to the checkpoint of epoch {self.epoch}, learning rate halved to "
                f"{self.opt.param_groups[0]['lr']:.3g} (recovery {count} of at most {tc.max_recoveries})")
        # the checkpoint stays as it is until the next good epoch, which saves the lower learning rate too

    def _epochs(self, metrics, bar) -> None:
        """Epochs until the last one, or until the validation bound stops improving (--patience)."""
        tc = self.config.train
        while self.epoch < tc.epochs:
            epoch = self.epoch + 1
            bar.set_description(f"epoch {epoch}/{tc.epochs}", refresh=False)
            self._epoch(epoch, metrics, bar)
            if tc.patience and epoch - self.best_epoch >= tc.patience:
                if not self.quiet:
                    bar.write(f"early stop: valid {self.objective.name} has not improved for {tc.patience} "
                              f"epochs (best {self.best:.3f} at epoch {self.best_epoch})")
                break

    def train_epoch(self, epoch: int, bar) -> EpochSums:
        """One pass over the shuffled training set, one optimiser step per batch."""
        tc, bundle, d, device = self.config.train, self.bundle, self.d, self.device
        n = bundle.train.shape[0]
        # Batches are gathered from a 2-D view: indexing rows of (N, D) is much faster on CPU
        # than indexing the first dimension of (N, C, H, W).
        train_rows = bundle.train.reshape(n, -1)
        train_y = bundle.train_labels if self.model.classes else None
        local_batch = self.local_batch
        check_every = 1 if device.type == "cpu" else 50  # a host read is free on CPU, not on GPU
        self.net.train()
        t0 = time.perf_counter()
        totals = torch.zeros(3, device=device)
        skipped_before = self.skipped.clone()
        perm = torch.randperm(n, device=device, generator=self.gen)
        if self.train_lengths is not None:
            perm = sortish(perm, self.train_lengths, self.global_batch, self.gen)
        for s in range(self.steps_per_epoch):
            idx = perm[s * self.global_batch:(s + 1) * self.global_batch]
            if d.active:
                idx = idx[d.rank::d.world]
            x = train_rows[idx].view(-1, *bundle.shape)
            if bundle.dynamic:
                x = torch.bernoulli(x, generator=self.gen)
            y = None if train_y is None else train_y[idx]
            if self.graphed is not None and x.shape[0] == local_batch:
                totals += self.graphed(x, y)
            else:
                totals += self._step(x, y)
            if self.ema is not None:
                self._update_average()
            self.step += 1
            if self.step % check_every == 0 and self.streak.item() >= tc.max_bad_steps:
                raise Diverged(f"{tc.max_bad_steps} steps in a row had a non-finite loss or gradient"
                               + (f" or a gradient norm above --skip-grad-norm {tc.skip_grad_norm:g}"
                                  if tc.skip_grad_norm else "") + f", in epoch {epoch} at step {self.step}")
            bar.update(local_batch * d.world)
        skipped_now = self.skipped - skipped_before
        used = torch.stack([totals[0], totals[1], totals[2],
                            totals.new_tensor(self.steps_per_epoch * local_batch if d.active else n)
                            - skipped_now * local_batch])
        if device.type == "cuda":  # the steps are queued: time them, not their launches
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        dist.all_reduce_sum(used, d)  # one reduction per epoch: sums over ranks
        rec, kl, loss, count = used.tolist()
        if count <= 0:
            raise Diverged(f"every step of epoch {epoch} had a non-finite loss or gradient"
                           + (f" or a gradient norm above --skip-grad-norm {tc.skip_grad_norm:g}"
                              if tc.skip_grad_norm else ""))
        return EpochSums(rec / count, kl / count, loss / count, count, int(skipped_now.item()), seconds)

    def validate(self) -> dict:
        """The validation bound (ELBO, and for an importance-weighted objective its IWAE-k bound) over every process's
        share of the validation set; with --ema, of the averaged weights."""
        d, bundle = self.d, self.bundle
        valid = bundle.valid[d.rank::d.world]
        valid_y = bundle.valid_labels[d.rank::d.world] if self.model.classes else None
        k = self.objective.valid_k
        iwae = k > 0
        latent = self.model.latent
        with self.averaged():
            parts = [valid.new_tensor([valid.shape[0]], dtype=torch.float32),
                     elbo_sums(self.model, valid, y=valid_y, moments=True)]
            if iwae:
                parts.append(iwae_sum(self.model, valid, k, y=valid_y))
            own = self.objective.validation_terms(self.model, valid, valid_y)
            if own is not None:
                parts.append(own.float())
            v = torch.cat(parts)
        dist.all_reduce_sum(v, d)
        n = v[0].item()
        rec, kl = (v[1:3] / n).tolist()
        rest = 3 + 2 * latent
        out = {"rec": rec, "kl": kl, "elbo": -(rec + kl), "iwae": (v[rest] / n).item() if iwae else None,
               "active_units": active_units_of(v[3:rest], round(n)),
               "objective": None if own is None else
               self.objective.validation_value(rec, kl, v[rest + iwae:], n)}
        # the validation value of the training objective: its own, else the IWAE bound or the ELBO
        out["score"] = out["objective"] if own is not None else out["iwae"] if iwae else out["elbo"]
        return out

    def end_epoch(self, epoch: int, sums: EpochSums, valid: dict, metrics: MetricsLog | None, bar) -> None:
        """The metrics row, the learning-rate schedule, and the weights and checkpoint on disk."""
        tc = self.config.train
        self.epoch = epoch
        iwae = valid["iwae"] is not None
        row = {"epoch": epoch, "train_loss": sums.loss, "train_elbo": -(sums.rec + sums.kl), "train_rec": sums.rec,
               "train_kl": sums.kl, "valid_elbo": valid["elbo"], "valid_rec": valid["rec"], "valid_kl": valid["kl"],
               "beta": self.objective.beta_at(self.step - 1), "lr": self.opt.param_groups[0]["lr"],
               "seconds": sums.seconds, "examples_per_s": sums.count / sums.seconds,
               "skipped_steps": sums.skipped, "valid_iwae": valid["iwae"] if iwae else "",
               "recoveries": self.recoveries, "valid_active_units": valid["active_units"],
               "valid_objective": "" if valid["objective"] is None else valid["objective"]}
        row["grad_norm_max"] = float(self.norm_max) if tc.clip_grad > 0 or tc.skip_grad_norm > 0 else ""
        self.norm_max.zero_()
        codebook = getattr(self.model.prior, "take_stats", dict)()   # a VQ-VAE's codes used this epoch
        row.update({"codes_used": codebook.get("codes_used", ""), "code_perplexity": codebook.get("code_perplexity", "")})
        if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.sched.step(valid["score"])
        elif self.sched is not None:
            self.sched.step()
        improved = valid["score"] > self.best
        if improved:
            self.best, self.best_epoch = valid["score"], epoch
        if metrics is not None:  # the row first: a resume drops rows newer than the checkpoint
            metrics.write(row)
            self.track(row)
            if improved:
                save_weights(self.saved_weights(), self.out / "model.safetensors")
            self.save_checkpoint()
            for t in self.trackers:
                t.checkpointed()
        self.watch_collapse(row, bar)
        shown = f", valid IWAE-{self.objective.valid_k} {valid['iwae']:.2f}" if iwae else ""
        if valid["objective"] is not None:
            shown += f", valid {self.config.train.objective} {valid['objective']:.2f}"
        bar.set_postfix_str(f"train ELBO {row['train_elbo']:.2f}, valid ELBO {valid['elbo']:.2f}{shown}",
                            refresh=False)
        own = self.objective.take_stats() if hasattr(self.objective, "take_stats") else {}
        if not self.quiet and (epoch == 1 or epoch % max(1, tc.epochs // 10) == 0 or epoch == tc.epochs):
            bar.write(f"epoch {epoch:4d}  train ELBO {row['train_elbo']:9.3f}  valid ELBO {valid['elbo']:9.3f}  "
                      f"(rec {valid['rec']:.3f}, KL {valid['kl']:.3f}){shown.replace(',', ' ')}  "
                      f"{sums.count / sums.seconds:,.0f} ex/s"
                      + (f"  {row['skipped_steps']} steps skipped" if row["skipped_steps"] else "")
                      + (f"  max grad norm {row['grad_norm_max']:.3g}" if row["grad_norm_max"] != "" else "")
                      + (f"  discriminator accuracy {own['disc_accuracy']:.3f}" if "disc_accuracy" in own else "")
                      + (f"  codes used {codebook['codes_used']}, perplexity {codebook['code_perplexity']:.1f}"
                         if codebook else ""))

    def track(self, row: dict) -> None:
        """The epoch's row to each tracker, and every ``track_every`` epochs (and at the last) the
        prior samples as the run's kind shows them."""
        if not self.trackers:
            return
        tc, epoch = self.config.train, int(row["epoch"])
        shown = None
        if epoch % tc.track_every == 0 or epoch == tc.epochs:
            from ..kinds import kind
            from ..run import saved_data

            media = kind(self.info.get("modality", "image"))(self.info, saved_data(self.out, self.info))
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), self.averaged():   # the run's random streams stay as they were
                torch.manual_seed(epoch)
                self.model.eval()
                unsampled = getattr(self.model.prior, "sample_blocker", None)
                shown = None if unsampled else media.render(self.model.sample(16))
                self.model.train()
        for t in self.trackers:
            t.epoch(row)
            if shown is not None:
                t.shown(shown, epoch)

    def watch_collapse(self, row: dict, bar) -> None:
        """Say once, in one line, when the posterior has collapsed (:func:`vaekit.eval.collapse_epoch`)."""
        self.history.append(row)
        start = collapse_epoch(self.history)
        if start is None or self.collapse_said or not self.d.main:
            return
        self.collapse_said = True
        say = (lambda m: print(m, file=sys.stderr)) if self.quiet else bar.write
        say(f"warning: posterior collapse: the validation KL has stayed under {COLLAPSE_KL:g} nats since epoch "
            f"{start}, so the decoder ignores z; remedies: {COLLAPSE_REMEDIES}.")

    def finish(self, pictures: bool) -> Run:
        """Load the run as written; on the main process, say how it went and write the pictures
        and the report."""
        d, tc = self.d, self.config.train
        dist.barrier(d)
        run = Run.load(self.out, device=str(self.device), data=self.bundle)
        if d.main and not self.quiet:
            print(f"best valid {self.objective.name} {self.best:.3f} nats at epoch {self.best_epoch}")
            if int(self.skipped.item()):
                print(f"{int(self.skipped.item())} steps with a non-finite loss or gradient"
                      + (f" or a gradient norm above {tc.skip_grad_norm:g}" if tc.skip_grad_norm else "") + " were skipped")
        if d.main and pictures:
            from ..report import write_report

            files = run.media.run_outputs(run, self.bundle) + [write_report(run, bundle=self.bundle)]
            if not self.quiet:
                print("pictures and report:")
                for f in files:
                    print(f"  {f}")
        dist.barrier(d)
        return run
