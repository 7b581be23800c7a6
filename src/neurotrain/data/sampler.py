"""A global-view batch sampler that yields single-session batches.

Determinism contract
--------------------
* The batch sequence of an epoch is a pure function of ``(seed, epoch)`` and the session sizes.
  Every rank builds the *identical* global sequence; Accelerate's ``BatchSamplerShard`` then hands
  rank ``r`` the global batches ``r, r + N, r + 2N, ...``. The sampler never looks at its rank.
* It knows the world size ``num_replicas`` only to make the number of batches of an epoch a multiple
  of it (by splitting the largest batches in two), so every rank runs the same number of steps and
  every training sample is drawn exactly once per epoch across all ranks: no padding, no duplicates,
  no dropped samples (unless ``drop_last``).
* ``set_epoch(e)`` selects the permutation of epoch ``e``. The training loop calls it before each
  epoch (Accelerate also calls it with its own pass counter, which the loop keeps equal to the epoch).
* Resume: ``state_dict()`` holds ``seed``, ``epoch`` and ``batches_consumed`` (global batches of that
  epoch already trained on). The loop sets the position with ``set_position`` just before saving,
  because the sampler runs ahead of training (prefetch, Accelerate's one-batch lookahead). After
  ``load_state_dict`` the first ``__iter__`` of that epoch skips the consumed batches by index
  arithmetic only; no data is loaded for them.

Batches hold *global* sample indices of a :class:`~neurotrain.data.multisession.MultiSessionDataset`
(session ``s`` owns indices ``offsets[s] .. offsets[s] + sizes[s] - 1``).

Example::

    >>> s = SessionBatchSampler([5, 3], batch_size=2, seed=0)
    >>> sorted(i for b in s for i in b) == list(range(8))
    True
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


class SessionBatchSampler:
    """Single-session batches over a concatenation of sessions.

    Args:
        session_sizes: number of samples of each session, in dataset order.
        batch_size: the target batch size. The attribute ``batch_size`` is ``None`` on purpose: batches
            may be shorter (a session's last batch, or a split to balance ranks), and Accelerate only
            accepts variable-size batches from a sampler whose ``batch_size`` is ``None``.
        seed: seeds every permutation, together with the epoch.
        shuffle: shuffle samples within sessions and the order of batches; ``False`` gives session
            after session in index order (used for validation).
        drop_last: drop each session's last short batch.
        num_replicas: world size; only used to make the batch count a multiple of it.
        max_batches: truncate each epoch to this many global batches (legacy ``steps_per_epoch``); the
            truncated epoch still shuffles, so later epochs see other samples.
    """

    batch_size = None  # see class docstring
    drop_last = False

    def __init__(
        self,
        session_sizes: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        num_replicas: int = 1,
        max_batches: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        self.session_sizes = [int(n) for n in session_sizes]
        self.offsets = np.concatenate([[0], np.cumsum(self.session_sizes)]).astype(np.int64)
        self.target_batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.session_drop_last = drop_last
        self.num_replicas = int(num_replicas)
        self.max_batches = max_batches
        self.epoch = 0
        self._skip = 0  # global batches to skip in the next pass of epoch `self._skip_epoch`
        self._skip_epoch = -1
        self._consumed = 0
        if sum(self.session_sizes) < self.num_replicas:
            raise ValueError(
                f"{sum(self.session_sizes)} samples cannot be spread over {self.num_replicas} ranks"
            )

    # ----------------------------------------------------------------- epoch construction
    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))

    def batches_for_epoch(self, epoch: int) -> list[np.ndarray]:
        """The full global batch list of ``epoch`` (before any resume skip)."""
        rng = self._rng(epoch)
        bs = self.target_batch_size
        batches: list[np.ndarray] = []
        for s, n in enumerate(self.session_sizes):
            idx = np.arange(n, dtype=np.int64)
            if self.shuffle:
                idx = rng.permutation(n)
            idx = idx + self.offsets[s]
            stop = (n // bs) * bs if self.session_drop_last else n
            batches.extend(idx[i : i + bs] for i in range(0, stop, bs))
        if self.shuffle:
            order = rng.permutation(len(batches))
            batches = [batches[i] for i in order]
        if self.max_batches is not None and len(batches) > self.max_batches:
            # A truncated epoch keeps whole batches, a multiple of num_replicas of them.
            keep = max(self.max_batches - self.max_batches % self.num_replicas, self.num_replicas)
            if keep <= len(batches):
                return batches[:keep]
        return self._split_to_multiple(batches)

    def _split_to_multiple(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """Split the largest batches in two until the count is a multiple of ``num_replicas``."""
        while len(batches) % self.num_replicas:
            j = max(range(len(batches)), key=lambda k: (len(batches[k]), -k))
            big = batches[j]
            if len(big) < 2:
                raise ValueError("not enough samples to give every rank a batch")
            half = (len(big) + 1) // 2
            batches[j : j + 1] = [big[:half], big[half:]]
        return batches

    # ----------------------------------------------------------------- iteration
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches_for_epoch(self.epoch)
        skip = self._skip if self._skip_epoch == self.epoch else 0
        self._skip, self._skip_epoch = 0, -1
        for b in batches[skip:]:
            yield b.tolist()

    def __len__(self) -> int:
        n = len(self.batches_for_epoch(self.epoch))
        if self._skip_epoch == self.epoch:
            n -= self._skip
        return n

    # ----------------------------------------------------------------- state
    def set_position(self, epoch: int, batches_consumed: int) -> None:
        """Record how far training got (called by the loop right before a checkpoint is saved)."""
        self.epoch = int(epoch)
        self._consumed = int(batches_consumed)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "batches_consumed": self._consumed}

    def load_state_dict(self, state: dict) -> None:
        if int(state["seed"]) != self.seed:
            raise ValueError(f"sampler seed in checkpoint ({state['seed']}) differs from the recipe ({self.seed})")
        self.epoch = int(state["epoch"])
        self._consumed = int(state["batches_consumed"])
        self._skip, self._skip_epoch = self._consumed, self.epoch
