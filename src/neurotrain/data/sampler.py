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

Memory and time do not grow with the number of samples: an epoch is an :class:`EpochPlan`, which holds the
order of the epoch's units (one small int per batch: 12 MB for 1.5M batches, i.e. 100M samples in batches of
64) and computes a batch's sample indices when it is asked for, through per-session
:class:`~neurotrain.data.permutation.LazyPermutation` shuffles (no permutation of a session is ever held).
Skipping consumed batches on resume is index arithmetic.

Session policies (``policy``)
-----------------------------
``"proportional"`` (default)
    Every sample exactly once per epoch: each session's samples are permuted (seeded by
    ``(seed, epoch, session)``), cut into batches of ``batch_size`` (the last one short), and the batches of
    all sessions are shuffled together (seeded by ``(seed, epoch)``). A session appears in proportion to its
    number of batches, ``ceil(n_s / batch_size)``. To make the count a multiple of ``num_replicas`` the
    largest batches are split in two (the first ones in the epoch's order among equals; so a few batches
    are shorter).
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

import bisect
import math
from typing import Iterator, Sequence

import numpy as np

from neurotrain.data.permutation import LazyPermutation

__all__ = ["SessionBatchSampler", "EpochPlan", "POLICIES"]

POLICIES = ("proportional", "uniform", "temperature")

# spawn-key tags that keep the independent random streams apart
_TAG_COUNTS = 101
_TAG_CYCLE = 102
_TAG_SESSION = 103


