"""A trained model's parts as ONNX or TorchScript files, with a manifest, checked against PyTorch.

Each part is a small module of tensors in, tensors out, built around the run's model:

- ``encoder``: x [, y] -> z, the point the model decodes for x (the posterior mean, pushed through
  the flow where there is one), and each stochastic layer's Gaussian q(z_l | ...) as ``mu`` and
  ``logvar`` (``mu_z1``, ``logvar_z1``, ``mu_z2``, ... for a hierarchy, each layer at the mean of
  the layers above it; with a flow, the Gaussian before it).
- ``decoder``: z [, y] -> the likelihood's parameters by name and its ``mean``. A text model's
  recurrent decoder is ``decoder_start`` (z -> state) and ``decoder_step`` (z, token, state ->
  log-probabilities, state) in ONNX, and the whole greedy loop (z -> tokens) in TorchScript.
- ``sample``: noise, [u,] [y,] temperature -> z and its decoded mean (text, ONNX: z, for the
  decoder's steps; TorchScript: the greedy tokens). The randomness is an input, so that the
  exported sampler is a pure function that a check can compare; the manifest says what to draw.

Labels y are (B, classes) one-hot or soft rows. Every input and output has a dynamic batch axis.
``manifest.json`` beside the files holds their inputs and outputs, the likelihood, the prior, the
kind of data and what turns outputs into images, lines or sound (:meth:`Media.export_info`).
"""

from __future__ import annotations

import contextlib
import hashlib
import copy
import io
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .errors import VaekitError
from .model.nets.flow import FlowPosterior
from .model.nets.recurrent import GreedyDecoder, RecurrentEncoder
from .model.nets.topdown import TopDownPosterior
from .model.priors import HierarchicalPrior
from .tokens import BOS, EOS, PAD, UNK
from .version import __version__

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
PARTS = ("encoder", "decoder", "sample")
# --check accepts a difference from PyTorch up to 1e-5 for values up to 1 in size, and up to 1e-5
# of the value beyond (float32 holds 7 digits: a logit of 100 has a resolution of 8e-6)
TOLERANCE = 1e-5


@dataclass
class Part:
    """One exported graph: its module, example inputs by name (batch first, except a 0-d
    ``temperature``) and the names of its outputs."""

    name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: list[str]
    about: str


# ---------------------------------------------------------------------- the parts as modules

def _gaussians(model, q) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(mu, logvar) of each stochastic layer of q(z | x), z1 first, each at the mean of the
    layers above; the layers a bottom-up hierarchy infers in its prior, from z1's mean up."""
    base = q.base if isinstance(q, FlowPosterior) else q
    layers = []
    while isinstance(base, TopDownPosterior):
        layers.append(base._bottom(base.top.loc))
        base = base.top
    layers.append(base)
    out = [(n.loc, 2.0 * n.scale.log()) for n in layers]
    prior, below = model.prior, q.loc           # bottom-up: z1's point (after the flow), then each mean
    while isinstance(prior, HierarchicalPrior) and prior.inference == "bottom-up":
        mu, logvar = prior.up(below).chunk(2, -1)
        out.append((mu, logvar))
        prior, below = prior._above, mu
    return out


def _layer_names(model) -> list[str]:
    prior = model.prior
    if isinstance(prior, HierarchicalPrior):
        return [name for name, _ in prior.layers]
    return [""]


class Encode(nn.Module):
    """x [, y] -> z (the posterior's point, ``q.loc``), then (mu, logvar) of each layer."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y=None):
        q = self.model.encode(x, y)
        out = [q.loc]
        for mu, logvar in _gaussians(self.model, q):
            out += [mu, logvar]
        return tuple(out)


class Decode(nn.Module):
    """z [, y] -> the likelihood's parameters (by :meth:`Likelihood.parameters_of`) and its mean."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def names(self, z, y=None) -> list[str]:
        return [*self._params(z, y)[0], "mean"]

    def _params(self, z, y):
        params = self.model._decoder(z, y)
        named = self.model.likelihood.parameters_of(params)
        return {k: v for k, v in named.items() if k != "mean"}, params

    def forward(self, z, y=None):
        named, params = self._params(z, y)
        return (*named.values(), self.model.likelihood.mean(params))


