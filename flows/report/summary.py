"""What a run left in its workdir, gathered into one `RunSummary` (reading only, nothing written).

Both layouts are understood, and every part is optional:

    WORKDIR/curation/<stage>/stats.json, curation/stats.json    `ccforge quickstart` / the pipeline flow
    WORKDIR/<stage>/stats.json, WORKDIR/stats.json              `ccforge curate --workdir WORKDIR`
    WORKDIR/data/tokens/stats.json, data/mixture-report/report.json
    WORKDIR/train/metrics.jsonl (or the `out` of WORKDIR/train.yaml), WORKDIR/model-hf/config.json
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from curation.io.writers import read_json_if_present
from curation.stage import StageStats
from flows.config.curate import CURATION_STAGES
from flows.engine.stage_dir import read_stage_stats

FUZZY_DEDUP = "fuzzy-dedup"
HEURISTICS = "heuristics"
REPHRASE = "rephrase"


@dataclass(frozen=True)
class Throughput:
    """Speed of one step of the run; None where it does not apply."""

    name: str
    seconds: float
    docs: int | None = None
    bytes: int | None = None
    tokens: int | None = None

    def rate(self, amount: int | None, scale: float = 1.0) -> float | None:
        return amount / scale / self.seconds if amount is not None and self.seconds > 0 else None


@dataclass(frozen=True)
class RunSummary:
    """Every number the run report shows, as read from the workdir."""

    workdir: Path
    curation_dir: Path | None = None
    stages: list[StageStats] = field(default_factory=list)  # curation stages, in run order
    fuzzy_clusters: dict | None = None  # fuzzy-dedup/clusters.json
    cluster_sizes: dict[int, int] = field(default_factory=dict)  # documents in a cluster -> clusters
    quality: dict | None = None  # classify/quality.json
    synthetic: dict | None = None  # the `rephrase` section of rephrase/stats.json
    tokens: dict | None = None  # data/tokens/stats.json
    mixture: dict | None = None  # data/mixture-report/report.json
    mixture_png: bytes | None = None  # its chart, data/mixture-report/report.png
    training: list[dict] = field(default_factory=list)  # metrics.jsonl, one record per step
    model_hf: dict | None = None  # model-hf/config.json, plus its directory and weight bytes
    ablation: dict | None = None  # ablation/ablation.json (`ccforge ablate`, or the pipeline's ablation section)

    def stage(self, name: str) -> StageStats | None:
        return next((s for s in self.stages if s.name == name), None)

    def throughput(self) -> list[Throughput]:
        rows = [Throughput(s.name, s.seconds, docs=s.docs_in, bytes=s.bytes_in) for s in self.stages]
        if self.tokens:
            rows.append(Throughput("tokenize", self.tokens["seconds"], docs=self.tokens["docs"],
                                   bytes=self.tokens["text_bytes"], tokens=self.tokens["tokens"]))
        run = (self.synthetic or {}).get("this_run", {})
        if run.get("generated_tokens"):  # the model's own speed, apart from planning and post-processing
            rows.insert(len(self.stages), Throughput("rephrase (generation)", run["generate_seconds"],
                                                     tokens=run["generated_tokens"]))
        training = training_throughput(self.training)
        return rows + ([training] if training else [])


def training_throughput(records: list[dict]) -> Throughput | None:
    """Tokens and seconds of the steady steps (the first one also compiles and warms up)."""
    steady = list(zip(records, records[1:]))
    if not steady:
        return None
    seconds = sum(r.get("step_seconds") or (r["tokens"] - before["tokens"]) / r["tokens_per_s"] for before, r in steady)
    return Throughput("training", seconds, tokens=records[-1]["tokens"] - records[0]["tokens"])


def _read_bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def find_curation_dir(workdir: Path) -> Path | None:
    """WORKDIR/curation when the run made one, else WORKDIR itself if it holds curation stages."""
    for candidate in (workdir / "curation", workdir):
        if read_stage_stats(candidate) or any(read_stage_stats(candidate / s) for s in CURATION_STAGES):
            return candidate
    return None


def read_stages(curation_dir: Path) -> list[StageStats]:
    """The last curate run's funnel (its stats.json); without one, every finished stage directory."""
    summary = read_stage_stats(curation_dir)
    if summary and "stages" in summary:
        return [StageStats.from_dict(s) for s in summary["stages"]]
    found = [read_stage_stats(curation_dir / name) for name in CURATION_STAGES]
    return [StageStats.from_dict(stats) for stats in found if stats]


