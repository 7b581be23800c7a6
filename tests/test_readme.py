"""The README's fault table names the tests that show each fault: every ``tests/<file>.py::<name>`` it cites exists
(a renamed or removed test would leave the table pointing at nothing)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_readme_cites_exists():
    refs = sorted(set(re.findall(r"(tests/[\w/]+\.py)::(\w+)", (ROOT / "README.md").read_text())))
    assert len(refs) >= 30  # the fault table
    missing = [f"{f}::{n}" for f, n in refs
               if not (ROOT / f).exists() or not re.search(rf"^def {n}\(", (ROOT / f).read_text(), re.M)]
    assert not missing
