"""The command line as a user meets it: `stripe-reports` in its own process, each test with
its own STRIPE_REPORTS_HOME. Help, tables, colour, pipes, the sync summary, names checked
before anything happens (the Dagster instance unchanged), dates, disconnect and purge."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assets.partitions import CLIENTS_PARTITION_NAME
from engine.connection_store import ConnectionStore
from engine.keys import mask_key
from engine.warehouse_factory import warehouse_from_settings
from pipelines.instance import get_instance
from sandbox import AccountSpec
from tests.test_bad_input import refused
from tests.test_reporting_support import seed_report_data

CLI = Path(sys.executable).parent / "stripe-reports"
SMALL = {"charges": 20, "customers": 6, "subscriptions": 4, "products": 2, "history_days": 60}
KEY = "sk_test_" + "CliTestKeyBody" * 3
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLOUR = re.compile(r"\x1b\[(?:\d+;)*(?:3[0-8]|9[0-7])[;m]")  # a foreground colour
COMMANDS = ("connect", "disconnect", "clients", "check", "sync", "widgets", "widget", "serve",
            "sandbox", "demo")


def run_cli(*args: str, stdin: str = "", env: dict[str, str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args], input=stdin, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=os.environ["STRIPE_REPORTS_HOME"],
    )


def on_a_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    """What the command writes to standard output when that is a terminal (a pty)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([str(CLI), *args], stdout=follower, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                               cwd=os.environ["STRIPE_REPORTS_HOME"])
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty is closed once the command exits
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0, process.stderr.read()
    return b"".join(chunks).decode()


def save(client_id: str, key: str = KEY, *, failed: bool = False) -> None:
    with ConnectionStore.from_settings() as store:
        store.save_connection(client_id, secret_key=key, account_id=f"acct_{client_id}",
                              livemode=False)
        if failed:
            store.record_check(client_id, ok=False, reason="Stripe rejected the key.",
                               steps=[f"Run `stripe-reports connect {client_id}`."])


def dagster_state() -> tuple[list[str], list[tuple[str, str]]]:
    """The instance's client partitions and runs (id, status)."""
    instance = get_instance()
    return (sorted(instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME)),
            sorted((r.run_id, r.status.value) for r in instance.get_runs()))


def row_counts() -> dict[str, int]:
    with warehouse_from_settings().reader() as conn:
        tables = conn.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                              "WHERE schema_name IN ('stripe', 'reporting')").fetchall()
        return {f"{s}.{t}": conn.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0]
                for s, t in tables}


# -- help, tables, colour, pipes -------------------------------------------------------------


def test_every_command_has_a_description_examples_and_the_exit_codes(home):
    top = run_cli("--help")
    assert top.returncode == 0
    assert "Exit codes:" in top.stdout and "2  bad usage" in top.stdout
    for command in COMMANDS:
        assert re.search(rf"^  {command}\s+\w", top.stdout, re.M), command
        shown = run_cli(command, "--help")
        assert shown.returncode == 0, (command, shown.stderr)
        usage, description = shown.stdout.split("\n\n")[:2]
        assert usage.startswith(f"Usage: stripe-reports {command}")
        assert len(description.split()) >= 5, (command, description)
        examples = shown.stdout.split("Examples:\n", 1)[1].split("\n\n", 1)[0]
        assert f"stripe-reports {command}" in examples, command
        assert "Exit codes:" in shown.stdout, command
    assert "--seed" in run_cli("sandbox", "--help").stdout
    streams = run_cli("sync", "--help").stdout
    assert "charges, refunds, customers, subscriptions" in " ".join(streams.split())


def test_tables_have_a_header_row(home):
    save("acme")
    save("globex", failed=True)
    listing = run_cli("clients").stdout.splitlines()
    assert listing[0].split() == ["client", "state", "account", "key", "last", "check", "last",
                                  "sync"]
    assert listing[1].split()[:4] == ["acme", "connected", "acct_acme", mask_key(KEY)]
    assert listing[2].split()[:2] == ["globex", "failed"]
    catalog = run_cli("widgets").stdout.splitlines()
    assert catalog[0].split() == ["name", "kind", "title", "parameters"]
    assert catalog[1].split()[0] == "gross_volume"


