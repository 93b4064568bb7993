"""The stage directory: the one resumable protocol every stage runs under (the curation stages,
tokenize and rephrase), and the only place that knows its file names.

    OUT/part-NNNNN.parquet, part-NNNNN.stats.json   output shards; each stats file holds its shard key
    OUT/_STAGE_KEY                                  the key the directory's reusable files were made under
    OUT/stats.json                                  the stage's counts (plus stage-specific sections)
    OUT/_SUCCESS                                    written last: the stage key the stage finished under

A stage directory is finished when its `_SUCCESS` holds the current stage key (a hash of
the stage's config and its inputs' fingerprint). Below that, every output shard carries a
shard key in its `part-NNNNN.stats.json`: a hash of the stage config, the shard's position,
the identity of its input shard and (for dedup and classify) what the global pass decided
for it. A rerun recomputes only shards whose key changed, so new crawl files added to the
inputs cost their own shards plus the global passes; shards of unchanged inputs are reused
as they are (their files untouched, so the next stage reuses its shards too). When the
stage key changes, everything but the shards is cleared (global passes start afresh), and
shards of another key are rewritten or removed, so stale shards never mix in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, Self, TypeVar

import fsspec

from curation.io.pieces import piece_file
from curation.io.writers import read_json_if_present, remove_temp_files, write_json_atomic
from curation.stage import StageStats

log = logging.getLogger("ccforge")

SUCCESS = "_SUCCESS"
STATS_FILE = "stats.json"
STAGE_KEY_FILE = "_STAGE_KEY"

#: What survives a change of stage key in an incremental stage: shards carry their own keys.
SHARD_FILES = ("part-*.parquet", "part-*.stats.json", "rejected")


class Stats(Protocol):
    """The counts a stage directory records: `StageStats` (documents in, out and dropped by reason)
    or `curation.tokens.TokenStats` (documents and tokens by group). Built empty as
    `stats_type(name=...)`; shards add up with `+`."""

    seconds: float

    def __add__(self, other: Self) -> Self: ...

    def check_accounting(self) -> None: ...

    def to_dict(self) -> dict: ...

    @classmethod
    def from_dict(cls, data: dict) -> Self: ...


StatsT = TypeVar("StatsT", bound=Stats)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageRun:
    """Where a stage reads and writes, under which keys, and how strictly."""

    name: str
    inputs: list[tuple[str, str]]  # (path, source) in a fixed order: the shard index is the position
    output_dir: Path
    stage_key: str
    #: Hash of the stage's config alone (no inputs): the base of every shard key. Empty:
    #: shards are keyed by the whole stage key (a change of any input recomputes every shard).
    config_key: str = ""
    #: What the directory's intermediate files depend on, when that is less than the stage key
    #: (rephrase: plans and answers stay while only post-processing changes). Empty: the stage key.
    files_key: str = ""
    stats_type: type[Stats] = StageStats
    keep_rejects: bool = False
    strict: bool = False
    batch_rows: int = 1000


def stage_key(name: str, config: object, input_fingerprint: str) -> str:
    config_data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    payload = json.dumps({"stage": name, "config": config_data, "inputs": input_fingerprint},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def shard_identity(path: str) -> str:
    """What a shard's contents depend on: the shard key the stage that wrote it recorded in its
    `.stats.json` (so a shard reused as it was keeps its identity), else its size and mtime."""
    file = piece_file(path)  # a piece's range is in its path; its contents depend on its file
    if file.endswith(".parquet") and "://" not in file and file == path:
        stats = Path(file[: -len(".parquet")] + ".stats.json")
        if stats.exists():
            key = json.loads(stats.read_text()).get("stage_key")
            if key:
                return key
    fs, fs_path = fsspec.core.url_to_fs(file)
    info = fs.info(fs_path)
    return f"{info.get('size')}:{info.get('mtime') or info.get('LastModified') or ''}"


def fingerprint_files(paths: list[str]) -> str:
    """Paths and identities of input files: changes when any input changes."""
    entries = [[path, shard_identity(path)] for path in paths]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:32]


def shard_keys(run: StageRun, decisions: list[str] | None = None) -> list[str]:
    """The key of every output shard of `run`: config, position, input identity and the global
    pass's decision for the shard (`decisions[i]`, e.g. a digest of the rows it drops)."""
    base = run.config_key or run.stage_key
    keys = []
    for i, (path, source) in enumerate(run.inputs):
        material = [base, i, path, source, shard_identity(path), decisions[i] if decisions else ""]
        keys.append(hashlib.sha256(json.dumps(material).encode()).hexdigest()[:32])
    return keys


def stage_finished(output_dir: str | Path, key: str | None = None) -> bool:
    """Whether `output_dir` holds a finished stage (finished under `key`, when given)."""
    success = Path(output_dir) / SUCCESS
    return success.exists() and (key is None or json.loads(success.read_text()).get("stage_key") == key)


def read_stage_stats(output_dir: str | Path) -> dict | None:
    """The stats.json of a stage directory as written, None when there is none. (A curate workdir
    keeps the funnel of its stages under the same name.)"""
    return read_json_if_present(Path(output_dir) / STATS_FILE)


def finished_stage(run: StageRun) -> Stats | None:
    """The counts of `run` when its directory finished under its stage key, else None."""
    if stage_finished(run.output_dir, run.stage_key):
        return run.stats_type.from_dict(read_stage_stats(run.output_dir))
    return None


def output_shards(output_dir: Path) -> list[str]:
    return sorted(str(p) for p in output_dir.glob("part-*.parquet"))


def run_resumable(run: StageRun, body: Callable[[], StatsT], progress: Callable[[str], None] = log.info, *,
                  keep: tuple[str, ...] = SHARD_FILES, sections: dict | None = None) -> StatsT:
    """Skip a finished stage; otherwise prepare its directory, run `body`, check its counts, write
    them and mark the stage finished. With a `config_key`, the shards (and `keep`) of an earlier run
    of the same config stay for reuse. `sections`, filled by `body`, go into stats.json beside the counts."""
    done = finished_stage(run)
    if done is not None:
        progress(f"{run.name}: finished earlier, skipped")
        return done
    started = time.perf_counter()
    _prepare(run.output_dir, run.files_key or run.stage_key, keep if run.config_key else ())
    total = body()
    total.seconds = time.perf_counter() - started
    total.check_accounting()
    write_json_atomic(total.to_dict() | (sections or {}), run.output_dir / STATS_FILE)
    write_json_atomic({"stage_key": run.stage_key, "shards": len(run.inputs)}, run.output_dir / SUCCESS)
    return total


def _prepare(output_dir: Path, key: str, keep: tuple[str, ...]) -> None:
    """Resume a directory of the same files key. From one of another key, remove everything but
    the `keep` globs (all of it when empty). Either way the stage is unfinished until marked again,
    and writes a killed run left half done are dropped."""
    key_file = output_dir / STAGE_KEY_FILE
    if output_dir.exists() and (not key_file.exists() or key_file.read_text() != key):
        kept = {path for pattern in keep for path in output_dir.glob(pattern)}
        for path in output_dir.iterdir():
            if path not in kept:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / SUCCESS).unlink(missing_ok=True)
    key_file.write_text(key)
    removed = remove_temp_files(output_dir)
    if removed:
        log.info("%s: removed %d partial files from an interrupted run", output_dir.name, removed)
