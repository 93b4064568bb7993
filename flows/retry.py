"""When a failed Prefect task is worth retrying: only when the failure came from the machines
(a lost worker or connection, a killed training process), never from the data or the config,
which would fail the same way again. Retrying is safe because every stage resumes by key and
training resumes from its newest checkpoint to the same next token.

Prefect's own retry settings decide how often and when (`retries`, `retry_delay_seconds`); which
failures qualify it leaves to a `retry_condition_fn` (it has no filter by exception type), so
these are those functions, reading the failure with Prefect's `state.result(raise_on_failure=False)`."""

from __future__ import annotations

from typing import Any

from distributed import KilledWorker
from distributed.comm.core import CommClosedError

from flows.errors import TrainingFailed

#: Failures of the cluster, not of the work: a worker that died (KilledWorker), a dropped
#: connection, a timeout. Other OSErrors are not: pyarrow raises a bare OSError for a damaged
#: Parquet file ("Couldn't deserialize thrift", "Corrupt snappy compressed data") and gzip a
#: BadGzipFile (an OSError) for a damaged .gz; the same bytes fail the same way on every retry.
_TRANSIENT = (KilledWorker, ConnectionError, TimeoutError, CommClosedError)

STAGE_RETRIES = 2
RETRY_DELAY_SECONDS = 5


def is_transient(err: BaseException) -> bool:
    """True for an infrastructure failure, looking through the chain of causes."""
    while err is not None:
        if isinstance(err, _TRANSIENT):
            return True
        err = err.__cause__
    return False


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn` of the curation and tokenize tasks (Prefect calls it with the failed state)."""
    return is_transient(state.result(raise_on_failure=False))


def retry_if_killed(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn` of the torchrun task: retry a run killed by a signal (the
    OOM killer, a lost node), which resumes from its checkpoint; not one that failed by itself."""
    err = state.result(raise_on_failure=False)
    return isinstance(err, TrainingFailed) and err.killed
