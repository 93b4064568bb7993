"""`HybridConfig`: one (pydantic) dataclass describing a Nemotron-H style hybrid model.

Field names follow transformers' `NemotronHConfig` (models/nemotron_h/configuration_nemotron_h.py)
so that a config maps 1:1 onto a Hugging Face `config.json`. The layer stack is a pattern
string in Nemotron-H notation: `M` Mamba-2, `*` attention, `-` dense MLP, `E` MoE.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

BLOCK_KINDS = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}


@dataclass(kw_only=True, config=ConfigDict(extra="forbid"))
class HybridConfig:
    pattern: str
    vocab_size: int = 131072
    hidden_size: int = 4096
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    rescale_prenorm_residual: bool = True
    tie_word_embeddings: bool = False
    # attention (`*`): GQA without positional embedding (NoPE)
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 128
    # dense MLP (`-`): squared ReLU, no gate
    intermediate_size: int = 21504
    mlp_bias: bool = False
    # Mamba-2 (`M`); d_inner = mamba_num_heads * mamba_head_dim (not expand * hidden_size)
    mamba_num_heads: int = 128
    mamba_head_dim: int = 64
    ssm_state_size: int = 128
    n_groups: int = 8
    conv_kernel: int = Field(default=4, ge=1)
    chunk_size: int = Field(default=128, ge=1)
    use_conv_bias: bool = True
    use_bias: bool = False
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_floor: float = 1e-4
    # dt = softplus(dt + dt_bias) is clamped to this range in the forward pass (time_step_min/max only
    # set dt_bias at init), as transformers >= 5.25 does; earlier releases clamped at time_step_min
    time_step_limit: tuple[float, float] = (0.0, float("inf"))
    # MoE (`E`): sigmoid router with score-correction bias, shared expert, optional LatentMoE
    n_routed_experts: int = 8
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 7688
    moe_shared_expert_intermediate_size: int = 7688
    moe_latent_size: int | None = None
    routed_scaling_factor: float = 1.0
    n_group: int = 1
    topk_group: int = 1
    norm_topk_prob: bool = True
    # ccforge training knobs (not in NemotronHConfig): DeepSeek-V3 section 2.1.2 bias update
    # speed gamma and the complementary sequence-wise aux-loss weight alpha (0 disables it)
    router_bias_update_rate: float = 1e-3
    moe_aux_loss_coeff: float = 0.0
    # multi-token prediction (DeepSeek-V3 section 2.2), each depth is a `mtp_pattern` stack
    num_nextn_predict_layers: int = 0
    mtp_pattern: str = "*E"
    mtp_loss_weight: float = 0.3

    @model_validator(mode="after")
    def _check(self) -> HybridConfig:
        for name, pattern in (("pattern", self.pattern), ("mtp_pattern", self.mtp_pattern)):
            bad = sorted(set(pattern) - set(BLOCK_KINDS))
            if not pattern or bad:
                raise ValueError(f"{name}={pattern!r}: use a non-empty string of M, *, -, E (bad: {bad})")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if not 0.0 <= self.time_step_limit[0] <= self.time_step_limit[1]:
            raise ValueError(f"time_step_limit={self.time_step_limit}: use (low, high) with 0 <= low <= high")
        if self.mamba_num_heads % self.n_groups:
            raise ValueError(f"mamba_num_heads={self.mamba_num_heads} must be a multiple of n_groups={self.n_groups}")
        self._check_moe()
        return self

    def _check_moe(self) -> None:
        if self.n_routed_experts % self.n_group:
            raise ValueError(f"n_routed_experts={self.n_routed_experts} must be a multiple of n_group={self.n_group}")
        if self.n_group > 1 and self.n_routed_experts // self.n_group < 2:
            # the group score is the sum of each group's top-2 experts (HF NemotronHTopkRouter)
            raise ValueError("each expert group needs >= 2 experts: lower n_group")
        if not 1 <= self.topk_group <= self.n_group:
            raise ValueError(f"topk_group={self.topk_group} must be in [1, n_group={self.n_group}]")
        routable = self.n_routed_experts // self.n_group * self.topk_group
        if not 1 <= self.num_experts_per_tok <= routable:
            raise ValueError(
                f"num_experts_per_tok={self.num_experts_per_tok} must be in [1, {routable}] "
                "(experts in the topk_group selected groups)"
            )

    @property
    def num_layers(self) -> int:
        return len(self.pattern)

    @property
    def d_inner(self) -> int:
        return self.mamba_num_heads * self.mamba_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels through the depthwise conv: x, B and C (HF NemotronHMamba2Mixer.conv_dim)."""
        return self.d_inner + 2 * self.n_groups * self.ssm_state_size

    @property
    def expert_dim(self) -> int:
        """Width the routed experts see: the latent size for LatentMoE, else hidden_size."""
        return self.moe_latent_size or self.hidden_size
