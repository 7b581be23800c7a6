"""Errors raised while building a model from a legacy model YAML."""

from __future__ import annotations

from neurotrain.errors import ModelConfigError

__all__ = ["ModelConfigError", "unknown_type"]


def unknown_type(path: str, value, choices) -> ModelConfigError:
    """Build the standard "unknown type" error for the key ``path``."""
    opts = ", ".join(repr(c) for c in sorted(choices))
    return ModelConfigError(path, f"unknown type {value!r} (expected one of {opts})")
