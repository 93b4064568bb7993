"""Peak memory and time of one forward+backward of the tiny preset on long packed rows, per
attention path: the dense (B, 1, T, T) document mask passed to SDPA (the path before issue 17),
the blockwise document-causal path (what CPUs run now) and, for reference, SDPA's causal kernel
with the documents ignored (the path of rows without doc_ids).

Each (path, T) runs in a fresh subprocess under an address-space limit, so its peak RSS
(getrusage's ru_maxrss) is its own and a path that needs more than the limit fails alone and is
reported as "does not fit". Rows are batch 1 with a few documents of seeded random lengths; one
warm-up step at T = 1,024 precedes the timed step.

    nice -n 10 .venv/bin/python benchmarks/attention_bench.py [--lengths 4096 16384 65536] [--limit-gib 24]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import training.model.attention as attention
from training.model import HybridForCausalLM, get_preset
from training.model.attention import Attention

PATHS = ("dense", "blockwise", "causal")
WARMUP_T = 1024
OUT_OF_MEMORY = ("can't allocate memory", "MemoryError", "std::bad_alloc", "out of memory")


def dense_attention(q_BHTP: torch.Tensor, k_BKTP: torch.Tensor, v_BKTP: torch.Tensor,
                    doc_ids_BT: torch.Tensor | None = None) -> torch.Tensor:
    """The path before issue 17: a dense document-causal boolean mask passed to SDPA."""
    T = doc_ids_BT.shape[1]
    causal_TS = torch.ones(T, T, dtype=torch.bool).tril()
    mask_B1TS = (causal_TS & (doc_ids_BT[:, :, None] == doc_ids_BT[:, None, :]))[:, None]
    return F.scaled_dot_product_attention(q_BHTP, k_BKTP, v_BKTP, attn_mask=mask_B1TS, enable_gqa=True)


def packed_row(T: int, docs: int, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, T + 1) token ids and (1, T) doc ids of `docs` documents of seeded random lengths."""
    g = torch.Generator().manual_seed(T)
    cuts = torch.randperm(T - 1, generator=g)[: docs - 1].sort().values + 1
    lengths = torch.diff(torch.cat([torch.tensor([0]), cuts, torch.tensor([T])]))
    doc_ids_BT = torch.repeat_interleave(torch.arange(docs), lengths)[None]
    return torch.randint(0, vocab_size, (1, T + 1), generator=g), doc_ids_BT


def model_step(T: int, docs: int, path: str) -> Callable[[], None]:
    """Forward+backward of the tiny model on one packed row."""
    model = HybridForCausalLM(get_preset("tiny")).train()
    ids_BT, doc_ids_BT = packed_row(T, docs, model.cfg.vocab_size)

    def step() -> None:
        out = model(ids_BT[:, :-1], doc_ids_BT=None if path == "causal" else doc_ids_BT, labels_BT=ids_BT[:, 1:])
        out.loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def attention_step(T: int, docs: int, path: str) -> Callable[[], None]:
    """Forward+backward of the tiny model's attention layer alone (projections included)."""
    layer = Attention(get_preset("tiny"))
    x_BTD = torch.randn(1, T, layer.cfg.hidden_size, requires_grad=True)
    doc_ids_BT = None if path == "causal" else packed_row(T, docs, 1)[1]

    def step() -> None:
        layer(x_BTD, doc_ids_BT).square().mean().backward()
        layer.zero_grad(set_to_none=True)
        x_BTD.grad = None

    return step


WORKLOADS = {"model": model_step, "attention": attention_step}


def run_child(workload: str, path: str, T: int, args: argparse.Namespace) -> None:
    """One configuration in this process; prints the fastest step's seconds and peak RSS as JSON."""
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    if path == "dense":
        attention.causal_attention = dense_attention  # Attention.forward looks it up at call time
    torch.manual_seed(0)
    WORKLOADS[workload](WARMUP_T, args.docs, path)()
    step = WORKLOADS[workload](T, args.docs, path)
    seconds = []
    for _ in range(args.steps):
        start = clock()
        step()
        seconds.append(clock() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": min(seconds), "peak_gib": peak_kib / 2**20}))


def available_gib() -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable")) / 2**20


def measure(workload: str, path: str, T: int, args: argparse.Namespace) -> tuple[dict | None, float]:
    """The child's figures, or None if it ran out of memory; and its limit in GiB, at most what the
    machine has free less a margin, so that a path that does not fit never pushes others out."""
    limit_gib = min(args.limit_gib, available_gib() - 2.0)
    limit = int(limit_gib * 2**30)
    command = [sys.executable, __file__, "--child", workload, path, str(T), "--docs", str(args.docs),
               "--steps", str(args.steps), "--threads", str(args.threads), "--clock", args.clock]
    child = subprocess.run(
        command, capture_output=True, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    if child.returncode == 0:
        return json.loads(child.stdout.strip().splitlines()[-1]), limit_gib
    if any(sign in child.stderr for sign in OUT_OF_MEMORY):
        return None, limit_gib
    raise RuntimeError(f"{workload} {path} at T={T} failed:\n{child.stderr}")


def machine_line(threads: int) -> str:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.machine())
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 2**20
    return (f"{cpu}, {threads} of {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, torch {torch.__version__}, "
            f"attention block {attention.BLOCK_SIZE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--docs", type=int, default=4, help="documents per row")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per configuration (the fastest is shown)")
    parser.add_argument("--limit-gib", type=float, default=24.0, help="address-space limit of each configuration")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="step time: wall clock, or the process's CPU time (meaningful with --threads 1)")
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "PATH", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child[0], args.child[1], int(args.child[2]), args)
        return

    print(datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    print(machine_line(args.threads))
    print(f"forward+backward of 1 x T tokens in {args.docs} documents, fastest of {args.steps} steps ({args.clock} "
          f"clock); each configuration in its own process, its address space limited to {args.limit_gib:g} GiB "
          "or the free memory less 2 GiB\n")
    print("| T | path | tiny model s | model peak RSS GiB | attention layer s | layer peak RSS GiB |")
    print("|---:|---|---:|---:|---:|---:|")
    for T in args.lengths:
        for path in args.paths:
            cells = []
            for workload in WORKLOADS:
                r, limit_gib = measure(workload, path, T, args)
                cells += [f"does not fit in {limit_gib:.1f} GiB", ""] if r is None else [
                    f"{r['seconds']:.2f}", f"{r['peak_gib']:.2f}"]
            print(f"| {T:,} | {path} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
