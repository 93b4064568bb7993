"""A training step reads nothing back to the host in any precision recipe: one `Trainer.step`
(forward, backward, clipping, AdamW, router-bias update) of the tiny preset is profiled, and
neither `aten::_local_scalar_dense` (what `.item()`, `int(t)`, `float(t)` and `bool(t)`
dispatch to) nor `Tensor.tolist` (which reads CPU tensors without dispatching any op) may
occur in it. Only `train_step`'s log record, after the step, copies values to the host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile

from training.trainer.config import load_train_config
from training.trainer.distributed import close_distributed
from training.trainer.loop import Trainer

# CPU kernels that read their own scalar arguments on the host, where those live: the grouped
# GEMM's offsets, _scaled_mm's scales, fused AdamW's step count and skip flag. Their CUDA
# kernels read them on the device (torch._grouped_mm's on sm90+), so they are no host sync.
CPU_KERNELS_READING_SCALARS = {"aten::_grouped_mm", "aten::_scaled_mm", "aten::_fused_adamw_"}


def _op_chain(event: FunctionEvent) -> list[str]:
    names = []
    while event is not None:
        names.append(event.name)
        event = event.cpu_parent
    return names


def _host_reads(events: list[FunctionEvent]) -> list[str]:
    """The op chain of every scalar read not made inside one of those CPU kernels."""
    chains = [_op_chain(e) for e in events if e.name == "aten::_local_scalar_dense"]
    return [" <- ".join(chain[:4]) for chain in chains if not CPU_KERNELS_READING_SCALARS & set(chain)]


@pytest.fixture
def trainer(train_config, request: pytest.FixtureRequest) -> Iterator[Trainer]:
    # document boundaries off: packed-document attention takes a CPU-only path here (CUDA runs
    # FlexAttention), which plans its tiles on the host
    path = train_config(data={"document_boundaries": False})
    trainer = Trainer(load_train_config(path, {"precision.recipe": request.param}))
    try:
        yield trainer
    finally:
        close_distributed()


@pytest.mark.parametrize("trainer", ["bf16", "fp8", "nvfp4"], indirect=True)
def test_training_step_reads_nothing_back(trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = iter(trainer.loader)
    micro_batches = [next(batches) for _ in range(trainer.grad_accum)]
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    tolist_calls = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: tolist_calls.append(tuple(t.shape)) or tolist(t))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = trainer.step(micro_batches)
    monkeypatch.undo()
    events = prof.events()
    assert _host_reads(events) == [] and tolist_calls == []
    # the step did its work: a finite loss, every expert projection through a grouped GEMM
    # (quantised ones in a GroupedQuantizedMatmul), and an update of the parameters
    assert out.finite.item() and 6 < out.losses["lm_loss"].item() < 9  # ln(2048) ~ 7.6 at the start
    names = {e.name for e in events}
    assert "aten::_grouped_mm" in names
    assert ("GroupedQuantizedMatmul" in names) == (trainer.cfg.precision.recipe != "bf16")
    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[name])]
    assert len(changed) == len(before)
