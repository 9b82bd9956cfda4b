"""Deliveries as Dagster runs: `stripe_delivery_job` (one client's partition, one period), and
the sensor that launches the ones clients.yaml makes due, and retries held ones after the
client's next good sync. The gating, the mail and the log are engine/delivery.py's."""

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from dagster import (
    Config,
    DagsterInstance,
    DefaultSensorStatus,
    JobDefinition,
    OpExecutionContext,
    Out,
    Output,
    RunConfig,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    in_process_executor,
    job,
    op,
    sensor,
)

from assets.partitions import CLIENTS_PARTITION_NAME, clients_partitions
from engine.deliveries import DueDelivery
from engine.delivery import deliver, due_deliveries, pending
from engine.delivery_log import DeliveryLog
from engine.report_print import print_report
from pipelines.client_runs import QUIET_LOGGERS, REPOSITORY_LABEL
from pipelines.jobs import launcher_tags

DELIVERY_JOB_NAME = "stripe_delivery_job"
DELIVERY_STATUS_TAG = "stripe_reports/delivery"


class DeliveryConfig(Config):
    period: str = "last_month"
    start: str
    end: str
    to: list[str]


@op(name="deliver_report", out=Out(str, description="sent, held, already_sent or failed"))
def deliver_report(context: OpExecutionContext, config: DeliveryConfig):
    """Send the client's report for the period if its key passed and its last sync covers the
    period; else hold it and tell the agency why. The output's metadata says which."""
    due = DueDelivery(context.partition_key, config.period, date.fromisoformat(config.start),
                      date.fromisoformat(config.end), tuple(config.to))
    outcome = deliver(due, print_report, run_id=context.run_id)
    context.instance.add_run_tags(context.run_id, {DELIVERY_STATUS_TAG: outcome.status})
    log = context.log.info if outcome.delivered else context.log.warning
    log(f"{outcome.status}: {outcome.reason or ''}")
    yield Output(outcome.status, metadata=outcome.metadata())


@job(name=DELIVERY_JOB_NAME, partitions_def=clients_partitions,
     executor_def=in_process_executor,
     description="Deliver one client's report for one period by email (the PDF), gated on a "
     "passing credential check and a sync that covers the period; held otherwise, with the "
     "reason sent to the agency.")
def stripe_delivery_job() -> None:
    deliver_report()


def delivery_run_config(due: DueDelivery, loggers: dict | None = None) -> RunConfig:
    return RunConfig(ops={"deliver_report": DeliveryConfig(
        period=due.period, start=due.start.isoformat(), end=due.end.isoformat(),
        to=list(due.to))}, loggers=loggers)


def delivery_metadata(events: Iterable[Any]) -> dict[str, Any]:
    """The deliver_report output's metadata (status, reason, to, ...) among a run's events."""
    for event in events:
        if getattr(event, "is_successful_output", False):
            return {key: value.value for key, value in event.step_output_data.metadata.items()}
    return {}


def run_delivery(job_def: JobDefinition, due: DueDelivery, instance: DagsterInstance,
                 launched_by: str) -> tuple[str, dict[str, Any]]:
    """One delivery run in this process (the CLI's `deliver`): its id and output metadata."""
    result = job_def.execute_in_process(
        run_config=delivery_run_config(due, QUIET_LOGGERS), instance=instance,
        partition_key=due.client_id, raise_on_error=False,
        tags={".dagster/repository": REPOSITORY_LABEL, **launcher_tags(launched_by)})
    metadata = delivery_metadata(result.all_events)
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        error = failure.step_failure_data.error if failure else None
        metadata = {"status": "failed", "client": due.client_id, "to": ", ".join(due.to),
                    "reason": error.message.strip() if error else "The delivery run failed."}
    return result.run_id, metadata


@sensor(name="report_deliveries", minimum_interval_seconds=300, job=stripe_delivery_job,
        default_status=DefaultSensorStatus.RUNNING,
        description="Launches the deliveries clients.yaml makes due (each client's latest "
        "period not yet sent), and held ones again once the client's figures were built anew.")
def report_deliveries_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    known = set(context.instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME))
    dues = [d for d in due_deliveries(datetime.now(UTC).date()) if d.client_id in known]
    requests = []
    with DeliveryLog.from_settings() as log:
        for due in dues:
            why = pending(due, log)
            if why:
                requests.append(RunRequest(
                    run_key=f"{due.key}|{why}", partition_key=due.client_id,
                    run_config=delivery_run_config(due), tags=launcher_tags("sensor")))
    if not requests:
        return SkipReason(f"{len(dues)} delivery(ies) due; none to send or retry now.")
    return SensorResult(run_requests=requests)
