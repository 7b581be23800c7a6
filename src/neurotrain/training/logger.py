"""Metrics go to a JSONL file always (main process), and to wandb when asked.

wandb runs offline unless the recipe says ``logging.wandb_mode: online`` (or ``WANDB_MODE`` is set);
if wandb is not installed, or fails to start, training goes on without it and says so once.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path


def _clean(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLogger:
    def __init__(self, accelerator, path: Path, *, use_wandb: bool = False):
        self.accelerator = accelerator
        self.path = Path(path)
        self.use_wandb = use_wandb
        self.t0 = time.time()
        if accelerator.is_main_process:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: dict, step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        row = {"step": step, "time": round(time.time() - self.t0, 3), **{k: _clean(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.use_wandb:
            self.accelerator.log({k: v for k, v in row.items() if v is not None}, step=step)


def wandb_tracker_config(recipe) -> tuple[str | None, dict]:
    """(``log_with`` for the Accelerator, init kwargs). Sets WANDB_MODE offline unless the user chose."""
    if not recipe.logging.wandb or recipe.logging.wandb_mode == "disabled":
        return None, {}
    try:
        import wandb  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        print("[neurotrain] wandb is not importable; logging to metrics.jsonl only")
        return None, {}
    os.environ.setdefault("WANDB_MODE", recipe.logging.wandb_mode)
    os.environ.setdefault("WANDB_DIR", str(Path(recipe.output_dir)))
    kwargs = {"dir": str(Path(recipe.output_dir))}
    if recipe.logging.run_name:
        kwargs["name"] = recipe.logging.run_name
    return "wandb", {"wandb": kwargs}
