"""Assertions on training outcomes (a metric above a level, one model beating another), with their margins.

A training outcome depends on floating point: thread count, CPU and BLAS change the numbers a little, and a
bound that sits near the measured value fails on another machine. Every such assertion goes through
:func:`outcome`, which asserts with the stated bound and, when ``NEUROTRAIN_OUTCOMES`` names a file, appends
the value, the bound and the margin to it (one JSON line). ``scripts/outcome_margins.py`` runs the tests marked
``outcome`` with 1 and 2 threads and prints every margin, so a bound is chosen from measurements.
"""

from __future__ import annotations

import json
import os

import torch


def outcome(name: str, value: float, *, above: float | None = None, below: float | None = None) -> None:
    """Assert ``above < value`` and/or ``value < below``; record the margin (distance to the nearer bound)."""
    value = float(value)
    margins = []
    if above is not None:
        margins.append(value - float(above))
    if below is not None:
        margins.append(float(below) - value)
    assert margins, "give a bound"
    margin = min(margins)
    path = os.environ.get("NEUROTRAIN_OUTCOMES")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": test, "name": name, "value": value, "above": above, "below": below,
                                "margin": margin, "threads": torch.get_num_threads()}) + "\n")
    assert margin > 0, f"{name}: {value:.6g} not within (above {above}, below {below})"
