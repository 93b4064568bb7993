"""FP8 with per-tensor current scaling, the Nemotron-H recipe (arXiv:2504.03624).

Each GEMM operand is scaled by fmax / amax(tensor), computed from the tensor itself just before
the cast ("current" scaling, as Transformer Engine's Float8CurrentScaling), and cast to E4M3
(weights, activations) or to the configured gradient format. GEMMs are real FP8 GEMMs:
`torch._scaled_mm` multiplies the FP8 operands and applies both dequantisation scales, with
float32 accumulation and output (CUDA from sm_89, and CPU). Where it cannot run (an older GPU,
or a dimension not a multiple of 16 on CUDA) the same product is computed from the dequantised
operands in float32.

The three GEMMs of a linear layer y = x W^T (M tokens, K in, N out):
  Fprop  y  = x_q W_q^T       reduces over K
  Dgrad  dx = dY_q W_q        reduces over N
  Wgrad  dW = dY_q^T x_q      reduces over M
Per-tensor scales do not depend on the layout, so one quantisation of each tensor serves every
GEMM it takes part in.

Routed experts (`Fp8Gemms.grouped_*`): each expert's rows and weight get their own current
scale, computed for all experts at once (`GroupedFp8`), and each GEMM is one grouped GEMM over
the expert-sorted rows. On CPU it multiplies the dequantised operands in float32 (as torch's
CPU `_scaled_mm` does); on CUDA sm90/sm100, Fprop and Dgrad with E4M3 operands are real FP8
grouped GEMMs (`torch._scaled_grouped_mm`, bf16 output), and the others multiply the FP8 codes
in bf16 (exact) with the scales applied to the output (see `groups`).

Shape legend: M tokens, K input features, N output features, R the GEMM reduction dimension,
A expert-sorted rows, E experts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.model.moe import grouped_mm
from training.precision.formats import FP8_DTYPES, cast_fp8
from training.precision.groups import ExpertGroups, exact_grouped_mm, group_max


@dataclass
class Fp8Tensor:
    data: torch.Tensor  # float8_e4m3fn or float8_e5m2
    scale_inv: torch.Tensor  # float32 0-d: real value = data * scale_inv

    def t(self) -> Fp8Tensor:
        return Fp8Tensor(self.data.t(), self.scale_inv)

    def dequantize(self) -> torch.Tensor:
        return self.data.float() * self.scale_inv


@dataclass
class GroupedFp8:
    """FP8 with one current scale per group of indices of dim 0 (an expert's rows of an
    expert-sorted (A, C) matrix, or its slice of (E, R, C) weights)."""

    data: torch.Tensor  # float8_e4m3fn or float8_e5m2
    scale_inv_G: torch.Tensor  # float32 (G,)
    group: torch.Tensor  # int64: the group of each index of dim 0

    def scale_inv(self) -> torch.Tensor:
        """Each index's decode scale, broadcastable to `data`."""
        return self.scale_inv_G[self.group].view(-1, *[1] * (self.data.dim() - 1))

    def dequantize(self) -> torch.Tensor:
        return self.data.float() * self.scale_inv()

    def t(self) -> GroupedFp8:
        """(E, R, C) -> (E, C, R): per-expert scales do not depend on the layout."""
        return GroupedFp8(self.data.transpose(1, 2), self.scale_inv_G, self.group)


