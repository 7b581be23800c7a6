"""Noise ceilings from repeated presentations: split-half reliability, CC_norm, explainable variance, FEVE.

Array layout (canonical throughout this module, all float64):

``R``  shape ``(trials, bins, units)``
    Single-trial responses to repeated stimuli. A *bin* is one image for static-image data or one
    time bin of a repeated clip; a *trial* is one repeat. ``NaN`` marks a trial that is missing for
    that bin/unit (trial counts may differ per bin and per unit). ``inf`` is rejected.
``P``  shape ``(bins, units)`` or ``(trials, bins, units)``
    Model predictions: one value per stimulus (deterministic model), or one per trial. Per-trial
    predictions are averaged over the trials that are valid in ``R`` for that bin/unit wherever a
    per-bin prediction is needed (CC_abs); FEVE compares each trial with its own prediction.

Definitions
-----------
* ``split_half_cc`` -- mean over random half-splits of the Pearson correlation (over bins) between
  the PSTHs of two disjoint halves of the trials (legacy VisionCore
  ``ccnorm_split_half_variable_trials``).
* ``cc_max`` -- Spearman-Brown step-up of the split-half correlation, ``sqrt(2 c / (1 + c))``. For a
  Gaussian model with signal variance ``s`` and noise variance ``v`` per trial this equals the
  correlation between the n-trial PSTH and the true rates, ``sqrt(s / (s + v / n))``.
* ``cc_abs`` -- Pearson correlation between the trial-averaged PSTH and the prediction.
* ``cc_norm`` -- ``cc_abs / cc_max`` clipped to ``[0, 1]`` (Schoppe et al. 2016; legacy VisionCore
  thresholds: 500 splits, >= 20 valid trials per bin, >= 20 eligible bins).
* ``explainable_variance`` / ``feve`` -- Cadena et al. 2019 (PLoS CB, "Deep convolutional models
  improve predictions of macaque V1 responses to natural images").

Everything is vectorised over units; only the random splits are looped over.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np

__all__ = [
    "split_half_cc",
    "cc_max",
    "cc_abs",
    "cc_norm",
    "explainable_variance",
    "feve",
    "noise_ceiling",
    "to_jsonable",
    "cowley_raw_to_trials",
]

# Relative size below which a centred vector counts as constant (correlation undefined).
_CONST_RTOL = 1e-10
# cc_max at or below this leaves cc_norm undefined (legacy threshold).
_CC_MAX_FLOOR = 1e-3


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------


def _check_R(R) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 3:
        raise ValueError(
            f"R must have shape (trials, bins, units); got ndim={R.ndim} with shape {R.shape}"
        )
    if 0 in R.shape:
        raise ValueError(f"R must be non-empty in every axis; got shape {R.shape}")
    if np.isinf(R).any():
        raise ValueError("R contains inf; mark missing trials with NaN")
    return R


def _check_P(P, R: np.ndarray) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim == 2:
        if P.shape != R.shape[1:]:
            raise ValueError(
                f"P of shape (bins, units) must match R's {R.shape[1:]}; got {P.shape}"
            )
    elif P.ndim == 3:
        if P.shape != R.shape:
            raise ValueError(
                f"P of shape (trials, bins, units) must match R's {R.shape}; got {P.shape}"
            )
    else:
        raise ValueError(
            "P must have shape (bins, units) or (trials, bins, units); "
            f"got ndim={P.ndim} with shape {P.shape}"
        )
    return P


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# numerical helpers
# --------------------------------------------------------------------------------------------------


def _pearson_weighted(x: np.ndarray, y: np.ndarray, w: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Pearson per column with 0/1 row weights ``w`` ``(bins, units)``; ``n = w.sum(0)``.

    ``x`` and ``y`` must be finite wherever they are multiplied (rows with ``w == 0`` included).
    NaN where ``n < 2`` or a vector is constant: its population variance is zero or below
    ``(1e-10 * |mean|)**2`` (rounding residue of a constant vector).
    """
    safe_n = np.maximum(n, 1)
    mx = np.einsum("bu,bu->u", x, w) / safe_n
    my = np.einsum("bu,bu->u", y, w) / safe_n
    dx = (x - mx) * w
    dy = (y - my) * w
    sxx = np.einsum("bu,bu->u", dx, dx)
    syy = np.einsum("bu,bu->u", dy, dy)
    sxy = np.einsum("bu,bu->u", dx, dy)
    ok = (
        (n >= 2)
        & (sxx > safe_n * (_CONST_RTOL * mx) ** 2)
        & (syy > safe_n * (_CONST_RTOL * my) ** 2)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(np.where(ok, sxx * syy, 1.0))
    return np.where(ok, np.clip(r, -1.0, 1.0), np.nan)


def _masked_pearson(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pearson correlation per column over the rows where ``mask`` is True.

    ``x``, ``y``, ``mask``: shape ``(bins, units)`` (values outside the mask may be NaN). Returns
    ``(units,)``; NaN where fewer than two rows are used or either vector is constant (population
    statistics, ddof 0).
    """
    w = mask.astype(np.float64)
    return _pearson_weighted(np.where(mask, x, 0.0), np.where(mask, y, 0.0), w, mask.sum(axis=0))


def _psth(R: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trial mean and valid-trial count per bin/unit; both ``(bins, units)`` (mean NaN if count 0)."""
    n = valid.sum(axis=0)
    s = np.where(valid, R, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return m, n


def _mean_prediction(P: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-bin prediction ``(bins, units)``: P itself, or its mean over the trials valid in R.

    A per-trial prediction that is NaN on a valid trial makes that bin's mean NaN (bin unusable).
    """
    if P.ndim == 2:
        return P
    n = valid.sum(axis=0)
    s = np.where(valid, P, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


# --------------------------------------------------------------------------------------------------
# split-half reliability
# --------------------------------------------------------------------------------------------------


def split_half_cc(R, n_splits=500, min_trials_per_half=10, seed=0, *, bin_mask=None) -> np.ndarray:
    """Split-half correlation of the PSTH, averaged over random half-splits.

    Parameters
    ----------
    R : array, shape ``(trials, bins, units)``
        Single-trial responses, NaN for missing trials.
    n_splits : int >= 1
        Number of random splits.
    min_trials_per_half : int >= 1
        A bin enters a unit's correlation only if both halves hold at least this many valid trials
        of that unit (with ``n`` valid trials the halves hold ``n // 2`` and ``n - n // 2``).
    seed : int
        Seed of ``numpy.random.default_rng``; the result is a deterministic function of it.
    bin_mask : bool array ``(bins, units)`` or ``(bins,)``, optional
        Further restricts the bins used (e.g. the bins eligible for CC_abs).

    Returns
    -------
    cc_half : array, shape ``(units,)``
        Mean over splits of ``pearson_bins(PSTH_A, PSTH_B)``; splits giving NaN are ignored, NaN if
        all do (e.g. fewer than two eligible bins, or a constant PSTH).

    Notes
    -----
    Split protocol (exactly reproducible): for each split, ``keys = rng.random((bins, trials))`` and
    ``order = argsort(keys, axis=1)`` give one random permutation of the trial indices per bin,
    shared by all units. For each bin and unit the valid trials, taken in that permuted order, go
    first ``n // 2`` to half A and the rest to half B. Each half's PSTH is the mean over its trials.
    """
    R = _check_R(R)
    n_splits = _check_int("n_splits", n_splits, 1)
    min_half = _check_int("min_trials_per_half", min_trials_per_half, 1)
    T, B, U = R.shape
    valid = ~np.isnan(R)
    if bin_mask is not None:
        bm = np.asarray(bin_mask, dtype=bool)
        if bm.shape == (B,):
            bm = np.broadcast_to(bm[:, None], (B, U))
        if bm.shape != (B, U):
            raise ValueError(f"bin_mask must have shape (bins,) or (bins, units) = {(B, U)}; got {bm.shape}")
        valid = valid & bm[None]

    n = valid.sum(axis=0)  # (B, U)
    n_a = n // 2
    n_b = n - n_a
    use = n_a >= min_half  # implies n_b >= min_half; deterministic across splits
    w = use.astype(np.float64)
    n_use = use.sum(axis=0)
    R0 = np.where(valid, R, 0.0)
    total = R0.sum(axis=0)
    inv_a = 1.0 / np.maximum(n_a, 1)
    inv_b = 1.0 / np.maximum(n_b, 1)

    rng = np.random.default_rng(seed)
    flat_valid = valid.reshape(T * B, U)
    shared = bool((flat_valid == flat_valid[:, :1]).all())
    if shared:  # one validity pattern for all units: (trials, bins) membership masks suffice
        valid2 = valid[:, :, 0]
        n_a2 = n_a[None, :, 0]
    else:
        count_dtype = np.uint8 if T < 256 else np.int32
        flat_valid_n = flat_valid.astype(count_dtype)
        n_a_c = n_a.astype(count_dtype)
        in_a_perm = np.empty((T, B, U), dtype=bool)
        in_a_flat = np.empty((T * B, U), dtype=bool)
        in_a3 = in_a_flat.reshape(T, B, U)
    cols = np.arange(B)[None, :]
    ccs = np.empty((n_splits, U))
    for k in range(n_splits):
        order = np.argsort(rng.random((B, T)), axis=1).T  # (T, B): permuted trial index per bin
        if shared:
            vp = valid2[order, cols]
            in_a_perm = vp & (np.cumsum(vp, axis=0) <= n_a2)
            in_a = np.empty_like(in_a_perm)
            in_a[order, cols] = in_a_perm
            sum_a = np.einsum("tb,tbu->bu", in_a.astype(np.float64), R0)
        else:
            rows = (order * B + cols).ravel()  # row of the (T*B, U) view, in permuted order
            # Loops over trials (few) on (bins, units) slabs are far faster than cumsum over a
            # bool axis. Positions up to the n_a-th valid trial form half A; invalid trials among
            # them are harmless because R0 is zero there.
            vp = flat_valid_n.take(rows, axis=0).reshape(T, B, U)
            seen = np.zeros((B, U), dtype=count_dtype)  # valid trials met so far, permuted order
            for i in range(T):
                seen += vp[i]
                np.less_equal(seen, n_a_c, out=in_a_perm[i])
            in_a_flat[rows] = in_a_perm.reshape(T * B, U)  # back to the original trial order
            sum_a = np.zeros((B, U))
            for t in range(T):
                sum_a += R0[t] * in_a3[t]
        ccs[k] = _pearson_weighted(sum_a * inv_a, (total - sum_a) * inv_b, w, n_use)

    finite = np.isfinite(ccs)
    cnt = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(finite, ccs, 0.0).sum(axis=0) / cnt
    return np.where(cnt > 0, out, np.nan)


def cc_max(cc_half) -> np.ndarray:
    """Spearman-Brown corrected ceiling ``sqrt(2 c / (1 + c))`` for ``c > 0``, NaN otherwise.

    ``cc_half``: array of any shape (typically ``(units,)``); the result has the same shape.
    """
    c = np.asarray(cc_half, dtype=np.float64)
    pos = c > 0  # False for NaN
    safe = np.where(pos, c, 1.0)
    return np.where(pos, np.sqrt(2.0 * safe / (1.0 + safe)), np.nan)


# --------------------------------------------------------------------------------------------------
# prediction correlation
# --------------------------------------------------------------------------------------------------


def _cc_abs_parts(R: np.ndarray, P: np.ndarray, min_trials_per_bin: int):
    valid = ~np.isnan(R)
    psth, n = _psth(R, valid)
    pred = _mean_prediction(P, valid)
    eligible = (n >= min_trials_per_bin) & np.isfinite(pred)
    return _masked_pearson(psth, pred, eligible), eligible


def cc_abs(R, P, min_trials_per_bin=20) -> np.ndarray:
    """Pearson correlation over bins between the trial-mean PSTH and the prediction.

    Parameters
    ----------
    R : array ``(trials, bins, units)``, NaN for missing trials.
    P : array ``(bins, units)`` or ``(trials, bins, units)``; per-trial predictions are averaged over
        the trials valid in ``R``.
    min_trials_per_bin : int >= 1
        A bin is eligible for a unit if it has at least this many valid trials and a finite
        prediction.

    Returns
    -------
    array ``(units,)``; NaN where fewer than two bins are eligible or either vector is constant.
    """
    R = _check_R(R)
    P = _check_P(P, R)
    m = _check_int("min_trials_per_bin", min_trials_per_bin, 1)
    return _cc_abs_parts(R, P, m)[0]


def _half_from_rules(R, eligible, min_trials_per_bin, min_time_bins, n_splits, seed):
    """cc_half over the eligible bins (legacy rules); units with too few bins -> NaN."""
    n_bins = eligible.sum(axis=0)
    enough = n_bins >= min_time_bins
    half = split_half_cc(
        R,
        n_splits=n_splits,
        min_trials_per_half=min_trials_per_bin // 2,
        seed=seed,
        bin_mask=eligible & enough[None],
    )
    return np.where(enough, half, np.nan), n_bins, enough


def cc_norm(R, P, *, min_trials_per_bin=20, min_time_bins=20, n_splits=500, seed=0) -> dict:
    """Normalised correlation ``cc_abs / cc_max`` with the legacy VisionCore eligibility rules.

    Parameters
    ----------
    R : array ``(trials, bins, units)``, NaN for missing trials.
    P : array ``(bins, units)`` or ``(trials, bins, units)``.
    min_trials_per_bin : int >= 2
        Bins with at least this many valid trials (and a finite prediction) are eligible; the split
        half then requires ``min_trials_per_bin // 2`` trials per half (implied by the former).
    min_time_bins : int >= 1
        Units with fewer eligible bins get NaN in every float output.
    n_splits, seed : passed to :func:`split_half_cc` (restricted to the eligible bins).

    Returns
    -------
    dict of ``(units,)`` arrays: ``cc_abs``, ``cc_half``, ``cc_max``, ``cc_norm`` (float; cc_norm is
    NaN where ``cc_max <= 1e-3`` and clipped to ``[0, 1]``) and ``n_bins`` (int, eligible bins per
    unit, reported even for units below ``min_time_bins``).
    """
    R = _check_R(R)
    P = _check_P(P, R)
    m = _check_int("min_trials_per_bin", min_trials_per_bin, 2)
    mtb = _check_int("min_time_bins", min_time_bins, 1)
    ns = _check_int("n_splits", n_splits, 1)

    ca, eligible = _cc_abs_parts(R, P, m)
    half, n_bins, enough = _half_from_rules(R, eligible, m, mtb, ns, seed)
    ca = np.where(enough, ca, np.nan)
    cm = cc_max(half)
    ok = cm > _CC_MAX_FLOOR
    with np.errstate(invalid="ignore", divide="ignore"):
        cn = np.where(ok, ca / np.where(ok, cm, 1.0), np.nan)
    cn = np.clip(cn, 0.0, 1.0)
    return {"cc_abs": ca, "cc_half": half, "cc_max": cm, "cc_norm": cn, "n_bins": n_bins}


# --------------------------------------------------------------------------------------------------
# explainable variance and FEVE (Cadena et al. 2019)
# --------------------------------------------------------------------------------------------------


def _variance_parts(R: np.ndarray, used_bins: np.ndarray):
    """total_var, noise_var and the per-unit trial mask over ``used_bins`` ``(bins, units)``."""
    valid = ~np.isnan(R) & used_bins[None]
    n = valid.sum(axis=0)  # (B, U)
    R0 = np.where(valid, R, 0.0)
    # noise: unbiased across-trial variance per bin, then mean over used bins
    bin_mean = R0.sum(axis=0) / np.maximum(n, 1)
    ss_bin = (np.where(valid, R - bin_mean[None], 0.0) ** 2).sum(axis=0)
    var_bin = ss_bin / np.maximum(n - 1, 1)
    n_used = used_bins.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        noise_var = np.where(n_used > 0, np.where(used_bins, var_bin, 0.0).sum(axis=0) / n_used, np.nan)
    # total: unbiased variance of all used single trials
    n_tot = n.sum(axis=0)
    grand = R0.sum(axis=(0, 1)) / np.maximum(n_tot, 1)
    ss_tot = (np.where(valid, R - grand, 0.0) ** 2).sum(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        total_var = np.where(n_tot >= 2, ss_tot / np.maximum(n_tot - 1, 1), np.nan)
    return total_var, noise_var, valid


def explainable_variance(R, min_trials_per_bin=2) -> dict:
    """Explainable-variance decomposition per unit (Cadena et al. 2019).

    Parameters
    ----------
    R : array ``(trials, bins, units)``, NaN for missing trials.
    min_trials_per_bin : int >= 2
        Bins with fewer valid trials for a unit are left out of *all* quantities for that unit (a
        single trial carries no noise estimate), so total and noise variance describe the same data.

    Returns
    -------
    dict of ``(units,)`` float arrays:
    ``total_var``  -- variance (ddof 1) of all used single-trial responses;
    ``noise_var``  -- mean over used bins of the across-trial variance (ddof 1);
    ``ev_fraction`` -- ``(total_var - noise_var) / total_var`` (may be slightly negative for units
    with no stimulus-driven signal); NaN where undefined (no used bins, ``total_var <= 0``).
    """
    R = _check_R(R)
    m = _check_int("min_trials_per_bin", min_trials_per_bin, 2)
    used = (~np.isnan(R)).sum(axis=0) >= m
    total_var, noise_var, _ = _variance_parts(R, used)
    ok = np.isfinite(total_var) & np.isfinite(noise_var) & (total_var > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ev = np.where(ok, (total_var - noise_var) / np.where(ok, total_var, 1.0), np.nan)
    return {"total_var": total_var, "noise_var": noise_var, "ev_fraction": ev}


def feve(R, P, min_trials_per_bin=2) -> np.ndarray:
    """Fraction of explainable variance explained, ``1 - (MSE - noise_var) / (total_var - noise_var)``.

    Parameters
    ----------
    R : array ``(trials, bins, units)``, NaN for missing trials.
    P : array ``(bins, units)`` (each trial compared with its bin's prediction) or
        ``(trials, bins, units)`` (each trial with its own prediction).
    min_trials_per_bin : int >= 2
        Bins used for a unit: at least this many valid trials and a finite prediction on every valid
        trial. The same bins enter ``total_var``, ``noise_var`` and the MSE.

    Returns
    -------
    array ``(units,)``; NaN where ``total_var - noise_var <= 0`` or no bin is usable.
    """
    R = _check_R(R)
    P = _check_P(P, R)
    m = _check_int("min_trials_per_bin", min_trials_per_bin, 2)
    valid = ~np.isnan(R)
    P3 = np.broadcast_to(P, R.shape) if P.ndim == 2 else P
    pred_ok = ~(valid & ~np.isfinite(P3)).any(axis=0)
    used = (valid.sum(axis=0) >= m) & pred_ok
    total_var, noise_var, tmask = _variance_parts(R, used)
    n_tot = tmask.sum(axis=(0, 1))
    sq = np.where(tmask, (np.where(tmask, R, 0.0) - np.where(tmask, P3, 0.0)) ** 2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = np.where(n_tot > 0, sq.sum(axis=(0, 1)) / np.maximum(n_tot, 1), np.nan)
        expl = total_var - noise_var
        ok = np.isfinite(expl) & (expl > 0) & np.isfinite(mse)
        return np.where(ok, 1.0 - (mse - noise_var) / np.where(ok, expl, 1.0), np.nan)


# --------------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------------


def noise_ceiling(R, P=None, **cc_kwargs) -> dict:
    """All noise-ceiling quantities for one recording.

    Parameters
    ----------
    R : array ``(trials, bins, units)``, NaN for missing trials.
    P : optional array ``(bins, units)`` or ``(trials, bins, units)``.
    **cc_kwargs : ``min_trials_per_bin`` (default 20), ``min_time_bins`` (20), ``n_splits`` (500),
        ``seed`` (0) -- the split-half / CC_norm rules of :func:`cc_norm`, applied to ``cc_half`` and
        ``cc_max`` also when ``P`` is None. Explainable variance and FEVE use every bin with >= 2
        valid trials, and are NaN for units with fewer than ``min_time_bins`` such bins.

    Returns
    -------
    dict with ``(units,)`` arrays ``total_var``, ``noise_var``, ``ev_fraction``, ``cc_half``,
    ``cc_max``, ``n_bins`` and, when ``P`` is given, ``cc_abs``, ``cc_norm``, ``feve``; plus
    ``summary``: a flat dict with ``n_units``, ``n_units_finite`` (units finite in every float
    metric) and, per float metric ``k``, ``k_median``, ``k_mean`` (over finite units, None if none)
    and ``k_n_finite``. Pass the result through :func:`to_jsonable` for JSON.
    """
    allowed = {"min_trials_per_bin", "min_time_bins", "n_splits", "seed"}
    unknown = set(cc_kwargs) - allowed
    if unknown:
        raise TypeError(f"noise_ceiling got unexpected keyword(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    R = _check_R(R)
    m = _check_int("min_trials_per_bin", cc_kwargs.get("min_trials_per_bin", 20), 2)
    mtb = _check_int("min_time_bins", cc_kwargs.get("min_time_bins", 20), 1)
    ns = _check_int("n_splits", cc_kwargs.get("n_splits", 500), 1)
    seed = cc_kwargs.get("seed", 0)

    out: dict = dict(explainable_variance(R))
    if P is None:
        eligible = (~np.isnan(R)).sum(axis=0) >= m
        half, n_bins, _ = _half_from_rules(R, eligible, m, mtb, ns, seed)
        out.update(cc_half=half, cc_max=cc_max(half), n_bins=n_bins)
    else:
        P = _check_P(P, R)
        cn = cc_norm(R, P, min_trials_per_bin=m, min_time_bins=mtb, n_splits=ns, seed=seed)
        out.update(
            cc_half=cn["cc_half"],
            cc_max=cn["cc_max"],
            n_bins=cn["n_bins"],
            cc_abs=cn["cc_abs"],
            cc_norm=cn["cc_norm"],
            feve=feve(R, P),
        )
    # Variance-based measures need as many bins as the correlations: a handful of repeated bins
    # gives a meaningless FEVE (its denominator is a small difference of two noisy variances).
    few = ((~np.isnan(R)).sum(axis=0) >= 2).sum(axis=0) < mtb
    for k in ("total_var", "noise_var", "ev_fraction", "feve"):
        if k in out:
            out[k] = np.where(few, np.nan, np.asarray(out[k], dtype=np.float64))

    float_keys = [k for k, v in out.items() if k != "n_bins" and np.asarray(v).dtype.kind == "f"]
    n_units = R.shape[2]
    all_finite = np.ones(n_units, dtype=bool)
    summary: dict = {"n_units": int(n_units)}
    for k in float_keys:
        v = np.asarray(out[k], dtype=np.float64)
        fin = np.isfinite(v)
        all_finite &= fin
        summary[f"{k}_median"] = float(np.median(v[fin])) if fin.any() else None
        summary[f"{k}_mean"] = float(np.mean(v[fin])) if fin.any() else None
        summary[f"{k}_n_finite"] = int(fin.sum())
    summary["n_units_finite"] = int(all_finite.sum())
    out["summary"] = summary
    return out


def _json_scalar(x):
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (Integral, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def to_jsonable(d):
    """Recursively convert numpy arrays/scalars to lists/Python numbers, NaN and inf to None.

    Accepts dicts (keys made ``str``), lists, tuples, arrays and scalars; returns JSON-serialisable
    data (``json.dumps`` works without ``allow_nan``).
    """
    if isinstance(d, dict):
        return {str(k): to_jsonable(v) for k, v in d.items()}
    if isinstance(d, np.ndarray):
        return [to_jsonable(v) for v in d.tolist()] if d.ndim else _json_scalar(d.item())
    if isinstance(d, (list, tuple)):
        return [to_jsonable(v) for v in d]
    return _json_scalar(d)


def cowley_raw_to_trials(raw) -> np.ndarray:
    """Cowley V4 raw responses ``(neurons, images, repeats)`` -> canonical ``(repeats, images, neurons)``.

    The raw files are float64 and NaN-padded along the repeat axis (session 201016: ``(82, 600, 10)``,
    5-9 valid repeats per image). Returns a contiguous float64 copy.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 3:
        raise ValueError(f"Cowley raw responses must be (neurons, images, repeats); got shape {raw.shape}")
    return np.ascontiguousarray(raw.transpose(2, 1, 0))
