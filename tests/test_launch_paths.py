"""Syncs started outside the CLI's own process: the report page's background sync leaves no
zombie, and a run launched in Dagster itself says so in its launcher tag."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dagster import DagsterRunStatus

from apps.launch import start_background_sync
from pipelines.instance import get_instance
from pipelines.jobs import LAUNCHED_BY_TAG

REPO = Path(__file__).resolve().parent.parent
DAGSTER = Path(sys.executable).parent / "dagster"


def _children() -> dict[int, str]:
    """This process's children: pid -> state letter (Z: a zombie, ended but never reaped)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[1]) == os.getpid():
            children[int(stat.parent.name)] = fields[0]
    return children


def test_a_sync_started_from_the_page_is_reaped_when_it_ends(home):
    before = set(_children())
    start_background_sync("nobody")  # an unknown client: the CLI refuses it within seconds
    started = set(_children()) - before
    assert len(started) == 1
    child = started.pop()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child in _children():
        time.sleep(0.2)
    assert child not in _children(), f"pid {child} left as {_children().get(child)}"
    assert "Unknown client 'nobody'" in (home / "sync-nobody.log").read_text()


def test_a_run_launched_in_dagster_is_tagged_dagster_and_a_launcher_can_say_otherwise(home):
    get_instance()  # writes $DAGSTER_HOME/dagster.yaml
    for tags in ('{"dagster/partition": "acme"}',
                 '{"dagster/partition": "globex", "stripe_reports/launched_by": "sensor"}'):
        done = subprocess.run(
            [str(DAGSTER), "job", "launch", "-w", "workspace_config/workspace.yaml",
             "-j", "stripe_sync_job", "--tags", tags], cwd=REPO, capture_output=True,
            text=True, timeout=300, env=os.environ.copy())
        assert done.returncode == 0, done.stderr[-2000:]
    runs = {r.tags["dagster/partition"]: r for r in get_instance().get_runs()}
    assert runs["acme"].tags[LAUNCHED_BY_TAG] == "dagster"
    assert runs["globex"].tags[LAUNCHED_BY_TAG] == "sensor"
    assert all(r.status == DagsterRunStatus.QUEUED for r in runs.values())
