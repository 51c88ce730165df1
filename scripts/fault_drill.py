"""Fault drills in production mode: what each fault loses, how long recovery takes, and
how many log bytes it writes.

    .venv/bin/python scripts/fault_drill.py [--only redis,flood,postgres,kill]

Runs `serve_web` (one daphne) and `runworker liquidations` against the fake exchange, on a
database of its own (created and dropped: DRILL_PG_URL, default
postgres://postgres@127.0.0.1:5432/orderfox_faults_drill) and the Redis of DRILL_REDIS_URL
(default redis://127.0.0.1:6379/8, key prefix "faults-drill"). Outages go through a
loopback TCP proxy (liquidations/devtools/tcp_proxy.py); the real services are never
stopped. Prints one line per drill and a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path
from tempfile import mkdtemp
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import websockets  # noqa: E402

from liquidations.devtools.fake_exchange import FakeExchange  # noqa: E402
from liquidations.devtools.tcp_proxy import TcpProxy  # noqa: E402

PG_URL = os.environ.get("DRILL_PG_URL", "postgres://postgres@127.0.0.1:5432/orderfox_faults_drill")
REDIS_URL = os.environ.get("DRILL_REDIS_URL", "redis://127.0.0.1:6379/8")
WORK = Path(mkdtemp(prefix="fault-drill-"))


def _via(proxy: TcpProxy, url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(netloc=f"127.0.0.1:{proxy.port}"))


def _admin(sql: str) -> None:
    admin = urlunsplit(urlsplit(PG_URL)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)


def _query(sql: str) -> list[tuple]:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class App:
    """The worker and (optionally) one daphne, with their logs in files."""

    def __init__(self, exchange: FakeExchange, *, db_url: str, redis_url: str, name: str) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "DJANGO_SECRET_KEY": "drill-only-not-secret",
            "CHANNELS_REDIS_PREFIX": "faults-drill",
            "BINANCE_WS_BASE_URL": exchange.ws_base_url,
            "BINANCE_REST_BASE_URL": exchange.rest_base_url,
            "LIQUIDATION_SYMBOLS": "",
            "PYTHONUNBUFFERED": "1",
        }
        self.logs: list[Path] = []
        self.name = name
        self.worker: asyncio.subprocess.Process | None = None
        self.web: asyncio.subprocess.Process | None = None
        self.port = _free_port()

    async def _spawn(self, label: str, *args: str) -> asyncio.subprocess.Process:
        path = WORK / f"{self.name}-{label}-{len(self.logs)}.log"
        self.logs.append(path)
        with path.open("wb") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable, "manage.py", *args, cwd=ROOT, env=self.env,
                stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    async def start_worker(self) -> None:
        self.worker = await self._spawn("worker", "runworker", "liquidations")

    async def start_web(self) -> None:
        args = ("serve_web", "--processes", "1", "--port", str(self.port))
        self.web = await self._spawn("web", *args)
        for _ in range(300):
            try:
                await asyncio.to_thread(
                    urllib.request.urlopen, f"http://127.0.0.1:{self.port}/", None, 2
                )
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError("serve_web did not answer")

    def log_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.logs if path.exists())

    async def stop(self) -> None:
        for process in (self.worker, self.web):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()


class Feeder:
    """Publish synthetic liquidations at a rate and remember their trade times."""

    def __init__(self, exchange: FakeExchange, rate: float) -> None:
        self.exchange, self.rate = exchange, rate
        self.sent: list[int] = []
        self._task: asyncio.Task | None = None

    def start(self) -> Feeder:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        started = time.monotonic()
        while True:
            event = self.exchange.synthetic_event()
            await self.exchange.broadcast(event)
            self.sent.append(event["o"]["T"])
            await asyncio.sleep(max(0.0, started + len(self.sent) / self.rate - time.monotonic()))

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class Viewer:
    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.states: list[tuple[float, str]] = []

    async def read(self, port: int) -> None:
        url, origin = f"ws://127.0.0.1:{port}/ws/liquidations/", f"http://127.0.0.1:{port}"
        async with websockets.connect(url, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send('{"min_usd": "0", "side": "all"}')
            async for frame in ws:
                text = str(frame)
                self.ids.update(int(i) for i in re.findall(r'<tr id="liq-(\d+)"', text))
                for state in re.findall(r'id="live-feed"[^>]*data-state="(\w+)"', text):
                    self.states.append((time.monotonic(), state))


def _stored() -> int:
    return _query("SELECT count(*) FROM liquidations_liquidation")[0][0]


async def _until(predicate, timeout: float) -> float:
    started = time.monotonic()
    while not await asyncio.to_thread(predicate):
        if time.monotonic() - started > timeout:
            raise TimeoutError
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def drill_redis(exchange: FakeExchange, seconds: float = 20.0, rate: float = 100.0) -> dict:
    proxy = TcpProxy(*_host_port(REDIS_URL, 6379)).start()
    app = App(exchange, db_url=PG_URL, redis_url=_via(proxy, REDIS_URL), name="redis")
    await app.start_worker()
    await app.start_web()
    await exchange.wait_for_clients(1, timeout=60)
    viewer = Viewer()
    reading = asyncio.create_task(viewer.read(app.port))
    feeder = Feeder(exchange, rate).start()
    await asyncio.sleep(5)
    before_logs = app.log_bytes()
    before_rows = await asyncio.to_thread(_stored)
    proxy.stop()
    await asyncio.sleep(seconds)
    during = await asyncio.to_thread(_stored) - before_rows
    back = time.monotonic()
    proxy.start()
    await asyncio.sleep(10)
    await feeder.stop()
    await asyncio.sleep(3)
    live_again = [t - back for t, state in viewer.states if state == "live" and t > back]
    newest = {
        r[0]
        for r in _query(
            "SELECT id FROM liquidations_liquidation ORDER BY trade_time DESC, id DESC LIMIT 50"
        )
    }
    stored = await asyncio.to_thread(_stored)
    result = {
        "outage_s": seconds,
        "rows_stored_during_outage": during,
        "events_sent": len(feeder.sent),
        "events_stored": stored,
        "viewer_table_has_the_newest_50": newest <= viewer.ids,
        "viewer_told_interrupted": any(s == "interrupted" for _, s in viewer.states),
        "viewer_live_again_after_s": round(live_again[0], 2) if live_again else None,
        "log_bytes": app.log_bytes() - before_logs,
    }
    reading.cancel()
    await app.stop()
    proxy.stop()
    return result


async def drill_flood(exchange: FakeExchange, seconds: float = 30.0, rate: float = 250.0) -> dict:
    app = App(exchange, db_url=PG_URL, redis_url=REDIS_URL, name="flood")
    await app.start_worker()
    await exchange.wait_for_clients(1, timeout=60)
    await asyncio.sleep(3)
    before = app.log_bytes()
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        await exchange.broadcast(
            '{"e":"forceOrder","o":{"s":"BTCUSDT","o":"LIM\\u0000IT"' + "x" * (sent % 5)
        )
        sent += 1
        await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
    await asyncio.sleep(2)
    written = app.log_bytes() - before
    status = await _status(app)
    await app.stop()
    return {
        "seconds": seconds,
        "bad_frames_sent": sent,
        "malformed_counted": status,
        "log_bytes": written,
    }


async def _status(app: App) -> int | None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "liquidations", "status", cwd=ROOT, env=app.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await process.communicate()
    match = re.search(r"malformed dropped:\s+(\d+)", out.decode())
    return int(match.group(1)) if match else None


async def drill_postgres(exchange: FakeExchange, seconds: float = 30.0, rate: float = 50.0) -> dict:
    proxy = TcpProxy(*_host_port(PG_URL, 5432)).start()
    app = App(exchange, db_url=_via(proxy, PG_URL), redis_url=REDIS_URL, name="postgres")
    await app.start_worker()
    await exchange.wait_for_clients(1, timeout=60)
    base = await asyncio.to_thread(_stored)
    feeder = Feeder(exchange, rate).start()
    await asyncio.sleep(5)
    before_logs = app.log_bytes()
    proxy.stop()
    await asyncio.sleep(1)
    frozen = await asyncio.to_thread(_stored)
    await asyncio.sleep(seconds - 1)
    proxy.start()
    recovery = await _until(lambda: _stored() > frozen, 60)
    await asyncio.sleep(5)
    await feeder.stop()
    await _until(lambda: _stored() - base >= len(feeder.sent), 60)
    stored = await asyncio.to_thread(_stored) - base
    result = {
        "outage_s": seconds,
        "events_sent": len(feeder.sent),
        "events_stored": stored,
        "lost": len(feeder.sent) - stored,
        "storing_resumed_after_s": round(recovery, 2),
        "log_bytes": app.log_bytes() - before_logs,
    }
    await app.stop()
    proxy.stop()
    return result


async def drill_kill(exchange: FakeExchange, rate: float = 100.0) -> dict:
    app = App(exchange, db_url=PG_URL, redis_url=REDIS_URL, name="kill")
    await app.start_worker()
    await exchange.wait_for_clients(1, timeout=60)
    base_times = {
        r[0]
        for r in _query(
            "SELECT (extract(epoch from trade_time) * 1000)::bigint FROM liquidations_liquidation"
        )
    }
    feeder = Feeder(exchange, rate).start()
    await asyncio.sleep(5)
    assert app.worker is not None
    app.worker.kill()  # SIGKILL: no flush, no goodbye
    await app.worker.wait()
    killed_at = int(time.time() * 1000)
    await asyncio.sleep(3)
    await app.start_worker()
    await exchange.wait_for_clients(1, timeout=60)
    await asyncio.sleep(5)
    await feeder.stop()
    await asyncio.sleep(3)
    stored = {
        r[0]
        for r in _query(
            "SELECT (extract(epoch from trade_time) * 1000)::bigint FROM liquidations_liquidation"
        )
    } - base_times
    gaps = _query(
        "SELECT (extract(epoch from started_at) * 1000)::bigint,"
        " (extract(epoch from ended_at) * 1000)::bigint, reason"
        " FROM liquidations_connectiongap ORDER BY started_at DESC LIMIT 3"
    )
    missing = [t for t in feeder.sent if t not in stored]
    before_kill = [t for t in missing if t <= killed_at]
    in_gap = [t for t in missing if any(start - 1000 <= t <= end for start, end, _ in gaps)]
    await app.stop()
    return {
        "events_sent": len(feeder.sent),
        "missing": len(missing),
        "missing_sent_before_the_kill": len(before_kill),
        "in_flight_ms_at_kill": (killed_at - min(before_kill)) if before_kill else 0,
        "missing_inside_a_recorded_gap": len(in_gap),
        "gap": [g[2] for g in gaps[:1]],
    }


def _host_port(url: str, default: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default


async def main(only: list[str]) -> None:
    dbname = urlsplit(PG_URL).path.lstrip("/")
    assert dbname.startswith("orderfox_faults"), (
        "DRILL_PG_URL must name an orderfox_faults* database"
    )
    _admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{dbname}"')
    env = {**os.environ, "DATABASE_URL": PG_URL, "DJANGO_SECRET_KEY": "drill-only-not-secret"}
    migrate = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "migrate", "-v0", cwd=ROOT, env=env
    )
    assert await migrate.wait() == 0
    drills = {
        "redis": drill_redis,
        "flood": drill_flood,
        "postgres": drill_postgres,
        "kill": drill_kill,
    }
    results = {}
    try:
        for name in only or list(drills):
            async with FakeExchange(seed=1) as exchange:
                results[name] = await drills[name](exchange)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    print(json.dumps(results, indent=2))
    print(f"logs in {WORK}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated: redis,flood,postgres,kill")
    args = parser.parse_args()
    asyncio.run(main([name for name in args.only.split(",") if name]))
