"""The bare-client floor: one requests.Session paging a list and decoding it, nothing stored.

It is the CPU-bound reference of issue 5 (no slicing, no storage, no limiter): what plain
Python reaches on the same server in the same run. It decodes with orjson, as the pipeline
does, so the ratio measures the pipeline's own cost rather than a faster JSON parser.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
import requests


@dataclass(frozen=True)
class FloorRun:
    objects: int
    requests: int
    seconds: float

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0


def page_through(api_base: str, secret_key: str, endpoint: str = "/v1/charges") -> FloorRun:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {secret_key}"
    params: dict[str, str | int] = {"limit": 100}
    objects = pages = 0
    started = time.perf_counter()
    while True:
        response = session.get(api_base + endpoint, params=params, timeout=60)
        response.raise_for_status()
        page = orjson.loads(response.content)
        pages += 1
        data = page["data"]
        objects += len(data)
        if not page["has_more"] or not data:
            break
        params["starting_after"] = data[-1]["id"]
    seconds = time.perf_counter() - started
    session.close()
    return FloorRun(objects, pages, seconds)
