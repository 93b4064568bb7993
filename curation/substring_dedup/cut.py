"""The last pass of substring dedup: cut a shard's spans out of its texts, batch by batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.schema import TEXT
from curation.stage import StageResult, split_by_reason
from curation.substring_dedup.passes import END, ROW, START, spans_path

REASON = "substring_duplicate"


class SpanCutter:
    """Removes character spans [start, end) of rows of one shard; rows count across batches
    (as in `curation.stage.RowDropFilter`). The pieces left are joined as they are (the span is
    removed exactly, as Lee et al.'s tool removes bytes), so `bytes_removed` is the UTF-8 size of
    the spans. A cut text whose stripped length is under `min_doc_chars` (or nothing) is dropped
    as `substring_duplicate`; texts without spans pass untouched.
    """

    def __init__(self, name: str, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 min_doc_chars: int) -> None:
        self.name = name
        self.rows, self.starts, self.ends = rows, starts, ends  # sorted by row, then start
        self.min_doc_chars = min_doc_chars
        self._next_row = 0

    def run(self, table: pa.Table) -> StageResult:
        first_row = self._next_row
        self._next_row += table.num_rows
        begin, end = np.searchsorted(self.rows, [first_row, first_row + table.num_rows])
        reasons: list[str | None] = [None] * table.num_rows
        if begin == end:
            return dataclasses.replace(split_by_reason(table, reasons),
                                       counters={"spans_removed": 0, "bytes_removed": 0})
        texts = table[TEXT].to_pylist()
        bytes_removed = 0
        bounds = np.flatnonzero(np.diff(self.rows[begin:end])) + 1
        for members in np.split(np.arange(begin, end), bounds):  # one document at a time
            row = int(self.rows[members[0]]) - first_row
            text, kept, previous = texts[row], [], 0
            for start, stop in zip(self.starts[members].tolist(), self.ends[members].tolist()):
                kept.append(text[previous:start])
                bytes_removed += len(text[start:stop].encode("utf-8"))
                previous = stop
            kept.append(text[previous:])
            texts[row] = "".join(kept)
            if len(texts[row].strip()) < max(1, self.min_doc_chars):
                reasons[row] = REASON
        column = table.schema.get_field_index(TEXT)
        table = table.set_column(column, table.schema.field(column), pa.array(texts, table.schema.field(column).type))
        return dataclasses.replace(split_by_reason(table, reasons),
                                   counters={"spans_removed": int(end - begin), "bytes_removed": bytes_removed})


def load_span_cutter(work_dir: str, shard: int, min_doc_chars: int) -> SpanCutter:
    """The cutter of shard `shard`, from the spans file pass 5 wrote (called on the worker)."""
    spans = pq.read_table(spans_path(work_dir, shard), columns=[ROW, START, END])
    return SpanCutter("substring-dedup", spans[ROW].to_numpy(), spans[START].to_numpy(), spans[END].to_numpy(),
                      min_doc_chars)
