"""Pieces of large inputs: reading every piece of a file gives what reading the file gives."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warc_fixtures import html_record, write_warc
from curation.io.pieces import (
    InputFileError, Piece, format_piece, input_format, parse_piece, piece_file, split_inputs,
)
from curation.io.readers import expand_inputs, read_batches
from curation.schema import document_id

GZIP_MAGIC = b"\x1f\x8b\x08"


def _read(path: str, batch_rows: int = 7) -> tuple[list[dict], list[dict]]:
    """Good rows (without null fields: batches infer their own columns) and rejected rows."""
    kept, rejected = [], []
    for batch in read_batches(path, source="test", batch_rows=batch_rows):
        kept += [{k: v for k, v in row.items() if v is not None} for row in batch.table.to_pylist()]
        rejected += batch.rejected.to_pylist()
    return kept, rejected


def _assert_pieces_read_as_whole(path, target_bytes: int) -> list[str]:
    pieces = [p for p, _ in split_inputs([(str(path), "test")], target_bytes)]
    assert pieces == [p for p, _ in split_inputs([(str(path), "test")], target_bytes)]  # deterministic
    whole = _read(str(path))
    joined = ([], [])
    for piece in pieces:
        kept, rejected = _read(piece)
        joined[0].extend(kept)
        joined[1].extend(rejected)
    assert joined == whole, f"target {target_bytes}: {len(pieces)} pieces"
    return pieces


# -------------------------------------------------------------------------------------- JSONL


@pytest.fixture
def jsonl_file(tmp_path, handbook_pages):
    """Real pages as JSON lines, most without `id`, with bad, text-less and blank lines among them
    and a last line without a newline."""
    lines = []
    for i, page in enumerate(handbook_pages["fr-FR"][:60]):
        record = {"text": page.read_text(errors="replace")[:3000], "url": page.name}
        if i % 9 == 4:
            record["id"] = f"given-{i}"
        lines.append(json.dumps(record))
        if i % 7 == 3:
            lines.append("{not json " + page.name)
        if i % 11 == 5:
            lines.append(json.dumps({"url": page.name, "no_text": True}))
        if i % 13 == 6:
            lines.append("")
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(lines))
    return path


def test_jsonl_pieces_read_as_the_whole_file(jsonl_file):
    size = jsonl_file.stat().st_size
    line_count = jsonl_file.read_bytes().count(b"\n") + 1
    assert len(_assert_pieces_read_as_whole(jsonl_file, 1)) == line_count  # every line its own piece
    for target in (size // 13, size // 4, size // 2 + 1, size - 1):
        assert 1 < len(_assert_pieces_read_as_whole(jsonl_file, target)) <= size // target + 1
    assert _assert_pieces_read_as_whole(jsonl_file, size) == [str(jsonl_file)]


def test_jsonl_pieces_start_after_a_newline_and_know_their_line(jsonl_file):
    data = jsonl_file.read_bytes()
    for string, _ in split_inputs([(str(jsonl_file), "test")], len(data) // 5):
        piece = parse_piece(string)
        assert piece.start == 0 or data[piece.start - 1:piece.start] == b"\n"
        assert piece.first_line == data[:piece.start].count(b"\n")


def test_compressed_jsonl_stays_whole(tmp_path, jsonl_file):
    path = tmp_path / "docs.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl_file.read_bytes()))
    assert split_inputs([(str(path), "web")], 10) == [(str(path), "web")]


# ------------------------------------------------------------------------------------ Parquet


def test_parquet_pieces_of_row_groups_read_as_the_whole_file(tmp_path, handbook_pages):
    pages = handbook_pages["de-DE"][:50]
    path = tmp_path / "docs.parquet"
    table = pa.table({"text": [p.read_text(errors="replace")[:4000] for p in pages], "name": [p.name for p in pages]})
    pq.write_table(table, path, row_group_size=4)
    size = path.stat().st_size
    assert len(_assert_pieces_read_as_whole(path, 1)) == 13  # every row group its own piece
    for target in (size // 5, size // 2):
        assert 1 < len(_assert_pieces_read_as_whole(path, target)) < 13
    assert _assert_pieces_read_as_whole(path, size) == [str(path)]
    kept, _ = _read(format_piece(Piece(str(path), 2, 3)))
    assert [r["id"] for r in kept] == [document_id(str(path), row) for row in range(8, 12)]


def test_parquet_of_one_row_group_stays_whole(tmp_path):
    path = tmp_path / "one.parquet"
    pq.write_table(pa.table({"text": ["x" * 1000] * 10}), path)
    assert split_inputs([(str(path), "s")], 100) == [(str(path), "s")]


# --------------------------------------------------------------------------------------- WARC


def _member_starts(data: bytes) -> list[int]:
    """Where gzip members start (the test files hold no chance magic: checked by the reader's ids)."""
    return [i for i in range(len(data) - 2) if data[i:i + 3] == GZIP_MAGIC]


@pytest.fixture
def damaged_warc(tmp_path, handbook_pages):
    """40 real pages; member 9 has corrupt deflate data, member 21 a destroyed gzip header, member
    30 a corrupt WARC header, and the file is cut inside its last member."""
    pages = handbook_pages["en-US"][:40]
    data = bytearray(write_warc(tmp_path / "clean.warc.gz", [html_record(p) for p in pages]).read_bytes())
    starts = _member_starts(bytes(data))
    middle = (starts[9] + starts[10]) // 2
    data[middle:middle + 64] = bytes(64)
    data[starts[21]:starts[21] + 12] = b"not a header"
    data[starts[30] + 12:starts[30] + 40] = bytes(28)
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(bytes(data[: starts[39] + (len(data) - starts[39]) // 2]))
    return path, starts


def test_damaged_warc_whole_read_counts_each_bad_record_once(damaged_warc):
    path, starts = damaged_warc
    kept, rejected = _read(str(path))
    bad = {9: "broken_warc_record", 21: "broken_warc_record", 30: "broken_warc_record", 39: "truncated_warc_record"}
    assert [(r["id"], r["drop_reason"]) for r in rejected] == [
        (document_id(str(path), starts[i]), reason) for i, reason in bad.items()]
    # Ids hash true byte offsets, also of records after a resynchronisation.
    assert [r["id"] for r in kept] == [document_id(str(path), s) for i, s in enumerate(starts) if i not in bad]


def test_warc_pieces_read_as_the_whole_file(damaged_warc):
    path, starts = damaged_warc
    size = path.stat().st_size
    smallest = min(b - a for a, b in zip(starts, starts[1:]))
    assert len(_assert_pieces_read_as_whole(path, smallest // 2)) > len(starts)  # every record its own piece
    for target in (smallest + 1, 3 * smallest + 7, size // 7, size // 3, size - 1):
        _assert_pieces_read_as_whole(path, target)
    assert _assert_pieces_read_as_whole(path, size) == [str(path)]


def test_warc_piece_boundaries_at_and_around_bad_records(damaged_warc):
    path, starts = damaged_warc
    whole = _read(str(path))
    for bad in (9, 21, 30, 39):
        for cut in (starts[bad] - 1, starts[bad], starts[bad] + 1, starts[bad] + 200):
            first, second = (format_piece(Piece(str(path), a, b)) for a, b in ((0, cut), (cut, path.stat().st_size)))
            (kept_a, rejected_a), (kept_b, rejected_b) = _read(first), _read(second)
            assert (kept_a + kept_b, rejected_a + rejected_b) == whole, f"cut at {cut} near record {bad}"


def test_uncompressed_warc_stays_whole(tmp_path, handbook_pages):
    path = write_warc(tmp_path / "a.warc", [html_record(p) for p in handbook_pages["fr-FR"][:5]], gzip=False)
    assert split_inputs([(str(path), "s")], 100) == [(str(path), "s")]


# ------------------------------------------------------------------------------ piece strings


def test_piece_strings_round_trip_and_name_their_file():
    for piece in (Piece("/d/a.jsonl", 10, 20, 3), Piece("/d/a.parquet", 1, 4), Piece("s3://b/a.warc.gz", 0, 99)):
        string = format_piece(piece)
        assert parse_piece(string) == piece and piece_file(string) == piece.file
        assert input_format(string) == input_format(piece.file)
    assert format_piece(Piece("/d/a.jsonl")) == "/d/a.jsonl" == piece_file("/d/a.jsonl")
    assert format_piece(Piece("/d/a.jsonl", 10, 20, 3)) == "/d/a.jsonl#piece=bytes:10-20,line:3"


@pytest.mark.parametrize("tail", ["", "garbage", "bytes:5-3,line:0", "bytes:0-10", "row_groups:0-2,line:0",
                                  "bytes:0-10,line:x", "bytes:-1-10,line:0"])
def test_malformed_piece_is_a_file_error_naming_the_file(jsonl_file, tail):
    with pytest.raises(InputFileError, match=rf"^{jsonl_file}#piece=.*: not a piece of {jsonl_file} \(expected"):
        _read(f"{jsonl_file}#piece={tail}")


def test_pieces_of_unsplittable_or_short_files_are_file_errors(tmp_path, jsonl_file):
    with pytest.raises(InputFileError, match=r"docs\.jsonl\.gz cannot be read in pieces"):
        _read(f"{tmp_path}/docs.jsonl.gz#piece=bytes:0-10,line:0")
    path = tmp_path / "few.parquet"
    pq.write_table(pa.table({"text": ["a", "b"]}), path, row_group_size=1)
    with pytest.raises(InputFileError, match=r"few\.parquet has 2 row groups, not 5"):
        _read(f"{path}#piece=row_groups:1-5")


def test_split_inputs_keeps_small_files_and_order(tmp_path, jsonl_file):
    small = tmp_path / "small.jsonl"
    small.write_text('{"text": "one"}\n')
    pairs = [(str(small), "a"), (str(jsonl_file), "b"), (str(tmp_path / "missing.jsonl"), "c")]
    split = split_inputs(pairs, jsonl_file.stat().st_size // 3)
    assert split[0] == (str(small), "a") and split[-1] == (str(tmp_path / "missing.jsonl"), "c")
    middle = split[1:-1]
    assert len(middle) == 3 and {s for _, s in middle} == {"b"}
    assert [parse_piece(p).start for p, _ in middle] == sorted(parse_piece(p).start for p, _ in middle)
    assert split_inputs(split, 1) == split  # pieces are not cut again; a one-line file stays whole
    with pytest.raises(ValueError, match="at least 1"):
        split_inputs(pairs, 0)


def test_expand_inputs_keeps_piece_strings(jsonl_file):
    [piece, _] = [p for p, _ in split_inputs([(str(jsonl_file), "s")], jsonl_file.stat().st_size // 2 + 1)]
    assert expand_inputs([piece]) == [piece]
    with pytest.raises(InputFileError, match="nope.jsonl#piece=bytes:0-5,line:0: no such file"):
        expand_inputs([f"{jsonl_file.parent}/nope.jsonl#piece=bytes:0-5,line:0"])


def test_pieces_of_fsspec_urls(jsonl_file):
    import fsspec

    fsspec.filesystem("memory").pipe("/big/docs.jsonl", jsonl_file.read_bytes())
    url = "memory:///big/docs.jsonl"
    pieces = _assert_pieces_read_as_whole(url, jsonl_file.stat().st_size // 3)
    assert len(pieces) == 3 and all(piece_file(p) == url for p in pieces)
    assert _read(pieces[0])[0][0]["id"] == document_id(url, 0)
