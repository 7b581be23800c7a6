"""``data.test_trials``: held-out test trials leave train and validation, in every session by stimulus content."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from neurotrain.config.recipe import load_recipe
from neurotrain.config.test_trials import TrialSelectionError, parse_test_trials
from neurotrain.data.ingest import ingest_arrays
from neurotrain.data.splits import hold_out_test_trials, match_test_sessions, trial_hashes
from neurotrain.errors import ConfigError
from neurotrain.sources import build_data

IMAGES = np.random.default_rng(7).integers(0, 256, (100, 8, 8), dtype=np.uint8)


def test_trial_specs_parse_to_sorted_distinct_ids():
    assert parse_test_trials("600:1200") == list(range(600, 1200))
    assert parse_test_trials([7, "2:4", 3, " 10 : 12 "]) == [2, 3, 7, 10, 11]
    assert parse_test_trials(5) == [5]
    for bad in ["5:2", "3:3", "-1:4", "a:b", "1:2:3", "7", [], [-1], True, 2.5, {"start": 1}]:
        with pytest.raises(TrialSelectionError):
            parse_test_trials(bad)


def test_keys_name_a_session_or_the_part_after_its_last_underscore():
    names = ["cowley_v4_190923", "cowley_v4_201025", "other"]
    assert match_test_sessions(["201025", "cowley_v4_190923", "other"], names) == {
        "201025": 1, "cowley_v4_190923": 0, "other": 2}
    with pytest.raises(KeyError, match="no session"):
        match_test_sessions(["190925"], names)
    with pytest.raises(KeyError, match="2 sessions"):
        match_test_sessions(["x"], ["a_x", "b_x"])


def static_session(name, order):
    """One image per trial: trial t shows IMAGES[order[t]]."""
    order = np.asarray(order)
    return SimpleNamespace(name=name, frames=IMAGES[order], trial_ids=np.arange(len(order)))


def test_held_out_trials_and_every_copy_of_their_stimuli_leave_train_and_val():
    a = static_session("a", list(range(40)))                       # images 0..39
    b = static_session("b", list(range(30, 60)) + [5, 35, 35])     # 30..59, then image 5 and image 35 twice more
    c = static_session("c", list(range(60, 80)))                   # nothing in common
    sessions = [a, b, c]
    times = [np.arange(len(s.trial_ids)) for s in sessions]
    rng = np.random.default_rng(0)
    train, val = [], []
    for t in times:
        v = np.sort(rng.choice(t, size=len(t) // 4, replace=False))
        train.append(np.setdiff1d(t, v))
        val.append(v)
    out = hold_out_test_trials(sessions, times, train, val, {0: list(range(30, 40)) + [5]})
    assert out.test[0].tolist() == [5] + list(range(30, 40))
    assert out.test[1].size == 0 and out.test[2].size == 0
    held = {5, *range(30, 40)}
    shown = [np.asarray(s.frames) for s in sessions]
    held_hashes = {trial_hashes(IMAGES[[i]], np.zeros(1, int))[0] for i in held}
    for i, s in enumerate(sessions):
        h = trial_hashes(s.frames, s.trial_ids)
        for part in (out.train[i], out.val[i]):
            assert not any(h[int(t)] in held_hashes for t in part), s.name
        # nothing else was removed
        kept = np.concatenate([out.train[i], out.val[i], out.test[i]])
        lost = np.setdiff1d(times[i], kept)
        assert all(h[int(t)] in held_hashes for t in lost)
        assert len(kept) + len(lost) == len(times[i]) and len(np.unique(kept)) == len(kept)
    # session b: its copies of images 30..39 (trials 0..9), of image 5 (trial 30) and of image 35 (31, 32) are gone
    assert out.removed == [11, 13, 0] and out.copies_removed == [0, 13, 0]
    assert shown[1][30].tobytes() == IMAGES[5].tobytes()


def test_trials_a_session_does_not_have_are_refused():
    a = static_session("a", list(range(10)))
    t = np.arange(10)
    with pytest.raises(TrialSelectionError, match=r"session a has no trial\(s\) \[10, 11\]"):
        hold_out_test_trials([a], [t], [t[:8]], [t[8:]], {0: [8, 9, 10, 11]})


# ---- through a recipe: session folders, build_data, the checker ---------------------------------------------


def write_sessions(root):
    """Three static-image sessions of 8 x 8 frames: s_one shows images 0..59, s_two images 40..99 and image 55
    again, s_three images 0..29 (so s_three shares 0..29 with s_one)."""
    rng = np.random.default_rng(1)
    orders = {"s_one": list(range(60)), "s_two": list(range(40, 100)) + [55], "s_three": list(range(30))}
    paths = []
    for name, order in orders.items():
        resp = rng.poisson(2.0, (len(order), 4)).astype(np.float32)
        paths.append(str(ingest_arrays(root / "sessions", name=name, subject="m", sampling_rate=10.0,
                                       frames=IMAGES[order], responses=resp)))
    return paths, orders


def recipe_file(tmp_path, paths, test_trials, **data):
    recipe = {"seed": 0, "output_dir": str(tmp_path / "run"),
              "data": {**({"sessions": paths} if paths else {}), "lags": 1, "use_behavior": False, "batch_size": 16,
                       "test_trials": test_trials, **data},
              "model": {"config": "models/demo_twin.yaml"}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "demo_twin.yaml").write_text("model_type: v1multi\n")
    return path


def test_the_bundle_gets_a_test_split_and_no_held_out_image_is_trained_or_validated_on(tmp_path):
    paths, orders = write_sessions(tmp_path)
    # s_one: images 50..59 (trials 50:60) and image 20 (trial 20): s_three shows image 20 (its trial 20),
    # s_two shows 50..59 (its trials 10..19) and image 55 a second time (its trial 60)
    data = build_data(load_recipe(recipe_file(tmp_path, paths, {"one": ["50:60", 20]})))
    assert data.test is not None and data.test.sizes == [11, 0, 0]
    assert data.test.times[0].tolist() == [20] + list(range(50, 60))
    assert [r["n_test_samples"] for r in data.registry] == [11, 0, 0]
    held = {20, *range(50, 60)}
    for i, name in enumerate(data.names):
        order = orders[name]
        for split in (data.train, data.val):
            assert not held & {order[t] for t in split.times[i].tolist()}, (name, split)
        n_copies = sum(1 for img in order if img in held)
        n_left = len(data.train.times[i]) + len(data.val.times[i])
        assert n_left == len(order) - n_copies
    assert data.split_report.test_samples == [11, 0, 0]
    assert data.split_report.test_removed == [11, 11, 1]  # s_two: 50..59 and its second 55; s_three: image 20
    # without test_trials: no test split, and every trial is in train or val
    plain = build_data(load_recipe(recipe_file(tmp_path, paths, {})))
    assert plain.test is None and "n_test_samples" not in plain.registry[0]
    assert sum(len(plain.train.times[i]) + len(plain.val.times[i]) for i in range(3)) == 60 + 61 + 30


def test_bad_test_trials_are_config_errors_naming_the_key(tmp_path):
    paths, _ = write_sessions(tmp_path)
    with pytest.raises(ConfigError, match=r"data\.test_trials\.one.*start < stop"):
        load_recipe(recipe_file(tmp_path, paths, {"one": "60:50"}))
    with pytest.raises(ConfigError, match=r"data\.test_trials\.s_four.*no session"):
        build_data(load_recipe(recipe_file(tmp_path, paths, {"s_four": "0:5"})))
    with pytest.raises(ConfigError, match=r"data\.test_trials\.s_three.*no trial\(s\) \[30, 31"):
        build_data(load_recipe(recipe_file(tmp_path, paths, {"s_one": 3, "s_three": "25:40"})))
    with pytest.raises(ConfigError, match=r"data\.test_trials: got list, expected a mapping"):
        load_recipe(recipe_file(tmp_path, paths, ["0:5"]))


def test_the_checker_names_an_unknown_session_key_without_loading_data(tmp_path):
    from neurotrain.data.build import check_test_trial_sessions, known_session_names

    paths, _ = write_sessions(tmp_path)
    check_test_trial_sessions(load_recipe(recipe_file(tmp_path, paths, {"one": "0:5", "s_two": [1]})))
    with pytest.raises(ConfigError, match=r"data\.test_trials\.s_four: names no session; the sessions are s_one"):
        check_test_trial_sessions(load_recipe(recipe_file(tmp_path, paths, {"s_four": "0:5"})))
    synth = recipe_file(tmp_path, None, {"2024-01-08": "0:5"}, synthetic={"n_sessions": 2})
    assert known_session_names(load_recipe(synth)) == ["monkeyA_2024-01-01", "monkeyA_2024-01-08"]
    check_test_trial_sessions(load_recipe(synth))
    with pytest.raises(ConfigError, match=r"data\.test_trials\.2024-01-15"):
        check_test_trial_sessions(load_recipe(recipe_file(tmp_path, None, {"2024-01-15": 3},
                                                          synthetic={"n_sessions": 2})))


def test_neurotrain_validate_refuses_an_unknown_test_session(tmp_path, capsys):
    from neurotrain.cli import main

    paths, _ = write_sessions(tmp_path)
    bad = recipe_file(tmp_path, paths, {"s_four": "0:5"})
    assert main(["validate", str(bad)]) == 2
    assert "data.test_trials.s_four" in capsys.readouterr().err
