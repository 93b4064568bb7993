"""Substring dedup: cut spans equal an exhaustive search over every window, for bytes and tokens,
both keep_first settings and several shard layouts; hash collisions cut nothing wrongly; the
stage on a Dask LocalCluster keeps its accounting."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from curation.partitioned import read_mapped
from dask_processes import dask_cluster_processes
from flows.demo.sample_crawl.pages import visible_lines
from curation.stage import StageStats
from curation.substring_dedup import SubstringDedupConfig
from curation.substring_dedup.cut import SpanCutter
from curation.substring_dedup.passes import spans_path, substring_spans
from flows.cli import main
from flows.engine.cluster import dask_client
from flows.engine.stage_dir import StageRun
from flows.engine.substring_dedup import run_substring_dedup

K_BYTES = 48
K_TOKENS = 12

# ------------------------------------------------------------------ a real corpus, with plants


def _real_texts(handbook_pages) -> list[str]:
    """Licences (which share passages among themselves), handbook pages in four scripts, a man page."""
    licences = ["Apache-2.0", "BSD", "GPL-2", "GPL-3", "LGPL-2.1", "LGPL-3", "MPL-2.0", "Artistic"]
    texts = [Path("/usr/share/common-licenses", name).read_text()[:1800] for name in licences]
    for language in ("en-US", "fr-FR", "el-GR", "ja-JP"):
        for page in handbook_pages[language][10:12]:
            texts.append("\n".join(visible_lines(page.read_text()))[2000:3500])
    texts.append(gzip.decompress(Path("/usr/share/man/man1/gzip.1.gz").read_bytes()).decode()[:1500])
    return texts


def _train_tokenizer(texts: list[str], directory: Path) -> Path:
    """A tiny byte-level BPE (as curation.tokens.tokenizer trains), saved as directory/tokenizer.json."""
    bpe = tokenizers.Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer=trainer)
    directory.mkdir(parents=True, exist_ok=True)
    bpe.save(str(directory / "tokenizer.json"))
    return directory


def _just_under(rng: random.Random, size: int, count) -> str:  # noqa: ANN001 - count: str -> units
    """Made-up words (found nowhere else) of exactly `size` units under `count`."""
    while True:
        words = " " + " ".join("".join(rng.choice("qxzjvkw") for _ in range(rng.randint(3, 7))) for _ in range(40))
        for end in range(1, len(words)):
            if count(words[:end]) == size and words[end - 1] != " ":
                return words[:end]


def _plant(texts: list[str], tokenizer: tokenizers.Tokenizer) -> tuple[list[str], dict[str, str]]:
    rng = random.Random(7)
    t = list(texts)
    across = t[0][100:400]
    t[5] = t[5][:600] + across + t[5][600:]  # the same span in three documents
    t[9] = t[9][:300] + across + t[9][300:]
    t[2] = t[2][:1200] + t[2][50:250] + t[2][1200:]  # twice in one document
    t[11] = t[11][:500] + t[4][:7] * 30 + t[11][500:]  # a period of 7 characters: self-overlapping repeats
    t[13] = t[13][:400] + "Ωμέγα " * 12 + t[13][400:]  # the same, two bytes a character
    edge = t[12][200:420]
    t[14], t[15] = edge + t[14], t[15] + edge  # at a document's start and at another's end
    shorts = {}
    for unit, at, size, count in (
            ("bytes", 700, K_BYTES - 1, lambda s: len(s.encode())),
            ("tokens", 1000, K_TOKENS - 1, lambda s: len(tokenizer.encode(s, add_special_tokens=False).ids))):
        shorts[unit] = short = _just_under(rng, size, count)  # k-1 units in two documents: never cut
        t[6] = t[6][:at] + "1" + short + "2" + t[6][at:]
        t[7] = t[7][:at] + "3" + short + "4" + t[7][at:]
    t.append(across)  # a document that is all repeat
    t.append(t[1])  # an exact copy of a whole document
    return t, shorts


@pytest.fixture(scope="module")
def corpus(handbook_pages, tmp_path_factory) -> tuple[list[str], Path, dict[str, str]]:
    real = _real_texts(handbook_pages)
    tokenizer_dir = _train_tokenizer(real, tmp_path_factory.mktemp("tokenizer"))
    texts, shorts = _plant(real, tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")))
    return texts, tokenizer_dir, shorts


def _config(unit: str, tokenizer_dir: Path, **overrides) -> SubstringDedupConfig:
    if unit == "bytes":
        return SubstringDedupConfig(min_bytes=K_BYTES, **overrides)
    return SubstringDedupConfig(tokenizer=str(tokenizer_dir), min_tokens=K_TOKENS, **overrides)


def _write_shards(texts: list[str], sizes: list[int], directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    bounds = np.cumsum([0, *sizes])
    assert bounds[-1] == len(texts)
    paths = []
    for shard in range(len(sizes)):
        rows = range(bounds[shard], bounds[shard + 1])
        path = directory / f"shard-{shard}.parquet"
        pq.write_table(pa.table({"id": [f"doc-{i:03d}" for i in rows], "text": [texts[i] for i in rows]}), path)
        paths.append(str(path))
    return paths


# ------------------------------------------------------------------ the exhaustive reference


def _units(text: str, unit: str, tokenizer_dir: Path) -> tuple[list, list[int], list[int]]:
    """Units of one text and each unit's character span [start, end), written plainly."""
    if unit == "bytes":
        values, starts = [], []
        for index, char in enumerate(text):
            encoded = char.encode("utf-8")
            values += list(encoded)
            starts += [index] * len(encoded)
        return values, starts, [s + 1 for s in starts]
    encoding = _tokenizer(tokenizer_dir).encode(text, add_special_tokens=False)
    return encoding.ids, [s for s, _ in encoding.offsets], [e for _, e in encoding.offsets]


