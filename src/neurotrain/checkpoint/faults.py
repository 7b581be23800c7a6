"""Save faults: what a failed save was, and how every rank of a run learns of it.

A save fails when the file system refuses a write: a full disk (``ENOSPC``), a quota (``EDQUOT``), a read-only
or broken mount (``EROFS``, ``EIO``). The writer removes what it wrote part way and describes the fault as a
:class:`SaveFailure` (what, where, the errno, the free space left, the size the save needed). On N ranks a
fault seen by any rank reaches all of them through one all-reduce (:func:`agree`), so that every rank takes
the same branch (stop, or go on) and none waits at a barrier that the others never reach.

``agree`` codes: 0 = fine, an errno = an input/output error, :data:`NOT_IO` = some other exception (a bug:
re-raised, never turned into a save fault).
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from neurotrain.io import NO_SPACE_ERRNOS, format_bytes, free_bytes, write_errno

NOT_IO = 1_000_000
QUOTA_ERRNOS = {getattr(_errno, "EDQUOT", 122)}
SPACE_ERRNOS = set(NO_SPACE_ERRNOS)


@dataclass
class SaveFailure:
    """One failed save. ``what``: ``resumable state``, ``model folder``, ``resolved recipe``, ``metrics log``;
    ``path``: the folder or file it was writing; ``errno``; ``reason``: the error's own text; ``needed``: bytes
    the save needed (an estimate from what was being written); ``free``: bytes free on that file system after the
    partial output was removed; ``rank``: the process that saw it."""

    what: str
    path: Path
    errno: int
    reason: str
    needed: int | None = None
    free: int | None = None
    rank: int = 0

    @property
    def errname(self) -> str:
        return _errno.errorcode.get(self.errno, f"errno {self.errno}")

    @property
    def out_of_space(self) -> bool:
        return self.errno in SPACE_ERRNOS

    def describe(self) -> str:
        """``could not be written: <reason> (ENOSPC); 1.2 MiB free on its file system, the save needs about
        3.4 MiB`` (plus a note on quotas for EDQUOT)."""
        reason = " ".join(self.reason.split())
        if os.strerror(self.errno) not in reason:  # torch.save / safetensors: the library's own words after it
            reason = os.strerror(self.errno) + (f" ({reason})" if reason else "")
        text = f"could not be written: {reason} ({self.errname}"
        text += ")" if self.rank == 0 else f", on process {self.rank})"
        text += (f"; {format_bytes(self.free)} free on its file system, the save needs about "
                 f"{format_bytes(self.needed)}")
        if self.errno in QUOTA_ERRNOS:
            text += (" (a disk quota: the file system's free space is not what your quota allows; see `quota -s` "
                     "or `lfs quota -u $USER <mount>`)")
        return text


class SaveFailed(Exception):
    """A save failed and its partial output was removed; raised on every rank at the same point. ``failure``:
    the details (the failing rank's errno; free space and size as the main process measured them)."""

    def __init__(self, failure: SaveFailure):
        super().__init__(f"{failure.path}: {failure.what}: {failure.describe()}")
        self.failure = failure


def failure_of(err: BaseException, what: str, path: str | Path, needed: int | None = None,
               rank: int = 0) -> SaveFailure | None:
    """The :class:`SaveFailure` that ``err`` (raised while writing ``path``) stands for; None when ``err`` is not
    an input/output error. Call it after the partial output is removed: ``free`` is measured now."""
    code = write_errno(err, path, needed)
    if code is None:
        return None
    return SaveFailure(what, Path(path), code, str(err), needed, free_bytes(path), rank)


def error_code(err: BaseException | None, path: str | Path | None = None, needed: int | None = None) -> int:
    """:func:`agree`'s code for an outcome: 0 (no error), the errno of an input/output error, else NOT_IO."""
    if err is None:
        return 0
    return write_errno(err, path, needed) or NOT_IO


def agree(accelerator, code: int) -> list[int]:
    """Every rank's ``code`` (>= 0; 0 = fine), the same list on every rank: a collective, so call it on every
    rank at the same point. One process: ``[code]`` (no communication)."""
    n = accelerator.num_processes
    if n == 1:
        return [int(code)]
    codes = torch.zeros(n, dtype=torch.int64, device=accelerator.device)
    codes[accelerator.process_index] = int(code)
    return [int(c) for c in accelerator.reduce(codes, "max").tolist()]


#: bytes a file format spends on each tensor besides its data (names, headers, alignment; torch.save's zip
#: records take ~100-250, safetensors' JSON header ~100): part of :func:`tensor_bytes`'s estimate
PER_TENSOR = 256


def tensor_bytes(obj, per_tensor: int = PER_TENSOR) -> int:
    """Bytes the tensors in ``obj`` (a tensor, or dicts / lists / tuples of them: a state dict, an optimizer's
    ``state_dict()``) take on disk: their data plus ``per_tensor`` each; other values count 0."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size() + per_tensor
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, per_tensor) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, per_tensor) for v in obj)
    return 0
