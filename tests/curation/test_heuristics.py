"""Heuristics stage: each Gopher/C4 rule fires where expected on real text and crafted variants,
the vectorised repetition statistics match a plain-Python twin, and scoping passes rows through."""

from __future__ import annotations

import dataclasses
import glob
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curation.heuristics import (
    DROP_REASONS, C4Config, GopherQualityConfig, GopherRepetitionConfig, HeuristicFilter, HeuristicsConfig,
)
from curation.heuristics.gopher import PARAGRAPH_BREAK, Parsed, ngram_char_fractions, repetition_rules
from curation.schema import DROP_REASON, LANGUAGE

LICENSES = "/usr/share/common-licenses"
PYTHON_TUTORIAL = "/usr/share/doc/python3.11/html/_sources/tutorial"
OFF_QUALITY = GopherQualityConfig(enabled=False)
OFF_C4 = C4Config(enabled=False)


def unwrap(text: str) -> list[str]:
    """Paragraphs of a hard-wrapped plain-text file, each on one line (as extracted web text is)."""
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return [p for p in paragraphs if p]


@pytest.fixture(scope="module")
def gpl_paragraphs() -> list[str]:
    return unwrap(Path(f"{LICENSES}/GPL-3").read_text())


@pytest.fixture(scope="module")
def base(gpl_paragraphs: list[str]) -> list[str]:
    """The GPL-3 preamble: ten real paragraphs (~650 words) that pass every rule."""
    start = next(i for i, p in enumerate(gpl_paragraphs) if p.startswith("The GNU General Public License is a free"))
    return gpl_paragraphs[start:start + 10]


@pytest.fixture(scope="module")
def real_documents() -> dict[str, str]:
    """Licences and Python tutorial pages of this machine, paragraphs separated by blank lines."""
    paths = [f"{LICENSES}/{name}" for name in ("GPL-3", "Apache-2.0", "MPL-2.0", "LGPL-2.1", "GFDL-1.3")]
    paths += sorted(glob.glob(f"{PYTHON_TUTORIAL}/*.rst.txt"))
    assert len(paths) > 10, f"{PYTHON_TUTORIAL} is missing: apt-get install python3.11-doc"
    return {Path(p).name: "\n\n".join(unwrap(Path(p).read_text())) for p in paths}


def run(texts: list[str], config: HeuristicsConfig = HeuristicsConfig(), **columns: list) -> dict[str, str | None]:
    """Reason per document id ("d0", "d1", ...; None when kept), checking the accounting."""
    ids = [f"d{i}" for i in range(len(texts))]
    table = pa.table({"id": ids, "text": texts, **columns})
    result = HeuristicFilter(config).run(table)
    assert result.kept.num_rows + result.rejected.num_rows == table.num_rows
    assert result.kept.column_names == table.column_names
    assert set(result.rejected[DROP_REASON].to_pylist()) <= set(DROP_REASONS)
    reasons = dict(zip(result.rejected["id"].to_pylist(), result.rejected[DROP_REASON].to_pylist()))
    return {i: reasons.get(i) for i in ids}


def reason_of(text: str, config: HeuristicsConfig = HeuristicsConfig()) -> str | None:
    return run([text], config)["d0"]


# ---------------------------------------------------------------- the slow twin of the n-gram code


