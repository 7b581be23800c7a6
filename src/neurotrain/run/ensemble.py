"""Train an ensemble: K members one after another, then one ensemble folder (:mod:`neurotrain.checkpoint.ensemble`).

    neurotrain train RECIPE.yaml ensemble.members=5                 # the recipe's `ensemble:` section
    neurotrain ensemble RECIPE.yaml --members 5 --by kfold           # the same, with flags
    neurotrain ensemble --assemble RUN_A/checkpoints/last RUN_B/checkpoints/last --out ENSEMBLE

Layout under the recipe's ``output_dir``::

    members/member_00/ ...      # member k's run folder (state/, checkpoints/, metrics.jsonl, member.json)
    ensemble/                   # the ensemble folder: manifest + a copy of each member's chosen portable folder

Member ``k`` is the recipe with ``seed + k`` and ``output_dir/members/member_k``; ``by: kfold`` also sets
``data.kfold = K`` and ``data.kfold_index = k`` (member k trains without fold k of the training split; the
validation split is the same for every member, so their metrics and the ensemble's compare). A finished member
has ``member.json`` in its folder and is skipped when the command runs again; an interrupted one resumes from its
own state (``checkpoint.resume: auto``). A member stopped by a signal stops the ensemble (run it again to go on).

The ensemble's own validation metrics (the same ones the members log, on the same split) go into its manifest and
model card, next to each member's.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from neurotrain.checkpoint.ensemble import (ENSEMBLE_META, assemble_ensemble, ensemble_card, load_ensemble,
                                            member_folder)
from neurotrain.config.recipe import EnsembleConfig, Recipe
from neurotrain.errors import ConfigError
from neurotrain.io import write_json_atomic
from neurotrain.run.setup import process_state
from neurotrain.run.train import train
from neurotrain.sources import build_data
from neurotrain.training.loss import session_losses
from neurotrain.training.validation import run_validation

MEMBER_DONE = "member.json"
ENSEMBLE_DIR = "ensemble"


def member_recipe(recipe: Recipe, k: int) -> Recipe:
    """Member ``k``'s recipe: ``seed + k``, its own output folder, and for ``by: kfold`` the fold it leaves out."""
    cfg = recipe.ensemble
    if cfg.by == "kfold" and recipe.data.kfold != 1:
        raise ConfigError(recipe.source, "data.kfold", "an ensemble by kfold sets each member's fold itself "
                          f"(ensemble.members = {cfg.members} folds): leave data.kfold at 1")
    r = copy.deepcopy(recipe)
    r.output_dir = str(Path(recipe.output_dir) / "members" / member_folder(k))
    r.seed = recipe.seed + k
    r.ensemble = EnsembleConfig()
    if cfg.by == "kfold":
        r.data.kfold, r.data.kfold_index = cfg.members, k
    if recipe.logging.run_name:
        r.logging.run_name = f"{recipe.logging.run_name}-{member_folder(k)}"
    return r


def chosen_checkpoint(recipe: Recipe, result: dict) -> Path:
    """The member's portable folder that joins the ensemble: its best by ``checkpoint.monitor`` (``ensemble.checkpoint:
    best``, when the run kept any), else ``checkpoints/last``."""
    out = Path(recipe.output_dir) / "checkpoints"
    best = result.get("best") or []
    if recipe.ensemble.checkpoint == "best" and best and (out / "best" / best[0][1]).is_dir():
        return out / "best" / best[0][1]
    return out / "last"


def read_member(folder: Path) -> dict | None:
    """A finished member's record (``member.json``), or None when the member has not finished."""
    path = folder / MEMBER_DONE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a torn record: train (resume) the member again


def train_ensemble(recipe: Recipe, say=print) -> dict:
    """Train the recipe's ``ensemble.members`` members (skipping finished ones), write ``output_dir/ensemble`` and
    return ``{"output_dir", "ensemble" (the folder), "members" (their records), **the ensemble's val metrics}``,
    or ``{"preempted": ..., ...}`` when a signal stopped a member."""
    cfg = recipe.ensemble
    out = Path(recipe.output_dir)
    state = process_state()
    records = []
    for k in range(cfg.members):
        r = member_recipe(recipe, k)
        done = read_member(Path(r.output_dir))
        if done is not None:
            if state.is_main_process:
                say(f"[neurotrain] ensemble member {k + 1}/{cfg.members} finished before: skipped ({r.output_dir})")
            records.append(done)
            continue
        if state.is_main_process:
            say(f"[neurotrain] ensemble member {k + 1}/{cfg.members}: seed {r.seed}"
                + (f", without fold {k} of {cfg.members}" if cfg.by == "kfold" else "") + f" -> {r.output_dir}")
        t0 = time.monotonic()
        result = train(r)
        if result.get("preempted"):
            return {"output_dir": str(out), "preempted": result["preempted"], "members": records}
        ckpt = chosen_checkpoint(r, result)
        meta = json.loads((ckpt / "neurotrain_model.json").read_text())
        record = {"member": k, "seed": r.seed, "kfold": [cfg.members, k] if cfg.by == "kfold" else None,
                  "checkpoint": str(ckpt.resolve()), "time_s": round(time.monotonic() - t0, 1),
                  "metrics": {m: v for m, v in (meta.get("metrics") or {}).items()
                              if isinstance(v, (int, float)) and "/" not in m}}
        if state.is_main_process:
            write_json_atomic(Path(r.output_dir) / MEMBER_DONE, record)
        records.append(record)
    folder = out / ENSEMBLE_DIR
    if state.is_main_process:
        assemble_ensemble(folder, [rec["checkpoint"] for rec in records], by=cfg.by,
                          member_info=[{k: rec[k] for k in ("seed", "kfold", "time_s")} for rec in records])
    state.wait_for_everyone()
    metrics = ensemble_metrics(recipe, folder)
    if state.is_main_process:
        manifest_path = folder / ENSEMBLE_META
        manifest = json.loads(manifest_path.read_text())
        manifest["metrics"] = metrics
        write_json_atomic(manifest_path, manifest)
        (folder / "README.md").write_text(ensemble_card(manifest))
        mean_member = [rec["metrics"].get(recipe.checkpoint.monitor) for rec in records]
        shown = ", ".join(f"{v:.4f}" for v in mean_member if isinstance(v, (int, float)))
        say(f"[neurotrain] ensemble of {len(records)} -> {folder}: {recipe.checkpoint.monitor} "
            f"{metrics.get(recipe.checkpoint.monitor, float('nan')):.4f} (members: {shown})")
    state.wait_for_everyone()
    return {**metrics, "output_dir": str(out), "ensemble": str(folder), "members": records}


@torch.no_grad()
def ensemble_metrics(recipe: Recipe, folder: Path) -> dict:
    """The ensemble's validation metrics on the recipe's validation split (no folds), as the members' runs
    computed theirs (``run_validation``, ``data.limit_val_batches``). Every process takes part."""
    base = copy.deepcopy(recipe)
    base.data.kfold, base.data.kfold_index = 1, 0
    ensemble, _ = load_ensemble(folder)
    AcceleratorState._reset_state()  # the members' runs may have asked for another precision
    acc = Accelerator(cpu=not torch.cuda.is_available())
    data = build_data(base, acc.main_process_first, history_lags=ensemble.history_lags)
    ensemble = ensemble.to(acc.device).float()
    metrics = run_validation(ensemble, acc, data, base.data.val_batch_size or base.data.batch_size,
                             session_losses(data.registry, ensemble.log_input), with_oracle=False,
                             limit=base.data.limit_val_batches)
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
