"""Disentanglement metrics computed from plain arrays: codes (N, D) and ground-truth factors (N, F).

The definitions and default settings follow Locatello et al. 2019, "Challenging common assumptions
in the unsupervised learning of disentangled representations", and its library
disentanglement_lib (``disentanglement_lib/evaluation/metrics/*.py``, settings from
``config/unsupervised_study_v1/metric_configs/*.gin``): codes discretised into 20 equal-width
histogram bins, 10,000 training and 5,000 test points, FactorVAE batches of 64.

Upstream draws fresh examples from a ground-truth simulator; here every metric works on a given
pool of (code, factor) rows, and the FactorVAE score replaces the simulator by group-by sampling
from that pool (see :func:`factor_vae_score`).

All metrics need at least 2 factors and at least 2 code dimensions: with F = 1 the DCI
disentanglement (entropy in log base F) and the modularity (divides by F - 1) are undefined, and
with D = 1 the MIG and SAP have no second-best code and the DCI completeness (log base D) is
undefined. Every factor must take at least 2 values in the training points (its entropy is the
MIG's denominator, and a classifier cannot be fit on a single class). Inputs that break these rules
raise :class:`vaekit.errors.VaekitError`.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import entropy
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

from ..errors import VaekitError

__all__ = ["all_metrics", "dci", "discrete_factors", "factor_vae_score", "mig", "modularity_explicitness", "sap"]

MAX_CLASSES = 64  # a factor column with at most this many distinct values is taken as categorical
MIN_POINTS = 100  # all_metrics refuses smaller pools


def _histogram_discretize(x: np.ndarray, bins: int) -> np.ndarray:
    """disentanglement_lib's ``utils._histogram_discretize`` on one column: bin indices 1..bins."""
    return np.digitize(x, np.histogram(x, bins)[1][:-1])


def discrete_factors(factors, bins: int = 20) -> np.ndarray:
    """Factor columns as class indices 0..K-1, an (N, F) int array.

    A column with at most 64 distinct values is mapped to the index of its value among the sorted
    distinct values (``np.unique``'s inverse); a column with more is first discretised into ``bins``
    equal-width histogram bins, as disentanglement_lib's ``histogram_discretize``
    (``disentanglement_lib/evaluation/metrics/utils.py``), and its non-empty bins are then
    numbered 0..K-1 (a relabelling: no metric depends on the labels' values).
    """
    f = np.asarray(factors)
    if f.ndim == 1:
        f = f[:, None]
    out = np.empty(f.shape, dtype=np.int64)
    for j in range(f.shape[1]):
        col = f[:, j]
        if np.unique(col).size > MAX_CLASSES:
            col = _histogram_discretize(col.astype(np.float64), bins)
        out[:, j] = np.unique(col, return_inverse=True)[1].reshape(-1)
    return out


def _discretize_codes(codes: np.ndarray, bins: int) -> np.ndarray:
    return np.stack([_histogram_discretize(c, bins) for c in codes.T], axis=1)


def _arrays(codes, factors, what: str = "codes and factors", min_points: int = 2):
    """Checked float codes (N, D) and raw factors (N, F); raise VaekitError naming the problem."""
    c, f = np.asarray(codes, dtype=np.float64), np.asarray(factors)
    if c.ndim != 2 or f.ndim != 2:
        raise VaekitError(f"The {what} must be 2-D arrays (points x dimensions), got shapes {c.shape} and {f.shape}.")
    if c.shape[0] != f.shape[0]:
        raise VaekitError(f"The {what} disagree on the number of points: {c.shape[0]} codes but {f.shape[0]} factor rows.")
    if c.shape[0] < min_points:
        raise VaekitError(f"Too few points for disentanglement metrics: {c.shape[0]}, at least {min_points} are needed.")
    if f.shape[1] < 2:
        raise VaekitError(f"Disentanglement metrics need at least 2 factors, got {f.shape[1]} "
                          "(with one factor DCI disentanglement and modularity are undefined).")
    if c.shape[1] < 2:
        raise VaekitError(f"Disentanglement metrics need at least 2 code dimensions, got {c.shape[1]} "
                          "(with one code MIG and SAP have no second-best code).")
    if not np.isfinite(c).all():
        raise VaekitError("The codes contain NaN or infinite values.")
    if f.dtype.kind not in "biuf" or (f.dtype.kind == "f" and not np.isfinite(f).all()):
        raise VaekitError("The factors must be finite numbers (integer class indices or real values).")
    return c, f


