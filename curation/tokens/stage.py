"""The tokenize stage: curated documents (an Arrow table) to token rows, and their counts.

Token shards carry `input_ids: list<int32>` plus `id`, `source`, `quality_level`,
`synthetic_kind`, `n_tokens` (DESIGN.md, "Tokens") and `n_bytes`, the UTF-8 bytes of the text
the tokens encode (bits per byte, a tokenizer-independent evaluation metric, divides by them:
`training.trainer.evaluation`). Their footer holds JSON under
`TOKENS_METADATA_KEY`: the tokenizer's special ids and the token counts of every
(source, quality_level, synthetic_kind) group, so mixtures are planned without reading tokens.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field
from pydantic import dataclasses as pydantic_dataclasses

from curation.schema import ID, INPUT_IDS, N_TOKENS, QUALITY_LEVEL, SOURCE, SYNTHETIC_KIND, TEXT
from curation.tokens.tokenizer import LoadedTokenizer, load_tokenizer

GROUP_KEYS = (SOURCE, QUALITY_LEVEL, SYNTHETIC_KIND)
N_BYTES = "n_bytes"
#: Footer key of token shards; training.data.shards reads the same key.
TOKENS_METADATA_KEY = "ccforge.tokens"

TOKEN_SCHEMA = pa.schema([
    pa.field(ID, pa.string()),
    pa.field(SOURCE, pa.string()),
    pa.field(QUALITY_LEVEL, pa.string()),
    pa.field(SYNTHETIC_KIND, pa.string()),
    pa.field(N_TOKENS, pa.int32()),
    pa.field(N_BYTES, pa.int32()),
    pa.field(INPUT_IDS, pa.list_(pa.int32())),
])


@pydantic_dataclasses.dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class TokenizeConfig:
    """How documents become tokens. `tokenizer` is a local Hugging Face tokenizer directory."""

    tokenizer: str
    add_bos: bool = False
    add_eos: bool = True  # Megatron/Nemotron append EOD to every document
    batch_rows: int = Field(default=1000, ge=1)
    row_group_rows: int = Field(default=1000, ge=1)  # documents per row group: the loader's unit of reading


class TokenizeStage:
    """Encode a table's `text` with the tokenizer's batch API into TOKEN_SCHEMA rows."""

    name = "tokens"

    def __init__(self, config: TokenizeConfig) -> None:
        self.config = config
        self.tokenizer: LoadedTokenizer = load_tokenizer(config.tokenizer)
        for flag, token_id, what in ((config.add_bos, self.tokenizer.bos_id, "BOS"),
                                     (config.add_eos, self.tokenizer.eos_id, "EOS")):
            if flag and token_id is None:
                raise ValueError(f"{config.tokenizer}: tokenizer has no {what} token; set add_{what.lower()}: false")

    def run(self, table: pa.Table) -> pa.Table:
        text = pc.fill_null(table[TEXT], "") if table.num_rows else pa.array([], pa.string())
        texts = text.to_pylist()
        encodings = self.tokenizer.backend.encode_batch_fast(texts, add_special_tokens=False)
        input_ids = self._assemble([e.ids for e in encodings])
        columns = {name: _column_or_nulls(table, name) for name in (ID, SOURCE, QUALITY_LEVEL, SYNTHETIC_KIND)}
        columns[N_TOKENS] = pc.list_value_length(input_ids).cast(pa.int32())
        columns[N_BYTES] = pc.binary_length(text).cast(pa.int32())
        columns[INPUT_IDS] = input_ids
        return pa.Table.from_pydict(columns, schema=TOKEN_SCHEMA)

    def _assemble(self, ids: list[list[int]]) -> pa.ListArray:
        """One list<int32> column from per-document id lists, BOS/EOS added with numpy."""
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
        extra = int(self.config.add_bos) + int(self.config.add_eos)
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths + extra, out=offsets[1:])
        out = np.empty(int(offsets[-1]), dtype=np.int32)
        is_body = np.ones(len(out), dtype=bool)
        if self.config.add_bos:
            out[offsets[:-1]] = self.tokenizer.bos_id
            is_body[offsets[:-1]] = False
        if self.config.add_eos:
            out[offsets[1:] - 1] = self.tokenizer.eos_id
            is_body[offsets[1:] - 1] = False
        out[is_body] = flat
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(out))

    def metadata(self, groups: GroupCounts) -> dict[str, str]:
        """Footer metadata of a token shard (see TOKENS_METADATA_KEY)."""
        return {TOKENS_METADATA_KEY: json.dumps({
            "tokenizer": self.config.tokenizer, "vocab_size": self.tokenizer.vocab_size,
            "bos_id": self.tokenizer.bos_id, "eos_id": self.tokenizer.eos_id,
            "add_bos": self.config.add_bos, "add_eos": self.config.add_eos,
            "groups": groups.to_list(),
        })}


def _column_or_nulls(table: pa.Table, name: str) -> pa.Array:
    if name in table.column_names:
        return table[name].cast(pa.string())
    return pa.nulls(table.num_rows, pa.string())


@dataclass
class GroupCounts:
    """Documents and tokens per (source, quality_level, synthetic_kind); adds up with `+`."""

    docs: Counter
    tokens: Counter

    @classmethod
    def empty(cls) -> GroupCounts:
        return cls(docs=Counter(), tokens=Counter())

    @classmethod
    def of(cls, tokens: pa.Table) -> GroupCounts:
        counts = cls.empty()
        if tokens.num_rows == 0:
            return counts
        grouped = tokens.group_by(list(GROUP_KEYS)).aggregate([(N_TOKENS, "sum"), (N_TOKENS, "count")])
        for row in grouped.to_pylist():
            key = tuple(row[k] for k in GROUP_KEYS)
            counts.docs[key] += row[f"{N_TOKENS}_count"]
            counts.tokens[key] += row[f"{N_TOKENS}_sum"]
        return counts

    def __add__(self, other: GroupCounts) -> GroupCounts:
        return GroupCounts(docs=self.docs + other.docs, tokens=self.tokens + other.tokens)

    def to_list(self) -> list[dict]:
        keys = sorted(self.docs, key=lambda k: tuple("" if v is None else v for v in k))
        return [dict(zip(GROUP_KEYS, key)) | {"docs": self.docs[key], "tokens": self.tokens[key]} for key in keys]

    @classmethod
    def from_list(cls, rows: list[dict]) -> GroupCounts:
        counts = cls.empty()
        for row in rows:
            key = tuple(row[k] for k in GROUP_KEYS)
            counts.docs[key] += row["docs"]
            counts.tokens[key] += row["tokens"]
        return counts
