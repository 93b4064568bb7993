"""Forward+backward tokens/s of the ccforge hybrid model vs transformers' NemotronH.

Same config, same weights (the ccforge model is exported with `save_hf` and loaded by
`AutoModelForCausalLM`), same loss code; steps of the two models are interleaved in one
process so machine noise hits both alike; the median step time is reported. On a machine shared
with other work, `--threads 1 --clock cpu` times each step by this process's CPU time, which other
processes' time slices do not inflate (wall time would).

    .venv/bin/python benchmarks/model_bench.py --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from training.model import HybridForCausalLM, get_preset, save_hf
from training.model.flops import training_flops_per_token

DEFAULT_SHAPES = {"tiny": (4, 256), "small": (2, 512)}  # (batch, seq_len) per preset


def _step(logits_fn: Callable[[torch.Tensor], torch.Tensor], model: torch.nn.Module, ids_BT: torch.Tensor,
          clock: Callable[[], float]) -> float:
    start = clock()
    logits_BTV = logits_fn(ids_BT[:, :-1])
    loss = F.cross_entropy(logits_BTV.flatten(0, 1).float(), ids_BT[:, 1:].flatten())
    loss.backward()
    elapsed = clock() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def bench_preset(preset: str, dtype: torch.dtype, *, batch: int, seq_len: int, steps: int, warmup: int,
                 clock: Callable[[], float] = time.perf_counter) -> dict:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    ours = HybridForCausalLM(get_preset(preset))
    with tempfile.TemporaryDirectory() as tmp:
        save_hf(ours, tmp)
        theirs = AutoModelForCausalLM.from_pretrained(tmp)
    ours, theirs = ours.to(dtype).train(), theirs.to(dtype).train()
    ids_BT = torch.randint(0, ours.cfg.vocab_size, (batch, seq_len + 1))
    runners = {
        "ccforge": (lambda x: ours(x).logits, ours),
        "transformers": (lambda x: theirs(input_ids=x, use_cache=False).logits, theirs),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(warmup + steps):
        for name, (fn, model) in runners.items():
            t = _step(fn, model, ids_BT, clock)
            if i >= warmup:
                times[name].append(t)
    tokens = batch * seq_len
    tps = {name: tokens / statistics.median(ts) for name, ts in times.items()}
    flops = training_flops_per_token(ours.cfg, seq_len)
    return dict(preset=preset, dtype=str(dtype).removeprefix("torch."), batch=batch, seq_len=seq_len,
                ours=tps["ccforge"], theirs=tps["transformers"], flops=flops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, help="override the per-preset batch size")
    parser.add_argument("--seq-len", type=int, help="override the per-preset sequence length")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--peak-tflops", type=float, help="machine peak for the dtype, to print MFU")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="step time: wall clock, or this process's CPU time (meaningful with --threads 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    print(f"threads={args.threads} steps={args.steps} (median step, {args.clock} clock) torch={torch.__version__}\n")
    print("| preset | dtype | batch x seq | ccforge tok/s | transformers tok/s | speed-up | train GFLOP/token | ccforge GFLOP/s |"
          + (" MFU |" if args.peak_tflops else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if args.peak_tflops else ""))
    for preset in args.presets:
        batch, seq_len = DEFAULT_SHAPES.get(preset, (2, 512))
        for dtype_name in args.dtypes:
            r = bench_preset(preset, getattr(torch, dtype_name), batch=args.batch or batch,
                             seq_len=args.seq_len or seq_len, steps=args.steps, warmup=args.warmup, clock=clock)
            achieved = r["ours"] * r["flops"]
            row = (f"| {r['preset']} | {r['dtype']} | {r['batch']} x {r['seq_len']} | {r['ours']:,.0f} | "
                   f"{r['theirs']:,.0f} | {r['ours'] / r['theirs']:.2f}x | {r['flops'] / 1e9:.4f} | {achieved / 1e9:.1f} |")
            if args.peak_tflops:
                row += f" {achieved / (args.peak_tflops * 1e12):.1%} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
