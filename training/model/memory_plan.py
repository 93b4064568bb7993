"""Per-rank memory of one training step: the numbers behind `ccforge model plan`.

What the trainer keeps (training/trainer/parallel.py, optim.py, loop.py):

- The model is built in float32 and FSDP2-sharded per block and at the root, so a rank holds
  1/W of the float32 parameters (they are AdamW's master weights), of their float32 gradients
  and of AdamW's exp_avg and exp_avg_sq: 16 bytes per parameter over W ranks.
- MixedPrecisionPolicy gathers a block's parameters in `param_dtype` for its forward and its
  backward, two blocks at a time (the running one and the prefetched next). The root
  (embeddings, output head, final norms, MTP projections) stays gathered from its forward to the
  end of backward, and its gradients stay unsharded until then.
- With grad_accum > 1 FSDP2 holds the gradients of every micro-batch but the last unsharded
  (`set_requires_gradient_sync(False)`), in reduce_dtype when that differs from param_dtype.
- Expert parallelism E (`parallel.expert_parallel`): routed expert weights are split E ways and
  FSDP-sharded over the W/E ranks of each split, so a rank still holds 1/W of them but gathers
  only its E-th; the all-to-all holds send and receive copies of the routed tokens while it runs.

Activations are the bytes autograd saves per token, term by term as the blocks' code creates
them (tests/training/model/test_memory_plan.py checks each block kind against saved-tensor hooks
and a whole CPU training step against its measured peak). Assumed: balanced expert loads,
attention that keeps no T x T tensor (flash, FlexAttention), and no `doc_ids` (their per-token
masks and document starts are small). fp8 and NVFP4 save what bf16 saves (the quantised layers
keep their bf16 inputs); they add the transient operands of one GEMM.

The peak is the largest of four moments (`_moments`): the loss's backward, the first block's
backward, the end of backward and the optimizer step (fused AdamW adds no temporaries). A fixed
allowance covers what is no tensor of the model: CUDA context, NCCL buffers, cuBLAS workspaces.

Shape legend of the formulas: D hidden, V vocabulary, I Mamba inner width (H P), X conv channels
(I + 2 G N), H Mamba heads, P Mamba head dim, G groups, N state size, L chunk, Q and KV attention
heads, A attention head dim, E experts, K experts per token, F expert width, S shared-expert
width, Z routed-expert input width (latent or D).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from training.model.chunked_loss import DEFAULT_CHUNK_TOKENS
from training.model.config import HybridConfig
from training.model.model import HybridForCausalLM
from training.model.moe import Experts

GiB = 2**30
F32 = 4  # bytes of float32: master weights, gradients, AdamW state, norms' insides, logits
I64 = 8
DTYPE_BYTES = {"bf16": 2, "fp32": 4}
#: CUDA context (~0.6 GiB on an H100 with lazy module loading), NCCL communicator buffers
#: (~1-2 GiB for the data- and expert-parallel groups), cuBLAS and cuDNN workspaces.
GPU_ALLOWANCE = 3 * GiB
#: Working bytes per operand element while a GEMM quantises it (training/precision): fp8 holds
#: the float32 upcast, its scaled copy and the 1-byte result; NVFP4 emulation holds padded
#: float32 values, block scales, rounding noise and the blocked float32 operand.
QUANTISE_BYTES = {"bf16": 0, "fp8": 9, "nvfp4": 16}
KIND_NAMES = {"M": "Mamba-2", "*": "attention", "-": "MLP", "E": "MoE"}


@dataclass(frozen=True, kw_only=True)
class PlanSetup:
    """How the model is trained, as the planner needs it."""

    world_size: int
    seq_len: int
    micro_batch: int
    expert_parallel: int = 1
    grad_accum: int = 1
    param_dtype: Literal["bf16", "fp32"] = "bf16"  # FSDP2 compute dtype: gathered weights, activations
    reduce_dtype: Literal["bf16", "fp32"] = "fp32"
    precision: Literal["bf16", "fp8", "nvfp4"] = "bf16"
    ssd_scan: Literal["mamba_ssm", "torch"] = "mamba_ssm"  # the CUDA kernel, or `ssd_chunked` (CPU)
    allowance: int = GPU_ALLOWANCE

    def __post_init__(self) -> None:
        if min(self.world_size, self.seq_len, self.micro_batch, self.expert_parallel, self.grad_accum) < 1:
            raise ValueError("world size, seq_len, micro-batch, expert parallel and grad_accum must be >= 1")
        if self.world_size % self.expert_parallel:
            raise ValueError(f"expert parallel {self.expert_parallel} must divide the world size {self.world_size}")

    @property
    def tokens(self) -> int:
        return self.seq_len * self.micro_batch


@dataclass(frozen=True)
class Moment:
    """What a rank holds at one moment of the step: label -> bytes."""

    name: str
    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())


@dataclass(frozen=True)
class MemoryPlan:
    moments: dict[str, Moment]  # without activation checkpointing
    moments_ac: dict[str, Moment]  # with it

    def peak(self, *, checkpointing: bool) -> Moment:
        """The moment of the step that holds the most."""
        return max((self.moments_ac if checkpointing else self.moments).values(), key=lambda m: m.total)

    def fits(self, gpu_memory: int, *, checkpointing: bool) -> bool:
        return self.peak(checkpointing=checkpointing).total <= gpu_memory


# -- activations saved for backward, bytes per token -------------------------------------------

def _norm(D: int) -> int:
    """RMSNorm (float32 inside, HF NemotronHRMSNorm): its float32 input, normalised value, rstd."""
    return 2 * F32 * D + F32


def _fp32_copy(a: int) -> int:
    """Bytes of a saved `.float()` of an activation: a new tensor unless activations are float32."""
    return 0 if a == F32 else F32


def _mamba(cfg: HybridConfig, a: int, scan: str, seq_len: int) -> float:
    D, I, X, H, G = cfg.hidden_size, cfg.d_inner, cfg.conv_dim, cfg.mamba_num_heads, cfg.n_groups
    N, L = cfg.ssm_state_size, cfg.chunk_size
    chunks = math.ceil(seq_len / L)
    padded = chunks * L / seq_len  # the scan's chunked tensors cover whole chunks
    common = (
        _norm(D) + a * D  # the norm, in_proj's input
        + a * (I + X + H)  # in_proj's output: the conv saves its xBC slice, which keeps all of it
        + a * X  # conv output (SiLU input)
        + 3 * F32 * H  # dt: softplus input, clamp input, dt
        + _fp32_copy(a) * I  # x.float() of the D skip
        + 4 * F32 * I + _fp32_copy(a) * I + F32 * G  # gated norm: y + D x, silu(z) (z.float()), product, normalised
        + a * I  # out_proj's input
    )
    if scan == "mamba_ssm":  # the kernel saves x, B, C (the SiLU output), its output y and dA_cumsum
        return common + a * X + a * I + F32 * H * padded
    x = F32 * X if a == F32 else F32 * I  # x (in float32 x, B and C share the SiLU output), else x.float()
    chunked = F32 * (
        3 * I  # x dt chunk-major, x dt times the decay to the chunk end, off-diagonal output
        + 4 * H  # exp(a_end - a), exp(a) and their masked products
        + H * N  # B repeated per head for the chunk-state GEMM
        + 3 * G * N  # contiguous B and C for C B^T, C for the state read-out
        + 2 * H * L  # the intra-chunk decay matrix and C B^T times it (ssd._MaskedDecay)
        + (2 - 1 / chunks) * I * N / L  # chunk start states (inputs of the recurrence) and their stack
    )
    return common + x + padded * chunked


def _attention(cfg: HybridConfig, a: int) -> float:
    D, Q, KV, A = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    return _norm(D) + a * D + a * (2 * Q * A + 2 * KV * A) + F32 * Q  # q, k, v, output; logsumexp


def _mlp(cfg: HybridConfig, a: int) -> float:
    return _norm(cfg.hidden_size) + a * cfg.hidden_size + 2 * a * cfg.intermediate_size  # ReLU out, its square


def _moe(cfg: HybridConfig, a: int) -> float:
    D, E, K, F, S, Z = (cfg.hidden_size, cfg.n_routed_experts, cfg.num_experts_per_tok, cfg.moe_intermediate_size,
                        cfg.moe_shared_expert_intermediate_size, cfg.expert_dim)
    router = (_fp32_copy(a) * D + F32 * E  # float32 input, sigmoid scores
              + 3 * I64 * K + 2 * F32 * K + F32)  # expert ids, sort order, token index; gate weights, their sum
    routed = a * K * Z + 2 * a * K * F + 2 * F32 * K * Z  # dispatched tokens, ReLU and square, float32 outputs x2
    latent = a * Z if cfg.moe_latent_size else 0  # fc2_latent_proj's input
    return _norm(D) + a * D + router + routed + latent + 2 * a * S  # shared expert: ReLU out, its square


def _head(cfg: HybridConfig, a: int) -> float:
    """Final norm, the fused head loss's gradient for the head's input (training.model.chunked_loss:
    no logits are kept), the embedding's token ids."""
    return _norm(cfg.hidden_size) + a * cfg.hidden_size + I64


