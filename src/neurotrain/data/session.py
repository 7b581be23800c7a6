"""On-disk recording sessions: one session = one folder.

A session folder is a Hugging Face ``datasets`` Arrow dataset (written with
:meth:`datasets.Dataset.save_to_disk`) holding one row per time bin, in time order, plus a
``neurotrain_session.json`` metadata file::

    <session>/
        data-00000-of-00001.arrow   # Arrow IPC stream, ONE record batch
        dataset_info.json           # written by `datasets`
        state.json                  # written by `datasets`
        neurotrain_session.json     # neurotrain metadata (see `write_session`)

Columns (one row per time bin ``t``):

========== ======================================= =====================================
column     Arrow type                              meaning
========== ======================================= =====================================
frame      fixed_size_list<uint8>[H*W*C]           stimulus frame, row-major (H, W) or (H, W, C)
robs       fixed_size_list<float32>[N]             spike counts per neuron
dfs        fixed_size_list<uint8>[N]               validity mask (1 = valid)
behavior   fixed_size_list<float32>[D] (optional)  e.g. eye position
true_rates fixed_size_list<float32>[N] (optional)  ground-truth rates (synthetic data)
trial_id   int64                                   trial of the bin
cov.<name> <dtype> or fixed_size_list<dtype>[K]    optional named covariate (see below)
========== ======================================= =====================================

Frames are 8-bit luminance ``(T, H, W)`` (``C = 1``) or 8-bit colour ``(T, H, W, C)`` with ``C > 1`` channels
(RGB: ``C = 3``), channels last. The metadata's ``frame_channels`` records ``C``; ``frame_shape`` stays
``[H, W]``. Schema versions: a grey session is written as version 1 (the format of every folder written
before colour existed, which has no ``frame_channels`` and reads as ``C = 1``); a colour session as version 2
(:data:`SCHEMA_VERSION`), which older neurotrain versions refuse by its version instead of misreading it.

``robs`` holds spike counts when the metadata's ``response_type`` is ``"counts"`` (the default; a
Poisson loss applies, and non-integer means such as repeat-averaged counts are allowed) or any real
values when it is ``"continuous"`` (e.g. calcium dF/F; a Gaussian loss applies).

Covariates are extra per-bin arrays of any shape ``(T, ...)``, e.g. ``eyepos`` (T, 2), ``dpi_valid``
(T,), ``missing_pct`` (T, N), ``stim_type`` (T,) integer codes indexing the metadata's
``stim_type_names``. A 1-D covariate is a scalar column, an N-D one a fixed-size list of the flattened
trailing dims; the metadata ``covariates`` entry records each one's dtype and trailing shape, and
:attr:`Session.covariates` gives zero-copy views in the original shape. Folders written before
covariates existed have none, ``response_type`` ``"counts"`` and ``stim_type_names`` None.

Reading is zero-copy: :meth:`Session.open` memory-maps the Arrow file (``datasets.load_from_disk``)
and exposes numpy *views* onto the Arrow buffers, so opening a session costs (almost) no RAM and the
page cache is shared between processes (e.g. DataLoader workers). The arrays are read-only.

Zero-copy needs each column to be one contiguous buffer, i.e. ONE chunk. ``save_to_disk`` always
writes record batches of at most 1000 rows (``datasets.config.DEFAULT_MAX_BATCH_SIZE``; not
configurable through its API), which would give a multi-chunk table on load. ``write_session``
therefore rewrites the single shard it produced as an Arrow IPC stream with exactly one record
batch (same schema, same Hugging Face feature metadata); ``datasets.load_from_disk`` reads it
unchanged. If a session on disk is nevertheless multi-chunk (e.g. written by another tool),
:meth:`Session.open` raises :class:`SessionError` naming the file instead of silently copying.

A ``schema_version`` this neurotrain cannot read is refused by :func:`check_schema`, naming
``neurotrain_session.json`` and what to do: a newer version (upgrade neurotrain, or ingest the recording again
with this one), an older one (ingest it again), or a value that is no version (a damaged file). No upgrade command
exists because no schema predates version 1, which every neurotrain reads as it is. A session folder that does not
fit on the disk (ENOSPC, EDQUOT) leaves nothing half-written and raises :class:`~neurotrain.errors.SaveError`
(``neurotrain ingest`` exits with 74).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from neurotrain.errors import DataError, SaveError
from neurotrain.io import NO_SPACE_ERRNOS, atomic_dir, format_bytes, free_bytes, write_errno

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "META_FILENAME",
    "RESPONSE_TYPES",
    "COVARIATE_PREFIX",
    "SessionError",
    "Session",
    "write_session",
    "read_session_meta",
    "is_session_dir",
]

#: The newest session schema: 2 = colour frames (``frame_channels`` > 1). Grey sessions are still written as
#: version 1, which every neurotrain version reads; both are read here (:data:`SUPPORTED_SCHEMA_VERSIONS`).
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
META_FILENAME = "neurotrain_session.json"

RESPONSE_TYPES = ("counts", "continuous")
COVARIATE_PREFIX = "cov."
COVARIATE_DTYPES = ("uint8", "int8", "int32", "int64", "float32")
_COV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_REQUIRED_META_KEYS = (
    "schema_version",
    "name",
    "subject",
    "sampling_rate",
    "n_frames",
    "n_neurons",
    "frame_shape",
    "neuron_ids",
    "behavior_names",
    "has_true_rates",
    "extra_meta",
    "mean_rate",
)


class SessionError(DataError):
    """A session folder is missing, incomplete or inconsistent (the message names path and key)."""


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _err(path: Path | str, key: str, msg: str) -> SessionError:
    return SessionError(f"session {str(path)!r}, key {key!r}: {msg}")


def _as_array(path: Path, key: str, x: Any, dtype: np.dtype, ndim: int) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != ndim:
        raise _err(path, key, f"expected a {ndim}-D array, got shape {a.shape}")
    if a.dtype != dtype:
        if np.issubdtype(dtype, np.integer) and not (
            np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_
        ):
            if a.size and not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
                raise _err(path, key, f"expected integer values (dtype {dtype}), got {a.dtype} with non-integers")
        a = a.astype(dtype)
    return np.ascontiguousarray(a)


def _as_covariate(path: Path, name: str, x: Any, T: int) -> np.ndarray:
    """Validate one covariate and convert it to its stored dtype (see :data:`COVARIATE_DTYPES`).

    bool -> uint8; uint8/int8/int32/int64 kept; int16/uint16 -> int32; uint32/uint64 -> int64 (values
    must fit); any float -> float32 (NaN allowed: covariates are stored as given).
    """
    key = f"covariates[{name!r}]"
    if not isinstance(name, str) or not _COV_NAME_RE.match(name):
        raise _err(path, "covariates", f"covariate name {name!r} must match [A-Za-z_][A-Za-z0-9_]*")
    a = np.asarray(x)
    if a.ndim == 0:
        raise _err(path, key, "expected an array with first dim T, got a scalar")
    if a.shape[0] != T:
        raise _err(path, key, f"has {a.shape[0]} rows but frames has {T}")
    if any(d == 0 for d in a.shape[1:]):
        raise _err(path, key, f"has an empty trailing dimension: shape {a.shape}")
    dt = a.dtype
    if dt == np.bool_:
        out = a.astype(np.uint8)
    elif dt.name in ("uint8", "int8", "int32", "int64"):
        out = a
    elif dt.name in ("int16", "uint16"):
        out = a.astype(np.int32)
    elif dt.name in ("uint32", "uint64"):
        if a.size and int(a.max()) > np.iinfo(np.int64).max:
            raise _err(path, key, "unsigned values do not fit in int64")
        out = a.astype(np.int64)
    elif np.issubdtype(dt, np.floating):
        out = a.astype(np.float32)
        if np.any(np.isinf(out) & np.isfinite(a)):
            raise _err(path, key, "values overflow float32")
    else:
        raise _err(path, key, f"unsupported dtype {dt} (use bool, integer or float)")
    return np.ascontiguousarray(out)


def _fixed_list(values: np.ndarray, width: int) -> pa.FixedSizeListArray:
    """(T, width) C-contiguous numpy array -> fixed_size_list<type>[width] (zero-copy wrap)."""
    flat = pa.array(values.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, width)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    if was_enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _consolidate_arrow_file(fpath: Path) -> None:
    """Rewrite an Arrow IPC stream file so that it holds exactly one record batch."""
    with pa.memory_map(str(fpath), "r") as src:
        reader = pa.ipc.open_stream(src)
        table = reader.read_all()
        if table.num_rows == 0 or all(col.num_chunks == 1 for col in table.columns):
            return
        table = table.combine_chunks()
        tmp = fpath.with_name(fpath.name + ".onebatch")
        with pa.OSFile(str(tmp), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=table.num_rows)
        del table, reader
    os.replace(tmp, fpath)


def write_session(
    path: str | os.PathLike,
    *,
    name: str,
    subject: str,
    sampling_rate: float,
    frames: np.ndarray,
    robs: np.ndarray,
    trial_ids: np.ndarray,
    dfs: np.ndarray | None = None,
    behavior: np.ndarray | None = None,
    behavior_names: Sequence[str] | None = None,
    neuron_ids: np.ndarray | None = None,
    true_rates: np.ndarray | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    covariates: Mapping[str, np.ndarray] | None = None,
    response_type: str = "counts",
    stim_type_names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one recording session to the folder ``path`` and return its path.

    Args:
        frames: (T, H, W) uint8 stimulus frames (8-bit luminance), or (T, H, W, C) uint8 with C > 1 channels
            (e.g. RGB, C = 3; stored as schema version 2 with ``frame_channels`` C). A (T, H, W, 1) array is
            stored as grey (T, H, W).
        robs: (T, N) responses (stored float32): non-negative spike counts (means of counts allowed)
            when ``response_type`` is ``"counts"``, any finite values when ``"continuous"``.
        trial_ids: (T,) integer trial of every bin (stored int64).
        dfs: (T, N) validity mask of 0/1 (stored uint8); default all ones.
        behavior: (T, D) float32 behavioural covariates (e.g. eye position), optional.
        behavior_names: D names for the behaviour columns (default ``behavior_0``...).
        neuron_ids: (N,) int64 unit ids (default ``arange(N)``).
        true_rates: (T, N) ground-truth rates of synthetic data, optional.
        extra_meta: JSON-serialisable dict stored verbatim in the metadata.
        covariates: named extra per-bin arrays, each of shape (T, ...), stored as columns
            ``cov.<name>``. Stored dtype: float32 for floats; bool as uint8; uint8/int8/int32/int64
            kept; other integers widened (int16/uint16 -> int32, uint32/uint64 -> int64). Names match
            ``[A-Za-z_][A-Za-z0-9_]*``; e.g. ``eyepos`` (T, 2), ``dpi_valid`` (T,),
            ``missing_pct`` (T, N), ``stim_type`` (T,).
        response_type: ``"counts"`` (spike counts; Poisson loss) or ``"continuous"`` (e.g. calcium;
            Gaussian loss).
        stim_type_names: names of the integer codes of the ``stim_type`` covariate (which is then
            required, 1-D, integer, with codes in ``[0, len(stim_type_names))``).
        overwrite: replace an existing session at ``path`` (default: refuse).

    The write is atomic: everything goes into a temporary folder next to ``path`` which is then
    renamed; a crash never leaves a half-written session at ``path``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"session {str(path)!r} already exists (pass overwrite=True to replace it)")

    # ---- validate -----------------------------------------------------------------------------
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise _err(path, "frames", f"expected a uint8 array, got {getattr(frames, 'dtype', type(frames))}")
    if frames.ndim == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]
    if frames.ndim not in (3, 4):
        raise _err(path, "frames", f"expected shape (T, H, W) or (T, H, W, C), got {frames.shape}")
    frames = np.ascontiguousarray(frames)
    T, H, W = frames.shape[:3]
    C = int(frames.shape[3]) if frames.ndim == 4 else 1
    if T == 0 or H == 0 or W == 0:
        raise _err(path, "frames", f"empty frames array of shape {frames.shape}")

    robs = _as_array(path, "robs", robs, np.dtype(np.float32), 2)
    if robs.shape[0] != T:
        raise _err(path, "robs", f"has {robs.shape[0]} rows but frames has {T}")
    N = robs.shape[1]
    if N == 0:
        raise _err(path, "robs", "has zero neurons")
    if not np.all(np.isfinite(robs)):
        raise _err(path, "robs", "contains NaN or inf (mark missing bins in dfs instead)")
    if response_type not in RESPONSE_TYPES:
        raise _err(path, "response_type", f"must be one of {list(RESPONSE_TYPES)}, got {response_type!r}")
    if response_type == "counts" and robs.size and float(robs.min()) < 0:
        raise _err(path, "robs", f"has negative values ({float(robs.min()):g}) but response_type is 'counts' "
                                 "(use response_type='continuous' for e.g. calcium signals)")

    if dfs is None:
        dfs = np.ones((T, N), dtype=np.uint8)
    dfs_in = np.asarray(dfs)
    if dfs_in.shape != (T, N):
        raise _err(path, "dfs", f"expected shape {(T, N)}, got {dfs_in.shape}")
    if dfs_in.size and not np.all((dfs_in == 0) | (dfs_in == 1)):
        raise _err(path, "dfs", "must contain only 0 and 1")
    dfs = np.ascontiguousarray(dfs_in.astype(np.uint8))

    trial_ids = _as_array(path, "trial_ids", trial_ids, np.dtype(np.int64), 1)
    if trial_ids.shape[0] != T:
        raise _err(path, "trial_ids", f"has {trial_ids.shape[0]} entries but frames has {T}")

    if behavior is not None:
        behavior = _as_array(path, "behavior", behavior, np.dtype(np.float32), 2)
        if behavior.shape[0] != T:
            raise _err(path, "behavior", f"has {behavior.shape[0]} rows but frames has {T}")
        if not np.all(np.isfinite(behavior)):
            raise _err(path, "behavior", "contains NaN or inf (neurotrain.data.ingest masks them through dfs with "
                                         "mask_nonfinite=True)")
        D = behavior.shape[1]
        if behavior_names is None:
            behavior_names = [f"behavior_{i}" for i in range(D)]
        behavior_names = [str(b) for b in behavior_names]
        if len(behavior_names) != D:
            raise _err(path, "behavior_names", f"has {len(behavior_names)} names for {D} behaviour columns")
    else:
        if behavior_names:
            raise _err(path, "behavior_names", "given without a behavior array")
        behavior_names = []

    if neuron_ids is None:
        neuron_ids = np.arange(N, dtype=np.int64)
    neuron_ids = _as_array(path, "neuron_ids", neuron_ids, np.dtype(np.int64), 1)
    if neuron_ids.shape[0] != N:
        raise _err(path, "neuron_ids", f"has {neuron_ids.shape[0]} ids for {N} neurons")
    if len(np.unique(neuron_ids)) != N:
        raise _err(path, "neuron_ids", "ids are not unique")

    if true_rates is not None:
        true_rates = _as_array(path, "true_rates", true_rates, np.dtype(np.float32), 2)
        if true_rates.shape != (T, N):
            raise _err(path, "true_rates", f"expected shape {(T, N)}, got {true_rates.shape}")

    covs: dict[str, np.ndarray] = {}
    if covariates is not None:
        if not isinstance(covariates, Mapping):
            raise _err(path, "covariates", f"expected a mapping name -> array, got {type(covariates).__name__}")
        for cname, carr in covariates.items():
            covs[cname] = _as_covariate(path, cname, carr, T)
    if stim_type_names is not None:
        if isinstance(stim_type_names, str):
            raise _err(path, "stim_type_names", "expected a list of names, got a string")
        stim_type_names = [str(n) for n in stim_type_names]
        if not stim_type_names or any(not n for n in stim_type_names):
            raise _err(path, "stim_type_names", "expected a non-empty list of non-empty names")
        if len(set(stim_type_names)) != len(stim_type_names):
            raise _err(path, "stim_type_names", "names are not unique")
        st = covs.get("stim_type")
        if st is None:
            raise _err(path, "stim_type_names", "given without a 'stim_type' covariate")
        if st.ndim != 1 or not np.issubdtype(st.dtype, np.integer):
            raise _err(path, "covariates['stim_type']", f"expected (T,) integer codes, got {st.dtype} {st.shape}")
        if st.size and (int(st.min()) < 0 or int(st.max()) >= len(stim_type_names)):
            raise _err(path, "covariates['stim_type']",
                       f"codes must lie in [0, {len(stim_type_names)}) to index stim_type_names, "
                       f"got [{int(st.min())}, {int(st.max())}]")

    extra = dict(extra_meta or {})
    try:
        json.dumps(extra)
    except TypeError as e:
        raise _err(path, "extra_meta", f"is not JSON-serialisable: {e}") from None

    valid = dfs.astype(np.float64)
    n_valid = valid.sum(axis=0)
    mean_rate = (robs.astype(np.float64) * valid).sum(axis=0) / np.maximum(n_valid, 1.0)

    meta = {
        "schema_version": 1 if C == 1 else SCHEMA_VERSION,
        "name": str(name),
        "subject": str(subject),
        "sampling_rate": float(sampling_rate),
        "n_frames": int(T),
        "n_neurons": int(N),
        "frame_shape": [int(H), int(W)],
        **({"frame_channels": C} if C > 1 else {}),
        "neuron_ids": [int(i) for i in neuron_ids],
        "behavior_names": list(behavior_names),
        "has_true_rates": true_rates is not None,
        "extra_meta": extra,
        "mean_rate": [float(r) for r in mean_rate],
        "n_valid_bins": [int(v) for v in n_valid],
        "response_type": response_type,
        "covariates": {k: {"dtype": v.dtype.name, "shape": [int(d) for d in v.shape[1:]]} for k, v in covs.items()},
        "stim_type_names": None if stim_type_names is None else list(stim_type_names),
    }

    # ---- build the Arrow table (zero-copy wraps of the numpy arrays) ---------------------------
    cols: dict[str, pa.Array] = {"frame": _fixed_list(frames, H * W * C), "robs": _fixed_list(robs, N), "dfs": _fixed_list(dfs, N)}
    if behavior is not None:
        cols["behavior"] = _fixed_list(behavior, behavior.shape[1])
    if true_rates is not None:
        cols["true_rates"] = _fixed_list(true_rates, N)
    cols["trial_id"] = pa.array(trial_ids)
    for cname, carr in covs.items():
        if carr.ndim == 1:
            cols[COVARIATE_PREFIX + cname] = pa.array(carr)
        else:
            cols[COVARIATE_PREFIX + cname] = _fixed_list(carr, math.prod(carr.shape[1:]))
    table = pa.table(cols)

    # ---- write atomically -----------------------------------------------------------------------
    import datasets
    from datasets.table import InMemoryTable

    try:
        with atomic_dir(path, overwrite=overwrite) as tmp:
            ds = datasets.Dataset(InMemoryTable(table))
            with _quiet_datasets():
                ds.save_to_disk(str(tmp), num_shards=1)
            del ds
            for f in sorted(tmp.glob("*.arrow")):
                _consolidate_arrow_file(f)
            with open(tmp / META_FILENAME, "w") as fh:
                json.dump(meta, fh, indent=1)
    except FileExistsError:  # appeared while we were writing
        raise FileExistsError(f"session {str(path)!r} already exists (pass overwrite=True to replace it)") from None
    except Exception as err:  # noqa: BLE001 - a full disk or quota becomes a message; anything else is raised
        needed = sum(int(c.nbytes) for c in table.columns) + 64 * 1024
        code = write_errno(err, path, needed)
        if code not in NO_SPACE_ERRNOS:
            raise
        raise SaveError(path, "session folder", f"could not be written: {os.strerror(code)}; "
                        f"{format_bytes(free_bytes(path.parent))} free on its file system, the session needs about "
                        f"{format_bytes(needed)}; nothing half-written was left (a session already there is "
                        "unchanged); free space, or write to another folder, and ingest again") from None
    return path


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def is_session_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding a neurotrain metadata file."""
    p = Path(path)
    return p.is_dir() and (p / META_FILENAME).is_file()


