"""Sequences of frames: piano rolls (Bach chorales, note lists) and real-valued series.

Each example is a sequence of T_i frames of D values. In memory a split is one float tensor
(N, T_max, D), each sequence followed by NaN frames up to T_max; NaN inside a sequence is a
missing value. Sources:

- ``chorales``: the Bach chorales that ship with music21 (371 pieces), as piano rolls over the
  88 piano keys, one frame per quarter note (``--steps-per-quarter``), split by piece (about
  70/15/15 with the data seed); parsed once and cached under the user's cache directory;
- a ``.json`` file of note lists: ``{"train": [...], "valid": [...], "test": [...]}`` (or one
  list, split here), each sequence a list of time steps, each step a list of the MIDI note
  numbers sounding (the form of JSB Chorales, Nottingham, MuseData, Piano-midi.de);
- ``.npy`` / ``.npz`` arrays (N, T, D), or an ``.npz`` of one (T_i, D) array per sequence, with
  ``--modality sequence``: 0/1 values are binary frames, others real values, standardised per
  dimension with the training split's mean and standard deviation (kept in the run);
- speech frames: a WAV file or folder with ``--modality sequence``, each file a sequence of
  log-mel frames at its own length (the audio kind's features: ``--sample-rate``, ``--n-fft``,
  ``--hop``, ``--n-mels``), standardised per mel bin like any real-valued frames.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from ...errors import VaekitError
from ..audio.loader import LogMel, audio_files, is_audio_source, read_wave
from ..bundle import Bundle, split_indices

#: the piano's keys: MIDI notes 21 (A0) to 108 (C8)
LOWEST, KEYS = 21, 88


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaekit"


MIDI_SUFFIXES = (".mid", ".midi")


def midi_files(path: Path) -> list[Path]:
    """A MIDI file, or the MIDI files anywhere below a folder, in name order."""
    if path.is_file():
        return [path] if path.suffix.lower() in MIDI_SUFFIXES else []
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def is_sequence_source(path: Path) -> bool:
    """A .json file of note lists, a MIDI file, or a folder of MIDI files."""
    if path.is_dir() or path.suffix.lower() in MIDI_SUFFIXES:
        return bool(midi_files(path))
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096).lstrip()
    except (OSError, UnicodeDecodeError):
        return False
    return head.startswith("{") and any(f'"{s}"' in head for s in ("train", "valid", "test")) or head.startswith("[[[")


# ---------------------------------------------------------------------- piano rolls
def roll_from_notes(steps: list, where: str) -> np.ndarray:
    """(T, 88) 0/1 from a list of time steps, each a list of MIDI note numbers."""
    roll = np.zeros((len(steps), KEYS), dtype=np.float32)
    for t, notes in enumerate(steps):
        if not isinstance(notes, list):
            raise VaekitError(f"{where}: step {t} is not a list of MIDI note numbers.")
        for n in notes:
            if not isinstance(n, (int, float)) or not LOWEST <= n < LOWEST + KEYS:
                raise VaekitError(f"{where}: step {t} has {n!r}, not a MIDI note number of the piano (21-108).")
            roll[t, int(n) - LOWEST] = 1.0
    return roll


def chorale_rolls(steps_per_quarter: int = 1, limit: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """The Bach chorales of music21's corpus as piano rolls, (T_i, 88) each, and their names;
    parsed once per ``steps_per_quarter`` and cached (a ``limit`` reads only the first pieces)."""
    cache = cache_dir() / f"chorales-{steps_per_quarter}.npz"
    if cache.exists():
        try:
            with np.load(cache) as z:
                names = [str(n) for n in z["names"]]
                rolls = [z[f"roll_{i}"] for i in range(len(names))]
            return (rolls[:limit], names[:limit]) if limit else (rolls, names)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass   # a damaged cache is made again
    try:
        from music21 import corpus
    except ImportError:
        raise VaekitError("--data chorales reads the Bach chorales that ship with music21, which is not installed: "
                          "pip install 'vaekit[music]'.") from None
    from ...progress import progress

    names = list(corpus.chorales.Iterator(returnType="filename"))
    rolls, kept = [], []
    bar = progress(len(names) if not limit else limit, False, desc="parsing the chorales (once)", unit="piece")
    for name in names:
        if limit and len(kept) >= limit:
            break
        roll = _score_roll(corpus.parse(name), steps_per_quarter)
        bar.update(1)
        if roll is not None:
            rolls.append(roll)
            kept.append(name)
    bar.close()
    if not limit:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, names=np.array(kept), **{f"roll_{i}": r for i, r in enumerate(rolls)})
        os.replace(tmp, cache)
    return rolls, kept


def _score_roll(score, steps_per_quarter: int) -> np.ndarray | None:
    """A music21 score as a (T, 88) piano roll: a note sounds in each step its duration covers."""
    length = int(np.ceil(float(score.highestTime) * steps_per_quarter))
    if length <= 0:
        return None
    roll = np.zeros((length, KEYS), dtype=np.float32)
    for n in score.flatten().notes:
        start = int(round(float(n.offset) * steps_per_quarter))
        end = max(start + 1, int(round(float(n.offset + n.quarterLength) * steps_per_quarter)))
        for p in n.pitches:
            if LOWEST <= p.midi < LOWEST + KEYS:
                roll[start:end, p.midi - LOWEST] = 1.0
    return roll if roll.any() else None


def read_midi(path: Path, steps_per_quarter: int = 1) -> np.ndarray:
    """A MIDI file as a (T, 88) piano roll (music21's reader; every track and channel together)."""
    try:
        from music21 import converter
    except ImportError:
        raise VaekitError("reading MIDI needs music21, which is not installed: pip install 'vaekit[music]'.") from None
    try:
        score = converter.parse(str(path), format="midi")
    except Exception as e:   # music21 raises many kinds of error on a damaged file
        raise VaekitError(f"{path}: not a readable MIDI file ({type(e).__name__}: {e}).") from None
    roll = _score_roll(score, steps_per_quarter)
    if roll is None:
        raise VaekitError(f"{path}: a MIDI file with no notes on the piano's keys.")
    return roll


def roll_to_midi(roll: np.ndarray, path: Path, steps_per_quarter: int = 1, tempo: int = 100) -> Path:
    """Write a (T, 88) piano roll (values >= 0.5 sound) as a MIDI file: a note held over steps
    in a row is one note."""
    try:
        from music21 import meter, note, stream, tempo as m21tempo
    except ImportError:
        raise VaekitError("writing MIDI needs music21, which is not installed: pip install 'vaekit[music]'.") from None
    on = np.asarray(roll) >= 0.5
    part = stream.Part()
    part.insert(0, m21tempo.MetronomeMark(number=tempo))
    part.insert(0, meter.TimeSignature("4/4"))
    step = 1.0 / steps_per_quarter
    for key in range(on.shape[1]):
        t = 0
        while t < on.shape[0]:
            if on[t, key]:
                start = t
                while t < on.shape[0] and on[t, key]:
                    t += 1
                n = note.Note(LOWEST + key, quarterLength=(t - start) * step)
                part.insert(start * step, n)
            else:
                t += 1
    if not on.any():   # a silent sample is still a file: one bar of rest
        part.insert(0, note.Rest(quarterLength=4))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream.Score([part]).write("midi", fp=str(path))
    return path


#: the phases at which one period of a synthesised key's wave is tabulated
PERIOD_AT = np.arange(4096) / 4096


def roll_to_wave(roll: np.ndarray, steps_per_quarter: int = 1, tempo: int = 100, rate: int = 16000) -> np.ndarray:
    """A (T, 88) piano roll (values >= 0.5 sound) as a waveform to listen to: each sounding key a
    sine at its pitch with a few harmonics, a note held over steps in a row one tone that decays
    like a plucked string, at ``tempo`` quarter notes a minute (the tempo of the MIDI files)."""
    on = np.nan_to_num(np.asarray(roll, dtype=np.float32)) >= 0.5
    step, hold = int(round(rate * 60 / tempo / steps_per_quarter)), rate // 4   # a short release after a note
    wave = np.zeros(max(1, on.shape[0]) * step + hold, dtype=np.float32)
    s = np.arange(len(wave), dtype=np.float32) / rate                   # seconds since a note's start
    attack = np.exp(-2.5 * s) * np.minimum(1.0, s / 0.01)
    release = np.exp(-np.arange(hold) / (0.05 * rate))
    for key in np.nonzero(on.any(0))[0]:
        hz = 440.0 * 2 ** ((LOWEST + key - 69) / 12)
        edges = np.diff(np.concatenate([[0], on[:, key].astype(np.int8), [0]]))
        starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]       # the notes: runs of steps
        longest = int((ends - starts).max()) * step + hold
        # every note of a key starts at phase 0: its tone is the start of the key's longest one, read
        # from one period of the wave (the harmonics below the Nyquist frequency) at the key's pitch
        period = sum(np.sin(2 * np.pi * h * PERIOD_AT) / h ** 2 for h in (1, 2, 3) if hz * h < rate / 2)
        at = (np.arange(longest) * (hz * len(PERIOD_AT) / rate)).astype(np.int64) % len(PERIOD_AT)
        shaped = period.astype(np.float32)[at] * attack[:longest]
        for start, end in zip(starts, ends):
            held = (end - start) * step
            note_wave = shaped[:held + hold].copy()
            note_wave[held:] *= release
            wave[start * step:start * step + held + hold] += note_wave.astype(np.float32)
    peak = np.abs(wave).max()
    return wave * (0.8 / peak) if peak > 0 else wave


