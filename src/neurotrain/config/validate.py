"""``neurotrain validate``: check a recipe (or a bare model YAML) without loading any data.

What is checked, in order, each failure naming the file and the key:

1. the recipe's keys and types and the files it names (:func:`neurotrain.config.recipe.load_recipe`);
2. the model YAML: every component's type and arguments (unknown keys are errors), built for the
   declared input with one placeholder session of ``n_neurons`` neurons;
3. the ``regularization`` list (types, schedules, and that every ``apply_to`` pattern matches a
   parameter of the built model);
4. the shapes flowing between stages for the declared input ``[C, L, H, W]`` (one forward pass of batch 1
   on zeros), printed as a table;
5. consistency of data and model: a behaviour modulator needs ``data.use_behavior``.

The declared input is ``model.input_shape`` when set, else ``[1, L, H, W]`` with L the number of lags and
H x W the frame size read without loading data: from the first session folder's metadata (``data.sessions``,
or for ``data.legacy_config`` the first session's store in ``data.store_dir``, with L from the dataset YAML's
``keys_lags.stim``), the synthetic data (``data.synthetic.frame_size``) or the importer (``image_size`` for
``cowley_v4``, 31 for ``allen_v1``). A bare model YAML uses ``input_shape`` (default
``[1, 25, 51, 51]``, the shape of the legacy data configs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from neurotrain.config.typed import ConfigError

LEGACY_INPUT_SHAPE = (1, 25, 51, 51)
_RECIPE_KEYS = {"data", "model", "train", "checkpoint", "logging", "seed", "output_dir"}


@dataclass
class ValidationReport:
    """What ``validate`` established: the model YAML checked, the input used, the stage shapes."""

    model_yaml: Path
    input_shape: tuple
    behavior_dim: int
    stages: list = field(default_factory=list)
    n_params: int = 0
    regularizers: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def format(self) -> str:
        from neurotrain.model.shapes import format_stages

        lines = [f"model YAML: {self.model_yaml}",
                 f"input: stim {tuple(self.input_shape)}" + (f", behaviour ({self.behavior_dim},)" if self.behavior_dim else ""),
                 format_stages(self.stages),
                 f"parameters: {self.n_params:,} (one placeholder session)"]
        if self.regularizers:
            lines.append("regularizers: " + ", ".join(self.regularizers))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _first_session_frame(recipe, path: Path, key: str) -> tuple[int, int]:
    """(H, W) of a session folder, from its metadata only (no frames are read)."""
    from neurotrain.data.session import SessionError, read_session_meta

    try:
        h, w = read_session_meta(path)["frame_shape"]
    except (SessionError, OSError, KeyError, ValueError) as err:
        raise ConfigError(recipe.source, key, f"cannot read the session metadata of {path}: {err}") from None
    return int(h), int(w)


def _legacy_input(recipe) -> tuple[int, int, int, int]:
    """A legacy dataset YAML: lags from its ``keys_lags.stim``, frame size from the first session's store."""
    from neurotrain.data.legacy_config import LegacyConfigError, load_legacy_dataset_configs, stim_lags

    parent = recipe.resolve(recipe.data.legacy_config)
    try:
        configs = load_legacy_dataset_configs(parent, max_datasets=recipe.data.max_datasets)
        lags = stim_lags(configs[0])
    except LegacyConfigError as err:
        raise ConfigError(parent, "<dataset config>", str(err)) from None
    if not recipe.data.store_dir:
        raise ConfigError(recipe.source, "data.store_dir", "required with data.legacy_config: the folder holding "
                          "one neurotrain session per legacy session name (see docs/migration.md)")
    name = configs[0]["session"]
    h, w = _first_session_frame(recipe, recipe.resolve(recipe.data.store_dir) / name, "data.store_dir")
    return (1, len(lags), h, w)


