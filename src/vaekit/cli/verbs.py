"""One thin function per verb: parse what is left of the arguments, call the API, print.
What depends on the kind of data is the run's media's (:mod:`vaekit.kinds`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..config import Config, load_yaml, unresolved
from ..errors import VaekitError
from ..kinds import Written
from ..model.objectives import describe
from ..train.rundir import preemption_signals
from .options import apply_flags, given_flags


def cmd_train(args) -> int:
    from ..train import resume, train

    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _torchrun(args.nproc)
    if args.resume and args.init:
        raise VaekitError("--resume continues a run and --init starts a new one from a run's weights; give one of them.")
    if args.init and args.config:
        raise VaekitError(f"--init takes its config from {args.init}; give flags to change it, not --config.")
    if args.resume:
        given = given_flags(args, but=("epochs", "compile"))
        if args.config or args.out or given:
            raise VaekitError(f"--resume continues {args.resume} with its own config; only --epochs, --compile and "
                              f"--quiet can be given with it (got {' '.join(given + (['--config'] if args.config else []) + (['--out'] if args.out else []))}).")
        with preemption_signals():
            run = resume(args.resume, quiet=args.quiet, epochs=args.epochs, compile=getattr(args, "compile", None))
    else:
        base, origin = {}, "config"
        if args.config:
            base, origin = unresolved(load_yaml(args.config)), str(args.config)
        if args.init:
            origin = str(args.init / "config.yaml")
            if not (args.init / "config.yaml").is_file():
                raise VaekitError(f"{args.init}: not a vaekit run directory (no config.yaml), so --init cannot "
                                  f"start from it.")
            base = unresolved(load_yaml(args.init / "config.yaml"))
            if isinstance(base.get("train"), dict):  # (a broken section is reported by from_dict)
                base["train"]["init"] = str(args.init.resolve())
                base["train"]["warmup_epochs"] = 0  # the model has learnt its posteriors already
        config = Config.from_dict(base, origin=origin)
        apply_flags(config, args)
        if config.data.source not in ("digits", "fashion-mnist") and Path(config.data.source).exists():
            config.data.source = str(Path(config.data.source).resolve())
        for key in ("valid", "test"):  # a file or folder, stored absolute; a pattern stays as it is
            value = getattr(config.data, key)
            if value and Path(value).exists():
                setattr(config.data, key, str(Path(value).resolve()))
        with preemption_signals():  # a SIGTERM while the data load stops as cleanly as one in training
            run = train(config, out=args.out, quiet=args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(run.path if args.quiet else f"done: {run.path}  (vaekit sample|evaluate|info {run.path})")
    return 0


def _torchrun(nproc: int) -> int:
    """Start this same command under torchrun with nproc processes (one per GPU, or CPU processes)."""
    import subprocess

    argv = sys.argv[1:]
    cleaned, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        cleaned.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "vaekit", *cleaned]
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:   # the processes split the cores (torchrun would give each one thread)
        from ..threads import usable_cores

        env["OMP_NUM_THREADS"] = str(max(1, usable_cores()[0] // nproc))
    return subprocess.run(cmd, env=env).returncode


def _run(args):
    from ..run import Run

    return Run.load(args.run, device=args.device)


def _label(run, label: str | None) -> int | None:
    """--label as a class index: an index, or one of the class names the data gave."""
    if label is None:
        return None
    if not run.model.classes:
        raise VaekitError(f"{run.path}: --label needs a conditional model (train with --conditional).")
    names = [str(n) for n in run.info.get("label_names") or []]
    if label in names:
        return names.index(label)
    try:
        index = int(label)
    except ValueError:
        index = None
    if index is None or not 0 <= index < run.model.classes:
        listed = ", ".join(f"{i} {n}" for i, n in enumerate(names)) if names else f"0 to {run.model.classes - 1}"
        raise VaekitError(f"--label {label} is not a class of this model; its classes are: {listed}.")
    return index


def _show(written: Written) -> int:
    """Print what a verb wrote: lines of text (and where they went), or the files."""
    if written.lines is not None:
        print("\n".join(written.lines))
        print(f"(written to {written.files[0]})", file=sys.stderr)
    else:
        for f in written.files:
            print(f)
    return 0


def _gen(args, run=None) -> dict:
    """The options of a text decoder (other kinds ignore them), and the temperature, which a prior
    with ``layered_temperature`` (the resnet's) reads when ``sample`` draws from it."""
    t = args.temperature
    layered = run is not None and getattr(run.model.prior, "layered_temperature", False)
    if not layered and (isinstance(t, list) or t <= 0):
        raise VaekitError(f"--temperature {args.temperature}: this model takes one positive temperature (one per "
                          f"layer, or 0, is for the prior of --net resnet).")
    return {"method": getattr(args, "method", None), "temperature": t, "beam": getattr(args, "beam", 5)}


def cmd_sample(args) -> int:
    run = _run(args)
    unsampled = getattr(run.model.prior, "sample_blocker", None)   # a VQ-VAE before its prior over codes
    if unsampled:
        raise VaekitError(f"{run.path}: {unsampled}.")
    return _show(run.media.sample(run, args.out, args.n, args.seed, _label(run, args.label), nrow=args.nrow,
                                  mean=not args.random, **_gen(args, run), **({"steps": args.steps} if args.steps else {})))


def cmd_forecast(args) -> int:
    import torch

    from ..forecast import scores

    run = _run(args)
    torch.manual_seed(args.seed)
    data = args.input
    if data is None and args.n is not None:   # the first n of the split, in the data's own units
        data = run.media.denormalise(run.data.split(args.split)[:args.n].cpu())
    fc, names = run.forecast(data, args.context, args.horizon, args.samples, split=args.split)
    if args.input is None:
        names = [f"{args.split}[{i}]" for i in range(len(names))]
    elif args.n is not None:
        fc.context, fc.samples, names = fc.context[:args.n], fc.samples[:, :args.n], names[:args.n]
        fc.truth = None if fc.truth is None else fc.truth[:args.n]
    _show(run.media.forecast_files(run, fc, args.out or run.path / "forecast", names))
    if fc.truth is not None and not getattr(run.media, "piano", True):
        scale = torch.tensor(run.info["std"]) if "std" in run.info else None
        for h, s in scores(fc, [h for h in (1, 4, 16) if h <= args.horizon] or [args.horizon], scale).items():
            print(f"horizon {h:3d}: CRPS {s['crps']:.4g}, 90% interval covers {100 * s['coverage_90']:.0f}% "
                  f"({s['n']} values)")
    return 0


def cmd_impute(args) -> int:
    import torch

    run = _run(args)
    torch.manual_seed(args.seed)
    filled, names = run.impute(args.input, args.samples, mask=args.mask)
    given, _ = run.sequences(args.input)
    given = run.media.denormalise(run.masked(given, args.mask))
    print(f"{int((torch.isnan(given) & ~torch.isnan(filled)).sum())} missing values filled in "
          f"{len(names)} sequences", file=sys.stderr)
    return _show(run.media.impute_files(run, filled, given, args.out or run.path / "imputed", names))


def cmd_reconstruct(args) -> int:
    from ..kinds.media import spread

    run = _run(args)
    x = run.data.split(args.split)
    shown = spread(x.shape[0], args.n or run.media.counts.get("reconstruct", 32)).to(x.device)
    y = run.labels(args.split)
    return _show(run.media.reconstruct(run, x[shown], None if y is None else y[shown], args.out, args.split,
                                       **_gen(args)))


def cmd_interpolate(args) -> int:
    import torch

    from ..kinds.media import pick_pairs

    run = _run(args)
    ends = run.media.parse_between(run, args.between) if args.between else None
    if ends is not None:
        return _show(run.media.interpolate(run, *ends, None, None, args.out, args.steps, named=True, **_gen(args)))
    test = run.data.test
    if args.between:
        idx = []
        for j in args.between:
            try:
                j = int(j)
            except ValueError:
                raise VaekitError(f"--between takes two test-set indices for this run, got '{j}'.") from None
            if not 0 <= j < test.shape[0]:
                raise VaekitError(f"--between index {j} is outside the test set (0..{test.shape[0] - 1}).")
            idx.append(j)
        a, b = torch.tensor([idx[0]]), torch.tensor([idx[1]])
    else:
        a, b = pick_pairs(test.shape[0], args.pairs, args.seed)
    a, b = a.to(test.device), b.to(test.device)
    y = run.labels("test")
    ya, yb = (None, None) if y is None else (y[a], y[b])
    return _show(run.media.interpolate(run, test[a], test[b], ya, yb, args.out, args.steps, **_gen(args)))


def cmd_traverse(args) -> int:
    run = _run(args)
    t = run.traversal(args.dims, args.span, args.steps, args.index)
    return _show(run.media.traverse(run, t, args.out, **_gen(args)))


def cmd_compare(args) -> int:
    from ..compare import load, text_table, write_csv, write_html

    entries = load(args.runs)
    for line in text_table(entries):
        print(line)
    if args.csv:
        print(f"table: {write_csv(entries, args.csv)}")
    print(f"page: {write_html(entries, args.out)}")
    return 0


def cmd_sweep(args) -> int:
    from ..sweep import Space, run_worker, summary, sweep

    if args.worker is not None:   # one of the processes of --jobs
        run_worker(Space(args.space), args.out, args.storage, args.trials, args.worker, True)
        return 0
    study, out = sweep(args.space, args.trials, args.jobs, args.storage, args.out, args.quiet)
    for line in summary(study, out):
        print(line)
    return 0


def cmd_train_prior(args) -> int:
    from ..codeprior import fit

    run = _run(args)
    r = fit(run, epochs=args.epochs, width=args.width, layers=args.layers, heads=args.heads, lr=args.lr,
            batch_size=args.batch_size, seed=args.seed, quiet=args.quiet)
    if not args.quiet:
        print(f"code prior: valid NLL of the codes {r['valid_nll_codes']:.2f} nats an example "
              f"(uniform: {r['uniform_nll_codes']:.2f}), {len(r['epochs'])} epochs in {r['seconds']:.0f} s")
    written = run.media.sample(run, None, 0, 0)   # the kind's default count, in the run's samples folder
    if not args.quiet:
        print(f"written: {run.path / 'code_prior.safetensors'}, {', '.join(str(f) for f in written.files)}")
    return 0


def cmd_evaluate(args) -> int:
    run = _run(args)
    quality = None
    if args.sample_quality:
        quality = {"n": args.samples, "features_from": args.features, **_gen(args, run)}
        quality = {k: quality[k] for k in ("n", "features_from", "temperature")}
    elif args.features is not None or args.samples != 2000:
        raise VaekitError("--samples and --features are options of --sample-quality.")
    r = run.evaluate(k=args.k, split=args.split, batch_size=args.batch_rows, quiet=args.quiet, factors=args.factors,
                     exact_dci=args.dci_exact, compile=args.compile, sample_quality=quality)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    print(f"{r['data']} {r['split']} set, {r['n']:,} examples, k = {r['k']}:")
    for line in run.media.evaluation_lines(r):
        print(line)
    print(f"  ELBO                      {r['elbo_nats']:.3f} nats   (reconstruction {r['rec_nats']:.3f}, "
          f"KL {r['kl_nats']:.3f})")
    print(f"  active units              {r['active_units']} of {r['latent']} (posterior-mean variance > "
          f"{r['active_threshold']})")
    if r.get("layers"):
        from ..eval import layers_text

        print("  stochastic layers         " + layers_text(r["layers"]))
    if r["kl_per_dim"] is not None:
        kls = sorted(r["kl_per_dim"], reverse=True)
        more = f" ... ({len(kls)} dimensions)" if len(kls) > 32 else ""
        print("  KL per dimension (sorted) " + " ".join(f"{v:.2f}" for v in kls[:32]) + more)
    for line in run.media.metric_lines(r):
        print(line)
    from ..report import disentanglement_rows

    for name, value in disentanglement_rows(r.get("disentanglement")):
        print(f"  {name:<25} {value}")
    from ..report import quality_rows

    for name, value in quality_rows(r.get("sample_quality")):
        print(f"  {name:<25} {value}")
    print(f"  peak memory               {r['peak_memory']}")
    print(f"  decoder passes            {r['compile']}")
    print(f"  took {r['seconds']:.1f} s; written to {run.path / 'evaluation.json'}")
    return 0


def cmd_serve(args) -> int:
    from ..serve import serve

    if not 0 <= args.port < 65536:
        raise VaekitError(f"--port must be between 0 and 65535, got {args.port}.")
    try:
        serve(_run(args), host=args.host, port=args.port)
    except OSError as e:
        raise VaekitError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e}).") from None
    return 0


