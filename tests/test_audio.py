"""Audio VAEs: WAV folders, log-mel features, Griffin-Lim, training and the commands."""

import numpy as np
import pytest
import soundfile as sf
import torch

import vaekit

from vaekit.config import DataConfig
from vaekit.kinds import detect_modality, load_data
from vaekit.kinds.audio.loader import LogMel, label_regex, mel_filterbank, read_wave, spectral_metrics
from vaekit.errors import VaekitError

RATE = 8000


def tone(freq, seconds=0.5, rate=RATE, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_wavs(folder, n_per_label=6, seed=0):
    """Tones whose pitch is the label (0: 300 Hz, 1: 900 Hz), with a little noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for label, freq in ((0, 300.0), (1, 900.0)):
        for take in range(n_per_label):
            w = tone(freq * (1 + 0.02 * rng.standard_normal()), 0.3 + 0.2 * rng.random())
            w += 0.01 * rng.standard_normal(w.shape).astype(np.float32)
            sf.write(folder / f"{label}_spk_{take}.wav", w, RATE, subtype="PCM_16")
    return folder


def peak_hz(wave, rate):
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / rate)[spec.argmax()]


def test_griffin_lim_round_trip_keeps_the_pitch_of_a_tone():
    fx = LogMel(RATE, 256, 64, 64)
    wave = torch.from_numpy(tone(440.0, 1.0))[None]
    lm = fx.log_mel(wave)
    fx.mean, fx.std = lm.mean((0, 2)).view(-1, 1), lm.std((0, 2)).clamp(min=1e-3).view(-1, 1)
    back = fx.to_wave(fx.features(wave), wave.shape[1], iterations=40)[0].numpy()
    assert abs(peak_hz(back, RATE) - 440.0) < 20.0
    assert np.abs(back).max() > 0.05  # not silence
    m = spectral_metrics(fx.mel_power(wave), fx.mel_power(torch.from_numpy(back)[None]))
    assert m["spectral_convergence"] < 0.5


def test_mel_filterbank_covers_the_spectrum():
    fb = mel_filterbank(RATE, 256, 40)
    assert fb.shape == (40, 129) and (fb >= 0).all()
    centres = fb.argmax(1)
    assert (centres[1:] >= centres[:-1]).all()           # increasing centre frequencies
    assert (fb.sum(0)[2:-2] > 0).all()                   # every inner frequency bin is covered


def test_reading_resamples_mixes_down_trims_and_pads(tmp_path):
    stereo = np.stack([tone(500.0, 0.5, 16000), tone(500.0, 0.5, 16000)], 1)
    sf.write(tmp_path / "s.wav", stereo, 16000, subtype="PCM_24")
    w = read_wave(tmp_path / "s.wav", RATE, 8000)
    assert w.shape == (8000,) and np.abs(w[4100:]).max() == 0      # 0.5 s of sound, then padding
    assert abs(peak_hz(w[:4000], RATE) - 500.0) < 10.0
    short = read_wave(tmp_path / "s.wav", RATE, 2000)
    assert short.shape == (2000,)


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable audio file"),
    (b"this is not audio at all" * 10, "not a readable audio file"),
])
def test_unreadable_files_are_named(tmp_path, content, message):
    (tmp_path / "bad.wav").write_bytes(content)
    with pytest.raises(VaekitError, match=f"bad.wav: {message}"):
        read_wave(tmp_path / "bad.wav", RATE, 8000)


def test_silent_clip_is_named(tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(4000, np.float32), RATE)
    with pytest.raises(VaekitError, match="quiet.wav: the clip is silent"):
        read_wave(tmp_path / "quiet.wav", RATE, 8000)


def test_folder_with_labels_split_and_bad_files_skipped(tmp_path):
    src = make_wavs(tmp_path / "wavs")
    (src / "broken.wav").write_bytes(b"RIFF garbage")
    sf.write(src / "1_spk_99.wav", np.zeros(3000, np.float32), RATE)       # silent
    cfg = DataConfig(source=str(src), label_from="{label}_*", test="*_[0-1].wav", clip_seconds=0.5)
    assert detect_modality(cfg) == "audio"
    b = load_data(cfg)
    assert b.modality == "audio" and b.value == "real" and b.shape == (1, 64, 32)
    assert b.test.shape[0] == 4 and b.train.shape[0] + b.valid.shape[0] == 8
    assert b.label_names == ["0", "1"] and sorted(b.test_labels.tolist()) == [0, 0, 1, 1]
    assert len(b.meta["skipped"]) == 2 and "skipped 2 unusable file(s)" in b.describe()
    assert any("broken.wav" in s for s in b.meta["skipped"])
    assert "broken.wav" in b.describe() and "1_spk_99.wav: the clip is silent" in b.describe()  # named
    # normalised with the training split's statistics
    assert abs(float(b.train.mean())) < 0.05 and abs(float(b.train.std()) - 1) < 0.1
    # the saved statistics reproduce the same encoding
    again = load_data(cfg, saved=b.info())
    assert torch.allclose(again.test, b.test)


def test_label_pattern():
    rx = label_regex("{label}_*")
    assert rx.match("7_jackson_3").group("label") == "7"
    assert label_regex("*-{label}").match("take3-dog").group("label") == "dog"


def test_audio_bad_inputs(tmp_path, cli):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.wav").write_bytes(b"not a wav")
    rc, _, err = cli("train", "--data", tmp_path / "only", "--epochs", "1")
    assert rc == 2 and "a.wav" in err and "could be used" in err and "Traceback" not in err
    src = make_wavs(tmp_path / "w", 3)
    rc, _, err = cli("train", "--data", src, "--label-from", "{label}-*", "--epochs", "1")
    assert rc == 2 and "does not match --label-from" in err
    rc, _, err = cli("train", "--data", src, "--test-data", "*_9.wav", "--epochs", "1")
    assert rc == 2 and "no file matches the test pattern" in err
    rc, _, err = cli("train", "--data", src, "--likelihood", "bernoulli", "--epochs", "1")
    assert rc == 2 and "binar" in err


def test_audio_cli_end_to_end(tmp_path, cli):
    src = make_wavs(tmp_path / "wavs", 8)
    rc, out, err = cli("train", "--data", src, "--label-from", "{label}_*", "--conditional", "--clip-seconds", "0.5",
                       "--n-mels", "32", "--latent", "4", "--channels", "8,16", "--epochs", "3", "--quiet",
                       "--out", tmp_path / "r")
    assert rc == 0, err
    r = tmp_path / "r"
    wavs = sorted((r / "samples" / "prior").glob("*.wav"))
    assert len(wavs) == 2 and (r / "samples" / "prior" / "samples.png").stat().st_size > 0
    data, rate = sf.read(wavs[0], dtype="int16")
    assert rate == RATE and data.shape == (4000,) and sf.info(wavs[0]).subtype == "PCM_16"
    assert (r / "samples" / "reconstructions" / "reconstructions.png").exists()
    assert (r / "samples" / "interpolation" / "interpolation.wav").exists()
    html = (r / "report.html").read_text()
    assert html.count("data:audio/wav;base64,") >= 8
    rc, out, _ = cli("sample", r, "--label", "1", "-n", "3", "--out", tmp_path / "s")
    assert rc == 0 and len(list((tmp_path / "s").glob("sample-1-*.wav"))) == 3
    rc, out, _ = cli("reconstruct", r, "-n", "2", "--out", tmp_path / "rec")
    assert rc == 0 and len(list((tmp_path / "rec").glob("*.wav"))) == 4
    rc, out, _ = cli("evaluate", r, "--k", "10", "--quiet")
    assert rc == 0 and "spectral convergence" in out and "bits/dim" in out
    rc, out, err = cli("traverse", r, "--dims", "1,3", "--steps", "3", "--out", tmp_path / "trav")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "trav").iterdir()) == ["traversal.png", "z1.wav", "z3.wav"]
    assert sf.read(tmp_path / "trav" / "z1.wav")[0].shape[0] > 3 * 4000
    rc, out, _ = cli("info", r)
    assert rc == 0 and "8000 Hz" in out
    names = vaekit.Run.load(r).info["label_names"]
    assert f"classes  0 {names[0]}, 1 {names[1]}" in out
    rc, _, err = cli("sample", r, "--label", "seven")  # classes by name or index, and which there are
    assert rc == 2 and f"its classes are: 0 {names[0]}, 1 {names[1]}" in err
    rc, out, _ = cli("sample", r, "--label", names[1], "-n", "2", "--out", tmp_path / "named")
    assert rc == 0 and len(list((tmp_path / "named").glob(f"sample-{names[1]}-*.wav"))) == 2


def test_audio_interpolate_between_two_files(tmp_path, cli):
    src = make_wavs(tmp_path / "wavs", 5)
    rc, _, err = cli("train", "--data", src, "--clip-seconds", "0.5", "--n-mels", "32", "--latent", "3",
                     "--channels", "8", "--epochs", "2", "--quiet", "--out", tmp_path / "r")
    assert rc == 0, err
    rc, out, err = cli("interpolate", tmp_path / "r", "--between", src / "0_spk_0.wav", src / "1_spk_0.wav",
                       "--steps", "4", "--out", tmp_path / "i")
    assert rc == 0, err
    assert len(list((tmp_path / "i").glob("step-*.wav"))) == 4
    rc, _, err = cli("interpolate", tmp_path / "r", "--between", src / "0_spk_0.wav", tmp_path / "nope.wav")
    assert rc == 2 and "nope.wav" in err


def test_written_sound_never_clips():
    """A decoded clip louder than full scale is scaled down as a whole, not clipped."""
    import io

    from vaekit.kinds.audio.media import wav_bytes

    t = np.linspace(0, 1, 8000, endpoint=False)
    loud = 3.0 * np.sin(2 * np.pi * 440 * t)
    data, _ = sf.read(io.BytesIO(wav_bytes(loud, 8000)))
    assert np.abs(data).max() <= 0.99 + 1e-4
    assert np.corrcoef(data, loud)[0, 1] > 0.999  # the same wave, quieter: no flattened peaks
    quiet = 0.5 * np.sin(2 * np.pi * 440 * t)
    data, _ = sf.read(io.BytesIO(wav_bytes(quiet, 8000)))
    assert abs(np.abs(data).max() - 0.5) < 1e-3  # within range: left as it is


def test_a_truncated_wav_is_named_not_read_short(tmp_path):
    sf.write(tmp_path / "whole.wav", (0.5 * np.sin(np.arange(8000) / 5)).astype(np.float32), RATE, subtype="PCM_16")
    data = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:len(data) // 2])
    assert read_wave(tmp_path / "whole.wav", RATE, 8000).shape == (8000,)
    with pytest.raises(VaekitError, match=r"cut.wav: the file is truncated \(its header declares 8,000 samples"):
        read_wave(tmp_path / "cut.wav", RATE, 8000)


def test_the_skipped_files_are_listed_in_the_run(tmp_path, cli):
    src = make_wavs(tmp_path / "wavs")
    (src / "broken.wav").write_bytes(b"RIFF garbage")
    rc, out, err = cli("train", "--data", src, "--clip-seconds", "0.5", "--n-mels", "32", "--latent", "2",
                       "--channels", "8", "--epochs", "1", "--out", tmp_path / "r")
    assert rc == 0, err
    assert "broken.wav" in out and "skipped.txt" in out
    assert "broken.wav: not a readable audio file" in (tmp_path / "r" / "skipped.txt").read_text()
