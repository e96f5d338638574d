"""Configuration as plain dataclasses: data, model and training, saved as YAML in a run.

A run's ``config.yaml`` holds everything needed to rebuild the model (and, with the data
still on disk, the data pipeline). Values are plain Python types so the YAML is readable and
editable. Every field is spelled once: its default, its help and how the command line parses
it live in the field's metadata (:func:`opt`); ``vaekit train``'s options are generated from
them (:mod:`vaekit.cli.options`), and :meth:`Config.check` validates against the same
choices, which for parts of the model are their registries' names. Every ``auto`` is resolved
once against the data (:func:`resolve`), before ``config.yaml`` is written.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import VaekitError
from .kinds.media import KINDS, kind
from .model.likelihoods import default_likelihood
from .model.objectives import draws
from .model.registry import LIKELIHOODS, NETS, OBJECTIVES, PRIORS

#: the most CPU threads a run may ask for
MAX_THREADS = 4096

#: the nonlinearities of the MLP networks (``gated``: gated linear units)
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "gated")

#: how the command line parses a value; the checks of a value that came from YAML follow from it
PARSERS = ("str", "int", "float", "int+", "float+", "int0+", "float0+", "ints", "sizes", "range", "flag", "names")


def opt(default=None, help: str | Callable[[], str] = "", *, factory: Callable | None = None, flag: str | None = None,
        group: str | None = None, choices=None, parse: str = "str", metavar: str | None = None, cli: bool = True):
    """A config field with what the command line needs: ``help`` (or a function returning it, for
    help that lists a registry); ``flag``, the option's name
    when it is not the field's; ``group``, the help section; ``choices``, a tuple or a function
    returning the allowed names (a registry's); ``parse``, one of :data:`PARSERS`; ``cli=False``
    for a field set only in YAML."""
    assert parse in PARSERS, parse
    meta = {"help": help, "flag": flag, "group": group, "choices": choices, "parse": parse, "metavar": metavar,
            "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def choices_of(f: dataclasses.Field) -> tuple[str, ...] | None:
    c = f.metadata.get("choices")
    return tuple(c()) if callable(c) else c


def _auto(names):
    return lambda: ("auto", *names())


@dataclass
class DataConfig:
    """Where the data come from and how values are treated (each field's help: its metadata)."""

    source: str = opt("digits", "digits (default), fashion-mnist, dsprites (drawn here, with its factors), or a path: IDX file, .npz/.npy, folder of "
                                "train/valid/test arrays or IDX files, folder of PNG/JPEG; a text file (one example "
                                "per line) or folder of them; a folder of WAV files", flag="data")
    binarize: str = opt("none", "binary pixels: threshold (x > 0.5), static (one fixed draw) or dynamic (a new "
                                "draw every batch)", choices=("none", "threshold", "static", "dynamic"))
    shape: list[int] | None = opt(None, "image shape for flat (N, D) arrays: HxW or CxHxW", parse="ints")
    image_size: list[int] | None = opt(None, "resize images in a folder to H or HxW; the size dsprites is drawn at "
                                             "(default 64)", parse="ints")
    subset: int | None = opt(None, "a random subset of this many images (of the training split when the source has "
                                   "its own; dsprites: default 50,000 of 737,280); chorales: the first this many "
                                   "pieces", parse="int+")
    valid_fraction: float = opt(0.1, "share held out for validation when the source has no such split",
                                parse="float", cli=False)
    test_fraction: float = opt(0.1, "share held out for testing when the source has no such split",
                               parse="float", cli=False)
    split_seed: int = opt(0, "seed of the held-out split", parse="int", cli=False)
    modality: str = opt("auto", "what the data are (default auto: from the source)",
                        choices=lambda: ("auto", *KINDS))
    tokens: str = opt("char", "character or word tokens", group="text", choices=("char", "word"))
    sequence_id: str | None = opt(None, "a CSV or Parquet table in long form (one row a time step): the column "
                                        "naming each row's sequence; the other columns but --time are its values",
                                  group="sequence", metavar="COLUMN")
    time: str | None = opt(None, "with --sequence-id: the column that orders each sequence's rows (numbers, or "
                                 "dates in ISO form)", group="sequence", metavar="COLUMN")
    window: int | None = opt(None, "embedded series (elnino, co2): steps a window holds (default 48 months, 104 "
                                   "weeks)", group="sequence", parse="int+")
    steps_per_quarter: int = opt(1, "piano rolls (chorales, note lists): time steps per quarter note",
                                 group="sequence", parse="int+")
    max_length: int = opt(128, "skip lines with more tokens", group="text", parse="int+")
    min_count: int | None = opt(None, "rarer tokens become <unk> (default 1 for characters, 2 for words)",
                                group="text", parse="int+")
    valid: str | None = opt(None, "a separate validation file (text) or WAV folder or file-name pattern (audio)",
                            flag="valid_data")
    test: str | None = opt(None, "a separate test file (text) or WAV folder or file-name pattern such as "
                                 "'*_[0-4].wav' (audio)", flag="test_data")
    sample_rate: int = opt(8000, "resample to this rate in Hz", group="audio", parse="int+")
    clip_seconds: float = opt(1.0, "trim or pad every clip to this length", group="audio",
                              parse="float+")
    n_mels: int = opt(64, "mel bins", group="audio", parse="int+")
    n_fft: int = opt(256, "STFT window in samples", group="audio", parse="int+")
    hop: int = opt(128, "STFT hop in samples", group="audio", parse="int+")
    label_from: str | None = opt(None, "labels from file names, e.g. '{label}_*' for 7_jackson_3.wav",
                                 group="audio")
    bad_files: str = opt("auto", "an unusable file in a folder (unreadable, empty, truncated, silent): skip it, "
                                 "naming it, or stop there (auto: skip for audio, stop for images)",
                         choices=("auto", "skip", "stop"))


@dataclass
class ModelConfig:
    """The parts of the VAE: network, likelihood, prior, posterior (each field's help: its metadata).
    The recipes behind the options are in docs/recipes.md."""

    net: str = opt("auto", "the network (auto: the kind of data's: mlp for images, rnn for text, conv for audio)",
                   choices=_auto(NETS.names))
    latent: int = opt(16, "latent dimensions", parse="int+")
    hidden: list[int] = opt(factory=lambda: [512, 256], help="MLP hidden sizes, e.g. 512,256", parse="ints")
    channels: list[int] = opt(factory=lambda: [32, 64], help="conv channels per block, e.g. 32,64 (each block "
                                                             "halves the size)", parse="ints")
    resnet: str = opt("small", "--net resnet: the size of the deep hierarchical network: small (trains on 2 CPU "
                               "cores in minutes), base, or gpu", choices=("small", "base", "gpu"))
    spectral_reg: float = opt(0.0, "--net resnet: the weight of NVAE's spectral regulariser (the sum of every "
                                   "convolution's largest singular value; 0: off)", parse="float0+")
    activation: str = opt("relu", "MLP nonlinearity; gated: GLU units, a * sigmoid(b)", choices=ACTIVATIONS)
    likelihood: str = opt("auto", "p(x|z) (auto: from the values: bernoulli for binary, logistic for levels, "
                                  "gaussian for continuous, categorical for tokens)",
                          choices=_auto(LIKELIHOODS.names))
    mixtures: int = opt(10, "--likelihood logistic-mixture: the logistics K of each pixel's mixture", parse="int+")
    gaussian_std: float | None = opt(None, "fixed std of the Gaussian likelihood (default: learned)",
                                     parse="float+")
    prior: str = opt("auto", lambda: "p(z) (auto: normal; markov for sequences): " + PRIORS.help(),
                     choices=_auto(PRIORS.names))
    prior_components: int | None = opt(None, "mixture components / pseudo-inputs (default 10 for mog, 500 for vamp)",
                                       parse="int+")
    categories: int = opt(10, "--prior categorical: the categories K of each of the --latent variables",
                          parse="int+")
    continuous: int = opt(0, "--prior categorical: Gaussian dimensions beside the categorical variables (a mixed "
                             "latent)", parse="int0+")
    gumbel_temperature: float = opt(1.0, "--prior categorical: the Gumbel-softmax temperature at the first step",
                                    parse="float+")
    gumbel_min_temperature: float = opt(0.5, "--prior categorical: the temperature's floor", parse="float+")
    gumbel_anneal: float = opt(1e-4, "--prior categorical: the rate r of the temperature max(floor, start "
                                     "exp(-r step))", parse="float0+")
    straight_through: bool = opt(False, "--prior categorical: one-hot draws forward, the relaxed gradient "
                                        "backward (straight-through Gumbel-softmax)", parse="flag")
    codebook: int = opt(256, "--prior vq: the codes K each position chooses from", parse="int+")
    code_dim: int = opt(16, "--prior vq: the size d of each code vector (the latent is --latent x d values)",
                        parse="int+")
    commitment: float = opt(0.25, "--prior vq: the weight beta of the commitment loss |z_e - sg(z_q)|^2",
                            parse="float0+")
    codebook_decay: float = opt(0.99, "--prior vq: the decay of the codebook's moving averages", parse="float+")
    code_map: bool = opt(False, "--prior vq with --net conv: the codes form the encoder's last feature map (h x w "
                                "places, --latent unused), read by 1x1 convolutions", parse="flag")
    conditional: bool = opt(False, "conditional VAE: the class label is an extra input to encoder and decoder",
                            parse="flag")
    top_latent: int | list[int] | None = opt(None, "sizes of the layers above z1 of --prior hierarchical, e.g. 40 "
                                                   "or 40,20 (default latent/2)", parse="sizes")
    top_prior: str = opt("normal", "prior of the top layer of --prior hierarchical: N(0, I) or a VampPrior",
                         choices=("normal", "vamp"))
    inference: str = opt("bottom-up", "how --prior hierarchical infers its layers: bottom-up, q(z1|x) q(z2|z1), "
                                      "or top-down, q(z2|x) q(z1|x,z2)", choices=("bottom-up", "top-down"))
    prior_hidden: list[int] | None = opt(None, "hidden sizes of the networks between stochastic layers, e.g. "
                                               "300,300 (default: one layer of the last --hidden size)", parse="ints")
    prior_activation: str = opt("tanh", "nonlinearity of those networks", choices=ACTIVATIONS)
    latent_paths: bool = opt(False, "top-down: each layer enters the decoder and q(z1|x,z2) through a hidden layer "
                                    "of its own, not concatenated", parse="flag")
    logvar_range: list[float] | None = opt(None, "clip every Gaussian's log-variance to [LO, HI], e.g. "
                                                 "--logvar-range=-6,2 (with '=': the value starts with a minus; "
                                                 "default: unbounded)", parse="range", metavar="LO,HI")
    refine_encoder: bool = opt(False, "with --init RUN: train only q(z|x) against RUN's fixed model, for a "
                                      "tighter NLL estimate", parse="flag")
    flow: int = opt(0, "inverse autoregressive flow steps after the encoder's Gaussian (dmm: after each "
                       "step's q(z_t | .)); with --init RUN --refine-encoder they are added to RUN's encoder",
                    parse="int0+", metavar="STEPS")
    flow_hidden: int | None = opt(None, "hidden units of each flow step (default: the larger of the last --hidden "
                                        "and twice the latent; dmm: twice the latent)", parse="int+", metavar="UNITS")
    decoder_dropout: float = opt(0.0, "dropout on the MLP decoder's (and the dmm emission's) hidden layers in "
                                           "training",
                                 parse="float0+", metavar="P")
    cell: str = opt("gru", "recurrent cell for text and the dmm's inference network", group="text",
                    choices=("gru", "lstm"))
    transition: str = opt("gated", "dmm: p(z_t | z_t-1) a gated non-linear transition, or linear (A z + b, "
                                   "with --emission linear and a Gaussian likelihood the linear-Gaussian state-space "
                                   "model, whose exact likelihood evaluate gets from a Kalman filter)",
                          group="sequence", choices=("gated", "linear"))
    emission: str = opt("mlp", "dmm: p(x_t | z_t) from two hidden layers (--hidden), or linear", group="sequence",
                        choices=("mlp", "linear"))
    dmm_inference: str = opt("backward", "dmm: q(z_t | z_t-1, x_t:T) reads a backward RNN over the frames, or "
                                         "q(z_t | z_t-1, x_1:T) a bidirectional one", group="sequence",
                             choices=("backward", "bidirectional"))
    embedding: int = opt(64, "token embedding size", group="text", parse="int+")
    rnn_hidden: int = opt(256, "recurrent state size", group="text", parse="int+")
    word_dropout: float = opt(0.0, "probability of replacing a decoder input token by <unk> in training",
                              group="text", parse="float0+")
    inputless: bool = opt(False, "a text decoder that never sees the previous tokens, only z", group="text",
                          parse="flag")

    def latent_words(self) -> str:
        """The latent in a few words, for the run header and ``vaekit info``."""
        if self.net == "resnet":
            return "latent: a hierarchy of latent maps"
        if self.prior == "vq":
            where = "a code map" if self.code_map else f"{self.latent} positions"
            return f"latent {where} of {self.codebook} codes of {self.code_dim}"
        if self.prior == "categorical":
            return (f"latent {self.latent} categorical variables of {self.categories}"
                    + (f" and {self.continuous} Gaussian dimensions" if self.continuous else ""))
        return f"latent {self.latent}"

    def top_sizes(self) -> list[int]:
        """The sizes of the hierarchical prior's layers above z1: [z2, ..., zL] (default [latent // 2])."""
        t = self.top_latent
        if t is None:
            return [max(1, self.latent // 2)]
        return [int(v) for v in t] if isinstance(t, (list, tuple)) else [int(t)]


@dataclass
class TrainConfig:
    """Optimisation and objective (each field's help: its metadata)."""

    epochs: int = opt(60, "epochs to train", parse="int+")
    batch_size: int | None = opt(None, "examples per step (default: 32 under 20,000 training examples, else 128; "
                                              "sequences: a thirtieth of the training set, 8 to 32)",
                                 parse="int+")
    batch_order: str = opt("auto", "how an epoch's batches are drawn: random, or sortish (sequences of similar "
                                   "lengths together, the batches in random order); auto: sortish for sequences",
                           choices=("auto", "random", "sortish"))
    lr: float = opt(1e-3, "Adam's learning rate", parse="float+")
    lr_schedule: str = opt("none", "cosine decay, or halve on a plateau of the valid bound",
                           choices=("none", "cosine", "plateau"))
    min_lr: float = opt(1e-5, "the floor of the learning-rate schedules", parse="float0+", cli=False)
    weight_decay: float = opt(0.0, "Adam's weight decay", parse="float0+")
    clip_grad: float = opt(0.0, "clip the gradient norm (0: off)", parse="float0+")
    skip_grad_norm: float = opt(0.0, "skip an update whose gradient norm (before clipping) is above this, as VDVAE "
                                     "does (0: off)", parse="float0+")
    patience: int = opt(0, "stop when the valid bound has not improved for this many epochs (0: off)",
                        parse="int0+")
    objective: str = opt("elbo", lambda: "the training bound: " + OBJECTIVES.help(), choices=OBJECTIVES.names)
    k: int = opt(1, "importance samples for --objective iwae, ciwae (and of each group: miwae, piwae)", parse="int+")
    estimator: str = opt("standard", "the encoder's gradient of the IWAE bound: standard, or dreg (doubly "
                                     "reparameterised, Tucker et al. 2019: less noisy for large k)",
                           choices=("standard", "dreg"))
    beta: float = opt(1.0, "KL weight (beta-VAE); with --objective tcvae, the weight of the total correlation",
                      parse="float0+")
    warmup_epochs: float = opt(0, "KL warm-up epochs: beta rises linearly from 0", flag="warmup", parse="float0+")
    free_bits: float | None = opt(None, "minimum KL per latent dimension in nats (default: 0, text 0.25)",
                                  parse="float0+")
    mi_weight: float = opt(1.0, "--objective tcvae: the weight of the index-code mutual information (alpha)",
                           parse="float0+", group="disentangling")
    dimkl_weight: float = opt(1.0, "--objective tcvae: the weight of the dimension-wise KL (gamma)",
                              parse="float0+", group="disentangling")
    gamma: float = opt(35.0, "--objective factor: the weight of the discriminator's total correlation",
                       parse="float0+", group="disentangling")
    discriminator: list[int] = opt(factory=lambda: [1000] * 6, help="--objective factor: the discriminator's hidden "
                                                                    "sizes (default six of 1000, as the paper)",
                                   parse="ints", group="disentangling")
    discriminator_lr: float = opt(1e-4, "--objective factor: the discriminator's Adam learning rate (betas 0.5, "
                                        "0.9)", parse="float+", group="disentangling")
    capacity: float = opt(25.0, "--objective capacity: the KL's final target C in nats", parse="float0+",
                          group="disentangling")
    capacity_epochs: float = opt(25.0, "--objective capacity: epochs over which C rises from 0", parse="float0+",
                                 group="disentangling")
    capacity_weight: float = opt(1000.0, "--objective capacity: gamma, the weight of |KL - C|", parse="float0+",
                                 group="disentangling")
    dip_lambda: float = opt(10.0, "--objective dip-i/dip-ii: the weight of the off-diagonal covariance",
                            parse="float0+", group="disentangling")
    dip_lambda_d: float | None = opt(None, "--objective dip-i/dip-ii: the weight of the diagonal's distance from 1 "
                                           "(default 10 x --dip-lambda for dip-i, 1 x for dip-ii)",
                                     parse="float0+", group="disentangling")
    groups: int = opt(1, "--objective miwae/piwae: the number M of groups of --k samples", parse="int+",
                      group="objectives")
    ciwae_beta: float = opt(0.5, "--objective ciwae: the ELBO's share beta of beta ELBO + (1 - beta) IWAE",
                            parse="float0+", group="objectives")
    mmd_weight: float = opt(10.0, "--objective wae/infovae: lambda, the weight of the MMD between q(z) and p(z)",
                            parse="float0+", group="objectives")
    mmd_kernel: str = opt("imq", "--objective wae/infovae: the kernel of the MMD, inverse multiquadratic or RBF",
                          choices=("imq", "rbf"), group="objectives")
    mmd_scale: float = opt(1.0, "--objective wae/infovae: the kernel's scale C = 2 x latent x this (the prior's "
                                "variance)", parse="float+", group="objectives")
    info_alpha: float = opt(0.0, "--objective infovae: alpha; the KL is weighted 1 - alpha and the MMD "
                                 "alpha + lambda - 1", parse="float", group="objectives")
    seed: int = opt(0, "random seed", parse="int")
    device: str = opt("auto", "where to train (auto: CUDA when there is one)", choices=("auto", "cpu", "cuda"))
    threads: int | None = opt(None, "CPU threads (default: the cores this process may use, less those other "
                                    "processes keep busy, revised each epoch)", parse="int+")
    track: str = opt("none", "log each epoch's figures, samples and the config to TensorBoard (event files in "
                             "<run>/tensorboard; pip install 'vaekit[tensorboard]') and/or MLflow (MLFLOW_TRACKING_URI, "
                             "else sqlite:///<runs>/mlflow.db; pip install 'vaekit[mlflow]'); several separated by "
                             "commas", choices=("none", "tensorboard", "mlflow"), parse="names", metavar="TRACKERS")
    track_every: int = opt(10, "with --track: log prior samples every this many epochs (and at the last)",
                           parse="int+", metavar="EPOCHS")
    max_bad_steps: int = opt(20, "this many steps in a row with a non-finite loss or gradient count as divergence",
                             parse="int+")
    on_divergence: str = opt("recover", "on divergence (--max-bad-steps bad steps in a row, a non-finite validation "
                                        "bound, or one fallen far below its best): recover, i.e. go back to the "
                                        "last checkpoint, halve the learning rate, reshuffle and go on; or stop",
                             choices=("recover", "stop"))
    max_recoveries: int = opt(6, "recoveries from divergence before training stops", parse="int0+")
    amp: str = opt("auto", "mixed precision (auto: on for CUDA only)", choices=("auto", "on", "off"))
    cuda_graph: str = opt("auto", "replay the training step as one CUDA graph (auto: on CUDA with --amp off, one "
                                    "process, no recurrent network)",
                          choices=("auto", "on", "off"))
    compile: str = opt("auto", "compile the training step with torch.compile (auto: runs of at least 20,000 steps "
                               "where a compiler works, not recurrent networks, not convolutions on a CPU; on: "
                               "wherever it can, or say why not)",
                       choices=("auto", "on", "off"))
    init: str | None = opt(None, "a run whose weights this one starts from", cli=False)
    ema: float = opt(0.0, "validate and save a moving average of the weights with this decay (e.g. 0.999; 0: off)",
                     parse="float0+", metavar="DECAY")


SECTIONS = (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))


def auto_batch_size(n_train: int) -> int:
    return 32 if n_train < 20000 else 128


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Every option by its dotted name: ``{"model.latent": 16, ...}``."""
        return {f"{section}.{k}": v for section, part in self.to_dict().items() for k, v in part.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "config") -> "Config":
        d = dict(d or {})
        parts = {}
        for name, klass in SECTIONS:
            sub = d.pop(name, None) or {}
            if not isinstance(sub, dict):
                raise VaekitError(f"{origin}: section '{name}' must be a mapping.")
            known = {f.name for f in dataclasses.fields(klass)}
            unknown = sorted(set(sub) - known)
            if unknown:
                raise VaekitError(f"{origin}: unknown key(s) {', '.join(unknown)} in section '{name}'.")
            parts[name] = klass(**sub)
        cfg = cls(**parts)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Reject values that cannot work, with one sentence each: first each field against its
        choices and the kind of number it is, then the combinations."""
        if isinstance(self.data.source, os.PathLike):
            self.data.source = os.fspath(self.data.source)
        if not isinstance(self.data.source, str):
            raise VaekitError(f"data.source names a file, a folder or a data set, not a {type(self.data.source).__name__}; "
                              f"give data in memory as vaekit.train(cfg, data=...).")
        for section, klass in SECTIONS:
            part = getattr(self, section)
            for f in dataclasses.fields(klass):
                value = _plain(getattr(part, f.name), f.metadata.get("parse", "str"))
                setattr(part, f.name, value)  # plain Python values, so config.yaml stays readable
                _check_field(f"{section}.{f.name}", value, f)
        m, t, d = self.model, self.train, self.data
        if m.prior == "class" and not m.conditional:
            raise VaekitError("model.prior 'class' (a learned Gaussian per class) needs a conditional model: "
                              "set model.conditional (--conditional) and give labels.")
        if m.top_prior != "normal" and m.prior != "hierarchical":
            raise VaekitError(f"model.top_prior '{m.top_prior}' is the prior of a second stochastic layer: "
                              "it needs model.prior 'hierarchical' (--prior hierarchical).")
        if m.inference != "bottom-up" and m.prior != "hierarchical":
            raise VaekitError(f"model.inference '{m.inference}' says how a second stochastic layer is inferred: "
                              "it needs model.prior 'hierarchical' (--prior hierarchical).")
        if (m.prior_hidden is not None or m.prior_activation != "tanh") and m.prior != "hierarchical":
            raise VaekitError("model.prior_hidden and model.prior_activation shape the networks between two "
                              "stochastic layers: they need model.prior 'hierarchical' (--prior hierarchical).")
        if m.latent_paths and not (m.prior == "hierarchical" and m.inference == "top-down"):
            raise VaekitError("model.latent_paths gives z1 and z2 their own paths into the networks of the top-down "
                              "hierarchical VAE: it needs --prior hierarchical --inference top-down.")
        if m.refine_encoder and not t.init:
            raise VaekitError("model.refine_encoder fits the encoder to a trained model, which stays fixed: it needs "
                              "train.init (--init RUN).")
        if t.estimator == "dreg" and t.objective not in ("iwae", "miwae", "piwae"):
            raise VaekitError("train.estimator 'dreg' is a gradient of the IWAE bound: it needs train.objective "
                              "'iwae', 'miwae' or 'piwae' (--objective iwae; with --k 1 it is the ELBO's 'sticking "
                              "the landing').")
        if t.threads is not None and t.threads > MAX_THREADS:
            raise VaekitError(f"train.threads is {t.threads}, more threads than any machine runs (at most "
                              f"{MAX_THREADS}).")
        if t.ciwae_beta > 1:
            raise VaekitError(f"train.ciwae_beta is the ELBO's share of the CIWAE bound, between 0 and 1, "
                              f"got {t.ciwae_beta:g}.")
        if t.estimator == "dreg" and m.prior == "ladder":
            raise VaekitError("train.estimator 'dreg' holds the encoder fixed, and the deep hierarchical network's "
                              "posterior also reads its decoder: use --estimator standard with --net resnet.")
        if t.estimator == "dreg" and m.flow:
            raise VaekitError("train.estimator 'dreg' needs the density of q at its samples with the encoder held "
                              "fixed, which a flow gives only by inverting it: use --flow or --estimator dreg, "
                              "not both.")
        if not m.decoder_dropout < 1:
            raise VaekitError(f"model.decoder_dropout must be in [0, 1), got {m.decoder_dropout}.")
        if not m.word_dropout <= 1:
            raise VaekitError(f"model.word_dropout must be between 0 and 1, got {m.word_dropout}.")
        if not t.ema < 1:
            raise VaekitError(f"train.ema is a decay in [0, 1) (0: off; e.g. 0.999), got {t.ema}.")
        if d.hop > d.n_fft:
            raise VaekitError(f"data.hop ({d.hop}) must not exceed data.n_fft ({d.n_fft}).")
        if d.label_from is not None and "{label}" not in d.label_from:
            raise VaekitError(f"data.label_from must contain {{label}}, got '{d.label_from}'.")
        for key, frac in (("data.valid_fraction", d.valid_fraction), ("data.test_fraction", d.test_fraction)):
            if not isinstance(frac, (int, float)) or not 0 < frac < 0.5:
                raise VaekitError(f"{key} must be between 0 and 0.5, got {frac}.")


def _plain(value, parse: str):
    """A value as the plain Python type YAML writes: tuples as lists, paths as strings, numpy
    numbers as Python ones, and a whole-number float where an integer is wanted as an int."""
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list):
        return [_plain(v, "int" if parse in ("ints", "sizes") else parse) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        whole = parse in ("int", "int+", "int0+", "ints", "sizes")
        return int(value) if whole and float(value).is_integer() else float(value)
    return value


def _check_field(key: str, value, f: dataclasses.Field) -> None:
    """One field's value against its choices and the kind of value its ``parse`` says."""
    if value is None and (f.default is None or f.name in ("min_count",)):
        return
    allowed = choices_of(f)
    if allowed is not None and f.metadata.get("parse") == "names":   # "none", or names separated by commas
        if not isinstance(value, str) or value != "none" and not all(v in allowed[1:] for v in value.split(",")):
            raise VaekitError(f"{key} is '{value}', expected 'none' or some of {', '.join(allowed[1:])} "
                              "separated by commas.")
        return
    if allowed is not None:
        if value not in allowed:
            raise VaekitError(f"{key} is '{value}', expected one of: {', '.join(allowed)}.")
        return
    kind_ = f.metadata.get("parse", "str")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind_ in ("int+", "float+", "int0+", "float0+", "int", "float"):
        whole = kind_.startswith("int")
        if not number or (whole and not isinstance(value, int)):
            raise VaekitError(f"{key} must be {'an integer' if whole else 'a number'}, got {value!r}.")
        if kind_.endswith("0+") and value < 0:
            raise VaekitError(f"{key} must not be negative, got {value}.")
        if kind_.endswith("+") and not kind_.endswith("0+") and not value > 0:
            raise VaekitError(f"{key} must be positive, got {value}.")
    elif kind_ in ("ints", "sizes"):
        sizes = value if isinstance(value, list) else [value] if kind_ == "sizes" else None
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
            what = "a positive size or a list of them" if kind_ == "sizes" else "a non-empty list of positive sizes"
            raise VaekitError(f"{key} must be {what}, got {value}.")
    elif kind_ == "range":
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
                and value[0] < value[1]):
            raise VaekitError(f"{key} must be two numbers [lo, hi] with lo < hi, got {value}.")
    elif kind_ == "flag":
        if not isinstance(value, bool):
            raise VaekitError(f"{key} must be true or false, got {value!r}.")
    elif not isinstance(value, str):
        raise VaekitError(f"{key} must be a string, got {value!r}.")


def without_effect(config: Config) -> list[str]:
    """Options set to something other than their default that this configuration never reads,
    one sentence each: said as warnings when training starts (resolved configs only)."""
    m, t, d = config.model, config.train, config.data
    defaults = ModelConfig()
    out = []
    weighted = draws(t.objective, t.k, t.groups)[1] > 0
    if not weighted and t.k != 1:
        out.append(f"--k {t.k} is the number of importance samples of the importance-weighted objectives "
                   f"(iwae, miwae, piwae, ciwae); the {t.objective} uses one")
    if weighted and (t.beta != 1 or t.warmup_epochs or t.free_bits):
        out.append(f"--beta, --warmup and --free-bits shape the ELBO; the {t.objective} bound has no KL term to weight")
    if t.objective == "capacity" and (t.beta != 1 or t.warmup_epochs or t.free_bits):
        out.append("--beta, --warmup and --free-bits shape the ELBO's KL; --objective capacity weighs |KL - C| by "
                   "--capacity-weight instead")
    if t.objective == "wae" and (t.beta != 1 or t.warmup_epochs or t.free_bits):
        out.append("--beta, --warmup and --free-bits shape the ELBO's KL; the wae has none (the MMD takes its place)")
    if t.objective == "tcvae" and t.free_bits:
        out.append("--free-bits is a floor on the ELBO's KL; --objective tcvae weighs the KL's parts instead")
    plain = TrainConfig()
    for objectives, names in ((("tcvae",), ("mi_weight", "dimkl_weight")),
                              (("factor",), ("gamma", "discriminator", "discriminator_lr")),
                              (("dip-i", "dip-ii"), ("dip_lambda", "dip_lambda_d")),
                              (("capacity",), ("capacity", "capacity_epochs", "capacity_weight")),
                              (("miwae", "piwae"), ("groups",)), (("ciwae",), ("ciwae_beta",)),
                              (("wae", "infovae"), ("mmd_weight", "mmd_kernel", "mmd_scale")),
                              (("infovae",), ("info_alpha",))):
        if t.objective not in objectives and any(getattr(t, n) != getattr(plain, n) for n in names):
            flags = ", ".join("--" + n.replace("_", "-") for n in names)
            out.append(f"{flags} shape --objective {' or '.join(objectives)}; this run's is {t.objective}")
    gumbel = ("categories", "continuous", "gumbel_temperature", "gumbel_min_temperature", "gumbel_anneal",
              "straight_through")
    quantised = ("codebook", "code_dim", "commitment", "codebook_decay", "code_map")
    if m.prior != "vq" and any(getattr(m, n) != getattr(defaults, n) for n in quantised):
        out.append(f"{', '.join('--' + n.replace('_', '-') for n in quantised if getattr(m, n) != getattr(defaults, n))} "
                   f"shape the vector-quantised latent (--prior vq); this run's prior is {m.prior}")
    if m.prior == "vq" and m.code_map and m.latent != defaults.latent:
        out.append(f"--latent {m.latent} is the number of code positions; with --code-map they are the places of "
                   f"the conv network's last feature map")
    if m.prior != "categorical" and any(getattr(m, n) != getattr(defaults, n) for n in gumbel):
        out.append(f"{', '.join('--' + n.replace('_', '-') for n in gumbel if getattr(m, n) != getattr(defaults, n))} "
                   f"shape the categorical latent (--prior categorical); this run's prior is {m.prior}")
    if m.prior_components is not None and m.prior not in ("mog", "vamp") and m.top_prior != "vamp":
        out.append(f"--prior-components is the size of a mixture prior (mog, vamp), not of the {m.prior} prior")
    if m.gaussian_std is not None and m.likelihood != "gaussian":
        out.append(f"--gaussian-std is the Gaussian likelihood's; this model's is {m.likelihood}")
    if m.flow_hidden is not None and not m.flow:
        out.append("--flow-hidden sizes the flow's steps, and there are none (--flow 0)")
    if m.net != "conv" and m.channels != defaults.channels:
        out.append(f"--channels sizes the conv network; this model's is {m.net}")
    if m.net != "resnet" and (m.resnet, m.spectral_reg) != (defaults.resnet, defaults.spectral_reg):
        out.append(f"--resnet and --spectral-reg shape the resnet network; this model's is {m.net}")
    if m.net == "resnet" and (m.latent, m.hidden) != (defaults.latent, defaults.hidden):
        out.append("--latent and --hidden do not size the resnet network: --resnet small|base|gpu does")
    if m.mixtures != defaults.mixtures and m.likelihood != "logistic-mixture":
        out.append(f"--mixtures is the logistic mixture's; this model's likelihood is {m.likelihood}")
    if m.net == "dmm" and any(getattr(m, k) != getattr(defaults, k) for k in ("embedding", "word_dropout", "inputless")):
        out.append("--embedding, --word-dropout and --inputless shape the text network; this model's is dmm")
    if m.net != "dmm" and (m.dmm_inference, m.transition, m.emission) != (defaults.dmm_inference, defaults.transition,
                                                                          defaults.emission):
        out.append(f"--dmm-inference, --transition and --emission are the dmm network's; this model's is {m.net}")
    if m.net not in ("rnn", "dmm") and any(getattr(m, k) != getattr(defaults, k)
                                           for k in ("cell", "embedding", "rnn_hidden", "word_dropout", "inputless")):
        out.append(f"--cell, --embedding, --rnn-hidden, --word-dropout and --inputless shape the text network; this "
                   f"model's is {m.net}")
    if d.steps_per_quarter != 1 and d.modality != "sequence":
        out.append(f"--steps-per-quarter sets the time grid of piano rolls; this run's data are {d.modality}")
    if d.subset is not None and not kind(d.modality).takes_subset:
        out.append(f"--subset takes a random subset of images; this run's data are {d.modality}")
    if d.label_from and not m.conditional:
        out.append("--label-from gives the clips labels, which colour the latent map; the model reads them only "
                   "with --conditional")
    return out


def resolve(config: Config, info: dict) -> list[str]:
    """Resolve every ``auto`` against the data described by ``info`` (in place): the kind of
    data, the network and free bits (the kind's defaults), the likelihood (from the kind of
    value) and the batch size (from the training set's size). Then check that the parts fit the
    data, without building a model: one sentence naming the source when they do not.

    Returns the keys it set (``model.net``, ...); a run keeps them in config.yaml as ``resolved``,
    so that a config reused for other data (``--config``, ``--init``) is resolved anew
    (:func:`unresolved`)."""
    from .model import misfit

    m, t = config.model, config.train
    k = kind(info.get("modality", "image"))
    sizes = info.get("sizes")
    n_train = sizes.get("train") if isinstance(sizes, dict) else None   # (a damaged description may lack it)
    values = {"data.modality": (config.data.modality == "auto", k.name),
              "data.bad_files": (config.data.bad_files == "auto", k.default_bad_files),
              "model.net": (m.net == "auto", k.default_net),
              "model.likelihood": (m.likelihood == "auto", default_likelihood(info["value"])),
              "model.prior": (m.prior == "auto", NETS.traits(k.default_net if m.net == "auto" else m.net)
                              .get("prior", k.default_prior)),
              "train.free_bits": (t.free_bits is None, k.default_free_bits),
              "train.batch_size": (t.batch_size is None and isinstance(n_train, int),
                                   isinstance(n_train, int) and k.default_batch_size(n_train)
                                   or auto_batch_size(n_train if isinstance(n_train, int) else 0)),
              }
    done = []
    for key, (unset, value) in values.items():
        if unset:
            section, name = key.split(".")
            setattr(getattr(config, section), name, value)
            done.append(key)
    objective = getattr(t, "objective", None)   # (a config made in Python may hold the model part alone)
    why = misfit(m, info) or (OBJECTIVES.misfit(objective, m, info) if objective else None)
    if why:
        raise VaekitError(f"{config.data.source}: {why}.")
    return done


def _version(text) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in str(text).split("+")[0].split(".")[:3])
    except ValueError:
        return None


def check_version(raw: dict, origin: str) -> None:
    """Refuse a run written by a newer vaekit (its config.yaml's ``vaekit`` stamp), whose files
    this version may misread."""
    from .version import __version__

    theirs, ours = _version(raw.get("vaekit", "0")), _version(__version__)
    if theirs is None or (ours is not None and theirs > ours):
        raise VaekitError(f"{origin}: written by vaekit {raw.get('vaekit')}, which is newer than this vaekit "
                          f"({__version__}) or not a version; upgrade vaekit to read this run.")


def plugins_of(config: Config) -> dict[str, str]:
    """The parts of this config that a module outside vaekit registered: {"model.net": "module"}."""
    m, t = config.model, config.train
    chosen = (("model.net", NETS, m.net), ("model.prior", PRIORS, m.prior),
              ("model.likelihood", LIKELIHOODS, m.likelihood), ("train.objective", OBJECTIVES, t.objective))
    return {key: registry.outside(name) for key, registry, name in chosen if registry.outside(name)}


def require_plugins(raw: dict, origin: str) -> None:
    """Import the modules a run's config.yaml records under ``plugins`` (removed from ``raw``) for
    the parts that are not registered yet; one sentence where one cannot be imported."""
    from .plugins import import_plugin

    plugins = raw.pop("plugins", None) or {}
    if not isinstance(plugins, dict):
        raise VaekitError(f"{origin}: 'plugins' must map a part (model.net, ...) to a module name.")
    registries = {"model.net": NETS, "model.prior": PRIORS, "model.likelihood": LIKELIHOODS,
                  "train.objective": OBJECTIVES}
    for key, module in plugins.items():
        section, _, field_name = str(key).partition(".")
        name = (raw.get(section) or {}).get(field_name) if isinstance(raw.get(section), dict) else None
        if key in registries and name is not None and name not in registries[key]:
            import_plugin(str(module), f"{origin}: {key} '{name}' is registered by the module '{module}'")


def unresolved(raw: dict) -> dict:
    """A run's config.yaml as a starting point for another run: the values :func:`resolve` set
    (listed under ``resolved``) go back to ``auto``, to be resolved against the new run's data;
    the run's own keys (``vaekit``, ``data_info``) are dropped."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    require_plugins(raw, "config")
    keys = raw.pop("resolved", None) or []
    raw.pop("vaekit", None)
    raw.pop("data_info", None)
    defaults = {s: {f.name: f.default for f in dataclasses.fields(c)} for s, c in SECTIONS}
    for key in keys if isinstance(keys, list) else []:
        section, _, name = str(key).partition(".")
        if isinstance(raw.get(section), dict) and name in defaults.get(section, {}):
            raw[section][name] = defaults[section][name]
    return raw


def save_yaml(obj: dict, path: Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(obj, sort_keys=False))
    tmp.replace(path)


def load_yaml(path: Path) -> dict:
    path = Path(path)
    try:
        obj = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found.") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise VaekitError(f"{path}: not valid YAML ({str(e).splitlines()[0]}).") from None
    if not isinstance(obj, dict):
        raise VaekitError(f"{path}: expected a YAML mapping at the top level.")
    return obj
