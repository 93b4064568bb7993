"""The errors `ccforge` explains in one line. They live apart from the code that raises them so
that the command line can name them without importing Prefect, Dask or torch."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line naming file and field."""


class WorkdirBusy(RuntimeError):
    """Another curate run holds the workdir."""


class StageFailed(RuntimeError):
    """A stage could not finish; the message names the stage and the input that failed."""


class TrainingFailed(RuntimeError):
    """torchrun exited non-zero; the message carries the last error lines."""

    def __init__(self, code: int, errors: list[str]) -> None:
        super().__init__(f"training exited with {code}: " + " | ".join(errors))
        # By a signal (torchrun itself, or a rank as torchrun reports it): not the run's own error.
        self.killed = code < 0 or any("Signal" in line or "SIGKILL" in line for line in errors)
