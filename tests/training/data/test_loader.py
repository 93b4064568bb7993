"""The streaming loader: packing, token-accurate proportions, epochs, phases and exact resume."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from mixture_texts import THREE_COMPONENTS

from training.data import ConsumerStream, MixtureDataset, MixtureLoader, load_mixture, plan_mixture

ONE_PHASE = "phases:\n  - {name: all, weights: {handbook: 0.5, postgres: 0.3, synthetic: 0.2}}\n"
TWO_PHASES = ("phases:\n  - {name: first, tokens: 100000, weights: {handbook: 1.0}}\n"
              "  - {name: second, weights: {postgres: 0.5, synthetic: 0.5}}\n")
LONG_CONTEXT = ("phases:\n  - {name: short, tokens: 5120, weights: {handbook: 0.5, postgres: 0.5}}\n"
                "  - {name: long, seq_len: 512, micro_batch_size: 1, weights: {handbook: 0.2, synthetic: 0.8}}\n")


def windows(plan, *, consumer: int = 0, num_consumers: int = 1, count: int):
    stream = ConsumerStream(plan, consumer=consumer, num_consumers=num_consumers)
    return [stream.next_window() for _ in range(count)]


def read_doc(plan, ref) -> list[int]:
    """Slow twin of the reader: the `ref.row`-th selected document of a row group, by pylist."""
    component = plan.components[ref.component]
    rows = pq.ParquetFile(component.shards[ref.shard].path).read_row_group(ref.row_group).to_pylist()
    selected = [r for r in rows if all(getattr(component.row_filter, name) is None
                                       or r[column] in getattr(component.row_filter, name)
                                       for name, column in (("sources", "source"), ("quality_levels", "quality_level"),
                                                            ("synthetic_kinds", "synthetic_kind")))]
    return selected[ref.row]["input_ids"]


def assert_packed(plan, out) -> None:
    """One consumer's windows are its documents back to back, each document once: a window holds
    its phase's seq_len + 1 tokens and starts with the last token of the one before."""
    stream = [t for w in out for ref in w.docs for t in read_doc(plan, ref)]
    eos = plan.components[0].shards[0].eos_id
    start = 0
    for w in out:
        seq_len = plan.phases[w.phase].seq_len
        assert w.tokens.tolist() == stream[start:start + seq_len + 1]
        assert w.doc_ids[0] == 0 and np.all(np.diff(w.doc_ids) >= 0)
        ends = np.flatnonzero(w.tokens[:-1] == eos)  # a new document starts right after every EOS
        assert np.array_equal(np.flatnonzero(np.diff(w.doc_ids)), ends)
        start += seq_len
    refs = [(r.component, r.epoch, r.shard, r.row_group, r.row) for w in out for r in w.docs]
    assert len(set(refs)) == len(refs)


def test_windows_are_whole_documents_back_to_back(mixture_file):
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + ONE_PHASE)))
    out = windows(plan, count=60)
    assert [len(w.tokens) for w in out] == [129] * 60
    assert_packed(plan, out)


def test_long_context_phase_packs_the_same_stream_into_longer_windows(mixture_file):
    """40 windows of 128 tokens, then 30 of 512, over 2 consumers: each consumer's document in
    progress at the boundary goes on in its first long window; nothing is dropped or repeated."""
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + LONG_CONTEXT)), tokens=40 * 128 + 30 * 512)
    assert plan.phase_end_windows() == [40, 70]
    for consumer in range(2):
        out = list(iter(ConsumerStream(plan, consumer=consumer, num_consumers=2).next_window, None))
        assert [(w.phase, len(w.tokens)) for w in out] == [(0, 129)] * 20 + [(1, 513)] * 15
        assert_packed(plan, out)
        eos = plan.components[0].shards[0].eos_id
        assert out[19].tokens[-1] == out[20].tokens[0] != eos  # the boundary cuts a document
        assert {r.component for w in out[:20] for r in w.docs} == {0, 1}
        assert {r.component for w in out[20:] for r in w.docs} == {0, 2}  # the long phase's weights


def test_realised_proportions_within_one_percent_over_1m_tokens(mixture_file):
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS.replace("seq_len: 128", "seq_len: 1024") + ONE_PHASE)))
    counts = Counter()
    for w in windows(plan, count=1_000_000 // 1024 + 1):
        counts.update(w.components[1:].tolist())  # the first token of a window is the last of the one before
    total = sum(counts.values())
    assert total >= 1_000_000
    for index, weight in enumerate((0.5, 0.3, 0.2)):
        assert abs(counts[index] / total - weight) < 0.01 * weight, (index, counts[index] / total)


def test_every_document_once_per_epoch_across_ranks_and_workers(mixture_file):
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + ONE_PHASE)))
    seen = defaultdict(list)  # (component, epoch) -> documents
    for consumer in range(4):  # 2 ranks x 2 workers
        stream = ConsumerStream(plan, consumer=consumer, num_consumers=4)
        reached_epoch1 = set()  # once there, this consumer has read all its epoch-0 units
        while len(reached_epoch1) < len(plan.components):
            for ref in stream.next_window().docs:
                seen[ref.component, ref.epoch].append((consumer, ref.shard, ref.row_group, ref.row))
                if ref.epoch >= 1:
                    reached_epoch1.add(ref.component)
    for component in plan.components:
        index = plan.components.index(component)
        epoch0 = [doc[1:] for doc in seen[index, 0]]
        assert len(epoch0) == len(set(epoch0)) == component.docs, component.name
        assert len({doc[0] for doc in seen[index, 0]}) == 4  # every consumer took a share
        epoch1 = [doc[1:] for doc in seen[index, 1]]
        assert len(epoch1) == len(set(epoch1))
        assert [d[1:] for d in seen[index, 1]] != epoch0[:len(epoch1)]  # a new order each epoch


