"""Sequences: piano rolls (pictures, MIDI files and a synthesised sound), real-valued series (line
plots and CSV) and speech frames (spectrograms and WAV files)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from ...errors import VaekitError
from ..media import (Media, Written, figure_uri, picture_uri, pick_pairs, pyplot, register_kind, save_png,
                     skipped_text, spread)


@register_kind
class Sequences(Media):
    """(N, T_max, D) frames, NaN after each sequence's end; the deep Markov model's data."""

    name = "sequence"
    default_net = "dmm"
    default_prior = "markov"
    counts = {"sample": 8, "reconstruct": 6}
    between_help = "two test-set indices"
    unit = "sequences"
    builtin_sources = ("chorales", "elnino", "co2")
    takes_subset = True

    @classmethod
    def default_batch_size(cls, n_train: int) -> int:
        """A sequence is many frames, and sequence sets are small (229 JSB chorales): a batch of
        about a thirtieth of the training set, from 8 to 32, so that an epoch is some 30 steps."""
        return min(32, max(8, n_train // 30))

    @classmethod
    def detect(cls, path: Path) -> bool:
        from .loader import is_sequence_source

        return is_sequence_source(path)

    def reads(self, path: Path) -> bool:
        if self.speech:
            from ..audio.loader import is_audio_source

            return is_audio_source(path)
        return super().reads(path)

    @classmethod
    def claims(cls, cfg) -> bool:
        return getattr(cfg, "sequence_id", None) is not None

    @classmethod
    def load(cls, cfg, saved: dict):
        from .loader import load_sequences

        return load_sequences(cfg, saved)

    @classmethod
    def describe(cls, bundle) -> str:
        m = bundle.meta
        what = (f"piano rolls over 88 keys, {m['steps_per_quarter']} step(s) a quarter note"
                if m["frames"] == "piano-roll" else
                f"log-mel frames ({m['n_mels']} bins, a frame every {m['hop']} samples at {m['sample_rate']} Hz)"
                if m["frames"] == "speech" else m.get("about") and f"windows of the {m['about']}"
                or f"{m['frame']} {bundle.value} value(s) a step")
        sizes = ", ".join(f"{s} {len(m['lengths'][s]):,}" for s in ("train", "valid", "test"))
        steps = [n for v in m["lengths"].values() for n in v]
        return (f"{bundle.name}: sequences of {what}, {min(steps)}-{max(steps)} steps (median "
                f"{m['steps']}); {sizes}" + skipped_text(bundle))

    def summary(self) -> str:
        i = self.info
        what = "piano rolls" if self.piano else "log-mel frames" if self.speech else f"series of {i['frame']} values"
        return what + f", median {i['steps']} steps"

    @property
    def piano(self) -> bool:
        return self.info.get("frames") == "piano-roll"

    @property
    def speech(self) -> bool:
        return self.info.get("frames") == "speech"

    @property
    def as_image(self) -> bool:
        """Shown as one picture of rows (piano rolls, spectrograms), not as line plots."""
        return self.piano or self.speech

    # ------------------------------------------------------------------ hearing sequences
    def features(self):
        """The log-mel features of speech frames, with the run's per-bin standardisation."""
        from ..audio.loader import LogMel

        i = self.info
        return LogMel(i["sample_rate"], i["n_fft"], i["hop"], i["n_mels"], i["mean"], i["std"])

    @property
    def sample_rate(self) -> int:
        return int(self.info["sample_rate"]) if self.speech else 16000

    def waves(self, x: torch.Tensor) -> list[np.ndarray]:
        """Each sequence as sound, as long as it is: piano rolls synthesised key by key, speech
        frames by Griffin-Lim from their log-mel spectrogram (only these: see ``sound_uri``)."""
        from ...model.nets.markov import lengths_of
        from .loader import roll_to_wave

        x = x.detach().float().cpu()
        lengths = lengths_of(x).clamp(min=1).tolist()
        if self.piano:
            return [roll_to_wave(s[:n].numpy(), self.info.get("steps_per_quarter", 1)) for s, n in zip(x, lengths)]
        fx = self.features()                              # all at once (Griffin-Lim in one batch), then each cut
        frames = torch.nan_to_num(x, nan=-3.0).transpose(1, 2)                 # (N, n_mels, T)
        waves = fx.to_wave(frames, (x.shape[1] - 1) * fx.hop)
        return [w[:max(1, n - 1) * fx.hop].numpy() for w, n in zip(waves, lengths)]

    def sound_uri(self, x: torch.Tensor) -> str | None:
        """The sequences as one WAV (a data URI), one after another with a short pause; None when
        they are not sound (series)."""
        if not self.as_image:
            return None
        from ..audio.media import wav_uri

        gap = np.zeros(int(0.3 * self.sample_rate), dtype=np.float32)
        return wav_uri(np.concatenate([c for w in self.waves(x) for c in (w, gap)][:-1]), self.sample_rate)

    def audio_html(self, x: torch.Tensor) -> str:
        uri = self.sound_uri(x)
        return f'<p><audio controls src="{uri}"></audio></p>' if uri else ""

    def same_shape(self, shape) -> bool:
        return list(shape)[-1:] == [self.info["frame"]]

    # ------------------------------------------------------------------ showing sequences
    def picture(self, x: torch.Tensor):
        """Sequences (N, T, D) as one picture, one below the other: piano rolls with the low keys
        at the bottom and time across (dark = sounding); real values as line plots."""
        x = x.detach().float().cpu()
        if self.as_image:
            from ..media import grid

            if self.piano:   # the keys from two below the lowest likely one (p >= 0.2) to two above the highest
                rows = torch.nan_to_num(x, nan=0.0).clamp(0, 1)
                used = torch.nonzero((rows >= 0.2).any(0).any(0)).flatten()
                lo, hi = (int(used.min()) - 2, int(used.max()) + 2) if len(used) else (15, 63)
                lo, hi = max(0, lo), min(rows.shape[-1] - 1, hi)
                rows = rows[..., lo:hi + 1]
            else:   # log-mel in dB, the loudest 60 dB of the picture, silence (and padding) white
                db = self.denormalise(x) * (10 / np.log(10))
                top = float(torch.nan_to_num(db, nan=-np.inf).max())
                rows = ((torch.nan_to_num(db, nan=top - 60) - (top - 60)) / 60).clamp(0, 1)
            shade = 1 - rows.transpose(1, 2)              # (N, keys or bins, T), dark = sounding
            if self.piano:                                # a faint line along every C, to read the pitch by
                from .loader import LOWEST

                c_keys = torch.tensor([(LOWEST + lo + i) % 12 == 0 for i in range(shade.shape[1])])
                shade[:, c_keys] = shade[:, c_keys].clamp(max=0.9)
            shade = shade.flip(1)                         # low at the bottom
            wide = max(1, -(-600 // shade.shape[2]))       # each step widened to a picture ~600 px wide
            tall = 3 if self.piano else 2
            shade = shade.repeat_interleave(tall, 1).repeat_interleave(wide, 2)
            return grid(shade.unsqueeze(1), 1, pad=2, min_cell=1)
        plt = pyplot()
        n = x.shape[0]
        fig, axes = plt.subplots(n, 1, figsize=(8, 1.3 * n + 0.4), squeeze=False, sharex=True)
        real = self.denormalise(x)
        for i, ax in enumerate(axes[:, 0]):
            ax.plot(real[i].numpy(), linewidth=1)
            ax.tick_params(labelsize=7)
        axes[-1, 0].set_xlabel("step")
        fig.tight_layout()
        return fig

    def picture_uri(self, x: torch.Tensor) -> str:
        pic = self.picture(x)
        return picture_uri(pic) if self.as_image else figure_uri(pic)

    def save_picture(self, x: torch.Tensor, path: Path) -> Path:
        pic = self.picture(x)
        if self.as_image:
            return save_png(pic, path)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pic.savefig(path, dpi=100)
        pyplot().close(pic)
        return path

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        i = self.info
        if "mean" not in i:
            return x
        return x * torch.tensor(i["std"]) + torch.tensor(i["mean"])

    def write(self, x: torch.Tensor, stem: Path) -> list[Path]:
        """Each sequence as a file: MIDI for piano rolls (a value >= 0.5 sounds), WAV for speech
        frames, CSV (one row a step, in the data's own units) for series."""
        from ..audio.media import write_wav
        from .loader import roll_to_midi

        files = []
        if self.speech:
            return [write_wav(w, self.sample_rate, stem.with_name(f"{stem.name}-{i}.wav"))
                    for i, w in enumerate(self.waves(x))]
        for i, s in enumerate(x.detach().float().cpu()):
            if self.piano:
                files.append(roll_to_midi(s.numpy(), stem.with_name(f"{stem.name}-{i}.mid"),
                                          self.info.get("steps_per_quarter", 1)))
            else:
                f = stem.with_name(f"{stem.name}-{i}.csv")
                f.parent.mkdir(parents=True, exist_ok=True)
                with open(f, "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(["step", *[f"x{d}" for d in range(s.shape[1])]])
                    for t, row in enumerate(self.denormalise(s).tolist()):
                        w.writerow([t, *[f"{v:.6g}" for v in row]])
                files.append(f)
        return files

    def draw(self, run, n: int, steps: int | None = None, mean: bool = True) -> torch.Tensor:
        return run.model.sample(n, mean=mean, steps=steps or self.info["steps"])

    # ------------------------------------------------------------------ verbs
    def sample(self, run, out, n, seed=0, label=None, steps: int | None = None, mean: bool = True,
               **options) -> Written:
        if label is not None:
            raise VaekitError(f"{run.path}: this model has no classes; leave out --label.")
        if seed is not None:
            torch.manual_seed(seed)
        x = self.draw(run, n or self.counts["sample"], steps, mean)
        out = Path(out or run.path / "samples" / f"samples-seed{seed}.png")
        picture = self.save_picture(x, out)
        return Written([picture, *self.write(x, out.with_suffix(""))])

    def reconstruct(self, run, x, y, out, split="test", **options) -> Written:
        """Each sequence above its reconstruction (the decoded posterior mean path)."""
        out = out or run.path / "samples" / f"reconstructions-{split}.png"
        return Written([self.save_picture(self.pairs(run, x), out)])

    def pairs(self, run, x: torch.Tensor) -> torch.Tensor:
        from ...model.nets.markov import cut

        x = cut(x)
        rec = run.model.reconstruct(x)
        rec = torch.where(torch.isnan(x), torch.nan, rec)   # shown as long as the sequence
        return torch.stack([x, rec], 1).flatten(0, 1)

    def interpolate(self, run, x_a, x_b, y_a, y_b, out, steps=10, named=False, **options) -> Written:
        """For each pair: x_a, sequences decoded from points on the line between the two
        posterior mean paths, x_b (the paths are as long as the longer sequence)."""
        out = out or run.path / "samples" / "interpolations.png"
        return Written([self.save_picture(self.path_between(run, x_a[:1], x_b[:1], steps), out)])

    def path_between(self, run, x_a, x_b, steps: int) -> torch.Tensor:
        from ...model.nets.markov import cut

        both = cut(torch.cat([x_a, x_b]))
        loc = run.model.encode(both).loc
        t = torch.linspace(0, 1, steps, device=loc.device).unsqueeze(1)
        z = (1 - t) * loc[:1] + t * loc[1:2]
        mid = run.model.decode_to_data(z)
        return torch.cat([both[:1], mid, both[1:2]])

    def run_outputs(self, run, bundle) -> list[Path]:
        out = run.path / "samples"
        test = bundle.test
        shown = spread(test.shape[0], 4).to(test.device)
        files = self.sample(run, out / "prior_samples.png", 4).files
        files += self.reconstruct(run, test[shown], None, out / "reconstructions.png").files
        a, b = pick_pairs(test.shape[0], 1, allow_one=True)
        files += self.interpolate(run, test[a.to(test.device)], test[b.to(test.device)], None, None,
                                  out / "interpolations.png", steps=6).files
        return files

    def report_sections(self, run, bundle) -> list[tuple[str, str]]:
        torch.manual_seed(0)
        test = bundle.test
        shown = spread(test.shape[0], 3).to(test.device)
        what = ("piano rolls (time across, low keys at the bottom; the player synthesises them)" if self.piano else
                "log-mel spectrograms (time across, low frequencies at the bottom; the player inverts them "
                "by Griffin-Lim)" if self.speech else "the series")
        files = "MIDI files" if self.piano else "WAV files" if self.speech else "CSV files"
        samples, pairs = self.draw(run, 4), self.pairs(run, test[shown])
        return [("Samples from the prior", f"<p>Four sequences of {self.info['steps']} steps drawn from p(z_1:T) "
                 f"and decoded, as {what}; <code>vaekit sample</code> writes them as {files}.</p>"
                 f'<img alt="prior samples" src="{self.picture_uri(samples)}">{self.audio_html(samples)}'),
                ("Reconstructions", "<p>Each test sequence above its reconstruction.</p>"
                 f'<img alt="reconstructions" src="{self.picture_uri(pairs)}">{self.audio_html(pairs)}')]

    def render(self, x: torch.Tensor) -> dict:
        """A picture, and for piano rolls and speech a WAV that plays the sequences in turn."""
        sound = self.sound_uri(x)
        return {"image": self.picture_uri(x), **({"audio": sound} if sound else {})}

    def render_path(self, x_a: torch.Tensor, path: torch.Tensor, x_b: torch.Tensor) -> dict:
        """The two ends and the decoded path between them, each as long as it is."""
        from ...model.nets.markov import cut

        parts = [cut(x_a), path, cut(x_b)]
        steps = max(p.shape[1] for p in parts)
        return self.render(torch.cat([torch.nn.functional.pad(p, (0, 0, 0, steps - p.shape[1]), value=float("nan"))
                                      for p in parts]))

    # ------------------------------------------------------------------ forecasting
    def from_values(self, x: torch.Tensor) -> torch.Tensor:
        """Sequences in the data's own units as the model reads them (a series standardised)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if "mean" not in self.info:
            return x
        return (x - torch.tensor(self.info["mean"])) / torch.tensor(self.info["std"])

    def default_context(self) -> int:
        return max(1, int(self.info["steps"]) // 2)

    def forecast_files(self, run, fc, out: Path, names: list[str], shown: int = 8) -> Written:
        """A forecast as files in the folder ``out``: a picture of the first ``shown`` sequences
        (series: the context, the median and the 5-95% band of the sample paths, and what
        followed where known; piano rolls: the context followed by each key's probability over the
        samples) and, per sequence, a CSV of the quantiles (series) or a MIDI file of the context
        and one sample path (piano rolls)."""
        from .loader import roll_to_midi

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = []
        n, horizon = fc.context.shape[0], fc.samples.shape[2]
        if self.piano:
            probability = fc.samples.float().mean(0)                            # (B, H, D)
            rows = torch.cat([fc.context.cpu(), probability.cpu()], 1)[:shown]
            files.append(self.save_picture(rows, out / "forecast.png"))
            for i in range(n):
                roll = torch.cat([fc.context[i].cpu(), fc.samples[0, i].cpu()]).numpy()
                files.append(roll_to_midi(np.nan_to_num(roll), out / f"forecast-{_safe(names[i])}.mid",
                                          self.info.get("steps_per_quarter", 1)))
            return Written(files)
        q = self.denormalise(fc.quantiles((0.05, 0.5, 0.95)).cpu())           # (3, B, H, D)
        ctx = self.denormalise(fc.context.cpu())
        truth = None if fc.truth is None else self.denormalise(fc.truth.cpu())
        start = ctx.shape[1]
        for i in range(n):
            f = out / f"forecast-{_safe(names[i])}.csv"
            with open(f, "w", newline="") as fh:
                w = csv.writer(fh)
                dims = range(q.shape[-1])
                w.writerow(["step", *[f"{c}{d}" for d in dims for c in ("p5_x", "median_x", "p95_x", "truth_x")]])
                for h in range(horizon):
                    cells = []
                    for d in dims:
                        t = "" if truth is None or torch.isnan(truth[i, h, d]) else f"{truth[i, h, d].item():.6g}"
                        cells += [f"{q[0, i, h, d].item():.6g}", f"{q[1, i, h, d].item():.6g}",
                                  f"{q[2, i, h, d].item():.6g}", t]
                    w.writerow([start + h, *cells])
            files.append(f)
        plt = pyplot()
        k = min(shown, n)
        fig, axes = plt.subplots(k, 1, figsize=(8, 1.6 * k + 0.5), squeeze=False)
        for i, ax in enumerate(axes[:, 0]):
            before = np.arange(start)
            after = np.arange(start, start + horizon)
            ax.plot(before, ctx[i, :, 0].numpy(), color="black", linewidth=1, label="context")
            ax.fill_between(after, q[0, i, :, 0].numpy(), q[2, i, :, 0].numpy(), alpha=0.3, label="5-95%")
            ax.plot(after, q[1, i, :, 0].numpy(), linewidth=1.2, label="median")
            if truth is not None:
                ax.plot(after, truth[i, :, 0].numpy(), "--", color="black", linewidth=1, label="truth")
            ax.set_title(names[i], fontsize=8, loc="left")
            ax.tick_params(labelsize=7)
        axes[0, 0].legend(fontsize=7, ncol=4, loc="upper left")
        fig.tight_layout()
        picture = out / "forecast.png"
        fig.savefig(picture, dpi=100)
        plt.close(fig)
        return Written([picture, *files])

    def impute_files(self, run, filled: torch.Tensor, given: torch.Tensor, out: Path, names: list[str],
                     shown: int = 8) -> Written:
        """Imputed sequences (data units) as files in the folder ``out``: ``imputed.npy`` (N, T, D)
        and a picture (series: each filled value marked; piano rolls: the rolls, a key sounding
        where its probability is at least 0.5) or, for piano rolls, a MIDI file each."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if self.piano:
            filled = torch.where(torch.isnan(filled), filled, (filled >= 0.5).to(filled.dtype))
            files = [self.save_picture(filled[:shown], out / "imputed.png")]
            files += self.write(torch.nan_to_num(filled), out / "imputed")
        else:
            plt = pyplot()
            k = min(shown, filled.shape[0])
            fig, axes = plt.subplots(k, 1, figsize=(8, 1.5 * k + 0.4), squeeze=False)
            for i, ax in enumerate(axes[:, 0]):
                ax.plot(filled[i].numpy(), linewidth=1)
                t, d = torch.nonzero(torch.isnan(given[i]) & ~torch.isnan(filled[i]), as_tuple=True)
                ax.plot(t.numpy(), filled[i][t, d].numpy(), "o", color="red", markersize=3,
                        label="imputed" if i == 0 else None)
                ax.set_title(names[i], fontsize=8, loc="left")
                ax.tick_params(labelsize=7)
            if k:
                axes[0, 0].legend(fontsize=7, loc="upper left")
            fig.tight_layout()
            picture = out / "imputed.png"
            fig.savefig(picture, dpi=100)
            plt.close(fig)
            files = [picture]
        np.save(out / "imputed.npy", filled.numpy())
        return Written([*files, out / "imputed.npy"])

    def stream(self, source, chunk, cfg):
        """Sequences from a file of the run's kind (.json note lists, MIDI, .npy/.npz arrays, a
        table in long form, WAV files for speech frames), in the model's units, padded with NaN
        to the longest of each chunk."""
        from .loader import MIDI_SUFFIXES, _arrays, _note_lists_all, long_table, midi_files, pad, read_midi

        path = Path(str(source)).expanduser()
        if not path.exists():
            raise VaekitError(f"{path}: no such file or directory.")
        if self.speech:
            from ..audio.loader import audio_files
            from .loader import wave_frames

            files = audio_files(path)
            if not files:
                raise VaekitError(f"{path}: no audio files (.wav, .flac, ...) found.")
            fx = self.features()
            seqs = [s for f in files for s in wave_frames([f], fx, cfg)]
        elif path.is_dir() or path.suffix.lower() in MIDI_SUFFIXES:
            files = midi_files(path)
            if not files:
                raise VaekitError(f"{path}: no MIDI files (.mid, .midi) found.")
            seqs = [read_midi(f, self.info.get("steps_per_quarter", 1)) for f in files]
        elif getattr(cfg, "sequence_id", None) is not None:
            seqs = long_table(path, cfg.sequence_id, cfg.time)
        elif path.suffix.lower() == ".json":
            seqs = _note_lists_all(path)
        elif path.suffix.lower() in (".npy", ".npz"):
            seqs = _arrays(path)
        else:
            raise VaekitError(f"{path}: vaekit reads sequences from MIDI files, .json note lists and .npy/.npz "
                              f"arrays.")
        if any(s.shape[1] != self.info["frame"] for s in seqs):
            raise VaekitError(f"{path}: frames of {seqs[0].shape[1]} values, but the run was trained on frames of "
                              f"{self.info['frame']}.")
        for i in range(0, len(seqs), chunk):
            part = seqs[i:i + chunk]
            yield [f"{path.name}[{j}]" for j in range(i, i + len(part))], self.from_values(pad(part))

    # ------------------------------------------------------------------ figures
    def metrics(self, run, split: str) -> dict:
        """The split's steps (for the per-step figures); for a linear-Gaussian model the exact NLL
        (Kalman filter); for series, forecasts from the first half of each sequence's median
        length scored at horizons 1, 4 and 16 (CRPS in the data's units, 90% coverage)."""
        from ...forecast import forecast, scores
        from ...model.nets.markov import kalman_log_likelihood, lengths_of

        x = run.data.split(split)
        out = {"steps": int(lengths_of(x).sum())}
        exact = kalman_log_likelihood(run.model, x)
        if exact is not None:
            out["kalman_nll_nats"] = -exact.mean().item()
        context = self.default_context()
        if not self.piano:
            long = x[lengths_of(x) > context]
            horizons = [h for h in (1, 4, 16) if h <= x.shape[1] - context]
            if len(long) and horizons:
                torch.manual_seed(0)
                fc = forecast(run.model, long, context, max(horizons), samples=100)
                out["forecast"] = {"context": context, "horizons": {
                    str(h): s for h, s in scores(fc, horizons, torch.tensor(self.info["std"])).items()}}
        return out

    def metric_lines(self, r: dict) -> list[str]:
        lines = []
        if "kalman_nll_nats" in r:
            lines.append(f"  exact NLL (Kalman filter) {r['kalman_nll_nats']:.3f} nats a sequence, "
                         f"{r['kalman_nll_nats'] * r['n'] / r['steps']:.4f} nats a step")
        f = r.get("forecast")
        if f:
            lines.append(f"  forecasts from {f['context']} steps: " + ", ".join(
                f"horizon {h}: CRPS {s['crps']:.4g}, 90% interval covers {100 * s['coverage_90']:.0f}%"
                for h, s in f["horizons"].items()))
        return lines

    def evaluation_lines(self, r: dict) -> list[str]:
        per_step = r["nll_nats"] * r["n"] / r["steps"] if r.get("steps") else float("nan")
        elbo_step = r["elbo_nats"] * r["n"] / r["steps"] if r.get("steps") else float("nan")
        return [f"  NLL (importance sampled)  {r['nll_nats']:.3f} nats a sequence, {per_step:.4f} nats a step, "
                f"{r['bits_per_dim']:.4f} bits a frame value",
                f"  ELBO a step               {elbo_step:.4f} nats"]

    def complexity_bits(self, x: torch.Tensor) -> torch.Tensor:
        from ..media import deflate_bits

        return torch.tensor([deflate_bits(np.nan_to_num(s.cpu().numpy()).astype(np.float32).tobytes())
                             for s in x], dtype=torch.float64)

    def made_up(self, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        shape = (n, min(self.info["steps"], self.info["shape"][0]), self.info["frame"])
        return torch.bernoulli(torch.full(shape, 0.1), generator=g) if self.info["value"] == "binary" \
            else torch.randn(shape, generator=g)

    def export_info(self) -> dict:
        return {**super().export_info(), "layout": "(batch, steps, frame) float32, NaN after a sequence's end"}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
