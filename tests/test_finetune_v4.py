"""The worked example on real data: a frozen core pretrained on 8 V4 sessions fits the 9th, which it never
saw, to at least 90% of the held-out correlation of a model trained with that session from the start."""

import json

from examples.finetune_v4 import run
from tests.helpers.shared import data_dir, require

EPOCHS, FT_EPOCHS = 6, 6  # a small budget; the example's defaults are 30 and 15


def test_frozen_core_fine_tune_reaches_90_percent_of_the_joint_model(tmp_path):
    src = require(data_dir() / "cowley_v4", "Cowley V4 recordings")
    result = run(src, tmp_path / "out", epochs=EPOCHS, ft_epochs=FT_EPOCHS)
    saved = json.loads((tmp_path / "out" / "finetune_v4.json").read_text())
    assert saved["ratio"] == result["ratio"]
    assert result["joint_corr"] > 0.1, result  # the reference itself learned something
    assert result["ratio"] >= 0.9, result
    assert (tmp_path / "out" / "finetune" / "twin" / "model.safetensors").is_file()