def _scale(amax: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """amax maps to the format's max (zero tensors get scale 1)."""
    return torch.where(amax > 0, torch.finfo(dtype).max / amax, 1.0)


def quantize_fp8(x: torch.Tensor, dtype: torch.dtype = torch.float8_e4m3fn) -> Fp8Tensor:
    """Per-tensor current scaling."""
    scale = _scale(x.detach().abs().amax().float(), dtype)
    return Fp8Tensor(cast_fp8(x.detach().float() * scale, dtype), scale.reciprocal())


def quantize_fp8_groups(x: torch.Tensor, group: torch.Tensor, num_groups: int,
                        dtype: torch.dtype = torch.float8_e4m3fn) -> GroupedFp8:
    """Current scaling per group of indices of dim 0: each group as `quantize_fp8` alone."""
    scale_G = _scale(group_max(x.detach().abs().flatten(1).amax(1), group, num_groups), dtype)
    scale = scale_G[group].view(-1, *[1] * (x.dim() - 1))
    return GroupedFp8(cast_fp8(x.detach().float() * scale, dtype), scale_G.reciprocal(), group)


def _experts(w_ENK: torch.Tensor) -> GroupedFp8:
    E = w_ENK.shape[0]
    return quantize_fp8_groups(w_ENK, torch.arange(E, device=w_ENK.device), E)


def _scaled_mm_runs(a_MR: torch.Tensor, b_NR: torch.Tensor) -> bool:
    if a_MR.device.type == "cpu":
        return True
    sizes_ok = all(d % 16 == 0 for d in (*a_MR.shape, b_NR.shape[0]))
    return a_MR.is_cuda and sizes_ok and torch.cuda.get_device_capability(a_MR.device) >= (8, 9)


def fp8_mm(a_MR: Fp8Tensor, b_NR: Fp8Tensor) -> torch.Tensor:
    """Float32 (M, N) = a b^T, both operands (rows, R) so R is reduced (cuBLAS layout: a
    row-major, b^T column-major)."""
    if _scaled_mm_runs(a_MR.data, b_NR.data):
        return torch._scaled_mm(
            a_MR.data.contiguous(), b_NR.data.contiguous().t(),
            scale_a=a_MR.scale_inv, scale_b=b_NR.scale_inv, out_dtype=torch.float32,
        )
    return a_MR.dequantize() @ b_NR.dequantize().T


def _scaled_grouped_mm_runs(a_AR: torch.Tensor, b_ENR: torch.Tensor) -> bool:
    """torch's FP8 grouped GEMM: CUDA sm90 / sm100, E4M3 operands, sizes multiples of 16."""
    return (a_AR.is_cuda and hasattr(torch, "_scaled_grouped_mm")
            and a_AR.dtype == b_ENR.dtype == torch.float8_e4m3fn
            and torch.cuda.get_device_capability(a_AR.device) in ((9, 0), (10, 0))
            and all(d % 16 == 0 for d in (a_AR.shape[1], *b_ENR.shape[1:])))


def fp8_grouped_mm(a_AR: GroupedFp8, b_ENR: GroupedFp8, offs_E: torch.Tensor) -> torch.Tensor:
    """Float32 (A, N): row a of `a_AR` times b[its expert]^T, R reduced (Fprop: x and W;
    Dgrad: dY and W^T); the rows of expert e end at offs_E[e]."""
    a, b = a_AR, b_ENR
    if _scaled_grouped_mm_runs(a.data, b.data):
        E, N = b.data.shape[:2]
        return torch._scaled_grouped_mm(
            a.data.contiguous(), b.data.contiguous().transpose(1, 2), a.scale_inv().flatten(),
            b.scale_inv_G[:, None].expand(E, N).contiguous(), offs=offs_E, out_dtype=torch.bfloat16,
        ).float()
    if a.data.is_cuda:
        return exact_grouped_mm(a.data, b.data.transpose(1, 2), offs_E) * (a.scale_inv() * b.scale_inv_G[a.group, None])
    # b[e] in the layout the dense GEMMs give W and W^T: one layout, one summation order
    return grouped_mm(a.dequantize(), b.dequantize().contiguous().transpose(1, 2), offs_E)


def fp8_grouped_wgrad(dy_AN: GroupedFp8, x_AK: GroupedFp8, offs_E: torch.Tensor) -> torch.Tensor:
    """Float32 (E, N, K): dY_e^T x_e over the rows of every expert e."""
    if dy_AN.data.is_cuda:
        scale_E = (dy_AN.scale_inv_G * x_AK.scale_inv_G)[:, None, None]
        return exact_grouped_mm(dy_AN.data.T, x_AK.data, offs_E) * scale_E
    return grouped_mm(dy_AN.dequantize().T, x_AK.dequantize(), offs_E)


class Fp8Gemms:
    """The three GEMMs of a linear layer in FP8; `key` (for stochastic rounding) is unused."""

    def __init__(self, grad_format: str) -> None:
        self.grad_dtype = FP8_DTYPES[grad_format]

    def fprop(self, x_MK: torch.Tensor, w_NK: torch.Tensor) -> torch.Tensor:
        return fp8_mm(quantize_fp8(x_MK), quantize_fp8(w_NK))

    def dgrad(self, dy_MN: torch.Tensor, w_NK: torch.Tensor, key: int) -> torch.Tensor:
        return fp8_mm(quantize_fp8(dy_MN, self.grad_dtype), quantize_fp8(w_NK).t())

    def wgrad(self, dy_MN: torch.Tensor, x_MK: torch.Tensor, key: int) -> torch.Tensor:
        return fp8_mm(quantize_fp8(dy_MN, self.grad_dtype).t(), quantize_fp8(x_MK).t())

    def grouped_fprop(self, x_AK: torch.Tensor, w_ENK: torch.Tensor, groups: ExpertGroups) -> torch.Tensor:
        return fp8_grouped_mm(self._rows(x_AK, groups), _experts(w_ENK), groups.offs_E)

    def grouped_dgrad(self, dy_AN: torch.Tensor, w_ENK: torch.Tensor, groups: ExpertGroups, key: int) -> torch.Tensor:
        return fp8_grouped_mm(self._rows(dy_AN, groups, self.grad_dtype), _experts(w_ENK).t(), groups.offs_E)

    def grouped_wgrad(self, dy_AN: torch.Tensor, x_AK: torch.Tensor, groups: ExpertGroups, key: int) -> torch.Tensor:
        return fp8_grouped_wgrad(self._rows(dy_AN, groups, self.grad_dtype), self._rows(x_AK, groups), groups.offs_E)

    @staticmethod
    def _rows(x_AC: torch.Tensor, groups: ExpertGroups, dtype: torch.dtype = torch.float8_e4m3fn) -> GroupedFp8:
        return quantize_fp8_groups(x_AC, groups.expert_A, groups.num_experts, dtype)
