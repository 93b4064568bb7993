"""NVFP4, the recipe of "Pretraining Large Language Models with NVFP4" (arXiv:2509.25149).

Format (as the paper's appendix): E2M1 values in blocks of 16 along the GEMM's reduction dimension,
one E4M3 scale per block and one float32 scale per tensor. With amax the tensor's and amax_b a
block's absolute maximum:
  s_enc   = 6 * 448 / amax                    tensor encode scale (fp32), s_dec = 1 / s_enc
  s_b     = e4m3(amax_b / 6 * s_enc)          block decode scale, stored in E4M3
  q       = e2m1(x * s_enc / s_b)             amax_b maps to 6 (up to the E4M3 rounding of s_b)
  x ~= q * s_b * s_dec
Weights use 16x16 2-D blocks ("two-dimensional scaling"), so W and W^T quantise identically and Fprop and
Dgrad see the same weights; activations and gradients use 1x16 blocks.

GEMMs (M tokens, K in, N out):
  Fprop  y  = x W^T       x 1x16 along K, W 16x16, round to nearest even
  Dgrad  dx = dY W        dY 1x16 along N, stochastic rounding; W 16x16 (as in Fprop)
  Wgrad  dW = dY^T x      16x16 RHT along M on both operands, then 1x16 blocks along M;
                          dY stochastic rounding, x round to nearest even
Emulation: there is no FP4 GEMM on CPUs (nor in torch._scaled_mm outside Blackwell), so each
operand is quantised to its exact grid values q * s_b (exact in float32: 1 x 4 significant
bits), multiplied in float32 and scaled by both tensors' s_dec at the end -- an FP4 GEMM with
FP32 accumulation, up to summation order.

Routed experts (`NVFP4Gemms.grouped_*`): every expert's operands are quantised as separate
tensors (own s_enc, own rounding stream, RHT blocks of 16 of its own tokens) in one pass over
all experts (`group_rc`), and each GEMM is one grouped GEMM (see `groups`). Wgrad scatters
every expert's rows to a 16-aligned block of a layout of static size (`PaddedGroups`), so the
RHT and the 1x16 blocks along the tokens never straddle two experts.

Shape legend: M tokens, K input features, N output features, R rows, C columns (C is the
blocked, reduction dimension), r/c tile rows/columns, A expert-sorted rows, E experts,
P padded rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.precision.formats import E2M1_MAX, E4M3_MAX, cast_fp8, round_e2m1
from training.precision.groups import ExpertGroups, exact_grouped_mm, group_fingerprints, group_max
from training.precision.hadamard import rht, rht_matrix
from training.precision.noise import fingerprint, mix64, mix64_tensor, stream_noise, uniform_noise

BLOCK = 16
DGRAD_STREAM, WGRAD_STREAM = 1, 2  # stochastic-rounding streams of one layer


@dataclass
class NVFP4Tensor:
    values_RC: torch.Tensor  # float32 on the E2M1 grid, zero-padded to whole tiles
    scales_rc: torch.Tensor  # float8_e4m3fn, one per tile_rows x 16 tile
    global_scale: torch.Tensor  # float32 decode scale s_dec: 0-d, or (G,) per group of tiles
    tile_rows: int  # 1 (1x16 blocks) or 16 (16x16 blocks)
    shape: tuple[int, int]  # (R, C) before padding

    def blocked(self) -> torch.Tensor:
        """q * s_b (float32, exact) of shape (R, C): the values an FP4 tensor core multiplies."""
        r, c = self.scales_rc.shape
        tiles = self.values_RC.view(r, self.tile_rows, c, BLOCK) * self.scales_rc.float()[:, None, :, None]
        R, C = self.shape
        return tiles.view(self.values_RC.shape)[:R, :C].contiguous()  # one layout: one summation order

    def dequantize(self) -> torch.Tensor:
        assert self.global_scale.dim() == 0, "grouped tensors are only multiplied, in grouped GEMMs"
        return self.blocked() * self.global_scale

    def t(self) -> NVFP4Tensor:
        """The transpose; 2-D (16x16) tiles only: the quantisation of W^T is that of W, transposed."""
        assert self.tile_rows == BLOCK, "only 16x16-tiled tensors can be transposed"
        R, C = self.shape
        return NVFP4Tensor(self.values_RC.T.contiguous(), self.scales_rc.T, self.global_scale, BLOCK, (C, R))


def _pad(x_RC: torch.Tensor, rows: int) -> torch.Tensor:
    """Contiguous `x_RC`, zero-padded to a multiple of `rows` rows and of 16 columns."""
    pad = (0, -x_RC.shape[1] % BLOCK, 0, -x_RC.shape[0] % rows)
    return (F.pad(x_RC, pad) if any(pad) else x_RC).contiguous()


def quantize_nvfp4(
    x_RC: torch.Tensor, *, tile_rows: int = 1, noise_RC: torch.Tensor | None = None,
    group_rc: torch.Tensor | None = None, num_groups: int = 1,
) -> NVFP4Tensor:
    """NVFP4 with blocks of `tile_rows` x 16 along the last dimension; round to nearest even,
    or stochastically with `noise_RC` (U[0, 1) draws). Sizes that are not multiples of the tile
    are zero-padded (zeros change no amax and quantise to 0). With `group_rc` (int64, the group
    of every tile, broadcastable to the (r, c) tile grid) each group is scaled as a tensor of
    its own: s_enc from the group's amax, global_scale (G,)."""
    shape = x_RC.shape
    x_RC = _pad(x_RC.detach().float(), tile_rows)
    tiles = x_RC.view(x_RC.shape[0] // tile_rows, tile_rows, x_RC.shape[1] // BLOCK, BLOCK)
    amax_rc = tiles.abs().amax(dim=(1, 3))
    amax = amax_rc.max() if group_rc is None else group_max(amax_rc, group_rc, num_groups)
    s_enc = torch.where(amax > 0, E2M1_MAX * E4M3_MAX / amax, 1.0)
    s_enc_rc = (s_enc if group_rc is None else s_enc[group_rc]).expand_as(amax_rc)
    scales_rc = cast_fp8(amax_rc / E2M1_MAX * s_enc_rc, torch.float8_e4m3fn)
    s_b = scales_rc.float()[:, None, :, None]
    # a block whose scale underflows E4M3 holds only values < 2^-10 amax: they flush to zero
    enc_b = torch.where(s_b > 0, s_enc_rc[:, None, :, None] / s_b, 0.0)
    noise = None if noise_RC is None else _pad(noise_RC, tile_rows).view(tiles.shape)
    values_RC = round_e2m1(tiles * enc_b, noise).view(x_RC.shape)
    return NVFP4Tensor(values_RC, scales_rc, s_enc.reciprocal(), tile_rows, (shape[0], shape[1]))


def quantize_nvfp4_experts(w_ENK: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q * s_b (E, N, K) float32, s_dec (E,)): every expert's weight as
    `quantize_nvfp4(w_e, tile_rows=16)`, each padded to whole 16x16 tiles."""
    E, N, K = w_ENK.shape
    w_ENK = F.pad(w_ENK.detach().float(), (0, 0, 0, -N % BLOCK))
    tiles_per_expert = w_ENK.shape[1] // BLOCK
    expert_r = torch.arange(E, device=w_ENK.device).repeat_interleave(tiles_per_expert)
    q = quantize_nvfp4(w_ENK.flatten(0, 1), tile_rows=BLOCK, group_rc=expert_r[:, None], num_groups=E)
    return q.blocked().view(E, -1, K)[:, :N], q.global_scale


def nvfp4_mm(a_MR: NVFP4Tensor, b_NR: NVFP4Tensor) -> torch.Tensor:
    """Float32 (M, N) = a b^T: exact block products, float32 sums, tensor scales at the end."""
    return (a_MR.blocked() @ b_NR.blocked().T) * (a_MR.global_scale * b_NR.global_scale)


def nvfp4_grouped_mm(a_AR: NVFP4Tensor, b_ENR: torch.Tensor, b_dec_E: torch.Tensor, groups: ExpertGroups) -> torch.Tensor:
    """Float32 (A, N): row a of `a_AR` (grouped by expert) times b[its expert]^T, given as
    block products `b_ENR` and decode scales `b_dec_E`."""
    # b[e] in the layout `nvfp4_mm` gives W and W^T: one layout, one summation order
    y_AN = exact_grouped_mm(a_AR.blocked(), b_ENR.contiguous().transpose(1, 2), groups.offs_E)
    return y_AN * (a_AR.global_scale * b_dec_E)[groups.expert_A, None]


def _rows(x_AC: torch.Tensor, groups: ExpertGroups, noise_AC: torch.Tensor | None = None) -> NVFP4Tensor:
    """1x16 blocks along C, one tensor scale per expert's rows."""
    return quantize_nvfp4(x_AC, noise_RC=noise_AC, group_rc=groups.expert_A[:, None], num_groups=groups.num_experts)


class NVFP4Gemms:
    """The three GEMMs of a linear layer in NVFP4. `key` identifies the layer (and expert) so
    that every stochastic rounding draws its own stream (see `noise`)."""

    def __init__(self, seed: int) -> None:
        self.rht_nn = rht_matrix(seed)

    def fprop(self, x_MK: torch.Tensor, w_NK: torch.Tensor) -> torch.Tensor:
        return nvfp4_mm(quantize_nvfp4(x_MK), quantize_nvfp4(w_NK, tile_rows=BLOCK))

    def dgrad(self, dy_MN: torch.Tensor, w_NK: torch.Tensor, key: int) -> torch.Tensor:
        noise_MN = uniform_noise(dy_MN.shape, key=mix64(key, DGRAD_STREAM), salt=fingerprint(dy_MN))
        return nvfp4_mm(quantize_nvfp4(dy_MN, noise_RC=noise_MN), quantize_nvfp4(w_NK, tile_rows=BLOCK).t())

    def wgrad(self, dy_MN: torch.Tensor, x_MK: torch.Tensor, key: int) -> torch.Tensor:
        dy_NM, x_KM = rht(dy_MN, self.rht_nn).T, rht(x_MK, self.rht_nn).T
        noise_NM = uniform_noise(dy_NM.shape, key=mix64(key, WGRAD_STREAM), salt=fingerprint(dy_MN))
        return nvfp4_mm(quantize_nvfp4(dy_NM, noise_RC=noise_NM), quantize_nvfp4(x_KM))

    # Routed experts: expert e's GEMMs are those of a layer with key mix64(key, e).

    def grouped_fprop(self, x_AK: torch.Tensor, w_ENK: torch.Tensor, groups: ExpertGroups) -> torch.Tensor:
        return nvfp4_grouped_mm(_rows(x_AK, groups), *quantize_nvfp4_experts(w_ENK), groups)

    def grouped_dgrad(self, dy_AN: torch.Tensor, w_ENK: torch.Tensor, groups: ExpertGroups, key: int) -> torch.Tensor:
        seed_E = _expert_seeds(key, DGRAD_STREAM, dy_AN, groups)
        N = dy_AN.shape[1]
        counter_AN = groups.local_A()[:, None] * N + torch.arange(N, device=dy_AN.device)
        dy = _rows(dy_AN, groups, stream_noise(seed_E[groups.expert_A, None], counter_AN))
        w_blocked_ENK, w_dec_E = quantize_nvfp4_experts(w_ENK)  # 2-D tiles: W^T quantises as W, transposed
        return nvfp4_grouped_mm(dy, w_blocked_ENK.transpose(1, 2), w_dec_E, groups)

    def grouped_wgrad(self, dy_AN: torch.Tensor, x_AK: torch.Tensor, groups: ExpertGroups, key: int) -> torch.Tensor:
        pad = groups.padded()
        dy_NP, x_KP = rht(pad.scatter(dy_AN), self.rht_nn).T, rht(pad.scatter(x_AK), self.rht_nn).T
        seed_E = _expert_seeds(key, WGRAD_STREAM, dy_AN, groups)
        # draw (n, m) of expert e's (N, size_e) stream, as `wgrad` on its rows alone
        counter_NP = torch.arange(dy_NP.shape[0], device=dy_AN.device)[:, None] * pad.size_E[pad.expert_P] + pad.local_P
        expert_c = pad.expert_P[::BLOCK][None, :]  # the expert of every block of 16 tokens
        E = groups.num_experts
        dy = quantize_nvfp4(dy_NP, noise_RC=stream_noise(seed_E[pad.expert_P], counter_NP), group_rc=expert_c, num_groups=E)
        x = quantize_nvfp4(x_KP, group_rc=expert_c, num_groups=E)
        dw_ENK = exact_grouped_mm(dy.blocked(), x.blocked().T, pad.offs_E)
        return dw_ENK * (dy.global_scale * x.global_scale)[:, None, None]


def _expert_seeds(key: int, stream: int, dy_AN: torch.Tensor, groups: ExpertGroups) -> torch.Tensor:
    """int64 (E,): the seed `uniform_noise(key=mix64(mix64(key, e), stream), salt=fingerprint(dy_e))`
    gives expert e's stream."""
    expert_E = torch.arange(groups.num_experts, device=dy_AN.device)
    return mix64_tensor(mix64_tensor(mix64_tensor(key, expert_E), stream), group_fingerprints(dy_AN, groups))
