"""Mamba-2 state-space duality (SSD) scan: chunked fast path and sequential reference.

Dao & Gu 2024, "Transformers are SSMs" (arXiv:2405.21060), section 6 / Listing 1
(`ssd_minimal.py`): within a chunk the SSM is a masked "attention" C L B^T; across chunks a
short recurrence over chunk-end states. Unlike the listing (and HF `mamba2_chunk_scan`),
B and C stay per *group* and heads are indexed as (group, head-in-group), so the C B^T
product is computed once per group instead of once per head.

Document reset (packed sequences): with `doc_ids` every term that crosses a document
boundary is masked, which equals running each document from a zero state (mamba_ssm's
`seq_idx`).

Shape legend: B batch, T tokens, H heads, G groups (B/C sharing), R heads per group (H = G R),
P head dim, N state size, C chunks, L and S positions inside a chunk, Z source chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _chunk(t: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """(B, T, ...) -> (B, C, L, ...), zero-padding T up to a multiple of chunk_size."""
    pad = -t.shape[1] % chunk_size
    if pad:
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
    return t.view(t.shape[0], -1, chunk_size, *t.shape[2:])


def _decay(a_cum_end: torch.Tensor, a_cum_start: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """exp(a_end - a_start) where `keep`, exactly 0 (and zero gradient) elsewhere."""
    return (a_cum_end - a_cum_start).masked_fill(~keep, float("-inf")).exp()


def ssd_chunked(
    x_BTHP: torch.Tensor,
    dt_BTH: torch.Tensor,
    A_H: torch.Tensor,
    B_BTGN: torch.Tensor,
    C_BTGN: torch.Tensor,
    *,
    chunk_size: int,
    doc_ids_BT: torch.Tensor | None = None,
) -> torch.Tensor:
    """y_t = C_t h_t with h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t^T, in float32. dt is final
    (softplus and clamp applied); the D skip is the caller's. Returns y_BTHP (float32)."""
    bsz, seqlen, H, P = x_BTHP.shape
    G, N = B_BTGN.shape[2:]
    R = H // G
    # discretise (ZOH on A, Euler on B as in the paper): x dt and dt A
    xdt_BCLGRP = _chunk((x_BTHP.float() * dt_BTH.float()[..., None]).view(bsz, seqlen, G, R, P), chunk_size)
    dA_BCLGR = _chunk((dt_BTH.float() * A_H.float()).view(bsz, seqlen, G, R), chunk_size)
    B_BCLGN = _chunk(B_BTGN.float(), chunk_size)
    C_BCLGN = _chunk(C_BTGN.float(), chunk_size)
    L = chunk_size
    nchunks = B_BCLGN.shape[1]

    a_BCGRL = dA_BCLGR.permute(0, 1, 3, 4, 2).cumsum(-1)
    xdt_BCGRLP = xdt_BCLGRP.permute(0, 1, 3, 4, 2, 5)
    B_BCGLN = B_BCLGN.transpose(2, 3)
    C_BCGLN = C_BCLGN.transpose(2, 3)

    causal_LS = torch.ones(L, L, dtype=torch.bool, device=x_BTHP.device).tril()
    keep_LS, keep_state_L, keep_chunk_CZ, keep_off_L = causal_LS, True, None, True
    if doc_ids_BT is not None:
        doc_BCL = _chunk(doc_ids_BT[..., None], chunk_size)[..., 0]
        # padded tail positions carry doc id 0; they are only ever *after* real tokens
        end_BC = doc_BCL[:, :, -1]
        prev_end_BC = torch.cat([end_BC[:, :1], end_BC[:, :-1]], dim=1)
        keep_LS = causal_LS & (doc_BCL[..., :, None] == doc_BCL[..., None, :])[:, :, None, None]
        keep_state_L = (doc_BCL == end_BC[..., None])[:, :, None, None]
        keep_chunk_CZ = (end_BC[:, :, None] == end_BC[:, None, :])[:, None, None]
        keep_off_L = (doc_BCL == prev_end_BC[..., None])[:, :, None, None]

    # 1. intra-chunk (diagonal blocks): (C B^T masked by the decay) @ (x dt)
    CB_BCGLS = C_BCGLN @ B_BCGLN.transpose(-1, -2)
    decay_BCGRLS = _decay(a_BCGRL[..., :, None], a_BCGRL[..., None, :], keep_LS)
    y_BCGRLP = (CB_BCGLS[:, :, :, None] * decay_BCGRLS) @ xdt_BCGRLP

    # 2. each chunk's own contribution to its end state
    decay_end_BCGRL = (a_BCGRL[..., -1:] - a_BCGRL).exp() * keep_state_L
    states_BCGRPN = (xdt_BCGRLP * decay_end_BCGRL[..., None]).transpose(-1, -2) @ B_BCGLN[:, :, :, None]

    # 3. recurrence across chunks: end state of chunk c = sum_{z <= c} decay(z -> c) * states_z
    a_end_BGRC = a_BCGRL[..., -1].permute(0, 2, 3, 1).cumsum(-1)
    causal_CZ = torch.ones(nchunks, nchunks, dtype=torch.bool, device=x_BTHP.device).tril()
    keep_CZ = causal_CZ if keep_chunk_CZ is None else causal_CZ & keep_chunk_CZ
    decay_BGRCZ = _decay(a_end_BGRC[..., :, None], a_end_BGRC[..., None, :], keep_CZ)
    ends_BGRCX = decay_BGRCZ @ states_BCGRPN.permute(0, 2, 3, 1, 4, 5).flatten(-2)
    ends_BCGRPN = ends_BGRCX.view(bsz, G, R, nchunks, P, N).permute(0, 3, 1, 2, 4, 5)
    starts_BCGRPN = torch.cat([torch.zeros_like(ends_BCGRPN[:, :1]), ends_BCGRPN[:, :-1]], dim=1)

    # 4. off-diagonal blocks: each position reads its chunk's start state, decayed to it
    y_off_BCGRLP = (C_BCGLN[:, :, :, None] @ starts_BCGRPN.transpose(-1, -2)) * (a_BCGRL.exp() * keep_off_L)[..., None]

    y_BCLGRP = (y_BCGRLP + y_off_BCGRLP).permute(0, 1, 4, 2, 3, 5)
    return y_BCLGRP.reshape(bsz, nchunks * L, H, P)[:, :seqlen]


