"""Sequences and the deep Markov model: masking, the bounds, the verbs, bad input."""

import json
import math

import numpy as np
import pytest
import torch

import vaekit
from vaekit.model import build_model
from vaekit.model.nets.markov import lengths_of


def note_lists(path, n=40, seed=0):
    """A small file of note lists: a few rising and falling chords, of 6 to 20 steps."""
    rng = np.random.default_rng(seed)

    def piece():
        root, steps = int(rng.integers(48, 60)), []
        for t in range(int(rng.integers(6, 21))):
            r = root + (t % 4) * (1 if rng.random() < 0.5 else 2)
            steps.append([r, r + 4, r + 7] if t % 5 else [])
        return steps

    path.write_text(json.dumps({s: [piece() for _ in range(n)] for s in ("train", "valid", "test")}))
    return path


def small_model(frame=88, value="binary", latent=3):
    cfg = vaekit.Config()
    m = cfg.model
    m.net, m.prior, m.likelihood, m.latent, m.hidden, m.rnn_hidden = ("dmm", "markov", "bernoulli" if value == "binary"
                                                                      else "gaussian", latent, [16], 12)
    info = {"modality": "sequence", "shape": [20, frame], "value": value, "frame": frame, "steps": 10}
    torch.manual_seed(0)
    return build_model(m, info).eval()


def parts(model, x, z):
    """The pieces of a bound at the latent path z: log p(x|z), log p(z), log q(z|x), KL."""
    q = model.encode(x)
    lp_x = model.likelihood.log_prob(model.decoder(z), x)
    return lp_x, model.prior.log_prob(z), q.log_prob(z).sum(-1), q.step_kl(z).sum((-2, -1))


def test_padding_changes_nothing_a_short_sequence_scores_the_same_beside_a_longer_one():
    model = small_model(frame=5)
    torch.manual_seed(1)
    a, b = (torch.bernoulli(torch.full((n, 5), 0.3)) for n in (4, 9))
    batch = torch.full((2, 12, 5), float("nan"))
    batch[0, :4], batch[1, :9] = a, b
    assert lengths_of(batch).tolist() == [4, 9]
    with torch.no_grad():
        z_both = model.encode(batch).loc                 # (2, 9 * latent): cut to the longest
        z_alone = model.encode(a.unsqueeze(0)).loc       # (1, 4 * latent)
        assert z_both.shape[1] == 9 * 3 and z_alone.shape[1] == 4 * 3
        assert torch.allclose(z_both[0, :12], z_alone[0], atol=1e-5)
        together = parts(model, batch, z_both)
        alone = parts(model, a.unsqueeze(0), z_alone)
    # the padded steps' log q and log p cancel (q is the transition there) and their KL is 0
    lp_x, lp_z, lq_z, kl = together
    a_lp_x, a_lp_z, a_lq_z, a_kl = alone
    assert lp_x[0].item() == pytest.approx(a_lp_x[0].item(), abs=1e-4)
    assert (lp_z[0] - lq_z[0]).item() == pytest.approx((a_lp_z[0] - a_lq_z[0]).item(), abs=1e-4)
    assert kl[0].item() == pytest.approx(a_kl[0].item(), abs=1e-4)


