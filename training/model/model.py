"""The hybrid Mamba-2 / attention / MLP / MoE language model (HF NemotronHForCausalLM layout).

Parameter names equal the Hugging Face hub checkpoints' (`backbone.layers.{i}.mixer...`),
except that routed experts are 3-D tensors (`mixer.experts.up_proj` (E, F, Z)), as in
transformers' in-memory layout; `hf_interop` converts to and from per-expert tensors.

Shape legend: B batch, T tokens, D hidden, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.model.attention import Attention
from training.model.balancing import aux_loss
from training.model.chunked_loss import linear_cross_entropy
from training.model.config import HybridConfig
from training.model.init import init_parameters
from training.model.linear import Linear
from training.model.mamba2 import Mamba2
from training.model.mlp import MLP
from training.model.moe import MoE
from training.model.norms import RMSNorm


def build_mixer(kind: str, cfg: HybridConfig) -> nn.Module:
    if kind == "M":
        return Mamba2(cfg)
    if kind == "*":
        return Attention(cfg)
    if kind == "-":
        return MLP(hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size, bias=cfg.mlp_bias)
    return MoE(cfg)


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(RMSNorm(x)) (HF NemotronHBlock)."""

    def __init__(self, kind: str, cfg: HybridConfig) -> None:
        super().__init__()
        self.kind = kind
        self.norm = RMSNorm(cfg.hidden_size, eps=cfg.layer_norm_epsilon)
        self.mixer = build_mixer(kind, cfg)

    def forward(self, x_BTD: torch.Tensor, doc_ids_BT: torch.Tensor | None = None) -> torch.Tensor:
        h_BTD = self.norm(x_BTD)
        if self.kind in "M*":
            return x_BTD + self.mixer(h_BTD, doc_ids_BT)
        return x_BTD + self.mixer(h_BTD)


class Backbone(nn.Module):
    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(kind, cfg) for kind in cfg.pattern)
        self.norm_f = RMSNorm(cfg.hidden_size, eps=cfg.layer_norm_epsilon)

    def forward(self, input_ids_BT: torch.Tensor, doc_ids_BT: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden state *before* norm_f (MTP depth 1 consumes it)."""
        x_BTD = self.embeddings(input_ids_BT)
        for layer in self.layers:
            x_BTD = layer(x_BTD, doc_ids_BT)
        return x_BTD


class MTPDepth(nn.Module):
    """One multi-token-prediction depth k (DeepSeek-V3 section 2.2, eq. 21-23):
    h_k = Blocks(eh_proj([RMSNorm(h_{k-1}); RMSNorm(Emb(t_{i+k}))])); embedding and output
    head are shared with the main model."""

    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        self.hnorm = RMSNorm(cfg.hidden_size, eps=cfg.layer_norm_epsilon)
        self.enorm = RMSNorm(cfg.hidden_size, eps=cfg.layer_norm_epsilon)
        self.eh_proj = Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.layers = nn.ModuleList(Block(kind, cfg) for kind in cfg.mtp_pattern)
        self.final_norm = RMSNorm(cfg.hidden_size, eps=cfg.layer_norm_epsilon)

    def forward(self, h_BTD: torch.Tensor, emb_BTD: torch.Tensor, doc_ids_BT: torch.Tensor | None) -> torch.Tensor:
        x_BTD = self.eh_proj(torch.cat([self.hnorm(h_BTD), self.enorm(emb_BTD)], dim=-1))
        for layer in self.layers:
            x_BTD = layer(x_BTD, doc_ids_BT)
        return x_BTD


@dataclass
class CausalLMOutput:
    logits: torch.Tensor | None  # (B, T, V) float32, as HF; None when the forward was asked for the loss only
    loss: torch.Tensor | None = None  # LM loss + mtp_loss_weight * MTP loss + MoE aux loss
    lm_loss: torch.Tensor | None = None
    mtp_loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


def _shift_left(t_BT: torch.Tensor, k: int, fill: int) -> torch.Tensor:
    return F.pad(t_BT[:, k:], (0, k), value=fill)


class HybridForCausalLM(nn.Module):
    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.mtp = nn.ModuleList(MTPDepth(cfg) for _ in range(cfg.num_nextn_predict_layers))
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight
        if self.lm_head.weight.device.type != "meta":
            self.init_weights()

    def init_weights(self, seed: int | None = None) -> None:
        """HF NemotronH initialisation (`training.model.init`), identical for any device or
        sharding given `seed`; without one, the seed is drawn from torch's global RNG."""
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        init_parameters(self, self.cfg, seed)

    def forward(
        self,
        input_ids_BT: torch.Tensor,
        *,
        doc_ids_BT: torch.Tensor | None = None,
        labels_BT: torch.Tensor | None = None,
        return_logits: bool = True,
    ) -> CausalLMOutput:
        """`doc_ids_BT` (non-decreasing document index per token) resets Mamba state and masks
        attention at document boundaries of packed rows. `labels_BT` are next-token targets
        already aligned with the inputs (-100 = ignore). With labels and `return_logits=False`
        (training), the head and the loss run fused over chunks of tokens and no (T, V) logits
        are made (`training.model.chunked_loss`)."""
        h_BTD = self.backbone(input_ids_BT, doc_ids_BT)
        out = CausalLMOutput(logits=None, aux_loss=aux_loss(self) if self.training else None)
        if return_logits or labels_BT is None:
            out.logits = self.lm_head(self.backbone.norm_f(h_BTD)).float()
        if labels_BT is None:
            return out
        out.lm_loss = self._head_loss(self.backbone.norm_f(h_BTD) if out.logits is None else None, out.logits, labels_BT)
        out.loss = out.lm_loss
        if len(self.mtp):
            out.mtp_loss = self._mtp_loss(h_BTD, input_ids_BT, labels_BT, doc_ids_BT, fused=out.logits is None)
            out.loss = out.loss + self.cfg.mtp_loss_weight * out.mtp_loss
        if out.aux_loss is not None:
            out.loss = out.loss + out.aux_loss
        return out

    def _head_loss(self, normed_BTD: torch.Tensor | None, logits_BTV: torch.Tensor | None,
                   labels_BT: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the head: on the given logits, or fused with the head over chunks."""
        if logits_BTV is not None:
            return F.cross_entropy(logits_BTV.flatten(0, 1), labels_BT.flatten(), ignore_index=-100)
        return linear_cross_entropy(normed_BTD, self.lm_head.weight, labels_BT)

    def _mtp_loss(
        self, h_BTD: torch.Tensor, input_ids_BT: torch.Tensor, labels_BT: torch.Tensor, doc_ids_BT: torch.Tensor | None,
        *, fused: bool = False,
    ) -> torch.Tensor:
        """Mean over depths of the CE of depth k predicting labels shifted by k (eq. 24-25);
        targets from another document of a packed row are ignored."""
        losses = []
        for k, depth in enumerate(self.mtp, start=1):
            emb_BTD = self.backbone.embeddings(_shift_left(input_ids_BT, k, 0))
            h_BTD = depth(h_BTD, emb_BTD, doc_ids_BT)
            target_BT = _shift_left(labels_BT, k, -100)
            if doc_ids_BT is not None:
                same_doc_BT = _shift_left(doc_ids_BT, k, -1) == doc_ids_BT
                target_BT = target_BT.masked_fill(~same_doc_BT, -100)
            normed_BTD = depth.final_norm(h_BTD)
            logits_BTV = None if fused else self.lm_head(normed_BTD).float()
            losses.append(self._head_loss(normed_BTD, logits_BTV, target_BT))
        return torch.stack(losses).mean()
