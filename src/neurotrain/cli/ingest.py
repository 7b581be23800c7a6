"""``neurotrain ingest npz|cowley-v4|allen-v1 ...``: recordings into session folders (:mod:`neurotrain.data.ingest`).

    neurotrain ingest npz FILE.npz OUT_DIR [--name N] [--subject S] [--sampling-rate R] [--response-type T]
    neurotrain ingest cowley-v4 DATA_DIR OUT_DIR [--sessions ID ...] [--image-size N] [--subject S]
                                [--color luminance|rgb]
    neurotrain ingest allen-v1 DATA_DIR OUT_DIR [--container ID] [--subject S]

(``--overwrite`` replaces existing session folders. ``--mask-nonfinite`` (npz, allen-v1): NaN / inf responses or
behaviour are masked through ``dfs`` and recorded in the session's metadata instead of refused; see
:func:`neurotrain.data.ingest.nonfinite`.)
"""

from __future__ import annotations


def run(args) -> int:
    from neurotrain.data import ingest

    if args.source == "npz":
        paths = [ingest.ingest_npz(args.file, args.out_dir, name=args.name, subject=args.subject,
                                   sampling_rate=args.sampling_rate, response_type=args.response_type,
                                   overwrite=args.overwrite or None, mask_nonfinite=args.mask_nonfinite or None)]
    elif args.source == "cowley-v4":
        paths = ingest.import_cowley_v4(args.data_dir, args.out_dir, sessions=args.sessions,
                                        image_size=args.image_size, subject=args.subject, overwrite=args.overwrite,
                                        color=args.color)
    else:
        paths = [ingest.import_allen_v1(args.data_dir, args.out_dir, container=args.container, subject=args.subject,
                                        overwrite=args.overwrite, mask_nonfinite=args.mask_nonfinite)]
    for p in paths:
        print(p)
    return 0


def add(sub) -> None:
    p = sub.add_parser("ingest", help="convert recordings into session folders")
    isub = p.add_subparsers(dest="source", required=True)
    q = isub.add_parser("npz", help="one session from a .npz file (schema: neurotrain.data.ingest)")
    q.add_argument("file", help="the .npz file")
    q.add_argument("out_dir", help="folder to write the session folder into")
    q.add_argument("--name", help="session name (default: the npz 'name' key, else the file name)")
    q.add_argument("--subject", help="subject (overrides the npz 'subject' key)")
    q.add_argument("--sampling-rate", type=float, help="samples per second (overrides the npz key)")
    q.add_argument("--response-type", choices=["counts", "continuous"], help="overrides the npz key")
    q = isub.add_parser("cowley-v4", help="Cowley et al. macaque V4 natural-image sessions")
    q.add_argument("data_dir", help="the cowley_v4 data folder (or its parent)")
    q.add_argument("out_dir", help="folder to write the session folders into")
    q.add_argument("--sessions", nargs="+", help="session ids (default: every session the folder holds)")
    q.add_argument("--image-size", type=int, help="resize images to N x N (default: keep their size)")
    q.add_argument("--subject", help="subject of sessions the known-session table lacks (default 'unknown'); "
                                     "given, it applies to every imported session")
    q.add_argument("--color", choices=["luminance", "rgb"], default="luminance",
                   help="luminance (default: grey frames, model input [1, L, H, W]) or rgb (colour frames, "
                        "model input [3, L, H, W]; the published models of these recordings see RGB at 112 x 112)")
    q = isub.add_parser("allen-v1", help="Allen Brain Observatory V1 natural-scenes export (calcium)")
    q.add_argument("data_dir", help="the allen_v1_natural_scenes data folder (or its parent)")
    q.add_argument("out_dir", help="folder to write the session folder into")
    q.add_argument("--container", default="511510667",
                   help="experiment container of the export (default 511510667, the distributed one)")
    q.add_argument("--subject", help="subject (default: the known container's, else allen_<container>)")
    for q in isub.choices.values():
        q.add_argument("--overwrite", action="store_true", help="replace existing session folders")
    for source in ("npz", "allen-v1"):
        isub.choices[source].add_argument(
            "--mask-nonfinite", action="store_true",
            help="mask NaN/inf responses or behaviour through dfs (a behaviour value masks its whole sample) and "
                 "record them in the session's metadata, instead of refusing them")
    p.set_defaults(func=run)

