"""`make bench`: every figure next to its same-run baseline, as a table and as JSON.

Sections (each a subprocess, so every mode gets its own settings):
  ingest   bench/ingest.py   SQLite and PostgreSQL vs a bare parse + executemany loop
  latency  bench/latency.py  embedded and production vs a client on the exchange itself,
                             plus the channel-layer comparison (pub/sub vs core)
  live     bench/live.py     issue #17's cells, this checkout beside main before
                             load-sized coalescing (--live-against), medians of rounds
  pages    bench/pages.py    5 million rows in PostgreSQL vs a static file
  memory   bench/memory.py   worker RSS after a warm-up vs after 1 million events
  market   bench/market.py   symbol-page market panels: 100 viewers across 20 symbols
  scale    bench/scale.py    every history/CSV/API/admin filter combination on a year of
                             liquidations (--scale-rows, default 20 million, kept in
                             orderfox_bench_scale_20m), p50/p95 per combination

Results go to bench/results/<UTC time>.json and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import live as live_cells  # noqa: E402
from bench import procs  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SECTIONS = ("ingest", "latency", "live", "layers", "pages", "memory", "market", "scale")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_json(args: list[str], *, env: dict | None = None, timeout: float = 1200) -> dict:
    """Run a bench script; stream its stderr; return the JSON it prints."""
    started = time.perf_counter()
    proc = subprocess.run(
        [procs.PYTHON, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=None if os.environ.get("BENCH_VERBOSE") else subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{tail}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = orjson.loads(lines[-1])
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    return result


def ingest(opts) -> dict:
    out = {}
    # Three venues at once: each sends a third of the events, so a run stores as many
    # events as a Binance-only one.
    three = ("binance,bybit,okx", max(1, opts.ingest_events // 3))
    for name, env, (venues, events) in (
        ("sqlite", procs.app_env(ORDERFOX_DATA_DIR=_tmpdir("ingest")), ("binance", None)),
        ("postgresql", _ingest_pg_env(), ("binance", None)),
        ("postgresql, 3 venues", _ingest_pg_env(), three),
    ):
        log(f"ingest: {name}")
        out[name] = run_json(
            [
                "bench/ingest.py",
                "--events",
                str(events or opts.ingest_events),
                "--reps",
                str(opts.ingest_reps),
                "--venues",
                venues,
            ],
            env=env,
        )
    procs.pg_drop(f"{procs.DB_PREFIX}_ingest")
    return out


def _ingest_pg_env() -> dict:
    return procs.app_env(database_url=procs.pg_create(f"{procs.DB_PREFIX}_ingest"), redis=True)


def latency(opts) -> dict:
    common = ["--duration", str(opts.duration), "--drain", str(opts.drain)]
    out = {}
    log("latency: embedded (manage.py serve, SQLite, in-memory layer)")
    out["embedded"] = run_json(
        ["bench/latency.py", "--mode", "embedded", "--viewers", "1", "100", "200", "1000", *common]
    )
    log("latency: production (serve_web x2 + runworker, PostgreSQL, Redis pub/sub)")
    out["production"] = run_json(
        ["bench/latency.py", "--mode", "production", "--layer", "pubsub", *common]
    )
    return out


def live(opts) -> dict:
    log(f"live: #17's cells, this checkout beside {opts.live_against}, {opts.live_reps} rounds")
    return live_cells.run(opts, run_json)


def layers(opts) -> dict:
    log("layers: production with channels_redis.core.RedisChannelLayer")
    return {
        "core": run_json(
            [
                "bench/latency.py",
                "--mode",
                "production",
                "--layer",
                "core",
                "--viewers",
                "100",
                "1000",
                "--rates",
                "440",
                "--duration",
                str(opts.duration),
                "--drain",
                str(opts.drain),
            ]
        )
    }


def pages(opts) -> dict:
    log("pages: 5 million rows in PostgreSQL (loaded once into orderfox_bench_5m)")
    return run_json(["bench/pages.py", "--rows", str(opts.page_rows)], timeout=3600)


def memory(opts) -> dict:
    log(f"memory: worker RSS over {opts.memory_events:,} events")
    return run_json(["bench/memory.py", "--events", str(opts.memory_events)], timeout=3600)


def market(opts) -> dict:
    log("market: 100 viewers across 20 symbol pages (serve_web x2 + runworker, Redis pub/sub)")
    return run_json(["bench/market.py", "--duration", str(max(opts.duration, 20.0))])


def scale(opts) -> dict:
    log(
        f"scale: every filter combination on {opts.scale_rows:,} rows over a year "
        "(loaded once, kept)"
    )
    return run_json(
        ["bench/scale.py", "--rows", str(opts.scale_rows), "--reps", str(opts.scale_reps)],
        timeout=4 * 3600,
    )


def _tmpdir(name: str) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=f"orderfox-bench-{name}-")


# -- the table -------------------------------------------------------------------------


def _ms(value) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _ratio(a, b) -> str:
    return "—" if not a or not b else f"{a / b:,.1f}×"


def _cpu(cell: dict) -> str:
    """How busy the machine was during a latency cell: app and bench cores, all cores."""
    cpu = cell.get("cpu")
    if not cpu:
        return ""
    return (
        f", CPU app {cpu['app_cores']:.2f} + bench {cpu['bench_cores']:.2f} cores, "
        f"machine {cpu['machine_busy']:.0%} busy"
    )


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "NOT met")


def table(results: dict) -> str:
    rows: list[tuple[str, ...]] = []
    head = ("Measure", "Subject median / p99", "Baseline median / p99", "Ratio", "Target")
    if "ingest" in results:
        for name, r in results["ingest"].items():
            s = procs.stats(r["subject_events_per_s"])
            b = procs.stats(r["baseline_events_per_s"])
            slow_s = min(r["subject_events_per_s"])
            slow_b = min(r["baseline_events_per_s"])
            target = ""
            if name.startswith("postgresql"):
                target = f"≥ 10,000/s {_mark(s['median'] >= 10_000)}"
            if r.get("per_venue"):
                last = r["per_venue"][-1]["stored"]
                name += " (" + ", ".join(f"{v} {n:,}" for v, n in last.items()) + " a run, exact)"
            rows.append(
                (
                    f"Ingest {name}, events/s (p99 = slowest run)",
                    f"{s['median']:,.0f} / {slow_s:,.0f}",
                    f"{b['median']:,.0f} / {slow_b:,.0f}",
                    _ratio(s["median"], b["median"]),
                    target,
                )
            )
    for mode_key, label in (("embedded", "embedded"), ("production", "production")):
        r = results.get("latency", {}).get(mode_key)
        if not r:
            continue
        for cell in r["cells"]:
            app, base = cell["app_ms"], cell["baseline_ms"]
            target = ""
            shown = cell.get("delivered_or_superseded", cell["delivered"])
            if mode_key == "production" and cell["rate"] == 440 and cell["viewers"] == 1000:
                p50, p99 = cell["added_p50_ms"], cell["added_p99_ms"]
                target = (
                    f"+p50 {_ms(p50)} ≤ 10 {_mark(p50 is not None and p50 <= 10)}, "
                    f"+p99 {_ms(p99)} ≤ 100 {_mark(p99 is not None and p99 <= 100)}, "
                    f"all rows {_mark(shown >= 1.0)}"
                )
            if mode_key == "embedded" and cell["rate"] == 440 and cell["viewers"] == 200:
                ok = app["p99"] is not None and app["p99"] <= 250
                target = f"p99 ≤ 250 {_mark(ok)}"
            rows.append(
                (
                    f"Latency ms, {label} ({r['layer']}), {cell['rate']:,.0f} ev/s × "
                    f"{cell['viewers']} viewers, rows {cell['delivered']:.1%} "
                    f"(+ cap {shown - cell['delivered']:.1%}){_cpu(cell)}",
                    f"{_ms(app['median'])} / {_ms(app['p99'])}",
                    f"{_ms(base['median'])} / {_ms(base['p99'])}",
                    _ratio(app["median"], base["median"]),
                    target,
                )
            )
    if "live" in results:
        rows.extend(live_cells.rows(results["live"], _ms, _mark))
    core = results.get("layers", {}).get("core")
    if core:
        for cell in core["cells"]:
            app, base = cell["app_ms"], cell["baseline_ms"]
            shown = cell.get("delivered_or_superseded", cell["delivered"])
            rows.append(
                (
                    f"Latency ms, production (core layer), {cell['rate']:,.0f} ev/s × "
                    f"{cell['viewers']} viewers, rows {cell['delivered']:.1%} "
                    f"(+ cap {shown - cell['delivered']:.1%}){_cpu(cell)}",
                    f"{_ms(app['median'])} / {_ms(app['p99'])}",
                    f"{_ms(base['median'])} / {_ms(base['p99'])}",
                    _ratio(app["median"], base["median"]),
                    "layer comparison",
                )
            )
    if "pages" in results:
        p = results["pages"]
        base = p["baseline"]["ms"]
        for name, r in p["pages"].items():
            ms = r["ms"]
            rows.append(
                (
                    f"Page ms, {name}",
                    f"{_ms(ms['median'])} / {_ms(ms['p99'])}",
                    f"{_ms(base['median'])} / {_ms(base['p99'])}",
                    _ratio(ms["median"], base["median"]),
                    f"p95 {_ms(ms['p95'])} ≤ 50 {_mark(ms['p95'] <= 50)}",
                )
            )
    if "scale" in results:
        s = results["scale"]
        for name, r in s["combinations"].items():
            ms = r["ms"]
            target = s["target_p95_ms"]
            rows.append(
                (
                    f"Scale ms at {s['rows'] / 1e6:,.0f} M rows, {name}",
                    f"{_ms(ms['median'])} / {_ms(ms['p99'])}",
                    "",
                    "",
                    f"p95 {_ms(ms['p95'])} ≤ {target:.0f} {_mark(ms['p95'] <= target)}",
                )
            )
    if "memory" in results:
        m = results["memory"]
        mib = 1024 * 1024
        rows.append(
            (
                f"Worker RSS MiB after {m['events']:,} events vs after warm-up",
                f"{m['rss_after'] / mib:,.1f}",
                f"{m['rss_before'] / mib:,.1f}",
                f"{m['rss_after'] / m['rss_before']:.3f}×",
                f"growth ≤ 10% {_mark(m['growth'] <= 0.10)} ({m['growth']:+.1%})",
            )
        )
    if "market" in results:
        rows.extend(_market_rows(results["market"]))
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |"
        for row in [head, *rows]
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _market_rows(m: dict) -> list[tuple[str, ...]]:
    """Rows of the market-panels bench: subscriptions, CPU, frame rates, book latency."""
    wanted = m["symbols"]
    by_type = m["upstream"]["streams_by_type"]
    subs = m["upstream"]["subscribes_by_type"]
    one_each = all(by_type.get(t) == wanted and subs.get(t) == wanted for t in by_type) and (
        len(by_type) == 3
    )
    cpu = m["cpu"]["by_process"]
    frames, books = m["frames_per_viewer_per_s"], m["book_frames_per_viewer_per_s"]
    lat = m["depth_event_to_book_frame_ms"]
    label = f"Market, {m['viewers']} viewers × {wanted} symbols"
    return [
        (
            f"{label}: upstream streams by type (subscribes)",
            ", ".join(f"{t} {n} ({subs.get(t)})" for t, n in sorted(by_type.items())),
            "",
            "",
            f"{wanted} per type {_mark(one_each)}",
        ),
        (
            f"{label}: CPU cores (web, worker; machine busy)",
            f"{cpu.get('web', 0):.2f}, {cpu.get('worker', 0):.2f}",
            f"{m['cpu']['machine_busy']:.0%}",
            "",
            "",
        ),
        (
            f"{label}: frames/s per viewer, all (book)",
            f"{frames['mean']:.1f} / max {frames['max']:.1f} "
            f"({books['mean']:.1f} / {books['max']:.1f})",
            "",
            "",
            f"≤ ~10 (≤ ~4) {_mark(frames['max'] <= 10.5 and books['max'] <= 4.5)}",
        ),
        (
            f"{label}: depth event → book frame ms",
            f"{_ms(lat['median'])} / {_ms(lat['p99'])}",
            "",
            "",
            "",
        ),
    ]


def machine() -> dict:
    mem = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # scale loads 20 million rows (about 11 GiB) the first time: asked for by name only.
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=[s for s in SECTIONS if s != "scale"],
    )
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per latency cell")
    parser.add_argument("--drain", type=float, default=8.0)
    parser.add_argument("--ingest-events", type=int, default=20_000)
    parser.add_argument("--ingest-reps", type=int, default=5)
    parser.add_argument("--page-rows", type=int, default=5_000_000)
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument(
        "--scale-rows", type=int, default=20_000_000, help="rows of the scale part (kept)"
    )
    parser.add_argument("--scale-reps", type=int, default=10, help="scale: requests per round")
    parser.add_argument(
        "--live-against",
        default=live_cells.REFERENCE,
        help="live: the commit to measure beside this checkout",
    )
    parser.add_argument("--live-reps", type=int, default=3, help="live: rounds of both")
    parser.add_argument("--table", metavar="JSON", help="print the table of an earlier run")
    opts = parser.parse_args()
    if opts.table:
        print(table(orjson.loads(Path(opts.table).read_bytes())))
        return
    started = time.perf_counter()
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            name: os.environ.get(name) for name in ("LIVE_FANOUT_BUDGET", "LIVE_FANOUT_MAX_WINDOW")
        },
        "options": vars(opts),
    }
    try:
        for section in SECTIONS:
            if section in opts.only:
                results[section] = globals()[section](opts)
    finally:
        procs.redis_flush()
    results["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2)
    (RESULTS / f"{stamp}.json").write_bytes(data)
    (RESULTS / "latest.json").write_bytes(data)
    print(table(results))
    print(
        f"\n{results['started_at']}, {results['seconds']:.0f} s, "
        f"{results['machine']['cpus']} CPUs, {results['machine']['memory_gib']} GiB, "
        f"load at start {results['machine']['load_average_at_start'][0]:.1f}; "
        f"JSON: bench/results/{stamp}.json"
    )


if __name__ == "__main__":
    main()
