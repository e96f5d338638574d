"""The `vaekit` command: one thin function per verb (parse, call the API, print)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from .config import ACTIVATIONS, Config, auto_batch_size, load_yaml
from .errors import VaekitError


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by ',' or 'x', got '{text}'") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def _top_sizes(text: str) -> int | list[int]:
    """One size (a two-layer model) or a list of them (more layers)."""
    values = _ints(text)
    return values[0] if len(values) == 1 else values


def _range(text: str) -> list[float]:
    """Two numbers 'lo,hi' with lo < hi."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or not values[0] < values[1] or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected two numbers LO,HI with LO < HI, got '{text}'")
    return values


def _number(cast, ok, wanted: str, kind: str):
    """An argparse type: `cast` the text, and keep it when `ok` holds, else say what was wanted."""
    def parse(text: str):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got '{text}'") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got '{text}'")
        return v
    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer", "a positive integer")
_positive_float = _number(float, lambda v: v > 0, "a positive number", "a number")
_nonneg_float = _number(float, lambda v: v >= 0, "a non-negative number", "a number")
_nonneg_int = _number(int, lambda v: v >= 0, "a non-negative integer", "an integer")


# flag -> (section, key)
TRAIN_FLAGS = {
    "data": ("data", "source"), "binarize": ("data", "binarize"), "shape": ("data", "shape"),
    "image_size": ("data", "image_size"), "modality": ("data", "modality"), "tokens": ("data", "tokens"),
    "max_length": ("data", "max_length"), "min_count": ("data", "min_count"), "valid_data": ("data", "valid"),
    "test_data": ("data", "test"), "sample_rate": ("data", "sample_rate"), "clip_seconds": ("data", "clip_seconds"),
    "n_mels": ("data", "n_mels"), "n_fft": ("data", "n_fft"), "hop": ("data", "hop"),
    "label_from": ("data", "label_from"),
    "cell": ("model", "cell"), "embedding": ("model", "embedding"), "rnn_hidden": ("model", "rnn_hidden"),
    "word_dropout": ("model", "word_dropout"), "inputless": ("model", "inputless"),
    "decoder_dropout": ("model", "decoder_dropout"),
    "net": ("model", "net"), "latent": ("model", "latent"), "hidden": ("model", "hidden"),
    "channels": ("model", "channels"), "activation": ("model", "activation"),
    "likelihood": ("model", "likelihood"), "gaussian_std": ("model", "gaussian_std"),
    "prior": ("model", "prior"), "prior_components": ("model", "prior_components"),
    "top_prior": ("model", "top_prior"), "inference": ("model", "inference"),
    "conditional": ("model", "conditional"), "top_latent": ("model", "top_latent"),
    "prior_hidden": ("model", "prior_hidden"), "prior_activation": ("model", "prior_activation"),
    "latent_paths": ("model", "latent_paths"), "logvar_range": ("model", "logvar_range"),
    "refine_encoder": ("model", "refine_encoder"), "flow": ("model", "flow"), "flow_hidden": ("model", "flow_hidden"),
    "epochs": ("train", "epochs"), "batch_size": ("train", "batch_size"), "lr": ("train", "lr"),
    "lr_schedule": ("train", "lr_schedule"), "clip_grad": ("train", "clip_grad"),
    "patience": ("train", "patience"), "objective": ("train", "objective"), "k": ("train", "k"),
    "estimator": ("train", "estimator"),
    "beta": ("train", "beta"), "warmup": ("train", "warmup_epochs"), "free_bits": ("train", "free_bits"),
    "seed": ("train", "seed"), "device": ("train", "device"), "weight_decay": ("train", "weight_decay"),
    "amp": ("train", "amp"), "cuda_graph": ("train", "cuda_graph"), "max_bad_steps": ("train", "max_bad_steps"),
    "ema": ("train", "ema"),
}


