"""What a run does when a save fails (``checkpoint.on_save_error``): stop, or go on and try again at the next save.

Every file a training run writes goes through a :class:`SaveGuard`: the resumable states, the model folders
(``checkpoints/last`` and the best ``save_top_k``), ``recipe.resolved.yaml`` and ``metrics.jsonl``. The writers
are atomic, so a failed save leaves no partial output and never touches what was saved before (``LATEST``
keeps pointing at the last complete state, ``checkpoints/last`` keeps the previous epoch's model, a metrics row
that could not be appended is cut back). Then:

``stop`` (the default)
    every rank raises :class:`~neurotrain.errors.SaveError` at the same point. Its message names the path, what
    was written there, the reason (``ENOSPC``, ``EDQUOT``, ...), the free space on that file system, the size the
    save needed, the last complete state and the command that resumes; ``neurotrain train`` prints it as one line
    and exits with code 74.
``continue``
    a warning on the main process and a row ``{"save_error": what, "path": ..., "errno": ..., "save_errors": n}``
    in ``metrics.jsonl``; training goes on and the next save of that kind is the retry (metrics rows that could
    not be written are held in memory and written with the next row). ``save_errors`` (failed saves so far) is in
    every epoch's row and is kept in the resumable state. A run that ends while a save is still failing (its
    last state, ``checkpoints/last``, the metrics log or the resolved recipe) raises ``SaveError`` at its end
    (exit code 74): its results are not all on disk.

On N ranks nobody waits for a rank that stopped: the states (written by every rank) are agreed inside
:meth:`~neurotrain.checkpoint.states.StateManager.save`; the main process's own writes (model folders, the
resolved recipe) are agreed right after them (:meth:`SaveGuard.settle`, one all-reduce); a metrics row that
could not be written stops the run (``stop``) at the next preemption check (every
:data:`~neurotrain.training.preemption.Preemption.EVERY_N_STEPS` steps, no extra collective) or save.
"""

from __future__ import annotations

import errno as _errno
import sys
from pathlib import Path
from typing import Callable

from neurotrain.checkpoint.faults import (NOT_IO, QUOTA_ERRNOS, SPACE_ERRNOS, SaveFailed, SaveFailure, agree,
                                          failure_of)
from neurotrain.errors import SaveError
from neurotrain.io import free_bytes

#: kinds of save whose failure, still unresolved when the run ends, makes the run end with SaveError
_MUST_SUCCEED = {"state": "resumable state", "last": "checkpoints/last", "metrics": "metrics log",
                 "recipe": "resolved recipe"}


