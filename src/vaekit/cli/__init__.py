"""The `vaekit` command: a parser, and one thin function per verb (:mod:`vaekit.cli.verbs`)
that parses, calls the API and prints. `vaekit train`'s options are generated from the config
dataclasses (:mod:`vaekit.cli.options`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import Preempted, VaekitError
from ..plugins import load_plugins
from ..kinds import KINDS, Media
from . import verbs
from ..score import SCORES
from .options import add_train_options, apply_flags, indices, positive_float, positive_int, probability, span, temperatures

__all__ = ["build_parser", "apply_flags", "main"]


class Parser(argparse.ArgumentParser):
    """argparse, with errors as one sentence and a pointer to --help instead of the whole usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\nSee '{self.prog} --help'.\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option after a verb is reported by that verb's parser,
        which points at its own --help (`vaekit sample --help`, not `vaekit --help`)."""
        namespace, extra = self.parse_known_args(args, namespace)
        if extra:
            subs = next((a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {})
            subs.get(getattr(namespace, "verb", None), self).error(f"unrecognized arguments: {' '.join(extra)}")
        return namespace


def _between_help() -> str:
    return "; ".join(k.between_help if ":" in k.between_help else f"{name}: {k.between_help}"
                     for name, k in KINDS.items())


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="vaekit", description="Variational autoencoders: train, sample, evaluate.")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    t = sub.add_parser("train", help="train a VAE and write a run directory",
                       description="Train a VAE. With no arguments: the embedded digits data set.")
    add_train_options(t)
    g = t.add_argument_group("run")
    g.add_argument("--nproc", type=positive_int,
                   help="train with this many processes (DistributedDataParallel, started with torchrun)")
    g.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue a run from its last checkpoint (with --epochs: train to that many in all)")
    g.add_argument("--init", type=Path, metavar="RUN",
                   help="fine-tune: a new run that starts from RUN's weights and config (options override it; "
                        "KL warm-up is off unless --warmup is given), e.g. with --objective iwae")
    g.add_argument("--config", type=Path, help="YAML config; options override it")
    g.add_argument("--out", type=Path, help="run directory (default runs/<data>-<time>)")
    g.add_argument("--quiet", action="store_true", help="no progress bar or log")
    t.set_defaults(func=verbs.cmd_train)

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
        q.add_argument("--temperature", type=temperatures, default=1.0,
                       help="text: the sampling temperature; --net resnet: the prior's standard deviations scaled, "
                            "one value or one per stochastic layer from the top, e.g. 1,0.9,0.8 (the last repeated)")
        q.add_argument("--beam", type=positive_int, default=5, help="text: beam width (default 5)")

    def counts(verb):
        return "; ".join(f"{name} {k.counts.get(verb, Media.counts[verb])}" for name, k in KINDS.items())

    s = run_parser("sample", "decode samples from the prior: a PNG grid, lines of text, or WAV files",
                   verbs.cmd_sample)
    s.add_argument("-n", type=positive_int, default=None, help=f"number of samples (default: {counts('sample')})")
    generation(s)
    s.add_argument("--nrow", type=positive_int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--random", action="store_true", help="draw x ~ p(x|z) instead of showing its mean")
    s.add_argument("--steps", type=positive_int, help="sequences: time steps of each sample (default: the median "
                                                      "length of the training sequences)")
    s.add_argument("--label", help="for a conditional model: the class to generate, by index or name (`vaekit info` "
                                   "lists them; default: each class)")
    s.add_argument("--out", type=Path, help="picture file, PNG unless its suffix names another format (default "
                                            "<run>/samples/samples-seed<seed>.png); text: a text file; audio: a "
                                            "folder")

    f = run_parser("forecast", "sequences: filter the first --context steps, roll the transition --horizon steps "
                               "forward and decode --samples paths; a picture and a file per sequence",
                   verbs.cmd_forecast)
    f.add_argument("--input", type=Path, help="a file of sequences (.npy/.npz arrays, .json note lists) in the "
                                              "data's own units (default: the run's --split)")
    f.add_argument("--split", choices=["train", "valid", "test"], default="test")
    f.add_argument("--context", type=positive_int, help="steps given (default: half the median training length)")
    f.add_argument("--horizon", type=positive_int, default=16, help="steps forecast (default 16)")
    f.add_argument("--samples", type=positive_int, default=100, help="sample paths (default 100)")
    f.add_argument("-n", type=positive_int, default=None, help="forecast the first n sequences (default all)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", type=Path, help="folder (default <run>/forecast)")

    m_ = run_parser("impute", "sequences: fill the missing values (NaN) of each sequence of a file from the "
                              "posterior given the values observed", verbs.cmd_impute)
    m_.add_argument("--input", type=Path, required=True, help="a file of sequences (.npy/.npz arrays) with NaN where "
                                                             "values are missing, in the data's own units")
    m_.add_argument("--mask", type=Path, help="a .npy array of 0/1 (or booleans), 1 where a value is to be filled "
                                             "(treated as missing): shaped like the input's sequences (N, T, D), or "
                                             "(N, T) for whole steps")
    m_.add_argument("--samples", type=positive_int, default=100, help="latent paths averaged (default 100)")
    m_.add_argument("--seed", type=int, default=0)
    m_.add_argument("--out", type=Path, help="folder (default <run>/imputed)")

    r = run_parser("reconstruct", "test examples next to their reconstructions", verbs.cmd_reconstruct)
    r.add_argument("-n", type=positive_int, default=None, help=f"examples (default: {counts('reconstruct')})")
    generation(r)
    r.add_argument("--split", choices=["train", "valid", "test"], default="test")
    r.add_argument("--out", type=Path, help="picture file (default <run>/samples/reconstructions-<split>.png); "
                                            "text: a text file; audio: a folder")

    i = run_parser("interpolate", "decode straight paths between pairs of test examples", verbs.cmd_interpolate)
    i.add_argument("--pairs", type=positive_int, default=8, help="random pairs (default 8)")
    i.add_argument("--between", nargs=2, metavar=("A", "B"), help=_between_help())
    generation(i)
    i.add_argument("--steps", type=positive_int, default=10)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", type=Path, help="picture file (default <run>/samples/interpolations.png); text: a "
                                            "text file; audio: a folder")

    e = run_parser("evaluate", "test ELBO, importance-sampled NLL, bits/dim, KL per dimension, active units",
                   verbs.cmd_evaluate)
    e.add_argument("--k", type=positive_int, default=5000, help="importance samples (default 5000)")
    e.add_argument("--split", choices=["train", "valid", "test"], default="test")
    e.add_argument("--batch-rows", type=positive_int,
                   help="decoder rows (examples x samples) per pass (default: about 40 MB of activations on "
                        "a CPU, up to 32768 rows on a GPU)")
    e.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="compile the decoder passes with torch.compile (auto: estimates of at least 10 million "
                        "decoder rows where a compiler works; default auto)")
    e.add_argument("--factors", action=argparse.BooleanOptionalAction, default=None,
                   help="the disentanglement metrics against the data's known factors: MIG, DCI, SAP, the FactorVAE "
                        "score, modularity and explicitness (default: when the data carry factors)")
    e.add_argument("--dci-exact", action="store_true",
                   help="DCI with sklearn's exact gradient-boosted trees, as disentanglement_lib (minutes on many "
                        "factor values; default: the histogram-based trees, seconds)")
    e.add_argument("--sample-quality", action="store_true",
                   help="also sample quality: the Frechet distance, precision and recall between test data and prior "
                        "samples in the features of a small network trained once on the run's training split (kept "
                        "in <run>/quality/; not the Inception FID: it compares models on the same data)")
    e.add_argument("--samples", type=positive_int, default=2000,
                   help="--sample-quality: prior samples and test examples compared (default 2000)")
    e.add_argument("--features", type=Path, metavar="RUN",
                   help="--sample-quality: the feature network of another run on the same data, so that the two "
                        "runs' figures compare")
    e.add_argument("--temperature", type=temperatures, default=1.0,
                   help="--sample-quality with --net resnet: the prior's temperature, one or one per layer")
    e.add_argument("--json", type=Path, help="also write the result here (always: <run>/evaluation.json)")
    e.add_argument("--quiet", action="store_true")

    w = run_parser("traverse", "vary one latent dimension at a time around a test example (or z = 0) and decode: "
                               "a row per dimension, ordered by KL", verbs.cmd_traverse)
    w.add_argument("--dims", type=indices, help="the dimensions to vary, in this order, e.g. 0,3,5 (default: the "
                                                 "16 with the most KL)")
    w.add_argument("--range", dest="span", type=span, default=(-3.0, 3.0), metavar="LO,HI",
                   help="the values each dimension takes, e.g. --range=-3,3 (with '=': it starts with a minus; "
                        "default -3,3)")
    w.add_argument("--steps", type=positive_int, default=9, help="values per dimension (default 9)")
    w.add_argument("--from", dest="index", type=int, metavar="TEST_INDEX",
                   help="hold the other dimensions at this test example's posterior mean (default: z = 0)")
    generation(w)
    w.add_argument("--out", type=Path, help="picture file (default <run>/samples/traversal.png); text: a text file; "
                                            "audio: a folder")

    run_parser("info", "what a run is: data, model, training, results", verbs.cmd_info)
    v = run_parser("serve", "the latent explorer: a local web app to decode, slide and interpolate", verbs.cmd_serve)
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    c = run_parser("score", "score data for how unlike the training data each example is (anomaly and "
                            "out-of-distribution detection): a CSV, flags, and with --data-ood AUROC and ROC curves",
                   verbs.cmd_score)
    c.add_argument("--data", help="what to score: a file or folder the run's kind reads, or a built-in name "
                                  "(default: the run's test split)")
    c.add_argument("--data-ood", metavar="DATA", help="data known to be out of distribution: report AUROC, AUPRC "
                                                      "and FPR at 95%% TPR of each score, and draw the ROC curves")
    c.add_argument("--k", type=positive_int, default=100, help="importance samples of the NLL (default 100)")
    c.add_argument("--fpr", type=probability, default=0.05,
                   help="false-positive rate on the validation split that sets the threshold (default 0.05)")
    c.add_argument("--by", choices=list(SCORES), default="complexity",
                   help="the score that flags (default complexity: the NLL corrected for input complexity)")
    c.add_argument("--batch", type=positive_int, default=16, help="batch size of the typicality test (default 16)")
    c.add_argument("--out", type=Path, help="CSV file (default <run>/scores/<data>.csv)")
    c.add_argument("--quiet", action="store_true")
    x = run_parser("export", "write the model as ONNX or TorchScript files with a manifest, to use it without "
                             "vaekit", verbs.cmd_export)
    x.add_argument("--format", choices=["onnx", "torchscript"], default="onnx",
                   help="onnx (needs pip install 'vaekit[export]') or torchscript (default onnx)")
    x.add_argument("--part", choices=["encoder", "decoder", "sample", "all"], default="all",
                   help="encoder: x -> z, mu, logvar; decoder: z -> the likelihood's parameters and mean (text: "
                        "one step in ONNX, the greedy loop in TorchScript); sample: noise -> z -> data (default all)")
    x.add_argument("--out", type=Path, help="folder (default <run>/export-<format>)")
    x.add_argument("--check", action="store_true",
                   help="run the files (onnxruntime, torch.jit.load) on test examples and batches of 1 and more, "
                        "print the largest difference from PyTorch; above 1e-5 (relative beyond 1) is an error")
    tp = run_parser("train-prior", "fit a VQ-VAE run's prior over its codes (a causal transformer), which sample "
                                  "then draws from", verbs.cmd_train_prior)
    tp.add_argument("--epochs", type=positive_int, default=30, help="passes over the training codes (default 30)")
    tp.add_argument("--width", type=positive_int, default=128, help="the transformer's width (default 128)")
    tp.add_argument("--layers", type=positive_int, default=2, help="its layers (default 2)")
    tp.add_argument("--heads", type=positive_int, default=4, help="its attention heads (default 4)")
    tp.add_argument("--lr", type=positive_float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    tp.add_argument("--batch-size", type=positive_int, default=128, help="code sequences a step (default 128)")
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--quiet", action="store_true", help="no progress bar or log")
    m = sub.add_parser("compare", help="runs side by side: config differences, figures, curves, samples",
                       description="runs side by side: the config values that differ, the headline figures, the "
                                   "learning curves overlaid and the samples, as a table and an HTML page")
    m.add_argument("runs", nargs="+", type=Path, help="run directories, or folders of runs (a sweep's)")
    m.add_argument("--csv", type=Path, help="also write the table as CSV here")
    m.add_argument("--out", type=Path, default=Path("compare.html"), help="the HTML page (default compare.html)")
    m.set_defaults(func=verbs.cmd_compare)
    w = sub.add_parser("sweep", help="search hyperparameters with Optuna: trials are runs, pruned on their "
                                     "validation bound; a table, the best command line and plots at the end",
                       description="search hyperparameters with Optuna (the sweep file: docs/guide.md#vaekit-sweep)")
    w.add_argument("space", type=Path, help="the sweep file (YAML): base config, space, objective")
    w.add_argument("--trials", type=positive_int, required=True, help="finished trials the study should have")
    w.add_argument("--jobs", type=positive_int, default=1, help="processes on this machine, each with its share of "
                                                                "the cores (default 1)")
    w.add_argument("--storage", help="Optuna storage: a database URL (sqlite:///..., postgresql://...) or "
                                     "journal:PATH (default: sqlite in the sweep's folder)")
    w.add_argument("--out", type=Path, help="the sweep's folder (default sweeps/<file name>)")
    w.add_argument("--quiet", action="store_true")
    w.add_argument("--worker", type=int, help=argparse.SUPPRESS)   # a worker process of --jobs, with its threads
    w.set_defaults(func=verbs.cmd_sweep)
    h = run_parser("report", "write a self-contained HTML report of a run (<run>/report.html)", verbs.cmd_report)
    h.add_argument("--out", type=Path, help="HTML file (default <run>/report.html)")
    return p


def main(argv=None) -> int:
    try:
        load_plugins()   # before the options are built: a plugin's parts are choices like the built-in ones
    except VaekitError as e:
        print(f"vaekit: error: {e}", file=sys.stderr)
        return 2
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
    except Preempted as e:  # SIGTERM, SIGUSR1: the trainer has said how to resume
        print(f"vaekit: stopped by {e}", file=sys.stderr)
        return 128 + e.signum
    except BrokenPipeError:  # e.g. `vaekit info RUN | head`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's flush at exit does not fail again
        return 141


if __name__ == "__main__":
    sys.exit(main())
