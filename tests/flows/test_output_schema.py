"""Every output directory of a curate run (and its token shards) loads as one dataset with Hugging
Face `datasets`, empty shards included: its shards share one schema.

The run: real pages with duplicates, a file that cannot be read (an empty extract shard, so an
empty shard in every later stage), a shard of real but short lines that the heuristics drop whole,
rejects kept, a fastText classifier, a stub rephrase server for a few documents only (empty
rephrase shards), and the token shards of curated + rephrase."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distributed import LocalCluster
from token_fixtures import HANDBOOK_EN, documents
from warc_fixtures import html_record, write_warc

from classifiers.fasttext_classifier import FastTextTrainConfig, train_fasttext
from classifiers.stage import ClassifierSpec, ClassifyConfig
from flows.build_mixture import build_mixture
from flows.config.curate import load_curate_config
from flows.curate import curate
from flows.demo.stub_server import StubServer

LICENCES = "/usr/share/common-licenses/*"


def _licence_texts() -> list[str]:
    return [Path(p).read_text(errors="replace") for p in sorted(glob.glob(LICENCES))]


def _write_short_documents(path: Path) -> int:
    """The first lines of the licence texts (real text, each far below the heuristics' word minimum),
    and a line cut short (a rejected record)."""
    lines = [next(line.strip() for line in text.splitlines() if line.strip()) for text in _licence_texts()]
    records = [json.dumps({"id": f"short-{i}", "text": line}) for i, line in enumerate(lines)]
    path.write_text("\n".join([*records, records[0][:20]]) + "\n")
    return len(lines)


def _train_classifier(out: Path) -> Path:
    positives = documents(f"{HANDBOOK_EN}/*.html", limit=40, max_chars=2000)
    negatives = [t[k:k + 2000] for t in _licence_texts() for k in range(0, 20000, 2000) if len(t[k:k + 2000]) > 200]
    return train_fasttext(positives + negatives, ["hq"] * len(positives) + ["cc"] * len(negatives), out,
                          FastTextTrainConfig(dim=16, bucket=50_000, epoch=5))


@pytest.fixture(scope="module")
def crawl(tmp_path_factory, handbook_pages) -> Path:
    """Real pages in three languages (four twice, under mirror URLs), short lines, an unreadable file."""
    crawl = tmp_path_factory.mktemp("schema") / "crawl"
    crawl.mkdir()
    pages = [p for lang in ("en-US", "fr-FR", "de-DE") for p in handbook_pages[lang][20:28]]
    records = [html_record(p) for p in pages] + [html_record(p, url=f"https://mirror.example.org/{i}.html")
                                                 for i, p in enumerate(pages[:4])]
    for k in range(2):
        write_warc(crawl / f"part-{k}.warc.gz", records[k::2])
    assert _write_short_documents(crawl / "short.jsonl") > 3
    (crawl / "wrong.parquet").write_bytes(b"PAR1 not a parquet file")
    return crawl


@pytest.fixture(scope="module")
def run_dir(crawl: Path, prefect_api) -> Path:
    """WORKDIR with curation/ (every stage, rejects kept) and data/ (token shards)."""
    workdir = crawl.parent / "work"
    classifier = _train_classifier(crawl.parent / "fasttext_hq.bin")
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    with StubServer() as server, cluster:
        config = load_curate_config(
            None, inputs=[{"path": str(crawl)}], workdir=str(workdir / "curation"), keep_rejects=True,
            dask={"scheduler": cluster.scheduler_address}, substring_dedup={"min_bytes": 200},
            heuristics={"c4": {"filter_no_terminal_punct": False}, "apply_to_quality_levels": "all"},  # some short lines rate high
            classify=ClassifyConfig(classifiers=(ClassifierSpec(name="ft", path=str(classifier)),)),
            rephrase={"backend": "http", "http": {"endpoint": server.url, "model": "stub"}, "max_docs": 4})
        curate(config)
        build_mixture([str(workdir / "curation" / "curated"), str(workdir / "curation" / "rephrase")],
                      workdir / "data", vocab_size=512, seq_len=128, tokenizer_docs=100,
                      scheduler=cluster.scheduler_address)
    return workdir


def _rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def _output_dirs(workdir: Path) -> dict[Path, list[Path]]:
    """Directories of Parquet shards, without the global stages' working files (`_name` folders)."""
    dirs: dict[Path, list[Path]] = {}
    for path in sorted(workdir.rglob("*.parquet")):
        if path.is_file() and not any(part.startswith("_") for part in path.relative_to(workdir).parts):
            dirs.setdefault(path.parent, []).append(path)
    return dirs


def test_every_output_directory_loads_as_one_dataset(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    dirs = _output_dirs(run_dir)
    names = {str(d.relative_to(run_dir)) for d in dirs}
    stages = ("extract", "langid", "exact-dedup", "fuzzy-dedup", "substring-dedup", "classify", "heuristics")
    assert {f"curation/{s}" for s in stages} | {"curation/curated", "curation/rephrase", "data/tokens",
                                                "curation/extract/rejected", "curation/heuristics/rejected"} <= names
    # the unreadable file leaves an empty shard in every stage; the short lines, one the heuristics emptied
    for stage in (*stages, "curated", "rephrase"):
        assert any(_rows(p) == 0 for p in dirs[run_dir / "curation" / stage]), stage
    heuristics_in = {p.name: _rows(p) for p in dirs[run_dir / "curation" / "classify"]}
    assert any(_rows(p) == 0 < heuristics_in[p.name] for p in dirs[run_dir / "curation" / "heuristics"])
    assert any(_rows(p) > 0 for p in dirs[run_dir / "curation" / "rephrase"])

    for directory, shards in dirs.items():
        schemas = {p.name: pq.read_schema(p).remove_metadata() for p in shards}
        first = next(iter(schemas.values()))
        assert all(s.equals(first) for s in schemas.values()), (directory, schemas)
        # `datasets` takes the columns of the first file: put the empty shards first
        files = sorted(shards, key=lambda p: (_rows(p) > 0, p.name))
        dataset = datasets.load_dataset("parquet", data_files=[str(p) for p in files], split="train",
                                        cache_dir=str(tmp_path / "hf"))
        assert dataset.column_names == first.names, directory
        assert dataset.num_rows == sum(_rows(p) for p in shards), directory
    curated = pq.read_schema(run_dir / "curation" / "curated" / "part-00000.parquet").names
    assert pq.read_schema(run_dir / "curation" / "rephrase" / "part-00000.parquet").names[:len(curated)] == curated
