"""Readers: WARC, JSONL and Parquet files (any fsspec URL) to Arrow record batches.

A reader yields `RawBatch`es: the good records as a table, and bad records as rejected rows
with a `drop_reason` (quarantined by the caller). Problems with a whole file raise
`InputFileError`, whose message is one line naming the file. Every reader also reads a piece
of a large file (`curation.io.pieces`): the records, ids and rejects of its range, exactly as
reading the whole file gives them.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fastwarc.stream_io import BrotliReader, ChunkedReader, GzipReader
from fastwarc.warc import ArchiveIterator as FastArchiveIterator
from fastwarc.warc import WarcRecordType
from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import DecompressingBufferedReader
from warcio.exceptions import ArchiveLoadFailed

from curation.io.pieces import (
    JSONL_SUFFIXES, PARQUET_SUFFIXES, WARC_SUFFIXES, InputFileError, Piece, input_format, is_piece, parse_piece,
)
from curation.schema import (
    CONTENT_TYPE, CRAWL_DATE, DROP_REASON, ID, PAYLOAD, RAW, SOURCE, TEXT, URL, document_id,
)

log = logging.getLogger(__name__)

#: Columns of a raw WARC batch (before extraction).
RAW_WARC_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(URL, pa.string()),
        pa.field(SOURCE, pa.string()),
        pa.field(CRAWL_DATE, pa.string()),
        pa.field(CONTENT_TYPE, pa.string()),
        pa.field(PAYLOAD, pa.binary()),
    ]
)
REJECTED_WARC_SCHEMA = RAW_WARC_SCHEMA.append(pa.field(DROP_REASON, pa.string()))
REJECTED_LINE_SCHEMA = pa.schema(
    [pa.field(ID, pa.string()), pa.field(SOURCE, pa.string()), pa.field(RAW, pa.string()),
     pa.field(DROP_REASON, pa.string())]
)

_GZIP_MAGIC = b"\x1f\x8b\x08"
_WARC_MAGIC = b"WARC/1."
_PROBE_BYTES = 4096  # enough deflate input to decompress the first bytes of a WARC header
WarcReaderName = Literal["fastwarc", "warcio"]




@dataclass(frozen=True)
class RawBatch:
    """Good records of one read step, and rejected records (with `drop_reason`)."""

    table: pa.Table
    rejected: pa.Table


def expand_inputs(patterns: list[str]) -> list[str]:
    """Expand paths, directories and globs (any fsspec URL) to a sorted list of input files.

    A pattern that matches nothing is an error naming it: a typo must not curate zero files.
    Inside a directory, files under `_name` or `.name` folders (working files) are skipped, and a
    ccforge stage directory (one with `_SUCCESS`) gives only its top-level `part-*` shards.
    A piece string is kept as it is (its file must exist): its range is no glob.
    """
    files: set[str] = set()
    for pattern in patterns:
        if is_piece(pattern):
            files.add(_existing_piece(pattern))
            continue
        fs, _, paths = fsspec.get_fs_token_paths(pattern)
        if not paths or not fs.exists(paths[0]):
            raise InputFileError(f"{pattern}: no such file or directory")
        for path in paths:
            if fs.isdir(path):
                stage_dir = fs.exists(f"{path.rstrip('/')}/_SUCCESS")
                found = [p for p in fs.find(path) if _is_input_name(p) and _is_data_file(path, p, stage_dir)]
                if not found:
                    raise InputFileError(f"{pattern}: directory holds no WARC, JSONL or Parquet files")
                files.update(fs.unstrip_protocol(p) if _has_protocol(pattern) else p for p in found)
            else:
                files.add(fs.unstrip_protocol(path) if _has_protocol(pattern) else path)
    return sorted(files)


def _existing_piece(path: str) -> str:
    piece = parse_piece(path)
    fs, fs_path = fsspec.core.url_to_fs(piece.file)
    if not fs.exists(fs_path):
        raise InputFileError(f"{path}: no such file or directory")
    return path


def _is_input_name(path: str) -> bool:
    return path.lower().endswith(WARC_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES)


def _is_data_file(directory: str, path: str, stage_dir: bool) -> bool:
    relative = path[len(directory.rstrip("/")) + 1:].split("/")
    if any(part.startswith(("_", ".")) for part in relative):
        return False
    return not stage_dir or (len(relative) == 1 and relative[0].startswith("part-"))


def _has_protocol(pattern: str) -> bool:
    return "://" in pattern


def read_batches(path: str, *, source: str, batch_rows: int = 1000) -> Iterator[RawBatch]:
    """Read any supported input file in batches of at most `batch_rows` records."""
    fmt = input_format(path)
    if fmt == "warc":
        return read_warc(path, source=source, batch_rows=batch_rows)
    if fmt == "jsonl":
        return read_jsonl(path, source=source, batch_rows=batch_rows)
    return read_parquet(path, source=source, batch_rows=batch_rows)


def readable_batches(path: str, *, batch_rows: int, strict: bool = False) -> Iterator[RawBatch]:
    """The batches of `path` up to a whole-file error, which is logged and ends the file, or raised
    when `strict`. For a global stage's first pass: its shard pass meets the same error again and
    lists it under the stage's `errors` (or stops the stage, when strict)."""
    try:
        yield from read_batches(path, source="", batch_rows=batch_rows)
    except InputFileError as err:
        if strict:
            raise
        log.warning("%s", err)


