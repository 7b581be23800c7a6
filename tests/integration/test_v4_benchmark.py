"""`examples/v4_benchmark.py` end to end on the real V4 data, one epoch: the held-out images of the three test
sessions are the protocol's (600 each, never trained or validated on, in any session), and both columns print."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.shared import data_dir, require
from tests.helpers.tiny import ROOT

pytestmark = pytest.mark.slow  # trains one epoch on the 9 sessions (about a minute on 2 CPU cores)


def test_v4_benchmark_one_epoch(tmp_path):
    src = require(data_dir() / "cowley_v4", "Cowley V4 recordings")
    out = tmp_path / "bench"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "v4_benchmark.py"), "--recipe",
                           str(ROOT / "recipes" / "v4_cowley.yaml"), "--epochs", "1", "--out", str(out),
                           f"data.importer.path={src}", f"data.cache_dir={tmp_path / 'cache'}"],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "benchmark.json").read_text())
    rows = {s["session"]: s for s in r["sessions"]}
    assert {k: (v["n_neurons"], v["n_test_images"]) for k, v in rows.items()} == {
        "190923": (33, 600), "201025": (89, 600), "210225": (55, 600)}
    assert {k: v["published_r"] for k, v in rows.items()} == {"190923": 0.6387, "201025": 0.6749, "210225": 0.6061}
    assert r["mean_published_r"] == pytest.approx(0.6399, abs=1e-4)
    for v in rows.values():
        assert np.isfinite(v["heldout_r"]) and -1 < v["heldout_r"] < 1 and np.isfinite(v["val_r"])
    assert len(r["val_r_all_sessions"]) == 9
    table = (out / "benchmark.md").read_text()
    assert "| 201025 | 89 | 600 |" in table and "published r" in table and table in proc.stdout
    # the scored split: exactly images 601-1200 of each test session
    test = json.loads((out / "test" / "metrics.json").read_text())
    assert [s["n_samples"] for s in test["sessions"]] == [600, 600, 600]
    meta = json.loads((out / "run" / "checkpoints" / "last" / "neurotrain_model.json").read_text())
    s = {x["name"]: x for x in meta["sessions"]}
    assert s["cowley_v4_201025"]["n_test_samples"] == 600  # the registry records the held-out trials
    assert s["cowley_v4_201025"]["n_train_samples"] + s["cowley_v4_201025"]["n_val_samples"] == 600
    assert s["cowley_v4_190927"]["n_test_samples"] == 0
