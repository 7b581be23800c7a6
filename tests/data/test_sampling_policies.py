"""SessionBatchSampler policies: uniform / temperature session draws, per-session cycling, session-synchronous groups."""

import math

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard

from neurotrain.data.sampler import SessionBatchSampler

SIZES = [400, 40, 1000, 100]
BS = 8


def session_of(i, sizes=SIZES):
    return int(np.searchsorted(np.cumsum(sizes), i, side="right"))


def shard_all(make, world, epoch):
    """Per rank, the batches BatchSamplerShard hands it (as accelerator.prepare does)."""
    out = []
    for rank in range(world):
        s = make()
        s.set_epoch(epoch)
        out.append(list(BatchSamplerShard(s, num_processes=world, process_index=rank, even_batches=False)))
    return out


def session_freq(sampler, epochs, sizes=SIZES):
    counts = np.zeros(len(sizes))
    for e in range(epochs):
        sampler.set_epoch(e)
        for b in sampler:
            counts[session_of(b[0], sizes)] += 1
    return counts / counts.sum()


@pytest.mark.parametrize("policy,temperature,expected", [
    ("uniform", 1.0, np.full(4, 0.25)),
    ("temperature", 1.0, np.array(SIZES) / sum(SIZES)),
    ("temperature", 2.0, np.sqrt(SIZES) / np.sqrt(SIZES).sum()),
    ("temperature", 4.0, np.array(SIZES) ** 0.25 / (np.array(SIZES) ** 0.25).sum()),
])
def test_session_frequencies_match_the_formula(policy, temperature, expected):
    s = SessionBatchSampler(SIZES, BS, seed=1, policy=policy, temperature=temperature)
    np.testing.assert_allclose(s.session_probs, expected, rtol=1e-12)
    freq = session_freq(s, 30)  # 30 * 193 batches
    np.testing.assert_allclose(freq, expected, atol=0.02)


def test_infinite_temperature_is_uniform():
    s = SessionBatchSampler(SIZES, BS, policy="temperature", temperature=math.inf)
    np.testing.assert_allclose(s.session_probs, 0.25)


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("sync", [False, True])
@pytest.mark.parametrize("policy", ["uniform", "temperature"])
def test_same_number_of_batches_as_proportional(policy, world, sync):
    prop = SessionBatchSampler(SIZES, BS, num_replicas=world, session_synchronous=sync)
    s = SessionBatchSampler(SIZES, BS, num_replicas=world, session_synchronous=sync, policy=policy, temperature=2.0)
    for e in range(3):
        prop.set_epoch(e)
        s.set_epoch(e)
        assert len(s) == len(prop) == len(list(s))
        assert len(s) % world == 0


@pytest.mark.parametrize("sync,world", [(False, 1), (True, 2)])
def test_uniform_cycles_through_each_session_without_replacement(sync, world):
    s = SessionBatchSampler(SIZES, BS, seed=7, policy="uniform", session_synchronous=sync, num_replicas=world)
    streams = [[] for _ in SIZES]
    for e in range(12):
        s.set_epoch(e)
        for b in s:
            assert len(set(b)) == len(b) and 1 <= len(b) <= BS
            sess = {session_of(i) for i in b}
            assert len(sess) == 1
            streams[sess.pop()] += b
    offsets = np.concatenate([[0], np.cumsum(SIZES)])
    for k, (n, st) in enumerate(zip(SIZES, streams)):
        full = len(st) // n
        assert full >= 1
        for c in range(full):  # each complete cycle is a permutation of the session's samples
            assert sorted(st[c * n : (c + 1) * n]) == list(range(offsets[k], offsets[k] + n))
        rest = st[full * n :]
        assert len(set(rest)) == len(rest)  # the incomplete cycle repeats nothing


