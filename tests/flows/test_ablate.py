"""`ccforge ablate`: variants of a mixture (reweighted, or a file of their own), several seeds each,
trained as proxy models on real-document token shards and compared in a table and a chart; the
config fails early with one-line errors; a rerun trains nothing again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flows.ablate import summarise
from flows.cli.main import main
from flows.config.ablate import load_ablation_config, variant_mixture
from flows.errors import ConfigError
from flows.report.charts import ablation_metrics
from flows.report.render import write_report
from flows.report.sections import ablation_section, ablation_table

TRAIN = {"model": {"preset": "tiny", "overrides": {"vocab_size": 2048}},
         "batch": {"global_batch_tokens": 512, "micro_batch_size": 4}, "schedule": {"warmup_steps": 1},
         "max_steps": 3, "checkpoint": {"every_steps": 100}, "logging": {"progress_bar": False, "tensorboard": False}}


@pytest.fixture
def base_mixture(tmp_path: Path, token_dir: Path) -> Path:
    path = tmp_path / "mixture.yaml"
    shards = str(token_dir / "*.parquet")
    path.write_text(yaml.safe_dump({"seq_len": 64, "seed": 5, "components": {
        "handbook": {"paths": shards, "sources": ["handbook"], "weight": 0.5},
        "postgres": {"paths": shards, "sources": ["postgres"], "weight": 0.3},
        "high": {"paths": shards, "quality_levels": ["high"], "weight": 0.2}}}))
    return path


def write_config(tmp_path: Path, base_mixture: Path, **fields: object) -> Path:
    config = {"out": str(tmp_path / "ablation"), "mixture": str(base_mixture), "seeds": [1, 2], "train": TRAIN,
              "variants": {"handbook-only": {"weights": {"handbook": 1.0}},
                           "postgres-and-high": {"weights": {"postgres": 3, "high": 1}}}} | fields
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_variants_reweight_the_base_or_bring_their_own(tmp_path: Path, base_mixture: Path) -> None:
    own = tmp_path / "own.yaml"
    own.write_text(base_mixture.read_text().replace("seed: 5", "seed: 9"))
    config = load_ablation_config(write_config(tmp_path, base_mixture, variants={
        "reweighted": {"weights": {"postgres": 3, "high": 1, "handbook": 0}}, "base": {}, "own": {"mixture": str(own)}}))
    reweighted = variant_mixture(config, "reweighted")
    assert {name: c["weight"] for name, c in reweighted["components"].items()} == {
        "handbook": 0.0, "postgres": 0.75, "high": 0.25}  # kept at 0: its held-out documents stay an evaluation set
    assert reweighted["components"]["high"]["quality_levels"] == ["high"] and reweighted["seq_len"] == 64
    assert variant_mixture(config, "base") == yaml.safe_load(base_mixture.read_text())
    assert variant_mixture(config, "own")["seed"] == 9


@pytest.mark.parametrize(("fields", "message"), [
    ({"variants": {"a": {"weights": {"handbok": 1}}, "b": {}}},
     "variant 'a' weights components ['handbok'] it does not have (it has ['handbook', 'high', 'postgres'])"),
    ({"variants": {"only": {}}}, "variants: "),
    ({"seeds": [1, 1]}, "ablation.yaml: seeds: seeds repeat: [1, 1]"),
    ({"train": TRAIN | {"seed": 3}}, "train.seed is set per run by the ablation; leave it out"),
    ({"train": TRAIN | {"max_steps": 0}}, "train.max_steps"),
    ({"mixture": None}, "reweight or reuse the base mixture: set `mixture`"),
    ({"variants": {"a": {"mixture": "nowhere.yaml"}, "b": {}}}, "variant 'a': mixture nowhere.yaml does not exist"),
])
def test_bad_configs_fail_with_one_line(tmp_path: Path, base_mixture: Path, fields: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_ablation_config(write_config(tmp_path, base_mixture, **fields))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_summary_table_and_chart(tmp_path: Path) -> None:
    runs = [{"variant": v, "seed": s, "tokens": 1536, "run_dir": "-", "metrics": {"train/loss": loss,
             "eval/held-out/loss": loss + 0.5, "eval/held-out/bpb": bpb}}
            for v, s, loss, bpb in [("a", 1, 5.0, 2.0), ("a", 2, 5.2, 2.2), ("b", 1, 4.0, 1.5), ("b", 2, 4.0, 1.5)]]
    summary = {"variants": ["a", "b"], "seeds": [1, 2], "runs": runs, "summary": summarise(runs, ["a", "b"])}
    assert summary["summary"]["a"]["eval/held-out/bpb"] == pytest.approx(
        {"mean": 2.1, "std": 0.1414213562, "min": 2.0, "max": 2.2, "seeds": 2})
    assert summary["summary"]["b"]["train/loss"]["std"] == 0.0
    assert ablation_metrics(summary) == ["eval/held-out/bpb", "eval/held-out/loss", "train/loss"]
    table = ablation_table(summary)
    assert table.rows[0] == ["a", "2", "1,536", "2.1000 ± 0.1414", "5.6000 ± 0.1414", "5.1000 ± 0.1414"]
    paths = write_report([ablation_section(summary)], tmp_path, title=f"Ablation: {tmp_path}")
    markdown = paths["markdown"].read_text()
    assert markdown.startswith(f"# Ablation: {tmp_path}") and "| b | 2 | 1,536 | 1.5000 ± 0.0000 |" in markdown
    assert (tmp_path / "report-images/ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in paths["html"].read_text()


@pytest.mark.slow
def test_ablate_trains_every_variant_and_seed_and_reruns_nothing(tmp_path: Path, base_mixture: Path,
                                                                 prefect_api, caplog) -> None:
    config = write_config(tmp_path, base_mixture)
    assert main(["ablate", str(config)]) == 0
    out = tmp_path / "ablation"
    result = json.loads((out / "ablation.json").read_text())
    assert [(r["variant"], r["seed"], r["tokens"]) for r in result["runs"]] == [
        ("handbook-only", 1, 1536), ("handbook-only", 2, 1536), ("postgres-and-high", 1, 1536),
        ("postgres-and-high", 2, 1536)]
    losses = {(r["variant"], r["seed"]): r["metrics"]["train/loss"] for r in result["runs"]}
    assert len(set(losses.values())) == 4  # each seed and mixture trains a different model
    for variant in ("handbook-only", "postgres-and-high"):
        mixture = yaml.safe_load((out / "mixtures" / f"{variant}.yaml").read_text())
        train = yaml.safe_load((out / "runs" / variant / "seed-2" / "train.yaml").read_text())
        assert train["seed"] == 2 and train["data"]["mixture"] == str((out / "mixtures" / f"{variant}.yaml").resolve())
        assert sum(c["weight"] for c in mixture["components"].values()) == pytest.approx(1.0)
    assert "| handbook-only | 2 | 1,536 |" in (out / "report.md").read_text()
    assert (out / "report.html").is_file()

    caplog.clear()
    assert main(["ablate", str(config)]) == 0  # every run finished: no trainer starts again
    assert caplog.text.count("finished earlier, training skipped") == 4
    metrics = (out / "runs" / "handbook-only" / "seed-1" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == [1, 2, 3]
    assert json.loads((out / "ablation.json").read_text())["runs"] == result["runs"]


def test_a_pipeline_ablation_runs_on_the_pipelines_own_mixture(tmp_path: Path) -> None:
    from flows.config.pipeline import load_pipeline_config

    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({
        "workdir": str(tmp_path / "work"), "curate": {"inputs": [{"path": "crawl"}]},
        "training": {"vocab_size": 2048, "nproc": 2, "train": TRAIN | {"seed": 7}},
        "ablation": {"seeds": [4, 5], "train": {"max_steps": 2},
                     "variants": {"high": {"weights": {"high-quality": 1}}, "full": {}}}}))
    config = load_pipeline_config(path, workdir=str(tmp_path / "other")).ablation
    assert config.out == str(tmp_path / "other/ablation") and config.mixture == str(tmp_path / "other/data/mixture.yaml")
    assert config.seeds == [4, 5] and config.nproc == 2 and "seed" not in config.train
    assert config.train["max_steps"] == 2 and config.train["batch"] == TRAIN["batch"]
    assert config.train["model"] == {"preset": "tiny", "overrides": {"vocab_size": 2048}}
    assert config.variants["high"].weights == {"high-quality": 1}

    path.write_text(path.read_text().replace("max_steps: 2", "max_steps: -2"))
    with pytest.raises(ConfigError, match=r"pipeline.yaml: ablation.train.max_steps: Input should be greater than 0$"):
        load_pipeline_config(path)


@pytest.mark.slow
def test_the_pipeline_evaluates_and_runs_its_ablation(sample_crawl: Path, tmp_path: Path) -> None:
    """Training holds a fifth of the documents out and evaluates them; `ccforge eval` scores the
    exported model on the curated documents held out (bits per byte). Without classify every
    document is low quality: `full` and `low-only` are the same mixture, so each seed gives both
    variants the same model (and the same held-out metrics), and the two seeds give two."""
    from ccforge_processes import MODEL_FREE_STAGES, run_ccforge

    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "curate": {"inputs": [{"path": str(sample_crawl)}], "stages": MODEL_FREE_STAGES.split(","),
                   "dask": {"workers": 1}},
        "training": {"vocab_size": 512, "seq_len": 64, "train": TRAIN | {
            "model": {"preset": "tiny"}, "batch": {"global_batch_tokens": 1024, "micro_batch_size": 8},
            "eval": {"holdout": 0.2, "every_steps": 2, "windows": 4}}},
        "evaluation": {"limit": 6, "batch_size": 2},
        "ablation": {"seeds": [1, 2], "train": {"max_steps": 2},
                     "variants": {"full": {}, "low-only": {"weights": {"low-quality": 1.0}}}}}))
    workdir = tmp_path / "work"
    done = run_ccforge(["pipeline", str(config), "--workdir", str(workdir)], cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"ablation: {workdir / 'ablation' / 'ablation.json'}" in done.stdout
    downstream = json.loads((workdir / "model-hf" / "lm-eval-results.json").read_text())
    assert 0 < downstream["results"]["held-out"]["bits_per_byte,none"] < 20
    assert (workdir / "eval" / "held-out.parquet").is_file()
    runs = json.loads((workdir / "ablation" / "ablation.json").read_text())["runs"]
    loss = {(r["variant"], r["seed"]): r["metrics"]["train/loss"] for r in runs}
    assert [r["tokens"] for r in runs] == [2048] * 4
    assert loss["full", 1] == loss["low-only", 1] and loss["full", 2] == loss["low-only", 2]
    assert loss["full", 1] != loss["full", 2]
    held_out = {(r["variant"], r["seed"]): r["metrics"]["eval/low-quality/bpb"] for r in runs}
    assert held_out["full", 1] == held_out["low-only", 1] and held_out["full", 1] != held_out["full", 2]
    report = (workdir / "report.md").read_text()
    assert "## Ablation" in report and "| low-only | 2 | 2,048 |" in report
