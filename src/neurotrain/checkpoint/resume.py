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

from neurotrain.checkpoint.atomic import commit_dir, remove_stale_temps, write_json_atomic, write_text_atomic

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
            commit_dir(tmp, target)
            write_text_atomic(self.root / "LATEST", name + "\n")
            for old in self.complete_states()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            remove_stale_temps(self.root)
        accelerator.wait_for_everyone()
        return target