def reference_repetition(text: str) -> dict[str, float]:
    """Gopher repetition statistics, word by word in plain Python (the definitions, not fast)."""
    n_chars = len(text) or 1
    stats: dict[str, float] = {}
    paragraphs = [p.strip() for p in re.split(PARAGRAPH_BREAK, text.strip()) if p.strip()]
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    for unit, items in (("para", paragraphs), ("line", lines)):
        seen: set[str] = set()
        dups = [item for item in items if item in seen or seen.add(item)]
        stats[f"dup_{unit}_frac"] = len(dups) / len(items) if items else 0.0
        stats[f"dup_{unit}_char_frac"] = sum(map(len, dups)) / n_chars
    words = text.split()
    for n in range(2, 5):
        counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
        top = max(counts.values(), default=0)
        best = max((len(" ".join(g)) * c for g, c in counts.items() if c == top), default=0)
        stats[f"top_{n}gram"] = best / n_chars if top >= 2 else 0.0
    for n in range(5, 11):
        seen_grams: set[tuple[str, ...]] = set()
        covered = [False] * len(words)
        for i in range(len(words) - n + 1):
            gram = tuple(words[i:i + n])
            if gram in seen_grams:
                covered[i:i + n] = [True] * n
            seen_grams.add(gram)
        chars = sum(len(w) for w, c in zip(words, covered) if c)
        spaces = sum(1 for i in range(1, len(words)) if covered[i] and covered[i - 1])
        stats[f"dup_{n}gram"] = (chars + spaces) / n_chars
    return stats


def repetitive_variants(base: list[str]) -> list[str]:
    text = "\n".join(base)
    words = text.split()
    return [
        text,
        "\n\n".join(base + base[2:5]),
        text + " " + " ".join(words[40:200]),
        " ".join(words[:30] * 4),
        "\n".join(base[:3] * 3 + ["Share this page.", "Share this page."]),
        " ".join(w + " big data" for w in words[:120]),
        "word " * 40,
        "one two",
        "",
    ]


def test_vectorised_repetition_matches_plain_python(base: list[str], real_documents: dict[str, str]) -> None:
    texts = list(real_documents.values()) + repetitive_variants(base)
    parsed = Parsed.from_text(pa.array(texts))
    fast = ngram_char_fractions(parsed, [2, 3, 4], [5, 6, 7, 8, 9, 10])
    for i, text in enumerate(texts):
        slow = reference_repetition(text)
        for n in range(2, 11):
            kind = "top" if n <= 4 else "dup"
            assert fast[n][i] == pytest.approx(slow[f"{kind}_{n}gram"], abs=1e-12), (i, n)
    # duplicate lines and paragraphs: each fraction alone decides its rule
    for name in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"):
        for threshold in (0.0, 0.05, 0.2):
            fields = {f"max_{other}": None for other in ("dup_para_frac", "dup_para_char_frac",
                                                          "dup_line_frac", "dup_line_char_frac")}
            config = GopherRepetitionConfig(**fields | {f"max_{name}": threshold},
                                            top_ngram_max_char_frac={}, dup_ngram_max_char_frac={})
            (reason, fails), = repetition_rules(parsed, config)
            expected = [reference_repetition(t)[name] > threshold for t in texts]
            assert reason == f"gopher_{name}" and fails.tolist() == expected, (name, threshold)


# ---------------------------------------------------------------------------- real documents pass


def test_real_documents_are_kept_and_c4_rewrites_their_lines(real_documents: dict[str, str]) -> None:
    kept_names = ["GPL-3", "Apache-2.0", "MPL-2.0", "LGPL-2.1", "GFDL-1.3", "appetite.rst.txt",
                  "interpreter.rst.txt", "errors.rst.txt", "classes.rst.txt"]
    texts = [real_documents[name] for name in kept_names]
    assert set(run(texts).values()) == {None}
    result = HeuristicFilter().run(pa.table({"text": texts}))
    for before, after in zip(texts, result.kept["text"].to_pylist()):
        assert 0 < len(after) < len(before) and "\n\n" not in after  # C4 dropped headings and blank lines
    unchanged = HeuristicFilter(HeuristicsConfig(c4=OFF_C4)).run(pa.table({"text": texts}))
    assert unchanged.kept["text"].to_pylist() == texts


def test_code_heavy_tutorial_pages_hit_the_curly_bracket_rule(real_documents: dict[str, str]) -> None:
    assert reason_of(real_documents["datastructures.rst.txt"]) == "c4_curly_bracket"
    config = HeuristicsConfig(c4=C4Config(filter_curly_bracket=False))
    assert reason_of(real_documents["datastructures.rst.txt"], config) is None


# -------------------------------------------------------------- one crafted variant per drop reason