_TOKENIZERS: dict[Path, tokenizers.Tokenizer] = {}


def _tokenizer(directory: Path) -> tokenizers.Tokenizer:
    return _TOKENIZERS.setdefault(directory, tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json")))


def reference_spans(texts: list[str], unit: str, k: int, keep_first: bool,
                    tokenizer_dir: Path) -> dict[int, list[tuple[int, int]]]:
    """Every window of every document in a dict by content; a window seen twice or more is cut
    (all occurrences, or all but the first in corpus order); a run of cut units is cut from its
    first unit's first character to its last unit's end; runs of cut characters are the spans."""
    units = [_units(text, unit, tokenizer_dir) for text in texts]
    occurrences: dict[tuple, list[tuple[int, int]]] = {}
    for doc, (values, _, _) in enumerate(units):
        for position in range(len(values) - k + 1):
            occurrences.setdefault(tuple(values[position:position + k]), []).append((doc, position))
    cut_units = [[False] * len(values) for values, _, _ in units]
    for places in occurrences.values():
        if len(places) >= 2:
            for doc, position in places[1:] if keep_first else places:
                cut_units[doc][position:position + k] = [True] * k
    spans = {}
    for doc, (text, (_, starts, ends)) in enumerate(zip(texts, units)):
        cut_chars = [False] * len(text)
        unit = 0
        while unit < len(cut_units[doc]):
            if not cut_units[doc][unit]:
                unit += 1
                continue
            last = unit
            while last + 1 < len(cut_units[doc]) and cut_units[doc][last + 1]:
                last += 1
            cut_chars[starts[unit]:ends[last]] = [True] * (ends[last] - starts[unit])
            unit = last + 1
        runs, char = [], 0
        while char < len(text):
            if cut_chars[char]:
                end = char
                while end < len(text) and cut_chars[end]:
                    end += 1
                runs.append((char, end))
                char = end
            else:
                char += 1
        if runs:
            spans[doc] = runs
    return spans


_REFERENCES: dict[tuple, dict] = {}


def _reference(texts, unit, keep_first, tokenizer_dir):  # noqa: ANN001, ANN202
    key = (unit, keep_first)
    if key not in _REFERENCES:
        k = K_BYTES if unit == "bytes" else K_TOKENS
        _REFERENCES[key] = reference_spans(texts, unit, k, keep_first, tokenizer_dir)
    return _REFERENCES[key]


def _found_spans(work: Path, sizes: list[int]) -> dict[int, list[tuple[int, int]]]:
    """The spans files of a run, by corpus document number."""
    found: dict[int, list[tuple[int, int]]] = {}
    first_doc = np.cumsum([0, *sizes])
    for shard in range(len(sizes)):
        table = pq.read_table(spans_path(work, shard)).to_pylist()
        for span in table:
            doc = int(first_doc[shard] + span["row"])
            assert span["id"] == f"doc-{doc:03d}"
            found.setdefault(doc, []).append((span["start"], span["end"]))
    return found


LAYOUTS = {"one-shard": [1], "uneven": [5, 1, 9, 7], "tiny-batches": [3] * 8}


def _layout(name: str, count: int) -> list[int]:
    sizes = LAYOUTS[name]
    scale = [max(1, round(s * count / sum(sizes))) for s in sizes]
    scale[-1] += count - sum(scale)
    return scale


@pytest.mark.parametrize("unit", ["bytes", "tokens"])
@pytest.mark.parametrize("keep_first", [False, True])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_spans_equal_the_exhaustive_search(corpus, tmp_path, unit, keep_first, layout):
    texts, tokenizer_dir, shorts = corpus
    sizes = _layout(layout, len(texts))
    paths = _write_shards(texts, sizes, tmp_path / "in")
    digests = substring_spans(paths, tmp_path / "work", _config(unit, tokenizer_dir, keep_first=keep_first),
                              batch_rows=2 if layout == "tiny-batches" else 1000, progress=lambda _: None)
    expected = _reference(texts, unit, keep_first, tokenizer_dir)
    assert _found_spans(tmp_path / "work", sizes) == expected
    assert len(digests) == len(sizes)
    # The reference itself cuts what was planted: a whole-document copy (and its original unless
    # keep_first), a document that is a span of another (all but its last token or so) ...
    assert expected[len(texts) - 1] == [(0, len(texts[-1]))]
    assert (expected.get(1) == [(0, len(texts[1]))]) != keep_first
    assert sum(end - start for start, end in expected[len(texts) - 2]) >= 0.95 * len(texts[-2])
    # ... and never the made-up words of k - 1 units planted in two documents.
    for doc in (6, 7):
        short_at = texts[doc].index(shorts[unit])
        assert not any(start < short_at + len(shorts[unit]) and short_at < end for start, end in expected.get(doc, []))


@pytest.mark.parametrize("unit", ["bytes", "tokens"])
def test_hash_collisions_cut_nothing_wrongly(corpus, tmp_path, unit):
    """With 4-bit hashes every window is a candidate; exact contents still decide."""
    texts, tokenizer_dir, _ = corpus
    sizes = [9, 4, len(texts) - 13]
    paths = _write_shards(texts, sizes, tmp_path / "in")
    substring_spans(paths, tmp_path / "work", _config(unit, tokenizer_dir, partitions=3), hash_bits=4,
                    progress=lambda _: None)
    rows = lambda name: sum(read_mapped(p).num_rows for p in (tmp_path / "work" / name).iterdir())  # noqa: E731
    windows, candidates = rows("_windows"), rows("_candidates")
    assert candidates == windows  # 16 hash values: every window collides with another
    assert _found_spans(tmp_path / "work", sizes) == _reference(texts, unit, False, tokenizer_dir)


def test_span_cutter_cuts_across_batches_counts_and_drops_fragments():
    cutter = SpanCutter("substring-dedup", rows=np.array([0, 0, 2, 3]), starts=np.array([0, 8, 3, 0]),
                        ends=np.array([2, 10, 9, 44]), min_doc_chars=7)
    first = cutter.run(pa.table({"id": ["a", "b"], "text": ["xxhello wéé", "untouched"]}))
    assert first.kept["text"].to_pylist() == ["hello é", "untouched"]  # pieces joined as they are
    assert first.counters == {"spans_removed": 2, "bytes_removed": 2 + 3}
    second = cutter.run(pa.table({"id": ["c", "d"], "text": ["abcdefghijkl", "all of it is a repeat " * 2]}))
    assert second.kept["text"].to_pylist() == [] and second.dropped_counts() == {"substring_duplicate": 2}
    assert second.rejected["text"].to_pylist() == ["abcjkl", ""]  # under 7 characters left, and nothing left
    assert second.counters == {"spans_removed": 2, "bytes_removed": 6 + 44}


def test_config_needs_exactly_one_unit():
    with pytest.raises(ValueError, match="exactly one unit"):
        SubstringDedupConfig()
    with pytest.raises(ValueError, match="exactly one unit"):
        SubstringDedupConfig(tokenizer="tok", min_bytes=100)
    with pytest.raises(ValueError, match="min_bytes\n  Input should be greater than or equal to 1"):
        SubstringDedupConfig(min_bytes=0)
    assert SubstringDedupConfig(tokenizer="tok").window == 50
    assert SubstringDedupConfig(min_bytes=100).window == 100


# --------------------------------------------------------------------------- the stage on Dask


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    kept, previous = [], 0
    for start, end in spans:
        kept.append(text[previous:start])
        previous = end
    return "".join(kept) + text[previous:]


def test_stage_on_a_local_cluster_cuts_counts_and_resumes(corpus, tmp_path):
    texts, tokenizer_dir, _ = corpus
    sizes = [7, 9, len(texts) - 16]
    paths = _write_shards(texts, sizes, tmp_path / "in")
    run = StageRun(name="substring-dedup", inputs=[(p, "docs") for p in paths], output_dir=tmp_path / "out",
                   stage_key="k1", config_key="c1")
    config = _config("tokens", tokenizer_dir, min_doc_chars=40)
    with dask_client(None, workers=2) as client:
        stats = run_substring_dedup(client, run, config, progress=lambda _: None)
        marker = (tmp_path / "out" / "_SUCCESS").stat().st_mtime_ns
        again = run_substring_dedup(client, run, config, progress=lambda _: None)
    assert again.to_dict() == stats.to_dict() and (tmp_path / "out" / "_SUCCESS").stat().st_mtime_ns == marker
    expected = _reference(texts, "tokens", False, tokenizer_dir)
    assert _found_spans(tmp_path / "out", sizes) == expected
    # Accounting: every document is kept or dropped, counters equal the spans files.
    cut = {f"doc-{i:03d}": _cut(text, expected.get(i, [])) for i, text in enumerate(texts)}
    dropped = {i for i, spans in expected.items() if len(cut[f"doc-{i:03d}"].strip()) < 40}
    assert stats.docs_in == len(texts) == stats.docs_out + sum(stats.dropped.values())
    assert stats.dropped == {"substring_duplicate": len(dropped)} and len(dropped) >= 2
    assert stats.counters == {
        "spans_removed": sum(len(spans) for spans in expected.values()),
        "bytes_removed": sum(len(texts[i][s:e].encode()) for i, spans in expected.items() for s, e in spans)}
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["counters"] == stats.counters
    shard_stats = [StageStats.from_dict(json.loads((tmp_path / "out" / f"part-{i:05d}.stats.json").read_text())["stats"])
                   for i in range(len(sizes))]
    assert sum(s.counters["spans_removed"] for s in shard_stats) == stats.counters["spans_removed"]
    kept = pa.concat_tables(pq.read_table(tmp_path / "out" / f"part-{i:05d}.parquet") for i in range(len(sizes)))
    assert dict(zip(kept["id"].to_pylist(), kept["text"].to_pylist())) == {
        doc_id: text for doc_id, text in cut.items() if int(doc_id[4:]) not in dropped}
    assert stats.bytes_in - stats.bytes_out == stats.counters["bytes_removed"] + sum(
        len(cut[f"doc-{i:03d}"].encode()) for i in dropped)


def test_cli_stage_on_an_external_scheduler_with_two_workers(corpus, tmp_path, capsys):
    """`ccforge stage substring-dedup --scheduler` on separate scheduler and worker processes cuts
    the same spans as the exhaustive search."""
    texts, tokenizer_dir, _ = corpus
    sizes = [11, len(texts) - 11]
    paths = _write_shards(texts, sizes, tmp_path / "in")
    with dask_cluster_processes(tmp_path / "cluster", workers=2) as address:
        code = main(["stage", "substring-dedup", "--input", *paths, "--output", str(tmp_path / "out"),
                     "--min-bytes", str(K_BYTES), "--scheduler", address])
    assert code == 0 and "substring-dedup" in capsys.readouterr().out
    assert _found_spans(tmp_path / "out", sizes) == _reference(texts, "bytes", False, tokenizer_dir)
    assert main(["stage", "substring-dedup", "--input", *paths, "--output", str(tmp_path / "x")]) == 2
    assert "needs a unit" in capsys.readouterr().err
