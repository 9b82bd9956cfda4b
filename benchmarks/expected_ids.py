"""The ids a stream's list endpoint returns, read from the sandbox's tables without rendering.

Rendering a million objects to JSON just to learn their ids would take longer than the
sync being checked; the sandbox's own list machinery picks the same rows (deleted rows and
filters included) from its columns. Runs inside the sandbox process.
"""

from __future__ import annotations

from engine.streams import STREAMS, STREAMS_BY_NAME
from sandbox.account import SandboxAccount
from sandbox.billing import NOT_ENDED
from sandbox.listing import build_query, page_indices
from sandbox.params import Params

# Child tables: (parent stream, path of the list inside each parent object).
CHILD_TABLES = {
    child.table: (spec.name, child.path) for spec in STREAMS for child in spec.children
}


def listed_ids(account: SandboxAccount, stream: str) -> list[str]:
    """Every id `GET <endpoint>?<list_params>` pages through, newest first."""
    if stream in CHILD_TABLES:
        parent, path = CHILD_TABLES[stream]
        return _child_ids(account, parent, path)
    spec = STREAMS_BY_NAME[stream]
    resource = spec.endpoint.removeprefix("/v1/")
    table = account.tables[resource]
    params = Params({key: [value] for key, value in spec.list_params.items()})
    extra = []
    if resource == "subscriptions" and "status" not in spec.list_params:
        extra.append((table.filters["status"], NOT_ENDED))  # what the API hides by default
    query = build_query(table, params, extra)
    query.limit = len(table) + 1
    indices, _ = page_indices(table, query)
    return [table.id_of(i) for i in indices]


def _child_ids(account: SandboxAccount, parent: str, path: tuple[str, ...]) -> list[str]:
    table = account.tables[STREAMS_BY_NAME[parent].endpoint.removeprefix("/v1/")]
    ids = []
    for parent_id in listed_ids(account, parent):
        obj = table.get(table.index_of(parent_id))
        for key in path:
            obj = obj[key]
        ids += [item["id"] for item in obj]
    return ids
