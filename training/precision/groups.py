"""Expert-sorted rows as groups, for the quantised grouped GEMMs of routed experts.

The rows of an expert-sorted (A, K) matrix form one group per expert; every quantity of the
per-expert recipe (tensor scales, stochastic-rounding streams, the RHT's 16-token blocks) is
computed for all groups at once from the row-to-expert map, on the device: no count ever goes
to the host. Grouped GEMMs take the groups' cumulative row ends (`offs_E`, int32) as
`torch._grouped_mm` does.

On CUDA the grouped GEMMs multiply operands whose values are exact in bf16 (FP8 codes, NVFP4
block products) with torch's bf16 grouped GEMM, whose kernel (sm90+) reads the offsets on the
device, and round the product to bf16 before the per-expert tensor scales apply (torch's grouped
GEMMs have no float32 output). Elsewhere they run in float32.

Shape legend: A rows (assignments), E experts (groups), P padded rows, C columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.model.moe import grouped_mm

ALIGN = 16  # rows per RHT block and per NVFP4 block along the tokens


@dataclass(frozen=True)
class ExpertGroups:
    """Row a of an expert-sorted matrix belongs to expert `expert_A[a]`; expert e owns rows
    [start_E[e], offs_E[e])."""

    expert_A: torch.Tensor  # int64 (A,), non-decreasing
    start_E: torch.Tensor  # int64 (E,)
    offs_E: torch.Tensor  # int32 (E,) cumulative row ends

    @classmethod
    def from_counts(cls, expert_A: torch.Tensor, counts_E: torch.Tensor) -> ExpertGroups:
        ends_E = counts_E.cumsum(0)
        return cls(expert_A=expert_A, start_E=ends_E - counts_E, offs_E=ends_E.to(torch.int32))

    @property
    def num_experts(self) -> int:
        return self.start_E.shape[0]

    def local_A(self) -> torch.Tensor:
        """int64 (A,): each row's index within its expert's rows."""
        return torch.arange(self.expert_A.shape[0], device=self.expert_A.device) - self.start_E[self.expert_A]

    def padded(self) -> PaddedGroups:
        """The same rows with every expert's block starting at a multiple of ALIGN."""
        counts_E = (self.offs_E - self.start_E).long()
        size_E = (counts_E + ALIGN - 1) // ALIGN * ALIGN
        ends_E = size_E.cumsum(0)
        start_E = ends_E - size_E
        A, E = self.expert_A.shape[0], self.num_experts
        P = -(-(A + (ALIGN - 1) * E) // ALIGN) * ALIGN  # a bound on sum(size_E) known without the counts
        pos_P = torch.arange(P, device=ends_E.device)
        # the tail beyond the last block (zeros, in no GEMM group) is given to the last expert
        expert_P = torch.searchsorted(ends_E, pos_P, right=True).clamp(max=E - 1)
        return PaddedGroups(row_A=start_E[self.expert_A] + self.local_A(), expert_P=expert_P,
                            local_P=pos_P - start_E[expert_P], size_E=size_E, offs_E=ends_E.to(torch.int32))


@dataclass(frozen=True)
class PaddedGroups:
    """Expert blocks padded to whole ALIGN-row blocks in a (P, C) layout of static size:
    row a of the unpadded matrix is row `row_A[a]`; padded row p belongs to expert
    `expert_P[p]`, at index `local_P[p]` of its `size_E`-row block."""

    row_A: torch.Tensor  # int64 (A,)
    expert_P: torch.Tensor  # int64 (P,)
    local_P: torch.Tensor  # int64 (P,)
    size_E: torch.Tensor  # int64 (E,) block rows, multiples of ALIGN
    offs_E: torch.Tensor  # int32 (E,) cumulative block ends

    def scatter(self, x_AC: torch.Tensor) -> torch.Tensor:
        """float32 (P, C): the rows of `x_AC` at their padded positions, zeros elsewhere."""
        x_AC = x_AC.float()
        return x_AC.new_zeros(self.expert_P.shape[0], x_AC.shape[1]).index_copy_(0, self.row_A, x_AC)


def group_max(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """float32 (G,): the largest of `values` (amaxes, >= 0) in each group, 0 for an empty one;
    `group` (int64) broadcasts to `values`."""
    values = values.float()
    return values.new_zeros(num_groups).scatter_reduce_(0, group.expand_as(values).flatten(), values.flatten(), "amax")


def group_fingerprints(x_AC: torch.Tensor, groups: ExpertGroups) -> torch.Tensor:
    """int64 (E,): `noise.fingerprint` of every expert's rows (integer sums: exact)."""
    bits_A = x_AC.detach().float().contiguous().view(torch.int32).sum(1, dtype=torch.int64)
    return bits_A.new_zeros(groups.num_experts).index_add_(0, groups.expert_A, bits_A)


def exact_grouped_mm(a: torch.Tensor, b: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    """float32 `grouped_mm` of operands whose values bf16 holds exactly (see the module doc)."""
    if a.is_cuda:
        return grouped_mm(a.to(torch.bfloat16), b.to(torch.bfloat16), offs_E).float()
    return grouped_mm(a.float(), b.float(), offs_E)
