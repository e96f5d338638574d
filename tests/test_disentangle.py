"""Disentanglement metrics on constructed latents with known answers.

Four independent, uniformly sampled discrete factors with 2, 3, 4 and 5 values. The codes are
(a) the factors themselves plus tiny noise (perfectly disentangled), (b) the standardised factors
rotated so that every code mixes every factor equally (all information kept, no axis alignment),
(c) pure Gaussian noise, (d) the factors plus a copy of factor 0.
"""

import time

import numpy as np
import pytest
from scipy.linalg import hadamard

from vaekit.errors import VaekitError
from vaekit.eval.disentangle import (all_metrics, dci, discrete_factors, factor_vae_score, mig,
                                     modularity_explicitness, sap)
from vaekit.report import disentanglement_rows

SIZES = (2, 3, 4, 5)
N_TRAIN, N_TEST = 600, 300
N = N_TRAIN + N_TEST


def make_factors(n=N, sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, k, n) for k in sizes], axis=1)


def make_codes(kind, f, seed=1):
    rng = np.random.default_rng(seed)
    if kind == "true":
        return f + 0.01 * rng.normal(size=f.shape)
    if kind == "rotated":
        # A Haar-random 4x4 rotation can land close to an axis-aligned one (seeds 0-4 gave MIG
        # 0.09-0.43), so the rotation is the normalised Hadamard matrix, which spreads each factor
        # evenly over all codes, times a random signed permutation.
        z = (f - f.mean(0)) / f.std(0)
        d = f.shape[1]
        signed_perm = np.eye(d)[rng.permutation(d)] * rng.choice([-1.0, 1.0], size=d)
        return z @ (hadamard(d) / np.sqrt(d)) @ signed_perm
    if kind == "noise":
        return rng.normal(size=f.shape)
    if kind == "duplicated":
        return np.c_[f, f[:, 0]] + 0.01 * rng.normal(size=(len(f), f.shape[1] + 1))
    raise ValueError(kind)


@pytest.fixture(scope="module")
def scores():
    """all_metrics of each kind of code, computed once per module on first use."""
    f, cache = make_factors(), {}

    def get(kind):
        if kind not in cache:
            cache[kind] = all_metrics(make_codes(kind, f), f, seed=0, num_train=N_TRAIN, num_test=N_TEST)
        return cache[kind]

    return get


def test_true_factors_score_perfectly(scores):
    s = scores("true")
    assert set(s) == {"mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap",
                      "factorvae_score", "modularity", "explicitness"}
    assert all(isinstance(v, float) for v in s.values())
    assert s["mig"] > 0.95
    assert s["dci_disentanglement"] > 0.95 and s["dci_completeness"] > 0.95
    assert s["dci_informativeness"] == pytest.approx(1.0, abs=0.01)
    # A linear SVM on one code cannot separate the middle values of a factor, and the other codes
    # score chance (1/K): on these factors SAP's ceiling is about 0.4-0.5.
    assert s["sap"] > 0.3
    assert s["factorvae_score"] == pytest.approx(1.0, abs=0.01)
    assert s["modularity"] == pytest.approx(1.0, abs=0.01)
    assert s["explicitness"] > 0.98


def test_rotation_keeps_information_but_not_disentanglement(scores):
    s, t = scores("rotated"), scores("true")
    assert s["mig"] < 0.1 < 0.9 < t["mig"]
    assert s["dci_disentanglement"] < 0.1 and s["dci_completeness"] < 0.1
    assert s["sap"] < 0.1 < 0.3 < t["sap"]
    assert s["factorvae_score"] < 0.6
    # Everything is still linearly decodable.
    assert s["dci_informativeness"] > 0.95
    assert s["explicitness"] > 0.98


def test_noise_scores_chance(scores):
    s = scores("noise")
    assert s["mig"] < 0.05
    assert s["dci_disentanglement"] < 0.1 and s["dci_completeness"] < 0.1
    assert s["sap"] < 0.1
    assert s["factorvae_score"] == pytest.approx(1 / len(SIZES), abs=0.08)
    assert s["explicitness"] == pytest.approx(0.5, abs=0.05)
    assert s["dci_informativeness"] < 0.5