def check_schema(meta_file: str | os.PathLike, version: Any) -> None:
    """Refuse a ``schema_version`` this neurotrain cannot read, naming the metadata file and what to do: a newer
    one (written by a newer neurotrain: upgrade it, or ingest the recording again with this one), an older one
    (ingest it again), or a value that is no version at all (a damaged file). There is no upgrade command: no
    schema older than the first exists, and version 1 folders are read as they are."""
    known = sorted(SUPPORTED_SCHEMA_VERSIONS)
    reads = f"this neurotrain reads version{'s' if len(known) > 1 else ''} {', '.join(map(str, known))}"
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        msg = (f"{version!r} is not a schema version (a positive integer): the file is damaged; ingest the "
               "recording again (neurotrain ingest)")
    elif version > max(known):
        msg = (f"{version} was written by a newer neurotrain ({reads}): upgrade neurotrain to read this session "
               "(pip install -U neurotrain), or ingest the recording again with this one")
    elif version not in known:
        msg = f"{version} is older than this neurotrain reads ({reads}): ingest the recording again (neurotrain ingest)"
    else:
        return
    raise SessionError(msg, source=meta_file, key="schema_version")


def read_session_meta(path: str | os.PathLike) -> dict:
    """Read and check only the metadata JSON of a session (cheap; does not touch the Arrow data)."""
    path = Path(path)
    if not path.is_dir():
        raise _err(path, META_FILENAME, "session folder does not exist")
    mpath = path / META_FILENAME
    if not mpath.is_file():
        raise _err(path, META_FILENAME, "metadata file is missing (not a neurotrain session folder?)")
    try:
        with open(mpath) as fh:
            meta = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise _err(path, META_FILENAME, f"cannot read metadata: {e}") from None
    if not isinstance(meta, dict):
        raise _err(path, META_FILENAME, "metadata is not a JSON object")
    for key in _REQUIRED_META_KEYS:
        if key not in meta:
            raise _err(path, key, f"missing from {META_FILENAME}")
    check_schema(mpath, meta["schema_version"])
    fs = meta["frame_shape"]
    if not (isinstance(fs, list) and len(fs) == 2 and all(isinstance(v, int) and v > 0 for v in fs)):
        raise _err(path, "frame_shape", f"expected [H, W] of positive ints, got {fs!r}")
    fc = meta.get("frame_channels", 1)
    if isinstance(fc, bool) or not isinstance(fc, int) or fc < 1:
        raise _err(path, "frame_channels", f"expected a positive int, got {fc!r}")
    if fc > 1 and meta["schema_version"] < 2:
        raise _err(path, "frame_channels", f"{fc} channels need schema version 2, the metadata says "
                                           f"{meta['schema_version']}")
    N = meta["n_neurons"]
    for key in ("neuron_ids", "mean_rate"):
        if len(meta[key]) != N:
            raise _err(path, key, f"has {len(meta[key])} entries but n_neurons is {N}")
    # optional keys (absent in folders written before they existed)
    rt = meta.get("response_type", "counts")
    if rt not in RESPONSE_TYPES:
        raise _err(path, "response_type", f"must be one of {list(RESPONSE_TYPES)}, got {rt!r}")
    covs = meta.get("covariates", {})
    if not isinstance(covs, dict):
        raise _err(path, "covariates", f"expected an object name -> {{dtype, shape}}, got {covs!r}")
    for cname, spec in covs.items():
        ok = (isinstance(spec, dict) and spec.get("dtype") in COVARIATE_DTYPES and isinstance(spec.get("shape"), list)
              and all(isinstance(d, int) and d > 0 for d in spec["shape"]))
        if not ok:
            raise _err(path, f"covariates[{cname!r}]",
                       f"expected {{'dtype': one of {list(COVARIATE_DTYPES)}, 'shape': [positive ints]}}, got {spec!r}")
    stn = meta.get("stim_type_names")
    if stn is not None and not (isinstance(stn, list) and all(isinstance(n, str) for n in stn)):
        raise _err(path, "stim_type_names", f"expected a list of strings or null, got {stn!r}")
    return meta


