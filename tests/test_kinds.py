"""A new kind of data is one loader and one media class: a made-up kind, rows of dots, goes through
train -> info -> sample -> reconstruct -> interpolate -> report -> serve without any other change."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

import vaekit
from vaekit.kinds import KINDS, Bundle, Media, Written, register_kind
from vaekit.kinds.media import pre, write_text


class Dots(Media):
    """Rows of 12 binary values, shown as lines of '#' and '.'."""

    name = "dots"
    default_net = "mlp"
    counts = {"sample": 5, "reconstruct": 3}
    unit = "rows"

    @classmethod
    def load(cls, cfg, saved):
        g = torch.Generator().manual_seed(0)
        first = (torch.rand(300, 1, generator=g) > 0.5).float()
        x = first.repeat(1, 12)  # every row all on or all off: two kinds of row, easy to learn
        return Bundle(name="dots", shape=(12,), value="binary", train=x[:200], valid=x[200:250], test=x[250:],
                      modality="dots")

    @staticmethod
    def lines(x):
        return ["".join("#" if v > 0.5 else "." for v in row) for row in x.reshape(x.shape[0], -1).tolist()]

    def _written(self, run, x, out, name):
        lines = self.lines(x)
        return Written([write_text(lines, out or run.path / "samples" / name)], lines)

    def sample(self, run, out, n, seed=0, label=None, **options):
        torch.manual_seed(seed)
        return self._written(run, run.model.sample(n or self.counts["sample"]), out, "dots.txt")

    def reconstruct(self, run, x, y, out, split="test", **options):
        return self._written(run, torch.cat([x, run.model.reconstruct(x)]), out, "reconstructions.txt")

    def interpolate(self, run, x_a, x_b, y_a, y_b, out, steps=10, named=False, **options):
        return self._written(run, run.model.interpolate(x_a, x_b, steps).flatten(0, 1), out, "paths.txt")

    def run_outputs(self, run, bundle):
        return self.sample(run, run.path / "samples" / "prior.txt", 5).files

    def report_sections(self, run, bundle):
        return [("Rows of dots from the prior", pre(self.lines(run.model.sample(6))))]

    def render(self, x):
        return {"text": "\n".join(self.lines(x))}


@pytest.fixture
def dots():
    register_kind(Dots)
    try:
        yield Dots
    finally:
        KINDS.pop("dots")


def test_a_new_kind_of_data_needs_one_loader_and_one_media_class(dots, tmp_path, cli):
    run_dir = tmp_path / "dots"
    rc, out, err = cli("train", "--modality", "dots", "--data", "made-up", "--epochs", "30", "--latent", "2",
                       "--hidden", "16", "--lr", "0.01", "--out", run_dir)
    assert rc == 0, err
    assert "dots: 12 rows, binary; train 200, valid 50, test 50" in out  # the kind's summary line
    assert (run_dir / "samples" / "prior.txt").read_text().count("\n") == 5
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["data"]["modality"] == "dots" and config["model"]["net"] == "mlp"  # resolved from the kind
    assert config["model"]["likelihood"] == "bernoulli"

    rc, out, _ = cli("info", run_dir)
    assert rc == 0 and "mlp (hidden [16])" in out and "bernoulli likelihood" in out

    rc, out, _ = cli("sample", run_dir, "-n", "7")
    rows = out.split()
    assert rc == 0 and len(rows) == 7 and all(set(r) <= {"#", "."} and len(r) == 12 for r in rows)
    assert all(r in ("#" * 12, "." * 12) for r in rows), rows  # it learned the two kinds of row
    rc, out, _ = cli("reconstruct", run_dir)
    assert rc == 0 and len(out.split()) == 6  # the kind's default count, 3, and their reconstructions
    rc, out, _ = cli("interpolate", run_dir, "--pairs", "2", "--steps", "4")
    assert rc == 0 and len(out.split()) == 8

    rc, out, _ = cli("report", run_dir)
    page = (run_dir / "report.html").read_text()
    assert rc == 0 and "Rows of dots from the prior" in page and "dots: 12 rows" in page

    from vaekit.serve import create_app

    client = create_app(vaekit.Run.load(run_dir)).test_client()
    info = client.get("/api/info").get_json()
    assert info["modality"] == "dots" and info["latent"] == 2
    decoded = client.post("/api/decode", json={"z": [0.0, 0.0]}).get_json()
    assert len(decoded["text"]) == 12
    path = client.post("/api/interpolate", json={"a": 0, "b": 1, "steps": 3}).get_json()
    assert len(path["text"].splitlines()) == 5


def test_a_kind_that_is_not_registered_is_one_sentence(tmp_path, cli):
    rc, _, err = cli("train", "--modality", "dots", "--epochs", "1", "--out", tmp_path / "x")
    assert rc == 2 and "invalid choice: 'dots'" in err


def test_registries_feed_the_config_the_choices_and_the_builder():
    from vaekit.cli import build_parser
    from vaekit.config import ModelConfig

    train = next(a for a in build_parser()._actions if a.dest == "verb").choices["train"]
    choices = {a.dest: a.choices for a in train._actions}
    assert list(choices["likelihood"]) == ["auto", *vaekit.LIKELIHOODS.names()]
    assert list(choices["prior"]) == ["auto", *vaekit.PRIORS.names()] and list(choices["objective"]) == vaekit.OBJECTIVES.names()
    assert list(choices["net"]) == ["auto", *vaekit.NETS.names()]
    # one spelling per option: every field the command line sets is an option of `vaekit train`
    fields = {f.metadata.get("flag") or f.name for klass in (vaekit.DataConfig, ModelConfig, vaekit.TrainConfig)
              for f in dataclasses.fields(klass) if f.metadata.get("cli", True)}
    assert fields <= set(choices)
    with pytest.raises(vaekit.VaekitError, match="model.likelihood is 'poisson', expected one of: auto, bernoulli"):
        vaekit.Config.from_dict({"model": {"likelihood": "poisson"}})


def test_a_misfit_is_found_without_building_a_model(monkeypatch):
    """Compatibility is each part's registered check; nothing is built to find out."""
    import vaekit.model.vae as vae_mod

    built = []
    monkeypatch.setattr(vae_mod, "VAE", lambda *a, **k: built.append(1))
    config = vaekit.Config()
    config.model.likelihood = "bernoulli"
    info = {"modality": "image", "shape": [1, 8, 8], "value": "levels", "sizes": {"train": 100}}
    with pytest.raises(vaekit.VaekitError, match="the Bernoulli likelihood needs binary pixels"):
        vaekit.resolve(config, info)
    config = vaekit.Config()
    config.model.net = "rnn"
    with pytest.raises(vaekit.VaekitError, match="the rnn network reads text"):
        vaekit.resolve(config, info)
    assert not built