def _pair(train_codes, train_factors, test_codes, test_factors):
    """Checked train and test arrays, the factors discretised jointly so that labels agree."""
    ctr, ftr = _arrays(train_codes, train_factors, "training codes and factors")
    cte, fte = _arrays(test_codes, test_factors, "test codes and factors", min_points=1)
    if ctr.shape[1] != cte.shape[1] or ftr.shape[1] != fte.shape[1]:
        raise VaekitError(f"Training and test sets disagree on dimensions: codes {ctr.shape[1]} vs {cte.shape[1]}, "
                          f"factors {ftr.shape[1]} vs {fte.shape[1]}.")
    y = discrete_factors(np.concatenate([ftr, fte]))
    ytr, yte = y[:len(ftr)], y[len(ftr):]
    _need_variation(ytr, "training")
    return ctr, ytr, cte, yte


def _need_variation(y: np.ndarray, where: str) -> None:
    const = [j for j in range(y.shape[1]) if np.all(y[:, j] == y[0, j])]
    if const:
        raise VaekitError(f"Factor column(s) {const} take a single value in the {where} points, "
                          "so their entropy is zero and no classifier can be fit: drop them.")


def _mutual_info(dcodes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(D, F) matrix of sklearn's mutual_info_score (nats) between discretised codes and factors."""
    return np.array([[mutual_info_score(y[:, j], dc) for j in range(y.shape[1])] for dc in dcodes.T])


def mig(codes, factors, bins: int = 20) -> dict:
    """Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").

    As ``disentanglement_lib/evaluation/metrics/mig.py``: each code is histogram-discretised into
    ``bins`` = 20 equal-width bins, I(code_i; factor_k) is sklearn's ``mutual_info_score``, and the
    factor's entropy H(factor_k) = I(factor_k; factor_k). For each factor the gap is
    (largest - second-largest MI over codes) / H(factor_k); the score is the mean gap.
    disentanglement_lib uses 10,000 points.

    Returns ``dict(mig=float, per_factor=list of F floats)``.
    """
    c, f = _arrays(codes, factors)
    y = discrete_factors(f, bins)
    _need_variation(y, "given")
    m = np.sort(_mutual_info(_discretize_codes(c, bins), y), axis=0)
    h = np.array([mutual_info_score(col, col) for col in y.T])
    gap = (m[-1] - m[-2]) / h
    return {"mig": float(gap.mean()), "per_factor": gap.tolist()}


def _normalized_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """1 - entropy (log base ``base``) of each row of p, normalised; an all-zero row scores 0."""
    s = p.sum(axis=1)
    out = np.zeros(len(p))
    ok = s > 0
    if ok.any():
        out[ok] = 1.0 - entropy(p[ok].T, base=base)  # scipy normalises each column of its input
    return out


def _gain_importance(model, d: int) -> np.ndarray:
    """(d,) each feature's share of the total split gain over all trees of a fitted
    HistGradientBoostingClassifier (its trees are read from ``_predictors``, the fitted rounds)."""
    gain = np.zeros(d)
    for round_ in model._predictors:
        for tree in round_:
            nodes = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
            np.add.at(gain, nodes["feature_idx"], np.maximum(nodes["gain"], 0))
    return gain / gain.sum() if gain.sum() > 0 else gain


def dci(train_codes, train_factors, test_codes, test_factors, seed: int = 0, exact: bool = False) -> dict:
    """Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018, "A Framework for the
    Quantitative Evaluation of Disentangled Representations").

    As ``disentanglement_lib/evaluation/metrics/dci.py`` (10,000 train / 5,000 test points): one
    gradient-boosted tree classifier per factor on all codes, 100 boosting rounds of trees of depth
    3 (sklearn's defaults, which upstream uses); the importance matrix R (D codes x F factors)
    holds each code's share of the trees' total split gain, which is what upstream's
    ``feature_importances_`` are (the impurity decrease of the splits on it). One difference:
    the trees are sklearn's histogram-based ``HistGradientBoostingClassifier`` (codes in 255
    bins), not the exact ``GradientBoostingClassifier``: on dSprites' 113 factor classes at 10,000
    points the exact one takes about 7 minutes on two CPU cores, the histogram one under one. They agree within a
    few hundredths on codes that are noisy copies of dSprites' factors (disentanglement 0.86 and
    0.89, completeness 0.83 and 0.87), with one known difference: when two codes split a factor
    equally well (exact copies), the histogram trees always take the first and credit it alone,
    where the exact trees break ties at random and credit both, so only the exact trees see
    an exact duplicate in the completeness. ``exact=True`` (``vaekit evaluate --dci-exact``)
    uses the exact trees, as upstream.

    - disentanglement = sum_i rho_i (1 - H_F(P_i)), P_i = row i of R normalised, entropy in log
      base F, rho_i = (row sum i) / (total sum);
    - completeness = sum_k w_k (1 - H_D(column k normalised)), log base D, w_k = (column sum k) /
      (total sum); the gradient-boosting importances of a factor sum to 1, so this is the mean
      over factors (upstream's weighting, which also gives an all-zero column no weight);
    - informativeness_train / _test = mean over factors of the classifiers' accuracy.

    Zero guard: upstream adds 1e-11 to R before the entropies; here an all-zero row (a code no tree
    uses) or column scores 0 directly, which is what upstream's weighting gives it, and an all-zero
    R gives disentanglement = completeness = 0.

    Returns ``dict(disentanglement, completeness, informativeness_train, informativeness_test,
    importance)``, ``importance`` the (D, F) array.
    """
    ctr, ytr, cte, yte = _pair(train_codes, train_factors, test_codes, test_factors)
    D, F = ctr.shape[1], ytr.shape[1]
    r = np.zeros((D, F))
    acc_tr, acc_te = [], []
    for k in range(F):
        if exact:
            model = GradientBoostingClassifier(random_state=seed).fit(ctr, ytr[:, k])
            r[:, k] = np.abs(model.feature_importances_)
        else:
            model = HistGradientBoostingClassifier(max_iter=100, max_depth=3, min_samples_leaf=1, early_stopping=False,
                                                   random_state=seed).fit(ctr, ytr[:, k])
            r[:, k] = _gain_importance(model, D)
        acc_tr.append(np.mean(model.predict(ctr) == ytr[:, k]))
        acc_te.append(np.mean(model.predict(cte) == yte[:, k]))
    total = r.sum()
    if total > 0:
        dis = float(np.sum(_normalized_entropy(r, F) * r.sum(axis=1) / total))
        com = float(np.sum(_normalized_entropy(r.T, D) * r.sum(axis=0) / total))
    else:
        dis = com = 0.0
    return {"disentanglement": dis, "completeness": com, "informativeness_train": float(np.mean(acc_tr)),
            "informativeness_test": float(np.mean(acc_te)), "importance": r}


def sap(train_codes, train_factors, test_codes, test_factors) -> dict:
    """Separated Attribute Predictability (Kumar et al. 2018, "Variational Inference of Disentangled
    Latent Concepts from Unlabeled Observations", Section 3).

    The discrete-factor version of ``disentanglement_lib/evaluation/metrics/sap_score.py``
    (10,000 train / 5,000 test points): for each (code i, factor k) a
    ``LinearSVC(C=0.01, class_weight="balanced")`` fit on the single training code dimension i;
    score_ik = its accuracy on the test points. Per factor the gap between the two highest scores,
    averaged over factors.

    Returns ``dict(sap=float, score_matrix=(D, F) array)``.
    """
    ctr, ytr, cte, yte = _pair(train_codes, train_factors, test_codes, test_factors)
    s = np.zeros((ctr.shape[1], ytr.shape[1]))
    for i in range(ctr.shape[1]):
        for k in range(ytr.shape[1]):
            clf = LinearSVC(C=0.01, class_weight="balanced").fit(ctr[:, i:i + 1], ytr[:, k])
            s[i, k] = np.mean(clf.predict(cte[:, i:i + 1]) == yte[:, k])
    top = np.sort(s, axis=0)
    return {"sap": float(np.mean(top[-1] - top[-2])), "score_matrix": s}


def _votes(codes, y, scale, active, rng, batch_size, n, order, start, count, chunk=512):
    """(F, D) vote counts of n FactorVAE votes drawn from the pool (see factor_vae_score)."""
    N, F = y.shape
    votes = np.zeros((F, codes.shape[1]), dtype=np.int64)
    z = codes[:, active] / scale[active]
    dims = np.flatnonzero(active)
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        k = rng.integers(F, size=m)
        v = y[rng.integers(N, size=m), k]  # the fixed value: that of a random pool row
        s, c = start[k, v], count[k, v]
        pick = s[:, None] + (rng.random((m, batch_size)) * c[:, None]).astype(np.int64)
        idx = order[k[:, None], pick]  # (m, batch) rows sharing factor k's value v
        arg = dims[np.argmin(z[idx].var(axis=1, ddof=1), axis=1)]
        np.add.at(votes, (k, arg), 1)
    return votes


def factor_vae_score(codes, factors, rng, batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                     num_variance_estimate: int = 10000) -> dict:
    """FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising").

    As ``disentanglement_lib/evaluation/metrics/factor_vae.py`` with its defaults (batches of 64,
    10,000 training votes, 5,000 evaluation votes, variances from 10,000 points): the global
    variance (ddof=1) of each code is estimated on min(N, ``num_variance_estimate``) pool rows
    drawn without replacement; dimensions whose standard deviation is below 0.05 are pruned
    (upstream's ``prune_dims.threshold = 0.05`` on sqrt(variance)). Each vote picks a factor k
    uniformly and fixes it to the value of a random pool row (upstream fixes it to a value drawn
    from the factor's distribution); then, where upstream asks the ground-truth simulator for
    ``batch_size`` examples sharing that value, here they are drawn with replacement from the pool
    rows having it (group-by sampling from the given pool). The codes are divided by the global
    standard deviation, and the active dimension of least variance (ddof=1) over the batch casts
    the vote (dimension, k). The majority-vote classifier maps each dimension to the factor it
    voted for most in the training votes; the accuracies are its accuracy on those votes and on
    ``num_eval`` fresh ones. With no active dimension both accuracies are 0, as upstream. (Upstream
    indexes its votes by the position among the active dimensions and reports the mask's length
    as ``num_active_dims``; here votes go to the dimension itself and the count is of active ones.
    The accuracies are the same.)

    ``rng`` is a ``numpy.random.Generator`` (or a seed for one). Returns ``dict(train_accuracy,
    eval_accuracy, active_dims)``, ``active_dims`` the number of unpruned dimensions.
    """
    c, f = _arrays(codes, factors)
    if batch_size < 2:
        raise VaekitError(f"The FactorVAE score needs batches of at least 2 points, got {batch_size}.")
    rng = np.random.default_rng(rng)
    y = discrete_factors(f)
    N, F = y.shape
    sub = rng.choice(N, size=min(N, num_variance_estimate), replace=False)
    var = c[sub].var(axis=0, ddof=1)
    active = np.sqrt(var) >= 0.05
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "active_dims": 0}
    # Group-by tables: order[k] lists the rows sorted by factor k; rows with value v of factor k
    # are order[k, start[k, v] : start[k, v] + count[k, v]].
    K = int(y.max()) + 1
    order = np.argsort(y, axis=0, kind="stable").T
    count = np.stack([np.bincount(y[:, k], minlength=K) for k in range(F)])
    start = np.cumsum(count, axis=1) - count
    args = (c, y, np.sqrt(var), active, rng, batch_size)
    train = _votes(*args, num_train, order, start, count)
    classifier = np.argmax(train, axis=0)
    cols = np.arange(train.shape[1])
    ev = _votes(*args, num_eval, order, start, count)
    return {"train_accuracy": float(train[classifier, cols].sum() / max(train.sum(), 1)),
            "eval_accuracy": float(ev[classifier, cols].sum() / max(ev.sum(), 1)),
            "active_dims": int(active.sum())}


