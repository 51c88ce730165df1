"""Live latency side by side: this checkout against main before load-sized coalescing.

The cells of issue #17, each run by bench/latency.py on a fresh app (a direct client of
the same stand-in exchange gives each run its floor):

- embedded (`manage.py serve`): 50 ev/s × 20 viewers, 440 ev/s × 200 viewers;
- production (2 daphne + runworker, PostgreSQL, Redis pub/sub): 440 ev/s × 1,000 viewers.

The reference is REFERENCE (main with the worker's fixed 20 ms batch interval), exported
with `git archive` and started from its own tree (BENCH_APP_ROOT); the driver is this
checkout's either way. Rounds alternate which goes first, and the table shows per cell the
median over rounds of each run's added p50 and p99 (viewer minus direct client), the
floor, the share of rows delivered and the web processes' CPU.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import procs

# The last main before #17: the worker held batches 20 ms apart, web processes did not wait.
REFERENCE = "dc0450e"
CELLS = {"embedded": ["50x20", "440x200"], "production": ["440x1000"]}
# (mode, rate, viewers) → (added p50 at most, added p99 at most), in ms; None: no target.
TARGETS: dict[tuple[str, int, int], tuple[float | None, float | None]] = {
    ("embedded", 50, 20): (5.0, None),
    ("embedded", 440, 200): (10.0, 50.0),
    ("production", 440, 1000): (None, 100.0),
}
WEB_PROCESS = {"embedded": "serve", "production": "web"}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def export(ref: str) -> Path:
    """This repository's tree at ref, unpacked in a temporary directory."""
    target = Path(tempfile.mkdtemp(prefix=f"orderfox-bench-{ref}-"))
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref],
        cwd=procs.ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def run(opts, run_json: Callable[..., dict]) -> dict:
    """Run every cell for the reference and this checkout, opts.live_reps rounds."""
    reference = export(opts.live_against)
    sides = {"before": {"BENCH_APP_ROOT": str(reference)}, "now": {}}
    runs: dict[str, dict[str, list[dict]]] = {side: {mode: [] for mode in CELLS} for side in sides}
    common = ["--duration", str(opts.duration), "--drain", str(opts.drain)]
    for round_ in range(opts.live_reps):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for side in order:
            for mode, cells in CELLS.items():
                log(f"live: round {round_ + 1}, {side} ({mode}: {', '.join(cells)})")
                env = {**os.environ, **sides[side]}
                runs[side][mode].append(
                    run_json(
                        ["bench/latency.py", "--mode", mode, "--cells", *cells, *common], env=env
                    )
                )
    return {"reference": opts.live_against, "rounds": opts.live_reps, "runs": runs}


def _cells(runs: list[dict], rate: int, viewers: int) -> list[dict]:
    return [
        cell
        for run in runs
        for cell in run["cells"]
        if cell["rate"] == rate and cell["viewers"] == viewers
    ]


def _median(cells: list[dict], pick: Callable[[dict], float | None]) -> float | None:
    values = [value for value in map(pick, cells) if value is not None]
    return statistics.median(values) if values else None


def summary(results: dict) -> list[dict]:
    """Per cell: medians over rounds, before and now."""
    out = []
    for mode, cells in CELLS.items():
        for spec in cells:
            rate, viewers = (int(part) for part in spec.split("x"))
            entry: dict = {"mode": mode, "rate": rate, "viewers": viewers}
            for side in ("before", "now"):
                found = _cells(results["runs"][side][mode], rate, viewers)
                web = WEB_PROCESS[mode]
                entry[side] = {
                    "added_p50_ms": _median(found, lambda c: c["added_p50_ms"]),
                    "added_p99_ms": _median(found, lambda c: c["added_p99_ms"]),
                    "floor_p50_ms": _median(found, lambda c: c["baseline_ms"]["median"]),
                    "delivered": min(
                        (c.get("delivered_or_superseded", c["delivered"]) for c in found),
                        default=None,
                    ),
                    "web_cores": _median(found, lambda c, w=web: c["cpu"]["by_process"].get(w)),
                    "runs": len(found),
                }
            out.append(entry)
    return out


def rows(results: dict, ms: Callable, mark: Callable) -> list[tuple[str, ...]]:
    """Table rows: now vs before, added latency, the floor, delivery and web CPU."""
    out = []
    for entry in summary(results):
        now, before = entry["now"], entry["before"]
        p50_target, p99_target = TARGETS[(entry["mode"], entry["rate"], entry["viewers"])]
        checks = []
        if p50_target is not None:
            ok = now["added_p50_ms"] is not None and now["added_p50_ms"] <= p50_target
            checks.append(f"+p50 ≤ {p50_target:.0f} {mark(ok)}")
        if p99_target is not None:
            ok = now["added_p99_ms"] is not None and now["added_p99_ms"] <= p99_target
            checks.append(f"+p99 ≤ {p99_target:.0f} {mark(ok)}")
        checks.append(f"all rows {mark(now['delivered'] is not None and now['delivered'] >= 1)}")
        if entry["mode"] == "production":
            ok = None
            if now["web_cores"] is not None and before["web_cores"] is not None:
                ok = now["web_cores"] <= before["web_cores"] * 1.05
            checks.append(f"web CPU {now['web_cores']} ≤ {before['web_cores']} cores {mark(ok)}")
        out.append(
            (
                f"Live added ms vs {results['reference']} ({entry['mode']}), "
                f"{entry['rate']} ev/s × {entry['viewers']:,} viewers, median of "
                f"{now['runs']} runs; floor (direct client) p50 {ms(now['floor_p50_ms'])} ms",
                f"+{ms(now['added_p50_ms'])} / +{ms(now['added_p99_ms'])}",
                f"+{ms(before['added_p50_ms'])} / +{ms(before['added_p99_ms'])}",
                _ratio(now["added_p50_ms"], before["added_p50_ms"]),
                ", ".join(checks),
            )
        )
    return out


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"{a / b:,.2f}×"
