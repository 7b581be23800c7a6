"""The ground floor: atomic writes of files and folders, and YAML / JSON / JSONL reading and writing.

Atomic means a crash (or a full disk) at any moment leaves either the old content or the new one, never a
mix, and nothing half-written under the final name:

* :func:`atomic_write` / :func:`write_text_atomic` / :func:`write_json_atomic`: the file is written to a
  hidden temporary sibling, flushed and fsynced, then renamed over the target (``os.replace``) and the folder
  entry is fsynced.
* :func:`atomic_dir`: a folder is filled under a hidden temporary sibling; on success every file in it is
  fsynced and it is renamed into place. An existing folder of that name is first renamed aside, restored if
  the final rename fails, and removed only once the new folder is in place. On any error the temporary
  folder is removed and the old folder stays as it was.

Every neurotrain writer that must not lose data goes through these (portable model folders, resumable states,
session folders, caches, the resolved recipe). The lowest-level writes are :func:`atomic_write` (every file),
:func:`append_text` (logs; a failed append is cut back, so a full disk never leaves a torn line for the next
append to run into) and :func:`write_safetensors` (weights).

When the file system refuses a write (a full disk, a quota), :func:`write_errno` says which errno an exception
stands for (Python's ``OSError``, but also the ``RuntimeError`` of ``torch.save`` and the error of
``safetensors``, which carry no errno), and :func:`free_bytes` / :func:`tree_bytes` / :func:`format_bytes`
measure what a message should tell the user.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

import yaml

from neurotrain.errors import ConfigError, NeurotrainError

__all__ = ["atomic_write", "write_text_atomic", "write_json_atomic", "atomic_dir", "fsync_tree", "remove_stale_temps",
           "read_yaml", "write_yaml", "read_json", "read_jsonl", "append_jsonl", "append_text", "write_safetensors",
           "sha256_file", "write_errno", "free_bytes", "tree_bytes", "format_bytes", "NO_SPACE_ERRNOS"]


# ------------------------------------------------------------------------------------------------ files
def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """``with atomic_write(path) as f: f.write(...)``: the file appears complete or not at all.
    ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=indent)


# ------------------------------------------------------------------------------------------------ folders
def fsync_tree(folder: str | Path) -> None:
    """fsync every file under ``folder`` and every folder entry."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(Path(root))


@contextlib.contextmanager
def atomic_dir(target: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """``with atomic_dir(folder) as tmp: <write into tmp>``: ``folder`` is replaced by ``tmp`` only if the block
    ends without an error; otherwise ``tmp`` is removed and ``folder`` is left as it was.

    ``overwrite=False``: an existing ``folder`` (also one that appeared while writing) is a ``FileExistsError``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        fsync_tree(tmp)
        commit_dir(tmp, target, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def commit_dir(tmp: Path, target: Path, *, overwrite: bool = True) -> Path:
    """Rename the complete folder ``tmp`` to ``target``; a previous ``target`` is set aside first, put back if
    the rename fails, and removed once the new one is in place."""
    old = None
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{target} already exists")
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
            os.replace(target, old)
        else:
            target.unlink()
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old, target)
            old = None
        raise
    finally:
        if old is not None and target.exists():
            shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)
    return target


def remove_stale_temps(folder: str | Path) -> None:
    """Remove leftovers of interrupted writes in ``folder`` (hidden ``*.tmp`` / ``*.old-*`` siblings)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith(".") and (p.name.endswith(".tmp") or ".old-" in p.name):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


# ------------------------------------------------------------------------------------------------ YAML / JSON
def read_yaml(path: str | Path, *, what: str = "file", mapping: bool = True) -> Any:
    """Parse a YAML file; a missing file, a syntax error or (``mapping=True``) a non-mapping top level is a
    :class:`~neurotrain.errors.ConfigError` naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, "<file>", f"{what} not found") from None
    except OSError as err:
        raise ConfigError(path, "<file>", f"cannot read the {what}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(path, "<yaml>", f"not valid YAML: {err}") from None
    if mapping and not isinstance(data, dict):
        raise ConfigError(path, "<root>", f"a {what} must be a mapping, got {type(data).__name__}")
    return data


def write_yaml(path: str | Path, data: Any, header: str = "") -> None:
    """Write ``data`` as block-style YAML (key order kept) after an optional comment ``header``, atomically."""
    write_text_atomic(path, header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSON-lines file; a torn last line (a run killed mid-write) is skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one JSON line (the file and its folder are created as needed)."""
    append_text(path, json.dumps(row) + "\n")


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to ``path`` (created with its folder as needed), flushed. If the write fails part way (a
    full disk), the file is cut back to its old length before the error is raised, so that what was there stays
    intact and the next append starts on a line of its own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        start = f.tell()
        try:
            f.write(text)
            f.flush()
        except BaseException:
            with contextlib.suppress(OSError):
                f.truncate(start)
            raise


# ------------------------------------------------------------------------------------------------ weights
def write_safetensors(path: str | Path, tensors: dict, metadata: dict | None = None) -> None:
    """``safetensors.torch.save_file`` (the one place neurotrain writes a ``.safetensors`` file itself)."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in 4 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ write faults
#: the errnos of a file system without room for a write: a full disk, a quota
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", 122)})
_ERRNO_IN_TEXT = re.compile(r"(?:\[Errno (\d+)\]|os error (\d+)|errno[ =:]+(\d+))", re.IGNORECASE)
_WRITE_WORDS = ("no space left", "quota", "file write failed", "i/o error", "io error", "ioerror", "storagefull",
                "pytorchstreamwriter", "inline_container", "unexpected pos", "read-only file system")


def write_errno(err: BaseException, path: str | Path | None = None, needed: int | None = None) -> int | None:
    """The errno a write error stands for, or None when ``err`` is not an input/output error (a bug).

    ``OSError``: its errno (``EIO`` when it has none). The ``RuntimeError`` of ``torch.save`` and the errors of
    ``safetensors`` carry the reason only in their text: an ``[Errno N]`` / ``os error N`` there is used; a text
    that names a failed write without a number is ``ENOSPC`` when the file system of ``path`` has less than
    ``needed`` bytes (or nothing) free, else ``EIO``."""
    if isinstance(err, OSError):
        return err.errno or errno.EIO
    if isinstance(err, NeurotrainError) or (not isinstance(err, (RuntimeError, ValueError))
                                             and type(err).__name__ != "SafetensorError"):
        return None
    text = str(err)
    m = _ERRNO_IN_TEXT.search(text)
    if m:
        return int(next(g for g in m.groups() if g))
    low = text.lower()
    if not any(w in low for w in _WRITE_WORDS):
        return None
    if "quota" in low:
        return errno.EDQUOT
    if "no space" in low or "storagefull" in low:
        return errno.ENOSPC
    free = free_bytes(path) if path is not None else None
    if free is not None and (free == 0 or (needed is not None and free < needed)):
        return errno.ENOSPC
    return errno.EIO


def free_bytes(path: str | Path) -> int | None:
    """Bytes free for an unprivileged user on the file system that holds ``path`` (or its nearest existing
    parent); None when it cannot be told. A quota (EDQUOT) is not seen here: it is per user, not per disk."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def tree_bytes(path: str | Path) -> int:
    """Bytes held by the files under ``path`` (a file: its size; missing: 0)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(p):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def format_bytes(n: int | float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None -> ``"unknown"``."""
    if n is None:
        return "unknown"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
