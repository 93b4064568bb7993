"""Build the model for training: meta-device construction, precision recipe, expert
parallelism, activation checkpointing, torch.compile, FSDP2, then sharded materialisation.

Order matters (torchtitan's): the precision recipe swaps linear classes before anything
wraps them; expert parallelism splits the routed experts and FSDP-shards them on their own
mesh (`expert_parallel`); activation checkpointing and compile wrap each block; `fully_shard`
goes per block and then on the root (so each block's parameters are gathered just in time); only
then are parameters allocated, each rank holding its own shard, and initialised from the
seed (`training.model.init`), which gives the same starting point for any world size.
A `model.init_from` HF checkpoint is loaded into the sharded model instead.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from training.model import HybridForCausalLM, load_hf
from training.model.config import HybridConfig
from training.precision import apply_precision
from training.trainer.config import TrainConfig
from training.trainer.expert_parallel import apply_expert_parallel, expert_mesh

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _wrap_blocks(blocks: nn.ModuleList, cfg: TrainConfig) -> None:
    for index, block in enumerate(blocks):
        if cfg.parallel.activation_checkpointing:
            # Recomputed MoE forwards count expert loads twice; the bias update uses only
            # their signs around the mean, which a common factor leaves unchanged.
            block = checkpoint_wrapper(block, preserve_rng_state=False)
        if cfg.parallel.compile:
            block = torch.compile(block)
        blocks[index] = block


def _shard(model: HybridForCausalLM, cfg: TrainConfig, device: torch.device) -> None:
    policy = MixedPrecisionPolicy(param_dtype=DTYPES[cfg.parallel.param_dtype],
                                  reduce_dtype=DTYPES[cfg.parallel.reduce_dtype])
    if cfg.parallel.expert_parallel > 1:
        world_size = dist.get_world_size()
        cfg.parallel.check_world_size(world_size)
        apply_expert_parallel(model, expert_mesh(device, world_size, cfg.parallel.expert_parallel), policy)
    stacks = [model.backbone.layers, *(depth.layers for depth in model.mtp)]
    for blocks in stacks:
        _wrap_blocks(blocks, cfg)
        for block in blocks:
            fully_shard(block, mp_policy=policy)
    # the root keeps embeddings, final norm, head and MTP projections; it is not resharded
    # after forward because its parameters are the first ones backward needs
    fully_shard(model, mp_policy=policy, reshard_after_forward=False)


def build_model(cfg: TrainConfig, model_cfg: HybridConfig, device: torch.device) -> tuple[HybridForCausalLM, dict[str, str]]:
    """The sharded, initialised training model and the precision recipe's layer formats."""
    with torch.device("meta"):
        model = HybridForCausalLM(model_cfg)
    formats = apply_precision(model, cfg.precision)
    _shard(model, cfg, device)
    model.to_empty(device=device)
    if cfg.model.init_from:
        log.info("initialising from the NemotronH checkpoint %s", cfg.model.init_from)
        state = load_hf(cfg.model.init_from, dtype=torch.float32).state_dict()
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        model.init_weights(cfg.seed)
    model.train()
    return model, formats