def crafted(base: list[str]) -> dict[str, str]:
    """A degenerate document per reason, each passing every rule that runs before it."""
    text = "\n".join(base)
    words = text.split()
    long_paragraph = " ".join(words[:250])
    filler = [f"Paragraph {i} of the notice says that the user may read it." for i in range(8)]
    stop_words = {"the", "be", "to", "of", "and", "that", "have", "with"}
    return {
        "gopher_dup_para_frac": "\n\n".join(base + base[:5]),
        "gopher_dup_para_char_frac": "\n\n".join(base[:2] + [long_paragraph] + filler + [long_paragraph]),
        "gopher_dup_line_frac": "\n".join(base[:3] + ["Share this page."] * 2 + filler[:3] + ["Share this page."] * 3),
        "gopher_dup_line_char_frac": "\n".join(base[:2] + [long_paragraph] + filler + [long_paragraph]),
        "gopher_top_2gram": " ".join(f"{w} big data" for w in words[:200]) + ".",
        "gopher_top_3gram": " ".join(w + (" alpha omega delta" if i % 8 == 0 else "")
                                     for i, w in enumerate(words[:300])),
        "gopher_top_4gram": " ".join(w + (" alpha omega delta gamma" if i % 15 == 0 else "")
                                     for i, w in enumerate(words[:400])),
        "gopher_dup_5gram": text + " " + " ".join(words[100:260]),
        "gopher_short_doc": "This document is far too short to teach a model anything.",
        "gopher_mean_word_length": " ".join("".join(words[i:i + 3]) for i in range(0, len(words), 3)),
        "gopher_symbol_word_ratio": " ".join("#" + w if i % 5 == 0 else w for i, w in enumerate(words)),
        "gopher_bullet_lines": "\n".join("• " + s for s in re.split(r"(?<=\.)\s+", text)),
        "gopher_ellipsis_lines": "\n".join(s[:-1] + "..." if i % 2 else s
                                           for i, s in enumerate(re.split(r"(?<=\.)\s+", text))),
        "gopher_alpha_words": " ".join(f"{1000 + i} {w}" for i, w in enumerate(words)),
        "gopher_stop_words": " ".join(w for w in words if w.lower().strip(".,;:") not in stop_words),
        "c4_lorem_ipsum": text + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
        "c4_curly_bracket": text + "\nEach entry of the table is written as {key: value} in the file.",
        "c4_too_few_sentences": "\n".join([
            "Free software is a matter of liberty.", "Users run and study the program.",
            "Users share copies of the program.", "Users improve the program and share it.",
        ] + [p.rstrip(".") + " and more" for p in base]),
    }


@pytest.mark.parametrize("expected", [r for r in DROP_REASONS if r not in {
    "gopher_long_doc", "gopher_dup_6gram", "gopher_dup_7gram", "gopher_dup_8gram", "gopher_dup_9gram",
    "gopher_dup_10gram", "c4_empty_after_line_filter"}])
def test_each_crafted_document_drops_for_its_own_reason(base: list[str], expected: str) -> None:
    documents = crafted(base)
    assert reason_of("\n".join(base)) is None
    assert reason_of(documents[expected]) == expected


def test_reasons_need_their_own_config_to_fire(base: list[str]) -> None:
    text = "\n".join(base)
    words = text.split()
    long_doc = HeuristicsConfig(gopher_quality=GopherQualityConfig(max_doc_words=100))
    assert reason_of(text, long_doc) == "gopher_long_doc"
    repeated = text + " " + " ".join(words[100:260])
    for n in range(5, 11):
        only_n = GopherRepetitionConfig(dup_ngram_max_char_frac={n: 0.1})
        assert reason_of(repeated, HeuristicsConfig(gopher_repetition=only_n)) == f"gopher_dup_{n}gram"
    unpunctuated = "\n".join(p.rstrip(".") for p in base)
    assert reason_of(unpunctuated) == "c4_too_few_sentences"
    no_sentence_count = HeuristicsConfig(c4=C4Config(min_num_sentences=None))
    assert reason_of(unpunctuated, no_sentence_count) == "c4_empty_after_line_filter"
    assert reason_of(unpunctuated, HeuristicsConfig(c4=C4Config(filter_no_terminal_punct=False))) is None