class EpochPlan:
    """The global batch sequence of one epoch, computed batch by batch (a read-only sequence of int64 arrays).

    ``unit_session[u]`` / ``unit_index[u]``: the session and the index in that session's stream of the epoch's
    ``u``-th unit (a batch, or with ``session_synchronous`` a group of ``num_replicas`` batches);
    ``permutation(s, unit_index)`` the shuffle the unit's samples come from. ``splits`` maps a unit to the
    ``(start, stop)`` offsets inside it of the pieces it is split into (balancing the batch count over ranks).
    """

    def __init__(self, sampler: "SessionBatchSampler", unit_session: np.ndarray, unit_index: np.ndarray,
                 permutation, splits: dict[int, list[tuple[int, int]]] | None = None):
        self._sampler = sampler
        self.unit_session = unit_session
        self.unit_index = unit_index
        self._permutation = permutation
        self._sync = sampler.session_synchronous
        self._per_unit = sampler.num_replicas if self._sync else 1
        self._splits = sorted((splits or {}).items())
        self._len = len(unit_session) * self._per_unit + sum(len(p) - 1 for _, p in self._splits)

    def __len__(self) -> int:
        return self._len

    def _locate(self, b: int) -> tuple[int, int | None]:
        """(unit, piece) of global batch ``b``; piece None = the unit's whole batch (or its part ``b % N``)."""
        if self._sync:
            return b // self._per_unit, b % self._per_unit
        extra = 0
        for unit, pieces in self._splits:
            first = unit + extra
            if b < first:
                break
            if b < first + len(pieces):
                return unit, b - first
            extra += len(pieces) - 1
        return b - extra, None

    def __getitem__(self, b):
        if isinstance(b, slice):
            return [self[i] for i in range(*b.indices(self._len))]
        b = int(b)
        if b < 0:
            b += self._len
        if not 0 <= b < self._len:
            raise IndexError(f"batch {b} of an epoch of {self._len}")
        unit, piece = self._locate(b)
        s, j = int(self.unit_session[unit]), int(self.unit_index[unit])
        sm = self._sampler
        lo, hi = sm._unit_span(s, j, piece if self._sync else None)
        if piece is not None and not self._sync:
            start, stop = dict(self._splits)[unit][piece]
            lo, hi = lo + start, lo + stop
        positions = np.arange(lo, hi, dtype=np.int64)
        return self._permutation(s, j)(positions) + sm.offsets[s]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[b] for b in range(self._len))


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
        self._cache: tuple[int, EpochPlan] | None = None  # the plan of the last epoch built
        self._cum_counts: list[np.ndarray] = []  # policy sampling: units drawn per session before epoch e
        if sum(self.session_sizes) < self.num_replicas:
            raise ValueError(
                f"{sum(self.session_sizes)} samples cannot be spread over {self.num_replicas} ranks"
            )
        self.units_per_session = [self._n_units(n) for n in self.session_sizes]
        self._cum_units = np.concatenate([[0], np.cumsum(self.units_per_session)]).astype(np.int64)
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

    def _unit_span(self, s: int, j: int, part: int | None) -> tuple[int, int]:
        """Positions ``[lo, hi)`` in session ``s``'s shuffle of unit ``j % U_s`` (``part``: which of the ``N``
        batches of a synchronous group)."""
        n, bs, N = self.session_sizes[s], self.target_batch_size, self.num_replicas
        u = j % self.units_per_session[s]
        if not self.session_synchronous:
            return u * bs, min((u + 1) * bs, n)
        c = u * N + int(part)  # chunk index among the session's G * N chunks
        g = self._n_groups(n)
        if self.session_drop_last or n < -(-n // (bs * N)) * N:  # full batches; the remainder is not used
            return c * bs, (c + 1) * bs
        k = g * N  # np.array_split of n positions into k nearly equal chunks
        q, r = divmod(n, k)
        lo = c * q + min(c, r)
        return lo, lo + q + (1 if c < r else 0)

    def _unit_sizes(self, unit_session: np.ndarray, unit_index: np.ndarray) -> np.ndarray:
        """Batch size of each (non-synchronous) unit."""
        n = np.asarray(self.session_sizes, dtype=np.int64)[unit_session]
        u = unit_index % np.asarray(self.units_per_session, dtype=np.int64)[unit_session]
        return np.minimum((u + 1) * self.target_batch_size, n) - u * self.target_batch_size

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

    # ----------------------------------------------------------------- shuffles
    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))

    def _epoch_shuffle(self, epoch: int):
        """Proportional epochs: session ``s``'s shuffle in ``epoch`` (the identity without ``shuffle``)."""
        if not self.shuffle:
            return lambda s, j: _identity
        perms: dict[int, LazyPermutation] = {}

        def perm(s: int, j: int) -> LazyPermutation:
            if s not in perms:
                perms[s] = LazyPermutation(self.session_sizes[s], (self.seed, _TAG_SESSION, epoch, s))
            return perms[s]

        return perm

    def _cycle_shuffle(self, s: int, j: int) -> LazyPermutation:
        """Policy epochs: the shuffle of cycle ``j // U_s`` of session ``s``'s endless stream."""
        k = j // self.units_per_session[s]
        return LazyPermutation(self.session_sizes[s], (self.seed, _TAG_CYCLE, s, k))

    # ----------------------------------------------------------------- epoch construction
    def batches_for_epoch(self, epoch: int) -> EpochPlan:
        """The global batch sequence of ``epoch`` (before any resume skip), as a lazy :class:`EpochPlan`."""
        epoch = int(epoch)
        if self._cache is None or self._cache[0] != epoch:
            if self.policy == "proportional":
                plan = self._proportional(epoch)
            else:
                plan = self._policy_epoch(epoch)
            self._cache = (epoch, plan)
        return self._cache[1]

    def _proportional(self, epoch: int) -> EpochPlan:
        U = int(self._cum_units[-1])
        order = self._rng(epoch).permutation(U) if self.shuffle else np.arange(U, dtype=np.int64)
        unit_session = (np.searchsorted(self._cum_units, order, side="right") - 1).astype(np.int64)
        unit_index = order - self._cum_units[unit_session]
        perm = self._epoch_shuffle(epoch)
        if self.session_synchronous:
            n = self._truncated_units(U)
            return EpochPlan(self, unit_session[:n], unit_index[:n], perm)
        if self.max_batches is not None and U > self.max_batches:
            # A truncated epoch keeps whole batches, a multiple of num_replicas of them.
            keep = max(self.max_batches - self.max_batches % self.num_replicas, self.num_replicas)
            if keep <= U:
                return EpochPlan(self, unit_session[:keep], unit_index[:keep], perm)
        splits = self._balancing_splits(self._unit_sizes(unit_session, unit_index))
        return EpochPlan(self, unit_session, unit_index, perm, splits)

    def _balancing_splits(self, sizes: np.ndarray) -> dict[int, list[tuple[int, int]]]:
        """Split the largest batches in two (the earliest in the epoch among equals) until the batch count is a
        multiple of ``num_replicas``; returns unit -> the ``(start, stop)`` pieces it is cut into."""
        missing = (-len(sizes)) % self.num_replicas
        pieces: dict[int, list[tuple[int, int]]] = {}
        unsplit = sizes.astype(np.int64).copy()
        for _ in range(missing):
            u = int(np.argmax(unsplit))  # the first of the largest unsplit batches
            best = (int(unsplit[u]), -self._first_batch(u, pieces), u, None)
            for v, ps in pieces.items():  # pieces of batches split before (at most N - 2 of them)
                for i, (a, b) in enumerate(ps):
                    cand = (b - a, -(self._first_batch(v, pieces) + i), v, i)
                    if cand[:2] > best[:2]:
                        best = cand
            size, _, unit, piece = best
            if size < 2:
                raise ValueError("not enough samples to give every rank a batch")
            if piece is None:
                half = (size + 1) // 2
                pieces[unit] = [(0, half), (half, size)]
                unsplit[unit] = -1
            else:
                a, b = pieces[unit][piece]
                half = (b - a + 1) // 2
                pieces[unit][piece:piece + 1] = [(a, a + half), (a + half, b)]
        return pieces

    @staticmethod
    def _first_batch(unit: int, pieces: dict[int, list[tuple[int, int]]]) -> int:
        """Global batch index of ``unit``'s first batch, given the pieces of the units split so far."""
        return unit + sum(len(p) - 1 for v, p in pieces.items() if v < unit)

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

    def _policy_epoch(self, epoch: int) -> EpochPlan:
        rng = self._epoch_rng(epoch)
        counts = rng.multinomial(self.units_per_epoch(), self.session_probs).astype(np.int64)
        unit_session = rng.permutation(np.repeat(np.arange(len(counts), dtype=np.int64), counts))
        # the k-th occurrence of session s in the epoch is unit start[s] + k of its stream
        by_session = np.argsort(unit_session, kind="stable")
        first = np.concatenate([[0], np.cumsum(counts)])[:-1]
        rank = np.empty(len(unit_session), dtype=np.int64)
        rank[by_session] = np.arange(len(unit_session)) - np.repeat(first, counts)
        unit_index = self._start_positions(epoch)[unit_session] + rank
        return EpochPlan(self, unit_session, unit_index, self._cycle_shuffle)

    # ----------------------------------------------------------------- iteration
    def set_step(self, step: int) -> None:
        """The loop reports its optimizer step; only the curriculum sampler uses it (no-op here)."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def session_of_batch(self, batch) -> int:
        """The session of a (single-session) batch of global indices."""
        return int(np.searchsorted(self.offsets, int(batch[0]), side="right") - 1)

    def __iter__(self) -> Iterator[list[int]]:
        plan = self.batches_for_epoch(self.epoch)
        skip = self._skip if self._skip_epoch == self.epoch else 0
        self._skip, self._skip_epoch = 0, -1
        for b in range(skip, len(plan)):
            yield plan[b].tolist()

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


def _identity(positions) -> np.ndarray:
    return np.asarray(positions, dtype=np.int64)