class Draw(nn.Module):
    """noise, [u,] [y,] temperature -> z (the prior's draw) and what the data part makes of it."""

    def __init__(self, model, then: nn.Module | None):
        super().__init__()
        self.model, self.then = model, then

    def forward(self, noise, u=None, y=None, temperature=1.0):
        z = self.model.prior.draw(noise, u, y, temperature)
        if self.then is None:
            return z
        return z, self.then(z, y)


class Mean(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z, y=None):
        return self.model.likelihood.mean(self.model._decoder(z, y))


class DecoderStart(nn.Module):
    """z [, y] -> the recurrent decoder's first state, (B, S): h, or [h, c] for an LSTM."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z, y=None):
        zc = z if y is None else torch.cat([z, y], -1)
        state = self.model.decoder.initial_state(zc)
        return torch.cat(state, -1)[0] if isinstance(state, tuple) else state[0]


class DecoderStep(nn.Module):
    """z [, y], the previous token (B,) (<s> first) and the state -> log p(token | ...) (B, vocab)
    and the next state. An inputless decoder reads <unk> for every token after <s>."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z, token, state, y=None):
        dec = self.model.decoder
        zc = z if y is None else torch.cat([z, y], -1)
        if dec.inputless:
            token = torch.where(token == BOS, token, torch.full_like(token, UNK))
        h = state.unsqueeze(0)
        s = tuple(t.contiguous() for t in h.chunk(2, -1)) if dec.cell == "lstm" else h
        log_probs, s = dec._step(zc, token, s)
        return log_probs, (torch.cat(s, -1)[0] if isinstance(s, tuple) else s[0])


class Greedy(nn.Module):
    """z [, y] -> greedy tokens: :class:`GreedyDecoder`, compiled by TorchScript, or for the
    check's reference (``greedy=None``) the model's own ``generate``."""

    def __init__(self, model, greedy=None):
        super().__init__()
        self.model, self.greedy = model, greedy

    def forward(self, z, y=None):
        zc = z if y is None else torch.cat([z, y], -1)
        return self.model.decoder.generate(zc) if self.greedy is None else self.greedy(zc)


# ---------------------------------------------------------------------- which parts a run has