class Parser(argparse.ArgumentParser):
    """argparse, with errors as one sentence and a pointer to --help instead of the whole usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\nSee '{self.prog} --help'.\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option after a verb is reported by that verb's parser,
        which points at its own --help (`vaekit sample --help`, not `vaekit --help`)."""
        namespace, extra = self.parse_known_args(args, namespace)
        if extra:
            verbs = next((a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {})
            verbs.get(getattr(namespace, "verb", None), self).error(f"unrecognized arguments: {' '.join(extra)}")
        return namespace


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="vaekit", description="Variational autoencoders: train, sample, evaluate.")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    t = sub.add_parser("train", help="train a VAE and write a run directory",
                       description="Train a VAE. With no arguments: the embedded digits data set.")
    g = t.add_argument_group("data")
    g.add_argument("--data", help="digits (default), fashion-mnist, or a path: IDX file, .npz/.npy, "
                                  "folder of train/valid/test arrays or IDX files, folder of PNG/JPEG; "
                                  "a text file (one example per line) or folder of them; a folder of WAV files")
    g.add_argument("--modality", choices=["auto", "image", "text", "audio"],
                   help="what the data are (default auto: from the source)")
    g.add_argument("--valid-data", help="a separate validation file (text) or WAV folder or file-name pattern (audio)")
    g.add_argument("--test-data", help="a separate test file (text) or WAV folder or file-name pattern such as "
                                       "'*_[0-4].wav' (audio)")
    g.add_argument("--binarize", choices=["none", "threshold", "static", "dynamic"])
    g.add_argument("--shape", type=_ints, help="image shape for flat (N, D) arrays: HxW or CxHxW")
    g.add_argument("--image-size", type=_ints, help="resize images in a folder to H or HxW")
    g = t.add_argument_group("text")
    g.add_argument("--tokens", choices=["char", "word"], help="character (default) or word tokens")
    g.add_argument("--max-length", type=_positive_int, help="skip lines with more tokens (default 128)")
    g.add_argument("--min-count", type=_positive_int,
                   help="rarer tokens become <unk> (default 1 for characters, 2 for words)")
    g = t.add_argument_group("audio")
    g.add_argument("--sample-rate", type=_positive_int, help="resample to this rate in Hz (default 8000)")
    g.add_argument("--clip-seconds", type=_positive_float, help="trim or pad every clip to this length (default 1)")
    g.add_argument("--n-mels", type=_positive_int, help="mel bins (default 64)")
    g.add_argument("--n-fft", type=_positive_int, help="STFT window in samples (default 256)")
    g.add_argument("--hop", type=_positive_int, help="STFT hop in samples (default 128)")
    g.add_argument("--label-from", help="labels from file names, e.g. '{label}_*' for 7_jackson_3.wav")
    g = t.add_argument_group("model")
    g.add_argument("--net", choices=["auto", "mlp", "conv", "rnn"],
                   help="default: mlp for images, rnn for text, conv for audio")
    g.add_argument("--cell", choices=["gru", "lstm"], help="recurrent cell for text (default gru)")
    g.add_argument("--embedding", type=_positive_int, help="token embedding size (default 64)")
    g.add_argument("--rnn-hidden", type=_positive_int, help="recurrent state size (default 256)")
    g.add_argument("--word-dropout", type=_nonneg_float,
                   help="probability of replacing a decoder input token by <unk> in training (text)")
    g.add_argument("--inputless", action="store_const", const=True,
                   help="text decoder that never sees the previous tokens, only z")
    g.add_argument("--latent", type=_positive_int, help="latent dimensions (default 16)")
    g.add_argument("--hidden", type=_ints, help="MLP hidden sizes, e.g. 512,256")
    g.add_argument("--channels", type=_ints, help="conv channels per block, e.g. 32,64")
    g.add_argument("--decoder-dropout", type=_nonneg_float, metavar="P",
                   help="dropout probability on the MLP decoder's hidden layers in training (default 0)")
    g.add_argument("--activation", choices=ACTIVATIONS,
                   help="MLP nonlinearity; gated: GLU units, a * sigmoid(b) (Dauphin et al. 2017)")
    g.add_argument("--likelihood", choices=["auto", "bernoulli", "gaussian", "logistic", "categorical"])
    g.add_argument("--gaussian-std", type=float, help="fixed std of the Gaussian likelihood (default: learned)")
    g.add_argument("--prior", choices=["normal", "mog", "vamp", "hierarchical", "class"],
                   help="N(0, I) (default), a learned mixture of Gaussians, the VampPrior, a second "
                        "stochastic layer (hierarchical VAE), or class: a learned Gaussian per class, "
                        "p(z | y), for --conditional")
    g.add_argument("--top-latent", type=_top_sizes,
                   help="size of the second stochastic layer of --prior hierarchical (default latent/2), or the "
                        "sizes of the layers above z1, e.g. 40,20 for three stochastic layers")
    g.add_argument("--top-prior", choices=["normal", "vamp"],
                   help="prior of the second stochastic layer of --prior hierarchical: N(0, I) (default) or "
                        "a VampPrior (--prior-components pseudo-inputs)")
    g.add_argument("--inference", choices=["bottom-up", "top-down"],
                   help="how --prior hierarchical infers its layers: bottom-up, q(z1|x) q(z2|z1) (default), "
                        "or top-down, q(z2|x) q(z1|x,z2), with a decoder that reads z1 and z2 "
                        "(Tomczak & Welling's two-layer VAE)")
    g.add_argument("--prior-hidden", type=_ints,
                   help="hidden sizes of p(z1|z2) (and bottom-up q(z2|z1)) in --prior hierarchical, e.g. 300,300 "
                        "(default: one layer of the last --hidden size)")
    g.add_argument("--prior-activation", choices=ACTIVATIONS,
                   help="nonlinearity of those networks (default tanh)")
    g.add_argument("--latent-paths", action="store_const", const=True,
                   help="top-down: z1 and z2 enter the decoder, and z2 enters q(z1|x,z2), each through a hidden "
                        "layer of its own (Tomczak & Welling's two-layer VAE) instead of concatenated")
    g.add_argument("--logvar-range", type=_range, metavar="LO,HI",
                   help="clip the log-variance of every Gaussian of the model (posteriors, VampPrior components, "
                        "p(z1|z2), the mog and class priors' Gaussians) to [LO, HI] with a hard tanh, e.g. "
                        "--logvar-range=-6,2 as Tomczak & Welling (with '=': the value starts with a minus; default: "
                        "unbounded)")
    g.add_argument("--refine-encoder", action="store_const", const=True,
                   help="with --init RUN: train only the encoder q(z|x), with RUN's decoder and prior fixed: the "
                        "same model with a better posterior, so a tighter NLL estimate (e.g. with --objective iwae)")
    g.add_argument("--flow", type=_nonneg_int, metavar="STEPS",
                   help="a richer posterior: this many inverse autoregressive flow steps after the encoder's "
                        "Gaussian (default 0); with --init RUN --refine-encoder they are added to RUN's encoder")
    g.add_argument("--flow-hidden", type=_positive_int, metavar="UNITS",
                   help="hidden units of each flow step (default: the larger of the last --hidden and twice the "
                        "latent)")
    g.add_argument("--conditional", action="store_const", const=True,
                   help="conditional VAE: the class label is an extra input to encoder and decoder")
    g.add_argument("--prior-components", type=_positive_int,
                   help="mixture components / pseudo-inputs (default 10 for mog, 500 for vamp)")
    g = t.add_argument_group("training")
    g.add_argument("--epochs", type=_positive_int)
    g.add_argument("--batch-size", type=_positive_int)
    g.add_argument("--lr", type=float)
    g.add_argument("--lr-schedule", choices=["none", "cosine", "plateau"])
    g.add_argument("--weight-decay", type=_nonneg_float)
    g.add_argument("--clip-grad", type=_nonneg_float, help="clip the gradient norm (0: off)")
    g.add_argument("--patience", type=int, help="early stopping on valid ELBO after this many epochs (0: off)")
    g.add_argument("--objective", choices=["elbo", "iwae"])
    g.add_argument("--k", type=_positive_int, help="importance samples for --objective iwae")
    g.add_argument("--estimator", choices=["standard", "dreg"],
                   help="the encoder's gradient of the IWAE bound: standard (default) or dreg, doubly "
                        "reparameterised (Tucker et al. 2019), less noisy for large k")
    g.add_argument("--beta", type=_nonneg_float, help="KL weight (beta-VAE)")
    g.add_argument("--warmup", type=_nonneg_float, help="KL warm-up epochs")
    g.add_argument("--free-bits", type=_nonneg_float, help="minimum KL per latent dimension, in nats")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])
    g.add_argument("--amp", choices=["auto", "on", "off"], help="mixed precision (auto: on for CUDA only)")
    g.add_argument("--cuda-graph", choices=["auto", "on", "off"],
                   help="replay the training step as one CUDA graph (auto: where the run allows it, i.e. on CUDA "
                        "with --amp off, one process, no recurrent network)")
    g.add_argument("--ema", type=_nonneg_float, metavar="DECAY",
                   help="validate and save an exponential moving average of the weights with this decay "
                        "(e.g. 0.999; default 0: off)")
    g.add_argument("--max-bad-steps", type=_positive_int,
                   help="stop after this many steps in a row with a non-finite loss or gradient (default 20)")
    g.add_argument("--nproc", type=_positive_int,
                   help="train with this many processes (DistributedDataParallel, started with torchrun)")
    t.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue a run from its last checkpoint (with --epochs: train to that many in all)")
    t.add_argument("--init", type=Path, metavar="RUN",
                   help="fine-tune: a new run that starts from RUN's weights and config (flags override it; "
                        "KL warm-up is off unless --warmup is given), e.g. with --objective iwae")
    t.add_argument("--config", type=Path, help="YAML config; flags override it")
    t.add_argument("--out", type=Path, help="run directory (default runs/<data>-<time>)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or log")
    t.set_defaults(func=cmd_train)

    def run_parser(name, help_text, func):
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("run", type=Path, help="run directory")
        q.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
        q.set_defaults(func=func)
        return q

    def generation(q):
        q.add_argument("--method", choices=["greedy", "sample", "beam"],
                       help="text: greedy decoding, sampling at --temperature, or beam search (default: sample "
                            "for `sample`, greedy otherwise)")
        q.add_argument("--temperature", type=_positive_float, default=1.0, help="text: sampling temperature")
        q.add_argument("--beam", type=_positive_int, default=5, help="text: beam width (default 5)")

    s = run_parser("sample", "decode samples from the prior: a PNG grid, lines of text, or WAV files", cmd_sample)
    s.add_argument("-n", type=_positive_int, default=None, help="number of samples (default 64; text 10; audio 8)")
    generation(s)
    s.add_argument("--nrow", type=_positive_int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--random", action="store_true", help="draw x ~ p(x|z) instead of showing its mean")
    s.add_argument("--label", type=int, help="for a conditional model: the class to generate (default: each class)")
    s.add_argument("--out", type=Path, help="picture file, PNG unless its suffix names another format (default "
                                            "<run>/samples/samples-seed<seed>.png); text: a text file; audio: a "
                                            "folder")

    r = run_parser("reconstruct", "test examples next to their reconstructions", cmd_reconstruct)
    r.add_argument("-n", type=_positive_int, default=None, help="examples (default 32; text 10; audio 4)")
    generation(r)
    r.add_argument("--split", choices=["train", "valid", "test"], default="test")
    r.add_argument("--out", type=Path, help="picture file (default <run>/samples/reconstructions-<split>.png); "
                                            "text: a text file; audio: a folder")

    i = run_parser("interpolate", "decode straight paths between pairs of test examples", cmd_interpolate)
    i.add_argument("--pairs", type=_positive_int, default=8, help="random pairs (default 8)")
    i.add_argument("--between", nargs=2, metavar=("A", "B"),
                   help="images: two test-set indices; text: two sentences; audio: two WAV files")
    generation(i)
    i.add_argument("--steps", type=_positive_int, default=10)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", type=Path, help="picture file (default <run>/samples/interpolations.png); text: a "
                                            "text file; audio: a folder")

    e = run_parser("evaluate", "test ELBO, importance-sampled NLL, bits/dim, KL per dimension, active units",
                   cmd_evaluate)
    e.add_argument("--k", type=_positive_int, default=5000, help="importance samples (default 5000)")
    e.add_argument("--split", choices=["train", "valid", "test"], default="test")
    e.add_argument("--batch-rows", type=_positive_int,
                   help="decoder rows (examples x samples) per pass (default: about 40 MB of activations on "
                        "a CPU, up to 32768 rows on a GPU)")
    e.add_argument("--json", type=Path, help="also write the result here (always: <run>/evaluation.json)")
    e.add_argument("--quiet", action="store_true")

    n = run_parser("info", "what a run is: data, model, training, results", cmd_info)
    del n
    v = run_parser("serve", "the latent explorer: a local web app to decode, slide and interpolate", cmd_serve)
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    h = run_parser("report", "write a self-contained HTML report of a run (<run>/report.html)", cmd_report)
    h.add_argument("--out", type=Path, help="HTML file (default <run>/report.html)")
    return p


