"""Hyperparameter sweeps on Optuna: ``vaekit sweep SPACE.yaml --trials N [--jobs J] [--storage URL]``.

SPACE.yaml holds the options every trial shares (``base``: a config, as ``--config`` takes), the
search space over any config field, and what to maximise:

    base:                      # data, model and train options of every trial
      train: {epochs: 30}
    space:                     # field: {float|int: [low, high], log: true} or {choice: [...]}
      train.beta: {float: [0.25, 4], log: true}
      model.latent: {int: [2, 32], log: true}
      train.lr: {float: [1.0e-4, 3.0e-3], log: true}
      model.prior: {choice: [normal, mog]}
    objective: valid_bound     # the best validation bound (default), or nll: -IS-NLL of the validation split
    k: 50                      # importance samples of nll
    pruner: median             # stop a trial whose validation bound trails the others' median; or none

Each trial is an ordinary run directory, ``<out>/trial-<number>``, trained with the base config
and the trial's values. The study lives in ``--storage``: by default an SQLite file beside the
trials (``<out>/study.db``), which several processes on one machine share (``--jobs J`` starts J
of them, each with its share of the cores); any database URL Optuna takes (PostgreSQL, MySQL), or
``journal:PATH`` for Optuna's journal file, lets workers on several machines join one study by
running the same command. A sweep that is stopped continues where it stopped when it is started
again: ``--trials`` counts the finished trials of the study, and a trial whose process died is
found by its missing heartbeat and tried again. At the end: a table of every trial, the best one's
command line, and Optuna's parameter-importance and history plots (PNG) in ``<out>``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
import warnings
from pathlib import Path

from .config import SECTIONS, Config, load_yaml, save_yaml
from .errors import VaekitError

KINDS_OF_SPACE = ("float", "int", "choice")
OBJECTIVES = ("valid_bound", "nll")
HEARTBEAT_S, GRACE_S = 20, 60   # a trial whose process has not beaten for GRACE_S seconds is tried again


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise VaekitError("vaekit sweep needs Optuna, which is not installed: pip install 'vaekit[sweep]'.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class Space:
    """A sweep file, read and checked: the base config, the space, the objective."""

    def __init__(self, path: Path):
        self.path = Path(path)
        raw = load_yaml(self.path)
        unknown = set(raw) - {"base", "space", "objective", "k", "pruner"}
        if unknown:
            raise VaekitError(f"{path}: unknown keys {sorted(unknown)}; a sweep file has base, space, objective, k "
                              f"and pruner.")
        self.base = raw.get("base") or {}
        Config.from_dict(copy.deepcopy(self.base), origin=f"{path} (base)")   # checked now, not in a trial
        self.space = raw.get("space") or {}
        if not isinstance(self.space, dict) or not self.space:
            raise VaekitError(f"{path}: 'space' must map config fields (train.beta, ...) to what they range over.")
        fields = {f"{s}.{f.name}": f for s, klass in SECTIONS for f in dataclasses.fields(klass)}
        for key, spec in self.space.items():
            if key not in fields:
                raise VaekitError(f"{path}: '{key}' is not a config field (section.field, e.g. train.beta).")
            kinds = [k for k in KINDS_OF_SPACE if isinstance(spec, dict) and k in spec]
            if len(kinds) != 1:
                raise VaekitError(f"{path}: {key} must be one of {{float: [low, high]}}, {{int: [low, high]}} or "
                                  f"{{choice: [...]}}, got {spec!r}.")
            values = spec[kinds[0]]
            if kinds[0] != "choice" and not (isinstance(values, list) and len(values) == 2
                                             and all(isinstance(v, (int, float)) for v in values) and values[0] < values[1]):
                raise VaekitError(f"{path}: {key}'s {kinds[0]} range must be [low, high] with low < high, got {values!r}.")
            if kinds[0] == "choice" and not (isinstance(values, list) and values):
                raise VaekitError(f"{path}: {key}'s choice must be a non-empty list.")
        self.objective = raw.get("objective", "valid_bound")
        if self.objective not in OBJECTIVES:
            raise VaekitError(f"{path}: objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}.")
        self.k = raw.get("k", 50)
        if not isinstance(self.k, int) or self.k < 1:
            raise VaekitError(f"{path}: k must be a positive integer, got {self.k!r}.")
        self.pruner = raw.get("pruner", "median")
        if self.pruner not in ("median", "none"):
            raise VaekitError(f"{path}: pruner must be median or none, got {self.pruner!r}.")

    def suggest(self, trial) -> dict:
        """The trial's values, one per field of the space."""
        out = {}
        for key, spec in self.space.items():
            if "choice" in spec:
                out[key] = trial.suggest_categorical(key, list(spec["choice"]))
            elif "int" in spec:
                out[key] = trial.suggest_int(key, int(spec["int"][0]), int(spec["int"][1]), log=bool(spec.get("log")))
            else:
                out[key] = trial.suggest_float(key, float(spec["float"][0]), float(spec["float"][1]),
                                               log=bool(spec.get("log")))
        return out

    def config(self, values: dict, threads: int | None) -> Config:
        raw = copy.deepcopy(self.base)
        for key, value in values.items():
            section, name = key.split(".")
            raw.setdefault(section, {})[name] = value
        cfg = Config.from_dict(raw, origin=f"{self.path} (a trial)")
        if threads:
            cfg.train.threads = threads
        return cfg


