"""Printable reports on a model: parameter counts of a preset built on the meta device (no memory
is allocated), and the per-rank memory plan of a training step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.model.config import HybridConfig
from training.model.memory_plan import GiB, MemoryPlan, PlanSetup
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


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _gib(n: int) -> str:
    return f"{n / GiB:.2f}"


def format_memory_plan(name: str, cfg: HybridConfig, setup: PlanSetup, plan: MemoryPlan, gpu_memory: int) -> str:
    """The plan as a table of GiB per rank at the peak moment without and with activation
    checkpointing, then the optimizer step and a verdict against `gpu_memory`."""
    peaks = plan.peak(checkpointing=False), plan.peak(checkpointing=True)
    labels = [label for label in peaks[0].parts if any(m.parts[label] for m in peaks)]
    width = max(map(len, labels)) + 2
    lines = [
        f"{name}: {_count(count_parameters(meta_model(cfg)).total)} parameters on {setup.world_size} "
        f"GPU{'s' if setup.world_size > 1 else ''} of {_gib(gpu_memory)} GiB, expert parallel {setup.expert_parallel}",
        f"micro-batch {setup.micro_batch} x {setup.seq_len:,} tokens, grad_accum {setup.grad_accum}, "
        f"{setup.precision} GEMMs, FSDP2 params {setup.param_dtype} / reduce {setup.reduce_dtype}, "
        f"SSD scan {setup.ssd_scan}",
        f"{'GiB per rank':<{width}}{'no checkpointing':>24}{'checkpointing':>24}",
        f"{'  peak moment':<{width}}{peaks[0].name:>24}{peaks[1].name:>24}",
    ]
    for label in labels:
        cells = [_gib(m.parts[label]) if m.parts[label] else "-" for m in peaks]
        lines.append(f"  {label:<{width - 2}}{cells[0]:>24}{cells[1]:>24}")
    lines.append(f"{'  total':<{width}}{_gib(peaks[0].total):>24}{_gib(peaks[1].total):>24}")
    lines.append(f"optimizer step: {_gib(plan.moments['optimizer step'].total)} GiB; with checkpointing a block "
                 "keeps only its input and one block at a time is recomputed")
    return "\n".join([*lines, _verdict(plan, gpu_memory)])


def _verdict(plan: MemoryPlan, gpu_memory: int) -> str:
    def share(checkpointing: bool) -> str:
        peak = plan.peak(checkpointing=checkpointing).total
        return f"{_gib(peak)} of {_gib(gpu_memory)} GiB" + (f" ({_gib(gpu_memory - peak)} to spare)" if peak <= gpu_memory else "")

    if plan.fits(gpu_memory, checkpointing=False):
        return f"verdict: fits without activation checkpointing: {share(False)}"
    if plan.fits(gpu_memory, checkpointing=True):
        return f"verdict: fits only with activation checkpointing (parallel.activation_checkpointing: true): {share(True)}"
    return (f"verdict: does not fit: {share(True)} even with activation checkpointing; use more GPUs, a shorter "
            "sequence or micro-batch, or (MoE) more expert parallelism")
