"""PostgreSQL away: pages answer 503, the worker keeps everything and resumes promptly.

Outages go through a loopback TCP proxy in front of the real server (stopped and started
by the test); the real services are never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection

from liquidations.models import Liquidation
from tests.conftest import REPO, LiveApp, database_url

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web_behind_proxy(tcp_proxy, tmp_path):
    """`serve_web` (one daphne) in production mode, its database through a proxy."""
    proxy = tcp_proxy(database_url(connection.settings_dict), 5432)
    app = LiveApp(
        data_dir=tmp_path,
        ws_base_url="ws://127.0.0.1:9/market",  # serve_web runs no worker
        rest_base_url="http://127.0.0.1:9",
        server_args=[str(REPO / "manage.py"), "serve_web", "--processes", "1", "--port", "{port}"],
    )
    app.env.update(
        DATABASE_URL=database_url(connection.settings_dict, port=proxy.port),
        REDIS_URL=os.environ["REDIS_URL"],
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        CHANNELS_REDIS_PREFIX=settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
    )
    app.start()
    try:
        yield app, proxy
    finally:
        app.stop()


def _get(url: str) -> tuple[int, dict, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_pages_answer_503_while_the_database_is_away(web_behind_proxy):
    app, proxy = web_behind_proxy
    assert _get(app.url + "history/")[0] == 200
    proxy.stop()
    status, headers, text = _get(app.url + "history/")
    assert status == 503
    assert headers["Retry-After"]
    assert "The record is unavailable" in text and "live feed may still be running" in text
    status, _, text = _get(app.url + "api/v1/liquidation-orders")
    assert status == 503
    assert "database cannot be reached" in json.loads(text)["detail"]
    assert _get(app.url)[0] == 503
    proxy.start()
    back = time.monotonic()
    while _get(app.url + "history/")[0] != 200:
        assert time.monotonic() - back < 10, "pages did not come back"
        time.sleep(0.2)
    assert "Traceback" not in app.log(), app.log()


async def _count() -> int:
    return await database_sync_to_async(Liquidation.objects.count)()


async def _wait_for(predicate, timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def test_the_worker_loses_nothing_and_resumes_within_seconds(
    fake_exchange, tcp_proxy, tmp_path
):
    proxy = tcp_proxy(database_url(connection.settings_dict), 5432)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict, port=proxy.port),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "CHANNELS_REDIS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "BINANCE_WS_BASE_URL": fake_exchange.ws_base_url,
        "BINANCE_REST_BASE_URL": fake_exchange.rest_base_url,
        "LIQUIDATION_SYMBOLS": "",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "runworker", "liquidations",
            cwd=REPO, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        await fake_exchange.wait_for_clients(1, timeout=60)
        feeding = asyncio.create_task(fake_exchange.generate(rate=50, count=1000))
        await _wait_for(lambda: _has_rows(1), 30, "the first rows")
        proxy.stop()
        before = await _count()
        await asyncio.sleep(8)  # the worker keeps receiving; nothing can be stored
        assert await _count() == before
        back = time.monotonic()
        proxy.start()
        await _wait_for(lambda: _has_rows(before + 1), 30, "storing to resume")
        recovery = time.monotonic() - back
        sent = await feeding
        await _wait_for(lambda: _has_rows(sent), 30, "every event stored")
        assert await _count() == sent  # nothing lost
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 60) == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    log = log_path.read_text()
    delays = [float(d) for d in re.findall(r"retry \d+ in ([\d.]+) s", log)]
    assert delays and max(delays) <= 2.0, log[-3000:]
    # The target is 3 s; the margin is for a loaded 2-core machine.
    assert recovery < 5.0, f"storing resumed {recovery:.1f} s after the database returned"


def _has_rows(n: int):
    async def check() -> bool:
        return await _count() >= n

    return check()


def _via(proxy, url: str) -> str:
    """The same service URL, through the proxy's port."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


class Viewer:
    """A browser's socket, reduced to what its table would hold: every row id it got."""

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.states: list[str] = []

    async def read(self, url: str, origin: str) -> None:
        async with websockets.connect(url, origin=origin) as ws:  # type: ignore[arg-type]
            async for frame in ws:
                self.ids.update(int(i) for i in re.findall(r'<tr id="liq-(\d+)"', str(frame)))
                self.states += re.findall(r'id="live-feed"[^>]*data-state="(\w+)"', str(frame))


async def test_a_redis_outage_leaves_no_hole_in_the_live_table(fake_exchange, tcp_proxy, tmp_path):
    redis = tcp_proxy(os.environ["REDIS_URL"], 6379)
    common = {
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": _via(redis, os.environ["REDIS_URL"]),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "CHANNELS_REDIS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
    }
    web = LiveApp(
        data_dir=tmp_path,
        ws_base_url=fake_exchange.ws_base_url,
        rest_base_url=fake_exchange.rest_base_url,
        server_args=[str(REPO / "manage.py"), "serve_web", "--processes", "1", "--port", "{port}"],
    )
    web.env.update(common)
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "runworker", "liquidations",
            cwd=REPO, env={**web.env}, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    viewer = Viewer()
    reading = None
    try:
        await asyncio.to_thread(web.start)
        await fake_exchange.wait_for_clients(1, timeout=60)
        origin = f"http://127.0.0.1:{web.port}"
        reading = asyncio.create_task(
            viewer.read(f"ws://127.0.0.1:{web.port}/ws/liquidations/", origin)
        )
        await asyncio.sleep(2)  # the viewer's socket is in
        feeding = asyncio.create_task(fake_exchange.generate(rate=5, count=90))
        await _wait_for(lambda: _truthy(len(viewer.ids) >= 5), 30, "the first live rows")
        redis.stop()
        await asyncio.sleep(6)  # ~30 rows are stored meanwhile, none can be broadcast
        assert "interrupted" in viewer.states
        redis.start()
        sent = await feeding
        await _wait_for(lambda: _has_rows(sent), 30, "every event stored")
        stored = set(
            await database_sync_to_async(list)(Liquidation.objects.values_list("id", flat=True))
        )
        await _wait_for(lambda: _truthy(viewer.ids >= stored), 20, "the viewer to have every row")
        assert viewer.ids == stored  # no hole, nothing extra
        assert viewer.states[-1] == "live"
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 60) == 0
    finally:
        if reading is not None:
            reading.cancel()
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await asyncio.to_thread(web.stop)
    # Quiet: a few lines per fault, not a traceback per batch and per second.
    logs = worker_log.read_bytes() + web.log_path.read_bytes()
    assert len(logs) < 30_000, logs.decode(errors="replace")[-5000:]


async def _truthy(value: bool) -> bool:
    return value