def exportable_copy(model, eager: bool = False) -> nn.Module:
    """A copy of the model on the CPU in float32, evaluation mode, whose recurrent encoders run
    without packing (a graph cannot hold the host-side lengths packing needs), unless ``eager``."""
    m = copy.deepcopy(model).float().cpu().eval()
    for module in m.modules():
        if isinstance(module, RecurrentEncoder) and not eager:
            module.unpack()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def build_parts(model, x: torch.Tensor, fmt: str, wanted=PARTS, eager: bool = False) -> list[Part]:
    """The parts of ``model`` in format ``fmt``, with example inputs made from the batch ``x``
    (the data as the model reads them). ``eager``: the same parts as the model computes them in
    PyTorch (packed recurrent encoders, the decoder's own generation), the check's reference."""
    m = exportable_copy(model, eager)
    greedy = None
    if m.autoregressive and not eager:
        with _quiet_exporters():
            greedy = torch.jit.script(GreedyDecoder.of(m.decoder))
    classes = m.classes
    b = x.shape[0]
    y = torch.eye(classes)[torch.arange(b) % classes] if classes else None
    with_y = {"y": y} if classes else {}
    with torch.no_grad():
        z = m.encode(x, y).loc
    layers = _layer_names(m)
    parts = []
    if "encoder" in wanted:
        outs = ["z"] + [f"{w}_{n}" if n else w for n in layers for w in ("mu", "logvar")]
        parts.append(Part("encoder", Encode(m), {"x": x, **with_y}, outs,
                          "x -> z (the point decoded for x) and each layer's Gaussian q(z_l | ...) as mu and "
                          "logvar" + (" (before the flow)" if m.flow is not None else "")))
    if "decoder" in wanted:
        if m.autoregressive and fmt == "onnx":
            state = DecoderStart(m)(z, y)
            token = torch.full((b,), BOS, dtype=torch.long)
            parts.append(Part("decoder_start", DecoderStart(m), {"z": z, **with_y}, ["state"],
                              "z -> the decoder's first state"))
            parts.append(Part("decoder_step", DecoderStep(m), {"z": z, "token": token, "state": state, **with_y},
                              ["log_probs", "next_state"],
                              "z, the previous token (<s> first) and the state -> log-probabilities of the next "
                              "token and the next state"))
        elif m.autoregressive:
            parts.append(Part("decoder", Greedy(m, greedy),
                              {"z": z, **with_y}, ["tokens"], "z -> tokens, decoded greedily"))
        else:
            dec = Decode(m)
            parts.append(Part("decoder", dec, {"z": z, **with_y}, dec.names(z, y),
                              "z -> the likelihood's parameters and its mean"))
    if "sample" in wanted:
        prior = m.prior
        g = torch.Generator().manual_seed(0)
        inputs = {"noise": torch.randn(b, prior.noise_dim, generator=g)}
        if prior.mixture:
            inputs["u"] = torch.rand(b, generator=g)
        inputs.update(with_y)
        inputs["temperature"] = torch.tensor(1.0)
        if m.autoregressive and fmt == "onnx":
            then, outs = None, ["z"]
        elif m.autoregressive:
            then, outs = Greedy(m, greedy), ["z", "tokens"]
        else:
            then, outs = Mean(m), ["z", "mean"]
        parts.append(Part("sample", Draw(m, then), inputs, outs,
                          "noise ~ N(0, I)" + (", u ~ U[0, 1)" if prior.mixture else "")
                          + (", labels y" if classes else "") + " and a temperature -> z"
                          + ("" if then is None else " and the decoded " + outs[-1])))
    return parts


# ---------------------------------------------------------------------- writing and checking

def _call(part: Part, inputs: dict) -> tuple[torch.Tensor, ...]:
    out = part.module(**inputs)
    return out if isinstance(out, tuple) else (out,)


