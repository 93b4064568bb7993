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


# exp(x) for x below ln(float32's smallest normal) ~ -87.3 is denormal or 0, and x86 computes it
# (and exp(-inf)) on a slow path, ~3x slower over a whole decay matrix; exponents are clamped
# to [-87, 0] and the masked entries zeroed after exp, moving no value by more than e^-87 ~ 2e-38.
_MIN_EXPONENT = -87.0


class _MaskedDecay(torch.autograd.Function):
    """M = CB * exp(a_l - a_s) where `keep`, 0 elsewhere: the masked "attention" matrix of the
    intra-chunk term (the listing's L = exp(segsum(A)) times C B^T). Autograd over masked_fill,
    exp and the broadcast product makes ~10 passes over the (.., R, L, S) tensor; here the
    forward runs in place and the backward uses dM/d(a_l - a_s) = dM * M."""

    @staticmethod
    def forward(ctx, CB_BCG1LS, a_BCGRL, keep_LS):
        seg_BCGRLS = a_BCGRL[..., :, None] - a_BCGRL[..., None, :]  # <= 0 where causal (A < 0, dt > 0)
        decay_BCGRLS = seg_BCGRLS.clamp_(_MIN_EXPONENT, 0.0).exp_().masked_fill_(~keep_LS, 0.0)
        M_BCGRLS = CB_BCG1LS * decay_BCGRLS
        ctx.save_for_backward(decay_BCGRLS, M_BCGRLS)
        return M_BCGRLS

    @staticmethod
    def backward(ctx, grad_M):
        decay_BCGRLS, M_BCGRLS = ctx.saved_tensors
        grad_CB = (grad_M * decay_BCGRLS).sum(3, keepdim=True)
        grad_seg = grad_M * M_BCGRLS
        return grad_CB, grad_seg.sum(-1) - grad_seg.sum(-2), None


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
    L = chunk_size
    # discretise (ZOH on A, Euler on B as in the paper): x dt and dt A
    xdt_BCLGRP = _chunk((x_BTHP.float() * dt_BTH.float()[..., None]).view(bsz, seqlen, G, R, P), L)
    dA_BCLGR = _chunk((dt_BTH.float() * A_H.float()).view(bsz, seqlen, G, R), L)
    B_BCGLN = _chunk(B_BTGN.float(), L).transpose(2, 3)
    C_BCGLN = _chunk(C_BTGN.float(), L).transpose(2, 3)
    nchunks = B_BCGLN.shape[1]

    a_BCGRL = dA_BCLGR.permute(0, 1, 3, 4, 2).cumsum(-1)
    xdt_BCGRLP = xdt_BCLGRP.permute(0, 1, 3, 4, 2, 5).contiguous()  # one copy, read by steps 1 and 2

    keep_LS = torch.ones(L, L, dtype=torch.bool, device=x_BTHP.device).tril()
    keep_state_L, keep_off_L, keep_carry_C = True, True, True
    if doc_ids_BT is not None:
        doc_BCL = _chunk(doc_ids_BT[..., None], L)[..., 0]
        # padded tail positions carry doc id 0; they are only ever *after* real tokens
        end_BC = doc_BCL[:, :, -1]
        prev_end_BC = torch.cat([end_BC[:, :1], end_BC[:, :-1]], dim=1)
        keep_LS = keep_LS & (doc_BCL[..., :, None] == doc_BCL[..., None, :])[:, :, None, None]
        keep_state_L = (doc_BCL == end_BC[..., None])[:, :, None, None]
        keep_off_L = (doc_BCL == prev_end_BC[..., None])[:, :, None, None]
        keep_carry_C = (end_BC == prev_end_BC)[..., None, None]  # chunk c-1 ends in c's end document

    # 1. intra-chunk (diagonal blocks): (C B^T masked by the decay) @ (x dt)
    CB_BCGLS = C_BCGLN @ B_BCGLN.transpose(-1, -2)
    y_BCGRLP = _MaskedDecay.apply(CB_BCGLS[:, :, :, None], a_BCGRL, keep_LS) @ xdt_BCGRLP

    # 2. each chunk's own contribution to its end state
    decay_end_BCGRL = (a_BCGRL[..., -1:] - a_BCGRL).exp() * keep_state_L
    states_BCGRPN = (xdt_BCGRLP * decay_end_BCGRL[..., None]).transpose(-1, -2) @ B_BCGLN[:, :, :, None]

    # 3. recurrence across chunks: start state of chunk c+1 = exp(a_end_c) start_c + states_c
    decay_chunk_BCGR11 = (a_BCGRL[..., -1].exp() * keep_carry_C)[..., None, None]
    starts = [torch.zeros_like(states_BCGRPN[:, 0])]
    for c in range(nchunks - 1):
        starts.append(starts[-1] * decay_chunk_BCGR11[:, c] + states_BCGRPN[:, c])
    starts_BCGXN = torch.stack(starts, dim=1).flatten(3, 4)

    # 4. off-diagonal blocks: each position reads its chunk's start state, decayed to it; one
    # GEMM per group against the R heads' states side by side
    y_off_BCGLRP = (C_BCGLN @ starts_BCGXN.transpose(-1, -2)).unflatten(-1, (R, P))
    y_off_BCGLRP = y_off_BCGLRP * (a_BCGRL.exp() * keep_off_L).transpose(-1, -2)[..., None]

    y_BCLGRP = y_BCGRLP.permute(0, 1, 4, 2, 3, 5) + y_off_BCGLRP.transpose(2, 3)
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
