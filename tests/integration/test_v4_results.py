"""The README's results on real V4 data, on a small budget (`examples/v4_results.py`):

* a frozen core pretrained on 8 sessions fits the 9th, which it never saw, to at least 90% of the held-out
  correlation of the shared model trained with that session from the start;
* every model is scored by `neurotrain evaluate`, and the tables are rendered from `results.json`;
* the noise ceiling of session 201016's raw repeats is the noise-ceiling module's on the raw file.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from neurotrain.evaluation.noise_ceiling import noise_ceiling
from neurotrain.evaluation.raw_repeats import load_repeats
from tests.helpers.shared import data_dir, require
from tests.helpers.tiny import ROOT
from tests.helpers.outcomes import outcome

pytestmark = pytest.mark.slow  # end-to-end runs (make test-fast leaves them out)

EPOCHS, FT_EPOCHS = 6, 6  # a small budget; the example's defaults are 30 and 15


@pytest.mark.outcome
def test_v4_results_on_a_small_budget(tmp_path):
    src = require(data_dir() / "cowley_v4", "Cowley V4 recordings")
    out = tmp_path / "out"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "v4_results.py"), "--data", str(src), "--out", str(out),
                           "--epochs", str(EPOCHS), "--ft-epochs", str(FT_EPOCHS), "--sessions", "201025",
                           "--n-splits", "50"], capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "results.json").read_text())
    table = (out / "results.md").read_text()  # the README's table, rendered from results.json
    assert f"**{r['mean_shared_corr']:.3f}**" in table and "| 201025 | PE | 89 |" in table

    ft = r["finetune"]
    outcome("shared model corr > 0.1", ft["shared_corr"], above=0.1)  # the reference itself learned something
    outcome("frozen core >= 0.9 x shared", ft["frozen_core_corr"], above=0.9 * ft["shared_corr"])
    assert (out / "finetune" / "twin" / "model.safetensors").is_file()

    rows = {s["session"]: s for s in r["sessions"]}
    assert len(rows) == 9 and sum(s["neurons"] for s in rows.values()) == 445
    assert rows["201025"]["single_corr"] is not None and rows["190923"]["single_corr"] is None
    assert ft["single_corr"] == rows["201025"]["single_corr"]
    assert r["mean_shared_corr"] == pytest.approx(np.mean([s["shared_corr"] for s in rows.values()]))
    outcome("mean shared corr > 0.15", r["mean_shared_corr"], above=0.15)  # 0.333 after 30 epochs; 0.04 after 1
    for name in ("metrics.json", "sessions.csv", "neurons.csv", "report/session_bps.png"):
        assert (out / "eval" / "shared" / name).is_file(), name

    raw = load_repeats(src / "responses_raw" / "responses_201016.npy")
    direct = noise_ceiling(raw, min_trials_per_bin=4, min_time_bins=20, n_splits=50, seed=0)
    assert r["noise_ceiling_201016"]["cc_max_median"] == pytest.approx(float(np.nanmedian(direct["cc_max"])))
    assert r["repeats_per_image_201016"] == {"5": 124, "6": 318, "7": 118, "8": 37, "9": 3}
