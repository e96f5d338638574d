"""Audio sources: a folder of WAV files -> normalised log-mel spectrograms, and back to sound.

Reading: soundfile (libsndfile) reads any sample rate and bit depth it knows; stereo is
mixed down to mono, the signal is resampled to ``sample_rate`` (scipy's polyphase
``resample_poly``) and trimmed or zero-padded to ``clip_seconds``. A file that cannot be
read, is empty or is silent is skipped and named in the data description; if nothing is
left, loading stops with a clear message.

Features: the power spectrogram from ``torch.stft`` (Hann window), a mel filterbank, then
log(mel + 1e-5), normalised per mel bin with the training split's mean and standard
deviation (saved with the run, so later commands encode exactly as in training). Each
clip is a (1, n_mels, frames) "image" for the convolutional networks.

Back to sound: undo the normalisation, map mel power back to linear frequencies with the
filterbank's pseudo-inverse (clamped at zero), and recover a phase with Griffin-Lim
(``torch.istft``/``torch.stft``, with the momentum of Perraudin et al. 2013).
torchaudio has these transforms, but there is no CPU build of it here, so the mel
filterbank and Griffin-Lim are written out below (a few lines each).
"""

from __future__ import annotations

import fnmatch
import math
import re
from functools import lru_cache
from math import gcd
from pathlib import Path

import numpy as np
import torch

from ...errors import VaekitError
from ..bundle import Bundle, split_indices
from ..media import skip_or_stop

AUDIO_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".aiff", ".aif"}
LOG_EPS = 1e-5  # floor of mel power: about the background noise of quiet recordings, so zero padding is not an outlier
SILENCE = 1e-4  # peak amplitude below which a clip counts as silent


def audio_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def is_audio_source(path: Path) -> bool:
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in AUDIO_SUFFIXES
    return path.is_dir() and bool(audio_files(path))


# ----------------------------------------------------------------------------- features

def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the HTK mel scale,
    each normalised to unit area (Slaney), from 0 Hz to the Nyquist frequency."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (upper - lower))
    return torch.from_numpy(fb.astype(np.float32))


@lru_cache(maxsize=8)
def mel_pseudo_inverse(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """The filterbank's pseudo-inverse (n_fft // 2 + 1, n_mels): mel power -> the least-squares
    linear power, as Griffin-Lim needs it; computed once per setting."""
    return torch.linalg.pinv(mel_filterbank(sample_rate, n_fft, n_mels))


class LogMel:
    """Waveforms <-> normalised log-mel spectrograms with fixed settings."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, mean=None, std=None):
        self.sample_rate, self.n_fft, self.hop, self.n_mels = sample_rate, n_fft, hop, n_mels
        self.fb = mel_filterbank(sample_rate, n_fft, n_mels)
        self.window = torch.hann_window(n_fft)
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).view(-1, 1)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).view(-1, 1)

    @classmethod
    def from_info(cls, info: dict) -> "LogMel":
        return cls(info["sample_rate"], info["n_fft"], info["hop"], info["n_mels"], info.get("mel_mean"),
                   info.get("mel_std"))

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(wave, self.n_fft, self.hop, window=self.window.to(wave.device), center=True,
                          return_complex=True)

    def mel_power(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> mel power spectrogram (B, n_mels, frames)."""
        return self.fb.to(wave.device) @ self.stft(wave).abs().square()

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel_power(wave) + LOG_EPS)

    def normalise(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (log_mel - self.mean.to(log_mel.device)) / self.std.to(log_mel.device)

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (B, [1,] n_mels, frames) -> log-mel (B, n_mels, frames)."""
        x = x.reshape(x.shape[0], self.n_mels, -1)
        return x * self.std.to(x.device) + self.mean.to(x.device)

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> the model's input (B, 1, n_mels, frames)."""
        return self.normalise(self.log_mel(wave)).unsqueeze(1)

    def to_power(self, x: torch.Tensor) -> torch.Tensor:
        """The model's (normalised) output -> mel power (B, n_mels, frames)."""
        return (self.denormalise(x).exp() - LOG_EPS).clamp(min=0.0)

    def to_wave(self, x: torch.Tensor, length: int, iterations: int = 60, momentum: float = 0.99,
                seed: int = 0) -> torch.Tensor:
        """The model's (normalised) log-mel -> waveforms (B, length) by Griffin-Lim."""
        power = self.to_power(x.detach().float().cpu())
        inverse = mel_pseudo_inverse(self.sample_rate, self.n_fft, self.n_mels)
        linear = (inverse @ power).clamp(min=0.0)                              # mel -> linear power
        magnitude = linear.sqrt()
        g = torch.Generator().manual_seed(seed)
        angles = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=g))
        previous = torch.zeros_like(angles)
        wave = None
        for _ in range(iterations):  # fast Griffin-Lim: project, then extrapolate the phase
            wave = torch.istft(magnitude * angles, self.n_fft, self.hop, window=self.window, length=length)
            rebuilt = self.stft(wave)
            angles_new = rebuilt - (momentum / (1 + momentum)) * previous
            previous = rebuilt
            angles = angles_new / angles_new.abs().clamp(min=1e-8)
        wave = torch.istft(magnitude * angles, self.n_fft, self.hop, window=self.window, length=length)
        return wave.clamp(-1.0, 1.0)


