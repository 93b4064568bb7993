"""Grouped-query attention without positional embedding, as HF NemotronHAttention
(no RoPE is applied in its forward; bias-free projections; scale 1/sqrt(head_dim)).

Packed rows attend document-causally (a key is visible to a query iff it is not later and lies
in the query's document) without any T x T tensor: on CUDA through FlexAttention with a block
mask built from document starts, elsewhere through blockwise attention with an online softmax
and a flash-style backward (FlashAttention-2, Dao 2023, algorithms 1 and 2), whose memory,
saved activations included, grows linearly in T.

Shape legend: B batch, T query tokens, S key tokens, D hidden, H query heads, K kv heads,
P head dim, G query heads per kv head (H = K G), R rows = tokens x G (the query heads sharing
one kv head, token-major), N tokens of a block.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from training.model.config import HybridConfig
from training.model.linear import Linear, gemm_dtype

BLOCK_SIZE = 512  # tokens per query block and key tile of the blockwise path
# exp(x) below ln(float32's smallest normal) ~ -87.3 is denormal or 0 and runs on x86's slow
# path (see ssd.py); exponents are clamped to [-87, 0] and masked entries zeroed after exp.
_MIN_EXPONENT = -87.0
_MASKED_SCORE = -1e30  # finite: exp(-inf) is on the same slow path


def document_starts(doc_ids_BT: torch.Tensor) -> torch.Tensor:
    """(B, T) int64: position of the first token of each token's document; a document is a run
    of equal ids (as the Mamba state resets wherever the id changes)."""
    T = doc_ids_BT.shape[1]
    new_doc_BT = F.pad(doc_ids_BT[:, 1:] != doc_ids_BT[:, :-1], (1, 0), value=True)
    pos_T = torch.arange(T, device=doc_ids_BT.device)
    return torch.where(new_doc_BT, pos_T, 0).cummax(dim=1).values


def causal_attention(
    q_BHTP: torch.Tensor, k_BKTP: torch.Tensor, v_BKTP: torch.Tensor, doc_ids_BT: torch.Tensor | None = None
) -> torch.Tensor:
    """Causal GQA self-attention, document-causal when `doc_ids_BT` is given."""
    if doc_ids_BT is None:
        return F.scaled_dot_product_attention(q_BHTP, k_BKTP, v_BKTP, is_causal=True, enable_gqa=True)
    start_BT = document_starts(doc_ids_BT)
    if q_BHTP.is_cuda:
        return flex_document_attention(q_BHTP, k_BKTP, v_BKTP, start_BT)
    return blockwise_document_attention(q_BHTP, k_BKTP, v_BKTP, start_BT)


# --- CUDA: FlexAttention -------------------------------------------------------------------


@functools.cache
def _compiled_flex() -> tuple:
    """create_block_mask and flex_attention compiled once: compiled, the block mask is built
    without materialising the T x T mask and attention runs as one fused kernel."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    return torch.compile(create_block_mask), torch.compile(flex_attention, dynamic=False)


