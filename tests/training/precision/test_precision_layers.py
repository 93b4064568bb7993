"""Quantised linear layers and experts: forward and backward equal the slow quantise-dequantise
reference exactly, stay within the format's error of the high-precision layer, and switch their
forward to BF16 on demand."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from precision_reference import fp8_linear_reference, nvfp4_linear_reference

from training.model import get_preset
from training.model import moe as moe_module
from training.model.linear import Linear
from training.model.moe import Experts, experts_reference
from training.precision import set_forward_bf16
from training.precision import fp8 as fp8_module
from training.precision.fp8 import Fp8Gemms
from training.precision.groups import ExpertGroups
from training.precision.layers import GroupedQuantizedMatmul, QuantizedMatmul, quantize_module
from training.precision.noise import mix64
from training.precision.nvfp4 import NVFP4Gemms, quantize_nvfp4

KEY, SEED = 1234, 5
GEMMS = {"fp8-e4m3": Fp8Gemms("e4m3"), "fp8-e5m2": Fp8Gemms("e5m2"), "nvfp4": NVFP4Gemms(SEED)}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _layer(recipe: str, *, in_features: int = 72, out_features: int = 40, bias: bool = False) -> Linear:
    """A quantised Linear; feature counts that are not multiples of 16 exercise the padding."""
    layer = Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out_features, in_features, generator=_gen(1)) * 0.05)
        if bias:
            layer.bias.copy_(torch.randn(out_features, generator=_gen(2)))
    quantize_module(layer, GEMMS[recipe], rng_key=KEY)
    return layer


def _run(layer: Linear, x: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_()
    y = layer(x)
    y.backward(dy)
    return y.detach(), x.grad, layer.weight.grad


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.float() - expected.float()).norm() / expected.float().norm()).item()


@pytest.mark.parametrize("recipe", list(GEMMS))
def test_linear_equals_slow_reference(recipe):
    layer = _layer(recipe, bias=True)
    x_BTK = torch.randn(2, 20, 72, generator=_gen(3))  # 40 tokens: the RHT pads them to 48
    dy_BTN = torch.randn(2, 20, 40, generator=_gen(4))
    y, dx, dw = _run(layer, x_BTK, dy_BTN)
    x_MK, dy_MN = x_BTK.flatten(0, 1), dy_BTN.flatten(0, 1)
    if recipe == "nvfp4":
        ref = nvfp4_linear_reference(x_MK, layer.weight.detach(), dy_MN, key=KEY, seed=SEED)
    else:
        ref = fp8_linear_reference(x_MK, layer.weight.detach(), dy_MN, GEMMS[recipe].grad_dtype)
    y_ref, dx_ref, dw_ref = ref
    assert torch.equal(y.flatten(0, 1), y_ref + layer.bias.detach())
    assert torch.equal(dx.flatten(0, 1), dx_ref)
    assert torch.equal(dw, dw_ref)
    assert torch.equal(layer.bias.grad, dy_MN.sum(0))


# relative Frobenius error of (y, dx, dw) against the float32 layer on N(0, 1) data: E4M3 keeps
# 3 mantissa bits (~3.7 % measured), E5M2 2 (~5.9 % on gradients), NVFP4 1 (~15-18 %, stochastic
# rounding of the gradients adding variance)
BOUNDS = {"fp8-e4m3": (0.05, 0.05, 0.05), "fp8-e5m2": (0.05, 0.08, 0.08), "nvfp4": (0.18, 0.22, 0.22)}


@pytest.mark.parametrize("recipe", list(GEMMS))
def test_linear_close_to_high_precision(recipe):
    layer = _layer(recipe, in_features=256, out_features=192)
    x, dy = torch.randn(4, 64, 256, generator=_gen(3)), torch.randn(4, 64, 192, generator=_gen(4))
    reference = copy.deepcopy(layer)
    reference.__class__ = Linear
    for got, expected, bound in zip(_run(layer, x, dy), _run(reference, x, dy), BOUNDS[recipe]):
        assert _relative_error(got, expected) < bound


def test_nvfp4_dgrad_is_unbiased():
    """Stochastic rounding of dY: the mean Dgrad over many rounding streams tends to dY W_q."""
    dy_MN = torch.randn(32, 64, generator=_gen(5))
    w_NK = torch.randn(64, 32, generator=_gen(6))
    exact_MK = dy_MN @ quantize_nvfp4(w_NK, tile_rows=16).dequantize()
    gemms = GEMMS["nvfp4"]
    draws = [gemms.dgrad(dy_MN, w_NK, key) for key in range(128)]
    single = _relative_error(draws[0], exact_MK)
    assert _relative_error(torch.stack(draws).mean(0), exact_MK) < 2 * single / 128**0.5


@pytest.mark.parametrize("recipe", list(GEMMS))
def test_linear_in_bf16(recipe):
    """bf16 activations and weights (FSDP2 mixed precision): float32 GEMMs, bf16 in and out."""
    layer = _layer(recipe, bias=True).to(torch.bfloat16)
    x, dy = torch.randn(40, 72, generator=_gen(3)), torch.randn(40, 40, generator=_gen(4))
    y, dx, dw = _run(layer, x.bfloat16(), dy.bfloat16())
    assert y.dtype == dx.dtype == dw.dtype == layer.bias.grad.dtype == torch.bfloat16
    layer32 = _layer(recipe, bias=True).to(torch.bfloat16).float()  # the same values in float32
    y32, dx32, dw32 = _run(layer32, x.bfloat16().float(), dy.bfloat16().float())
    for got, expected in ((y, y32), (dx, dx32), (dw, dw32)):
        assert _relative_error(got, expected) < 0.005  # the same quantised GEMMs, rounded to bf16


def test_stochastic_rounding_is_deterministic_per_layer():
    x, dy = torch.randn(40, 72, generator=_gen(3)), torch.randn(40, 40, generator=_gen(4))
    first, again = _run(_layer("nvfp4"), x, dy), _run(_layer("nvfp4"), x, dy)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other = _layer("nvfp4")
    other.rng_key = KEY + 1  # another layer draws another stream
    _, dx, dw = _run(other, x, dy)
    assert not torch.equal(dx, first[1]) and not torch.equal(dw, first[2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_bf16_switch(dtype):
    """set_forward_bf16: the forward is exactly the BF16 layer's, the backward stays NVFP4."""
    layer = _layer("nvfp4", bias=True).to(dtype)
    plain = copy.deepcopy(layer)
    plain.__class__ = Linear
    x = torch.randn(2, 20, 72, generator=_gen(3)).to(dtype)
    dy = torch.randn(2, 20, 40, generator=_gen(4)).to(dtype)
    y_quantised, dx_quantised, _ = _run(layer, x, dy)
    set_forward_bf16(torch.nn.Sequential(layer), True)
    y, dx, _ = _run(layer, x, dy)
    assert torch.equal(y, plain(x)) and not torch.equal(y, y_quantised)
    assert torch.equal(dx, dx_quantised)  # Dgrad depends on dY and W only: unchanged
    set_forward_bf16(torch.nn.Sequential(layer), False)
    assert torch.equal(_run(layer, x, dy)[0], y_quantised)


