"""Model sizes as a table of numbers: CPU presets plus the published Nemotron-H shapes.

Published shapes are those of the Hugging Face releases named in each entry (their `config.json`,
or, where noted, NVIDIA's Megatron-Bridge model providers for them); only fields that differ from
`HybridConfig`'s defaults (which are NemotronHConfig's) are listed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from training.model.config import HybridConfig

_NANO3_PATTERN = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"
# 118 layers: 54 Mamba-2, 54 MLP, 10 attention (Nemotron-H, arXiv:2504.03624)
_H56B_PATTERN = ("M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-"
                 "M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-")
# 98 layers: 45 Mamba-2, 48 MLP, 5 attention; pruned and distilled from the 56B (MiniPuzzle, arXiv:2504.03624)
_H47B_PATTERN = "M-M-M-M-M-M-M-M-M*-M-M-M-M-M-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-M-M---MM---M-M*-M-M-M-M-M-"
_SUPER3_PATTERN = "MEMEMEM*EMEMEMEM*EMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEM*EMEMEMEME"

_TABLE: dict[str, dict[str, Any]] = {
    # CPU presets: every block kind, a few seconds per step on 2 cores.
    "tiny": dict(
        pattern="MEM*EM-E", vocab_size=1024, hidden_size=128,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, intermediate_size=384,
        mamba_num_heads=8, mamba_head_dim=32, ssm_state_size=32, n_groups=2, chunk_size=64,
        n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=128,
        moe_shared_expert_intermediate_size=256, routed_scaling_factor=2.5,
    ),
    "small": dict(
        pattern="MEMEM*EMEM-EM*E", vocab_size=8192, hidden_size=512,
        num_attention_heads=8, num_key_value_heads=2, head_dim=64, intermediate_size=1536,
        mamba_num_heads=16, mamba_head_dim=64, ssm_state_size=64, n_groups=4, chunk_size=128,
        n_routed_experts=32, num_experts_per_tok=4, moe_intermediate_size=384,
        moe_shared_expert_intermediate_size=768, moe_latent_size=256, routed_scaling_factor=2.5,
    ),
    # nvidia/Nemotron-H-8B-Base-8K (the NemotronHConfig defaults are this model)
    "nemotron-h-8b": dict(pattern="M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-"),
    # nvidia/Nemotron-H-56B-Base-8K and nvidia/Nemotron-H-47B-Base-8K, as Megatron-Bridge's
    # NemotronHModelProvider56B / 47B give them (8 KV heads of 128, 8 Mamba groups, Mamba head dim 64)
    "nemotron-h-56b": dict(pattern=_H56B_PATTERN, hidden_size=8192, num_attention_heads=64, intermediate_size=32768,
                           mamba_num_heads=256, ssm_state_size=256),
    "nemotron-h-47b": dict(pattern=_H47B_PATTERN, hidden_size=8192, num_attention_heads=64, intermediate_size=30720,
                           mamba_num_heads=256, ssm_state_size=256),
    # nvidia/NVIDIA-Nemotron-Nano-12B-v2-Base (Megatron-Bridge NemotronNanoModelProvider12Bv2): 62 layers,
    # 28 Mamba-2, 28 MLP, 6 attention; the 9B below is pruned from it (arXiv:2508.14444)
    "nemotron-nano-12b-v2-base": dict(
        pattern="M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-", hidden_size=5120,
        num_attention_heads=40, intermediate_size=20480, mamba_head_dim=80,
    ),
    # nvidia/NVIDIA-Nemotron-Nano-9B-v2
    "nemotron-nano-9b-v2": dict(
        pattern="M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-", hidden_size=4480,
        num_attention_heads=40, intermediate_size=15680, mamba_head_dim=80,
    ),
    # nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16
    "nemotron-3-nano-30b-a3b": dict(
        pattern=_NANO3_PATTERN, hidden_size=2688, num_key_value_heads=2, intermediate_size=1856,
        mamba_num_heads=64, n_routed_experts=128, num_experts_per_tok=6, moe_intermediate_size=1856,
        moe_shared_expert_intermediate_size=3712, routed_scaling_factor=2.5,
    ),
    # nvidia/NVIDIA-Nemotron-3-Super-120B-A12B (LatentMoE + one MTP depth of "*E")
    "nemotron-3-super-120b-a12b": dict(
        pattern=_SUPER3_PATTERN, num_key_value_heads=2, n_routed_experts=512, num_experts_per_tok=22,
        moe_intermediate_size=2688, moe_shared_expert_intermediate_size=5376, moe_latent_size=1024,
        routed_scaling_factor=5.0, num_nextn_predict_layers=1,
    ),
}

PRESETS: dict[str, HybridConfig] = {name: HybridConfig(**fields) for name, fields in _TABLE.items()}


def get_preset(name: str, **overrides: Any) -> HybridConfig:
    """The named preset, with optional field overrides (validated again)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
