"""Which process runs a sync, and whether it still does.

Nothing runs when a process is killed (kill -9, a crash, the machine's OOM killer), so a
sync names its process when it starts, and readers ask later whether that process lives.
A process is told by its host, pid and start time, so a reused pid is not mistaken for it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def _start_ticks(fields: list[str]) -> int:
    return int(fields[19])  # field 22 of stat: start time in clock ticks after boot


def this_process() -> str:
    """`host:pid:start` of the calling process, as a sync records its owner."""
    fields = _stat_fields(os.getpid())
    start = _start_ticks(fields) if fields else 0
    return f"{socket.gethostname()}:{os.getpid()}:{start}"


def process_gone(owner: str) -> bool:
    """Whether the process `this_process()` named is known to be gone. A process of another
    host cannot be looked at from here: it counts as running (its own host's dead-run sensor
    records its end)."""
    try:
        host, pid, start = _parse(owner)
    except ValueError:  # not written by this_process(): nothing to judge by
        return False
    if host != socket.gethostname():
        return False
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):  # gone, or killed and not yet reaped
        return True
    return bool(start) and _start_ticks(fields) != start


def _parse(owner: str) -> tuple[str, int, int]:
    host, pid, start = owner.rsplit(":", 2)
    return host, int(pid), int(start)


def process_alive(pid: int, started_before: float | None, slack: float = 5.0) -> bool:
    """Whether `pid` runs on this host (not a zombie) and began before `started_before`
    (epoch seconds, with `slack`): a process that began after a run started is not its own."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    if started_before is None:
        return True
    return _boot_time() + _start_ticks(fields) / os.sysconf("SC_CLK_TCK") \
        <= started_before + slack


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0