def test_phases_switch_at_their_token_counts(mixture_file):
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + TWO_PHASES)), tokens=200_000)
    boundary = 100_000 // 128
    by_window = {}
    for consumer in range(4):
        for j, w in enumerate(windows(plan, consumer=consumer, num_consumers=4, count=390)):
            by_window[j * 4 + consumer] = w
    assert sorted(by_window) == list(range(1560))
    assert all(w.phase == (g >= boundary) for g, w in by_window.items())
    assert sum(w.phase == 0 for w in by_window.values()) == boundary
    started = {phase: Counter(r.component for w in by_window.values() if w.phase == phase for r in w.docs)
               for phase in (0, 1)}
    assert set(started[0]) == {0}
    assert set(started[1]) == {1, 2} and abs(started[1][1] - started[1][2]) < 0.2 * started[1][1]
    last = ConsumerStream(plan, consumer=0, num_consumers=1)
    assert sum(1 for _ in iter(last.next_window, None)) == 200_000 // 128  # the budget ends the stream


def _loaders(plan, workers: int, state: list[dict] | None = None) -> list[MixtureLoader]:
    loaders = [MixtureLoader(MixtureDataset(plan, rank=rank, world_size=2), batch_size=3, num_workers=workers)
               for rank in range(2)]
    for loader, saved in zip(loaders, state or []):
        loader.load_state_dict(saved)
    return loaders


def _take(loader: MixtureLoader, batches: int) -> list[dict]:
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == batches:
            return out
    return out


def _same_batch(a: dict, b: dict) -> bool:
    return all(torch.equal(a[key], b[key]) for key in ("input_ids", "doc_ids", "phase"))


def test_exact_resume_with_two_ranks_and_two_workers(mixture_file):
    """A run stopped after 5 batches and resumed yields exactly the uninterrupted run's batches
    (the phase switch falls inside the resumed part)."""
    text = THREE_COMPONENTS + TWO_PHASES.replace("tokens: 100000", f"tokens: {40 * 128}")
    plan = plan_mixture(load_mixture(mixture_file(text)))
    straight = [_take(loader, 14) for loader in _loaders(plan, workers=2)]
    first = _loaders(plan, workers=2)
    head = [_take(loader, 5) for loader in first]
    saved = [json.loads(json.dumps(loader.state_dict())) for loader in first]  # what a checkpoint stores
    tail = [_take(loader, 9) for loader in _loaders(plan, workers=2, state=saved)]
    for rank in range(2):
        resumed = head[rank] + tail[rank]
        assert len(resumed) == len(straight[rank]) == 14
        assert all(_same_batch(a, b) for a, b in zip(straight[rank], resumed))
    phases = torch.cat([b["phase"] for rank in straight for b in rank])
    assert 0 < int((phases == 0).sum()) < len(phases)
    ids = [tuple(row.tolist()) for rank in straight for b in rank for row in b["input_ids"]]
    assert len(set(ids)) == len(ids)  # ranks and workers never repeat a window


def test_batch_shape_changes_at_the_long_context_phase_and_resume_is_exact_on_both_sides(mixture_file):
    """2 ranks x 2 workers, batches of 3 windows of 128 tokens, then of 1 window of 512: the short
    phase is 24 windows, 2 batches per worker, so each rank's 5th batch is its first long one.
    Runs stopped one batch before and one after the boundary resume to the same batches."""
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + LONG_CONTEXT.replace("5120", str(24 * 128)))))
    straight = [_take(loader, 8) for loader in _loaders(plan, workers=2)]
    for rank in straight:
        assert [tuple(b["input_ids"].shape) for b in rank] == [(3, 129)] * 4 + [(1, 513)] * 4
    for stop, phase in ((3, "short"), (5, "long")):
        first = _loaders(plan, workers=2)
        head = [_take(loader, stop) for loader in first]
        saved = [json.loads(json.dumps(loader.state_dict())) for loader in first]
        assert [state["phase"] for state in saved] == [phase, phase]
        tail = [_take(loader, 8 - stop) for loader in _loaders(plan, workers=2, state=saved)]
        for rank in range(2):
            assert all(_same_batch(a, b) for a, b in zip(straight[rank], head[rank] + tail[rank], strict=True))
    with pytest.raises(ValueError, match="saved in mixture phase 'longer', which this mixture does not have"):
        _loaders(plan, workers=2, state=[saved[0] | {"phase": "longer"}])


def test_a_batch_never_holds_two_window_shapes(mixture_file):
    """40 short windows in batches of 3: the 14th batch ends early, at the boundary."""
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + LONG_CONTEXT)))
    batches = _take(MixtureLoader(MixtureDataset(plan), batch_size=3), 16)
    assert [tuple(b["input_ids"].shape) for b in batches] == [(3, 129)] * 13 + [(1, 129)] + [(1, 513)] * 2


def test_dataset_resumes_in_process_and_rejects_other_world_sizes(mixture_file):
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + ONE_PHASE)))
    dataset = MixtureDataset(plan, rank=1, world_size=2)
    stream = iter(dataset)
    straight = [next(stream)["input_ids"] for _ in range(30)]
    dataset = MixtureDataset(plan, rank=1, world_size=2)
    stream = iter(dataset)
    [next(stream) for _ in range(11)]
    resumed = MixtureDataset(plan, rank=1, world_size=2)
    resumed.load_state_dict(dataset.state_dict())
    stream = iter(resumed)
    assert all(torch.equal(straight[11 + i], next(stream)["input_ids"]) for i in range(19))
    with pytest.raises(ValueError, match="saved with world_size=2 but this run has world_size=4"):
        MixtureDataset(plan, rank=1, world_size=4).load_state_dict(dataset.state_dict())
