"""Walk-through: a VisionCore analysis notebook on neurotrain, and the neurotrain way beside it.

The cells (``# %%``; open the file as a notebook in VS Code or Jupytext, or run it as a script) do what a lab's
notebook did with VisionCore: load a twin, set up the data, inspect a session, predict, plot one neuron::

    model = MultiDatasetModel.load_from_checkpoint(CKPT, cfg_dir=CFG)           # a legacy .ckpt or a portable folder
    dm = MultiDatasetDM(cfg_dir=CFG, max_ds=len(model.names), batch=64, workers=0, store_dir=STORES); dm.setup()
    val_data = dm.val_dsets[name]                                               # legacy items
    rates = model(batch["stim"], name, batch["behavior"])

Run it on a checkpoint with the recordings of its sessions as neurotrain session folders (one per legacy session
name in ``--store-dir``; see docs/migration.md "Dataset YAMLs")::

    python examples/notebook.py --checkpoint runs/x/last.ckpt --cfg-dir configs/multi_basic_120_long.yaml \\
        --store-dir stores --out runs/notebook

Without the recordings, ``--synthetic-stores`` first writes synthetic sessions named after the YAML's sessions
(with their cids, 51 x 51 frames, eye traces) into ``--store-dir``; the predictions then only show the mechanics::

    python examples/notebook.py --checkpoint ../shared/fixtures/legacy/resnet_none_convgru/model.ckpt \\
        --cfg-dir ../shared/fixtures/legacy/resnet_none_convgru/dataset_configs/multi_synth_120_backimage.yaml \\
        --store-dir /tmp/nb_stores --synthetic-stores --out /tmp/notebook

With nothing at hand, ``--demo`` writes synthetic sessions, a legacy dataset YAML for them and trains a small twin
on them first (about a minute on 2 CPU cores), then walks through it::

    python examples/notebook.py --demo --out runs/notebook_demo

Outputs in ``--out``: ``neuron.png`` (one neuron: observed counts and predicted rate over validation samples, and
every neuron's correlation), ``predictions.npz`` (``rhat``, ``robs``, ``dfs``, ``times`` of the session's validation
samples) and ``notebook.json`` (what each cell found).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ data for trying it out
def write_synthetic_stores(cfg_dir: Path, store_dir: Path, frame_size: int = 51, n_trials: int = 30,
                           trial_frames: int = 120) -> list[str]:
    """A synthetic neurotrain session for every session of a legacy parent dataset YAML that has none yet in
    ``store_dir``: named after it, its units numbered 0..max(cids), stored at the YAML's target rate, with the
    covariates legacy transforms and datafilters read (``eyepos``, ``dpi_valid``, ``missing_pct``, ``stim_type``)."""
    from neurotrain.data.session import write_session
    from neurotrain.data.synthetic import simulate_session
    from neurotrain.legacy.dataset_config import load_legacy_dataset_configs

    written = []
    for i, cfg in enumerate(load_legacy_dataset_configs(cfg_dir)):
        name = cfg["session"]
        if (store_dir / name).exists():
            continue
        n = max(int(c) for c in cfg["cids"]) + 1
        sim = simulate_session(seed=7, session_index=i, n_neurons=n, frame_size=frame_size, n_trials=n_trials,
                               trial_frames=trial_frames)
        T = len(sim["trial_ids"])
        types = cfg.get("types") or ["backimage"]
        write_session(store_dir / name, name=name, subject=name.split("_")[0],
                      sampling_rate=float((cfg.get("sampling") or {}).get("target_rate", 120)),
                      frames=sim["frames"], robs=sim["robs"], trial_ids=sim["trial_ids"], dfs=sim["dfs"],
                      true_rates=sim["true_rates"], neuron_ids=np.arange(n),
                      covariates={"eyepos": sim["behavior"], "dpi_valid": np.ones(T, np.float32),
                                  "missing_pct": np.zeros((T, n), np.float32), "stim_type": np.zeros(T, np.int8)},
                      stim_type_names=[types[0]])
        written.append(name)
    return written


DEMO_PARENT = """\
# a legacy VisionCore parent dataset YAML (the shape of multi_basic_120_backimage_all.yaml, 14 lags)
types: [backimage]
session_dir: ./sessions
sessions: [SynthA_2024-01-01, SynthA_2024-01-02, SynthB_2024-02-01]
sampling: {source_rate: 120, target_rate: 120}
keys_lags: {robs: 0, stim: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], behavior: 0, dfs: 0}
transforms:
  stim: {source: stim, ops: [{pixelnorm: {}}, {unsqueeze: 1}], expose_as: stim}
  eye_vel:
    source: eyepos
    ops:
      - diff: {axis: 0}
      - maxnorm: {}
      - symlog: {}
      - temporal_basis: {num_delta_funcs: 0, num_cosine_funcs: 10, history_bins: 50, causal: false,
                         log_spacing: false, peak_range_ms: [30, 200], normalize: true}
      - splitrelu: {split_dim: 1, trainable_gain: false}
    expose_as: behavior
    concatenate: true
  eye_pos: {source: eyepos, ops: [], expose_as: behavior, concatenate: true}