def test_a_flow_at_each_step_log_q_is_the_base_density_less_the_log_scales_and_padding_changes_nothing():
    cfg = vaekit.Config()
    m = cfg.model
    m.net, m.prior, m.likelihood, m.latent, m.hidden, m.rnn_hidden, m.flow = "dmm", "markov", "bernoulli", 3, [16], 12, 2
    info = {"modality": "sequence", "shape": [20, 5], "value": "binary", "frame": 5, "steps": 10}
    torch.manual_seed(0)
    model = build_model(m, info).eval()
    assert model.flow is None and model.encoder.flow is not None      # the flow is q(z_t | .)'s own
    with torch.no_grad():                                               # a flow that is not the identity
        for step in model.encoder.flow.steps:
            step.out.weight.normal_(0, 0.3)
            step.out.bias.normal_(0, 0.3)
    torch.manual_seed(1)
    a, b = (torch.bernoulli(torch.full((n, 5), 0.3)) for n in (4, 9))
    batch = torch.full((2, 12, 5), float("nan"))
    batch[0, :4], batch[1, :9] = a, b
    with torch.no_grad():
        q = model.encode(batch)
        z = q.rsample((3,))                                             # (3, 2, 9 * latent)
        cached, inverted = q.log_prob(z), q.log_prob(z.clone())        # the draw's own z0, or the inverse
        assert torch.allclose(cached, inverted, atol=1e-4)
        # by hand, step by step: z_t = f(z0_t; h_t), log q = log N(z0_t; combiner(z_t-1, h_t)) - log-scales
        zs = z.unflatten(-1, (9, 3))
        prev = torch.cat([q.z_q0.expand(3, 2, 1, 3), zs[..., :-1, :]], -2)
        loc, scale = q.combiner(prev, q.h)
        z0, s = model.encoder.flow.inverse(zs, q.ctx)
        by_hand = torch.distributions.Normal(loc, scale).log_prob(z0) - s
        p_loc, p_scale = model.prior.step_params(z, 9)
        past_end = torch.distributions.Normal(p_loc, p_scale).log_prob(zs)
        by_hand = torch.where(q.observed.unsqueeze(-1), by_hand, past_end)
        assert torch.allclose(cached.unflatten(-1, (9, 3)), by_hand, atol=1e-4)
        assert model.prior.analytic_kl(q) is None                        # no closed form: estimated from the path
        # padding: the short sequence's log q and log p beside the long one equal its own
        z_alone = z[:, 0, :12].contiguous()
        q_alone = model.encode(a.unsqueeze(0))
        alone = q_alone.log_prob(z_alone.unsqueeze(1)).sum(-1)[:, 0] - model.prior.log_prob(z_alone)
        together = cached[:, 0].sum(-1) - model.prior.log_prob(z[:, 0])
        assert torch.allclose(alone, together, atol=1e-4)


def test_missing_values_are_not_scored_and_the_bounds_stay_finite():
    model = small_model(frame=4, value="real")
    x = torch.randn(3, 7, 4)
    x[0, 2, 1] = float("nan")
    x[1, 5:] = float("nan")
    t = model.terms(x, 5)
    assert all(torch.isfinite(t[k]).all() for k in ("log_px", "log_pz", "log_qz"))
    assert model.likelihood.dims(x).tolist() == [27, 20, 28]


def test_the_importance_sampled_nll_is_below_the_negative_elbo_on_note_lists(tmp_path, cli):
    src = note_lists(tmp_path / "notes.json")
    run = tmp_path / "r"
    rc, out, err = cli("train", "--data", src, "--epochs", "3", "--latent", "4", "--hidden", "32", "--rnn-hidden", "32",
                       "--quiet", "--out", run)
    assert rc == 0, err
    r = vaekit.Run.load(run)
    assert r.info["modality"] == "sequence" and r.config.model.net == "dmm" and r.config.model.prior == "markov"
    rc, out, err = cli("evaluate", run, "--k", "20", "--quiet")
    assert rc == 0, err
    ev = vaekit.Run.load(run).evaluation
    assert ev["nll_nats"] <= -ev["elbo_nats"] + 1e-3
    assert ev["steps"] == sum(r.info["lengths"]["test"])
    assert "nats a step" in out
    for name in ("prior_samples.png", "prior_samples-0.mid", "reconstructions.png", "interpolations.png"):
        assert (run / "samples" / name).is_file(), name


def test_sample_writes_midi_that_music21_reads_back(tmp_path, cli):
    music21 = pytest.importorskip("music21")
    src = note_lists(tmp_path / "notes.json")
    run = tmp_path / "r"
    assert cli("train", "--data", src, "--epochs", "2", "--latent", "4", "--hidden", "32", "--rnn-hidden", "32",
               "--quiet", "--out", run)[0] == 0
    rc, out, err = cli("sample", run, "-n", "3", "--steps", "24", "--out", tmp_path / "s.png")
    assert rc == 0, err
    assert (tmp_path / "s.png").is_file() and not (tmp_path / "s-3.mid").exists()
    for i in range(3):
        assert music21.converter.parse(tmp_path / f"s-{i}.mid").flatten().notes
    # the writer: a note held over steps in a row is one note, at the step's offset
    from vaekit.kinds.sequences import roll_to_midi

    roll = np.zeros((24, 88))
    roll[0:4, 39], roll[5:8, 43], roll[23, 50] = 1, 1, 1
    notes = music21.converter.parse(roll_to_midi(roll, tmp_path / "known.mid")).flatten().notes
    assert [(n.offset, n.quarterLength, n.pitch.midi) for n in notes] == [(0, 4, 60), (5, 3, 64), (23, 1, 71)]


