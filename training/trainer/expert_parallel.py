"""Expert parallelism: every MoE layer's routed experts split over `parallel.expert_parallel`
ranks, each token sent to its experts' ranks by all-to-all and its outputs brought back the
same way (torchtitan's expert_parallel.py and its MoE parallelize are the model).

Meshes: the W ranks as a 2-D mesh (dp_mod_ep, ep) of W/EP x EP; an EP group is EP neighbouring
ranks (one node's NVLink carries the all-to-all). Each expert weight (E, F, Z) becomes a DTensor
sharded over `ep` on the experts (Shard(0): a rank computes E/EP of them), and FSDP2 shards it
further on dim 1 over `dp_mod_ep`, the W/EP ranks holding the same experts; every other
parameter is FSDP2-sharded over all W ranks as without EP. Checkpoints hold the DTensors at
their global shapes, so DCP reshards them for any EP size.

A forward of `Experts` (hooks from `distribute_module`; the model code stays single-device):
assignments are sorted by expert, hence by owning rank; per-expert counts are exchanged
(all-to-all); the split sizes are read on the host, since all-to-all takes them as Python
ints (the one host sync per MoE layer at EP > 1; torchtitan does the same); the token rows
go to their owners (an autograd all-to-all: its backward is the reverse one); the module's
own forward runs on them, each row one assignment of gate weight 1 to a local expert; the
outputs come back and are combined with the gate weights in float32 exactly as at EP = 1.

Gradients: each rank's loss is scaled by W and FSDP2 divides by W (loop.py). An expert's
gradient already sums the tokens of its whole EP group (the reverse all-to-all brought them),
and FSDP2 reduces it over the W/EP ranks of `dp_mod_ep`; dividing that sum by W rather than
W/EP gives the gradient of EP = 1.

Shape legend as in training/model/moe.py, plus N ranks of the EP group, L experts per rank,
R rows received (assignments routed to this rank's experts).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single_autograd
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Shard, distribute_module, distribute_tensor

from training.model.balancing import moe_layers
from training.model.linear import gemm_dtype
from training.model.moe import Experts, combine, group_by_expert


def expert_mesh(device: torch.device, world_size: int, expert_parallel: int) -> DeviceMesh:
    """The ranks as (dp_mod_ep, ep); rank r is in EP group r // expert_parallel."""
    mesh = init_device_mesh(device.type, (world_size // expert_parallel, expert_parallel),
                            mesh_dim_names=("dp_mod_ep", "ep"))
    # the two dims as one: DTensor reduces the experts' gradient norms in one all-reduce
    mesh["dp_mod_ep", "ep"]._flatten("world")
    return mesh


@dataclass
class _Dispatched:
    """One forward's routing, kept from the dispatch for the combine."""

    token_A: torch.Tensor  # int64 (A,): each expert-sorted assignment's token
    weights_A: torch.Tensor  # float32 (A,): its gate weight
    num_tokens: int
    dtype: torch.dtype  # of the tokens (and of the layer's output)
    send_splits: list[int]  # assignments sent to each rank of the group
    recv_splits: list[int]  # rows received from each


class ExpertDispatch:
    """The all-to-all dispatch and combine around one `Experts` module, and the partition of its
    weights over the EP mesh (the three functions of `distribute_module`)."""

    def __init__(self, ep_mesh: DeviceMesh) -> None:
        self.group = ep_mesh.get_group()
        self.rank = ep_mesh.get_local_rank()
        self.sent_bytes = 0  # token rows sent to other ranks by forward all-to-alls (the backward sends as many)
        self._pending: _Dispatched | None = None

    @staticmethod
    def partition(name: str, module: nn.Module, mesh: DeviceMesh) -> None:
        if isinstance(module, Experts):
            for key, param in list(module.named_parameters(recurse=False)):
                module.register_parameter(key, nn.Parameter(distribute_tensor(param, mesh, [Shard(0)])))

    def dispatch(self, module: Experts, inputs: tuple[torch.Tensor, ...], mesh: DeviceMesh) -> tuple[torch.Tensor, ...]:
        """(x_SZ, weights_SK, experts_SK) -> the rows this rank's experts compute: (x_RZ, ones
        (R, 1), local experts (R, 1))."""
        x_SZ, weights_SK, experts_SK = inputs
        S, K = experts_SK.shape
        N, E = mesh.size(), module.up_proj.shape[0]
        order_A, counts_E = group_by_expert(experts_SK, E)
        token_A = order_A // K
        # the GEMM dtype, as Experts.forward casts its rows: the outputs come back in it
        x_AZ = x_SZ.index_select(0, token_A).to(gemm_dtype(x_SZ))
        recv_NL = torch.empty_like(counts_E)
        dist.all_to_all_single(recv_NL, counts_E, group=self.group)
        recv_NL = recv_NL.view(N, E // N)  # rows from rank n for local expert l
        # host read: all_to_all sizes its buffers from Python ints
        send_splits, recv_splits = torch.stack([counts_E.view(N, -1).sum(1), recv_NL.sum(1)]).tolist()
        self._pending = _Dispatched(token_A=token_A, weights_A=weights_SK.flatten()[order_A], num_tokens=S,
                                    dtype=x_SZ.dtype, send_splits=send_splits, recv_splits=recv_splits)
        self._count(send_splits, x_AZ)
        x_RZ = all_to_all_single_autograd(x_AZ, recv_splits, send_splits, self.group)
        R = sum(recv_splits)
        local_R = torch.arange(E // N, device=x_SZ.device).repeat(N).repeat_interleave(recv_NL.flatten(), output_size=R)
        return x_RZ, weights_SK.new_ones(R, 1), local_R[:, None]

    def combine(self, module: Experts, y_RZ: torch.Tensor, mesh: DeviceMesh) -> torch.Tensor:
        """The experts' rows back to their tokens' ranks, gate-weighted and summed per token."""
        routed, self._pending = self._pending, None
        self._count(routed.recv_splits, y_RZ)
        y_AZ = all_to_all_single_autograd(y_RZ, routed.send_splits, routed.recv_splits, self.group)
        return combine(y_AZ, routed.weights_A, routed.token_A, routed.num_tokens).to(routed.dtype)

    def _count(self, splits: list[int], rows: torch.Tensor) -> None:
        remote = sum(splits) - splits[self.rank]
        self.sent_bytes += remote * rows.shape[1] * rows.element_size()


def apply_expert_parallel(model: nn.Module, mesh: DeviceMesh, policy: MixedPrecisionPolicy) -> None:
    """Split every MoE layer's experts over mesh["ep"] and FSDP-shard them over mesh["dp_mod_ep"]
    (before the blocks are sharded, which then leave them alone). Each `Experts` keeps its
    dispatcher as `expert_dispatch`."""
    ep_mesh, dp_mesh = mesh["ep"], mesh["dp_mod_ep"]
    # the experts' inputs include the float32 gate weights: FSDP2 must not cast them to param_dtype
    policy = MixedPrecisionPolicy(param_dtype=policy.param_dtype, reduce_dtype=policy.reduce_dtype,
                                  cast_forward_inputs=False)
    for moe in moe_layers(model).values():
        dispatch = ExpertDispatch(ep_mesh)
        distribute_module(moe.experts, ep_mesh, dispatch.partition, dispatch.dispatch, dispatch.combine)
        fully_shard(moe.experts, mesh=dp_mesh, mp_policy=policy, shard_placement_fn=lambda _: Shard(1))
        moe.experts.set_gradient_divide_factor(float(mesh.size()))
        moe.experts.expert_dispatch = dispatch


def all_to_all_bytes(model: nn.Module) -> int:
    """Bytes of token rows the forward all-to-alls of `model` have sent to other ranks so far."""
    return sum(moe.experts.expert_dispatch.sent_bytes for moe in moe_layers(model).values()
               if hasattr(moe.experts, "expert_dispatch"))


def clip_grad_norm_(parameters: Any, max_norm: float) -> torch.Tensor:
    """`nn.utils.clip_grad_norm_` for parameters on several device meshes (under EP the experts'
    and the rest's), whose DTensors no single op takes: one norm per mesh, then their norm, and
    each mesh's gradients scaled on their own. Returns the total norm as a plain tensor."""
    by_mesh: dict[Any, list[nn.Parameter]] = defaultdict(list)
    for p in parameters:
        if p.grad is not None:
            by_mesh[p.grad.device_mesh if isinstance(p.grad, DTensor) else None].append(p)
    norms = [nn.utils.get_total_norm([p.grad for p in params], foreach=True) for params in by_mesh.values()]
    # one mesh (no EP): exactly nn.utils.clip_grad_norm_
    total = norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack([_full(n) for n in norms]))
    for params in by_mesh.values():
        nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=True)
    return _full(total)


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t
