"""Recipe (training) configuration: typed, checked before anything runs."""

from neurotrain.config.recipe import Recipe, load_model_yaml, load_recipe
from neurotrain.config.typed import ConfigError

__all__ = ["ConfigError", "Recipe", "load_recipe", "load_model_yaml"]
