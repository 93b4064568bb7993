"""flows.retry under Prefect's own retry loop: a training run killed by a signal is retried, one
that failed by itself is not."""

from __future__ import annotations

import pytest
from prefect import flow, task

from flows.errors import TrainingFailed
from flows.retry import retry_if_killed


@pytest.mark.parametrize("code, lines, retried", [
    (-9, ["killed"], True),
    (1, ["traceback : Signal 9 (SIGKILL) received by PID 7"], True),
    (1, ["NonFiniteLossError: step 12"], False),
])
def test_prefect_retries_a_killed_training_run_only(code, lines, retried):
    attempts: list[int] = []

    @task(retries=1, retry_delay_seconds=0, retry_condition_fn=retry_if_killed)
    def torchrun() -> str:
        attempts.append(code)
        if len(attempts) == 1:
            raise TrainingFailed(code, lines)
        return "resumed"

    @flow
    def pretrain() -> str:
        return torchrun()

    if retried:
        assert pretrain() == "resumed" and len(attempts) == 2
    else:
        with pytest.raises(TrainingFailed, match="NonFiniteLossError"):
            pretrain()
        assert len(attempts) == 1
