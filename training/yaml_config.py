"""Reading YAML configs: one override rule and one error format for every config file.

Every config (curate, pipeline, train, classifiers train, mixture) is a pydantic model or
pydantic dataclass, loaded by `load_config`: the YAML mapping, then the overrides merged by
`merge_overrides`, then validation; a bad file or field is one line, `FILE: field.path: message`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import TypeAdapter, ValidationError

T = TypeVar("T")


def read_yaml_mapping(path: str | Path, error: type[ValueError], what: str = "config file") -> dict:
    """The mapping at the top of a YAML file; `error` with a one-line reason naming the file otherwise."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as err:
        raise error(f"{path}: no such {what}") from err
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level")
    return data


def merge_overrides(data: Mapping, overrides: Mapping[str, object]) -> dict:
    """`data` with `overrides` applied, the one rule of every loader: a dotted key names a nested
    field (`{"precision.recipe": "fp8"}`), a mapping merges into the mapping it overrides key by key
    (at any depth), any other value replaces, and None means "not given" (it never clears a field;
    a mapping of Nones leaves its section out). Only the overrides' own keys are split at dots:
    keys inside a mapping value (component names, n-gram sizes) are taken as they are."""
    merged = dict(data)
    for dotted, value in overrides.items():
        head, *rest = dotted.split(".")
        for key in reversed(rest):
            value = {key: value}
        value = _given(value)
        if value is not None:
            merged = _deep_merge(merged, {head: value})
    return merged


def _given(value: object) -> object:
    """`value` without its None leaves; None when nothing but Nones was given."""
    if isinstance(value, Mapping):
        given = {key: kept for key, item in value.items() if (kept := _given(item)) is not None}
        return given if given or not value else None
    return value


def _deep_merge(data: Mapping, overrides: Mapping) -> dict:
    merged = dict(data)
    for key, value in overrides.items():
        current = merged.get(key)
        both = isinstance(value, Mapping) and isinstance(current, Mapping)
        merged[key] = _deep_merge(current, value) if both else value
    return merged


def validation_message(path: str | Path | None, err: ValidationError, section: str = "") -> str:
    """The first validation error as `FILE: field.path: message`; `section` prefixes the field path
    when the model validated one section of the file."""
    first = err.errors()[0]
    where = ".".join([*([section] if section else []), *(str(part) for part in first["loc"])])
    message = first["msg"].removeprefix("Value error, ")
    return f"{path or 'config'}: {where + ': ' if where else ''}{message}"


def validate_config(kind: type[T], data: Mapping, path: str | Path | None, error: type[ValueError],
                    section: str = "") -> T:
    """`data` validated as `kind` (a pydantic model or dataclass); `error` in the one-line format."""
    try:
        return TypeAdapter(kind).validate_python(data)
    except ValidationError as err:
        raise error(validation_message(path, err, section)) from None


def load_config(kind: type[T], path: str | Path | None, overrides: Mapping[str, object] | None,
                error: type[ValueError], what: str = "config file") -> T:
    """Read the YAML at `path` (only the defaults when None), merge `overrides`, validate as `kind`."""
    data = read_yaml_mapping(path, error, what) if path is not None else {}
    return validate_config(kind, merge_overrides(data, overrides or {}), path, error)
