"""One consumer's deterministic stream of packed windows over a mixture (no torch here).

Consumers are (data-parallel rank, DataLoader worker) pairs, N in all. Every component's
row groups are its units; epoch e of a component is a seeded permutation of its units, and
the epochs laid end to end form one global sequence of units, of which consumer k reads
positions k, k + N, k + 2N, ... So within an epoch every unit, and every document in it,
goes to exactly one consumer, and a consumer never waits for another. Documents inside a
unit are read in a seeded order too.

Each consumer packs whole documents (each ending in EOS) back to back and cuts windows of
seq_len + 1 tokens that overlap by one token (Megatron's GPTDataset), so every token is a
label exactly once. Which component gives the next document is a deterministic weighted
schedule on tokens (Megatron's `build_blending_indices`, by tokens not samples): the
component furthest behind its share of the phase's tokens so far. Consumer k's j-th window
is global window j * N + k, and the phase of a window follows from its global index.

A phase may change seq_len (a long-context phase): from the phase's first window on, windows
hold its seq_len + 1 tokens. The packing does not restart: the document in progress at the
boundary goes on in the new phase's first window (which starts, as always, with the last
token of the window before), so no token is dropped or repeated. Its remaining tokens were
counted when it started, under the old phase's weights.

The state is a few integers per component (unit position, row) plus the window count and
phase, the phase's token counters and the position inside the document being packed:
restoring it continues with exactly the next token, on either side of a phase boundary (the
window count says which phase, and so which seq_len, comes next).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from training.data.mixture import Component, MixturePlan
from training.data.shards import RowGroupTokens, open_shard, read_row_group_tokens


@dataclass(frozen=True)
class DocRef:
    """Where a document came from: component, epoch, shard, row group, row among the selected."""

    component: int
    epoch: int
    shard: int
    row_group: int
    row: int


@dataclass(frozen=True)
class Window:
    """Its phase's seq_len + 1 tokens; `doc_ids` numbers the documents inside the window from 0."""

    tokens: np.ndarray  # int32 [L+1]
    doc_ids: np.ndarray  # int32 [L+1], non-decreasing
    components: np.ndarray  # int16 [L+1], component index of every token
    docs: list[DocRef]  # documents that start in this window
    phase: int


class ComponentReader:
    """One consumer's share of a component's documents, one row group in memory at a time."""

    def __init__(self, component: Component, *, index: int, seed: int, consumer: int, num_consumers: int,
                 eos_id: int | None) -> None:
        self.component, self.index = component, index
        self.units = [(s, rg) for s, shard in enumerate(component.shards) for rg in range(shard.num_row_groups)]
        self.seed_key = [seed, zlib.crc32(component.name.encode())]
        self.consumer, self.num_consumers, self.eos_id = consumer, num_consumers, eos_id
        self.position = 0  # this consumer's unit counter; global position = consumer + position * N
        self.row = 0  # next row in the current unit's read order
        self._files: dict[int, pq.ParquetFile] = {}
        self._permutation: tuple[int, np.ndarray] | None = None
        self._unit: tuple[int, RowGroupTokens, np.ndarray] | None = None

    def _locate(self, position: int) -> tuple[int, int]:
        """(epoch, unit index) of this consumer's `position`-th unit."""
        epoch, slot = divmod(self.consumer + position * self.num_consumers, len(self.units))
        if self._permutation is None or self._permutation[0] != epoch:
            rng = np.random.default_rng([*self.seed_key, epoch])
            self._permutation = (epoch, rng.permutation(len(self.units)))
        return epoch, int(self._permutation[1][slot])

    def _load(self, position: int) -> tuple[RowGroupTokens, np.ndarray]:
        if self._unit is None or self._unit[0] != position:
            epoch, unit = self._locate(position)
            shard, row_group = self.units[unit]
            if shard not in self._files:
                self._files[shard] = open_shard(self.component.shards[shard].path)
            tokens = read_row_group_tokens(self._files[shard], row_group, self.component.row_filter)
            order = np.random.default_rng([*self.seed_key, epoch, unit]).permutation(tokens.num_docs)
            self._unit = (position, tokens, order)
        return self._unit[1], self._unit[2]

    def doc_at(self, position: int, row: int) -> tuple[np.ndarray, DocRef]:
        tokens, order = self._load(position)
        epoch, unit = self._locate(position)
        shard, row_group = self.units[unit]
        doc = tokens.doc(int(order[row]))
        if not self.component.shards[shard].add_eos:
            doc = np.append(doc, np.int32(self.eos_id))
        return doc, DocRef(component=self.index, epoch=epoch, shard=shard, row_group=row_group, row=int(order[row]))

    def first_epoch(self) -> Iterator[tuple[np.ndarray, int | None]]:
        """This consumer's documents of epoch 0, once each in reading order, with the UTF-8 bytes of
        their text (None: the shard does not record them); an evaluation set is read this way."""
        for position in range(len(range(self.consumer, len(self.units), self.num_consumers))):
            tokens, order = self._load(position)
            for row in range(len(order)):
                doc, ref = self.doc_at(position, row)
                yield doc, None if tokens.n_bytes is None else int(tokens.n_bytes[ref.row])

    def next_doc(self) -> tuple[np.ndarray, DocRef, int, int]:
        """The next document, where it is from, and its (position, row); empty units are skipped."""
        while self.row >= len(self._load(self.position)[1]):
            self.position, self.row = self.position + 1, 0
        self.row += 1
        return *self.doc_at(self.position, self.row - 1), self.position, self.row - 1


