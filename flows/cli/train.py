"""`ccforge train` and `ccforge export-hf`: pretraining on a mixture, and HF export."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from flows.errors import UserError


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    train = commands.add_parser("train", help="pretrain on a token mixture (FSDP2; torchrun for more processes)")
    train.add_argument("config", help="train YAML (see examples/train.yaml)")
    train.add_argument("--nproc", type=int, default=1, help="processes per node (more than 1 goes through torchrun)")
    train.add_argument("--nnodes", default="1", help="nodes, or an elastic range MIN:MAX")
    train.add_argument("--node-rank", type=int, help="this node's rank (static multi-node launches)")
    train.add_argument("--rdzv-endpoint", help="host:port of the c10d rendezvous (multi-node)")
    train.add_argument("--max-steps", type=int, help="override max_steps (the schedule's length)")
    train.add_argument("--stop-after", type=int, help="stop after this many steps in total, keeping the schedule")
    train.add_argument("--precision", choices=["bf16", "fp8", "nvfp4"], help="override precision.recipe")
    train.add_argument("--out", help="override out (the run directory)")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")

    export = commands.add_parser("export-hf", help="a training checkpoint to a Hugging Face NemotronH directory")
    export.add_argument("checkpoint", help="a checkpoint directory, or a run directory (its newest checkpoint)")
    export.add_argument("out_dir", nargs="?", help="directory for config.json, model.safetensors, tokenizer")
    export.add_argument("--output", help="the same as OUT_DIR")
    export.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    export.add_argument("--tokenizer", help="tokenizer directory to copy (default: the one the shards were made with)")
    return {"train": cmd_train, "export-hf": cmd_export_hf}


def cmd_train(args: argparse.Namespace) -> None:
    from training.trainer.config import TrainConfigError, load_train_config
    from training.trainer.launch import LaunchSpec, run_torchrun, torchrun_command

    overrides = {"max_steps": args.max_steps, "precision.recipe": args.precision, "out": args.out}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        cfg = load_train_config(args.config, overrides)  # fail here, before any process starts
    except TrainConfigError as err:
        raise UserError(str(err)) from err
    spec = LaunchSpec(nproc=args.nproc, nnodes=args.nnodes, node_rank=args.node_rank, rdzv_endpoint=args.rdzv_endpoint)
    if spec.single_process:
        from training.trainer.loop import train

        result = train(cfg, resume=args.resume, max_steps=args.stop_after)
        print(f"trained {result.steps} steps, {result.tokens:,} tokens, final loss {result.final_loss}; "
              f"run directory {result.out}, checkpoint {result.checkpoint}")
        if result.final_eval:
            print("final eval: " + ", ".join(f"{key} {value:.4f}" for key, value in result.final_eval.items()))
        return
    code, errors = run_torchrun(torchrun_command(spec, args.config, overrides=overrides, resume=args.resume,
                                                 stop_after=args.stop_after), lambda line: print(line, flush=True))
    if code != 0:
        raise UserError(f"torchrun exited with {code}: {errors[-1] if errors else 'no output'}")


def cmd_export_hf(args: argparse.Namespace) -> None:
    import torch

    from training.trainer.export import export_hf

    output = args.output or args.out_dir
    if not output:
        raise UserError("give the output directory: ccforge export-hf CHECKPOINT OUT_DIR")
    source = export_hf(args.checkpoint, output, dtype={"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype],
                       tokenizer=args.tokenizer)
    print(f"exported {source} to {output} (load with transformers.AutoModelForCausalLM.from_pretrained)")