# --------------------------------------------------------------------------------------- WARC


def iter_texts(patterns: list[str], max_docs: int | None = None) -> Iterator[str]:
    """The `text` of every document of `patterns`, in order, at most `max_docs` (tokenizer training)."""
    seen = 0
    for path in expand_inputs(patterns):
        for raw in read_batches(path, source="", batch_rows=1000):
            for text in raw.table[TEXT].to_pylist():
                if max_docs is not None and seen >= max_docs:
                    return
                seen += 1
                yield text or ""


def read_warc(path: str, *, source: str, batch_rows: int = 1000, reader: WarcReaderName = "fastwarc") -> Iterator[RawBatch]:
    """Response records of a WARC file (or piece) as raw batches (payload bytes, not yet decoded).

    A broken record is counted as `broken_warc_record` and reading resumes at the next
    record boundary (the next gzip member, or the next ``WARC/1.`` line); a file cut short
    is counted as one `truncated_warc_record`. Ids hash the file and the record's byte offset.
    `reader` picks the parser: FastWARC (several times faster) or warcio, its reference twin;
    both give the same records, ids and drop reasons.
    """
    piece = parse_piece(path)
    rows: list[dict] = []
    rejected: list[dict] = []
    try:
        fs, fs_path = fsspec.core.url_to_fs(piece.file)
        size = fs.size(fs_path)
        # `probe` looks ahead for record starts without moving the handle the parser reads.
        with fs.open(fs_path, "rb") as handle, fs.open(fs_path, "rb") as probe:
            walk = _WARC_WALKS[reader]
            for offset, record_or_reason in _iter_warc_resyncing(handle, probe, walk, piece=piece, size=size, name=path):
                if isinstance(record_or_reason, str):
                    rejected.append(_rejected_warc_row(piece.file, offset, source, record_or_reason))
                else:
                    rows.append(_warc_row(piece.file, offset, source, record_or_reason))
                if len(rows) + len(rejected) >= batch_rows:
                    yield _warc_batch(rows, rejected)
                    rows, rejected = [], []
    except FileNotFoundError as err:
        raise InputFileError(f"{path}: no such file") from err
    except OSError as err:  # e.g. not a gzip file at all
        raise InputFileError(f"{path}: cannot read WARC ({err})") from err
    if rows or rejected:
        yield _warc_batch(rows, rejected)


@dataclass(frozen=True)
class _WalkEnd:
    """A parser's walk stopped: at the end of its input (`error` None) or at a record it cannot parse."""

    error: Exception | None = None


#: What a parser's walk yields: (record offset, response fields | "truncated_warc_record" | None for
#: another record type), and last (offset, _WalkEnd) with the end of the input or the broken record.
WalkStep = tuple[int, "dict | str | None | _WalkEnd"]


def _iter_warc_resyncing(handle, probe, walk: Callable[..., Iterator[WalkStep]], *, piece: Piece, size: int, name: str):
    """Yield (offset, record-fields | drop reason) of the records `piece` owns, resynchronising
    after broken records.

    The walk is the whole file's walk, record after record, so pieces together read what the
    whole file reads: a piece enters at its first record start at or after `piece.start` and
    leaves at the first record start at or after `piece.stop`, where the next piece enters.
    Offsets are absolute: both parsers' start from the handle's position.
    """
    gzipped = piece.file.lower().endswith(".gz")
    stop = size if piece.stop is None else piece.stop
    start = 0 if piece.start == 0 else _next_record_start(probe, piece.start, stop, gzipped=gzipped)
    while start is not None:
        handle.seek(start)
        for offset, item in walk(handle, gzipped=gzipped):
            if _next_piece_owns(probe, offset, stop, gzipped=gzipped):
                return
            if not isinstance(item, _WalkEnd):
                if item is not None:
                    yield offset, item
                continue
            if item.error is None:
                if offset < size:
                    log.warning("%s: file ends inside a record (read %d of %d bytes)", name, offset, size)
                    yield offset, "truncated_warc_record"
                return
            log.warning("%s: broken WARC record at byte %d (%s); skipping to the next record",
                        name, offset, str(item.error).splitlines()[0][:120])
            yield offset, "broken_warc_record"
            start = _next_record_start(probe, offset + 1, stop, gzipped=gzipped)
            break


