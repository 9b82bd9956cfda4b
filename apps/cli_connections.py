"""`connect`, `connect --bulk`, `disconnect`, `clients`, `check`: the connection lifecycle on
the command line."""

from __future__ import annotations

import getpass
import json
import sys
import threading

from rich.text import Text

from apps.terminal import console, plural, print_steps, print_table, state_text
from engine.client_config import ClientsFileError, read_clients_file, set_client_field
from engine.clients import ClientStatus, Standing, roster_or_error
from engine.connection_store import ClientNotConnected, ConnectionStore
from engine.failures import StripeAccessError
from engine.user_errors import CommandError


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


def connect(client_id: str, name: str | None, strict: bool, replace_account: bool,
            timezone: str | None = None) -> int:
    # Dagster's import costs a second: only the commands that register partitions pay it.
    from pipelines.instance import connect_and_register

    with ConnectionStore.from_settings() as store:
        store.verify_master_key(client_id)  # refused before the key is even asked for
    if timezone is not None:
        _check_clients_file(client_id, timezone)  # a broken file: refused before the key too
    raw_key = _read_key(client_id)
    try:
        outcome = connect_and_register(client_id, raw_key, name=name, strict=strict,
                                       replace_account=replace_account)
    except (StripeAccessError, ValueError) as error:
        _print_refusal(error)
        return 1
    connection = outcome.connection
    mode = "live" if outcome.livemode else "test"
    account = f"{outcome.account_id} ({outcome.account_name})" if outcome.account_name \
        else outcome.account_id
    print(f"Connected {client_id}: Stripe account {account}, key {connection.masked_key}, "
          f"{mode} mode.")
    for warning in outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if timezone is not None:
        set_client_field(client_id, "timezone", timezone)
        print(f"Time zone of {client_id}: {timezone} (its calendar days from the next sync).")
    print(f"Next: stripe-reports sync {client_id}")
    return 0


def _check_clients_file(client_id: str, timezone: str) -> None:
    """clients.yaml can take the time zone (readable as a whole, a valid entry after)."""
    try:
        problem = read_clients_file().problems.get(client_id)
    except ClientsFileError as error:
        raise CommandError(f"{error} Nothing was changed.", 1) from None
    if problem:
        raise CommandError(f"{problem} Fix that entry first: nothing was changed.", 1)


def connect_bulk(strict: bool, replace_account: bool, parallel: int) -> int:
    """Lines `CLIENT<TAB>KEY[<TAB>NAME]` from standard input; one outcome line each."""
    # Dagster's import costs a second: only the commands that register partitions pay it.
    from apps.bulk_connect import connect_many, parse_bulk

    with ConnectionStore.from_settings() as store:
        store.verify_master_key()  # a wrong master key refuses the batch before any check
    if sys.stdin.isatty():
        print("Paste one client a line: CLIENT<TAB>KEY[<TAB>NAME], then Ctrl-D.",
              file=sys.stderr)
    lines, malformed = parse_bulk(sys.stdin.readlines())
    out, lock = console(), threading.Lock()

    def report(outcome) -> None:
        row = Text(f"line {outcome.number}: {outcome.client_id or '?'} ")
        row.append(state_text("connected" if outcome.ok else "FAILED"))
        detail = f"{outcome.account_id}, key {outcome.masked_key}" if outcome.ok else (
            (f"key {outcome.masked_key}: " if outcome.masked_key else "") + outcome.message)
        row.append(f" ({detail})" if outcome.ok else f": {detail}")
        with lock:
            out.print(row)
            for warning in outcome.warnings:
                out.print(f"  warning: {warning}")

    for outcome in malformed:
        report(outcome)
    outcomes = connect_many(lines, parallel=parallel, on_done=report, strict=strict,
                            replace_account=replace_account)
    failed = len(malformed) + sum(not o.ok for o in outcomes)
    total = len(malformed) + len(outcomes)
    if not total:
        print("error: no lines read: give CLIENT<TAB>KEY[<TAB>NAME] lines on standard input.",
              file=sys.stderr)
        return 2
    print(f"{plural(total - failed, 'client')} connected, {failed:,} failed, "
          f"of {plural(total, 'line')}.", file=sys.stderr)
    return 1 if failed else 0


def disconnect(client_id: str, purge: bool) -> int:
    # Dagster's import costs a second: only the commands that touch partitions pay it.
    from pipelines.instance import get_instance, unregister_client

    store = ConnectionStore.from_settings()
    try:
        store.disconnect(client_id)
    except ClientNotConnected as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    unregister_client(get_instance(), client_id)  # no more scheduled runs, no partition
    if purge:
        from engine.warehouse_factory import warehouse_from_settings  # only a purge needs it

        warehouse = warehouse_from_settings()
        removed = warehouse.purge_client(client_id)
        print(f"Disconnected {client_id}: its key and Dagster partition are deleted, and its "
              f"{plural(removed, 'synced row')} too, for good. {warehouse.purge_note}".rstrip())
        return 0
    print(f"Disconnected {client_id}: its key and Dagster partition are deleted; its synced "
          f"data stays in the warehouse (run `stripe-reports disconnect {client_id} --purge` "
          "to delete it).")
    return 0


def _row(status: ClientStatus) -> list[str]:
    def when(value) -> str:
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"

    connection = status.connection
    if connection is None:
        return [status.client_id, status.standing.value, "", status.masked_key, "never", "never"]
    return [status.client_id, status.standing.value, connection.account_id or "",
            status.masked_key, when(connection.last_check_at), when(connection.last_sync_at)]


def clients(as_json: bool) -> int:
    """Every client the store or clients.yaml knows, under engine.clients' rule; the file's
    problems as lines (on stderr with --json, so the JSON stays one list)."""
    with ConnectionStore.from_settings() as store:
        roster = roster_or_error(store)
    statuses = list(roster.clients.values())
    if as_json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
        for problem in roster.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 0
    out = console()
    if statuses:
        print_table(out, ["client", "state", "account", "key", "last check", "last sync"],
                    [_row(s) for s in statuses], styled=[1])
    else:
        print("No clients yet. Connect one: stripe-reports connect CLIENT")
    for status in statuses:
        connection = status.connection
        if status.standing is Standing.FAILED and connection and connection.reason:
            out.print(f"\n{status.client_id}: {connection.reason}")
            print_steps(out, connection.steps)
        elif status.why and status.standing is not Standing.LEFT_OUT:
            out.print(f"\n{status.client_id}: {status.why}.")
    for problem in roster.problems:
        out.print(f"\nerror: {problem}")
    return 0


def check(client_ids: list[str]) -> int:
    from engine.credentials import check_client  # the Stripe SDK: only `check` needs it

    store = ConnectionStore.from_settings()
    # By default every active client the store tracks (one never synced has no row to mark).
    targets = client_ids or [c for c, status in roster_or_error(store).clients.items()
                             if status.active and status.connection is not None]
    if not targets:
        print("No client has a key to check. Connect one: stripe-reports connect CLIENT")
        return 0
    out, failed = console(), 0
    for client_id in targets:
        try:
            connection = check_client(client_id, store=store)
        except (ClientNotConnected, StripeAccessError) as error:
            _print_refusal(error)
            failed += 1
            continue
        line = Text(f"{client_id}: ")
        if connection.connected:
            line.append(state_text("connected"))
            out.print(line + f" (account {connection.account_id}, key {connection.masked_key})")
            continue
        failed += 1
        line.append(state_text("FAILED"))
        out.print(line + f": {connection.reason}")
        print_steps(out, connection.steps)
    return 1 if failed else 0
