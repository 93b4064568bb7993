"""Fixtures: a small NemotronH config holding all four block kinds plus LatentMoE and
group-limited routing, and a transformers model of it with non-trivial random weights."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def hf_config() -> transformers.NemotronHConfig:
    return transformers.NemotronHConfig(
        vocab_size=96, hidden_size=32, hybrid_override_pattern="ME*-ME",
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, intermediate_size=48,
        mamba_num_heads=4, mamba_head_dim=8, ssm_state_size=8, n_groups=2, chunk_size=16,
        n_routed_experts=8, num_experts_per_tok=3, moe_intermediate_size=16,
        moe_shared_expert_intermediate_size=24, moe_latent_size=16,
        n_group=2, topk_group=1, routed_scaling_factor=2.5,
    )


@pytest.fixture
def hf_model(hf_config) -> transformers.NemotronHForCausalLM:
    """Random weights scaled up (std 0.2 instead of 0.02) so every block moves the logits."""
    torch.manual_seed(0)
    model = transformers.NemotronHForCausalLM(hf_config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.2)
        for layer in model.model.layers:
            if layer.block_type == "moe":
                layer.mixer.gate.e_score_correction_bias.normal_(0.0, 0.1)
    return model


@pytest.fixture
def input_ids() -> torch.Tensor:
    return torch.randint(0, 96, (2, 45), generator=torch.Generator().manual_seed(1))