def apply_flags(config: Config, args) -> Config:
    """Set each training flag given on the command line over ``config`` (in place)."""
    for flag, (section, key) in TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            setattr(getattr(config, section), key, value)
    return config


def cmd_train(args) -> int:
    from .train import resume, train

    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _torchrun(args.nproc)
    if args.resume and args.init:
        raise VaekitError("--resume continues a run and --init starts a new one from a run's weights; give one of them.")
    if args.init and args.config:
        raise VaekitError(f"--init takes its config from {args.init}; give flags to change it, not --config.")
    if args.resume:
        given = [f"--{f.replace('_', '-')}" for f in TRAIN_FLAGS if f != "epochs" and getattr(args, f) is not None]
        if args.config or args.out or given:
            raise VaekitError(f"--resume continues {args.resume} with its own config; only --epochs and --quiet "
                              f"can be given with it (got {' '.join(given + (['--config'] if args.config else []) + (['--out'] if args.out else []))}).")
        run = resume(args.resume, quiet=args.quiet, epochs=args.epochs)
    else:
        base, origin = {}, "config"
        if args.config:
            base, origin = load_yaml(args.config), str(args.config)
        if args.init:
            origin = str(args.init / "config.yaml")
            if not (args.init / "config.yaml").is_file():
                raise VaekitError(f"{args.init}: not a vaekit run directory (no config.yaml), so --init cannot "
                                  f"start from it.")
            base = load_yaml(args.init / "config.yaml")
            if isinstance(base.get("train"), dict):  # (a broken section is reported by from_dict)
                base["train"]["init"] = str(args.init.resolve())
                base["train"]["warmup_epochs"] = 0  # the model has learnt its posteriors already
        base.pop("data_info", None)
        base.pop("vaekit", None)
        config = Config.from_dict(base, origin=origin)
        apply_flags(config, args)
        if config.data.source not in ("digits", "fashion-mnist") and Path(config.data.source).exists():
            config.data.source = str(Path(config.data.source).resolve())
        for key in ("valid", "test"):  # a file or folder, stored absolute; a pattern stays as it is
            value = getattr(config.data, key)
            if value and Path(value).exists():
                setattr(config.data, key, str(Path(value).resolve()))
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
    return subprocess.run(cmd).returncode


