"""The memory planner against what the code really holds: each block kind's saved activations
against autograd's saved-tensor hooks, and whole CPU training steps against their measured peak."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

import training.model.linear as linear
from flows.cli.main import main, parse_memory_size
from training.model import HybridForCausalLM, get_preset
from training.model.memory_plan import (
    GiB, PlanSetup, block_activations, head_activations, head_weight_gradients, param_layout, plan_memory,
)


def saved_bytes(fn, exclude: set[int]) -> int:
    """Bytes of the distinct storages autograd saves while running `fn` (those in `exclude` aside)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in exclude:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def bf16_gemms(monkeypatch: pytest.MonkeyPatch, act_dtype: str) -> torch.dtype:
    """The activation dtype, with bf16 GEMMs run in bf16 as on a GPU (this CPU would run them in float32)."""
    monkeypatch.setattr(linear, "CPU_HAS_BF16_GEMM", True)
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[act_dtype]


def model_and_weights(preset: str, dtype: torch.dtype) -> tuple[HybridForCausalLM, set[int]]:
    torch.manual_seed(0)
    model = HybridForCausalLM(get_preset(preset)).to(dtype)
    return model, {p.untyped_storage().data_ptr() for p in model.parameters()}


@pytest.mark.parametrize("act_dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_block_activations_equal_what_autograd_saves(preset, act_dtype, monkeypatch):
    model, weights = model_and_weights(preset, bf16_gemms(monkeypatch, act_dtype))
    cfg = model.cfg
    B, T = 2, 2 * cfg.chunk_size  # two SSD chunks
    x_BTD = torch.randn(B, T, cfg.hidden_size, dtype=model.lm_head.weight.dtype, requires_grad=True)
    for kind in sorted(set(cfg.pattern)):
        block = next(b for b in model.backbone.layers if b.kind == kind)
        measured = saved_bytes(lambda block=block: block(x_BTD), weights)
        planned = B * T * block_activations(kind, cfg, act_dtype=act_dtype, ssd_scan="torch", seq_len=T)
        assert planned == pytest.approx(measured, rel=0.01), kind


@pytest.mark.parametrize("act_dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("mtp", [0, 1])
def test_model_activations_equal_what_autograd_saves(act_dtype, mtp, monkeypatch):
    """The trainer's forward: the head and loss fused, no logits kept (the MTP depth's too)."""
    torch.manual_seed(0)
    model = HybridForCausalLM(get_preset("tiny", num_nextn_predict_layers=mtp)).to(bf16_gemms(monkeypatch, act_dtype))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    cfg = model.cfg
    B, T = 2, 2 * cfg.chunk_size
    ids_BT = torch.randint(0, cfg.vocab_size, (B, T + 1))
    measured = saved_bytes(lambda: model(ids_BT[:, :-1], labels_BT=ids_BT[:, 1:], return_logits=False), weights)
    kinds = cfg.pattern + cfg.mtp_pattern * mtp
    planned = head_weight_gradients(cfg) + B * T * (head_activations(cfg, act_dtype=act_dtype) + sum(
        block_activations(kind, cfg, act_dtype=act_dtype, ssd_scan="torch", seq_len=T) for kind in kinds))
    assert planned == pytest.approx(measured, rel=0.01)


# A training step as Trainer.step takes it (build_model: FSDP2 over a one-process group; fused
# AdamW; the head's loss fused, without logits), in a child process whose resident-set
# high-water mark (VmHWM; getrusage's ru_maxrss would carry over the parent's, through fork and
# exec) is read. glibc returns freed buffers of 64 KiB and more to the OS at once
# (MALLOC_MMAP_THRESHOLD_), so the resident set follows live memory. A throwaway step of `tiny`
# first makes the runtime's one-off allocations (oneDNN, gloo, autograd threads), which the
# baseline then includes: the plan has no allowance on CPU.
STEP_CHILD = """
import gc, sys
import torch
from training.trainer.config import TrainConfig
from training.trainer.distributed import init_distributed
from training.trainer.optim import build_optimizer
from training.trainer.parallel import build_model

def resident(field):  # bytes: VmRSS now, or VmHWM, the most since the process started
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field))

def train(preset, seq_len, batch, checkpointing, steps):
    cfg = TrainConfig(data={"mixture": "unused"}, model={"preset": preset}, parallel={
        "param_dtype": "fp32", "reduce_dtype": "fp32", "activation_checkpointing": checkpointing})
    model_cfg = cfg.model.hybrid_config()
    model, _ = build_model(cfg, model_cfg, dist.device)
    optimizer = build_optimizer(model, cfg.optimizer)
    ids = torch.randint(0, model_cfg.vocab_size, (batch, seq_len + 1), generator=torch.Generator().manual_seed(0))
    for _ in range(steps):
        out = model(ids[:, :-1], labels_BT=ids[:, 1:], return_logits=False)
        out.loss.backward()
        del out
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

torch.set_num_threads(1)
dist = init_distributed()
train("tiny", 64, 1, False, 1)
gc.collect()
baseline = resident("VmRSS:")
train(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", 2)
print(resident("VmHWM:") - baseline)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the resident set from /proc")
@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("preset,seq_len,batch", [("tiny", 512, 4), ("small", 256, 1)])
def test_plan_predicts_the_measured_peak_of_a_cpu_training_step(preset, seq_len, batch, checkpointing):
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", STEP_CHILD, preset, str(seq_len), str(batch), str(int(checkpointing))],
                           capture_output=True, text=True, env=env, timeout=300)
    assert child.returncode == 0, child.stderr
    measured = int(child.stdout.split()[-1])
    setup = PlanSetup(world_size=1, seq_len=seq_len, micro_batch=batch, param_dtype="fp32", reduce_dtype="fp32",
                      ssd_scan="torch", allowance=0)
    planned = plan_memory(get_preset(preset), setup).peak(checkpointing=checkpointing).total
    assert planned == pytest.approx(measured, rel=0.15)


def test_expert_parallelism_splits_what_a_rank_gathers_not_what_it_stores():
    cfg = get_preset("nemotron-3-nano-30b-a3b")
    layout = param_layout(cfg)
    plans = {E: plan_memory(cfg, PlanSetup(world_size=8, seq_len=4096, micro_batch=1, expert_parallel=E))
             for E in (1, 8)}
    loss = {E: plan.moments["loss"].parts for E, plan in plans.items()}
    assert loss[1]["parameters (float32, 1/8)"] == loss[8]["parameters (float32, 1/8)"] == layout.total * 4 // 8
    largest_experts = max(e for _, e in layout.blocks)
    gathered = "gathered weights: root + blocks in flight"
    assert loss[1][gathered] - loss[8][gathered] == 2 * (largest_experts - largest_experts // 8)
    accumulating = plan_memory(cfg, PlanSetup(world_size=8, seq_len=4096, micro_batch=1, expert_parallel=8, grad_accum=4))
    held = accumulating.moments["loss"].parts["unsharded gradients of earlier micro-batches"]
    assert held == (layout.total - layout.experts + layout.experts // 8) * 4  # reduce_dtype float32


def test_cli_prints_the_table_and_a_verdict(capsys):
    cfg, setup = get_preset("nemotron-3-nano-30b-a3b"), PlanSetup(world_size=8, seq_len=8192, micro_batch=1,
                                                                 expert_parallel=8)
    plan = plan_memory(cfg, setup)
    plain, checkpointed = (plan.peak(checkpointing=ac).total for ac in (False, True))
    assert checkpointed < plain
    args = ["model", "plan", "nemotron-3-nano-30b-a3b", "--gpus", "8", "--expert-parallel", "8", "--gpu-memory"]
    for mib, verdict in [(math.ceil(plain / 2**20), "fits without activation checkpointing"),
                         (math.ceil(checkpointed / 2**20), "fits only with activation checkpointing"),
                         (checkpointed // 2**20 - 1, "does not fit")]:
        assert main([*args, f"{mib}MiB"]) == 0
        out = capsys.readouterr().out
        assert "MoE activations" in out and "one chunk of float32 logits in the fused loss" in out
        assert out.splitlines()[-1].startswith(f"verdict: {verdict}")
    assert main([*args, "80 gigabytes"]) == 2
    assert "--gpu-memory '80 gigabytes'" in capsys.readouterr().err


def test_memory_sizes():
    assert parse_memory_size("80GiB") == 80 * GiB
    assert parse_memory_size("94GB") == 94 * 10**9
    assert parse_memory_size("141.5 GiB") == int(141.5 * GiB)


def test_cli_plans_a_train_yaml_with_its_batch_and_dtypes(tmp_path, capsys):
    (tmp_path / "mixture.yaml").write_text("seq_len: 512\ncomponents:\n  web: {paths: [shards/*.parquet], weight: 1.0}\n")
    (tmp_path / "train.yaml").write_text(
        f"model: {{preset: tiny}}\ndata: {{mixture: {tmp_path / 'mixture.yaml'}}}\n"
        "batch: {global_batch_tokens: 8192, micro_batch_size: 4}\nparallel: {param_dtype: fp32}\n")
    assert main(["model", "plan", str(tmp_path / "train.yaml"), "--gpus", "2", "--gpu-memory", "16GiB"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{tmp_path / 'train.yaml'} (tiny): 1.75M parameters on 2 GPUs of 16.00 GiB")
    # 8192 tokens = 512 x 4 x grad_accum 2 x 2 GPUs
    assert out[1].startswith("micro-batch 4 x 512 tokens, grad_accum 2, bf16 GEMMs, FSDP2 params fp32 / reduce fp32")
    assert any(line.lstrip().startswith("unsharded gradients of earlier micro-batches") for line in out)
