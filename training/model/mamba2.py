"""Mamba-2 mixer with HF NemotronHMamba2Mixer's parameters and numerics.

in_proj -> (z, xBC, dt); depthwise causal conv + SiLU on xBC; split (x, B, C);
dt = softplus(dt + dt_bias) clamped to time_step_limit (as HF's NemotronH since transformers
5.25: (0, inf) by default); SSD scan; D skip; gated group RMSNorm with z; out_proj.

Shape legend: B batch, T tokens, D hidden, I d_inner (= heads * head dim), X conv channels
(I + 2 G N), H heads, P head dim, G groups, N state size, K conv kernel width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.model.config import HybridConfig
from training.model.linear import Linear
from training.model.norms import GatedGroupRMSNorm
from training.model.ssd import ssd_chunked

try:  # optional CUDA kernel (state-spaces/mamba); the pure-PyTorch scan is used otherwise
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
except ImportError:
    mamba_chunk_scan_combined = None


def scan(
    x_BTHP: torch.Tensor, dt_BTH: torch.Tensor, A_H: torch.Tensor, B_BTGN: torch.Tensor, C_BTGN: torch.Tensor,
    *, chunk_size: int, doc_ids_BT: torch.Tensor | None,
) -> torch.Tensor:
    """SSD scan (float32 out): mamba_ssm's Triton kernel on CUDA when importable, else `ssd_chunked`."""
    if mamba_chunk_scan_combined is not None and x_BTHP.is_cuda:
        seq_idx = None if doc_ids_BT is None else doc_ids_BT.to(torch.int32)
        return mamba_chunk_scan_combined(x_BTHP, dt_BTH, A_H, B_BTGN, C_BTGN, chunk_size, seq_idx=seq_idx).float()
    return ssd_chunked(x_BTHP, dt_BTH, A_H, B_BTGN, C_BTGN, chunk_size=chunk_size, doc_ids_BT=doc_ids_BT)


def _same_doc_masks(doc_ids_BT: torch.Tensor | None, K: int) -> list[torch.Tensor | None]:
    """Per lag 1..K-1: (B, T - lag, 1) mask, 1 where token t and t - lag share a document."""
    if doc_ids_BT is None:
        return [None] * K
    return [None] + [(doc_ids_BT[:, lag:] == doc_ids_BT[:, :-lag])[..., None] for lag in range(1, K)]


class _CausalConv1d(torch.autograd.Function):
    """Depthwise causal conv, out_t = sum_k w_k x_{t-(K-1)+k}, as K multiply-adds accumulated in
    place on time-shifted views. Autograd over the same sum pads and copies every tap and keeps
    them for backward; this keeps only x and is ~2x faster on CPU (float32, small preset)."""

    @staticmethod
    def forward(ctx, x_BTX, weight_XK, bias_X, masks):
        K, T = weight_XK.shape[1], x_BTX.shape[1]
        last_X = weight_XK[:, K - 1]
        out_BTX = x_BTX * last_X if bias_X is None else torch.addcmul(bias_X, x_BTX, last_X)
        for lag in range(1, min(K, T)):
            tap_BTX = x_BTX[:, :-lag] if masks[lag] is None else x_BTX[:, :-lag] * masks[lag]
            out_BTX[:, lag:].addcmul_(tap_BTX, weight_XK[:, K - 1 - lag])
        ctx.save_for_backward(x_BTX, weight_XK)
        ctx.has_bias, ctx.masks = bias_X is not None, masks
        return out_BTX

    @staticmethod
    def backward(ctx, grad_BTX):
        x_BTX, weight_XK = ctx.saved_tensors
        K, T = weight_XK.shape[1], x_BTX.shape[1]
        grad_x_BTX = grad_BTX * weight_XK[:, K - 1]
        grad_w_XK = weight_XK.new_zeros(weight_XK.shape)
        grad_w_XK[:, K - 1] = (grad_BTX * x_BTX).sum((0, 1))
        for lag in range(1, min(K, T)):
            g_BTX = grad_BTX[:, lag:] if ctx.masks[lag] is None else grad_BTX[:, lag:] * ctx.masks[lag]
            grad_x_BTX[:, :-lag].addcmul_(g_BTX, weight_XK[:, K - 1 - lag])
            grad_w_XK[:, K - 1 - lag] = (g_BTX * x_BTX[:, :-lag]).sum((0, 1))
        grad_bias_X = grad_BTX.sum((0, 1)) if ctx.has_bias else None
        return grad_x_BTX, grad_w_XK, grad_bias_X, None


def causal_conv1d(
    x_BTX: torch.Tensor, weight_XK: torch.Tensor, bias_X: torch.Tensor | None, doc_ids_BT: torch.Tensor | None
) -> torch.Tensor:
    """Depthwise causal conv (HF's nn.Conv1d with padding K - 1, cut to T); taps reaching into
    an earlier document are dropped when doc_ids are given (causal-conv1d's `seq_idx`)."""
    return _CausalConv1d.apply(x_BTX, weight_XK, bias_X, _same_doc_masks(doc_ids_BT, weight_XK.shape[1]))


class Mamba2(nn.Module):
    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        self.cfg = cfg
        H, I, X = cfg.mamba_num_heads, cfg.d_inner, cfg.conv_dim
        self.in_proj = Linear(cfg.hidden_size, I + X + H, bias=cfg.use_bias)
        # nn.Conv1d only as the (X, 1, K) weight holder HF checkpoints use; we never call it
        self.conv1d = nn.Conv1d(X, X, cfg.conv_kernel, groups=X, bias=cfg.use_conv_bias)
        self.dt_bias = nn.Parameter(torch.ones(H))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, H + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(H))
        self.norm = GatedGroupRMSNorm(I, groups=cfg.n_groups, eps=cfg.layer_norm_epsilon)
        self.out_proj = Linear(I, cfg.hidden_size, bias=cfg.use_bias)

    def forward(self, x_BTD: torch.Tensor, doc_ids_BT: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        bsz, T, _ = x_BTD.shape
        H, P, G, N, I = cfg.mamba_num_heads, cfg.mamba_head_dim, cfg.n_groups, cfg.ssm_state_size, cfg.d_inner
        z_BTI, xBC_BTX, dt_BTH = self.in_proj(x_BTD).split([I, cfg.conv_dim, H], dim=-1)
        xBC_BTX = F.silu(causal_conv1d(xBC_BTX, self.conv1d.weight[:, 0], self.conv1d.bias, doc_ids_BT))
        x_BTI, B_BTX, C_BTX = xBC_BTX.split([I, G * N, G * N], dim=-1)
        dt_BTH = F.softplus(dt_BTH.float() + self.dt_bias.float()).clamp(*cfg.time_step_limit)
        A_H = -torch.exp(self.A_log.float())
        x_BTHP = x_BTI.view(bsz, T, H, P)
        y_BTHP = scan(
            x_BTHP, dt_BTH, A_H, B_BTX.view(bsz, T, G, N), C_BTX.view(bsz, T, G, N),
            chunk_size=cfg.chunk_size, doc_ids_BT=doc_ids_BT,
        )
        y_BTHP = y_BTHP + x_BTHP.float() * self.D.float()[:, None]
        y_BTI = self.norm(y_BTHP.reshape(bsz, T, I), z_BTI)
        return self.out_proj(y_BTI.to(x_BTD.dtype))