def _mtp_depth(cfg: HybridConfig, a: int) -> float:
    """One MTP depth outside its blocks: three norms, eh_proj's input, the fused head loss's input
    gradient, the shifted token ids."""
    D = cfg.hidden_size
    return 3 * _norm(D) + 3 * a * D + I64


def head_weight_gradients(cfg: HybridConfig) -> int:
    """Bytes the fused head losses keep whatever the tokens: a float32 gradient of the head's weight
    for the LM loss and for each MTP depth."""
    return (1 + cfg.num_nextn_predict_layers) * F32 * cfg.vocab_size * cfg.hidden_size


def loss_chunk_bytes(cfg: HybridConfig, tokens: int) -> int:
    """The fused head loss's transient while it runs: one chunk of float32 logits, their log-softmax
    and their gradient (at most DEFAULT_CHUNK_TOKENS rows)."""
    return 3 * F32 * min(tokens, DEFAULT_CHUNK_TOKENS) * cfg.vocab_size


def block_activations(kind: str, cfg: HybridConfig, *, act_dtype: str, ssd_scan: str, seq_len: int) -> float:
    """Bytes one block of `kind` (M, *, -, E) saves for backward per token."""
    a = DTYPE_BYTES[act_dtype]
    if kind == "M":
        return _mamba(cfg, a, ssd_scan, seq_len)
    return {"*": _attention, "-": _mlp, "E": _moe}[kind](cfg, a)


