"""Audio: WAV files (Griffin-Lim from the decoded log-mel spectrograms) and spectrogram pictures."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import torch

from ...errors import VaekitError
from ..media import (Media, Written, figure_uri, latent_map_png, pick_pairs, png_bits, prior_draws, pyplot,
                     register_kind, skipped_text, split_sizes, spread)


@register_kind
class Audio(Media):
    """(N, 1, mels, frames) normalised log-mel spectrograms of fixed-length clips."""

    name = "audio"
    samples_file = "prior/samples.png"   # the spectrograms of the prior samples
    default_net = "conv"
    counts = {"sample": 8, "reconstruct": 4}
    between_help = "audio: two WAV files"
    unit = "clips"
    default_bad_files = "skip"

    @classmethod
    def detect(cls, path: Path) -> bool:
        from .loader import is_audio_source

        return is_audio_source(path)

    @classmethod
    def load(cls, cfg, saved: dict):
        from .loader import load_audio

        return load_audio(cfg, saved)

    @classmethod
    def describe(cls, bundle) -> str:
        m = bundle.meta
        return (f"{bundle.name}: {m['clip_seconds']:g} s clips at {m['sample_rate']:,} Hz as {bundle.shape[1]} mel "
                f"bins x {bundle.shape[2]} frames; {split_sizes(bundle)}" + skipped_text(bundle))

    def summary(self) -> str:
        i = self.info
        return f"{i['clip_seconds']:g} s clips at {i['sample_rate']} Hz, {i['n_mels']} mel bins"

    def stream(self, source, chunk, cfg):
        from .loader import audio_files, load_clips

        path = Path(str(source)).expanduser()
        if not path.exists():
            raise VaekitError(f"{path}: no such file or directory.")
        files = audio_files(path)
        if not files:
            raise VaekitError(f"{path}: no audio files (WAV, FLAC, OGG, AIFF) found.")
        for i in range(0, len(files), chunk):
            part = files[i:i + chunk]
            yield [str(p.relative_to(path)) if path.is_dir() else p.name for p in part], load_clips(part, self.info)

    def complexity_bits(self, x):
        """PNG of the model's input, the normalised log-mel spectrogram, quantised to 8 bits over
        four standard deviations either side of the mean (the input the NLL is over, not the wave)."""
        pixels = ((x.detach().float().cpu()[:, 0].clamp(-4, 4) + 4) * (255 / 8)).round().to(torch.uint8).numpy()
        return torch.tensor([png_bits(p) for p in pixels], dtype=torch.float64)

    def export_info(self) -> dict:
        from .loader import LOG_EPS, mel_filterbank

        i = self.info
        fb = mel_filterbank(i["sample_rate"], i["n_fft"], i["n_mels"])
        return {**super().export_info(), "layout": "(batch, 1, n_mels, frames) float32: normalised log-mel",
                "sample_rate": i["sample_rate"], "clip_samples": i["clip_samples"], "n_fft": i["n_fft"],
                "hop": i["hop"], "window": "hann", "center": True, "pad_mode": "reflect", "n_mels": i["n_mels"],
                "mel_filterbank": {"about": "(n_mels, n_fft / 2 + 1): triangles evenly spaced on the HTK mel "
                                            "scale from 0 Hz to Nyquist, each of unit area",
                                   "values": [[round(float(v), 8) for v in row] for row in fb]},
                "log_offset": LOG_EPS, "mel_mean": i["mel_mean"], "mel_std": i["mel_std"],
                "to_input": "clip (mono, sample_rate, clip_samples, cut or zero-padded) -> |STFT|^2 -> "
                            "mel_filterbank @ power -> log(. + log_offset) -> (. - mel_mean) / mel_std per mel bin",
                "to_sound": "x * mel_std + mel_mean -> exp(.) - log_offset, clipped at 0 -> mel power; the "
                            "filterbank's pseudo-inverse, clipped at 0 -> linear power; Griffin-Lim with the same "
                            "STFT settings"}

    def parse_between(self, run, between):
        from .loader import load_clips

        if run.model.classes:
            raise VaekitError(f"{run.path}: a conditional model interpolates between test clips, whose labels it "
                              f"knows; leave out --between.")
        x = load_clips([Path(p) for p in between], self.info).to(run.model.device)
        return x[:1], x[1:]

    # ------------------------------------------------------------------ clips
    def waves(self, x: torch.Tensor, iterations: int = 60) -> list[np.ndarray]:
        """Normalised log-mel spectrograms (B, 1, mels, frames) -> waveforms by Griffin-Lim."""
        from .loader import LogMel

        return [w.numpy() for w in LogMel.from_info(self.info).to_wave(x, self.info["clip_samples"], iterations)]

    def spectrogram_figure(self, x: torch.Tensor, titles: list[str] | None = None, cols: int = 4):
        """Log-mel spectrograms (in dB of mel power) as a grid, time across, low pitch at the bottom."""
        from .loader import LogMel

        plt, info = pyplot(), self.info
        db = LogMel.from_info(info).denormalise(x.detach().float().cpu()) * (10 / np.log(10))  # log-mel in dB
        n = db.shape[0]
        cols = min(cols, n)
        rows = int(np.ceil(n / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.1 * rows), squeeze=False)
        seconds = info["clip_samples"] / info["sample_rate"]
        vmax = float(db.max())
        for i, ax in enumerate(axes.flat):
            if i >= n:
                ax.axis("off")
                continue
            ax.imshow(db[i].numpy(), origin="lower", aspect="auto", cmap="magma", vmin=vmax - 60, vmax=vmax,
                      extent=(0, seconds, 0, db.shape[1]))
            ax.set_title(titles[i] if titles else f"{i}", fontsize=8)
            ax.tick_params(labelsize=6)
            if i % cols == 0:
                ax.set_ylabel("mel bin", fontsize=7)
            if i >= n - cols:
                ax.set_xlabel("seconds", fontsize=7)
        fig.tight_layout()
        return fig

    def sampled(self, model, n: int = 8, seed: int | None = 0, label=None):
        """Prior samples with a name each; a conditional model without a label gives one per class."""
        if seed is not None:
            torch.manual_seed(seed)
        names = self.info.get("label_names")
        if model.classes and label is None:
            y = torch.arange(model.classes, device=model.device)
            return model.sample(model.classes, y=y), [f"label-{names[c] if names else c}"
                                                       for c in range(model.classes)]
        x = prior_draws(model, n, n, True, label)
        tag = "" if label is None else f"-{names[label] if names else label}"
        return x, [f"sample{tag}-{i}" for i in range(x.shape[0])]

    @staticmethod
    def reconstructed(model, x, y=None):
        """Each clip followed by its reconstruction, with names."""
        both = torch.stack([x, model.reconstruct(x, y=y)], 1).flatten(0, 1)
        return both, [f"{i}-{kind}" for i in range(x.shape[0]) for kind in ("original", "reconstruction")]

    @staticmethod
    def interpolated(model, x_a, x_b, steps: int = 8, y_a=None, y_b=None):
        """The clips decoded along the straight path between two clips' posterior means, with names."""
        return model.interpolate(x_a[:1], x_b[:1], steps, y_a, y_b)[0], [f"step-{i}" for i in range(steps)]

    def outputs(self, model, test, y=None, n_rec: int = 4, steps: int = 8) -> dict:
        """Prior samples, test clips with their reconstructions, and an interpolation between two
        test clips, each as (spectrograms, names)."""
        a, b = (i.to(test.device) for i in pick_pairs(test.shape[0], 1, allow_one=True))
        shown = spread(test.shape[0], n_rec).to(test.device)
        unsampled = getattr(model.prior, "sample_blocker", None)   # a VQ-VAE before its prior over codes
        return {**({} if unsampled else {"samples": self.sampled(model)}),
                "reconstructions": self.reconstructed(model, test[shown], None if y is None else y[shown]),
                "interpolation": self.interpolated(model, test[a], test[b], steps,
                                                   *((None, None) if y is None else (y[a], y[b])))}

    def write_clips(self, clips, folder, kind: str) -> list[Path]:
        """WAV files of (spectrograms, names) in ``folder``, a PNG of their spectrograms
        (``<kind>.png``), and for an interpolation one more WAV that plays the steps in turn."""
        x, names = clips
        rate = self.info["sample_rate"]
        waves = self.waves(x)
        files = [write_wav(w, rate, Path(folder) / f"{nm}.wav") for w, nm in zip(waves, names)]
        if kind == "interpolation":
            gap = np.zeros(int(0.15 * rate), dtype=np.float32)
            files.append(write_wav(np.concatenate([c for w in waves for c in (w, gap)]), rate,
                                   Path(folder) / "interpolation.wav"))
        fig = self.spectrogram_figure(x, names, cols=columns(kind, names))
        png = Path(folder) / f"{kind}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=100)
        pyplot().close(fig)
        return files + [png]

    # ------------------------------------------------------------------ the verbs
    def sample(self, run, out, n, seed=0, label=None, **options) -> Written:
        out = out or run.path / "samples" / f"samples-seed{seed}"
        return Written(self.write_clips(self.sampled(run.model, n or self.counts["sample"], seed, label), out,
                                        "samples"))

    def reconstruct(self, run, x, y, out, split="test", **options) -> Written:
        out = out or run.path / "samples" / f"reconstructions-{split}"
        return Written(self.write_clips(self.reconstructed(run.model, x, y), out, "reconstructions"))

    def interpolate(self, run, x_a, x_b, y_a, y_b, out, steps=10, named=False, **options) -> Written:
        out = out or run.path / "samples" / "interpolation"
        return Written(self.write_clips(self.interpolated(run.model, x_a, x_b, steps, y_a, y_b), out,
                                        "interpolation"))

    def traversal_clips(self, model, t):
        """The spectrograms of a traversal, a row per dimension, each titled with its value."""
        x = model.decode_to_data(t.flat(), True, t.y)
        titles = [f"{label.split()[0]} = {v:+.2f}" for label in t.labels() for v in t.values]
        return x, titles

    def traverse(self, run, t, out, **options) -> Written:
        """A spectrogram grid (``traversal.png``: a row per dimension) and one WAV per dimension
        that plays its steps in turn (``z<d>.wav``), in the folder ``out``."""
        folder = Path(out or run.path / "samples" / "traversal")
        x, titles = self.traversal_clips(run.model, t)
        rate, steps = self.info["sample_rate"], len(t.values)
        waves = self.waves(x)
        gap = np.zeros(int(0.15 * rate), dtype=np.float32)
        files = [write_wav(np.concatenate([c for w in waves[r * steps:(r + 1) * steps] for c in (w, gap)]), rate,
                           folder / f"z{d}.wav") for r, d in enumerate(t.dims)]
        fig = self.spectrogram_figure(x, titles, cols=steps)
        fig.suptitle(f"around {t.origin}; rows: " + ", ".join(t.labels()), fontsize=8)
        path = folder / "traversal.png"
        fig.savefig(path, dpi=80)
        pyplot().close(fig)
        return Written([path, *files])

    def traversal_html(self, run, t) -> str:
        x, titles = self.traversal_clips(run.model, t)
        rate, steps = self.info["sample_rate"], len(t.values)
        waves = self.waves(x)
        gap = np.zeros(int(0.15 * rate), dtype=np.float32)
        cells = "".join(
            f'<figure><figcaption>{html.escape(label)}</figcaption><audio controls src="'
            f'{wav_uri(np.concatenate([c for w in waves[r * steps:(r + 1) * steps] for c in (w, gap)]), rate)}">'
            f'</audio></figure>' for r, label in enumerate(t.labels()))
        fig = self.spectrogram_figure(x, titles, cols=steps)
        return f'<div class="clips">{cells}</div><img alt="traversal spectrograms" src="{figure_uri(fig)}">'

    def run_outputs(self, run, bundle) -> list[Path]:
        model, out, test = run.model, run.path / "samples", bundle.test
        o = self.outputs(model, test, bundle.test_labels if model.classes else None)
        folders = {"samples": "prior", "reconstructions": "reconstructions", "interpolation": "interpolation"}
        files = [f for kind, clips in o.items() for f in self.write_clips(clips, out / folders[kind], kind)]
        files.append(latent_map_png(model, test, bundle.test_labels, out / "latent_map.png", bundle.label_names))
        folders = [out / name for kind, name in folders.items() if kind in o]
        return [f for f in files if f.suffix == ".png"] + folders

    def report_sections(self, run, bundle) -> list[tuple[str, str]]:
        rate = self.info["sample_rate"]
        o = self.outputs(run.model, bundle.test, bundle.test_labels if run.model.classes else None, n_rec=6, steps=6)

        def section(kind, note=""):
            if kind not in o:
                return f"<p>None: {html.escape(run.model.prior.sample_blocker)}.</p>"
            x, names = o[kind]
            titles = [n.replace("-", " ") for n in names]
            cells = "".join(f'<figure><figcaption>{html.escape(t)}</figcaption><audio controls src="'
                            f'{wav_uri(w, rate)}"></audio></figure>' for w, t in zip(self.waves(x), titles))
            fig = self.spectrogram_figure(x, titles, cols=columns(kind, names))
            return note + f'<div class="clips">{cells}</div><img alt="spectrograms" src="{figure_uri(fig)}">'

        return [("Samples from the prior", section("samples")), ("Reconstructions", section("reconstructions")),
                ("Interpolation", section("interpolation", "<p>Decoded along the straight path between the "
                                                            "posterior means of two test clips.</p>"))]

    def render(self, x: torch.Tensor) -> dict:
        """A spectrogram picture and a WAV that plays the clips in turn."""
        rate = self.info["sample_rate"]
        waves = self.waves(x, iterations=32)
        gap = np.zeros(int(0.1 * rate), dtype=np.float32)
        wav = np.concatenate([c for w in waves for c in (w, gap)][:-1])
        fig = self.spectrogram_figure(x, [""] * x.shape[0], cols=x.shape[0])
        fig.set_size_inches(min(2.4 * x.shape[0], 24), 2.0)
        return {"image": figure_uri(fig, dpi=80), "audio": wav_uri(wav, rate)}

    @torch.no_grad()
    def metrics(self, run, split: str) -> dict:
        """Spectral convergence and log-spectral distance between the split's mel spectrograms
        and those decoded from the posterior means."""
        from .loader import LogMel, spectral_metrics

        fx = LogMel.from_info(self.info)
        x, y = run.data.split(split), run.labels(split)
        rec = torch.cat([run.model.reconstruct(x[i:i + 256], y=None if y is None else y[i:i + 256])
                         for i in range(0, x.shape[0], 256)])
        return spectral_metrics(fx.to_power(x.cpu()), fx.to_power(rec.cpu()))

    def metric_lines(self, r: dict) -> list[str]:
        lines = []
        if "spectral_convergence" in r:
            lines.append(f"  reconstructions           spectral convergence {r['spectral_convergence']:.4f}   "
                         f"log-spectral distance {r['log_spectral_distance_db']:.2f} dB (mel spectrograms)")
        return lines


def columns(kind: str, names: list[str]) -> int:
    """Columns of a clip set's spectrogram grid: 4 samples a row, a clip next to its
    reconstruction, an interpolation in one row."""
    return {"samples": 4, "reconstructions": 2}.get(kind, len(names))


#: the peak a written clip is scaled down to when the decoded wave is louder than full scale
PEAK = 0.99


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """A 16-bit PCM WAV file in memory (soundfile). Written sound never clips: a wave whose peak
    is above full scale is scaled down as a whole to a peak of 0.99; a quieter one is kept as it is."""
    import soundfile as sf

    wave = np.asarray(wave, dtype=np.float32)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak > 1.0:
        wave = wave * (PEAK / peak)
    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def wav_uri(wave: np.ndarray, sample_rate: int) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(wave, sample_rate)).decode("ascii")


def write_wav(wave: np.ndarray, sample_rate: int, path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav_bytes(wave, sample_rate))
    except OSError as e:
        raise VaekitError(f"{path}: cannot write the sound file ({e.strerror or e}).") from None
    return path
