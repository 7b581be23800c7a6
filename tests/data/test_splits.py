"""Identical stimuli never straddle train and validation, within or across sessions."""

from types import SimpleNamespace

import numpy as np

from neurotrain.data.splits import leakage_safe_splits, trial_hashes
from neurotrain.data.windows import split_by_trial_blocks


def static_session(images, order):
    """One image per trial (static images): frames[t] = images[order[t]]."""
    return SimpleNamespace(frames=images[order], trial_ids=np.arange(len(order)))


def test_hashes_identify_identical_trials():
    imgs = np.random.default_rng(0).integers(0, 256, (5, 8, 8), dtype=np.uint8)
    s = static_session(imgs, [0, 1, 0, 2])
    h = trial_hashes(s.frames, s.trial_ids)
    assert h[0] == h[2] and len({h[0], h[1], h[3]}) == 3


def test_duplicates_never_straddle_and_repeats_go_to_validation():
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (60, 8, 8), dtype=np.uint8)
    # session A shows images 0..39 once and image 40 three times; session B shows 20..59 once
    a = static_session(imgs, list(range(40)) + [40, 40, 40])
    b = static_session(imgs, list(range(20, 60)))
    sessions = [a, b]
    train, val = [], []
    for i, s in enumerate(sessions):
        t = np.arange(len(s.trial_ids))
        tr, va = split_by_trial_blocks(s.trial_ids, t, 0.25, seed=i, block_trials=4)
        train.append(tr)
        val.append(va)
    train, val, oracle, report = leakage_safe_splits(sessions, train, val)

    def ids(s_idx, times):
        order = [list(range(40)) + [40, 40, 40], list(range(20, 60))][s_idx]
        return {order[t] for t in times}

    train_imgs = ids(0, train[0]) | ids(1, train[1])
    val_imgs = ids(0, val[0]) | ids(1, val[1])
    assert train_imgs.isdisjoint(val_imgs)
    assert 40 in val_imgs and oracle[0] == [40, 41, 42] and oracle[1] == []
    assert report.shared_stimuli == 21  # images 20..40
    for i in range(2):  # nothing lost, nothing duplicated
        assert sorted(np.concatenate([train[i], val[i]]).tolist()) == list(range(len(sessions[i].trial_ids)))
    assert sum(report.moved_to_val) > 0
