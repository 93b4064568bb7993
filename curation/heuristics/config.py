"""Configs of the heuristics stage: one keyword-only dataclass per rule family.

A threshold set to None switches that one rule off; `enabled: false` switches off a family.
Defaults are the published values, cited next to each constant.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

#: Gopher's stop words (Rae et al. 2021, appendix A.1.1): an English document has at least two.
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")

#: Rae et al. 2021, table A1: max fraction of characters in the most frequent n-gram.
GOPHER_TOP_NGRAM_CHAR_FRAC = {2: 0.20, 3: 0.18, 4: 0.16}
#: Rae et al. 2021, table A1: max fraction of characters in all duplicated n-grams.
GOPHER_DUP_NGRAM_CHAR_FRAC = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}

#: C4 line filter "policy" phrases (DataTrove C4QualityFilter, after the TFDS c4_utils code).
C4_POLICY_SUBSTRINGS = (
    "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies",
)


#: A threshold in [0, 1]; null switches its rule off.
Fraction = Annotated[float, Field(ge=0, le=1)] | None
#: A positive count or length; null switches its rule off.
PositiveInt = Annotated[int, Field(gt=0)] | None
PositiveFloat = Annotated[float, Field(gt=0)] | None


def _not_empty(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise ValueError("empty: use null to judge every document")
    return values


#: Names a rule applies to; null applies it to every document (an empty list would judge none).
Names = Annotated[tuple[str, ...], AfterValidator(_not_empty)] | None


def _quality_levels(value: object) -> object:
    # One clear error for every wrong value; null is refused because an override of None means "not given"
    # (training.yaml_config.merge_overrides), so `null` in a pipeline's curate section would silently be `auto`.
    if value is None or (isinstance(value, (list, tuple)) and not value):
        raise ValueError("give auto, all or a list of quality levels (all judges every level)")
    if isinstance(value, str) and value not in ("auto", "all"):
        raise ValueError(f"{value!r} is not auto, all or a list of quality levels")
    return value


#: `auto`, `all` or the quality levels judged (see `HeuristicsConfig`).
QualityLevels = Annotated[Literal["auto", "all"] | tuple[str, ...], BeforeValidator(_quality_levels)]


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class GopherRepetitionConfig:
    """Gopher repetition removal (Rae et al. 2021, appendix A.1.1 and table A1).

    Lines and paragraphs are compared after trimming whitespace; blank lines are not lines
    (extracted text separates paragraphs with blank lines, which would otherwise all count as
    duplicates). Words are whitespace-separated tokens. An n-gram seen once is no repetition:
    the top n-gram rules only look at n-grams that occur at least twice.
    """

    enabled: bool = True  # false switches off the whole family
    max_dup_para_frac: Fraction = 0.30  # table A1, duplicate paragraph fraction
    max_dup_para_char_frac: Fraction = 0.20  # table A1, duplicate paragraph character fraction
    max_dup_line_frac: Fraction = 0.30  # table A1, duplicate line fraction
    max_dup_line_char_frac: Fraction = 0.20  # table A1, duplicate line character fraction
    #: n (2..4) -> max fraction of characters in the most frequent n-gram (table A1)
    top_ngram_max_char_frac: dict[int, Annotated[float, Field(ge=0, le=1)]] = field(
        default_factory=lambda: dict(GOPHER_TOP_NGRAM_CHAR_FRAC))
    #: n (5..10) -> max fraction of characters in duplicated n-grams (table A1)
    dup_ngram_max_char_frac: dict[int, Annotated[float, Field(ge=0, le=1)]] = field(
        default_factory=lambda: dict(GOPHER_DUP_NGRAM_CHAR_FRAC))

    @model_validator(mode="after")
    def _known_ngram_sizes(self) -> GopherRepetitionConfig:
        for name, allowed in (("top_ngram_max_char_frac", range(2, 5)), ("dup_ngram_max_char_frac", range(5, 11))):
            unknown = [n for n in getattr(self, name) if n not in allowed]
            if unknown:
                raise ValueError(f"{name}: n={unknown[0]} is not one of {list(allowed)} "
                                 "(each n has its own drop reason); remove it")
        return self


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class GopherQualityConfig:
    """Gopher quality filters (Rae et al. 2021, appendix A.1.1), DataTrove GopherQualityFilter defaults.

    Words are whitespace tokens with surrounding punctuation trimmed; tokens that are only
    punctuation are not words. The stop-word and alphabetic-word rules are English-specific
    (see `HeuristicsConfig.languages`).
    """

    enabled: bool = True  # false switches off the whole family
    min_doc_words: PositiveInt = 50  # "fewer than 50 ... words"
    max_doc_words: PositiveInt = 100_000  # "... or greater than 100,000 words"
    min_mean_word_length: PositiveFloat = 3.0  # "mean word length is outside the range of 3 to 10 characters"
    max_mean_word_length: PositiveFloat = 10.0
    max_symbol_word_ratio: PositiveFloat = 0.1  # "symbol-to-word ratio greater than 0.1" for '#' and '...'
    max_bullet_lines_ratio: Fraction = 0.9  # "more than 90% of lines starting with a bullet point"
    max_ellipsis_lines_ratio: Fraction = 0.3  # "more than 30% ending with an ellipsis"
    min_alpha_words_ratio: Fraction = 0.8  # "80% of words ... contain at least one alphabetic character"
    min_stop_words: PositiveInt = 2  # "at least two of the following English words"
    stop_words: tuple[str, ...] = GOPHER_STOP_WORDS  # Gopher's eight English stop words

    @model_validator(mode="after")
    def _consistent(self) -> GopherQualityConfig:
        if None not in (self.min_doc_words, self.max_doc_words) and self.min_doc_words > self.max_doc_words:
            raise ValueError("min_doc_words is above max_doc_words; swap them")
        if None not in (self.min_mean_word_length, self.max_mean_word_length) and (
            self.min_mean_word_length > self.max_mean_word_length
        ):
            raise ValueError("min_mean_word_length is above max_mean_word_length; swap them")
        if self.min_stop_words is not None and not self.stop_words:
            raise ValueError("stop_words is empty: list words or set min_stop_words to null")
        return self


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class C4Config:
    """C4 rules (Raffel et al. 2020, section 2.2) with DataTrove C4QualityFilter defaults: all on.

    Line rules remove lines and rewrite `text` (kept lines, trimmed, joined by newlines):
    `max_word_length`, `remove_citations`, `filter_no_terminal_punct`, `min_words_per_line`,
    `filter_javascript`, `filter_policy`. Document rules drop the document, judged on the
    lines the earlier line rules kept, in line order: `filter_lorem_ipsum`,
    `filter_curly_bracket`, `min_num_sentences`.
    """

    enabled: bool = True  # false switches off the whole family
    max_word_length: PositiveInt = 1000  # TFDS c4_utils: drop lines with a word longer than this
    remove_citations: bool = True  # strip Wikipedia-style "[1]", "[edit]", "[citation needed]"
    filter_no_terminal_punct: bool = True  # "only retained lines that ended in a terminal punctuation mark"
    min_words_per_line: Annotated[int, Field(gt=0, le=1000)] | None = 3  # "only retained lines that contained at least 3 words"
    filter_lorem_ipsum: bool = True  # "removed any page where the phrase 'lorem ipsum' appeared"
    filter_javascript: bool = True  # "removed any line with the word Javascript"
    filter_curly_bracket: bool = True  # "removed any pages that contained a curly bracket"
    filter_policy: bool = True  # TFDS c4_utils: lines about cookies and terms of use
    min_num_sentences: PositiveInt = 5  # "discarded any page with fewer than 5 sentences"


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class HeuristicsConfig:
    """Which documents the heuristics judge, and the three rule families.

    - `languages`: documents whose `language` column (from langid) is in this tuple get the
      rules; every other document passes unchanged. The rules are English rules (Gopher's stop
      words and alphabetic-word ratio; Nemotron-CC is English-only), so the default is ("en",);
      null applies them to every document. Without a `language` column every document is judged;
      a null language is not in the tuple, so it passes.
    - `apply_to_quality_levels`: a tuple judges only documents whose `quality_level` is in it (the
      column must then exist); `all` judges every level. `auto` (the default) is resolved by the
      curate config (`flows.config.curate`): every level below `high` when its stages run classify
      before heuristics (Nemotron-CC does not filter its high-quality documents with heuristics),
      `all` otherwise. A stage built outside a curate config treats `auto` as `all`.
    """

    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    gopher_quality: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    c4: C4Config = field(default_factory=C4Config)
    languages: Names = ("en",)  # languages judged; others pass; null: every document
    #: quality levels judged; all: every level; auto: below high after classify, else all
    apply_to_quality_levels: QualityLevels = "auto"
