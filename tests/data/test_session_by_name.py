"""A split by session name: ``data.train[name]`` is that session's samples, a view of the multi-session dataset."""

import numpy as np
import pytest
import torch

from neurotrain.data.multisession import MultiSessionDataset, SessionSamples, group_collate
from neurotrain.data.session import Session
from neurotrain.data.synthetic import generate_demo_sessions


def make(tmp_path):
    paths = generate_demo_sessions(tmp_path, n_sessions=3, n_trials=4, trial_frames=60, neurons=[3, 4, 2])
    sessions = [Session.open(p) for p in paths]
    times = [np.arange(20, 60), np.arange(30, 90), np.arange(12, 40)]
    return MultiSessionDataset(sessions, times, list(range(8)), use_behavior=True), sessions


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_a_session_by_name_is_a_view_of_its_samples(tmp_path):
    ds, sessions = make(tmp_path)
    assert ds.names == [s.name for s in sessions]
    name = sessions[1].name
    view = ds[name]
    assert isinstance(view, SessionSamples) and view.session is sessions[1] and view.name == name
    assert view.session_idx == 1 and len(view) == 60 and np.array_equal(view.times, np.arange(30, 90))
    # view[j] is the parent's sample offsets[1] + j, batch dimension of 1 included
    for j in (0, 7, 59, -1):
        assert _same(view[j], ds[int(ds.offsets[1]) + (j % 60)])
    one = view[7]
    assert one["stim"].shape == (1, 1, 8, 24, 24) and one["session_idx"] == 1
    assert np.array_equal(one["robs"][0], np.asarray(sessions[1].robs[30 + 7]))
    assert np.array_equal(one["stim"][0, 0, 3], np.asarray(sessions[1].frames[30 + 7 - 3]))
    # slices and arrays are one batch of that session
    assert _same(view[2:5], ds.gather(1, np.array([2, 3, 4])))
    assert _same(view[np.array([9, 1, 9])], ds.gather(1, np.array([9, 1, 9])))
    assert _same(view[[0, -1]], ds.gather(1, np.array([0, 59])))
    assert view[10:10]["robs"].shape == (0, 4)


def test_out_of_range_and_unknown_names_are_refused_by_name(tmp_path):
    ds, sessions = make(tmp_path)
    with pytest.raises(KeyError) as err:
        ds["Nobody_2020-01-01"]
    assert "Nobody_2020-01-01" in str(err.value) and all(s.name in str(err.value) for s in sessions)
    view = ds[sessions[2].name]
    with pytest.raises(IndexError, match="28 samples"):
        view[28]
    with pytest.raises(IndexError):
        view[[0, -29]]
    with pytest.raises(TypeError):
        view[np.array([True, False])]


def test_a_loader_over_one_session_and_the_parent_batch_path_are_unchanged(tmp_path):
    ds, sessions = make(tmp_path)
    view = ds[sessions[0].name]
    batches = list(torch.utils.data.DataLoader(view, batch_size=16, collate_fn=group_collate))
    assert [len(b) for b in batches] == [1, 1, 1] and [b[0]["robs"].shape[0] for b in batches] == [16, 16, 8]
    assert torch.equal(torch.cat([b[0]["robs"] for b in batches]), torch.from_numpy(ds.gather(0, np.arange(40))["robs"]))
    assert all(b[0]["session_idx"] == 0 and b[0]["stim"].dtype == torch.uint8 for b in batches)
    # integer and list access of the dataset itself: as before
    groups = ds.__getitems__([45, 3, 41])
    assert [g["session_idx"] for g in groups] == [1, 0] and ds[3]["stim"].shape == (1, 1, 8, 24, 24)
    assert _same(ds[np.int64(45)], ds.gather(1, np.array([5])))