@contextlib.contextmanager
def _quiet_exporters():
    """The exporters' progress lines and deprecation warnings, out of the user's terminal."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError:
        raise VaekitError("ONNX export needs the onnx, onnxscript and onnxruntime packages: "
                          "pip install 'vaekit[export]'.") from None


def _write_onnx(part: Part, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    dynamic = {k: ({} if v.dim() == 0 else {0: batch}) for k, v in part.inputs.items()}
    with _quiet_exporters():
        torch.onnx.export(part.module, (), str(path), kwargs=dict(part.inputs), input_names=list(part.inputs),
                          output_names=part.outputs, dynamic_shapes=dynamic, external_data=False, verbose=False)


def _write_torchscript(part: Part, path: Path) -> None:
    """Traced; a loop inside (the greedy text decoder) was compiled by torch.jit.script and keeps
    its control flow in the traced graph."""
    with _quiet_exporters():
        torch.jit.trace(part.module, example_kwarg_inputs=dict(part.inputs), check_trace=False).save(str(path))


def run_exported(fmt: str, path: Path, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """Run an exported file on named inputs, as a consumer would: onnxruntime or torch.jit.load."""
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise VaekitError("--check of ONNX files needs onnxruntime: pip install 'vaekit[export]'.") from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.run(None, {k: v.numpy() for k, v in inputs.items()})
    with _quiet_exporters():
        module = torch.jit.load(str(path), map_location="cpu")
        out = module(**inputs)
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def _difference(part: Part, reference: Part, fmt: str, path: Path, inputs: dict) -> tuple[float, float]:
    """The largest absolute difference between the file's outputs and PyTorch's, and the largest
    difference relative to max(1, |PyTorch's value|), which the tolerance bounds."""
    with torch.no_grad():
        expected = _call(reference, inputs)
    got = run_exported(fmt, path, inputs)
    if len(got) != len(expected):
        raise VaekitError(f"{path}: gives {len(got)} outputs where PyTorch gives {len(expected)}.")
    worst, scaled = 0.0, 0.0
    for name, e, g in zip(part.outputs, expected, got):
        if tuple(g.shape) != tuple(e.shape):
            raise VaekitError(f"{path}: output '{name}' has shape {list(g.shape)}, PyTorch's has {list(e.shape)}.")
        if not e.numel():
            continue
        e = e.numpy().astype(np.float64)
        diff = np.abs(g.astype(np.float64) - e)
        diff[np.isposinf(e) & np.isposinf(g)] = 0.0   # the same infinity (a masked log-probability)
        diff[np.isneginf(e) & np.isneginf(g)] = 0.0
        worst = max(worst, float(diff.max()))
        scaled = max(scaled, float((diff / np.maximum(1.0, np.abs(e))).max()))
    return worst, scaled


def _resized(inputs: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """The inputs with the batch axis cut or repeated to n rows (a second size for the check)."""
    out = {}
    for k, v in inputs.items():
        if v.dim() == 0:
            out[k] = v
        else:
            reps = math.ceil(n / v.shape[0])
            out[k] = v.repeat(reps, *([1] * (v.dim() - 1)))[:n].clone()
    return out


def _spec(t: torch.Tensor) -> dict:
    shape = ["batch", *t.shape[1:]] if t.dim() else []
    return {"shape": [s if isinstance(s, str) else int(s) for s in shape], "dtype": str(t.dtype).removeprefix("torch.")}


def export(model, info: dict, data_info: dict, x: torch.Tensor, fmt: str, out: Path, parts=PARTS,
           check: bool = False, run_name: str = "", origin: str = "the given batch", config: dict | None = None) -> dict:
    """Write the model's parts in ``fmt`` to the folder ``out`` with manifest.json, and return the
    manifest. ``info``: the run's data description; ``data_info``: its kind's export section
    (:meth:`Media.export_info`); ``x``: a batch of data as the model reads them, for the example
    inputs and the check. With ``check``, each file is run on that batch and on one of another
    size, and a difference from PyTorch above 1e-5 is an error. ``config``: the run's model config,
    kept in the manifest."""
    if fmt not in FORMATS:
        raise VaekitError(f"unknown export format '{fmt}'; expected one of: {', '.join(FORMATS)}.")
    blocker = getattr(model.prior, "export_blocker", None)
    if blocker:
        raise VaekitError(f"this model cannot be exported: {blocker}.")
    out = Path(out)
    if fmt == "onnx":
        _need_onnx()
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK) or (out / "manifest.json").is_dir():
            raise PermissionError(13, "not writable" if not os.access(out, os.W_OK) else "manifest.json is a folder")
    except OSError as e:
        raise VaekitError(f"{out}: cannot write the exported files there ({e.strerror or e}).") from None
    x = x.float().cpu() if x.is_floating_point() else x.cpu()
    built = build_parts(model, x, fmt, parts)
    weights = _fingerprint(model)
    references = {p.name: p for p in build_parts(model, x, fmt, parts, eager=True)} if check else {}
    m = built[0].module.model
    manifest = {
        "vaekit": __version__, "format": fmt, "run": run_name, "weights": weights, "kind": info.get("modality", "image"),
        "model": config or {}, "latent": m.latent,
        "classes": (info.get("label_names") or list(range(m.classes))) if m.classes else None,
        "layers": [{"name": n, "size": s} for n, s in (m.prior.layers or [("z", m.latent)])],
        "likelihood": {"name": (config or {}).get("likelihood", type(m.likelihood).__name__),
                       "about": m.likelihood.about},
        "prior": {"name": (config or {}).get("prior", type(m.prior).__name__), "noise": m.prior.noise_dim, "mixture": m.prior.mixture,
                  "about": ("draw noise (batch, noise) from N(0, I)" + (" (its columns: z1's, then each layer "
                            "above's)" if m.prior.layers else "") + (" and u (batch,) from U[0, 1)"
                            if m.prior.mixture else "") + "; temperature scales every Gaussian's standard "
                            "deviation (1: the model's prior)")},
        "data": data_info, "parts": _kept_parts(out / "manifest.json", fmt, weights, [p.name for p in built]),
    }
    if m.autoregressive:
        manifest["decoding"] = {
            "tokens": {"pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK},
            "greedy": "feed <s> first; at each step take the most likely token other than <pad> and <s> (and not "
                      "</s> at the first step); the last position ends the line; stop at </s>",
            "state": "(batch, hidden) for a GRU; (batch, 2 * hidden), h then c, for an LSTM",
        }
    for part in built:
        path = out / f"{part.name}{FORMATS[fmt]}"
        started = time.perf_counter()
        try:
            (_write_onnx if fmt == "onnx" else _write_torchscript)(part, path)
        except VaekitError:
            raise
        except OSError as e:
            raise VaekitError(f"{path}: cannot write it ({e.strerror or e}).") from None
        except Exception as e:  # an exporter's failure: one sentence naming the part and the model
            raise VaekitError(f"the {part.name} of this model ({_describe(m)}) cannot be exported to {fmt}: "
                              f"{str(e).strip().splitlines()[0][:300]}") from None
        with torch.no_grad():
            example_out = _call(part, part.inputs)
        entry = {"file": path.name, "about": part.about,
                 "inputs": [{"name": k, **_spec(v)} for k, v in part.inputs.items()],
                 "outputs": [{"name": k, **_spec(v)} for k, v in zip(part.outputs, example_out)],
                 "seconds": round(time.perf_counter() - started, 2)}
        if check:
            b = next(v.shape[0] for v in part.inputs.values() if v.dim())
            ref = references[part.name]
            diffs = [_difference(part, ref, fmt, path, inputs)
                     for inputs in (part.inputs, _resized(part.inputs, 1), _resized(part.inputs, b + 3))]
            entry["check"] = {"batches": [b, 1, b + 3],
                              "inputs": "seeded noise" if part.name == "sample" else origin, "max_abs_diff": max(d[0] for d in diffs),
                              "max_relative_diff": max(d[1] for d in diffs)}
        manifest["parts"][part.name] = entry
    try:
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    except OSError as e:
        raise VaekitError(f"{out / 'manifest.json'}: cannot write it ({e.strerror or e}).") from None
    written = [manifest["parts"][p.name] for p in built]
    bad = {name: e["check"] for name, e in zip([p.name for p in built], written)
           if "check" in e and not e["check"]["max_relative_diff"] <= TOLERANCE}
    if bad:
        raise VaekitError(f"{out}: the exported " + ", ".join(
            f"{n} differs from PyTorch by up to {c['max_abs_diff']:.2g} ({c['max_relative_diff']:.2g} relative to "
            f"max(1, |value|))" for n, c in bad.items())
            + f", more than {TOLERANCE:g}; the files are written but should not be trusted.")
    return manifest


def _fingerprint(model) -> str:
    """A short hash of the model's weights: which model a manifest's parts come from."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _kept_parts(file: Path, fmt: str, weights: str, rewritten: list[str]) -> dict:
    """The parts an earlier export of the same weights and format left in the folder (a later
    export of one part keeps them in the manifest), where their files are still there."""
    try:
        old = json.loads(file.read_text())
        if old.get("format") != fmt or old.get("weights") != weights:
            return {}
        return {name: e for name, e in old.get("parts", {}).items()
                if name not in rewritten and (file.parent / e["file"]).is_file()}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}


def _describe(m) -> str:
    bits = [type(m.encoder).__name__, type(m.prior).__name__, type(m.likelihood).__name__]
    if m.flow is not None:
        bits.append("flow")
    if m.classes:
        bits.append("conditional")
    return ", ".join(bits)
