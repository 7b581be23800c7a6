"""Resumable training state: ``accelerator.save_state`` plus the sampler's and the loop's state.

Layout under ``<output_dir>/state/``::

    step_00000120/       # one complete state (model, optimizer, RNG per rank, custom objects)
        neurotrain_state.json   # written last: {"step", "epoch", ...}; its presence marks the folder complete
    LATEST               # name of the newest complete state, replaced atomically

A state is written into a hidden temporary folder by all ranks, then renamed into place by the main
process, and only then does ``LATEST`` move; older states beyond ``keep_last`` are deleted afterwards.
A crash at any point leaves the previous state loadable.

A write the file system refuses (a full disk, a quota, on any rank) is agreed by every rank after each phase
(create the folder, ``save_state``, marker + rename + ``LATEST``): the partial folder is removed and
:class:`~neurotrain.checkpoint.faults.SaveFailed` is raised on every rank, with ``LATEST`` still pointing at
the last complete state. On a full disk (or quota) the older states that a successful save would have removed
(never the newest complete one) are removed first and the save is tried once more.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from neurotrain.checkpoint.faults import (NOT_IO, SPACE_ERRNOS, SaveFailed, agree, error_code, failure_of,
                                          tensor_bytes)
from neurotrain.io import commit_dir, fsync_tree, remove_stale_temps, write_json_atomic, write_text_atomic

MARKER = "neurotrain_state.json"
#: bytes a state holds besides the model and optimizer tensors, per process (RNG states, scheduler, sampler,
#: loop counters, marker; about 20 KiB measured): part of :func:`state_bytes`'s estimate
STATE_OVERHEAD = 32 * 1024


def state_bytes(model, optimizer, world: int = 1) -> int:
    """The size a resumable state will take (bytes, an estimate): the model's and the optimizer's tensors plus
    :data:`STATE_OVERHEAD` per process."""
    return tensor_bytes(model.state_dict()) + tensor_bytes(optimizer.state_dict()) + STATE_OVERHEAD * world


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

    def save(self, accelerator, step: int, info: dict, needed: int | None = None) -> Path:
        """Write the state of ``step`` (a collective: every rank calls it). ``needed``: the bytes it will take
        (for the message of a failure; :func:`state_bytes`). Returns the state folder, or raises
        :class:`~neurotrain.checkpoint.faults.SaveFailed` on every rank once the partial folder is removed."""
        try:
            return self._save_once(accelerator, step, info, needed)
        except SaveFailed as failed:
            if not failed.failure.out_of_space or not self._make_room(accelerator):
                raise
            return self._save_once(accelerator, step, info, needed)

    def _save_once(self, accelerator, step: int, info: dict, needed: int | None) -> Path:
        name = f"step_{step:08d}"
        tmp, target = self.root / f".{name}.tmp", self.root / name
        main = accelerator.is_main_process
        existed = target.exists()
        err = None
        if main:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir()
            except Exception as e:  # noqa: BLE001 - agreed first, then re-raised or reported
                err = e
        self._settle(accelerator, err, tmp, target, needed, existed)
        err = None
        try:
            accelerator.save_state(str(tmp), safe_serialization=True)
        except Exception as e:  # noqa: BLE001
            err = e
        self._settle(accelerator, err, tmp, target, needed, existed)
        err = None
        if main:
            try:
                write_json_atomic(tmp / MARKER, {"step": step, **info})
                fsync_tree(tmp)
                commit_dir(tmp, target)
                write_text_atomic(self.root / "LATEST", name + "\n")
            except Exception as e:  # noqa: BLE001
                err = e
        self._settle(accelerator, err, tmp, target, needed, existed)
        if main:
            for old in self.complete_states()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            remove_stale_temps(self.root)
        accelerator.wait_for_everyone()
        return target

    def _settle(self, accelerator, err, tmp: Path, target: Path, needed, existed: bool) -> None:
        """All ranks agree on this phase's outcome; after a failure the partial folder is removed (a folder
        renamed into place whose ``LATEST`` could not follow too, unless it was there before) and every rank
        raises: the failing rank's own exception when it was not an input/output error, else ``SaveFailed``."""
        codes = agree(accelerator, error_code(err, tmp, needed))
        if not any(codes):
            return
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            latest = self.latest()
            if not existed and target.exists() and latest != target:
                shutil.rmtree(target, ignore_errors=True)
        accelerator.wait_for_everyone()
        rank = next(r for r, c in enumerate(codes) if c)
        if codes[rank] == NOT_IO:
            if err is not None and error_code(err, tmp, needed) == NOT_IO:
                raise err
            raise RuntimeError(f"{target}: process {rank} failed while saving this state (see its traceback)")
        failure = failure_of(err if err is not None else OSError(codes[rank], os.strerror(codes[rank])),
                             "resumable state", target, needed, rank)
        failure.errno = codes[rank]
        raise SaveFailed(failure) from err

    def _make_room(self, accelerator) -> bool:
        """Remove the complete states that a successful save would have removed (all but the newest
        ``keep_last - 1``, never the newest complete one); a collective. True when any was removed."""
        removed = 0
        if accelerator.is_main_process:
            states, latest = self.complete_states(), self.latest()
            keep = set(states[-max(self.keep_last - 1, 1):]) | {latest}
            for old in states:
                if old not in keep:
                    shutil.rmtree(old, ignore_errors=True)
                    removed += 1
            remove_stale_temps(self.root)
        return any(agree(accelerator, removed))


class StartPoint:
    """Where a run starts. The setup calls :meth:`before_prepare` with the bare model and optimizer (before
    ``accelerator.prepare``), then :meth:`after_prepare` once the prepared objects exist. A fresh start does
    nothing; :class:`StateFolder` loads a resumable state; legacy runs continue through
    :class:`neurotrain.legacy.resume.LegacyRun`. :func:`neurotrain.sources.start_point` picks one."""

    description = "a fresh start"
    #: whether the start loads trained weights, readout biases included (else the setup sets the biases from the
    #: data's mean rates)
    restores_weights = False

    def before_prepare(self, model, optimizer, data, say) -> None:
        pass

    def after_prepare(self, accelerator, state, scheduler, sampler, say) -> None:
        pass


class StateFolder(StartPoint):
    """A resumable state written by :meth:`StateManager.save`: model, optimizer, RNGs, and the objects registered
    for checkpointing (scheduler, sampler, loop state), mid-epoch included."""

    restores_weights = True

    def __init__(self, path: Path):
        self.path = Path(path)
        self.description = f"the state {self.path}"

    def after_prepare(self, accelerator, state, scheduler, sampler, say) -> None:
        accelerator.load_state(str(self.path))
        say(f"[neurotrain] resumed from {self.path} (epoch {state.epoch}, step {state.global_step}, "
            f"{state.batches_in_epoch} batches into the epoch)")
