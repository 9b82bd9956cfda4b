"""The results as Markdown: the throughput table, the other figures, and the issue's targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.plan import CONDITIONS
from benchmarks.results import Results, ThroughputRow

LIVE_CEILING = 100 * 100  # 100 requests/s x 100 objects a page, a live key's ceiling
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run
    margin: str


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def floor_ratio(results: Results, row: ThroughputRow) -> float | None:
    floor = results.floors.get(row.size)
    if row.condition != "cpu" or not row.charges_only or floor is None:
        return None
    return row.objects_per_s / floor.objects_per_s if floor.objects_per_s else None


def ceiling_ratio(row: ThroughputRow) -> float | None:
    return row.objects_per_s / LIVE_CEILING if row.condition == "live" else None


def throughput_table(results: Results) -> list[str]:
    lines = [
        "| run | condition | objects | seconds (net) | objects/s | requests/s | peak RSS MB "
        "| process CPU s | vs bare client | vs ceiling | load | rows verified |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in results.throughput:
        lines.append(
            f"| {row.run} | {CONDITIONS[row.condition].title} | {row.objects:,} "
            f"| {row.sync_s:.2f} | {_n(row.objects_per_s)} | {_n(row.requests_per_s)} "
            f"| {_n(row.peak_rss_mb)} | {row.cpu_s:.1f} | {_ratio(floor_ratio(results, row))} "
            f"| {_ratio(ceiling_ratio(row))} | {row.load:.1f} "
            f"| {'yes' if row.verified else '**no**'} |"
        )
    for size, floor in results.floors.items():
        lines.append(
            f"| bare client floor, charges {size:,} | {CONDITIONS['cpu'].title} "
            f"| {floor.objects:,} | {floor.seconds:.2f} | {_n(floor.objects_per_s)} "
            f"| {_n(floor.requests / floor.seconds if floor.seconds else None)} | – | – | 100% | – "
            "| – | (count only) |"
        )
    return lines


def other_figures(results: Results) -> list[str]:
    lines: list[str] = []
    for resync in results.resyncs:
        lines.append(
            f"- No-change re-sync of the {_largest_label(results)}-charge account, "
            f"{resync.streams} streams + balance, {CONDITIONS[resync.condition].title}: "
            f"**{resync.sync_s:.2f} s** in the sync ({resync.wall_s:.1f} s with interpreter "
            f"start and imports), {resync.requests} requests, rows unchanged and verified: "
            f"{'yes' if resync.verified else '**no**'}."
        )
    widgets = results.widgets
    if widgets is not None and widgets.skipped:
        lines.append(f"- Widgets: not measured ({widgets.skipped}).")
    elif widgets is not None:
        slow = ", ".join(f"{name} {ms:.1f} ms" for name, ms in widgets.slowest[:3])
        lines.append(
            f"- Widget latency with {_largest_label(results)} charges in the warehouse "
            f"({widgets.calls} `run_widget` calls, every catalog widget): p50 "
            f"**{widgets.p50_ms:.1f} ms**, p95 **{widgets.p95_ms:.1f} ms**, max "
            f"{widgets.max_ms:.1f} ms; slowest p95: {slow}. The whole catalog in one "
            f"`run_widgets` call (one connection, like the report page): "
            f"{widgets.page_ms:.0f} ms. Building the client's reporting tables: "
            f"{widgets.build_s:.1f} s."
        )
    many = results.many
    if many is not None:
        command = "sync --all" + (f" --streams {','.join(many.streams)}" if many.streams else "")
        what = "charges" if many.streams == ("charges",) else "all streams"
        bad = [v.describe() for v in many.verifications if not v.ok][:3]
        lines.append(
            f"- {many.clients} clients in one `stripe-reports {command}` ({what}; a Dagster "
            f"run per client, 4 at a time; live keys at the default 100 req/s; no latency): "
            f"**{many.sync_wall_s:.1f} s** wall, {many.objects:,} objects = "
            f"**{many.objects_per_s:,.0f} objects/s**; exit code {many.exit_code}; rows "
            f"verified: {'yes' if many.verified else '**no** ' + '; '.join(bad)}. "
            f"(Connecting them with `stripe-reports connect`, 4 at a time: "
            f"{many.connect_wall_s:.0f} s, not counted.)"
        )
    return lines


def peers_table(results: Results) -> list[str]:
    if not results.peers:
        return []
    ours = results.peer_ours
    lines = [
        "| tool | objects | seconds | objects/s | peak RSS MB | rows verified | ours ÷ peer "
        "| notes |",
        "|---|--:|--:|--:|--:|---|--:|---|",
    ]
    if ours is not None:
        lines.append(f"| stripe-reports (this run) | {ours.objects:,} | {ours.sync_s:.2f} "
                     f"| {_n(ours.objects_per_s)} | {_n(ours.peak_rss_mb)} "
                     f"| {'yes' if ours.verified else 'no'} | 1× | net of start-up; "
                     f"{ours.wall_s:.1f} s = {ours.objects / ours.wall_s:,.0f} objects/s with "
                     "interpreter start and imports |")
    for peer in results.peers:
        speed = peer.objects_per_s
        ratio = "–"
        if ours and speed:
            by_wall = ours.objects / ours.wall_s / speed
            ratio = f"{ours.objects_per_s / speed:,.1f}× ({by_wall:,.1f}× by wall time)"
        verified = {True: "yes", False: "**no**", None: "–"}[peer.verified]
        lines.append(
            f"| {peer.name} | {_n(peer.objects)} | {_n(peer.seconds, 1)} | {_n(speed)} "
            f"| {_n(peer.peak_rss_mb)} | {verified} | {ratio} | {peer.detail} |"
        )
    return lines


def _largest_label(results: Results) -> str:
    sizes = [row.size for row in results.throughput if row.charges_only]
    return f"{max(sizes):,}" if sizes else "?"


def targets(results: Results) -> list[Target]:
    found: list[Target] = []
    live = results.row("charges 100k", "live")
    if live is not None:
        share = live.objects_per_s / LIVE_CEILING
        found.append(Target(
            "live-like 100k at the ceiling", "≥ 90 % of 10,000 objects/s",
            f"{live.objects_per_s:,.0f} objects/s ({share:.0%})", share >= 0.9,
            f"{(share - 0.9) * 100:+.0f} points"))
    cpu_rows = [r for r in results.throughput if r.condition == "cpu" and r.charges_only
                and r.size in results.floors]
    if cpu_rows:
        worst = min(cpu_rows, key=lambda r: r.objects_per_s)
        found.append(Target(
            "CPU-bound throughput", "≥ 8,000 objects/s net of start-up, every size",
            f"{worst.objects_per_s:,.0f} objects/s (slowest: {worst.run})",
            worst.objects_per_s >= 8000 and all(r.verified for r in cpu_rows),
            f"{worst.objects_per_s / 8000 - 1:+.0%}"))
        ratios = [(floor_ratio(results, r) or 0.0, r) for r in cpu_rows]
        low, low_row = min(ratios, key=lambda item: item[0])
        found.append(Target(
            "CPU-bound vs bare client", "≥ 70 % of the bare client, every size",
            f"{low:.0%} ({low_row.run})", low >= 0.7, f"{(low - 0.7) * 100:+.0f} points"))
    speeds = [p.objects_per_s for p in results.peers if p.objects_per_s]
    if results.peer_ours is not None and speeds:
        factor = results.peer_ours.objects_per_s / max(speeds)
        found.append(Target("CPU-bound vs fastest peer", "≥ 20×", f"{factor:,.1f}×",
                            factor >= 20, f"{factor / 20 - 1:+.0%}"))
    big = [r for r in results.throughput if r.charges_only and r.size >= 1_000_000]
    if big:
        peak = max(r.peak_rss_mb for r in big)
        found.append(Target("peak memory syncing 1M charges", "≤ 300 MB", f"{peak:,.0f} MB",
                            peak <= 300, f"{peak - 300:+,.0f} MB"))
    widgets = results.widgets
    if widgets is not None and not widgets.skipped:
        found.append(Target("widget p95 with 1M charges", "≤ 20 ms", f"{widgets.p95_ms:.1f} ms",
                            widgets.p95_ms <= 20, f"{widgets.p95_ms - 20:+.1f} ms"))
    if results.resyncs:
        slow = max(results.resyncs, key=lambda r: r.sync_s)
        found.append(Target(
            "no-change re-sync of 1M charges", "< 2 s",
            f"{slow.sync_s:.2f} s ({CONDITIONS[slow.condition].title}; "
            f"{slow.wall_s:.1f} s with process start)", slow.sync_s < 2,
            f"{slow.sync_s - 2:+.2f} s"))
    return found


def targets_table(results: Results) -> list[str]:
    lines = ["| target | goal | measured | met | margin |", "|---|---|---|---|--:|"]
    for target in targets(results):
        met = {True: "met", False: "**missed**", None: "–"}[target.met]
        lines.append(f"| {target.name} | {target.goal} | {target.measured} | {met} "
                     f"| {target.margin} |")
    return lines


def render(results: Results) -> str:
    date = results.started.strftime("%Y-%m-%d %H:%M UTC")
    code = f"code {results.code_before}"
    if results.code_after and results.code_after != results.code_before:
        code += f" at the start, {results.code_after} at the end (the tree changed mid-run)"
    lines = [
        f"Run {date} on {results.machine}; {code}; sandbox in its own process; pipeline "
        f"concurrency {results.concurrency} per stream; whole run {results.total_s / 60:.1f} "
        f"min; 1-minute load average {results.load_before:.1f} at the start, "
        f"{results.load_after:.1f} at the end (the *load* column: at the end of each run; "
        f"above 2 the 2 cores were shared with other work). Every row of every run was "
        f"checked against the source's ids: "
        f"{'all verified' if results.all_verified else '**some runs NOT verified**'}.",
        "",
        *throughput_table(results),
        "",
        *other_figures(results),
    ]
    peers = peers_table(results)
    if peers:
        lines += ["", "Peers on the same sandbox, same run (CPU-bound condition):", "", *peers]
    lines += ["", "Targets of issue 5:", "", *targets_table(results)]
    if results.notes:
        lines += ["", *[f"- {note}" for note in results.notes]]
    return "\n".join(lines) + "\n"


def write_results(results: Results, out: Path) -> str:
    text = "# Benchmark results\n\n" + render(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def update_readme(readme: Path, results: Results) -> None:
    """Replace the results section of the README, between its two markers."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return
    section = f"{README_START}\n{render(results)}{README_END}"
    readme.write_text(text[:start] + section + text[end + len(README_END):])
