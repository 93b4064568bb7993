"""The configuration reference names every field of the curate and train configs with its default,
and the mkdocs hook writes it where the docs expect it."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import types
from pathlib import Path
from typing import Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from flows.config.curate import CurateConfig
from flows.config.reference import config_reference_markdown
from training.trainer.config import TrainConfig

ROOT = Path(__file__).parents[2]


def _sections(markdown: str, kind: str) -> dict[str, str]:
    """{dotted path ("" for the top level): its table} of one `## kind` part of the reference."""
    part = markdown.split(f"\n## {kind}\n", 1)[1].split("\n## ", 1)[0]
    sections = {}
    for chunk in part.split("\n### ")[1:]:
        heading, _, body = chunk.partition("\n")
        sections["" if heading == "top level" else heading.strip("`")] = body
    return sections


def _is_config(kind: object) -> bool:
    return isinstance(kind, type) and (issubclass(kind, BaseModel) or dataclasses.is_dataclass(kind))


def _defaults(model: type, path: str = ""):
    """(section path, field, default) of every field of `model` and of the configs nested in it,
    read from the models themselves; a list or mapping of configs has a section `path[]` / `path.<name>`."""
    fields = model.model_fields if issubclass(model, BaseModel) else model.__pydantic_fields__
    for name, info in fields.items():
        child = f"{path}.{name}" if path else name
        yield path, name, info.get_default(call_default_factory=True)
        origin, args = get_origin(info.annotation), get_args(info.annotation)
        for suffix, candidates in (("", (info.annotation, *(args if origin in (Union, types.UnionType) else ()))),
                                   ("[]", args[:1] if origin in (list, tuple) else ()),
                                   (".<name>", args[1:] if origin is dict else ())):
            for nested in filter(_is_config, candidates):
                yield from _defaults(nested, child + suffix)


def _cell(row: str, column: int) -> str:
    return [c.strip() for c in row.strip("|").split(" | ")][column]


@pytest.mark.parametrize(("kind", "model"), [("curate", CurateConfig), ("train", TrainConfig)])
def test_reference_names_every_field_and_its_default(kind: str, model: type) -> None:
    sections = _sections(config_reference_markdown(), kind)
    checked = 0
    for path, name, default in _defaults(model):
        assert path in sections, f"no section for {kind} {path!r}"
        [row] = [line for line in sections[path].splitlines() if line.startswith(f"| `{name}` |")]
        shown = _cell(row, 2)
        if default is PydanticUndefined:
            assert shown == "required"
        elif _is_config(type(default)):
            assert shown == f"see `{path + '.' if path else ''}{name}`"
        else:
            value = yaml.safe_load(shown.strip("`"))
            expected = [getattr(v, "name", v) for v in default] if isinstance(default, tuple) else default
            assert value == expected or (isinstance(default, float) and float(value) == default), (path, name, shown)
        checked += 1
    assert checked > (140 if kind == "curate" else 40)  # the walk reached the nested sections


def test_reference_rows_carry_types_constraints_and_descriptions() -> None:
    curate = _sections(config_reference_markdown(), "curate")
    assert "| `threshold` | float (> 0, ≤ 1) | `0.8` | exact Jaccard at or above which a candidate is a duplicate |" \
        in curate["fuzzy_dedup"]
    assert "| `languages` | list of str or null | `[\"en\"]` |" in curate["heuristics"]
    assert "| `classifiers` | list of sections | `[]` | the ensemble; empty leaves the classify stage out |" \
        in curate["classify"]
    train = _sections(config_reference_markdown(), "train")
    assert re.search(r"\| `recipe` \| one of \"bf16\", \"fp8\", \"nvfp4\" \| `\"bf16\"` \| \w", train["precision"])
    assert "| `vocab_size` | int | `131072` |" in train["model.overrides"]  # HybridConfig fields under model.overrides
    for kind in ("classifiers train", "mixture", "pipeline"):
        assert _sections(config_reference_markdown(), kind)[""]


def test_mkdocs_hook_writes_the_reference_page(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("config_reference_hook", ROOT / "docs/hooks/config_reference.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    hook.on_pre_build({"docs_dir": str(tmp_path)})
    page = tmp_path / "reference" / "configuration.md"
    assert page.read_text() == config_reference_markdown()
    assert page.read_text().startswith("# Configuration reference\n")
