"""Checkpoints: portable model folders, resumable training states and legacy VisionCore ``.ckpt`` files.

* :mod:`neurotrain.checkpoint.portable`: ``save_portable`` / ``load_portable`` / ``from_pretrained``
  (a portable folder or a legacy ``.ckpt``), ``CheckpointError``;
* :mod:`neurotrain.checkpoint.legacy`: ``load_legacy_checkpoint`` / ``convert_legacy_checkpoint``;
* :mod:`neurotrain.checkpoint.legacy_reader`: the restricted reader of legacy ``.ckpt`` files;
* :mod:`neurotrain.checkpoint.resume`: resumable training states.

The names below are imported lazily (``from neurotrain.checkpoint import from_pretrained``).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "CheckpointError": "portable", "save_portable": "portable", "load_portable": "portable",
    "from_pretrained": "portable", "load_legacy_checkpoint": "legacy", "convert_legacy_checkpoint": "legacy",
    "LegacyCheckpoint": "legacy", "HostileCheckpointError": "legacy_reader", "read_checkpoint": "legacy_reader",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
