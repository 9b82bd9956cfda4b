"""`connect --bulk`: many clients' keys, one `CLIENT<TAB>KEY[<TAB>NAME]` line each, validated
in parallel through the same `connect_and_register` as `connect`.

Parallel but bounded: a pool of workers, and the lines that share a key (so one Stripe
account) go to one worker in turn, so no account sees more than one check at a time on top
of its own pacing (each check is paced and retried by the account's StripeAccount). A key is
never printed: outcomes carry the masked key only, and a malformed line is named by number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from engine.connection_store import ConnectionStore, check_client_id
from engine.failures import StripeAccessError
from engine.keys import mask_key
from engine.user_errors import explain
from pipelines.instance import connect_and_register, get_instance

FORMAT = "CLIENT<TAB>KEY[<TAB>NAME]"
DEFAULT_PARALLEL = 8


@dataclass(frozen=True)
class BulkLine:
    number: int
    client_id: str
    key: str = field(repr=False)
    name: str | None = None


@dataclass
class BulkOutcome:
    number: int
    client_id: str
    ok: bool
    masked_key: str = ""
    account_id: str = ""
    message: str = ""
    warnings: list[str] = field(default_factory=list)


def _looks_like_key(text: str) -> bool:
    return text.startswith(("sk_", "rk_", "pk_"))


def _parse_line(number: int, line: str, first_seen: dict[str, int]) -> BulkLine | BulkOutcome:
    fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
    if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
        return BulkOutcome(number, "", False, message=f"Expected {FORMAT} (tab-separated); "
                           "the line was skipped (its text is not shown: it may hold a key).")
    client_id, key = fields[0], fields[1]
    if _looks_like_key(client_id):
        return BulkOutcome(number, "", False, message="The first column holds a key: put the "
                           f"client id first ({FORMAT}); the line was skipped.")
    try:
        check_client_id(client_id)
    except ValueError:
        return BulkOutcome(number, "", False, masked_key=mask_key(key), message=(
            "Invalid client id in the first column: use 1 to 63 lower-case letters, digits, "
            "'-' or '_', starting with a letter or a digit; the line was skipped."))
    if client_id in first_seen:
        return BulkOutcome(number, client_id, False, masked_key=mask_key(key), message=(
            f"Client '{client_id}' is already on line {first_seen[client_id]}; "
            "this line was skipped."))
    first_seen[client_id] = number
    name = fields[2] if len(fields) == 3 and fields[2] else None
    return BulkLine(number, client_id, key, name)


def parse_bulk(lines: Iterable[str]) -> tuple[list[BulkLine], list[BulkOutcome]]:
    """The usable lines, and an outcome for each malformed one. Blank and `#` lines are
    skipped."""
    good: list[BulkLine] = []
    bad: list[BulkOutcome] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parsed = _parse_line(number, line, first_seen)
        (good if isinstance(parsed, BulkLine) else bad).append(parsed)  # type: ignore[arg-type]
    return good, bad


def _connect_one(line: BulkLine, options: dict[str, Any]) -> BulkOutcome:
    try:
        outcome = connect_and_register(line.client_id, line.key, name=line.name, **options)
    except (StripeAccessError, ValueError) as error:
        text = error.message if isinstance(error, StripeAccessError) else str(error)
        steps = getattr(error, "steps", ()) or ()
        return BulkOutcome(line.number, line.client_id, False, mask_key(line.key),
                           message=" ".join([text, *steps]))
    except Exception as error:
        problem = explain(error)  # a full disk or a damaged store: said, the rest go on
        if problem is None:
            raise
        return BulkOutcome(line.number, line.client_id, False, mask_key(line.key),
                           message=problem.message)
    return BulkOutcome(line.number, line.client_id, True, outcome.connection.masked_key or "",
                       outcome.account_id, warnings=outcome.warnings)


def _by_key(lines: list[BulkLine]) -> list[list[BulkLine]]:
    groups: dict[str, list[BulkLine]] = {}
    for line in lines:
        groups.setdefault(line.key, []).append(line)
    return list(groups.values())


def connect_many(lines: list[BulkLine], *, parallel: int = DEFAULT_PARALLEL,
                 on_done: Callable[[BulkOutcome], None] | None = None,
                 **options: Any) -> list[BulkOutcome]:
    """Connect every line, `parallel` at a time; outcomes in line order."""
    if not lines:
        return []
    options["instance"] = get_instance()  # opened once and shared: ~0.2 s a line otherwise
    # One store for every line: a store per line held a PostgreSQL session each until the
    # garbage collector ran, and 1,000 lines ran out of the server's connections.
    with ConnectionStore.from_settings() as store:
        return _connect_lines(lines, parallel, on_done, {**options, "store": store})


def _connect_lines(lines: list[BulkLine], parallel: int,
                   on_done: Callable[[BulkOutcome], None] | None,
                   options: dict[str, Any]) -> list[BulkOutcome]:
    def run(group: list[BulkLine]) -> list[BulkOutcome]:
        done = []
        for line in group:
            done.append(_connect_one(line, options))
            if on_done:
                on_done(done[-1])
        return done

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results = [o for group in pool.map(run, _by_key(lines)) for o in group]
    return sorted(results, key=lambda o: o.number)
