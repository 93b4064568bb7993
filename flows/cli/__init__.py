"""The `ccforge` command line: `main` parses and dispatches; each module holds one command group."""

from flows.cli.main import main

__all__ = ["main"]
