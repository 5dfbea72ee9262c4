"""``volfefe``: management commands. Each is one library call; see ``volfefe --help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.errors import run_command
from config import settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="volfefe", description="FinBERT sentiment for financial posts.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"], help="upgrade: create or migrate the tables")

    from db.import_format import FILE_FORMAT_HELP

    importer = commands.add_parser(
        "import",
        help="load posts from a CSV or JSON Lines file",
        description=FILE_FORMAT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    importer.add_argument("file", type=Path, help="a CSV file, or JSON Lines (.jsonl, .ndjson, .json)")
    importer.add_argument(
        "--encoding", metavar="NAME", help="read the file as NAME (e.g. latin-1, cp1252) instead of UTF-8"
    )

    from cli.import_prices import add_arguments as import_prices_arguments
    from market.import_format import FILE_FORMAT_HELP as PRICES_FORMAT_HELP

    import_prices_arguments(
        commands.add_parser(
            "import-prices",
            help="load price bars (OHLCV) from a CSV or JSON Lines file",
            description=PRICES_FORMAT_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )

    commands.add_parser("classify", help="classify each line of standard input, print JSON lines")

    report = commands.add_parser("report", help="sentiment distribution and totals")
    report.add_argument("--json", action="store_true")
    report.add_argument(
        "--uncertain",
        type=int,
        nargs="?",
        const=50,
        metavar="N",
        help="list the N classifications the model was least sure of (default 50)",
    )
    report.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="write the picture of sentiment over time to FILE (one self-contained HTML page)",
    )
    report.add_argument("--model", metavar="NAME", help="with --uncertain: this model's (default: the first)")
    report.add_argument("--source", help="with --html: only posts of this source")
    report.add_argument("--author", help="with --html: only posts of this author")
    report.add_argument(
        "--since", metavar="DATE", help="with --html: from this UTC day on (YYYY-MM-DD, included)"
    )
    report.add_argument(
        "--until", metavar="DATE", help="with --html: up to this UTC day (YYYY-MM-DD, included)"
    )

    status = commands.add_parser("status", help="queue counts by state, workers, database counts")
    status.add_argument("--json", action="store_true")

    from cli.reclassify import add_arguments as reclassify_arguments

    reclassify_arguments(
        commands.add_parser(
            "reclassify",
            help="classify contents again with the configured model (default: those made by another)",
        )
    )

    from cli.consensus import add_arguments as consensus_arguments

    consensus_arguments(
        commands.add_parser(
            "consensus", help="recompute every content's consensus (after VOLFEFE_MODELS changed)"
        )
    )

    from cli.model_build import add_arguments as model_arguments

    model_arguments(commands.add_parser("model", help="build the configured engine's conversion (openvino)"))

    run = commands.add_parser("run", help="the main job end to end: import, enqueue, work, report")
    run.add_argument("file", type=Path, nargs="?", help="posts to import (default: the shipped sample)")
    run.add_argument(
        "--workers", type=int, default=1, choices=range(1, 17), metavar="N", help="worker processes"
    )

    web = commands.add_parser(
        "web",
        aliases=["dashboard"],
        help="the web process: rq-dashboard at /rq/ behind credentials (see SECURITY.md)",
    )
    web.add_argument("--bind", default=None, help="address to listen on (default 127.0.0.1)")
    web.add_argument("--port", type=int, default=None, help="port (default $PORT, else 9181)")

    commands.add_parser("redis-url", help="print REDIS_URL, or the embedded redis-server's (starting it)")
    commands.add_parser("redis-stop", help="stop the embedded redis-server (used when REDIS_URL is unset)")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    config = settings()
    if args.command == "db":
        from db.migrate import upgrade

        upgrade(config.database_url)
        print("database schema is up to date")
        return 0
    if args.command == "import":
        return _import(config.database_url, args.file, args.encoding)
    if args.command == "import-prices":
        from cli.import_prices import import_prices

        return import_prices(config.database_url, args)
    if args.command == "classify":
        from cli.classify_stdin import main as classify_main

        return classify_main(config)
    if args.command == "report":
        from cli.report_html import check_report_options, print_html_report

        check_report_options(args)
        if args.html is not None:
            return print_html_report(config.database_url, args)
        from cli.report import print_report, print_uncertain

        if args.uncertain is not None:
            print_uncertain(config.database_url, args.uncertain, args.json, args.model)
        else:
            print_report(config.database_url, args.json)
        return 0
    if args.command == "status":
        from cli.status import print_status

        return print_status(config, args.json)
    if args.command == "reclassify":
        from cli.reclassify import reclassify

        return reclassify(config, args)
    if args.command == "consensus":
        from cli.consensus import run_consensus_command

        return run_consensus_command(config, args)
    if args.command == "model":
        from cli.model_build import run_model_command

        return run_model_command(config, args)
    if args.command == "run":
        from cli.run import SAMPLE_POSTS, run

        return run(config, args.file or SAMPLE_POSTS, args.workers)
    if args.command in ("web", "dashboard"):
        from web.serve import serve

        return serve(config, args.bind, args.port)
    if args.command == "redis-url":
        from services.redis_connection import redis_url

        print(redis_url(config))
        return 0
    if args.command == "redis-stop":
        from services.redis_connection import stop_embedded_redis

        print("stopped" if stop_embedded_redis(config.data_dir) else "no embedded redis-server is running")
        return 0
    raise AssertionError(args.command)


def _import(database_url: str, path: Path, encoding: str | None = None) -> int:
    """Load ``path``; one line per rejected row, then the counts; exit 1 when any row was rejected."""
    from db.importer import import_file

    report = import_file(database_url, path, encoding=encoding)
    for rejected in report.rejected:
        print(f"{path}: line {rejected.line}: rejected: {rejected.reason}", file=sys.stderr)
    print(
        f"inserted {report.inserted}, already present {report.already_present}, "
        f"rejected {len(report.rejected)} (read as {report.read_as})"
    )
    return 1 if report.rejected else 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    run_command("volfefe", lambda: _dispatch(args))


if __name__ == "__main__":
    main()
