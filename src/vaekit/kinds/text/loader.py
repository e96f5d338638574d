"""Text sources: one example per line (names, sentences, SMILES strings, code lines).

A source is a text file, or a folder holding ``train.txt`` (and optionally ``valid.txt``,
``test.txt``) or any number of ``.txt`` files, which are read in name order. Separate
valid/test files can be given (``DataConfig.valid`` / ``DataConfig.test``); otherwise a
deterministic split is held out.

Lines become token ids (characters or words) with a vocabulary built from the training
split. Each example is stored as ``t_1 .. t_n </s> <pad> ..`` in one (N, L) int64 tensor, L
being the longest line plus one; the decoder reads ``<s> t_1 .. t_n`` (teacher forcing).
Empty lines, lines over the length cap and lines that are not valid UTF-8 are skipped,
counted, and reported in one line of the data description.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ...errors import VaekitError
from ...tokens import BOS, EOS, PAD, SPECIALS, UNK  # noqa: F401 (re-exported)
from ..bundle import Bundle, split_indices

TEXT_SUFFIXES = {".txt", ".text", ".csv", ".tsv", ".smi", ".smiles", ".lines"}
# words and single punctuation marks; an apostrophe inside a word stays with it ("don't")
WORD_RE = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


class Vocab:
    """Token <-> id mapping for ``char`` or ``word`` tokens; ids 0-3 are the special tokens."""

    def __init__(self, tokens: list[str], kind: str = "char"):
        if tokens[:4] != SPECIALS:
            raise ValueError("a vocabulary starts with the special tokens " + " ".join(SPECIALS))
        self.tokens, self.kind = list(tokens), kind
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def split(self, line: str) -> list[str]:
        return list(line) if self.kind == "char" else WORD_RE.findall(line)

    def encode(self, line: str) -> list[int]:
        return [self.index.get(t, UNK) for t in self.split(line)]

    def decode(self, ids) -> str:
        """Token ids up to the first end-of-line (or padding) back to a string."""
        out = []
        for i in (ids.tolist() if hasattr(ids, "tolist") else ids):
            if i in (EOS, PAD):
                break
            if i != BOS:
                out.append(self.tokens[i] if 0 <= i < len(self.tokens) else SPECIALS[UNK])
        return ("" if self.kind == "char" else " ").join(out)

    def decode_batch(self, ids: torch.Tensor) -> list[str]:
        return [self.decode(row) for row in ids.cpu()]

    @classmethod
    def build(cls, lines: list[list[str]], kind: str, min_count: int = 1) -> "Vocab":
        counts = Counter(t for toks in lines for t in toks)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(SPECIALS + kept, kind)

    def to_json(self) -> dict:
        return {"kind": self.kind, "tokens": self.tokens}

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=0))
        return path

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return cls(list(d["tokens"]), d["kind"])
        except FileNotFoundError:
            raise VaekitError(f"{path}: file not found; a text run keeps its vocabulary there.") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise VaekitError(f"{path}: not a vaekit vocabulary file.") from None


def is_text_source(path: Path) -> bool:
    """A file with a text suffix, or a folder whose data files are text files."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in TEXT_SUFFIXES
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        return bool(files) and any(p.suffix.lower() in TEXT_SUFFIXES for p in files) and not any(
            p.suffix.lower() in {".npz", ".npy", ".png", ".jpg", ".jpeg", ".wav", ".gz"} for p in files)
    return False


class LineReader:
    """Reads lines as UTF-8 and counts what it skips: empty lines and bad encodings."""

    def __init__(self):
        self.empty = self.bad_encoding = 0

    def read(self, path: Path) -> list[str]:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise VaekitError(f"{path}: file not found.") from None
        except OSError as e:
            raise VaekitError(f"{path}: cannot read the file ({e.strerror or e}).") from None
        if not raw.strip():
            raise VaekitError(f"{path}: the file is empty.")
        if b"\x00" in raw[:65536]:
            raise VaekitError(f"{path}: not a text file (it holds binary data); vaekit reads text with one "
                              f"example per line.")
        lines, bad = [], 0
        for chunk in raw.splitlines():
            try:
                line = chunk.decode("utf-8")
            except UnicodeDecodeError:
                bad += 1
                continue
            if not line.strip():
                self.empty += 1
                continue
            lines.append(line)
        if bad and bad > len(lines):
            raise VaekitError(f"{path}: not UTF-8 text ({bad:,} of {bad + len(lines):,} lines cannot be decoded).")
        self.bad_encoding += bad
        return lines


