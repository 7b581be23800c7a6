"""Resumable training state: ``accelerator.save_state`` plus the sampler's and the loop's state.

Layout under ``<output_dir>/state/``::

    step_00000120/       # one complete state (model, optimizer, RNG per rank, custom objects)
        neurotrain_state.json   # written last: {"step", "epoch", ...}; its presence marks the folder complete
    LATEST               # name of the newest complete state, replaced atomically

A state is written into a hidden temporary folder by all ranks, then renamed into place by the main
process, and only then does ``LATEST`` move; older states beyond ``keep_last`` are deleted afterwards.
A crash at any point leaves the previous state loadable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from neurotrain.io import commit_dir, fsync_tree, remove_stale_temps, write_json_atomic, write_text_atomic

MARKER = "neurotrain_state.json"


class StateManager:
    def __init__(self, root: str | Path, keep_last: int = 2):
        self.root = Path(root)
        self.keep_last = keep_last

    def complete_states(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step_*") if (p / MARKER).is_file())

    def latest(self) -> Path | None:
        pointer = self.root / "LATEST"
        if pointer.is_file():
            p = self.root / pointer.read_text().strip()
            if (p / MARKER).is_file():
                return p
        states = self.complete_states()
        return states[-1] if states else None

    def save(self, accelerator, step: int, info: dict) -> Path:
        name = f"step_{step:08d}"
        tmp = self.root / f".{name}.tmp"
        if accelerator.is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        target = self.root / name
        if accelerator.is_main_process:
            write_json_atomic(tmp / MARKER, {"step": step, **info})
            fsync_tree(tmp)
            commit_dir(tmp, target)
            write_text_atomic(self.root / "LATEST", name + "\n")
            for old in self.complete_states()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            remove_stale_temps(self.root)
        accelerator.wait_for_everyone()
        return target


class StartPoint:
    """Where a run starts. The setup calls :meth:`before_prepare` with the bare model and optimizer (before
    ``accelerator.prepare``), then :meth:`after_prepare` once the prepared objects exist. A fresh start does
    nothing; :class:`StateFolder` loads a resumable state; legacy runs continue through
    :class:`neurotrain.legacy.resume.LegacyRun`. :func:`neurotrain.sources.start_point` picks one."""

    description = "a fresh start"

    def before_prepare(self, model, optimizer, data, say) -> None:
        pass

    def after_prepare(self, accelerator, state, scheduler, sampler, say) -> None:
        pass


class StateFolder(StartPoint):
    """A resumable state written by :meth:`StateManager.save`: model, optimizer, RNGs, and the objects registered
    for checkpointing (scheduler, sampler, loop state), mid-epoch included."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.description = f"the state {self.path}"

    def after_prepare(self, accelerator, state, scheduler, sampler, say) -> None:
        accelerator.load_state(str(self.path))
        say(f"[neurotrain] resumed from {self.path} (epoch {state.epoch}, step {state.global_step}, "
            f"{state.batches_in_epoch} batches into the epoch)")
