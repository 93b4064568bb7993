"""Linear layers and routed experts whose three GEMMs run in a low-precision format.

`QuantizedLinear` / `QuantizedExperts` subclass the model's `Linear` / `Experts` and only
replace `forward`: `apply_precision` switches a module's class in place, so parameters, their
names and the state dict stay those of the BF16 model (checkpoints and the HF export are
unchanged) and it works on the meta device. Each GEMM (Fprop, Dgrad, Wgrad) is delegated to a
`Gemms` object (`Fp8Gemms`, `NVFP4Gemms`) from a custom autograd Function; all three compute
and return float32, and the layer returns its input's dtype (bf16 under FSDP2's mixed
precision) and its weight's dtype for the weight gradient.

Routed experts: each GEMM is one grouped GEMM over the expert-sorted tokens whose operands are
quantised per expert (per-expert tensor scales and, for NVFP4, per-expert RHT blocks and
rounding streams), which is what FP8 and NVFP4 grouped GEMMs do (Transformer Engine's
GroupedLinear quantises each expert's operands separately). Expert e computes what a
`QuantizedMatmul` with key mix64(key, e) on its rows alone would, all experts at once and on
the device: no per-expert loop and no token count on the host (`groups`).

`forward_bf16` (the NVFP4 late switch to BF16, arXiv:2509.25149) runs Fprop exactly as the
BF16 layer would while Dgrad and Wgrad stay quantised.

Shape legend: M tokens, K input features, N output features, E experts, A expert-sorted
assignments (tokens x experts per token), S tokens, Z expert width, F expert intermediate.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F

from training.model.linear import Linear, gemm_dtype
from training.model.mlp import relu2
from training.model.moe import Experts, group_by_expert, grouped_mm, local_experts
from training.precision.groups import ExpertGroups
from training.precision.noise import mix64


class Gemms(Protocol):
    def fprop(self, x_MK: torch.Tensor, w_NK: torch.Tensor) -> torch.Tensor: ...
    def dgrad(self, dy_MN: torch.Tensor, w_NK: torch.Tensor, key: int) -> torch.Tensor: ...
    def wgrad(self, dy_MN: torch.Tensor, x_MK: torch.Tensor, key: int) -> torch.Tensor: ...
    def grouped_fprop(self, x_AK: torch.Tensor, w_ENK: torch.Tensor, groups: ExpertGroups) -> torch.Tensor: ...
    def grouped_dgrad(self, dy_AN: torch.Tensor, w_ENK: torch.Tensor, groups: ExpertGroups, key: int) -> torch.Tensor: ...
    def grouped_wgrad(self, dy_AN: torch.Tensor, x_AK: torch.Tensor, groups: ExpertGroups, key: int) -> torch.Tensor: ...


def bf16_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """`Linear.forward`'s arithmetic (float32 GEMM for bf16 on CPUs without bf16 GEMM)."""
    dtype = gemm_dtype(x)
    return F.linear(x.to(dtype), w.to(dtype), None if b is None else b.to(dtype)).to(x.dtype)


class QuantizedMatmul(torch.autograd.Function):
    """y = x W^T + b with Fprop, Dgrad and Wgrad run by `gemms`."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gemms: Gemms, key: int, forward_bf16: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.gemms, ctx.key = gemms, key
        ctx.bias_dtype = None if bias is None else bias.dtype
        if forward_bf16:
            return bf16_linear(x, weight, bias)
        y_MN = gemms.fprop(x.reshape(-1, x.shape[-1]), weight)
        if bias is not None:
            y_MN = y_MN + bias.float()
        return y_MN.to(x.dtype).view(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        dy_MN = dy.reshape(-1, dy.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = ctx.gemms.dgrad(dy_MN, weight, ctx.key).to(x.dtype).view_as(x)
        if ctx.needs_input_grad[1]:
            dw = ctx.gemms.wgrad(dy_MN, x.reshape(-1, x.shape[-1]), ctx.key).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            db = dy_MN.float().sum(0).to(ctx.bias_dtype)
        return dx, dw, db, None, None, None


def bf16_grouped_linear(x_AK: torch.Tensor, w_ENK: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    """`Experts.forward`'s arithmetic for one projection (output in the GEMM dtype)."""
    dtype = gemm_dtype(x_AK)
    return grouped_mm(x_AK.to(dtype), w_ENK.to(dtype).transpose(1, 2), offs_E)


