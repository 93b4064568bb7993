"""The configuration reference (docs/reference/configuration.md), generated from the config models.

One section per config file kind, one table per section of the file: every field with its type
(and constraints), its default and its description. Descriptions are the models' own: a field's
`Field(description=...)`, else its `#:` comment lines above and its trailing `# ...` comment (the
Sphinx convention the config classes already follow), so the reference cannot drift from the code.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from classifiers.annotate import AnnotateConfig
from classifiers.train import TrainConfig as ClassifiersTrainConfig
from flows.config.ablate import AblationConfig
from flows.config.curate import CurateConfig
from flows.config.pipeline import PipelineSection
from training.data.mixture import MixtureConfig
from training.model import HybridConfig
from training.trainer.config import TrainConfig

#: (title, how the file is used, its example, its model) for each kind of config file.
CONFIG_FILES: tuple[tuple[str, str, str, type], ...] = (
    ("curate", "`ccforge curate CONFIG`; also `--config` of `ccforge stage` and `ccforge rephrase`",
     "examples/curate.yaml", CurateConfig),
    ("classifiers train", "`ccforge classifiers train CONFIG` and `ccforge classifiers build-training-set CONFIG`",
     "examples/classifiers.yaml", ClassifiersTrainConfig),
    ("mixture", "`ccforge mix CONFIG` and the trainer's `data.mixture`", "examples/mixture.yaml", MixtureConfig),
    ("train", "`ccforge train CONFIG` (overrides: `--max-steps`, `--precision`, `--out`)", "examples/train.yaml",
     TrainConfig),
    ("pipeline", "`ccforge schedule --flow pipeline CONFIG`", "examples/pipeline.yaml", PipelineSection),
    ("ablation", "`ccforge ablate CONFIG` (overrides: `--out`, `--seeds`, `--nproc`)", "examples/ablation.yaml",
     AblationConfig),
    ("annotate", "`ccforge classifiers annotate CONFIG` (overrides: `--max-docs`, `--max-new-tokens`)",
     "examples/annotate.yaml", AnnotateConfig),
)

#: Free-form mappings whose keys are the fields of another config: listed as a section of their own.
MAPPING_FIELDS = {(TrainConfig, "model.overrides"): HybridConfig}
MAPPING_NOTE = ("Any of these fields, on top of the preset (whose values win over the defaults shown); names and "
                "meanings follow transformers' `NemotronHConfig`.")

INTRO = """\
# Configuration reference

Generated from the config models by `flows/config/reference.py`; do not edit by hand.

Every config file is YAML, validated before any work starts. Unknown fields are errors, and an
error is one line naming the file and the field: `curate.yaml: fuzzy_dedup.threshold: Input
should be less than or equal to 1`. Command-line options override the file with one rule
(`training.yaml_config.merge_overrides`): a dotted key names a nested field (`precision.recipe`),
a mapping merges into the section it overrides field by field, and an option not given changes
nothing. `null` in YAML is Python's None: for many thresholds it switches that rule off.
"""


def config_reference_markdown() -> str:
    """The whole reference as Markdown."""
    parts = [INTRO]
    for title, usage, example, model in CONFIG_FILES:
        parts.append(f"## {title}\n\nUsed by {usage}. Example: `{example}`.\n")
        parts.extend(_section_markdown(model, path, note) for path, model, note in _sections(model, "", model))
    return "\n".join(parts)


def _sections(model: type, path: str, root: type) -> Iterator[tuple[str, type, str]]:
    """(dotted path, model, note) of `model` and of every config nested in it, depth first."""
    yield path, model, ""
    for name, info in _fields(model).items():
        child_path = f"{path}.{name}" if path else name
        if (root, child_path) in MAPPING_FIELDS:
            yield child_path, MAPPING_FIELDS[root, child_path], MAPPING_NOTE
            continue
        nested = _nested_config(info.annotation)
        if nested is not None:
            suffix, child = nested
            yield from _sections(child, child_path + suffix, root)


def _section_markdown(model: type, path: str, note: str) -> str:
    heading = f"### `{path}`" if path else "### top level"
    doc = _docstring(model)
    rows = [_row(model, path, name, info) for name, info in _fields(model).items()]
    return "\n".join([heading, "", *([doc, ""] if doc else []), *([note, ""] if note else []),
                      "| field | type | default | description |", "|---|---|---|---|", *rows, ""])


def _row(model: type, path: str, name: str, info: FieldInfo) -> str:
    nested = _nested_config(info.annotation)
    description = _description(model, name, info) or (_docstring(nested[1]) if nested else "")
    default = _default_text(info)
    if nested and default == "section":
        default = f"see `{path}.{name}`" if path else f"see `{name}`"
    return f"| `{name}` | {_type_text(info.annotation, info.metadata)} | {default} | {_markdown_text(description)} |"


def _fields(model: type) -> dict[str, FieldInfo]:
    if issubclass(model, BaseModel):
        return dict(model.model_fields)
    return dict(model.__pydantic_fields__)


def _is_config(annotation: object) -> bool:
    return isinstance(annotation, type) and (issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation))


def _nested_config(annotation: object) -> tuple[str, type] | None:
    """("" | "[]" | ".<name>", config class) when the field holds a config, a list of them or a mapping of them."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        configs = [_nested_config(arg) for arg in args if arg is not type(None)]
        return configs[0] if len(configs) == 1 else None
    if _is_config(annotation):
        return "", annotation
    if origin in (list, tuple) and args and _is_config(args[0]):
        return "[]", args[0]
    if origin is dict and _is_config(args[1]):
        return ".<name>", args[1]
    return None


