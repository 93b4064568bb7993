"""The training loop: micro-batches from the mixture loader, token-normalised loss, clipping,
AdamW, MoE router-bias balancing, non-finite step skipping, checkpoints and metrics.

Each optimizer step takes `grad_accum` micro-batches per rank. The loss each rank backprops
is its micro-batch's mean loss weighted by that micro-batch's label tokens over the step's
label tokens on all ranks (times the world size, which FSDP's gradient averaging divides
out), so the gradient is that of the mean loss over every token of the global batch.
Gradients are reduce-scattered once per step (`set_requires_gradient_sync` holds back the
reductions of earlier micro-batches).

`Trainer.step` reads nothing back to the host (no `.item()`, no data-dependent branch), so the
host can queue the next step's kernels while the device runs this one: the loss weights are
device tensors, a non-finite step is skipped by fused AdamW itself (`found_inf`), and the
router-bias update is masked on the device. `train_step` then copies the step's numbers for
the log in one transfer. (With `parallel.expert_parallel` > 1 every MoE layer reads its
all-to-all sizes on the host: expert_parallel.py.)
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from training.data import MixturePlan, build_loader
from training.model.balancing import moe_layers, update_router_bias
from training.model.config import HybridConfig
from training.model.flops import training_flops_per_token
from training.precision import set_forward_bf16
from training.trainer.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.trainer.config import TrainConfig, TrainConfigError, batch_schedule
from training.trainer.distributed import DistInfo, all_reduce_sum, close_distributed, init_distributed
from training.trainer.evaluation import Evaluator, build_evaluator
from training.trainer.expert_parallel import clip_grad_norm_
from training.trainer.metrics import MetricsLogger, peak_tflops
from training.trainer.optim import build_optimizer, build_scheduler
from training.trainer.parallel import build_model

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient."""


@dataclass
class TrainResult:
    out: Path
    steps: int
    tokens: int
    final_loss: float | None
    skipped_steps: int
    checkpoint: Path | None
    final_eval: dict[str, float]  # eval/SET/loss and eval/SET/bpb of the last evaluation ({} without one)


@dataclass
class StepTensors:
    """What one optimizer step leaves on the device for the log."""

    losses: dict[str, torch.Tensor]  # lm_loss (and mtp_loss, aux_loss): float64 means over the global batch
    step_tokens: torch.Tensor  # label tokens of the global batch
    grad_norm: torch.Tensor
    finite: torch.Tensor  # bool: the update was applied
    expert_loads: dict[str, torch.Tensor]  # (E,) tokens per expert, per MoE layer


