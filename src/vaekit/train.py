"""The training loop: read :meth:`Trainer.fit` top to bottom.

data bundle -> model -> for each epoch: shuffled index slices of the in-memory training
tensor (under torchrun: this process's share of each global batch), one optimiser step per
batch, statistics accumulated on the device -> validation ELBO -> metrics.csv row ->
checkpoints -> pictures at the end. With ``--ema``, a moving average of the weights is
updated after every step and is what validation and ``model.safetensors`` see.

On CUDA (``--cuda-graph auto``), the step of a full batch is captured once in a CUDA graph
(:class:`GraphedStep`) and replayed: forward, backward, the non-finite check and Adam in one
launch, where a small network otherwise spends its time launching kernels one by one.

Surviving what goes wrong:
- a step whose loss or gradient is not finite is skipped (fused Adam's ``found_inf``,
  no host sync) and counted; ``max_bad_steps`` in a row stop training;
- ``state/last.pt`` (weights, averaged weights, optimiser, scheduler, RNG, counters) is
  written atomically at the end of every epoch, never with non-finite weights;
  ``vaekit train --resume`` continues from it and ends with the same weights as an
  uninterrupted run (CPU, same seed);
- Ctrl-C stops with the last checkpoint on disk and says how to resume.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import torch

from . import __version__
from . import distributed as dist
from .checkpoint import load_state, save_state, save_weights
from .config import Config, auto_batch_size, auto_free_bits, load_yaml, save_yaml
from .data import Bundle, load_data
from .errors import VaekitError
from .evaluate import elbo_sums, iwae_sum
from .model import build_model, likelihood_name, resolve_net
from .objectives import Objective
from .progress import progress
from .run import Run, load_into, resolve_device, saved_data

METRIC_FIELDS = ["epoch", "train_loss", "train_elbo", "train_rec", "train_kl", "valid_elbo", "valid_rec",
                 "valid_kl", "beta", "lr", "seconds", "examples_per_s", "skipped_steps", "valid_iwae"]
STATE_FILE = Path("state") / "last.pt"


def check_data_fits(config: Config, bundle: Bundle) -> None:
    info = bundle.info()
    config.model.net = resolve_net(config.model.net, bundle.modality)
    if config.train.free_bits is None:
        config.train.free_bits = auto_free_bits(bundle.modality)
    try:
        build_model(config.model, info)
    except ValueError as e:
        raise VaekitError(f"{config.data.source}: {e}.") from None
    lik = likelihood_name(config.model, info)
    if config.model.conditional and any(bundle.labels(s) is None for s in ("train", "valid", "test")):
        raise VaekitError(f"{config.data.source}: a conditional model needs labels, and these data have none "
                          f"(labels come from IDX label files, a 'y' array, sub-folder names, or --label-from "
                          f"for audio).")
    if lik == "bernoulli" and bundle.value != "binary":
        raise VaekitError(f"{config.data.source}: the Bernoulli likelihood needs binary pixels but the data are "
                          f"{bundle.value}; add --binarize dynamic (or static/threshold), or use another likelihood.")
    if lik == "logistic" and bundle.value not in ("levels", "binary", "continuous"):
        raise VaekitError(f"{config.data.source}: the discretized logistic likelihood needs values in [0, 1], "
                          f"but these data are {bundle.value}; use --likelihood gaussian.")


def default_run_dir(bundle: Bundle) -> Path:
    return Path("runs") / f"{Path(bundle.name).stem or 'data'}-{datetime.now():%Y%m%d-%H%M%S}"


def _prepare_dir(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VaekitError(f"{out}: already exists and is not empty; choose another --out (or --resume it).")
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


def make_adam(params, cfg) -> tuple[torch.optim.Adam, bool]:
    """Adam, fused where PyTorch has the kernel: faster on CPU and GPU, and it can skip a
    step on a device-side non-finite flag without a host sync."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True), True
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay), False


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512 on x86, BF16 on ARM), as oneDNN
    sees it. Without it, bfloat16 autocast is emulated: on an AVX2-only CPU the one-layer
    IWAE-50 step ran 12.6 times slower than in float32 (bench/RESULTS.md)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or a stripped build: assume it has it
        return True


def slow_amp_warning(device: torch.device, use_amp: bool) -> str | None:
    """A warning for mixed precision on a CPU that would emulate bfloat16; None otherwise."""
    if not use_amp or device.type != "cpu" or native_bfloat16():
        return None
    return ("warning: --amp on: this CPU has no native bfloat16 arithmetic, so mixed precision is emulated and "
            "can train ten times slower than float32 here (--amp off).")


