"""Routing and experts: grouped GEMM equals the per-expert loop and the dense reference;
aux-loss-free bias update, sequence aux loss and load statistics."""

from __future__ import annotations

import pytest
import torch

from training.model import HybridForCausalLM, get_preset
from training.model import moe as moe_module
from training.model.balancing import aux_loss, load_imbalance, update_router_bias
from training.model.moe import MoE, Router, experts_reference, sequence_aux_loss


def _assert_close_to_scale(got: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    """Max abs error within `rel` of the largest magnitude (bf16 rounds intermediates)."""
    assert (got.float() - expected.float()).abs().max() <= rel * expected.float().abs().max()


def _moe(**overrides) -> MoE:
    torch.manual_seed(0)
    cfg = get_preset("tiny", **overrides)
    layer = MoE(cfg)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.3)
    return layer


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_experts_equal_reference(grouped, dtype, monkeypatch):
    monkeypatch.setattr(moe_module, "HAS_GROUPED_MM", grouped and moe_module.HAS_GROUPED_MM)
    layer = _moe(moe_latent_size=64).to(dtype)
    x_SZ = torch.randn(50, 64, dtype=dtype)
    weights_SK = torch.rand(50, 2)
    experts_SK = torch.stack([torch.randint(0, 4, (50,)), torch.randint(4, 8, (50,))], 1)  # experts 4..7 uneven
    experts_SK[:, 1] = experts_SK[:, 1].clamp(max=6)  # expert 7 receives no token
    got = layer.experts(x_SZ, weights_SK, experts_SK)
    assert got.dtype == dtype
    expected = experts_reference(layer.experts, x_SZ, weights_SK, experts_SK)
    _assert_close_to_scale(got, expected, 1e-6 if dtype == torch.float32 else 2e-2)


def test_grouped_experts_gradients_match_reference():
    layer = _moe()
    x_SZ = torch.randn(30, 128, requires_grad=True)
    weights_SK = torch.rand(30, 2)
    experts_SK = torch.randint(0, 8, (30, 2))
    grads = []
    for fn in (layer.experts.forward, lambda *a: experts_reference(layer.experts, *a)):
        fn(x_SZ, weights_SK, experts_SK).sin().sum().backward()
        grads.append([x_SZ.grad.clone(), layer.experts.up_proj.grad.clone(), layer.experts.down_proj.grad.clone()])
        x_SZ.grad = layer.experts.up_proj.grad = layer.experts.down_proj.grad = None
    for fast, slow in zip(*grads):
        _assert_close_to_scale(fast, slow, 1e-4)


def test_router_bias_selects_but_does_not_weight():
    router = Router(get_preset("tiny", norm_topk_prob=False, routed_scaling_factor=1.0))
    torch.nn.init.normal_(router.weight)
    x_SD = torch.randn(16, 128)
    scores_SE, _, _ = router(x_SD)
    router.e_score_correction_bias[3] = 10.0  # force expert 3 everywhere
    scores2_SE, weights_SK, experts_SK = router(x_SD)
    assert (experts_SK == 3).any(-1).all()
    torch.testing.assert_close(scores2_SE, scores_SE)
    torch.testing.assert_close(weights_SK, scores_SE.gather(1, experts_SK))


def test_group_limited_routing_stays_in_topk_groups():
    router = Router(get_preset("tiny", n_routed_experts=16, n_group=4, topk_group=2, num_experts_per_tok=4))
    torch.nn.init.normal_(router.weight)
    _, weights_SK, experts_SK = router(torch.randn(64, 128))
    assert ((experts_SK // 4).unique(dim=None).numel() <= 4)
    assert all(row.unique().numel() <= 2 for row in experts_SK // 4)
    torch.testing.assert_close(weights_SK.sum(-1), torch.full((64,), 2.5))  # renormalised x scaling


def test_bias_update_follows_sign_rule_and_resets_load():
    model = HybridForCausalLM(get_preset("tiny"))
    model(torch.randint(0, 1024, (2, 32)))
    layers = {n: m for n, m in model.named_modules() if isinstance(m, MoE)}
    loads = {n: m.expert_load.clone() for n, m in layers.items()}
    assert all(load.sum() == 2 * 32 * 2 for load in loads.values())  # every token routed to K experts
    returned = update_router_bias(model)
    for name, layer in layers.items():
        load = loads[name]
        expected = 1e-3 * torch.sign(load.mean() - load)
        torch.testing.assert_close(layer.gate.e_score_correction_bias, expected)
        torch.testing.assert_close(returned[name], load)
        assert layer.expert_load.sum() == 0
    assert load_imbalance(torch.tensor([1.0, 1.0, 1.0, 1.0])) == 1.0


def test_sequence_aux_loss_is_one_when_balanced_and_trains_router():
    E, T = 4, 8
    scores_BTE = torch.full((1, T, E), 0.5)
    experts_BTK = torch.tensor([[0, 1], [2, 3]] * (T // 2))[None]
    torch.testing.assert_close(sequence_aux_loss(scores_BTE, experts_BTK), torch.tensor(1.0))
    model = HybridForCausalLM(get_preset("tiny", moe_aux_loss_coeff=1e-4)).train()
    out = model(torch.randint(0, 1024, (2, 16)), labels_BT=torch.randint(0, 1024, (2, 16)))
    assert out.aux_loss is not None and out.aux_loss > 0
    torch.testing.assert_close(out.loss, out.lm_loss + aux_loss(model))
    out.loss.backward()
    assert model.backbone.layers[1].mixer.gate.weight.grad.abs().sum() > 0
