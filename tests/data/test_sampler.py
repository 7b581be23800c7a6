"""SessionBatchSampler: determinism, single-session batches, sharding by Accelerate, resume."""

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard

from neurotrain.data.sampler import SessionBatchSampler

SIZES = [37, 11, 64, 5]


def session_of(i):
    return int(np.searchsorted(np.cumsum(SIZES), i, side="right"))


def test_same_sequence_for_same_seed_and_epoch():
    a = list(SessionBatchSampler(SIZES, 8, seed=3))
    b = list(SessionBatchSampler(SIZES, 8, seed=3))
    assert a == b
    s = SessionBatchSampler(SIZES, 8, seed=3)
    s.set_epoch(1)
    assert list(s) != a  # a new permutation each epoch
    assert list(SessionBatchSampler(SIZES, 8, seed=4)) != a


def test_batches_are_single_session_and_cover_every_sample_once():
    batches = list(SessionBatchSampler(SIZES, 8, seed=0))
    for b in batches:
        assert len({session_of(i) for i in b}) == 1
        assert 1 <= len(b) <= 8
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(sum(SIZES)))
    # sessions appear in proportion to their number of batches: ceil(n / 8) each
    per_session = np.bincount([session_of(b[0]) for b in batches], minlength=4)
    assert per_session.tolist() == [5, 2, 8, 1]


def test_drop_last_drops_only_short_batches():
    batches = list(SessionBatchSampler(SIZES, 8, seed=0, drop_last=True))
    assert all(len(b) == 8 for b in batches)
    assert sum(len(b) for b in batches) == 32 + 8 + 64 + 0


@pytest.mark.parametrize("world", [1, 2, 3])
def test_accelerate_sharding_draws_every_sample_once_per_epoch(world):
    """Each rank wraps the same global sampler in Accelerate's BatchSamplerShard (as prepare() does)."""
    for epoch in range(2):
        seen, steps = [], []
        for rank in range(world):
            s = SessionBatchSampler(SIZES, 8, seed=11, num_replicas=world)
            s.set_epoch(epoch)
            shard = BatchSamplerShard(s, num_processes=world, process_index=rank, even_batches=False)
            mine = list(shard)
            steps.append(len(mine))
            seen += [i for b in mine for i in b]
        assert len(set(steps)) == 1, f"ranks take different step counts: {steps}"
        assert sorted(seen) == list(range(sum(SIZES)))  # nothing duplicated, nothing dropped


def test_max_batches_truncates_to_a_multiple_of_world():
    s = SessionBatchSampler(SIZES, 8, seed=0, num_replicas=3, max_batches=7)
    assert len(list(s)) == 6 == len(s)


def test_resume_skips_consumed_batches_exactly():
    full = SessionBatchSampler(SIZES, 8, seed=5)
    full.set_epoch(2)
    expected = list(full)
    s = SessionBatchSampler(SIZES, 8, seed=5)
    s.set_position(2, 6)
    state = s.state_dict()
    assert state == {"seed": 5, "epoch": 2, "batches_consumed": 6}
    resumed = SessionBatchSampler(SIZES, 8, seed=5)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    assert len(resumed) == len(expected) - 6
    assert list(resumed) == expected[6:]
    # the skip applies once: the next epoch is complete
    resumed.set_epoch(3)
    nxt = SessionBatchSampler(SIZES, 8, seed=5)
    nxt.set_epoch(3)
    assert list(resumed) == list(nxt)


def test_resume_with_a_different_seed_is_refused():
    s = SessionBatchSampler(SIZES, 8, seed=1)
    with pytest.raises(ValueError, match="seed"):
        s.load_state_dict({"seed": 2, "epoch": 0, "batches_consumed": 0})


@pytest.mark.parametrize("world", [1, 2, 3])
def test_many_sessions_each_sample_once_per_epoch_across_ranks_and_resume(world):
    """200 sessions of uneven sizes (the bench_scale layout, smaller): every sample exactly once per epoch over
    the ranks' shards, equal step counts, and a mid-epoch resume yields exactly the remaining global batches."""
    sizes = np.random.default_rng(world).integers(1, 400, size=200).tolist()
    s = SessionBatchSampler(sizes, 16, seed=11, num_replicas=world)
    for epoch in (0, 1):
        s.set_epoch(epoch)
        shards = [list(BatchSamplerShard(s, num_processes=world, process_index=r, even_batches=False))
                  for r in range(world)]
        assert len({len(x) for x in shards}) == 1
        drawn = sorted(i for x in shards for b in x for i in b)
        assert drawn == list(range(sum(sizes)))
        for b in (b for x in shards for b in x):
            assert len({int(np.searchsorted(s.offsets, i, side="right")) for i in b}) == 1  # one session
    full = list(s)
    resumed = SessionBatchSampler(sizes, 16, seed=11, num_replicas=world)
    resumed.load_state_dict({"seed": 11, "epoch": 1, "batches_consumed": 100})
    resumed.set_epoch(1)
    assert list(resumed) == full[100:]
