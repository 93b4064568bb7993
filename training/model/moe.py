"""Mixture of experts of Nemotron 3 (HF NemotronHMoE / NemotronHTopkRouter / NemotronHExperts).

Router: float32 sigmoid scores; `e_score_correction_bias` shifts scores for *selection only*
(aux-loss-free balancing, DeepSeek-V3 arXiv:2412.19437 section 2.1.2); group-limited top-k
(groups ranked by the sum of their top-2 biased scores); gate weights are the unbiased scores
of the chosen experts, renormalised if norm_topk_prob, times routed_scaling_factor.
Experts: non-gated squared-ReLU MLPs stored as 3-D weights, dropless, computed with one
`torch._grouped_mm` per projection over expert-sorted tokens, whose group offsets stay on the
device (no host sync). LatentMoE: routed experts run in a moe_latent_size space between
fc1/fc2 projections; the router and the shared expert see the full-width input.
Under expert parallelism the trainer sends tokens to the ranks holding their experts and back
(training/trainer/expert_parallel.py); `Experts` computes only the experts it holds.

Shape legend: S tokens (batch * time), D hidden, Z expert width (latent or hidden),
F expert intermediate, E experts, K experts per token, A assignments (S * K, expert-sorted).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor

from training.model.config import HybridConfig
from training.model.linear import Linear, gemm_dtype
from training.model.mlp import MLP, relu2

HAS_GROUPED_MM = hasattr(torch, "_grouped_mm")


class Router(nn.Module):
    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.zeros(cfg.n_routed_experts, cfg.hidden_size))
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.n_routed_experts, dtype=torch.float32))

    def forward(self, x_SD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (scores_SE float32, weights_SK float32, experts_SK)."""
        cfg = self.cfg
        scores_SE = F.linear(x_SD.float(), self.weight.float()).sigmoid()
        choice_SE = scores_SE.detach() + self.e_score_correction_bias
        if cfg.n_group > 1:
            choice_SgE = choice_SE.unflatten(-1, (cfg.n_group, -1))
            group_score_Sg = choice_SgE.topk(2, dim=-1).values.sum(-1)
            top_groups_Sk = group_score_Sg.topk(cfg.topk_group, dim=-1, sorted=False).indices
            keep_Sg = torch.zeros_like(group_score_Sg, dtype=torch.bool).scatter_(1, top_groups_Sk, True)
            choice_SE = choice_SgE.masked_fill(~keep_Sg[..., None], float("-inf")).flatten(-2)
        experts_SK = choice_SE.topk(cfg.num_experts_per_tok, dim=-1, sorted=False).indices
        weights_SK = scores_SE.gather(1, experts_SK)
        if cfg.norm_topk_prob:
            weights_SK = weights_SK / (weights_SK.sum(-1, keepdim=True) + 1e-20)
        return scores_SE, weights_SK * cfg.routed_scaling_factor, experts_SK


def expert_counts(experts_SK: torch.Tensor, num_experts: int) -> torch.Tensor:
    """int64 (E,): assignments per expert. A scatter-add, not `torch.bincount`, whose CUDA
    kernel reads the largest id on the host to size its output."""
    flat = experts_SK.flatten()
    return flat.new_zeros(num_experts).scatter_add_(0, flat, torch.ones_like(flat))


