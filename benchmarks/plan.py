"""What a benchmark run covers: sizes, conditions, extra scenarios, and the accounts needed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.sandbox_process import BenchAccount
from engine.streams import STREAMS
from sandbox.demo import generated_specs

WORK = Path(__file__).resolve().parent / "work"
ALL_STREAMS = tuple(spec.name for spec in STREAMS)
ALL_TABLES = ALL_STREAMS + tuple(child.table for spec in STREAMS for child in spec.children)


@dataclass(frozen=True)
class Condition:
    name: str
    title: str
    latency_ms: float
    sandbox_rps: float | None  # the server's 429 limit per account
    pipeline_rps: float | None  # StripeAccount's limiter; None = its default for the key


CPU = Condition("cpu", "CPU-bound (no latency)", 0, None, 1_000_000)
LIVE = Condition("live", "live-like (150 ms, 100 req/s)", 150, 100, None)
CONDITIONS = {c.name: c for c in (CPU, LIVE)}


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    conditions: tuple[str, ...] = ("cpu", "live")
    all_streams_size: int | None = 100_000  # one all-streams run per condition
    deep: bool = True  # widgets and a no-change re-sync on the largest account
    many_clients: int = 100
    many_charges: int = 10_000
    # Every stream: `sync --streams charges` cannot run yet (Dagster refuses to subset the
    # reporting_tables multi-asset that `.downstream()` half-selects).
    many_streams: tuple[str, ...] = ()
    peers: bool = False
    peer_charges: int = 20_000  # the size of the peer figures
    # Requests in flight per stream; None: the pipeline's own default (see pipeline_concurrency).
    concurrency: int | None = None
    # One more live-like run of the 100k account with this many requests in flight per stream.
    what_if_concurrency: int | None = None
    widget_repeats: int = 20
    profile: bool = False
    work: Path = WORK
    seed: int = 1

    @classmethod
    def quick(cls, sizes: tuple[int, ...] = (10_000,), work: Path = WORK) -> Plan:
        """The smoke test: the charges runs and the floor on small accounts, seconds long."""
        return cls(sizes=sizes, all_streams_size=None, deep=False, many_clients=0,
                   peers=False, what_if_concurrency=None, work=work)

    def with_(self, **changes: object) -> Plan:
        return replace(self, **changes)

    @property
    def largest(self) -> int:
        return max(self.sizes)


def pipeline_concurrency() -> int:
    """The default of `sync_client(concurrency=...)`, what the Dagster asset uses unless set."""
    import inspect

    from engine.sync import sync_client

    return int(inspect.signature(sync_client).parameters["concurrency"].default)


def size_label(size: int) -> str:
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    if size >= 1_000 and size % 1_000 == 0:
        return f"{size // 1_000}k"
    return str(size)


def charges_account(size: int) -> str:
    return f"charges_{size_label(size)}"


def all_streams_account(size: int) -> str:
    return f"all_{size_label(size)}"


def many_account(index: int) -> str:
    return f"agency{index + 1:03d}"


PEER_ACCOUNT = "peers"


def realistic(size: int) -> dict[str, int]:
    """Customers and subscriptions of a generated account of `size` charges, the sandbox's
    own shape (`sandbox.demo.generated_specs`): a subscription per 15 charges, no cap."""
    spec = generated_specs(1, size)[0]
    return {"customers": spec.customers, "subscriptions": spec.subscriptions}


def accounts_for(plan: Plan) -> list[BenchAccount]:
    """The accounts of the throughput, widget, re-sync and peer runs, all live-mode."""
    accounts = []
    for size in plan.sizes:
        deep = plan.deep and size == plan.largest
        accounts.append(BenchAccount(
            charges_account(size), size, **realistic(size),
            # The largest account later gets every stream for the widgets and the re-sync.
            streams=ALL_TABLES if deep else ("charges",),
        ))
    if plan.all_streams_size:
        size = plan.all_streams_size
        accounts.append(BenchAccount(all_streams_account(size), size, **realistic(size),
                                     streams=ALL_TABLES))
    if plan.peers:
        accounts.append(BenchAccount(PEER_ACCOUNT, plan.peer_charges))
    return accounts


def many_accounts_for(plan: Plan) -> list[BenchAccount]:
    """The agency's clients, served by a sandbox of their own after the other runs."""
    return [
        BenchAccount(many_account(index), plan.many_charges, **realistic(plan.many_charges),
                     streams=plan.many_streams or ALL_TABLES)
        for index in range(plan.many_clients)
    ]
