"""``neurotrain train RECIPE`` in this process with writes refused (tests/helpers/faults.py).

    python save_fault_train.py RECIPE WHERE [RANK]

WHERE: refuse every write whose path contains it ("-": none); RANK: only in the process of that rank (default:
every process); FAULT_AFTER / FAULT_TIMES in the environment: ``after`` / ``times`` of ``faults.install``.
Exits with neurotrain's exit code; prints ``rank R refused N exit C``."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from neurotrain.cli import main  # noqa: E402
from tests.helpers import faults  # noqa: E402

recipe, where = sys.argv[1], sys.argv[2]
rank = int(os.environ.get("RANK", "0"))
if where != "-" and (len(sys.argv) < 4 or int(sys.argv[3]) == rank):
    times = os.environ.get("FAULT_TIMES")
    faults.install(where, after=int(os.environ.get("FAULT_AFTER", "0")), times=None if times is None else int(times))
code = main(["train", recipe])
sys.stdout.write(f"rank {rank} refused {faults.FaultLog.count} exit {code}\n")  # one write: with PYTHONUNBUFFERED
sys.stdout.flush()  # print() writes text and newline apart, and two ranks' lines could interleave
sys.exit(code)
