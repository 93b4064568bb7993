"""Dask execution of stages: one task per shard, a shuffle for global stages, resumable and incremental.

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

import fsspec

from curation.io.pieces import piece_file
from curation.io.writers import remove_temp_files, write_json_atomic
from curation.stage import StageStats
from flows.errors import StageFailed

log = logging.getLogger("ccforge")

SUCCESS = "_SUCCESS"
STAGE_KEY_FILE = "_STAGE_KEY"


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageRun:
    """Where a stage reads and writes, and how strictly."""

    name: str
    inputs: list[tuple[str, str]]  # (path, source) in a fixed order: the shard index is the position
    output_dir: Path
    stage_key: str
    #: Hash of the stage's config alone (no inputs): the base of every shard key. Empty:
    #: shards are keyed by the whole stage key (a change of any input recomputes every shard).
    config_key: str = ""
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


def finished_stage(output_dir: Path, key: str) -> StageStats | None:
    success = output_dir / SUCCESS
    if success.exists() and json.loads(success.read_text()).get("stage_key") == key:
        return StageStats.from_dict(json.loads((output_dir / "stats.json").read_text()))
    return None


#: What survives a change of stage key in an incremental stage: shards carry their own keys.
SHARD_FILES = ("part-*.parquet", "part-*.stats.json", "rejected")


def prepare_stage_dir(output_dir: Path, key: str, keep: tuple[str, ...] = ()) -> None:
    """Resume a directory of the same key. From one of another key, remove everything but the
    `keep` globs (all of it when empty). Drop killed writes either way."""
    key_file = output_dir / STAGE_KEY_FILE
    if output_dir.exists() and (not key_file.exists() or key_file.read_text() != key):
        if not keep:
            shutil.rmtree(output_dir)
        else:
            kept = {path for pattern in keep for path in output_dir.glob(pattern)}
            for path in output_dir.iterdir():
                if path not in kept:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
    removed = remove_temp_files(output_dir)
    if removed:
        log.info("%s: removed %d partial files from an interrupted run", output_dir.name, removed)


def output_shards(output_dir: Path) -> list[str]:
    return sorted(str(p) for p in output_dir.glob("part-*.parquet"))


def run_resumable(run: StageRun, body: Callable[[], StageStats],
                  progress: Callable[[str], None] = log.info, keep: tuple[str, ...] = SHARD_FILES) -> StageStats:
    """Skip a finished stage; otherwise prepare its directory, run `body`, check and mark it.
    With a `config_key`, the shards (and `keep`) of an earlier run of the same config stay for reuse."""
    done = finished_stage(run.output_dir, run.stage_key)
    if done is not None:
        progress(f"{run.name}: finished earlier, skipped")
        return done
    started = time.perf_counter()
    prepare_stage_dir(run.output_dir, run.stage_key, keep if run.config_key else ())
    try:
        total = body()
    except StageFailed:
        raise
    except Exception as err:  # a global pass (a shuffle, a reduction): the stage is named, the input is in the message
        raise StageFailed(f"stage {run.name} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
    total.seconds = time.perf_counter() - started
    total.check_accounting()
    write_json_atomic(total.to_dict(), run.output_dir / "stats.json")
    write_json_atomic({"stage_key": run.stage_key, "shards": len(run.inputs)}, run.output_dir / SUCCESS)
    return total