def _run(args):
    from .run import Run

    return Run.load(args.run, device=args.device)


def _check_label(run, label) -> None:
    if label is not None and not run.model.classes:
        raise VaekitError(f"{run.path}: --label needs a conditional model (train with --conditional).")


def _show_lines(lines: list[str], out) -> int:
    """Print lines of text, write them to ``out`` too, and say where."""
    from .generate import write_text

    print("\n".join(lines))
    print(f"(written to {write_text(lines, out)})", file=sys.stderr)
    return 0


def _gen(args, default: str) -> dict:
    return {"method": args.method or default, "temperature": args.temperature, "beam": args.beam}


def cmd_sample(args) -> int:
    from .generate import audio_samples, samples_png, text_samples

    run = _run(args)
    _check_label(run, args.label)
    if run.modality == "text":
        g = _gen(args, "sample")
        lines = text_samples(run.model, run.vocab, args.n or 10, g["method"], g["temperature"], g["beam"], args.seed)
        return _show_lines(lines, args.out or run.path / "samples" / f"samples-{g['method']}-seed{args.seed}.txt")
    if run.modality == "audio":
        out = args.out or run.path / "samples" / f"samples-seed{args.seed}"
        for f in audio_samples(run.model, run.info, out, args.n or 8, args.seed, args.label,
                               run.info.get("label_names")):
            print(f)
        return 0
    out = args.out or run.path / "samples" / f"samples-seed{args.seed}.png"
    print(samples_png(run.model, out, n=args.n or 64, nrow=args.nrow, seed=args.seed, mean=not args.random,
                      label=args.label))
    return 0


