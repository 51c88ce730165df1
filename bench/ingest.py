"""Ingest throughput: fake exchange → parse → store (dedup) → broadcast, vs a bare loop.

Run by bench/run.py in a subprocess whose environment picks the database (SQLite when
DATABASE_URL is unset) and channel layer. Prints one JSON object on stdout.

Each repetition sends the same number of frames (2 % of them re-sent duplicates) through
the real `worker.Ingest` over a loopback WebSocket and times it until every event is
stored or skipped and broadcast; the baseline parses the identical frame list with the
venue's parser and inserts it with `executemany` (INSERT .. ON CONFLICT DO NOTHING) on a
raw connection. Both share the table, emptied before every run.

With --venues binance,bybit,okx, every venue gets --events frames of its own protocol at
once, each on its own connection, and each run checks that every venue stored exactly
its unique events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import django
import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderfox.settings")


def raw_connection():
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        import sqlite3

        conn = sqlite3.connect(db["NAME"], timeout=20)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn, "?"
    import psycopg

    return psycopg.connect(os.environ["DATABASE_URL"]), "%s"


def venue_parsers(venues: list[str]) -> dict:
    """Each venue's frame parser, its listing taken from the fake exchange (as the app's)."""
    from liquidations.devtools.fake_exchange import SYMBOLS
    from liquidations.devtools.fake_exchange import bybit as fake_bybit
    from liquidations.devtools.fake_exchange import okx as fake_okx
    from liquidations.upstream.binance import BinanceVenue
    from liquidations.upstream.bybit import BybitVenue
    from liquidations.upstream.bybit_instruments import parse_bybit_instruments
    from liquidations.upstream.okx import OkxVenue
    from liquidations.upstream.okx_instruments import parse_okx_instruments

    bybit = BybitVenue(ws_url="")
    page = fake_bybit.instruments_page(
        list(SYMBOLS), params={"category": "linear", "limit": "1000"}, page_limit=1000
    )
    bybit.set_instruments(parse_bybit_instruments(page)[0])
    okx = OkxVenue(ws_url="")
    okx.set_instruments(parse_okx_instruments(fake_okx.instruments(list(SYMBOLS))))
    adapters = {"binance": BinanceVenue(ws_base_url=""), "bybit": bybit, "okx": okx}
    return {venue: adapters[venue].parse for venue in venues}


def baseline_run(frames: dict[str, list[bytes]]) -> float:
    """Parse every frame and executemany them in chunks of 1,000; return seconds taken."""
    from liquidations.services.liquidations import INSERT_FIELDS, UNIQUE_FIELDS

    parsers = venue_parsers(list(frames))
    conn, mark = raw_connection()
    columns = ", ".join(INSERT_FIELDS)
    sql = (
        f"INSERT INTO liquidations_liquidation ({columns}) "
        f"VALUES ({', '.join([mark] * len(INSERT_FIELDS))}) "
        f"ON CONFLICT ({', '.join(UNIQUE_FIELDS)}) DO NOTHING"
    )
    sqlite = mark == "?"
    try:
        start = time.perf_counter()
        received = datetime.now(UTC)
        rows = []
        for venue, raw in _interleaved(frames):
            (e,) = parsers[venue](raw)
            trade = e.trade_time
            event = e.event_time
            values = (
                e.venue,
                e.instrument,
                e.symbol,
                e.side,
                e.order_type,
                e.time_in_force,
                e.original_quantity,
                e.price,
                e.average_price,
                e.order_status,
                e.last_filled_quantity,
                e.filled_quantity,
                trade,
                event,
                e.notional_usd,
                received,
            )
            if sqlite:
                values = tuple(str(v) if not isinstance(v, str | None) else v for v in values)
            rows.append(values)
            if len(rows) == 1000:
                _insert(conn, sql, rows)
                rows = []
        if rows:
            _insert(conn, sql, rows)
        return time.perf_counter() - start
    finally:
        conn.close()


def _interleaved(frames: dict[str, list[bytes]]):
    """Yield (venue, frame) taking each venue's frames in turn, as they arrive."""
    longest = max(len(f) for f in frames.values())
    for n in range(longest):
        for venue, venue_frames in frames.items():
            if n < len(venue_frames):
                yield venue, venue_frames[n]


def _insert(conn, sql: str, rows: list) -> None:
    cur = conn.cursor()
    cur.executemany(sql, rows)
    conn.commit()


def truncate() -> None:
    conn, mark = raw_connection()
    try:
        conn.execute("DELETE FROM liquidations_liquidation")
        conn.commit()
    finally:
        conn.close()