def _source_files(path: Path) -> dict[str, list[Path]]:
    """{split: files}: train/valid/test.txt in a folder, else every text file as 'all'."""
    if path.is_file():
        return {"all": [path]}
    named = {}
    for split in ("train", "valid", "test"):
        for suffix in sorted(TEXT_SUFFIXES):
            if (path / f"{split}{suffix}").is_file():
                named[split] = [path / f"{split}{suffix}"]
    if named:
        if "train" not in named:
            raise VaekitError(f"{path}: has {', '.join(named)} text files but no train.txt.")
        return named
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise VaekitError(f"{path}: the folder holds no text files ({', '.join(sorted(TEXT_SUFFIXES))}).")
    return {"all": files}


def load_text(cfg, vocab: Vocab | None = None) -> Bundle:
    """Load a text source described by a DataConfig into a Bundle of token ids.

    ``vocab``: a saved vocabulary (a trained run's); by default one is built from the
    training split.
    """

    path = Path(cfg.source).expanduser()
    if not path.exists():
        raise VaekitError(f"{path}: no such file or directory.")
    kind = cfg.tokens
    reader = LineReader()
    lines = {split: [line for f in files for line in reader.read(f)] for split, files in _source_files(path).items()}
    for split in ("valid", "test"):
        extra = getattr(cfg, split)
        if extra:
            lines[split] = reader.read(Path(extra).expanduser())

    if "all" in lines:
        lines["train"] = lines.pop("all")
    for split, seed in (("test", 1), ("valid", 0)):  # hold out what was not given, deterministically
        if split not in lines:
            tr, held, _ = split_indices(len(lines["train"]), getattr(cfg, f"{split}_fraction"), 0,
                                         cfg.split_seed + seed, False)
            lines[split] = [lines["train"][i] for i in held]
            lines["train"] = [lines["train"][i] for i in tr]

    splitter = Vocab(SPECIALS, kind)
    toks = {s: [splitter.split(line) for line in v] for s, v in lines.items()}
    cap = cfg.max_length
    too_long = 0
    for s in toks:
        kept = [t for t in toks[s] if len(t) <= cap]
        too_long += len(toks[s]) - len(kept)
        toks[s] = kept
        if not kept:
            raise VaekitError(f"{cfg.source}: the {s} split has no usable lines (every line is empty or longer "
                              f"than --max-length {cap}).")
    if vocab is None:
        min_count = cfg.min_count if cfg.min_count is not None else (1 if kind == "char" else 2)
        vocab = Vocab.build(toks["train"], kind, min_count)
    elif vocab.kind != kind:
        raise VaekitError(f"{cfg.source}: the run's vocabulary has {vocab.kind} tokens, but the config asks for "
                          f"{kind} tokens.")
    length = max(len(t) for s in toks.values() for t in s) + 1  # + end of line
    tensors, unknown, total = {}, 0, 0
    for s, seqs in toks.items():
        arr = np.zeros((len(seqs), length), dtype=np.int64)
        for i, seq in enumerate(seqs):
            ids = [vocab.index.get(t, UNK) for t in seq]
            arr[i, :len(ids)] = ids
            arr[i, len(ids)] = EOS
            if s == "train":
                unknown += ids.count(UNK)
                total += len(ids)
        tensors[s] = torch.from_numpy(arr)
    skipped = {"empty": reader.empty, "too_long": too_long, "bad_encoding": reader.bad_encoding}
    return Bundle(name=path.name, shape=(length,), value="tokens", train=tensors["train"], valid=tensors["valid"],
                  test=tensors["test"], modality="text",
                  meta={"tokens": kind, "vocab_size": len(vocab), "max_length": cap, "skipped": skipped,
                        "unknown_train_tokens": unknown},
                  vocab=vocab)
