"""Spike-history inputs: each sample carries its own session's previous counts, newest bin first."""

import numpy as np
import pytest

from neurotrain.data.multisession import MultiSessionDataset, group_collate
from neurotrain.data.session import Session
from neurotrain.data.synthetic import generate_demo_sessions


def test_history_holds_the_previous_bins_newest_first(tmp_path):
    paths = generate_demo_sessions(tmp_path, n_sessions=2, n_trials=4, trial_frames=60, neurons=[3, 4])
    sessions = [Session.open(p) for p in paths]
    ds = MultiSessionDataset(sessions, [np.arange(20, 60), np.arange(30, 90)], list(range(8)),
                             use_behavior=False, history_lags=5)
    batch = group_collate(ds.__getitems__([45, 3]))
    for sub in batch:
        s = sessions[sub["session_idx"]]
        t = np.array([20 + 3]) if sub["session_idx"] == 0 else np.array([30 + 5])
        hist = sub["history"].numpy()
        assert hist.shape == (1, 5, s.n_neurons)
        for j in range(5):  # index j = bin t - 1 - j
            np.testing.assert_array_equal(hist[0, j], np.asarray(s.robs[t[0] - 1 - j]))
    # a sample without room for its history is refused, not silently wrapped around
    with pytest.raises(ValueError, match="precedes its oldest lag"):
        MultiSessionDataset(sessions, [np.arange(3, 10), np.arange(30, 40)], [0, 1], history_lags=5)
