"""Shared fixtures: real documents from the machine's Debian documentation, written as WARC; token
shards of real documents; one Prefect server for the session's flows."""

from __future__ import annotations

import glob
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from token_fixtures import write_curated
from warc_fixtures import write_warc

from curation.shards import ShardTask
from curation.tokens import TokenizeConfig, tokenize_shard, train_tokenizer

HANDBOOK = "/usr/share/doc/debian-handbook/html"


@pytest.fixture(scope="session")
def handbook_pages() -> dict[str, list[Path]]:
    """Real HTML pages of the Debian handbook, by language directory (en-US, fr-FR, ...)."""
    pages: dict[str, list[Path]] = {}
    for path in sorted(glob.glob(f"{HANDBOOK}/*/*.html")):
        pages.setdefault(Path(path).parent.name, []).append(Path(path))
    assert pages, f"{HANDBOOK} is missing: apt-get install debian-handbook (.ci/run does)"
    return pages


@pytest.fixture
def warc_factory(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, records: list[dict], gzip: bool = True) -> Path:
        return write_warc(tmp_path / name, records, gzip=gzip)
    return make


# --- The quick start, run once per session -------------------------------------------------------

@dataclass(frozen=True)
class QuickstartRun:
    """A finished `ccforge quickstart`: its workdir and its process (exit status, output)."""

    workdir: Path
    process: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> QuickstartRun:
    """One `ccforge quickstart` on a 400-page sample crawl (minutes on 2 cores), shared by the test
    of what it writes and the test of the commands the docs tell a newcomer to run after it."""
    workdir = tmp_path_factory.mktemp("quickstart") / "demo-workdir"
    process = subprocess.run([sys.executable, "-m", "flows.cli", "quickstart", "--workdir", str(workdir),
                              "--max-records", "400"], capture_output=True, text=True, timeout=1200)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return QuickstartRun(workdir, process)


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> Iterator[str]:
    """One Prefect server for the whole session, with a database of its own: flows run in this
    process and `ccforge` subprocesses use it through PREFECT_API_URL (without it, each command
    would start a server of its own). Every test under tests/flows uses it (see its conftest.py)."""
    from flows.server import tied_server

    home = tmp_path_factory.mktemp("prefect-home")
    with tied_server(port=0, log_path=home / "server.log", home=home) as url:
        yield url


@pytest.fixture(scope="session")
def token_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~330k tokens in 4 shards of 4 row groups (64 documents each): sources handbook and
    postgres, quality levels high/medium/low, a third of postgres marked synthetic."""
    root = tmp_path_factory.mktemp("tokens")
    curated = write_curated(root / "curated")
    texts = pq.read_table(root / "curated", columns=["text"])["text"].to_pylist()
    train_tokenizer(texts[::2], vocab_size=2048, output_dir=root / "tokenizer")
    config = TokenizeConfig(tokenizer=str(root / "tokenizer"), row_group_rows=64)
    for i, path in enumerate(curated):
        tokenize_shard(config, ShardTask(stage_key="test", input_path=str(path), source="unused",
                                         output_dir=str(root / "shards"), index=i))
    return root / "shards"
