"""Noise ceilings: split-half reliability, CC_norm, explainable variance and FEVE.

Checked three ways: against loop-based reference implementations (NaN-padded trials), against the
analytic values of a Gaussian/Poisson model with known signal and noise, and on the real Cowley V4
repeats (session 201016).
"""

import json

import numpy as np
import pytest

from neurotrain.evaluation.noise_ceiling import (
    cc_abs,
    cc_max,
    cc_norm,
    cowley_raw_to_trials,
    explainable_variance,
    feve,
    noise_ceiling,
    split_half_cc,
    to_jsonable,
)
from tests.helpers.shared import data_dir, require

# --------------------------------------------------------------------------------------------------
# loop-based references (obviously correct, slow)
# --------------------------------------------------------------------------------------------------


def ref_pearson(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return np.nan
    return float(np.corrcoef(x, y)[0, 1])


def ref_split_half(R, n_splits, min_half, seed):
    """The documented protocol, one bin and unit at a time."""
    T, B, U = R.shape
    rng = np.random.default_rng(seed)
    per_split = np.full((n_splits, U), np.nan)
    for k in range(n_splits):
        keys = rng.random((B, T))
        for u in range(U):
            xa, xb = [], []
            for b in range(B):
                order = np.argsort(keys[b])
                trials = [t for t in order if not np.isnan(R[t, b, u])]
                half = len(trials) // 2
                a, rest = trials[:half], trials[half:]
                if len(a) >= min_half and len(rest) >= min_half:
                    xa.append(np.mean([R[t, b, u] for t in a]))
                    xb.append(np.mean([R[t, b, u] for t in rest]))
            per_split[k, u] = ref_pearson(xa, xb)
    out = np.full(U, np.nan)
    for u in range(U):
        vals = [v for v in per_split[:, u] if np.isfinite(v)]
        if vals:
            out[u] = np.mean(vals)
    return out


def ref_cc_abs(R, P, min_trials):
    T, B, U = R.shape
    out = np.full(U, np.nan)
    for u in range(U):
        xs, ps = [], []
        for b in range(B):
            trials = [t for t in range(T) if not np.isnan(R[t, b, u])]
            if len(trials) < min_trials:
                continue
            p = P[b, u] if P.ndim == 2 else np.mean([P[t, b, u] for t in trials])
            if not np.isfinite(p):
                continue
            xs.append(np.mean([R[t, b, u] for t in trials]))
            ps.append(p)
        out[u] = ref_pearson(xs, ps)
    return out


def ref_variances(R, P=None):
    """total_var, noise_var, mse over bins with >= 2 valid trials (and finite predictions)."""
    T, B, U = R.shape
    tot, noise, mse = np.full(U, np.nan), np.full(U, np.nan), np.full(U, np.nan)
    for u in range(U):
        values, bin_vars, sq = [], [], []
        for b in range(B):
            trials = [t for t in range(T) if not np.isnan(R[t, b, u])]
            if len(trials) < 2:
                continue
            if P is not None:
                preds = [P[b, u] if P.ndim == 2 else P[t, b, u] for t in trials]
                if not np.all(np.isfinite(preds)):
                    continue
                sq += [(R[t, b, u] - p) ** 2 for t, p in zip(trials, preds)]
            vals = [R[t, b, u] for t in trials]
            values += vals
            bin_vars.append(np.var(vals, ddof=1))
        if bin_vars:
            tot[u] = np.var(values, ddof=1)
            noise[u] = np.mean(bin_vars)
            if sq:
                mse[u] = np.mean(sq)
    return tot, noise, mse


def nan_padded(rng, T=8, B=30, U=4, p_missing=0.3, scale=1.0):
    mu = rng.normal(size=(B, U)) * scale
    R = mu[None] + rng.normal(size=(T, B, U))
    R[rng.random(R.shape) < p_missing] = np.nan
    return R, mu


def gaussian_trials(rng, T, B, signal_sd, noise_sd):
    """R = mu + noise with per-unit signal and noise standard deviations."""
    signal_sd, noise_sd = np.asarray(signal_sd, float), np.asarray(noise_sd, float)
    U = len(signal_sd)
    mu = 3.0 + rng.normal(size=(B, U)) * signal_sd
    R = mu[None] + rng.normal(size=(T, B, U)) * noise_sd
    return R, mu


# --------------------------------------------------------------------------------------------------
# formulas and references
# --------------------------------------------------------------------------------------------------


def test_cc_max_spearman_brown_values():
    got = cc_max([0.5, 1.0, 0.25, 0.0, -0.2, np.nan])
    expected = [np.sqrt(1.0 / 1.5), 1.0, np.sqrt(0.5 / 1.25)]
    np.testing.assert_allclose(got[:3], expected, rtol=1e-12)
    assert np.isnan(got[3:]).all()
    assert cc_max(np.array([[0.5]])).shape == (1, 1)


def test_split_half_matches_loop_reference_with_random_nans():
    rng = np.random.default_rng(3)
    R, _ = nan_padded(rng, T=8, B=30, U=4, p_missing=0.3)
    R[:, :, 3] = np.nan  # unit 3: one valid trial per bin at most -> no bin has 1+1 trials
    R[0, :, 3] = rng.normal(size=30)
    got = split_half_cc(R, n_splits=15, min_trials_per_half=2, seed=11)
    ref = ref_split_half(R, 15, 2, 11)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert np.isfinite(got[:3]).all() and np.isnan(got[3])


def test_split_half_matches_reference_with_shared_trailing_padding():
    """Cowley-style padding: the same trials missing for every unit (the fast path)."""
    rng = np.random.default_rng(4)
    T, B, U = 9, 25, 5
    R = rng.normal(size=(B, U))[None] + rng.normal(size=(T, B, U))
    n_valid = rng.integers(3, T + 1, size=B)
    for b in range(B):
        R[n_valid[b]:, b, :] = np.nan
    got = split_half_cc(R, n_splits=12, min_trials_per_half=2, seed=5)
    np.testing.assert_allclose(got, ref_split_half(R, 12, 2, 5), rtol=1e-10, atol=1e-12)
    # the general path (one extra unit-specific gap, in a bin that stays eligible) agrees too
    R2 = R.copy()
    b = int(np.argmax(n_valid))
    R2[0, b, 0] = np.nan
    np.testing.assert_allclose(
        split_half_cc(R2, n_splits=12, min_trials_per_half=2, seed=5),
        ref_split_half(R2, 12, 2, 5),
        rtol=1e-10,
        atol=1e-12,
    )


def test_split_half_is_deterministic_given_seed():
    rng = np.random.default_rng(5)
    R, _ = nan_padded(rng, T=10, B=40, U=3, p_missing=0.1)
    a = split_half_cc(R, n_splits=20, min_trials_per_half=3, seed=7)
    b = split_half_cc(R, n_splits=20, min_trials_per_half=3, seed=7)
    c = split_half_cc(R, n_splits=20, min_trials_per_half=3, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_cc_abs_matches_reference_with_nans_and_per_trial_predictions():
    rng = np.random.default_rng(6)
    R, mu = nan_padded(rng, T=8, B=30, U=4, p_missing=0.3)
    P2 = mu + 0.5 * rng.normal(size=mu.shape)
    P2[rng.random(P2.shape) < 0.1] = np.nan
    np.testing.assert_allclose(cc_abs(R, P2, 4), ref_cc_abs(R, P2, 4), rtol=1e-10)
    # per-trial predictions are averaged over the trials that are valid in R
    P3 = mu[None] + rng.normal(size=R.shape)
    np.testing.assert_allclose(cc_abs(R, P3, 3), ref_cc_abs(R, P3, 3), rtol=1e-10)
    # NaN of a per-trial prediction on an invalid trial of R is ignored
    P3[np.isnan(R)] = np.nan
    np.testing.assert_allclose(cc_abs(R, P3, 3), ref_cc_abs(R, P3, 3), rtol=1e-10)


def test_cc_abs_constant_vectors_give_nan():
    rng = np.random.default_rng(7)
    R = rng.normal(size=(5, 20, 2))
    P = rng.normal(size=(20, 2))
    P[:, 1] = 0.1  # constant prediction (0.1 is not exact in binary: mean-subtraction residue)
    out = cc_abs(R, P, 1)
    assert np.isfinite(out[0]) and np.isnan(out[1])
    R[:, :, 0] = 0.7  # constant response
    assert np.isnan(cc_abs(R, P, 1)[0])


def test_variances_and_feve_match_reference_with_nans():
    rng = np.random.default_rng(8)
    R, mu = nan_padded(rng, T=6, B=25, U=4, p_missing=0.4)
    R[:, :, 3] = np.nan
    R[0, :, 3] = 1.0  # unit 3: single trials only -> everything undefined
    tot, noise, _ = ref_variances(R)
    ev = explainable_variance(R)
    np.testing.assert_allclose(ev["total_var"], tot, rtol=1e-10)
    np.testing.assert_allclose(ev["noise_var"], noise, rtol=1e-10)
    np.testing.assert_allclose(ev["ev_fraction"], (tot - noise) / tot, rtol=1e-10)
    assert np.isnan([ev[k][3] for k in ev]).all()

    P2 = mu + 0.3 * rng.normal(size=mu.shape)
    P2[2, 0] = np.nan  # bin 2 dropped for unit 0 in all three quantities
    P3 = mu[None] + 0.3 * rng.normal(size=R.shape)
    for P in (P2, P3):
        tot, noise, mse = ref_variances(R, P)
        expected = 1 - (mse - noise) / (tot - noise)
        np.testing.assert_allclose(feve(R, P), expected, rtol=1e-10)
    assert np.isnan(feve(R, P2)[3])


def test_cc_norm_units_with_too_few_bins_are_nan():
    rng = np.random.default_rng(9)
    T, B = 12, 40
    R, mu = gaussian_trials(rng, T, B, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    R[6:, :, 1] = np.nan  # unit 1: 6 trials everywhere -> no bin reaches 8
    R[6:, :25, 2] = np.nan  # unit 2: 15 bins with 12 trials -> below min_time_bins=20
    out = cc_norm(R, mu, min_trials_per_bin=8, min_time_bins=20, n_splits=20, seed=0)
    np.testing.assert_array_equal(out["n_bins"], [40, 0, 15])
    for k in ("cc_abs", "cc_half", "cc_max", "cc_norm"):
        assert np.isfinite(out[k][0]), k
        assert np.isnan(out[k][1:]).all(), k
    # lowering min_time_bins brings unit 2 back
    out = cc_norm(R, mu, min_trials_per_bin=8, min_time_bins=10, n_splits=20, seed=0)
    assert np.isfinite(out["cc_norm"][2]) and np.isnan(out["cc_norm"][1])


def test_cc_norm_is_ratio_restricted_to_eligible_bins():
    """The split half sees exactly the CC_abs bins, not merely those with enough trials per half."""
    rng = np.random.default_rng(10)
    T, B = 10, 200
    R, mu = gaussian_trials(rng, T, B, [1.0, 0.5], [2.0, 2.0])
    # 50 bins with 6 trials: 3 per half would pass min 7 // 2 = 3, but 6 < 7 makes them ineligible
    R[6:, :50, :] = np.nan
    P = mu + rng.normal(size=mu.shape)
    P[50:60, 1] = np.nan  # no prediction: ineligible for unit 1 only
    out = cc_norm(R, P, min_trials_per_bin=7, min_time_bins=20, n_splits=30, seed=2)
    np.testing.assert_array_equal(out["n_bins"], [150, 140])
    keep = np.zeros((B, 2), bool)
    keep[50:] = True
    keep[50:60, 1] = False
    half = split_half_cc(np.where(keep[None], R, np.nan), n_splits=30, min_trials_per_half=3, seed=2)
    np.testing.assert_allclose(out["cc_half"], half, rtol=1e-12)
    unrestricted = split_half_cc(R, n_splits=30, min_trials_per_half=3, seed=2)
    assert np.all(np.abs(unrestricted - half) > 1e-6)
    np.testing.assert_allclose(out["cc_abs"], cc_abs(R, P, 7), rtol=1e-12)
    np.testing.assert_allclose(out["cc_max"], cc_max(half), rtol=1e-12)
    np.testing.assert_allclose(out["cc_norm"], np.clip(out["cc_abs"] / out["cc_max"], 0, 1), rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# synthetic ground truth
# --------------------------------------------------------------------------------------------------


def test_cc_max_recovers_analytic_psth_truth_correlation():
    """Gaussian model: corr(n-trial PSTH, truth) = sqrt(s / (s + v / n)); cc_max estimates exactly that.

    Split halves of n/2 trials give cc_half = s / (s + 2 v / n), and Spearman-Brown maps it to
    sqrt(s / (s + v / n)); without the correction the values would be far off (0.33 vs 0.71).
    """
    rng = np.random.default_rng(11)
    T, B = 20, 3000
    noise_var = np.array([20.0, 5.0, 1.0])  # v / n = 1, 0.25, 0.05 with s = 1
    R, mu = gaussian_trials(rng, T, B, [1.0, 1.0, 1.0], np.sqrt(noise_var))
    analytic = np.sqrt(1.0 / (1.0 + noise_var / T))
    half = split_half_cc(R, n_splits=40, min_trials_per_half=10, seed=0)
    np.testing.assert_allclose(half, 1.0 / (1.0 + 2 * noise_var / T), atol=0.03)
    np.testing.assert_allclose(cc_max(half), analytic, atol=0.02)
    # ... and matches the empirical correlation of the full PSTH with the truth
    psth = R.mean(axis=0)
    direct = [np.corrcoef(psth[:, u], mu[:, u])[0, 1] for u in range(3)]
    np.testing.assert_allclose(cc_max(half), direct, atol=0.02)


def test_cc_norm_true_rates_near_one_and_noise_near_zero():
    rng = np.random.default_rng(12)
    T, B = 40, 800
    R, mu = gaussian_trials(rng, T, B, [1.0, 1.0, 0.5, 2.0], [3.0, 6.0, 3.0, 2.0])
    truth = cc_norm(R, mu, n_splits=50, seed=0)  # legacy defaults: 20 trials/bin, 20 bins
    assert np.all(truth["cc_norm"] > 0.95), truth["cc_norm"]
    assert np.all(truth["cc_abs"] < 0.99)  # the raw correlation is clearly below 1 for some ...
    assert truth["cc_abs"].min() < 0.8  # ... the noisiest unit's cc_abs is far from 1
    noise = cc_norm(R, rng.normal(size=mu.shape), n_splits=50, seed=0)
    assert np.all(np.abs(noise["cc_abs"]) < 0.15), noise["cc_abs"]
    assert np.all(noise["cc_norm"] < 0.2) and np.all(noise["cc_norm"] >= 0)
    # per-trial predictions equal to the truth give the same answer
    per_trial = cc_norm(R, np.broadcast_to(mu, R.shape), n_splits=50, seed=0)
    np.testing.assert_allclose(per_trial["cc_norm"], truth["cc_norm"], rtol=1e-12)


def test_explainable_variance_recovers_signal_fraction():
    rng = np.random.default_rng(13)
    T, B = 10, 3000
    signal_sd = np.array([1.0, 1.0, 2.0])
    noise_var = np.array([1.0, 3.0, 0.5])
    R, mu = gaussian_trials(rng, T, B, signal_sd, np.sqrt(noise_var))
    ev = explainable_variance(R)
    s_hat = mu.var(axis=0, ddof=1)
    np.testing.assert_allclose(ev["noise_var"], noise_var, rtol=0.03)
    np.testing.assert_allclose(ev["total_var"], s_hat + noise_var, rtol=0.03)
    np.testing.assert_allclose(ev["ev_fraction"], s_hat / (s_hat + noise_var), atol=0.02)
    # the population value: 0.5, 0.25, 0.889
    np.testing.assert_allclose(ev["ev_fraction"], signal_sd**2 / (signal_sd**2 + noise_var), atol=0.04)


def test_explainable_variance_poisson():
    """Poisson counts: noise variance = mean rate, so ev = var(rate) / (var(rate) + mean(rate))."""
    rng = np.random.default_rng(14)
    T, B = 12, 2000
    rates = rng.gamma(shape=[2.0, 8.0], scale=[2.0, 0.5], size=(B, 2))
    R = rng.poisson(np.broadcast_to(rates, (T, B, 2))).astype(float)
    ev = explainable_variance(R)
    np.testing.assert_allclose(ev["noise_var"], rates.mean(axis=0), rtol=0.03)
    expected = rates.var(axis=0) / (rates.var(axis=0) + rates.mean(axis=0))
    np.testing.assert_allclose(ev["ev_fraction"], expected, atol=0.03)


def test_feve_truth_is_one_and_constant_is_zero():
    rng = np.random.default_rng(15)
    T, B = 20, 1000
    R, mu = gaussian_trials(rng, T, B, [1.0, 2.0], [1.0, 2.0])
    R[rng.random(R.shape) < 0.2] = np.nan
    np.testing.assert_allclose(feve(R, mu), 1.0, atol=0.05)
    # the grand mean: MSE = total_var (N-1)/N -> FEVE = total_var / (N (total_var - noise_var)) ~ 0
    const = np.broadcast_to(np.nanmean(R, axis=(0, 1)), mu.shape)
    assert np.all(np.abs(feve(R, const)) < 1e-3)
    # halfway prediction (shrunk towards the mean by 1/2): explains 1 - 1/4 = 0.75 of the signal
    half = 0.5 * (mu + mu.mean(axis=0))
    np.testing.assert_allclose(feve(R, half), 0.75, atol=0.05)


# --------------------------------------------------------------------------------------------------
# summary, JSON, validation
# --------------------------------------------------------------------------------------------------


def test_noise_ceiling_summary_and_json():
    rng = np.random.default_rng(16)
    R, mu = gaussian_trials(rng, 10, 60, [1.0, 1.0, 1.0], [1.0, 2.0, 1.0])
    R[:, :, 2] = np.nan  # unit 2: no data at all
    out = noise_ceiling(R, mu, min_trials_per_bin=4, min_time_bins=10, n_splits=20, seed=1)
    per_unit = {"total_var", "noise_var", "ev_fraction", "cc_half", "cc_max", "n_bins", "cc_abs", "cc_norm", "feve"}
    assert set(out) == per_unit | {"summary"}
    direct = cc_norm(R, mu, min_trials_per_bin=4, min_time_bins=10, n_splits=20, seed=1)
    for k in ("cc_abs", "cc_half", "cc_max", "cc_norm"):
        np.testing.assert_array_equal(out[k], direct[k])
    np.testing.assert_array_equal(out["feve"], feve(R, mu))
    s = out["summary"]
    assert s["n_units"] == 3 and s["n_units_finite"] == 2
    assert s["cc_max_median"] == pytest.approx(np.median(out["cc_max"][:2]))
    assert s["ev_fraction_mean"] == pytest.approx(np.mean(out["ev_fraction"][:2]))
    assert s["feve_n_finite"] == 2
    js = to_jsonable(out)
    text = json.dumps(js, allow_nan=False)
    back = json.loads(text)
    assert back["cc_max"][2] is None and isinstance(back["cc_max"][0], float)
    assert back["n_bins"] == [60, 60, 0]
    assert back["summary"]["n_units_finite"] == 2

    no_p = noise_ceiling(R, min_trials_per_bin=4, min_time_bins=10, n_splits=20, seed=1)
    assert "cc_norm" not in no_p and "feve" not in no_p
    np.testing.assert_allclose(no_p["cc_half"], out["cc_half"], rtol=1e-12)
    assert to_jsonable({"a": np.float32(np.inf), "b": (np.int64(3), np.nan)}) == {"a": None, "b": [3, None]}


def test_bad_inputs_raise():
    R = np.ones((4, 5, 3))
    with pytest.raises(ValueError, match="trials, bins, units"):
        split_half_cc(np.ones((5, 3)))
    with pytest.raises(ValueError, match="P of shape"):
        cc_abs(R, np.ones((5, 2)))
    with pytest.raises(ValueError, match="P of shape"):
        feve(R, np.ones((3, 5, 3)))
    with pytest.raises(ValueError, match="P must have shape"):
        cc_norm(R, np.ones(5))
    with pytest.raises(ValueError, match="min_trials_per_half"):
        split_half_cc(R, min_trials_per_half=0)
    with pytest.raises(ValueError, match="n_splits"):
        split_half_cc(R, n_splits=0)
    with pytest.raises(ValueError, match="min_trials_per_bin"):
        cc_abs(R, np.ones((5, 3)), min_trials_per_bin=0)
    with pytest.raises(ValueError, match="min_trials_per_bin"):
        cc_norm(R, np.ones((5, 3)), min_trials_per_bin=1)  # would allow 0 trials per half
    with pytest.raises(ValueError, match="min_time_bins"):
        cc_norm(R, np.ones((5, 3)), min_time_bins=0)
    with pytest.raises(ValueError, match="integer"):
        split_half_cc(R, min_trials_per_half=2.5)
    with pytest.raises(ValueError, match="min_trials_per_bin"):
        explainable_variance(R, min_trials_per_bin=1)
    with pytest.raises(ValueError, match="inf"):
        explainable_variance(np.full((2, 2, 2), np.inf))
    with pytest.raises(ValueError, match="bin_mask"):
        split_half_cc(R, bin_mask=np.ones(4, bool))
    with pytest.raises(TypeError, match="unexpected"):
        noise_ceiling(R, min_trials=3)
    with pytest.raises(ValueError, match="neurons, images, repeats"):
        cowley_raw_to_trials(np.ones((3, 4)))


def test_cowley_raw_to_trials_layout():
    raw = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)  # (neurons, images, repeats)
    R = cowley_raw_to_trials(raw)
    assert R.shape == (4, 3, 2) and R.flags.c_contiguous and R.dtype == np.float64
    assert R[3, 2, 1] == raw[1, 2, 3]


# --------------------------------------------------------------------------------------------------
# real data: Cowley V4, session 201016
# --------------------------------------------------------------------------------------------------


def test_cowley_201016_noise_ceiling():
    path = require(data_dir() / "cowley_v4" / "responses_raw" / "responses_201016.npy", "Cowley V4 raw responses")
    raw = np.load(path)
    assert raw.shape == (82, 600, 10)
    R = cowley_raw_to_trials(raw)
    valid = ~np.isnan(R)
    n_valid = valid.sum(axis=0)  # (images, neurons)
    # the same repeats are missing for every neuron; 5-9 valid repeats per image, NaN-padded at the end
    assert (n_valid == n_valid[:, :1]).all()
    assert n_valid.min() == 5 and n_valid.max() == 9
    assert np.array_equal(valid, np.arange(10)[:, None, None] < n_valid[None])
    counts = R[valid]
    assert np.array_equal(counts, np.round(counts)) and counts.min() >= 0  # spike counts

    out = noise_ceiling(R, min_trials_per_bin=4, n_splits=100, seed=0)
    for k in ("total_var", "noise_var", "ev_fraction", "cc_half", "cc_max", "n_bins"):
        assert out[k].shape == (82,), k
    assert (out["n_bins"] == 600).all()  # every image has >= 4 repeats (>= 2 per half)
    s = out["summary"]
    assert s["n_units"] == 82 and s["n_units_finite"] == 82
    ev, half, cm = out["ev_fraction"], out["cc_half"], out["cc_max"]
    assert np.all((ev > 0) & (ev < 1)) and np.all((cm > 0) & (cm <= 1)) and np.all(half < cm)
    # measured (seed 0, 100 splits): medians ev 0.326, cc_half 0.593, cc_max 0.863
    assert 0.28 < s["ev_fraction_median"] < 0.37
    assert 0.55 < s["cc_half_median"] < 0.64
    assert 0.83 < s["cc_max_median"] < 0.89
    # Two independent estimators agree: with ev = s / (s + v) and n the harmonic-mean repeat count,
    # the Gaussian model predicts cc_max = sqrt(s / (s + v / n)).
    n_eff = 1.0 / np.mean(1.0 / n_valid[:, 0])
    snr = ev / (1 - ev)
    np.testing.assert_allclose(cm, np.sqrt(snr / (snr + 1.0 / n_eff)), atol=0.03)


def test_variance_measures_need_min_time_bins_like_the_correlations():
    rng = np.random.default_rng(3)
    mu = rng.gamma(2.0, 1.0, size=(30, 2))
    R = mu[None] + rng.normal(0, 1.0, size=(6, 30, 2))
    R[1:, 5:, 1] = np.nan  # unit 1: bins 5.. keep a single trial, so only 5 bins have >= 2 trials
    out = noise_ceiling(R, mu, min_trials_per_bin=2, min_time_bins=10, n_splits=20)
    assert np.isfinite(out["feve"][0]) and np.isfinite(out["ev_fraction"][0])
    assert np.isnan(out["feve"][1]) and np.isnan(out["ev_fraction"][1]) and np.isnan(out["total_var"][1])
    loose = noise_ceiling(R, mu, min_trials_per_bin=2, min_time_bins=5, n_splits=20)
    assert np.isfinite(loose["feve"][1])