def head_activations(cfg: HybridConfig, *, act_dtype: str) -> float:
    """Bytes per token saved outside the blocks: output head and loss, MTP depths' own layers."""
    a = DTYPE_BYTES[act_dtype]
    return _head(cfg, a) + cfg.num_nextn_predict_layers * _mtp_depth(cfg, a)


# -- parameters -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParamLayout:
    total: int
    experts: int  # routed expert weights, split by expert parallelism
    root: int  # outside the blocks: embeddings, output head, final norms, MTP projections
    embedding: int  # of `root`, the input embedding (its gradient is the last of the step)
    blocks: tuple[tuple[int, int], ...]  # per block (backbone, then MTP): (parameters, of which routed experts)

    def gathered(self, expert_parallel: int) -> int:
        """Parameters a rank gathers over a whole step: all but the other ranks' experts."""
        return self.total - self.experts + self.experts // expert_parallel

    def largest_block(self, expert_parallel: int) -> int:
        return max((n - e + e // expert_parallel for n, e in self.blocks), default=0)


def param_layout(cfg: HybridConfig) -> ParamLayout:
    with torch.device("meta"):  # shapes only, nothing allocated
        model = HybridForCausalLM(cfg)
    blocks = [*model.backbone.layers, *(layer for depth in model.mtp for layer in depth.layers)]
    sizes = tuple(
        (sum(p.numel() for p in b.parameters()),
         sum(p.numel() for m in b.modules() if isinstance(m, Experts) for p in m.parameters()))
        for b in blocks
    )
    total = sum(p.numel() for p in model.parameters())
    embedding = 0 if cfg.tie_word_embeddings else model.backbone.embeddings.weight.numel()
    return ParamLayout(total=total, experts=sum(e for _, e in sizes), root=total - sum(n for n, _ in sizes),
                       embedding=embedding, blocks=sizes)


# -- the plan: the step's moments ---------------------------------------------------------------

def _widest(kind: str, cfg: HybridConfig, a: int, scan: str) -> float:
    """The widest activation per token a block of `kind` makes (its backward's gradients are this wide)."""
    if kind == "M":
        widths = [a * (cfg.d_inner + cfg.conv_dim + cfg.mamba_num_heads), F32 * cfg.d_inner]  # in_proj out, gated norm
        if scan == "torch":
            widths.append(F32 * cfg.mamba_num_heads * cfg.chunk_size)  # the intra-chunk decay matrix
        return max(widths)
    if kind == "*":
        return a * cfg.num_attention_heads * cfg.head_dim
    if kind == "-":
        return a * cfg.intermediate_size
    K = cfg.num_experts_per_tok
    return max(a * K * cfg.moe_intermediate_size, F32 * K * cfg.expert_dim, a * cfg.moe_shared_expert_intermediate_size)


def _largest_quantised_gemm(cfg: HybridConfig, setup: PlanSetup) -> float:
    """Working bytes of the largest GEMM that quantises its operands (0 under bf16)."""
    per_element = QUANTISE_BYTES[setup.precision]
    T, D = setup.tokens, cfg.hidden_size
    per_expert = T * cfg.num_experts_per_tok / cfg.n_routed_experts  # routed experts run one GEMM each
    shapes = {  # (rows, reduced, columns) of each kind's widest GEMM
        "M": [(T, D, cfg.d_inner + cfg.conv_dim + cfg.mamba_num_heads)],
        "*": [(T, D, cfg.num_attention_heads * cfg.head_dim)],
        "-": [(T, D, cfg.intermediate_size)],
        "E": [(T, D, cfg.moe_shared_expert_intermediate_size), (per_expert, cfg.expert_dim, cfg.moe_intermediate_size)],
    }
    kinds = set(cfg.pattern + cfg.mtp_pattern * cfg.num_nextn_predict_layers)
    return max(per_element * (m * k + n * k) + F32 * m * n for kind in kinds for m, k, n in shapes[kind])


@dataclass(frozen=True)
class _Pieces:
    """Bytes of everything a rank may hold during the step (see the module docstring)."""

    params: int  # sharded float32 parameters; the gradients, once all reduced, are as big
    accumulated: int  # unsharded gradients of the earlier micro-batches
    root: int  # gathered root weights
    root_head_grads: int  # the root's gradients before the embedding's (the last of the step)
    root_reduce: int  # the root's reduce-scatter input
    block: int  # the largest block's gathered weights, and as much again for its unsharded gradients
    block_reduce: int  # its reduce-scatter input
    saved: dict[str, int]  # per block kind: what its blocks save
    inputs: dict[str, int]  # per block kind: their inputs (what checkpointing saves)
    head: int  # output head and loss, MTP depths' own layers
    head_weight_grads: int  # float32 gradients of the head's weight, kept by the fused losses until backward
    loss_chunk: int  # the fused loss's float32 logits, log-softmax and gradients of one chunk of tokens
    largest: int  # the most one block saves
    through_block: int  # gradients through one block: the incoming and outgoing ones of its widest activation
    in_block: dict[str, int]  # transients inside a block: all-to-all buffers, quantised GEMM operands
    allowance: int


def _pieces(cfg: HybridConfig, setup: PlanSetup) -> _Pieces:
    layout, E, T = param_layout(cfg), setup.expert_parallel, setup.tokens
    a, r = DTYPE_BYTES[setup.param_dtype], DTYPE_BYTES[setup.reduce_dtype]
    kinds = cfg.pattern + cfg.mtp_pattern * cfg.num_nextn_predict_layers
    per_token = {k: block_activations(k, cfg, act_dtype=setup.param_dtype, ssd_scan=setup.ssd_scan,
                                      seq_len=setup.seq_len) for k in KIND_NAMES if k in kinds}
    in_block = {}
    if E > 1 and "E" in kinds:
        in_block[f"MoE all-to-all send + receive (EP {E})"] = 2 * a * T * cfg.num_experts_per_tok * cfg.expert_dim
    if setup.precision != "bf16":
        in_block[f"{setup.precision} operands of the largest GEMM"] = int(_largest_quantised_gemm(cfg, setup))
    return _Pieces(
        params=layout.total * F32 // setup.world_size,
        # FSDP2 upcasts them to reduce_dtype (which is then what it holds) only when that differs from param_dtype
        accumulated=layout.gathered(E) * r if setup.grad_accum > 1 else 0,
        root=layout.root * a, root_head_grads=(layout.root - layout.embedding) * a, root_reduce=layout.root * r,
        block=layout.largest_block(E) * a, block_reduce=layout.largest_block(E) * r,
        saved={k: int(T * kinds.count(k) * v) for k, v in per_token.items()},
        inputs={k: T * kinds.count(k) * a * cfg.hidden_size for k in per_token},
        head=int(T * head_activations(cfg, act_dtype=setup.param_dtype)), head_weight_grads=head_weight_gradients(cfg),
        loss_chunk=loss_chunk_bytes(cfg, T),
        largest=int(T * max(per_token.values())),
        through_block=int(2 * T * max(_widest(k, cfg, a, setup.ssd_scan) for k in per_token)),
        in_block=in_block, allowance=setup.allowance,
    )


def _moments(p: _Pieces, world_size: int, checkpointing: bool) -> dict[str, Moment]:
    """The moments that can hold the most: the fused loss (every activation, one chunk of float32
    logits and their gradients), the backward of the first block it reaches (the output head's
    gradients, a block's own and its neighbour's reduce buffer; with checkpointing the largest
    block recomputed), the end of backward (every gradient sharded, the root's reduce-scatter
    running) and the optimizer step. Every moment lists the same rows."""
    acts = {f"{KIND_NAMES[k]} activations": n for k, n in (p.inputs if checkpointing else p.saved).items()}
    rows = {
        f"parameters (float32, 1/{world_size})": [p.params] * 4,
        f"gradients (float32, 1/{world_size})": [0, 0, p.params, p.params],
        "AdamW exp_avg + exp_avg_sq (float32)": [2 * p.params] * 4,
        "unsharded gradients of earlier micro-batches": [p.accumulated, p.accumulated, 0, 0],
        "gathered weights: root + blocks in flight": [p.root + p.block, p.root + 2 * p.block, p.root, 0],
        "unsharded gradients: root, a block, reduce buffers": [
            0, p.root_head_grads + p.block + p.block_reduce, p.root + p.root_reduce + p.block_reduce, 0],
        **{label: [n, n, 0, 0] for label, n in acts.items()},
        "output head and loss (fused: no logits kept)": [p.head + p.head_weight_grads, 0, 0, 0],
        "one block recomputed": [0, p.largest if checkpointing else 0, 0, 0],
        "one chunk of float32 logits in the fused loss": [p.loss_chunk, 0, 0, 0],
        "gradients through one block": [0, p.through_block, 0, 0],
        **{label: [0, n, 0, 0] for label, n in p.in_block.items()},
        "fixed allowance (CUDA context, NCCL, workspaces)": [p.allowance] * 4,
    }
    names = ("loss", "first block's backward", "end of backward", "optimizer step")
    return {name: Moment(name, {label: values[i] for label, values in rows.items()}) for i, name in enumerate(names)}


def plan_memory(cfg: HybridConfig, setup: PlanSetup) -> MemoryPlan:
    """Bytes per rank at each moment of one training step of `cfg` under `setup`."""
    if "E" in cfg.pattern and cfg.n_routed_experts % setup.expert_parallel:
        raise ValueError(f"expert parallel {setup.expert_parallel} must divide n_routed_experts {cfg.n_routed_experts}")
    pieces = _pieces(cfg, setup)
    return MemoryPlan(moments=_moments(pieces, setup.world_size, False),
                      moments_ac=_moments(pieces, setup.world_size, True))
