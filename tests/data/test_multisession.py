"""The multi-session dataset: batched gathers, session grouping, stimulus storage dtypes."""

import numpy as np
import torch

from neurotrain.data.multisession import MultiSessionDataset, cast_stim, group_collate
from neurotrain.data.session import Session
from neurotrain.data.synthetic import generate_demo_sessions


def make(tmp_path, **kw):
    paths = generate_demo_sessions(tmp_path, n_sessions=2, n_trials=4, trial_frames=60, neurons=[3, 4])
    sessions = [Session.open(p) for p in paths]
    times = [np.arange(20, 60), np.arange(30, 90)]
    return MultiSessionDataset(sessions, times, list(range(8)), use_behavior=True, **kw), sessions


def test_a_mixed_batch_is_grouped_by_session_in_first_appearance_order(tmp_path):
    ds, sessions = make(tmp_path)
    batch = group_collate(ds.__getitems__([45, 3, 41, 7, 0]))
    assert [b["session_idx"] for b in batch] == [1, 0]
    assert batch[1]["stim"].shape == (3, 1, 8, 24, 24) and batch[1]["stim"].dtype == torch.uint8
    t = np.array([20 + 3, 20 + 7, 20 + 0])
    assert torch.equal(batch[1]["robs"], torch.from_numpy(np.asarray(sessions[0].robs[t])))
    assert torch.equal(batch[1]["stim"][:, 0, 2], torch.from_numpy(np.asarray(sessions[0].frames[t - 2])))
    assert batch[0]["robs"].shape == (2, 4) and batch[0]["behavior"].shape == (2, 2)


def test_storage_dtypes_hold_the_normalised_stimulus(tmp_path):
    ds8, _ = make(tmp_path)
    ref = cast_stim(torch.from_numpy(ds8.gather(0, np.arange(5))["stim"]))
    for dtype, torch_dtype, tol in (("float32", torch.float32, 0.0), ("bfloat16", torch.bfloat16, 2e-3)):
        ds, _ = make(tmp_path, stim_dtype=dtype)
        stim = ds.gather(0, np.arange(5))["stim"]
        assert stim.dtype == torch_dtype
        assert (stim.float() - ref).abs().max().item() <= tol
    assert ref.min() >= -127 / 255 and ref.max() <= 128 / 255
