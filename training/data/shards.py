"""Token shards on disk: their footer metadata, globs, and the rows a component selects.

A token shard (written by `ccforge tokenize`) has `input_ids: list<int32>` plus `id`, `source`,
`quality_level`, `synthetic_kind`, `n_bytes` (shards made before it was added lack it), and
JSON footer metadata under `TOKENS_METADATA_KEY` with the special ids and the docs/tokens of
every (source, quality_level, synthetic_kind) group. Planning a mixture reads only footers; the
loader reads one row group at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.data.heldout import ID, Holdout

#: Footer key written by curation.tokens (training never imports curation: DESIGN.md).
TOKENS_METADATA_KEY = b"ccforge.tokens"
INPUT_IDS = "input_ids"
N_BYTES = "n_bytes"  # UTF-8 bytes of a document's text
FILTER_COLUMNS = {"sources": "source", "quality_levels": "quality_level", "synthetic_kinds": "synthetic_kind"}


class ShardError(ValueError):
    """A token shard that cannot be used; the message names the file."""


@dataclass(frozen=True)
class TokenShard:
    """One token shard's footer: row groups, special ids, and group counts."""

    path: str
    num_row_groups: int
    eos_id: int | None
    add_eos: bool
    groups: tuple[dict, ...]
    tokenizer: str | None = None  # the tokenizer directory `ccforge tokenize` used
    vocab_size: int | None = None


def expand_shards(pattern: str) -> list[str]:
    """Files matching a path, directory or glob (any fsspec URL), sorted; [] when none."""
    fs, path = fsspec.core.url_to_fs(pattern)
    if any(ch in path for ch in "*?["):
        found = fs.glob(path)
    elif fs.isdir(path):
        found = fs.glob(path.rstrip("/") + "/*.parquet")
    else:
        found = [path] if fs.exists(path) else []
    found = sorted(p for p in found if p.endswith(".parquet"))
    return [fs.unstrip_protocol(p) for p in found] if "://" in pattern else found


def open_shard(path: str) -> pq.ParquetFile:
    if "://" in path:
        return pq.ParquetFile(fsspec.open(path, "rb").open())
    return pq.ParquetFile(path)


def read_token_shard(path: str) -> TokenShard:
    """The footer of a token shard, without reading any tokens."""
    try:
        metadata = open_shard(path).metadata
    except (OSError, pa.ArrowInvalid) as err:
        raise ShardError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from err
    raw = (metadata.metadata or {}).get(TOKENS_METADATA_KEY)
    if raw is None:
        raise ShardError(f"{path}: not a token shard (no {TOKENS_METADATA_KEY.decode()} footer; "
                         "make token shards with `ccforge tokenize`)")
    info = json.loads(raw)
    return TokenShard(path=path, num_row_groups=metadata.num_row_groups, eos_id=info.get("eos_id"),
                      add_eos=bool(info.get("add_eos")), groups=tuple(info["groups"]),
                      tokenizer=info.get("tokenizer"), vocab_size=info.get("vocab_size"))


@dataclass(frozen=True)
class RowFilter:
    """Which documents a component takes: a list of accepted values per column (None: any).

    A null in a list matches null values, e.g. `synthetic_kinds: [null]` keeps real documents.
    With a `holdout`, only the documents on its side of the held-out split.
    """

    sources: tuple[str | None, ...] | None = None
    quality_levels: tuple[str | None, ...] | None = None
    synthetic_kinds: tuple[str | None, ...] | None = None
    holdout: Holdout | None = None

    def _accepted(self) -> dict[str, tuple[str | None, ...]]:
        return {FILTER_COLUMNS[name]: getattr(self, name) for name in FILTER_COLUMNS if getattr(self, name) is not None}

    @property
    def columns(self) -> list[str]:
        """Columns the mask reads besides `input_ids`."""
        return list(self._accepted()) + ([ID] if self.holdout else [])

    def matches_group(self, group: dict) -> bool:
        return all(group.get(column) in values for column, values in self._accepted().items())

    def mask(self, table: pa.Table) -> np.ndarray:
        """Rows of `table` (its `input_ids` and `columns`) this filter keeps, as a boolean array."""
        keep = np.ones(table.num_rows, dtype=bool) if self.holdout is None else self.holdout.mask(table, INPUT_IDS)
        for column, values in self._accepted().items():
            strings = [v for v in values if v is not None]
            hit = pc.is_in(table[column], value_set=pa.array(strings, pa.string()))
            hit = pc.fill_null(hit, False).to_numpy(zero_copy_only=False)
            if None in values:
                hit |= pc.is_null(table[column]).to_numpy(zero_copy_only=False)
            keep &= hit
        return keep

    def describe(self) -> str:
        return ", ".join(f"{name}={list(getattr(self, name))}" for name in FILTER_COLUMNS
                         if getattr(self, name) is not None) or "all documents"


def stream_tokens(shards: list[TokenShard], row_filter: RowFilter) -> tuple[int, int]:
    """(documents, tokens) a component draws from: stored tokens plus any EOS the loader appends."""
    docs = tokens = 0
    for shard in shards:
        for group in shard.groups:
            if row_filter.matches_group(group):
                docs += group["docs"]
                tokens += group["tokens"] + (0 if shard.add_eos else group["docs"])
    return docs, tokens


@dataclass(frozen=True)
class RowGroupTokens:
    """The selected documents of one row group: flat token values and per-document offsets."""

    values: np.ndarray  # int32, all documents' tokens back to back
    offsets: np.ndarray  # int64, len(rows) + 1; document i is values[offsets[i]:offsets[i + 1]]
    n_bytes: np.ndarray | None  # UTF-8 bytes of each document's text; None: the shard does not record them

    @property
    def num_docs(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]


def read_row_group_tokens(shard: pq.ParquetFile, row_group: int, row_filter: RowFilter) -> RowGroupTokens:
    """Read one row group (only `input_ids`, `n_bytes` and the filter columns) and keep the selected rows."""
    with_bytes = N_BYTES in shard.schema_arrow.names
    columns = [INPUT_IDS, *row_filter.columns] + ([N_BYTES] if with_bytes else [])
    table = shard.read_row_group(row_group, columns=columns)
    if row_filter.columns:
        table = table.filter(pa.array(row_filter.mask(table)))
    ids = table[INPUT_IDS].combine_chunks()
    offsets = ids.offsets.to_numpy().astype(np.int64)
    values = ids.values.to_numpy()[offsets[0]:offsets[-1]]
    n_bytes = table[N_BYTES].to_numpy() if with_bytes else None
    return RowGroupTokens(values=values, offsets=offsets - offsets[0], n_bytes=n_bytes)
