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
  probabilities ∝ ``w`` (successive multinomial draws without replacement, implemented with the
  equivalent exponential-keys method of Efraimidis & Spirakis: the ``k`` smallest ``E_i / w_i``,
  ``E_i ~ Exp(1)``, in increasing order), from a generator seeded by ``(seed, epoch, b)``. Every batch
  is therefore a pure function of ``(seed, epoch, s(b), b)``; all ranks build the same sequence and
  Accelerate shards it. During warm-up a sample may appear in several batches of an epoch (never twice in
  one batch) and low-contrast samples less often; the number of batches per epoch is unchanged.
* **Resume.** ``state_dict`` = ``seed, epoch, epoch_start_step, batches_consumed``; a resumed sampler
  skips the consumed batches and yields exactly the remaining batches of the uninterrupted run,
  with the same alphas.

Zero weights (blank frames, ``c = 0``) are never drawn while positive-weight samples remain; if a
batch needs more samples than have positive weight, the rest are filled from the zero-weight ones
(uniformly).
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


def session_contrast(session, chunk: int = 4096) -> np.ndarray:
    """:func:`frame_contrast` of a session's frames, cached as ``<session.path>/neurotrain_contrast.npy``.

    The cache is reused when it exists, has ``session.n_frames`` entries and is not older than the
    session's data files; otherwise it is (re)computed and written atomically (a temporary file in the
    same folder, then ``os.replace``). A read-only session folder just skips the cache.
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
                c = np.load(path, allow_pickle=False)
                if c.ndim == 1 and len(c) == n:
                    return c.astype(np.float32, copy=False)
        except (OSError, ValueError):
            pass
    c = frame_contrast(session.frames, chunk=chunk)
    try:
        with atomic_write(path, "wb") as f:
            np.save(f, c, allow_pickle=False)
    except OSError:
        pass  # read-only folder: no cache
    return c


def sample_contrast(dataset) -> list[np.ndarray]:
    """Raw (un-normalised) contrast of each training sample of a ``MultiSessionDataset``, per session.

    Sample ``j`` of session ``s`` (time ``t = dataset.times[s][j]``) gets the contrast of its newest
    frame, ``t - min(lags)``.
    """
    newest = int(np.min(dataset.lags)) if len(dataset.lags) else 0
    return [session_contrast(s)[np.asarray(t, dtype=np.int64) - newest] for s, t in zip(dataset.sessions, dataset.times)]


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
        raw = [np.asarray(c, dtype=np.float64).reshape(-1) for c in contrast]
        super().__init__(
            [len(c) for c in raw], batch_size, seed=seed, shuffle=True, drop_last=drop_last,
            num_replicas=num_replicas, max_batches=max_batches, policy=policy, temperature=temperature,
            session_synchronous=session_synchronous,
        )
        if accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {accumulate}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        allc = np.concatenate(raw) if raw else np.zeros(0)
        if allc.size and (not np.all(np.isfinite(allc)) or allc.min() < 0):
            raise ValueError("contrast scores must be finite and >= 0")
        median = float(np.median(allc)) if (normalize and allc.size) else 1.0
        if not median > 0:
            median = 1.0
        self.median = median
        self.contrast = [(c / median).astype(np.float32) for c in raw]
        self._has_zero = [bool(np.any(c <= 0)) for c in self.contrast]
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

    def weights(self, session: int, step: int) -> np.ndarray:
        """``min(alpha(step) * c, 1)`` for the samples of ``session``."""
        return np.minimum(np.float32(self.alpha(step)) * self.contrast[session], np.float32(1.0))

    def batch_step(self, b: int, epoch_start_step: int) -> int:
        """The optimizer step that consumes global batch ``b`` of an epoch."""
        return int(epoch_start_step) + int(b) // (self.num_replicas * self.accumulate)

    def set_step(self, step: int) -> None:
        """The loop's current optimizer step (read when a pass begins; see module docstring)."""
        self.step = int(step)

    # ----------------------------------------------------------------- batches
    def _draw(self, epoch: int, b: int, session: int, k: int, step: int) -> np.ndarray:
        w = self.weights(session, step)  # float32
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_TAG_DRAW, epoch, b)))
        e = rng.standard_exponential(len(w), dtype=np.float32)
        if self._has_zero[session]:
            pos = w > 0
            with np.errstate(divide="ignore"):
                keys = np.where(pos, e / np.where(pos, w, 1.0), np.inf).astype(np.float32)
            if int(np.count_nonzero(pos)) < k:  # fill with zero-weight samples, uniformly
                keys = np.where(pos, keys, np.max(keys[pos], initial=0.0) + 1.0 + e).astype(np.float32)
        else:
            keys = e / w
        if k < len(w):
            idx = np.argpartition(keys, k - 1)[:k]
        else:
            idx = np.arange(len(w))
        idx = idx[np.argsort(keys[idx], kind="stable")]
        return idx.astype(np.int64) + self.offsets[session]

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