def _warcio_walk(handle, *, gzipped: bool) -> Iterator[WalkStep]:
    """warcio's walk from the handle's position (`gzipped` is found out by warcio itself)."""
    iterator = ArchiveIterator(handle, no_record_parse=False, check_digests=False)
    iterator.reader = _StrictDecompressingReader(handle, block_size=iterator.reader.block_size)
    try:
        for record in iterator:
            offset = iterator.offset  # the record's start, until its body is read
            if record.rec_type != "response":
                yield offset, None
                continue
            fields = _response_fields(record)
            # warcio yields a record cut short by the end of the file without complaint;
            # bytes still owed by its Content-Length give it away.
            cut_short = getattr(record.raw_stream, "limit", 0) > 0
            yield offset, "truncated_warc_record" if cut_short else fields
    # AttributeError: warcio's loader on a request header cut before its WARC-Target-URI
    except (ArchiveLoadFailed, ValueError, EOFError, OSError, zlib.error, AttributeError) as err:
        yield iterator.offset, _WalkEnd(err)  # the start of the record that failed
        return
    yield iterator.offset, _WalkEnd()


class _StrictDecompressingReader(DecompressingBufferedReader):
    """warcio's reader, but deflate data that fails inside a gzip member raises. warcio prints the
    error and reads on to the end of the file, so one corrupt member swallowed every record after it."""

    def _decompress(self, data: bytes) -> bytes:
        if self.decompressor and data and self.num_block_read:
            return self.decompressor.decompress(data)
        return super()._decompress(data)  # a first block that fails: an uncompressed WARC


def _fastwarc_walk(handle, *, gzipped: bool) -> Iterator[WalkStep]:
    """FastWARC's walk from the handle's position, for .warc.gz. A record's offset is its gzip
    member's start (one record per member, WARC 1.1 annex D), which the gzip reader knows, also
    after an error. An uncompressed WARC is walked by warcio: FastWARC does not share its leniency
    with broken uncompressed records, so the two would count them differently."""
    if not gzipped:
        yield from _warcio_walk(handle, gzipped=False)
        return
    stream = GzipReader(handle)
    try:
        for record in FastArchiveIterator(stream, parse_http=False, stream_detect=False):
            offset = stream.frame_start_position()
            if "Content-Length" not in record.headers:  # FastWARC yields a header cut by the end of the file
                yield offset, "truncated_warc_record"
            elif record.record_type == WarcRecordType.response:
                yield offset, _fastwarc_response_fields(record)
            else:
                yield offset, None
    except OSError as err:
        yield stream.frame_start_position(), _WalkEnd(err)
        return
    yield stream.inner_tell(), _WalkEnd()


_WARC_WALKS: dict[str, Callable[..., Iterator[WalkStep]]] = {"warcio": _warcio_walk, "fastwarc": _fastwarc_walk}


def _next_piece_owns(probe, offset: int, stop: int, *, gzipped: bool) -> bool:
    """Whether the walk reached the next piece: a record start at or after `stop`. (A position
    there that is no record start, a broken member, is still this piece's to report.)"""
    return offset >= stop and _is_record_start(probe, offset, gzipped=gzipped)


def _next_record_start(probe, position: int, limit: int, *, gzipped: bool) -> int | None:
    """The first record start in [position, limit), or None."""
    while (found := _find_magic(probe, position, limit, gzipped=gzipped)) is not None:
        if _is_record_start(probe, found, gzipped=gzipped):
            return found
        position = found + 1
    return None


def _is_record_start(probe, position: int, *, gzipped: bool) -> bool:
    """A gzip member whose data begins with a WARC header: the gzip magic alone also occurs by
    chance inside compressed data. Uncompressed: a ``WARC/1.`` line (such files are read whole)."""
    probe.seek(position)
    head = probe.read(_PROBE_BYTES)
    if not gzipped:
        return head.startswith(_WARC_MAGIC)
    try:
        text = zlib.decompressobj(wbits=31).decompress(head, 64)  # wbits=31: a gzip header is required
    except zlib.error:
        return False
    return text.lstrip().startswith(b"WARC/")


