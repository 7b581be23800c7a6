"""Ingest recordings into neurotrain session folders (see :mod:`neurotrain.data.session`).

Three ways in:

* :func:`ingest_arrays` - numpy arrays already in memory;
* :func:`ingest_npz` - one ``.npz`` file per session (schema below);
* importers for the public recordings described in ``shared/data/README.md``:
  :func:`import_cowley_v4` (macaque V4, every session a folder holds) and :func:`import_allen_v1` (mouse V1
  calcium). Counts, shapes and session ids come from the files; the tables of known sessions are metadata.
  They read from a path argument and never copy the source files anywhere; only the converted session
  folders are written.

Every function writes one session to ``out_dir/<name>`` (importers: one per session) and returns its path.

Frame conversion (:func:`frames_to_uint8`)
------------------------------------------
Sessions store 8-bit luminance frames ``(T, H, W)`` uint8, or, with ``color="rgb"``, 8-bit colour frames
``(T, H, W, 3)`` uint8 (see :mod:`neurotrain.data.session`). Accepted input:

* shape ``(T, H, W)`` (grey), ``(T, H, W, 1)`` (grey) or ``(T, H, W, 3)`` (RGB);
* dtype uint8 (kept as is); another integer dtype with values in ``[0, 255]``; or float.
* Float frames: with ``frame_range="auto"`` (the default) frames whose values ALL lie in ``[0, 1]``
  are taken as unit-range and multiplied by 255; otherwise values must lie in ``[0, 255]`` and are taken
  as they are. (So an all-dark 0..255 image whose maximum is <= 1 would be read as unit-range: pass
  ``frame_range="byte"`` - or ``"unit"`` - to say which.) NaN/inf and values outside the range are
  errors, apart from a rounding tolerance of 1e-6 (unit) / 1e-3 (byte) that is clipped.
* RGB frames become luminance with the ITU-R BT.601 weights ``Y = 0.299 R + 0.587 G + 0.114 B``
  computed in float (on the 0..255 scale, after the range rule above). With ``color="rgb"`` they keep their
  three channels (each converted by the range rule), and grey frames are replicated into three equal
  channels, so every session of an import has the same channel count.
* Finally values are rounded to the nearest integer (``numpy.rint``: halves to even) and clipped to
  ``[0, 255]``. Work is done in blocks of frames, so no full-size float copy is made.

``.npz`` schema (:func:`ingest_npz`)
------------------------------------
========================= ============ ===================================================================
key                       required     content
========================= ============ ===================================================================
``frames``                yes          (T, H, W) / (T, H, W, 1) / (T, H, W, 3) uint8 or float (rule above)
``responses``             yes          (T, N) responses (spike counts, or continuous values)
``subject``               yes [#]_     0-d string, e.g. ``"monkeyA"``
``sampling_rate``         yes [#]_     0-d number, samples per second
``name``                  no           0-d string; default: the file name without ``.npz``
``response_type``         no           0-d string ``"counts"`` (default) or ``"continuous"``
``trial_ids``             no           (T,) integers; default ``arange(T)`` (every sample its own trial)
``dfs``                   no           (T, N) 0/1 validity mask; default all ones
``behavior``              no           (T, D) floats
``behavior_names``        no           (D,) strings
``neuron_ids``            no           (N,) unique integers; default ``arange(N)``
``stim_type_names``       no           (K,) strings naming the codes of ``covariates.stim_type``
``covariates.<name>``     no           (T, ...) bool/int/float per-sample covariate ``<name>``
========================= ============ ===================================================================

.. [#] unless given as an override (``ingest_npz(path, out, subject=..., sampling_rate=...)``).

Keyword ``overrides`` of :func:`ingest_npz` replace (or supply) any of these and accept every keyword of
:func:`ingest_arrays`. Unknown keys are errors (they are usually typos). The file is read with
``allow_pickle=False``; strings must therefore be numpy unicode arrays (``np.array("monkeyA")``).

Non-finite values (:func:`nonfinite`)
--------------------------------------
NaN or inf in ``responses`` or ``behavior`` are refused: the error names the key, the count (NaN, +inf, -inf)
and the first positions ``(t, neuron)`` / ``(t, column)``. With ``mask_nonfinite=True`` (``neurotrain ingest npz
... --mask-nonfinite``, also ``allen-v1``) they are masked instead: a response becomes 0 with ``dfs`` 0 at that
entry; a behaviour value becomes 0 and its whole sample gets ``dfs`` 0 (behaviour feeds every neuron's prediction
at that time, so the sample leaves training, validation and evaluation). What was masked is recorded in the
session's metadata, ``extra_meta["nonfinite_masked"]``: per key the count, the NaN / +inf / -inf counts and the
exact entries as runs ``[column, start, stop)`` (plus, for behaviour, the masked samples). Frames with NaN or inf
are always refused (a frame feeds many samples' windows).

Errors are :class:`IngestError` (a ``ValueError``) naming the argument, or the ``.npz`` file and key;
inconsistencies found while writing are :class:`~neurotrain.data.session.SessionError` (also a
``ValueError``) naming the session path and key.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from neurotrain.errors import DataError
from .session import RESPONSE_TYPES, write_session

__all__ = [
    "IngestError",
    "BT601_WEIGHTS",
    "COLORS",
    "COWLEY_V4_SESSIONS",
    "cowley_v4_sessions",
    "frames_to_uint8",
    "ingest_arrays",
    "ingest_npz",
    "import_cowley_v4",
    "import_allen_v1",
    "load_raw_repeats_cowley",
    "load_allen_single_trials",
]

#: ITU-R BT.601 luma weights for (R, G, B).
BT601_WEIGHTS = (0.299, 0.587, 0.114)

_BLOCK_ELEMS = 1 << 20  # pixels (per channel) converted per block: keeps float temporaries ~8 MB
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class IngestError(DataError):
    """Input to an ingestion function is missing or invalid (the message names the argument/file and key)."""


Label = Callable[[str], str]


def _arg_label(key: str) -> str:
    return f"argument {key!r}"


# ----------------------------------------------------------------------------------------------
# frames
# ----------------------------------------------------------------------------------------------


#: ``color`` values of :func:`frames_to_uint8` and the importers: 8-bit luminance (the default) or RGB.
COLORS = ("luminance", "rgb")


def frames_to_uint8(frames: Any, *, frame_range: str = "auto", label: str = "argument 'frames'",
                    color: str = "luminance") -> np.ndarray:
    """Convert frames to (T, H, W) uint8 luminance (``color="luminance"``) or (T, H, W, 3) uint8 RGB
    (``color="rgb"``; grey input replicated into 3 channels) following the rule in the module docstring.

    ``frame_range``: ``"auto"``, ``"unit"`` ([0, 1] floats) or ``"byte"`` ([0, 255] values).
    """
    if frame_range not in ("auto", "unit", "byte"):
        raise IngestError(f"argument 'frame_range': must be 'auto', 'unit' or 'byte', got {frame_range!r}")
    if color not in COLORS:
        raise IngestError(f"argument 'color': must be one of {list(COLORS)}, got {color!r}")
    if color == "rgb":
        return _frames_to_rgb(frames, frame_range, label)
    a = np.asarray(frames)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)):
        raise IngestError(f"{label}: expected shape (T, H, W), (T, H, W, 1) or (T, H, W, 3), got {a.shape}")
    if min(a.shape) == 0:
        raise IngestError(f"{label}: empty frames array of shape {a.shape}")
    rgb = a.ndim == 4
    dt = a.dtype
    if dt == np.uint8:
        scale, lo, hi = 1.0, 0.0, 255.0
        if not rgb:
            return np.ascontiguousarray(a)
    elif dt == np.bool_:
        raise IngestError(f"{label}: boolean frames are ambiguous; convert them to uint8 0/255 first")
    elif np.issubdtype(dt, np.integer):
        mn, mx = int(a.min()), int(a.max())
        if mn < 0 or mx > 255:
            raise IngestError(f"{label}: integer frames must lie in [0, 255], got [{mn}, {mx}]")
        if frame_range == "unit":
            raise IngestError(f"{label}: frame_range='unit' needs float frames, got {dt}")
        scale, lo, hi = 1.0, 0.0, 255.0
    elif np.issubdtype(dt, np.floating):
        mn, mx = float(np.min(a)), float(np.max(a))
        if not (np.isfinite(mn) and np.isfinite(mx)):
            raise IngestError(f"{label}: contains NaN or inf")
        rng = frame_range
        if rng == "auto":
            rng = "unit" if (mn >= 0.0 and mx <= 1.0) else "byte"
        tol = 1e-6 if rng == "unit" else 1e-3
        top = 1.0 if rng == "unit" else 255.0
        if mn < -tol or mx > top + tol:
            raise IngestError(
                f"{label}: float frames must lie in [0, 1] (scaled by 255) or [0, 255] (taken as is), "
                f"got [{mn:g}, {mx:g}]" + ("" if frame_range == "auto" else f" with frame_range={frame_range!r}")
            )
        scale = 255.0 if rng == "unit" else 1.0
        lo, hi = 0.0, 255.0
    else:
        raise IngestError(f"{label}: unsupported dtype {dt} (use uint8, integers in [0, 255] or floats)")

    T = a.shape[0]
    out = np.empty(a.shape[:3], dtype=np.uint8)
    block = max(1, _BLOCK_ELEMS // int(np.prod(a.shape[1:3])))
    for s in range(0, T, block):
        blk = a[s:s + block]
        if rgb:
            wr, wg, wb = BT601_WEIGHTS
            f = blk[..., 0] * wr  # float64 (b, H, W)
            f += blk[..., 1] * wg
            f += blk[..., 2] * wb
        else:
            f = blk.astype(np.float64)
        if scale != 1.0:
            f *= scale
        np.rint(f, out=f)
        np.clip(f, lo, hi, out=f)
        out[s:s + block] = f
    return out


def _frames_to_rgb(frames: Any, frame_range: str, label: str) -> np.ndarray:
    """(T, H, W[, 1]) or (T, H, W, 3) frames -> (T, H, W, 3) uint8: each channel by the range rule (the range of
    float frames judged over all channels together); grey frames replicated into three equal channels."""
    a = np.asarray(frames)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 4 and a.shape[-1] == 3:
        if a.dtype == np.uint8:
            return np.ascontiguousarray(a)
        if min(a.shape) == 0:
            raise IngestError(f"{label}: empty frames array of shape {a.shape}")
        # the range rule on all channels at once: (T, H, W, 3) -> (T, 3 * H, W) grey, converted, and back
        planes = np.moveaxis(a, -1, 1).reshape(a.shape[0], 3 * a.shape[1], a.shape[2])
        grey = frames_to_uint8(planes, frame_range=frame_range, label=label)
        return np.ascontiguousarray(np.moveaxis(grey.reshape(a.shape[0], 3, a.shape[1], a.shape[2]), 1, -1))
    if a.ndim != 3:
        raise IngestError(f"{label}: expected shape (T, H, W), (T, H, W, 1) or (T, H, W, 3), got {a.shape}")
    grey = frames_to_uint8(a, frame_range=frame_range, label=label)
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))


# ----------------------------------------------------------------------------------------------
# arrays
# ----------------------------------------------------------------------------------------------


def _check_name(label: str, name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise IngestError(f"{label}: session name {name!r} must be a folder name of letters, digits and ._+- "
                          "(starting with a letter or digit)")
    return name


def _numeric(label: str, x: Any, ndim: int | None = None, *, allow_bool: bool = False) -> np.ndarray:
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.number) or (allow_bool and a.dtype == np.bool_)) or np.issubdtype(a.dtype, np.complexfloating):
        raise IngestError(f"{label}: expected a numeric array, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise IngestError(f"{label}: expected a {ndim}-D array, got shape {a.shape}")
    return a


#: positions listed in a refusal's message
_SHOW_POSITIONS = 5


def _runs(bad: np.ndarray) -> list[list[int]]:
    """``[[column, start, stop], ...]`` (stop exclusive; by column, then time) of the True entries of a (T, K)
    mask: exact, and short for the long stretches a lost unit or a blink leaves."""
    out = []
    for k in np.flatnonzero(bad.any(axis=0)):
        col = np.concatenate(([False], bad[:, k], [False])).astype(np.int8)
        edges = np.flatnonzero(np.diff(col))
        out += [[int(k), int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]
    return out


def _count_kinds(a: np.ndarray) -> dict:
    return {"nan": int(np.isnan(a).sum()), "posinf": int(np.isposinf(a).sum()), "neginf": int(np.isneginf(a).sum())}


def nonfinite(label: Label, robs: np.ndarray, dfs: np.ndarray | None, behavior: np.ndarray | None, *,
              mask: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict | None]:
    """NaN / inf in the responses (T, N) or the behaviour (T, D): refused, or (``mask``) masked through ``dfs``.

    Refused: :class:`IngestError` naming the key, the count (NaN, +inf, -inf) and the first positions
    ``(t, neuron)`` / ``(t, column)``. Masked: a response becomes 0 with ``dfs`` 0 at that entry; a behaviour value
    becomes 0 and its whole sample gets ``dfs`` 0 for every neuron (the behaviour is an input of every neuron's
    prediction at ``t``, so the sample leaves training, validation and evaluation). Returns ``(robs, dfs, behavior,
    record)``: copies where something was masked, and ``record`` for the session metadata
    (``extra_meta["nonfinite_masked"]``; None when nothing was masked)::

        {"responses": {"count", "nan", "posinf", "neginf", "runs": [[neuron, start, stop], ...]},
         "behavior":  {"count", "nan", "posinf", "neginf", "runs": [[column, start, stop], ...],
                       "samples": number of samples masked, "sample_runs": [[start, stop], ...]}}
    """
    parts = {"responses": robs}
    if behavior is not None and np.issubdtype(behavior.dtype, np.floating):
        parts["behavior"] = behavior
    bad = {k: ~np.isfinite(a) for k, a in parts.items() if np.issubdtype(a.dtype, np.floating)}
    bad = {k: b for k, b in bad.items() if b.any()}
    if not bad:
        return robs, dfs, behavior, None
    if not mask:
        key = next(iter(bad))
        b, what = bad[key], "neuron" if key == "responses" else "column"
        pos = np.argwhere(b)[:_SHOW_POSITIONS]
        names = {"nan": "NaN", "posinf": "+inf", "neginf": "-inf"}
        kinds = ", ".join(f"{v} {names[k]}" for k, v in _count_kinds(parts[key]).items() if v)
        more = ", ..." if b.sum() > len(pos) else ""
        raise IngestError(f"{label(key)}: {int(b.sum())} non-finite value(s) ({kinds}); first at (t, {what}) "
                          + ", ".join(f"({t}, {j})" for t, j in pos) + more
                          + "; fix them, or pass mask_nonfinite=True (neurotrain ingest ... --mask-nonfinite) to set "
                          "them to 0 and mark them invalid in dfs" + (" (a behaviour value masks its whole sample)"
                                                                     if key == "behavior" else ""))
    T, N = robs.shape
    dfs = np.ones((T, N), dtype=np.uint8) if dfs is None else np.array(dfs, dtype=np.uint8)
    record = {}
    if "responses" in bad:
        b = bad["responses"]
        record["responses"] = {"count": int(b.sum()), **_count_kinds(robs), "runs": _runs(b)}
        robs = np.where(b, 0, robs).astype(robs.dtype)
        dfs[b] = 0
    if "behavior" in bad:
        b = bad["behavior"]
        rows = b.any(axis=1)
        record["behavior"] = {"count": int(b.sum()), **_count_kinds(behavior), "runs": _runs(b),
                              "samples": int(rows.sum()), "sample_runs": [r[1:] for r in _runs(rows[:, None])]}
        behavior = np.where(b, 0, behavior).astype(behavior.dtype)
        dfs[rows] = 0
    return robs, dfs, behavior, record


def _ingest(
    out_dir: str | os.PathLike, label: Label, *, name: Any, subject: Any, sampling_rate: Any, frames: Any,
    responses: Any, trial_ids: Any = None, dfs: Any = None, behavior: Any = None, behavior_names: Any = None,
    neuron_ids: Any = None, covariates: Mapping[str, Any] | None = None, response_type: Any = "counts",
    stim_type_names: Any = None, extra_meta: Mapping[str, Any] | None = None, frame_range: str = "auto",
    overwrite: bool = False, color: str = "luminance",
    mask_nonfinite: bool = False,
) -> Path:
    name = _check_name(label("name"), name)
    if not isinstance(subject, str) or not subject:
        raise IngestError(f"{label('subject')}: expected a non-empty string, got {subject!r}")
    try:
        sampling_rate = float(sampling_rate)
    except (TypeError, ValueError):
        raise IngestError(f"{label('sampling_rate')}: expected a number, got {sampling_rate!r}") from None
    if not (np.isfinite(sampling_rate) and sampling_rate > 0):
        raise IngestError(f"{label('sampling_rate')}: must be a positive number, got {sampling_rate!r}")
    if response_type not in RESPONSE_TYPES:
        raise IngestError(f"{label('response_type')}: must be one of {list(RESPONSE_TYPES)}, got {response_type!r}")

    frames_u8 = frames_to_uint8(frames, frame_range=frame_range, label=label("frames"), color=color)
    T = frames_u8.shape[0]

    robs = _numeric(label("responses"), responses, 2, allow_bool=True)
    if robs.shape[0] != T:
        raise IngestError(f"{label('responses')}: has {robs.shape[0]} rows but frames has {T} (expected (T, N))")
    if robs.shape[1] == 0:
        raise IngestError(f"{label('responses')}: has zero neurons")
    N = robs.shape[1]

    if trial_ids is None:
        trial_ids = np.arange(T, dtype=np.int64)
    else:
        trial_ids = _numeric(label("trial_ids"), trial_ids, 1)
        if trial_ids.shape[0] != T:
            raise IngestError(f"{label('trial_ids')}: has {trial_ids.shape[0]} entries but frames has {T}")
        if not np.issubdtype(trial_ids.dtype, np.integer):
            if not np.all(trial_ids == np.round(trial_ids)):
                raise IngestError(f"{label('trial_ids')}: expected integers, got non-integer {trial_ids.dtype}")
            trial_ids = trial_ids.astype(np.int64)
    if dfs is not None:
        dfs = _numeric(label("dfs"), dfs, 2, allow_bool=True)
        if dfs.shape != (T, N):
            raise IngestError(f"{label('dfs')}: expected shape {(T, N)}, got {dfs.shape}")
        if dfs.size and not np.all((dfs == 0) | (dfs == 1)):
            raise IngestError(f"{label('dfs')}: must contain only 0 and 1")
    if behavior is not None:
        behavior = _numeric(label("behavior"), behavior, 2)
        if behavior.shape[0] != T:
            raise IngestError(f"{label('behavior')}: has {behavior.shape[0]} rows but frames has {T}")
    robs, dfs, behavior, masked = nonfinite(label, robs, dfs, behavior, mask=mask_nonfinite)
    if masked:
        extra_meta = {**dict(extra_meta or {}), "nonfinite_masked": masked}
    if response_type == "counts" and robs.size and float(robs.min()) < 0:
        raise IngestError(f"{label('responses')}: has negative values but response_type is 'counts' "
                          "(use response_type='continuous')")
    if behavior_names is not None:
        behavior_names = [str(b) for b in np.asarray(behavior_names).reshape(-1)]
        if behavior is None:
            raise IngestError(f"{label('behavior_names')}: given without behavior")
        if len(behavior_names) != behavior.shape[1]:
            raise IngestError(f"{label('behavior_names')}: has {len(behavior_names)} names for "
                              f"{behavior.shape[1]} behavior columns")
    if neuron_ids is not None:
        neuron_ids = _numeric(label("neuron_ids"), neuron_ids, 1)
        if neuron_ids.shape[0] != N:
            raise IngestError(f"{label('neuron_ids')}: has {neuron_ids.shape[0]} ids for {N} neurons")
        if len(np.unique(neuron_ids)) != N:
            raise IngestError(f"{label('neuron_ids')}: ids are not unique")
    covs: dict[str, np.ndarray] = {}
    if covariates is not None:
        if not isinstance(covariates, Mapping):
            raise IngestError(f"{label('covariates')}: expected a mapping name -> array")
        for cname, c in covariates.items():
            clab = label(f"covariates.{cname}") if label is not _arg_label else f"argument 'covariates[{cname!r}]'"
            c = _numeric(clab, c, allow_bool=True)
            if c.ndim == 0 or c.shape[0] != T:
                raise IngestError(f"{clab}: expected first dim T={T}, got shape {c.shape}")
            covs[str(cname)] = c
    if stim_type_names is not None:
        stim_type_names = [str(s) for s in np.asarray(stim_type_names).reshape(-1)]

    return write_session(
        Path(out_dir) / name, name=name, subject=subject, sampling_rate=sampling_rate, frames=frames_u8,
        robs=robs, trial_ids=trial_ids, dfs=dfs, behavior=behavior, behavior_names=behavior_names,
        neuron_ids=neuron_ids, covariates=covs or None, response_type=response_type,
        stim_type_names=stim_type_names, extra_meta=extra_meta, overwrite=overwrite,
    )


def ingest_arrays(
    out_dir: str | os.PathLike,
    *,
    name: str,
    subject: str,
    sampling_rate: float,
    frames: np.ndarray,
    responses: np.ndarray,
    trial_ids: np.ndarray | None = None,
    dfs: np.ndarray | None = None,
    behavior: np.ndarray | None = None,
    behavior_names: Sequence[str] | None = None,
    neuron_ids: np.ndarray | None = None,
    covariates: Mapping[str, np.ndarray] | None = None,
    response_type: str = "counts",
    stim_type_names: Sequence[str] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    frame_range: str = "auto",
    overwrite: bool = False,
    mask_nonfinite: bool = False,
    color: str = "luminance",
) -> Path:
    """Validate, convert and write one session to ``out_dir/<name>``; return its path.

    Args:
        frames: (T, H, W), (T, H, W, 1) or (T, H, W, 3); uint8, integer or float (see the module
            docstring for the conversion rule, ``frame_range`` included).
        responses: (T, N) responses; non-negative (possibly non-integer, e.g. repeat-averaged) spike
            counts for ``response_type="counts"``, any finite values for ``"continuous"``.
        trial_ids: (T,) integers; default ``arange(T)``: every sample its own trial (static images).
        dfs, behavior, behavior_names, neuron_ids, covariates, stim_type_names, extra_meta, overwrite:
            as in :func:`neurotrain.data.session.write_session`.
        mask_nonfinite: NaN / inf in ``responses`` or ``behavior`` are masked through ``dfs`` and recorded in the
            metadata (:func:`nonfinite`); by default they are refused.
        color: ``"luminance"`` (default: RGB frames become grey) or ``"rgb"`` (frames stored as (T, H, W, 3),
            grey frames replicated; the model then takes ``initial_input_channels: 3``).
    """
    return _ingest(
        out_dir, _arg_label, name=name, subject=subject, sampling_rate=sampling_rate, frames=frames,
        responses=responses, trial_ids=trial_ids, dfs=dfs, behavior=behavior, behavior_names=behavior_names,
        neuron_ids=neuron_ids, covariates=covariates, response_type=response_type,
        stim_type_names=stim_type_names, extra_meta=extra_meta, frame_range=frame_range, overwrite=overwrite,
        mask_nonfinite=mask_nonfinite, color=color,
    )


_NPZ_ARRAY_KEYS = ("frames", "responses", "trial_ids", "dfs", "behavior", "behavior_names", "neuron_ids",
                   "stim_type_names")
_NPZ_SCALAR_KEYS = ("name", "subject", "sampling_rate", "response_type")
_NPZ_REQUIRED = ("frames", "responses", "subject", "sampling_rate")
_INGEST_KWARGS = set(_NPZ_ARRAY_KEYS) | set(_NPZ_SCALAR_KEYS) | {"covariates", "extra_meta", "frame_range", "overwrite"}
_INGEST_KWARGS |= {"mask_nonfinite", "color"}


def ingest_npz(npz_path: str | os.PathLike, out_dir: str | os.PathLike, **overrides: Any) -> Path:
    """Write the session stored in ``npz_path`` (schema in the module docstring) to ``out_dir/<name>``.

    ``overrides`` replace or supply entries (any keyword of :func:`ingest_arrays`); ``None`` values
    are ignored, so CLI defaults can be passed through. ``covariates`` given as an override are merged
    over the file's ``covariates.<name>`` entries.
    """
    npz_path = Path(npz_path)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    bad = sorted(set(overrides) - _INGEST_KWARGS)
    if bad:
        raise IngestError(f"ingest_npz: unknown override(s) {bad}")

    def label(key: str) -> str:
        return f"{str(npz_path)!r}, key {key!r}"

    if not npz_path.is_file():
        raise IngestError(f"{str(npz_path)!r}: npz file does not exist")
    try:
        npz = np.load(npz_path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise IngestError(f"{str(npz_path)!r}: cannot read as .npz: {e}") from None
    with npz:
        files = list(npz.files)
        kw: dict[str, Any] = {}
        covs: dict[str, Any] = {}
        for key in files:
            if key.startswith("covariates."):
                cname = key[len("covariates."):]
                if not cname:
                    raise IngestError(f"{label(key)}: empty covariate name")
                covs[cname] = _npz_array(npz, key, label)
            elif key in _NPZ_ARRAY_KEYS:
                kw[key] = _npz_array(npz, key, label)
            elif key in _NPZ_SCALAR_KEYS:
                v = _npz_array(npz, key, label)
                if v.ndim != 0:
                    raise IngestError(f"{label(key)}: expected a scalar (0-d array), got shape {v.shape}")
                kw[key] = v.item()
            else:
                raise IngestError(f"{label(key)}: unknown key (expected {', '.join(_NPZ_ARRAY_KEYS + _NPZ_SCALAR_KEYS)} "
                                  "or covariates.<name>)")
    if "covariates" in overrides:
        covs.update(overrides.pop("covariates"))
    kw.update(overrides)
    for key in _NPZ_REQUIRED:
        if key not in kw:
            raise IngestError(f"{label(key)}: required key missing from the npz file")
    kw.setdefault("name", npz_path.name[:-4] if npz_path.name.endswith(".npz") else npz_path.stem)
    for key in ("name", "subject", "response_type"):
        if key in kw and isinstance(kw[key], np.ndarray):
            kw[key] = kw[key].item() if kw[key].ndim == 0 else kw[key]
    return _ingest(out_dir, label, covariates=covs or None, **kw)


def _npz_array(npz: Any, key: str, label: Label) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as e:  # object arrays need pickle
        raise IngestError(f"{label(key)}: cannot load without pickle ({e}); store numbers or numpy strings") from None


# ----------------------------------------------------------------------------------------------
# real recordings: Cowley et al. macaque V4
# ----------------------------------------------------------------------------------------------

#: Metadata of the sessions the Cowley et al. data set is known to hold: session -> (animal, n_neurons,
#: n_images, role in the paper), from shared/data/README.md. Metadata only: the importer takes whatever
#: sessions a folder holds, with counts and shapes from the files; a session not listed here gets the subject
#: passed to the importer (default ``"unknown"``) and no paper role.
COWLEY_V4_SESSIONS: dict[str, tuple[str, int, int, str]] = {
    "190923": ("WE", 33, 1200, "test"),
    "190925": ("WE", 36, 1200, "train"),
    "190927": ("WE", 31, 1200, "train"),
    "190928": ("WE", 24, 1200, "train"),
    "201025": ("PE", 89, 1200, "test"),
    "210224": ("PE", 67, 800, "validation"),
    "210225": ("PE", 55, 1200, "test"),
    "210322": ("PE", 59, 1200, "train"),
    "210621": ("RA", 51, 1200, "train"),
}

COWLEY_SOURCE = "github.com/cowleygroup/V4_compact_models (data_V4_responses/)"
COWLEY_LICENSE = "GPL-3.0"
COWLEY_CITATION = ("Cowley, Stan, Pillow & Smith, 'Compact deep neural network models of the visual cortex', "
                   "Nature (2026); preprint bioRxiv 2023.11.22.568315")
#: one sample = one image, responses counted in a 100 ms window after onset -> 10 samples/s nominal
COWLEY_SAMPLING_RATE = 10.0
_COWLEY_RESPONSES = re.compile(r"^responses_(.+)\.npy$")


def _resolve(data_dir: str | os.PathLike, sub: str, marker: str) -> Path:
    """``data_dir`` itself, or ``data_dir/sub`` when given the parent folder (e.g. shared/data)."""
    d = Path(data_dir)
    if not d.is_dir():
        raise IngestError(f"data directory {str(d)!r} does not exist")
    if not (d / marker).exists() and (d / sub / marker).exists():
        d = d / sub
    return d


def _need_file(p: Path) -> Path:
    if not p.is_file():
        raise IngestError(f"{str(p)!r}: required file is missing")
    return p


def _decode_zip_images(zpath: Path) -> tuple[list[str], np.ndarray]:
    """All JPEGs of a zip, sorted by file name -> (names, (n, H, W[, 3]) uint8)."""
    from PIL import Image

    try:
        zf = zipfile.ZipFile(zpath)
    except (OSError, zipfile.BadZipFile) as e:
        raise IngestError(f"{str(zpath)!r}: cannot open zip: {e}") from None
    with zf:
        entries = [i for i in zf.infolist() if not i.is_dir() and i.filename.lower().endswith((".jpg", ".jpeg"))
                   and not i.filename.startswith("__MACOSX/")]
        by_name: dict[str, zipfile.ZipInfo] = {}
        for i in entries:
            base = i.filename.rsplit("/", 1)[-1]
            if base in by_name:
                raise IngestError(f"{str(zpath)!r}: image name {base!r} appears twice")
            by_name[base] = i
        names = sorted(by_name)
        if not names:
            raise IngestError(f"{str(zpath)!r}: no JPEG images in the zip")
        imgs = []
        for n in names:
            with Image.open(io.BytesIO(zf.read(by_name[n])), formats=("JPEG",)) as im:
                if im.mode not in ("RGB", "L"):
                    im = im.convert("RGB")
                imgs.append(np.asarray(im))
    shapes = {a.shape for a in imgs}
    if len(shapes) != 1:
        raise IngestError(f"{str(zpath)!r}: images have different shapes {sorted(shapes)}")
    return names, np.stack(imgs)


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Lanczos-resize (T, H, W) or (T, H, W, C) uint8 frames to (T, size, size[, C]), in float (each channel on
    its own), rounded back to uint8."""
    from PIL import Image

    out = np.empty((frames.shape[0], size, size) + frames.shape[3:], dtype=np.uint8)
    for i, f in enumerate(frames):
        planes = [f] if f.ndim == 2 else [f[..., c] for c in range(f.shape[-1])]
        for c, plane in enumerate(planes):
            r = np.asarray(Image.fromarray(plane.astype(np.float32)).resize((size, size), Image.Resampling.LANCZOS))
            if f.ndim == 2:
                out[i] = np.clip(np.rint(r), 0, 255)
            else:
                out[i, ..., c] = np.clip(np.rint(r), 0, 255)
    return out