class GroupedQuantizedMatmul(torch.autograd.Function):
    """y_A = x_A W_e^T for the rows A of each expert e (`groups`): one grouped GEMM per GEMM,
    expert e's operands quantised on their own (key mix64(key, e)). Returns the GEMM dtype,
    as Experts."""

    @staticmethod
    def forward(
        ctx: Any, x_AK: torch.Tensor, w_ENK: torch.Tensor, groups: ExpertGroups, gemms: Gemms, key: int,
        forward_bf16: bool,
    ) -> torch.Tensor:
        ctx.save_for_backward(x_AK, w_ENK)
        ctx.groups, ctx.gemms, ctx.key = groups, gemms, key
        if forward_bf16:
            return bf16_grouped_linear(x_AK, w_ENK, groups.offs_E)
        return gemms.grouped_fprop(x_AK, w_ENK, groups).to(gemm_dtype(x_AK))

    @staticmethod
    def backward(ctx: Any, dy_AN: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x_AK, w_ENK = ctx.saved_tensors
        gemms, key, groups = ctx.gemms, ctx.key, ctx.groups
        dx_AK = dw_ENK = None
        if ctx.needs_input_grad[0]:
            dx_AK = gemms.grouped_dgrad(dy_AN, w_ENK, groups, key).to(x_AK.dtype)
        if ctx.needs_input_grad[1]:
            dw_ENK = gemms.grouped_wgrad(dy_AN, x_AK, groups, key).to(w_ENK.dtype)
        return dx_AK, dw_ENK, None, None, None, None


class QuantizedLinear(Linear):
    gemms: Gemms
    rng_key: int
    forward_bf16: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return QuantizedMatmul.apply(x, self.weight, self.bias, self.gemms, self.rng_key, self.forward_bf16)


class QuantizedExperts(Experts):
    """`Experts.forward` with both grouped GEMMs quantised (keys mix64(rng_key, 0) and (rng_key, 1))."""

    gemms: Gemms
    rng_key: int
    forward_bf16: bool

    def forward(self, x_SZ: torch.Tensor, weights_SK: torch.Tensor, experts_SK: torch.Tensor) -> torch.Tensor:
        S, K = experts_SK.shape
        up_EFZ, down_EZF = local_experts(self.up_proj), local_experts(self.down_proj)
        order_A, counts_E = group_by_expert(experts_SK, up_EFZ.shape[0])
        groups = ExpertGroups.from_counts(experts_SK.flatten()[order_A], counts_E)
        x_AZ = x_SZ[order_A // K]
        args = (groups, self.gemms)
        h_AF = relu2(GroupedQuantizedMatmul.apply(x_AZ, up_EFZ, *args, mix64(self.rng_key, 0), self.forward_bf16))
        y_AZ = GroupedQuantizedMatmul.apply(h_AF, down_EZF, *args, mix64(self.rng_key, 1), self.forward_bf16)
        # un-sort, then combine each token's K expert outputs in float32, as Experts.forward
        y_SKZ = torch.empty_like(y_AZ).index_copy_(0, order_A, y_AZ).view(S, K, -1)
        return (weights_SK[:, None, :] @ y_SKZ.float())[:, 0].to(x_SZ.dtype)


def quantize_module(module: Linear | Experts, gemms: Gemms, rng_key: int) -> None:
    """Switch `module` to its quantised class in place (parameters untouched)."""
    module.__class__ = QuantizedLinear if isinstance(module, Linear) else QuantizedExperts
    module.gemms, module.rng_key, module.forward_bf16 = gemms, rng_key, False
