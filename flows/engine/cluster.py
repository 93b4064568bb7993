"""Running a stage's work on Dask: one task per shard (reusing shards whose key is unchanged),
and the per-shard or per-partition passes of the global stages. A failure names the stage and the input."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from distributed import Client, LocalCluster, as_completed

from curation.shards import ShardTask, finished_stats, run_shard
from curation.stage import Stage, StageStats
from flows.engine.stage_dir import SHARD_FILES, StatsT, StageRun, run_resumable, shard_keys
from flows.errors import StageFailed

log = logging.getLogger("ccforge")


@contextmanager
def dask_client(scheduler: str | None = None, *, workers: int = 2, threads_per_worker: int = 1,
                processes: bool = True, memory_limit: str = "auto") -> Iterator[Client]:
    """A client on `scheduler` (or $DASK_SCHEDULER_ADDRESS), else on a fresh LocalCluster of
    `workers` processes; with `processes=False`, of one in-process worker with `workers` threads
    each (for work that releases the GIL: no worker start-up, no pickling, one copy of the imports)."""
    # The P2P shuffle logs every start and stop at WARNING; they are routine here.
    logging.getLogger("distributed.shuffle._scheduler_plugin").setLevel(logging.ERROR)
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        with Client(address) as client:
            yield client
        return
    if not processes:
        workers, threads_per_worker = 1, workers * threads_per_worker
    with LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=processes,
                      memory_limit=memory_limit, dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


def run_cluster_stage(run: StageRun, body: Callable[[], StatsT], progress: Callable[[str], None] = log.info,
                      keep: tuple[str, ...] = SHARD_FILES) -> StatsT:
    """`run_resumable` for a stage whose work runs on the cluster: a failure of a global pass (a
    shuffle, a reduction) names the stage; a shard's failure already names its input too."""
    def named_failures() -> StatsT:
        try:
            return body()
        except StageFailed:
            raise
        except Exception as err:
            raise StageFailed(f"stage {run.name} failed: {_reason(err)}") from err

    return run_resumable(run, named_failures, progress, keep=keep)


def run_partition_stage(client: Client, run: StageRun, make_stage: Callable[[], Stage],
                        progress: Callable[[str], None] = log.info) -> StageStats:
    """Map a per-partition stage over every input shard on the cluster.

    `make_stage` is called on the worker (it may load a model there, once per shard).
    """
    return run_cluster_stage(run, lambda: map_shards(client, run, [make_stage] * len(run.inputs), progress),
                             progress)


def _build_and_run_shard(make_stage: Callable[[], Stage], task: ShardTask) -> StageStats:
    return run_shard(make_stage(), task)


def map_shards(client: Client, run: StageRun, stage_makers: list[Callable[[], Stage]],
               progress: Callable[[str], None], decisions: list[str] | None = None) -> StageStats:
    """Run the stage `stage_makers[i]()` over every input shard whose key changed; reuse the others."""
    return run_shard_tasks(client, run, [functools.partial(_build_and_run_shard, make) for make in stage_makers],
                           progress, decisions)


def run_shard_tasks(client: Client, run: StageRun, shard_functions: list[Callable[[ShardTask], StatsT]],
                    progress: Callable[[str], None], decisions: list[str] | None = None) -> StatsT:
    """`shard_functions[i](task)` on the cluster for every input shard whose key changed (the
    function writes the shard and returns its `run.stats_type` counts); the others are reused as
    they are. Returns the counts of all shards; a failure cancels the rest and names the input."""
    tasks = [ShardTask(stage_key=key, input_path=path, source=source,
                       output_dir=str(run.output_dir), index=i, keep_rejects=run.keep_rejects,
                       strict=run.strict, batch_rows=run.batch_rows)
             for i, ((path, source), key) in enumerate(zip(run.inputs, shard_keys(run, decisions)))]
    _remove_shards_beyond(run.output_dir, len(tasks))
    total = run.stats_type(name=run.name)
    pending = []
    for function, task in zip(shard_functions, tasks):
        done = finished_stats(task, run.stats_type)
        if done is None:
            pending.append((function, task))
        else:
            total = total + done
    if len(pending) < len(tasks):
        progress(f"{run.name}: {len(tasks) - len(pending)} of {len(tasks)} shards finished earlier, reused")
    futures = {client.submit(function, task, pure=False): task for function, task in pending}
    for finished, future in enumerate(as_completed(futures), start=1):
        task = futures[future]
        try:
            total = total + future.result()
        except Exception as err:
            client.cancel(list(futures))
            raise StageFailed(f"stage {run.name} failed on {task.input_path}: {_reason(err, task.input_path)}") from err
        if finished == len(pending) or finished % max(1, len(pending) // 20) == 0:
            progress(f"{run.name}: {finished}/{len(pending)} shards")
    return total


def gather_per_input(client: Client, run: StageRun, function: Callable, *per_input: list) -> list:
    """`function(input_path, *args)` for every input of `run` on the cluster (a global stage's
    per-shard pass: hashes, signatures, scores); results in input order. A failure stops the
    stage with a StageFailed that names the stage and the input."""
    paths = [path for path, _ in run.inputs]
    return map_on_cluster(client, run.name, function, paths, *per_input)


def map_on_cluster(client: Client, stage: str, function: Callable, items: list, *args: list) -> list:
    """`function(item, *args)` for every item on the cluster (a pass over shards or partitions);
    results in item order. A failure stops the stage with a StageFailed naming the stage and the
    item (an input path, or a partition number)."""
    futures = client.map(function, items, *args, pure=False)
    for item, future in zip(items, futures):
        err = future.exception()
        if err is not None:
            client.cancel(futures)
            where = item if isinstance(item, str) else f"{function.__name__.strip('_')} {item}"
            raise StageFailed(f"stage {stage} failed on {where}: {_reason(err, str(item))}") from err
    return client.gather(futures)


def cluster_mapper(client: Client, stage: str) -> Callable[..., list]:
    """`map_on_cluster` bound to a client and stage: the `mapper` the pure multi-pass algorithms
    under `curation/` take (tests pass the builtin-like `local_mapper` instead)."""
    return functools.partial(map_on_cluster, client, stage)


def _reason(err: BaseException, path: str = "") -> str:
    """The first line of `err` without the path it starts with (InputFileError messages do)."""
    if not str(err):
        return type(err).__name__
    first = str(err).splitlines()[0]
    return first.removeprefix(f"{path}: ") if path else first


def _remove_shards_beyond(output_dir: Path, count: int) -> None:
    """Shards of inputs no longer there (an earlier run had more): they must not be read as output."""
    for path in [*output_dir.glob("part-*"), *output_dir.glob("rejected/part-*")]:
        index = path.name.split(".")[0].removeprefix("part-")
        if index.isdigit() and int(index) >= count:
            path.unlink()
