"""Linear layers whose bfloat16 matmuls run as float32 GEMMs on CPUs without bf16 GEMM.

x86 CPUs without AVX512-BF16 / AMX (e.g. AVX2-only EPYC) have no bf16 GEMM; PyTorch's
fallback there is ~20x slower than float32 sgemm. The product of two bf16 numbers is exact in
float32 and a bf16 GEMM accumulates in float32 anyway (oneDNN), so up-casting the operands,
multiplying in float32 and rounding the output to bf16 once is the same arithmetic as a
native bf16 GEMM with float32 accumulation. On GPUs and bf16-capable CPUs nothing changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CPU_HAS_BF16_GEMM = torch.ops.mkldnn._is_mkldnn_bf16_supported()


def gemm_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype to run matmuls of `t` in: float32 for bf16 on a CPU without bf16 GEMM."""
    if t.dtype == torch.bfloat16 and t.device.type == "cpu" and not CPU_HAS_BF16_GEMM:
        return torch.float32
    return t.dtype


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, in float32 for bf16 operands on a CPU without bf16 GEMM (output in x's dtype)."""
    dtype = gemm_dtype(x)
    if dtype == x.dtype:
        return F.linear(x, weight, bias)
    bias = None if bias is None else bias.to(dtype)
    return F.linear(x.to(dtype), weight.to(dtype), bias).to(x.dtype)


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
