"""`ccforge ablate CONFIG`: proxy models on mixture variants, several seeds each, compared on the same sets."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from flows.errors import UserError


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    ablate = commands.add_parser("ablate", help="train one proxy model per mixture variant and seed; a table and "
                                 "chart of their evaluation metrics")
    ablate.add_argument("config", help="ablation YAML (see examples/ablation.yaml)")
    ablate.add_argument("--out", help="output directory (overrides out)")
    ablate.add_argument("--seeds", help="comma-separated seeds (overrides seeds), e.g. 1,2,3")
    ablate.add_argument("--nproc", type=int, help="torchrun processes per run (overrides nproc)")
    return {"ablate": cmd_ablate}


def cmd_ablate(args: argparse.Namespace) -> None:
    from flows.ablate import ablate
    from flows.config.ablate import load_ablation_config
    from flows.server import command_api

    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        raise UserError(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 1,2,3") from None
    config = load_ablation_config(args.config, out=args.out, seeds=seeds, nproc=args.nproc)
    with command_api():
        result = ablate(config)
    print(f"ablation: {result.out / 'ablation.json'}  report: {result.report}")
