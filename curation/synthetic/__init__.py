"""Synthetic rephrasing (Nemotron-CC section 2.3): five generation tasks routed by quality level.

`plan_shard` -> `generate_shard` -> `finish_shard` (see `curation.synthetic.stage`) over any
`Backend`: a local transformers model (`backends.local`) or an OpenAI-compatible server
(`backends.http`). `flows.engine.rephrase` runs the passes as the `rephrase` stage.
"""

from curation.synthetic.config import (
    HttpBackendConfig, LocalBackendConfig, PostprocessConfig, RephraseConfig, TaskLimits,
)
from curation.synthetic.tasks import TASK_NAMES, TASKS, PromptTemplate, TaskSpec, load_prompt

__all__ = [
    "TASKS", "TASK_NAMES", "HttpBackendConfig", "LocalBackendConfig", "PostprocessConfig", "PromptTemplate",
    "RephraseConfig", "TaskLimits", "TaskSpec", "load_prompt",
]