def cmd_reconstruct(args) -> int:
    from .generate import audio_reconstructions, reconstructions_png, spread, text_reconstructions

    run = _run(args)
    n = args.n or {"text": 10, "audio": 4}.get(run.modality, 32)
    x = run.data.split(args.split)
    shown = spread(x.shape[0], n).to(x.device)
    x, y = x[shown], run.labels(args.split)
    y = None if y is None else y[shown]
    if run.modality == "text":
        g = _gen(args, "greedy")
        pairs = text_reconstructions(run.model, run.vocab, x, g["method"], g["beam"])
        width = max(len(a) for a, _ in pairs)
        lines = [f"{a:<{width}}  ->  {b}" for a, b in pairs]
        return _show_lines(lines, args.out or run.path / "samples" / f"reconstructions-{args.split}.txt")
    if run.modality == "audio":
        out = args.out or run.path / "samples" / f"reconstructions-{args.split}"
        for f in audio_reconstructions(run.model, run.info, x, out, y):
            print(f)
        return 0
    out = args.out or run.path / "samples" / f"reconstructions-{args.split}.png"
    print(reconstructions_png(run.model, x, out, y=y))
    return 0


def cmd_interpolate(args) -> int:
    import torch

    from .generate import audio_interpolation, encode_lines, interpolations_png, pick_pairs, text_interpolation

    run = _run(args)
    if run.modality == "text" and args.between:
        x = encode_lines(run.vocab, list(args.between), run.model.device)
        a, b = x[:1], x[1:]
        g = _gen(args, "greedy")
        lines = text_interpolation(run.model, run.vocab, a, b, args.steps, g["method"], g["beam"])[0]
        return _show_lines(lines, args.out or run.path / "samples" / "interpolation.txt")
    if run.modality == "audio" and args.between:
        from .data.audio import load_clips

        x = load_clips([Path(p) for p in args.between], run.info).to(run.model.device)
        if run.model.classes:
            raise VaekitError(f"{run.path}: a conditional model interpolates between test clips, whose labels it "
                              f"knows; leave out --between.")
        out = args.out or run.path / "samples" / "interpolation"
        for f in audio_interpolation(run.model, run.info, x[:1], x[1:], out, args.steps):
            print(f)
        return 0
    test = run.data.test
    if args.between:
        idx = []
        for j in args.between:
            try:
                j = int(j)
            except ValueError:
                raise VaekitError(f"--between takes two test-set indices for an image run, got '{j}'.") from None
            if not 0 <= j < test.shape[0]:
                raise VaekitError(f"--between index {j} is outside the test set (0..{test.shape[0] - 1}).")
            idx.append(j)
        a, b = torch.tensor([idx[0]]), torch.tensor([idx[1]])
    else:
        a, b = pick_pairs(test.shape[0], args.pairs, args.seed)
    a, b = a.to(test.device), b.to(test.device)
    y = run.labels("test")
    ya, yb = (None, None) if y is None else (y[a], y[b])
    if run.modality == "text":
        g = _gen(args, "greedy")
        lines = []
        for path in text_interpolation(run.model, run.vocab, test[a], test[b], args.steps, g["method"], g["beam"]):
            lines += path + [""]
        return _show_lines(lines, args.out or run.path / "samples" / "interpolations.txt")
    if run.modality == "audio":
        out = args.out or run.path / "samples" / "interpolation"
        for f in audio_interpolation(run.model, run.info, test[a], test[b], out, args.steps, ya, yb):
            print(f)
        return 0
    out = args.out or run.path / "samples" / "interpolations.png"
    print(interpolations_png(run.model, test[a], test[b], out, args.steps, ya, yb))
    return 0