def _find_magic(probe, position: int, limit: int, *, gzipped: bool, chunk: int = 1 << 20) -> int | None:
    """The first gzip magic (or ``WARC/1.``) in [position, limit), or None."""
    magic = _GZIP_MAGIC if gzipped else _WARC_MAGIC
    probe.seek(position)
    carry = b""
    base = position
    while base - len(carry) < limit:
        block = probe.read(chunk)
        if not block:
            return None
        data = carry + block
        found = data.find(magic)
        if found >= 0:
            at = base - len(carry) + found
            return at if at < limit else None
        carry = data[-(len(magic) - 1):]
        base += len(block)
    return None


def _response_fields(record) -> dict:
    payload = record.content_stream().read()
    content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
    return {
        URL: record.rec_headers.get_header("WARC-Target-URI"),
        CRAWL_DATE: record.rec_headers.get_header("WARC-Date"),
        CONTENT_TYPE: content_type,
        PAYLOAD: payload,
    }


def _fastwarc_response_fields(record) -> dict | str:
    """The fields `_response_fields` gives, from a FastWARC record: the payload after the HTTP
    headers with its transfer and content codings undone (as warcio's `content_stream`), or
    `truncated_warc_record` when the file ends before the record's Content-Length."""
    record.parse_http()
    owed = record.content_length
    raw = record.reader.read()
    if len(raw) < owed:
        return "truncated_warc_record"
    headers = record.http_headers
    return {
        URL: record.headers.get("WARC-Target-URI"),
        CRAWL_DATE: record.headers.get("WARC-Date"),
        CONTENT_TYPE: headers.get("Content-Type"),
        PAYLOAD: _decode_http_codings(raw, headers.get("Transfer-Encoding"), headers.get("Content-Encoding")),
    }


_CONTENT_DECODERS = {"gzip": GzipReader, "x-gzip": GzipReader, "br": BrotliReader,
                     "deflate": functools.partial(GzipReader, zlib=True)}


def _decode_http_codings(raw: bytes, transfer_encoding: str | None, content_encoding: str | None) -> bytes:
    """Undo chunked transfer coding and a gzip/deflate/br content coding; bytes that do not decode
    are kept as they are (warcio does the same)."""
    data = raw
    if transfer_encoding and "chunked" in transfer_encoding.lower():
        data = _decoded_or_none(ChunkedReader, data) or data
    decoder = _CONTENT_DECODERS.get((content_encoding or "").strip().lower())
    if decoder is not None:
        data = _decoded_or_none(decoder, data) or data
    return data


def _decoded_or_none(decoder: Callable, data: bytes) -> bytes | None:
    try:
        return decoder(io.BytesIO(data)).read()
    except OSError:
        return None


def _warc_row(path: str, offset: int, source: str, fields: dict) -> dict:
    return {ID: document_id(path, offset), SOURCE: source, **fields}


def _rejected_warc_row(path: str, offset: int, source: str, reason: str) -> dict:
    return {ID: document_id(path, offset), URL: None, SOURCE: source, CRAWL_DATE: None,
            CONTENT_TYPE: None, PAYLOAD: None, DROP_REASON: reason}


def _warc_batch(rows: list[dict], rejected: list[dict]) -> RawBatch:
    return RawBatch(
        table=pa.Table.from_pylist(rows, schema=RAW_WARC_SCHEMA),
        rejected=pa.Table.from_pylist(rejected, schema=REJECTED_WARC_SCHEMA),
    )


# -------------------------------------------------------------------------------------- JSONL


def read_jsonl(path: str, *, source: str, batch_rows: int = 1000) -> Iterator[RawBatch]:
    """JSON lines with a `text` field (and optionally `id`, `url`, ...; others carried along).

    Lines that are not JSON objects are `bad_json`; objects without a string `text` are
    `missing_text`; both are quarantined with the raw line. Ids made for records without one
    number the lines of the whole file, also in a piece.
    """
    piece = parse_piece(path)
    rows: list[dict] = []
    rejected: list[dict] = []
    line_no = piece.first_line
    try:
        with fsspec.open(piece.file, "rb", compression="infer") as handle:
            for line_no, raw in _numbered_lines(handle, piece):
                _parse_jsonl_line(piece.file, line_no, raw, source, rows, rejected)
                if len(rows) + len(rejected) >= batch_rows:
                    yield _jsonl_batch(rows, rejected)
                    rows, rejected = [], []
    except FileNotFoundError as err:
        raise InputFileError(f"{path}: no such file") from err
    except (OSError, EOFError) as err:
        if rows or rejected:
            yield _jsonl_batch(rows, rejected)
        raise InputFileError(f"{path}: cannot read past line {line_no + 1} ({err})") from err
    if rows or rejected:
        yield _jsonl_batch(rows, rejected)


