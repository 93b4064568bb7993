"""Sharded training checkpoints with torch.distributed.checkpoint (DCP), crash-safe.

A checkpoint is a directory `step-00000100/` under the run's `checkpoints/`, holding DCP's
shard files and `.metadata`, plus `meta.json` (step, model config, train config, the
mixture phase the data loader is in). Every rank writes its own shards into
`step-00000100.tmp/`; once all ranks are done, rank 0 renames it. A crash while saving
leaves only a `.tmp` directory, which is never picked up, so the previous checkpoint stays
the newest loadable one. Old checkpoints beyond `keep_last` are removed after a successful
save.

State: model and optimizer (sharded DTensors at their global shapes, so DCP reshards them
on load for another world size or another `parallel.expert_parallel`), the LR scheduler,
the step and skip counters, and per rank the RNG states and the data loader's state (stored
under the rank's own key, since they differ per rank).
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

_STEP_DIR = re.compile(r"^step-(\d{8})$")


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Finished checkpoints under `root`, oldest first (`.tmp` leftovers are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / "meta.json").is_file())


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def finished_checkpoint(root: str | Path, train_config: dict[str, Any]) -> Path | None:
    """The newest checkpoint under `root` when it ends the run `train_config` (a TrainConfig's JSON
    dump) describes: saved at its `max_steps` under that very config. Such a run has nothing left to train, so no trainer needs
    to start; any other state (an earlier step, a changed config) goes to the trainer."""
    newest = latest_checkpoint(root)
    if newest is None:
        return None
    meta = json.loads((newest / "meta.json").read_text())
    same_config = meta.get("train_config") == json.loads(json.dumps(train_config))
    return newest if same_config and meta["step"] >= train_config["max_steps"] else None


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _to_bytes(obj: Any) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def _from_bytes(buffer: io.BytesIO) -> Any:
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def save_checkpoint(root: Path, *, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, trainer_state: dict[str, Any], loader_state: dict[str, Any],
                    meta: dict[str, Any], keep_last: int) -> Path:
    """Collective: every rank calls it. `meta` (model config, train config, tokenizer) goes to
    meta.json with the step and world size. Returns the finished checkpoint directory."""
    rank = dist.get_rank()
    final = checkpoint_dir(root, step)
    tmp = final.with_name(final.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    state = {
        "model": get_model_state_dict(model),
        "optim": get_optimizer_state_dict(model, optimizer),
        "scheduler": _to_bytes(scheduler.state_dict()),
        "trainer": _to_bytes(trainer_state),
        f"rank{rank}": _to_bytes({"rng": _rng_state(), "loader": loader_state}),
    }
    dcp.save(state, checkpoint_id=str(tmp))
    if rank == 0:
        meta = {"step": step, "world_size": dist.get_world_size()} | meta
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, holdout: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore model, optimizer, scheduler and this rank's RNG; returns (trainer state, this
    rank's loader state). The data position is per rank, so the world size must not change;
    the expert-parallel size may. It counts the documents the training side selects, so
    `eval.holdout` (`holdout`) must not change either."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    meta = read_checkpoint_meta(path)
    if meta["world_size"] != world_size:
        raise ValueError(f"{path}: saved by {meta['world_size']} ranks, resumed with {world_size}; the data "
                         "loader's position is per rank, so resume with the same number of processes")
    saved_holdout = (meta.get("train_config") or {}).get("eval", {}).get("holdout")
    if saved_holdout != holdout:
        raise ValueError(f"{path}: saved with eval.holdout {saved_holdout}, resumed with {holdout}; the held-out "
                         f"documents would change mid-run: resume with eval.holdout {saved_holdout}, or train "
                         "into another out")
    state: dict[str, Any] = {
        "model": get_model_state_dict(model),
        "optim": get_optimizer_state_dict(model, optimizer),
        "scheduler": io.BytesIO(),
        "trainer": io.BytesIO(),
        f"rank{rank}": io.BytesIO(),
    }
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])
    scheduler.load_state_dict(_from_bytes(state["scheduler"]))
    per_rank = _from_bytes(state[f"rank{rank}"])
    _set_rng_state(per_rank["rng"])
    return _from_bytes(state["trainer"]), per_rank["loader"]


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    meta_path = Path(path) / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: not a ccforge checkpoint (no meta.json)")
    return json.loads(meta_path.read_text())


def load_model_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Full (unsharded) model weights from a checkpoint, in one process without a process
    group (for export): DCP reshards the saved shards into the model's plain tensors."""
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=str(path), no_dist=True)
    model.load_state_dict(state["model"])
