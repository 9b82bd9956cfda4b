"""A client is checked before its run; only a client with something new gets a run.

Both a batch run (pipelines/batches.py) and a sync the apps start without a full refresh or
chosen streams (apps/launch.py: the CLI, the report page, the demo) check each client first
with `check_or_run`, so a quiet client costs neither path a run.

Measured on a batch of 20 no-change clients (benchmarks/clients_curve.md, issue 21): a
client's `stripe_sync_job` run cost ~2.4 s of a worker, of which the sync ~0.6 s (mostly
Stripe's latency) and Dagster's bookkeeping the rest: creating the run ~0.8 s (its own
SQLite file, migrated) and storing ~70 events ~1.3 s. So the batch run makes the client's
sync itself, with the client run's own code (assets/stripe_assets.py: the engine call with
its guards, the client lock, the key recorded as working, the reporting build judged due or
not), and:
- nothing new, no build due: the client is recorded as checked without a run: an
  observation of its stripe/balance (the UI's "last checked" per client; its last sync
  stays the latest materialization), the credential check passed, the freshness verdict
  and the reconnect list where they changed.
- anything else (rows landed, a build due, a failure): the client's run is launched as
  before and takes over what this sync found (assets/handover.py), so nothing is synced
  twice and the run says what landed or what failed, with its usual message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime

from dagster import AssetObservation, DagsterInstance, MetadataValue

from assets.client_health import (
    BALANCE_KEY,
    CREDENTIAL_CHECK_KEY,
    refresh_reconnect_entries,
    report_check,
    report_freshness,
)
from assets.handover import ClientCheck, handing_over
from assets.stripe_assets import (
    credential_passed,
    explained_errors,
    observations,
    settle_check,
    stripe_sync,
    sync_account,
)
from engine.reporting.checked import mark_clients_checked
from engine.streams import STREAMS
from engine.user_errors import explain
from engine.warehouse import Warehouse
from pipelines.client_runs import ClientSyncOutcome
from resources.dagster_resources import StripeResource

CHECKED = ("Checked without a run of its own: nothing new in any stream, no reporting build "
           "due. Its last sync is the latest materialization.")


@dataclass
class Checked:
    """A batch run's check of one client: quiet (recorded as checked, no run needed), or
    the check to hand over to the client's run (None: the run starts from scratch)."""

    quiet: bool
    check: ClientCheck | None
    seconds: float
    at: datetime | None = None  # when a quiet client was judged: its figures count as built


def check_client(client_id: str, stripe: StripeResource, warehouse: Warehouse,
                 log: Callable[[str], None]) -> Checked:
    """Sync the client as its full `stripe_sync_job` run would, then settle it: quiet when
    it found nothing new and no reporting build is due (the batch then marks it checked)."""
    started = time.monotonic()
    try:
        account, connection = stripe.account_for(client_id)
    except Exception:  # noqa: BLE001 (not connected, an unreadable key, a store gone: the
        # client's run fails where it opens the account, with the message saying what to do)
        return Checked(False, None, time.monotonic() - started)
    specs = list(STREAMS)
    check = ClientCheck(account, connection, streams=tuple(s.name for s in specs),
                        assets=frozenset(stripe_sync.keys))
    try:
        check.report = sync_account(account, connection, warehouse, specs, log=log,
                                    concurrency=stripe.concurrency)
    except Exception as error:  # noqa: BLE001 (the client's run raises it where it fails)
        check.error = error
        return Checked(False, check, time.monotonic() - started)
    at = datetime.now(UTC)
    with stripe.store() as store:  # marked checked with the batch's others: mark_checked
        quiet = settle_check(store, warehouse, account, connection, check.report,
                             checked_at=at)
    return Checked(quiet, check, time.monotonic() - started, at)


def mark_checked(stripe: StripeResource, warehouse: Warehouse,
                 checked: dict[str, datetime]) -> None:
    """The quiet clients' figures count as built, and they as synced, when each was judged:
    one writer session for the batch (the DuckDB file's writer lock serialises every
    session across threads and processes: 4 a no-change client before)."""
    with stripe.store() as store, explained_errors():
        mark_clients_checked(store, warehouse, checked)


def check_or_run(client_id: str, stripe: StripeResource, warehouse: Warehouse,
                 instance: DagsterInstance, run: Callable[[], ClientSyncOutcome],
                 log: Callable[[str], None], *, launched: dict[str, str]
                 ) -> tuple[ClientSyncOutcome, datetime | None]:
    """The client checked: quiet, it is recorded as checked (the outcome has no run, and the
    time says when it was judged: the caller marks it checked, with any others); otherwise
    `run` (the client's `stripe_sync_job` run) takes over what the check found."""
    checked = check_client(client_id, stripe, warehouse, log)
    if checked.quiet and checked.check is not None:
        try:
            record_checked(instance, checked.check, launched)
        except Exception as error:  # noqa: BLE001 (a batch's others go on)
            problem = explain(error)
            return ClientSyncOutcome(client_id, False, message=problem.message if problem
                                     else f"{type(error).__name__}: {error}"), None
        requests = checked.check.outcome().requests
        return (ClientSyncOutcome(client_id, True, checked_without_run=True,
                                  assets={BALANCE_KEY.to_user_string(): {
                                      "api_requests": requests}}),
                checked.at or datetime.now(UTC))
    with handing_over(checked.check) if checked.check else nullcontext():
        return run(), None


def record_checked(instance: DagsterInstance, check: ClientCheck,
                   launched: dict[str, str]) -> None:
    """What a client run that found nothing new records, in fewer events: one observation
    of the client's stripe/balance (its partition: when it was checked, the requests, the
    seconds, by what: a batch run, or who launched it), where its credential check hangs,
    and that check's pass.
    Not one per Stripe asset as a client run makes: each stored event costs ~10-35 ms on
    SQLite, and 14 of them doubled a checked client's cost (benchmarks/clients_curve.md)."""
    assert check.report is not None
    client = check.account.client_id
    by = {key: MetadataValue.dagster_run(value) if key == "batch_run" else value
          for key, value in launched.items()}
    for key, metadata in observations({BALANCE_KEY}, [], check.report):
        instance.report_runless_asset_event(AssetObservation(
            asset_key=key, partition=client, description=CHECKED,
            metadata={**metadata, "streams_checked": len(check.streams), **by}))
    report_check(instance, CREDENTIAL_CHECK_KEY, client, BALANCE_KEY, passed=True,
                 metadata={**credential_passed(check.account, check.report), **by})


def publish_health(instance: DagsterInstance, stripe: StripeResource, warehouse: Warehouse,
                   clients: Sequence[str], log: Callable[[str], None]) -> None:
    """The freshness verdicts and the reconnect list for the clients checked without a run,
    once for the batch (a client run does it for its own client). Health reporting never
    fails the batch: the next client_health tick tries again."""
    if not clients:
        return
    try:
        with stripe.store() as store:
            refresh_reconnect_entries(instance, store, clients)
        report_freshness(instance, clients, warehouse)
    except Exception as error:  # noqa: BLE001
        log(f"Client health not updated: {type(error).__name__}: {error}")
