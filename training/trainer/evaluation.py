"""Held-out evaluation during training: loss and bits per byte on fixed windows of each set.

The sets are token shards named in `eval.sets` and, with `eval.holdout`, the held-out documents
of every mixture component (`training.data.heldout`; the training stream reads none of them).
A set's windows are made once, at start-up: its documents in a fixed order (the mixture
reader's, under seed EVAL_SEED, first epoch only) packed as training packs them: whole
documents ending in EOS back to back, cut into seq_len + 1 windows overlapping by one token,
document ids restarting at 0 in each window. Nothing in them depends on the rank, the world
size or the step, so a resumed run repeats the numbers at the same steps.

The windows go in batches of `eval.batch_size`, and rank r of N evaluates batches r, r + N, ...
Every rank runs the same number of forward passes (FSDP gathers parameters in each; a rank out
of batches evaluates batch 0 again and drops it). Each batch's summed NLL lands in its own slot
of a vector that is all-reduced, and the slots are added in one fixed order with `math.fsum`,
so the numbers do not change with the world size.

    loss = NLL / label tokens                  nats per token
    bpb  = NLL / (ln 2 x label bytes)          bits per UTF-8 byte, comparable across tokenizers

The label bytes are those of the text the labels cover: each token of a document carries an
equal share of its document's `n_bytes` (EOS included), so a document inside the windows counts
all its bytes and the one cut by the last window its share.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from training.data.heldout import Holdout
from training.data.mixture import Component, ComponentSpec, MixtureConfig, MixtureError, MixturePlan, resolve_components
from training.data.stream import ComponentReader
from training.model.balancing import moe_layers
from training.trainer.config import EvalSection, TrainConfigError
from training.trainer.distributed import DistInfo

log = logging.getLogger(__name__)

#: seed of every set's document order: the same windows whatever the mixture's or the run's seed
EVAL_SEED = 0


@dataclass(frozen=True)
class EvalSet:
    """A set's fixed windows (W windows of L + 1 tokens, L = seq_len) and the bytes their labels cover."""

    name: str
    tokens_WL: np.ndarray  # int32
    doc_ids_WL: np.ndarray  # int32, from 0 in each window
    label_bytes: float | None  # None: the shards record no `n_bytes`, so no bits per byte

    @property
    def label_tokens(self) -> int:
        return self.tokens_WL.shape[0] * (self.tokens_WL.shape[1] - 1)


