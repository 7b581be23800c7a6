"""A tiny recipe on a small synthetic recording, for integration tests (seconds, not minutes)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def tiny_recipe(tmp_path: Path, **sections) -> Path:
    """Write a recipe into ``tmp_path`` and return its path; ``sections`` update the defaults."""
    recipe = {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {
            "synthetic": {"n_sessions": 3, "seed": 0, "n_trials": 30, "trial_frames": 160, "neurons": [5, 7, 6]},
            "cache_dir": str(tmp_path / "data"),
            "lags": 14,
            "batch_size": 48,
        },
        "model": {"config": str(ROOT / "recipes" / "models" / "demo_twin.yaml")},
        "train": {"max_epochs": 2, "lr": 5e-3, "warmup_epochs": 0.5},
        "checkpoint": {"save_top_k": 2, "every_n_steps": 0},
        "logging": {"progress_bar": False, "log_every_n_steps": 5},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            recipe.setdefault(section, {}).update(values)
        else:
            recipe[section] = values
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
