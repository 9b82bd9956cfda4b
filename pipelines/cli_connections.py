"""`connect`, `disconnect`, `clients`, `check`: the connection lifecycle on the command line."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from engine.connection_store import ClientConnection, ClientNotConnected, ConnectionStore
from engine.failures import StripeAccessError


def _read_key(client_id: str) -> str:
    """The key comes from standard input: a hidden prompt on a terminal, never argv."""
    if sys.stdin.isatty():
        return getpass.getpass(f"Stripe Secret key for {client_id} (input hidden): ")
    for line in sys.stdin:  # the first line that holds anything: pastes carry blank lines
        if line.strip():
            return line
    return ""


def _print_refusal(error: StripeAccessError | Exception) -> None:
    text = error.guidance() if isinstance(error, StripeAccessError) else str(error)
    print(f"error: {text}", file=sys.stderr)


def connect(args: argparse.Namespace) -> int:
    from pipelines.instance import connect_and_register

    with ConnectionStore.from_settings() as store:
        store.verify_master_key(args.client)  # refused before the key is even asked for
    raw_key = _read_key(args.client)
    try:
        outcome = connect_and_register(args.client, raw_key, name=args.name, strict=args.strict,
                                 replace_account=args.replace_account)
    except (StripeAccessError, ValueError) as error:
        _print_refusal(error)
        return 1
    connection = outcome.connection
    mode = "live" if outcome.livemode else "test"
    account = f"{outcome.account_id} ({outcome.account_name})" if outcome.account_name \
        else outcome.account_id
    print(f"Connected {args.client}: Stripe account {account}, key {connection.masked_key}, "
          f"{mode} mode.")
    for warning in outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"Next: stripe-reports sync {args.client}")
    return 0


def disconnect(args: argparse.Namespace) -> int:
    store = ConnectionStore.from_settings()
    try:
        store.disconnect(args.client)
    except ClientNotConnected as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.purge:
        from engine.warehouse import Warehouse

        removed = Warehouse.from_settings().purge_client(args.client)
        print(f"Deleted {removed:,} synced rows of {args.client}.")
    print(f"Disconnected {args.client}: its key is deleted"
          + ("." if args.purge else "; its synced data stays (use --purge to delete it)."))
    return 0


def _row(connection: ClientConnection) -> list[str]:
    def when(value) -> str:
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"

    return [connection.client_id, connection.state.value, connection.account_id or "",
            connection.masked_key or "", when(connection.last_check_at),
            when(connection.last_sync_at)]


def clients(args: argparse.Namespace) -> int:
    connections = ConnectionStore.from_settings().list()
    if args.json:
        print(json.dumps([c.to_dict() for c in connections], indent=2))
        return 0
    if not connections:
        print("No clients yet. Connect one: stripe-reports connect CLIENT")
        return 0
    header = ["client", "state", "account", "key", "last check", "last sync"]
    rows = [header] + [_row(c) for c in connections]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    for connection in connections:
        if connection.reason and not connection.connected:
            print(f"\n{connection.client_id}: {connection.reason}")
            for number, step in enumerate(connection.steps, start=1):
                print(f"  {number}. {step}")
    return 0


def check(args: argparse.Namespace) -> int:
    from engine.credentials import check_client

    store = ConnectionStore.from_settings()
    targets = args.clients or [c.client_id for c in store.list() if c.masked_key]
    failed = 0
    for client_id in targets:
        try:
            connection = check_client(client_id, store=store)
        except (ClientNotConnected, StripeAccessError) as error:
            _print_refusal(error)
            failed += 1
            continue
        if connection.connected:
            print(f"{client_id}: ok (account {connection.account_id}, key {connection.masked_key})")
        else:
            failed += 1
            print(f"{client_id}: FAILED: {connection.reason}")
            for number, step in enumerate(connection.steps, start=1):
                print(f"  {number}. {step}")
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    handlers = {"connect": connect, "disconnect": disconnect, "clients": clients, "check": check}
    return handlers[args.command](args)