@dataclass
class _Current:
    """The document being packed: its component, where it is, its tokens, the next offset."""

    component: int
    position: int
    row: int
    tokens: np.ndarray
    offset: int = 0


class ConsumerStream:
    """Windows of consumer `consumer` of `num_consumers`; `state_dict` resumes exactly."""

    def __init__(self, plan: MixturePlan, *, consumer: int, num_consumers: int, state: dict | None = None) -> None:
        self.plan, self.consumer, self.num_consumers = plan, consumer, num_consumers
        self.seq_lens = [p.seq_len for p in plan.phases]
        eos_ids = {s.eos_id for c in plan.components for s in c.shards}
        eos_id = next(iter(eos_ids)) if len(eos_ids) == 1 else None
        self.readers = [ComponentReader(c, index=i, seed=plan.config.seed, consumer=consumer,
                                        num_consumers=num_consumers, eos_id=eos_id)
                        for i, c in enumerate(plan.components)]
        self.weights_PC = np.array([[p.weights[c.name] for c in plan.components] for p in plan.phases])
        self.phase_ends = plan.phase_end_windows()
        self.window = 0
        self.phase = 0
        self.taken = np.zeros(len(self.readers), dtype=np.int64)  # tokens per component in this phase
        self.current: _Current | None = None
        if state is not None:
            self.load_state_dict(state)

    def _phase_of(self, window: int) -> int | None:
        for p, end in enumerate(self.phase_ends):
            if end is None or window < end:
                return p
        return None

    def _choose(self) -> int:
        """The component furthest behind its token share in this phase."""
        weights = self.weights_PC[self.phase]
        behind = weights * (self.taken.sum() + 1) - self.taken
        return int(np.argmax(np.where(weights > 0, behind, -np.inf)))

    def next_window(self) -> Window | None:
        """The next window, or None when the last phase's budget is spent."""
        phase = self._phase_of(self.window * self.num_consumers + self.consumer)
        if phase is None:
            return None
        if phase != self.phase:
            self.phase, self.taken[:] = phase, 0
        size = self.seq_lens[phase] + 1
        tokens = np.empty(size, dtype=np.int32)
        doc_ids = np.empty(size, dtype=np.int32)
        components = np.empty(size, dtype=np.int16)
        docs, filled, doc_index = [], 0, 0
        while filled < size:
            if self.current is None:
                docs.append(self._start_document())
            current = self.current
            take = min(size - filled, len(current.tokens) - current.offset)
            tokens[filled:filled + take] = current.tokens[current.offset:current.offset + take]
            doc_ids[filled:filled + take] = doc_index
            components[filled:filled + take] = current.component
            filled, current.offset = filled + take, current.offset + take
            if current.offset == len(current.tokens) and filled < size:
                self.current, doc_index = None, doc_index + 1
        self.current.offset -= 1  # the next window starts with this window's last token
        self.window += 1
        return Window(tokens=tokens, doc_ids=doc_ids, components=components, docs=docs, phase=self.phase)

    def _start_document(self) -> DocRef:
        component = self._choose()
        doc, ref, position, row = self.readers[component].next_doc()
        self.taken[component] += len(doc)
        self.current = _Current(component=component, position=position, row=row, tokens=doc)
        return ref

    def state_dict(self) -> dict:
        current = self.current
        return {
            "consumer": self.consumer, "num_consumers": self.num_consumers,
            "window": self.window, "phase": self.phase, "taken": self.taken.tolist(),
            "cursors": [[r.position, r.row] for r in self.readers],
            "current": None if current is None else [current.component, current.position, current.row, current.offset],
        }

    def load_state_dict(self, state: dict) -> None:
        if (state["consumer"], state["num_consumers"]) != (self.consumer, self.num_consumers):
            raise ValueError(f"state of consumer {state['consumer']} of {state['num_consumers']} cannot resume "
                             f"consumer {self.consumer} of {self.num_consumers}: keep world size and workers")
        if len(state["cursors"]) != len(self.readers):
            raise ValueError("state has a different number of mixture components")
        self.window, self.phase = state["window"], state["phase"]
        self.taken = np.array(state["taken"], dtype=np.int64)
        for reader, (position, row) in zip(self.readers, state["cursors"]):
            reader.position, reader.row = position, row
        self.current = None
        if state["current"] is not None:
            component, position, row, offset = state["current"]
            doc = self.readers[component].doc_at(position, row)[0]
            self.current = _Current(component=component, position=position, row=row, tokens=doc, offset=offset)
