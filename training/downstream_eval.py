"""Downstream evaluation of an exported model with EleutherAI's lm-evaluation-harness (`ccforge eval`).

The model is a `ccforge export-hf` directory, which `AutoModelForCausalLM` loads as transformers'
NemotronH, so lm-eval's own `HFLM` runs it (batched loglikelihood, rolling loglikelihood and
generation). Tasks come from local files only and the Hugging Face Hub is switched off for the run:
lm-eval tasks named by the user (their YAML under `--include-path`, their data in local files), and
text sets, local documents scored as lm-eval `loglikelihood_rolling` tasks, which report word and
byte perplexity and bits per byte as lm-eval's wikitext task does.
lm-eval is imported inside the functions (it pulls in datasets, sacrebleu and nltk): the command line
imports this module to build its parser.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DTYPES = ("auto", "float32", "bfloat16", "float16")
RESULTS_NAME = "lm-eval-results.json"  # beside the model, unless told otherwise
TEXT_COLUMN = "text"
_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}  # file suffix -> `datasets` builder
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# lm-eval's perplexity metrics and their corpus-level aggregations (sum of log-likelihoods over sum of units)
_TEXT_SET_METRICS = {"word_perplexity": "weighted_perplexity", "byte_perplexity": "weighted_perplexity",
                     "bits_per_byte": "bits_per_byte"}
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class DownstreamEvalError(ValueError):
    """An evaluation that cannot run; the message is one line naming the model, task or file."""


@dataclass(frozen=True, kw_only=True)
class TextSet:
    """Local documents (a `text` column in JSONL or Parquet files) scored for bits per byte."""

    name: str
    files: tuple[Path, ...]

    @classmethod
    def from_path(cls, name: str, path: str | Path) -> TextSet:
        """`path` is a file, a glob, or a directory (its *.parquet files, else its *.jsonl files)."""
        if not name:
            raise DownstreamEvalError(f"text set {path}: give it a name (NAME=PATH)")
        root = Path(path)
        if root.is_dir():  # a stage directory also holds stats.json, which is not documents
            files = sorted(root.glob("*.parquet")) or sorted(root.glob("*.jsonl"))
        else:
            files = [Path(p) for p in sorted(glob.glob(str(path)))]
        files = [f for f in files if f.suffix in _BUILDERS and f.is_file()]
        if not files:
            raise DownstreamEvalError(f"text set {name}: {path} matches no .jsonl, .json or .parquet file")
        if len({_BUILDERS[f.suffix] for f in files}) > 1:
            raise DownstreamEvalError(f"text set {name}: {path} mixes JSON and Parquet files; give one kind")
        for file in files:
            if TEXT_COLUMN not in _columns(file):
                raise DownstreamEvalError(f"text set {name}: {file} has no {TEXT_COLUMN!r} column")
        return cls(name=name, files=tuple(files))

    def task_config(self) -> dict[str, Any]:
        """The lm-eval task: each document scored whole by rolling log-likelihood (lm-eval's
        `PerplexityTask` semantics), bytes counted as UTF-8 of the document."""
        return {
            "task": self.name,
            "dataset_path": _BUILDERS[self.files[0].suffix],
            "dataset_kwargs": {"data_files": {"test": [str(f) for f in self.files]}},
            "test_split": "test",
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": TEXT_COLUMN,
            "metric_list": [{"metric": metric, "aggregation": aggregation, "higher_is_better": False}
                            for metric, aggregation in _TEXT_SET_METRICS.items()],
            "metadata": {"version": 1.0},
        }


def _columns(file: Path) -> list[str]:
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(file).names
    with file.open(encoding="utf-8") as lines:
        first = next((line for line in lines if line.strip()), "{}")
    try:
        record = json.loads(first)
    except json.JSONDecodeError as err:
        raise DownstreamEvalError(f"{file}: not JSON lines ({err})") from None
    return list(record) if isinstance(record, dict) else []


@dataclass(frozen=True, kw_only=True)
class DownstreamEvalConfig:
    """What `ccforge eval` runs: lm-eval task names and text sets, on one exported model."""

    model_dir: Path
    tasks: tuple[str, ...] = ()
    include_paths: tuple[Path, ...] = ()
    text_sets: tuple[TextSet, ...] = ()
    limit: int | None = None  # documents per task (the first ones)
    batch_size: int = 8
    device: str | None = None  # None: cuda when there is one, else cpu
    dtype: str = "auto"  # auto: the dtype the model was exported in

    def __post_init__(self) -> None:
        if not (self.model_dir / "config.json").is_file():
            raise DownstreamEvalError(f"{self.model_dir}: not an exported model (no config.json); "
                                      "make one with ccforge export-hf")
        if not any((self.model_dir / name).is_file() for name in _TOKENIZER_FILES):
            raise DownstreamEvalError(f"{self.model_dir}: no tokenizer (tokenizer.json); "
                                      "export with ccforge export-hf --tokenizer DIR")
        for path in self.include_paths:
            if not path.is_dir():
                raise DownstreamEvalError(f"--include-path {path}: no such directory")
        if not self.tasks and not self.text_sets:
            raise DownstreamEvalError("nothing to evaluate: give --tasks NAME or --text-set NAME=PATH")
        names = [*self.tasks, *(s.name for s in self.text_sets)]
        if duplicate := next((n for n in names if names.count(n) > 1), None):
            raise DownstreamEvalError(f"task {duplicate!r} is given twice")
        if self.limit is not None and self.limit < 1:
            raise DownstreamEvalError(f"--limit {self.limit}: must be at least 1")
        if self.batch_size < 1:
            raise DownstreamEvalError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.dtype not in DTYPES:
            raise DownstreamEvalError(f"dtype {self.dtype!r}: choose from {', '.join(DTYPES)}")


def run_downstream_eval(cfg: DownstreamEvalConfig) -> dict[str, Any]:
    """lm-eval's results (per-task metrics, sample counts, configs), as plain JSON data."""
    from lm_eval import simple_evaluate
    from lm_eval.utils import handle_non_serializable

    with hub_offline():
        manager = _task_manager(cfg)
        model = _load_model(cfg)
        try:
            results = simple_evaluate(model=model, tasks=[*cfg.tasks, *(s.task_config() for s in cfg.text_sets)],
                                      task_manager=manager, limit=cfg.limit, log_samples=False)
        except ConnectionError as err:  # datasets: "Couldn't reach 'org/name' on the Hub (OfflineModeIsEnabled)"
            raise DownstreamEvalError(f"{err}: a task needs the network, and ccforge eval runs offline; use tasks "
                                      "whose data files are local (--text-set, or --include-path YAMLs with "
                                      "dataset_path: json and data_files)") from err
    return json.loads(json.dumps(results, default=handle_non_serializable))