def test_switching_a_rule_off_keeps_its_documents(base: list[str]) -> None:
    documents = crafted(base)
    quality = GopherQualityConfig(min_alpha_words_ratio=None, max_symbol_word_ratio=None, min_stop_words=None)
    config = HeuristicsConfig(gopher_quality=quality)
    for reason in ("gopher_alpha_words", "gopher_symbol_word_ratio", "gopher_stop_words"):
        assert reason_of(documents[reason], config) is None, reason
    lorem = HeuristicsConfig(c4=C4Config(filter_lorem_ipsum=False))
    assert reason_of(documents["c4_lorem_ipsum"], lorem) is None
    off = HeuristicsConfig(gopher_repetition=GopherRepetitionConfig(enabled=False), gopher_quality=OFF_QUALITY)
    assert reason_of(documents["gopher_dup_para_frac"], off) is None


def test_first_failing_rule_wins_in_datatrove_order(base: list[str]) -> None:
    # repeated paragraphs *and* lorem ipsum: Gopher repetition runs before C4
    text = "\n\n".join(base + base[:6]) + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit."
    assert reason_of(text) == "gopher_dup_para_frac"
    no_repetition = HeuristicsConfig(gopher_repetition=GopherRepetitionConfig(enabled=False))
    assert reason_of(text, no_repetition) == "c4_lorem_ipsum"
    # C4 judges lines in order: the first of a curly bracket and "lorem ipsum" decides
    curly_first = "\n".join(base[:5] + ["Write it as {key: value} in the file.", "Lorem ipsum dolor sit amet."])
    assert reason_of(curly_first) == "c4_curly_bracket"


def test_c4_line_rules_remove_lines_from_kept_documents(base: list[str]) -> None:
    noise = [
        "Please enable JavaScript to view the comments powered by Disqus.",
        "This site uses cookies to improve your experience.",
        "Home | About | Contact",
        "Ok.",
        "Read the " + "x" * 1200 + " file.",
        "Curly {brackets} are fine on a line that is dropped anyway, like this one with javascript.",
    ]
    text = "\n".join(base[:4] + noise + base[4:8]).replace("freedoms that you", "freedoms[1] that you")
    result = HeuristicFilter().run(pa.table({"text": [text]}))
    (kept,) = result.kept["text"].to_pylist()
    assert kept.split("\n") == base[:8]


# --------------------------------------------------------------------- who is judged, and config


def test_other_languages_pass_through_unchanged(base: list[str]) -> None:
    degenerate = "\n\n".join(base + base[:5])
    reasons = run([degenerate, degenerate, degenerate, "\n".join(base)], language=["en", "fr", None, "en"])
    assert reasons == {"d0": "gopher_dup_para_frac", "d1": None, "d2": None, "d3": None}
    every_language = HeuristicsConfig(languages=None)
    assert set(run([degenerate] * 2, every_language, language=["fr", "de"]).values()) == {"gopher_dup_para_frac"}
    table = pa.table({"text": ["\n".join(base), "Kurz."], LANGUAGE: ["de", "de"]})
    assert HeuristicFilter().run(table).kept.equals(table)  # not even C4's rewrite


def test_quality_levels_not_chosen_pass_through_unchanged(base: list[str]) -> None:
    config = HeuristicsConfig(apply_to_quality_levels=("medium", "low"))
    degenerate = "\n\n".join(base + base[:5])
    levels = ["high", "medium", "low", None]
    reasons = run([degenerate] * 4, config, quality_level=levels)
    assert reasons == {"d0": None, "d1": "gopher_dup_para_frac", "d2": "gopher_dup_para_frac", "d3": None}
    table = pa.table({"text": [degenerate, "\n".join(base)], "quality_level": ["high", "medium"]})
    kept = HeuristicFilter(config).run(table).kept["text"].to_pylist()
    assert kept == [degenerate, "\n".join(base)]  # C4 keeps every line of base
    with pytest.raises(ValueError, match="quality_level"):
        HeuristicFilter(config).run(pa.table({"text": [degenerate]}))


