"""One dataset over many sessions, gathered a whole batch at a time.

Global index space: session ``s`` owns indices ``offsets[s] .. offsets[s+1]-1``; global index
``offsets[s] + j`` is the ``j``-th sample time ``times[s][j]`` of that session (a time bin whose lagged
stimulus window lies inside one trial).

``DataLoader`` calls :meth:`MultiSessionDataset.__getitems__` with the list of indices of one batch;
it groups them by session (first-appearance order, like the legacy ``group_collate``) and gathers each
group with one vectorised fancy-indexing step per array. :func:`group_collate` turns the groups into
tensors. The stimulus stays ``uint8`` all the way to the device; :func:`cast_stim` normalises it there.

Per-session batch (a ``dict``):

=============== ======================= =========================================================
key             shape / dtype           meaning
=============== ======================= =========================================================
``stim``        (B, C, L, H, W) uint8   lag index 0 = newest frame (frame t), L-1 = frame t-lags[-1];
                                        C = the session's ``frame_channels`` (1 grey, 3 RGB)
``robs``        (B, N) float32          spike counts at time t
``dfs``         (B, N) float32          1 = valid bin for that neuron
``behavior``    (B, D) float32          behaviour at time t (only when the dataset uses behaviour)
``true_rates``  (B, N) float32          ground-truth rates (synthetic data only; never seen by the model)
``session_idx`` int                     index of the session (= readout index)
=============== ======================= =========================================================

By session name, ``dataset["Allen_2022-02-16"]`` is that session's part of the split, a
:class:`SessionSamples` view (nothing copied): ``len``, ``view[j]`` = the parent's sample
``offsets[s] + j``, ``view[a:b]`` / ``view[array]`` = one batch of that session. Integer and list
indexing of the dataset itself, and the batch path (``__getitems__`` + :func:`group_collate`), do
not change.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from neurotrain.data.session import Session
from neurotrain.data.windows import gather_windows


class _Columns:
    """Rows of a (T, N_all) array restricted to some columns, gathered lazily: ``view[t]`` -> (B, n)."""

    def __init__(self, array: np.ndarray, columns: np.ndarray):
        self.array, self.columns = array, np.asarray(columns, dtype=np.int64)
        self.shape = (array.shape[0], len(self.columns))

    def __getitem__(self, rows):
        return np.asarray(self.array[rows])[..., self.columns]


class SessionView:
    """A session as one recipe sees it: computed behaviour, a filtered validity mask, a subset of units.

    Attribute access falls through to the underlying :class:`Session`; ``behavior`` and ``dfs`` are
    replaced when given (in-memory (T, D) / (T, n) arrays), and ``robs`` / ``true_rates`` /
    ``neuron_ids`` are restricted to ``unit_index`` (column positions in the store) when given.
    Frames are never copied.
    """

    def __init__(self, session: Session, *, behavior=None, dfs=None, unit_index=None, name: str | None = None):
        self._session = session
        self._behavior = behavior
        self._dfs = dfs
        self._units = None if unit_index is None else np.asarray(unit_index, dtype=np.int64)
        self._name = name

    def __getattr__(self, key):
        return getattr(self._session, key)

    def __getstate__(self):
        return self.__dict__

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def name(self) -> str:
        return self._name or self._session.name

    @property
    def behavior(self):
        return self._session.behavior if self._behavior is None else self._behavior

    @property
    def dfs(self):
        if self._dfs is not None:
            return self._dfs
        return self._session.dfs if self._units is None else _Columns(self._session.dfs, self._units)

    @property
    def robs(self):
        return self._session.robs if self._units is None else _Columns(self._session.robs, self._units)

    @property
    def true_rates(self):
        tr = self._session.true_rates
        return tr if tr is None or self._units is None else _Columns(tr, self._units)

    @property
    def n_neurons(self) -> int:
        return self._session.n_neurons if self._units is None else len(self._units)

    @property
    def neuron_ids(self):
        ids = np.asarray(self._session.neuron_ids)
        return ids if self._units is None else ids[self._units]


def _compact_times(times, session) -> np.ndarray:
    """Sample times as int32 when every bin index of the session fits (as int64 otherwise)."""
    t = np.asarray(times)
    dtype = np.int32 if int(session.n_frames) < 2**31 else np.int64
    return t.astype(dtype, copy=False)


class MultiSessionDataset(torch.utils.data.Dataset):
    """Samples of one split (train or val) across sessions.

    Args:
        sessions: opened sessions (memory-mapped; nothing is copied here).
        times: for each session, the sample times (integer array) of this split; kept as int32 (int64 for a
            session of 2**31 bins or more): 100M samples hold 400 MB of times, not 800 MB.
        lags: stimulus lags, index 0 = newest (e.g. ``[0, 1, ..., L-1]``).
        use_behavior: also return each sample's behaviour vector.
        with_true_rates: also return ground-truth rates when the session has them.
        history_lags: also return ``history`` ``(B, history_lags, N)``, the session's own spike counts
            at times ``t-1, t-2, ...`` (index 0 = the most recent bin), for spike-history models.
            Sample times must leave room for them (``t >= history_lags``).
    """

    def __init__(
        self,
        sessions: Sequence[Session],
        times: Sequence[np.ndarray],
        lags: Sequence[int],
        *,
        use_behavior: bool = False,
        with_true_rates: bool = True,
        stim_dtype: str = "uint8",
        history_lags: int = 0,
    ):
        if len(sessions) != len(times):
            raise ValueError("one array of sample times per session is required")
        self.sessions = list(sessions)
        self.times = [_compact_times(t, s) for t, s in zip(times, sessions)]
        self.lags = np.asarray(lags, dtype=np.int64)
        self.use_behavior = use_behavior
        self.with_true_rates = with_true_rates
        if stim_dtype not in STIM_DTYPES:
            raise ValueError(f"stim_dtype must be one of {list(STIM_DTYPES)}, got {stim_dtype!r}")
        self.stim_dtype = stim_dtype
        self.history_lags = int(history_lags)
        self.sizes = [len(t) for t in self.times]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        for s, t in zip(self.sessions, self.times):
            if len(t) and t.min() < max(int(self.lags.max()), self.history_lags):
                raise ValueError(f"session {s.name}: a sample time precedes its oldest lag")
            if use_behavior and s.behavior is None:
                raise ValueError(f"session {s.name} ({s.path}) has no behaviour columns but use_behavior is on")

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def names(self) -> list[str]:
        """Session names, in session (readout) order."""
        return [s.name for s in self.sessions]

    def session_index(self, name: str) -> int:
        """Position of the session called ``name``; KeyError naming the known sessions otherwise."""
        for i, s in enumerate(self.sessions):
            if s.name == name:
                return i
        raise KeyError(f"no session {name!r} in this dataset; its sessions are {self.names}")

    def session_of(self, indices: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, indices, side="right") - 1

    def gather(self, session_idx: int, local: np.ndarray) -> dict:
        """Gather samples ``local`` (indices into ``times[session_idx]``) as numpy arrays."""
        s = self.sessions[session_idx]
        t = self.times[session_idx][local]
        stim = gather_windows(s.frames, t, self.lags)
        if self.stim_dtype != "uint8":
            stim = cast_stim(torch.from_numpy(stim), STIM_DTYPES[self.stim_dtype])
        out = {
            "stim": stim,
            "robs": np.asarray(s.robs[t], dtype=np.float32),
            "dfs": np.asarray(s.dfs[t], dtype=np.float32),
            "session_idx": session_idx,
        }
        if self.history_lags:
            past = t[:, None] - np.arange(1, self.history_lags + 1)[None, :]  # (B, K), newest first
            out["history"] = np.asarray(s.robs[past.reshape(-1)], dtype=np.float32).reshape(len(t), self.history_lags, -1)
        if self.use_behavior:
            out["behavior"] = np.asarray(s.behavior[t], dtype=np.float32)
        if self.with_true_rates and s.true_rates is not None:
            out["true_rates"] = np.asarray(s.true_rates[t], dtype=np.float32)
        return out

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        idx = np.asarray(indices, dtype=np.int64)
        sess = self.session_of(idx)
        groups = []
        for s in dict.fromkeys(sess.tolist()):  # first-appearance order
            local = idx[sess == s] - self.offsets[s]
            groups.append(self.gather(s, local))
        return groups

    def __getitem__(self, index):
        """``dataset[i]``: sample ``i`` as a group dict with a batch dimension of 1 (as ``__getitems__``
        gives it); ``dataset["name"]``: that session's samples, a :class:`SessionSamples` view."""
        if isinstance(index, str):
            return SessionSamples(self, self.session_index(index))
        return self.__getitems__([index])[0]


