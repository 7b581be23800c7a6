"""ContrastWeightedSampler and the contrast scores: schedule, draw frequencies, resume, sharding, cache."""

import os
from types import SimpleNamespace

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard

import neurotrain.data.curriculum as cur
from neurotrain.data.curriculum import (
    CONTRAST_FILENAME, ContrastWeightedSampler, curriculum_alpha, frame_contrast, sample_contrast,
    session_contrast,
)
from neurotrain.data.sampler import SessionBatchSampler

# two sessions; raw contrasts 1 (low) and 3 (high), half each -> global median 2 -> c = 0.5 / 1.5
LOW, HIGH = 1.0, 3.0
CONTRAST = [np.r_[np.full(300, LOW), np.full(300, HIGH)], np.r_[np.full(50, LOW), np.full(50, HIGH)]]
SIZES = [600, 100]


def is_low(i):
    off = 0
    for c in CONTRAST:
        if i < off + len(c):
            return c[i - off] == LOW
        off += len(c)
    raise IndexError(i)


# ------------------------------------------------------------------ contrast scores
def test_frame_contrast_on_hand_made_frames():
    frames = np.zeros((5, 4, 4), np.uint8)
    frames[1] = 200  # constant -> 0
    frames[2, :, :2] = 255  # half 0, half 255 -> std 127.5 / 255 = 0.5
    frames[3, ::2] = 127
    frames[3, 1::2] = 131  # +-2 around 129 -> 2 / 255
    frames[4] = np.arange(16, dtype=np.uint8).reshape(4, 4) * 17
    c = frame_contrast(frames)
    assert c.dtype == np.float32 and c.shape == (5,)
    np.testing.assert_allclose(c[:4], [0.0, 0.0, 0.5, 2 / 255], atol=1e-7)
    x = (frames[4].astype(np.float64) - 127) / 255
    np.testing.assert_allclose(c[4], x.std(), rtol=1e-6)
    # chunking and extra axes do not change the result
    rnd = np.random.default_rng(0).integers(0, 256, (11, 1, 6, 7), dtype=np.uint8)
    np.testing.assert_allclose(frame_contrast(rnd, chunk=3), frame_contrast(rnd, chunk=100), rtol=1e-6)
    np.testing.assert_allclose(frame_contrast(rnd), ((rnd.reshape(11, -1) - 127.0) / 255).std(axis=1), rtol=1e-5)


def test_session_contrast_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    frames = np.random.default_rng(1).integers(0, 256, (20, 5, 5), dtype=np.uint8)
    sess = SimpleNamespace(path=tmp_path, n_frames=20, frames=frames, data_files=[])
    calls = []
    real = cur.frame_contrast
    monkeypatch.setattr(cur, "frame_contrast", lambda f, chunk=4096: calls.append(1) or real(f, chunk))
    a = session_contrast(sess)
    assert len(calls) == 1 and (tmp_path / CONTRAST_FILENAME).is_file()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # temp file renamed away
    mtime = (tmp_path / CONTRAST_FILENAME).stat().st_mtime_ns
    b = session_contrast(sess)
    assert len(calls) == 1 and (tmp_path / CONTRAST_FILENAME).stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, real(frames))
    # a cache of the wrong length is recomputed
    np.save(tmp_path / CONTRAST_FILENAME, np.zeros(7, np.float32))
    c = session_contrast(sess)
    assert len(calls) == 2
    np.testing.assert_array_equal(c, a)


def test_sample_contrast_uses_the_newest_frame_of_each_sample(tmp_path):
    from neurotrain.data.multisession import MultiSessionDataset
    from neurotrain.data.session import Session
    from neurotrain.data.synthetic import generate_demo_sessions

    paths = generate_demo_sessions(tmp_path, n_sessions=2, frame_size=8, n_trials=4, trial_frames=40)
    sessions = [Session.open(p) for p in paths]
    times = [np.arange(10, s.n_frames, 3) for s in sessions]
    ds = MultiSessionDataset(sessions, times, list(range(5)))
    per = sample_contrast(ds)
    for s, t, c in zip(sessions, times, per):
        np.testing.assert_allclose(c, frame_contrast(np.asarray(s.frames)[t]), rtol=1e-6)
        assert (s.path / CONTRAST_FILENAME).is_file()
    sampler = ContrastWeightedSampler.from_dataset(ds, 4, warmup_steps=10)
    np.testing.assert_allclose(sampler.median, np.median(np.concatenate(per)), rtol=1e-6)
    assert sampler.session_sizes == ds.sizes