def _column_view(path: Path, files: Sequence[str], table: pa.Table, key: str, width: int | None,
                 dtype: np.dtype) -> np.ndarray:
    """Zero-copy numpy view of one column: (T,) for scalars, (T, width) for fixed-size lists."""
    if key not in table.column_names:
        raise _err(path, key, f"column missing from the Arrow data (columns: {table.column_names})")
    col = table.column(key)
    if col.num_chunks != 1:
        raise _err(
            path, key,
            f"column has {col.num_chunks} chunks in {', '.join(files) or 'the Arrow data'}; neurotrain needs one "
            "chunk per column for zero-copy memory-mapped reads (rewrite the session with write_session)",
        )
    arr = col.chunk(0)
    if width is not None:
        if not pa.types.is_fixed_size_list(arr.type):
            raise _err(path, key, f"expected a fixed_size_list column, got {arr.type}")
        if arr.type.list_size != width:
            raise _err(path, key, f"rows have {arr.type.list_size} values, expected {width}")
        if arr.null_count:
            raise _err(path, key, f"column has {arr.null_count} null rows")
        values = arr.flatten()
    else:
        values = arr
    if values.type != pa.from_numpy_dtype(dtype):
        raise _err(path, key, f"expected values of type {pa.from_numpy_dtype(dtype)}, got {values.type}")
    try:
        out = values.to_numpy(zero_copy_only=True)
    except (pa.ArrowInvalid, pa.ArrowException) as e:
        raise _err(path, key, f"cannot view the column without copying: {e}") from None
    if width is not None:
        out = out.reshape(len(arr), width)
    return out


