"""Aux-loss-free load balancing for the trainer (DeepSeek-V3, arXiv:2412.19437, section 2.1.2).

Every MoE layer counts the tokens routed to each expert (`MoE.expert_load`). After an optimizer
step the trainer calls `update_router_bias`: each expert's `e_score_correction_bias` moves by
`router_bias_update_rate` towards balance (up if under-loaded, down if over-loaded). The bias
only affects which experts are selected, never the gate weights. Under data parallelism the
trainer all-reduces `expert_load` before calling this (the model never mentions ranks).
"""

from __future__ import annotations

import torch
from torch import nn

from training.model.moe import MoE


def moe_layers(model: nn.Module) -> dict[str, MoE]:
    return {name: m for name, m in model.named_modules() if isinstance(m, MoE)}


@torch.no_grad()
def update_router_bias(model: nn.Module, apply: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Sign-rule bias update from the accumulated loads; returns those loads (E,) per layer
    name and resets the counters. `apply` (a 0-d bool tensor) masks the update on the device,
    so that a skipped step need not be known on the host."""
    loads = {}
    for name, moe in moe_layers(model).items():
        load_E = moe.expert_load.clone()
        step_E = moe.cfg.router_bias_update_rate * torch.sign(load_E.mean() - load_E)
        moe.gate.e_score_correction_bias += step_E if apply is None else step_E * apply
        moe.expert_load.zero_()
        loads[name] = load_E
    return loads


def load_imbalance(load_E: torch.Tensor) -> float:
    """Max load over mean load (1.0 is perfect balance); a scalar for the training log."""
    return (load_E.max() / load_E.mean().clamp(min=1)).item()


def aux_loss(model: nn.Module) -> torch.Tensor | None:
    """Sum of the MoE layers' sequence aux losses from the last training forward, if enabled."""
    losses = [m.aux_loss for m in moe_layers(model).values() if m.aux_loss is not None]
    return torch.stack(losses).sum() if losses else None