# ------------------------------------------- apply_to_quality_levels: auto, resolved by the curate config

CLASSIFY = {"classifiers": [{"name": "dclm", "path": "models/dclm.bin"}]}  # never loaded: the config is only validated
BELOW_HIGH = ("medium-high", "medium", "medium-low", "low")


def curated(path: Path | None = None, **overrides: object) -> HeuristicsConfig:
    """The heuristics section as the curate config resolves it."""
    from flows.config.curate import load_curate_config

    return load_curate_config(path, **overrides).heuristics


def test_auto_judges_the_levels_below_high_when_classify_runs_first() -> None:
    assert HeuristicsConfig().apply_to_quality_levels == "auto"
    assert curated(classify=CLASSIFY).apply_to_quality_levels == BELOW_HIGH
    assert curated(classify=CLASSIFY, stages=["classify", "heuristics"]).apply_to_quality_levels == BELOW_HIGH


def test_auto_is_all_without_classify() -> None:
    assert curated().apply_to_quality_levels == "all"  # no classifiers: the default stages leave classify out
    assert curated(classify=CLASSIFY, stages=["extract", "langid", "heuristics"]).apply_to_quality_levels == "all"


def test_explicit_levels_and_all_win_over_auto(tmp_path: Path) -> None:
    assert curated(classify=CLASSIFY, heuristics={"apply_to_quality_levels": ["low"]}).apply_to_quality_levels == ("low",)
    assert curated(classify=CLASSIFY, heuristics={"apply_to_quality_levels": "all"}).apply_to_quality_levels == "all"
    assert curated(heuristics={"apply_to_quality_levels": ["medium", "low"]}).apply_to_quality_levels == ("medium", "low")
    config = tmp_path / "curate.yaml"  # in a file: `all` set, then the field left out
    classify = "classify: {classifiers: [{name: dclm, path: models/dclm.bin}]}\n"
    config.write_text(classify + "heuristics: {apply_to_quality_levels: all}\n")
    assert curated(config).apply_to_quality_levels == "all"
    config.write_text(classify + "heuristics: {languages: [en]}\n")
    assert curated(config).apply_to_quality_levels == BELOW_HIGH


@pytest.mark.parametrize(("levels", "message"), [
    ("null", "heuristics.apply_to_quality_levels: give auto, all or a list of quality levels (all judges every level)"),
    ("[medium, meduim]", "heuristics.apply_to_quality_levels: unknown level(s) ['meduim']; choose from "
                         "['high', 'medium-high', 'medium', 'medium-low', 'low']"),
])
def test_null_and_unknown_levels_are_refused(tmp_path: Path, levels: str, message: str) -> None:
    """null is refused, not read as `all`: an override of None means "not given", so it would silently be `auto`."""
    from flows.config.curate import ConfigError

    config = tmp_path / "curate.yaml"
    config.write_text(f"heuristics: {{apply_to_quality_levels: {levels}}}\n")
    with pytest.raises(ConfigError) as err:
        curated(config)
    assert str(err.value) == f"{config}: {message}"


def test_after_classify_a_high_document_passes_and_lower_ones_are_judged(base: list[str]) -> None:
    """The same degenerate document (every paragraph repeated) at each level, with the curate config's own default."""
    config = curated(classify=CLASSIFY)
    degenerate = "\n\n".join(base + base[:5])
    levels = ["high", *BELOW_HIGH]
    reasons = run([degenerate] * 5, config, quality_level=levels)
    assert reasons == {"d0": None, "d1": "gopher_dup_para_frac", "d2": "gopher_dup_para_frac",
                       "d3": "gopher_dup_para_frac", "d4": "gopher_dup_para_frac"}
    kept = HeuristicFilter(config).run(pa.table({"text": [degenerate], "quality_level": ["high"]})).kept
    assert kept["text"].to_pylist() == [degenerate]  # not judged, so not even C4's line rewrite
    every_level = curated(classify=CLASSIFY, heuristics={"apply_to_quality_levels": "all"})
    assert set(run([degenerate] * 5, every_level, quality_level=levels).values()) == {"gopher_dup_para_frac"}
    assert run([degenerate], HeuristicsConfig()) == {"d0": "gopher_dup_para_frac"}  # auto unresolved: every document