class Exchange:
    """The load generator in its own process: its sending costs no CPU of the subject."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self._expect("port"))

    def _expect(self, word: str) -> str:
        line = self.proc.stdout.readline().split()
        if not line or line[0] != word:
            raise RuntimeError(f"load generator said {line!r}, expected {word!r}")
        return line[1]

    async def command(self, text: str, answer: str) -> str:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return await asyncio.to_thread(self._expect, answer)

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


async def subject_run(
    ingest, exchange: Exchange, frames: dict[str, list[bytes]], listener
) -> float:
    status = ingest.status
    done_before = status.events_stored + status.duplicates_skipped
    rows_before = listener.rows
    expected_new = sum(len(set(f)) for f in frames.values())
    total = sum(map(len, frames.values()))
    start = time.perf_counter()
    await exchange.command("go", "sent")
    deadline = time.monotonic() + 120
    while (
        status.events_stored + status.duplicates_skipped - done_before < total
        or listener.rows - rows_before < expected_new
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"ingest stalled: received {status.events_received}, "
                f"stored {status.events_stored}, broadcast rows {listener.rows - rows_before}"
            )
        await asyncio.sleep(0.002)
    return time.perf_counter() - start


class Listener:
    """One member of liquidations.all, so every batch is really broadcast and counted."""

    def __init__(self, layer) -> None:
        self.layer = layer
        self.rows = 0
        self.batches = 0

    async def run(self, channel: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            self.rows += len(message["rows"])
            self.batches += 1


def configure(settings, *, port: int, venues: list[str]) -> None:
    """Point every venue at the load generator; enable the given ones."""
    root = f"127.0.0.1:{port}"
    settings.BINANCE_WS_BASE_URL = f"ws://{root}/market"
    settings.BINANCE_REST_BASE_URL = settings.BYBIT_REST_BASE_URL = f"http://{root}"
    settings.OKX_REST_BASE_URL = f"http://{root}"
    settings.BYBIT_WS_URL = f"ws://{root}/v5/public/linear"
    settings.OKX_WS_URL = f"ws://{root}/ws/v5/public"
    settings.LIQUIDATION_SYMBOLS = []
    settings.LIQUIDATION_VENUES = venues


async def until_streaming(ingest) -> None:
    """Wait until every venue streams and Bybit's topics and OKX's channel are acked."""

    def ready(venue) -> bool:
        adapter = venue.adapter
        if venue.status.state != "streaming":
            return False
        if venue.name == "bybit":
            return bool(adapter.wanted) and len(adapter.acked) == len(adapter.wanted)
        return venue.name != "okx" or adapter.subscribed

    deadline = time.monotonic() + 60
    while not all(ready(venue) for venue in ingest.venues.values()):
        if time.monotonic() > deadline:
            raise TimeoutError("the venues did not all start streaming")
        await asyncio.sleep(0.01)


def stored_by_venue() -> dict[str, int]:
    from django.db import connections
    from django.db.models import Count

    from liquidations.models import Liquidation

    try:
        rows = Liquidation.objects.values_list("venue").annotate(n=Count("id")).order_by()
        return dict(rows)
    finally:
        connections.close_all()


async def main(args) -> dict:
    from channels.layers import get_channel_layer
    from django.conf import settings
    from django.db import connection

    from bench.loadgen import bench_frames
    from liquidations.ingest.pipeline import Ingest

    venues = args.venues.split(",")
    exchange = Exchange()
    configure(settings, port=exchange.port, venues=venues)
    layer = get_channel_layer()
    listener = Listener(layer)
    channel = await layer.new_channel()
    await layer.group_add("liquidations.all", channel)
    listen_task = asyncio.create_task(listener.run(channel))
    ingest = Ingest(channel_layer=layer)
    await ingest.start()
    await until_streaming(ingest)
    start_ms = int(time.time() * 1000) - 3_600_000
    subject, baseline, per_venue = [], [], []
    for rep in range(args.reps + 1):
        seed = 100 + rep
        count = args.events if rep else 2000  # rep 0 warms up, not counted
        start_ms += 10 * count
        frames = {
            venue: bench_frames(count=count, start_ms=start_ms, seed=seed, venue=venue)
            for venue in venues
        }
        total = sum(map(len, frames.values()))
        await exchange.command(f"prep {count} {start_ms} {seed} {args.venues}", "ready")
        await asyncio.to_thread(truncate)
        base = total / await asyncio.to_thread(baseline_run, frames)
        await asyncio.to_thread(truncate)
        subj = total / await subject_run(ingest, exchange, frames, listener)
        counts = await asyncio.to_thread(stored_by_venue)
        expected = {venue: len(set(f)) for venue, f in frames.items()}
        if counts != expected:
            raise AssertionError(f"stored {counts}, expected exactly {expected}")
        if rep:
            baseline.append(base)
            subject.append(subj)
            per_venue.append({"sent": {v: len(f) for v, f in frames.items()}, "stored": counts})
    await ingest.stop()
    await ingest.aclose()
    listen_task.cancel()
    exchange.close()
    return {
        "database": connection.vendor,
        "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
        "venues": venues,
        "events_per_run": args.events * len(venues),
        "duplicates_per_run": args.events // 50 * len(venues),
        "reps": args.reps,
        "mean_batch_rows": listener.rows / max(1, listener.batches),
        "subject_events_per_s": subject,
        "baseline_events_per_s": baseline,
        "per_venue": per_venue,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--venues", default="binance", help="comma-separated venues, --events frames each"
    )
    args = parser.parse_args()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    result = asyncio.run(main(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
