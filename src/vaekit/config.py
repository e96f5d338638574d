"""Configuration as plain dataclasses: data, model and training, saved as YAML in a run.

A run's ``config.yaml`` holds everything needed to rebuild the model (and, with the
data still on disk, the data pipeline). Values are plain Python types so the YAML is
readable and editable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import VaekitError

#: the nonlinearities of the MLP networks (``gated``: gated linear units)
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "gated")


@dataclass
class DataConfig:
    """Where the data come from and how values are treated.

    source: ``digits`` (embedded), ``fashion-mnist`` (Debian package), or a path to an
        IDX file, a ``.npz``/``.npy`` array, a directory of train/valid/test arrays or IDX
        files, or a folder of PNG/JPEG images.
    binarize: ``none`` | ``threshold`` (x > 0.5) | ``static`` (one fixed random draw) |
        ``dynamic`` (a new draw of the training images every batch).
    shape: ``[C, H, W]`` or ``[H, W]`` for flat ``(N, D)`` arrays; inferred when omitted.
    image_size: ``[H, W]`` images in a folder are resized to (default: first image's size).
    valid_fraction, test_fraction: used only when the source has no such split.
    modality: ``auto`` (from the source: text files are text, folders of WAV files audio,
        everything else images), ``image``, ``text`` or ``audio``.

    Text (one example per line): tokens ``char`` | ``word``; max_length: lines with more
    tokens are skipped (and counted); min_count: rarer tokens become ``<unk>`` (default 1 for
    characters, 2 for words); valid, test: separate files for those splits.

    Audio (a folder of WAV files): sample_rate to resample to; clip_seconds: clips are
    trimmed or zero-padded to this length; n_mels, n_fft, hop: the log-mel spectrogram;
    label_from: a file-name pattern such as ``{label}_*`` that gives each file its label.
    """

    source: str = "digits"
    binarize: str = "none"
    shape: list[int] | None = None
    image_size: list[int] | None = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    modality: str = "auto"
    tokens: str = "char"
    max_length: int = 128
    min_count: int | None = None
    valid: str | None = None
    test: str | None = None
    sample_rate: int = 8000
    clip_seconds: float = 1.0
    n_mels: int = 64
    n_fft: int = 256
    hop: int = 128
    label_from: str | None = None


@dataclass
class ModelConfig:
    """The parts of the VAE.

    net: ``auto`` (``mlp`` for images, ``rnn`` for text, ``conv`` for audio), ``mlp``,
        ``conv`` or ``rnn`` (text: a bidirectional GRU/LSTM encoder and an autoregressive
        GRU/LSTM decoder that gets z as its initial state and with every input token).
        hidden: MLP hidden sizes (decoder mirrors them).
    channels: conv channels per block (each block halves the spatial size).
    likelihood: ``auto`` | ``bernoulli`` | ``gaussian`` | ``logistic`` (discretized).
    gaussian_std: fixed std for ``gaussian``; ``null`` learns one per dimension.
    prior: ``normal`` (N(0, I)), ``mog`` (learned mixture of Gaussians) or ``vamp``
        (VampPrior) or ``hierarchical`` (a second stochastic layer z2 of ``top_latent``
        dimensions, default latent // 2, or a list of sizes for z2, z3, ...; with p(z1|z2) and
        q(z2|z1) networks between each pair of layers, and the top layer's prior given
        by ``top_prior``: ``normal`` or ``vamp``; ``inference`` is ``bottom-up``, q(z1|x) q(z2|z1)
        as in Burda et al. 2016, or ``top-down``, q(z2|x) q(z1|x,z2) with a decoder on all
        layers as in Tomczak & Welling 2018) or ``class``
        (conditional models: p(z | y), a learned Gaussian per class);
        prior_components: mixture size (default 10 for mog, 500 for vamp, also at the top).
        prior_hidden, prior_activation: the hidden sizes and nonlinearity of the networks
        between the two layers of ``hierarchical``, p(z1|z2) and (bottom-up) q(z2|z1); by
        default one layer of hidden[-1] units, and ``tanh``.
        latent_paths: top-down only: z1 and z2 enter the decoder, and z2 enters q(z1|x,z2),
        each through a hidden layer of its own (hidden[-1] units, ``activation``), as in
        Tomczak & Welling's two-layer VAE; by default they are concatenated.
    logvar_range: [lo, hi]: clip the log-variance of every Gaussian of the model (the
        posteriors, the VampPrior's components, p(z1|z2), the learned Gaussians of the mog and
        class priors) to [lo, hi] with a hard tanh, as
        Tomczak & Welling do with [-6, 2]; ``null`` (default): unbounded.
    conditional: a conditional VAE: the class label is an extra input to encoder and decoder.
    refine_encoder: fit only the inference network q(z | x) to a trained model (``train.init``),
        whose generative part p(x, z) stays fixed; the prior keeps its own copy of the encoder
        when it is built from one (VampPrior); a bottom-up hierarchy's q(z2|z1) stays fixed with
        the prior. The same model, with the importance-sampling proposal of its NLL fit to it.
    cell, embedding, rnn_hidden: the recurrent networks' cell (``gru`` | ``lstm``), token
        embedding size and state size.
    flow, flow_hidden: the number of inverse autoregressive flow steps after the encoder's
        Gaussian (default 0: none), over the whole latent, each a MADE with one hidden layer of
        ``flow_hidden`` units (default: the larger of hidden[-1] and twice the latent) and the
        encoder's features as context (Kingma et al. 2016); a richer q(z | x) for every bound
        and NLL estimate. A VampPrior's components stay the encoder's Gaussians.
    decoder_dropout: dropout probability on the hidden layers of the MLP decoder p(x|z) in
        training (default 0: none), a regulariser where the decoder overfits the training set.
    word_dropout: probability that a decoder input token is replaced by ``<unk>`` in training
        (Bowman et al. 2016); inputless: the decoder never sees the previous tokens, only z.
    """

    net: str = "auto"
    latent: int = 16
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    channels: list[int] = field(default_factory=lambda: [32, 64])
    activation: str = "relu"
    likelihood: str = "auto"
    gaussian_std: float | None = None
    prior: str = "normal"
    prior_components: int | None = None
    conditional: bool = False
    top_latent: int | list[int] | None = None
    top_prior: str = "normal"
    inference: str = "bottom-up"
    prior_hidden: list[int] | None = None
    prior_activation: str = "tanh"
    latent_paths: bool = False
    logvar_range: list[float] | None = None
    refine_encoder: bool = False
    flow: int = 0
    flow_hidden: int | None = None
    decoder_dropout: float = 0.0
    cell: str = "gru"
    embedding: int = 64
    rnn_hidden: int = 256
    word_dropout: float = 0.0
    inputless: bool = False

    def top_sizes(self) -> list[int]:
        """The sizes of the hierarchical prior's layers above z1: [z2, ..., zL] (default [latent // 2])."""
        t = self.top_latent
        if t is None:
            return [max(1, self.latent // 2)]
        return [int(v) for v in t] if isinstance(t, (list, tuple)) else [int(t)]


@dataclass
class TrainConfig:
    """Optimisation and objective.

    batch_size: examples per optimiser step; ``null`` picks 32 for data sets under 20,000
        training examples (more steps per epoch) and 128 above.
    objective: ``elbo`` or ``iwae`` (with ``k`` importance samples).
    estimator: the encoder's gradient of the IWAE bound: ``standard`` (the reparameterised
        gradient of the bound) or ``dreg``, doubly reparameterised (Tucker et al. 2019): the
        same expected gradient without its score-function part, whose noise grows with k
        relative to the signal (Rainforth et al. 2018); with k = 1, "sticking the landing"
        (Roeder et al. 2017). Needs ``objective: iwae`` and no flow.
    beta: weight of the KL term (beta-VAE); warmup_epochs: beta ramps linearly from 0.
    free_bits: minimum KL in nats per latent dimension (averaged over the batch); ``null``
        (the default) means 0 for images and audio and 0.25 for text, where a strong
        autoregressive decoder would otherwise let the KL collapse to zero.
    lr_schedule: ``none`` | ``cosine`` | ``plateau`` (halve LR when valid ELBO stalls).
    patience: stop when the valid ELBO has not improved for this many epochs (0: never).
    max_bad_steps: steps with a non-finite loss or gradient are skipped; this many in a row
        stop training (the last good checkpoint stays intact).
    amp: mixed precision: ``auto`` (on for CUDA, off on CPU), ``on`` or ``off``.
    cuda_graph: capture the training step in a CUDA graph and replay it for every full batch
        (one launch instead of hundreds of kernel launches): ``auto`` (where the run allows it:
        CUDA, one process, ``amp`` off, no recurrent network; otherwise, or if the capture
        fails, the ordinary step), ``on`` (an error where it cannot), ``off``.
    init: a run directory whose weights (its ``model.safetensors``) the model starts from,
        to fine-tune it, e.g. with another objective; ``null``: a fresh initialisation.
    ema: decay of an exponential moving average of the weights (Polyak averaging; 0: off,
        typical 0.999). When on, validation, the best-epoch choice and ``model.safetensors``
        use the averaged weights; the optimiser keeps stepping the raw ones.
    """

    epochs: int = 60
    batch_size: int | None = None
    lr: float = 1e-3
    lr_schedule: str = "none"
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    clip_grad: float = 0.0
    patience: int = 0
    objective: str = "elbo"
    k: int = 1
    estimator: str = "standard"
    beta: float = 1.0
    warmup_epochs: int = 0
    free_bits: float | None = None
    seed: int = 0
    device: str = "auto"
    max_bad_steps: int = 20
    amp: str = "auto"
    cuda_graph: str = "auto"
    init: str | None = None
    ema: float = 0.0


def auto_batch_size(n_train: int) -> int:
    return 32 if n_train < 20000 else 128


def auto_free_bits(modality: str) -> float:
    """The free-bits default: text VAEs need a floor on the KL to keep their latent in use."""
    return 0.25 if modality == "text" else 0.0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "config") -> "Config":
        d = dict(d or {})
        parts = {}
        for name, klass in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
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
        """Reject values that cannot work, with one sentence each."""
        m, t, d = self.model, self.train, self.data
        choices = {
            "data.binarize": (d.binarize, {"none", "threshold", "static", "dynamic"}),
            "data.modality": (d.modality, {"auto", "image", "text", "audio"}),
            "data.tokens": (d.tokens, {"char", "word"}),
            "model.net": (m.net, {"auto", "mlp", "conv", "rnn"}),
            "model.cell": (m.cell, {"gru", "lstm"}),
            "model.likelihood": (m.likelihood, {"auto", "bernoulli", "gaussian", "logistic", "categorical"}),
            "model.activation": (m.activation, set(ACTIVATIONS)),
            "model.prior_activation": (m.prior_activation, set(ACTIVATIONS)),
            "model.prior": (m.prior, {"normal", "mog", "vamp", "hierarchical", "class"}),
            "model.top_prior": (m.top_prior, {"normal", "vamp"}),
            "model.inference": (m.inference, {"bottom-up", "top-down"}),
            "train.objective": (t.objective, {"elbo", "iwae"}),
            "train.estimator": (t.estimator, {"standard", "dreg"}),
            "train.lr_schedule": (t.lr_schedule, {"none", "cosine", "plateau"}),
            "train.device": (t.device, {"auto", "cpu", "cuda"}),
            "train.amp": (t.amp, {"auto", "on", "off"}),
            "train.cuda_graph": (t.cuda_graph, {"auto", "on", "off"}),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise VaekitError(f"{key} is '{value}', expected one of: {', '.join(sorted(allowed))}.")
        positive = {
            "model.latent": m.latent, "train.epochs": t.epochs, "data.max_length": d.max_length,
            "model.embedding": m.embedding, "model.rnn_hidden": m.rnn_hidden, "data.sample_rate": d.sample_rate,
            "data.clip_seconds": d.clip_seconds, "data.n_mels": d.n_mels, "data.n_fft": d.n_fft, "data.hop": d.hop,
            "train.k": t.k, "train.lr": t.lr, "train.max_bad_steps": t.max_bad_steps,
        }
        for key, value in positive.items():
            if not value > 0:
                raise VaekitError(f"{key} must be positive, got {value}.")
        if m.prior == "class" and not m.conditional:
            raise VaekitError("model.prior 'class' (a learned Gaussian per class) needs a conditional model: "
                              "set model.conditional (--conditional) and give labels.")
        if m.top_prior != "normal" and m.prior != "hierarchical":
            raise VaekitError(f"model.top_prior '{m.top_prior}' is the prior of a second stochastic layer: "
                              "it needs model.prior 'hierarchical' (--prior hierarchical).")
        if m.inference != "bottom-up" and m.prior != "hierarchical":
            raise VaekitError(f"model.inference '{m.inference}' says how a second stochastic layer is inferred: "
                              "it needs model.prior 'hierarchical' (--prior hierarchical).")
        try:
            tops = m.top_sizes()
            tops_ok = bool(tops) and min(tops) > 0
        except (TypeError, ValueError):
            tops_ok = False
        if not tops_ok:
            raise VaekitError(f"model.top_latent must be a positive size or a list of them, got {m.top_latent}.")
        if m.prior_components is not None and not m.prior_components > 0:
            raise VaekitError(f"model.prior_components must be positive, got {m.prior_components}.")
        if t.batch_size is not None and not t.batch_size > 0:
            raise VaekitError(f"train.batch_size must be positive, got {t.batch_size}.")
        lists = [("model.hidden", m.hidden), ("model.channels", m.channels)]
        if m.prior_hidden is not None:
            lists.append(("model.prior_hidden", m.prior_hidden))
        for key, sizes in lists:
            if not sizes or any(int(s) <= 0 for s in sizes):
                raise VaekitError(f"{key} must be a non-empty list of positive sizes, got {sizes}.")
        if (m.prior_hidden is not None or m.prior_activation != "tanh") and m.prior != "hierarchical":
            raise VaekitError("model.prior_hidden and model.prior_activation shape the networks between two "
                              "stochastic layers: they need model.prior 'hierarchical' (--prior hierarchical).")
        if m.latent_paths and not (m.prior == "hierarchical" and m.inference == "top-down"):
            raise VaekitError("model.latent_paths gives z1 and z2 their own paths into the networks of the top-down "
                              "hierarchical VAE: it needs --prior hierarchical --inference top-down.")
        nonneg = {"train.beta": t.beta, "train.free_bits": t.free_bits or 0.0, "train.warmup_epochs": t.warmup_epochs,
                  "train.clip_grad": t.clip_grad, "train.patience": t.patience, "train.weight_decay": t.weight_decay}
        for key, value in nonneg.items():
            if value < 0:
                raise VaekitError(f"{key} must not be negative, got {value}.")
        if m.logvar_range is not None and not (len(m.logvar_range) == 2 and m.logvar_range[0] < m.logvar_range[1]):
            raise VaekitError(f"model.logvar_range must be two numbers [lo, hi] with lo < hi, got {m.logvar_range}.")
        if m.refine_encoder and not t.init:
            raise VaekitError("model.refine_encoder fits the encoder to a trained model, which stays fixed: it needs "
                              "train.init (--init RUN).")
        if t.estimator == "dreg" and t.objective != "iwae":
            raise VaekitError("train.estimator 'dreg' is a gradient of the IWAE bound: it needs train.objective "
                              "'iwae' (--objective iwae; with --k 1 it is the ELBO's 'sticking the landing').")
        if t.estimator == "dreg" and m.flow:
            raise VaekitError("train.estimator 'dreg' needs the density of q at its samples with the encoder held "
                              "fixed, which a flow gives only by inverting it: use --flow or --estimator dreg, "
                              "not both.")
        if m.flow < 0 or (m.flow_hidden is not None and m.flow_hidden < 1):
            raise VaekitError(f"model.flow is a number of steps (0: none) and model.flow_hidden a positive size, got "
                              f"{m.flow} and {m.flow_hidden}.")
        if not 0 <= m.decoder_dropout < 1:
            raise VaekitError(f"model.decoder_dropout must be in [0, 1), got {m.decoder_dropout}.")
        if not 0 <= m.word_dropout <= 1:
            raise VaekitError(f"model.word_dropout must be between 0 and 1, got {m.word_dropout}.")
        if not 0 <= t.ema < 1:
            raise VaekitError(f"train.ema is a decay in [0, 1) (0: off; e.g. 0.999), got {t.ema}.")
        if d.min_count is not None and d.min_count < 1:
            raise VaekitError(f"data.min_count must be at least 1, got {d.min_count}.")
        if d.hop > d.n_fft:
            raise VaekitError(f"data.hop ({d.hop}) must not exceed data.n_fft ({d.n_fft}).")
        if d.label_from is not None and "{label}" not in d.label_from:
            raise VaekitError(f"data.label_from must contain {{label}}, got '{d.label_from}'.")
        if m.gaussian_std is not None and m.gaussian_std <= 0:
            raise VaekitError(f"model.gaussian_std must be positive, got {m.gaussian_std}.")
        for key, frac in (("data.valid_fraction", d.valid_fraction), ("data.test_fraction", d.test_fraction)):
            if not 0 < frac < 0.5:
                raise VaekitError(f"{key} must be between 0 and 0.5, got {frac}.")
        for key, dims in (("data.shape", d.shape), ("data.image_size", d.image_size)):
            if dims is not None and any(int(s) <= 0 for s in dims):
                raise VaekitError(f"{key} must hold positive sizes, got {dims}.")


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
