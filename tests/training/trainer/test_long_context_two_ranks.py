"""A long-context phase under `ccforge train --nproc 2` (gloo, CPU): two ranks switch from 64-token
to 256-token windows (document attention without a T x T mask on both sides) at the same
optimizer step, and a run stopped at the boundary resumes to the uninterrupted run's losses
(stops on either side of it in one process: test_train.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CCFORGE = [str(Path(sys.executable).parent / "ccforge")]


def _train(config: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*CCFORGE, "train", str(config), "--nproc", "2", "--out", str(out), *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_ranks_cross_the_long_context_boundary_and_resume_exactly(train_config, token_dir: Path,
                                                                       tmp_path: Path) -> None:
    """512 tokens a step over 2 ranks: steps 1-4 are 2 x (4 windows of 64), steps 5-6 are
    2 x (1 window of 256); stopped after step 4, the last short step."""
    shards = str(token_dir / "*.parquet")
    weights = {"handbook": 0.5, "postgres": 0.5}
    mixture = tmp_path / "long-context-mixture.yaml"
    mixture.write_text(yaml.safe_dump({"seq_len": 64, "seed": 5, "components": {
        "handbook": {"paths": shards, "sources": ["handbook"]}, "postgres": {"paths": shards, "sources": ["postgres"]}},
        "phases": [{"name": "short", "tokens": 4 * 512, "weights": weights},
                   {"name": "long", "seq_len": 256, "micro_batch_size": 1, "weights": weights}]}))
    config = train_config(data={"mixture": str(mixture)}, max_steps=6,
                          checkpoint={"every_steps": 100, "keep_last": 3},
                          logging={"progress_bar": False, "tensorboard": False, "peak_tflops": 1.0})
    _train(config, tmp_path / "straight")
    _train(config, tmp_path / "staged", "--stop-after", "4")
    _train(config, tmp_path / "staged", "--resume")
    straight = _records(tmp_path / "straight")
    assert [(r["phase"], r["seq_len"], r["tokens"]) for r in straight] == [
        (0, 64, 512), (0, 64, 1024), (0, 64, 1536), (0, 64, 2048), (1, 256, 2560), (1, 256, 3072)]
    assert [r["loss"] for r in _records(tmp_path / "staged")] == [r["loss"] for r in straight]
