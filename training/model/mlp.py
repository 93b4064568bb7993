"""Dense MLP of Nemotron-H: down(relu(up(x))^2), no gate (HF NemotronHMLP, mlp_hidden_act
"relu2"; squared ReLU from So et al. 2021, "Primer", arXiv:2109.08668).

Shape legend: B batch, T tokens, D hidden, F intermediate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.model.linear import Linear


def relu2(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square()


class MLP(nn.Module):
    def __init__(self, *, hidden_size: int, intermediate_size: int, bias: bool) -> None:
        super().__init__()
        self.up_proj = Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return self.down_proj(relu2(self.up_proj(x_BTD)))
