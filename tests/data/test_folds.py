"""k-fold splits of the training split (data.kfold / data.kfold_index): the folds partition the training samples
by whole trials, the validation split does not move, and bad settings name their key."""

import numpy as np
import pytest

from neurotrain.config.recipe import load_recipe
from neurotrain.data.folds import FoldError, fold_of_times, train_times_without_fold
from neurotrain.errors import ConfigError
from neurotrain.sources import build_data
from tests.helpers.tiny import tiny_recipe

SMALL = {"synthetic": {"n_sessions": 2, "seed": 0, "n_trials": 20, "trial_frames": 60, "neurons": [4, 5]}}


def _trials(n_trials=23, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 40, n_trials)
    trial_ids = np.repeat(np.arange(n_trials), lengths)
    times = np.flatnonzero(rng.random(len(trial_ids)) < 0.8)  # some rows are not samples
    return trial_ids, times


def test_folds_partition_the_times_by_whole_trials_with_balanced_sizes():
    trial_ids, times = _trials()
    k = 4
    fold = fold_of_times(trial_ids, times, k, seed=5)
    assert fold.shape == times.shape and set(np.unique(fold)) == set(range(k))
    for t in np.unique(trial_ids[times]):  # a trial's samples are all in one fold
        assert len(np.unique(fold[trial_ids[times] == t])) == 1
    sizes = np.bincount(fold, minlength=k)
    assert sizes.sum() == len(times) and sizes.max() - sizes.min() < 2 * 40  # within about a trial of n / k
    kept = [train_times_without_fold(trial_ids, times, k, i, seed=5) for i in range(k)]
    left_out = [np.setdiff1d(times, kept[i]) for i in range(k)]
    assert np.array_equal(np.sort(np.concatenate(left_out)), times)  # the left-out folds partition the times
    for i in range(k):
        assert np.array_equal(left_out[i], times[fold == i]) and np.all(np.diff(kept[i]) > 0)
    assert np.array_equal(fold, fold_of_times(trial_ids, times, k, seed=5))  # deterministic
    assert not np.array_equal(fold, fold_of_times(trial_ids, times, k, seed=6))
    assert np.array_equal(train_times_without_fold(trial_ids, times, 1, 0, seed=5), times)


def test_too_few_trials_for_the_folds_is_an_error():
    trial_ids = np.repeat(np.arange(3), 10)
    with pytest.raises(FoldError, match="3 training trial"):
        fold_of_times(trial_ids, np.arange(30), 5, seed=0)


def test_kfold_members_see_the_same_validation_split_and_their_left_out_folds_partition_training(tmp_path):
    bundles = []
    for i in range(3):
        recipe = load_recipe(tiny_recipe(tmp_path, data={**SMALL, "kfold": 3, "kfold_index": i}))
        bundles.append(build_data(recipe))
    full = build_data(load_recipe(tiny_recipe(tmp_path, data=SMALL)))
    for s in range(2):
        train_all = full.train.times[s]
        for b in bundles:
            assert np.array_equal(b.val.times[s], full.val.times[s])  # validation is the same for every member
            assert set(b.train.times[s]) < set(train_all)
        left_out = [np.setdiff1d(train_all, b.train.times[s]) for b in bundles]
        assert sum(len(x) for x in left_out) == len(train_all)
        assert np.array_equal(np.sort(np.concatenate(left_out)), np.sort(train_all))
        # every member trains on (k-1)/k of the training samples, about
        assert all(abs(len(b.train.times[s]) / len(train_all) - 2 / 3) < 0.12 for b in bundles)
    assert bundles[0].registry[0]["n_train_samples"] == len(bundles[0].train.times[0])


def test_kfold_settings_are_checked_by_key(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.kfold_index.*0\.\.2"):
        load_recipe(tiny_recipe(tmp_path, data={**SMALL, "kfold": 3, "kfold_index": 3}))
    with pytest.raises(ConfigError, match=r"data\.kfold\b"):
        load_recipe(tiny_recipe(tmp_path, data={**SMALL, "kfold": 0}))
    recipe = load_recipe(tiny_recipe(tmp_path, data={**SMALL, "kfold": 500}))
    with pytest.raises(ConfigError, match=r"data\.kfold: session .*cannot make 500"):
        build_data(recipe)