def cowley_v4_sessions(data_dir: str | os.PathLike) -> list[str]:
    """The session ids a Cowley V4 folder holds: every ``responses_repeat_averaged/responses_<id>.npy`` that
    has its ``images/images_<id>.zip`` beside it, sorted. A responses file without its images is an error
    naming the missing zip (a half-copied folder should not silently lose a session)."""
    d = _resolve(data_dir, "cowley_v4", "responses_repeat_averaged")
    rdir = d / "responses_repeat_averaged"
    if not rdir.is_dir():
        raise IngestError(f"{str(d)!r}: no responses_repeat_averaged/ folder (is this the cowley_v4 folder?)")
    ids = sorted(m.group(1) for f in rdir.iterdir() if (m := _COWLEY_RESPONSES.match(f.name)) and f.is_file())
    if not ids:
        raise IngestError(f"{str(rdir)!r}: no responses_<session>.npy files")
    for s in ids:
        _need_file(d / "images" / f"images_{s}.zip")
    return ids


def import_cowley_v4(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    sessions: Iterable[str | int] | None = None,
    image_size: int | None = None,
    subject: str | None = None,
    overwrite: bool = False,
    color: str = "luminance",
) -> list[Path]:
    """Import Cowley et al. macaque V4 sessions into ``out_dir/cowley_v4_<session>``.

    ``data_dir`` is the ``cowley_v4`` folder (or its parent); ``sessions`` defaults to every session it
    holds (:func:`cowley_v4_sessions`) and may name any id whose two files exist. One sample = one image:
    frames are the session's JPEGs sorted by file name (image i = column i of the responses) converted to
    8-bit BT.601 luminance (``color="luminance"``, the default: frames ``(T, H, W)``) or kept as 8-bit RGB
    (``color="rgb"``: frames ``(T, H, W, 3)``, what the published models of these recordings see, at their
    full 112 x 112), Lanczos-resized to ``image_size`` x ``image_size`` if given (else kept at their
    size; each colour channel resized on its own); ``robs`` = ``responses_<session>.npy`` transposed to
    (n_images, n_neurons) float32
    (repeat-averaged spike counts in a 100 ms window, response_type ``"counts"``); ``trial_ids`` =
    ``arange`` (each image its own trial); ``sampling_rate`` = 10.0 (one 100 ms window per sample: there
    is no time axis). Neuron and image counts come from the files.

    ``subject``: the animal of a session not in :data:`COWLEY_V4_SESSIONS` (default ``"unknown"``); the
    known sessions keep their animal ID (a ``subject`` given explicitly overrides it for every session).
    """
    d = _resolve(data_dir, "cowley_v4", "responses_repeat_averaged")
    sessions = cowley_v4_sessions(d) if sessions is None else [str(s) for s in sessions]
    if not sessions:
        raise IngestError("argument 'sessions': empty list")
    if image_size is not None and (int(image_size) != image_size or image_size < 1):
        raise IngestError(f"argument 'image_size': expected a positive integer, got {image_size!r}")
    if subject is not None and (not isinstance(subject, str) or not subject):
        raise IngestError(f"argument 'subject': expected a non-empty string, got {subject!r}")
    if color not in COLORS:
        raise IngestError(f"argument 'color': must be one of {list(COLORS)}, got {color!r}")
    out: list[Path] = []
    for s in sessions:
        _check_name("argument 'sessions'", f"cowley_v4_{s}")
        animal, _, _, role = COWLEY_V4_SESSIONS.get(s, (None, None, None, None))
        rpath = _need_file(d / "responses_repeat_averaged" / f"responses_{s}.npy")
        zpath = _need_file(d / "images" / f"images_{s}.zip")
        try:
            resp = np.load(rpath, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise IngestError(f"{str(rpath)!r}: cannot read as .npy: {e}") from None
        if resp.ndim != 2:
            raise IngestError(f"{str(rpath)!r}: expected (n_neurons, n_images), got shape {resp.shape}")
        names, imgs = _decode_zip_images(zpath)
        if len(names) != resp.shape[1]:
            raise IngestError(f"{str(zpath)!r}: has {len(names)} images but {rpath.name} has {resp.shape[1]} columns")
        frames = frames_to_uint8(imgs, label=repr(str(zpath)), color=color)
        colour = "RGB" if imgs.ndim == 4 else "grey"
        stored = "ITU-R BT.601 luminance, uint8" if color == "luminance" else \
            ("RGB, uint8" if imgs.ndim == 4 else "grey replicated into 3 RGB channels, uint8")
        del imgs
        H, W = frames.shape[1:3]
        if image_size is not None and (int(image_size), int(image_size)) != (H, W):
            frames = _resize(frames, int(image_size))
        extra = {
            "source": COWLEY_SOURCE, "license": COWLEY_LICENSE, "citation": COWLEY_CITATION,
            "dataset": "cowley_v4", "session": s, "animal": subject or animal or "unknown",
            "paper_split": role, "known_session": animal is not None,
            "responses": "spike counts in a 100 ms window after image onset, averaged over repeats",
            "response_window_ms": 100,
            "sampling_rate_note": "one sample per image; sampling_rate 10/s = one 100 ms window per sample",
            "frames": (f"JPEG {H}x{W} {colour} -> {stored}"
                       + (f", Lanczos-resized to {int(image_size)}x{int(image_size)}" if image_size is not None
                          and (int(image_size), int(image_size)) != (H, W) else "")),
            "import_options": {"image_size": None if image_size is None else int(image_size), "color": color},
            "source_files": [f"responses_repeat_averaged/{rpath.name}", f"images/{zpath.name}"],
            "image_files": names,
        }
        out.append(_ingest(
            out_dir, _arg_label, name=f"cowley_v4_{s}", subject=subject or animal or "unknown",
            sampling_rate=COWLEY_SAMPLING_RATE, frames=frames, responses=resp.T, response_type="counts",
            extra_meta=extra, overwrite=overwrite, color=color,
        ))
    return out


def load_raw_repeats_cowley(data_dir: str | os.PathLike, session: str = "201016") -> np.ndarray:
    """The single-repeat responses ``responses_raw/responses_<session>.npy``: float64
    (n_neurons, n_images, n_repeats) = (82, 600, 10) for 201016, NaN where an image had fewer repeats.
    (Its images are not distributed: use it for noise-ceiling statistics.)"""
    d = _resolve(data_dir, "cowley_v4", "responses_raw")
    p = _need_file(d / "responses_raw" / f"responses_{session}.npy")
    a = np.load(p, allow_pickle=False)
    if a.ndim != 3:
        raise IngestError(f"{str(p)!r}: expected (n_neurons, n_images, n_repeats), got shape {a.shape}")
    return a


# ----------------------------------------------------------------------------------------------
# real recordings: Allen Brain Observatory mouse V1 (calcium), preprocessed export
# ----------------------------------------------------------------------------------------------

ALLEN_CONTAINER = "511510667"
ALLEN_SOURCE = ("github.com/psailamul/Allen_Brain_Observatory (Allen_data_170513/), an export of Allen Brain "
                "Observatory experiment container 511510667 (Cux2-CreERT2; Ai93 GCaMP6f; VISp, 275 um)")
ALLEN_LICENSE = "Allen Institute terms of use (research use, with citation); no licence in the source repository"
ALLEN_CITATION = ("Allen Brain Observatory, Allen Institute for Brain Science (2016), "
                  "observatory.brain-map.org; de Vries et al., Nature Neuroscience 23, 138-151 (2020)")
#: natural scenes are shown for 250 ms each -> 4 samples/s nominal
ALLEN_SAMPLING_RATE = 4.0
#: Metadata of the experiment containers whose export is known (metadata only: any export of this layout
#: imports; an unknown container gets the subject passed to the importer, default ``allen_<container>``).
ALLEN_CONTAINERS: dict[str, dict] = {
    "511510667": {"subject": "cux2_511510667", "cre_line": "Cux2-CreERT2", "reporter_line": "Ai93(TITL-GCaMP6f)",
                  "targeted_structure": "VISp", "imaging_depth_um": 275, "source": ALLEN_SOURCE},
}
_ALLEN_SPLIT_FILES = ("Allen_train_input.npy", "Allen_train_output.npy", "Allen_test_input.npy", "Allen_test_output.npy")
_ALLEN_SCENES = re.compile(r"^all_input_scenes_\d+_\d+\.npy$")


def _allen_folder(data_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(the export folder, its ``all_input_scenes_<n>_<pixels>.npy``), whatever the scene and pixel counts."""
    d = Path(data_dir)
    if not d.is_dir():
        raise IngestError(f"data directory {str(d)!r} does not exist")
    if not (d / "Allen_train_input.npy").exists() and (d / "allen_v1_natural_scenes" / "Allen_train_input.npy").exists():
        d = d / "allen_v1_natural_scenes"
    found = sorted(f for f in d.iterdir() if _ALLEN_SCENES.match(f.name))
    if len(found) != 1:
        raise IngestError(f"{str(d)!r}: expected one all_input_scenes_<n>_<pixels>.npy, found "
                          f"{[f.name for f in found] or 'none'}")
    return d, found[0]


def _load_npy(p: Path) -> np.ndarray:
    try:
        return np.load(_need_file(p), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise IngestError(f"{str(p)!r}: cannot read as .npy: {e}") from None


def _match_rows(label: str, rows: np.ndarray, scenes: np.ndarray) -> np.ndarray:
    """Index into ``scenes`` of every row of ``rows`` (exact pixel equality, required unique)."""
    idx = np.full(len(rows), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        hit = np.flatnonzero(np.all(scenes == r[None, :], axis=1))
        if len(hit) != 1:
            raise IngestError(f"{label}: row {i} matches {len(hit)} of the {len(scenes)} scenes (expected exactly 1)")
        idx[i] = hit[0]
    return idx


def import_allen_v1(data_dir: str | os.PathLike, out_dir: str | os.PathLike, container: str = ALLEN_CONTAINER,
                    subject: str | None = None, overwrite: bool = False, mask_nonfinite: bool = False) -> Path:
    """Import an Allen V1 natural-scenes export as one calcium session ``out_dir/allen_v1_<container>``.

    ``data_dir`` is the export folder (``allen_v1_natural_scenes``, or its parent): ``all_input_scenes_<n>_<p>.npy``
    (n scenes of p = side x side grey pixels), ``Allen_{train,test}_input.npy`` (rows of those pixels) and
    ``Allen_{train,test}_output.npy`` (per-image responses, one column per neuron). Counts and sizes come
    from the files (the distributed export: 118 scenes of 31x31, 100 + 18 rows, 212 neurons). Rows: the train
    images, then the test images, each its own trial; response_type ``"continuous"``. Covariate
    ``repeat_image`` (T,) int64 = index of the row's image in the scenes file (exact pixel equality; for the
    distributed export it equals ``np.random.seed(31); np.random.permutation(118)``, the exporting script's
    split). A scene may appear in at most one row. ``extra_meta["split_rows"]`` records the exported rows.

    ``container``: the experiment container the export comes from (the distributed one is 511510667; the
    files do not say); ``subject`` defaults to the known container's, else ``allen_<container>``.

    ``Allen_test_output_big.npy`` is NOT imported: in the distributed export its 900 rows are not the 18
    test images x 50 repeats but 900 single trials drawn at random from all 5900 trials of all 118 images,
    and the image of a row is not recorded (see :func:`load_allen_single_trials` and ``extra_meta["notes"]``).
    """
    d, scenes_file = _allen_folder(data_dir)
    container = str(container)
    known = ALLEN_CONTAINERS.get(container, {})
    subject = subject or known.get("subject") or f"allen_{container}"
    scenes = _load_npy(scenes_file)
    tri, tro, tei, teo = (_load_npy(d / f) for f in _ALLEN_SPLIT_FILES)
    if scenes.ndim != 2:
        raise IngestError(f"{str(scenes_file)!r}: expected (n_scenes, n_pixels), got shape {scenes.shape}")
    n_scenes, n_pix = scenes.shape
    side = int(round(n_pix ** 0.5))
    if side * side != n_pix:
        raise IngestError(f"{str(scenes_file)!r}: {n_pix} pixels per scene is not a square image")
    for f, a in (("Allen_train_input.npy", tri), ("Allen_test_input.npy", tei)):
        if a.ndim != 2 or a.shape[1] != n_pix:
            raise IngestError(f"{str(d / f)!r}: expected shape (n_rows, {n_pix}), got {a.shape}")
    for f, a, rows in (("Allen_train_output.npy", tro, tri), ("Allen_test_output.npy", teo, tei)):
        if a.ndim != 2 or a.shape[0] != rows.shape[0]:
            raise IngestError(f"{str(d / f)!r}: expected shape ({rows.shape[0]}, n_neurons), got {a.shape}")
    if tro.shape[1] != teo.shape[1]:
        raise IngestError(f"{str(d)!r}: train and test outputs have {tro.shape[1]} and {teo.shape[1]} neurons")
    idx = np.concatenate([_match_rows(repr(str(d / "Allen_train_input.npy")), tri, scenes),
                          _match_rows(repr(str(d / "Allen_test_input.npy")), tei, scenes)])
    if len(np.unique(idx)) != len(idx):
        raise IngestError(f"{str(d)!r}: a scene appears in more than one train/test row")
    n_tr, n_te = len(tri), len(tei)
    pix = np.concatenate([tri, tei])
    frames = frames_to_uint8(pix.reshape(-1, side, side), frame_range="byte", label=repr(str(d / "Allen_*_input.npy")))
    responses = np.concatenate([tro, teo])
    extra = {
        "source": known.get("source", f"an Allen Brain Observatory natural-scenes export ({d})"),
        "license": ALLEN_LICENSE, "citation": ALLEN_CITATION, "dataset": "allen_v1",
        "experiment_container_id": int(container) if container.isdigit() else container,
        **{k: v for k, v in known.items() if k not in ("subject", "source")},
        "responses": ("per-image mean_sweep_response (dF/F-type values, can be negative) as exported in "
                      "Allen_train_output.npy / Allen_test_output.npy"),
        "sampling_rate_note": "one sample per image presentation; sampling_rate 4/s = one 250 ms presentation",
        "frames": f"{n_scenes} natural scenes downsampled to {side}x{side} grey (0..255) by the exporter, row-major",
        "split_rows": {"train": [0, n_tr], "test": [n_tr, n_tr + n_te]},
        "source_files": [scenes_file.name, *_ALLEN_SPLIT_FILES],
        "notes": [
            f"Row order: Allen_train_* ({n_tr}) then Allen_test_* ({n_te}); covariate repeat_image = index into "
            f"{scenes_file.name} (exact pixel match).",
        ],
    }
    if container == ALLEN_CONTAINER:
        extra["notes"] += [
            "repeat_image equals numpy seed-31 permutation(118), the exporting script's split.",
            "The exported 'mean' outputs have the across-image variance of single trials (ratio 0.95) and 15 of "
            "the 118 rows equal single-trial rows of Allen_test_output_big.npy exactly: they behave like one "
            "trial per image, not 50-repeat means.",
            "Allen_test_output_big.npy (900 rows) is not imported: its rows are 900 single trials drawn at "
            "random (seed-31 permutation(5900)[5000:]) from all 118 images; their images are not recorded.",
        ]
    return _ingest(
        out_dir, _arg_label, name=f"allen_v1_{container}", subject=subject,
        sampling_rate=ALLEN_SAMPLING_RATE, frames=frames, responses=responses, response_type="continuous",
        covariates={"repeat_image": idx}, extra_meta=extra, overwrite=overwrite, mask_nonfinite=mask_nonfinite,
    )


def load_allen_single_trials(data_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``Allen_test_output_big.npy`` (n_trials, n_neurons) single trials and, per row, the scene index (in the
    scenes file's order) where it can be established - the rows identical to an exported per-image row (15 of
    900 in the distributed export) - else -1."""
    d, scenes_file = _allen_folder(data_dir)
    big = _load_npy(d / "Allen_test_output_big.npy")
    scenes = _load_npy(scenes_file)
    tri, tro, tei, teo = (_load_npy(d / f) for f in _ALLEN_SPLIT_FILES)
    idx = np.concatenate([_match_rows("Allen_train_input.npy", tri, scenes), _match_rows("Allen_test_input.npy", tei, scenes)])
    per_image = np.concatenate([tro, teo])
    image = np.full(len(big), -1, dtype=np.int64)
    for i, row in enumerate(big):
        hit = np.flatnonzero(np.all(per_image == row[None, :], axis=1))
        if len(hit) == 1:
            image[i] = idx[hit[0]]
    return big, image
