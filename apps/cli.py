"""`stripe-reports`: the command line, on click. Thin: every command calls the library.

Start-up stays fast: a command imports what it needs (Dagster, DuckDB, the Stripe SDK, rich)
inside its own function, so `--help` or `clients` never pays for Dagster.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from apps.resident import hand_over
from engine.streams import resolve_streams, stream_names

EXIT_CODES = ("\b\nExit codes:\n  0  success\n  1  a client, key or check failed "
              "(each failure says what to do)\n  2  bad usage or an unknown client, widget or "
              "stream name (nothing was changed)")
INTERRUPTED = ("Interrupted: stopped before finishing. What was stored is intact; run the "
               "command again to finish (a sync that was cut short resumes where it stopped).")
# Ctrl-C ends like any unfinished work (exit 1, as EXIT_CODES documents), not with 130.
INTERRUPTED_EXIT = 1
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _examples(*lines: str) -> str:
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines) + "\n\n" + EXIT_CODES


@click.group(context_settings=CONTEXT, epilog=_examples(
    'stripe-reports connect acme --name "Acme Corp"   # paste the key when asked',
    "stripe-reports sync acme",
    "stripe-reports widget acme mrr --format json",
    "stripe-reports COMMAND --help                    # a command's options and examples"))
def cli() -> None:
    """Stripe reporting pipelines: sync clients' Stripe accounts into DuckDB through
    Dagster, and report on them (command line, JSON, web page).

    Settings come from the environment: STRIPE_REPORTS_HOME, STRIPE_API_BASE, DAGSTER_HOME
    and the others in the README."""


def check_names(names: Sequence[str], *, must_exist: bool = True) -> list[str]:
    """Every client a command names is a valid id and (unless it is being connected) a known
    client, in the store or clients.yaml: checked before any partition, run or alert."""
    # SQLModel and the store cost half a second: `--help` and usage errors do not pay it.
    from engine.connection_store import ConnectionStore, check_client_ids
    from engine.user_errors import UnknownClient

    checked = check_client_ids(names)
    if not checked or not must_exist:
        return checked
    from engine.client_config import ClientsFileError, read_clients_file  # YAML: when needed

    clients_file = read_clients_file()
    with ConnectionStore.from_settings() as store:
        known = {c.client_id for c in store.list()} | set(clients_file.configs)
    for name in checked:
        if name in clients_file.problems:
            raise ClientsFileError(clients_file.problems[name])
        if name not in known:
            raise UnknownClient(name, sorted(known))
    return checked


def _port(_ctx: click.Context | None, _param: click.Parameter | None, port: int) -> int:
    if not 0 <= port <= 65535:
        raise click.BadParameter(f"{port} is not a port: use 1 to 65535 (or 0 for any free "
                                 "port).")
    return port


# -- connections ---------------------------------------------------------------------------


@cli.command(short_help="Store a client's Stripe key (from stdin) and register it.",
             epilog=_examples(
    'stripe-reports connect acme --name "Acme Corp"     # hidden prompt for the key',
    "pass show stripe/acme | stripe-reports connect acme",
    "stripe-reports connect acme --timezone Europe/Berlin",
    "stripe-reports connect --bulk < clients.tsv        # CLIENT<TAB>KEY[<TAB>NAME] lines"))
@click.argument("client", required=False)
@click.option("--name", metavar="NAME", help="Display name of the client (default: the id).")
@click.option("--timezone", metavar="ZONE",
              help="The client's time zone, an IANA name such as Europe/Berlin: its calendar "
              "days in every figure, from the next sync (written to clients.yaml; default UTC).")
@click.option("--strict", is_flag=True,
              help="Refuse a restricted key that lacks any read permission.")
@click.option("--replace-account", is_flag=True,
              help="Allow a key of another Stripe account than before (the client's synced "
              "rows are deleted: it starts over).")
@click.option("--bulk", is_flag=True,
              help="Read many clients from standard input, one CLIENT<TAB>KEY[<TAB>NAME] a "
              "line, and validate them in parallel; exit 1 if any line failed.")
@click.option("--parallel", type=click.IntRange(1, 64), default=8, show_default=True,
              help="With --bulk: keys checked at once.")
def connect(client: str | None, name: str | None, timezone: str | None, strict: bool,
            replace_account: bool, bulk: bool, parallel: int) -> int:
    """Store a client's Stripe secret key and make CLIENT a Dagster partition.

    CLIENT is the client's id: lower-case letters, digits, '-' or '_'. The key is read
    from standard input (a hidden prompt on a terminal), never from the command line. It is
    validated against Stripe, then stored encrypted; the account id and the masked key are
    printed. A refused key stores nothing and says what to do."""
    # The connection commands import the store and Dagster: loaded only when one runs.
    from apps import cli_connections

    if bulk:
        if client or name or timezone:
            raise click.UsageError("--bulk reads the clients from standard input: give no "
                                   "CLIENT, --name or --timezone.")
        return cli_connections.connect_bulk(strict, replace_account, parallel)
    if not client:
        raise click.UsageError("Missing CLIENT: `stripe-reports connect CLIENT` (or --bulk).")
    check_names([client], must_exist=False)
    if timezone is not None:  # refused before the key is asked for: nothing is changed
        # Loaded only when a zone is given: the CLI starts without them.
        from engine.client_config import check_timezone
        from engine.user_errors import CommandError

        try:
            timezone = check_timezone(timezone.strip())
        except ValueError as error:
            raise CommandError(f"--timezone {error}: nothing was changed.") from None
    return cli_connections.connect(client, name, strict, replace_account, timezone)


@cli.command(short_help="Delete a client's key and partition (--purge: its data).",
             epilog=_examples("stripe-reports disconnect acme",
                              "stripe-reports disconnect acme --purge"))
@click.argument("client")
@click.option("--purge", is_flag=True,
              help="Also delete the client's synced rows in every table.")
def disconnect(client: str, purge: bool) -> int:
    """Delete CLIENT's stored key and its Dagster partition (no more scheduled syncs).

    The client's synced data stays in the warehouse unless --purge."""
    from apps import cli_connections  # the store and Dagster: only when it runs

    check_names([client])
    return cli_connections.disconnect(client, purge)