def test_the_bach_chorales_of_music21(tmp_path, monkeypatch, cli):
    pytest.importorskip("music21")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = vaekit.Config()
    cfg.data.source, cfg.data.subset = "chorales", 12
    from vaekit.kinds import load_data

    b = load_data(cfg.data)
    assert b.modality == "sequence" and b.shape[1] == 88 and b.value == "binary"
    n = sum(len(v) for v in b.meta["lengths"].values())
    assert n == 12 and b.train.shape[0] >= 6
    notes = torch.nan_to_num(b.train).sum(-1)
    assert notes[~torch.isnan(b.train).all(-1)].median() == 4   # four voices (passing notes within a quarter add more)


def test_real_valued_series_are_standardised_with_training_statistics(tmp_path, cli):
    rng = np.random.default_rng(0)
    t = np.arange(30)
    x = np.stack([np.stack([10 + 3 * np.sin(t / 3 + p), 100 + t * 0.5], 1) for p in rng.uniform(0, 6, 50)])
    x[0, 4, 0] = np.nan
    np.save(tmp_path / "series.npy", x.astype(np.float32))
    run = tmp_path / "r"
    rc, _, err = cli("train", "--data", tmp_path / "series.npy", "--modality", "sequence", "--epochs", "2", "--latent",
                     "2", "--hidden", "16", "--rnn-hidden", "16", "--quiet", "--out", run)
    assert rc == 0, err
    r = vaekit.Run.load(run)
    assert r.info["value"] == "real" and r.config.model.likelihood == "gaussian"
    assert r.info["mean"][1] == pytest.approx(107.25, abs=1.0) and len(r.info["std"]) == 2
    rc, _, err = cli("sample", run, "--n", "2", "--out", tmp_path / "s.png")
    assert rc == 0, err
    rows = (tmp_path / "s-0.csv").read_text().splitlines()
    assert rows[0] == "step,x0,x1" and len(rows) == 1 + r.info["steps"]


@pytest.mark.parametrize("content, message", [
    ({"train": [[[200]]], "valid": [[[60]]]}, "not a MIDI note number of the piano"),
    ({"train": [[60, 61]], "valid": [[[60]]]}, "is not a list of MIDI note numbers"),
    ({"songs": []}, "expected"),
])
def test_bad_note_lists_are_one_sentence(tmp_path, cli, content, message):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(content))
    rc, _, err = cli("train", "--data", f, "--modality", "sequence", "--epochs", "1", "--quiet", "--out", tmp_path / "r")
    assert rc == 2 and message in err and str(f) in err and "Traceback" not in err


def test_a_sequence_model_refuses_parts_that_do_not_fit(tmp_path, cli):
    src = note_lists(tmp_path / "notes.json", n=8)
    rc, _, err = cli("train", "--data", src, "--prior", "vamp", "--epochs", "1", "--quiet", "--out", tmp_path / "a")
    assert rc == 2 and "markov prior" in err
    rc, _, err = cli("train", "--data", src, "--net", "mlp", "--epochs", "1", "--quiet", "--out", tmp_path / "b")
    assert rc == 2 and "sequences need the dmm network" in err