def pack_windows(docs: Iterable[tuple[np.ndarray, int | None]], *, seq_len: int,
                 windows: int) -> tuple[np.ndarray, np.ndarray, float | None]:
    """At most `windows` windows of seq_len + 1 tokens of `docs` (tokens, UTF-8 bytes or None)
    packed back to back: (tokens, document ids, bytes the labels cover or None)."""
    need = windows * seq_len + 1
    tokens, doc_index, byte_shares, have, bytes_known = [], [], [], 0, True
    for index, (doc, n_bytes) in enumerate(docs):
        tokens.append(doc)
        doc_index.append(np.full(len(doc), index, dtype=np.int32))
        byte_shares.append(np.full(len(doc), (n_bytes or 0) / len(doc)))
        bytes_known &= n_bytes is not None
        have += len(doc)
        if have >= need:
            break
    count = min(windows, (have - 1) // seq_len) if have else 0
    if count == 0:
        return np.empty((0, seq_len + 1), np.int32), np.empty((0, seq_len + 1), np.int32), None
    positions_WL = np.arange(count)[:, None] * seq_len + np.arange(seq_len + 1)
    docs_WL = np.concatenate(doc_index)[positions_WL]
    label_bytes = float(np.concatenate(byte_shares)[1:count * seq_len + 1].sum()) if bytes_known else None
    return np.concatenate(tokens)[positions_WL], docs_WL - docs_WL[:, :1], label_bytes


def _read_set(name: str, component: Component, *, seq_len: int, windows: int) -> EvalSet:
    reader = ComponentReader(component, index=0, seed=EVAL_SEED, consumer=0, num_consumers=1,
                             eos_id=component.shards[0].eos_id)
    tokens_WL, doc_ids_WL, label_bytes = pack_windows(reader.first_epoch(), seq_len=seq_len, windows=windows)
    return EvalSet(name=name, tokens_WL=tokens_WL, doc_ids_WL=doc_ids_WL, label_bytes=label_bytes)


def _shard_component(name: str, paths: list[str], seq_len: int) -> Component:
    config = MixtureConfig(seq_len=seq_len, components={name: ComponentSpec(paths=paths, weight=1.0)})
    try:
        return resolve_components(config)[0]
    except MixtureError as err:
        raise TrainConfigError(f"eval.sets.{name}: {err}") from None


def build_eval_sets(cfg: EvalSection, plan: MixturePlan, *, vocab_size: int) -> list[EvalSet]:
    """Every set's windows of the mixture's seq_len: the held-out documents of each component
    (a component with too few of them for one window is left out), then the named shard sets
    (one too small for a window is an error)."""
    seq_len = plan.config.seq_len
    sets = []
    if cfg.holdout is not None:
        for component in plan.with_holdout(Holdout(cfg.holdout, held_out=True)).components:
            held_out = _read_set(component.name, component, seq_len=seq_len, windows=cfg.windows)
            if held_out.label_tokens:
                sets.append(held_out)
    for name, paths in cfg.sets.items():
        if cfg.holdout is not None and name in plan.config.components:
            raise TrainConfigError(f"eval.sets.{name}: a mixture component has this name (its held-out set's); "
                                   "rename the set")
        named = _read_set(name, _shard_component(name, paths, seq_len), seq_len=seq_len, windows=cfg.windows)
        if not named.label_tokens:
            raise TrainConfigError(f"eval.sets.{name}: its shards hold fewer tokens than one window of {seq_len + 1}")
        sets.append(named)
    if not sets:
        raise TrainConfigError(f"eval.holdout: no mixture component has held-out documents for one window of "
                               f"{seq_len + 1} tokens; hold out a larger share")
    for s in sets:
        if s.tokens_WL.max() >= vocab_size:
            raise TrainConfigError(f"eval set {s.name!r} has token id {s.tokens_WL.max()} but the model's vocab_size "
                                   f"is {vocab_size}: tokenize it with the mixture's tokenizer")
    return sets


class Evaluator:
    """Evaluates a model on fixed sets, each rank its share of the batches."""

    def __init__(self, sets: list[EvalSet], *, batch_size: int, dist_info: DistInfo, document_boundaries: bool) -> None:
        self.sets, self.batch_size, self.dist, self.document_boundaries = sets, batch_size, dist_info, document_boundaries

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """`eval/SET/loss` and `eval/SET/bpb` of every set, the same on every rank. The model
        leaves in training mode with its MoE load counts (which balance the routers) untouched."""
        loads = {name: moe.expert_load.clone() for name, moe in moe_layers(model).items()}
        model.eval()
        try:
            with torch.no_grad():
                return {key: value for s in self.sets for key, value in self._evaluate_set(model, s).items()}
        finally:
            model.train()
            for name, moe in moe_layers(model).items():
                moe.expert_load.copy_(loads[name])

    def _evaluate_set(self, model: nn.Module, eval_set: EvalSet) -> dict[str, float]:
        starts = range(0, len(eval_set.tokens_WL), self.batch_size)
        nll_J = torch.zeros(len(starts), dtype=torch.float64, device=self.dist.device)
        rounds = math.ceil(len(starts) / self.dist.world_size)
        for batch in range(self.dist.rank, rounds * self.dist.world_size, self.dist.world_size):
            nll = self._batch_nll(model, eval_set, starts[batch if batch < len(starts) else 0])
            if batch < len(starts):
                nll_J[batch] = nll
        dist.all_reduce(nll_J)
        nll = math.fsum(nll_J.tolist())
        metrics = {f"eval/{eval_set.name}/loss": nll / eval_set.label_tokens}
        if eval_set.label_bytes:
            metrics[f"eval/{eval_set.name}/bpb"] = nll / (math.log(2) * eval_set.label_bytes)
        return metrics

    def _batch_nll(self, model: nn.Module, eval_set: EvalSet, start: int) -> torch.Tensor:
        """Summed NLL (nats, float64) of windows start .. start + batch_size."""
        window_BL = torch.from_numpy(eval_set.tokens_WL[start:start + self.batch_size]).long().to(self.dist.device)
        doc_ids_BL = torch.from_numpy(eval_set.doc_ids_WL[start:start + self.batch_size]).to(self.dist.device)
        out = model(window_BL[:, :-1], doc_ids_BT=doc_ids_BL[:, :-1] if self.document_boundaries else None,
                    labels_BT=window_BL[:, 1:], return_logits=False)
        return out.lm_loss.double() * window_BL[:, 1:].numel()


def build_evaluator(cfg: EvalSection, plan: MixturePlan, *, dist_info: DistInfo, vocab_size: int,
                    document_boundaries: bool) -> Evaluator:
    """The evaluator of `cfg`'s sets over the training mixture `plan`."""
    sets = build_eval_sets(cfg, plan, vocab_size=vocab_size)
    if dist_info.is_main:
        log.info("eval every %d steps: %s", cfg.every_steps, ", ".join(f"{s.name} ({len(s.tokens_WL)} windows)" for s in sets))
        if cfg.holdout is not None:
            for missing in [c.name for c in plan.components if all(s.name != c.name for s in sets)]:
                log.warning("eval: component %r has too few held-out documents for one window; not evaluated", missing)
        for s in sets:
            if s.label_bytes is None:
                log.warning("eval set %r: its shards record no n_bytes (tokenized before they did): loss only, no "
                            "bits per byte; tokenize them again for it", s.name)
    return Evaluator(sets, batch_size=cfg.batch_size, dist_info=dist_info, document_boundaries=document_boundaries)
