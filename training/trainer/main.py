"""Entry point of one training process: `python -m training.trainer.main CONFIG [--resume]`.

`ccforge train` runs it in-process for one process and under torchrun for more; on a
cluster, call torchrun on it directly (README, "Scaling out").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from training.trainer.config import TrainConfigError, load_train_config
from training.trainer.launch import stop_with_parent
from training.trainer.loop import NonFiniteLossError, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="training.trainer.main")
    parser.add_argument("config", help="train YAML (or the JSON `ccforge train` resolved)")
    parser.add_argument("--set", default="{}", help="JSON object of dotted overrides, e.g. '{\"max_steps\": 10}'")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this many steps in total")
    args = parser.parse_args(argv)
    if "TORCHELASTIC_RUN_ID" in os.environ:  # started by torchrun: end with it
        stop_with_parent(signal.SIGKILL)
    rank = int(os.environ.get("RANK", 0))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_train_config(args.config, json.loads(args.set))
        result = train(cfg, resume=args.resume, max_steps=args.stop_after)
    except (TrainConfigError, NonFiniteLossError, ValueError, FileNotFoundError) as err:
        print(f"ccforge train: error: {err}", file=sys.stderr)
        return 2
    if rank == 0:
        print(json.dumps({"out": str(result.out), "steps": result.steps, "tokens": result.tokens,
                          "final_loss": result.final_loss, "final_eval": result.final_eval,
                          "skipped_steps": result.skipped_steps,
                          "checkpoint": str(result.checkpoint) if result.checkpoint else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
