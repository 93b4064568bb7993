"""Parameter counts of a model built on the meta device (no memory is allocated)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.model.config import HybridConfig
from training.model.model import HybridForCausalLM
from training.model.moe import Experts
from training.model.presets import get_preset


@dataclass(frozen=True)
class ParamCounts:
    total: int  # every parameter, MTP layers included
    active: int  # per token: of the routed experts only num_experts_per_tok count
    mtp: int  # of `total`, in the MTP layers
    active_mtp: int  # of `active`, in the MTP layers
    embedding: int  # input embedding + output head (once if tied)


def _total_and_active(module: nn.Module, cfg: HybridConfig) -> tuple[int, int]:
    total = sum(p.numel() for p in module.parameters())
    expert = sum(m.up_proj.numel() + m.down_proj.numel() for m in module.modules() if isinstance(m, Experts))
    return total, total - expert * (cfg.n_routed_experts - cfg.num_experts_per_tok) // cfg.n_routed_experts


def count_parameters(model: HybridForCausalLM) -> ParamCounts:
    total, active = _total_and_active(model, model.cfg)
    mtp, active_mtp = _total_and_active(model.mtp, model.cfg)
    embedding = sum(p.numel() for p in {model.lm_head.weight, model.backbone.embeddings.weight})
    return ParamCounts(total=total, active=active, mtp=mtp, active_mtp=active_mtp, embedding=embedding)


def meta_model(cfg: HybridConfig) -> HybridForCausalLM:
    with torch.device("meta"):
        return HybridForCausalLM(cfg)


def format_model_info(preset_name: str) -> str:
    """Printable report of a preset: layer mix, total and active parameters."""
    cfg = get_preset(preset_name)
    n = count_parameters(meta_model(cfg))
    layer_kinds = (("M", "Mamba-2"), ("*", "attention"), ("-", "MLP"), ("E", "MoE"))
    mix = ", ".join(f"{cfg.pattern.count(c)} {name}" for c, name in layer_kinds if c in cfg.pattern)
    rows = [
        ("total parameters", n.total - n.mtp),
        ("active per token", n.active - n.active_mtp),
        ("  of which embedding + output head", n.embedding),
    ]
    if cfg.num_nextn_predict_layers:
        depths = f"{cfg.num_nextn_predict_layers} x {cfg.mtp_pattern!r}"
        rows += [(f"MTP layers ({depths}), total", n.mtp), (f"MTP layers ({depths}), active", n.active_mtp)]
    header = f"preset {preset_name}: {cfg.num_layers} layers ({mix}), hidden {cfg.hidden_size}, vocab {cfg.vocab_size}"
    return "\n".join([header] + [f"{label:<40}{value:>18,} ({value / 1e9:.2f}B)" for label, value in rows])
