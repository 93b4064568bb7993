"""Training metrics: `OUT/metrics.jsonl` (one JSON object per step), TensorBoard, console.

A step that evaluated carries `eval/SET/loss` and `eval/SET/bpb` (`training.trainer.evaluation`)
in its record, so TensorBoard draws them under `eval/`, and the console shows them on a line of their own.

Only rank 0 writes. MFU is achieved model FLOPs per second per device (training FLOPs per
token from `training.model.flops`, which counts active experts only) over the device's
peak: `logging.peak_tflops` if set, a table of dense BF16 peaks for known GPUs, or, on a CPU,
a float32 matmul measured once at start-up.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# dense BF16 tensor-core peaks (TFLOP/s) from the vendors' data sheets
_GPU_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "B200": 2250.0, "GB200": 2500.0, "A100": 312.0, "L40S": 362.0}


def measured_cpu_tflops(size: int = 1024, repeats: int = 8) -> float:
    """float32 GEMM throughput of this process's CPU threads (the best of `repeats`)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def peak_tflops(device: torch.device, configured: float | None) -> float:
    if configured is not None:
        return configured
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in _GPU_PEAK_TFLOPS.items():
            if key in name:
                return value
        log.warning("unknown GPU %r: MFU uses A100's peak; set logging.peak_tflops", name)
        return _GPU_PEAK_TFLOPS["A100"]
    return measured_cpu_tflops()


def _records_up_to(path: Path, step: int) -> list[str]:
    """Lines of `path` for steps <= `step`. A run that crashed after its last checkpoint logged
    steps it will train again; a half-written last line is dropped with them."""
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line if line.endswith("\n") else line + "\n")
        except (json.JSONDecodeError, KeyError):
            continue
    return kept


class MetricsLogger:
    """Appends step records to metrics.jsonl and TensorBoard, and drives a progress bar."""

    def __init__(self, out: Path, *, enabled: bool, tensorboard: bool, progress_bar: bool, total_steps: int,
                 start_step: int) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        self._bar = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        path = out / "metrics.jsonl"
        kept = _records_up_to(path, start_step) if start_step else []
        self._jsonl = path.open("w")  # a resumed run keeps the steps up to its checkpoint, once each
        self._jsonl.writelines(kept)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "tensorboard"))
        if progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self._tb.add_scalar(key, value, record["step"])
        if self._bar is not None:
            self._bar.update(record["step"] - self._bar.n)
            self._bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                  tok_s=f"{record['tokens_per_s']:,.0f}", refresh=False)
        else:
            log.info("step %d loss %.4f lr %.2e grad_norm %.3f tokens/s %.0f", record["step"], record["loss"],
                     record["lr"], record["grad_norm"], record["tokens_per_s"])
        evaluated = {key.removeprefix("eval/"): value for key, value in record.items() if key.startswith("eval/")}
        if evaluated:
            log.info("step %d eval %s", record["step"], " ".join(f"{key} {value:.4f}" for key, value in evaluated.items()))

    def close(self) -> None:
        for handle in (self._jsonl, self._tb, self._bar):
            if handle is not None:
                handle.close()
