"""Input files by name, and pieces of large ones, so that one big file becomes several tasks.

The engine passes an input around as one string (shard tasks, fingerprints, stats), so a piece
is one string too: the file, then ``#piece=``, then its range in the unit of its format.

    /data/big.jsonl#piece=bytes:67108864-134217728,line:412345   JSONL: bytes, first line number
    /data/big.parquet#piece=row_groups:4-8                        Parquet: row groups
    /data/big.warc.gz#piece=bytes:0-67108864                      WARC: gzip members starting here

Any string holding ``#piece=`` is a piece (a file whose name holds it cannot be an input).
A piece reads exactly the records, ids and rejects that reading the whole file gives for its
range, so the pieces of a file together equal the file: JSONL pieces start after a newline and
carry their first line number (ids of records without `id` number lines in the whole file);
Parquet pieces number rows from the file's metadata; WARC ids are byte offsets already.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

WARC_SUFFIXES = (".warc", ".warc.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".jsonl.bz2")
PARQUET_SUFFIXES = (".parquet",)
#: Inputs that can be cut: a reader can start in the middle of them (compressed JSONL cannot seek;
#: an uncompressed WARC has no record boundary that payloads cannot imitate).
SPLITTABLE_SUFFIXES = (".jsonl", ".parquet", ".warc.gz")

PIECE_MARK = "#piece="
_UNITS = {"jsonl": "bytes", "parquet": "row_groups", "warc": "bytes"}
_RANGE = re.compile(r"(?P<unit>[a-z_]+):(?P<start>\d+)-(?P<stop>\d+)(?:,line:(?P<line>\d+))?")
_SCAN_BYTES = 16 << 20  # newline counting reads this much at a time


class InputFileError(Exception):
    """A whole input file cannot be read; the message names the file and the reason."""


@dataclass(frozen=True)
class Piece:
    """Records `start` to `stop` of `file` (bytes, or row groups for Parquet); all when `stop` is None."""

    file: str
    start: int = 0
    stop: int | None = None
    first_line: int = 0  # JSONL: the number of the piece's first line in the whole file

    @property
    def whole(self) -> bool:
        return self.stop is None


def input_format(path: str) -> str:
    """'warc', 'jsonl' or 'parquet' from the file name (of a piece, its file's); a clear error otherwise."""
    lower = piece_file(path).lower()
    for fmt, suffixes in (("warc", WARC_SUFFIXES), ("jsonl", JSONL_SUFFIXES), ("parquet", PARQUET_SUFFIXES)):
        if lower.endswith(suffixes):
            return fmt
    raise InputFileError(
        f"{path}: unknown input format (expected one of "
        f"{', '.join(WARC_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES)})"
    )


def is_piece(path: str) -> bool:
    return PIECE_MARK in path


def piece_file(path: str) -> str:
    """The file a piece string reads (the string itself for a whole file): what to `fs.info`."""
    return path.rpartition(PIECE_MARK)[0] if is_piece(path) else path


def format_piece(piece: Piece) -> str:
    """The string a piece travels as; a whole file is its own path, unchanged."""
    if piece.whole:
        return piece.file
    fmt = input_format(piece.file)
    line = f",line:{piece.first_line}" if fmt == "jsonl" else ""
    return f"{piece.file}{PIECE_MARK}{_UNITS[fmt]}:{piece.start}-{piece.stop}{line}"


def parse_piece(path: str) -> Piece:
    """The piece a string names (the whole file for a plain path); InputFileError naming it if malformed."""
    if not is_piece(path):
        return Piece(path)
    file, _, spec = path.rpartition(PIECE_MARK)
    fmt = input_format(file)
    match = _RANGE.fullmatch(spec)
    expected = f"{_UNITS[fmt]}:START-STOP" + (",line:FIRST_LINE" if fmt == "jsonl" else "")
    if (match is None or match["unit"] != _UNITS[fmt] or (match["line"] is None) != (fmt != "jsonl")
            or int(match["start"]) >= int(match["stop"])):
        raise InputFileError(f"{path}: not a piece of {file} (expected {PIECE_MARK}{expected} with START < STOP)")
    if not file.lower().endswith(SPLITTABLE_SUFFIXES):
        raise InputFileError(f"{path}: {file} cannot be read in pieces (only {', '.join(SPLITTABLE_SUFFIXES)})")
    return Piece(file, int(match["start"]), int(match["stop"]), int(match["line"] or 0))


# ------------------------------------------------------------------------------- planning


def split_inputs(pairs: list[tuple[str, str]], target_bytes: int) -> list[tuple[str, str]]:
    """(path, source) pairs with every file over `target_bytes` cut into pieces of about that size
    (file order, then piece order). Smaller files, files that cannot be cut (compressed JSONL,
    uncompressed WARC, one row group) and files planning cannot read stay whole, as the same
    string: their shards keep their identity, and the reader reports what is wrong with them."""
    if target_bytes < 1:
        raise ValueError(f"target_bytes must be at least 1, got {target_bytes}")
    out: list[tuple[str, str]] = []
    for path, source in pairs:
        out.extend((format_piece(piece), source) for piece in plan_pieces(path, target_bytes))
    return out


def plan_pieces(path: str, target_bytes: int) -> list[Piece]:
    """The pieces of one input (one whole piece when it stays whole)."""
    if is_piece(path) or not path.lower().endswith(SPLITTABLE_SUFFIXES):
        return [Piece(path)]
    try:
        fs, fs_path = fsspec.core.url_to_fs(path)
        size = fs.size(fs_path)
        if size <= target_bytes:
            return [Piece(path)]
        count = math.ceil(size / target_bytes)
        with fs.open(fs_path, "rb") as handle:
            pieces = _PLANNERS[input_format(path)](path, handle, size, count)
    except (OSError, pa.ArrowInvalid):  # unreadable: the shard's reader reports it
        return [Piece(path)]
    return pieces if len(pieces) > 1 else [Piece(path)]


def _plan_warc(path: str, handle, size: int, count: int) -> list[Piece]:
    """Equal byte ranges: a WARC piece finds its first record itself (the reader scans from `start`)."""
    bounds = [size * k // count for k in range(count + 1)]
    return [Piece(path, start, stop) for start, stop in zip(bounds, bounds[1:]) if start < stop]


def _plan_parquet(path: str, handle, size: int, count: int) -> list[Piece]:
    """Runs of row groups of about equal compressed size (a row group is never cut)."""
    meta = pq.ParquetFile(handle).metadata
    sizes = [sum(meta.row_group(g).column(c).total_compressed_size for c in range(meta.num_columns))
             for g in range(meta.num_row_groups)]
    total = max(sum(sizes), 1)
    owner = [min(count - 1, before * count // total) for before in itertools.accumulate(sizes, initial=0)][:len(sizes)]
    starts = [g for g in range(len(sizes)) if g == 0 or owner[g] != owner[g - 1]]
    return [Piece(path, start, stop) for start, stop in zip(starts, starts[1:] + [len(sizes)])]


def _plan_jsonl(path: str, handle, size: int, count: int) -> list[Piece]:
    """Byte ranges of about equal size, each starting after a newline and knowing its first line
    number (so ids match the whole file's); reads the file once, up to the last cut, counting newlines."""
    cuts = [(0, 0)] + _line_starts(handle, [size * k // count for k in range(1, count)])
    cuts = [cut for cut in cuts if cut[0] < size]
    stops = [start for start, _ in cuts[1:]] + [size]
    return [Piece(path, start, stop, line) for (start, line), stop in zip(cuts, stops)]


def _line_starts(handle, targets: list[int]) -> list[tuple[int, int]]:
    """For each increasing target offset, the first line start at or after it and the number of
    newlines before that start; targets that would repeat a line start are skipped."""
    found: list[tuple[int, int]] = []
    pending = iter(targets)
    want = next(pending, None)
    offset = lines = 0
    while want is not None and (block := handle.read(_SCAN_BYTES)):
        counted = 0  # newlines of `block` before `counted` are in `lines`
        while want is not None and (newline := block.find(b"\n", max(want - 1 - offset, counted))) >= 0:
            lines += block.count(b"\n", counted, newline + 1)
            counted = newline + 1
            found.append((offset + counted, lines))
            want = next((t for t in pending if t > offset + counted), None)
        lines += block.count(b"\n", counted)
        offset += len(block)
    return found


_PLANNERS = {"jsonl": _plan_jsonl, "parquet": _plan_parquet, "warc": _plan_warc}
