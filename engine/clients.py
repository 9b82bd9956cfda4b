"""Which clients are active, and where each one's Stripe key comes from: the one rule that the
registration sensor, the schedules, `sync --all`, the report page's list, the health sensor and
`stripe-reports clients` all follow.

A client is active while it has a key to sync with and was not disconnected:
- `disconnect` wins: a disconnected client stays out, declared in clients.yaml or not, until
  `connect` gives it a key again;
- a client declared with `key_env` uses that variable's key while it is set. That key is never
  stored (only the account, state and last check are), so unsetting the variable or removing
  the entry stops the client;
- otherwise the key `connect` stored.
A client whose clients.yaml entry is broken is out until the entry is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum

from engine.client_config import ClientConfig, ClientsFile, ClientsFileError, read_clients_file
from engine.connection_store import (
    ClientConnection,
    ClientNotConnected,
    ConnectionState,
    ConnectionStore,
)
from engine.keys import mask_key


class Standing(str, Enum):
    """What `clients` shows beside the store's own states."""

    CONNECTED = ConnectionState.CONNECTED.value
    FAILED = ConnectionState.FAILED.value
    DISCONNECTED = ConnectionState.DISCONNECTED.value
    WAITING = "waiting for first sync"  # a key in the environment, never synced yet
    NO_KEY = "no key"  # declared or known, but nothing to sync with
    LEFT_OUT = "left out"  # its clients.yaml entry is broken


@dataclass(frozen=True)
class ClientStatus:
    """One client under the rule: whether it is active, and why not when it is not."""

    client_id: str
    standing: Standing
    connection: ClientConnection | None = None
    config: ClientConfig | None = None
    why: str | None = None  # one line for the operator when the client is not active
    env_key: str | None = field(default=None, repr=False)  # the variable's key, when set

    @property
    def active(self) -> bool:
        return self.standing in (Standing.CONNECTED, Standing.FAILED, Standing.WAITING)

    @property
    def key_env(self) -> str | None:
        """The variable the key is read from, when that is where it comes from now."""
        return self.config.key_env if self.env_key and self.config else None

    @property
    def masked_key(self) -> str:
        """The key in use, masked: the variable's current key for an environment client."""
        if self.env_key:
            return mask_key(self.env_key)
        return (self.connection.masked_key or "") if self.connection else ""

    def to_dict(self) -> dict[str, object]:
        """What `clients --json` prints: the store's facts, then the rule's verdict."""
        known = self.connection.to_dict() if self.connection else {
            f.name: None for f in fields(ClientConnection)} | {"client_id": self.client_id,
                                                                "key_stored": False}
        return {**known, "state": self.standing.value, "active": self.active,
                "why": self.why, "masked_key": self.masked_key,
                "key_source": "environment" if self.key_env else (
                    "store" if self.connection and self.connection.key_stored else None),
                "declared": self.config is not None}


@dataclass(frozen=True)
class Roster:
    """Every known client under the rule, and the clients.yaml problems (one line each)."""

    clients: dict[str, ClientStatus]
    problems: tuple[str, ...] = ()

    def active(self) -> list[str]:
        return [c for c, status in self.clients.items() if status.active]


def _resume(client_id: str) -> str:
    return f"run `stripe-reports connect {client_id}` to resume"


def _disconnected(client_id: str, config: ClientConfig | None) -> str:
    if config is None:
        return f"disconnected; {_resume(client_id)}"
    return f"disconnected (declared in clients.yaml, but not synced until connected again); " \
           f"{_resume(client_id)}"


def _no_key(client_id: str, config: ClientConfig | None) -> str:
    connect = f"or run `stripe-reports connect {client_id}` to store one"
    if config is not None and config.key_env:
        return f"clients.yaml takes its key from {config.key_env}, which is not set in this " \
               f"environment: set it where the pipelines run, {connect}"
    if config is not None:
        return f"declared in clients.yaml without key_env and never connected: run " \
               f"`stripe-reports connect {client_id}`"
    return f"its key came from an environment variable that clients.yaml no longer declares " \
           f"(it was never stored): run `stripe-reports connect {client_id}`"


def client_status(client_id: str, connection: ClientConnection | None,
                  config: ClientConfig | None, problem: str | None = None) -> ClientStatus:
    """The rule for one client (see the module's docstring)."""
    if problem is not None:
        return ClientStatus(client_id, Standing.LEFT_OUT, connection, None, problem)
    if connection is not None and connection.state is ConnectionState.DISCONNECTED:
        return ClientStatus(client_id, Standing.DISCONNECTED, connection, config,
                            _disconnected(client_id, config))
    env_key = config.key_from_env() if config else None
    env_key = env_key.strip() if env_key and env_key.strip() else None
    if env_key or (connection is not None and connection.key_stored):
        standing = Standing(connection.state.value) if connection else Standing.WAITING
        return ClientStatus(client_id, standing, connection, config, None, env_key)
    return ClientStatus(client_id, Standing.NO_KEY, connection, config,
                        _no_key(client_id, config))


def client_roster(store: ConnectionStore, clients_file: ClientsFile | None = None) -> Roster:
    """Every client the store or clients.yaml knows, under the rule, by id.

    Raises ClientsFileError when clients.yaml cannot be read as a whole (see `roster_or_error`
    for the listing that carries on without it)."""
    clients_file = clients_file or read_clients_file()
    connections = {c.client_id: c for c in store.list()}
    ids = sorted(set(connections) | set(clients_file.configs) | set(clients_file.problems))
    return Roster(
        {cid: client_status(cid, connections.get(cid), clients_file.configs.get(cid),
                            clients_file.problems.get(cid)) for cid in ids},
        tuple(clients_file.problems.values()))


def roster_or_error(store: ConnectionStore) -> Roster:
    """The roster for a listing: a clients.yaml that cannot be read becomes its one problem
    line, and the stored clients are listed as if it declared nothing."""
    try:
        return client_roster(store)
    except ClientsFileError as error:
        roster = client_roster(store, ClientsFile())
        return Roster(roster.clients, (str(error),))


def active_clients(store: ConnectionStore | None = None,
                   among: list[str] | None = None) -> list[str]:
    """The active clients, sorted (only those `among`, when given): the clients that are
    registered, scheduled, synced by `sync --all`, listed on the page and judged for
    freshness. Raises ClientsFileError when clients.yaml cannot be read."""
    if store is None:  # opened here, closed here: the daemon lives long
        with ConnectionStore.from_settings() as own:
            return active_clients(own, among)
    active = client_roster(store).active()
    return active if among is None else [c for c in active if c in set(among)]


def client_key(client_id: str, store: ConnectionStore,
               config: ClientConfig | None) -> tuple[str, ClientStatus]:
    """The key the client syncs with, and its status. Raises ClientNotConnected, with the
    rule's one line, for a client that is not active.

    A key from the environment is never kept: a copy stored by `connect` (or by an older
    version, which copied the variable's key at the first sync) is dropped here, so it cannot
    outlive the variable's withdrawal."""
    status = client_status(client_id, store.get(client_id), config)
    if not status.active:
        raise ClientNotConnected(client_id, f"is not synced: {status.why}", advice=False)
    if status.env_key:
        if status.connection is not None and status.connection.key_stored:
            store.forget_key(client_id)
        return status.env_key, status
    return store.secret_key(client_id), status