# ---------------------------------------------------------------------- speech frames
def wave_frames(files: list[Path], fx: LogMel, cfg, skipped: list[str] | None = None) -> list[np.ndarray]:
    """Each audio file as its log-mel frames (T_i, n_mels), T_i from its own length. A file that
    cannot be used is skipped (noted in ``skipped``) or stops the load, as ``--bad-files`` says."""
    from ..media import skip_or_stop

    out = []
    for f in files:
        try:
            wave = read_wave(f, fx.sample_rate, None)
            if len(wave) < fx.n_fft:
                raise VaekitError(f"{f}: the clip is shorter than one STFT window ({fx.n_fft} samples at "
                                  f"{fx.sample_rate} Hz).")
        except VaekitError as e:
            if skipped is None:
                raise
            skip_or_stop(cfg, "skip", e, skipped)
            continue
        out.append(fx.log_mel(torch.from_numpy(wave).unsqueeze(0))[0].T.numpy().astype(np.float32))
    return out


def speech_frames(path: Path, cfg, meta: dict) -> list[np.ndarray]:
    """A WAV file or folder as sequences of log-mel frames; the settings go into ``meta``."""
    fx, skipped = LogMel(cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels), []
    seqs = wave_frames(audio_files(path), fx, cfg, skipped)
    if len(seqs) < 3:
        raise VaekitError(f"{path}: {len(seqs)} usable audio file(s); at least 3 are needed for train, valid and "
                          f"test" + (f"; the first problem: {skipped[0]}" if skipped else "") + ".")
    meta.update(sample_rate=fx.sample_rate, n_fft=fx.n_fft, hop=fx.hop, n_mels=fx.n_mels, skipped=skipped)
    return seqs


