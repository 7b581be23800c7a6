"""Worked example: a core trained on 8 of the 9 V4 sessions serves the 9th, which it never saw.

    python examples/finetune_v4.py                       # data from ../shared/data/cowley_v4
    python examples/finetune_v4.py --epochs 30 --ft-epochs 15 --out runs/finetune_v4

Three runs of the recipe `recipes/v4_cowley.yaml`, all with the same splits (a session's split depends only
on its name and the split seed; every image in any session's validation split leaves all training splits):

1. **joint**: one model trained on all 9 sessions from the start (the reference);
2. **pretrain**: the same model trained on 8 sessions; the 9th only shapes the split (``holdout_sessions``),
   so the core never trains on the images the 9th session is validated on;
3. **fine-tune**: the pretrained twin gets a new adapter and readout for the 9th session, its core is frozen,
   and only the new parts are fitted (:class:`neurotrain.finetune.Twin`).

It prints the 9th session's held-out correlation for (1) and (3) and their ratio, and writes them to
``<out>/finetune_v4.json``. ``run(...)`` is what the tests call with a small budget.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cowley_v4"
NEW_SESSION = "201025"  # the session the core never trains on


def _recipe(out: Path, name: str, sessions: list[str], epochs: int, holdout: list[str] | None = None) -> Path:
    base = yaml.safe_load((ROOT / "recipes" / "v4_cowley.yaml").read_text())
    base["output_dir"] = str(out / name)
    base["model"]["config"] = str(ROOT / "recipes" / "models" / "v4_static_resnet.yaml")
    base["data"].pop("importer")
    base["data"]["sessions"] = sessions
    if holdout:
        base["data"]["holdout_sessions"] = holdout
    base["train"]["max_epochs"] = epochs
    base["checkpoint"].update({"save_top_k": 1, "resume": "never"})
    base["logging"].update({"progress_bar": False, "wandb": False})
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def import_stores(data_dir: str | Path, cache: Path) -> list[str]:
    """Import every session of the folder (56 x 56 luminance) into ``cache`` once; their folders, sorted by id."""
    from neurotrain.data.importers import IMPORTERS

    return [str(p) for p in IMPORTERS["cowley_v4"](Path(data_dir), cache, image_size=56)]


def pretrain_and_finetune(out: Path, stores: list[str], new: str, epochs: int, ft_epochs: int):
    """Steps 2 and 3: pretrain on every store but ``new`` (which only shapes the split), then fit a new
    adapter + readout for ``new`` on the frozen core. Returns ``(pretrain metrics, fine-tune metrics,
    twin folder)``."""
    from neurotrain.config import load_recipe
    from neurotrain.finetune import Twin
    from neurotrain.run.train import train

    others = [s for s in stores if s != new]
    pre = train(load_recipe(_recipe(out, "pretrain", others, epochs, holdout=[new])))
    twin = Twin.from_pretrained(Path(pre["output_dir"]) / "checkpoints" / "last")
    twin.add_sessions([new])
    twin.freeze("core")
    ft = twin.fit([new], output_dir=out / "finetune", holdout_sessions=others,
                  data={"batch_size": 64, "val_fraction": 0.2, "split_seed": 0, "lags": 1, "use_behavior": False},
                  train={"max_epochs": ft_epochs, "lr": 1e-2, "weight_decay": 1e-4, "lr_scheduler": "cosine_warmup",
                         "warmup_epochs": 1})
    twin.save_pretrained(out / "finetune" / "twin")
    return pre, ft, out / "finetune" / "twin"


def run(data_dir: str | Path = DEFAULT_DATA, out: str | Path = "runs/finetune_v4", epochs: int = 30,
        ft_epochs: int = 15, new_session: str = NEW_SESSION, cache_dir: str | Path | None = None) -> dict:
    from neurotrain.config import load_recipe
    from neurotrain.run.train import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stores = import_stores(data_dir, Path(cache_dir) if cache_dir else out / "data")
    new = stores[[Path(s).name for s in stores].index(f"cowley_v4_{new_session}")]
    new_name = Path(new).name

    joint = train(load_recipe(_recipe(out, "joint", stores, epochs)))
    pre, ft, _ = pretrain_and_finetune(out, stores, new, epochs, ft_epochs)

    result = {
        "new_session": new_name,
        "joint_corr": joint[f"val_corr/{new_name}"],
        "finetune_corr": ft[f"val_corr/{new_name}"],
        "joint_bps": joint.get(f"val_bps/{new_name}"),
        "finetune_bps": ft.get(f"val_bps/{new_name}"),
        "pretrain_val_corr_overall": pre["val_corr_overall"],
        "epochs": epochs,
        "ft_epochs": ft_epochs,
    }
    result["ratio"] = result["finetune_corr"] / result["joint_corr"]
    (out / "finetune_v4.json").write_text(json.dumps(result, indent=2))
    print(f"\nsession {new_name}: held-out correlation joint {result['joint_corr']:.3f}, frozen-core fine-tune "
          f"{result['finetune_corr']:.3f} ({100 * result['ratio']:.0f}% of joint)")
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the cowley_v4 data folder")
    p.add_argument("--out", default="runs/finetune_v4")
    p.add_argument("--epochs", type=int, default=30, help="epochs of the joint and the 8-session runs")
    p.add_argument("--ft-epochs", type=int, default=15, help="epochs of the fine-tune")
    p.add_argument("--new-session", default=NEW_SESSION)
    a = p.parse_args(argv)
    run(a.data, a.out, a.epochs, a.ft_epochs, a.new_session)


if __name__ == "__main__":
    main()
