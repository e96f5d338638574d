"""Sequences: piano rolls (pictures and MIDI files) and real-valued series (line plots and CSV)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from ...errors import VaekitError
from ..media import Media, Written, figure_uri, picture_uri, pick_pairs, pyplot, register_kind, save_png, spread


@register_kind
class Sequences(Media):
    """(N, T_max, D) frames, NaN after each sequence's end; the deep Markov model's data."""

    name = "sequence"
    default_net = "dmm"
    default_prior = "markov"
    counts = {"sample": 8, "reconstruct": 6}
    between_help = "two test-set indices"
    unit = "sequences"
    builtin_sources = ("chorales",)
    takes_subset = True

    @classmethod
    def detect(cls, path: Path) -> bool:
        from .loader import is_sequence_source

        return is_sequence_source(path)

    @classmethod
    def load(cls, cfg, saved: dict):
        from .loader import load_sequences

        return load_sequences(cfg, saved)

    @classmethod
    def describe(cls, bundle) -> str:
        m = bundle.meta
        what = (f"piano rolls over 88 keys, {m['steps_per_quarter']} step(s) a quarter note"
                if m["frames"] == "piano-roll" else f"{m['frame']} {bundle.value} value(s) a step")
        sizes = ", ".join(f"{s} {len(m['lengths'][s]):,}" for s in ("train", "valid", "test"))
        steps = [n for v in m["lengths"].values() for n in v]
        return (f"{bundle.name}: sequences of {what}, {min(steps)}-{max(steps)} steps (median "
                f"{m['steps']}); {sizes}")

    def summary(self) -> str:
        i = self.info
        return ("piano rolls" if self.piano else f"series of {i['frame']} values") + f", median {i['steps']} steps"

    @property
    def piano(self) -> bool:
        return self.info.get("frames") == "piano-roll"

    def same_shape(self, shape) -> bool:
        return list(shape)[-1:] == [self.info["frame"]]

    # ------------------------------------------------------------------ showing sequences
    def picture(self, x: torch.Tensor):
        """Sequences (N, T, D) as one picture, one below the other: piano rolls with the low keys
        at the bottom and time across (dark = sounding); real values as line plots."""
        x = x.detach().float().cpu()
        if self.piano:
            from ..media import grid

            rolls = 1 - torch.nan_to_num(x, nan=0.0).clamp(0, 1).transpose(1, 2).flip(1)   # (N, 88, T)
            return grid(rolls.unsqueeze(1), 1, pad=2, min_cell=300)
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
        return picture_uri(pic) if self.piano else figure_uri(pic)

    def save_picture(self, x: torch.Tensor, path: Path) -> Path:
        pic = self.picture(x)
        if self.piano:
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
        """Each sequence as a file: MIDI for piano rolls (a value >= 0.5 sounds), CSV (one row a
        step, in the data's own units) for series."""
        from .loader import roll_to_midi

        files = []
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
        what = "piano rolls (time across, low keys at the bottom)" if self.piano else "the series"
        return [("Samples from the prior", f"<p>Four sequences of {self.info['steps']} steps drawn from p(z_1:T) "
                 f"and decoded, as {what}; <code>vaekit sample</code> writes them as "
                 f"{'MIDI files' if self.piano else 'CSV files'}.</p>"
                 f'<img alt="prior samples" src="{self.picture_uri(self.draw(run, 4))}">'),
                ("Reconstructions", "<p>Each test sequence above its reconstruction.</p>"
                 f'<img alt="reconstructions" src="{self.picture_uri(self.pairs(run, test[shown]))}">')]

    def render(self, x: torch.Tensor) -> dict:
        return {"image": self.picture_uri(x)}

    # ------------------------------------------------------------------ figures
    def metrics(self, run, split: str) -> dict:
        from ...model.nets.markov import lengths_of

        return {"steps": int(lengths_of(run.data.split(split)).sum())}

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
