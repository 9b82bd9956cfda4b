"""What a benchmark run found, as plain records the report renders."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.floor import FloorRun
from benchmarks.many_clients import ManyClientsRun
from benchmarks.verify import Verification
from benchmarks.widget_latency import WidgetLatency


@dataclass
class ThroughputRow:
    run: str  # "charges 100k", "all streams 100k", ...
    condition: str  # Condition.name
    objects: int
    requests: int
    server_requests: int  # as the sandbox counted them (retries and 429s included)
    sync_s: float
    wall_s: float
    peak_rss_mb: float
    verifications: list[Verification] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    size: int = 0
    charges_only: bool = True
    cpu_s: float = 0.0  # CPU time of the sync process (user + system), start-up included
    concurrency: int = 0
    load: float = 0.0  # the machine's 1-minute load average when the run ended

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.sync_s if self.sync_s else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.sync_s if self.sync_s else 0.0

    @property
    def verified(self) -> bool:
        return bool(self.verifications) and all(v.ok for v in self.verifications) \
            and not self.errors


@dataclass
class ResyncRow:
    condition: str
    sync_s: float
    wall_s: float
    requests: int
    streams: int
    verified: bool


@dataclass
class PeerRow:
    name: str
    objects: int | None = None
    seconds: float | None = None
    peak_rss_mb: float | None = None
    verified: bool | None = None
    detail: str = ""  # why it did not run, or what it landed

    @property
    def objects_per_s(self) -> float | None:
        if self.objects is None or not self.seconds:
            return None
        return self.objects / self.seconds


def code_version() -> str:
    """The commit measured, and whether pipeline code differed from it (others edit the tree)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "assets", "resources",
                                "pipelines", "reports", "sandbox"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = sorted(line[3:] for line in dirty if line.strip())
    return commit + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, " \
        f"Python {platform.python_version()}"


@dataclass
class Results:
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    machine: str = field(default_factory=machine)
    code_before: str = field(default_factory=code_version)
    code_after: str = ""
    sandbox_generate_s: float = 0.0
    concurrency: int = 0  # requests in flight per stream in the throughput runs
    throughput: list[ThroughputRow] = field(default_factory=list)
    floors: dict[int, FloorRun] = field(default_factory=dict)  # size -> bare client
    resyncs: list[ResyncRow] = field(default_factory=list)
    widgets: WidgetLatency | None = None
    many: ManyClientsRun | None = None
    peers: list[PeerRow] = field(default_factory=list)
    peer_ours: ThroughputRow | None = None  # our run on the peers' account
    notes: list[str] = field(default_factory=list)
    total_s: float = 0.0
    load_before: float = 0.0  # 1-minute load averages: the machine may be shared
    load_after: float = 0.0

    @property
    def all_verified(self) -> bool:
        rows = [r.verified for r in self.throughput]
        rows += [r.verified for r in self.resyncs]
        if self.many is not None:
            rows.append(self.many.verified)
        return all(rows)

    def row(self, run: str, condition: str) -> ThroughputRow | None:
        for row in self.throughput:
            if row.run == run and row.condition == condition:
                return row
        return None
