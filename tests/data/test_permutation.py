"""The lazy permutation behind the samplers: a bijection of range(n) for every n and key, a pure function of them."""

import numpy as np
import pytest

from neurotrain.data.permutation import LazyPermutation


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 17, 64, 1000, 65537, 250_001])
def test_every_position_maps_to_a_distinct_element(n):
    p = LazyPermutation(n, (7, n))
    out = p(np.arange(n))
    assert out.dtype == np.int64 and len(out) == n
    assert np.array_equal(np.sort(out), np.arange(n))


def test_a_pure_function_of_n_and_key_and_evaluable_piecewise():
    a, b = LazyPermutation(10_000, (1, 2, 3)), LazyPermutation(10_000, (1, 2, 3))
    full = a(np.arange(10_000))
    assert np.array_equal(full, b(np.arange(10_000)))
    assert np.array_equal(np.concatenate([a(np.arange(i, min(i + 64, 10_000))) for i in range(0, 10_000, 64)]), full)
    other = LazyPermutation(10_000, (1, 2, 4))(np.arange(10_000))
    assert not np.array_equal(full, other) and np.mean(full == other) < 0.01
    assert not np.array_equal(full, np.arange(10_000))  # it shuffles


def test_positions_spread_uniformly():
    # where element 0 lands, over 4000 keys: roughly uniform over 8 positions
    where = [int(np.flatnonzero(LazyPermutation(8, (k,))(np.arange(8)) == 0)[0]) for k in range(4000)]
    counts = np.bincount(where, minlength=8)
    assert counts.min() > 400 and counts.max() < 600, counts


def test_positions_outside_the_range_are_refused():
    with pytest.raises(IndexError):
        LazyPermutation(5, (0,))([5])
    with pytest.raises(ValueError):
        LazyPermutation(-1, (0,))