def test_duplicated_factor_lowers_completeness_and_its_gap():
    # the exact trees, as upstream: they break a tie between the two copies at random and credit
    # both (the histogram trees credit the first copy alone; dci's docstring says so)
    f = make_factors()[:600]
    tr, te = slice(0, 400), slice(400, None)
    dup_codes, true_codes = make_codes("duplicated", f), make_codes("true", f)
    dup = dci(dup_codes[tr], f[tr], dup_codes[te], f[te], exact=True)
    true = dci(true_codes[tr], f[tr], true_codes[te], f[te], exact=True)
    assert dup["completeness"] < true["completeness"] - 0.05
    assert dup["disentanglement"] > 0.95  # every code still serves a single factor
    f = make_factors()
    per = mig(make_codes("duplicated", f), f)["per_factor"]
    assert len(per) == len(SIZES)
    assert per[0] == pytest.approx(0.0, abs=0.02)
    assert min(per[1:]) > 0.95
    assert mig(make_codes("duplicated", f), f)["mig"] == pytest.approx(np.mean(per[1:]) * 3 / 4, abs=0.03)


def test_unused_code_gives_no_nan_and_is_ignored_by_modularity():
    f = make_factors(n=400, sizes=(2, 2))
    rng = np.random.default_rng(3)
    codes = np.c_[f + 0.01 * rng.normal(size=f.shape), np.zeros(len(f))]  # code 2 is constant
    tr, te = slice(0, 300), slice(300, None)
    d = dci(codes[tr], f[tr], codes[te], f[te])
    assert d["importance"].shape == (3, 2)
    assert np.all(d["importance"][2] == 0)
    assert d["disentanglement"] == pytest.approx(1.0, abs=0.01)
    assert d["completeness"] == pytest.approx(1.0, abs=0.01)
    me = modularity_explicitness(codes[tr], f[tr], codes[te], f[te])
    assert me["modularity"] == pytest.approx(1.0, abs=0.01)
    assert me["explicitness_test"] == pytest.approx(1.0, abs=0.01)
    s = sap(codes[tr], f[tr], codes[te], f[te])
    assert s["score_matrix"].shape == (3, 2)
    assert s["sap"] == pytest.approx(0.5, abs=0.1)  # accuracy 1 vs chance 0.5 for binary factors


def test_discrete_factors_integer_and_real_columns():
    rng = np.random.default_rng(0)
    ints = np.array([7, 3, 7, 9, 3, 3])
    assert discrete_factors(np.c_[ints, -ints])[:, 0].tolist() == [1, 0, 1, 2, 0, 0]
    assert discrete_factors(np.c_[ints, -ints])[:, 1].tolist() == [1, 2, 1, 0, 2, 2]
    few_reals = rng.choice([0.1, 0.25, 0.9], size=500)  # at most 64 values: one class each
    out = discrete_factors(np.c_[few_reals, rng.uniform(size=500)])
    assert out.dtype.kind == "i" and out.shape == (500, 2)
    assert sorted(np.unique(out[:, 0])) == [0, 1, 2]
    assert np.all(out[few_reals == 0.9, 0] == 2)
    x = rng.uniform(size=2000)
    for bins in (20, 7):
        b = discrete_factors(x[:, None], bins=bins)[:, 0]
        assert b.min() == 0 and b.max() == bins - 1  # equal-width bins, all filled here
        assert np.all(np.diff(b[np.argsort(x)]) >= 0)  # monotone in the value
        assert np.all(b == np.minimum((x - x.min()) / (x.max() - x.min()) * bins, bins - 1).astype(int))


