"""Images: PNG grids of samples, reconstructions and interpolations."""

from __future__ import annotations

import html

from pathlib import Path

import torch

from ..media import (Media, Written, deflate_bits, grid, labelled, latent_map_png, pick_pairs, picture_uri, png_bits,
                     prior_draws, register_kind, save_png, skipped_text, split_sizes, spread)


@register_kind
class Images(Media):
    """(N, C, H, W) float tensors in [0, 1]: binary pixels, grey levels or continuous values."""

    name = "image"
    default_net = "mlp"
    counts = {"sample": 64, "reconstruct": 32}
    between_help = "images: two test-set indices"
    builtin_sources = ("digits", "fashion-mnist", "dsprites")
    unit = "images"
    takes_subset = True

    @classmethod
    def load(cls, cfg, saved: dict):
        from .loader import load_images

        return load_images(cfg)

    @classmethod
    def describe(cls, bundle) -> str:
        kind = f"{bundle.levels} levels" if bundle.value == "levels" else bundle.value
        if bundle.dynamic:
            kind = "binary (dynamic binarisation)"
        shape = "x".join(str(s) for s in bundle.shape)
        return f"{bundle.name}: {shape} images, {kind}; {split_sizes(bundle)}" + skipped_text(bundle)

    def stream(self, source, chunk, cfg):
        from .loader import stream_images

        return stream_images(source, cfg, self.info, chunk)

    def complexity_bits(self, x):
        """Grey levels and colour: PNG of the 8-bit pixels. Binary pixels: raw deflate (zlib level 9,
        no header) of one byte per pixel, which on Fashion-MNIST against MNIST separates the two
        far better than a 1-bit PNG, whose row filters and bit packing break the runs deflate finds
        (AUROC of the corrected score 0.994 against 0.928; bench/RESULTS.md)."""
        pixels = x.detach().float().cpu().clamp(0, 1)
        if self.info["value"] == "binary":
            return torch.tensor([deflate_bits(p.round().to(torch.uint8).numpy().tobytes()) for p in pixels],
                                dtype=torch.float64)
        pixels = (pixels * 255).round().to(torch.uint8).numpy()
        pixels = pixels[:, 0] if pixels.shape[1] == 1 else pixels.transpose(0, 2, 3, 1)
        return torch.tensor([png_bits(p) for p in pixels], dtype=torch.float64)

    def export_info(self) -> dict:
        c = self.info["shape"][0]
        value = self.info["value"]
        return {**super().export_info(), "layout": "(batch, channels, height, width), float32",
                "channels": {1: "grey", 3: "RGB", 4: "RGBA"}.get(c, f"{c} channels"),
                "range": [0.0, 1.0], "levels": self.info.get("levels"),
                "to_input": {"binary": "pixels as 0 or 1",
                             "levels": f"pixel levels 0 .. {(self.info.get('levels') or 256) - 1}, divided by "
                                       f"{(self.info.get('levels') or 256) - 1}"}.get(value, "values scaled to [0, 1]"),
                "to_image": "mean clipped to [0, 1], times 255, rounded, for 8-bit pixels"}

    def sample(self, run, out, n, seed=0, label=None, nrow: int = 8, mean: bool = True, **options) -> Written:
        if seed is not None:
            torch.manual_seed(seed)
        out = out or run.path / "samples" / f"samples-seed{seed}.png"
        drawn = prior_draws(run.model, n or self.counts["sample"], nrow, mean, label,
                            temperature=options.get("temperature", 1.0))
        return Written([save_png(grid(drawn, nrow), out)])

    def reconstruct(self, run, x, y, out, split="test", nrow: int = 8, **options) -> Written:
        """Rows of examples, each followed by the row of their reconstructions."""
        out = out or run.path / "samples" / f"reconstructions-{split}.png"
        return Written([save_png(reconstruction_grid(run.model, x, y, nrow), out)])

    def interpolate(self, run, x_a, x_b, y_a, y_b, out, steps=10, named=False, **options) -> Written:
        """One row per pair: x_a, the decoded path between their posterior means, x_b."""
        out = out or run.path / "samples" / "interpolations.png"
        return Written([save_png(interpolation_grid(run.model, x_a, x_b, steps, y_a, y_b), out)])

    def traverse(self, run, t, out, **options) -> Written:
        """One row of images per dimension, labelled with it and its KL."""
        return Written([save_png(traversal_picture(run.model, t), out or run.path / "samples" / "traversal.png")])

    def traversal_html(self, run, t) -> str:
        return f'<img alt="latent traversal" src="{picture_uri(traversal_picture(run.model, t))}">'

    def run_outputs(self, run, bundle) -> list[Path]:
        model, out = run.model, run.path / "samples"
        test, y = bundle.test, (bundle.test_labels if model.classes else None)
        a, b = (i.to(test.device) for i in pick_pairs(test.shape[0], 8, allow_one=True))
        shown = spread(test.shape[0], 32).to(test.device)
        unsampled = getattr(model.prior, "sample_blocker", None)   # a VQ-VAE before its prior over codes
        return [
            *([] if unsampled else [self.sample(run, out / "prior_samples.png", 64).files[0]]),
            self.reconstruct(run, test[shown], None if y is None else y[shown], out / "reconstructions.png").files[0],
            self.interpolate(run, test[a], test[b], *((None, None) if y is None else (y[a], y[b])),
                             out / "interpolations.png").files[0],
            latent_map_png(model, test, bundle.test_labels, out / "latent_map.png", bundle.label_names),
        ]

    def report_sections(self, run, bundle) -> list[tuple[str, str]]:
        model, test = run.model, bundle.test
        y = bundle.test_labels if model.classes else None
        note = "<p>One row per class.</p>" if model.classes else ""
        unsampled = getattr(model.prior, "sample_blocker", None)
        sections = [("Samples from the prior", f"<p>None: {html.escape(unsampled)}.</p>" if unsampled else
                     f'{note}<img alt="prior samples" src="{picture_uri(grid(prior_draws(model, 64, 8), 8))}">')]
        shown = spread(test.shape[0], 32).to(test.device)
        rec = reconstruction_grid(model, test[shown], None if y is None else y[shown])
        sections.append(("Reconstructions", "<p>Each row of test images is followed by its reconstruction.</p>"
                         f'<img alt="reconstructions" src="{picture_uri(rec)}">'))
        a, b = (i.to(test.device) for i in pick_pairs(test.shape[0], 6, allow_one=True))
        strip = interpolation_grid(model, test[a], test[b], 10, *((None, None) if y is None else (y[a], y[b])))
        sections.append(("Interpolations", "<p>First image, the decoded straight line between the posterior means, "
                         f'last image.</p><img alt="interpolations" src="{picture_uri(strip)}">'))
        return sections

    def render(self, x: torch.Tensor) -> dict:
        return {"image": picture_uri(grid(x, x.shape[0], pad=0, min_cell=96))}


def reconstruction_grid(model, x: torch.Tensor, y=None, nrow: int = 8):
    rec = model.reconstruct(x, y=y)
    rows = []
    for i in range(0, x.shape[0], nrow):
        rows += [x[i:i + nrow], rec[i:i + nrow]]
    return grid(torch.cat(rows), nrow)


def interpolation_grid(model, x_a, x_b, steps: int = 10, y_a=None, y_b=None):
    path_images = model.interpolate(x_a, x_b, steps, y_a, y_b)          # (B, steps, C, H, W)
    rows = torch.cat([x_a.unsqueeze(1), path_images, x_b.unsqueeze(1)], 1)
    return grid(rows.flatten(0, 1), steps + 2)


def traversal_picture(model, t):
    """The images of a traversal in a grid, a row per dimension with its label, the values above."""
    x = model.decode_to_data(t.flat(), True, t.y)
    pic = grid(x, len(t.values))
    return labelled(pic, t.labels(), f"{t.values[0]:g} .. {t.values[-1]:g} in {len(t.values)} steps, around {t.origin}")

