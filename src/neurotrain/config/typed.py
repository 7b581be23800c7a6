"""Build typed dataclass configs from plain YAML dicts, with errors that name the file and the key.

Supported field types: ``int``, ``float``, ``str``, ``bool``, ``Optional[T]``, ``list[T]``,
``dict`` (free-form), ``Union[A, B]``, ``Literal[...]`` and nested dataclasses. ``int`` values are
accepted for ``float`` fields; ``bool`` is never accepted as a number. Unknown keys are errors, with a
"did you mean" hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union


from neurotrain.errors import ConfigError  # noqa: E402  (re-exported: the recipe layer's error)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"list[{_type_name(inner)}]"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, file: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(file, key, f"got {value!r}, expected one of {list(allowed)}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, file, key)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(file, key, f"got {value!r} ({type(value).__name__}), expected {_type_name(tp)}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(file, key, f"got {value!r}, expected null")
        return None
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, file=file, prefix=key)
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(file, key, f"got {value!r} ({type(value).__name__}), expected {_type_name(tp)}")
        return [_convert(v, inner, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"got {type(value).__name__}, expected a mapping")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, key, f"got {value!r} ({type(value).__name__}), expected bool")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, key, f"got {value!r} ({type(value).__name__}), expected int")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(file, key, f"got {value!r} ({type(value).__name__}), expected float")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(file, key, f"got {value!r} ({type(value).__name__}), expected str")
        return value
    raise TypeError(f"unsupported config field type {tp!r} at {key}")


def from_dict(cls: type, data: dict, *, file: Any = None, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``data``, checking every key and type.

    Raises:
        ConfigError: unknown key, wrong type, or a missing required key; the message names ``file``
            and the dotted key (``prefix.key``).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(file, dotted, f"unknown key{hint}; allowed keys: {sorted(fields)}")
        kwargs[key] = _convert(value, hints[key], file, dotted)
    for name, f in fields.items():
        if name in kwargs:
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            dotted = f"{prefix}.{name}" if prefix else name
            if dataclasses.is_dataclass(hints[name]):
                kwargs[name] = from_dict(hints[name], {}, file=file, prefix=dotted)
            else:
                raise ConfigError(file, dotted, "required key is missing")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        check(file, prefix)
    return obj


def to_dict(obj: Any) -> Any:
    """The plain-dict form of a config dataclass (for logging and saving the resolved recipe)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
