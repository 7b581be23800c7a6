"""Everything VisionCore: what a lab's Lightning-era files need to keep working.

In the order data flows:

* :mod:`.dataset_config`, :mod:`.transforms`, :mod:`.datafilters`: legacy dataset YAMLs (parent + session files)
  and their ops, read as they are;
* :mod:`.data_source`: such a YAML as a data source of neurotrain session folders (``data.legacy_config``);
* :mod:`.reader`: the restricted reader of Lightning ``.ckpt`` files (nothing in the file runs);
* :mod:`.convert`: every checkpoint layout era mapped onto today's model (``neurotrain convert``);
* :mod:`.resume`: continuing a legacy run (its weights, AdamW moments, epoch and step);
* :mod:`.export`: the way back, a neurotrain model written as a VisionCore ``.ckpt`` (``neurotrain export-legacy``);
* :mod:`.export`: the way back, a neurotrain model written as a VisionCore ``.ckpt`` (``neurotrain export-legacy``);
* :mod:`.cli`: the legacy training command lines, translated into recipes.

The core reaches this package only through :mod:`neurotrain.sources` (data, weights, the starting state) and the
command line (``neurotrain train --model_config ...``).

The notebook objects ``MultiDatasetModel`` and ``MultiDatasetDM`` (``from neurotrain.legacy import ...``) live in
:mod:`neurotrain.notebook`, a layer above :mod:`neurotrain.sources` that they are built on; they are re-exported
here on first use (no module of this package imports them).
"""

from __future__ import annotations

import importlib

_NOTEBOOK = ("MultiDatasetModel", "MultiDatasetDM")


def __getattr__(name: str):
    if name in _NOTEBOOK:
        return getattr(importlib.import_module("neurotrain.notebook"), name)
    raise AttributeError(f"module 'neurotrain.legacy' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_NOTEBOOK))
