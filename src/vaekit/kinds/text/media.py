"""Text: lines decoded greedily, by sampling or by beam search, written to text files."""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import VaekitError
from ...tokens import EOS
from ..media import (Media, Written, deflate_bits, latent_map_png, pick_pairs, pre, register_kind, split_sizes,
                     spread, write_text)

SAMPLE_METHODS = (("greedy", "greedy decoding"), ("sample", "sampling at temperature 1"),
                  ("beam", "beam search, width 5"))


@register_kind
class Text(Media):
    """(N, L) int64 token ids, one line per example, padded after the end-of-line token."""

    name = "text"
    samples_file = "samples.txt"
    default_net = "rnn"
    default_free_bits = 0.25  # a strong autoregressive decoder would otherwise let the KL collapse
    counts = {"sample": 10, "reconstruct": 10}
    between_help = "text: two sentences"
    unit = "lines"

    @classmethod
    def detect(cls, path: Path) -> bool:
        from .loader import is_text_source

        return is_text_source(path)

    @classmethod
    def load(cls, cfg, saved: dict):
        from .loader import load_text

        return load_text(cfg, saved.get("vocab"))

    @classmethod
    def saved_state(cls, path: Path, info: dict) -> dict:
        from .loader import Vocab

        return {**info, "vocab": Vocab.load(Path(path) / "vocab.json")}

    @classmethod
    def keep(cls, bundle, path: Path) -> None:
        bundle.vocab.save(Path(path) / "vocab.json")

    @classmethod
    def describe(cls, bundle) -> str:
        m = bundle.meta
        sk = m.get("skipped", {})
        return (f"{bundle.name}: {m['tokens']} tokens, vocabulary {m['vocab_size']:,}, up to {bundle.shape[0] - 1} "
                f"tokens a line; {split_sizes(bundle)} lines; skipped {sk.get('empty', 0):,} empty, "
                f"{sk.get('too_long', 0):,} over {m['max_length']} tokens, {sk.get('bad_encoding', 0):,} not UTF-8")

    @property
    def vocab(self):
        return self.saved["vocab"]

    def summary(self) -> str:
        return f"{self.info['tokens']} tokens, vocabulary {self.info['vocab_size']:,} (vocab.json)"

    def same_shape(self, shape) -> bool:
        return True  # lines are as long as the longest line of the data; the model reads any length

    def stream(self, source, chunk, cfg):
        """The non-empty lines of a text file, named by file and line number."""
        path = Path(str(source)).expanduser()
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise VaekitError(f"{path}: cannot read the file ({e.strerror or e}).") from None
        if b"\x00" in raw[:65536]:
            raise VaekitError(f"{path}: not a text file (it holds binary data).")
        named = [(f"{path.name}:{n}", line) for n, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1)
                 if line.strip()]
        if not named:
            raise VaekitError(f"{path}: has no lines to score.")
        for i in range(0, len(named), chunk):
            part = named[i:i + chunk]
            yield [n for n, _ in part], self.encode([line for _, line in part])

    def complexity_bits(self, x):
        """zlib's raw deflate (level 9, no header) of each line as UTF-8."""
        return torch.tensor([deflate_bits(line.encode("utf-8")) for line in self.vocab.decode_batch(x)],
                            dtype=torch.float64)

    def made_up(self, n: int) -> torch.Tensor:
        """n lines of random tokens of random lengths, each ended by </s> and padded."""
        g = torch.Generator().manual_seed(0)
        length, vocab = self.info["shape"][0], self.info["vocab_size"]
        x = torch.randint(4, max(vocab, 5), (n, length), generator=g)
        ends = torch.randint(0, length, (n,), generator=g)
        steps = torch.arange(length)
        x = torch.where(steps == ends[:, None], torch.full_like(x, EOS), x)
        return torch.where(steps > ends[:, None], torch.zeros_like(x), x)

    def export_info(self) -> dict:
        v = self.vocab
        return {**super().export_info(), "layout": "(batch, length) int64 token ids",
                "unit": v.kind, "vocabulary": v.tokens, "max_length": self.info["shape"][0],
                "to_ids": ("each " + ("character" if v.kind == "char" else "word or punctuation mark (regex "
                           "\\w+|[^\\w\\s]") + " -> its index in vocabulary (<unk>, 3, if absent), then </s> (2), "
                           "then <pad> (0) to the length"),
                "to_text": "tokens up to the first </s> or <pad>, joined " + ("without spaces" if v.kind == "char"
                                                                              else "by spaces")}

    def encode(self, lines: list[str], device=None) -> torch.Tensor:
        """Lines -> (B, L) token ids with </s> and padding, as the text loader stores them."""
        ids = [self.vocab.encode(line) for line in lines]
        if any(not i for i in ids):
            raise VaekitError("an empty line cannot be encoded; give at least one token.")
        out = torch.zeros(len(ids), max(len(i) for i in ids) + 1, dtype=torch.long)
        for r, i in enumerate(ids):
            out[r, :len(i)] = torch.tensor(i)
            out[r, len(i)] = EOS
        return out.to(device) if device is not None else out

    def parse_between(self, run, between):
        x = self.encode(list(between), run.model.device)
        return x[:1], x[1:]

    # ------------------------------------------------------------------ lines
    def samples(self, model, n: int = 10, method: str = "sample", temperature: float = 1.0, beam: int = 5,
                seed: int | None = 0) -> list[str]:
        """Lines decoded from n latents drawn from the prior."""
        if seed is not None:
            torch.manual_seed(seed)
        return self.vocab.decode_batch(model.sample(n, method=method, temperature=temperature, beam=beam))

    def reconstructions(self, model, x, method: str = "greedy", beam: int = 5) -> list[tuple[str, str]]:
        """(input line, the line decoded from its posterior mean) pairs."""
        rec = model.reconstruct(x, method=method, beam=beam)
        return list(zip(self.vocab.decode_batch(x), self.vocab.decode_batch(rec)))

    def interpolations(self, model, x_a, x_b, steps: int = 8, method: str = "greedy", beam: int = 5) -> list[list[str]]:
        """For each pair, the lines decoded along the straight path between the posterior means
        (the homotopies of Bowman et al. 2016); the first and last are decoded from the ends."""
        path = model.interpolate(x_a, x_b, steps, method=method, beam=beam)     # (B, steps, L)
        return [self.vocab.decode_batch(p) for p in path]

    def outputs(self, model, test, n_rec: int = 20, pairs: int = 4) -> dict:
        """What a text run shows: 10 prior samples per generation method, ``test line  ->
        reconstruction`` lines, and interpolations between test lines (each path followed by an
        empty line). Written to files after training and shown in the report."""
        unsampled = getattr(model.prior, "sample_blocker", None)   # a VQ-VAE before its prior over codes
        samples = {} if unsampled else {label: self.samples(model, 10, method) for method, label in SAMPLE_METHODS}
        shown = spread(test.shape[0], n_rec).to(test.device)
        rec = [f"{a}  ->  {b}" for a, b in self.reconstructions(model, test[shown])]
        a, b = (i.to(test.device) for i in pick_pairs(test.shape[0], pairs, allow_one=True))
        inter = [line for path in self.interpolations(model, test[a], test[b], 8) for line in path + [""]]
        return {"samples": samples, "reconstructions": rec, "interpolations": inter}

    # ------------------------------------------------------------------ the verbs
    def sample(self, run, out, n, seed=0, label=None, method=None, temperature: float = 1.0, beam: int = 5,
               **options) -> Written:
        method = method or "sample"
        lines = self.samples(run.model, n or self.counts["sample"], method, temperature, beam, seed)
        return Written([write_text(lines, out or run.path / "samples" / f"samples-{method}-seed{seed}.txt")], lines)

    def reconstruct(self, run, x, y, out, split="test", method=None, beam: int = 5, **options) -> Written:
        pairs = self.reconstructions(run.model, x, method or "greedy", beam)
        width = max(len(a) for a, _ in pairs)
        lines = [f"{a:<{width}}  ->  {b}" for a, b in pairs]
        return Written([write_text(lines, out or run.path / "samples" / f"reconstructions-{split}.txt")], lines)

    def interpolate(self, run, x_a, x_b, y_a, y_b, out, steps=10, named=False, method=None, beam: int = 5,
                    **options) -> Written:
        paths = self.interpolations(run.model, x_a, x_b, steps, method or "greedy", beam)
        if named:  # two sentences of the user's
            lines, name = paths[0], "interpolation.txt"
        else:
            lines, name = [line for p in paths for line in p + [""]], "interpolations.txt"
        return Written([write_text(lines, out or run.path / "samples" / name)], lines)

    def traversal_lines(self, model, t, method: str = "greedy", beam: int = 5) -> list[str]:
        """A block per dimension: its label, then the line decoded at each value."""
        x = model.decode_to_data(t.flat(), True, t.y, method=method, beam=beam)
        lines = self.vocab.decode_batch(x)
        steps = len(t.values)
        out = [f"# around {t.origin}"]
        for r, label in enumerate(t.labels()):
            out += [label] + [f"  {v:+6.2f}  {line}" for v, line in zip(t.values, lines[r * steps:(r + 1) * steps])] + [""]
        return out

    def traverse(self, run, t, out, method=None, beam: int = 5, **options) -> Written:
        lines = self.traversal_lines(run.model, t, method or "greedy", beam)
        return Written([write_text(lines, out or run.path / "samples" / "traversal.txt")], lines)

    def traversal_html(self, run, t) -> str:
        return pre(self.traversal_lines(run.model, t))

    def run_outputs(self, run, bundle) -> list[Path]:
        out, test = run.path / "samples", bundle.test
        t = self.outputs(run.model, test)
        samples = [line for label, lines in t["samples"].items() for line in [f"# {label}", *lines, ""]]
        return [write_text(samples, out / "samples.txt"), write_text(t["reconstructions"], out / "reconstructions.txt"),
                write_text(t["interpolations"], out / "interpolations.txt"),
                latent_map_png(run.model, test, bundle.test_labels, out / "latent_map.png", bundle.label_names)]

    def report_sections(self, run, bundle) -> list[tuple[str, str]]:
        t = self.outputs(run.model, bundle.test, n_rec=16, pairs=3)
        out = [(f"Samples from the prior: {label}", pre(lines)) for label, lines in t["samples"].items()]
        out.append(("Reconstructions", "<p>Test line, then the line decoded (greedily) from its posterior mean.</p>"
                    + pre(t["reconstructions"])))
        out.append(("Interpolations", "<p>Lines decoded along the straight path between the posterior means of two "
                    "test lines (first and last: the decoded ends).</p>" + pre(t["interpolations"])))
        return out

    def render(self, x: torch.Tensor) -> dict:
        return {"text": "\n".join(self.vocab.decode_batch(x))}

    def render_path(self, x_a, path, x_b) -> dict:
        """The decoded path between the two test lines, each padded or cut to the path's width."""
        return self.render(torch.cat([_pad(x_a, path), path, _pad(x_b, path)]))

    def evaluation_lines(self, r: dict) -> list[str]:
        return [f"  NLL (importance sampled)  {r['nll_nats']:.3f} nats per line   {r['nll_per_token']:.4f} nats per "
                f"token   perplexity {r['perplexity']:.3f} ({r['tokens']:,} tokens with end-of-line)"]


def _pad(x, like):
    """Token rows padded or cut to the width of another batch of token rows."""
    out = torch.zeros(x.shape[0], like.shape[1], dtype=x.dtype, device=x.device)
    w = min(x.shape[1], like.shape[1])
    out[:, :w] = x[:, :w]
    return out
