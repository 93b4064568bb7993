"""`ccforge report WORKDIR`: one page about a run, as report.html (self-contained) and report.md."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    parser = subparsers.add_parser(
        "report", help="charts and tables of a run: funnel, languages, dedup, quality, synthetic, mixture, training",
        description="Read what a run left in WORKDIR (curation stats, fuzzy-dedup clusters, quality buckets, "
                    "rephrase counts, token mixture, training metrics) and write WORKDIR/report.html, a single "
                    "self-contained page, and WORKDIR/report.md with its charts in WORKDIR/report-images/. "
                    "Sections whose data is missing are left out.")
    parser.add_argument("workdir", help="a quickstart or pipeline workdir, or a `ccforge curate --workdir` directory")
    parser.add_argument("--top-languages", type=int, default=20, help="languages shown (default 20)")
    parser.add_argument("--prefect-artifact", action="store_true",
                        help="also publish the tables as a Prefect markdown artifact (key run-report)")
    return {"report": cmd_report}


def cmd_report(args: argparse.Namespace) -> None:
    from flows.errors import UserError
    from flows.report.render import publish_report_artifact, write_run_report

    if args.top_languages < 1:
        raise UserError(f"--top-languages {args.top_languages}: must be at least 1")
    paths = write_run_report(args.workdir, top_languages=args.top_languages)
    if args.prefect_artifact:
        from flows.server import command_api

        with command_api():
            publish_report_artifact(paths["markdown"])
    print(f"report: {paths['html']}  {paths['markdown']} (charts in {paths['images']})")