def cmd_report(args) -> int:
    from ..report import write_report

    print(write_report(_run(args), args.out))
    return 0


def cmd_score(args) -> int:
    from ..score import SCORES, batch_ood, batch_typicality, ood_metrics, roc_png, summary_json, write_csv

    run = _run(args)
    folder = run.path / "scores"

    def scored(source, what):
        if source is None:   # the run's own test split
            x = run.data.split("test")
            s = run.score(x, args.k, args.fpr, args.by, y=run.labels("test"), quiet=args.quiet)
            s["names"] = [f"test[{i}]" for i in range(x.shape[0])]
            return s, "test split"
        if not Path(source).expanduser().exists() and source not in run.media.builtin_sources:
            raise VaekitError(f"{source}: no such file or directory ({what}).")
        return run.score(source, args.k, args.fpr, args.by, quiet=args.quiet), Path(source).name

    inside, name = scored(args.data, "--data")
    ref = inside.get("reference")
    keys = [key for key in SCORES if key in inside]
    out = args.out or folder / f"{name.replace(' ', '-')}.csv"
    write_csv(inside, keys, out, ref, args.by)
    n = len(inside["names"])
    print(f"scored {n:,} examples of {name} with k = {args.k}: {out}")
    summary = {"data": name, "k": args.k, "examples": n, "by": args.by, "fpr": args.fpr}
    if ref is None:
        print("(the run's validation data could not be read: no typicality score, threshold or flags)")
    else:
        flagged = int(inside["flagged"].sum())
        print(f"flagged by {args.by} (above {ref.thresholds[args.by]:.4g}, the validation split's "
              f"{100 * (1 - args.fpr):g}th percentile): {flagged:,} ({100 * flagged / n:.1f}%)")
        epsilon, stats = batch_typicality(inside["nll"], ref, args.batch)
        if stats:
            print(f"typicality test, batches of {args.batch} in order: {sum(s > epsilon for s in stats)} of "
                  f"{len(stats)} flagged (|mean NLL - {ref.entropy:.2f}| > {epsilon:.3g} nats)")
        summary.update(flagged=flagged, threshold=ref.thresholds[args.by], entropy=ref.entropy,
                       batch=args.batch, batches=len(stats), batches_flagged=sum(s > epsilon for s in stats))
    if args.data_ood:
        outside, out_name = scored(args.data_ood, "--data-ood")
        metrics = ood_metrics(inside, outside, keys)
        if ref is not None:
            metrics[f"typicality, batches of {args.batch}"] = batch_ood(inside["nll"], outside["nll"], ref, args.batch)
        write_csv(outside, keys, folder / f"{out_name.replace(' ', '-')}.csv", ref, args.by)
        png = roc_png(inside, outside, keys, folder / "roc.png", f"{name} (in) against {out_name} (out)")
        print(f"\nin: {name}, {n:,} examples; out: {out_name}, {len(outside['names']):,} examples")
        print(f"{'score':<28}{'AUROC':>8}{'AUPRC':>8}{'FPR@95%TPR':>12}")
        for key, m in metrics.items():
            print(f"{key:<28}{m['auroc']:>8.3f}{m['auprc']:>8.3f}{m['fpr_at_95_tpr']:>12.3f}")
        print(f"ROC curves: {png}")
        summary.update(ood={"data": out_name, "examples": len(outside["names"]), "metrics": metrics})
    summary_json(folder / "summary.json", **summary)
    return 0


