"""Every example config under examples/ validates with the loader of its kind, and the one
override rule behaves the same through every loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli.classifiers import load_annotate_config
from flows.cli.rephrase import load_rephrase_config
from flows.config.ablate import load_ablation_config
from flows.config.classifiers import load_classifiers_config
from flows.config.curate import ConfigError, load_curate_config
from flows.config.pipeline import load_pipeline_config
from training.data.mixture import MixtureError, load_mixture
from training.trainer.config import TrainConfigError, load_train_config
from training.yaml_config import merge_overrides

EXAMPLES = Path(__file__).parents[2] / "examples"
LOADERS = {"curate.yaml": load_curate_config, "classifiers.yaml": load_classifiers_config, "mixture.yaml": load_mixture,
           "train.yaml": load_train_config, "pipeline.yaml": load_pipeline_config, "rephrase.yaml": load_rephrase_config,
           "long-context.yaml": load_train_config, "annotate.yaml": load_annotate_config, "long-context-mixture.yaml": load_mixture,
           "nemotron-cc.yaml": load_curate_config, "nemotron-cc-mixture.yaml": load_mixture,
           # its base mixture is the quick start's output
           "ablation.yaml": lambda path: load_ablation_config(path, check_mixtures=False)}


def test_every_example_has_a_loader() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(LOADERS)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_example_validates(name: str) -> None:
    assert LOADERS[name](EXAMPLES / name) is not None


def test_overrides_merge_one_way_in_every_loader() -> None:
    curate = load_curate_config(EXAMPLES / "curate.yaml", fuzzy_dedup={"threshold": 0.7}, **{"langid.min_score": 0.5},
                                strict=None)
    example = load_curate_config(EXAMPLES / "curate.yaml")
    assert curate.fuzzy_dedup.threshold == 0.7 and curate.fuzzy_dedup.bands == example.fuzzy_dedup.bands
    assert curate.langid.min_score == 0.5 and curate.strict == example.strict
    classifiers = load_classifiers_config(EXAMPLES / "classifiers.yaml", **{"training_set.max_docs_per_source": 7})
    assert classifiers.training_set.max_docs_per_source == 7 and len(classifiers.training_set.sources) > 1
    mixture = load_mixture(EXAMPLES / "mixture.yaml", {"seq_len": 64})
    assert mixture.seq_len == 64 and mixture.components == load_mixture(EXAMPLES / "mixture.yaml").components
    train = load_train_config(EXAMPLES / "train.yaml", {"precision.recipe": "fp8", "optimizer": {"lr": 1e-3}})
    assert train.precision.recipe == "fp8" and train.optimizer.lr == 1e-3 and train.optimizer.eps == 1e-8
    pipeline = load_pipeline_config(EXAMPLES / "pipeline.yaml", **{"workdir": "elsewhere", "training.train.max_steps": 4})
    assert pipeline.workdir == Path("elsewhere") and pipeline.curate.workdir == str(Path("elsewhere") / "curation")
    assert pipeline.training.train["max_steps"] == 4  # `ccforge pipeline --max-steps 4`
    assert pipeline.training.train["checkpoint"] == load_pipeline_config(EXAMPLES / "pipeline.yaml").training.train["checkpoint"]


def test_merge_rule() -> None:
    data = {"a": {"b": 1, "c": {"d": 2}}, "n": {5: 0.1}, "x": 1}
    merged = merge_overrides(data, {"a.c.d": 3, "a.e": None, "x": None, "n": {6: 0.2}, "s": {"t": None},
                                    "p.q": {"r.s": 1}})
    assert merged == {"a": {"b": 1, "c": {"d": 3}}, "n": {5: 0.1, 6: 0.2}, "x": 1, "p": {"q": {"r.s": 1}}}
    assert data == {"a": {"b": 1, "c": {"d": 2}}, "n": {5: 0.1}, "x": 1}  # the file's mapping is not changed


@pytest.mark.parametrize(("name", "error", "overrides", "message"), [
    ("curate.yaml", ConfigError, {"fuzzy_dedup.threshold": 2}, "fuzzy_dedup.threshold: Input should be less than or equal to 1"),
    ("curate.yaml", ConfigError, {"rephrase.temperature": 3}, "rephrase.temperature: Input should be less than or equal to 2"),
    ("curate.yaml", ConfigError, {"fuzzy_dedup": {"bands": 10, "rows": 2, "recall_rows": 30}},
     "fuzzy_dedup: recall_rows must be between 1 and bands x rows, got 30"),
    ("curate.yaml", ConfigError, {"heuristics.c4.min_word_count": 3}, "heuristics.c4.min_word_count: Unexpected keyword"),
    ("classifiers.yaml", ConfigError, {"classifiers": [{"name": "Bad-Name", "kind": "fasttext"}]},
     "classifiers.0.name: classifier name 'Bad-Name' must be lower-case letters, digits and _"),
    ("mixture.yaml", MixtureError, {"components.web-high.weight": -1}, "components.web-high.weight: Input should be greater"),
    ("train.yaml", TrainConfigError, {"model.overrides": {"chunk_size": 0}},
     "model: overrides.chunk_size: Input should be greater than or equal to 1"),
])
def test_one_error_format(name: str, error: type[Exception], overrides: dict, message: str) -> None:
    """`FILE: field.path: message` on one line, whichever loader and whichever kind of check."""
    load, path = LOADERS[name], EXAMPLES / name
    with pytest.raises(error) as err:
        load(path, overrides) if name in ("mixture.yaml", "train.yaml") else load(path, **overrides)
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)
