"""What `dagster dev` loads: every asset described, grouped, typed; schedules and sensors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

from engine.streams import STREAMS
from pipelines.definitions import defs

ROOT = Path(__file__).resolve().parent.parent


def test_every_stripe_table_is_an_asset_with_description_kinds_and_columns():
    graph = defs.get_repository_def().asset_graph
    for spec in STREAMS:
        node = graph.get(AssetKey(["stripe", spec.table]))
        assert node.description and spec.endpoint in node.description
        assert node.group_name == "stripe"
        assert {"stripe", "duckdb"} <= set(node.kinds)
        columns = {c.name for c in node.metadata["dagster/column_schema"].columns}
        assert {"client_id", "id", "raw", "is_deleted"} <= columns
        assert node.partitions_def is not None


def test_schedules_and_sensors_are_loaded():
    repository = defs.get_repository_def()
    assert "stripe_sync_hourly" in {s.name for s in repository.schedule_defs}
    assert "register_clients" in {s.name for s in repository.sensor_defs}


def test_what_the_product_needs_is_on_without_a_switch():
    """Sync schedules, the credential watch and every sensor run in a new instance."""
    repository = defs.get_repository_def()
    automations = [*repository.schedule_defs, *repository.sensor_defs]
    assert {a.name for a in automations} >= {
        "stripe_sync_hourly", "check_credentials_daily", "register_clients",
        "credential_failure_alerts", "fail_dead_runs"}
    off = [a.name for a in automations if a.default_status.value != "RUNNING"]
    assert off == []


def test_dagster_loads_the_workspace_from_the_repository_root(home):
    from pipelines.instance import ensure_dagster_home

    ensure_dagster_home()
    for args in ([], ["-w", "workspace_config/workspace.yaml"]):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "Validation successful" in done.stderr + done.stdout
