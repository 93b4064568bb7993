"""The streaming Parquet loader: a torch IterableDataset over a mixture, with exact resume.

`MixtureDataset` yields one packed window at a time:

    input_ids  int64 [L+1]   tokens; a model takes [:-1] as input and [1:] as labels
    doc_ids    int32 [L+1]   document index inside the window (non-decreasing from 0), the
                             `doc_ids_BT` that resets Mamba state and masks attention
    phase      int           mixture phase of the window

L is the seq_len of the window's phase. `MixtureLoader` stacks them into batches of the
phase's `micro_batch_size` (else its `batch_size`), one window shape per batch: where a
phase changes seq_len or micro_batch_size, a batch left incomplete by the old phase is
handed out short (training never sees one: `training.trainer.config.batch_schedule` puts
such boundaries where every worker's batches come out whole).

Each (rank, DataLoader worker) pair is one consumer of training.data.stream. Workers
prefetch, so their progress is not what training has consumed: `MixtureLoader` has every
batch carry its consumer's state and keeps the state of the last batch each worker
delivered. On resume, DataLoader worker 0 serves the consumer whose batch was due next
(DataLoader takes batches from its workers round robin), so the resumed run yields the
same batches in the same order as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from training.data.heldout import Holdout
from training.data.mixture import MixturePlan, load_mixture, plan_mixture
from training.data.stream import ConsumerStream

_STATE = "_stream_state"


class MixtureDataset(IterableDataset):
    """Packed windows of a mixture for data-parallel `rank` of `world_size`.

    Iterated directly (or with num_workers=0), `state_dict()` is the state after the last
    window yielded; with DataLoader workers, use `MixtureLoader`. Every `iter()` starts
    from the loaded state (the start, if none was loaded).
    """

    def __init__(self, plan: MixturePlan, *, rank: int = 0, world_size: int = 1, provenance: bool = False) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.plan, self.rank, self.world_size, self.provenance = plan, rank, world_size, provenance
        self._start: dict[int, dict] = {}
        self._progress: dict[int, dict] = {}
        self._rotation = 0  # set by MixtureLoader: which consumer DataLoader worker 0 serves
        self._attach_state = False

    def _consumer(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return self.rank * workers + (worker + self._rotation) % workers, self.world_size * workers

    def __iter__(self) -> Iterator[dict]:
        consumer, num_consumers = self._consumer()
        stream = ConsumerStream(self.plan, consumer=consumer, num_consumers=num_consumers,
                                state=self._start.get(consumer))
        while (window := stream.next_window()) is not None:
            state = stream.state_dict()
            self._progress[consumer] = state
            sample = {"input_ids": torch.from_numpy(window.tokens.astype(np.int64)),
                      "doc_ids": torch.from_numpy(window.doc_ids), "phase": window.phase}
            if self.provenance:
                sample["component_ids"] = torch.from_numpy(window.components)
                sample["docs"] = window.docs
            if self._attach_state:
                sample[_STATE] = {consumer: state}
            yield sample

    def state_dict(self) -> dict:
        return {"rank": self.rank, "world_size": self.world_size, "consumers": dict(self._progress)}

    def load_state_dict(self, state: dict) -> None:
        _check_same(state, rank=self.rank, world_size=self.world_size)
        self._start = {int(k): v for k, v in state["consumers"].items()}
        self._progress = dict(self._start)


def _check_same(state: dict, **expected: int) -> None:
    for key, value in expected.items():
        if state[key] != value:
            raise ValueError(f"loader state was saved with {key}={state[key]} but this run has {key}={value}; "
                             "resume with the same data-parallel size and DataLoader workers")


def collate_windows(samples: list[dict]) -> dict:
    """Stack windows into a batch; the consumer states ride along under a private key."""
    batch = {"input_ids": torch.stack([s["input_ids"] for s in samples]),
             "doc_ids": torch.stack([s["doc_ids"] for s in samples]),
             "phase": torch.tensor([s["phase"] for s in samples])}
    if "component_ids" in samples[0]:
        batch["component_ids"] = torch.stack([s["component_ids"] for s in samples])
        batch["docs"] = [s["docs"] for s in samples]
    states = {}
    for sample in samples:
        states.update(sample.get(_STATE, {}))
    if states:
        batch[_STATE] = states
    return batch


class _PhaseBatches(IterableDataset):
    """A MixtureDataset's windows collated into batches of their phase's size, one window shape
    per batch (collated inside the DataLoader workers, as automatic batching would)."""

    def __init__(self, dataset: MixtureDataset, batch_size: int) -> None:
        self.dataset = dataset
        self.shapes = [(p.seq_len, p.micro_batch_size or batch_size) for p in dataset.plan.phases]

    def __iter__(self) -> Iterator[dict]:
        pending: list[dict] = []
        for sample in self.dataset:
            shape = self.shapes[sample["phase"]]  # (seq_len, windows per batch)
            if pending and self.shapes[pending[0]["phase"]] != shape:
                yield collate_windows(pending)
                pending = []
            pending.append(sample)
            if len(pending) == shape[1]:
                yield collate_windows(pending)
                pending = []
        if pending:
            yield collate_windows(pending)


class MixtureLoader:
    """A DataLoader over a MixtureDataset whose `state_dict()` covers all its workers.

    `batch_size` is the windows per batch of the phases that do not set their own
    `micro_batch_size`."""

    def __init__(self, dataset: MixtureDataset, *, batch_size: int, num_workers: int = 0,
                 pin_memory: bool = False, prefetch_factor: int | None = None) -> None:
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.pin_memory, self.prefetch_factor = pin_memory, prefetch_factor
        self.batches = 0  # batches handed out since the start of training
        self.phase: str | None = None  # mixture phase of the last window handed out
        self._consumers: dict[int, dict] = {}

    def __iter__(self) -> Iterator[dict]:
        self.dataset._start = dict(self._consumers)
        self.dataset._rotation = self.batches % max(1, self.num_workers)
        self.dataset._attach_state = True
        loader = DataLoader(_PhaseBatches(self.dataset, self.batch_size), batch_size=None,
                            num_workers=self.num_workers, pin_memory=self.pin_memory,
                            prefetch_factor=self.prefetch_factor if self.num_workers else None)
        for batch in loader:
            self._consumers.update(batch.pop(_STATE))
            self.batches += 1
            self.phase = self.dataset.plan.phases[int(batch["phase"][-1])].name
            yield batch

    def state_dict(self) -> dict:
        return {"rank": self.dataset.rank, "world_size": self.dataset.world_size, "num_workers": self.num_workers,
                "batches": self.batches, "phase": self.phase, "consumers": dict(self._consumers)}

    def load_state_dict(self, state: dict) -> None:
        _check_same(state, rank=self.dataset.rank, world_size=self.dataset.world_size, num_workers=self.num_workers)
        phase = state.get("phase")  # states saved before phases were recorded have none
        names = [p.name for p in self.dataset.plan.phases]
        if phase is not None and phase not in names:
            raise ValueError(f"loader state was saved in mixture phase {phase!r}, which this mixture does not have "
                             f"(phases: {', '.join(names)}); resume with the mixture the run started with")
        self.batches, self.phase = state["batches"], phase
        self._consumers = {int(k): v for k, v in state["consumers"].items()}


def build_loader(mixture: str | Path, *, batch_size: int, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, tokens: int | None = None, holdout: float | None = None) -> MixtureLoader:
    """The trainer's entry point: a mixture YAML to a resumable loader for this rank
    (`batch_size` windows per batch unless a phase sets its `micro_batch_size`), reading
    none of the `holdout` share of documents held out for evaluation."""
    plan = plan_mixture(load_mixture(mixture), tokens)
    if holdout is not None:
        plan = plan.with_holdout(Holdout(holdout, held_out=False))
    return MixtureLoader(MixtureDataset(plan, rank=rank, world_size=world_size), batch_size=batch_size,
                         num_workers=num_workers)
