"""The VAE: encoder + prior + decoder + likelihood, and nothing about images, text or audio.

    q(z | x) = N(mu(x), diag sigma^2(x)),  z = mu + sigma * eps  (reparameterised; or the family a
               prior brings: categorical (categorical.py), von Mises-Fisher (sphere.py))
    p(x, z)  = p(z) p(x | z)
    ELBO(x)  = E_q[log p(x | z)] - KL(q(z | x) || p(z))
    log w_i  = log p(x | z_i) + log p(z_i) - log q(z_i | x),   z_i ~ q(z | x)

Everything else (objectives, evaluation) is computed from :meth:`VAE.terms`.

A VAE with ``refine_encoder`` keeps two encoders when its prior is built from one (the
VampPrior): ``prior_encoder``, a fixed part of p(z), and ``encoder``, the inference network
q(z | x) alone. Training then fits q to a fixed generative model p(x, z) (everything else is
frozen): the model and its true likelihood do not change, and as the amortised posterior
improves, the importance-sampled NLL, a stochastic upper bound for any q, gets tighter. (In a
bottom-up hierarchy q(z2 | z1) belongs to the prior and stays fixed too.)

An *autoregressive* decoder (``decoder.autoregressive``, e.g. the recurrent text decoder)
also reads x itself, shifted (teacher forcing), so p(x | z) = prod_t p(x_t | x_<t, z); it
generates with ``decoder.generate(z, ...)`` instead of taking the likelihood's mean.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import VaekitError
from .likelihoods import FrameLikelihood, Likelihood
from .nets import PathsDecoder, TopDownEncoder
from .nets.flow import FlowPosterior, InverseAutoregressiveFlow
from .priors import Prior, normal_from_params
from .registry import LIKELIHOODS, NETS, PRIORS


class VAE(nn.Module):
    """encoder + prior + decoder + likelihood; with ``classes > 0`` a conditional VAE.

    A conditional VAE (Sohn et al. 2015) gets a label y as an extra input to the encoder,
    q(z | x, y), and to the decoder, p(x | z, y). The prior is p(z), or p(z | y) with a prior
    that reads labels (``prior.conditional``, e.g. the class prior). Labels are class
    indices (B,) or probability vectors (B, classes); the latter allow soft labels.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: Prior, likelihood: Likelihood,
                 classes: int = 0, refine_encoder: bool = False, flow: InverseAutoregressiveFlow | None = None):
        super().__init__()
        self.encoder, self.decoder, self.prior, self.likelihood = encoder, decoder, prior, likelihood
        self.flow = flow  # part of q(z | x): steps of inverse autoregressive flow after the encoder
        self.classes = classes
        if hasattr(encoder, "attach"):  # inference networks that read the prior (the Markov one's transition)
            encoder.attach(prior)
        if hasattr(prior, "attach"):  # priors built from the encoder (VampPrior)
            if refine_encoder:        # the prior keeps a fixed copy; ``encoder`` is q(z | x) alone
                self.prior_encoder = copy.deepcopy(encoder)
            prior.attach(getattr(self, "prior_encoder", encoder))

    def freeze_model(self) -> None:
        """Freeze the generative model p(x, z): only the inference network q(z | x), the encoder
        and its flow, trains (for ``refine_encoder``). Gradients still flow through the decoder
        to the samples z."""
        for name, p in self.named_parameters():
            p.requires_grad_(name.startswith(("encoder.", "flow.")))

    def complete_weights(self, weights: dict) -> dict:
        """The weights of another run's model, completed for this one where it adds inference
        parts: without ``prior_encoder`` (a model that was not refined), the prior's encoder is
        the encoder they hold; without a flow, this model's new flow (the identity) is kept."""
        own = self.state_dict()
        if self.flow is not None and not any(k.startswith("flow.") for k in weights):
            weights = {**weights, **{k: v for k, v in own.items() if k.startswith("flow.")}}
        if not hasattr(self, "prior_encoder") or any(k.startswith("prior_encoder.") for k in weights):
            return weights
        return {**weights, **{"prior_" + k: v for k, v in weights.items() if k.startswith("encoder.")}}

    @property
    def latent(self) -> int:
        return self.prior.dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def onehot(self, y, n: int | None = None) -> torch.Tensor | None:
        """Labels as (B, classes) floats, or None for an unconditional model."""
        if not self.classes:
            return None
        if y is None:
            raise ValueError("this conditional VAE needs labels")
        y = torch.as_tensor(y, device=self.device)
        if y.dim() == 0:
            y = y.expand(n or 1)
        if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
            return F.one_hot(y.long(), self.classes).float()
        return y.float()

    def encode(self, x: torch.Tensor, y=None):
        """q(z | x [, y]): a batch of diagonal Gaussians, batch shape (B, latent), or the
        posterior an encoder returns itself (a :class:`~vaekit.model.nets.topdown.TopDownPosterior`),
        which has the same ``rsample``, per-dimension ``log_prob`` and ``loc``; with a flow, that
        posterior pushed through it (a :class:`~vaekit.model.nets.flow.FlowPosterior`)."""
        h = self.encoder.hidden(x, self.onehot(y, x.shape[0]))   # every encoder: features, then its head
        enc = self.encoder
        family = getattr(self.prior, "posterior", normal_from_params)   # a prior may bring its own (categorical)
        q = enc.posterior(h) if hasattr(enc, "posterior") else family(enc.head(h))
        return q if self.flow is None else FlowPosterior(q, self.flow, self.flow.contexts(h))

    @property
    def autoregressive(self) -> bool:
        return getattr(self.decoder, "autoregressive", False)

    def _decoder(self, z: torch.Tensor, c: torch.Tensor | None, x: torch.Tensor | None = None, repeats: int = 1):
        """The decoder's output for latents z (and conditions c); an autoregressive decoder also
        reads the x it scores: (B, ...) with ``repeats`` latents in z for each example."""
        zc = z if c is None else torch.cat([z, c], -1)
        if not self.autoregressive:
            return self.decoder(zc)
        return self.decoder(zc, x, repeats) if repeats > 1 else self.decoder(zc, x)

    def decode(self, z: torch.Tensor, y=None, x: torch.Tensor | None = None):
        """p(x | z [, y]) for a batch of latents (B, latent); ``log_prob(x)`` gives (B,).

        An autoregressive decoder needs the x to be scored (its conditionals depend on it)."""
        return self.likelihood.dist(self._decoder(z, self.onehot(y, z.shape[0]), x))

    def terms(self, x: torch.Tensor, k: int = 1, log_weights: bool = True, y=None, q=None,
              stop_q: bool = False) -> dict[str, torch.Tensor]:
        """Draw k reparameterised samples z ~ q(z|x) and return the pieces of every bound.
        ``q``: another posterior for this batch to sample from (any proposal gives a bound);
        default: the encoder's. ``stop_q``: log_qz with the encoder's parameters held fixed
        (:meth:`stopped_log_q`), for doubly reparameterised gradients.

        log_px, log_pz, log_qz: (k, B) in nats; kl_dim: analytic KL per latent dimension
        (B, latent) when the prior has one, else None; q: the posterior; z: the samples
        (k, B, latent); c: the one-hot labels (B, classes) of a conditional model, else None.
        With ``log_weights=False`` and an analytic KL, log_pz and log_qz are skipped (None):
        the single-sample ELBO does not need them, and the training step is faster without.
        """
        c = self.onehot(y, x.shape[0])
        q = self.encode(x, c) if q is None else q
        # k = 1: no sample dimension to expand, fewer operations in the training step
        z = q.rsample().unsqueeze(0) if k == 1 else q.rsample((k,))        # (k, B, latent)
        log_px = self.log_px(z, c, x)
        kl_dim = self.prior.analytic_kl(q, c)
        if log_weights or kl_dim is None:
            log_pz = self.prior.log_prob(z, c)
            log_qz = self.stopped_log_q(x, c, z) if stop_q else q.log_prob(z).sum(-1)
        else:
            log_pz = log_qz = None
        return {"log_px": log_px, "log_pz": log_pz, "log_qz": log_qz, "kl_dim": kl_dim, "q": q, "z": z, "c": c}

    def log_px(self, z: torch.Tensor, c: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z [, c]) (k, B) for k latents z (k, B, latent) of each example x (B, ...) with
        conditions c (B, classes) or None."""
        k, b = z.shape[:2]
        ck = c if c is None or k == 1 else c.repeat(k, 1)
        if self.autoregressive:
            xk = repeated(x, k)
            params = self._decoder(z.reshape(k * b, -1), ck, x, repeats=k) if k > 1 else self._decoder(z[0], ck, xk)
            return self.likelihood.log_prob(params, xk).view(k, b)
        return (self.scorer or self.score_rows)(z.reshape(k * b, -1), ck, x, k).view(k, b)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor, y=None) -> torch.Tensor:
        """log p(x | z) + log p(z) (k, B) of given latents z (k, B, latent) of the examples x (B, ...)."""
        c = self.onehot(y, x.shape[0])
        return self.log_px(z, c, x) + self.prior.log_prob(z, c)

    #: where set (evaluate --compile), a compiled :meth:`score_rows`
    scorer = None

    def score_rows(self, z: torch.Tensor, c: torch.Tensor | None, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """log p(x | z [, c]) of each row (k*B,) for latents z (k*B, latent) of the examples x
        (B, ...), k for each example: the decoder and the likelihood, the bulk of the k-sample estimates'
        work (a non-autoregressive decoder). Compiled, the k copies of x are never written out."""
        return self.likelihood.log_prob(self._decoder(z, c), repeated(x, k))

    def stopped_log_q(self, x: torch.Tensor, c: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        """log q(z | x), summed over the latent, with the encoder's parameters detached and z
        not: its gradient reaches the encoder only through the samples z. This is the log q of
        the doubly reparameterised IWAE gradient (Tucker et al. 2019; with k = 1, "sticking the
        landing", Roeder et al. 2017). The encoder runs again with its detached parameters
        (``torch.func.functional_call``); in a top-down posterior q(z1 | x, z2) still reads the
        sampled z2."""
        frozen = {"encoder." + n: p.detach() for n, p in self.encoder.named_parameters()}
        return torch.func.functional_call(_StoppedPosterior(self), frozen, (x, c, z))

    def log_weights(self, x: torch.Tensor, k: int, y=None, q=None) -> torch.Tensor:
        """(k, B) log p(x, z_i) - log q(z_i | x) for z_i ~ q (default the encoder's posterior):
        the importance weights of every k-sample bound and of the NLL estimate."""
        t = self.terms(x, k, y=y, q=q)
        return t["log_px"] + t["log_pz"] - t["log_qz"]

    def forward(self, x: torch.Tensor, k: int = 1, log_weights: bool = True, y=None,
                stop_q: bool = False) -> dict[str, torch.Tensor]:
        """Same as :meth:`terms`; objectives call the model, so DistributedDataParallel sees it."""
        return self.terms(x, k, log_weights, y, stop_q=stop_q)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, y=None, **generate) -> torch.Tensor:
        """Draw n latents from the prior and decode them: the mean of p(x|z), or a sample.

        A conditional model decodes with labels ``y`` (one label for all, or one per sample);
        without them, labels are drawn uniformly. ``generate``: options of an autoregressive
        decoder's ``generate`` (method, temperature, beam); for a prior that takes one
        (``layered_temperature``: the resnet's), ``temperature`` scales its standard deviations.
        """
        if self.classes and y is None:
            y = torch.randint(self.classes, (n,), device=self.device)
        c = self.onehot(y, n)
        steps = {"steps": generate.pop("steps")} if generate.get("steps") else {}   # a Markov prior's length
        if getattr(self.prior, "layered_temperature", False):   # the prior's temperature, per layer (resnet)
            steps["temperature"] = generate.pop("temperature", 1.0)
        z = self.prior.sample(n, c, **steps).to(self.device)
        return self.decode_to_data(z, mean, c, **generate)

    @torch.no_grad()
    def decode_to_data(self, z: torch.Tensor, mean: bool = True, y=None, **generate) -> torch.Tensor:
        """Data for latents z: the mean of p(x|z) or a draw from it; an autoregressive decoder
        generates (greedy for ``mean``, else sampling, unless ``generate`` says otherwise)."""
        zc = z if not self.classes else torch.cat([z, self.onehot(y, z.shape[0])], -1)
        if self.autoregressive:
            generate.setdefault("method", "greedy" if mean else "sample")
            return self.decoder.generate(zc, **generate)
        params = self.decoder(zc)
        return self.likelihood.mean(params) if mean else self.likelihood.dist(params).sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mean: bool = True, y=None, **generate) -> torch.Tensor:
        """Decode the posterior mean of each input."""
        return self.decode_to_data(self.encode(x, y).loc, mean, y, **generate)

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10, y_a=None, y_b=None,
                    **generate) -> torch.Tensor:
        """Decode points on the straight line between the posterior means of x_a and x_b
        (``prior.coordinates``: for a sequence model, where each starts; and, for a conditional
        model, between their one-hot labels).

        x_a, x_b: (B, *shape); returns (B, steps, *shape).
        """
        ca, cb = self.onehot(y_a, x_a.shape[0]), self.onehot(y_b, x_b.shape[0])
        za, zb = self.prior.coordinates(self.encode(x_a, ca)), self.prior.coordinates(self.encode(x_b, cb))
        t = torch.linspace(0, 1, steps, device=za.device).view(1, steps, 1)
        z = (1 - t) * za.unsqueeze(1) + t * zb.unsqueeze(1)
        c = None if ca is None else ((1 - t) * ca.unsqueeze(1) + t * cb.unsqueeze(1)).reshape(-1, self.classes)
        out = self.decode_to_data(self.prior.path(z.reshape(-1, za.shape[-1])), True, c, **generate)
        return out.view(x_a.shape[0], steps, *out.shape[1:])

    def floats_per_row(self) -> int:
        """Rough activation size of one decoder row, to size evaluation batches."""
        n = 3 * self.likelihood.n_params * math.prod(self.likelihood.event_shape)  # parameters, log-densities
        n += getattr(self.decoder, "activation_floats", 0)
        if self.flow is not None:
            n += self.flow.activation_floats
        if self.autoregressive:
            n += 4 * self.decoder.rnn.hidden_size * self.decoder.length
        return n


def repeated(x: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, ...) k times over, (k*B, ...): row j*B + i is example i (x itself for k = 1)."""
    return x if k == 1 else x.unsqueeze(0).expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:])


class _StoppedPosterior(nn.Module):
    """The VAE's encoder as a module of its own, whose forward gives log q(z | x) summed over the
    latent: :meth:`VAE.stopped_log_q` calls it with detached parameters. Made for one call, so
    the encoder is not registered twice in the VAE."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.encoder, self._vae = vae.encoder, [vae]

    def forward(self, x, c, z):
        return self._vae[0].encode(x, c).log_prob(z).sum(-1)


def misfit(model_cfg, info: dict) -> str | None:
    """Why this model config cannot be built for data described by ``info``, or None when it can:
    each chosen part's registered check, without building anything. The config's names must be
    resolved (no ``auto``: see :func:`vaekit.config.resolve`)."""
    m = model_cfg
    for registry, name in ((NETS, m.net), (LIKELIHOODS, m.likelihood), (PRIORS, m.prior)):
        why = registry.misfit(name, m, info)
        if why:
            return why
    if m.latent_paths and not (m.prior == "hierarchical" and m.inference == "top-down"):
        return "latent paths need the top-down hierarchical model (--prior hierarchical --inference top-down)"
    if m.conditional and not int(info.get("classes") or 0):
        return ("a conditional model needs labels, and these data have none (labels come from IDX label files, a "
                "'y' array, sub-folder names, or --label-from for audio)")
    return None


def build_model(model_cfg, data_info: dict) -> VAE:
    """Build a VAE from a resolved ModelConfig and the data description saved with a run:
    the network, likelihood and prior each from its registry. A config with ``auto`` in it (made
    in Python rather than read from a run) is resolved on a copy first."""
    m = model_cfg
    if "auto" in (m.net, m.likelihood, m.prior):
        m = _resolved_copy(m, data_info)
    why = misfit(m, data_info)
    if why:
        raise ValueError(why)
    classes = int(data_info.get("classes") or 0) if m.conditional else 0
    if "frame" in data_info:   # sequences: a frame likelihood at every step
        lik = FrameLikelihood(LIKELIHOODS.build(m.likelihood, m, {**data_info, "shape": [int(data_info["frame"])]}))
    else:
        lik = LIKELIHOODS.build(m.likelihood, m, data_info)
    # a top-down hierarchical VAE: the latent is [z1, ..., zL], the encoder is built for zL and
    # wrapped once per layer below to infer z_l from x and z_l+1, and the decoder reads all layers
    top_down = m.prior == "hierarchical" and m.inference == "top-down"
    latent_width = PRIORS[m.prior].traits.get("width")   # the size of z where it is not --latent (categorical: N K)
    sizes = [m.latent, *m.top_sizes()] if top_down else [latent_width(m, data_info) if latent_width else m.latent]
    width = m.hidden[-1]  # of the layers a top-down model adds: q(z_l | x, z_l+1), and the latent paths
    z_in = (len(sizes) * width if m.latent_paths else sum(sizes)) + classes   # what the decoder reads
    enc, dec = NETS.build(m.net, m, data_info, sizes[-1], z_in, classes, lik)
    for below, above in reversed(list(zip(sizes[:-1], sizes[1:]))):   # top-down: from the top layer down
        enc = TopDownEncoder(enc, below, above, width, m.activation, paths=m.latent_paths)
    if m.latent_paths:
        dec = PathsDecoder(dec, sizes, width, m.activation)
    prior = PRIORS.build(m.prior, m, data_info, classes)
    if hasattr(prior, "bind"):   # a prior that is the decoder's own pass (the resnet's ladder)
        prior.bind(enc, dec)
    head = prior.head(enc.head.in_features) if hasattr(enc, "head") and hasattr(prior, "head") else None
    if head is not None:   # a latent with its own posterior family: its head in place of the Gaussian one
        replace_module(enc, enc.head, head)
    first = prior.decoder_input() if hasattr(prior, "decoder_input") else None
    if first is not None:  # a latent the decoder reads in its own way (a VQ code map: a 1x1 convolution)
        replace_module(dec, dec.fc, first)
    flow = None
    # over the whole latent the encoder gives ([z1, ..., zL] top-down), read h(x) as context; an
    # encoder that flows its own posterior (the dmm's, a flow at each step) needs none after it
    if m.flow and getattr(enc, "flow", None) is None:
        features = enc.features if isinstance(enc, TopDownEncoder) else enc.head.in_features
        flow = InverseAutoregressiveFlow(sum(sizes), features, m.flow, m.flow_hidden or max(width, 2 * sum(sizes)))
    model = VAE(enc, dec, prior, lik, classes, m.refine_encoder, flow)
    if m.logvar_range is not None:
        lo, hi = (float(v) for v in m.logvar_range)
        for module in model.modules():  # every GaussianHead, and the learned Gaussians of the mog and class priors
            if hasattr(module, "logvar_range"):
                module.logvar_range = (lo, hi)
    return model


def replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` where ``old`` is among ``root``'s submodules (under the same name)."""
    for module in root.modules():
        for name, child in module.named_children():
            if child is old:
                setattr(module, name, new)
                return
    raise ValueError("the module to replace is not part of this network")


def model_size(model_cfg, data_info: dict) -> tuple[int, int]:
    """(parameters, floats of activation per decoder row) of the model the config builds, found by
    building it on PyTorch's ``meta`` device, which allocates nothing."""
    with torch.device("meta"):
        model = build_model(model_cfg, data_info)
    return sum(p.numel() for p in model.parameters()), model.floats_per_row()


def _resolved_copy(model_cfg, data_info: dict):
    """A copy of the model config with ``auto`` resolved against the data, as
    :func:`vaekit.config.resolve` does for a run."""
    import copy as _copy
    from types import SimpleNamespace

    from ..config import resolve  # the one place "auto" is resolved (imported here: config imports this package)

    probe = SimpleNamespace(data=SimpleNamespace(modality="auto", source="the data", bad_files="auto"),
                            model=_copy.copy(model_cfg),
                            train=SimpleNamespace(free_bits=0.0, batch_size=1))
    try:
        resolve(probe, data_info)
        return probe.model
    except VaekitError as e:  # build_model's own error for a part that does not fit
        raise ValueError(str(e).removeprefix("the data: ").rstrip(".")) from None