def _declared_input(recipe) -> tuple[int, int, int, int]:
    """The stimulus shape ``[C, L, H, W]`` the run will feed the model, worked out without loading data."""
    if recipe.model.input_shape is not None:
        return tuple(int(v) for v in recipe.model.input_shape)  # type: ignore[return-value]
    d = recipe.data
    if d.legacy_config:
        return _legacy_input(recipe)
    n_lags = len(d.lag_list)
    if d.sessions:
        h, w = _first_session_frame(recipe, recipe.resolve(d.sessions[0]), "data.sessions[0]")
        return (1, n_lags, h, w)
    size = None
    if d.importer:
        name = str(d.importer.get("name", ""))
        if name == "cowley_v4":
            size = int(d.importer.get("image_size") or 112)
        elif name == "allen_v1":
            size = 31
    else:
        from neurotrain.data.synthetic import DEFAULT_FRAME_SIZE

        size = int(d.synthetic.get("frame_size", DEFAULT_FRAME_SIZE))
    if size is None:
        raise ConfigError(recipe.source, "model.input_shape",
                          "cannot infer the stimulus shape from the data section without loading data; "
                          "declare it as [C, L, H, W]")
    return (1, n_lags, size, size)


def load_yaml_mapping(path: Path) -> dict:
    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(path, "<file>", "file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(path, "<yaml>", f"not valid YAML: {err}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(path, "<root>", "expected a mapping")
    return cfg


def model_error(model_yaml, err: Exception) -> ConfigError:
    """A model-building error (message ``"<key>: <what>"``) as a ConfigError naming the model YAML file."""
    msg = str(err)
    key, sep, rest = msg.partition(": ")
    return ConfigError(model_yaml, key, rest) if sep and " " not in key else ConfigError(model_yaml, "model", msg)


def validate_model_config(model_cfg: dict, model_yaml: Path, input_shape, use_behavior: bool = True,
                          n_neurons: int = 8) -> ValidationReport:
    """Build ``model_cfg`` for ``input_shape`` and trace its stage shapes; errors name ``model_yaml``."""
    from neurotrain.model import ModelConfigError, build_model
    from neurotrain.model.shapes import trace_shapes
    from neurotrain.training.regularizers import Regularizers, parse_regularization

    def fail(err: Exception):
        return model_error(model_yaml, err)

    try:
        model = build_model(model_cfg, [n_neurons], input_shape=tuple(input_shape))
    except ModelConfigError as err:
        raise fail(err) from None
    mod = getattr(model, "modulator", None)
    behavior_dim = 0
    if mod is not None:
        behavior_dim = int(((model_cfg.get("modulator") or {}).get("params") or {}).get("behavior_dim", 0) or 0)
    report = ValidationReport(Path(model_yaml), tuple(input_shape), behavior_dim if use_behavior else 0)
    if mod is not None and not use_behavior:
        report.notes.append("the model has a behaviour modulator but data.use_behavior is false: "
                            "the modulator is skipped")
    try:
        regs = Regularizers.build(parse_regularization(model_cfg), model)
    except ModelConfigError as err:  # RegularizationError included
        raise fail(err) from None
    report.regularizers = [f"{r.name} ({r.type}, {len(r.names)} tensors)" for r in regs]
    try:
        report.stages = trace_shapes(model, input_shape, report.behavior_dim)
    except ModelConfigError as err:
        raise fail(err) from None
    report.n_params = sum(p.numel() for p in model.parameters())
    return report


def validate(path: str | Path, overrides: list[str] | None = None, input_shape=None) -> ValidationReport:
    """Validate a recipe or a bare model YAML (told apart by their top-level keys)."""
    from neurotrain.config.recipe import load_model_yaml, load_recipe

    path = Path(path)
    raw = load_yaml_mapping(path)
    if _RECIPE_KEYS & set(raw) and "model_type" not in raw:
        recipe = load_recipe(path, overrides)
        from neurotrain.training.hooks import recipe_hooks

        recipe_hooks(recipe)  # train.hooks: importable Hook subclasses that accept their arguments
        shape = tuple(input_shape) if input_shape else _declared_input(recipe)
        model_cfg = load_model_yaml(recipe)
        return validate_model_config(model_cfg, recipe.resolve(recipe.model.config), shape,
                                     use_behavior=recipe.data.use_behavior)
    if overrides:
        raise ConfigError(path, "<overrides>", "overrides apply to recipes, not to a bare model YAML")
    return validate_model_config(raw, path, tuple(input_shape) if input_shape else LEGACY_INPUT_SHAPE)