def flex_document_attention(
    q_BHTP: torch.Tensor, k_BKTP: torch.Tensor, v_BKTP: torch.Tensor, start_BT: torch.Tensor
) -> torch.Tensor:
    def document_causal(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return (kv_idx <= q_idx) & (kv_idx >= start_BT[b, q_idx])

    create_block_mask, flex_attention = _compiled_flex()
    B, _, T, _ = q_BHTP.shape
    block_mask = create_block_mask(document_causal, B, None, T, T, device=q_BHTP.device)
    return flex_attention(q_BHTP, k_BKTP, v_BKTP, block_mask=block_mask, enable_gqa=True)


# --- Everywhere else: blockwise attention --------------------------------------------------


@dataclass(frozen=True)
class _Tile:
    """Keys [k0, k1) seen by queries [q0, q1); `masked` unless every key is visible to every query."""

    q0: int
    q1: int
    k0: int
    k1: int
    masked: bool


def _tile_plan(start_BT: torch.Tensor, block: int) -> list[list[_Tile]]:
    """Per query block, the key tiles holding any visible key, the diagonal one first (so that
    every row's running max is finite after it). Queries [q0, q1) of any row see no key before
    the start of the first query's document; a tile ending before q0 is fully visible to all of
    them iff it begins at or after the start of the last query's document."""
    T = start_BT.shape[1]
    q0_N = torch.arange(0, T, block)
    first_start_N = start_BT[:, q0_N].amin(0).tolist()
    last_start_N = start_BT[:, (q0_N + block).clamp(max=T) - 1].amax(0).tolist()
    plan = []
    for n, q0 in enumerate(q0_N.tolist()):
        q1 = min(q0 + block, T)
        plan.append([_Tile(q0, q1, k0, min(k0 + block, T), k0 == q0 or k0 < last_start_N[n])
                     for k0 in range(q0, first_start_N[n] // block * block - 1, -block)])
    return plan


def _visible(start_BT: torch.Tensor, tile: _Tile) -> torch.Tensor | None:
    """(B, 1, N, 1, S) float, 1 where the key is visible to the query, else 0, broadcasting over
    (B, K, N, G, S) scores; None for a fully visible tile. Masks are applied by multiplying and
    adding, which run ~30x faster than a broadcast masked_fill on x86."""
    if not tile.masked:
        return None
    pos = functools.partial(torch.arange, device=start_BT.device)
    q_pos_N, k_pos_S = pos(tile.q0, tile.q1), pos(tile.k0, tile.k1)
    visible_BNS = (k_pos_S <= q_pos_N[:, None]) & (k_pos_S >= start_BT[:, tile.q0:tile.q1, None])
    return visible_BNS[:, None, :, None, :].float()


def _exp_shifted(s_BKRS: torch.Tensor, shift_BKR: torch.Tensor, visible: torch.Tensor | None, G: int) -> torch.Tensor:
    """exp(s - shift), in place of s, with masked entries 0."""
    p_BKRS = s_BKRS.sub_(shift_BKR[..., None]).clamp_(_MIN_EXPONENT, 0.0).exp_()
    if visible is not None:
        p_BKRS.unflatten(2, (-1, G)).mul_(visible)
    return p_BKRS


def _to_rows(x_BHTP: torch.Tensor, K: int) -> torch.Tensor:
    """(B, H, T, P) -> (B, K, T G, P) float32, rows token-major so a token range is a slice."""
    return x_BHTP.float().unflatten(1, (K, -1)).transpose(2, 3).flatten(2, 3)


def _from_rows(x_BKRP: torch.Tensor, T: int) -> torch.Tensor:
    return x_BKRP.unflatten(2, (T, -1)).transpose(2, 3).flatten(1, 2)


def _float32_operands(
    q_BHTP: torch.Tensor, k_BKTP: torch.Tensor, v_BKTP: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q in rows, pre-scaled by 1/sqrt(P), and k, v, all float32 (scores and softmax need it)."""
    q_BKRP = _to_rows(q_BHTP, k_BKTP.shape[1]) * q_BHTP.shape[-1] ** -0.5
    return q_BKRP, k_BKTP.float(), v_BKTP.float()


def _attend_query_block(
    q_BKRP: torch.Tensor, k_BKSP: torch.Tensor, v_BKSP: torch.Tensor, start_BT: torch.Tensor, tiles: list[_Tile], G: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output and log-sum-exp of one query block's rows, with an online softmax over its tiles."""
    m_BKR = l_BKR = acc_BKRP = None
    for tile in tiles:
        visible = _visible(start_BT, tile)
        s_BKRS = q_BKRP @ k_BKSP[:, :, tile.k0:tile.k1].transpose(-1, -2)
        if visible is not None:  # out of the row max
            s_BKRS.unflatten(2, (-1, G)).add_((1.0 - visible) * _MASKED_SCORE)
        m_new_BKR = s_BKRS.amax(-1) if m_BKR is None else torch.maximum(m_BKR, s_BKRS.amax(-1))
        p_BKRS = _exp_shifted(s_BKRS, m_new_BKR, visible, G)
        pv_BKRP = p_BKRS @ v_BKSP[:, :, tile.k0:tile.k1]
        if m_BKR is None:
            l_BKR, acc_BKRP = p_BKRS.sum(-1), pv_BKRP
        else:  # rescale what was summed under the old max
            alpha_BKR = (m_BKR - m_new_BKR).exp_()
            l_BKR = l_BKR * alpha_BKR + p_BKRS.sum(-1)
            acc_BKRP = acc_BKRP * alpha_BKR[..., None] + pv_BKRP
        m_BKR = m_new_BKR
    return acc_BKRP / l_BKR[..., None], m_BKR + l_BKR.log()


def _backprop_query_block(
    q_BKRP: torch.Tensor, k_BKSP: torch.Tensor, v_BKSP: torch.Tensor, start_BT: torch.Tensor, tiles: list[_Tile],
    G: int, lse_BKR: torch.Tensor, delta_BKR: torch.Tensor, grad_o_BKRP: torch.Tensor,
    grad_k_BKSP: torch.Tensor, grad_v_BKSP: torch.Tensor,
) -> torch.Tensor:
    """Gradient of one query block's rows (scaled q); adds its share into grad_k and grad_v."""
    grad_q_BKRP = torch.zeros_like(q_BKRP)
    for tile in tiles:
        keys = slice(tile.k0, tile.k1)
        visible = _visible(start_BT, tile)
        p_BKRS = _exp_shifted(q_BKRP @ k_BKSP[:, :, keys].transpose(-1, -2), lse_BKR, visible, G)
        grad_v_BKSP[:, :, keys] += p_BKRS.transpose(-1, -2) @ grad_o_BKRP
        grad_s_BKRS = (grad_o_BKRP @ v_BKSP[:, :, keys].transpose(-1, -2)).sub_(delta_BKR[..., None]).mul_(p_BKRS)
        grad_q_BKRP += grad_s_BKRS @ k_BKSP[:, :, keys]
        grad_k_BKSP[:, :, keys] += grad_s_BKRS.transpose(-1, -2) @ q_BKRP
    return grad_q_BKRP


class _BlockwiseDocumentAttention(torch.autograd.Function):
    """Saves q, k, v, the output and its log-sum-exp; the backward recomputes each tile's
    probabilities from them, so no (T, S) tensor is ever held."""

    @staticmethod
    def forward(ctx, q_BHTP, k_BKTP, v_BKTP, start_BT, block):
        q_BKRP, k_BKSP, v_BKSP = _float32_operands(q_BHTP, k_BKTP, v_BKTP)
        T, G = q_BHTP.shape[2], q_BHTP.shape[1] // k_BKTP.shape[1]
        plan = _tile_plan(start_BT, block)
        o_BKRP = torch.empty_like(q_BKRP)
        lse_BKR = torch.empty(q_BKRP.shape[:-1], dtype=torch.float32, device=q_BKRP.device)
        for tiles in plan:
            rows = slice(tiles[0].q0 * G, tiles[0].q1 * G)
            o_BKRP[:, :, rows], lse_BKR[:, :, rows] = _attend_query_block(
                q_BKRP[:, :, rows], k_BKSP, v_BKSP, start_BT, tiles, G)
        ctx.save_for_backward(q_BHTP, k_BKTP, v_BKTP, start_BT, o_BKRP, lse_BKR)
        ctx.plan = plan
        return _from_rows(o_BKRP, T).to(q_BHTP.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_o_BHTP):
        q_BHTP, k_BKTP, v_BKTP, start_BT, o_BKRP, lse_BKR = ctx.saved_tensors
        q_BKRP, k_BKSP, v_BKSP = _float32_operands(q_BHTP, k_BKTP, v_BKTP)
        T, G = q_BHTP.shape[2], q_BHTP.shape[1] // k_BKTP.shape[1]
        grad_o_BKRP = _to_rows(grad_o_BHTP, k_BKTP.shape[1])
        delta_BKR = (grad_o_BKRP * o_BKRP).sum(-1)  # rowsum(dO * O) = rowsum(P * dP)
        grad_q_BKRP = torch.empty_like(q_BKRP)
        grad_k_BKSP, grad_v_BKSP = torch.zeros_like(k_BKSP), torch.zeros_like(v_BKSP)
        for tiles in ctx.plan:
            rows = slice(tiles[0].q0 * G, tiles[0].q1 * G)
            grad_q_BKRP[:, :, rows] = _backprop_query_block(
                q_BKRP[:, :, rows], k_BKSP, v_BKSP, start_BT, tiles, G, lse_BKR[:, :, rows], delta_BKR[:, :, rows],
                grad_o_BKRP[:, :, rows], grad_k_BKSP, grad_v_BKSP)
        grad_q_BHTP = _from_rows(grad_q_BKRP * q_BHTP.shape[-1] ** -0.5, T)
        return grad_q_BHTP.to(q_BHTP.dtype), grad_k_BKSP.to(k_BKTP.dtype), grad_v_BKSP.to(v_BKTP.dtype), None, None


def blockwise_document_attention(
    q_BHTP: torch.Tensor, k_BKTP: torch.Tensor, v_BKTP: torch.Tensor, start_BT: torch.Tensor,
    *, block_size: int = BLOCK_SIZE,
) -> torch.Tensor:
    """Document-causal GQA attention in float32 over (block_size x block_size) tiles, skipping
    tiles no query can see; memory O(T block_size), saved activations O(T)."""
    return _BlockwiseDocumentAttention.apply(q_BHTP, k_BKTP, v_BKTP, start_BT, block_size)


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
        o_BHTP = causal_attention(q_BHTP, k_BKSP, v_BKSP, doc_ids_BT)
        return self.o_proj(o_BHTP.transpose(1, 2).flatten(-2).to(x_BTD.dtype))
