"""`stripe-reports`: the command line. Thin: every command calls the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipelines.terminal import SyncProgressView, print_outcome


def _cmd_sync(args: argparse.Namespace) -> int:
    from engine.connection_store import ConnectionState, ConnectionStore
    from engine.streams import resolve_streams
    from pipelines.sync import sync_clients

    streams = [s.strip() for s in args.streams.split(",") if s.strip()] if args.streams else None
    try:
        resolve_streams(streams)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    clients, skipped = list(args.clients), 0
    if args.all or not clients:
        from engine.client_config import read_clients_file

        clients_file = read_clients_file()
        for problem in clients_file.problems.values():  # reported and skipped, the rest sync
            print(f"error: {problem}", file=sys.stderr)
        skipped = len(clients_file.problems)
        stored = [c.client_id for c in ConnectionStore.from_settings().list()
                  if c.state != ConnectionState.DISCONNECTED]
        clients = sorted(set(stored) | set(clients_file.configs))
        if not clients:
            print("No clients yet: run `stripe-reports connect CLIENT` first.", file=sys.stderr)
            return 2
    view = SyncProgressView(clients, sys.stderr)
    outcomes = sync_clients(clients, full_refresh=args.full_refresh, streams=streams,
                            parallel=args.parallel, progress=view.update, on_done=view.done)
    view.close()
    for outcome in outcomes:
        print_outcome(outcome, sys.stdout)
    failed = [o for o in outcomes if not o.success]
    if failed:
        print(f"\n{len(failed)} of {len(outcomes)} client(s) failed.", file=sys.stderr)
    return 1 if failed or skipped else 0


def _run_sandbox(argv: list[str]) -> int:
    """`sandbox [--port N] [--seed N] ...`: the sandbox's own parser reads the options (and
    `--help`); it is imported only here, as it costs a quarter of a second."""
    from sandbox.cli import main as sandbox_main

    return sandbox_main(argv) or 0


def _cmd_sandbox(args: argparse.Namespace) -> int:
    return _run_sandbox(args.rest)


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(port=args.port, seed=args.seed)


def _cmd_connections(args: argparse.Namespace) -> int:
    from pipelines import cli_connections

    return cli_connections.run(args)


def _cmd_widgets(args: argparse.Namespace) -> int:
    from reports import cli_widgets

    return cli_widgets.run(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    from reports.web import serve

    serve(host=args.host, port=args.port)
    return 0


def _port(text: str) -> int:
    """A TCP port for --port: 1 to 65535, or 0 for any free port."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{port} is not a port: use 1 to 65535 (or 0 for any free port)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stripe-reports",
        description="Stripe reporting pipelines: sync clients' Stripe accounts into DuckDB "
        "through Dagster, and report on them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    connect = commands.add_parser(
        "connect", help="store a client's Stripe secret key (read from standard input)")
    connect.add_argument("client")
    connect.add_argument("--name", help="display name of the client")
    connect.add_argument("--strict", action="store_true",
                         help="refuse a restricted key that lacks any read permission")
    connect.add_argument("--replace-account", action="store_true",
                         help="allow a key of a different Stripe account than before")
    connect.set_defaults(handler=_cmd_connections)

    disconnect = commands.add_parser("disconnect", help="remove a client's stored key")
    disconnect.add_argument("client")
    disconnect.add_argument("--purge", action="store_true",
                            help="also delete the client's synced data")
    disconnect.set_defaults(handler=_cmd_connections)

    clients = commands.add_parser("clients", help="every client and its connection state")
    clients.add_argument("--json", action="store_true")
    clients.set_defaults(handler=_cmd_connections)

    check = commands.add_parser("check", help="run the credential check now")
    check.add_argument("clients", nargs="*")
    check.set_defaults(handler=_cmd_connections)

    sync = commands.add_parser("sync", help="sync clients through Dagster")
    sync.add_argument("clients", nargs="*")
    sync.add_argument("--all", action="store_true", help="every connected client")
    sync.add_argument("--full-refresh", action="store_true",
                      help="list everything again instead of changes since the last sync")
    sync.add_argument("--streams", help="comma-separated streams (default: all)")
    sync.add_argument("--parallel", type=int, default=4, help="clients synced at once")
    sync.set_defaults(handler=_cmd_sync)

    widgets = commands.add_parser("widgets", help="the widget catalog")
    widgets.add_argument("--json", action="store_true")
    widgets.set_defaults(handler=_cmd_widgets)

    widget = commands.add_parser("widget", help="one widget's data for a client")
    widget.add_argument("client")
    widget.add_argument("widget")
    widget.add_argument("--start", help="first day (YYYY-MM-DD), default 30 days ago")
    widget.add_argument("--end", help="last day (YYYY-MM-DD), default today")
    widget.add_argument("--currency", help="three-letter code, default the client's main one")
    widget.add_argument("--format", choices=["table", "json", "csv"], default="table")
    widget.set_defaults(handler=_cmd_widgets)

    serve = commands.add_parser("serve", help="the report web page")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8050,
                       help="1 to 65535, or 0 for any free port (default 8050)")
    serve.set_defaults(handler=_cmd_serve)

    sandbox = commands.add_parser(
        "sandbox", help="the local Stripe-compatible server (see `sandbox --help`)",
        add_help=False)
    sandbox.add_argument("rest", nargs=argparse.REMAINDER)
    sandbox.set_defaults(handler=_cmd_sandbox)

    demo = commands.add_parser("demo", help="sandbox + demo clients, synced and reported")
    demo.add_argument("--port", type=_port, default=0, help="sandbox port (default: any free)")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _named_clients(args: argparse.Namespace) -> list[str]:
    if args.command in ("connect", "disconnect", "widget"):
        return [args.client]
    return list(getattr(args, "clients", None) or [])


def check_named_clients(args: argparse.Namespace) -> None:
    """Every client a command names is a valid id and, but for `connect`, a known client
    (in the store or clients.yaml): before any partition, run or alert exists."""
    from engine.connection_store import ConnectionStore, check_client_ids
    from engine.user_errors import UnknownClient

    names = check_client_ids(_named_clients(args))
    if not names or args.command == "connect":
        return
    from engine.client_config import ClientsFileError, read_clients_file

    clients_file = read_clients_file()
    with ConnectionStore.from_settings() as store:
        known = {c.client_id for c in store.list()} | set(clients_file.configs)
    for name in names:
        if name in clients_file.problems:
            raise ClientsFileError(clients_file.problems[name])
        if name not in known:
            raise UnknownClient(name, sorted(known))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Failures a user can act on (engine/user_errors.py) end as one
    line on stderr and the exit code CONTRACT.md gives; anything else is a bug and keeps
    its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sandbox"]:
        return _run_sandbox(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        check_named_clients(args)
        return int(args.handler(args) or 0)
    except Exception as error:
        from engine.user_errors import explain

        problem = explain(error)
        if problem is None:
            raise
        print(f"error: {problem.message}", file=sys.stderr)
        return problem.exit_code


if __name__ == "__main__":
    sys.exit(main())
