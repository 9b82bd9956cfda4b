"""The delivery log on SQLite and on a real PostgreSQL: a period is claimed by one run only,
sent at most once, and a hold keeps the figures' build time it waited on."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest

from engine.deliveries import DueDelivery
from engine.delivery_log import HELD, SENT, DeliveryLog

DUE = DueDelivery("acme", "last_month", date(2026, 11, 1), date(2026, 11, 30),
                  ("b@acme.example", "a@acme.example"))


@pytest.fixture(params=["sqlite", "postgresql"])
def log(request, home):
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'connections.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.create_database()
    with DeliveryLog(url) as opened:
        yield opened


def test_one_claim_wins_and_a_sent_period_is_never_claimed_again(log):
    built = datetime(2026, 11, 20, tzinfo=UTC)
    log.record_held(DUE, "The last sync was before the end of the period.", built, "run1",
                    notified=True)
    held = log.get(DUE.key)
    assert held.status == HELD and held.held_built_at == built and held.agency_notified_at

    wins: list[object] = []
    threads = [threading.Thread(target=lambda n=n: wins.append(log.claim(DUE, f"r{n}")))
               for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(win is not None for win in wins) == 1

    log.record_sent(DUE, "r0")
    assert log.get(DUE.key).status == SENT and log.get(DUE.key).sent_at is not None
    assert log.claim(DUE, "later") is None
    # The same days to the same people in another order are the same delivery.
    same = DueDelivery("acme", "last_month", DUE.start, DUE.end, tuple(reversed(DUE.to)))
    assert log.claim(same, "again") is None
    assert [r.client_id for r in log.records("acme")] == ["acme"]