def cmd_evaluate(args) -> int:
    run = _run(args)
    r = run.evaluate(k=args.k, split=args.split, batch_size=args.batch_rows, quiet=args.quiet)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    print(f"{r['data']} {r['split']} set, {r['n']:,} examples, k = {r['k']}:")
    if "perplexity" in r:
        print(f"  NLL (importance sampled)  {r['nll_nats']:.3f} nats per line   {r['nll_per_token']:.4f} nats per "
              f"token   perplexity {r['perplexity']:.3f} ({r['tokens']:,} tokens with end-of-line)")
    else:
        print(f"  NLL (importance sampled)  {r['nll_nats']:.3f} nats   {r['bits_per_dim']:.4f} bits/dim")
    print(f"  ELBO                      {r['elbo_nats']:.3f} nats   (reconstruction {r['rec_nats']:.3f}, "
          f"KL {r['kl_nats']:.3f})")
    print(f"  active units              {r['active_units']} of {r['latent']} (posterior-mean variance > "
          f"{r['active_threshold']})")
    if r.get("layers"):
        from .evaluate import layers_text

        print("  stochastic layers         " + layers_text(r["layers"]))
    if r["kl_per_dim"] is not None:
        kls = sorted(r["kl_per_dim"], reverse=True)
        print("  KL per dimension (sorted) " + " ".join(f"{v:.2f}" for v in kls))
    if "spectral_convergence" in r:
        print(f"  reconstructions           spectral convergence {r['spectral_convergence']:.4f}   log-spectral "
              f"distance {r['log_spectral_distance_db']:.2f} dB (mel spectrograms)")
    print(f"  took {r['seconds']:.1f} s; written to {run.path / 'evaluation.json'}")
    return 0