# ---------------------------------------------------------------------------------- types


def _type_text(annotation: object, metadata: list | tuple = ()) -> str:
    """A YAML reader's name for a type: `float (≥ 0, ≤ 1) or null`, `list of str`, `one of "a", "b"`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_text(args[0], [*metadata, *args[1:]])
    bounds = _constraints(metadata)
    if origin in (Union, types.UnionType):
        text = " or ".join(_type_text(arg) for arg in args)
    elif origin is Literal:
        text = "one of " + ", ".join(f'"{arg}"' for arg in args)
    elif annotation is type(None):
        text = "null"
    elif annotation is Any:
        text = "any"
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis or origin is list:
        text = f"list of {_item_text(args[0])}"
    elif origin is tuple:
        text = "[" + ", ".join(_type_text(arg) for arg in args) + "]"
    elif origin is dict:
        text = f"mapping of {_item_text(args[0])} to {_item_text(args[1])}" if args else "mapping"
    elif annotation is dict:
        text = "mapping"
    elif _is_config(annotation):
        text = "section"
    else:
        text = getattr(annotation, "__name__", str(annotation))
    return f"{text} ({bounds})" if bounds else text


def _item_text(annotation: object) -> str:
    """An element type inside `list of ...`: parenthesised when it is a union, sections in the plural."""
    text = _type_text(annotation)
    return f"({text})" if " or " in text else "sections" if text == "section" else text


def _constraints(metadata: list | tuple) -> str:
    signs = {annotated_types.Ge: ("≥", "ge"), annotated_types.Gt: (">", "gt"), annotated_types.Le: ("≤", "le"),
             annotated_types.Lt: ("<", "lt")}
    found = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            found.append(_constraints(item.metadata))
        elif type(item) in signs:
            sign, attr = signs[type(item)]
            found.append(f"{sign} {getattr(item, attr)}")
        elif isinstance(item, annotated_types.MinLen):
            found.append(f"at least {item.min_length} item{'s' if item.min_length > 1 else ''}")
    return ", ".join(text for text in found if text)


# ------------------------------------------------------------------------------- defaults


def _default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    return "section" if _is_config(type(value)) else f"`{_value_text(value)}`"


def _value_text(value: object) -> str:
    """YAML flow style: null, true, "text", [a, b], {k: v}; a config in a list by its name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode() + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_value_text(k)}: {_value_text(v)}" for k, v in value.items()) + "}"
    if _is_config(type(value)):
        return str(getattr(value, "name", type(value).__name__))
    return repr(value)


def _markdown_text(text: str) -> str:
    """Prose for a table cell: pipes escaped, and `<` outside code spans written as `&lt;` (not a tag)."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


# --------------------------------------------------------------------------- descriptions


def _description(model: type, name: str, info: FieldInfo) -> str:
    if info.description:
        return info.description
    for cls in model.__mro__:
        comment = _field_comments(cls).get(name)
        if comment:
            return comment
    return ""


def _docstring(model: type) -> str:
    """The class docstring's first paragraph (not the signature dataclasses write when there is none)."""
    doc = model.__dict__.get("__doc__") or ""
    if not doc or doc.startswith(f"{model.__name__}("):
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


@functools.cache
def _field_comments(cls: type) -> dict[str, str]:
    """{field: its `#:` lines above plus its trailing comment} from the class's source."""
    try:
        source = textwrap.dedent("".join(inspect.getsourcelines(cls)[0]))
    except (OSError, TypeError):  # a class without source (built-in bases such as object)
        return {}
    comments = {tok.start[0]: tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    found = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while comments.get(line, "").startswith("#:"):
            above.insert(0, comments[line].removeprefix("#:").strip())
            line -= 1
        trailing = [comments[n].removeprefix("#").strip() for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        found[node.target.id] = " ".join(part for part in [*above, *trailing] if part)
    return found