def test_accounting_on_a_mixed_partition(base: list[str], real_documents: dict[str, str]) -> None:
    texts = list(real_documents.values()) + list(crafted(base).values()) + ["", "   ", "\n\n"]
    table = pa.table({"id": [str(i) for i in range(len(texts) + 1)], "text": texts + [None]})
    result = HeuristicFilter().run(table)
    assert result.kept.num_rows + result.rejected.num_rows == table.num_rows
    assert sorted(result.kept["id"].to_pylist() + result.rejected["id"].to_pylist()) == sorted(table["id"].to_pylist())
    assert result.dropped_counts()["gopher_short_doc"] == 5  # crafted short one, empty, 2 blank, null
    assert HeuristicFilter().run(table.slice(0, 0)).kept.num_rows == 0


def test_drop_reasons_are_stable_snake_case() -> None:
    assert len(set(DROP_REASONS)) == len(DROP_REASONS) == 25
    assert all(re.fullmatch(r"(gopher|c4)_[a-z0-9_]+", r) for r in DROP_REASONS)


@pytest.mark.parametrize(("section", "message"), [
    ({"gopher_repetition": {"max_dup_line_frac": 1.5}},
     "heuristics.gopher_repetition.max_dup_line_frac: Input should be less than or equal to 1"),
    ({"gopher_repetition": {"top_ngram_max_char_frac": {5: 0.1}}},
     "heuristics.gopher_repetition: top_ngram_max_char_frac: n=5 is not one of [2, 3, 4]"),
    ({"gopher_quality": {"min_doc_words": 500, "max_doc_words": 100}},
     "heuristics.gopher_quality: min_doc_words is above max_doc_words; swap them"),
    ({"gopher_quality": {"stop_words": []}}, "heuristics.gopher_quality: stop_words is empty"),
    ({"c4": {"min_num_sentences": 0}}, "heuristics.c4.min_num_sentences: Input should be greater than 0"),
    ({"c4": {"min_words_per_line": 2000}}, "heuristics.c4.min_words_per_line: Input should be less than or equal to 1000"),
    ({"languages": []}, "heuristics.languages: empty: use null"),
    ({"apply_to_quality_levels": []}, "heuristics.apply_to_quality_levels: give auto, all or a list of quality levels"),
    ({"apply_to_quality_levels": "high"}, "heuristics.apply_to_quality_levels: 'high' is not auto, all or a list"),
    ({"c4": {"min_word_count": 3}}, "heuristics.c4.min_word_count: Unexpected keyword argument"),
])
def test_bad_configs_say_how_to_fix(section: dict, message: str) -> None:
    """Through the curate loader the error is one line naming the field; built in code, the same reason."""
    from flows.config.curate import ConfigError, load_curate_config

    with pytest.raises(ConfigError) as err:
        load_curate_config(None, heuristics=section)
    assert str(err.value).startswith(f"config: {message}") and "\n" not in str(err.value)
    with pytest.raises(ValueError, match=re.escape(message.split(": ", 1)[1][:30])):
        HeuristicsConfig(**section)


def test_configs_are_frozen_and_keyword_only() -> None:
    with pytest.raises(ValueError, match="Unexpected positional argument"):
        HeuristicsConfig(None)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        HeuristicsConfig().languages = None  # type: ignore[misc]
    assert HeuristicFilter.name == "heuristics"
    assert np.array_equal(np.sort(list(GopherRepetitionConfig().dup_ngram_max_char_frac)), np.arange(5, 11))