datafilters:
  dfs: {ops: [{valid_nlags: {n_lags: 13}}, {missing_pct: {threshold: 45}}], expose_as: dfs}
train_val_split: 0.8
seed: 1002
"""
DEMO_UNITS = {"SynthA_2024-01-01": 7, "SynthA_2024-01-02": 6, "SynthB_2024-02-01": 8}


def train_demo_twin(folder: Path) -> tuple[Path, Path, Path]:
    """Synthetic stores, a legacy dataset YAML over them, and a small twin trained on them with neurotrain
    (``neurotrain train`` on a recipe naming the YAML). Returns ``(portable model folder, parent YAML, stores)``."""
    import yaml

    from neurotrain.config import load_recipe
    from neurotrain.run.train import train

    (folder / "configs" / "sessions").mkdir(parents=True, exist_ok=True)
    parent = folder / "configs" / "multi_synth.yaml"
    parent.write_text(DEMO_PARENT)
    for name, n in DEMO_UNITS.items():
        (folder / "configs" / "sessions" / f"{name}.yaml").write_text(f"session: {name}\ncids: {list(range(n))}\n")
    stores = folder / "stores"
    write_synthetic_stores(parent, stores, frame_size=24, n_trials=24, trial_frames=150)
    model = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
    model["modulator"]["params"]["behavior_dim"] = 42  # the 42-D eye-velocity basis + eye position of the YAML
    (folder / "model.yaml").write_text(yaml.safe_dump(model))
    recipe = {"output_dir": str(folder / "run"),
              "data": {"legacy_config": str(parent), "store_dir": str(stores), "batch_size": 48},
              "model": {"config": str(folder / "model.yaml")},
              "train": {"max_epochs": 2, "lr": 5e-3, "steps_per_epoch": 25},
              "checkpoint": {"resume": "never"},
              "logging": {"progress_bar": False, "wandb": False}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = train(load_recipe(folder / "recipe.yaml"))
    return Path(result["output_dir"]) / "checkpoints" / "last", parent, stores


# ------------------------------------------------------------------------------------------------ the walk-through
def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def walk_through(checkpoint: Path, cfg_dir: Path, store_dir: Path, out: Path, session: str | None = None,
                 neuron: int | None = None, n_samples: int = 600) -> dict:
    from matplotlib.figure import Figure

    from neurotrain.data.multisession import cast_stim
    from neurotrain.legacy import MultiDatasetDM, MultiDatasetModel
    from neurotrain.sources import from_pretrained

    torch.set_float32_matmul_precision("highest")
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"checkpoint": str(checkpoint)}

    # %% 1. Load the twin, as VisionCore notebooks did (a legacy .ckpt or a neurotrain portable folder)
    model = MultiDatasetModel.load_from_checkpoint(checkpoint, cfg_dir=cfg_dir)
    print(f"sessions (readout order): {model.names}")
    print(f"model YAML: adapter {model.model_config['adapter']['type']}, convnet {model.model_config['convnet']['type']}"
          f", modulator {(model.model_config.get('modulator') or {}).get('type', 'none')}; log_input {model.log_input}")
    report.update(names=model.names, n_neurons=[len(c.get("cids", [])) for c in model.cfgs],
                  hparams_max_ds=model.hparams.get("max_ds"))

    # %% 2. Set up the data: the legacy dataset YAML over neurotrain session folders
    dm = MultiDatasetDM(cfg_dir=cfg_dir, max_ds=len(model.names), batch=64, workers=0, store_dir=store_dir)
    dm.setup()
    assert dm.names == model.names, f"the YAML's sessions {dm.names} are not the model's {model.names}"
    report["samples"] = {n: {"train": len(dm.train_dsets[n]), "val": len(dm.val_dsets[n])} for n in dm.names}
    print("train / val samples:", report["samples"])

    # %% 3. Inspect one session: legacy items (the neurotrain view of the same split is dm.data.train[name])
    name = session or dm.names[0]
    train_data = dm.train_dsets[name]
    item = train_data[0]
    report["session"] = name
    report["item"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in item.items()}
    report["stim_range"] = [float(item["stim"].min()), float(item["stim"].max())]
    for k, v in report["item"].items():
        print(f"  {k:9s} {tuple(v['shape'])} {v['dtype']}")

    # %% 4. Predict the session's validation samples (first n_samples, in time order), the legacy way ...
    val = dm.val_dsets[name]
    batch = val[: min(n_samples, len(val))]
    beh = batch.get("behavior")  # absent when the YAML's keys_lags has no behavior
    with torch.no_grad():
        rhat = torch.cat([model(batch["stim"][i:i + 128], name, None if beh is None else beh[i:i + 128])
                          for i in range(0, len(batch["robs"]), 128)])
    # ... and the neurotrain way: the same split by name, uint8 frames normalised by cast_stim, the portable API
    twin, meta = from_pretrained(checkpoint, **({} if checkpoint.is_dir() else {"dataset_configs": cfg_dir}))
    idx = [s["name"] for s in meta["sessions"]].index(name)
    group = dm.data.val[name][: len(batch["robs"])]  # numpy arrays; stim uint8 (B, 1, L, H, W)
    stim = cast_stim(torch.from_numpy(group["stim"]))
    nbeh = torch.from_numpy(group["behavior"]) if "behavior" in group else None
    with torch.no_grad():
        ref = torch.cat([twin(stim[i:i + 128], idx, None if nbeh is None else nbeh[i:i + 128])
                         for i in range(0, len(stim), 128)])
    report["max_abs_diff_vs_neurotrain"] = float((rhat - ref).abs().max())
    print(f"predicted {tuple(rhat.shape)}; max |legacy API - neurotrain API| = {report['max_abs_diff_vs_neurotrain']:.3g}")

    # %% 5. One neuron: observed counts and predicted rate, and every neuron's correlation
    robs, dfs, r = batch["robs"].numpy(), batch["dfs"].numpy(), rhat.numpy()
    corr = [pearson(r[dfs[:, j] > 0, j], robs[dfs[:, j] > 0, j]) for j in range(robs.shape[1])]
    k = int(np.nanargmax(corr)) if neuron is None else int(neuron)
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax, ax2 = fig.subplots(2, 1, height_ratios=[2, 1])
    t = np.arange(len(robs))
    ax.step(t, robs[:, k], where="mid", color="0.6", lw=0.8, label="observed counts")
    ax.plot(t, r[:, k], color="C3", lw=1.2, label="predicted rate")
    if "true_rates" in group:  # synthetic sessions know the rates that generated the counts
        ax.plot(t, group["true_rates"][:, k], color="C0", lw=0.8, alpha=0.7, label="true rate (synthetic)")
    ax.set(xlabel=f"validation sample of {name}", ylabel="spikes / bin",
           title=f"{name}, neuron {k} (cid {val.session.neuron_ids[k]}): r = {corr[k]:.2f}")
    ax.legend(loc="upper right", frameon=False)
    ax2.bar(np.arange(len(corr)), corr, color=["C3" if j == k else "0.6" for j in range(len(corr))])
    ax2.set(xlabel="neuron", ylabel="correlation")
    fig.savefig(out / "neuron.png", dpi=100)
    np.savez(out / "predictions.npz", rhat=r, robs=robs, dfs=dfs, times=val.times[: len(r)])
    report.update(neuron=k, corr=corr[k], corr_all=corr, mean_rate=float(r.mean()))
    if "true_rates" in group:
        report["corr_true_rate"] = pearson(r[:, k], group["true_rates"][:, k])
    (out / "notebook.json").write_text(json.dumps(report, indent=1))
    print(f"neuron {k}: r = {corr[k]:.3f}; wrote {out / 'neuron.png'}, predictions.npz, notebook.json")
    return report


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="a legacy .ckpt or a neurotrain portable model folder")
    p.add_argument("--cfg-dir", type=Path, help="the legacy parent dataset YAML of the model's sessions")
    p.add_argument("--store-dir", type=Path, help="one neurotrain session folder per session name")
    p.add_argument("--synthetic-stores", action="store_true", help="first write synthetic sessions into --store-dir")
    p.add_argument("--demo", action="store_true", help="synthetic sessions and a small twin trained on them first")
    p.add_argument("--session", help="session to inspect (default: the first)")
    p.add_argument("--neuron", type=int, help="neuron to plot (default: the best predicted)")
    p.add_argument("--samples", type=int, default=600, help="validation samples to predict (default 600)")
    p.add_argument("--out", type=Path, default=Path("runs/notebook"))
    a = p.parse_args(argv)
    if a.demo:
        a.checkpoint, a.cfg_dir, a.store_dir = train_demo_twin(a.out / "demo")
    elif not (a.checkpoint and a.cfg_dir and a.store_dir):
        p.error("give --checkpoint, --cfg-dir and --store-dir (or --demo)")
    if a.synthetic_stores:
        print("synthetic sessions written:", write_synthetic_stores(a.cfg_dir, a.store_dir))
    return walk_through(a.checkpoint, a.cfg_dir, a.store_dir, a.out, a.session, a.neuron, a.samples)


if __name__ == "__main__":
    main()