# ---------------------------------------------------------------------- embedded series
#: real series shipped with statsmodels: name -> (its monthly/weekly values, steps a window, what they are)
SERIES = {
    "elnino": ("monthly sea surface temperature of the El Niño region (°C), 1950-2010", 48),
    "co2": ("weekly atmospheric CO2 at Mauna Loa (ppm), 1958-2001, with missing weeks", 104),
}


def series_values(name: str) -> np.ndarray:
    """(T, 1) the embedded series ``name``, in time order; missing values NaN."""
    try:
        from statsmodels import datasets
    except ImportError:
        raise VaekitError(f"--data {name} reads a series that ships with statsmodels, which is not installed: "
                          f"pip install 'vaekit[series]'.") from None
    if name == "elnino":
        table = datasets.elnino.load_pandas().data
        values = table.drop(columns=["YEAR"]).to_numpy(dtype=np.float32).reshape(-1)
    else:
        values = datasets.co2.load_pandas().data["co2"].to_numpy(dtype=np.float32)
    return values.reshape(-1, 1)


def windows(values: np.ndarray, window: int, stride: int) -> list[np.ndarray]:
    """Windows of ``window`` steps every ``stride`` steps (the last one ending at the end)."""
    if len(values) < window:
        return [values] if len(values) else []
    starts = list(range(0, len(values) - window + 1, stride))
    if starts[-1] != len(values) - window:
        starts.append(len(values) - window)
    return [values[s:s + window] for s in starts]


