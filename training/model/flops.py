"""Matmul FLOPs per token of one forward pass, by block kind (for tokens/s -> MFU).

Counts 2 FLOPs per multiply-add of every matmul actually executed per token: linear layers
(active experts only, plus router, shared expert and LatentMoE projections), causal attention
scores and values (average context T/2, as PaLM appendix B counts it halved), the depthwise
conv, and the chunked SSD scan (intra-chunk C B^T and M x over a full chunk of L, chunk-state
build and read-out, Dao & Gu 2024 section 6). Training (forward + backward) is 3x forward.
Elementwise work (norms, activations, softmax) is ignored, as usual for MFU.
"""

from __future__ import annotations

from training.model.config import HybridConfig


def _attention(cfg: HybridConfig, seq_len: int) -> float:
    D, H, K, P = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    projections = 2 * D * (2 * H * P + 2 * K * P)
    return projections + 2 * 2 * H * P * seq_len / 2


def _mamba(cfg: HybridConfig, seq_len: int) -> float:
    D, H, P, G, N = cfg.hidden_size, cfg.mamba_num_heads, cfg.mamba_head_dim, cfg.n_groups, cfg.ssm_state_size
    L = min(cfg.chunk_size, seq_len)
    projections = 2 * D * (cfg.d_inner + cfg.conv_dim + H) + 2 * cfg.d_inner * D
    conv = 2 * cfg.conv_dim * cfg.conv_kernel
    scan = 2 * L * (G * N + H * P) + 2 * 2 * H * P * N
    return projections + conv + scan


def _moe(cfg: HybridConfig) -> float:
    D, Z = cfg.hidden_size, cfg.expert_dim
    router = 2 * D * cfg.n_routed_experts
    routed = cfg.num_experts_per_tok * 2 * 2 * Z * cfg.moe_intermediate_size
    shared = 2 * 2 * D * cfg.moe_shared_expert_intermediate_size
    latent = 2 * 2 * D * Z if cfg.moe_latent_size else 0
    return router + routed + shared + latent


def forward_flops_per_token(cfg: HybridConfig, seq_len: int) -> dict[str, float]:
    """Forward FLOPs per token, summed per block kind, plus the output head."""
    per_kind = {
        "M": _mamba(cfg, seq_len),
        "*": _attention(cfg, seq_len),
        "-": 2 * 2 * cfg.hidden_size * cfg.intermediate_size,
        "E": _moe(cfg),
    }
    names = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}
    flops = {names[k]: cfg.pattern.count(k) * v for k, v in per_kind.items()}
    flops["lm_head"] = 2 * cfg.hidden_size * cfg.vocab_size
    return flops


def training_flops_per_token(cfg: HybridConfig, seq_len: int) -> float:
    """Forward + backward (backward = 2x forward), main model only (no MTP)."""
    return 3 * sum(forward_flops_per_token(cfg, seq_len).values())
