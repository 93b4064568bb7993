"""Key-partitioned files: how the passes of a global stage exchange rows without a shuffle service.

A map task writes its rows to ONE Arrow IPC file, sorted by an integer `partition` column
(`write_partitioned`). Reduce task p memory-maps every map output and takes the rows of
partition p by binary search on that sorted column (`read_partition`): it touches only the
pages of its own rows, so a map task's memory is bounded by its input and a reduce task's by
its partition, never by the corpus. The driver handles file names and small counts only.

This is a shuffle by files, as in MapReduce: M map outputs x P partitions reads in all, each a
seek, no per-pair sockets and no scheduler state per row. It also makes every pass resumable
(a finished output file is not recomputed) and inspectable (the files stay in the stage dir).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from curation.io.writers import write_arrow_atomic

PARTITION = "partition"


def write_partitioned(table: pa.Table, partition: np.ndarray, path: str | Path) -> None:
    """Write `table` with a `partition` column (int64, one per row), sorted by it, atomically."""
    partition = np.asarray(partition, dtype=np.int64)
    if len(partition) != table.num_rows:
        raise ValueError(f"got {len(partition)} partitions for {table.num_rows} rows")
    order = np.argsort(partition, kind="stable")
    sorted_table = table.take(pa.array(order)).append_column(PARTITION, pa.array(partition[order]))
    write_arrow_atomic(sorted_table.combine_chunks(), path)


def read_mapped(path: str | Path) -> pa.Table:
    """An Arrow IPC file, memory-mapped: only the pages a task touches are read."""
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def column_array(table: pa.Table, name: str) -> pa.Array:
    """One column as one array; zero-copy for the single record batch our files hold."""
    column = table[name]
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def read_partition(paths: Sequence[str | Path], partition: int) -> pa.Table:
    """Rows of `partition` from every file of `paths` (each written by `write_partitioned`, empty
    ones included), without the partition column."""
    if not paths:
        raise ValueError("read_partition needs at least one file")
    pieces = []
    schema = None
    for path in paths:
        table = read_mapped(path)
        keys = column_array(table, PARTITION).to_numpy()
        start, end = np.searchsorted(keys, [partition, partition + 1])
        piece = table.slice(int(start), int(end - start)).drop_columns([PARTITION])
        schema = schema or piece.schema
        if piece.num_rows:
            pieces.append(piece)
    if not pieces:
        return schema.empty_table()
    return pa.concat_tables(pieces).combine_chunks()


def range_partition(keys: np.ndarray, parts: int) -> np.ndarray:
    """Partition of uniform uint64 keys into `parts` equal key ranges (order-preserving)."""
    if not 1 <= parts < 1 << 31:
        raise ValueError(f"parts must be in [1, 2^31), got {parts}")
    high = np.asarray(keys, dtype=np.uint64) >> np.uint64(32)
    return ((high * np.uint64(parts)) >> np.uint64(32)).astype(np.int64)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective mix of int64/uint64 values into uniform uint64 keys."""
    z = np.asarray(values).astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def hash_partition(values: np.ndarray, parts: int) -> np.ndarray:
    """Partition of arbitrary integer keys (doc addresses, node ids) spread evenly over `parts`."""
    return range_partition(mix64(values), parts)


def local_mapper(function, items, *args) -> list:  # noqa: ANN001 - same signature as flows.engine.cluster.map_on_cluster
    """The in-process `mapper` of the multi-pass algorithms: `[function(item, *a) for ...]`."""
    return list(map(function, items, *args))


def shared_args(count: int, *values: object) -> list[list]:
    """Argument lists for a `mapper` call whose `count` tasks all take the same `values`."""
    return [[value] * count for value in values]
