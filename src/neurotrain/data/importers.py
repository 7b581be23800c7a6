"""Public recordings imported once into a cache folder (``data.importer`` in a recipe), then reused.

``IMPORTERS`` maps an importer name (:data:`neurotrain.config.recipe.IMPORTER_NAMES`) to a function
``(source folder, cache folder, **options) -> session folders``. Each imports only the sessions the cache
lacks, and refuses a cached session that was imported with other options (say, another image size).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from neurotrain.config.recipe import IMPORTER_NAMES, Recipe
from neurotrain.errors import ConfigError
from neurotrain.data.session import SessionError, is_session_dir


def _cached_or_import(paths: list[Path], options: dict, do_import, recorded_defaults: dict | None = None) -> list[Path]:
    """Reuse the session folders already in the cache when they were imported with the same ``options``
    (recorded as ``extra_meta.import_options``); import the missing ones. A cached folder imported with
    other options is an error naming it: silently training on 56-pixel frames when 112 were asked for is
    the kind of mistake nobody notices. ``recorded_defaults``: the value an option had in folders imported
    before it was recorded (e.g. ``color: luminance``), compared in place of the missing entry."""
    from neurotrain.data.ingest import IngestError
    from neurotrain.data.session import read_session_meta

    todo = []
    for p in paths:
        if not is_session_dir(p):
            todo.append(p)
            continue
        had = (read_session_meta(p).get("extra_meta") or {}).get("import_options")
        if had is None:  # imported before options were recorded: nothing to compare
            continue
        had = {**(recorded_defaults or {}), **had}
        diff = {k: (had.get(k), v) for k, v in options.items() if had.get(k) != v}
        if diff:
            raise IngestError(f"{p}: the cached session was imported with "
                              + ", ".join(f"{k}={a!r}" for k, (a, _) in diff.items()) + " but the recipe asks for "
                              + ", ".join(f"{k}={b!r}" for k, (_, b) in diff.items())
                              + "; choose another data.cache_dir or delete the folder")
    if todo:
        do_import(todo)
    return paths


def _import_cowley_v4(src: Path, out: Path, sessions=None, image_size=None, subject=None,
                      color="luminance") -> list[Path]:
    """``color``: ``luminance`` (default; frames (T, H, W)) or ``rgb`` (frames (T, H, W, 3), model input
    ``[3, L, H, W]``); part of the cache check, so a luminance cache is never reused for an RGB recipe."""
    from neurotrain.data.ingest import COLORS, IngestError, cowley_v4_sessions, import_cowley_v4

    if color not in COLORS:
        raise IngestError(f"color: expected one of {list(COLORS)}, got {color!r}")
    wanted = [str(s) for s in sessions] if sessions else cowley_v4_sessions(src)
    paths = [out / f"cowley_v4_{s}" for s in wanted]
    options = {"image_size": None if image_size is None else int(image_size), "color": color}
    return _cached_or_import(paths, options, lambda todo: import_cowley_v4(
        src, out, sessions=[p.name.removeprefix("cowley_v4_") for p in todo], image_size=image_size, subject=subject,
        color=color), recorded_defaults={"color": "luminance"})


def _import_allen_v1(src: Path, out: Path, container=None, subject=None) -> list[Path]:
    from neurotrain.data.ingest import ALLEN_CONTAINER, import_allen_v1

    container = str(container or ALLEN_CONTAINER)
    return _cached_or_import([out / f"allen_v1_{container}"], {},
                             lambda _: import_allen_v1(src, out, container=container, subject=subject))


# name -> function(source folder, cache folder, **options) -> session folders (imported once, then reused)
IMPORTERS = {"cowley_v4": _import_cowley_v4, "allen_v1": _import_allen_v1}
assert set(IMPORTERS) == set(IMPORTER_NAMES), "the recipe schema and the importers name the same importers"


def session_paths(recipe: Recipe, main_process_first=contextlib.nullcontext) -> list[Path]:
    cfg = recipe.data
    if cfg.sessions:
        return [recipe.resolve(p) for p in cfg.sessions]
    if cfg.importer:
        opts = dict(cfg.importer)
        name, src = opts.pop("name"), recipe.resolve(os.path.expandvars(str(opts.pop("path"))))
        cache = Path(cfg.cache_dir).expanduser()
        from neurotrain.data.ingest import IngestError

        with main_process_first():
            try:
                return IMPORTERS[name](src, cache, **opts)
            except TypeError as err:
                raise ConfigError(recipe.source, "data.importer", f"bad importer option: {err}") from None
            except (IngestError, SessionError) as err:
                raise ConfigError(recipe.source, "data.importer", str(err)) from None
    from neurotrain.data.synthetic import generate_demo_sessions

    cache = Path(cfg.cache_dir).expanduser()
    with main_process_first():
        try:
            return [Path(p) for p in generate_demo_sessions(cache, **cfg.synthetic)]
        except TypeError as err:
            raise ConfigError(recipe.source, "data.synthetic", f"bad generator argument: {err}") from None


