"""The daily credential watch: every stored client's key checked against Stripe, nothing synced.

Each check is recorded in the connection store (`clients`, `check` and the widgets read it)
and on the client's partition of the credential check in Dagster; the reconnect list
(`stripe/clients_needing_reconnect`) is refreshed.
A dead key fails the run, naming the clients, so the run-failure sensor (pipelines.alerts)
raises one alert per client. Stripe being unreachable or rate-limiting says nothing about a
key: those clients are logged as not checked and left as they were.
"""

import logging
from dataclasses import dataclass, field

from dagster import (
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from assets.client_health import refresh_reconnect_list, report_credential_check
from assets.known_failure import KnownFailure
from assets.partitions import CLIENTS_PARTITION_NAME
from engine.connection_store import (
    ClientConnection,
    ClientNotConnected,
    ConnectionState,
    ConnectionStore,
)
from engine.credentials import check_client
from engine.failures import StripeAccessError
from pipelines.alerts import FAILED_CLIENTS_METADATA
from resources.dagster_resources import StripeResource

CHECK_JOB_NAME = "check_credentials_job"
CHECK_SCHEDULE_NAME = "check_credentials_daily"
CHECK_CRON = "0 6 * * *"  # before the working day, in UTC


@dataclass
class WatchReport:
    ok: list[ClientConnection] = field(default_factory=list)
    failed: list[ClientConnection] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"Credential check: {len(self.ok)} ok, {len(self.failed)} failed, "
                f"{len(self.not_checked)} not checked (Stripe unreachable).")


def check_line(connection: ClientConnection) -> str:
    """What the log says about one client: the masked key, never the key."""
    if connection.connected:
        return (f"{connection.client_id}: ok (account {connection.account_id}, "
                f"key {connection.masked_key})")
    return f"{connection.client_id}: FAILED (key {connection.masked_key}): {connection.reason}"


def check_every_client(store: ConnectionStore, log: logging.Logger,
                       api_base: str | None = None) -> WatchReport:
    """Check every client with a stored key, one log line each."""
    report = WatchReport()
    for connection in store.list():
        if connection.state is ConnectionState.DISCONNECTED:
            continue
        client_id = connection.client_id
        try:
            checked = check_client(client_id, store=store, api_base=api_base)
        except ClientNotConnected:  # disconnected between listing and checking
            continue
        except StripeAccessError as error:  # 429 / 5xx / network: the key is not judged
            log.warning(f"{client_id}: not checked: {error.message}")
            report.not_checked.append(client_id)
            continue
        if checked.connected:
            log.info(check_line(checked))
            report.ok.append(checked)
        else:
            log.error(check_line(checked))
            report.failed.append(checked)
    return report


def _failure(report: WatchReport) -> KnownFailure:
    lines = [f"{len(report.failed)} client(s) need a new Stripe key:"]
    for connection in report.failed:
        lines.append(f"{connection.client_id}: {connection.reason}")
        lines += [f"  {n}. {step}" for n, step in enumerate(connection.steps, start=1)]
    return KnownFailure(
        description="\n".join(lines),
        metadata={FAILED_CLIENTS_METADATA: MetadataValue.text(
            ",".join(c.client_id for c in report.failed))},
        allow_retries=False,  # asking again does not revive a dead key
    )


def _publish(context: OpExecutionContext, report: WatchReport, store: ConnectionStore) -> None:
    """Each checked client's verdict on its partition of the credential check (shown between
    syncs), and the reconnect list; clients Stripe did not answer for keep their last one."""
    partitions = set(context.instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME))
    for connection in [*report.ok, *report.failed]:
        if connection.client_id in partitions:
            report_credential_check(context.instance, connection)
    refresh_reconnect_list(context.instance, store)


@op(
    name="check_credentials",
    description="Asks Stripe whose key each stored client has (GET /v1/account) and records "
    "the outcome; fails, naming the clients, when a key is rejected.",
)
def check_credentials(context: OpExecutionContext, stripe: StripeResource) -> None:
    with stripe.store() as store:
        report = check_every_client(store, context.log, api_base=stripe.api_base)
        _publish(context, report, store)
    context.log.info(report.summary())
    if report.failed:
        raise _failure(report)


@job(
    name=CHECK_JOB_NAME,
    description="Checks every stored client's Stripe key without syncing; a failed key is "
    "marked in the connection store and alerted by the credential_failure_alerts sensor.",
    tags={"stripe_reports/kind": "credential_watch"},
)
def check_credentials_job() -> None:
    check_credentials()


check_credentials_schedule = ScheduleDefinition(
    name=CHECK_SCHEDULE_NAME,
    cron_schedule=CHECK_CRON,
    execution_timezone="UTC",
    job=check_credentials_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Checks every client's Stripe key once a day, without syncing.",
)