def group_by_expert(experts_SK: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Assignment order grouped by expert (stable) and per-expert counts (E,)."""
    return experts_SK.flatten().argsort(stable=True), expert_counts(experts_SK, num_experts)


# torch.compile traces _grouped_mm with a meta kernel that accepts only bf16, while the eager
# CPU kernel also takes float32 operands (`gemm_dtype` gives them on CPUs without bf16 GEMM, the
# quantised experts always): grouped GEMMs stay eager (a graph break), the rest compiles.
@torch.compiler.disable
def grouped_mm(a: torch.Tensor, b: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    """`torch._grouped_mm` with groups ending at `offs_E` (int32): a (A, K) @ b (E, K, N) ->
    (A, N), the rows of group e times b[e]; or a (M, A) @ b (A, N) -> (E, M, N), group e
    summing over its columns of a and rows of b. Offsets stay on the device."""
    if HAS_GROUPED_MM:
        return torch._grouped_mm(a, b, offs=offs_E)
    # torch without _grouped_mm: one matmul per group, sized on the host
    sizes = offs_E.diff(prepend=offs_E.new_zeros(1)).tolist()
    if b.dim() == 3:
        return torch.cat([a_n @ b_e for a_n, b_e in zip(a.split(sizes), b)])
    return torch.stack([a_m @ b_n for a_m, b_n in zip(a.split(sizes, dim=1), b.split(sizes))])


def _grouped_experts(x_AZ: torch.Tensor, up_EFZ: torch.Tensor, down_EZF: torch.Tensor,
                     offs_E: torch.Tensor) -> torch.Tensor:
    h_AF = relu2(grouped_mm(x_AZ, up_EFZ.transpose(1, 2), offs_E))
    return grouped_mm(h_AF, down_EZF.transpose(1, 2), offs_E)


def local_experts(weight: torch.Tensor) -> torch.Tensor:
    """The experts of a 3-D expert weight that this process computes: all of them, or under
    expert parallelism (a DTensor sharded over the experts) its own slice, as a plain tensor
    (the grouped GEMMs take no DTensor; gradients flow back into the DTensor)."""
    return weight.to_local() if isinstance(weight, DTensor) else weight


def combine(y_AZ: torch.Tensor, weights_A: torch.Tensor, token_A: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """float32 (S, Z): each assignment's output times its gate weight, added to its token in
    the order given (HF's index_add_ loop); the batched (1, K) @ (K, Z) matmul it replaces was
    3x slower at K=2."""
    weighted_AZ = y_AZ.float() * weights_A[:, None]
    return weighted_AZ.new_zeros(num_tokens, weighted_AZ.shape[1]).index_add(0, token_A, weighted_AZ)


class Experts(nn.Module):
    """3-D expert weights as HF: up_proj (E, F, Z), down_proj (E, Z, F). `forward` takes expert
    ids into the experts it computes (`local_experts`)."""

    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        E, F_, Z = cfg.n_routed_experts, cfg.moe_intermediate_size, cfg.expert_dim
        self.up_proj = nn.Parameter(torch.empty(E, F_, Z))
        self.down_proj = nn.Parameter(torch.empty(E, Z, F_))

    def forward(self, x_SZ: torch.Tensor, weights_SK: torch.Tensor, experts_SK: torch.Tensor) -> torch.Tensor:
        S, K = experts_SK.shape
        up_EFZ, down_EZF = local_experts(self.up_proj), local_experts(self.down_proj)
        order_A, counts_E = group_by_expert(experts_SK, up_EFZ.shape[0])
        dtype = gemm_dtype(x_SZ)
        token_A = order_A // K
        x_AZ = x_SZ.index_select(0, token_A).to(dtype)
        y_AZ = _grouped_experts(x_AZ, up_EFZ.to(dtype), down_EZF.to(dtype), counts_E.cumsum(0).to(torch.int32))
        # combined in float32 in expert order
        return combine(y_AZ, weights_SK.flatten()[order_A], token_A, S).to(x_SZ.dtype)


def experts_reference(experts: Experts, x_SZ: torch.Tensor, weights_SK: torch.Tensor, experts_SK: torch.Tensor) -> torch.Tensor:
    """Slow twin of `Experts.forward`: every expert on every token, then gather the chosen K."""
    h_ESF = relu2(torch.einsum("sz,efz->esf", x_SZ.float(), experts.up_proj.float()))
    y_ESZ = torch.einsum("esf,ezf->esz", h_ESF, experts.down_proj.float())
    y_SKZ = y_ESZ.permute(1, 0, 2)[torch.arange(x_SZ.shape[0])[:, None], experts_SK]
    return (weights_SK[..., None] * y_SKZ).sum(1).to(x_SZ.dtype)


class MoE(nn.Module):
    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.gate = Router(cfg)
        self.experts = Experts(cfg)
        self.shared_experts = MLP(
            hidden_size=cfg.hidden_size, intermediate_size=cfg.moe_shared_expert_intermediate_size, bias=cfg.mlp_bias
        )
        latent = cfg.moe_latent_size
        self.fc1_latent_proj = Linear(cfg.hidden_size, latent, bias=cfg.mlp_bias) if latent else nn.Identity()
        self.fc2_latent_proj = Linear(latent, cfg.hidden_size, bias=cfg.mlp_bias) if latent else nn.Identity()
        # tokens routed to each expert since the last `update_router_bias` (balancing statistics)
        self.register_buffer("expert_load", torch.zeros(cfg.n_routed_experts), persistent=False)
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        self.aux_loss = None
        x_SD = x_BTD.flatten(0, -2)
        scores_SE, weights_SK, experts_SK = self.gate(x_SD)
        routed_SD = self.fc2_latent_proj(self.experts(self.fc1_latent_proj(x_SD), weights_SK, experts_SK))
        with torch.no_grad():
            self.expert_load += expert_counts(experts_SK, self.cfg.n_routed_experts)
        if self.training and self.cfg.moe_aux_loss_coeff > 0:
            self.aux_loss = self.cfg.moe_aux_loss_coeff * sequence_aux_loss(
                scores_SE.view(*x_BTD.shape[:-1], -1), experts_SK.view(*x_BTD.shape[:-1], -1)
            )
        return routed_SD.view_as(x_BTD) + self.shared_experts(x_BTD)


def sequence_aux_loss(scores_BTE: torch.Tensor, experts_BTK: torch.Tensor) -> torch.Tensor:
    """Complementary sequence-wise balance loss, DeepSeek-V3 eqs. 17-20 (without alpha):
    sum_i f_i P_i per sequence, f_i = E / (K T) * #tokens routed to i, P_i = mean_t s'_{i,t}."""
    bsz, T, E = scores_BTE.shape
    K = experts_BTK.shape[-1]
    counts_BE = torch.zeros(bsz, E, device=scores_BTE.device).scatter_add_(
        1, experts_BTK.flatten(1), torch.ones(bsz, T * K, device=scores_BTE.device)
    )
    f_BE = counts_BE * E / (K * T)
    p_BE = (scores_BTE / scores_BTE.sum(-1, keepdim=True)).mean(1)
    return (f_BE * p_BE).sum(-1).mean()
