"""Locating ``../shared`` (legacy fixtures, real recordings) for tests.

``NEUROTRAIN_SHARED`` overrides the folder (default: ``shared`` beside the repository, or beside the
local checkout this one was cloned from) and
``NEUROTRAIN_DATA`` the data folder inside it. A missing folder fails the test under CI (``CI=true``)
and skips it elsewhere, so CI can never pass by skipping.
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """``NEUROTRAIN_SHARED``; else ``shared`` beside this checkout; else, for a clone of a local checkout
    (``git clone . /tmp/x``), ``shared`` beside the checkout it was cloned from."""
    if "NEUROTRAIN_SHARED" in os.environ:
        return Path(os.environ["NEUROTRAIN_SHARED"])
    here = ROOT.parent / "shared"
    if here.exists():
        return here
    try:
        url = subprocess.run(["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        url = ""
    origin = Path(url.removeprefix("file://")) if url and "://" not in url.removeprefix("file://") else None
    if origin is not None and origin.is_dir() and (origin.resolve().parent / "shared").exists():
        return origin.resolve().parent / "shared"
    return here


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
