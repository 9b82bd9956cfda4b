"""A resident process: the code loaded once, so a command starts in a fraction of a second.

A lone `stripe-reports sync acme` with nothing new spent about 2.5 s of its 4 s before its
first request: the interpreter, Dagster, the code location (benchmarks/README.md).
`stripe-reports resident` loads all of that once, then waits on a local socket named for the
product home. While it runs, the commands in HANDED_OVER are handed to it: for each, it forks
a copy of itself, with everything loaded, which takes the caller's own stdin, stdout and
stderr (passed over the socket), working directory and environment, and runs the command as
the CLI would (apps.cli.main: the same guards, output and exit code). Ctrl-C and termination
reach that copy and the workers it starts.

Nothing else changes: without a resident process, or when it cannot take the command (its
code changed since it started, another user's process), the CLI runs the command itself.
Only its owner can use it: each side checks the other's user id (SO_PEERCRED) before a byte
of the request (which holds the environment) is sent or read.

This module's caller side imports the standard library only: it runs before the CLI loads
anything else.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.home import HOME_ENV, resolve_home

# The commands worth handing over: they load Dagster or DuckDB, and ask for no hidden input
# (`connect` prompts for a key on the terminal, which a forked copy does not own).
HANDED_OVER = frozenset({"sync", "check", "clients", "widget", "widgets", "reconcile"})
_PEER = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid
_LENGTH = struct.Struct("!I")
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How often an idle resident process looks for changed code (each request looks too).
CODE_CHECK_SECONDS = 2.0
# What a copy ends with when the command raised something main() did not catch.
_CRASHED = 70


def socket_name(home: Path) -> str:
    """The home's socket, in Linux's abstract namespace: no file to go stale, no path length
    limit (108 bytes) for a deep home. Owner checks on both sides stand in for file modes."""
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:24]
    return f"\0stripe-reports-resident-{digest}"


def _peer_uid(sock: socket.socket) -> int:
    _pid, uid, _gid = _PEER.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                   _PEER.size))
    return uid


def _send(sock: socket.socket, message: dict, fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    socket.send_fds(sock, [_LENGTH.pack(len(data)) + data], list(fds))


def _receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (None: the other side closed), and any descriptors sent with it."""
    head, fds, _flags, _address = socket.recv_fds(sock, _LENGTH.size, max_fds)
    if not head:
        return None, fds
    data = b""
    (size,) = _LENGTH.unpack(head)
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None, fds
        data += chunk
    return json.loads(data), fds


# -- the caller: the CLI -----------------------------------------------------------------------


def hand_over(argv: Sequence[str]) -> int | None:
    """Run the command in the home's resident process and return its exit code; None when
    there is none to take it (the caller then runs the command itself)."""
    if not argv or argv[0] not in HANDED_OVER:
        return None
    environment = dict(os.environ)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect(socket_name(resolve_home(environment.get(HOME_ENV))))
        if _peer_uid(sock) != os.getuid():
            return None  # someone else's process holds the name: tell it nothing
        _send(sock, {"argv": list(argv), "cwd": os.getcwd(), "environment": environment},
              fds=(0, 1, 2))
        answer, _ = _receive(sock)
    except OSError:  # none running, or it went away: the command runs here
        sock.close()
        return None
    if answer is None or "started" not in answer:
        sock.close()
        return None
    return _wait_for_exit(sock)


def _wait_for_exit(sock: socket.socket) -> int:
    """The copy's exit code; Ctrl-C, termination and a closed terminal are passed on to it."""
    sock.settimeout(None)

    def pass_on(number: int, _frame: object) -> None:
        _send(sock, {"signal": number})

    before = {number: signal.signal(number, pass_on) for number in _SIGNALS}
    try:
        answer, _ = _receive(sock)
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
        sock.close()
    if answer is None:
        print("error: the resident process stopped before the command finished; run the "
              "command again (what was stored is intact).", file=sys.stderr)
        return 1
    return int(answer["exit"])


# -- the resident process -----------------------------------------------------------------------


@dataclass
class _Running:
    connection: socket.socket
    argv: list[str]
    started: float


# What a handed-over command imports beyond the apps' own modules, found by listing the
# modules a copy imported (`sys.modules` before and after a no-change sync): pandas (DuckDB
# loads it at its first bound parameter, ~1 s), the Dagster instance's storage and daemon
# modules (opening the instance, ~1.5 s), the Stripe client. Left to each copy, these cost a
# lone sync more than the sync itself.
PRELOADED = (
    "apps.cli_reconcile", "apps.cli_widgets", "apps.launch", "apps.terminal",
    "engine.credentials", "reports.widgets.run",
    "pandas", "pyarrow.pandas_compat", "numpy.random", "dateutil.parser", "fsspec",
    "structlog", "rich.traceback",
    "stripe._stripe_client", "stripe._v1_services", "stripe._v2_services",
    "dagster._core.instance.factory", "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.root", "dagster._core.execution.backfill",
    "dagster._core.remote_representation.external", "dagster._core.workspace.context",
    "dagster._core.scheduler.scheduler", "dagster._core.secrets.env_file",
    "dagster._daemon.controller", "dagster._daemon.run_coordinator",
    "dagster._scheduler.scheduler",
)


def preload() -> None:
    """Everything the handed-over commands import, loaded before the first fork."""
    for module in PRELOADED:
        importlib.import_module(module)


def code_files() -> dict[str, int]:
    """The product's loaded source files and when each last changed: a copy of a process
    whose code changed since it started would run the old code."""
    root = str(Path(__file__).resolve().parent.parent)
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(root) and "/.venv/" not in path:
            try:
                files[path] = os.stat(path).st_mtime_ns
            except OSError:
                files[path] = -1
    return files


