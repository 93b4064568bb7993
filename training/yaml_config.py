"""Reading YAML configs with one-line errors (shared by the mixture, trainer and curate configs)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError


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


def validation_message(path: str | Path | None, err: ValidationError, skip_loc: int = 0, section: str = "") -> str:
    """The first validation error as `FILE: field.path: message`; `section` prefixes the field path
    when the model validated one section of the file."""
    first = err.errors()[0]
    where = ".".join([*([section] if section else []), *(str(part) for part in first["loc"][skip_loc:])])
    message = first["msg"].removeprefix("Value error, ")
    return f"{path or 'config'}: {where + ': ' if where else ''}{message}"