def series_splits(values: np.ndarray, window: int) -> dict[str, list[np.ndarray]]:
    """A long series cut in time: the first 70% for training, the next 15% for validation, the
    last 15% held out for testing; each part in windows that start every window / 8 steps."""
    n = len(values)
    a, b = int(n * 0.7), int(n * 0.85)
    stride = max(1, window // 8)
    return {"train": windows(values[:a], window, stride), "valid": windows(values[a:b], window, stride),
            "test": windows(values[b:], window, stride)}


# ---------------------------------------------------------------------- loading
def pad(seqs: list[np.ndarray], length: int | None = None) -> torch.Tensor:
    """Sequences (T_i, D) as one tensor (N, T_max, D), NaN after each one's end."""
    frame = seqs[0].shape[1] if seqs else 1
    t_max = length or max((len(s) for s in seqs), default=1)
    out = np.full((len(seqs), t_max, frame), np.nan, dtype=np.float32)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s[:t_max]
    return torch.from_numpy(out)


def load_sequences(cfg, saved: dict) -> Bundle:
    source = str(cfg.source)
    spq = int(cfg.steps_per_quarter)
    meta: dict = {"steps_per_quarter": spq}
    if source == "chorales":
        rolls, names = chorale_rolls(spq, cfg.subset)
        splits = _split(rolls, cfg, with_test=True, fractions=(0.15, 0.15))
        name, value, meta["frames"] = "chorales", "binary", "piano-roll"
    elif source in SERIES:
        window = cfg.window or SERIES[source][1]
        splits = series_splits(series_values(source), window)
        name, value, meta["frames"] = source, "real", "series"
        meta.update(window=window, about=SERIES[source][0])
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise VaekitError(f"{path}: no such file or directory.")
        suffix = path.suffix.lower()
        if suffix == ".json":
            splits = _note_lists(path, cfg)
            value, meta["frames"] = "binary", "piano-roll"
        elif not midi_files(path) and is_audio_source(path):
            splits = _split(speech_frames(path, cfg, meta), cfg, with_test=True)
            value, meta["frames"] = "real", "speech"
        elif path.is_dir() or suffix in MIDI_SUFFIXES:
            from ..media import skip_or_stop

            files, rolls, skipped = midi_files(path), [], []
            if not files:
                raise VaekitError(f"{path}: no MIDI files (.mid, .midi) found.")
            for f in files:
                try:
                    rolls.append(read_midi(f, spq))
                except VaekitError as e:
                    skip_or_stop(cfg, "stop", e, skipped)
            if len(rolls) < 3:
                raise VaekitError(f"{path}: {len(rolls)} usable MIDI file(s); at least 3 are needed for train, "
                                  f"valid and test.")
            splits = _split(rolls, cfg, with_test=True)
            value, meta["frames"] = "binary", "piano-roll"
            meta["skipped"] = skipped
        elif cfg.sequence_id is not None:
            seqs = long_table(path, cfg.sequence_id, cfg.time)
            binary = all(np.isin(s[~np.isnan(s)], (0.0, 1.0)).all() for s in seqs)
            splits = _split(seqs, cfg, with_test=True)
            value, meta["frames"] = ("binary" if binary else "real"), "series"
        elif suffix in (".npy", ".npz"):
            seqs = _arrays(path)
            binary = all(np.isin(s[~np.isnan(s)], (0.0, 1.0)).all() for s in seqs)
            splits = _split(seqs, cfg, with_test=True)
            value, meta["frames"] = ("binary" if binary else "real"), "series"
        else:
            raise VaekitError(f"{path}: vaekit reads sequences from MIDI files, .json note lists, .npy/.npz "
                              f"arrays and WAV files, not {suffix or 'a file without a suffix'}.")
        name = path.name
    if cfg.subset and source != "chorales":   # (a series' windows overlap: the first ones)
        splits = {k: v[:cfg.subset] if k == "train" else v for k, v in splits.items()}
    for split, seqs in splits.items():
        if not seqs:
            raise VaekitError(f"{source}: the {split} split has no sequences.")
    frame = splits["train"][0].shape[1]
    if any(s.shape[1] != frame for v in splits.values() for s in v):
        raise VaekitError(f"{source}: the sequences do not all have frames of {frame} values.")
    if value == "real":
        train = np.concatenate(splits["train"])
        mean = saved.get("mean") or np.nan_to_num(np.nanmean(train, 0)).tolist()
        std = saved.get("std") or np.where(np.nan_to_num(np.nanstd(train, 0)) > 0,
                                            np.nan_to_num(np.nanstd(train, 0)), 1.0).tolist()
        splits = {k: [(s - np.float32(mean)) / np.float32(std) for s in v] for k, v in splits.items()}
        meta.update(mean=[float(m) for m in mean], std=[float(s) for s in std])
    lengths = [len(s) for s in splits["train"]]
    t_max = max(len(s) for v in splits.values() for s in v)
    meta.update(frame=frame, steps=int(np.median(lengths)),
                lengths={k: [len(s) for s in v] for k, v in splits.items()})
    return Bundle(name=name, shape=(t_max, frame), value=value, train=pad(splits["train"], t_max),
                  valid=pad(splits["valid"], t_max), test=pad(splits["test"], t_max), modality="sequence",
                  meta=meta)


def long_table(path: Path, sequence_id: str, time: str | None) -> list[np.ndarray]:
    """Sequences from a table in long form, a row per time step (CSV, or Parquet with pandas and
    pyarrow): grouped by ``sequence_id``, ordered by ``time`` (else kept in file order), the other
    columns the values (empty cells, NA and NaN are missing values)."""
    if path.suffix.lower() == ".parquet":
        try:
            import pandas as pd
            table = pd.read_parquet(path)
        except ImportError:
            raise VaekitError(f"{path}: reading Parquet needs pandas and pyarrow: pip install pandas pyarrow.") from None
        except Exception as e:   # pyarrow's errors on a damaged file
            raise VaekitError(f"{path}: not a readable Parquet file ({e}).") from None
        header = [str(c) for c in table.columns]
        rows = [[None if v is None or v != v else str(v) for v in r] for r in table.itertuples(index=False)]
    else:
        import csv

        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, [])
                rows = [r for r in reader if r]
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise VaekitError(f"{path}: not a readable CSV file ({e}).") from None
    for option, column in (("--sequence-id", sequence_id), ("--time", time)):
        if column is not None and column not in header:
            raise VaekitError(f"{path}: no column '{column}' ({option}); the columns are {', '.join(header)}.")
    values = [c for c in header if c not in (sequence_id, time)]
    if not values:
        raise VaekitError(f"{path}: no value columns besides --sequence-id and --time.")
    at = {c: header.index(c) for c in header}
    groups: dict[str, list] = {}
    for line, r in enumerate(rows, 2):
        if len(r) != len(header):
            raise VaekitError(f"{path}: line {line} has {len(r)} fields, not {len(header)}.")
        groups.setdefault(r[at[sequence_id]], []).append(r)

    def number(cell, line_of):
        if cell is None or cell.strip() in ("", "NA", "NaN", "nan", "null"):
            return np.nan
        try:
            return float(cell)
        except ValueError:
            raise VaekitError(f"{path}: '{cell}' in {line_of} is not a number.") from None

    def order(cell):
        try:
            return (0, float(cell), "")
        except (TypeError, ValueError):
            return (1, 0.0, str(cell))   # dates in ISO form sort as text

    out = []
    for key, group in groups.items():
        if time is not None:
            group = sorted(group, key=lambda r: order(r[at[time]]))
        out.append(np.array([[number(r[at[c]], f"sequence {key}, column {c}") for c in values] for r in group],
                            dtype=np.float32))
    return out