def _explicitness(xtr, ytr, xte, yte):
    """Macro-average one-vs-rest ROC AUC of a logistic regression for one factor, on train and test."""
    clf = OneVsRestClassifier(LogisticRegression()).fit(xtr, ytr)
    out = []
    for x, y in ((xtr, ytr), (xte, yte)):
        onehot, p = y[:, None] == clf.classes_[None, :], clf.predict_proba(x)
        keep = [j for j in range(onehot.shape[1]) if 0 < onehot[:, j].sum() < len(y)]  # classes with an AUC
        out.append(np.mean([roc_auc_score(onehot[:, j], p[:, j]) for j in keep]) if keep else np.nan)
    return out


def modularity_explicitness(train_codes, train_factors, test_codes, test_factors, bins: int = 20) -> dict:
    """Modularity and explicitness (Ridgeway & Zemel 2018, "Learning Deep Disentangled Embeddings
    With the F-Statistic Loss").

    As ``disentanglement_lib/evaluation/metrics/modularity_explicitness.py`` (10,000 train / 5,000
    test points, 20 histogram bins). Modularity: m = MI matrix of the discretised training codes
    and the factors (D x F); for code i, theta_i = max_k m_ik and the template t_i keeps only that
    entry; delta_i = sum_k (m_ik - t_ik)^2 / (theta_i^2 (F - 1)); modularity = mean of 1 - delta_i
    over the codes with theta_i > 0 (0 if there are none). Upstream instead counts a code with
    theta_i = 0 as modularity 0 in the mean; a constant (collapsed) code carries no factor, so here
    it neither helps nor hurts.

    Explicitness: codes standardised by the training mean and std (a zero std is taken as 1); per
    factor a one-vs-rest ``LogisticRegression`` (sklearn defaults); score = macro-average ROC AUC
    over the factor's classes (one-hot labels against predicted probabilities), averaged over
    factors, on the training and on the test points. A class absent from a split (or the only one
    there) has no AUC and is left out of that split's average.

    Returns ``dict(modularity, explicitness_train, explicitness_test)``.
    """
    ctr, ytr, cte, yte = _pair(train_codes, train_factors, test_codes, test_factors)
    m2 = np.square(_mutual_info(_discretize_codes(ctr, bins), ytr))
    theta2 = m2.max(axis=1)
    ok = theta2 > 0
    delta = (m2[ok].sum(axis=1) - theta2[ok]) / (theta2[ok] * (m2.shape[1] - 1))
    modularity = float(np.mean(1.0 - delta)) if ok.any() else 0.0
    mean, std = ctr.mean(axis=0), ctr.std(axis=0)
    std[std == 0] = 1.0
    xtr, xte = (ctr - mean) / std, (cte - mean) / std
    e = np.array([_explicitness(xtr, ytr[:, k], xte, yte[:, k]) for k in range(ytr.shape[1])])
    return {"modularity": modularity, "explicitness_train": float(np.nanmean(e[:, 0])),
            "explicitness_test": float(np.nanmean(e[:, 1]))}


