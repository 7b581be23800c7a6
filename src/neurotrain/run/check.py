"""``neurotrain validate``: check a recipe (or a bare model YAML) without loading any data.

What is checked, in order, each failure naming the file and the key:

1. the recipe's keys and types and the files it names (:func:`neurotrain.config.recipe.load_recipe`);
2. the model YAML: every component's type and arguments (unknown keys are errors), built for the
   declared input with one placeholder session of ``n_neurons`` neurons;
3. the ``regularization`` list (types, schedules, and that every ``apply_to`` pattern matches a
   parameter of the built model);
4. the shapes flowing between stages for the declared input ``[C, L, H, W]`` (one forward pass of batch 1
   on zeros), printed as a table;
5. consistency of data and model: a behaviour modulator needs ``data.use_behavior``;
6. ``data.test_trials`` keys name sessions of the recipe, where the names are known without loading data.

The declared input is ``model.input_shape`` when set, else ``[1, L, H, W]`` with L the number of lags and
H x W the frame size read without loading data: from the first session folder's metadata (``data.sessions``,
or for ``data.legacy_config`` the first session's store in ``data.store_dir``, with L from the dataset YAML's
``keys_lags.stim``), the synthetic data (``data.synthetic.frame_size``) or the importer (``image_size`` for
``cowley_v4``, 31 for ``allen_v1``). A bare model YAML uses ``input_shape`` (default
``[C, 25, 51, 51]``, the shape of the legacy data configs, with C the YAML's ``initial_input_channels``, 1 when
absent: an RGB model is traced on colour frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from neurotrain.config.recipe import load_model_yaml, load_recipe
from neurotrain.data.build import check_test_trial_sessions
from neurotrain.errors import ConfigError, ModelConfigError
from neurotrain.io import read_yaml
from neurotrain.model import build_model
from neurotrain.model.shapes import format_stages, trace_shapes
from neurotrain.training.hooks import recipe_hooks
from neurotrain.sources import input_shape_of
from neurotrain.training.regularizers import Regularizers, parse_regularization

LEGACY_INPUT_SHAPE = (1, 25, 51, 51)
_RECIPE_KEYS = {"data", "model", "train", "checkpoint", "logging", "ensemble", "seed", "output_dir"}


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
        lines = [f"model YAML: {self.model_yaml}",
                 f"input: stim {tuple(self.input_shape)}" + (f", behaviour ({self.behavior_dim},)" if self.behavior_dim else ""),
                 format_stages(self.stages),
                 f"parameters: {self.n_params:,} (one placeholder session)"]
        if self.regularizers:
            lines.append("regularizers: " + ", ".join(self.regularizers))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def validate_model_config(model_cfg: dict, model_yaml: Path, input_shape, use_behavior: bool = True,
                          n_neurons: int = 8) -> ValidationReport:
    """Build ``model_cfg`` for ``input_shape`` and trace its stage shapes; errors name ``model_yaml``."""
    def fail(err: ModelConfigError) -> ConfigError:
        return err.in_file(model_yaml)

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
    path = Path(path)
    raw = read_yaml(path, what="recipe or model YAML")
    if _RECIPE_KEYS & set(raw) and "model_type" not in raw:
        recipe = load_recipe(path, overrides)
        recipe_hooks(recipe)  # train.hooks: importable Hook subclasses that accept their arguments
        check_test_trial_sessions(recipe)  # data.test_trials keys name sessions of the recipe
        shape = tuple(input_shape) if input_shape else input_shape_of(recipe)
        model_cfg = load_model_yaml(recipe)
        return validate_model_config(model_cfg, recipe.resolve(recipe.model.config), shape,
                                     use_behavior=recipe.data.use_behavior)
    if overrides:
        raise ConfigError(path, "<overrides>", "overrides apply to recipes, not to a bare model YAML")
    if input_shape is None:
        channels = raw.get("initial_input_channels", 1)
        input_shape = ((channels if isinstance(channels, int) and channels > 0 else 1), *LEGACY_INPUT_SHAPE[1:])
    return validate_model_config(raw, path, tuple(input_shape))
