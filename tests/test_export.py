"""Export: ONNX and TorchScript files that compute what the model computes, and a manifest that
is all a program without vaekit needs."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
import torch

from test_audio import make_wavs
from test_text import make_names
from vaekit.config import ModelConfig
from vaekit.errors import VaekitError
from vaekit.export import build_parts, export, run_exported
from vaekit.model import build_model
from vaekit.model.nets.recurrent import GreedyDecoder, RecurrentDecoder, RecurrentEncoder
from vaekit.model.priors import MixtureOfGaussians, mixture_draw
from vaekit.run import Run
from vaekit.tokens import BOS, EOS, PAD

IMAGE = {"shape": [1, 8, 8], "value": "binary", "modality": "image", "classes": 3, "label_names": ["a", "b", "c"]}
TEXT = {"shape": [9], "value": "tokens", "modality": "text", "vocab_size": 15, "classes": 2}
AUDIO = {"shape": [1, 16, 12], "value": "real", "modality": "audio"}
LINES = torch.tensor([[5, 6, 7, 2, 0, 0, 0, 0, 0], [5, 2, 0, 0, 0, 0, 0, 0, 0], [4, 5, 6, 7, 8, 9, 10, 11, 2],
                      [9, 9, 2, 0, 0, 0, 0, 0, 0]])

# (data, model options): every network, prior, inference order, flow and conditioning
MODELS = {
    "mlp": (IMAGE, {}),
    "conv-class-prior": (IMAGE, {"net": "conv", "channels": [4, 8], "conditional": True, "prior": "class"}),
    "mog-flow-conditional": (IMAGE, {"prior": "mog", "flow": 2, "conditional": True}),
    "vamp": (IMAGE, {"prior": "vamp", "prior_components": 5}),
    "top-down-vamp-paths": (IMAGE, {"prior": "hierarchical", "inference": "top-down", "top_prior": "vamp",
                                    "prior_components": 5, "latent_paths": True, "top_latent": [3, 2]}),
    "bottom-up-three-layers": (IMAGE, {"prior": "hierarchical", "top_latent": [3, 2]}),
    "bottom-up-vamp-flow": (IMAGE, {"prior": "hierarchical", "top_prior": "vamp", "prior_components": 4, "flow": 1}),
    "text-gru": (TEXT, {"net": "rnn"}),
    "text-lstm-inputless-conditional": (TEXT, {"net": "rnn", "cell": "lstm", "inputless": True, "conditional": True}),
    "text-top-down-flow": (TEXT, {"net": "rnn", "prior": "hierarchical", "inference": "top-down", "flow": 1}),
    "audio-conv-gaussian": (AUDIO, {"net": "conv", "channels": [4, 8], "likelihood": "gaussian"}),
}
QUICK_ONNX = ("conv-class-prior", "top-down-vamp-paths")   # the consumer tests below cover mlp and text


def model_for(name):
    info, options = MODELS[name]
    text = info["value"] == "tokens"
    m = ModelConfig(latent=4, hidden=[16], net="mlp", likelihood="categorical" if text else "bernoulli",
                    embedding=8, rnn_hidden=16)
    for k, v in options.items():
        setattr(m, k, v)
    torch.manual_seed(0)
    model = build_model(m, info).eval()
    with torch.no_grad():   # larger weights than at initialisation: outputs that differ, tokens that vary
        for p in model.parameters():
            p.mul_(2.0)
    if text:
        x = LINES
    elif info["value"] == "binary":
        x = torch.bernoulli(torch.rand(4, *info["shape"]))
    else:
        x = torch.randn(4, *info["shape"])
    return model, info, x


@pytest.mark.parametrize("name", list(MODELS))
def test_torchscript_files_compute_what_the_model_computes(name, tmp_path):
    model, info, x = model_for(name)
    manifest = export(model, info, {}, x, "torchscript", tmp_path, check=True)
    assert set(manifest["parts"]) == {"encoder", "decoder", "sample"}
    for part in manifest["parts"].values():
        assert part["check"]["batches"] == [4, 1, 7] and part["check"]["max_relative_diff"] <= 1e-5
        assert (tmp_path / part["file"]).is_file()


def _onnx_case(name, tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX export needs the export extra: pip install 'vaekit[export]'")
    pytest.importorskip("onnxscript", reason="ONNX export needs the export extra: pip install 'vaekit[export]'")
    model, info, x = model_for(name)
    manifest = export(model, info, {}, x, "onnx", tmp_path, check=True)
    text = info["value"] == "tokens"
    assert set(manifest["parts"]) == ({"encoder", "decoder_start", "decoder_step", "sample"} if text
                                      else {"encoder", "decoder", "sample"})
    for part in manifest["parts"].values():
        assert part["check"]["max_relative_diff"] <= 1e-5


@pytest.mark.parametrize("name", QUICK_ONNX)
def test_onnx_files_compute_what_the_model_computes(name, tmp_path):
    _onnx_case(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MODELS if n not in QUICK_ONNX])
def test_onnx_files_of_every_other_model(name, tmp_path):
    _onnx_case(name, tmp_path)


def test_encoder_outputs_every_layer_and_the_decoded_point():
    model, info, x = model_for("top-down-vamp-paths")
    enc = {p.name: p for p in build_parts(model, x, "torchscript")}["encoder"]
    assert enc.outputs == ["z", "mu_z1", "logvar_z1", "mu_z2", "logvar_z2", "mu_z3", "logvar_z3"]
    z, mu1, _, mu2, _, mu3, _ = enc.module(**enc.inputs)
    torch.testing.assert_close(z, model.encode(x).loc)
    torch.testing.assert_close(z, torch.cat([mu1, mu2, mu3], -1))


def test_a_mismatch_beyond_the_tolerance_is_an_error(tmp_path, monkeypatch):
    import vaekit.export as ex

    model, info, x = model_for("mlp")
    monkeypatch.setattr(ex, "TOLERANCE", -1.0)   # any difference, even 0, is too large
    with pytest.raises(VaekitError, match="differs from PyTorch by up to .* should not be trusted"):
        export(model, info, {}, x, "torchscript", tmp_path, check=True)
    assert (tmp_path / "manifest.json").is_file()   # written, to be looked at


# ---------------------------------------------------------------------- the pieces export relies on

def test_the_unpacked_recurrent_encoder_gives_the_packed_features():
    for cell in ("gru", "lstm"):
        torch.manual_seed(0)
        enc = RecurrentEncoder(15, 4, 8, 16, cell).eval()
        packed = enc.hidden(LINES)
        enc.unpack()
        torch.testing.assert_close(enc.hidden(LINES), packed, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("inputless", [False, True])
def test_the_scripted_greedy_loop_gives_generates_tokens(cell, inputless):
    torch.manual_seed(0)
    dec = RecurrentDecoder(12, 4, 7, 8, 16, cell, inputless=inputless).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.mul_(3.0)
    z = torch.randn(64, 4)
    expected = dec.generate(z)
    assert len({tuple(r) for r in expected.tolist()}) > 5   # the lines differ: the comparison means something
    assert torch.equal(torch.jit.script(GreedyDecoder.of(dec))(z), expected)


def test_prior_draws_from_given_randomness_follow_the_prior():
    torch.manual_seed(0)
    prior = MixtureOfGaussians(2, 3)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-10.0, 0.0], [0.0, 0.0], [10.0, 0.0]]))
        prior.logits.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    z = prior.sample(20000)
    share = torch.stack([(z[:, 0] < -5).float().mean(), (z[:, 0].abs() < 5).float().mean(),
                         (z[:, 0] > 5).float().mean()])
    torch.testing.assert_close(share, torch.tensor([0.2, 0.3, 0.5]), atol=0.015, rtol=0)
    assert abs(float(z[z[:, 0] > 5, 1].std()) - 1.0) < 0.05
    hot = prior.sample(20000, temperature=0.5)           # temperature scales the standard deviations
    assert abs(float(hot[hot[:, 0] > 5, 1].std()) - 0.5) < 0.03
    # the same randomness gives the same draw; u picks the component by the cumulative weights
    noise, u = torch.zeros(3, 2), torch.tensor([0.1, 0.45, 0.99])
    torch.testing.assert_close(prior.draw(noise, u), prior.means[[0, 1, 2]].detach())
    torch.testing.assert_close(mixture_draw(prior.means, prior.log_vars, noise, torch.tensor([0.0, 0.5, 0.999])),
                               prior.means[[0, 1, 2]].detach())


# ---------------------------------------------------------------------- as a user would

def test_export_command_with_check_and_one_part(digits_run, cli, tmp_path):
    out = tmp_path / "ts"
    rc, stdout, err = cli("export", digits_run, "--format", "torchscript", "--check", "--out", out)
    assert rc == 0, err
    assert "decoder.pt  z -> loc, log_scale, mean" in stdout and "max |difference| from PyTorch" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parts"]["encoder"]["check"]["inputs"] == "the first 8 examples of the test split"
    assert manifest["likelihood"]["name"] == "logistic" and manifest["data"]["levels"] == 17
    rc, stdout, _ = cli("export", digits_run, "--format", "torchscript", "--part", "decoder", "--out", out)
    assert rc == 0 and "encoder.pt" not in stdout
    # the parts exported before stay in the manifest
    assert set(json.loads((out / "manifest.json").read_text())["parts"]) == {"encoder", "decoder", "sample"}


def test_a_manifest_never_mixes_two_models_and_a_bad_folder_is_one_sentence(digits_run, cli, tmp_path):
    out = tmp_path / "x"
    Run.load(digits_run).export("torchscript", out, ["encoder"])
    model, info, x = model_for("mlp")                  # another model: its decoder alone in the folder
    manifest = export(model, info, {}, x, "torchscript", out, ["decoder"])
    assert set(manifest["parts"]) == {"decoder"}
    (tmp_path / "file").write_text("")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        rc, _, err = cli("export", digits_run, "--format", "torchscript", "--out", bad)
        assert rc == 2 and "cannot write the exported files there" in err and "Traceback" not in err


def test_a_consumer_without_vaekit_samples_images_from_the_manifest(digits_run, tmp_path):
    """Only numpy, onnxruntime and manifest.json: the decoded samples are the model's."""
    pytest.importorskip("onnxruntime", reason="pip install 'vaekit[export]'")
    pytest.importorskip("onnxscript", reason="pip install 'vaekit[export]'")
    import onnxruntime

    run = Run.load(digits_run)
    run.export("onnx", tmp_path, ["sample"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    part = manifest["parts"]["sample"]
    session = onnxruntime.InferenceSession(str(tmp_path / part["file"]))
    noise = np.random.default_rng(0).standard_normal((5, manifest["prior"]["noise"])).astype(np.float32)
    z, mean = session.run(["z", "mean"], {"noise": noise, "temperature": np.array(1.0, dtype=np.float32)})
    assert mean.shape == (5, *manifest["data"]["shape"]) and 0 <= mean.min() and mean.max() <= 1
    expected = run.model.decode_to_data(torch.from_numpy(z))
    np.testing.assert_allclose(mean, expected.numpy(), atol=1e-5)


def test_a_consumer_decodes_text_step_by_step_from_the_manifest(tmp_path, cli):
    """decoder_start and decoder_step in onnxruntime, the vocabulary and the greedy rule from the
    manifest: the same lines as vaekit's greedy reconstructions."""
    pytest.importorskip("onnxruntime", reason="pip install 'vaekit[export]'")
    pytest.importorskip("onnxscript", reason="pip install 'vaekit[export]'")
    import onnxruntime

    src = make_names(tmp_path / "names.txt", n=200)
    rc, _, err = cli("train", "--data", src, "--epochs", "2", "--latent", "3", "--embedding", "8", "--rnn-hidden",
                     "16", "--cell", "lstm", "--quiet", "--out", tmp_path / "run")
    assert rc == 0, err
    run = Run.load(tmp_path / "run")
    run.export("onnx", tmp_path / "x", ["encoder", "decoder"])
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    vocab, unit = manifest["data"]["vocabulary"], manifest["data"]["unit"]
    t = manifest["decoding"]["tokens"]
    lines = ["anna", "bob", "zed"]
    ids = np.zeros((3, manifest["data"]["max_length"]), dtype=np.int64)
    for i, line in enumerate(lines):   # as the manifest's to_ids says
        toks = [vocab.index(c) if c in vocab else t["unk"] for c in line] + [t["eos"]]
        ids[i, :len(toks)] = toks
    open_ = lambda name: onnxruntime.InferenceSession(str(tmp_path / "x" / manifest["parts"][name]["file"]))
    z = open_("encoder").run(["z"], {"x": ids})[0]
    state = open_("decoder_start").run(None, {"z": z})[0]
    step = open_("decoder_step")
    token, out, done = np.full(3, t["bos"]), [[] for _ in lines], np.zeros(3, bool)
    length = manifest["data"]["max_length"]
    for i in range(length):
        log_probs, state = step.run(None, {"z": z, "token": token, "state": state})
        log_probs[:, [t["pad"], t["bos"]]] = -np.inf
        if i == 0:
            log_probs[:, t["eos"]] = -np.inf
        token = np.full(3, t["eos"]) if i == length - 1 else log_probs.argmax(-1)
        for j in range(3):
            if not done[j] and token[j] != t["eos"]:
                out[j].append(vocab[token[j]])
        done |= token == t["eos"]
    decoded = ["".join(o) if unit == "char" else " ".join(o) for o in out]
    x = run.media.encode(lines)
    assert decoded == run.vocab.decode_batch(run.model.reconstruct(x))


def test_audio_manifest_has_what_turns_outputs_into_sound(tmp_path, cli):
    src = make_wavs(tmp_path / "wavs", n_per_label=3)
    rc, _, err = cli("train", "--data", src, "--clip-seconds", "0.5", "--n-mels", "16", "--latent", "2",
                     "--epochs", "1", "--quiet", "--out", tmp_path / "run")
    assert rc == 0, err
    manifest = Run.load(tmp_path / "run").export("torchscript", tmp_path / "x", ["decoder"], check=True)
    d = manifest["data"]
    assert d["n_mels"] == 16 and len(d["mel_mean"]) == 16 and len(d["mel_std"]) == 16
    assert np.array(d["mel_filterbank"]["values"]).shape == (16, d["n_fft"] // 2 + 1)
    assert {"sample_rate", "hop", "clip_samples", "log_offset", "to_sound"} <= set(d)


def test_made_up_inputs_when_the_data_are_gone(digits_run, tmp_path):
    run = Run.load(digits_run)
    run.config.data.source = str(tmp_path / "gone")
    run.__dict__.pop("data", None)
    manifest = run.export("torchscript", tmp_path / "x", ["encoder"], check=True)
    assert "made-up inputs" in manifest["parts"]["encoder"]["check"]["inputs"]


def test_onnx_without_the_extra_is_one_sentence(digits_run, cli, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_onnxscript(name, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError("No module named 'onnxscript'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxscript)
    rc, _, err = cli("export", digits_run, "--out", tmp_path / "x")
    assert rc == 2 and "pip install 'vaekit[export]'" in err and "Traceback" not in err
    assert err.count("\n") == 1