class SaveGuard:
    """The run's save policy. ``accelerator`` (ranks), ``recipe`` (``checkpoint.on_save_error``, ``output_dir``),
    ``states`` (the :class:`~neurotrain.checkpoint.states.StateManager`: the last complete state), ``say`` (prints
    on the main process). :meth:`attach` hands it the loop state (the count ``save_errors``) and the metrics log."""

    def __init__(self, accelerator, recipe, states, say: Callable[[str], None] = print):
        self.acc, self.recipe, self.states, self.say = accelerator, recipe, states, say
        self.policy = recipe.checkpoint.on_save_error
        self.state = None
        self.logger = None
        self.recipe_written = False
        self.outstanding: dict[str, SaveFailure] = {}  # kind -> its latest failure, until that kind saves again
        self._held: list[tuple[str, SaveFailure | BaseException]] = []  # main: not yet agreed
        self._count = 0
        self._rows: list[dict] = []  # failure rows waiting for the metrics log
        self._retry: dict[str, tuple] = {}  # kind -> main_write arguments, while that write keeps failing
        self._metrics_streak = False

    # ------------------------------------------------------------------ wiring
    @property
    def is_main(self) -> bool:
        return self.acc.is_main_process

    @property
    def count(self) -> int:
        return self.state.save_errors if self.state is not None else self._count

    def attach(self, state=None, logger=None) -> None:
        """Hand over the loop state (failures counted before are added to ``state.save_errors``) and the metrics
        log (its write errors come here; failure rows waiting for it are written)."""
        if state is not None and self.state is not state:
            state.save_errors += self._count
            self._count, self.state = 0, state
        if logger is not None and self.logger is not logger:
            self.logger = logger
            logger.on_write_error = self._metrics_failed
            logger.on_write_ok = self.metrics_written
            rows, self._rows = self._rows, []
            for row in rows:
                self._log_row(row)

    # ------------------------------------------------------------------ the main process's own writes
    def main_write(self, kind: str, what: str, path: str | Path, needed: int | None, write: Callable[[], object],
                   retry: bool = False) -> bool:
        """On the main process: ``write()``. A failure is held until the next :meth:`settle` (a collective every
        rank calls after the main process's writes). True when it was written (always True on other ranks).
        ``retry``: with ``continue``, a failed write is tried again at every later ``settle(retry=True)`` (once
        per epoch, with the model folders) until it works (for writes that no later save repeats: the resolved
        recipe)."""
        if not self.is_main:
            return True
        if retry:
            self._retry[kind] = (what, path, needed, write)
        try:
            write()
        except Exception as err:  # noqa: BLE001 - agreed in settle, then re-raised or reported
            failure = failure_of(err, what, path, needed)
            self._held.append((kind, failure if failure is not None else err))
            return False
        self._saved(kind)
        self._retry.pop(kind, None)
        return True

    def settle(self, retry: bool = False) -> None:
        """A collective: every rank learns whether the main process's writes since the last call failed, and acts
        on it by the policy (``stop``: :class:`~neurotrain.errors.SaveError` on every rank). ``retry``: writes
        waiting for a retry are tried first."""
        for kind, args in list(self._retry.items()) if retry else ():
            if kind in self.outstanding:
                self.main_write(kind, *args, retry=True)
        code = 0
        if self._held:
            code = NOT_IO if any(not isinstance(f, SaveFailure) for _, f in self._held) else self._held[0][1].errno
        codes = agree(self.acc, code)
        if not any(codes):
            return
        held, self._held = self._held, []
        bug = next((f for _, f in held if not isinstance(f, SaveFailure)), None)
        if codes[0] == NOT_IO or bug is not None:
            if bug is not None:
                raise bug
            raise RuntimeError("the main process failed while saving (see its traceback)")
        self._failed(held)

    @property
    def must_stop(self) -> bool:
        """True on the main process while it holds a failure that the policy says must stop the run (the loop
        passes it to the preemption check, which all ranks agree on)."""
        return self.policy == "stop" and bool(self._held)

    def stop_held(self) -> None:
        """Every rank, once the preemption check said the main process holds a failure: stop (``stop`` policy)."""
        held, self._held = self._held, []
        bug = next((f for _, f in held if not isinstance(f, SaveFailure)), None)
        if bug is not None:
            raise bug
        self._failed(held)

    # ------------------------------------------------------------------ collective saves
    def state_save(self, save: Callable[[], Path]) -> Path | None:
        """Every rank: ``save()`` (a :meth:`StateManager.save`, which agrees and cleans up itself). Returns the
        state folder, or None when it failed and the policy is ``continue``."""
        try:
            path = save()
        except SaveFailed as failed:
            self._failed([("state", failed.failure)])
            return None
        self._saved("state")
        return path

    # ------------------------------------------------------------------ the metrics log
    def _metrics_failed(self, err: BaseException, path: Path, needed: int) -> None:
        """``MetricsLogger`` could not append (main process): its rows stay held there and go out with the next
        row. ``stop``: the run stops at the next agreement; ``continue``: a warning for the first failure of a
        streak (it is counted once)."""
        failure = failure_of(err, "metrics log", path, needed) or SaveFailure("metrics log", Path(path), _errno.EIO,
                                                                          str(err), needed, free_bytes(path))
        self.outstanding["metrics"] = failure
        if self.policy == "stop":
            if not any(kind == "metrics" for kind, _ in self._held):
                self._held.append(("metrics", failure))
            return
        if not self._metrics_streak:
            self._metrics_streak = True
            self._failed([("metrics", failure)], log=False)

    def metrics_written(self) -> None:
        """``MetricsLogger`` wrote its held rows: the metrics log is saving again."""
        self._metrics_streak = False
        self._saved("metrics")

    # ------------------------------------------------------------------ the end of a run
    def finish(self) -> None:
        """Every rank, when the loop ends: held failures are settled, the resolved recipe and held metrics rows are
        tried once more, and a save that is still failing ends the run with SaveError (both policies)."""
        if self.is_main:
            if self.logger is not None and self.outstanding.get("metrics") is not None:
                self.logger.flush()
        self.settle(retry=True)
        left = [k for k in _MUST_SUCCEED if k in self.outstanding] if self.is_main else []
        codes = agree(self.acc, 1 if left else 0)
        if not any(codes):
            return
        failures = [self.outstanding[k] for k in left]
        names = ", ".join(f"{f.path} ({f.errname})" for f in failures)
        lead = failures[0] if failures else None
        raise self._error(lead, prefix=f"the run trained to its end but these saves were still failing: {names}")

    # ------------------------------------------------------------------ internals
    def _saved(self, kind: str) -> None:
        self.outstanding.pop(kind, None)
        if kind == "recipe":
            self.recipe_written = True

    def _failed(self, held: list, log: bool = True) -> None:
        """Act on agreed failures (every rank; the details are the main process's, other ranks may have none)."""
        failures = [f for _, f in held if isinstance(f, SaveFailure)]
        for kind, f in held:
            if isinstance(f, SaveFailure):
                self.outstanding[kind] = f
        if self.policy == "stop":
            raise self._error(failures[0] if failures else None)
        for f in failures:
            if self.state is not None:
                self.state.save_errors += 1
            else:
                self._count += 1
            if self.is_main:
                print(f"[neurotrain] warning: {f.path}: {f.what} {f.describe()}; training goes on "
                      f"(checkpoint.on_save_error: continue) and the next save tries again "
                      f"({self.count} failed save(s) so far)", file=sys.stderr, flush=True)
                if log:
                    self._log_row({"save_error": f.what, "path": str(f.path), "errno": f.errname,
                                   "save_errors": self.count})

    def _log_row(self, row: dict) -> None:
        if self.logger is None:
            self._rows.append(row)
        else:
            step = self.state.global_step if self.state is not None else 0
            self.logger.log(row, step=step)

    def _error(self, failure: SaveFailure | None, prefix: str = "") -> SaveError:
        if not self.is_main or failure is None:
            return SaveError(None, None, "a save failed on the main process (its message says where and why)",
                             quiet=not self.is_main)
        text = failure.describe() if not prefix else f"{prefix}; the first: {failure.describe()}"
        return SaveError(failure.path, failure.what, f"{text}; {self.kept(failure)}; {self.what_to_do(failure)}")

    def kept(self, failure: SaveFailure) -> str:
        """What was kept: the partial output is gone, what was saved before is intact."""
        latest = self.states.latest() if self.states is not None else None
        state = (f"the last complete state is {latest} (LATEST)" if latest is not None
                 else "no resumable state was complete yet")
        if failure.what == "model folder":
            if failure.path.exists():
                return f"the partial folder was removed and {failure.path.name} keeps its previous model; {state}"
            return f"the partial folder was removed; {state}"
        if failure.what == "metrics log":
            return f"the rows already in {failure.path.name} are intact; {state}"
        return f"the partial folder was removed; {state}"

    def what_to_do(self, failure: SaveFailure) -> str:
        if failure.errno in QUOTA_ERRNOS:
            fix = "free space within your quota (or move output_dir to a file system with room)"
        elif failure.errno in SPACE_ERRNOS:
            fix = "free space on that file system (or move output_dir to one with room)"
        else:
            fix = "make the file system writable again"
        policy = ("" if self.policy != "stop" else
                  "; or set checkpoint.on_save_error: continue to train on through failed saves")
        return f"{fix}, then resume with: {self.resume_command()}{policy}"

    def resume_command(self) -> str:
        """The command that continues this run from its last complete state."""
        out = Path(self.recipe.output_dir)
        resolved = out / "recipe.resolved.yaml"
        if self.recipe_written:
            cmd = f"neurotrain train {resolved.resolve()}"
        else:
            argv = sys.argv[1:] if len(sys.argv) > 1 and sys.argv[1] == "train" else ["train", self.recipe.source]
            cmd = "neurotrain " + " ".join(a for a in argv if not a.startswith("checkpoint.resume="))
        if self.acc.num_processes > 1:
            cmd = cmd.replace("neurotrain ", "accelerate launch [your launch options] -m neurotrain ", 1)
        latest = self.states.latest() if self.states is not None else None
        if latest is not None:
            cmd += f" checkpoint.resume={latest.resolve()}"
        else:
            cmd += " (no state was complete: it starts again from the beginning)"
        return cmd