def _expert_load_stats(loads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-layer load relative to the layer's mean: the smallest, the largest, the mean CV."""
    if not loads:
        return {}
    rel_LE = torch.stack([load / load.mean().clamp(min=1e-9) for load in loads.values()])
    return {"expert_load_min": rel_LE.min(), "expert_load_max": rel_LE.max(),
            "expert_load_cv": rel_LE.std(1, unbiased=False).mean()}


def check_vocabulary(plan: MixturePlan, model_cfg: HybridConfig) -> str | None:
    """Refuse token ids the embedding cannot hold; the tokenizer directory, if the shards agree on one."""
    shards = [shard for component in plan.components for shard in component.shards]
    vocab = max((shard.vocab_size or 0) for shard in shards)
    if vocab > model_cfg.vocab_size:
        raise TrainConfigError(f"the mixture's tokenizer has {vocab} tokens but the model's vocab_size is "
                               f"{model_cfg.vocab_size}; set model.overrides.vocab_size to at least {vocab}")
    tokenizers = {shard.tokenizer for shard in shards}
    return tokenizers.pop() if len(tokenizers) == 1 else None


class Trainer:
    def __init__(self, cfg: TrainConfig, *, resume: bool = False) -> None:
        self.cfg = cfg
        self.dist: DistInfo = init_distributed()
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.out = Path(cfg.out)
        self.model_cfg = cfg.model.hybrid_config()
        budget = cfg.data.tokens or cfg.max_steps * cfg.batch.global_batch_tokens
        self.loader = build_loader(cfg.data.mixture, batch_size=cfg.batch.micro_batch_size, rank=self.dist.rank,
                                   world_size=self.dist.world_size, num_workers=cfg.data.num_workers, tokens=budget,
                                   holdout=cfg.eval.holdout)
        tokenizer = check_vocabulary(self.loader.dataset.plan, self.model_cfg)
        self.checkpoint_meta = {"model_config": asdict(self.model_cfg), "train_config": cfg.model_dump(mode="json"),
                                "tokenizer": tokenizer}
        self.batch_schedule = batch_schedule(cfg, self.loader.dataset.plan, world_size=self.dist.world_size)
        self.evaluator: Evaluator | None = None
        if cfg.eval.enabled:
            self.evaluator = build_evaluator(cfg.eval, self.loader.dataset.plan, dist_info=self.dist,
                                             vocab_size=self.model_cfg.vocab_size,
                                             document_boundaries=cfg.data.document_boundaries)
        self.model, self.formats = build_model(cfg, self.model_cfg, self.dist.device)
        self.optimizer = build_optimizer(self.model, cfg.optimizer)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, max_steps=cfg.max_steps,
                                         min_ratio=cfg.optimizer.min_lr_ratio)
        self.state: dict[str, Any] = {"step": 0, "tokens": 0, "skipped_total": 0, "skipped_in_row": 0}
        self.resumed_from: Path | None = None
        if resume and (path := latest_checkpoint(self.out / "checkpoints")) is not None:
            self.state, loader_state = load_checkpoint(path, model=self.model, optimizer=self.optimizer,
                                                       scheduler=self.scheduler, holdout=cfg.eval.holdout)
            self.loader.load_state_dict(loader_state)
            self.resumed_from = path
        self.flops_per_token = {phase.seq_len: training_flops_per_token(self.model_cfg, phase.seq_len)
                                for phase in self.batch_schedule.phases}

    @property
    def grad_accum(self) -> int:
        """Micro-batches per rank in the next optimizer step: its mixture phase's."""
        return self.batch_schedule.at_step(self.state["step"]).grad_accum

    # -- one optimizer step -------------------------------------------------------------
    def _forward_backward(self, micro_batches: list[dict]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Backward of every micro-batch; (mean losses over the global batch, its label tokens)."""
        device = self.dist.device
        label_tokens = torch.tensor([b["input_ids"][:, 1:].numel() for b in micro_batches], dtype=torch.float64)
        step_tokens = all_reduce_sum(label_tokens.sum().to(device))
        weights = label_tokens.to(device) / step_tokens  # each micro-batch's share of the global batch
        loss_scales = (weights * self.dist.world_size).float()
        sums = {"lm_loss": torch.zeros((), dtype=torch.float64, device=device)}
        for index, batch in enumerate(micro_batches):
            self.model.set_requires_gradient_sync(index == len(micro_batches) - 1)
            window = batch["input_ids"].to(device)
            doc_ids = batch["doc_ids"][:, :-1].to(device) if self.cfg.data.document_boundaries else None
            out = self.model(window[:, :-1], doc_ids_BT=doc_ids, labels_BT=window[:, 1:], return_logits=False)
            (out.loss * loss_scales[index]).backward()
            for name in ("lm_loss", "mtp_loss", "aux_loss"):
                value = getattr(out, name)
                if value is not None:
                    sums[name] = sums.get(name, 0) + value.detach().double() * weights[index]
        names = sorted(sums)
        totals = all_reduce_sum(torch.stack([sums[n] for n in names]))
        return dict(zip(names, totals)), step_tokens

    def _clip(self) -> torch.Tensor:
        return clip_grad_norm_(self.model.parameters(), self.cfg.optimizer.grad_clip or float("inf"))

    def _optimizer_step(self, finite: torch.Tensor) -> None:
        """AdamW unless `finite` is false. Fused AdamW takes the decision on the device: with
        `found_inf` set (as a GradScaler sets it) it leaves parameters, moments and step counts
        alone. The foreach and for-loop kernels cannot: there the flag goes to the host."""
        if self.optimizer.defaults.get("fused"):
            self.optimizer.found_inf = (~finite).float()
            self.optimizer.step()
        elif finite.item():
            self.optimizer.step()

    def _balance_experts(self, finite: torch.Tensor) -> dict[str, torch.Tensor]:
        for moe in moe_layers(self.model).values():
            torch.distributed.all_reduce(moe.expert_load)
        return update_router_bias(self.model, apply=finite)

    def step(self, micro_batches: list[dict]) -> StepTensors:
        """One optimizer step (forward, backward, clipping, AdamW, router-bias update, LR
        schedule) without reading anything back to the host. A step whose loss or gradient norm
        is not finite changes no parameter, moment or router bias."""
        losses, step_tokens = self._forward_backward(micro_batches)
        grad_norm = self._clip()
        finite = losses["lm_loss"].isfinite() & grad_norm.isfinite()
        self._optimizer_step(finite)
        loads = self._balance_experts(finite)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepTensors(losses=losses, step_tokens=step_tokens, grad_norm=grad_norm, finite=finite,
                           expert_loads=loads)

    def train_step(self, micro_batches: list[dict]) -> dict[str, Any]:
        """`step`, then the bookkeeping and the log record, from one device-to-host copy."""
        started = time.perf_counter()
        lr = self.scheduler.get_last_lr()[0]
        out = self.step(micro_batches)
        device_values = {**out.losses, "grad_norm": out.grad_norm, "finite": out.finite,
                         "step_tokens": out.step_tokens, **_expert_load_stats(out.expert_loads)}
        values = dict(zip(device_values, torch.stack([v.double() for v in device_values.values()]).tolist()))
        if values.pop("finite"):
            self.state["skipped_in_row"] = 0
        else:
            self.state["skipped_total"] += 1
            self.state["skipped_in_row"] += 1
            values = {k: v for k, v in values.items() if not k.startswith("expert_load")}
        self.state["step"] += 1
        step_tokens = int(values.pop("step_tokens"))
        self.state["tokens"] += step_tokens
        seconds = time.perf_counter() - started
        record = {"step": self.state["step"], "loss": values.pop("lm_loss"), "lr": lr, "grad_norm": values.pop("grad_norm"),
                  "tokens": self.state["tokens"], "tokens_per_s": step_tokens / seconds, "step_seconds": seconds,
                  "skipped_steps": self.state["skipped_total"], "phase": int(micro_batches[-1]["phase"][-1])}
        record |= values
        if self.state["skipped_in_row"] > self.cfg.max_skipped_steps:
            raise NonFiniteLossError(
                f"step {self.state['step']}: {self.state['skipped_in_row']} steps in a row had a non-finite loss or "
                f"gradient (loss {record['loss']}, grad norm {record['grad_norm']}); lower optimizer.lr or check the data")
        return record

    # -- the run ------------------------------------------------------------------------
    def _save(self) -> Path:
        return save_checkpoint(self.out / "checkpoints", step=self.state["step"], model=self.model,
                               optimizer=self.optimizer, scheduler=self.scheduler, trainer_state=dict(self.state),
                               loader_state=self.loader.state_dict(),
                               meta=self.checkpoint_meta | {"phase": self.loader.phase},
                               keep_last=self.cfg.checkpoint.keep_last)

    def _evaluate(self) -> dict[str, float]:
        """The eval sets' metrics (the same on every rank) and the seconds they took."""
        started = time.perf_counter()
        metrics = self.evaluator.evaluate(self.model)
        return metrics | {"eval_seconds": time.perf_counter() - started}

    def run(self, max_steps: int | None = None) -> TrainResult:
        """Train until `cfg.max_steps` (or stop early after `max_steps` in total, for tests and
        staged runs); checkpoints every `checkpoint.every_steps` and at the end; evaluates every
        `eval.every_steps` and at `cfg.max_steps` (not at an early stop: a staged run logs what
        an uninterrupted one does)."""
        cfg, is_main = self.cfg, self.dist.is_main
        stop_at = min(cfg.max_steps, max_steps or cfg.max_steps)
        if is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
            shapes = ", ".join(f"{p.name}: {p.grad_accum} x {p.micro_batch_size} x {p.seq_len}"
                               for p in self.batch_schedule.phases)
            log.info("training %s (%s) on %d rank(s), micro-batches x windows x tokens per step (%s), %s",
                     cfg.model.preset, cfg.precision.recipe, self.dist.world_size, shapes,
                     f"resumed at step {self.state['step']}" if self.resumed_from else "from step 0")
            counts = Counter(self.formats.values())
            log.info("layer formats: %s", ", ".join(f"{n} {fmt}" for fmt, n in sorted(counts.items())))
            (self.out / "layer_formats.json").write_text(json.dumps(self.formats, indent=1))
        peak = peak_tflops(self.dist.device, cfg.logging.peak_tflops)
        metrics = MetricsLogger(self.out, enabled=is_main, tensorboard=cfg.logging.tensorboard,
                                progress_bar=cfg.logging.progress_bar, total_steps=cfg.max_steps,
                                start_step=self.state["step"])
        switch_step = cfg.precision.forward_bf16_from_step(cfg.max_steps)
        batches = iter(self.loader)
        record: dict[str, Any] | None = None
        final_eval: dict[str, float] = {}
        checkpoint = self.resumed_from
        try:
            while self.state["step"] < stop_at:
                if switch_step is not None and self.state["step"] >= switch_step:
                    set_forward_bf16(self.model, True)
                micro_batches = [next(batches, None) for _ in range(self.grad_accum)]
                if micro_batches[-1] is None:
                    log.warning("the mixture ran out of data at step %d", self.state["step"])
                    break
                record = self.train_step(micro_batches)
                record["seq_len"] = micro_batches[0]["input_ids"].shape[1] - 1
                record["mfu"] = (record["tokens_per_s"] / self.dist.world_size * self.flops_per_token[record["seq_len"]]
                                 / (peak * 1e12))
                evaluate = self.evaluator is not None and (record["step"] % cfg.eval.every_steps == 0
                                                           or record["step"] == cfg.max_steps)
                if evaluate:
                    record |= self._evaluate()
                    final_eval = {k: v for k, v in record.items() if k.startswith("eval/")}
                if record["step"] % cfg.logging.every_steps == 0 or record["step"] == stop_at or evaluate:
                    metrics.log(record)
                if record["step"] % cfg.checkpoint.every_steps == 0 or record["step"] == stop_at:
                    checkpoint = self._save()
        finally:
            metrics.close()
        return TrainResult(out=self.out, steps=self.state["step"], tokens=self.state["tokens"],
                           final_loss=None if record is None else record["loss"],
                           skipped_steps=self.state["skipped_total"], checkpoint=checkpoint, final_eval=final_eval)


def train(cfg: TrainConfig, *, resume: bool = False, max_steps: int | None = None) -> TrainResult:
    """Run training in this process (rank of a torchrun job, or a single process)."""
    try:
        return Trainer(cfg, resume=resume).run(max_steps)
    finally:
        close_distributed()
