"""A global-view batch sampler that yields single-session batches, under a choice of session policies.

Determinism contract
--------------------
* The batch sequence of an epoch is a pure function of ``(seed, epoch)``, the session sizes and the
  constructor arguments. Every rank builds the *identical* global sequence; Accelerate's
  ``BatchSamplerShard`` then hands rank ``r`` the global batches ``r, r + N, r + 2N, ...``. The sampler
  never looks at its rank.
* It knows the world size ``num_replicas`` only to make the number of batches of an epoch a multiple
  of it, so every rank runs the same number of steps (and, with ``session_synchronous``, to group
  batches by ``N``).
* ``set_epoch(e)`` selects epoch ``e``. The training loop calls it before each epoch (Accelerate also
  calls it with its own pass counter, which the loop keeps equal to the epoch).
* Resume: ``state_dict()`` holds ``seed``, ``epoch`` and ``batches_consumed`` (global batches of that
  epoch already trained on). The loop sets the position with ``set_position`` just before saving,
  because the sampler runs ahead of training (prefetch, Accelerate's one-batch lookahead). After
  ``load_state_dict`` the first ``__iter__`` of that epoch skips the consumed batches by index
  arithmetic only; no data is loaded for them.

Batches hold *global* sample indices of a :class:`~neurotrain.data.multisession.MultiSessionDataset`
(session ``s`` owns indices ``offsets[s] .. offsets[s] + sizes[s] - 1``).

Session policies (``policy``)
-----------------------------
``"proportional"`` (default)
    Every sample exactly once per epoch: each session's samples are permuted (seeded by
    ``(seed, epoch)``), cut into batches of ``batch_size`` (the last one short), and the batches of all
    sessions are shuffled together. A session appears in proportion to its number of batches,
    ``ceil(n_s / batch_size)``. To make the count a multiple of ``num_replicas`` the largest batches are
    split in two (so a few batches are shorter). This is the original behaviour, bit for bit.
``"uniform"`` / ``"temperature"``
    The epoch has exactly as many batches (``session_synchronous``: groups) as the proportional epoch
    with the same arguments. The session of each batch is drawn i.i.d. with probability
    ``p_s ∝ n_s ** (1 / temperature)`` (``n_s`` = samples of session ``s``; ``"uniform"`` is
    ``p_s = 1 / S``; ``temperature = 1`` is proportional to size, ``temperature → ∞`` uniform).
    Implementation: the per-session counts of epoch ``e`` are ``Multinomial(n_batches, p)`` and their
    order a random permutation, both from a generator seeded by ``(seed, epoch)``; this is the same
    distribution as i.i.d. draws.

    Samples inside a session are drawn *without replacement* from an endless per-session stream:
    the stream of session ``s`` is the concatenation of cycles ``k = 0, 1, 2, ...``; cycle ``k`` is a
    permutation of the session's ``n_s`` samples (seeded by ``(seed, s, k)`` only) cut into batches
    exactly like a proportional epoch cuts that session (``batch_size`` each, the last one short; with
    ``session_synchronous`` into the groups described below). Batch ``j`` of session ``s`` counted from
    the start of training (over all epochs) is batch ``j % U_s`` of cycle ``j // U_s``, where ``U_s`` is
    the number of batches of one cycle. The position at the start of epoch ``e`` is the sum of the
    session's counts in epochs ``0 .. e-1``, which are recomputed from ``(seed, epoch')`` (cheap:
    one multinomial per epoch, cached), so an epoch is still a pure function of ``(seed, epoch)``.
    Consequently every sample of a session is used exactly once per cycle: over the epochs a session
    is drawn, all its samples are used equally often (up to the current, incomplete cycle); a batch
    never straddles two cycles, so no batch holds a sample twice. An epoch itself may repeat a sample
    of an often-drawn small session (a new cycle) and leave out samples of a rarely drawn large one;
    a session whose probability is 0 (no samples) is never drawn.

``session_synchronous=True``
    The global sequence is made of *groups* of ``num_replicas`` consecutive batches from one session,
    so the ``N`` batches that the ranks train on in one optimizer micro-step all come from the same
    session and no rank's readout is idle in that step (DDP needs no unused-parameter search for
    readouts, and every rank's gradient of that readout is averaged over ``N`` real batches).
    A session's permuted samples are cut into ``G_s = ceil(n_s / (batch_size * N))`` groups of ``N``
    batches with ``np.array_split`` into ``G_s * N`` nearly equal batches (sizes differ by at most one,
    all ``<= batch_size``), so with ``proportional`` every sample is still drawn exactly once per epoch,
    without duplicates. Only when that would leave a batch empty (``n_s < G_s * N``, possible only for
    ``batch_size`` smaller than ``N`` or ``n_s < N``) the last group is dropped and its ``< N`` leftover
    samples (a different random subset each epoch) are not used in that epoch; a session with fewer
    than ``N`` samples is never used. ``drop_last`` keeps only full groups of full batches.
    Groups (not batches) are shuffled and drawn by the policy; ``max_batches`` keeps whole groups.

How the loss weighs neurons, bins and sessions
----------------------------------------------
Each micro-batch's loss is the mean over the valid ``(sample, neuron)`` entries (``dfs == 1``) of that
batch (see ``neurotrain.training.loss.batch_loss``); a batch holds one session. Accelerate divides it by the
accumulation steps and DDP averages the gradients of the ``N`` ranks, so every micro-batch of an
optimizer step has the same total weight, whatever its size or neuron count. Hence:

* **Neurons and bins within a session** weigh equally per valid bin: an entry of a batch with ``V``
  valid entries has weight ``1 / V``; a neuron's total weight grows with its number of valid bins.
  (Entries of a short batch, e.g. a session's last batch, weigh a little more than others.)
* **Across sessions**, a session's weight is how often its batches are drawn, independent of its
  neuron count (a neuron in a session with many neurons weighs less per entry than one in a small
  session): ``proportional`` ∝ ``ceil(n_s / batch_size)`` ≈ its sample count (every sample once per
  epoch); ``uniform`` equal for all sessions; ``temperature`` ∝ ``n_s ** (1 / T)``.
* **Within a session**, ``proportional`` uses each sample once per epoch; ``uniform``/``temperature``
  use each sample once per cycle of that session (above); the curriculum
  (:class:`neurotrain.data.curriculum.ContrastWeightedSampler`) re-weights samples during its
  warm-up by drawing them ∝ their contrast weight.
* ``session_synchronous`` changes only the grouping, not these weights (with DDP every rank of a step
  then trains the same readout).

Example::

    >>> s = SessionBatchSampler([5, 3], batch_size=2, seed=0)
    >>> sorted(i for b in s for i in b) == list(range(8))
    True
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np

__all__ = ["SessionBatchSampler", "POLICIES"]

POLICIES = ("proportional", "uniform", "temperature")

# spawn-key tags that keep the independent random streams apart
_TAG_COUNTS = 101
_TAG_CYCLE = 102


class SessionBatchSampler:
    """Single-session batches over a concatenation of sessions.

    Args:
        session_sizes: number of samples of each session, in dataset order.
        batch_size: the target batch size. The attribute ``batch_size`` is ``None`` on purpose: batches
            may be shorter (a session's last batch, or a split to balance ranks), and Accelerate only
            accepts variable-size batches from a sampler whose ``batch_size`` is ``None``.
        seed: seeds every permutation, together with the epoch.
        shuffle: shuffle samples within sessions and the order of batches; ``False`` gives session
            after session in index order (used for validation; ``proportional`` only).
        drop_last: drop each session's last short batch (``session_synchronous``: its last partial group).
        num_replicas: world size; used to make the batch count a multiple of it and for the grouping of
            ``session_synchronous``.
        max_batches: truncate each epoch to this many global batches (legacy ``steps_per_epoch``); the
            truncated epoch still shuffles, so later epochs see other samples.
        policy: ``"proportional"``, ``"uniform"`` or ``"temperature"`` (module docstring).
        temperature: ``T > 0`` of the ``"temperature"`` policy (``math.inf`` = uniform).
        session_synchronous: group the batches so that each step's ``num_replicas`` batches share a session.
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
        policy: str = "proportional",
        temperature: float = 1.0,
        session_synchronous: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        temperature = float(temperature)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if policy != "proportional" and not shuffle:
            raise ValueError(f"policy {policy!r} draws sessions at random; shuffle=False needs 'proportional'")
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
        self.session_sizes = [int(n) for n in session_sizes]
        if any(n < 0 for n in self.session_sizes):
            raise ValueError("session sizes must be >= 0")
        self.offsets = np.concatenate([[0], np.cumsum(self.session_sizes)]).astype(np.int64)
        self.target_batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.session_drop_last = drop_last
        self.num_replicas = int(num_replicas)
        self.max_batches = max_batches
        self.policy = policy
        self.temperature = temperature
        self.session_synchronous = bool(session_synchronous)
        self.epoch = 0
        self._skip = 0  # global batches to skip in the next pass of epoch `self._skip_epoch`
        self._skip_epoch = -1
        self._consumed = 0
        self._cache: tuple[int, list[np.ndarray]] | None = None  # (epoch, batches) of the last epoch built
        self._cum_counts: list[np.ndarray] = []  # policy sampling: units drawn per session before epoch e
        self._cycle_cache: dict[tuple[int, int], list[list[np.ndarray]]] = {}
        if sum(self.session_sizes) < self.num_replicas:
            raise ValueError(
                f"{sum(self.session_sizes)} samples cannot be spread over {self.num_replicas} ranks"
            )
        self.units_per_session = [self._n_units(n) for n in self.session_sizes]
        if sum(self.units_per_session) == 0:
            raise ValueError("no session yields a batch (drop_last / session_synchronous with too few samples)")
        if policy != "proportional":
            w = np.array(
                [float(n) ** (0.0 if (policy == "uniform" or math.isinf(temperature)) else 1.0 / temperature)
                 if u > 0 else 0.0 for n, u in zip(self.session_sizes, self.units_per_session)]
            )
            self.session_probs = w / w.sum()
        else:
            u = np.asarray(self.units_per_session, dtype=np.float64)
            self.session_probs = u / u.sum()  # expected share of batches (groups)

    # ----------------------------------------------------------------- session layout
    def _n_groups(self, n: int) -> int:
        """``session_synchronous``: number of groups of ``N`` batches a session of ``n`` samples forms."""
        bs, N = self.target_batch_size, self.num_replicas
        if self.session_drop_last:
            return n // (bs * N)
        g = -(-n // (bs * N))
        if n < g * N:  # the last group cannot give every rank a sample: drop it (see module docstring)
            g -= 1
        return g

    def _n_units(self, n: int) -> int:
        """Batches (``session_synchronous``: groups) one pass over a session of ``n`` samples yields."""
        if self.session_synchronous:
            return self._n_groups(n)
        bs = self.target_batch_size
        return n // bs if self.session_drop_last else -(-n // bs)

    def _units(self, n: int, idx: np.ndarray) -> list[list[np.ndarray]]:
        """Cut a session's (permuted, offset) indices into units: lists of 1 (or ``N``) batches."""
        bs, N = self.target_batch_size, self.num_replicas
        if not self.session_synchronous:
            stop = (n // bs) * bs if self.session_drop_last else n
            return [[idx[i : i + bs]] for i in range(0, stop, bs)]
        g = self._n_groups(n)
        if g == 0:
            return []
        if self.session_drop_last or n < -(-n // (bs * N)) * N:
            chunks = [idx[i : i + bs] for i in range(0, g * N * bs, bs)]  # full batches, remainder dropped
        else:
            chunks = np.array_split(idx, g * N)
        return [chunks[i : i + N] for i in range(0, g * N, N)]

    def _truncated_units(self, n_units: int) -> int:
        """Apply ``max_batches`` (and, without synchronous grouping, round up to a multiple of N)."""
        N = self.num_replicas
        per = N if self.session_synchronous else 1  # batches per unit
        n_batches = n_units * per
        if self.max_batches is not None and n_batches > self.max_batches:
            keep = max(self.max_batches - self.max_batches % N, N)
            if keep <= n_batches:
                return keep // per
        if self.session_synchronous:
            return n_units
        return -(-n_units // N) * N  # what splitting the largest batches gives

    # ----------------------------------------------------------------- epoch construction
    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))

    def batches_for_epoch(self, epoch: int) -> list[np.ndarray]:
        """The full global batch list of ``epoch`` (before any resume skip)."""
        epoch = int(epoch)
        if self._cache is None or self._cache[0] != epoch:
            if self.policy == "proportional":
                if self.session_synchronous:
                    batches = self._proportional_synchronous(epoch)
                else:
                    batches = self._proportional(epoch)
            else:
                batches = self._policy_epoch(epoch)
            self._cache = (epoch, batches)
        return list(self._cache[1])

    def _proportional(self, epoch: int) -> list[np.ndarray]:
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

    def _proportional_synchronous(self, epoch: int) -> list[np.ndarray]:
        rng = self._rng(epoch)
        units: list[list[np.ndarray]] = []
        for s, n in enumerate(self.session_sizes):
            idx = rng.permutation(n) if self.shuffle else np.arange(n, dtype=np.int64)
            units.extend(self._units(n, idx.astype(np.int64) + self.offsets[s]))
        if self.shuffle:
            order = rng.permutation(len(units))
            units = [units[i] for i in order]
        units = units[: self._truncated_units(len(units))]
        return [b for u in units for b in u]

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

    # ---- uniform / temperature
    def units_per_epoch(self) -> int:
        """Units (batches, or groups of N batches when synchronous) of one epoch under ``uniform``/``temperature``."""
        return self._truncated_units(sum(self.units_per_session))

    def _epoch_rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_TAG_COUNTS, epoch)))

    def session_counts(self, epoch: int) -> np.ndarray:
        """Units drawn from each session in ``epoch`` (``uniform``/``temperature``)."""
        return self._epoch_rng(epoch).multinomial(self.units_per_epoch(), self.session_probs).astype(np.int64)

    def _start_positions(self, epoch: int) -> np.ndarray:
        """Units of each session's stream consumed by epochs ``0 .. epoch-1``."""
        if not self._cum_counts:
            self._cum_counts.append(np.zeros(len(self.session_sizes), dtype=np.int64))
        while len(self._cum_counts) <= epoch:
            e = len(self._cum_counts) - 1
            self._cum_counts.append(self._cum_counts[-1] + self.session_counts(e))
        return self._cum_counts[epoch]

    def _cycle(self, s: int, k: int) -> list[list[np.ndarray]]:
        key = (s, k)
        if key not in self._cycle_cache:
            if len(self._cycle_cache) > 4 * len(self.session_sizes) + 16:
                self._cycle_cache.clear()
            n = self.session_sizes[s]
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_TAG_CYCLE, s, k)))
            self._cycle_cache[key] = self._units(n, rng.permutation(n).astype(np.int64) + self.offsets[s])
        return self._cycle_cache[key]

    def _policy_epoch(self, epoch: int) -> list[np.ndarray]:
        rng = self._epoch_rng(epoch)
        counts = rng.multinomial(self.units_per_epoch(), self.session_probs).astype(np.int64)
        order = rng.permutation(np.repeat(np.arange(len(counts)), counts))
        pos = self._start_positions(epoch).copy()
        batches: list[np.ndarray] = []
        for s in order.tolist():
            u = self.units_per_session[s]
            j = int(pos[s])
            pos[s] += 1
            batches.extend(self._cycle(s, j // u)[j % u])
        return batches

    # ----------------------------------------------------------------- iteration
    def set_step(self, step: int) -> None:
        """The loop reports its optimizer step; only the curriculum sampler uses it (no-op here)."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def session_of_batch(self, batch) -> int:
        """The session of a (single-session) batch of global indices."""
        return int(np.searchsorted(self.offsets, int(batch[0]), side="right") - 1)

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
