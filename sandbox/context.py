"""What every generator of one account shares: its spec, clock, random streams and id codecs."""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from sandbox.ids import IdCodec, digest62

DAY = 86_400
ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
# Rough size of one US cent in each zero-decimal currency, so prices look local.
_MINOR_PER_CENT = {"jpy": 1.5, "krw": 14.0, "clp": 9.0, "vnd": 250.0}

# Short ids (like Stripe's cus_/prod_/si_) versus long ones (ch_/txn_/evt_...).
_SHORT = {"cus_", "prod_", "si_", "acct_", "ba_"}


@dataclass(frozen=True)
class AccountSpec:
    name: str
    charges: int = 200
    customers: int = 40
    subscriptions: int = 30
    products: int = 5
    history_days: int = 400
    currency: str = "usd"
    livemode: bool = False
    connected_to: str | None = None
    # Extensions: which recurring intervals the prices use ("day", "week", "month",
    # "quarter", "year"), and the share of failed charges.
    price_intervals: tuple[str, ...] = ("month", "year", "quarter", "week", "day")
    failure_rate: float = 0.08
    # Items on every subscription (so lines on every invoice); None: one or two, as usual.
    # Large invoices (50+ lines) are the shape that measures a sync's memory by bytes.
    items_per_subscription: int | None = None


@dataclass
class Ctx:
    seed: int
    spec: AccountSpec
    now: int
    account_id: str = ""
    rng: np.random.Generator = field(init=False)
    prng: random.Random = field(init=False)
    _codecs: dict[str, IdCodec] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        material = [self.seed, *self.spec.name.encode()]
        self.rng = np.random.default_rng(material)
        self.prng = random.Random(f"{self.seed}:{self.spec.name}")
        if not self.account_id:
            self.account_id = "acct_" + digest62(self.seed, self.spec.name, "account", width=16)

    @property
    def currency(self) -> str:
        return self.spec.currency.lower()

    @property
    def livemode(self) -> bool:
        return self.spec.livemode

    @property
    def start(self) -> int:
        return self.now - self.spec.history_days * DAY

    @property
    def end(self) -> int:
        """The newest generated object: a few minutes before `now`."""
        return self.now - 240

    def codec(self, prefix: str) -> IdCodec:
        codec = self._codecs.get(prefix)
        if codec is None:
            short = prefix in _SHORT
            codec = IdCodec(
                prefix,
                self.seed,
                self.spec.name,
                tag_width=4 if short else 10,
                tail_width=4 if short else 8,
            )
            self._codecs[prefix] = codec
        return codec

    def minor(self, cents: float) -> int:
        """A US-cent amount expressed in this account's currency's minor units."""
        if self.currency in ZERO_DECIMAL:
            factor = _MINOR_PER_CENT.get(self.currency, 1.0)
            return max(10, int(round(cents * factor / 10.0)) * 10)
        return int(round(cents))


def midnight_after(ts: int, days: int) -> int:
    """00:00 UTC `days` days after the day of `ts` (when Stripe makes funds available)."""
    return (ts // DAY + days) * DAY


def add_interval(ts: int, interval: str, count: int) -> int:
    """`ts` moved forward by `count` intervals, month ends clamped like Stripe's billing."""
    if interval == "day":
        return ts + count * DAY
    if interval == "week":
        return ts + count * 7 * DAY
    months = count * (12 if interval == "year" else 1)
    moment = datetime.fromtimestamp(ts, UTC)
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())
