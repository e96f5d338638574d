"""A run directory and the :class:`Run` that wraps it.

    runs/<name>/
      config.yaml         data, model and training config, plus the data description
      model.safetensors   the best weights (by validation ELBO)
      state/              last weights and optimiser/trainer state
      metrics.csv         one row per epoch
      samples/            pictures
      evaluation.json     written by ``evaluate``
"""

from __future__ import annotations

import csv
import dataclasses
import json
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from . import memory
from .checkpoint import load_weights, save_weights
from .config import Config, check_version, load_yaml, require_plugins, resolve
from .model.objectives import draws
from .errors import VaekitError
from .kinds import kind
from .kinds.media import spread
from .model import VAE, build_model, model_size


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaekitError("--device cuda was asked for but no CUDA device is available.")
    return torch.device(name)


def saved_data(path: Path, info: dict) -> dict:
    """What a run keeps to encode its data as in training: its data description, and what its
    kind of data adds (a text run's vocabulary, from vocab.json)."""
    return kind(info.get("modality", "image")).saved_state(Path(path), info)


def read_config(path: Path) -> tuple[Config, dict, list[str]]:
    """A run's config.yaml: its config, its data description and the keys ``resolve`` set, each
    checked (a run from a newer vaekit, a missing data description: one sentence)."""
    cfg_file = Path(path) / "config.yaml"
    if not cfg_file.is_file():
        raise VaekitError(f"{path}: not a vaekit run directory (no config.yaml).")
    raw = load_yaml(cfg_file)
    check_version(raw, str(cfg_file))
    raw.pop("vaekit", None)
    require_plugins(raw, str(cfg_file))
    info, resolved = raw.pop("data_info", None), raw.pop("resolved", None) or []
    if not isinstance(info, dict) or "shape" not in info:
        raise VaekitError(f"{cfg_file}: has no data_info section; it was not written by vaekit train.")
    if not isinstance(resolved, list):
        raise VaekitError(f"{cfg_file}: 'resolved' must be a list of keys, got {resolved!r}.")
    return Config.from_dict(raw, origin=str(cfg_file)), info, resolved


def load_into(model: torch.nn.Module, file: Path, against: str, weights: dict | None = None) -> None:
    """Load a safetensors file (or ``weights`` read from it) into ``model``; if names or shapes
    differ, say so in one sentence naming the file (``against``: what the model was built from)."""
    weights = load_weights(file) if weights is None else weights
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    if missing or extra:
        raise VaekitError(f"{file}: weights do not match {against} (missing {missing[:3]}, unexpected {extra[:3]}).")
    for k, v in weights.items():
        if v.shape != own[k].shape:
            raise VaekitError(f"{file}: weights do not match {against} ({k} has shape {tuple(v.shape)}, "
                              f"{against} needs {tuple(own[k].shape)}).")
    model.load_state_dict(weights)


#: the columns every row of metrics.csv has (others may be empty, or absent in older runs)
METRIC_COLUMNS = ("epoch", "train_elbo", "train_rec", "train_kl", "valid_elbo", "valid_rec", "valid_kl", "seconds")


def read_metrics(f: Path) -> list[dict]:
    """metrics.csv as one dict of numbers per epoch; a column without a value (valid_iwae of an
    ELBO run) is left out of its row. A damaged file is one sentence naming it and the line."""
    try:
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise VaekitError(f"{f}: cannot read the metrics ({e}).") from None
    out = []
    for line, row in enumerate(rows, 2):
        try:
            parsed = {k: float(v) for k, v in row.items() if k is not None and v not in ("", None)}
        except (TypeError, ValueError):
            parsed = None
        if parsed is None or any(c not in parsed for c in METRIC_COLUMNS):
            raise VaekitError(f"{f}: line {line} is not a complete row of numbers; the file is damaged.")
        out.append(parsed)
    return out