def serve(home: Path, run_command: Callable[[list[str]], int],
          say: Callable[[str], None]) -> int:
    """Take handed-over commands for `home`, each run by `run_command` (the CLI's main) in
    a copy, until SIGTERM or Ctrl-C; then wait for the commands still running. Returns 0,
    or 1 when another resident process holds the home."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(socket_name(home))
    except OSError as error:  # another one, or no abstract sockets (Linux only)
        say(f"error: a resident process already serves {home}." if error.errno ==
            errno.EADDRINUSE else f"error: cannot take commands here: {error.strerror}.")
        return 1
    listener.listen(16)
    loaded = code_files()
    running: dict[int, _Running] = {}
    stopping = False

    def stop(_number: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, stop)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    say(f"Resident process ready for {home} (pid {os.getpid()}): `stripe-reports "
        f"{'|'.join(sorted(HANDED_OVER))}` start here now. Ctrl-C stops it.")
    next_code_check = 0.0
    while not stopping or running:
        if stopping and listener.fileno() != -1:
            selector.unregister(listener)
            listener.close()
            say(f"Stopping: waiting for {len(running)} command(s) to finish.")
        for key, _events in selector.select(timeout=0.2):
            if key.fileobj is listener:
                _accept(listener, selector, running, loaded, run_command, say)
            else:
                _from_caller(key.fileobj, selector, running)  # type: ignore[arg-type]
        _reap(selector, running, say)
        if running or stopping or time.monotonic() < next_code_check:
            continue
        next_code_check = time.monotonic() + CODE_CHECK_SECONDS  # ~300 stat calls each
        if loaded != code_files():
            say("The code changed since this process started: stopping (start it again).")
            stopping = True
    return 0


def _accept(listener: socket.socket, selector: selectors.BaseSelector,
            running: dict[int, _Running], loaded: dict[str, int],
            run_command: Callable[[list[str]], int], say: Callable[[str], None]) -> None:
    connection, _ = listener.accept()
    connection.settimeout(5)
    taken = _read_request(connection)
    if taken is None:
        connection.close()
        return
    request, fds = taken
    try:
        if loaded != code_files():  # the caller runs it itself, on the new code
            _send(connection, {"declined": "its code changed since it started"})
            connection.close()
            return
        pid = os.fork()
        if pid == 0:
            _run_copy(request, fds, [listener, connection, *running_connections(running)],
                      selector, run_command)
    except OSError:  # no fork (out of memory, processes) or the caller gone: it runs alone
        connection.close()
        return
    finally:
        for fd in fds:
            os.close(fd)
    running[pid] = _Running(connection, request["argv"], time.monotonic())
    selector.register(connection, selectors.EVENT_READ)
    say(f"pid {pid}: stripe-reports {request['argv'][0]} ...")
    try:
        _send(connection, {"started": pid})
    except OSError:  # the caller went away meanwhile: so does its command
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)


def _read_request(connection: socket.socket) -> tuple[dict, list[int]] | None:
    """The caller's request and its three descriptors, from its owner only; None (and the
    descriptors closed) for anything else."""
    fds: list[int] = []
    try:
        if _peer_uid(connection) != os.getuid():
            return None
        request, fds = _receive(connection, max_fds=3)
        if (len(fds) == 3 and isinstance(request, dict)
                and isinstance(request.get("argv"), list) and request["argv"]
                and request["argv"][0] in HANDED_OVER
                and isinstance(request.get("cwd"), str)
                and isinstance(request.get("environment"), dict)):
            return request, fds
    except (OSError, ValueError):  # gone, or not our protocol
        pass
    for fd in fds:
        os.close(fd)
    return None


def running_connections(running: dict[int, _Running]) -> list[socket.socket]:
    return [run.connection for run in running.values()]


def _run_copy(request: dict, fds: list[int], sockets: list[socket.socket],
              selector: selectors.BaseSelector, run_command: Callable[[list[str]], int]
              ) -> None:
    """In the forked copy: become the caller's command, run it, and exit with its code."""
    code = _CRASHED
    try:
        os.setsid()  # its own process group: the caller's signals go to it and its workers
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.default_int_handler if number == signal.SIGINT
                          else signal.SIG_DFL)
        selector.close()
        for open_socket in sockets:  # the resident's, not the command's
            open_socket.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the caller's own, kept open)
        sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["environment"])
        code = run_command(request["argv"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 (as an uncaught error in the CLI: its traceback)
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a reader gone away
                stream.flush()
        os._exit(code)


def _from_caller(connection: socket.socket, selector: selectors.BaseSelector,
                 running: dict[int, _Running]) -> None:
    """A signal the caller passes on, or the caller gone (killed): its command is ended."""
    pid = next(pid for pid, run in running.items() if run.connection is connection)
    try:
        message, _ = _receive(connection)
    except OSError:
        message = None
    number = signal.SIGTERM if message is None else int(message.get("signal", signal.SIGINT))
    if message is None:
        selector.unregister(connection)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, number)


def _reap(selector: selectors.BaseSelector, running: dict[int, _Running],
          say: Callable[[str], None]) -> None:
    while running:
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if pid == 0:
            return
        run = running.pop(pid, None)
        if run is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # ended by a signal: as a shell reports it
        with contextlib.suppress(OSError):  # the caller is gone
            _send(run.connection, {"exit": code})
        if run.connection in (key.fileobj for key in selector.get_map().values()):
            selector.unregister(run.connection)
        run.connection.close()
        say(f"pid {pid}: exit {code} after {time.monotonic() - run.started:.2f} s "
            f"({usage.ru_utime + usage.ru_stime:.2f} s CPU)")