def test_colour_only_on_a_terminal_and_never_with_no_color(home):
    save("acme")
    save("globex", failed=True)
    coloured = on_a_terminal("clients", env={"NO_COLOR": "", "TERM": "xterm-256color"})
    failed_line = next(line for line in coloured.splitlines() if line.startswith("globex"))
    assert "\x1b[1;31mfailed" in failed_line  # bold red
    plain = on_a_terminal("clients", env={"NO_COLOR": "1", "TERM": "xterm-256color"})
    assert not COLOUR.search(plain) and "failed" in plain  # NO_COLOR allows bold
    piped = run_cli("clients", env={"TERM": "xterm-256color"})
    assert not ANSI.search(piped.stdout) and "failed" in piped.stdout


def test_a_reader_that_goes_away_ends_the_command_quietly(home):
    for n in range(30):
        save(f"client{n:02d}")
    read, write = os.pipe()
    os.close(read)  # as `| head` does once it has read its lines
    process = subprocess.run([str(CLI), "clients"], stdout=write, stderr=subprocess.PIPE,
                             text=True, timeout=60, env=os.environ.copy())
    os.close(write)
    assert process.stderr == ""
    assert process.returncode == 141  # what a tool killed by SIGPIPE reports
    shell = subprocess.run(f"'{CLI}' widgets | head -1", shell=True, capture_output=True,
                           text=True, timeout=60)
    assert shell.stdout.split() == ["name", "kind", "title", "parameters"]
    assert shell.stderr == ""


# -- sync: usage, summary, names checked first, disconnect --------------------------------------


def test_a_plain_sync_is_a_usage_error_pointing_to_all(home):
    save("acme")
    refused(run_cli("sync"), 2, "--all")
    refused(run_cli("sync", "acme", "--all"), 2, "--all")
    assert dagster_state() == ([], [])


@pytest.fixture
def synced(home, sandbox_factory):
    """acme synced once through the real CLI (a Dagster run, rows in the warehouse)."""
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    acme = server.world.accounts["acme"]
    assert run_cli("connect", "acme", stdin=acme.secret_key + "\n").returncode == 0
    first = run_cli("sync", "acme")
    assert first.returncode == 0, first.stderr
    return first


def test_the_sync_summary_reads_naturally(synced):
    lines = synced.stdout.splitlines()
    assert re.fullmatch(r"acme: synced \(Dagster run [0-9a-f-]+\)", lines[0])
    charges = next(line for line in lines if "stripe/charges" in line)
    assert re.fullmatch(r"  stripe/charges\s+20 new · [1-9]\d* requests?", charges)
    assert re.search(r"\b1 request$", synced.stdout, re.M)  # singular
    assert not re.search(r"\b1 requests|\+0|\b0 (new|updated|deleted)", synced.stdout)
    again = run_cli("sync", "acme")
    # Checked first, as a batch run checks: nothing new makes no run, and says so in a line.
    assert again.stdout == ("acme: checked: nothing new since the last sync (4 requests), so "
                            "no run was needed (Dagster records the check on stripe/balance)\n")


