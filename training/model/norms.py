"""RMSNorm and Mamba-2's gated group RMSNorm, numerically as HF NemotronH (float32 inside).

Shape legend: B batch, T tokens, D normalised width, G groups.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """HF NemotronHRMSNorm: normalise and scale in float32, cast back to the input dtype."""

    def __init__(self, dim: int, *, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x_BTD.float(), x_BTD.shape[-1:], self.weight.float(), self.eps).to(x_BTD.dtype)


class GatedGroupRMSNorm(nn.Module):
    """HF NemotronHRMSNormGated: y * silu(z), RMS-normalised per group of D/G channels
    (norm_before_gate=False in mamba_ssm's RMSNormGated). Returns float32 like HF."""

    def __init__(self, dim: int, *, groups: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.groups = groups
        self.eps = eps

    def forward(self, y_BTD: torch.Tensor, z_BTD: torch.Tensor) -> torch.Tensor:
        g_BTD = y_BTD.float() * F.silu(z_BTD.float())
        g_BTGd = g_BTD.unflatten(-1, (self.groups, -1))
        normed_BTD = F.rms_norm(g_BTGd, g_BTGd.shape[-1:], eps=self.eps).flatten(-2)
        return self.weight * normed_BTD