def cmd_serve(args) -> int:
    from .serve import serve

    if not 0 <= args.port < 65536:
        raise VaekitError(f"--port must be between 0 and 65535, got {args.port}.")
    try:
        serve(_run(args), host=args.host, port=args.port)
    except OSError as e:
        raise VaekitError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e}).") from None
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    print(write_report(_run(args), args.out))
    return 0


def cmd_info(args) -> int:
    run = _run(args)
    c, info = run.config, run.info
    params = sum(p.numel() for p in run.model.parameters())
    sizes = ", ".join(f"{k} {v:,}" for k, v in info["sizes"].items())
    print(f"run      {run.path}")
    print(f"data     {c.data.source}: {'x'.join(map(str, info['shape']))}, {info['value']}; {sizes}")
    m = c.model
    dropout = f", decoder dropout {m.decoder_dropout:g}" if m.decoder_dropout else ""
    arch = {"mlp": f"hidden {m.hidden}{dropout}", "conv": f"channels {m.channels}",
            "rnn": f"{m.cell}, embedding {m.embedding}, state {m.rnn_hidden}, word dropout {m.word_dropout}"
                   + (", inputless" if m.inputless else "")}.get(m.net, m.net)
    if run.modality == "text":
        print(f"         {info['tokens']} tokens, vocabulary {info['vocab_size']:,} (vocab.json)")
    elif run.modality == "audio":
        print(f"         {info['clip_seconds']:g} s clips at {info['sample_rate']} Hz, {info['n_mels']} mel bins")
    kind = f"conditional ({run.model.classes} classes) " if run.model.classes else ""
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
    print(f"model    {kind}{m.net} ({arch}), latent {m.latent}, {m.likelihood} likelihood, "
          f"{prior}{bounds}, {params:,} parameters" + (f" ({copy:,} of them the prior's copy of the encoder)"
                                                        if copy else ""))
    t = c.train
    obj = f"IWAE k={t.k}" + (", doubly reparameterised gradient" if t.estimator == "dreg" else "") \
        if t.objective == "iwae" else \
        f"ELBO, beta {t.beta:g}, warm-up {t.warmup_epochs:g} epochs, free bits {t.free_bits:g}"
    batch = t.batch_size or f"auto ({auto_batch_size(info['sizes']['train'])})"
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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except VaekitError as e:
        print(f"vaekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vaekit info RUN | head`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's flush at exit does not fail again
        return 141


if __name__ == "__main__":
    sys.exit(main())