def _numbered_lines(handle, piece: Piece) -> Iterator[tuple[int, bytes]]:
    """(line number in the whole file, line) of the piece: it starts after a newline and ends
    where the next piece starts (at a line start, or the end of the file)."""
    if not piece.whole:
        handle.seek(piece.start)  # pieces are never compressed: they seek
    remaining = None if piece.whole else piece.stop - piece.start
    # Some decompressors (zstd) read but do not iterate lines; buffering adds that.
    for line_no, raw in enumerate(io.BufferedReader(handle), start=piece.first_line):
        yield line_no, raw
        if remaining is not None:
            remaining -= len(raw)
            if remaining <= 0:
                return


def _parse_jsonl_line(path: str, line_no: int, raw: bytes, source: str,
                      rows: list[dict], rejected: list[dict]) -> None:
    if not raw.strip():
        return  # blank lines are not records
    row_id = document_id(path, line_no)
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        rejected.append({ID: row_id, SOURCE: source, RAW: raw.decode("utf-8", "replace")[:65536],
                         DROP_REASON: "bad_json"})
        return
    if not isinstance(record.get(TEXT), str):
        rejected.append({ID: str(record.get(ID) or row_id), SOURCE: source,
                         RAW: raw.decode("utf-8", "replace")[:65536], DROP_REASON: "missing_text"})
        return
    record[ID] = str(record[ID]) if record.get(ID) is not None else row_id
    record.setdefault(SOURCE, source)
    rows.append(record)


def _jsonl_batch(rows: list[dict], rejected: list[dict]) -> RawBatch:
    table = pa.Table.from_pylist(rows) if rows else pa.table({ID: pa.array([], pa.string()),
                                                              TEXT: pa.array([], pa.string())})
    return RawBatch(table=table, rejected=pa.Table.from_pylist(rejected, schema=REJECTED_LINE_SCHEMA))


# ------------------------------------------------------------------------------------ Parquet


def read_parquet(path: str, *, source: str, batch_rows: int = 1000) -> Iterator[RawBatch]:
    """Parquet with a string `text` column; `id` is made when absent (from the row number in the
    whole file, also in a piece of row groups); other columns carried.

    A file without rows still gives one (empty) batch with its columns: a stage run on it returns
    its output columns, so that an empty shard has the schema of the others."""
    piece = parse_piece(path)
    try:
        handle = fsspec.open(piece.file, "rb").open()
    except FileNotFoundError as err:
        raise InputFileError(f"{path}: no such file") from err
    with handle:
        try:
            parquet_file = pq.ParquetFile(handle)
        except (OSError, pa.ArrowInvalid) as err:
            raise InputFileError(f"{path}: not a readable Parquet file ({err})") from err
        _check_text_column(path, parquet_file.schema_arrow)
        row_groups, first_row = _row_groups(path, parquet_file.metadata, piece)
        batches = parquet_file.iter_batches(batch_size=batch_rows, row_groups=row_groups)
        first = next(batches, None)
        if first is None:
            first = pa.RecordBatch.from_pylist([], schema=parquet_file.schema_arrow)
        for batch in itertools.chain([first], batches):
            table = pa.Table.from_batches([batch])
            if ID not in table.column_names:
                ids = [document_id(piece.file, first_row + i) for i in range(table.num_rows)]
                table = table.add_column(0, ID, pa.array(ids, pa.string()))
            if SOURCE not in table.column_names:
                table = table.append_column(SOURCE, pa.array([source] * table.num_rows, pa.string()))
            first_row += table.num_rows
            yield RawBatch(table=table, rejected=pa.Table.from_pylist([], schema=REJECTED_LINE_SCHEMA))


def _row_groups(path: str, meta: pq.FileMetaData, piece: Piece) -> tuple[list[int] | None, int]:
    """The row groups of the piece (None: all) and the number of its first row in the file."""
    if piece.whole:
        return None, 0
    if piece.stop > meta.num_row_groups:
        raise InputFileError(f"{path}: {piece.file} has {meta.num_row_groups} row groups, not {piece.stop}")
    return list(range(piece.start, piece.stop)), sum(meta.row_group(g).num_rows for g in range(piece.start))


def _check_text_column(path: str, schema: pa.Schema) -> None:
    if TEXT not in schema.names:
        raise InputFileError(f"{path}: no '{TEXT}' column (columns: {', '.join(schema.names)})")
    text_type = schema.field(TEXT).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise InputFileError(f"{path}: column '{TEXT}' has type {text_type}, expected string")