def test_forecast_a_series_from_its_context(tmp_path, cli):
    rng = np.random.default_rng(0)
    t = np.arange(40)
    x = np.stack([np.stack([5 + 2 * np.sin(t / 2 + p)], 1) for p in rng.uniform(0, 6, 60)]).astype(np.float32)
    np.save(tmp_path / "waves.npy", x)
    run = tmp_path / "r"
    assert cli("train", "--data", tmp_path / "waves.npy", "--modality", "sequence", "--epochs", "3", "--latent", "2",
               "--hidden", "16", "--rnn-hidden", "16", "--quiet", "--out", run)[0] == 0
    rc, out, err = cli("forecast", run, "--input", tmp_path / "waves.npy", "--context", "30", "--horizon", "8",
                       "--samples", "50", "--out", tmp_path / "fc")
    assert rc == 0, err
    assert (tmp_path / "fc" / "forecast.png").is_file()
    rows = (tmp_path / "fc" / "forecast-waves.npy_0_.csv").read_text().splitlines()
    assert rows[0] == "step,p5_x0,median_x0,p95_x0,truth_x0" and len(rows) == 9 and rows[1].startswith("30,")
    lo, med, hi, truth = (float(v) for v in rows[1].split(",")[1:])
    assert lo <= med <= hi and truth == pytest.approx(x[0, 30, 0], rel=1e-5)
    assert "CRPS" in out
    # the Python API: the tensors, in the model's units
    r = vaekit.Run.load(run)
    fc, names = r.forecast(torch.from_numpy(x[:3]), context=10, horizon=5, samples=20)
    assert fc.samples.shape == (20, 3, 5, 1) and fc.truth.shape == (3, 5, 1) and names == ["[0]", "[1]", "[2]"]
    # a context longer than a sequence, and a horizon of 0, are one sentence
    rc, _, err = cli("forecast", run, "--context", "99")
    assert rc == 2 and "fewer than --context 99" in err
    rc, _, err = cli("forecast", run, "--horizon", "0")
    assert rc == 2 and "horizon" in err


def test_crps_and_coverage_against_their_closed_forms():
    from vaekit.forecast import coverage, crps

    torch.manual_seed(0)
    samples = torch.randn(20000, 3, dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, float("nan")], dtype=torch.float64)
    # the CRPS of N(0, 1) at y: y (2 Phi(y) - 1) + 2 phi(y) - 1 / sqrt(pi)
    normal, known = torch.distributions.Normal(0.0, 1.0), y[:2]
    exact = known * (2 * normal.cdf(known) - 1) + 2 * normal.log_prob(known).exp() - 1 / math.sqrt(math.pi)
    got = crps(samples, y)
    assert got[:2].tolist() == pytest.approx(exact.tolist(), abs=0.01) and torch.isnan(got[2])
    cov = coverage(samples, torch.tensor([0.0, 3.0, float("nan")], dtype=torch.float64))
    assert cov[:2].tolist() == [1.0, 0.0] and torch.isnan(cov[2])