def spectral_metrics(power: torch.Tensor, power_hat: torch.Tensor) -> dict:
    """Spectral convergence ||S - S^||_F / ||S||_F (magnitudes) and log-spectral distance
    (root mean square over bins of the dB difference of powers, averaged over frames), per
    clip, averaged over clips. Inputs: mel power spectrograms (B, bins, frames).

    The dB values are taken of power + the features' floor (LOG_EPS), the dynamic range the
    model sees: below it, zero padding and background noise differ by tens of dB that
    nobody hears and the model is not asked to reproduce."""
    mag, mag_hat = power.sqrt(), power_hat.sqrt()
    sc = (mag - mag_hat).flatten(1).norm(dim=1) / mag.flatten(1).norm(dim=1).clamp(min=1e-12)
    db = 10 * torch.log10(power + LOG_EPS) - 10 * torch.log10(power_hat + LOG_EPS)
    lsd = db.square().mean(1).sqrt().mean(1)
    return {"spectral_convergence": float(sc.mean()), "log_spectral_distance_db": float(lsd.mean())}


# ----------------------------------------------------------------------------- reading

def read_wave(path: Path, sample_rate: int, samples: int | None) -> np.ndarray:
    """One file -> mono float32 at ``sample_rate``, trimmed or zero-padded to ``samples`` (None:
    at its own length).

    Raises VaekitError naming the file when it cannot be read, is empty or is silent."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as e:
        reason = str(e).split(":")[-1].strip() or "unreadable"
        raise VaekitError(f"{path}: not a readable audio file ({reason}).") from None
    if data.shape[0] == 0:
        raise VaekitError(f"{path}: the audio file holds no samples.")
    declared = _declared_frames(path)
    if declared is not None and declared > data.shape[0]:
        raise VaekitError(f"{path}: the file is truncated (its header declares {declared:,} samples, it holds "
                          f"{data.shape[0]:,}).")
    wave = data.mean(1)
    if not np.isfinite(wave).all():
        raise VaekitError(f"{path}: the audio holds NaN or infinite samples.")
    if rate != sample_rate:
        g = gcd(int(rate), int(sample_rate))
        wave = resample_poly(wave, sample_rate // g, rate // g).astype(np.float32)
    if np.abs(wave).max() < SILENCE:
        raise VaekitError(f"{path}: the clip is silent.")
    if samples is None:
        return np.ascontiguousarray(wave, dtype=np.float32)
    out = np.zeros(samples, dtype=np.float32)
    out[:min(samples, len(wave))] = wave[:samples]
    return out


def _declared_frames(path: Path) -> int | None:
    """The number of frames a PCM WAV file's header declares (the standard library's ``wave``
    reads the header only), or None for other formats. libsndfile reads a truncated file short
    without saying so; the header tells."""
    import wave

    if Path(path).suffix.lower() != ".wav":
        return None
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes()
    except (wave.Error, EOFError, OSError):
        return None


def label_regex(pattern: str) -> re.Pattern:
    """``{label}_*`` -> a regex with a ``label`` group; ``*`` and ``?`` as in shell patterns."""
    parts = re.split(r"(\{label\}|\*|\?)", pattern)
    rx = "".join({"{label}": "(?P<label>.+?)", "*": ".*", "?": "."}.get(p, re.escape(p)) for p in parts)
    return re.compile(rx + "$")


def _sort_labels(names):
    names = sorted(set(names))
    if all(n.lstrip("-").isdigit() for n in names):
        names.sort(key=int)
    return names


def load_audio(cfg, saved: dict | None = None) -> Bundle:
    """Load a folder of WAV files described by a DataConfig into a Bundle of log-mel clips.

    ``cfg.valid`` / ``cfg.test``: a folder (or file) of WAV files for that split, or a
    file-name pattern (``*_[0-4].wav``) that picks the split's files from the source.
    ``saved``: a trained run's data description, whose normalisation is used.
    """

    saved = saved or {}
    root = Path(cfg.source).expanduser()
    if not root.exists():
        raise VaekitError(f"{root}: no such file or directory.")
    files = audio_files(root)
    if not files:
        raise VaekitError(f"{root}: the folder holds no WAV files.")
    rate = int(saved.get("sample_rate", cfg.sample_rate))
    samples = int(round(cfg.clip_seconds * rate))
    if samples < cfg.n_fft:
        raise VaekitError(f"{root}: clips of {cfg.clip_seconds} s are shorter than one STFT window "
                          f"({cfg.n_fft} samples at {rate} Hz).")

    groups: dict[str, list[Path]] = {"all": files}
    for split in ("test", "valid"):
        spec = getattr(cfg, split)
        if not spec:
            continue
        p = Path(spec).expanduser()
        if p.exists():
            groups[split] = audio_files(p)
        else:
            picked = [f for f in groups["all"] if fnmatch.fnmatch(f.name, spec)]
            if not picked:
                raise VaekitError(f"{root}: no file matches the {split} pattern '{spec}'.")
            groups[split] = picked
            groups["all"] = [f for f in groups["all"] if f not in set(picked)]
        if not groups[split]:
            raise VaekitError(f"{spec}: holds no WAV files for the {split} split.")

    rx = label_regex(cfg.label_from) if cfg.label_from else None
    waves, labels, skipped = {}, {}, []
    for split, fs in groups.items():
        ws, ls = [], []
        for f in fs:
            try:
                w = read_wave(f, rate, samples)
            except VaekitError as e:
                skip_or_stop(cfg, "skip", e, skipped)
                continue
            if rx is not None:
                m = rx.match(f.stem) or rx.match(f.name)
                if m is None:
                    raise VaekitError(f"{f}: the file name does not match --label-from '{cfg.label_from}'.")
                ls.append(m.group("label"))
            ws.append(w)
        if not ws:
            what = "" if split == "all" else f" for the {split} split"
            raise VaekitError(f"none of the {len(fs)} audio file(s){what} could be used; the first problem: "
                              f"{skipped[-1] if skipped else 'none'}")
        waves[split], labels[split] = np.stack(ws), ls

    if "all" in waves:
        waves["train"], labels["train"] = waves.pop("all"), labels.pop("all")
    for split, seed in (("test", 1), ("valid", 0)):
        if split not in waves:
            tr, held, _ = split_indices(len(waves["train"]), getattr(cfg, f"{split}_fraction"), 0,
                                         cfg.split_seed + seed, False)
            waves[split] = waves["train"][held]
            labels[split] = [labels["train"][i] for i in held] if labels["train"] else []
            waves["train"] = waves["train"][tr]
            labels["train"] = [labels["train"][i] for i in tr] if labels["train"] else []

    fx = LogMel(rate, cfg.n_fft, cfg.hop, cfg.n_mels)
    logmel = {s: torch.cat([fx.log_mel(torch.from_numpy(w[i:i + 256])) for i in range(0, len(w), 256)])
              for s, w in waves.items()}
    if "mel_mean" in saved:
        mean, std = saved["mel_mean"], saved["mel_std"]
    else:
        t = logmel["train"]
        mean = t.mean((0, 2)).tolist()
        std = t.std((0, 2)).clamp(min=1e-3).tolist()
    fx = LogMel(rate, cfg.n_fft, cfg.hop, cfg.n_mels, mean, std)
    tensors = {s: fx.normalise(v).unsqueeze(1).contiguous() for s, v in logmel.items()}

    label_names = saved.get("label_names") or (_sort_labels(l for ls in labels.values() for l in ls) if rx else None)
    lab = {}
    for s in ("train", "valid", "test"):
        if rx is None:
            lab[s] = None
            continue
        unknown = sorted(set(labels[s]) - set(label_names))
        if unknown:
            raise VaekitError(f"{root}: the {s} split has labels the run does not know: {unknown[:5]}.")
        lab[s] = torch.tensor([label_names.index(v) for v in labels[s]], dtype=torch.long)
    meta = {"sample_rate": rate, "clip_seconds": cfg.clip_seconds, "clip_samples": samples, "n_fft": cfg.n_fft,
            "hop": cfg.hop, "n_mels": cfg.n_mels, "mel_mean": [float(v) for v in mean],
            "mel_std": [float(v) for v in std], "skipped": skipped}
    return Bundle(name=root.name, shape=tuple(tensors["train"].shape[1:]), value="real", train=tensors["train"],
                  valid=tensors["valid"], test=tensors["test"], train_labels=lab["train"],
                  valid_labels=lab["valid"], test_labels=lab["test"], label_names=label_names, modality="audio",
                  meta=meta)


def load_clips(paths: list[Path], info: dict) -> torch.Tensor:
    """Given files -> the model's input (B, 1, n_mels, frames), encoded as in the run."""
    fx = LogMel.from_info(info)
    waves = np.stack([read_wave(Path(p), info["sample_rate"], info["clip_samples"]) for p in paths])
    return fx.features(torch.from_numpy(waves))
