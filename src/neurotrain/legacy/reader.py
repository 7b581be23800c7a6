"""Read a legacy Lightning ``.ckpt`` without Lightning, VisionCore or ``torch.load``.

A ``.ckpt`` is a ``torch.save`` zip archive: ``<root>/data.pkl`` (the pickled dict) plus one file per
tensor storage under ``<root>/data/<key>``. A pickle can name any importable callable and call it while
loading, so :func:`read_checkpoint` unpickles with an explicit **allow-list** of the globals such files
name (``collections.OrderedDict``, the tensor-rebuild functions, the typed storage classes, and a few
plain value types that hyper-parameters may hold). Any other global stops the read with
:class:`HostileCheckpointError` *before* it is called: nothing the file names runs. Tensors are rebuilt
here (not by torch's own rebuild functions) from the raw storage bytes, with their shapes, strides and
offsets checked against the storage size.

Returns the checkpoint dict as Lightning saved it (``state_dict``, ``hyper_parameters``,
``optimizer_states``, ``lr_schedulers``, ``epoch``, ``global_step``, ...), every tensor on the CPU.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from neurotrain.errors import CheckpointError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
MAX_PICKLE_BYTES = 256 * 2 ** 20  # the pickle holds only metadata; tensors live in separate files


class HostileCheckpointError(CheckpointError):
    """The checkpoint's pickle names a global outside the allow-list; nothing from it was run."""


class _Malformed(Exception):
    """Raised inside the unpickler; re-raised by :func:`read_checkpoint` with the file named."""

    def __init__(self, key: str, message: str, hostile: bool = False):
        super().__init__(message)
        self.key, self.hostile = key, hostile


class _StorageType:
    """Stands in for ``torch.<X>Storage`` in persistent ids: only carries the dtype."""

    def __init__(self, name: str):
        self.name, self.dtype = name, _STORAGE_DTYPES[name]


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, torch.Tensor):
        raise _Malformed("data.pkl", "a tensor is rebuilt from something that is not a storage", hostile=True)
    if backward_hooks:
        raise _Malformed("data.pkl", "a tensor carries backward hooks", hostile=True)
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or storage_offset < 0:
        raise _Malformed("data.pkl", f"malformed tensor (size {size}, stride {stride}, offset {storage_offset})")
    if math.prod(size) > 0:
        last = int(storage_offset) + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= storage.numel():
            raise _Malformed("data.pkl", f"a tensor of size {size} reaches past its storage of {storage.numel()} elements")
    return storage.as_strided(size, stride, int(storage_offset))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    if backward_hooks:
        raise _Malformed("data.pkl", "a parameter carries backward hooks", hostile=True)
    return data


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise _Malformed("data.pkl", "a numpy scalar of an object dtype", hostile=True)
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


def _numpy_dtype(name, align=False, copy=False):
    dt = np.dtype(name)
    if dt.hasobject:
        raise _Malformed("data.pkl", f"numpy dtype {name!r} holds Python objects", hostile=True)
    return dt


class _AttributeDict(dict):
    """Stands in for Lightning's ``AttributeDict`` (hyper-parameters of older Lightning versions)."""


def _as_str(*parts):
    return str(Path(*[str(p) for p in parts]))


# (module, name) -> what the unpickler gets instead. Nothing else can be named.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("pathlib", "PosixPath"): _as_str,
    ("pathlib", "WindowsPath"): _as_str,
    ("pathlib", "Path"): _as_str,
    ("lightning.fabric.utilities.data", "AttributeDict"): _AttributeDict,
    ("lightning_fabric.utilities.data", "AttributeDict"): _AttributeDict,
    ("pytorch_lightning.utilities.parsing", "AttributeDict"): _AttributeDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, root: str, path: Path):
        super().__init__(io.BytesIO(data))
        self._zf, self._root, self._path = zf, root, path
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module, name):
        if module == "__builtin__":  # protocol-2 pickles spell builtins the Python 2 way
            module = "builtins"
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Malformed(
                "data.pkl", f"refused: its pickle names {module}.{name}, which is not on the allow-list of "
                "what a legacy checkpoint contains (tensors, OrderedDict, plain values); nothing from the file "
                "was run. If you trust the file, re-save it as plain tensors in a safe environment.",
                hostile=True) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise _Malformed("data.pkl", f"refused: unexpected persistent id {str(pid)[:80]}", hostile=True)
        _, stype, key, _location, numel = pid
        key = str(key)
        if key not in self._storages:
            member = f"{self._root}/data/{key}"
            if not key.isalnum() or member not in self._zf.namelist():
                raise _Malformed(f"data/{key[:40]}", "storage missing from the archive")
            raw = bytearray(self._zf.read(member))
            itemsize = torch.empty((), dtype=stype.dtype).element_size()
            if len(raw) < int(numel) * itemsize:
                raise _Malformed(f"data/{key}", "storage truncated")
            self._storages[key] = torch.frombuffer(raw, dtype=stype.dtype, count=len(raw) // itemsize) if raw \
                else torch.empty(0, dtype=stype.dtype)
        return self._storages[key]


def read_checkpoint(path: str | Path) -> dict:
    """The legacy checkpoint at ``path`` as a dict of plain Python values and CPU tensors.

    Raises:
        HostileCheckpointError: the pickle names a global outside :data:`ALLOWED_GLOBALS` (nothing ran).
        CheckpointError: the file is missing, not a torch zip archive, truncated or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "<file>", "checkpoint file not found")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(path, "<file>", "not a torch zip checkpoint (files saved with torch < 1.6 or "
                              "_use_new_zipfile_serialization=False are not supported; re-save with torch.save)")
    with zipfile.ZipFile(path) as zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise CheckpointError(path, "data.pkl", f"expected one <root>/data.pkl in the archive, found {len(pkls)}")
        root = pkls[0].split("/")[0]
        info = zf.getinfo(pkls[0])
        if info.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(path, "data.pkl", f"{info.file_size} bytes, more than a checkpoint's metadata")
        order = (zf.read(f"{root}/byteorder").decode().strip() if f"{root}/byteorder" in zf.namelist() else "little")
        if order != "little":
            raise CheckpointError(path, "byteorder", "big-endian checkpoints are not supported")
        try:
            obj = _RestrictedUnpickler(zf.read(pkls[0]), zf, root, path).load()
        except _Malformed as err:
            cls = HostileCheckpointError if err.hostile else CheckpointError
            raise cls(path, err.key, str(err)) from None
        except Exception as err:  # noqa: BLE001 - a malformed pickle of any kind
            raise CheckpointError(path, "data.pkl", f"cannot read the pickle ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(path, "data.pkl", f"the checkpoint is a {type(obj).__name__}, not a dict")
    return obj
