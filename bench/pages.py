"""Pages with 5 million rows in PostgreSQL, end to end over HTTP through the production web tier.

The rows live in a dedicated database (orderfox_bench_5m), loaded once with the project's
COPY loader (`manage.py load_synthetic`, ~2 minutes) and reused by later runs while it
still holds them. The pages are requested one at a time over a keep-alive connection
from `manage.py serve_web` (2 daphne processes); the baseline in the same run is a static
file through the same stack. The stats strip has no URL of its own (it is part of the
dashboard and pushed over the socket), so it is also timed as the selector call the
publisher makes. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import time

import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import procs  # noqa: E402

# Shared by every bench on the server: loaded once, never dropped.
DB_NAME = "orderfox_bench_5m"
ROWS = 5_000_000
DAYS = 30


def django_env(url: str) -> dict:
    return procs.app_env(database_url=url, redis=True)


def prepare(url: str, *, rows: int, log) -> dict:
    """Migrate, load the rows unless present; return facts the requests need."""
    env = django_env(url)
    procs.manage("migrate", "--no-input", env=env)
    script = """
import django, orjson, sys
django.setup()
from django.db import connection
with connection.cursor() as cur:
    cur.execute("SELECT count(*) FROM liquidations_liquidation")
    sys.stdout.write(orjson.dumps({"rows": cur.fetchone()[0]}).decode())
"""
    count = orjson.loads(_python(script, env))["rows"]
    loaded = False
    if count != rows:
        log(f"  loading {rows:,} rows into {DB_NAME} (once; later runs reuse them)")
        procs.manage("flush", "--no-input", env=env)
        started = time.perf_counter()
        procs.manage(
            "load_synthetic", "--count", str(rows), "--days", str(DAYS), "--seed", "1", env=env
        )
        log(f"  loaded in {time.perf_counter() - started:.0f} s")
        loaded = True
    script = """
import django, orjson, sys
django.setup()
from django.db import connection
from liquidations.selectors.history import Cursor
from liquidations.models import Liquidation
depth = int(sys.argv[1])
with connection.cursor() as cur:
    cur.execute(
        "SELECT symbol, count(*) FROM liquidations_liquidation"
        " WHERE trade_time > now() - interval '1 day' GROUP BY symbol ORDER BY 2 DESC LIMIT 1"
    )
    busiest = cur.fetchone() or ("BTCUSDT", 0)
liq = Liquidation.objects.order_by("-trade_time", "-id")[depth]
sys.stdout.write(orjson.dumps({
    "cursor": Cursor.after(liq).encode(),
    "symbol": busiest[0],
    "symbol_rows_24h": busiest[1],
}).decode())
"""
    facts = orjson.loads(_python(script, env, str(rows * 4 // 5)))
    return {**facts, "rows": rows, "loaded_now": loaded}


def _python(script: str, env: dict, *args: str) -> str:
    return subprocess.run(
        [procs.PYTHON, "-c", script, *args],
        cwd=procs.ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def time_stats(url: str, symbol: str, reps: int) -> dict:
    """Time the stats strip's selector as its publisher calls it (no URL of its own)."""
    script = """
import django, orjson, sys, time
django.setup()
from liquidations.selectors.stats import stats_context
symbol, reps = sys.argv[1], int(sys.argv[2])
out = {}
for name, arg in (("all", None), ("symbol", symbol)):
    stats_context(symbol=arg)
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        stats_context(symbol=arg)
        samples.append((time.perf_counter() - t) * 1000)
    out[name] = samples
sys.stdout.write(orjson.dumps(out).decode())
"""
    return orjson.loads(_python(script, django_env(url), symbol, str(reps)))


def time_get(conn: http.client.HTTPConnection, path: str, reps: int) -> list[float]:
    samples = []
    for i in range(reps + 2):
        started = time.perf_counter()
        conn.request("GET", path, headers={"Host": "127.0.0.1"})
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
        if i >= 2:  # two warm-up requests
            samples.append(elapsed)
    return samples


def main(args) -> dict:
    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    url = procs.pg_create(DB_NAME, drop=False)
    facts = prepare(url, rows=args.rows, log=log)
    symbol = facts["symbol"]
    now_ms = int(time.time() * 1000)
    pages = {
        "dashboard /": "/",
        f"symbol page /{symbol}/": f"/{symbol}/",
        f"24 h 1m volume API ({symbol})": f"/api/v1/liquidation-volume/{symbol}/1m",
        # The whole last hour as OrderFox's client reads it (one JSON array, #18).
        f"1 h range array API ({symbol})": (
            f"/api/v1/liquidations?symbol={symbol}&timeframe=1m"
            f"&start_timestamp={now_ms - 3_600_000}&end_timestamp={now_ms}"
        ),
        "history page 4M rows deep": f"/history/?cursor={facts['cursor']}",
    }
    baseline_path = "/static/css/app.css"
    results = {}
    with procs.Processes() as ps:
        port = procs.free_port()
        env = django_env(url)
        web = ps.start(
            "web-pages",
            [procs.PYTHON, "manage.py", "serve_web", "--processes", "2", "--port", str(port)],
            env=env,
        )
        procs.wait_port(port, proc=web)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        # Interleave rounds so a noisy moment hits every page alike.
        samples: dict[str, list[float]] = {name: [] for name in pages}
        baseline: list[float] = []
        for _ in range(args.rounds):
            baseline += time_get(conn, baseline_path, args.reps)
            for name, path in pages.items():
                samples[name] += time_get(conn, path, args.reps)
        conn.close()
    for name, values in samples.items():
        results[name] = {"path": pages[name], "ms": procs.stats(values)}
    stats = time_stats(url, symbol, args.reps * args.rounds)
    results["stats strip, all market (selector)"] = {"path": None, "ms": procs.stats(stats["all"])}
    results[f"stats strip, {symbol} (selector)"] = {
        "path": None,
        "ms": procs.stats(stats["symbol"]),
    }
    return {
        **facts,
        "database": DB_NAME,
        "days": DAYS,
        "web_processes": 2,
        "baseline": {"path": baseline_path, "ms": procs.stats(baseline)},
        "pages": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    sys.stdout.write(orjson.dumps(main(args)).decode() + "\n")
