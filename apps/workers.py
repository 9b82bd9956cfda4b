"""Clients synced side by side in worker processes, each worker reused for many clients.

A worker that dies (kill -9, a crash, the OOM killer) fails only the client it was syncing:
its place is taken by a new worker and the other clients go on. Ctrl-C stops the workers'
syncs the way it stops one in this process (recorded as interrupted), then the command.
Progress comes back over each worker's own pipe: no extra process that could be lost.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection, wait
from typing import Any

from engine.progress import ProgressSink
from pipelines.client_runs import ClientSyncOutcome

# sync_one(client_id, progress=sink): a picklable callable that syncs one client.
SyncOne = Callable[..., ClientSyncOutcome]
# How long workers get to record an interruption before they are stopped outright.
INTERRUPT_GRACE_SECONDS = 20.0
INTERRUPTED = ("The sync was interrupted before it finished; the next sync resumes where it "
               "stopped.")


def _serve_clients(conn: Connection, sync_one: SyncOne, with_progress: bool) -> None:
    """A worker: syncs the clients the parent sends, one at a time, until it sends None."""
    send_lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        with send_lock, suppress(OSError):  # the parent is gone: nobody left to tell
            conn.send(message)

    def sink(*update: Any) -> None:
        send(("progress", update))

    try:
        # Out of the terminal's process group: Ctrl-C there would also reach the helper
        # processes Dagster starts here (they print tracebacks); the parent passes it on.
        os.setpgrp()
        # Started with Ctrl-C held back (see _interrupts_held): from here it interrupts.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        while (client := conn.recv()) is not None:
            send(("done", _sync(sync_one, client, sink if with_progress else None)))
    except (KeyboardInterrupt, EOFError, OSError):
        return  # interrupted while idle, or the parent went away


def _sync(sync_one: SyncOne, client: str, sink: ProgressSink | None) -> ClientSyncOutcome:
    try:
        return sync_one(client, progress=sink)
    except KeyboardInterrupt:
        return ClientSyncOutcome(client, False, message=INTERRUPTED)
    except Exception as error:  # a bug: its traceback on stderr, the other clients go on
        traceback.print_exc()
        return ClientSyncOutcome(client, False, message=f"The sync failed: {error}")


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C waits (blocked, not lost) while a worker starts: the worker inherits the block
    and lifts it once its imports are done, so Ctrl-C never lands in its start-up."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class _Worker:
    def __init__(self, context: Any, sync_one: SyncOne, with_progress: bool) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve_clients,
                                       args=(child, sync_one, with_progress))
        with _interrupts_held():
            self.process.start()
        child.close()
        self.client: str | None = None

    def give(self, pending: list[str]) -> None:
        """The next pending client, or the end."""
        self.client = pending.pop(0) if pending else None
        with suppress(OSError):
            self.conn.send(self.client)

    def gone(self) -> ClientSyncOutcome:
        """The outcome of the client this worker was syncing when its process died."""
        self.process.join(timeout=10)
        code = self.process.exitcode
        how = (f"it was killed ({signal.Signals(-code).name})" if code and code < 0
               and -code in signal.valid_signals() else f"it crashed (exit code {code})")
        return ClientSyncOutcome(self.client or "", False, message=(
            f"The process syncing this client stopped before the sync finished: {how}. The "
            "other clients were not affected; the next sync of this client resumes where it "
            "stopped."))


def sync_in_workers(client_ids: list[str], sync_one: SyncOne, parallel: int,
                    progress: ProgressSink | None,
                    on_done: Callable[[ClientSyncOutcome], None]
                    ) -> dict[str, ClientSyncOutcome]:
    """Each client synced once by `sync_one` in one of `parallel` worker processes."""
    context = multiprocessing.get_context("spawn")
    pending = list(client_ids)
    workers: list[_Worker] = []
    outcomes: dict[str, ClientSyncOutcome] = {}
    try:
        for _ in range(min(parallel, len(pending))):
            workers.append(_Worker(context, sync_one, progress is not None))
            workers[-1].give(pending)
        while busy := {w.conn: w for w in workers if w.client is not None}:
            for conn in wait(list(busy)):
                worker = busy[conn]
                outcome = _receive(worker, progress)
                if outcome is None:
                    continue
                outcomes[outcome.client_id] = outcome
                on_done(outcome)
                if worker.process.is_alive():
                    worker.give(pending)
                    continue
                workers.remove(worker)
                worker.conn.close()
                if pending:  # a new worker takes the dead one's place
                    workers.append(_Worker(context, sync_one, progress is not None))
                    workers[-1].give(pending)
    except KeyboardInterrupt:
        _interrupt([w for w in workers if w.client is not None])
        raise
    finally:
        _stop(workers)
    return outcomes


def _receive(worker: _Worker, progress: ProgressSink | None) -> ClientSyncOutcome | None:
    """A worker's next message: its client's outcome, or None for a progress update."""
    try:
        kind, payload = worker.conn.recv()
    except (EOFError, OSError):
        return worker.gone()
    if kind == "progress":
        if progress:
            progress(*payload)
        return None
    return payload


def _interrupt(busy: list[_Worker]) -> None:
    """Ctrl-C reached this process (a worker has a process group of its own, so the terminal's
    Ctrl-C reaches neither it nor the helper processes Dagster starts in it): each busy worker
    gets it now, so its sync records that it was interrupted; then it ends."""
    for worker in busy:
        with suppress(OSError):
            worker.conn.send(None)  # read once the interrupted sync has ended
            os.kill(worker.process.pid, signal.SIGINT)
    for worker in busy:
        worker.process.join(timeout=INTERRUPT_GRACE_SECONDS)


def _stop(workers: list[_Worker]) -> None:
    for worker in workers:
        with suppress(OSError):
            worker.conn.send(None)
    for worker in workers:
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()