def _split(seqs: list[np.ndarray], cfg, with_test: bool, fractions=None) -> dict[str, list[np.ndarray]]:
    valid, test = fractions or (cfg.valid_fraction, cfg.test_fraction)
    tr, va, te = split_indices(len(seqs), valid, test, cfg.split_seed, with_test)
    return {"train": [seqs[i] for i in tr], "valid": [seqs[i] for i in va], "test": [seqs[i] for i in te]}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise VaekitError(f"{path}: not a readable JSON file of note lists ({e}).") from None


def _note_lists_all(path: Path) -> list[np.ndarray]:
    """Every sequence of a note-list file, its splits one after another."""
    raw = _read_json(path)
    parts = raw if isinstance(raw, list) else [s for k in ("train", "valid", "test") for s in raw.get(k, [])] \
        if isinstance(raw, dict) else None
    if parts is None or not all(isinstance(s, list) for s in parts):
        raise VaekitError(f"{path}: expected a list of sequences of note lists, or train/valid/test lists of them.")
    return [roll_from_notes(s, f"{path}, sequence {i}") for i, s in enumerate(parts) if s]


def _note_lists(path: Path, cfg) -> dict[str, list[np.ndarray]]:
    raw = _read_json(path)
    if isinstance(raw, list):
        seqs = [roll_from_notes(s, f"{path}, sequence {i}") for i, s in enumerate(raw) if isinstance(s, list)]
        if len(seqs) != len(raw):
            raise VaekitError(f"{path}: expected a list of sequences, each a list of time steps.")
        return _split(seqs, cfg, with_test=True)
    if not isinstance(raw, dict) or not {"train", "valid"} <= set(raw):
        raise VaekitError(f"{path}: expected {{\"train\": [...], \"valid\": [...], \"test\": [...]}} or a list of "
                          f"sequences of note lists.")
    out = {}
    for split in ("train", "valid", "test"):
        part = raw.get(split, raw["valid"])
        if not isinstance(part, list):
            raise VaekitError(f"{path}: '{split}' is not a list of sequences.")
        out[split] = [roll_from_notes(s, f"{path}, {split} sequence {i}") for i, s in enumerate(part)]
        out[split] = [s for s in out[split] if len(s)]
    return out