def _experts(recipe: str) -> Experts:
    cfg = get_preset("tiny", moe_latent_size=48, moe_intermediate_size=40)  # Z = 48, F = 40
    experts = Experts(cfg)
    with torch.no_grad():
        experts.up_proj.normal_(0.0, 0.2, generator=_gen(1))
        experts.down_proj.normal_(0.0, 0.2, generator=_gen(2))
    quantize_module(experts, GEMMS[recipe], rng_key=KEY)
    return experts


def _routing(S: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    weights_SK = torch.rand(S, 2, generator=_gen(7))
    experts_SK = torch.stack([torch.randint(0, 4, (S,), generator=_gen(8)), torch.randint(4, 7, (S,), generator=_gen(9))], 1)
    return weights_SK, experts_SK  # expert 7 gets no token


@pytest.mark.parametrize("recipe", ["fp8-e4m3", "nvfp4"])
def test_experts_are_per_expert_quantised_linears(recipe):
    experts = _experts(recipe)
    x_SZ = torch.randn(30, 48, generator=_gen(3), requires_grad=True)
    weights_SK, experts_SK = _routing()
    out_SZ = experts(x_SZ, weights_SK, experts_SK)
    out_SZ.backward(torch.ones_like(out_SZ))
    # slow twin: every (token, chosen expert) through that expert's own quantised linears
    x_ref = x_SZ.detach().clone().requires_grad_()
    up, down = experts.up_proj.detach().clone().requires_grad_(), experts.down_proj.detach().clone().requires_grad_()
    gemms, rows = GEMMS[recipe], []
    for e in range(8):
        s_n, k_n = (experts_SK == e).nonzero(as_tuple=True)
        if len(s_n):
            key_up, key_down = mix64(mix64(KEY, 0), e), mix64(mix64(KEY, 1), e)
            h = F.relu(QuantizedMatmul.apply(x_ref[s_n], up[e], None, gemms, key_up, False)).square()
            y = QuantizedMatmul.apply(h, down[e], None, gemms, key_down, False)
            rows.append(torch.zeros(30, 48).index_put((s_n,), weights_SK[s_n, k_n, None] * y, accumulate=True))
    ref_SZ = torch.stack(rows).sum(0)
    ref_SZ.backward(torch.ones_like(ref_SZ))
    torch.testing.assert_close(out_SZ, ref_SZ, rtol=1e-6, atol=1e-6)  # only the K-sum order differs
    assert torch.equal(experts.up_proj.grad, up.grad) and torch.equal(experts.down_proj.grad, down.grad)
    torch.testing.assert_close(x_SZ.grad, x_ref.grad, rtol=1e-6, atol=1e-6)
    assert experts.up_proj.grad[7].abs().sum() == 0  # the idle expert
    exact = experts_reference(experts, x_SZ.detach(), weights_SK, experts_SK)
    assert _relative_error(out_SZ.detach(), exact) < {"fp8-e4m3": 0.08, "nvfp4": 0.35}[recipe]  # two GEMMs, relu^2


@pytest.mark.parametrize("grouped", [True, False])
def test_experts_forward_bf16_equals_bf16_experts(grouped, monkeypatch):
    monkeypatch.setattr(moe_module, "HAS_GROUPED_MM", grouped and moe_module.HAS_GROUPED_MM)
    experts = _experts("nvfp4").to(torch.bfloat16)
    plain = copy.deepcopy(experts)
    plain.__class__ = Experts
    experts.forward_bf16 = True
    x_SZ = torch.randn(30, 48, generator=_gen(3)).bfloat16()
    assert torch.equal(experts(x_SZ, *_routing()), plain(x_SZ, *_routing()))


@pytest.mark.parametrize("recipe", list(GEMMS))
def test_grouped_matmul_equals_slow_reference_per_expert(recipe):
    """One grouped GEMM per GEMM, computed for all experts at once on the device, gives every
    expert exactly the slow twin's (y, dx, dw) of its rows alone (key mix64(KEY, e) for NVFP4);
    groups of 0, 1 and 17 rows exercise the per-expert padding to blocks of 16 tokens."""
    counts = [0, 1, 3, 17, 40, 2, 0, 9]
    counts_E = torch.tensor(counts)
    x_AK = torch.randn(sum(counts), 72, generator=_gen(3), requires_grad=True)
    w_ENK = (torch.randn(8, 40, 72, generator=_gen(1)) * 0.05).requires_grad_()
    dy_AN = torch.randn(sum(counts), 40, generator=_gen(4))
    groups = ExpertGroups.from_counts(torch.arange(8).repeat_interleave(counts_E), counts_E)
    y_AN = GroupedQuantizedMatmul.apply(x_AK, w_ENK, groups, GEMMS[recipe], KEY, False)
    y_AN.backward(dy_AN)
    rows = zip(x_AK.detach().split(counts), dy_AN.split(counts), y_AN.detach().split(counts), x_AK.grad.split(counts))
    for e, (x_nK, dy_nN, y_nN, dx_nK) in enumerate(rows):
        if not counts[e]:
            assert torch.equal(w_ENK.grad[e], torch.zeros(40, 72))  # an idle expert
            continue
        if recipe == "nvfp4":
            ref = nvfp4_linear_reference(x_nK, w_ENK.detach()[e], dy_nN, key=mix64(KEY, e), seed=SEED)
        else:
            ref = fp8_linear_reference(x_nK, w_ENK.detach()[e], dy_nN, GEMMS[recipe].grad_dtype)
        assert all(torch.equal(got, exp) for got, exp in zip((y_nN, dx_nK, w_ENK.grad[e]), ref)), e


@pytest.mark.parametrize("recipe", ["fp8-e4m3", "nvfp4"])
def test_grouped_matmul_with_no_tokens(recipe):
    x_AK = torch.zeros(0, 48, requires_grad=True)
    w_ENK = torch.randn(8, 40, 48, requires_grad=True)
    no_rows = ExpertGroups.from_counts(torch.zeros(0, dtype=torch.int64), torch.zeros(8, dtype=torch.int64))
    y = GroupedQuantizedMatmul.apply(x_AK, w_ENK, no_rows, GEMMS[recipe], KEY, False)
    y.sum().backward()
    assert y.shape == (0, 40) and torch.equal(w_ENK.grad, torch.zeros_like(w_ENK))


def test_fp8_runs_real_scaled_mm_and_its_fallback_agrees(monkeypatch):
    """On CPU every FP8 GEMM is a torch._scaled_mm; the dequantised float32 fallback (GPUs
    without FP8, odd sizes on CUDA) computes the same numbers."""
    calls = []
    scaled_mm = torch._scaled_mm
    monkeypatch.setattr(torch, "_scaled_mm", lambda *a, **kw: calls.append(a[0].dtype) or scaled_mm(*a, **kw))
    x, dy = torch.randn(2, 20, 72, generator=_gen(3)), torch.randn(2, 20, 40, generator=_gen(4))
    real = _run(_layer("fp8-e5m2"), x, dy)
    assert calls == [torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e5m2]  # Fprop, Dgrad, Wgrad
    monkeypatch.setattr(fp8_module, "_scaled_mm_runs", lambda a, b: False)
    assert all(torch.equal(a, b) for a, b in zip(_run(_layer("fp8-e5m2"), x, dy), real))
