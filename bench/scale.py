"""A year of the market: every history, CSV, API and admin filter combination at N rows.

The rows (default 20 million over 365 days, seed 1) live in a database of their own,
orderfox_bench_scale_<N> (e.g. orderfox_bench_scale_20m), loaded once with the project's
COPY loader (`manage.py load_synthetic`, about 6 minutes for 20 million rows here) and
reused by later runs while it still holds exactly N rows; `migrate` runs first, so a new
index is built on the kept rows. Requests go one at a time over a keep-alive connection
to `manage.py serve_web` (2 daphne processes, Redis layer), rounds interleaved so a noisy
moment hits every combination alike; each combination's first page is timed end to end
(a CSV: the whole download, and for two of them also the first byte: how soon the
download starts). Prints one JSON object (p50/p95/p99 per combination).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import procs  # noqa: E402

DAYS = 365
ROWS = 20_000_000
TARGET_P95_MS = 50.0
# Timed in the same rounds: what the machine's noise alone costs a request.
BASELINE_PATH = "/static/css/app.css"


def _label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else str(rows)


def db_name(rows: int) -> str:
    return f"{procs.DB_PREFIX}_scale_{_label(rows)}"


def sqlite_dir(rows: int) -> str:
    """Embedded mode's kept data directory (var/ is not versioned)."""
    return os.path.join(ROOT, "var", f"bench-scale-sqlite-{_label(rows)}")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _python(script: str, env: dict, *args: str) -> bytes:
    return subprocess.run(
        [procs.PYTHON, "-c", script, *args],
        cwd=procs.ROOT,
        env=env,
        check=True,
        capture_output=True,
    ).stdout


FACTS = """
import django, orjson, sys
from datetime import timedelta
django.setup()
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Max, Min
from liquidations.models import Liquidation
with connection.cursor() as cur:
    cur.execute("SELECT count(*) FROM liquidations_liquidation")
    rows = cur.fetchone()[0]
span = Liquidation.objects.aggregate(oldest=Min("trade_time"), newest=Max("trade_time"))
oldest, newest = span["oldest"], span["newest"]
symbols = []
if rows:
    symbols = list(
        Liquidation.objects.filter(trade_time__gt=newest - timedelta(days=1))
        .values("symbol").annotate(n=Count("id")).order_by("-n").values_list("symbol", flat=True)
    )
# The exchange's listing, as the worker keeps it in production (the admin reads it).
from decimal import Decimal
from liquidations.devtools.bulk import DEFAULT_SYMBOLS
from liquidations.models import Symbol
for name, _, price_places, qty_places in DEFAULT_SYMBOLS:
    Symbol.objects.get_or_create(symbol=name, defaults=dict(
        status="TRADING", base_asset=name.removesuffix("USDT"), quote_asset="USDT",
        price_precision=price_places, quantity_precision=qty_places,
        tick_size=Decimal(1).scaleb(-price_places), step_size=Decimal(1).scaleb(-qty_places),
    ))
User = get_user_model()
if not User.objects.filter(username="bench-admin").exists():
    User.objects.create_superuser("bench-admin", "bench@example.com", "bench-admin-password")
sys.stdout.write(orjson.dumps({
    "rows": rows,
    "oldest": oldest.isoformat() if oldest else None,
    "newest": newest.isoformat() if newest else None,
    "symbols": symbols,
}).decode())
"""


SIZE = """
import django, os, sys
django.setup()
from django.db import connection
if connection.vendor == "sqlite":
    sys.stdout.write(str(os.path.getsize(connection.settings_dict["NAME"])))
else:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_database_size(current_database())")
        sys.stdout.write(str(cur.fetchone()[0]))
"""


