"""The `heuristics` stage: Gopher repetition, Gopher quality, then C4 (FineWeb's order in DataTrove)."""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.heuristics.arrays import to_bool
from curation.heuristics.c4 import C4_REASONS, c4_rules
from curation.heuristics.config import HeuristicsConfig
from curation.heuristics.gopher import (
    QUALITY_REASONS, REPETITION_REASONS, Parsed, Rule, quality_rules, repetition_rules,
)
from curation.schema import LANGUAGE, QUALITY_LEVEL, TEXT
from curation.stage import StageResult, split_by_reason

#: Every reason this stage can drop a document for, in the order the rules run.
DROP_REASONS = REPETITION_REASONS + QUALITY_REASONS + C4_REASONS
_REASON_CODE = {reason: code for code, reason in enumerate(DROP_REASONS, start=1)}


@functools.cache
def _reasons_by_code() -> pa.Array:
    """Reason strings by code, built on first use: pa.array loads pandas (0.5 s of imports that a
    command which only validates a config should not pay)."""
    return pa.array([None, *DROP_REASONS], pa.string())


def judged_rows(table: pa.Table, config: HeuristicsConfig) -> np.ndarray:
    """Rows the rules apply to: in a chosen language and a chosen quality level."""
    judged = np.ones(table.num_rows, dtype=bool)
    if config.languages is not None and LANGUAGE in table.column_names:
        judged &= to_bool(pc.is_in(table[LANGUAGE], pa.array(config.languages, pa.string())))
    levels = config.apply_to_quality_levels
    if isinstance(levels, tuple):  # `all`, and `auto` that no curate config resolved, judge every level
        if QUALITY_LEVEL not in table.column_names:
            raise ValueError(
                f"heuristics.apply_to_quality_levels lists levels but the table has no {QUALITY_LEVEL!r} column: "
                "run the classify stage first, or set apply_to_quality_levels to all"
            )
        judged &= to_bool(pc.is_in(table[QUALITY_LEVEL], pa.array(levels, pa.string())))
    return judged


def first_failure(rules: list[Rule], n_rows: int) -> np.ndarray:
    """Code (index in DROP_REASONS + 1) of each row's first failing rule; 0 when all pass."""
    code_N = np.zeros(n_rows, dtype=np.int16)
    for reason, fails_N in rules:
        code_N[(code_N == 0) & fails_N] = _REASON_CODE[reason]
    return code_N


class HeuristicFilter:
    """Drops documents failing a Gopher or C4 rule (reason: the first failing rule's name).

    Documents outside `config.languages` or `config.apply_to_quality_levels` pass unchanged.
    With C4 on, kept documents' `text` is rewritten to the lines the C4 line rules keep.
    """

    name = "heuristics"

    def __init__(self, config: HeuristicsConfig = HeuristicsConfig()) -> None:
        self.config = config

    def run(self, table: pa.Table) -> StageResult:
        judged_N = judged_rows(table, self.config)
        rows = np.flatnonzero(judged_N)
        code_N = np.zeros(table.num_rows, dtype=np.int16)
        if len(rows):
            text = table[TEXT].take(pa.array(rows)).combine_chunks()
            code_J, kept_text = self.judge(text)
            code_N[rows] = code_J
            if kept_text is not None:
                rewrite_N = judged_N & (code_N == 0)
                new_text = kept_text.filter(pa.array(code_J == 0)).cast(table.schema.field(TEXT).type)
                column = pc.replace_with_mask(table[TEXT].combine_chunks(), pa.array(rewrite_N), new_text)
                table = table.set_column(table.schema.get_field_index(TEXT), TEXT, column)
        return split_by_reason(table, _reasons_by_code().take(pa.array(code_N)))

    def judge(self, text: pa.Array) -> tuple[np.ndarray, pa.Array | None]:
        """Reason codes for these texts, and their C4-filtered texts (None when C4 is off)."""
        parsed = Parsed.from_text(text)
        rules: list[Rule] = []
        if self.config.gopher_repetition.enabled:
            rules += repetition_rules(parsed, self.config.gopher_repetition)
        if self.config.gopher_quality.enabled:
            rules += quality_rules(parsed, self.config.gopher_quality)
        kept_text = None
        if self.config.c4.enabled:
            c4, kept_text = c4_rules(parsed, self.config.c4)
            rules += c4
        return first_failure(rules, len(text)), kept_text