def test_unknown_names_change_nothing_in_dagster_the_store_or_the_warehouse(synced):
    from starlette.testclient import TestClient

    from apps.web.app import create_app

    before = (dagster_state(), row_counts(), ConnectionStore.from_settings().list())
    assert before[0][0] == ["acme"] and len(before[0][1]) == 1
    for command in (["sync", "acm"], ["sync", "acme", "acm"], ["check", "acm"],
                    ["disconnect", "acm"], ["disconnect", "acm", "--purge"],
                    ["widget", "acm", "mrr"], ["widget", "acm", "mrr", "--format", "json"]):
        refused(run_cli(*command), 2, "Unknown client 'acm'", "Did you mean 'acme'?")
    refused(run_cli("widget", "acme", "mrrr"), 2, "Unknown widget 'mrrr'", "'mrr'")
    refused(run_cli("sync", "acme", "--streams", "charge"), 2, "Unknown stream(s): charge")
    with TestClient(create_app(), base_url="http://127.0.0.1:8050") as web:
        for path in ("/clients/acm", "/clients/acm/connect", "/api/clients/acm/status",
                     "/api/clients/acm/widgets", "/api/clients/acm/widgets/mrr"):
            answer = web.get(path)
            assert answer.status_code == 404 and "Did you mean" in answer.text, path
        posted = web.post("/clients/acm/connect", data={"secret_key": KEY, "form_token": "x"})
        assert posted.status_code == 404
        assert web.get("/api/clients/acme/status").status_code == 200
    assert (dagster_state(), row_counts(), ConnectionStore.from_settings().list()) == before


def test_disconnect_removes_the_partition_and_purge_the_rows(synced):
    counts = row_counts()
    assert counts["stripe.charges"] == 20
    kept = run_cli("disconnect", "acme")
    assert kept.returncode == 0 and "synced data stays" in kept.stdout
    assert "--purge" in kept.stdout
    partitions, runs = dagster_state()
    assert partitions == [] and len(runs) == 1  # the run history stays
    assert row_counts() == counts
    assert ConnectionStore.from_settings().get("acme").state.value == "disconnected"

    purged = run_cli("disconnect", "acme", "--purge")
    assert purged.returncode == 0, purged.stderr
    removed = int(re.search(r"its ([\d,]+) synced rows", purged.stdout).group(1).replace(",", ""))
    assert removed >= sum(counts.values())  # and the client's cursors in meta.*
    assert all(n == 0 for n in row_counts().values())


# -- dates -------------------------------------------------------------------------------------


@pytest.fixture
def reported(home):
    seed_report_data(warehouse_from_settings(), "acme", datetime.now(UTC))
    save("acme")
    return home


