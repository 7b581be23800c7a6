"""Locating ``../shared`` (legacy fixtures, real recordings) for tests.

``NEUROTRAIN_SHARED`` overrides the folder (default: ``shared`` beside the repository) and
``NEUROTRAIN_DATA`` the data folder inside it. A missing folder fails the test under CI (``CI=true``)
and skips it elsewhere, so CI can never pass by skipping.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    return Path(os.environ.get("NEUROTRAIN_SHARED", ROOT.parent / "shared"))


def data_dir() -> Path:
    return Path(os.environ.get("NEUROTRAIN_DATA", shared_dir() / "data"))


def require(path: Path, what: str) -> Path:
    """Return ``path`` if it exists; otherwise fail under CI, skip elsewhere."""
    if not path.exists():
        msg = f"{what} not found at {path} (set NEUROTRAIN_SHARED / NEUROTRAIN_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path
