"""``neurotrain convert LEGACY.ckpt OUT/``: a legacy VisionCore checkpoint -> a portable model folder."""

from __future__ import annotations


def run(args) -> int:
    """``neurotrain convert LEGACY.ckpt OUT/``: a legacy VisionCore checkpoint -> a portable folder."""
    from neurotrain.legacy.convert import check_out_dir, legacy_metrics, legacy_provenance, load_legacy_checkpoint
    from neurotrain.checkpoint.portable import save_portable

    check_out_dir(args.out_dir, args.overwrite)
    lc = load_legacy_checkpoint(args.checkpoint, model_config=args.model_config,
                                dataset_configs=args.dataset_configs, input_shape=args.input_shape)
    extra = {"provenance": legacy_provenance(lc)}
    out = save_portable(lc.model, args.out_dir, model_config=lc.model_config, sessions=lc.sessions,
                        metrics=legacy_metrics(lc), extra=extra, license=args.license)
    n = sum(p.numel() for p in lc.model.parameters())
    print(f"loaded {args.checkpoint}: VisionCore layout era {lc.era}, epoch {lc.epoch}, global step {lc.global_step}, "
          f"{len(lc.sessions)} sessions, {n:,} parameters (strict: every weight mapped)")
    how = {"dataset_configs": "from the dataset configs", "numbered": "numbered (not stored in the checkpoint)"}
    print(f"sessions ({how.get(lc.names_from, lc.names_from)}):")
    for i, s in enumerate(lc.sessions):
        print(f"  {i}: {s['name']} ({s['subject']}), {s['n_neurons']} neurons")
    print(f"ignored {len(lc.ignored_keys)} dead/duplicate key(s)" + (":" if lc.ignored_keys else ""))
    for k in lc.ignored_keys:
        print(f"  {k}")
    for note in lc.notes:
        print(f"note: {note}")
    print(f"wrote {out}")
    return 0


def legacy_model_args(p) -> None:
    p.add_argument("--model-config", help="model YAML, for legacy checkpoints without model_config_dict")
    p.add_argument("--dataset-configs", help="legacy parent dataset YAML (or the folder of per-session YAMLs of "
                                             "the earliest runs), for session names and cids")
    p.add_argument("--input-shape", type=int, nargs=4, metavar=("C", "L", "H", "W"),
                   help="stimulus shape, needed for gru/lstm cores when the dataset configs cannot give it")



def add(sub) -> None:
    p = sub.add_parser("convert", help="convert a legacy VisionCore .ckpt into a portable model folder",
                       description="Load a legacy VisionCore Lightning checkpoint strictly (any layout era; see "
                                   "neurotrain.legacy.convert) and write a portable folder. Prints what was "
                                   "loaded, what was ignored and how session names were found; errors name the "
                                   "file and key (exit code 2).")
    p.add_argument("checkpoint", help="the legacy .ckpt file")
    p.add_argument("out_dir", help="portable folder to write")
    p.add_argument("--license", help="licence line for the model card (default: same as the data and code)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder at OUT_DIR")
    legacy_model_args(p)
    p.set_defaults(func=run)