def cmd_export(args) -> int:
    run = _run(args)
    parts = None if args.part == "all" else [args.part]
    manifest = run.export(args.format, args.out, parts, check=args.check)
    out = Path(args.out) if args.out else run.path / f"export-{args.format}"
    for name, part in manifest["parts"].items():
        if not name.startswith(args.part.replace("all", "")):   # (a text decoder is decoder_start and _step)
            continue
        line = f"{out / part['file']}  {', '.join(i['name'] for i in part['inputs'])} -> " \
               f"{', '.join(o['name'] for o in part['outputs'])}"
        if "check" in part:
            c = part["check"]
            line += f"   max |difference| from PyTorch {c['max_abs_diff']:.1e} ({c['max_relative_diff']:.1e} relative)"
        print(line)
    print(out / "manifest.json")
    return 0


def cmd_info(args) -> int:
    run = _run(args)
    c, info = run.config, run.info
    params = sum(p.numel() for p in run.model.parameters())
    recorded = info.get("sizes") if isinstance(info.get("sizes"), dict) else {}
    sizes = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in recorded.items()) or "split sizes not recorded"
    print(f"run      {run.path}")
    print(f"data     {c.data.source}: {'x'.join(map(str, info['shape']))}, {info['value']}; {sizes}")
    m = c.model
    dropout = f", decoder dropout {m.decoder_dropout:g}" if m.decoder_dropout else ""
    arch = {"mlp": f"hidden {m.hidden}{dropout}", "conv": f"channels {m.channels}",
            "rnn": f"{m.cell}, embedding {m.embedding}, state {m.rnn_hidden}, word dropout {m.word_dropout}"
                   + (", inputless" if m.inputless else "")}.get(m.net, m.net)
    layers = run.model.prior.layers if m.net == "resnet" else None
    if layers:   # the deep hierarchy: its preset and its latent maps, top first
        arch = f"--resnet {m.resnet}, {len(layers)} latent maps: " + ", ".join(n.split(" ", 1)[1] for n, _ in layers)
        arch += f", spectral regulariser {m.spectral_reg:g}" if m.spectral_reg else ""
    if run.media.summary():
        print(f"         {run.media.summary()}")
    kind = f"conditional ({run.model.classes} classes) " if run.model.classes else ""
    if run.model.classes:
        names = info.get("label_names") or []
        print("classes  " + ", ".join(f"{i} {names[i]}" if i < len(names) else str(i)
                                      for i in range(run.model.classes)))
    prior = f"{m.prior} prior"
    if m.prior == "hierarchical":
        tops = m.top_sizes()
        top_prior = "VampPrior" if m.top_prior == "vamp" else "N(0, I)"
        between = f"{m.prior_hidden or [m.hidden[-1]]} {m.prior_activation}"
        paths = f", one path of {m.hidden[-1]} units per layer" if m.latent_paths else ""
        layers = ", ".join(f"z{i} {size}" for i, size in enumerate(tops, 2))
        prior = (f"hierarchical prior ({m.inference} inference, {layers}, {top_prior} over z{len(tops) + 1}, "
                 f"p(z1|z2) hidden {between}{paths})")
    bounds = f", log-variances in [{m.logvar_range[0]:g}, {m.logvar_range[1]:g}]" if m.logvar_range else ""
    if run.model.flow is not None:
        bounds += f", posterior with {m.flow} IAF steps of {run.model.flow.hidden} units"
    copy = sum(p.numel() for p in run.model.prior_encoder.parameters()) if hasattr(run.model, "prior_encoder") else 0
    print(f"model    {kind}{m.net} ({arch}), {m.latent_words()}, {m.likelihood} likelihood, "
          f"{prior}{bounds}, {params:,} parameters" + (f" ({copy:,} of them the prior's copy of the encoder)"
                                                        if copy else ""))
    t = c.train
    obj = describe(t)
    batch = t.batch_size
    decay = f", weight decay {t.weight_decay:g}" if t.weight_decay else ""
    print(f"training {obj}; Adam lr {t.lr} ({t.lr_schedule}){decay}, batch {batch}, seed {t.seed}"
          + (f"; weights: moving average, decay {t.ema}" if t.ema else "")
          + (f"; the encoder refit to the fixed model of {t.init}" if m.refine_encoder
             else f"; started from the weights of {t.init}" if t.init else ""))
    m = run.metrics
    if m:
        best, key, what = run.best()
        secs = sum(r["seconds"] for r in m)
        print(f"epochs   {len(m)} in {secs:.0f} s; best {what} {best[key]:.3f} at epoch {int(best['epoch'])}")
    ev = run.evaluation
    if ev:
        print(f"evaluate {ev['split']}: NLL {ev['nll_nats']:.3f} nats (k={ev['k']}), ELBO {ev['elbo_nats']:.3f}, "
              f"{ev['bits_per_dim']:.4f} bits/dim, {ev['active_units']} active units"
              + (" (" + ", ".join(f"{k} {v['active_units']}" for k, v in ev["layers"].items()) + ")"
                 if ev.get("layers") else ""))
    return 0
