"""Production mode: `runworker liquidations` as its own process on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from liquidations.models import Liquidation, Symbol, WorkerState
from tests.conftest import run_command

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[1]


def _database_url() -> str:
    """The URL of the database this test process uses (pytest-django's test database)."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


@pytest.fixture
async def worker_process(fake_exchange, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "CHANNELS_REDIS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "BINANCE_WS_BASE_URL": fake_exchange.ws_base_url,
        "BINANCE_REST_BASE_URL": fake_exchange.rest_base_url,
        "LIQUIDATION_SYMBOLS": "",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "manage.py",
            "runworker",
            "liquidations",
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    process.log_path = log_path  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_worker_process_stores_broadcasts_and_flushes_on_sigterm(
    worker_process, fake_exchange
):
    layer = get_channel_layer()
    member = await layer.new_channel()
    await layer.group_add("liquidations.all", member)
    try:
        await fake_exchange.wait_for_clients(1, timeout=60)
        sent = await fake_exchange.generate(rate=5000, count=30, malformed_every=10)

        rows = []
        while len(rows) < sent:
            message = await asyncio.wait_for(layer.receive(member), 30)
            assert message["type"] == "liquidations.batch"
            rows.extend(message["rows"])
        assert len({row["id"] for row in rows}) == sent
        assert await database_sync_to_async(Liquidation.objects.count)() == sent
        assert set(
            await database_sync_to_async(list)(Liquidation.objects.values_list("pk", flat=True))
        ) == {row["id"] for row in rows}

        out = io.StringIO()
        await run_command("liquidations", "status", "--timeout", "20", stdout=out)
        assert "state:              streaming" in out.getvalue()
        assert f"events stored:      {sent}" in out.getvalue()
        assert "malformed dropped:  3" in out.getvalue()
        assert await database_sync_to_async(Symbol.objects.count)() == len(fake_exchange.symbols)

        # A burst, then SIGTERM at once: whatever the worker received is stored.
        await fake_exchange.generate(rate=100_000, count=200)
        worker_process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker_process.wait(), 60) == 0
    finally:
        await layer.group_discard("liquidations.all", member)
        await layer.flush()

    log = worker_process.log_path.read_text()
    final = re.search(r"Ingest stopped: (\d+) received, (\d+) stored, (\d+) duplicates", log)
    assert final, log[-3000:]
    received, stored, duplicates = map(int, final.groups())
    assert received == stored + duplicates
    assert await database_sync_to_async(Liquidation.objects.count)() == stored
    state = await database_sync_to_async(WorkerState.objects.get)()
    assert state.state == "stopped"
    assert state.events_stored == stored
    assert "Traceback" not in log


def test_redis_reads_outlast_the_blocking_receive():
    """redis-py's default 5 s read timeout equals channels-redis's BZPOPMIN timeout, which
    ended an idle worker after ~5 s; the layer must read longer than it blocks."""
    from channels_redis.core import RedisChannelLayer

    (host,) = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    assert host["socket_timeout"] > RedisChannelLayer.brpop_timeout