def all_metrics(codes, factors, seed: int = 0, num_train: int = 10000, num_test: int = 5000,
                exact: bool = False) -> dict:
    """All the metrics above on one pool of (codes, factors) rows, as a flat dict of floats.

    Split rule: the rows are shuffled with ``np.random.default_rng(seed)``; if the pool has at
    least num_train + num_test rows, the first num_train are the training points and the next
    num_test the test points; otherwise the whole pool is split, still disjointly, in the ratio
    num_train : num_test (train = round(N * num_train / (num_train + num_test))). MIG and modularity
    use the training points (upstream's MIG uses 10,000 points), DCI, SAP and explicitness train on
    them and test on the test points, and the FactorVAE score samples its votes from the whole pool
    with the same generator (defaults: 10,000 training and 5,000 evaluation votes).

    Keys: ``mig``, ``dci_disentanglement``, ``dci_completeness``, ``dci_informativeness`` (test
    accuracy), ``sap``, ``factorvae_score`` (evaluation accuracy), ``modularity``,
    ``explicitness`` (test). Refuses with :class:`VaekitError` shapes that disagree, fewer than 2
    factors or code dimensions, fewer than 100 points, non-finite values, and a factor with a single
    value in the training points.
    """
    c, f = _arrays(codes, factors, min_points=MIN_POINTS)
    if num_train < 2 or num_test < 1:
        raise VaekitError(f"num_train must be at least 2 and num_test at least 1, got {num_train} and {num_test}.")
    rng = np.random.default_rng(seed)
    N = len(c)
    perm = rng.permutation(N)
    n_tr = num_train if N >= num_train + num_test else int(round(N * num_train / (num_train + num_test)))
    n_te = num_test if N >= num_train + num_test else N - n_tr
    tr, te = perm[:n_tr], perm[n_tr:n_tr + n_te]
    args = (c[tr], f[tr], c[te], f[te])
    d, me = dci(*args, seed=seed, exact=exact), modularity_explicitness(*args)
    return {"mig": mig(c[tr], f[tr])["mig"], "dci_disentanglement": d["disentanglement"],
            "dci_completeness": d["completeness"], "dci_informativeness": d["informativeness_test"],
            "sap": sap(*args)["sap"], "factorvae_score": factor_vae_score(c, f, rng)["eval_accuracy"],
            "modularity": me["modularity"], "explicitness": me["explicitness_test"]}