def ssd_naive(
    x_BTHP: torch.Tensor,
    dt_BTH: torch.Tensor,
    A_H: torch.Tensor,
    B_BTGN: torch.Tensor,
    C_BTGN: torch.Tensor,
    *,
    doc_ids_BT: torch.Tensor | None = None,
) -> torch.Tensor:
    """Slow twin of `ssd_chunked`: the recurrence one token at a time (paper eq. 1)."""
    bsz, seqlen, H, P = x_BTHP.shape
    R = H // B_BTGN.shape[2]
    B_BTHN = B_BTGN.float().repeat_interleave(R, dim=2)
    C_BTHN = C_BTGN.float().repeat_interleave(R, dim=2)
    h_BHPN = x_BTHP.new_zeros(bsz, H, P, B_BTGN.shape[3], dtype=torch.float32)
    ys = []
    for t in range(seqlen):
        if doc_ids_BT is not None and t > 0:
            h_BHPN = h_BHPN * (doc_ids_BT[:, t] == doc_ids_BT[:, t - 1]).view(bsz, 1, 1, 1)
        dt_BH = dt_BTH[:, t].float()
        h_BHPN = (dt_BH * A_H.float()).exp()[..., None, None] * h_BHPN + (
            (dt_BH[..., None] * x_BTHP[:, t].float())[..., None] * B_BTHN[:, t, :, None, :]
        )
        ys.append((h_BHPN @ C_BTHN[:, t, :, :, None])[..., 0])
    return torch.stack(ys, dim=1)
