"""Every shipped model YAML trains a few optimizer steps through the real loop, unchanged.

The data are two small sessions in the legacy layout (25 lags; 42-D behaviour, as the legacy data
configs give the shipped models, or the width a model declares); the adapters resample any frame size onto the 51 x 51 grid the YAMLs
declare, so 20 x 20 frames keep this fast. Models declaring ``initial_input_channels: 3`` get RGB sessions. Training stops after ``max_steps`` (mid-epoch, so no
validation pass), and the per-step losses logged to ``metrics.jsonl`` must be finite; regularizer and
auxiliary terms must be logged for the models that declare them.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from neurotrain.config.recipe import load_recipe
from neurotrain.data.ingest import ingest_arrays
from neurotrain.run.train import train

ROOT = Path(__file__).resolve().parents[2]
MODELS = sorted(p for p in (ROOT / "recipes" / "models").glob("*.yaml") if p.stem != "cones_res_small_gru_optimized")
STEPS = 2


@pytest.fixture(scope="module")
def sessions_with_behavior(tmp_path_factory):
    """``(width, channels) -> [two session folders]`` with behaviour vectors of that width and frames of that many
    channels (written on first use)."""
    made: dict[tuple, list[str]] = {}

    def get(width: int, channels: int = 1) -> list[str]:
        if (width, channels) not in made:
            out = tmp_path_factory.mktemp(f"sessions{width}_{channels}")
            rng = np.random.default_rng(width)
            n_trials, trial_frames = 20, 40
            t = n_trials * trial_frames
            made[width, channels] = [str(ingest_arrays(
                out, name=f"S{i}", subject="M", sampling_rate=240.0,
                frames=rng.integers(0, 256, size=(t, 20, 20) + ((3,) if channels == 3 else ()), dtype=np.uint8),
                color="rgb" if channels == 3 else "luminance",
                responses=rng.poisson(0.5, size=(t, n)).astype(np.float32),
                trial_ids=np.repeat(np.arange(n_trials), trial_frames),
                behavior=rng.normal(size=(t, width)).astype(np.float32),
            )) for i, n in enumerate((6, 9))]
        return made[width, channels]

    return get


@pytest.mark.parametrize("model_yaml", MODELS, ids=lambda p: p.stem)
def test_shipped_model_trains_a_few_steps(tmp_path, sessions_with_behavior, model_yaml):
    model_cfg = yaml.safe_load(model_yaml.read_text())
    width = int(((model_cfg.get("modulator") or {}).get("params") or {}).get("behavior_dim", 42))
    recipe = {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {"sessions": sessions_with_behavior(width, int(model_cfg.get("initial_input_channels", 1))), "lags": 25, "batch_size": 4, "use_behavior": True,
                 "val_fraction": 0.25},
        "model": {"config": str(model_yaml)},
        "train": {"max_epochs": 1, "max_steps": STEPS, "lr": 1e-3, "lr_scheduler": "none"},
        "checkpoint": {"every_n_steps": 0},
        "logging": {"progress_bar": False, "log_every_n_steps": 1, "wandb": False},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = train(load_recipe(path))
    assert result["global_step"] == STEPS
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss_step"] for r in rows if "train_loss_step" in r]
    assert len(losses) == STEPS and np.all(np.isfinite(losses)), rows
    logged = set().union(*rows)
    for reg in model_cfg.get("regularization") or []:
        lam = float(reg.get("lambda", 0.0))
        if reg["type"].startswith("proximal") or lam == 0.0:
            continue
        kind = (reg.get("schedule") or {}).get("kind", "constant")
        start = (reg.get("schedule") or {}).get("start_epoch", 0)
        if kind == "constant" or start == 0:
            assert f"reg/{reg['name']}" in logged, (reg, logged)
    if (model_cfg.get("modulator") or {}).get("type") == "pc":
        aux = [r["aux_loss"] for r in rows if "aux_loss" in r]
        assert aux and all(a > 0 for a in aux)