def test_every_auto_is_resolved_before_config_yaml_is_written(digits_run, cli):
    config = yaml.safe_load((digits_run / "config.yaml").read_text())
    assert config["model"]["net"] == "mlp" and config["model"]["likelihood"] == "logistic"
    assert config["data"]["modality"] == "image" and config["train"]["free_bits"] == 0.0
    assert config["train"]["batch_size"] == 64
    rc, out, _ = cli("info", digits_run)
    assert rc == 0 and "logistic likelihood" in out and "auto" not in out


def test_a_built_in_data_set_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "train.txt").write_text("a line\n" * 20)
    monkeypatch.chdir(tmp_path)
    assert vaekit.kinds.detect_modality(vaekit.DataConfig(source="digits")) == "image"
    assert vaekit.kinds.detect_modality(vaekit.DataConfig(source="./digits")) == "text"


def test_a_runs_config_reused_for_other_data_is_resolved_anew(digits_run, tmp_path, cli):
    """config.yaml lists what was resolved; --config and --init set those back to auto, so a text
    file gets the text network, not the digits run's mlp, logistic likelihood and batch size."""
    config = yaml.safe_load((digits_run / "config.yaml").read_text())
    assert sorted(config["resolved"]) == ["data.bad_files", "data.modality", "model.likelihood", "model.net",
                                          "model.prior", "train.free_bits"]
    lines = tmp_path / "names.txt"
    lines.write_text("".join(f"{n}\n" for n in ["anna", "bob", "carla", "dieter", "eva", "fritz"] * 10))
    rc, _, err = cli("train", "--config", digits_run / "config.yaml", "--data", lines, "--epochs", "1",
                     "--latent", "2", "--quiet", "--out", tmp_path / "text")
    assert rc == 0, err
    config = yaml.safe_load((tmp_path / "text" / "config.yaml").read_text())
    assert (config["data"]["modality"], config["model"]["net"], config["model"]["likelihood"]) == \
        ("text", "rnn", "categorical")
    assert config["train"]["free_bits"] == 0.25 and config["train"]["batch_size"] == 64  # given, not resolved


def test_training_from_python_leaves_the_callers_config_as_it_was(tmp_path):
    cfg = vaekit.Config()
    cfg.model.hidden, cfg.model.latent, cfg.train.epochs = [16], 2, 1
    run = vaekit.train(cfg, out=tmp_path / "r", quiet=True, pictures=False)
    assert cfg.model.net == "auto" and cfg.model.likelihood == "auto" and cfg.train.batch_size is None
    assert run.config.model.net == "mlp" and run.config.model.likelihood == "logistic"


def test_python_values_become_plain_yaml_values(tmp_path):
    import pathlib

    import numpy as np

    cfg = vaekit.Config()
    cfg.model.hidden, cfg.model.latent, cfg.train.epochs = (16,), np.int64(2), 1.0
    run = vaekit.train(cfg, out=pathlib.Path(tmp_path) / "r", quiet=True, pictures=False)
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["model"]["hidden"] == [16] and saved["model"]["latent"] == 2 and saved["train"]["epochs"] == 1
    assert run.model.latent == 2