def refuse_cuda_graph(blocker: str) -> VaekitError:
    return VaekitError(f"--cuda-graph on: this run cannot capture its training step in a CUDA graph: {blocker}.")


def cuda_graph_blocker(config: Config, device: torch.device, distributed: bool) -> str | None:
    """Why this run's training step cannot be captured in a CUDA graph; None if it can."""
    if device.type != "cuda":
        return f"it trains on {device.type}, not CUDA"
    if distributed:
        return "it trains on several processes (DistributedDataParallel)"
    if config.train.amp != "off":
        return "float16 mixed precision scales the loss on the host (add --amp off)"
    if config.model.net == "rnn":
        return "the recurrent network packs its sequences on the host"
    return None


class GraphedStep:
    """The training step of a full batch, captured once in a CUDA graph and then replayed.

    A small network's step is a few hundred kernels of microseconds each; launched one by one
    from Python, the launches are most of the step on a GPU. Here the first ``WARMUP`` steps
    run as usual (on a side stream, as capture requires), the next one is captured, and every
    later full batch is copied into the graph's input tensors and replayed: one launch.
    Whatever changes between steps lives in tensors the graph reads: the batch, its labels,
    the KL weight, and the learning rate of each parameter group (fused Adam reads it from a
    device tensor while capturing; the scheduler's float is copied into it when it changes).
    The sampling noise is fresh at every replay (PyTorch advances the generator's offset).
    A batch of another size (the last, partial one) takes the ordinary step on the same
    weights and optimiser state.
    """

    WARMUP = 3

    def __init__(self, trainer: "Trainer"):
        self.t = trainer
        self.graph = None
        self.warm = 0
        self.x = self.y = self.out = None
        self.beta = torch.zeros((), device=trainer.device)
        self.beta_value = None
        self.lrs = [torch.zeros((), device=trainer.device) for _ in trainer.opt.param_groups]
        self.lr_values = [None] * len(self.lrs)

    def __call__(self, x: torch.Tensor, y) -> torch.Tensor:
        t = self.t
        if self.x is None:
            self.x = torch.empty_like(x)
            self.y = None if y is None else torch.empty_like(y)
        self.x.copy_(x)
        if y is not None:
            self.y.copy_(y)
        beta = t.objective.beta_at(t.step)
        if beta != self.beta_value:
            self.beta.fill_(beta)
            self.beta_value = beta
        if self.graph is None:
            if self.warm < self.WARMUP:
                self.warm += 1
                return self._on_side_stream(lambda: t._step(self.x, self.y, beta=self.beta))
            try:
                self._capture()
            except RuntimeError as e:
                why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                if t.config.train.cuda_graph == "on":
                    raise VaekitError(f"--cuda-graph on: capturing the training step in a CUDA graph failed "
                                      f"({why}).") from None
                t.graphed = None
                if not t.quiet:
                    print(f"note: capturing the training step in a CUDA graph failed ({why}); training goes on "
                          f"without it (--cuda-graph off skips the attempt).", file=sys.stderr)
                return t._step(x, y)
        for i, g in enumerate(t.opt.param_groups):
            if g["lr"] != self.lr_values[i]:
                self.lrs[i].fill_(g["lr"])
                self.lr_values[i] = g["lr"]
        self.graph.replay()
        return self.out

    def _on_side_stream(self, fn):
        device = self.t.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            out = fn()
        torch.cuda.current_stream(device).wait_stream(side)
        torch.cuda.synchronize(device)
        return out

    def _capture(self) -> None:
        t = self.t
        groups = t.opt.param_groups
        saved = [(g["lr"], g["capturable"]) for g in groups]
        for g, lr in zip(groups, self.lrs):
            lr.fill_(g["lr"])
            g["lr"], g["capturable"] = lr, True
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(t.device)
        try:
            with torch.cuda.graph(graph):
                self.out = t._step(self.x, self.y, beta=self.beta)
        finally:  # the optimiser's own settings stay plain floats (checkpoints, schedulers, eager steps)
            for g, (lr, capturable) in zip(groups, saved):
                g["lr"], g["capturable"] = lr, capturable
        self.lr_values = [lr for lr, _ in saved]
        self.graph = graph


