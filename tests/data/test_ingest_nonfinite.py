"""NaN / inf in the responses or the behaviour of a recording: refused with the count and the first positions, or
(``mask_nonfinite`` / ``--mask-nonfinite``) masked through ``dfs`` and recorded in the session's metadata."""

import json

import numpy as np
import pytest

from neurotrain.cli import main
from neurotrain.data.ingest import IngestError, ingest_arrays, ingest_npz
from neurotrain.data.session import Session
from neurotrain.data.windows import valid_sample_times

T, N, D = 40, 5, 2


def recording(seed=0):
    rng = np.random.default_rng(seed)
    return {"name": "s1", "subject": "m", "sampling_rate": 100.0,
            "frames": rng.integers(0, 256, (T, 6, 6), dtype=np.uint8),
            "responses": rng.poisson(1.0, (T, N)).astype(np.float32),
            "dfs": (rng.random((T, N)) > 0.1).astype(np.uint8),
            "behavior": rng.normal(size=(T, D)).astype(np.float32),
            "trial_ids": np.repeat(np.arange(4), T // 4)}


def runs_of(mask: np.ndarray) -> list[list[int]]:
    """[[column, start, stop], ...] of the True entries, by a plain scan (the reference)."""
    out = []
    for k in range(mask.shape[1]):
        t = 0
        while t < mask.shape[0]:
            if mask[t, k]:
                s = t
                while t < mask.shape[0] and mask[t, k]:
                    t += 1
                out.append([k, s, t])
            else:
                t += 1
    return out


def test_nonfinite_responses_are_refused_with_the_count_and_first_positions(tmp_path):
    rec = recording()
    rec["responses"][3, 0] = rec["responses"][3, 1] = np.nan
    rec["responses"][17, 4] = -np.inf
    rec["responses"][20, 2] = np.inf
    rec["responses"][30:40, 3] = np.nan
    with pytest.raises(IngestError, match=r"^argument 'responses': 14 non-finite value\(s\) \(12 NaN, 1 \+inf, "
                                          r"1 -inf\); first at \(t, neuron\) \(3, 0\), \(3, 1\), \(17, 4\), "
                                          r"\(20, 2\), \(30, 3\), \.\.\.; fix them, or pass mask_nonfinite=True "
                                          r"\(neurotrain ingest \.\.\. --mask-nonfinite\)"):
        ingest_arrays(tmp_path, **rec)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_nonfinite_behaviour_in_an_npz_is_refused_naming_the_file_and_key(tmp_path):
    rec = recording()
    rec["behavior"][7, 1] = np.nan
    npz = tmp_path / "rec.npz"
    np.savez(npz, **{k: (np.array(v) if isinstance(v, str) else v) for k, v in rec.items()})
    with pytest.raises(IngestError, match=rf"^'{npz}', key 'behavior': 1 non-finite value\(s\) \(1 NaN\); first at "
                                          r"\(t, column\) \(7, 1\); .* \(a behaviour value masks its whole sample\)"):
        ingest_npz(npz, tmp_path / "out")


def test_masked_responses_become_zero_with_dfs_zero_and_are_recorded(tmp_path):
    rec = recording()
    bad = np.zeros((T, N), bool)
    bad[3, 0] = bad[3, 1] = bad[17, 4] = True
    bad[30:40, 3] = True
    rec["responses"][bad] = np.nan
    rec["responses"][17, 4] = np.inf
    s = Session(ingest_arrays(tmp_path, mask_nonfinite=True, **rec))
    clean = recording()  # the same draws, untouched
    assert np.all(s.robs[bad] == 0) and np.all(s.dfs[bad] == 0)
    assert np.array_equal(s.robs[~bad], clean["responses"][~bad])
    assert np.array_equal(s.dfs[~bad], clean["dfs"][~bad])  # the given mask is kept elsewhere
    record = s.extra_meta["nonfinite_masked"]
    assert record == {"responses": {"count": 13, "nan": 12, "posinf": 1, "neginf": 0, "runs": runs_of(bad)}}
    assert record["responses"]["runs"] == [[0, 3, 4], [1, 3, 4], [3, 30, 40], [4, 17, 18]]
    # the metadata's mean rates count only the valid entries
    valid = s.dfs.astype(bool)
    assert np.allclose(s.mean_rate, [clean["responses"][valid[:, n], n].mean() for n in range(N)])


def test_a_masked_behaviour_value_masks_its_whole_sample(tmp_path):
    rec = recording()
    rec["behavior"][5, 0] = np.nan
    rec["behavior"][6, 1] = -np.inf
    rec["behavior"][25, 0] = rec["behavior"][25, 1] = np.nan
    s = Session(ingest_arrays(tmp_path, mask_nonfinite=True, **rec))
    clean = recording()
    rows = np.zeros(T, bool)
    rows[[5, 6, 25]] = True
    assert np.all(s.dfs[rows] == 0) and np.array_equal(s.dfs[~rows], clean["dfs"][~rows])
    assert s.behavior[5, 0] == 0 and s.behavior[6, 1] == 0 and np.all(s.behavior[25] == 0)
    assert s.behavior[5, 1] == clean["behavior"][5, 1] and np.array_equal(s.behavior[~rows], clean["behavior"][~rows])
    assert np.array_equal(s.robs, clean["responses"])  # responses untouched: only dfs hides the samples
    assert s.extra_meta["nonfinite_masked"] == {"behavior": {
        "count": 4, "nan": 3, "posinf": 0, "neginf": 1, "runs": [[0, 5, 6], [0, 25, 26], [1, 6, 7], [1, 25, 26]],
        "samples": 3, "sample_runs": [[5, 7], [25, 26]]}}
    # the masked samples are never drawn for training, validation or evaluation
    times = valid_sample_times(s.trial_ids, s.dfs, 0)
    assert not set(times) & {5, 6, 25} and set(times) >= set(np.flatnonzero(clean["dfs"].any(axis=1) & ~rows))


def test_the_command_line_refuses_or_masks(tmp_path, capsys):
    rec = recording()
    rec["responses"][9, 2] = np.nan
    npz = tmp_path / "rec.npz"
    np.savez(npz, **{k: (np.array(v) if isinstance(v, str) else v) for k, v in rec.items()})
    assert main(["ingest", "npz", str(npz), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"neurotrain: ingest error: '{npz}', key 'responses': 1 non-finite value(s) (1 NaN); "
                          "first at (t, neuron) (9, 2)") and len(err.splitlines()) == 1
    assert main(["ingest", "npz", str(npz), str(tmp_path / "out"), "--mask-nonfinite"]) == 0
    meta = json.loads((tmp_path / "out" / "s1" / "neurotrain_session.json").read_text())
    assert meta["extra_meta"]["nonfinite_masked"]["responses"]["runs"] == [[2, 9, 10]]
    assert meta["n_valid_bins"][2] == int(rec["dfs"][:, 2].sum()) - int(rec["dfs"][9, 2])