def _period(*args: str) -> tuple[str, str]:
    import json

    done = run_cli("widget", "acme", "revenue_over_time", "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    return data["start"], data["end"]


def test_a_lone_start_ends_today_and_a_lone_end_starts_30_days_earlier(reported):
    from starlette.testclient import TestClient

    from apps.web.app import create_app

    today = datetime.now(UTC).date()
    start = today - timedelta(days=45)
    assert _period("--start", start.isoformat()) == (start.isoformat(), today.isoformat())
    end = today - timedelta(days=10)
    assert _period("--end", end.isoformat()) == ((end - timedelta(days=29)).isoformat(),
                                                 end.isoformat())
    refused(run_cli("widget", "acme", "mrr", "--start", "2025-03-10", "--end", "2025-03-01"),
              2, "--start 2025-03-10 is after --end 2025-03-01")
    future = (today + timedelta(days=20)).isoformat()
    refused(run_cli("widget", "acme", "mrr", "--start", future), 2, f"--start {future}",
              "after today")
    with TestClient(create_app(), base_url="http://127.0.0.1:8050") as web:
        api = "/api/clients/acme/widgets/revenue_over_time"
        lone = web.get(api, params={"start": start.isoformat()}).json()
        assert (lone["start"], lone["end"]) == (start.isoformat(), today.isoformat())
        lone = web.get(api, params={"end": end.isoformat()}).json()
        assert lone["start"] == (end - timedelta(days=29)).isoformat()
        reversed_ = {"start": "2025-03-10", "end": "2025-03-01"}
        assert web.get(api, params=reversed_).status_code == 400
        assert web.get("/clients/acme", params=reversed_).status_code == 400
        assert web.get("/clients/acme", params={"start": future}).status_code == 400


# -- connect --bulk --------------------------------------------------------------------------


def test_connect_bulk_reports_each_line_stores_the_good_ones_and_never_echoes_a_key(
        home, sandbox_factory):
    server = sandbox_factory([AccountSpec(name, **SMALL) for name in ("acme", "globex", "hooli")])
    keys = {name: account.secret_key for name, account in server.world.accounts.items()}
    server.world.revoke_key("hooli")
    lines = [f"acme\t{keys['acme']}\tAcme Corp", "# a comment, then a blank line", "",
             f"globex\t{keys['globex']}", f"hooli\t{keys['hooli']}", keys["globex"],
             f"Bad Id\t{keys['acme']}", f"{keys['acme']}\tacme", f"acme\t{keys['acme']}"]
    done = run_cli("connect", "--bulk", stdin="\n".join(lines) + "\n")

    assert done.returncode == 1 and "Traceback" not in done.stderr
    text = done.stdout + done.stderr
    for key in keys.values():
        assert key not in text and key[8:] not in text
    outcomes = dict(re.findall(r"^line (\d+): (.*)$", done.stdout, re.M))
    assert set(outcomes) == {"1", "4", "5", "6", "7", "8", "9"}
    acme = server.world.accounts["acme"]
    assert outcomes["1"] == f"acme connected ({acme.account_id}, key {mask_key(keys['acme'])})"
    assert outcomes["4"].startswith("globex connected")
    assert outcomes["5"].startswith(f"hooli FAILED: key {mask_key(keys['hooli'])}: Stripe "
                                    "rejected the key")
    assert "Expected CLIENT<TAB>KEY[<TAB>NAME]" in outcomes["6"]
    assert "Invalid client id" in outcomes["7"] and "holds a key" in outcomes["8"]
    assert "already on line 1" in outcomes["9"]
    assert "2 clients connected, 5 failed, of 7 lines." in done.stderr

    stored = {c.client_id: c for c in ConnectionStore.from_settings().list()}
    assert sorted(stored) == ["acme", "globex"] and stored["acme"].name == "Acme Corp"
    assert dagster_state()[0] == ["acme", "globex"]

    again = run_cli("connect", "--bulk", stdin=f"globex\t{keys['globex']}\n")
    assert again.returncode == 0 and "1 client connected, 0 failed, of 1 line." in again.stderr
    refused(run_cli("connect", "--bulk", stdin="\n"), 2, "no lines")
    refused(run_cli("connect", "acme", "--bulk"), 2, "--bulk")


@pytest.mark.postgres
def test_connect_bulk_into_a_postgresql_store_holds_few_sessions(home, sandbox_factory,
                                                                 postgres_server, monkeypatch):
    """A store per line held a session each until garbage collection: 1,000 lines ran the
    server out of connections. Here the store's role may open 10 sessions; 40 lines."""
    names = [f"client{n:02d}" for n in range(40)]
    server = sandbox_factory([AccountSpec(name, charges=3, customers=1, subscriptions=0,
                                          products=1, history_days=10) for name in names])
    database = postgres_server.create_database().rsplit("/", 1)[1]
    admin = postgres_server.connect(database)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("CREATE ROLE bulk_store LOGIN PASSWORD 'bulk-store' CONNECTION LIMIT 10")
        cursor.execute(f'ALTER DATABASE "{database}" OWNER TO bulk_store')
    admin.close()
    store_url = (f"postgresql+psycopg2://bulk_store:bulk-store@{postgres_server.host}:"
                 f"{postgres_server.port}/{database}")
    lines = "".join(f"{name}\t{server.world.accounts[name].secret_key}\n" for name in names)

    monkeypatch.setenv("STRIPE_REPORTS_CONNECTIONS_URL", store_url)  # the CLI's too

    done = run_cli("connect", "--bulk", stdin=lines)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "40 clients connected, 0 failed, of 40 lines." in done.stderr
    with ConnectionStore.from_settings() as store:
        stored = store.list()
    assert sorted(c.client_id for c in stored) == names
