"""Encoders and decoders by shape of data.

An encoder maps a batch x (B, *shape) to (mu, logvar), each (B, latent); its ``hidden``
gives the features its last layer, ``head`` (a :class:`~vaekit.model.nets.mlp.GaussianHead`), reads.
A top-down encoder (topdown.py) returns a structured posterior over two stochastic layers instead.
A decoder maps z (B, latent) to likelihood parameters (B, n_params, *shape); an
autoregressive decoder (``autoregressive = True``) also takes x (teacher forcing) and has
``generate(z, ...)``.
"""

from .conv import ConvDecoder, ConvEncoder
from .markov import EmissionDecoder, MarkovEncoder, MarkovPosterior, MarkovPrior
from .mlp import GaussianHead, MLPDecoder, MLPEncoder
from .recurrent import RecurrentDecoder, RecurrentEncoder
from .ladder import LadderDecoder, LadderEncoder, LadderPosterior, LadderPrior, layout
from .topdown import PathsDecoder, TopDownEncoder, TopDownPosterior

from ..registry import NETS, PRIORS


def _tokens_need_rnn(net):
    def fits(m, info):
        if info["value"] == "tokens":
            return f"text needs the rnn network, not {net}"
        if info.get("modality") == "sequence":
            return f"sequences need the dmm network, not {net}"
        if m.decoder_dropout and net != "mlp":
            return f"decoder dropout is for the mlp network's decoder, not {net}"
        if net == "conv" and len(info["shape"]) != 3:
            return f"the conv network needs (C, H, W) data, not shape {list(info['shape'])}"
        return None
    return fits


def _rnn_fits(m, info):
    if info.get("modality") == "sequence":
        return "sequences need the dmm network, not rnn"
    if info["value"] != "tokens":
        return f"the rnn network reads text (token ids), not {info['value']} data"
    if m.latent_paths:
        return "latent paths need the mlp or conv network, not rnn"
    if m.decoder_dropout:
        return "decoder dropout is for the mlp network's decoder, not rnn (text has --word-dropout)"
    return None


@NETS.register("mlp", "fully connected layers (--hidden, --activation)", _tokens_need_rnn("mlp"))
def _mlp(m, info, z_enc, z_in, classes, lik):
    shape = tuple(info["shape"])
    return (MLPEncoder(shape, z_enc, m.hidden, m.activation, extra=classes),
            MLPDecoder(shape, z_in, m.hidden, lik.n_params, m.activation, m.decoder_dropout))


@NETS.register("conv", "convolutional blocks that halve the size (--channels)", _tokens_need_rnn("conv"))
def _conv(m, info, z_enc, z_in, classes, lik):
    shape = tuple(info["shape"])
    return ConvEncoder(shape, z_enc, m.channels, extra=classes), ConvDecoder(shape, z_in, m.channels, lik.n_params)


@NETS.register("rnn", "text: bidirectional recurrent encoder, autoregressive decoder (--cell)", _rnn_fits)
def _rnn(m, info, z_enc, z_in, classes, lik):
    vocab = int(info["vocab_size"])
    return (RecurrentEncoder(vocab, z_enc, m.embedding, m.rnn_hidden, m.cell, extra=classes),
            RecurrentDecoder(vocab, z_in, info["shape"][0], m.embedding, m.rnn_hidden, m.cell, m.word_dropout,
                             m.inputless))


def _dmm_fits(m, info):
    if info.get("modality") != "sequence":
        return f"the dmm network models sequences of frames, not {info.get('modality', 'image')} data"
    if m.prior != "markov":
        return f"the dmm network's latents form a Markov chain: it needs the markov prior, not {m.prior}"
    if m.emission == "linear" and m.likelihood == "logistic":
        return "a linear emission gives a Gaussian's or a Bernoulli's parameters, not a discretized logistic's"
    if m.conditional:
        return "a conditional dmm is not available"
    if m.latent_paths:
        return "latent paths are an option of the mlp and conv networks, not dmm"
    if m.emission == "linear" and m.decoder_dropout:
        return "--decoder-dropout acts on the emission's hidden layers, and a linear emission has none"
    return None


@NETS.register("dmm", "sequences: the deep Markov model's backward-RNN inference network and per-step emission "
                      "(--rnn-hidden, --hidden, --dmm-inference)", _dmm_fits)
def _dmm(m, info, z_enc, z_in, classes, lik):
    frame = int(info["frame"])
    return (MarkovEncoder(frame, m.latent, m.rnn_hidden, m.cell, m.dmm_inference, m.flow, m.flow_hidden),
            EmissionDecoder(m.latent, m.hidden[-1], frame, lik.n_params, linear=m.emission == "linear",
                            dropout=m.decoder_dropout))


@PRIORS.register("markov", "sequences: p(z_t | z_t-1), the deep Markov model's gated transition (--hidden)",
                  lambda m, info: None if m.net in ("dmm", "auto") else
                  f"the markov prior is a transition between the steps of the dmm network, not of {m.net}")
def _markov(m, info, classes):
    return MarkovPrior(m.latent, m.hidden[-1], int(info.get("steps") or 16), linear=m.transition == "linear")


def _resnet_fits(m, info):
    if info["value"] == "tokens" or info.get("modality") == "sequence" or len(info["shape"]) != 3:
        return (f"the resnet network models images, (C, H, W) data, not {info.get('modality', 'image')} data of "
                f"shape {list(info['shape'])}")
    if m.prior not in ("ladder", "auto"):
        return (f"the resnet network's latent is its own hierarchy of latent maps (--prior ladder, or auto), not "
                f"the {m.prior} prior")
    for flag, on in (("--conditional", m.conditional), ("--flow", m.flow), ("--latent-paths", m.latent_paths),
                     ("--decoder-dropout", m.decoder_dropout), ("--refine-encoder", m.refine_encoder)):
        if on:
            return f"{flag} is not available with the resnet network"
    return None


@NETS.register("resnet", "images: a deep hierarchy of latent maps on residual blocks, VDVAE/NVAE-style "
                         "(--resnet small|base|gpu)", _resnet_fits, prior="ladder")
def _resnet(m, info, z_enc, z_in, classes, lik):
    lay = layout(m.resnet, info["shape"])
    enc, dec = LadderEncoder(info["shape"], lay, m.spectral_reg), LadderDecoder(info["shape"], lay, lik.n_params)
    enc.bind(dec)
    return enc, dec


@PRIORS.register("ladder", "the resnet network's own: p(z_l | z_>l) of each latent map from its top-down pass",
                  lambda m, info: None if m.net in ("resnet", "auto") else
                  f"the ladder prior is the top-down pass of the resnet network, not of {m.net}",
                  width=lambda m, info: layout(m.resnet, info["shape"]).dim,
                  family="a hierarchy of Gaussians q(z_l | x, z_>l) that read the decoder")
def _ladder(m, info, classes):
    return LadderPrior(layout(m.resnet, info["shape"]))


__all__ = ["LadderDecoder", "LadderEncoder", "LadderPosterior", "LadderPrior", "MarkovEncoder", "EmissionDecoder", "MarkovPosterior", "MarkovPrior", "GaussianHead", "MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "RecurrentEncoder",
           "RecurrentDecoder", "PathsDecoder", "TopDownEncoder", "TopDownPosterior"]
