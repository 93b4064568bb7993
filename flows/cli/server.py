"""`ccforge server start|stop|status`: one local Prefect server that every later command shares, so
that a command's first task starts in seconds instead of after a Prefect server's start-up."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from flows.server import DEFAULT_PORT, ServerRecord, shared_status, start_shared, stop_shared


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    server = subparsers.add_parser(
        "server", help="a shared local Prefect server: start it once, and later commands start in seconds",
        description="Run one Prefect server on 127.0.0.1 in the background (its database, log "
                    "ccforge-server.log and state file ccforge-server.json in $PREFECT_HOME). While it runs, the "
                    "commands that run Prefect flows (curate, pipeline, quickstart, schedule, report "
                    "--prefect-artifact) use it instead of starting a server of their own; $PREFECT_API_URL, when "
                    "set, still comes first.")
    actions = server.add_subparsers(dest="server_command", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="start the server (nothing to do when it runs already)")
    start.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; "
                       "0: any free port)")
    actions.add_parser("status", help="its URL, pid and uptime, or 'not running'")
    actions.add_parser("stop", help="stop the server")
    return {"server": cmd_server}


def cmd_server(args: argparse.Namespace) -> None:
    if args.server_command == "start":
        record, started = start_shared(port=args.port)
        print(f"{'started' if started else 'already running'}: {_describe(record)}")
        print(f"UI: {record.url.removesuffix('/api')}  stop with: ccforge server stop")
    elif args.server_command == "status":
        status = shared_status()
        if status.stale is not None:
            print(f"removed the state file of a server that is gone (pid {status.stale.pid})")
        if status.record is None:
            print("not running")
        else:
            print(f"{'running' if status.answering else 'not answering (starting?)'}: {_describe(status.record)}")
        if os.environ.get("PREFECT_API_URL"):
            print(f"note: PREFECT_API_URL={os.environ['PREFECT_API_URL']} is set; commands use it first")
    else:
        record = stop_shared()
        print(f"stopped: pid {record.pid} ({record.url})" if record else "not running")


def _describe(record: ServerRecord) -> str:
    return f"{record.url} (pid {record.pid}, up {_duration(time.time() - record.created)}), log: {record.log}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