class Trainer:
    """Everything a training run holds between epochs; what ``state/last.pt`` saves."""

    def __init__(self, config: Config, bundle: Bundle, out: Path, d: dist.Dist, device: torch.device,
                 quiet: bool = False):
        config.check()
        self.config, self.bundle, self.out, self.d, self.device = config, bundle, Path(out), d, device
        self.quiet = quiet or not d.main
        tc = config.train
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
        self.objective = Objective.from_config(tc, self.steps_per_epoch)
        if config.model.refine_encoder:
            self.model.freeze_model()
        self.opt, self.fused = make_adam([p for p in self.model.parameters() if p.requires_grad], tc)
        self.raw = [p.detach() for p in self.model.parameters()]  # views of the weights' storage, made once
        self.ema = None  # with --ema: the averaged weights, one tensor per parameter
        self.restart_average()
        self.sched = make_scheduler(self.opt, tc, tc.epochs)
        self.gen = torch.Generator(device=device).manual_seed(tc.seed)  # data order: the same on every rank
        self.use_amp = tc.amp == "on" or (tc.amp == "auto" and device.type == "cuda")
        self.amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 12) \
            if self.use_amp and device.type == "cuda" else None
        # counters kept on the device; the host reads them only to decide whether to stop
        self.skipped = torch.zeros((), device=device)
        self.streak = torch.zeros((), device=device)
        # the step's non-finite flag and the unit scale of its gradient check: made once, so that a
        # step captured in a CUDA graph and the ordinary step share them
        self.found, self.one = torch.zeros((), device=device), torch.ones((), device=device)
        self.graph_blocker = cuda_graph_blocker(config, device, d.active) or (
            None if self.fused else "no fused Adam here")
        if tc.cuda_graph == "on" and self.graph_blocker:
            raise refuse_cuda_graph(self.graph_blocker)
        self.graphed = None if tc.cuda_graph == "off" or self.graph_blocker else GraphedStep(self)
        self.epoch, self.step, self.best, self.best_epoch = 0, 0, -math.inf, 0
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
                "skipped": self.skipped.cpu(), "streak": self.streak.cpu(),
                "ema": [e.cpu() for e in self.ema] if self.ema is not None else []}

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
            self.ema = [w.clone() for w in self.raw]

    def _update_average(self) -> None:
        """ema <- d ema + (1 - d) w, one fused op, no host sync. Over the first steps the decay
        is min(d, (1 + t) / (10 + t)), so the average does not lag behind the initial weights.
        (torch.optim.swa_utils.AveragedModel would read its step counter on the host every step.)"""
        decay = min(self.config.train.ema, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_(self.ema, self.raw, 1.0 - decay)

    @contextmanager
    def averaged(self):
        """With --ema, the averaged weights are in the model inside the block; else a no-op."""
        if self.ema is None:
            yield
            return
        with torch.no_grad():
            live = [w.clone() for w in self.raw]
            for w, e in zip(self.raw, self.ema):
                w.copy_(e)
        try:
            yield
        finally:
            with torch.no_grad():
                for w, saved in zip(self.raw, live):
                    w.copy_(saved)

    def saved_weights(self) -> dict:
        """The state dict that model.safetensors gets: with --ema, the averaged parameters."""
        state = self.model.state_dict()
        if self.ema is not None:
            names = [name for name, _ in self.model.named_parameters()]
            state.update(zip(names, self.ema))
        return state

    # ------------------------------------------------------------------ one step
    def _step(self, x: torch.Tensor, y, beta=None):
        """One optimiser step on batch x; returns its (rec, KL, loss) sums, zeros if skipped.
        Nothing in it reads a value back to the host, so it can be captured in a CUDA graph
        (then ``beta``, the KL weight, is a device tensor filled before every replay)."""
        tc, found = self.config.train, self.found
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            loss, stats = self.objective(self.net, x, self.step, y, beta=beta)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        # The non-finite check GradScaler uses: one fused pass over all gradients, on the device.
        found.zero_()
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, self.one)
        found.add_(torch.isfinite(stats[2]).logical_not()).clamp_(max=1.0)  # 1.0: this step is bad
        if tc.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        elif self.fused:
            self.opt.found_inf = found  # fused Adam skips the update when this is non-zero
            self.opt.step()
        elif not found.item():
            self.opt.step()
        self.skipped.add_(found)
        self.streak.add_(found).mul_(found)
        return torch.where(found > 0, 0.0, stats)

    # ------------------------------------------------------------------ the loop
    def fit(self, pictures: bool = True) -> Run:
        tc, bundle, d, device = self.config.train, self.bundle, self.d, self.device
        out = self.out
        n = bundle.train.shape[0]
        log = (lambda *a, **k: None) if self.quiet else print
        if self.epoch == 0:
            self.save_checkpoint()  # epoch 0: an interrupted first epoch can be resumed too
        iwae = self.objective.kind == "iwae"
        what = self.objective.name  # what picks the best weights: the valid ELBO, or IWAE-k bound
        metrics_file = open(out / "metrics.csv", "a", newline="") if d.main else None
        writer = csv.DictWriter(metrics_file, fieldnames=METRIC_FIELDS) if d.main else None
        if d.main and metrics_file.tell() == 0:
            writer.writeheader()
        # Batches are gathered from a 2-D view: indexing rows of (N, D) is much faster on CPU
        # than indexing the first dimension of (N, C, H, W).
        train_rows = bundle.train.reshape(n, -1)
        valid = bundle.valid[d.rank::d.world]
        conditional = bool(self.model.classes)
        train_y = bundle.train_labels if conditional else None
        valid_y = bundle.valid_labels[d.rank::d.world] if conditional else None
        local_batch = self.global_batch // d.world
        check_every = 1 if device.type == "cpu" else 50  # a host read is free on CPU, not on GPU
        bar = progress((tc.epochs - self.epoch) * self.steps_per_epoch * self.global_batch, self.quiet, unit="ex",
                       unit_scale=True,
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]{postfix}")
        try:
            while self.epoch < tc.epochs:
                epoch = self.epoch + 1
                bar.set_description(f"epoch {epoch}/{tc.epochs}", refresh=False)
                self.net.train()
                t0 = time.perf_counter()
                totals = torch.zeros(3, device=device)
                skipped_before = self.skipped.clone()
                perm = torch.randperm(n, device=device, generator=self.gen)
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
                        raise VaekitError(
                            f"training stopped in epoch {epoch} at step {self.step}: {tc.max_bad_steps} steps in a "
                            f"row had a non-finite loss or gradient; the checkpoint of epoch {self.epoch} in "
                            f"{out / STATE_FILE} is intact. Try a lower --lr or --clip-grad.")
                    bar.update(local_batch * d.world)
                # one reduction per epoch: sums over ranks of (rec, KL, loss, examples used)
                skipped_now = (self.skipped - skipped_before)
                used = torch.stack([totals[0], totals[1], totals[2],
                                    x.new_tensor(self.steps_per_epoch * local_batch if d.active else n)
                                    - skipped_now * local_batch])
                if device.type == "cuda":  # the steps are queued: time them, not their launches
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - t0
                with self.averaged():  # with --ema, the averaged weights are the ones validated
                    v = torch.cat([elbo_sums(self.model, valid, y=valid_y), valid.new_tensor([valid.shape[0]])])
                    if iwae:
                        v = torch.cat([v, iwae_sum(self.model, valid, self.objective.k, y=valid_y)])
                dist.all_reduce_sum(used, d)
                dist.all_reduce_sum(v, d)
                rec, kl, loss, count = used.tolist()
                if count <= 0:
                    raise VaekitError(f"every step of epoch {epoch} had a non-finite loss or gradient; "
                                      f"the checkpoint of epoch {self.epoch} in {out / STATE_FILE} is intact.")
                rec, kl, loss = rec / count, kl / count, loss / count
                v_rec, v_kl = (v[:2] / v[2]).tolist()
                v_elbo = -(v_rec + v_kl)
                v_iwae = (v[3] / v[2]).item() if iwae else None
                score = v_iwae if iwae else v_elbo  # the validation value of the training objective
                self.epoch = epoch
                if not math.isfinite(v_elbo) or not math.isfinite(score):
                    bad = what if math.isfinite(v_elbo) else "ELBO"
                    raise VaekitError(f"the validation {bad} is not finite after epoch {epoch}; the checkpoint "
                                      f"of epoch {epoch - 1} in {out / STATE_FILE} is intact.")
                row = {"epoch": epoch, "train_loss": loss, "train_elbo": -(rec + kl), "train_rec": rec,
                       "train_kl": kl, "valid_elbo": v_elbo, "valid_rec": v_rec, "valid_kl": v_kl,
                       "beta": self.objective.beta_at(self.step - 1), "lr": self.opt.param_groups[0]["lr"],
                       "seconds": seconds, "examples_per_s": count / seconds,
                       "skipped_steps": int(skipped_now.item()), "valid_iwae": v_iwae if iwae else ""}
                if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.sched.step(score)
                elif self.sched is not None:
                    self.sched.step()
                improved = score > self.best
                if improved:
                    self.best, self.best_epoch = score, epoch
                if d.main:  # the row first: a resume drops rows newer than the checkpoint
                    writer.writerow({k: (f"{val:.6g}" if isinstance(val, float) else val) for k, val in row.items()})
                    metrics_file.flush()
                    if improved:
                        save_weights(self.saved_weights(), out / "model.safetensors")
                    self.save_checkpoint()
                shown = f", valid IWAE-{self.objective.k} {v_iwae:.2f}" if iwae else ""
                bar.set_postfix_str(f"train ELBO {row['train_elbo']:.2f}, valid ELBO {v_elbo:.2f}{shown}",
                                    refresh=False)
                if not self.quiet and (epoch == 1 or epoch % max(1, tc.epochs // 10) == 0 or epoch == tc.epochs):
                    bar.write(f"epoch {epoch:4d}  train ELBO {row['train_elbo']:9.3f}  valid ELBO {v_elbo:9.3f}  "
                              f"(rec {v_rec:.3f}, KL {v_kl:.3f}){shown.replace(',', ' ')}  {count / seconds:,.0f} ex/s"
                              + (f"  {row['skipped_steps']} steps skipped" if row["skipped_steps"] else ""))
                if tc.patience and epoch - self.best_epoch >= tc.patience:
                    if not self.quiet:
                        bar.write(f"early stop: valid {what} has not improved for {tc.patience} epochs "
                                  f"(best {self.best:.3f} at epoch {self.best_epoch})")
                    break
        except KeyboardInterrupt:
            bar.close()
            if d.main:
                print(f"\ninterrupted in epoch {self.epoch + 1}; the checkpoint of epoch {self.epoch} is in "
                      f"{out / STATE_FILE}. Resume with:  vaekit train --resume {out}", file=sys.stderr)
            raise
        finally:
            bar.close()
            if metrics_file:
                metrics_file.close()

        dist.barrier(d)
        run = Run.load(out, device=str(device))
        if d.main:
            log(f"best valid {what} {self.best:.3f} nats at epoch {self.best_epoch}")
            if int(self.skipped.item()):
                log(f"{int(self.skipped.item())} steps with a non-finite loss or gradient were skipped")
            if pictures:
                from .generate import write_run_pictures
                from .report import write_report

                files = write_run_pictures(run, bundle) + [write_report(run, bundle=bundle)]
                log("pictures and report:")
                for f in files:
                    log(f"  {f}")
        dist.barrier(d)
        return run


def _start(config: Config, data: Bundle | None, saved: dict | None = None):
    d, device_name = dist.setup(config.train.device)
    device = resolve_device(device_name.split(":")[0]) if ":" not in device_name else torch.device(device_name)
    bundle = data if data is not None else load_data(config.data, saved)
    check_data_fits(config, bundle)
    blocker = cuda_graph_blocker(config, device, d.active)
    if config.train.cuda_graph == "on" and blocker:
        dist.teardown(d)
        raise refuse_cuda_graph(blocker)
    return d, device, bundle


def _check_same_model(config: Config, init) -> None:
    """Refining the encoder keeps the model of the run it starts from: refuse changed model flags
    (those of the inference network, a flow after the encoder, may change)."""
    ours, theirs = dataclasses.asdict(config.model), dataclasses.asdict(init.config.model)
    inference = ("refine_encoder", "flow", "flow_hidden")
    changed = sorted(k for k in ours if k not in inference and ours[k] != theirs[k])
    if changed:
        raise VaekitError(f"{init.path}: --refine-encoder fits the encoder to this run's model, which must stay as "
                          f"it is, but the model config differs in {', '.join(changed)}.")


def _describe(trainer: Trainer, log) -> None:
    c = trainer.config
    n_params = sum(p.numel() for p in trainer.model.parameters())
    procs = f" x {trainer.d.world} processes" if trainer.d.active else ""
    log(f"data   {trainer.bundle.describe()}")
    kind = f"conditional ({trainer.model.classes} classes) " if trainer.model.classes else ""
    log(f"model  {kind}{c.model.net} VAE, latent {c.model.latent}, {likelihood_name(c.model, trainer.info)} likelihood, "
        f"{n_params:,} parameters, on {trainer.device}{procs}" + (" (mixed precision)" if trainer.use_amp else ""))
    if trainer.device.type == "cuda" and c.train.cuda_graph != "off":
        log("step   replayed as one CUDA graph per batch (--cuda-graph off: the ordinary step)" if trainer.graphed
            else f"step   the ordinary step, not a CUDA graph: {trainer.graph_blocker}")
    log(f"run    {trainer.out}")
    warning = slow_amp_warning(trainer.device, trainer.use_amp)
    if warning and trainer.d.main:  # shown under --quiet too: it is worth knowing before a long run
        print(warning, file=sys.stderr)


def train(config: Config, out: str | Path | None = None, quiet: bool = False, data: Bundle | None = None,
          pictures: bool = True) -> Run:
    """Train a VAE as described by ``config``; write and return its run directory.

    Under ``torchrun`` every process calls this; they train one model with
    DistributedDataParallel and only rank 0 writes the run directory.
    """
    config.check()
    init = None
    if config.train.init:
        init = Run.load(config.train.init)  # a broken run is refused before anything is written
    d, device, bundle = _start(config, data, init.saved if init else None)
    info = bundle.info()
    start = None
    if init is not None:  # the weights (read once, by Run.load) are checked before the run directory is made
        if config.model.refine_encoder:
            _check_same_model(config, init)
        start = build_model(config.model, info)
        load_into(start, init.path / "model.safetensors", "the model this run's config builds",
                  weights=start.complete_weights(init.model.state_dict()))
    bundle.to(device)
    target = None
    if d.main:
        target = _prepare_dir(Path(out) if out else default_run_dir(bundle))
        save_yaml({"vaekit": __version__, **config.to_dict(), "data_info": info}, target / "config.yaml")
        if bundle.vocab is not None:
            bundle.vocab.save(target / "vocab.json")
    target = Path(dist.broadcast_object(str(target), d))
    trainer = Trainer(config, bundle, target, d, device, quiet)
    if start is not None:
        trainer.model.load_state_dict(start.state_dict())
        trainer.restart_average()
    _describe(trainer, (lambda *a: None) if trainer.quiet else print)
    if init is not None and not trainer.quiet:
        print(f"init   weights of {init.path}")
    try:
        return trainer.fit(pictures)
    finally:
        dist.teardown(d)


def resume(path: str | Path, quiet: bool = False, epochs: int | None = None, data: Bundle | None = None,
           pictures: bool = True) -> Run:
    """Continue a run from ``state/last.pt``; with ``epochs``, train to that many epochs in all."""
    path = Path(path)
    cfg_file, state_file = path / "config.yaml", path / STATE_FILE
    if not cfg_file.is_file():
        raise VaekitError(f"{path}: not a vaekit run directory (no config.yaml), so it cannot be resumed.")
    raw = load_yaml(cfg_file)
    raw.pop("vaekit", None)
    info = raw.pop("data_info", None)
    config = Config.from_dict(raw, origin=str(cfg_file))
    if epochs is not None:
        config.train.epochs = epochs
    if not state_file.is_file():
        raise VaekitError(f"{state_file}: no checkpoint to resume from.")
    state = load_state(state_file)
    d, device, bundle = _start(config, data, saved_data(path, info or {}))
    if info and list(bundle.shape) != list(info.get("shape", [])):
        raise VaekitError(f"{config.data.source}: images are now {list(bundle.shape)}, but the run was trained on "
                          f"{info.get('shape')}.")
    bundle.to(device)
    trainer = Trainer(config, bundle, path, d, device, quiet)
    trainer.restore(state, state_file)
    if trainer.epoch >= config.train.epochs:
        dist.teardown(d)
        raise VaekitError(f"{path}: already trained for {trainer.epoch} of {config.train.epochs} epochs; "
                          f"pass --epochs with a larger number to train further.")
    if d.main:
        _truncate_metrics(path / "metrics.csv", trainer.epoch)
        if epochs is not None:
            save_yaml({"vaekit": __version__, **config.to_dict(), "data_info": info}, cfg_file)
    if not trainer.quiet:
        print(f"resuming {path} after epoch {trainer.epoch} (best valid {trainer.objective.name} "
              f"{trainer.best:.3f})")
    _describe(trainer, (lambda *a: None) if trainer.quiet else print)
    try:
        return trainer.fit(pictures)
    finally:
        dist.teardown(d)


def _truncate_metrics(path: Path, epoch: int) -> None:
    """Drop rows written after the checkpoint (a run killed between the two writes)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    keep = [r for r in rows if int(r["epoch"]) <= epoch]
    if len(keep) != len(rows) or header != METRIC_FIELDS:  # (also a file written before a column was added)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            w.writeheader()
            w.writerows(keep)