@cli.command(short_help="Every client: state, account, masked key, last sync.",
             epilog=_examples("stripe-reports clients",
                              "stripe-reports clients --json | jq '.[].state'"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def clients(as_json: bool) -> int:
    """Every client, connected or declared in clients.yaml, with its state (connected,
    failed, disconnected, waiting for first sync, no key, left out), Stripe account, masked
    key, last check and last successful sync; then why each inactive one is not synced, what
    to do for each failed one, and the clients.yaml problems."""
    from apps import cli_connections  # the store: only when it runs

    return cli_connections.clients(as_json)


@cli.command(short_help="Run the credential check now.",
             epilog=_examples("stripe-reports check", "stripe-reports check acme globex"))
@click.argument("clients", nargs=-1, metavar="[CLIENT]...")
def check(clients: tuple[str, ...]) -> int:
    """Run the credential check now for each CLIENT (default: every client with a stored key)
    and record the result; a failed key prints its reconnect steps and exits 1."""
    from apps import cli_connections  # the store and the Stripe SDK: only when it runs

    return cli_connections.check(check_names(clients))


@cli.command(short_help="Check the warehouse against Stripe's own arithmetic.",
             epilog=_examples("stripe-reports reconcile", "stripe-reports reconcile acme"))
@click.argument("clients", nargs=-1, metavar="[CLIENT]...")
def reconcile(clients: tuple[str, ...]) -> int:
    """Run the reconciliation checks now for each CLIENT (default: every client): its
    balance against its balance transactions per currency (available and pending),
    succeeded charges and payouts against theirs. One line per failed check, naming the
    currency and the difference; a failing client's widgets say `stale`. Exits 1 if any
    check failed."""
    from apps import cli_reconcile  # Dagster and DuckDB: only when it runs

    return cli_reconcile.reconcile(check_names(clients))


# -- syncing ---------------------------------------------------------------------------------


@cli.command(short_help="Sync clients through Dagster (runs shown in the UI).",
             epilog=_examples(
    "stripe-reports sync acme", "stripe-reports sync acme globex --streams charges,refunds",
    "stripe-reports sync --all --full-refresh"))
@click.argument("clients", nargs=-1, metavar="[CLIENT]...")
@click.option("--all", "all_clients", is_flag=True,
              help="Every active client: connected, or declared in clients.yaml with its key "
              "variable set (a disconnected one waits for `connect`).")
@click.option("--full-refresh", is_flag=True,
              help="List everything again instead of the changes since the last sync.")
@click.option("--streams", metavar="A,B",
              help=f"Comma-separated streams (default: all): {', '.join(stream_names())}.")
@click.option("--parallel", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Clients synced at once.")
def sync(clients: tuple[str, ...], all_clients: bool, full_refresh: bool, streams: str | None,
         parallel: int) -> int:
    """Sync each CLIENT's Stripe data through Dagster: a run of stripe_sync_job, shown in
    the Dagster UI. Each client is checked first: with nothing new (and no reporting build
    due) it is recorded as checked, without a run. --full-refresh or --streams always runs.
    Progress on a terminal; each client's changes, or its failure and what to do, at the
    end. Exits 1 if any client failed."""
    if not clients and not all_clients:
        raise click.UsageError("Name the clients to sync, or use --all for every client.")
    if clients and all_clients:
        raise click.UsageError("Name clients or use --all, not both.")
    chosen = _streams(streams)
    names, skipped = _active_only(check_names(clients)) if clients else _every_client()
    if not names:
        return 1
    from engine.postgres_check import check_dagster_storage  # before Dagster loads (seconds)

    check_dagster_storage()
    # Dagster and the process pool: loaded only when a sync runs.
    from apps.launch import run_client_syncs
    from apps.terminal import SyncProgressView, plural, print_outcome
    from engine.warehouse_factory import warehouse_from_settings

    warehouse_from_settings().ensure_schema()  # an unusable warehouse: one line, and no run

    with SyncProgressView(names, sys.stderr) as view:
        outcomes = run_client_syncs(names, full_refresh=full_refresh, streams=chosen,
                                    parallel=parallel, progress=view.update, on_done=view.done)
    for outcome in outcomes:
        print_outcome(outcome, sys.stdout)
    failed = sum(not o.success for o in outcomes)
    if failed:
        click.echo(f"\n{failed:,} of {plural(len(outcomes), 'client')} failed.", err=True)
    return 1 if failed or skipped else 0


def _every_client() -> tuple[list[str], int]:
    """`--all`: every active client (engine.clients), and how many bad clients.yaml entries
    were skipped (said on stderr; the exit code says so). A declared client that is not
    active (disconnected, its key variable unset) is named on stderr with why."""
    # The store and clients.yaml: loaded only when a sync runs.
    from engine.clients import Standing, client_roster
    from engine.connection_store import ConnectionStore

    with ConnectionStore.from_settings() as store:
        roster = client_roster(store)
    for problem in roster.problems:  # reported and skipped, the rest sync
        click.echo(f"error: {problem}", err=True)
    for client, status in roster.clients.items():
        if not status.active and status.standing is not Standing.LEFT_OUT and status.config:
            click.echo(f"{client} skipped: {status.why}.", err=True)
    clients = roster.active()
    if not clients:
        raise click.UsageError("No active clients: run `stripe-reports connect CLIENT` first.")
    return clients, len(roster.problems)


def _active_only(names: list[str]) -> tuple[list[str], int]:
    """The named clients that can sync; each other one gets one line saying what to do."""
    # The store and clients.yaml: loaded only when a sync runs.
    from engine.clients import client_roster
    from engine.connection_store import ConnectionStore

    with ConnectionStore.from_settings() as store:
        statuses = client_roster(store).clients
    refused = [name for name in names if not statuses[name].active]
    for name in refused:
        click.echo(f"error: {name} is not synced: {statuses[name].why}.", err=True)
    return [name for name in names if name not in refused], len(refused)


def _streams(text: str | None) -> list[str] | None:
    chosen = [s.strip() for s in text.split(",") if s.strip()] if text else None
    try:
        resolve_streams(chosen)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--streams") from None
    return chosen


# -- widgets ---------------------------------------------------------------------------------


@cli.command(short_help="The widget catalog.",
             epilog=_examples("stripe-reports widgets", "stripe-reports widgets --json"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def widgets(as_json: bool) -> int:
    """The widget catalog: name, kind, title and parameters of every widget."""
    from apps import cli_widgets  # the widget catalog and DuckDB: only when it runs

    return cli_widgets.print_catalog(as_json)


_COMPARE_HELP = ("What figures are compared with: previous_period (default), previous_year "
                 "(the same period last year), previous_quarter or previous_month (the same "
                 "days of it: for quarter or month to date).")


@cli.command(short_help="One widget's data for a client and period.",
             epilog=_examples(
    "stripe-reports widget acme mrr",
    "stripe-reports widget acme revenue_over_time --start 2025-01-01 --end 2025-03-31",
    "stripe-reports widget acme gross_volume --currency eur --format json",
    "stripe-reports widget acme mrr --start 2025-01-01 --compare previous_year"))
@click.argument("client")
@click.argument("widget")
@click.option("--start", metavar="YYYY-MM-DD",
              help="First day (default: 30 days before the end).")
@click.option("--end", metavar="YYYY-MM-DD",
              help="Last day (default: today in the client's time zone).")
@click.option("--currency", metavar="CUR",
              help="Three-letter code (default: the client's main currency).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="Output format.")
@click.option("--compare", metavar="WITH", help=_COMPARE_HELP)
def widget(client: str, widget: str, start: str | None, end: str | None,
           currency: str | None, fmt: str, compare: str | None) -> int:
    """One WIDGET's data for CLIENT over a period (see `stripe-reports widgets`).

    Each state is an answer and exits 0: ok, no_data, stale, reconnect_required (the JSON's
    `state` says which). A reversed or far-off period exits 2."""
    from apps import cli_widgets  # the widget catalog and DuckDB: only when it runs

    check_names([client])
    return cli_widgets.print_widget(client, widget, start, end, currency, fmt, compare=compare)


@cli.command(short_help="The client report as a PDF (headless Chromium).",
             epilog=_examples(
    "stripe-reports report acme --pdf acme.pdf",
    "stripe-reports report acme --pdf acme-may.pdf --start 2025-05-01 --end 2025-05-31",
    "stripe-reports report acme --pdf acme.pdf --start 2025-01-01 --compare previous_year",
    "stripe-reports report acme --pdf acme.pdf --paper Letter"))
@click.argument("client")
@click.option("--pdf", "pdf", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, writable=True),
              help="Where to write the PDF.")
@click.option("--start", metavar="YYYY-MM-DD", help="First day (default: 30 days before the end).")
@click.option("--end", metavar="YYYY-MM-DD",
              help="Last day (default: today in the client's time zone).")
@click.option("--paper", type=click.Choice(["A4", "Letter"]), default="A4", show_default=True,
              help="Paper size.")
@click.option("--compare", metavar="WITH", help=_COMPARE_HELP)
def report(client: str, pdf: str, start: str | None, end: str | None, paper: str,
           compare: str | None) -> int:
    """Write CLIENT's report for a period as a PDF: the report page with its charts, printed
    by headless Chromium (tiles and table rows are never cut by a page break)."""
    # The widgets, the page and Playwright: only when a report is printed.
    from datetime import UTC, datetime

    from apps.report_pdf import render_pdf
    from engine.client_config import client_config
    from reports.widgets import resolve_compare, resolve_period

    check_names([client])
    try:
        period = resolve_period(start, end, datetime.now(UTC), client_config(client).timezone)
        compare = resolve_compare(compare)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    written = render_pdf(client, period.start, period.end, pdf, paper=paper, compare=compare)
    click.echo(f"Wrote {written} ({client}, {period.start} to {period.end}, {paper}).")
    return 0


@cli.command(short_help="Send clients' reports now (gated on good data).",
             epilog=_examples(
    "stripe-reports deliver acme                       # its deliveries in clients.yaml",
    "stripe-reports deliver --all",
    "stripe-reports deliver acme --period last_month --to boss@acme.example"))
@click.argument("clients", nargs=-1, metavar="[CLIENT]...")
@click.option("--all", "all_clients", is_flag=True,
              help="Every client with deliveries in clients.yaml.")
@click.option("--period", type=click.Choice(["last_month", "last_week", "month_to_date"]),
              help="Deliver this period instead of the client's declared deliveries.")
@click.option("--to", "to", multiple=True, metavar="EMAIL",
              help="Recipient (repeat for more) instead of the declared ones.")
def deliver(clients: tuple[str, ...], all_clients: bool, period: str | None,
            to: tuple[str, ...]) -> int:
    """Deliver each CLIENT's report now, each a run of stripe_delivery_job: the PDF is emailed
    only if the client's key passes its check and the last sync covers the period; otherwise
    it is held and the agency (STRIPE_REPORTS_AGENCY_EMAIL) is told why. A period is sent at
    most once. Exits 0 if every report was sent (or had been), 1 if any was held or failed."""
    if bool(clients) == all_clients:
        raise click.UsageError("Name the clients to deliver, or use --all (not both).")
    # Dagster, the mail and the log: only when a delivery runs.
    from apps import cli_deliveries

    names = check_names(clients) if clients else cli_deliveries.clients_with_deliveries()
    if not names:
        raise click.UsageError("No client has deliveries in clients.yaml: name clients and "
                               "give --to.")
    try:
        dues = cli_deliveries.planned(names, period, to)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--to") from None
    return cli_deliveries.deliver(dues)


@cli.command(short_help="List, add or remove a client's scheduled deliveries.",
             epilog=_examples(
    "stripe-reports deliveries",
    "stripe-reports deliveries acme --add --cadence monthly --day 1 --period last_month "
    "--to boss@acme.example",
    "stripe-reports deliveries acme --add --cadence weekly --day MON --period last_week "
    "--to a@acme.example --to b@acme.example",
    "stripe-reports deliveries acme --remove 2"))
@click.argument("client", required=False)
@click.option("--add", is_flag=True, help="Add a delivery (with --cadence, --day, --period, "
              "--to).")
@click.option("--cadence", type=click.Choice(["weekly", "monthly"]), default="monthly",
              show_default=True)
@click.option("--day", default="1", show_default=True,
              help="MON..SUN for weekly, 1..28 for monthly.")
@click.option("--period", type=click.Choice(["last_month", "last_week", "month_to_date"]),
              default="last_month", show_default=True)
@click.option("--to", "to", multiple=True, metavar="EMAIL", help="Recipient (repeat for more).")
@click.option("--remove", type=int, metavar="N", help="Remove the client's delivery number N.")
def deliveries(client: str | None, add: bool, cadence: str, day: str, period: str,
               to: tuple[str, ...], remove: int | None) -> int:
    """The scheduled deliveries declared in clients.yaml (`deliveries:` under a client): list
    them with the latest period's outcome, add one, or remove one. The report_deliveries
    sensor sends each when due, and a held one after the client's next good sync."""
    from apps import cli_deliveries  # the log and YAML: only when it runs

    if (add or remove) and not client:
        raise click.UsageError("Name the client whose deliveries to change.")
    if add and remove:
        raise click.UsageError("Use --add or --remove, not both.")
    if add:
        if not to:
            raise click.UsageError("--add needs at least one --to EMAIL.")
        return cli_deliveries.add_delivery(check_names([client])[0], cadence, day, period, to)
    if remove:
        return cli_deliveries.remove_delivery(check_names([client])[0], remove)
    names = check_names([client]) if client else cli_deliveries.clients_with_deliveries()
    return cli_deliveries.list_deliveries(names)


# -- servers ---------------------------------------------------------------------------------


@cli.command(short_help="The report web page: agency console and client reports.",
             epilog=_examples(
                 "stripe-reports serve",
                 "stripe-reports serve --hash-password        # type the staff password",
                 "STRIPE_REPORTS_ADMIN_PASSWORD_HASH='scrypt:...' \\\n"
                 "    STRIPE_REPORTS_PUBLIC_URL=https://reports.example.com \\\n"
                 "    stripe-reports serve --host 0.0.0.0 --port 8080"))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any address but loopback needs "
              "STRIPE_REPORTS_ADMIN_PASSWORD (or _HASH) and, for 0.0.0.0, "
              "STRIPE_REPORTS_PUBLIC_URL.")
@click.option("--port", type=int, default=8050, show_default=True, callback=_port,
              help="1 to 65535, or 0 for any free port.")
@click.option("--hash-password", is_flag=True,
              help="Read a staff password from standard input, print its hash for "
              "STRIPE_REPORTS_ADMIN_PASSWORD_HASH, and exit.")
def serve(host: str, port: int, hash_password: bool) -> int:
    """The report web page: the agency console (staff sign in, unless it only listens on
    loopback without a password) and the client reports opened by share links."""
    if hash_password:
        return _print_password_hash()
    from apps.web import serve as serve_page  # Starlette and uvicorn: only when it runs

    serve_page(host=host, port=port)
    return 0


def _print_password_hash() -> int:
    from apps.web.auth import hash_password  # the web's own hashing, checked by `serve`

    if sys.stdin.isatty():
        password = click.prompt("Staff password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    click.echo(hash_password(password))
    return 0


@cli.command(short_help="A signed link to a client's report (no sign-in, until it expires).",
             epilog=_examples("stripe-reports share acme",
                              "stripe-reports share acme --expires 7d",
                              "stripe-reports share acme --compare previous_year",
                              "stripe-reports share --revoke acme   # ends every link of acme"))
@click.argument("client")
@click.option("--expires", default="30d", show_default=True, metavar="DURATION",
              help="How long the link works: 12h, 30d, 2w (at most 366d).")
@click.option("--compare", metavar="WITH", help=_COMPARE_HELP + " The link carries it "
              "(?compare=...) and the page opens with it.")
@click.option("--revoke", is_flag=True, help="End every link of CLIENT made so far.")
def share(client: str, expires: str, compare: str | None, revoke: bool) -> int:
    """Prints a link to CLIENT's report, at STRIPE_REPORTS_PUBLIC_URL (default
    http://127.0.0.1:8050): that client's report only, no sign-in, until it expires or is
    revoked. Anyone with the link can read the report: send it to the client alone."""
    check_names([client])
    # The store and itsdangerous: only when a link is made.
    from apps.web.share import parse_expiry, revoke_links, share_url
    from engine.connection_store import ConnectionStore
    from engine.settings import load_settings
    from reports.widgets.run import resolve_compare

    try:
        compare = resolve_compare(compare)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    settings = load_settings()
    with ConnectionStore.from_settings(settings) as store:
        if revoke:
            revoke_links(store, client)
            click.echo(f"Every share link of {client} made so far now ends in 404.")
            return 0
        click.echo(share_url(settings, store, client, parse_expiry(expires), compare))
    return 0


@cli.command(short_help="The local Stripe-compatible server.",
             epilog=_examples("stripe-reports sandbox",
                              "stripe-reports sandbox --port 0 --seed 3 --charges 500",
                              "stripe-reports sandbox --accounts 100 --rps 25"))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=12111, show_default=True, callback=_port,
              help="1 to 65535, or 0 for any free port.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the data.")
@click.option("--charges", type=click.IntRange(0), help="Charges per account (default: the "
              "demo's own sizes).")
@click.option("--accounts", type=click.IntRange(1), help="Serve N generated accounts instead "
              "of the three demo clients.")
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, help="Added latency.")
@click.option("--rps", type=click.FloatRange(0, min_open=True), help="Rate limit per account.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Share of requests that fail (0 to 1).")
@click.option("--for-demo", is_flag=True,
              help="Serve the sandbox the last `demo` used, at its address (its clients keep "
              "working after the demo).")
def sandbox(host: str, port: int, seed: int, charges: int | None, accounts: int | None,
            latency_ms: float, rps: float | None, fault_rate: float, for_demo: bool) -> int:
    """The local Stripe-compatible server with generated accounts (fake keys), in the
    foreground until Ctrl-C. Prints its URL and each account's key."""
    from sandbox.cli import run_sandbox  # a quarter of a second: only when it runs

    if for_demo:
        port, seed = _demo_sandbox_options()
    return run_sandbox(host=host, port=port, seed=seed, charges=charges, accounts=accounts,
                       latency_ms=latency_ms, rps=rps, fault_rate=fault_rate)


def _demo_sandbox_options() -> tuple[int, int]:
    """The port and seed the last demo's sandbox had (engine/demo_sandbox.py)."""
    # Only `sandbox --for-demo` reads the demo's record.
    from urllib.parse import urlsplit

    from engine.demo_sandbox import demo_sandbox

    record = demo_sandbox()
    if record is None:
        raise click.UsageError("No demo has run here yet (STRIPE_REPORTS_HOME): run "
                               "`make demo` first.")
    return int(urlsplit(record["api_base"]).port or 0), int(record["seed"])


@cli.command(short_help="Keep the code loaded, so sync, widget, ... start at once.",
             epilog=_examples("stripe-reports resident &           # then, in any shell:",
                              "stripe-reports sync acme            # starts in its copy"))
def resident() -> int:
    """Load the code once (Dagster, the pipelines, DuckDB) and keep it loaded: while this
    runs, `sync`, `check`, `clients`, `widget`, `widgets` and `reconcile` typed by the same
    user for the same STRIPE_REPORTS_HOME are each run in a copy of this process, with the
    caller's terminal, working directory and environment, instead of loading everything
    again (a lone sync with nothing new: ~4 s -> under 1 s). Output, exit codes and Ctrl-C
    are the command's own. Without it, commands run as before. It stops on Ctrl-C or
    SIGTERM (after the commands running), or by itself when the code changes."""
    # The resident process and the settings: loaded only by this command.
    from apps.resident import preload, serve
    from engine.settings import load_settings

    home = load_settings().home  # a setting that cannot be used: one line, nothing loaded
    preload()
    return serve(home, main, click.echo)


@cli.command(short_help="Sandbox + demo clients, synced and reported.",
             epilog=_examples("stripe-reports demo", "stripe-reports demo --port 12111"))
@click.option("--port", type=int, default=0, callback=_port,
              help="Sandbox port (default: any free port).")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the demo data.")
def demo(port: int, seed: int) -> int:
    """Start the sandbox, connect its three demo clients (one key gets revoked), sync them,
    print every widget and the reconnect steps for the failed client, then say how to open
    the Dagster UI and the report page."""
    from apps.demo import run_demo  # Dagster and the sandbox: only when it runs

    return run_demo(port=port, seed=seed)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (see EXIT_CODES). Failures a user can act on
    (engine/user_errors.py) end as one line on stderr; anything else is a bug and keeps its
    traceback. A reader that goes away (`clients | head`) ends the command quietly."""
    if argv is None:  # typed, not run by a resident process's copy (apps/resident.py)
        handed = hand_over(sys.argv[1:])
        if handed is not None:
            return handed
    try:
        code = _run(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Output to nowhere from now on, so the flush at exit cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a Unix tool killed by SIGPIPE reports


def _run(argv: list[str]) -> int:
    try:
        result = cli.main(args=argv, prog_name="stripe-reports", standalone_mode=False)
    except click.UsageError as error:  # one line, as every other refusal
        where = error.ctx.command_path if error.ctx else "stripe-reports"
        click.echo(f"error: {error.format_message()} See `{where} --help`.", err=True)
        return error.exit_code
    except click.ClickException as error:
        click.echo(f"error: {error.format_message()}", err=True)
        return error.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo(INTERRUPTED, err=True)
        return INTERRUPTED_EXIT
    except BrokenPipeError:
        raise
    except Exception as error:
        from engine.user_errors import explain  # only a failing command needs it

        problem = explain(error)
        if problem is None:
            raise
        click.echo(f"error: {problem.message}", err=True)
        return problem.exit_code
    return int(result or 0)

if __name__ == "__main__":
    sys.exit(main())
