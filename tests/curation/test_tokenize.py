"""Tokenizer training, the tokenize stage, and `ccforge tokenizer train | tokenize | mix` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from token_fixtures import documents, write_curated

from curation.tokens import TOKENS_METADATA_KEY, GroupCounts, TokenizeConfig, TokenizeStage
from flows.cli import main


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three curated shards of real pages and a tokenizer trained on them by the command line."""
    root = tmp_path_factory.mktemp("tokenize")
    write_curated(root / "curated", handbook_pages=25, postgres_pages=25, files=3)
    assert main(["tokenizer", "train", "--input", str(root / "curated"), "--vocab-size", "1500",
                 "--output", str(root / "tokenizer")]) == 0
    return root


def test_trained_tokenizer_loads_with_auto_tokenizer(workdir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workdir / "tokenizer")
    assert len(tokenizer) == 1500
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == ("<pad>", "<s>", "</s>")
    text = documents("/usr/share/doc/python3.11/html/library/json.html", limit=1)[0] + " — déjà vu ✓"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level: any text round-trips, even unseen characters


def test_stage_matches_the_tokenizer_and_adds_bos_eos(workdir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(workdir / "tokenizer")
    texts = documents("/usr/share/doc/debian-handbook/html/en-US/sect.apt-get.html", limit=1)[:3] + [""]
    table = pa.table({"id": ["a", "b", "c", "d"], "text": texts})  # no source, quality or synthetic columns
    for add_bos in (False, True):
        out = TokenizeStage(TokenizeConfig(tokenizer=str(workdir / "tokenizer"), add_bos=add_bos)).run(table)
        expected = [[hf.bos_token_id] * add_bos + hf(t, add_special_tokens=False)["input_ids"] + [hf.eos_token_id]
                    for t in texts]
        assert out["input_ids"].to_pylist() == expected
        assert out["n_tokens"].to_pylist() == [len(e) for e in expected]
        assert out["id"].to_pylist() == ["a", "b", "c", "d"]
        assert out["quality_level"].null_count == out["synthetic_kind"].null_count == 4
        assert out.schema.field("input_ids").type == pa.list_(pa.int32())


def test_tokenize_command_writes_shards_counts_and_resumes(workdir, capsys):
    args = ["tokenize", "--input", str(workdir / "curated"), "--tokenizer", str(workdir / "tokenizer"),
            "--output", str(workdir / "tokens")]
    assert main(args) == 0
    shards = sorted((workdir / "tokens").glob("part-*.parquet"))
    assert len(shards) == 3 and (workdir / "tokens" / "_SUCCESS").exists()
    counts = GroupCounts.empty()
    for shard in shards:
        table = pq.read_table(shard)
        counts = counts + GroupCounts.of(table)
        footer = json.loads(pq.ParquetFile(shard).metadata.metadata[TOKENS_METADATA_KEY.encode()])
        assert footer["groups"] == GroupCounts.of(table).to_list() and footer["eos_id"] == 2
    stats = json.loads((workdir / "tokens" / "stats.json").read_text())
    assert stats["groups"] == counts.to_list()
    curated = pq.read_table(sorted(map(str, (workdir / "curated").glob("*.parquet"))))
    assert stats["docs"] == curated.num_rows == sum(g["docs"] for g in stats["groups"])
    assert {(g["source"], g["synthetic_kind"]) for g in stats["groups"]} >= {("handbook", None), ("postgres", "diverse_qa")}
    mtimes = [s.stat().st_mtime_ns for s in shards]
    capsys.readouterr()
    assert main(args) == 0  # a rerun skips the finished work
    assert "finished earlier, skipped" in capsys.readouterr().out
    assert [s.stat().st_mtime_ns for s in shards] == mtimes

    mixture = workdir / "mix.yaml"
    mixture.write_text(f"seq_len: 64\ncomponents:\n  web:\n    paths: {workdir}/tokens/*.parquet\n"
                       "    quality_levels: [high, medium]\n    weight: 0.75\n    max_epochs: 3\n"
                       f"  qa:\n    paths: {workdir}/tokens/*.parquet\n    synthetic_kinds: [diverse_qa]\n"
                       "    weight: 0.25\n")
    assert main(["mix", str(mixture), "--tokens", "20000", "--output", str(workdir / "report")]) == 0
    assert "| web | 3 | quality_levels=['high', 'medium'] |" in (workdir / "report" / "report.md").read_text()
    assert (workdir / "report" / "report.png").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["tokenize", "--input", "{w}/curated", "--tokenizer", "{w}/nothing", "--output", "{w}/x"],
     "ccforge tokenize: error: {w}/nothing: not a tokenizer directory (no tokenizer.json or tokenizer_config.json)"),
    (["tokenize", "--input", "{w}/missing/*.parquet", "--tokenizer", "{w}/tokenizer", "--output", "{w}/x"],
     "ccforge tokenize: error: {w}/missing/*.parquet: no such file or directory"),
    (["mix", "{w}/absent.yaml", "--tokens", "100"], "ccforge mix: error: {w}/absent.yaml: no such mixture file"),
])
def test_bad_input_exits_2_with_one_line(workdir, capsys, args, message):
    assert main([a.replace("{w}", str(workdir)) for a in args]) == 2
    assert capsys.readouterr().err.strip() == message.replace("{w}", str(workdir))
