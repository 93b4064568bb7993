"""`ccforge pipeline` killed (SIGKILL, the whole session: flow, Dask workers, torchrun and its ranks)
while it pretrains, then run again: the curation, tokenizer and token shards are reused untouched,
training resumes from its newest checkpoint, and the model is the one an uninterrupted run makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ccforge_processes import MODEL_FREE_STAGES, file_versions, kill_when, run_ccforge
from warc_fixtures import html_record, write_warc

STEPS, CHECKPOINT_EVERY = 12, 4


@pytest.fixture
def pipeline_config(tmp_path: Path, handbook_pages) -> Path:
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    pages = [p for lang in ("en-US", "fr-FR") for p in handbook_pages[lang][:40]]
    for k in range(2):
        write_warc(crawl / f"part-{k}.warc.gz", [html_record(p) for p in pages[k::2]])
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "curate": {"inputs": [{"path": str(crawl)}], "stages": MODEL_FREE_STAGES.split(","), "dask": {"workers": 1}},
        "training": {"vocab_size": 512, "seq_len": 64, "train": {
            "model": {"preset": "tiny"}, "batch": {"global_batch_tokens": 4096, "micro_batch_size": 8},
            "schedule": {"warmup_steps": 2}, "max_steps": STEPS,
            "checkpoint": {"every_steps": CHECKPOINT_EVERY, "keep_last": 3}, "logging": {"progress_bar": False}}}}))
    return config


def _losses(workdir: Path) -> list[tuple[int, float]]:
    lines = (workdir / "train" / "metrics.jsonl").read_text().splitlines()
    return [(record["step"], record["loss"]) for record in map(json.loads, lines)]


def _expensive_outputs(workdir: Path) -> dict[str, tuple[int, int]]:
    """The shards of every curation stage, the tokenizer and the token shards."""
    return (file_versions(workdir, "curation/*/part-*") | file_versions(workdir, "data/tokenizer/*")
            | file_versions(workdir, "data/tokens/**/*"))


@pytest.mark.slow
def test_sigkill_while_pretraining_then_rerun_gives_the_same_model(pipeline_config, tmp_path, prefect_api):
    straight = tmp_path / "straight"
    done = run_ccforge(["pipeline", str(pipeline_config), "--workdir", str(straight)], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    first_checkpoint = killed / "train" / "checkpoints" / f"step-{CHECKPOINT_EVERY:08d}"
    kill_when(["pipeline", str(pipeline_config), "--workdir", str(killed)], first_checkpoint.is_dir,
              "the first checkpoint", cwd=tmp_path, timeout=600)
    assert not (killed / "model-hf").exists()  # killed mid-training, before the export
    finished = _expensive_outputs(killed)
    assert len(finished) > 20

    rerun = run_ccforge(["pipeline", str(pipeline_config), "--workdir", str(killed)], cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    output = rerun.stdout + rerun.stderr
    for stage in MODEL_FREE_STAGES.split(","):
        assert f"{stage}: finished earlier, skipped" in output
    assert "tokenize: finished earlier, skipped" in output and "exists, reused" in output
    resumed_at = int(output.split("resumed at step ")[1].split()[0].rstrip(","))
    assert CHECKPOINT_EVERY <= resumed_at < STEPS
    assert _expensive_outputs(killed) == finished  # not one shard, token file or tokenizer file written again

    assert [step for step, _ in _losses(killed)] == list(range(1, STEPS + 1))  # no step twice
    assert _losses(killed) == _losses(straight)
    assert (killed / "model-hf" / "model.safetensors").read_bytes() == (straight / "model-hf" / "model.safetensors").read_bytes()
    assert (killed / "report.html").is_file()