def format_results(results: dict[str, Any]) -> str:
    """lm-eval's markdown table of task metrics (and of group metrics when there are groups)."""
    from lm_eval.utils import make_table

    return make_table(results) + (f"\n{make_table(results, 'groups')}" if results.get("groups") else "")


def _task_manager(cfg: DownstreamEvalConfig) -> Any:
    """An lm-eval TaskManager that knows every name in `cfg.tasks`."""
    from lm_eval.tasks import TaskManager

    include = [str(p) for p in cfg.include_paths] or None
    manager = TaskManager(include_path=include, include_defaults=False)
    if not all(_knows(manager, name) for name in cfg.tasks):
        # lm-eval's own index (~15k YAML files, ~10 s to read) only when the include paths lack a name
        manager = TaskManager(include_path=include)
    if unknown := next((name for name in cfg.tasks if not _knows(manager, name)), None):
        raise DownstreamEvalError(f"unknown task {unknown!r}: not among lm-eval's tasks, groups and tags "
                                  "or the --include-path directories")
    return manager


def _knows(manager: Any, name: str) -> bool:
    return name in manager.all_tasks or Path(name).is_file()  # lm-eval also takes a task YAML's path


def _load_model(cfg: DownstreamEvalConfig) -> Any:
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Training packs documents behind an EOS separator (training/data/stream.py): EOS, not BOS, is the
    # context a document's first token was learned in, so rolling log-likelihoods start from it.
    return HFLM(pretrained=str(cfg.model_dir), tokenizer=tokenizer, device=device, dtype=cfg.dtype,
                batch_size=cfg.batch_size, prefix_token_id=tokenizer.eos_token_id)


@contextmanager
def hub_offline() -> Iterator[None]:
    """The Hugging Face Hub switched off inside: a task whose data is not local fails at once instead
    of retrying the network. huggingface_hub and datasets read their offline flags once, at import
    (tests and other commands may have imported them already), so the flags are set there too."""
    import datasets.config
    import huggingface_hub.constants

    saved_env = {name: os.environ.get(name) for name in _OFFLINE_ENV}
    saved_flags = (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE,
                   datasets.config.HF_DATASETS_OFFLINE)
    os.environ.update(dict.fromkeys(_OFFLINE_ENV, "1"))
    huggingface_hub.constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE,
         datasets.config.HF_DATASETS_OFFLINE) = saved_flags