def test_the_linear_gaussian_model_the_elbo_stays_below_the_kalman_likelihood_and_is_reaches_it():
    torch.manual_seed(0)
    cfg = vaekit.Config()
    m = cfg.model
    m.net, m.prior, m.likelihood, m.latent, m.rnn_hidden = "dmm", "markov", "gaussian", 2, 32
    m.transition, m.emission = "linear", "linear"
    info = {"modality": "sequence", "shape": [12, 3], "value": "real", "frame": 3, "steps": 12}
    model = build_model(m, info)
    # data from the model itself, with a few missing values and one shorter sequence
    with torch.no_grad():
        x = model.sample(64, mean=False, steps=12)
    x[0, 3, 1] = float("nan")
    x[1, 8:] = float("nan")
    from vaekit.model.nets.markov import kalman_log_likelihood

    exact = kalman_log_likelihood(model, x)
    opt = torch.optim.Adam(model.encoder.parameters(), 3e-3)      # fit q to this fixed p
    for _ in range(300):
        t = model.terms(x, 1, log_weights=False)
        loss = -(t["log_px"][0] - t["kl_dim"].sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    from vaekit.eval import evaluate

    model.eval()
    r = evaluate(model, x, k=1000, quiet=True)
    steps = int(lengths_of(x).sum())
    assert r["elbo_nats"] <= exact.mean().item() + 1e-3
    assert abs(-r["nll_nats"] - exact.mean().item()) * 64 / steps < 0.05


def test_a_folder_of_midi_files_and_its_bad_files(tmp_path, cli):
    pytest.importorskip("music21")
    from vaekit.kinds.sequences import roll_to_midi

    folder = tmp_path / "midi"
    rng = np.random.default_rng(0)
    for i in range(6):
        roll = np.zeros((int(rng.integers(8, 16)), 88))
        for t in range(len(roll)):
            roll[t, [39 + t % 5, 43 + t % 3]] = 1
        roll_to_midi(roll, folder / f"piece{i}.mid")
    run = tmp_path / "r"
    rc, _, err = cli("train", "--data", folder, "--epochs", "1", "--latent", "2", "--hidden", "16", "--rnn-hidden", "16",
                     "--quiet", "--out", run)
    assert rc == 0, err
    r = vaekit.Run.load(run)
    assert r.info["modality"] == "sequence" and sum(len(v) for v in r.info["lengths"].values()) == 6
    (folder / "broken.mid").write_text("not MIDI at all")
    rc, _, err = cli("train", "--data", folder, "--epochs", "1", "--quiet", "--out", tmp_path / "s")
    assert rc == 2 and "broken.mid: not a readable MIDI file" in err and "Traceback" not in err
    rc, _, err = cli("train", "--data", folder, "--bad-files", "skip", "--epochs", "1", "--latent", "2", "--hidden", "16",
                     "--rnn-hidden", "16", "--quiet", "--out", tmp_path / "t")
    assert rc == 0, err
    assert "broken.mid" in (tmp_path / "t" / "skipped.txt").read_text()
    (folder / "broken.mid").unlink()
    roll_to_midi(np.zeros((4, 88)), folder / "silent.mid")
    rc, _, err = cli("train", "--data", folder, "--epochs", "1", "--quiet", "--out", tmp_path / "u")
    assert rc == 2 and "silent.mid: a MIDI file with no notes" in err


def test_impute_fills_the_missing_values_from_the_posterior(tmp_path, cli):
    t = np.arange(30)
    rng = np.random.default_rng(1)
    x = np.stack([np.stack([3 * np.sin(t / 2 + p), np.cos(t / 2 + p)], 1) for p in rng.uniform(0, 6, 60)])
    np.save(tmp_path / "waves.npy", x.astype(np.float32))
    run = tmp_path / "r"
    assert cli("train", "--data", tmp_path / "waves.npy", "--modality", "sequence", "--epochs", "3", "--latent", "2",
               "--hidden", "16", "--rnn-hidden", "16", "--quiet", "--out", run)[0] == 0
    holes = x[:3].copy()
    holes[0, 5, 0] = holes[1, 10:14, 1] = np.nan
    holes[2, 25:] = np.nan                       # the end of a sequence: padding, not missing
    np.save(tmp_path / "holes.npy", holes.astype(np.float32))
    rc, out, err = cli("impute", run, "--input", tmp_path / "holes.npy", "--out", tmp_path / "imp")
    assert rc == 0, err
    assert "5 missing values filled in 3 sequences" in err
    filled = np.load(tmp_path / "imp" / "imputed.npy")
    assert filled.shape == holes.shape and not np.isnan(filled[:2]).any() and np.isnan(filled[2, 25:]).all()
    seen = ~np.isnan(holes)
    assert np.allclose(filled[seen], holes[seen], atol=1e-4)   # observed values kept as they were
    assert (tmp_path / "imp" / "imputed.png").is_file()
    # --mask: given values marked to be filled are filled; (N, T) marks whole steps
    mask = np.zeros(x[:3].shape[:2], dtype=bool)
    mask[1, 3:5] = True
    np.save(tmp_path / "mask.npy", mask)
    np.save(tmp_path / "whole.npy", x[:3].astype(np.float32))
    rc, out, err = cli("impute", run, "--input", tmp_path / "whole.npy", "--mask", tmp_path / "mask.npy",
                       "--out", tmp_path / "imp2")
    assert rc == 0, err
    assert "4 missing values filled in 3 sequences" in err
    refilled = np.load(tmp_path / "imp2" / "imputed.npy")
    assert not np.allclose(refilled[1, 3:5], x[1, 3:5]) and np.allclose(refilled[0], x[0], atol=1e-4)
    np.save(tmp_path / "bad.npy", np.zeros((2, 30), dtype=bool))
    rc, out, err = cli("impute", run, "--input", tmp_path / "whole.npy", "--mask", tmp_path / "bad.npy")
    assert rc == 2 and "bad.npy: a mask of shape (2, 30, 1) does not fit" in err


def test_explorer_traversal_and_resume_work_on_a_sequence_run(tmp_path, cli):
    from safetensors.torch import load_file

    from vaekit.serve import create_app

    src = note_lists(tmp_path / "notes.json", n=20)
    common = ["--data", src, "--latent", "3", "--hidden", "16", "--rnn-hidden", "16", "--batch-size", "8", "--quiet"]
    assert cli("train", *common, "--epochs", "2", "--out", tmp_path / "whole")[0] == 0
    assert cli("train", *common, "--epochs", "1", "--out", tmp_path / "half")[0] == 0
    assert cli("train", "--resume", tmp_path / "half", "--epochs", "2", "--quiet")[0] == 0
    a, b = (load_file(tmp_path / r / "model.safetensors") for r in ("whole", "half"))
    assert all(torch.equal(a[k], b[k]) for k in a)   # resumed to the same weights
    run = vaekit.Run.load(tmp_path / "whole")
    client = create_app(run).test_client()
    info = client.get("/api/info").get_json()
    assert info["latent"] == 3 and len(info["ranges"]) == 3   # a slider per dimension of where a sequence starts
    for url, body in (("/api/decode", {"z": [0.5, 0, 0]}), ("/api/traverse", {"z": [0, 0, 0], "dim": 1, "steps": 4}),
                      ("/api/interpolate", {"a": 0, "b": 3, "steps": 3})):
        resp = client.post(url, json=body)
        assert resp.status_code == 200 and resp.get_json()["image"].startswith("data:image/png"), url
    rc, out, err = cli("traverse", tmp_path / "whole", "--out", tmp_path / "t.html")
    assert rc == 0, err


def test_a_csv_table_in_long_form(tmp_path, cli):
    rows = ["station,day,temp,rain"]
    rng = np.random.default_rng(0)
    for s in range(12):
        n = int(rng.integers(8, 14))
        for d in reversed(range(n)):   # out of order: --time sorts them
            rain = "" if (s, d) == (0, 3) else f"{rng.random():.3f}"
            rows.append(f"st{s},{d},{10 + np.sin(d / 2) + s * 0.1:.3f},{rain}")
    f = tmp_path / "weather.csv"
    f.write_text("\n".join(rows) + "\n")
    run = tmp_path / "r"
    rc, _, err = cli("train", "--data", f, "--sequence-id", "station", "--time", "day", "--epochs", "1", "--latent", "2",
                     "--hidden", "16", "--rnn-hidden", "16", "--quiet", "--out", run)
    assert rc == 0, err
    r = vaekit.Run.load(run)
    assert r.info["modality"] == "sequence" and r.info["frame"] == 2 and r.info["value"] == "real"
    x = r.data.train
    assert torch.isnan(x).any() and x.shape[2] == 2
    # the rows of a sequence come in the order of --time
    first = r.data.split("train")[0, :3, 0] * r.info["std"][0] + r.info["mean"][0]
    assert first[1] > first[0]   # sin rises over the first days
    rc, out, err = cli("forecast", run, "--input", f, "--context", "6", "--horizon", "2", "--samples", "10",
                       "--out", tmp_path / "fc")
    assert rc == 0, err
    assert len(list((tmp_path / "fc").glob("forecast-*.csv"))) == 12
    rc, _, err = cli("train", "--data", f, "--sequence-id", "site", "--epochs", "1", "--quiet", "--out", tmp_path / "s")
    assert rc == 2 and "no column 'site' (--sequence-id)" in err and "station, day, temp, rain" in err


def test_speech_frames_a_wav_folder_as_log_mel_sequences_at_their_own_lengths(tmp_path, cli):
    import soundfile as sf

    rate, folder = 8000, tmp_path / "speech"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lengths = []
    for i in range(12):
        seconds = 0.25 + 0.05 * i
        t = np.arange(int(seconds * rate)) / rate
        hz = 300 + 40 * i
        sf.write(folder / f"{i}_tone.wav", (0.3 * np.sin(2 * np.pi * hz * t) + 0.01 * rng.standard_normal(len(t)))
                 .astype(np.float32), rate)
        lengths.append(1 + len(t) // 128)                                  # frames of the STFT (hop 128, centred)
    (folder / "broken.wav").write_bytes(b"RIFF....not a wave")
    run = tmp_path / "r"
    rc, out, err = cli("train", "--data", folder, "--modality", "sequence", "--epochs", "2", "--latent", "4",
                       "--hidden", "32", "--rnn-hidden", "32", "--out", run)
    assert rc == 0, err
    assert "log-mel frames (64 bins" in out and "broken.wav" in out             # skipped, and said so
    r = vaekit.Run.load(run)
    assert r.info["frames"] == "speech" and r.info["frame"] == 64 and r.config.model.likelihood == "gaussian"
    assert sorted(n for v in r.info["lengths"].values() for n in v) == sorted(lengths)
    rc, out, err = cli("sample", run, "-n", "2", "--steps", "20", "--out", tmp_path / "s.png")
    assert rc == 0, err
    for i in range(2):
        wave, sr = sf.read(tmp_path / f"s-{i}.wav")
        assert sr == rate and len(wave) == 19 * 128 and np.abs(wave).max() > 0
    report = (run / "report.html").read_text()
    assert report.count("<audio controls") >= 2                                # samples and reconstructions
    rc, out, err = cli("score", run, "--data", folder / "3_tone.wav", "--k", "5", "--quiet", "--out", tmp_path / "sc")
    assert rc == 0, err                                                        # a WAV file is this run's data


def test_a_piano_roll_sounds_at_its_keys_pitch():
    from vaekit.kinds.sequences.loader import roll_to_wave

    roll = np.zeros((8, 88))
    roll[:4, 48] = 1                                                           # A4, 440 Hz, for 4 quarter notes
    wave = roll_to_wave(roll, steps_per_quarter=1, tempo=120, rate=16000)
    first = wave[:2 * 16000]                                                   # 4 quarters at 120 bpm: 2 s
    spectrum = np.abs(np.fft.rfft(first))
    assert abs(np.argmax(spectrum) * 16000 / len(first) - 440) < 2
    assert np.abs(wave[int(2.6 * 16000):]).max() < 1e-3                        # silence after the release
    assert np.abs(roll_to_wave(np.zeros((4, 88)))).max() == 0


def test_sortish_batches_hold_sequences_of_similar_lengths_and_every_one_once_an_epoch():
    from vaekit.train.loop import sortish

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(10, 200, (203,), generator=g)
    perm = torch.randperm(203, generator=g)
    order = sortish(perm, lengths, 8, torch.Generator().manual_seed(1), pool=5)
    assert sorted(order.tolist()) == list(range(203))                      # each example once
    batches = order.split(8)
    assert len(batches[-1]) == 203 % 8                                         # the partial batch last
    spread = torch.stack([lengths[b].max() - lengths[b].min() for b in batches[:-1]]).float().mean()
    random_spread = torch.stack([lengths[b].max() - lengths[b].min() for b in perm.split(8)[:-1]]).float().mean()
    assert spread < random_spread / 3                                        # similar lengths share a batch
    again = sortish(perm, lengths, 8, torch.Generator().manual_seed(1), pool=5)
    assert torch.equal(order, again)                                         # the same generator, the same order
    assert not torch.equal(order, sortish(perm, lengths, 8, torch.Generator().manual_seed(2), pool=5))


def test_batch_order_sortish_is_refused_for_data_that_are_not_sequences(tmp_path, cli):
    rc, out, err = cli("train", "--data", "digits", "--batch-order", "sortish", "--epochs", "1", "--quiet",
                       "--out", tmp_path / "r")
    assert rc == 2 and "--batch-order sortish groups sequences by length" in err