def prepare(*, rows: int, env: dict) -> dict:
    """Migrate (building any new index on the kept rows), load the rows unless present."""
    started = time.perf_counter()
    procs.manage("migrate", "--no-input", env=env)
    migrate_s = time.perf_counter() - started
    facts = orjson.loads(_python(FACTS, env))
    loaded = False
    load_s = None
    if facts["rows"] != rows:
        log(f"  loading {rows:,} rows over {DAYS} days (once; later runs reuse them)")
        procs.manage("flush", "--no-input", env=env)
        started = time.perf_counter()
        # stderr inherited: a progress bar when it is a terminal.
        subprocess.run(
            [procs.PYTHON, "manage.py", "load_synthetic", "--count", str(rows)]
            + ["--days", str(DAYS), "--seed", "1"],
            cwd=procs.ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        load_s = time.perf_counter() - started
        log(f"  loaded in {load_s:.0f} s")
        loaded = True
        facts = orjson.loads(_python(FACTS, env))
    size = _python(SIZE, env)
    return {
        **facts,
        "loaded_now": loaded,
        "load_seconds": load_s,
        "migrate_seconds": round(migrate_s, 1),
        "database_bytes": int(size),
    }


def combinations(facts: dict) -> dict[str, str]:
    """Name → path: every filter the history page, its CSV, the API and the admin take."""
    newest = datetime.fromisoformat(facts["newest"])
    busiest = facts["symbols"][0] if facts["symbols"] else "BTCUSDT"
    rarest = facts["symbols"][-1] if facts["symbols"] else "HYPEUSDT"
    day_end = newest - timedelta(days=7)
    day = {"start": _form(day_end - timedelta(days=1)), "end": _form(day_end)}
    # "BTC above $1M last March": a 31-day range about ten months back.
    march_start = newest - timedelta(days=300)
    month = {"start": _form(march_start), "end": _form(march_start + timedelta(days=31))}
    ms_day = {
        "start_timestamp": _ms(day_end - timedelta(days=1)),
        "end_timestamp": _ms(day_end),
    }
    ms_month = {
        "start_timestamp": _ms(march_start),
        "end_timestamp": _ms(march_start + timedelta(days=31)),
    }

    def history(**params) -> str:
        return "/history/?" + urlencode(params)

    def csv(**params) -> str:
        return "/history/csv?" + urlencode(params)

    def paged(**params) -> str:
        return "/api/v1/liquidations/paged?" + urlencode(params)

    big = {"min_usd": 5_000_000}
    return {
        "dashboard, ≥ $5M": "/?" + urlencode(big),
        f"symbol page, {busiest} ≥ $1M": f"/{busiest}/?" + urlencode({"min_usd": 1_000_000}),
        "dashboard, venue okx long ≥ $1M": "/?"
        + urlencode({"venue": "okx", "side": "long", "min_usd": 1_000_000}),
        "history, no filter": history(),
        f"history, symbol {busiest}": history(symbol=busiest),
        f"history, symbol {rarest} (rarest)": history(symbol=rarest),
        "history, side long": history(side="long"),
        f"history, {rarest} + side short": history(symbol=rarest, side="short"),
        "history, ≥ $5M": history(**big),
        "history, ≥ $1M": history(min_usd=1_000_000),
        "history, ≥ $250k": history(min_usd=250_000),
        "history, ≥ $100k": history(min_usd=100_000),
        "history, ≥ $10k": history(min_usd=10_000),
        "history, side long ≥ $5M": history(side="long", **big),
        f"history, {busiest} ≥ $1M": history(symbol=busiest, min_usd=1_000_000),
        "history, DOGEUSDT ≥ $500k": history(symbol="DOGEUSDT", min_usd=500_000),
        f"history, {rarest} short ≥ $100k": history(symbol=rarest, side="short", min_usd=100_000),
        f"history, {rarest} long ≥ $10k": history(symbol=rarest, side="long", min_usd=10_000),
        "history, one day": history(**day),
        "history, one day ≥ $1M": history(min_usd=1_000_000, **day),
        "history, one day long ≥ $10k": history(side="long", min_usd=10_000, **day),
        f"history, March {busiest} ≥ $1M": history(symbol=busiest, min_usd=1_000_000, **month),
        f"history, March {rarest} short": history(symbol=rarest, side="short", **month),
        "history, March ≥ $250k": history(min_usd=250_000, **month),
        "history, venue okx": history(venue="okx"),
        "history, venue bybit ≥ $5M": history(venue="bybit", **big),
        f"history, venue okx {busiest} ≥ $1M": history(
            venue="okx", symbol=busiest, min_usd=1_000_000
        ),
        f"history, venue okx {rarest} short": history(venue="okx", symbol=rarest, side="short"),
        "history, March venue bybit ≥ $250k": history(venue="bybit", min_usd=250_000, **month),
        "history, empty: ≥ $100M all year": history(min_usd=100_000_000),
        f"history, empty: {rarest} long ≥ $20M": history(
            symbol=rarest, side="long", min_usd=20_000_000
        ),
        "history, empty: unknown symbol": history(symbol="NOSUCHUSDT"),
        "history, empty: March ≥ $100M": history(min_usd=100_000_000, **month),
        "CSV, ≥ $5M (whole file)": csv(**big),
        f"CSV, {busiest} ≥ $1M (whole file)": csv(symbol=busiest, min_usd=1_000_000),
        f"CSV, {busiest} ≥ $1M (first byte)": csv(symbol=busiest, min_usd=1_000_000),
        "CSV, empty: ≥ $100M (whole file)": csv(min_usd=100_000_000),
        "CSV, venue okx ≥ $1M (whole file)": csv(venue="okx", min_usd=1_000_000),
        "CSV, venue okx ≥ $1M (first byte)": csv(venue="okx", min_usd=1_000_000),
        # The paged form's first page (500 rows): the array form answers a whole range
        # at once (one day is ~55,000 rows here), a download, not a page.
        "API paged, one day": paged(**ms_day),
        f"API paged, one day {busiest}": paged(symbol=busiest, **ms_day),
        f"API paged, March {rarest}": paged(symbol=rarest, **ms_month),
        "API paged, one day venue bybit": paged(venue="bybit", **ms_day),
        "API paged, all year venue okx": paged(
            venue="okx",
            start_timestamp=_ms(datetime.fromisoformat(facts["oldest"])),
            end_timestamp=_ms(newest) + 1,
        ),
        "API liquidation-orders": "/api/v1/liquidation-orders",
        "admin, no filter": "/admin/liquidations/liquidation/",
        "admin, side SELL": "/admin/liquidations/liquidation/?side__exact=SELL",
        "admin, venue okx": "/admin/liquidations/liquidation/?venue__exact=okx",
        f"admin, symbol {rarest}": f"/admin/liquidations/liquidation/?symbol={rarest}",
        "admin, empty: unknown symbol": "/admin/liquidations/liquidation/?symbol=NOSUCHUSDT",
        "admin, search NOSUCH (no listed symbol)": "/admin/liquidations/liquidation/?q=NOSUCH",
        "admin, a day (date hierarchy)": "/admin/liquidations/liquidation/?"
        + urlencode(
            {
                "trade_time__day": day_end.day,
                "trade_time__month": day_end.month,
                "trade_time__year": day_end.year,
            }
        ),
    }


def _form(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def login(conn: http.client.HTTPConnection) -> str:
    """Log the bench's superuser into the admin; return the Cookie header."""
    conn.request("GET", "/admin/login/", headers={"Host": "127.0.0.1"})
    response = conn.getresponse()
    body = response.read().decode()
    csrf_cookie = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie") or "")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    if not (csrf_cookie and token):
        raise RuntimeError("admin login page without a CSRF token")
    form = urlencode(
        {
            "csrfmiddlewaretoken": token.group(1),
            "username": "bench-admin",
            "password": "bench-admin-password",
            "next": "/admin/",
        }
    )
    conn.request(
        "POST",
        "/admin/login/",
        body=form,
        headers={
            "Host": "127.0.0.1",
            "Cookie": f"csrftoken={csrf_cookie.group(1)}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": "http://127.0.0.1/admin/login/",
        },
    )
    response = conn.getresponse()
    response.read()
    session = re.search(r"sessionid=([^;]+)", response.getheader("Set-Cookie") or "")
    if response.status != 302 or not session:
        raise RuntimeError(f"admin login failed ({response.status})")
    return f"csrftoken={csrf_cookie.group(1)}; sessionid={session.group(1)}"


def time_get(
    conn: http.client.HTTPConnection, path: str, reps: int, cookie: str, first_byte: bool = False
) -> tuple[list[float], int]:
    """Time GET path reps times after a warm-up: to the last byte, or to the first byte of
    the body (a streamed CSV: how soon the download starts)."""
    samples, size = [], 0
    headers = {"Host": "127.0.0.1"}
    if path.startswith("/admin/"):
        headers["Cookie"] = cookie
    for i in range(reps + 1):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        if first_byte:
            body = response.read(1)
            elapsed = (time.perf_counter() - started) * 1000
            body += response.read()
        else:
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
        if i >= 1:  # one warm-up request
            samples.append(elapsed)
        size = len(body)
    return samples, size


def main(args) -> dict:
    if args.sqlite:
        name = sqlite_dir(args.rows)
        os.makedirs(name, exist_ok=True)
        env = procs.app_env(ORDERFOX_DATA_DIR=name)
        server = [procs.PYTHON, "manage.py", "serve", "--no-worker", "--port"]
    else:
        name = db_name(args.rows)
        env = procs.app_env(database_url=procs.pg_create(name, drop=False), redis=True)
        server = [procs.PYTHON, "manage.py", "serve_web", "--processes", "2", "--port"]
    facts = prepare(rows=args.rows, env=env)
    paths = combinations(facts)
    if args.match:
        paths = {k: v for k, v in paths.items() if re.search(args.match, k)}
    samples: dict[str, list[float]] = {name: [] for name in paths}
    sizes: dict[str, int] = {}
    with procs.Processes() as ps:
        port = procs.free_port()
        web = ps.start("web-scale", [*server, str(port)], env=env)
        procs.wait_port(port, proc=web)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        cookie = login(conn)
        baseline: list[float] = []
        for round_ in range(args.rounds):
            baseline += time_get(conn, BASELINE_PATH, args.reps, cookie)[0]
            for combo, path in paths.items():
                values, sizes[combo] = time_get(
                    conn, path, args.reps, cookie, first_byte="(first byte)" in combo
                )
                samples[combo] += values
            log(f"  round {round_ + 1}/{args.rounds} done")
        conn.close()
    results = {}
    for combo, path in paths.items():
        ms = procs.stats(samples[combo])
        results[combo] = {"path": path, "bytes": sizes[combo], "ms": ms}
    return {
        **facts,
        "database": name,
        "days": DAYS,
        "mode": "embedded (SQLite, manage.py serve)" if args.sqlite else "production",
        "target_p95_ms": TARGET_P95_MS,
        "baseline": {"path": BASELINE_PATH, "ms": procs.stats(baseline)},
        "load_average_at_end": os.getloadavg(),
        "combinations": results,
    }


def table(result: dict) -> str:
    """The per-combination table, p50/p95 in ms, and whether p95 meets the target."""
    combos = result["combinations"]
    width = max(len(name) for name in combos)
    lines = [
        f"{result['rows']:,} rows over {result['days']} days, {result['mode']}, "
        f"{result['database']} "
        f"({result['database_bytes'] / 2**30:.1f} GiB)",
        f"| {'Combination'.ljust(width)} | p50 ms | p95 ms | target |",
        f"|{'-' * (width + 2)}|--------|--------|--------|",
    ]
    base = result["baseline"]["ms"]
    lines.append(
        f"| {'baseline: a static file'.ljust(width)} | {base['median']:6.1f} | "
        f"{base['p95']:6.1f} |        |"
    )
    for name, r in combos.items():
        ms = r["ms"]
        ok = ms["p95"] <= result["target_p95_ms"]
        lines.append(
            f"| {name.ljust(width)} | {ms['median']:6.1f} | {ms['p95']:6.1f} | "
            f"{'met' if ok else 'NOT met':6} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--reps", type=int, default=5, help="requests per round (+1 warm-up)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--sqlite", action="store_true", help="embedded mode: SQLite in var/, manage.py serve"
    )
    parser.add_argument("--match", help="only combinations whose name matches this regex")
    args = parser.parse_args()
    result = main(args)
    log(table(result))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
