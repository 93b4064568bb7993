"""Expert parallelism on CPU: tokens/s and all-to-all bytes per step of the same model and batches
at EP=1 and EP=2, each on 2 processes through torchrun (FSDP2 and all-to-all over gloo).

The all-to-all bytes are the token rows a step sends to other ranks, summed over the ranks:
dispatch and combine in the forward pass, and as many again in the backward (the reverse
all-to-alls); the per-expert counts exchanged before each dispatch (E int64) are left out.
EP=1 sends none. Throughput is the median over the steps after the first few.

    .venv/bin/python benchmarks/ep_bench.py [--workdir /tmp/ccforge-train-bench] [--steps 12] [--preset tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from train_bench import WARMUP_STEPS, write_run_config

NPROC = 2


def worker(config: Path, report: Path) -> None:
    """One rank of the torchrun job: train, then rank 0 writes the all-to-all bytes per step."""
    import torch

    from training.trainer.config import load_train_config
    from training.trainer.distributed import all_reduce_sum, close_distributed
    from training.trainer.expert_parallel import all_to_all_bytes
    from training.trainer.loop import Trainer

    trainer = Trainer(load_train_config(config))
    try:
        result = trainer.run()
        forward_bytes = all_reduce_sum(torch.tensor(all_to_all_bytes(trainer.model), dtype=torch.float64)).item()
        if trainer.dist.is_main:
            report.write_text(json.dumps({"all_to_all_bytes_per_step": 2 * forward_bytes / result.steps}))
    finally:
        close_distributed()


def run(workdir: Path, expert_parallel: int, args: argparse.Namespace) -> dict:
    name = f"ep-bench-{args.preset}-ep{expert_parallel}"
    shutil.rmtree(workdir / "runs" / name, ignore_errors=True)
    config = write_run_config(workdir, name, preset=args.preset, seq_len=args.seq_len, micro_batch=args.micro_batch,
                              global_tokens=args.seq_len * args.micro_batch * NPROC, steps=args.steps,
                              parallel={"expert_parallel": expert_parallel})
    report = workdir / "runs" / name / "all_to_all.json"
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // NPROC)))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={NPROC}",
                    __file__, "--worker", str(config), str(report)], check=True, env=env, stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in (workdir / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    steady = records[WARMUP_STEPS:] or records
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
            "step_s": statistics.median(r["step_seconds"] for r in steady), "final_loss": records[-1]["loss"],
            **json.loads(report.read_text())}


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ccforge-train-bench"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--preset", default="tiny", help="a preset with MoE layers (tiny, small)")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=4)
    args = parser.parse_args()
    rows = {ep: run(args.workdir, ep, args) for ep in (1, 2)}
    print(f"\n{args.preset}, {NPROC} processes (gloo), {args.micro_batch} x {args.seq_len} tokens per rank per step")
    print("| EP | tokens/s | s/step | all-to-all MB/step | final loss |")
    print("|---:|---:|---:|---:|---:|")
    for ep, row in rows.items():
        print(f"| {ep} | {row['tokens_per_s']:,.0f} | {row['step_s']:.2f} | "
              f"{row['all_to_all_bytes_per_step'] / 1e6:.2f} | {row['final_loss']:.4f} |")


if __name__ == "__main__":
    main()
