"""Typed views of config dicts: Hydra gives plain values, dataclasses give the schema."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from deeprl.errors import UserError, close_matches


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a config value fits a dataclass field annotation (ints count as floats)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        return isinstance(value, list | tuple) and all(_matches(v, item) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, dict | annotation)
    return isinstance(value, annotation)


def make_config(config_cls: type, options: dict[str, Any], prefix: str = "agent") -> Any:
    """Build a Config dataclass from a dict, with one clear error for an unknown key or a value
    of the wrong type. Nested dataclass fields (e.g. ``critic``) are built recursively."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    values = {}
    for key, value in options.items():
        if key not in fields:
            raise UserError(
                f"unknown option {prefix}.{key}.{close_matches(key, fields)} "
                f"Options of {prefix}: {', '.join(sorted(fields))}"
            )
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            value = make_config(annotation, value, f"{prefix}.{key}")
        elif not _matches(value, annotation):
            expected = (
                annotation.__name__ if isinstance(annotation, type) else str(annotation)
            )
            raise UserError(
                f"{prefix}.{key}={value!r} has the wrong type: expected {expected}, got "
                f"{type(value).__name__}"
            )
        if annotation is float and isinstance(value, int):
            value = float(value)
        values[key] = value
    return config_cls(**values)
