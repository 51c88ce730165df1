"""Market panels under load: 100 viewers across 20 symbols' pages, production mode.

The driver holds the fake exchange (its market autoplay: a depth event per symbol every
100 ms, a few trades, kline updates) and every viewer socket, so timestamps share one
clock. The app runs as `serve_web --processes 2` + `runworker liquidations` on PostgreSQL
and Redis pub/sub. Reported:

- upstream subscriptions per stream type, as the exchange sees them (target: one per
  symbol and type, i.e. 20 each, whatever the number of viewers);
- web and worker CPU (cores) while measuring;
- frames per second per viewer (targets: at most ~10 in all, book frames at most ~4);
- latency from the exchange's depth event (its `E`) to the viewer's book frame carrying
  it (`data-event-ms`): p50 / p99.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import sys
import tempfile
import time
from collections import Counter

import orjson
import uvloop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderfox.settings")

from bench import procs  # noqa: E402
from bench.wsclient import connect  # noqa: E402
from liquidations.devtools.fake_exchange import FakeExchange  # noqa: E402

EVENT_MS = re.compile(rb'id="order-book-levels"[^>]*data-event-ms="(\d+)"')
STREAM_TYPES = {"aggTrade": "@aggTrade", "depth": "@depth@100ms", "kline": "@kline_"}


class Viewer:
    """Counts one socket's frames and the latency of its book frames."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.frames = 0
        self.book_frames = 0
        self.last_event_ms = 0

    def on_message(self, message: bytes, now: float) -> None:
        if not self.stats.measuring:
            return
        self.frames += 1
        match = EVENT_MS.search(message)
        if match is None:
            return
        self.book_frames += 1
        event_ms = int(match.group(1))
        if event_ms and event_ms != self.last_event_ms:
            self.last_event_ms = event_ms
            self.stats.latencies.append(time.time() * 1000 - event_ms)


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.latencies: list[float] = []


def start_app(ps: procs.Processes, fx: FakeExchange, args) -> int:
    port = procs.free_port()
    url = procs.pg_create(f"{procs.DB_PREFIX}_market")
    procs.redis_flush()
    env = procs.app_env(
        database_url=url,
        redis=True,
        BINANCE_WS_BASE_URL=fx.ws_base_url,
        BINANCE_WS_PUBLIC_URL=fx.ws_public_url,
        BINANCE_REST_BASE_URL=fx.rest_base_url,
        LIQUIDATION_SYMBOLS="",
        ORDERFOX_DATA_DIR=tempfile.mkdtemp(prefix="orderfox-bench-market-"),
    )
    procs.manage("migrate", "--no-input", env=env)
    ps.start("worker", [procs.PYTHON, "manage.py", "runworker", "liquidations"], env=env)
    web = ps.start(
        "web",
        [
            procs.PYTHON,
            "manage.py",
            "serve_web",
            "--processes",
            str(args.processes),
            "--port",
            str(port),
        ],
        env=env,
    )
    procs.wait_port(port, proc=web)
    return port


async def open_viewers(port: int, symbols: list[str], count: int, stats: Stats) -> list:
    origin = f"http://127.0.0.1:{port}"
    sockets, viewers = [], []
    for n in range(count):
        symbol = symbols[n % len(symbols)]
        viewer = Viewer(stats)
        url = f"ws://127.0.0.1:{port}/ws/market/{symbol}/?timeframe=1m&depth=20"
        for _attempt in range(100):  # the worker fills the Symbol table at start
            try:
                sockets.append(await connect(url, on_message=viewer.on_message, origin=origin))
                break
            except (ConnectionError, OSError):
                await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"could not open {url}")
        viewers.append(viewer)
    return sockets, viewers


def upstream(fx: FakeExchange) -> dict:
    market = fx.market
    streams = market.active_streams()
    by_type = Counter(kind for s in streams for kind, marker in STREAM_TYPES.items() if marker in s)
    carried = {s: market.subscribers(s) for s in streams}
    return {
        "streams_by_type": dict(by_type),
        "max_connections_per_stream": max(carried.values(), default=0),
        "subscribes_by_type": {
            kind: sum(market.subscribes(s) for s in streams if marker in s)
            for kind, marker in STREAM_TYPES.items()
        },
        "connections": Counter(c.route for c in market.clients if c.routed and c.streams),
    }


async def main(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fx = FakeExchange(ping_interval=60.0, seed=1)
    await fx.start()
    symbols = [s.symbol for s in fx.symbols if s.status == "TRADING"][: args.symbols]
    stats = Stats()
    with procs.Processes() as ps:
        port = start_app(ps, fx, args)
        sockets, viewers = await open_viewers(port, symbols, args.viewers, stats)
        await asyncio.sleep(args.warmup)  # books synced, groups joined
        cpu = procs.CpuMeter(ps.pids())
        stats.measuring = True
        started = time.perf_counter()
        await asyncio.sleep(args.duration)
        stats.measuring = False
        elapsed = time.perf_counter() - started
        cpu_used = cpu.result()
        subscriptions = upstream(fx)
        for sock in sockets:
            sock.close()
        await asyncio.sleep(0.5)
    await fx.stop()
    procs.pg_drop(f"{procs.DB_PREFIX}_market")
    procs.redis_flush()
    frames = [v.frames / elapsed for v in viewers]
    books = [v.book_frames / elapsed for v in viewers]
    return {
        "viewers": args.viewers,
        "symbols": len(symbols),
        "daphne": args.processes,
        "duration_s": round(elapsed, 1),
        "upstream": subscriptions,
        "cpu": cpu_used,
        "frames_per_viewer_per_s": {
            "mean": round(sum(frames) / len(frames), 2),
            "max": round(max(frames), 2),
        },
        "book_frames_per_viewer_per_s": {
            "mean": round(sum(books) / len(books), 2),
            "max": round(max(books), 2),
        },
        "depth_event_to_book_frame_ms": procs.stats(stats.latencies),
        "depth_events_sent": fx.market.depth_events_sent,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    args = parser.parse_args()
    result = uvloop.run(main(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
