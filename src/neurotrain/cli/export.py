"""``neurotrain export-legacy MODEL OUT.ckpt``: a model -> a VisionCore Lightning checkpoint its loader reads."""

from __future__ import annotations


def run(args) -> int:
    """Export ``args.model`` (portable folder or legacy .ckpt) to ``args.out`` (see neurotrain.legacy.export)."""
    from neurotrain.legacy.export import export_legacy

    res = export_legacy(args.model, args.out, overwrite=args.overwrite, cfg_dir=args.cfg_dir,
                        dataset_config=args.dataset_config, model_config=args.model_config,
                        dataset_configs=args.dataset_configs, input_shape=args.input_shape)
    print(f"wrote {res.path}: VisionCore layout fc9080f+ (state_dict 'model.' + {res.n_keys} keys, "
          f"model_config_dict, {len(res.sessions)} sessions)")
    print(f"wrote {res.configs_dir}/: the model YAML and the dataset configs VisionCore's loader reads "
          f"(hyper_parameters.cfg_dir = {res.cfg_dir})")
    print("sessions (readout order):")
    for i, name in enumerate(res.sessions):
        print(f"  {i}: {name}")
    print(f"training settings (lr, wd, ...) from {res.hparams_from}")
    for note in res.notes:
        print(f"note: {note}")
    print("load it in VisionCore with MultiDatasetModel.load_from_checkpoint(path, strict=False) or "
          "eval.eval_stack_multidataset.load_model(checkpoint_path=path); moved the files? pass cfg_dir=...")
    return 0


def add(sub) -> None:
    from neurotrain.cli.convert import legacy_model_args

    p = sub.add_parser("export-legacy", help="write a model as a VisionCore Lightning .ckpt (current layout)",
                       description="Write a portable model folder (or a legacy .ckpt, round trip) as a Lightning "
                                   "checkpoint in VisionCore's current layout (fc9080f+), plus OUT_configs/ beside it "
                                   "with the model YAML and the dataset configs (session names, cids) that "
                                   "VisionCore's MultiDatasetModel.load_from_checkpoint reads. Models VisionCore "
                                   "cannot load (gru/lstm cores, pc/stn modulators, model_type v1, neurotrain-only "
                                   "options) are refused with the config key (exit code 2); nothing is written then.")
    p.add_argument("model", help="portable model folder, or a legacy .ckpt")
    p.add_argument("out", help="the .ckpt file to write (OUT_configs/ is written beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export at OUT")
    p.add_argument("--cfg-dir", help="path to record as hyper_parameters.cfg_dir (default: the absolute path of the "
                                     "written parent dataset YAML); for files that will be copied to another machine")
    p.add_argument("--dataset-config", help="a legacy parent dataset YAML whose data pipeline (types, keys_lags, "
                                            "transforms, ...) the written parent YAML copies, for VisionCore's "
                                            "analysis code that prepares data")
    legacy_model_args(p)
    p.set_defaults(func=run)