class Session:
    """A recording session opened from disk with zero-copy, memory-mapped, read-only numpy views.

    Attributes:
        path, name, subject, sampling_rate, n_frames, n_neurons, frame_shape (H, W), frame_channels (C: 1 for
        grey, 3 for RGB),
        neuron_ids (N,) int64, behavior_names (list of str), meta (the full metadata dict),
        response_type ("counts" or "continuous"; "counts" for folders written before it existed),
        stim_type_names (list of str or None),
        frames (T, H, W) uint8 (grey) or (T, H, W, C) uint8 (colour, channels last),
        robs (T, N) float32, dfs (T, N) uint8, trial_ids (T,) int64,
        behavior (T, D) float32 or None, true_rates (T, N) float32 or None,
        covariates (dict name -> (T, ...) array in its stored dtype and original shape; empty if none),
        data_files (the memory-mapped Arrow files).
    """

    frames: np.ndarray
    robs: np.ndarray
    dfs: np.ndarray
    trial_ids: np.ndarray
    behavior: np.ndarray | None
    true_rates: np.ndarray | None
    covariates: dict[str, np.ndarray]

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta = read_session_meta(self.path)
        self.meta: dict = meta
        self.name: str = meta["name"]
        self.subject: str = meta["subject"]
        self.sampling_rate: float = float(meta["sampling_rate"])
        self.n_frames: int = int(meta["n_frames"])
        self.n_neurons: int = int(meta["n_neurons"])
        self.frame_shape: tuple[int, int] = (int(meta["frame_shape"][0]), int(meta["frame_shape"][1]))
        self.frame_channels: int = int(meta.get("frame_channels", 1))
        self.neuron_ids: np.ndarray = np.asarray(meta["neuron_ids"], dtype=np.int64)
        self.behavior_names: list[str] = list(meta["behavior_names"])
        self.response_type: str = meta.get("response_type", "counts")
        stn = meta.get("stim_type_names")
        self.stim_type_names: list[str] | None = None if stn is None else list(stn)
        self._load_arrays()

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Session":
        """Open the session folder ``path`` (raises :class:`SessionError` when it is not valid)."""
        return cls(path)

    def _load_arrays(self) -> None:
        import datasets

        path = self.path
        try:
            with _quiet_datasets():
                ds = datasets.load_from_disk(str(path), keep_in_memory=False)
        except FileNotFoundError as e:
            raise _err(path, "dataset", f"no Hugging Face dataset in the folder: {e}") from None
        except (OSError, ValueError, pa.ArrowException) as e:
            raise _err(path, "dataset", f"cannot read the Arrow data: {type(e).__name__}: {e}") from None
        if not isinstance(ds, datasets.Dataset):
            raise _err(path, "dataset", f"expected a single Dataset, got {type(ds).__name__}")
        if ds._indices is not None:  # never produced by write_session
            raise _err(path, "dataset", "dataset has an indices mapping; cannot view it without copying")
        self._dataset = ds  # keeps the memory maps alive (the numpy views also reference them)
        self.data_files = [c["filename"] for c in ds.cache_files]
        table: pa.Table = ds.data.table
        T, N = self.n_frames, self.n_neurons
        H, W = self.frame_shape
        if table.num_rows != T:
            raise _err(path, "n_frames", f"metadata says {T} frames but the Arrow data has {table.num_rows} rows")
        files = self.data_files

        C = self.frame_channels
        frames = _column_view(path, files, table, "frame", H * W * C, np.dtype(np.uint8))
        self.frames = frames.reshape(T, H, W) if C == 1 else frames.reshape(T, H, W, C)
        self.robs = _column_view(path, files, table, "robs", N, np.dtype(np.float32))
        self.dfs = _column_view(path, files, table, "dfs", N, np.dtype(np.uint8))
        self.trial_ids = _column_view(path, files, table, "trial_id", None, np.dtype(np.int64))
        D = len(self.behavior_names)
        if D:
            self.behavior = _column_view(path, files, table, "behavior", D, np.dtype(np.float32))
        else:
            if "behavior" in table.column_names:
                raise _err(path, "behavior_names", "Arrow data has a behavior column but the metadata names none")
            self.behavior = None
        if self.meta["has_true_rates"]:
            self.true_rates = _column_view(path, files, table, "true_rates", N, np.dtype(np.float32))
        else:
            self.true_rates = None
        self.covariates = {}
        specs = self.meta.get("covariates", {})
        for cname, spec in specs.items():
            shape = tuple(spec["shape"])
            width = math.prod(shape) if shape else None
            view = _column_view(path, files, table, COVARIATE_PREFIX + cname, width, np.dtype(spec["dtype"]))
            self.covariates[cname] = view.reshape((T, *shape)) if shape else view
        extra_cols = [c for c in table.column_names
                      if c.startswith(COVARIATE_PREFIX) and c[len(COVARIATE_PREFIX):] not in specs]
        if extra_cols:
            raise _err(path, "covariates", f"Arrow data has covariate columns {extra_cols} that the metadata does not name")

    # Pickling (e.g. DataLoader workers started with "spawn") sends only the path and re-opens the
    # memory maps on the other side; pickling the numpy views would copy the whole session.
    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    @property
    def extra_meta(self) -> dict:
        return self.meta["extra_meta"]

    @property
    def mean_rate(self) -> np.ndarray:
        """(N,) mean spike count per bin over valid bins (from the metadata)."""
        return np.asarray(self.meta["mean_rate"], dtype=np.float64)

    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        return (
            f"Session(name={self.name!r}, subject={self.subject!r}, n_frames={self.n_frames}, "
            f"n_neurons={self.n_neurons}, frame_shape={self.frame_shape}, "
            + (f"frame_channels={self.frame_channels}, " if self.frame_channels > 1 else "")
            + f"behavior={self.behavior_names}, response_type={self.response_type!r}, "
            f"covariates={list(self.covariates)}, path={str(self.path)!r})"
        )
