"""The sandbox in a process of its own, so serving never competes with the pipeline for the GIL.

The parent writes a JSON plan to the child's standard input (seed, accounts, which streams
to list the expected ids of); the child generates the world, writes the ids the API would
list to Parquet files, starts the server and prints one JSON line (base URL, keys, ids
files). It serves until its standard input closes. Keys travel over the pipe only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.progress import say


@dataclass(frozen=True)
class BenchAccount:
    """One generated account; `streams` are those whose expected ids the run verifies."""

    name: str
    charges: int
    customers: int = 40
    subscriptions: int = 30
    livemode: bool = True
    streams: tuple[str, ...] = ("charges",)


@dataclass
class ServedAccount:
    name: str
    account_id: str
    secret_key: str = field(repr=False)
    expected: dict[str, Path]  # stream -> Parquet file of the ids the API lists

    def expected_count(self, stream: str) -> int:
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.expected[stream]).metadata.num_rows


class SandboxProcess:
    """`with SandboxProcess(accounts, work) as sandbox:` a served world; knobs via HTTP."""

    def __init__(self, accounts: list[BenchAccount], work: Path, seed: int = 1,
                 now: int | None = None) -> None:
        self.plan = {
            "seed": seed,
            "now": now,  # the world's clock; None: the current time
            "accounts": [asdict(a) for a in accounts],
            "ids_dir": str(work / "expected"),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.accounts: dict[str, ServedAccount] = {}
        self.generate_s = 0.0

    def __enter__(self) -> SandboxProcess:
        total = sum(a["charges"] for a in self.plan["accounts"])
        say(f"sandbox: generating {len(self.plan['accounts'])} account(s), {total:,} charges")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sandbox_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(self.plan).encode() + b"\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox process exited before serving")
        ready = json.loads(line)
        self.base_url = ready["base_url"]
        self.generate_s = ready["generate_s"]
        self.accounts = {
            name: ServedAccount(name, info["account_id"], info["secret_key"],
                                {s: Path(p) for s, p in info["expected"].items()})
            for name, info in ready["accounts"].items()
        }
        say(f"sandbox: serving at {self.base_url} (built in {self.generate_s:.1f} s)")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        assert self.process.stdin
        self.process.stdin.close()  # the child's signal to stop
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def configure(self, latency_ms: float = 0, rate_limit_rps: float | None = None) -> None:
        self._post("/_sandbox/config", {"latency_ms": latency_ms, "rate_limit_rps": rate_limit_rps})
        self._post("/_sandbox/stats/reset", {})

    def requests_served(self, account: str) -> int:
        """Requests the server answered for an account since the last configure()."""
        stats = self._get("/_sandbox/stats")
        return int(stats.get("by_account", {}).get(self.accounts[account].account_id, 0))

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as response:
            return json.loads(response.read())


# --- the child ----------------------------------------------------------------------------------


def _child_main() -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.expected_ids import listed_ids
    from sandbox import AccountSpec, SandboxServer, SandboxWorld

    plan = json.loads(sys.stdin.readline())
    started = time.perf_counter()
    specs = [
        AccountSpec(a["name"], charges=a["charges"], customers=a["customers"],
                    subscriptions=a["subscriptions"], livemode=a["livemode"])
        for a in plan["accounts"]
    ]
    world = SandboxWorld.generate(plan["seed"], specs, now=plan.get("now"))
    generate_s = time.perf_counter() - started
    ids_dir = Path(plan["ids_dir"])
    ids_dir.mkdir(parents=True, exist_ok=True)
    accounts = {}
    for entry in plan["accounts"]:
        account = world.accounts[entry["name"]]
        expected = {}
        for stream in entry["streams"]:
            path = ids_dir / f"{account.name}.{stream}.parquet"
            pq.write_table(pa.table({"id": listed_ids(account, stream)}), path)
            expected[stream] = str(path)
        accounts[account.name] = {
            "account_id": account.account_id, "secret_key": account.secret_key,
            "expected": expected,
        }
    server = SandboxServer(world).start()
    ready = {"base_url": server.base_url, "generate_s": round(generate_s, 2), "accounts": accounts}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # returns when the parent closes the pipe (or dies)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
