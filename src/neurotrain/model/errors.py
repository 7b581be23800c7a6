"""Errors raised while building a model from a legacy model YAML."""

from __future__ import annotations


class ModelConfigError(ValueError):
    """A model config is invalid; the message names the offending key path.

    Example message: ``model.convnet.type: unknown type 'resnett' (expected one of ...)``.
    """


def unknown_type(path: str, value, choices) -> ModelConfigError:
    """Build the standard "unknown type" error for the key ``path``."""
    opts = ", ".join(repr(c) for c in sorted(choices))
    return ModelConfigError(f"{path}: unknown type {value!r} (expected one of {opts})")
