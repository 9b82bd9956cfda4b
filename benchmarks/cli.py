"""`python -m benchmarks` (or `make bench`): the benchmark suite of issue 5."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.plan import CONDITIONS, WORK, Plan
from benchmarks.progress import say
from benchmarks.report import update_readme, write_results

HERE = Path(__file__).resolve().parent


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are whole numbers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("give at least one positive size")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Sync throughput, memory, re-sync, widget latency and many clients on the "
        "sandbox, against a bare client and (with --peers) Singer, dlt and Airbyte.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="10k charges only, both conditions, no extras or peers (seconds)")
    parser.add_argument("--sizes", type=_sizes, help="charges per account, e.g. 10000,100000")
    parser.add_argument("--conditions", default="cpu,live",
                        help="cpu (no latency), live (150 ms, 100 req/s) or both")
    parser.add_argument("--charges-only", action="store_true",
                        help="only the charges runs and the bare client (no all-streams run, "
                        "widgets or re-sync): the peak-memory figures of issue 12")
    parser.add_argument("--peers", action="store_true",
                        help="install and run tap-stripe, dlt and airbyte-source-stripe")
    parser.add_argument("--clients", type=int, default=None,
                        help="clients in the `sync --all` run (default 100; 0 skips it)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="requests in flight per stream (default: the pipeline's own)")
    parser.add_argument("--what-if-concurrency", type=int, default=None,
                        help="one more live-like 100k run with this many requests in flight")
    parser.add_argument("--profile", action="store_true",
                        help="write cProfile stats of each sync to benchmarks/work/profiles")
    parser.add_argument("--out", type=Path, default=None,
                        help="default benchmarks/results.md (--quick: benchmarks/work/quick.md)")
    parser.add_argument("--work", type=Path, default=WORK, help="scratch folder (git-ignored)")
    parser.add_argument("--no-readme", action="store_true",
                        help="leave benchmarks/README.md alone (quick runs always do)")
    return parser


def plan_from(args: argparse.Namespace) -> Plan:
    plan = Plan.quick(work=args.work) if args.quick else Plan(work=args.work)
    conditions = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise SystemExit(f"unknown condition(s): {', '.join(unknown)} (cpu, live)")
    changes: dict[str, object] = {"conditions": conditions, "concurrency": args.concurrency,
                                  "profile": args.profile, "peers": args.peers,
                                  "what_if_concurrency": args.what_if_concurrency}
    if args.sizes:
        changes["sizes"] = args.sizes
    if args.clients is not None:
        changes["many_clients"] = args.clients
    if args.charges_only:
        changes.update(all_streams_size=None, deep=False)
    return plan.with_(**changes)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = plan_from(args)
    from benchmarks.suite import run_suite

    say(f"benchmark: sizes {', '.join(f'{s:,}' for s in plan.sizes)}; conditions "
        f"{', '.join(plan.conditions)}; {plan.many_clients} clients; peers {plan.peers}")
    results = run_suite(plan)
    out = args.out or (plan.work / "quick.md" if args.quick else HERE / "results.md")
    text = write_results(results, out)
    if not args.quick and not args.no_readme:
        update_readme(HERE / "README.md", results)
    print(text)
    say(f"written to {out}")
    return 0 if results.all_verified else 1


if __name__ == "__main__":
    sys.exit(main())