def read_cluster_sizes(duplicates: Path) -> dict[int, int]:
    """{cluster size: clusters} from duplicates.parquet: each removed row joins its kept document."""
    # A directory of per-shard parts (one file in workdirs made before 2026-12).
    parts = sorted(duplicates.glob("part-*.parquet")) if duplicates.is_dir() else [duplicates] * duplicates.is_file()
    if not parts:
        return {}
    table = pq.read_table([str(part) for part in parts])
    column = "component" if "component" in table.column_names else "kept_id"
    members = Counter(table[column].to_pylist())
    return dict(sorted(Counter(removed + 1 for removed in members.values()).items()))


def read_metrics(path: Path) -> list[dict]:
    """Step records; a resumed run may log a step again, and its last record wins. The last line
    of a run still training may be half written: it is left out."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    by_step = {}
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not valid JSON ({err})") from err
        by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


def last_evaluation(records: list[dict]) -> dict[str, float]:
    """The `eval/SET/METRIC` values of the last record that has them ({} when the run never evaluated)."""
    evaluated = [r for r in records if any(key.startswith("eval/") for key in r)]
    return {key: value for key, value in (evaluated[-1] if evaluated else {}).items() if key.startswith("eval/")}


def eval_series(records: list[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Every evaluation of the run: set -> metric (loss, bpb) -> (step, value) in step order."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for record in records:
        for key, value in record.items():
            if key.startswith("eval/"):
                eval_set, metric = key.removeprefix("eval/").rsplit("/", 1)
                series.setdefault(eval_set, {}).setdefault(metric, []).append((record["step"], value))
    return series


def find_metrics(workdir: Path) -> Path:
    config = workdir / "train.yaml"
    if not (workdir / "train" / "metrics.jsonl").is_file() and config.is_file():
        out = (yaml.safe_load(config.read_text()) or {}).get("out")
        if out:
            return Path(out) / "metrics.jsonl"
    return workdir / "train" / "metrics.jsonl"


def read_model_hf(directory: Path) -> dict | None:
    config = read_json_if_present(directory / "config.json")
    if config is None:
        return None
    weights = sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    return {"path": str(directory), "model_type": config.get("model_type"), "weight_bytes": weights}


def read_run(workdir: str | Path) -> RunSummary:
    """Gather everything the report shows; a missing part is None or empty, never an error."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"{workdir}: no such directory")
    curation = find_curation_dir(workdir)
    stages_dir = curation or workdir / "curation"  # without one, every read below finds nothing
    data = workdir / "data"
    return RunSummary(
        workdir=workdir, curation_dir=curation, stages=read_stages(stages_dir),
        fuzzy_clusters=read_json_if_present(stages_dir / FUZZY_DEDUP / "clusters.json"),
        cluster_sizes=read_cluster_sizes(stages_dir / FUZZY_DEDUP / "duplicates.parquet"),
        quality=read_json_if_present(stages_dir / "classify" / "quality.json"),
        synthetic=(read_stage_stats(stages_dir / REPHRASE) or {}).get("rephrase"),
        tokens=read_stage_stats(data / "tokens"),
        mixture=read_json_if_present(data / "mixture-report" / "report.json"),
        mixture_png=_read_bytes(data / "mixture-report" / "report.png"),
        training=read_metrics(find_metrics(workdir)),
        model_hf=read_model_hf(workdir / "model-hf"),
        ablation=read_json_if_present(workdir / "ablation" / "ablation.json"))