class Run:
    """A trained model with its config and data description, loaded from a run directory.

    ``media``: its kind of data (:mod:`vaekit.kinds`), which writes and shows decoded data;
    ``vocab``: a text run's vocabulary, to turn generated token ids into lines.
    """

    def __init__(self, path: Path, config: Config, info: dict, model: VAE, data=None):
        self.path, self.config, self.info, self.model = Path(path), config, info, model
        self.given = data   # data given in memory for a run trained on them (see ``data``)
        self.saved = saved_data(self.path, info)
        self.vocab = self.saved.get("vocab")
        self.media = kind(self.modality)(info, self.saved)

    @property
    def modality(self) -> str:
        return self.info.get("modality", "image")

    @classmethod
    def load(cls, path, device: str = "cpu", data=None) -> "Run":
        """The run at ``path``; ``data``: its data, given in memory (what ``vaekit.train`` takes),
        for a run trained on data given so, or to use other data of the same shape."""
        path = Path(path)
        if not path.is_dir():
            raise VaekitError(f"{path}: not a run directory (no such folder).")
        cfg_file = path / "config.yaml"
        config, info, _ = read_config(path)
        try:  # resolve: a run written before every "auto" was resolved in config.yaml
            resolve(config, info)
            params, _ = model_size(config.model, info)
        except VaekitError as e:
            raise VaekitError(f"{cfg_file}: the model cannot be built from it ({str(e).rstrip('.')}).") from None
        except (ValueError, KeyError, TypeError) as e:
            raise VaekitError(f"{cfg_file}: the model cannot be built from it ({e}).") from None
        memory.require(8 * params, f"{cfg_file}: the model it describes ({params:,} parameters)",
                       resolve_device(device), "is the file edited by hand?")
        model = build_model(config.model, info)  # built on the meta device above: it builds
        load_into(model, path / "model.safetensors", "config.yaml")
        model.to(resolve_device(device)).eval()
        if hasattr(model.prior, "attach_codes"):   # a VQ-VAE's second stage, where it has one
            from .codeprior import load as load_code_prior

            model.prior.attach_codes(load_code_prior(path))
        return cls(path, config, info, model, data)

    @cached_property
    def data(self):
        """The data set the run was trained on, reloaded from its source (or the data given to
        :meth:`load`)."""
        from .kinds import as_bundle, load_data

        if self.given is not None:
            bundle = as_bundle(self.given, self.config.data)
        else:
            try:
                bundle = load_data(self.config.data, self.saved)
            except VaekitError as e:
                raise VaekitError(f"{self.path}: {e}") if "given in memory" in str(e) else e from None
        if not self.media.same_shape(bundle.shape):
            raise VaekitError(f"{self.config.data.source}: the data are now {list(bundle.shape)}, "
                              f"but the run was trained on {self.info['shape']}.")
        return bundle.to(self.model.device)

    def labels(self, split: str):
        """The split's labels when the model is conditional (it needs them), else None."""
        if not self.model.classes:
            return None
        y = self.data.labels(split)
        if y is None:
            raise VaekitError(f"{self.config.data.source}: the {split} split has no labels, which this "
                              f"conditional model needs.")
        return y

    @property
    def metrics(self) -> list[dict]:
        f = self.path / "metrics.csv"
        if not f.exists():
            return []
        return read_metrics(f)

    def best(self) -> tuple[dict, str, str] | None:
        """The epoch whose weights model.safetensors holds, as (metrics row, column, what it is):
        the best validation ELBO, or for an importance-weighted objective its best validation IWAE bound."""
        m = self.metrics
        if not m:
            return None
        t = self.config.train
        k = draws(t.objective, t.k, t.groups)[1]
        if all("valid_objective" in r for r in m):   # an objective validated by its own value (wae, infovae)
            key, what = "valid_objective", f"valid {t.objective} objective"
        elif k and all("valid_iwae" in r for r in m):
            key, what = "valid_iwae", f"valid IWAE-{k} bound"
        else:
            key, what = "valid_elbo", "valid ELBO"
        return max(m, key=lambda r: r[key]), key, what

    @property
    def evaluation(self) -> dict | None:
        f = self.path / "evaluation.json"
        return json.loads(f.read_text()) if f.exists() else None

    def evaluate(self, k: int = 5000, split: str = "test", batch_size: int | None = None,
                 quiet: bool = False, write: bool = True, factors: bool | None = None, exact_dci: bool = False,
                 compile: str = "auto", sample_quality: dict | bool | None = None) -> dict:
        """The test figures (:func:`vaekit.eval.evaluate`) and the kind's own; with ``factors``
        (by default when the data carry known factors) the disentanglement metrics too
        (:meth:`disentanglement`, on the training split), written to evaluation.json.
        ``compile``: auto, on or off, the decoder passes compiled with torch.compile.
        ``sample_quality``: True, or the options of :meth:`sample_quality` (n, temperature,
        features_from), to add its figures (``sample_quality`` in the result)."""
        from .eval import evaluate

        quality = (sample_quality if isinstance(sample_quality, dict) else {}) if sample_quality else None
        if quality is not None:   # what sample quality refuses, said before the work
            self._quality_fits()
            if quality.get("features_from") is not None:
                self.feature_net(quality["features_from"], quiet)
        if factors is None:
            factors = self.data.factors("train") is not None
        elif factors and self.data.factors("train") is None:
            raise self._no_factors()
        result = evaluate(self.model, self.data.split(split), k=k, quiet=quiet, batch_rows=batch_size,
                          y=self.labels(split), compile=compile)
        result = {"data": self.info["name"], "split": split, **result}
        result.update(self.media.metrics(self, split))
        if factors:
            result["disentanglement"] = self.disentanglement(exact=exact_dci)
        if quality is not None:
            result["sample_quality"] = self.sample_quality(**quality, quiet=quiet)
        if write and self.metrics:
            from .tracking import trackers

            for t in trackers(self.path, self.config, int(self.metrics[-1]["epoch"]) + 1):
                t.evaluation(result, int(self.metrics[-1]["epoch"]))
                t.close()
        if write:
            (self.path / "evaluation.json").write_text(json.dumps(result, indent=2))
        return result

    def _quality_fits(self) -> None:
        """Refuse, in one sentence, a run whose samples :meth:`sample_quality` cannot measure."""
        if self.info["value"] == "tokens" or "frame" in self.info:
            raise VaekitError(f"{self.path}: sample quality compares examples of one fixed shape (images, "
                              f"spectrograms), not lines of text or sequences.")
        unsampled = getattr(self.model.prior, "sample_blocker", None)
        if unsampled:
            raise VaekitError(f"{self.path}: {unsampled}.")

    def feature_net(self, features_from: str | Path | None = None, quiet: bool = False):
        """The feature network of :meth:`sample_quality`: this run's, trained on its training split
        the first time and kept in ``quality/`` (safetensors + JSON), or the one another run
        (``features_from``) keeps, which must have been trained on the same training data."""
        import hashlib

        from .eval.quality import VERSION, FeatureNet, fit_features

        self._quality_fits()
        train = self.data.split("train")
        y = self.data.labels("train")
        digest = hashlib.sha256(train.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
        home = Path(features_from) if features_from is not None else self.path
        weights, about = home / "quality" / "features.safetensors", home / "quality" / "features.json"
        if about.exists() and weights.exists():
            meta = json.loads(about.read_text())
            if meta.get("data") != digest:
                if features_from is not None:
                    raise VaekitError(f"{about}: its feature network was trained on other data than this run's "
                                      f"training split, so its distances would not compare.")
            elif meta.get("version") != VERSION:    # an older network: retrained (here) or refused (another run's)
                if features_from is not None:
                    raise VaekitError(f"{about}: its feature network is of an older vaekit's design; run "
                                      f"`vaekit evaluate {home} --sample-quality` once to train it again.")
            else:
                net = FeatureNet(meta["shape"], meta["classes"]).to(self.model.device)
                load_into(net, weights, str(about))
                return net.eval(), meta
        elif features_from is not None:
            raise VaekitError(f"{home}: no feature network there (quality/features.safetensors); run "
                              f"`vaekit evaluate {home} --sample-quality` first.")
        classes = int(self.data.classes) if y is not None else 0
        net = fit_features(train.float(), y if classes else None, classes, quiet=quiet)
        meta = {"shape": list(train.shape[1:]), "classes": classes, "data": digest, "version": VERSION,
                **net.score(self.data.split("test").float(), self.data.labels("test") if classes else None)}
        about.parent.mkdir(exist_ok=True)
        save_weights({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, weights)
        about.write_text(json.dumps(meta, indent=2))
        return net, meta

    @torch.no_grad()
    def sample_quality(self, n: int = 2000, temperature=1.0, features_from: str | Path | None = None,
                       seed: int = 0, quiet: bool = False) -> dict:
        """Sample quality offline (:mod:`vaekit.eval.quality`): n prior samples (their decoded means;
        ``temperature``: the resnet prior's) against n test examples, in the feature space of
        :meth:`feature_net`: the Fréchet distance, precision, recall, and the feature network's own
        test accuracy (or reconstruction error); with labels, the share of samples classified with
        probability >= 0.9. Not the Inception FID (see the module)."""
        from .eval.quality import sample_quality

        net, meta = self.feature_net(features_from, quiet)
        test, train = self.data.split("test"), self.data.split("train")
        n = min(n, len(test), len(train))
        gen = torch.Generator().manual_seed(seed)
        real = test[torch.randperm(len(test), generator=gen)[:n].to(test.device)]
        ref = train[torch.randperm(len(train), generator=gen)[:n].to(train.device)]
        torch.manual_seed(seed)
        fake = torch.cat([self.model.sample(min(500, n - i), mean=True, temperature=temperature).float()
                          for i in range(0, n, 500)]).view(-1, *test.shape[1:])
        out = sample_quality(net, real.float(), fake, ref.float())
        out.update({k: meta[k] for k in ("accuracy", "reconstruction_mse") if k in meta})
        out["temperature"] = temperature
        return out

    def forecast(self, data=None, context: int | None = None, horizon: int = 16, samples: int = 100,
                 split: str = "test", mean: bool = False):
        """Forecast with a sequence model (:func:`vaekit.forecast.forecast`): the ``horizon`` steps
        after the first ``context`` steps (default: half the median training length) of each
        sequence of ``data``: a batch (B, T, D) or one sequence (T, D) in the data's own units, a
        file (.npy/.npz/.json), or None for the run's ``split``. Returns (Forecast, names); the
        Forecast is in the model's units (``run.media.denormalise`` gives a series' own)."""
        from .forecast import forecast

        x, names = self.sequences(data, split)
        what = str(data) if isinstance(data, (str, Path)) else f"the {split} split" if data is None else \
            "the sequences given"
        x = x.to(self.model.device)
        context = context or self.media.default_context()
        return forecast(self.model, x, context, horizon, samples, mean, what), names

    def impute(self, data, samples: int = 100, mask=None) -> tuple[torch.Tensor, list[str]]:
        """The sequences of ``data`` (a batch (B, T, D) or one (T, D) in the data's own units, or a
        file) with their missing values (NaN) filled in from the posterior
        (:func:`vaekit.forecast.impute`); returned in the data's own units, with their names.
        ``mask``: True (1) where a value is to be filled though it is given (:meth:`masked`)."""
        from .forecast import impute

        x, names = self.sequences(data)
        x = self.masked(x, mask)
        return self.media.denormalise(impute(self.model, x.to(self.model.device), samples).cpu()), names

    @staticmethod
    def masked(x: torch.Tensor, mask) -> torch.Tensor:
        """x (B, T, D) with NaN where ``mask`` (an array, or a .npy file, of 0/1 or booleans, shaped
        (B, T, D), or (B, T) for whole steps; T up to x's) is true; x itself for no mask."""
        if mask is None:
            return x
        where = str(mask) if isinstance(mask, (str, Path)) else "the mask"
        if isinstance(mask, (str, Path)):
            try:
                mask = np.load(Path(mask).expanduser(), allow_pickle=False)
            except (OSError, ValueError) as e:
                raise VaekitError(f"{where}: not a readable .npy array ({e}).") from None
        m = torch.as_tensor(np.asarray(mask))
        if m.dtype != torch.bool:
            if not torch.isin(m.float(), torch.tensor([0.0, 1.0])).all():
                raise VaekitError(f"{where}: a mask holds 0/1 or booleans.")
            m = m.bool()
        if m.dim() == 2:
            m = m.unsqueeze(-1)
        if m.dim() != 3 or m.shape[0] != x.shape[0] or m.shape[1] > x.shape[1] or m.shape[2] not in (1, x.shape[2]):
            raise VaekitError(f"{where}: a mask of shape {tuple(m.shape)} does not fit sequences of shape "
                              f"{tuple(x.shape)} ((N, T, D), or (N, T) for whole steps).")
        full = torch.zeros(x.shape, dtype=torch.bool)
        full[:, :m.shape[1]] = m.expand(-1, -1, x.shape[2])
        return x.masked_fill(full.to(x.device), float("nan"))

    def sequences(self, data, split: str = "test"):
        """(x, names): the sequences that forecast and impute read, in the model's units (a series
        standardised), NaN-padded (B, T, D): from a file of the run's kind, the run's ``split``
        (``data`` None), or values in the data's own units ((B, T, D) or one (T, D))."""
        if isinstance(data, (str, Path)):
            parts = list(self.media.stream(data, 1 << 30, self.config.data))
            return parts[0][1], parts[0][0]
        if data is None:
            x = self.data.split(split)
            return x, [f"{split}[{i}]" for i in range(x.shape[0])]
        x = self.media.from_values(data)
        x = x.unsqueeze(0) if x.dim() == 2 else x
        return x, [f"[{i}]" for i in range(x.shape[0])]

    def traversal(self, dims: list[int] | None = None, span=(-3.0, 3.0), steps: int = 9, index: int | None = None,
                  split: str = "test", max_examples: int = 2000):
        """A latent traversal (:mod:`vaekit.traversal`) around example ``index`` of ``split`` (its
        posterior mean), or z = 0; dimensions ordered by their KL over (up to ``max_examples`` of)
        that split."""
        from .traversal import traversal

        x, y = self.data.split(split), self.labels(split)
        if index is not None and not -len(x) <= index < len(x):
            raise VaekitError(f"--from {index}: the {split} split has {len(x)} examples (0-{len(x) - 1}).")
        shown = spread(len(x), max_examples).to(x.device)
        at = None if index is None else x[index]
        at_y = None if index is None or y is None else y[index]
        return traversal(self.model, x[shown], None if y is None else y[shown], dims, span, steps, at, at_y,
                         f"the posterior mean of {split} example {index % len(x)}" if index is not None else "")

    def disentanglement(self, split: str = "train", seed: int = 0, num_train: int = 10000, num_test: int = 5000,
                        exact: bool = False) -> dict:
        """The disentanglement metrics (MIG, DCI, SAP, the FactorVAE score, modularity and
        explicitness: :mod:`vaekit.eval.disentangle`) of the posterior means of ``split`` against
        the data's known factors."""
        from .eval.disentangle import all_metrics
        from .eval.metrics import posterior_means

        data = self.data
        factors = data.factors(split)
        if factors is None:
            raise self._no_factors()
        x, y = data.split(split), self.labels(split)
        pool = min(len(x), num_train + num_test)
        keep = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(len(x), pool, replace=False)))
        keep = keep.to(x.device)
        codes = posterior_means(self.model, x[keep], None if y is None else y[keep]).cpu().numpy()
        out = all_metrics(codes, factors[keep.cpu()].numpy(), seed=seed, num_train=num_train, num_test=num_test,
                          exact=exact)
        return {"split": split, "points": pool, "factors": data.factor_names, **out}

    def _no_factors(self) -> VaekitError:
        return VaekitError(f"{self.config.data.source}: the data carry no known factors (--data dsprites, or an .npz "
                           f"with a 'factors' array), which the disentanglement metrics need.")

    def score(self, data, k: int = 100, fpr: float | None = 0.05, by: str = "complexity", y=None,
              chunk: int = 500, quiet: bool = True) -> dict:
        """How unlike the training data each example is (:mod:`vaekit.score`): ``data`` is one
        example, a batch, or a source (a file or folder, read ``chunk`` examples at a time, so a
        folder larger than memory works). Returns a dict of (N,) tensors, one per score, and
        ``names``; with the run's validation data at hand also ``typicality`` and, with ``fpr``,
        ``flagged`` (by the score ``by``, at that false-positive rate on the validation split)."""
        from .score import SCORES, has_llr, reference, score_all

        if by not in SCORES:
            raise VaekitError(f"unknown score '{by}'; expected one of: {', '.join(SCORES)}.")
        if by == "llr" and not has_llr(self.model):
            raise VaekitError(f"{self.path}: the likelihood ratio (--by llr) needs a top-down hierarchical model "
                              f"without a flow (--prior hierarchical --inference top-down); use another score.")
        if isinstance(data, (str, Path)):
            from .kinds import KINDS

            path = Path(str(data)).expanduser()
            other = [] if not path.exists() or self.media.reads(path) else \
                [name for name, k in KINDS.items() if name != self.modality and k.detect(path)]
            if other:
                raise VaekitError(f"{data}: looks like {other[0]} data, but the run was trained on {self.modality} "
                                  f"data of shape {self.info['shape']}.")
            chunks = ((names, x, None) for names, x in self.media.stream(data, chunk, self.config.data))
            what = Path(str(data)).name
        else:
            x = torch.as_tensor(data)
            if x.dim() == len(self.info["shape"]):
                x = x.unsqueeze(0)   # one example
            if not self.media.same_shape(tuple(x.shape[1:])):
                raise VaekitError(f"the data have shape {list(x.shape[1:])}, but the run was trained on "
                                  f"{self.info['shape']}.")
            chunks = ((range(i, min(i + chunk, len(x))), x[i:i + chunk], None if y is None else y[i:i + chunk])
                      for i in range(0, len(x), chunk))
            chunks = (([str(j) for j in r], xb, yb) for r, xb, yb in chunks)
            what = ""
        out = score_all(self, chunks, k, quiet, what)
        try:
            ref = reference(self, k, 0.05 if fpr is None else fpr, quiet=quiet)
        except VaekitError:
            ref = None   # the run's data cannot be read: no typicality, no threshold
        if ref is not None:
            out["typicality"] = ref.typicality(out["nll"])
            out["reference"] = ref
            if fpr is not None and by in ref.thresholds:
                out["flagged"] = out[by] > ref.thresholds[by]
        return out

    def examples(self, n: int = 8, split: str = "test") -> tuple[torch.Tensor, str]:
        """n examples as the model reads them, and where they came from: the split's first rows,
        or where the run's data cannot be read now (moved, deleted), inputs made up to their
        description (random pixels or tokens, Gaussian features)."""
        try:
            x = self.data.split(split)[:n]
            return x, f"the first {x.shape[0]} examples of the {split} split"
        except VaekitError:
            return self.media.made_up(n), f"{n} made-up inputs of the data's shape (the data could not be read)"

    def export(self, fmt: str = "onnx", out=None, parts=None, check: bool = False) -> dict:
        """Write the model as ONNX or TorchScript files with manifest.json into ``out`` (default
        <run>/export-<fmt>) and return the manifest; see :mod:`vaekit.export`."""
        from .export import PARTS, export

        x, origin = self.examples()
        manifest = export(self.model, self.info, self.media.export_info(), x, fmt,
                          Path(out) if out else self.path / f"export-{fmt}", parts or PARTS, check, self.path.name,
                          origin, dataclasses.asdict(self.config.model))
        return manifest

    def _repr_html_(self) -> str:
        """How a run shows itself in Jupyter: what it is, its learning curves and its samples,
        from its files (the data are not read)."""
        import html

        from .kinds.media import figure_uri
        from .report import learning_curves

        c, best = self.config, self.best()
        rows = [("data", f"{c.data.source}: {'x'.join(map(str, self.info['shape']))} {self.info['value']}, "
                         + ", ".join(f"{k} {v:,}" for k, v in self.info.get("sizes", {}).items())),
                ("model", f"{c.model.net}, latent {c.model.latent}, {c.model.prior} prior, {c.model.likelihood} "
                          f"likelihood"),
                ("training", f"{c.train.objective}, {len(self.metrics)} of {c.train.epochs} epochs")]
        if best:
            rows.append((best[2], f"{best[0][best[1]]:.3f} nats at epoch {int(best[0]['epoch'])}"))
        if self.evaluation:
            ev = self.evaluation
            rows.append(("test NLL", f"{ev['nll_nats']:.3f} nats (k = {ev['k']}), {ev['bits_per_dim']:.4f} bits/dim"))
        table = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                        f"{html.escape(v)}</td></tr>" for k, v in rows)
        parts = [f"<b>{html.escape(str(self.path))}</b><table>{table}</table>"]
        if self.metrics:
            parts.append(f'<img style="max-width:720px" alt="learning curves" '
                         f'src="{figure_uri(learning_curves(self.metrics), dpi=60)}">')
        parts.append(self.media.samples_html(self.path, style="max-width:320px") or "")
        return "".join(parts)

    def __repr__(self):
        return f"Run({str(self.path)!r}, latent={self.model.latent})"
