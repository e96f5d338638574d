"""Starting a run: a new one (:func:`train`) or one continued from its checkpoint (:func:`resume`).

Both load the data, resolve every ``auto`` of the config against them and check that the model
fits (:func:`vaekit.config.resolve`), then hand a :class:`~vaekit.train.loop.Trainer` the run
directory. Under ``torchrun`` every process calls them; only rank 0 writes.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
from pathlib import Path

import torch

from ..version import __version__
from ..config import Config, plugins_of, resolve, save_yaml, without_effect
from ..errors import VaekitError
from .. import memory
from ..kinds import IN_MEMORY, Bundle, as_bundle, kind, load_data
from ..model import model_size
from ..model.objectives import draws
from ..run import Run, load_into, read_config, resolve_device, saved_data
from . import distributed as dist
from .accel import cuda_graph_blocker, refuse_cuda_graph, slow_amp_warning
from ..checkpoint import load_state
from .loop import Trainer
from .rundir import STATE_FILE, RunLock, default_run_dir, prepare_dir, truncate_metrics


def _start(config: Config, data: Bundle | None, saved: dict | None = None):
    d, device_name = dist.setup(config.train.device)
    device = resolve_device(device_name.split(":")[0]) if ":" not in device_name else torch.device(device_name)
    try:
        if data is not None:
            data = as_bundle(data, config.data)
            if data.origin != str(config.data.source):   # not what config.data names: say so in the run
                config.data.source = IN_MEMORY
        bundle = data if data is not None else load_data(config.data, saved)
        info = bundle.info()
        resolved = resolve(config, info)  # every "auto", once, and the parts checked against the data
        check_memory(config, info, device)
        if config.model.conditional and any(bundle.labels(s) is None for s in ("train", "valid", "test")):
            raise VaekitError(f"{config.data.source}: a conditional model needs labels in every split, and these "
                              f"data have none in some (labels come from IDX label files, a 'y' array, sub-folder "
                              f"names, or --label-from for audio).")
        blocker = cuda_graph_blocker(config, device, d.active)
        if config.train.cuda_graph == "on" and blocker:
            raise refuse_cuda_graph(blocker)
    except VaekitError:
        dist.teardown(d)
        raise
    return d, device, bundle, resolved


def check_memory(config: Config, info: dict, device: torch.device) -> None:
    """Refuse a model whose training would not fit in memory, before anything is allocated: the
    weights, their gradients, Adam's two moments (and the moving average), plus the activations
    of a batch, forward and backward."""
    params, per_row = model_size(config.model, info)
    t = config.train
    copies = 4 + (1 if t.ema else 0)
    rows = min(t.batch_size or 1, int(info.get("sizes", {}).get("train", 1) or 1)) * draws(t.objective, t.k, t.groups)[0]
    memory.require(4 * copies * params + 2 * 4 * rows * per_row,
                   f"training this model ({params:,} parameters, {rows:,} decoder rows a step)", device,
                   "choose a smaller --latent, --hidden, --channels or --batch-size")


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
    log(f"model  {kind}{c.model.net} VAE, {c.model.latent_words()}, {c.model.likelihood} likelihood, "
        f"{n_params:,} parameters, on {trainer.device}{procs}" + (" (mixed precision)" if trainer.use_amp else ""))
    if trainer.device.type == "cuda" and c.train.cuda_graph != "off":
        log("step   replayed as one CUDA graph per batch (--cuda-graph off: the ordinary step)" if trainer.graphed
            else f"step   the ordinary step, not a CUDA graph: {trainer.graph_blocker}")
    if trainer.graphed is None:
        log(f"step   {trainer.compile_said}")
    if trainer.threads is not None:
        log(f"cpu    {trainer.threads.describe()}")
    log(f"run    {trainer.out}")
    warnings = [slow_amp_warning(trainer.device, trainer.use_amp)]
    warnings += [f"warning: {w}." for w in without_effect(c)]
    for warning in warnings:
        if warning and trainer.d.main:  # shown under --quiet too: it is worth knowing before a long run
            print(warning, file=sys.stderr)


def train(config: Config, out: str | Path | None = None, quiet: bool = False, data=None,
          pictures: bool = True, on_epoch=None) -> Run:
    """Train a VAE as described by ``config``; write and return its run directory.

    ``data``: data in memory instead of ``config.data.source``: images as a numpy array or torch
    tensor, (images, labels), a dict of splits, or a torch ``Dataset``
    (:func:`vaekit.kinds.images.loader.bundle_from_arrays`), or a Bundle. The run records that
    its data came from memory, and asks for them again where it needs them
    (``Run.load(path, data=...)``). ``on_epoch``: called with each epoch's metrics row, after its
    checkpoint; what it raises stops training there (a sweep's pruning).

    Under ``torchrun`` every process calls this; they train one model with
    DistributedDataParallel and only rank 0 writes the run directory.
    """
    config = copy.deepcopy(config)  # resolved here, not in the caller's hands
    config.check()
    init = None
    if config.train.init:
        init = Run.load(config.train.init)  # a broken run is refused before anything is written
    d, device, bundle, resolved = _start(config, data, init.saved if init else None)
    info = bundle.info()
    if init is not None and config.model.refine_encoder:
        _check_same_model(config, init)
    bundle.to(device)
    # the trainer (and its model) first: a batch that does not fit, or init weights that do not match,
    # are refused before the run directory is made
    trainer = Trainer(config, bundle, Path(out or "."), d, device, quiet)
    trainer.on_epoch = on_epoch
    if init is not None:  # the weights, read once by Run.load, checked against this run's model
        load_into(trainer.model, init.path / "model.safetensors", "the model this run's config builds",
                  weights=trainer.model.complete_weights(init.model.state_dict()))
        trainer.restart_average()
    target, lock = None, RunLock(Path("."))
    if d.main:
        target = prepare_dir(Path(out) if out else default_run_dir(bundle))
        lock = RunLock(target).acquire()
        save_yaml({"vaekit": __version__, **config.to_dict(), "data_info": info, "resolved": resolved,
                   **({"plugins": plugins_of(config)} if plugins_of(config) else {})}, target / "config.yaml")
        kind(bundle.modality).keep(bundle, target)
    trainer.out = Path(dist.broadcast_object(str(target), d))
    _describe(trainer, (lambda *a: None) if trainer.quiet else print)
    if init is not None and not trainer.quiet:
        print(f"init   weights of {init.path}")
    try:
        return trainer.fit(pictures)
    finally:
        lock.release()
        dist.teardown(d)


def resume(path: str | Path, quiet: bool = False, epochs: int | None = None, data: Bundle | None = None,
           pictures: bool = True, compile: str | None = None) -> Run:
    """Continue a run from ``state/last.pt``; with ``epochs``, train to that many epochs in all;
    with ``compile`` (auto/on/off), with or without the compiled step (the checkpoints are the same)."""
    path = Path(path)
    cfg_file, state_file = path / "config.yaml", path / STATE_FILE
    if not cfg_file.is_file():
        raise VaekitError(f"{path}: not a vaekit run directory (no config.yaml), so it cannot be resumed.")
    if not state_file.is_file():
        raise VaekitError(f"{state_file}: no checkpoint to resume from.")
    config, info, resolved = read_config(path)
    if epochs is not None:
        config.train.epochs = epochs
    if compile is not None:
        config.train.compile = compile
    # one writer: a second resume of the same run is refused before it reads or writes anything
    lock = RunLock(path).acquire() if int(os.environ.get("RANK", "0")) == 0 else RunLock(path)
    try:
        return _resume(path, config, info, resolved, state_file, quiet, epochs, data, pictures)
    finally:
        lock.release()


def _resume(path: Path, config: Config, info, resolved: list, state_file: Path, quiet: bool, epochs, data,
            pictures: bool) -> Run:
    state = load_state(state_file)
    d, device, bundle, newly = _start(config, data, saved_data(path, info or {}))
    if not kind(bundle.modality)(info).same_shape(bundle.shape):
        dist.teardown(d)
        raise VaekitError(f"{config.data.source}: the data are now {list(bundle.shape)}, but the run was trained on "
                          f"{info.get('shape')}.")
    bundle.to(device)
    trainer = Trainer(config, bundle, path, d, device, quiet)
    trainer.restore(state, state_file)
    if trainer.epoch >= config.train.epochs:
        dist.teardown(d)
        raise VaekitError(f"{path}: already trained for {trainer.epoch} of {config.train.epochs} epochs; "
                          f"pass --epochs with a larger number to train further.")
    if d.main:
        truncate_metrics(path / "metrics.csv", trainer.epoch)
        if epochs is not None:
            save_yaml({"vaekit": __version__, **config.to_dict(), "data_info": info, "resolved": resolved + newly,
                       **({"plugins": plugins_of(config)} if plugins_of(config) else {})}, path / "config.yaml")
    if not trainer.quiet:
        print(f"resuming {path} after epoch {trainer.epoch} (best valid {trainer.objective.name} "
              f"{trainer.best:.3f})")
    _describe(trainer, (lambda *a: None) if trainer.quiet else print)
    try:
        return trainer.fit(pictures)
    finally:
        dist.teardown(d)


