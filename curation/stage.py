"""The stage contract: a stage maps one Arrow table to the rows it keeps and the rows it drops.

Every dropped row carries a stable snake_case reason; counting happens in one place
(`StageStats`) so that ``docs_in == docs_out + sum(dropped)`` holds for every stage.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.schema import DROP_REASON, LANGUAGE, TEXT


@dataclass(frozen=True)
class StageResult:
    """Rows a stage kept, and rows it dropped with a `drop_reason` column."""

    kept: pa.Table
    rejected: pa.Table
    #: Stage-specific totals beside the document counts (e.g. spans and bytes a cut removed).
    counters: dict[str, int] = field(default_factory=dict)

    def dropped_counts(self) -> dict[str, int]:
        if self.rejected.num_rows == 0:
            return {}
        counts = pc.value_counts(self.rejected[DROP_REASON]).to_pylist()
        return {c["values"]: int(c["counts"]) for c in counts}


class Stage(Protocol):
    """A per-partition stage. `name` is the directory it writes under WORKDIR."""

    name: str

    def run(self, table: pa.Table) -> StageResult: ...


def split_by_reason(table: pa.Table, reasons: pa.Array | list[str | None]) -> StageResult:
    """Split `table` by a per-row reason: null keeps the row, a string drops it with that reason."""
    reasons = pa.array(reasons, type=pa.string()) if not isinstance(reasons, pa.Array) else reasons
    if len(reasons) != table.num_rows:
        raise ValueError(f"got {len(reasons)} reasons for {table.num_rows} rows")
    keep = pc.is_null(reasons)
    kept = table.filter(keep)
    rejected = table.filter(pc.invert(keep)).append_column(DROP_REASON, reasons.filter(pc.invert(keep)))
    return StageResult(kept=kept, rejected=rejected)


def text_bytes(table: pa.Table) -> int:
    """UTF-8 bytes of the text column (0 when the table has none)."""
    if TEXT not in table.column_names or table.num_rows == 0:
        return 0
    return int(pc.sum(pc.binary_length(table[TEXT])).as_py() or 0)


@dataclass
class StageStats:
    """Counts of one stage (or one shard of it); shards add up with `+`."""

    name: str
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Documents out per language, when the output has a `language` column.
    languages: dict[str, int] = field(default_factory=dict)
    #: One line per input file that could not be read whole (file-level errors).
    errors: list[str] = field(default_factory=list)
    #: Stage-specific totals (`StageResult.counters`), summed over batches and shards.
    counters: dict[str, int] = field(default_factory=dict)

    def add_result(self, docs_in: int, bytes_in: int, result: StageResult) -> None:
        self.docs_in += docs_in
        self.bytes_in += bytes_in
        self.docs_out += result.kept.num_rows
        self.bytes_out += text_bytes(result.kept)
        self.dropped = dict(Counter(self.dropped) + Counter(result.dropped_counts()))
        self.counters = _add_counts(self.counters, result.counters)
        if LANGUAGE in result.kept.column_names and result.kept.num_rows:
            counts = {c["values"]: int(c["counts"]) for c in pc.value_counts(result.kept[LANGUAGE]).to_pylist()}
            self.languages = dict(Counter(self.languages) + Counter(counts))

    def __add__(self, other: StageStats) -> StageStats:
        return StageStats(
            name=self.name,
            docs_in=self.docs_in + other.docs_in,
            docs_out=self.docs_out + other.docs_out,
            bytes_in=self.bytes_in + other.bytes_in,
            bytes_out=self.bytes_out + other.bytes_out,
            dropped=dict(Counter(self.dropped) + Counter(other.dropped)),
            seconds=self.seconds + other.seconds,
            languages=dict(Counter(self.languages) + Counter(other.languages)),
            errors=self.errors + other.errors,
            counters=_add_counts(self.counters, other.counters),
        )

    def check_accounting(self) -> None:
        """Raise if a document went missing: every input is kept or dropped with a reason."""
        if self.docs_in != self.docs_out + sum(self.dropped.values()):
            raise RuntimeError(
                f"stage {self.name}: {self.docs_in} docs in but {self.docs_out} out "
                f"+ {sum(self.dropped.values())} dropped"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {
            "dropped": dict(sorted(self.dropped.items())),
            "languages": dict(sorted(self.languages.items(), key=lambda kv: (-kv[1], kv[0]))),
        }

    @classmethod
    def from_dict(cls, data: dict) -> StageStats:
        """The counts of `to_dict` output; a stage's stats.json may hold its own sections beside them."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def _add_counts(first: dict[str, int], second: dict[str, int]) -> dict[str, int]:
    """Key-wise sum that keeps zero counts (Counter addition drops them)."""
    return {key: first.get(key, 0) + second.get(key, 0) for key in sorted({*first, *second})}


def rows_digest(rows: np.ndarray) -> str:
    """A digest of a set of row numbers (a global pass's decision for one shard: the rows it drops)."""
    return hashlib.sha256(np.sort(np.asarray(rows, dtype=np.int64)).tobytes()).hexdigest()[:16]


class RowDropFilter:
    """Drops the rows of one shard at the given positions (a global stage's last pass).

    Called on consecutive batches of the shard; row positions continue across calls.
    """

    def __init__(self, name: str, reason: str, rows: np.ndarray) -> None:
        self.name = name
        self.reason = reason
        self.rows = np.sort(np.asarray(rows, dtype=np.int64))
        self._next_row = 0

    def run(self, table: pa.Table) -> StageResult:
        positions = np.arange(self._next_row, self._next_row + table.num_rows, dtype=np.int64)
        self._next_row += table.num_rows
        dropped = np.isin(positions, self.rows, assume_unique=True)
        return split_by_reason(table, pa.array(np.where(dropped, self.reason, None).tolist(), pa.string()))