def storage_of(out: Path, url: str | None, optuna):
    """Optuna's storage: an SQLite file in ``out`` by default, a database URL, or ``journal:PATH``."""
    if url and url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    from optuna import storages

    # a trial whose process stopped beating is failed and tried again (the names of Optuna >= 4.9, or before)
    retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
    with warnings.catch_warnings():   # the heartbeat is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = {"heartbeat_stale_trial_callback": retry(max_retry=2)} if retry else {
            "failed_trial_callback": storages.RetryFailedTrialCallback(max_retry=2)}
        return storages.RDBStorage(url or f"sqlite:///{(out / 'study.db').resolve()}", heartbeat_interval=HEARTBEAT_S,
                                   grace_period=GRACE_S, **callback)


def command_line(space_path: Path, out: Path, values: dict) -> str:
    """The ``vaekit train`` command of a trial: the base config (written to <out>/base.yaml) and its values."""
    from .cli.options import train_fields

    flags = {f"{section}.{f.name}": dest for dest, section, f in train_fields()}
    parts = ["vaekit train", f"--config {out / 'base.yaml'}"]
    for key, value in values.items():
        flag = "--" + flags.get(key, key.split(".")[1]).replace("_", "-")
        parts.append(f"{flag} {value:.4g}" if isinstance(value, float) else f"{flag} {value}")
    return " ".join(parts)


def run_worker(space: Space, out: Path, storage_url: str | None, trials: int, threads: int | None,
               quiet: bool) -> None:
    """One process's share of the sweep: trials until the study has ``trials`` finished ones."""
    optuna = optuna_module()
    from .train import train

    storage = storage_of(out, storage_url, optuna)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2) if space.pruner == "median" \
        else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=out.name, storage=storage, direction="maximize", pruner=pruner,
                                load_if_exists=True)

    def objective(trial):
        values = space.suggest(trial)
        trial.set_user_attr("command", command_line(space.path, out, values))
        folder = out / f"trial-{trial.number}"
        trial.set_user_attr("run", str(folder))

        def report(row):
            trial.report(float(row["valid_elbo"]), int(row["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()

        if folder.exists():   # a trial tried again after its process died: start it afresh
            import shutil

            shutil.rmtree(folder)
        run = train(space.config(values, threads), out=folder, quiet=True, pictures=False, on_epoch=report)
        if space.objective == "nll":
            return -run.evaluate(k=space.k, split="valid", quiet=True, write=False)["nll_nats"]
        best = run.best()
        return float(best[0][best[1]])

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    left = trials - sum(1 for t in study.get_trials(deepcopy=False) if t.state in done)
    if left > 0:
        study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(trials, states=done)],
                       catch=(VaekitError,), gc_after_trial=True, show_progress_bar=not quiet and trials > 1)


def sweep(space_path, trials: int, jobs: int = 1, storage: str | None = None, out=None, quiet: bool = False):
    """Run (or continue) a sweep; return the study."""
    space = Space(space_path)
    out = Path(out) if out else Path("sweeps") / space.path.stem
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(space.base, out / "base.yaml")
    optuna = optuna_module()
    from .threads import usable_cores

    threads = max(1, usable_cores()[0] // jobs) if jobs > 1 else None
    if jobs > 1:   # J processes, each with its share of the cores, on the one study
        storage_of(out, storage, optuna)   # made once, before the workers race to make its tables
        cmd = [sys.executable, "-m", "vaekit", "sweep", str(space.path), "--trials", str(trials), "--out", str(out),
               "--worker", str(threads), "--quiet"] + (["--storage", storage] if storage else [])
        procs = [subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": str(threads)}) for _ in range(jobs)]
        codes = [p.wait() for p in procs]
        if any(codes):
            raise VaekitError(f"{sum(1 for c in codes if c)} of the {jobs} sweep workers failed (exit codes {codes}).")
    else:
        run_worker(space, out, storage, trials, None, quiet)
    study = optuna.load_study(study_name=out.name, storage=storage_of(out, storage, optuna))
    return study, out


def summary(study, out: Path) -> list[str]:
    """The table of trials and the best one's command line, as lines; the plots as PNG in ``out``."""
    optuna = optuna_module()
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    lines = ["| trial | state | value | " + " | ".join(keys) + " | run |", "|---|---|---|" + "---|" * (len(keys) + 1)]
    for t in trials:
        value = "" if t.value is None else f"{t.value:.3f}"
        cells = [f"{t.params[k]:.4g}" if isinstance(t.params.get(k), float) else str(t.params.get(k, "")) for k in keys]
        lines.append(f"| {t.number} | {t.state.name.lower()} | {value} | " + " | ".join(cells)
                     + f" | {t.user_attrs.get('run', '')} |")
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    counts = {s: sum(1 for t in trials if t.state.name.lower() == s) for s in ("complete", "pruned", "fail")}
    lines.append("")
    lines.append(f"{len(trials)} trials: {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} "
                 f"failed")
    if complete:
        best = study.best_trial
        lines.append(f"best: trial {best.number}, {best.value:.3f} ({best.user_attrs.get('run', '')})")
        lines.append(f"  {best.user_attrs.get('command', '')}")
        for name, plot in (("history", optuna.visualization.matplotlib.plot_optimization_history),
                           ("importance", optuna.visualization.matplotlib.plot_param_importances)):
            if name == "importance" and (len(complete) < 2 or len(keys) < 2):
                continue
            try:
                with warnings.catch_warnings():   # Optuna's matplotlib plots are marked experimental
                    warnings.simplefilter("ignore")
                    ax = plot(study)
            except (ValueError, RuntimeError) as e:   # e.g. importance with values that do not vary
                lines.append(f"no {name} plot: {e}")
                continue
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 4.5)
            fig.tight_layout()
            fig.savefig(out / f"{name}.png", dpi=90)
            lines.append(f"{name} plot: {out / f'{name}.png'}")
            import matplotlib.pyplot as plt

            plt.close(fig)
    return lines