def _arrays(path: Path) -> list[np.ndarray]:
    try:
        if path.suffix.lower() == ".npy":
            arrays = [np.load(path, allow_pickle=False)]
        else:
            with np.load(path, allow_pickle=False) as z:
                arrays = [z[k] for k in ("x" if "x" in z.files else z.files)] if z.files else []
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise VaekitError(f"{path}: not a readable NumPy file ({e}).") from None
    if len(arrays) == 1 and arrays[0].ndim == 3:
        seqs = list(arrays[0])
    elif arrays and all(a.ndim == 2 for a in arrays):
        seqs = arrays
    else:
        raise VaekitError(f"{path}: expected an array (N, T, D) of N sequences, or one (T, D) array per sequence.")
    if not all(np.issubdtype(s.dtype, np.number) for s in seqs):
        raise VaekitError(f"{path}: the arrays are not numbers.")
    seqs = [np.asarray(s, dtype=np.float32) for s in seqs]
    # trailing frames with no value are padding
    out = []
    for s in seqs:
        seen = ~np.isnan(s).all(1)
        out.append(s[:int(np.nonzero(seen)[0].max()) + 1] if seen.any() else s[:0])
    out = [s for s in out if len(s)]
    if np.isinf(np.concatenate(out)).any() if out else False:
        raise VaekitError(f"{path}: the arrays hold infinite values.")
    return out
