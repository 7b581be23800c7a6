"""Injected write faults: the file system refusing writes (``OSError(ENOSPC)``) at the lowest-level writes a run
makes, after part of the file was written (as a full disk does):

* ``neurotrain.io.atomic_write`` (every neurotrain file: ``LATEST``, state markers, model metadata and cards, the
  resolved recipe) and ``open`` inside ``neurotrain.io`` (``append_text``: ``metrics.jsonl``);
* ``safetensors.torch.save_file`` (``neurotrain.io.write_safetensors``: a model folder's weights);
* ``torch.save`` and Accelerate's ``safe_save_file`` (``accelerator.save_state``: a resumable state's optimizer,
  RNG states, custom objects and weights).

``install(where, monkeypatch, after=0, times=None)`` refuses the writes whose path contains ``where`` (a substring,
or a predicate on the path string), once ``after`` of them went through, at most ``times`` of them (None: all);
without ``monkeypatch`` (a script) the patches stay for the process's life. ``FaultLog.count`` counts the
refusals and ``FaultLog.paths`` lists them.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
from typing import Callable


def enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


class FaultLog:
    count = 0
    paths: list = []


class _Refusing:
    """A writable file whose first write stores half of its data and then raises ENOSPC."""

    def __init__(self, f, path):
        self._f, self._path = f, path

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        FaultLog.count += 1
        FaultLog.paths.append(str(self._path))
        raise enospc(self._path)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False


def install(where: str | Callable[[str], bool], monkeypatch=None, after: int = 0, times: int | None = None) -> None:
    import safetensors.torch
    import torch
    from accelerate.utils import other as acc_other

    import neurotrain.io as nio

    hit = (lambda p: where in str(p)) if isinstance(where, str) else where
    FaultLog.count, FaultLog.paths = 0, []
    seen = [0]

    def match(path: str) -> bool:
        if not hit(path):
            return False
        seen[0] += 1
        return seen[0] > after and (times is None or FaultLog.count < times)

    def patch(obj, name, value):
        if monkeypatch is None:
            setattr(obj, name, value)
        else:
            monkeypatch.setattr(obj, name, value, raising=False)

    orig_atomic = nio.atomic_write

    @contextlib.contextmanager
    def atomic_write(path, mode="w", encoding="utf-8"):
        with orig_atomic(path, mode, encoding) as f:
            yield _Refusing(f, path) if match(str(path)) else f

    def open_(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        return _Refusing(f, path) if any(c in mode for c in "wa") and match(str(path)) else f

    def partial_then_refuse(orig):
        def save(obj, f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)) and match(str(f)):
                with builtins.open(f, "wb") as out:
                    out.write(b"\0" * 100)
                FaultLog.count += 1
                FaultLog.paths.append(str(f))
                raise enospc(f)
            return orig(obj, f, *args, **kwargs)
        return save

    patch(nio, "atomic_write", atomic_write)
    patch(nio, "open", open_)
    patch(safetensors.torch, "save_file", partial_then_refuse(safetensors.torch.save_file))
    patch(torch, "save", partial_then_refuse(torch.save))
    patch(acc_other, "safe_save_file", partial_then_refuse(acc_other.safe_save_file))
