"""Grouped-query attention without positional embedding, as HF NemotronHAttention
(no RoPE is applied in its forward; bias-free projections; scale 1/sqrt(head_dim)).

Shape legend: B batch, T query tokens, S key tokens, D hidden, H query heads, K kv heads,
P head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.model.config import HybridConfig
from training.model.linear import Linear, gemm_dtype


def document_causal_mask(doc_ids_BT: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, S) boolean: key s is visible to query t iff s <= t and both are in one document."""
    T = doc_ids_BT.shape[1]
    causal_TS = torch.ones(T, T, dtype=torch.bool, device=doc_ids_BT.device).tril()
    return (causal_TS & (doc_ids_BT[:, :, None] == doc_ids_BT[:, None, :]))[:, None]


class Attention(nn.Module):
    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        self.cfg = cfg
        H, K, P = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = Linear(cfg.hidden_size, H * P, bias=False)
        self.k_proj = Linear(cfg.hidden_size, K * P, bias=False)
        self.v_proj = Linear(cfg.hidden_size, K * P, bias=False)
        self.o_proj = Linear(H * P, cfg.hidden_size, bias=False)

    def forward(self, x_BTD: torch.Tensor, doc_ids_BT: torch.Tensor | None = None) -> torch.Tensor:
        P = self.cfg.head_dim
        dtype = gemm_dtype(x_BTD)  # bf16 attention on a CPU without bf16 GEMM runs in float32
        q_BHTP = self.q_proj(x_BTD).to(dtype).unflatten(-1, (-1, P)).transpose(1, 2)
        k_BKSP = self.k_proj(x_BTD).to(dtype).unflatten(-1, (-1, P)).transpose(1, 2)
        v_BKSP = self.v_proj(x_BTD).to(dtype).unflatten(-1, (-1, P)).transpose(1, 2)
        if doc_ids_BT is None:
            o_BHTP = F.scaled_dot_product_attention(q_BHTP, k_BKSP, v_BKSP, is_causal=True, enable_gqa=True)
        else:
            mask_B1TS = document_causal_mask(doc_ids_BT)
            o_BHTP = F.scaled_dot_product_attention(q_BHTP, k_BKSP, v_BKSP, attn_mask=mask_B1TS, enable_gqa=True)
        return self.o_proj(o_BHTP.transpose(1, 2).flatten(-2).to(x_BTD.dtype))
