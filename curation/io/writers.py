"""Atomic Parquet shard writers (zstd, bounded row groups), atomic Arrow IPC and JSON files.

A shard is written under a temporary name beside its final path and renamed when complete,
so a reader (or a rerun after SIGKILL) never sees half a shard.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 10_000
TMP_PREFIX = ".tmp-"


def _temp_path(final: Path) -> Path:
    return final.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{final.name}")


class ShardWriter:
    """Stream tables into one Parquet shard; the shard appears at `path` only on `close()`.

    Tables of differing schemas are unified on the first table's schema (columns missing
    later are filled with nulls), because stages may add columns only to some batches.
    """

    def __init__(self, path: str | Path, *, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self.path = Path(path)
        self.row_group_rows = row_group_rows
        self._temp = _temp_path(self.path)
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self._temp, self._schema, compression="zstd")
        if table.num_rows == 0:
            return
        self._writer.write_table(conform(table, self._schema), row_group_size=self.row_group_rows)
        self.rows += table.num_rows

    def close(self, *, empty_schema: pa.Schema | None = None, metadata: dict[str, str] | None = None) -> None:
        """Finish the shard. With no rows written, an empty shard of `empty_schema` is made.

        `metadata` goes into the file footer (key-value metadata), e.g. counts known only now.
        """
        if self._writer is None:
            if empty_schema is None:
                return
            self.write(empty_schema.empty_table())
        if metadata:
            self._writer.add_key_value_metadata(metadata)
        self._writer.close()
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._temp.unlink(missing_ok=True)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast `table` to `schema`: reorder, add missing columns as nulls, drop extra ones."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def write_table_atomic(table: pa.Table, path: str | Path) -> None:
    writer = ShardWriter(path)
    writer.write(table)
    writer.close(empty_schema=table.schema)


def write_arrow_atomic(table: pa.Table, path: str | Path) -> None:
    """An uncompressed Arrow IPC file, so that readers can memory-map it instead of reading it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(path)
    with pa.OSFile(str(temp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(temp, path)


def write_json_atomic(data: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(path)
    temp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(temp, path)


def read_json_if_present(path: str | Path) -> dict | None:
    """A JSON file written by `write_json_atomic`; None when there is none, a one-line error naming
    the file when it does not parse."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def remove_temp_files(directory: str | Path) -> int:
    """Delete leftovers of writes that were killed; returns how many were removed."""
    directory = Path(directory)
    if not directory.exists():
        return 0
    leftovers = list(directory.rglob(f"{TMP_PREFIX}*"))
    for leftover in leftovers:
        leftover.unlink()
    return len(leftovers)
