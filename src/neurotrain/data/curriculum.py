"""Contrast curriculum: early in training, draw high-contrast samples more often.

This is the legacy ``ContrastWeightedSampler`` (legacy spec §4.5-4.6) done right:

* **Per-sample contrast, aligned with the samples.** :func:`frame_contrast` scores every stored frame
  (the std over pixels of the normalised frame ``(x - 127) / 255``; population std, ``ddof = 0``,
  which does not matter after the median normalisation). A training sample at time ``t`` gets the score
  of its *newest* frame, frame ``t - min(lags)`` (= ``t`` for the usual ``lags = 0..L-1``), see
  :func:`sample_contrast`. (The legacy code took the first ``len(dataset)`` per-frame scores, which
  belong to other frames.) Scores are divided by the **global median over all sessions' training
  samples** (not over all stored frames).
* **Weights and schedule.** ``w_i = min(alpha * c_i, 1)`` with
  ``alpha(step) = 0.5 + 0.5 * min(step / warmup_steps, 1)``. At optimizer steps ``>= warmup_steps``
  the curriculum is off and the sampler yields exactly the batches of the plain policy
  (:class:`~neurotrain.data.sampler.SessionBatchSampler` with the same arguments), i.e. uniform
  sampling of samples within a session (note: just before the end of warm-up ``w = min(c, 1)``, so the
  switch is a small step, as in the legacy code).
* **The step of a batch, not "the current step".** Batches are drawn ahead of training (DataLoader
  prefetch, Accelerate's lookahead, ``BatchSamplerShard`` consuming ``N`` global batches per rank-step).
  So global batch ``b`` of an epoch is weighted with ``alpha(s(b))`` where
  ``s(b) = epoch_start_step + b // (num_replicas * accumulate)`` is the optimizer step that will consume
  it, and ``epoch_start_step`` is the value last given to :meth:`ContrastWeightedSampler.set_step`
  when the epoch's pass began (``__iter__``). The loop must call ``sampler.set_step(global_step)``
  before each epoch's ``for batch in loader`` (and may call it after every optimizer step; the sampler
  only reads it when a pass begins and in ``set_position(epoch, 0)``).
* **Global view, single-session batches.** The skeleton of an epoch (which session each batch comes
  from and its size) is the plain policy's batch list for ``(seed, epoch)``; during warm-up, batch ``b``
  is replaced by ``len(b)`` samples of the same session drawn *without replacement* with
  probabilities ∝ ``w`` (successive draws without replacement), from a generator seeded by
  ``(seed, epoch, b)``. They are drawn by rejection: propose a sample uniformly from the session, accept it
  with probability ``w_i`` (``<= 1``), ignore one already taken; the accepted samples, in order, are exactly
  successive draws ∝ ``w`` among the samples not yet taken. This costs about ``len(b) / mean(w)`` proposals,
  whatever the session's size (the session's weights are never all computed); when acceptance is very low
  (mostly blank frames) or fewer than ``len(b)`` samples have a positive weight, the batch is drawn instead
  with the exponential-keys method of Efraimidis & Spirakis over the whole session (the ``k`` smallest
  ``E_i / w_i``, ``E_i ~ Exp(1)``), the same distribution. Every batch
  is therefore a pure function of ``(seed, epoch, s(b), b)``; all ranks build the same sequence and
  Accelerate shards it. During warm-up a sample may appear in several batches of an epoch (never twice in
  one batch) and low-contrast samples less often; the number of batches per epoch is unchanged.
* **Resume.** ``state_dict`` = ``seed, epoch, epoch_start_step, batches_consumed``; a resumed sampler
  skips the consumed batches and yields exactly the remaining batches of the uninterrupted run,
  with the same alphas.

Zero weights (blank frames, ``c = 0``) are never drawn while positive-weight samples remain; if a
batch needs more samples than have positive weight, the rest are filled from the zero-weight ones
(uniformly).

Memory: contrast is read per sample from each session's cached per-frame scores (memory-mapped) through the
dataset's sample times; the global median is exact, found in two passes over 16-bit buckets of the float32
scores, so no array of all samples' contrast is ever built (100M samples would otherwise need 0.4-1.6 GB).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from neurotrain.data.sampler import SessionBatchSampler
from neurotrain.io import atomic_write

__all__ = [
    "CONTRAST_FILENAME",
    "frame_contrast",
    "session_contrast",
    "sample_contrast",
    "curriculum_alpha",
    "ContrastWeightedSampler",
]

CONTRAST_FILENAME = "neurotrain_contrast.npy"
_TAG_DRAW = 201


def frame_contrast(frames_uint8: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Per-frame contrast: std over pixels of ``(x - 127) / 255``, as float32 of shape ``(T,)``.

    ``frames_uint8`` is ``(T, ...)`` (e.g. ``(T, H, W)``; may be a read-only memory map); it is read
    ``chunk`` frames at a time, so memory stays at ``chunk * pixels * 4`` bytes. The shift by 127 does not
    change a std, so this is ``std(x) / 255`` (population std, ``ddof = 0``).
    """
    frames = np.asarray(frames_uint8)
    if frames.ndim < 2:
        raise ValueError(f"frames must be (T, ...) with at least one pixel axis, got shape {frames.shape}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    T = frames.shape[0]
    flat = frames.reshape(T, -1)
    P = flat.shape[1]
    out = np.empty(T, dtype=np.float32)
    if P == 0:
        out[:] = 0.0
        return out
    for i in range(0, T, chunk):
        x = flat[i : i + chunk].astype(np.float32)
        x -= x.mean(axis=1, keepdims=True)
        var = np.einsum("ij,ij->i", x, x) / P
        out[i : i + chunk] = np.sqrt(var) / 255.0
    return out


def session_contrast(session, chunk: int = 4096, mmap: bool = False) -> np.ndarray:
    """:func:`frame_contrast` of a session's frames, cached as ``<session.path>/neurotrain_contrast.npy``.

    The cache is reused when it exists, has ``session.n_frames`` entries and is not older than the
    session's data files; otherwise it is (re)computed and written atomically (a temporary file in the
    same folder, then ``os.replace``). A read-only session folder just skips the cache. ``mmap``: return
    the cache memory-mapped (read-only) instead of loaded.
    """
    path = Path(session.path) / CONTRAST_FILENAME
    n = int(session.n_frames)
    if path.is_file():
        try:
            fresh = True
            cmt = path.stat().st_mtime
            for f in getattr(session, "data_files", []) or []:
                if os.path.exists(f) and os.stat(f).st_mtime > cmt:
                    fresh = False
            if fresh:
                c = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
                if c.ndim == 1 and len(c) == n and c.dtype == np.float32:
                    return c
        except (OSError, ValueError):
            pass
    c = frame_contrast(session.frames, chunk=chunk)
    try:
        with atomic_write(path, "wb") as f:
            np.save(f, c, allow_pickle=False)
    except OSError:
        pass  # read-only folder: no cache
    return c


class SessionContrast:
    """The raw contrast of one session's samples, read on demand: ``c[i]`` = per-frame contrast of the newest
    frame of sample ``i`` (``frames[times[i] - newest]``); ``frames`` may be a memory map."""

    def __init__(self, frame_scores: np.ndarray, times: np.ndarray, newest: int = 0):
        self.frame_scores, self.times, self.newest = frame_scores, times, int(newest)

    def __len__(self) -> int:
        return len(self.times)

    def __getitem__(self, idx) -> np.ndarray:
        t = np.asarray(self.times[idx], dtype=np.int64) - self.newest
        return np.asarray(self.frame_scores[t], dtype=np.float32)


def sample_contrast(dataset) -> list[SessionContrast]:
    """Raw (un-normalised) contrast of each training sample of a ``MultiSessionDataset``, per session, as lazy
    :class:`SessionContrast` views (``np.asarray(view[:])`` gives the array). Sample ``t`` gets its newest
    frame's score, frame ``t - min(lags)``."""
    newest = int(np.min(dataset.lags)) if len(dataset.lags) else 0
    return [SessionContrast(session_contrast(s, mmap=True), np.asarray(t), newest)
            for s, t in zip(dataset.sessions, dataset.times)]


def _scan(contrast) -> tuple[float, list[int]]:
    """(the exact median of all samples' contrast, the number of positive scores per session), in two passes over
    16-bit buckets of the float32 scores (their bit patterns order like the values, all being >= 0), reading
    each session in chunks: no array of all samples is built. The median is ``numpy.median``'s (the mean of the
    two middle values for an even count)."""
    chunk = 1 << 20
    counts = np.zeros(1 << 16, dtype=np.int64)
    n_positive, total = [], 0
    for c in contrast:
        pos = 0
        for a in range(0, len(c), chunk):
            v = np.ascontiguousarray(c[a:a + chunk], dtype=np.float32)
            if not np.all(np.isfinite(v)) or (v.size and v.min() < 0):
                raise ValueError("contrast scores must be finite and >= 0")
            counts += np.bincount(v.view(np.uint32) >> 16, minlength=1 << 16)
            pos += int(np.count_nonzero(v > 0))
        n_positive.append(pos)
        total += len(c)
    if total == 0:
        return 1.0, n_positive
    cum = np.cumsum(counts)
    ranks = sorted({(total - 1) // 2, total // 2})
    buckets = [int(np.searchsorted(cum, r, side="right")) for r in ranks]
    inside = []
    for c in contrast:
        for a in range(0, len(c), chunk):
            v = np.ascontiguousarray(c[a:a + chunk], dtype=np.float32)
            top = v.view(np.uint32) >> 16
            inside.append(v[(top >= buckets[0]) & (top <= buckets[-1])])
    inside = np.sort(np.concatenate(inside))
    below = int(cum[buckets[0] - 1]) if buckets[0] > 0 else 0
    values = [float(inside[r - below]) for r in ranks]
    return float(np.mean(values)), n_positive


def curriculum_alpha(step: int, warmup_steps: int) -> float:
    """``0.5 + 0.5 * min(step / warmup_steps, 1)`` (1 when ``warmup_steps <= 0``)."""
    if warmup_steps <= 0:
        return 1.0
    return 0.5 + 0.5 * min(max(float(step), 0.0) / float(warmup_steps), 1.0)


class ContrastWeightedSampler(SessionBatchSampler):
    """Contrast-curriculum batch sampler (module docstring); a :class:`SessionBatchSampler` otherwise.

    Args:
        contrast: per session, the raw contrast of each training sample (aligned with the dataset's
            samples, e.g. from :func:`sample_contrast`). Divided by their global median (``normalize``).
        batch_size: target batch size (``batch_size`` attribute is ``None``, as for the base class).
        warmup_steps: optimizer steps of the curriculum (legacy 8000).
        accumulate: gradient-accumulation micro-batches per optimizer step.
        normalize: divide by the global median (a median of 0 leaves the scores unscaled).
        seed, drop_last, num_replicas, max_batches, policy, temperature, session_synchronous:
            as for :class:`SessionBatchSampler` (always shuffled).
    """

    def __init__(
        self,
        contrast: Sequence[np.ndarray],
        batch_size: int,
        *,
        warmup_steps: int = 8000,
        accumulate: int = 1,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        max_batches: int | None = None,
        policy: str = "proportional",
        temperature: float = 1.0,
        session_synchronous: bool = False,
        normalize: bool = True,
    ):
        raw = [c if isinstance(c, SessionContrast) else np.asarray(c, dtype=np.float32).reshape(-1) for c in contrast]
        super().__init__(
            [len(c) for c in raw], batch_size, seed=seed, shuffle=True, drop_last=drop_last,
            num_replicas=num_replicas, max_batches=max_batches, policy=policy, temperature=temperature,
            session_synchronous=session_synchronous,
        )
        if accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {accumulate}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.contrast = raw  # raw scores per session (arrays or lazy views); weights divide by the median
        median, self._n_positive = _scan(raw)
        self.median = median if (normalize and median > 0) else 1.0
        self.warmup_steps = int(warmup_steps)
        self.accumulate = int(accumulate)
        self.step = 0
        self.epoch_start_step = 0
        self._resume_start_step = 0

    @classmethod
    def from_dataset(cls, dataset, batch_size: int, **kwargs) -> "ContrastWeightedSampler":
        """Build from a ``MultiSessionDataset`` (per-sample contrast from the cached per-frame scores)."""
        return cls(sample_contrast(dataset), batch_size, **kwargs)

    # ----------------------------------------------------------------- schedule
    def alpha(self, step: int) -> float:
        return curriculum_alpha(step, self.warmup_steps)

    def weights(self, session: int, step: int, idx=None) -> np.ndarray:
        """``min(alpha(step) * c / median, 1)`` (float32) for the samples ``idx`` of ``session`` (all by default)."""
        c = self.contrast[session][slice(None) if idx is None else idx]
        c = np.asarray(c, dtype=np.float32) / np.float32(self.median)
        return np.minimum(np.float32(self.alpha(step)) * c, np.float32(1.0))

    def batch_step(self, b: int, epoch_start_step: int) -> int:
        """The optimizer step that consumes global batch ``b`` of an epoch."""
        return int(epoch_start_step) + int(b) // (self.num_replicas * self.accumulate)

    def set_step(self, step: int) -> None:
        """The loop's current optimizer step (read when a pass begins; see module docstring)."""
        self.step = int(step)

    # ----------------------------------------------------------------- batches
    def _draw(self, epoch: int, b: int, session: int, k: int, step: int) -> np.ndarray:
        """``k`` samples of ``session`` drawn without replacement ∝ their weights at ``step`` (module docstring)."""
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_TAG_DRAW, epoch, b)))
        n = self.session_sizes[session]
        if self._n_positive[session] >= k:
            taken = self._draw_by_rejection(rng, session, k, step, n)
            if taken is not None:
                return taken + self.offsets[session]
        return self._draw_by_keys(rng, session, k, step) + self.offsets[session]

    def _draw_by_rejection(self, rng, session: int, k: int, step: int, n: int) -> np.ndarray | None:
        """Propose uniformly, accept with probability w; None when acceptance is too low to be worth it."""
        taken: dict[int, None] = {}  # insertion-ordered set
        budget = 64 * k + 1024
        while len(taken) < k and budget > 0:
            m = min(budget, 2 * (k - len(taken)) + 16)
            budget -= m
            i = rng.integers(0, n, size=m)
            accept = rng.random(m, dtype=np.float32) < self.weights(session, step, i)
            for j in i[accept].tolist():
                if j not in taken:
                    taken[j] = None
                    if len(taken) == k:
                        break
        return np.fromiter(taken, dtype=np.int64, count=k) if len(taken) == k else None

    def _draw_by_keys(self, rng, session: int, k: int, step: int) -> np.ndarray:
        """Exponential keys over the whole session: the ``k`` smallest ``E_i / w_i`` in increasing order; samples
        of weight 0 only after all positive ones (uniformly among themselves)."""
        w = self.weights(session, step)
        e = rng.standard_exponential(len(w), dtype=np.float32)
        pos = w > 0
        with np.errstate(divide="ignore"):
            keys = np.where(pos, e / np.where(pos, w, 1.0), np.inf).astype(np.float32)
        if int(np.count_nonzero(pos)) < k:  # fill with zero-weight samples, uniformly
            keys = np.where(pos, keys, np.max(keys[pos], initial=0.0) + 1.0 + e).astype(np.float32)
        idx = np.argpartition(keys, k - 1)[:k] if k < len(w) else np.arange(len(w))
        return idx[np.argsort(keys[idx], kind="stable")].astype(np.int64)

    def plan(self, epoch: int, epoch_start_step: int, start: int = 0) -> Iterator[tuple[np.ndarray, int, float]]:
        """Yield ``(batch, step, alpha)`` for global batches ``start ..`` of ``epoch`` (pure function)."""
        skeleton = self.batches_for_epoch(epoch)
        for b in range(int(start), len(skeleton)):
            base = skeleton[b]
            step = self.batch_step(b, epoch_start_step)
            alpha = self.alpha(step)
            if step >= self.warmup_steps:
                yield base, step, alpha
            else:
                yield self._draw(epoch, b, self.session_of_batch(base), len(base), step), step, alpha

    def curriculum_batches_for_epoch(self, epoch: int, epoch_start_step: int) -> list[np.ndarray]:
        """The full global batch list of ``epoch`` when it starts at optimizer step ``epoch_start_step``."""
        return [b for b, _, _ in self.plan(epoch, epoch_start_step)]

    def iter_with_info(self) -> Iterator[tuple[list[int], int, float]]:
        """Like ``iter(self)`` but yields ``(batch, step, alpha)``."""
        epoch = self.epoch
        if self._skip_epoch == epoch:
            skip, start_step = self._skip, self._resume_start_step
        else:
            skip, start_step = 0, self.step
        self._skip, self._skip_epoch = 0, -1
        self.epoch_start_step = start_step
        return ((b.tolist(), s, a) for b, s, a in self.plan(epoch, start_step, skip))

    def __iter__(self) -> Iterator[list[int]]:
        # Not a generator function: the epoch's start step is captured when the pass begins.
        return (b for b, _, _ in self.iter_with_info())

    # ----------------------------------------------------------------- state
    def set_position(self, epoch: int, batches_consumed: int, epoch_start_step: int | None = None) -> None:
        """Record how far training got (called by the loop right before a checkpoint is saved).

        ``batches_consumed == 0`` means the epoch has not begun: it will begin at the current step
        (``set_step``), unless ``epoch_start_step`` is given. Otherwise the start step of the pass in
        progress is kept.
        """
        super().set_position(epoch, batches_consumed)
        if epoch_start_step is not None:
            self.epoch_start_step = int(epoch_start_step)
        elif int(batches_consumed) == 0:
            self.epoch_start_step = self.step

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "epoch_start_step": self.epoch_start_step,
            "batches_consumed": self._consumed,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.epoch_start_step = int(state.get("epoch_start_step", 0))
        self._resume_start_step = self.epoch_start_step
        # best guess of the loop's step until it calls set_step
        self.step = self.batch_step(self._consumed, self.epoch_start_step) if self._consumed else self.epoch_start_step
