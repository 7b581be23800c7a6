"""The in-silico ground-truth table: a twin trained on the built-in synthetic V1 against the true neurons.

    python scripts/insilico_groundtruth.py runs/demo/checkpoints/last --data runs/data/synthetic --out insilico_gt

For every session of the model with a synthetic session folder under ``--data``, the grating and white-noise RF
experiments run on the twin and on the generator itself (neurotrain.insilico.validation); neurons whose held-out
correlation with the true rate (fresh frames, never trained on) is at least ``--threshold`` make the twin's row.
Writes ``groundtruth.md`` (the table) and ``groundtruth.json`` (summary and per-neuron rows) into ``--out`` and
prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neurotrain.insilico.gratings import GratingSettings
from neurotrain.insilico.rf import RFSettings
from neurotrain.insilico.validation import groundtruth_table
from neurotrain.io import write_json_atomic, write_text_atomic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="portable model folder (or ensemble folder / legacy .ckpt) of a synthetic-data twin")
    p.add_argument("--data", default="runs/data/synthetic", help="folder holding the synthetic session folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threshold", type=float, default=0.5, help="held-out correlation for the twin's row (0.5)")
    p.add_argument("--sessions", nargs="*", help="only these sessions")
    p.add_argument("--noise-samples", type=int, default=65536, help="white-noise stimuli for the RFs")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    res = groundtruth_table(a.model, a.data, threshold=a.threshold, sessions=a.sessions, device=a.device,
                            gratings=GratingSettings(), rf=RFSettings(n_samples=a.noise_samples))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "groundtruth.md", res["markdown"])
    write_json_atomic(out / "groundtruth.json", {k: v for k, v in res.items() if k != "markdown"})
    print(res["markdown"])
    print(f"sessions: {', '.join(res['sessions'])}; wrote {out / 'groundtruth.md'} and {out / 'groundtruth.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
