"""`PrecisionConfig`: which low-precision recipe `apply_precision` applies, and its knobs.

Defaults are the published recipes: FP8 as Nemotron-H (arXiv:2504.03624: per-tensor current
scaling, E4M3 for weights, activations *and* gradients, the first and last layers in
BF16), NVFP4 as "Pretraining LLMs with NVFP4" (arXiv:2509.25149: ~15 % of the
network, at its end, in BF16). Fields prefixed `fp8_` / `nvfp4_` only matter for that recipe.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass


@dataclass(kw_only=True, config=ConfigDict(extra="forbid"))
class PrecisionConfig:
    recipe: Literal["bf16", "fp8", "nvfp4"] = "bf16"  # the linear layers' GEMM format
    #: Format of the gradients under fp8.
    #:
    #: E4M3 gradients, as Nemotron-H and DeepSeek-V3 (arXiv:2412.19437): with a scale computed from
    #: the current amax the largest gradients fit E4M3, whose extra mantissa bit halves the
    #: rounding error. E5M2, the "hybrid" recipe of Micikevicius et al. (arXiv:2209.05433) and
    #: Transformer Engine's default, trades that bit for dynamic range: 2^30 between its max and
    #: its smallest normal number against E4M3's 2^15, for gradients spread over many octaves.
    fp8_grad_format: Literal["e4m3", "e5m2"] = "e4m3"
    fp8_bf16_first_blocks: int = Field(default=2, ge=0)  # leading blocks kept in BF16 (0 quantises every block)
    fp8_bf16_last_blocks: int = Field(default=2, ge=0)  # trailing blocks kept in BF16
    nvfp4_bf16_last_fraction: float = Field(default=0.15, ge=0, le=1)  # share of the blocks, at the end, in BF16
    nvfp4_bf16_attention: bool = True  # attention projections stay in BF16 under nvfp4
    nvfp4_bf16_mtp_latent: bool = True  # MTP layers and LatentMoE projections stay in BF16 under nvfp4
    #: Fraction of the total steps after which NVFP4 layers run their forward GEMM in BF16
    #: (the paper's late precision switch); the trainer calls `set_forward_bf16` at that step.
    nvfp4_switch_to_bf16_at: float | None = Field(default=None, ge=0, le=1)
    seed: int = Field(default=0, ge=0)  # random Hadamard signs and stochastic-rounding streams

    def forward_bf16_from_step(self, total_steps: int) -> int | None:
        """First step (0-based) whose forward runs in BF16 under the NVFP4 late switch, else None."""
        if self.recipe != "nvfp4" or self.nvfp4_switch_to_bf16_at is None:
            return None
        return math.ceil(self.nvfp4_switch_to_bf16_at * total_steps)
