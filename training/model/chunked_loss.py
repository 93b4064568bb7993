"""Output head and cross-entropy fused over chunks of tokens: the (T, V) float32 logits never exist.

At long context the logits are the largest tensor of a step: Nemotron 3 Nano's 131,072-token
sequence against its 131,072-entry vocabulary is 64 GiB of float32 logits, and a plain
cross-entropy keeps them, their log-softmax and their gradient. Here the loss is computed
`chunk_tokens` rows at a time; each chunk's logits are made, reduced to its loss and, in the
same pass, to its gradients with respect to the head's input and weight, then freed (the way
Liger-Kernel's fused linear cross-entropy works). Memory grows with chunk x V, not T x V, and
the head costs three GEMMs, as unfused. Backward only scales the stored gradients.

Each chunk runs exactly the ops of the unfused path (`linear` then float32 cross-entropy), so
forward losses and gradients equal it up to float summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.model.linear import linear

#: rows of logits made at once: 8,192 x 131,072 float32 logits are 4 GiB (Nemotron 3's vocabulary)
DEFAULT_CHUNK_TOKENS = 8192


def _keep(t: torch.Tensor) -> torch.Tensor:
    return t


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_ND: torch.Tensor, weight_VD: torch.Tensor, labels_N: torch.Tensor,  # type: ignore[override]
                chunk_tokens: int) -> torch.Tensor:
        loss_sum = torch.zeros((), dtype=torch.float32, device=h_ND.device)
        grad_h_ND = torch.empty_like(h_ND) if h_ND.requires_grad else None
        grad_weight_VD = torch.zeros_like(weight_VD, dtype=torch.float32) if weight_VD.requires_grad else None
        weight = weight_VD.detach().requires_grad_(grad_weight_VD is not None)
        for start in range(0, h_ND.shape[0], chunk_tokens):
            # the chunk's graph lives only inside this loop: outer saved-tensor hooks (offloading,
            # memory accounting) see what the loss keeps for backward, not these transients
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_keep, _keep):
                h_CD = h_ND[start:start + chunk_tokens].detach().requires_grad_(grad_h_ND is not None)
                logits_CV = linear(h_CD, weight).float()
                chunk_loss = F.cross_entropy(logits_CV, labels_N[start:start + chunk_tokens], ignore_index=-100,
                                             reduction="sum")
            inputs = [t for t in (h_CD, weight) if t.requires_grad]
            if inputs:
                grads = torch.autograd.grad(chunk_loss, inputs)
                if grad_h_ND is not None:
                    grad_h_ND[start:start + chunk_tokens] = grads[0]
                if grad_weight_VD is not None:
                    grad_weight_VD += grads[-1]
            loss_sum += chunk_loss.detach()
            del logits_CV, chunk_loss
        count = (labels_N != -100).sum()
        ctx.save_for_backward(grad_h_ND, grad_weight_VD, count)
        ctx.weight_dtype = weight_VD.dtype
        return loss_sum / count  # the mean over target tokens, as F.cross_entropy (nan without any)

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):  # type: ignore[override]
        grad_h_ND, grad_weight_VD, count = ctx.saved_tensors
        scale = grad_loss / count
        grad_h = None if grad_h_ND is None else grad_h_ND * scale.to(grad_h_ND.dtype)
        grad_weight = None if grad_weight_VD is None else (grad_weight_VD * scale).to(ctx.weight_dtype)
        return grad_h, grad_weight, None, None


def linear_cross_entropy(h_BTD: torch.Tensor, weight_VD: torch.Tensor, labels_BT: torch.Tensor,
                         chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> torch.Tensor:
    """Mean cross-entropy of `linear(h, weight)` (float32) against `labels` (-100: ignored),
    `chunk_tokens` rows of logits at a time."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be positive, not {chunk_tokens}")
    return _LinearCrossEntropy.apply(h_BTD.flatten(0, 1), weight_VD, labels_BT.flatten(), chunk_tokens)