# ------------------------------------------------------------------ schedule
def test_alpha_and_weights():
    assert [curriculum_alpha(s, 100) for s in (0, 25, 50, 100, 400)] == [0.5, 0.625, 0.75, 1.0, 1.0]
    assert curriculum_alpha(5, 0) == 1.0
    s = ContrastWeightedSampler(CONTRAST, 8, warmup_steps=100)
    assert s.median == 2.0  # the global median over both sessions
    np.testing.assert_allclose(s.weights(0, 0)[[0, -1]], [0.25, 0.75])
    np.testing.assert_allclose(s.weights(0, 50)[[0, -1]], [0.375, 1.0])  # 1.125 clipped to 1
    np.testing.assert_allclose(s.weights(1, 100)[[0, -1]], [0.5, 1.0])


def test_batch_step_counts_optimizer_steps_not_draws():
    s = ContrastWeightedSampler(CONTRAST, 8, warmup_steps=1000, num_replicas=2, accumulate=3)
    assert [s.batch_step(b, 10) for b in (0, 5, 6, 11, 12)] == [10, 10, 11, 11, 12]
    s.set_step(10)
    s.set_epoch(0)
    info = list(s.iter_with_info())
    assert [st for _, st, _ in info] == [10 + b // 6 for b in range(len(info))]
    assert [a for _, _, a in info] == [curriculum_alpha(10 + b // 6, 1000) for b in range(len(info))]
    s.set_step(999)  # the step set during the pass does not change the batches of that pass
    s.set_epoch(0)
    assert s.epoch_start_step == 10


def low_fraction(sampler, epochs, start_step):
    n_low = n = 0
    for e in range(epochs):
        sampler.set_step(start_step)
        sampler.set_epoch(e)
        for b in sampler:
            assert len(set(b)) == len(b)
            n_low += sum(is_low(i) for i in b)
            n += len(b)
    return n_low / n


@pytest.mark.parametrize("start_step,alpha", [(0, 0.5), (500, 0.75)])
def test_draw_frequencies_follow_the_weights(start_step, alpha):
    s = ContrastWeightedSampler(CONTRAST, 8, warmup_steps=1000, accumulate=10**6, seed=3)  # alpha fixed
    assert s.alpha(start_step) == alpha
    w_low, w_high = min(alpha * 0.5, 1), min(alpha * 1.5, 1)
    assert low_fraction(s, 20, start_step) == pytest.approx(w_low / (w_low + w_high), abs=0.02)


def test_after_warmup_the_plain_policy_batches():
    for policy in ("proportional", "uniform"):
        s = ContrastWeightedSampler(CONTRAST, 8, warmup_steps=100, seed=4, num_replicas=2, policy=policy)
        plain = SessionBatchSampler(SIZES, 8, seed=4, num_replicas=2, policy=policy)
        for e in range(2):
            s.set_step(100 + e)
            s.set_epoch(e)
            plain.set_epoch(e)
            assert list(s) == list(plain)
        if policy == "proportional":  # each sample once per epoch
            assert low_fraction(s, 3, 100) == pytest.approx(0.5, abs=1e-12)


def test_the_schedule_crosses_warmup_inside_an_epoch():
    s = ContrastWeightedSampler(CONTRAST, 8, warmup_steps=30, seed=1)
    s.set_step(0)
    info = list(s.iter_with_info())
    plain = SessionBatchSampler(SIZES, 8, seed=1).batches_for_epoch(0)
    assert all(b != plain[k].tolist() for k, (b, st, _) in enumerate(info) if st < 30)
    assert all(b == plain[k].tolist() for k, (b, st, _) in enumerate(info) if st >= 30)


def test_batches_are_single_session_and_len_is_a_multiple_of_world():
    for world in (1, 2, 3):
        s = ContrastWeightedSampler(CONTRAST, 7, warmup_steps=10**6, num_replicas=world)
        assert s.batch_size is None
        batches = list(s)
        assert len(batches) == len(s) and len(s) % world == 0
        for b in batches:
            assert len({int(i >= 600) for i in b}) == 1 and len(set(b)) == len(b)


def test_zero_weights_are_drawn_only_when_needed():
    c = [np.r_[np.zeros(10), np.ones(3)]]
    s = ContrastWeightedSampler(c, 5, warmup_steps=100, normalize=False)
    for b in s:
        if len(b) == 5:
            assert {10, 11, 12} <= set(b)


# ------------------------------------------------------------------ resume and sharding
@pytest.mark.parametrize("world,acc", [(1, 1), (2, 2)])
def test_resume_mid_epoch_reproduces_the_remaining_batches(world, acc):
    kw = dict(warmup_steps=60, seed=9, num_replicas=world, accumulate=acc, session_synchronous=world > 1)
    full = ContrastWeightedSampler(CONTRAST, 8, **kw)
    full.set_step(40)
    full.set_epoch(2)
    expected = list(full.iter_with_info())
    assert len({a for _, _, a in expected}) > 3 and expected[-1][1] >= 60  # alpha varies; ends past warm-up

    run = ContrastWeightedSampler(CONTRAST, 8, **kw)
    run.set_step(40)
    run.set_epoch(2)
    it = iter(run)
    for _ in range(20):  # the loader ran ahead of training
        next(it)
    run.set_step(43)
    run.set_position(2, 12)
    state = run.state_dict()
    assert state == {"seed": 9, "epoch": 2, "epoch_start_step": 40, "batches_consumed": 12}

    resumed = ContrastWeightedSampler(CONTRAST, 8, **kw)
    resumed.load_state_dict(state)
    resumed.set_step(43)  # the loop's step after resume does not move the schedule
    resumed.set_epoch(2)
    assert len(resumed) == len(expected) - 12
    assert list(resumed.iter_with_info()) == expected[12:]
    # the next epoch starts from the step set before it, with no skip
    resumed.set_step(77)
    resumed.set_epoch(3)
    ref = ContrastWeightedSampler(CONTRAST, 8, **kw)
    ref.set_step(77)
    ref.set_epoch(3)
    assert list(resumed) == list(ref)


def test_resume_at_an_epoch_boundary_uses_the_saved_step():
    s = ContrastWeightedSampler(CONTRAST, 8, warmup_steps=500, seed=2)
    s.set_step(123)
    s.set_position(4, 0)
    state = s.state_dict()
    assert state["epoch_start_step"] == 123
    resumed = ContrastWeightedSampler(CONTRAST, 8, warmup_steps=500, seed=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(4)
    ref = ContrastWeightedSampler(CONTRAST, 8, warmup_steps=500, seed=2)
    ref.set_step(123)
    ref.set_epoch(4)
    assert list(resumed.iter_with_info()) == list(ref.iter_with_info())


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("sync", [False, True])
def test_sharded_ranks_union_is_the_global_sequence(world, sync):
    kw = dict(warmup_steps=50, seed=5, num_replicas=world, accumulate=2, session_synchronous=sync)
    glob = ContrastWeightedSampler(CONTRAST, 8, **kw)
    glob.set_step(20)
    glob.set_epoch(1)
    expected = list(glob)
    ranks = []
    for r in range(world):
        s = ContrastWeightedSampler(CONTRAST, 8, **kw)
        s.set_step(20)
        s.set_epoch(1)
        ranks.append(list(BatchSamplerShard(s, num_processes=world, process_index=r, even_batches=False)))
    assert len({len(x) for x in ranks}) == 1  # equal step counts
    assert [ranks[i % world][i // world] for i in range(len(expected))] == expected
    if sync:
        for step in range(len(ranks[0])):
            assert len({int(ranks[r][step][0] >= 600) for r in range(world)}) == 1
