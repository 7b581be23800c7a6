"""A keyed pseudo-random permutation of ``range(n)`` evaluated on demand, in O(1) memory.

``LazyPermutation(n, key)(positions)`` maps positions to a permutation of ``range(n)`` without ever holding the
permutation: a 4-round balanced Feistel network on the smallest even number of bits that covers ``n``, with
cycle-walking to stay inside ``range(n)``. A Feistel network is a bijection of its bit domain whatever its round
function, and cycle-walking restricts a bijection to a sub-range as a bijection, so the map is a permutation of
``range(n)`` for every key: drawing positions ``0 .. n-1`` gives every element exactly once. The round function
is a splitmix64-style mixer of the half-block and a round key; round keys come from
``numpy.random.SeedSequence(key)``, so the permutation is a pure function of ``(n, key)`` on every machine.

This is what lets a sampler shuffle sessions of millions of samples per epoch without materialising the
shuffles (an epoch of 100M samples would otherwise hold 800 MB of int64 permutations), and resume mid-epoch by
index arithmetic alone. Evaluating a batch of 64 positions costs a few dozen vectorised numpy operations.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

ROUNDS = 4
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


class LazyPermutation:
    """A permutation of ``range(n)`` keyed by ``key`` (a sequence of non-negative ints); see the module docstring."""

    __slots__ = ("n", "half", "mask", "keys")

    def __init__(self, n: int, key: Sequence[int]):
        self.n = int(n)
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        bits = max(2, (self.n - 1).bit_length())
        bits += bits % 2
        self.half = np.uint64(bits // 2)
        self.mask = np.uint64((1 << (bits // 2)) - 1)
        self.keys = np.random.SeedSequence([int(k) for k in key]).generate_state(ROUNDS, dtype=np.uint64)

    def _round(self, r: np.ndarray, k: np.uint64) -> np.ndarray:
        z = r ^ k
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z ^= z >> np.uint64(31)
        return z & self.mask

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for k in self.keys:
            left, right = right, left ^ self._round(right, k)
        return (left << self.half) | right

    def __call__(self, positions) -> np.ndarray:
        """The permuted values (int64) of ``positions`` (ints in ``range(n)``)."""
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= self.n):
            raise IndexError(f"positions must lie in range({self.n})")
        if self.n <= 1:
            return pos.copy()
        n = np.uint64(self.n)
        with np.errstate(over="ignore"):
            out = self._encrypt(pos.astype(np.uint64))
            outside = out >= n
            while outside.any():  # cycle-walking: at most ~4 rounds on average (the domain is < 4 n)
                out[outside] = self._encrypt(out[outside])
                outside = out >= n
        return out.astype(np.int64)

    def __len__(self) -> int:
        return self.n