def test_policy_epoch_is_a_pure_function_of_seed_and_epoch():
    walked = SessionBatchSampler(SIZES, BS, seed=3, policy="temperature", temperature=3.0)
    for e in range(5):
        walked.set_epoch(e)
        list(walked)
    walked.set_epoch(5)
    fresh = SessionBatchSampler(SIZES, BS, seed=3, policy="temperature", temperature=3.0)
    fresh.set_epoch(5)
    assert list(fresh) == list(walked)
    other = SessionBatchSampler(SIZES, BS, seed=4, policy="temperature", temperature=3.0)
    other.set_epoch(5)
    assert list(other) != list(fresh)


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("policy", ["proportional", "uniform", "temperature"])
def test_sharding_equal_steps_and_union_is_the_global_sequence(policy, world):
    make = lambda: SessionBatchSampler(SIZES, BS, seed=11, num_replicas=world, policy=policy, temperature=2.0)
    for epoch in range(2):
        ranks = shard_all(make, world, epoch)
        assert len({len(r) for r in ranks}) == 1
        g = make()
        g.set_epoch(epoch)
        glob = list(g)
        assert [ranks[i % world][i // world] for i in range(len(glob))] == glob
        if policy == "proportional":
            seen = sorted(i for r in ranks for b in r for i in b)
            assert seen == list(range(sum(SIZES)))


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("policy", ["proportional", "uniform", "temperature"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_session_synchronous_steps_share_a_session(policy, world, drop_last):
    sizes = [37, 11, 64, 5, 130]
    make = lambda: SessionBatchSampler(sizes, 8, seed=2, num_replicas=world, policy=policy,
                                       session_synchronous=True, drop_last=drop_last)
    for epoch in range(2):
        ranks = shard_all(make, world, epoch)
        steps = {len(r) for r in ranks}
        assert len(steps) == 1
        for step in range(steps.pop()):
            batches = [r[step] for r in ranks]
            assert all(len(b) >= 1 for b in batches)
            assert len({session_of(i, sizes) for b in batches for i in b}) == 1
            assert max(len(b) for b in batches) <= 8
            if drop_last:
                assert all(len(b) == 8 for b in batches)
            else:  # balanced within a group
                assert max(len(b) for b in batches) - min(len(b) for b in batches) <= 1
        flat = [i for r in ranks for b in r for i in b]
        if policy == "proportional":
            assert len(flat) == len(set(flat))  # no duplicates
            if not drop_last:
                # every sample of every session with >= world samples, exactly once
                offsets = np.concatenate([[0], np.cumsum(sizes)])
                want = [i for k, n in enumerate(sizes) if n >= world for i in range(offsets[k], offsets[k + 1])]
                assert sorted(flat) == want


def test_session_synchronous_tiny_batches_drop_only_a_small_remainder():
    s = SessionBatchSampler([5], 1, num_replicas=2, session_synchronous=True)
    b = list(s)
    assert len(b) == 4 and all(len(x) == 1 for x in b)  # 2 groups of 2; one sample left out this epoch
    assert len({x[0] for x in b}) == 4


def test_session_synchronous_max_batches_keeps_whole_groups():
    s = SessionBatchSampler(SIZES, BS, num_replicas=3, session_synchronous=True, max_batches=10)
    batches = list(s)
    assert len(batches) == 9
    for g in range(3):
        assert len({session_of(b[0]) for b in batches[3 * g : 3 * g + 3]}) == 1


def test_policy_resume_skips_consumed_batches():
    full = SessionBatchSampler(SIZES, BS, seed=5, policy="uniform", num_replicas=2, session_synchronous=True)
    full.set_epoch(3)
    expected = list(full)
    s = SessionBatchSampler(SIZES, BS, seed=5, policy="uniform", num_replicas=2, session_synchronous=True)
    s.set_position(3, 10)
    resumed = SessionBatchSampler(SIZES, BS, seed=5, policy="uniform", num_replicas=2, session_synchronous=True)
    resumed.load_state_dict(s.state_dict())
    resumed.set_epoch(3)
    assert len(resumed) == len(expected) - 10
    assert list(resumed) == expected[10:]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="policy"):
        SessionBatchSampler(SIZES, BS, policy="balanced")
    with pytest.raises(ValueError, match="temperature"):
        SessionBatchSampler(SIZES, BS, policy="temperature", temperature=0.0)
    with pytest.raises(ValueError, match="shuffle"):
        SessionBatchSampler(SIZES, BS, policy="uniform", shuffle=False)
    assert SessionBatchSampler(SIZES, BS, policy="uniform").batch_size is None