def test_factor_vae_pruning_and_speed():
    f = make_factors(n=2000)
    rng = np.random.default_rng(0)
    codes = np.c_[f + 0.01 * rng.normal(size=f.shape), 0.01 * rng.normal(size=len(f))]  # last dim collapsed
    start = time.perf_counter()
    s = factor_vae_score(codes, f, np.random.default_rng(0))  # upstream defaults: 10,000 + 5,000 votes of 64
    assert time.perf_counter() - start < 5.0
    assert s["active_dims"] == len(SIZES)
    assert s["train_accuracy"] == pytest.approx(1.0) and s["eval_accuracy"] == pytest.approx(1.0)
    dead = factor_vae_score(0.01 * rng.normal(size=(500, 3)), f[:500], 0, num_train=100, num_eval=50)
    assert dead == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "active_dims": 0}
    again = factor_vae_score(codes, f, np.random.default_rng(0))
    assert again == s  # reproducible from the generator


@pytest.mark.parametrize("codes, factors, match", [
    (np.zeros((200, 3)), np.zeros((150, 4), dtype=int), "disagree on the number of points"),
    (np.zeros(200), np.zeros((200, 4), dtype=int), "2-D"),
    (np.random.default_rng(0).normal(size=(200, 3)), make_factors(200)[:, :1], "at least 2 factors"),
    (np.random.default_rng(0).normal(size=(200, 1)), make_factors(200), "at least 2 code dimensions"),
    (np.random.default_rng(0).normal(size=(50, 3)), make_factors(50), "Too few points"),
    (np.full((200, 3), np.nan), make_factors(200), "NaN"),
    (np.random.default_rng(0).normal(size=(200, 3)), np.c_[make_factors(200), np.ones(200, int)], "single value"),
])
def test_all_metrics_refuses(codes, factors, match):
    with pytest.raises(VaekitError, match=match):
        all_metrics(codes, factors)


def test_split_rule_small_pool_is_shared_proportionally(monkeypatch):
    import vaekit.eval.disentangle as mod

    seen = {}
    f = make_factors(300)
    codes = make_codes("true", f)
    monkeypatch.setattr(mod, "dci", lambda a, b, c, d, seed=0, exact=False: seen.update(train=len(a), test=len(c)) or
                        {"disentanglement": 0.0, "completeness": 0.0, "informativeness_test": 0.0})
    all_metrics(codes, f, num_train=200, num_test=100)
    assert seen == {"train": 200, "test": 100}
    all_metrics(codes, f, num_train=2000, num_test=1000)  # pool too small: split 2:1, disjoint
    assert seen == {"train": 200, "test": 100}
    all_metrics(np.r_[codes, codes][:500], np.r_[f, f][:500], num_train=100, num_test=50)
    assert seen == {"train": 100, "test": 50}


def test_report_rows():
    d = {"split": "train", "points": 900, "factors": ["shape", "scale"], "mig": 0.5, "dci_disentanglement": 0.25,
         "dci_completeness": 0.125, "dci_informativeness": 1.0, "sap": 0.1, "factorvae_score": 0.9,
         "modularity": 0.8, "explicitness": 0.7}
    rows = dict(disentanglement_rows(d))
    assert rows["MIG"] == "0.500" and rows["FactorVAE score"] == "0.900"
    assert "completeness 0.125" in rows["DCI"] and "shape, scale" in rows["disentanglement"]
    assert "900 train examples" in rows["disentanglement"] and disentanglement_rows(None) == []


def test_train_and_test_share_labels_and_scale():
    # Test points lacking factor 0's smallest value: discretising the splits separately would
    # renumber its classes and halve the accuracy.
    f = make_factors(n=400, sizes=(3, 2), seed=5)
    codes = make_codes("true", f)
    later = np.flatnonzero(f[:, 0] > 0)
    te, tr = later[:100], np.setdiff1d(np.arange(len(f)), later[:100])
    assert dci(codes[tr], f[tr], codes[te], f[te])["informativeness_test"] > 0.99
    # Explicitness standardises the codes, so their scale does not matter.
    g = make_factors()
    small = make_codes("rotated", g) * 1e-4
    me = modularity_explicitness(small[:N_TRAIN], g[:N_TRAIN], small[N_TRAIN:], g[N_TRAIN:])
    assert me["explicitness_train"] > 0.98 and me["explicitness_test"] > 0.98