class SessionSamples(torch.utils.data.Dataset):
    """One session's samples in one split of a :class:`MultiSessionDataset` (``data.train[name]``).

    A view: nothing is copied and the parent's batch path is used. Local index ``j`` (``0 <= j < len``,
    negative counts from the end) is the parent's global index ``offsets[s] + j``, i.e. sample time
    ``times[s][j]``; the order is the split's (ascending time).

    * ``view[j]`` -> the parent's ``dataset[offsets[s] + j]``: a dict with a batch dimension of 1;
    * ``view[a:b]``, ``view[[j, ...]]``, ``view[np.array]`` -> one batch dict of those samples
      (``stim`` ``(B, C, L, H, W)``, ``robs`` / ``dfs`` ``(B, N)``, ... as in the module docstring);
    * ``__getitems__(js)`` -> ``[batch]``, so a ``DataLoader(view, batch_size=..., collate_fn=group_collate)``
      yields this session's batches (each a one-element list, as for the parent).
    """

    def __init__(self, parent: MultiSessionDataset, session_idx: int):
        self.parent = parent
        self.session_idx = int(session_idx)

    @property
    def session(self):
        """The session (a :class:`~neurotrain.data.session.Session` or ``SessionView``)."""
        return self.parent.sessions[self.session_idx]

    @property
    def name(self) -> str:
        return self.session.name

    @property
    def times(self) -> np.ndarray:
        """(len,) sample times (bins) of this session in this split (int32; int64 for sessions of 2**31+ bins)."""
        return self.parent.times[self.session_idx]

    def __len__(self) -> int:
        return int(self.parent.sizes[self.session_idx])

    def _local(self, index) -> np.ndarray:
        n = len(self)
        if isinstance(index, slice):
            return np.arange(n, dtype=np.int64)[index]
        idx = np.asarray(index)
        if idx.dtype == bool or idx.dtype.kind not in "iu":
            raise TypeError(f"session {self.name!r}: index with an int, a slice or an array of ints, got {index!r}")
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"session {self.name!r} has {n} samples in this split; index out of range: {index!r}")
        return np.where(idx < 0, idx + n, idx)

    def __getitem__(self, index) -> dict:
        if isinstance(index, (int, np.integer)):
            local = self._local([index])
            return self.parent[int(self.parent.offsets[self.session_idx] + local[0])]
        return self.parent.gather(self.session_idx, self._local(index))

    def __getitems__(self, indices) -> list[dict]:
        return [self.parent.gather(self.session_idx, self._local(indices))]

    def __repr__(self) -> str:
        return f"SessionSamples({self.name!r}, session_idx={self.session_idx}, samples={len(self)})"


STIM_DTYPES = {"uint8": torch.uint8, "bfloat16": torch.bfloat16, "float32": torch.float32}


def group_collate(groups: list[dict]) -> list[dict]:
    """Per-session groups of numpy arrays -> list of per-session tensor dicts (zero-copy)."""
    return [{k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in g.items()} for g in groups]


def cast_stim(stim: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels -> ``(x - 127) / 255`` (the legacy normalisation), on whatever device ``stim`` is.

    Every channel is normalised the same way (a grey stimulus ``(B, 1, L, H, W)`` and an RGB one
    ``(B, 3, L, H, W)`` alike), so 127 is 0 in each channel and the values lie in ``[-127/255, 128/255]``."""
    return (stim.to(dtype) - 127.0) / 255.0
