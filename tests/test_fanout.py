"""Fan-out to many viewers: the channel layers, the worker's batches, several daphne processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from liquidations.devtools.fake_exchange import FakeExchange
from liquidations.ingest.pipeline import Ingest
from liquidations.live.layers import InMemoryChannelLayer, SharedMsgPackSerializer
from liquidations.models import Liquidation
from tests.conftest import eventually
from tests.factories import force_order

ROOT = Path(__file__).resolve().parents[1]


async def test_in_memory_group_send_reaches_every_member_with_its_own_message(caplog):
    layer = InMemoryChannelLayer(capacity=1)
    members = [await layer.new_channel() for _ in range(3)]
    for member in members:
        await layer.group_add("liquidations.all", member)
    rows = [{"id": 1, "html": "<tr></tr>"}]
    await layer.group_send("liquidations.all", {"type": "liquidations.batch", "rows": rows})
    received = [await layer.receive(member) for member in members]
    assert all(message["rows"] == rows for message in received)
    received[0]["extra"] = "changed by one consumer"
    assert "extra" not in received[1]

    # A member that stopped reading is reported, not dropped in silence.
    await layer.group_send("liquidations.all", {"type": "liquidations.batch", "rows": []})
    with caplog.at_level(logging.WARNING, logger="liquidations.live.layers"):
        await layer.group_send("liquidations.all", {"type": "liquidations.batch", "rows": []})
    assert "3 of 3 members of liquidations.all are full" in caplog.text


def test_shared_serializer_decodes_one_published_message_once():
    serializer = SharedMsgPackSerializer()
    data = serializer.serialize({"type": "liquidations.batch", "rows": [{"id": 7}]})
    first, second = serializer.deserialize(data), serializer.deserialize(data)
    assert first == second == {"type": "liquidations.batch", "rows": [{"id": 7}]}
    assert first is not second and first["rows"] is second["rows"]
    # Equal bytes from another publish are a different message, decoded afresh.
    other = serializer.deserialize(bytes(bytearray(data)))
    assert other == first and other["rows"] is not first["rows"]


@pytest.mark.django_db(transaction=True)
async def test_events_arriving_during_a_write_go_out_as_the_next_batch(settings, monkeypatch):
    from channels.layers import get_channel_layer

    from liquidations.ingest import writer

    # The database takes its time with the first batch (held until released), as a busy
    # one would; what arrives meanwhile waits in the backlog for the next.
    release = threading.Event()
    real_store = writer.store_isolating

    def slow_first_store(batch, **kwargs):
        release.wait(10)
        return real_store(batch, **kwargs)

    monkeypatch.setattr(writer, "store_isolating", slow_first_store)
    layer = get_channel_layer()
    async with FakeExchange(seed=1) as exchange:
        settings.BINANCE_WS_BASE_URL = exchange.ws_base_url
        settings.BINANCE_REST_BASE_URL = exchange.rest_base_url
        settings.LIQUIDATION_VENUES = ["binance"]
        settings.LIQUIDATION_SYMBOLS = []
        member = await layer.new_channel()
        await layer.group_add("liquidations.all", member)
        ingest = Ingest(channel_layer=layer)
        await ingest.start()
        try:
            await exchange.wait_for_clients(1)
            await exchange.broadcast(force_order(symbol="BTCUSDT"))
            venue = ingest.venues["binance"]

            async def write_begun() -> bool:
                return venue.status.events_received == 1

            async def all_in() -> bool:
                return venue.status.events_received + len(venue.queue) == 6

            await eventually(write_begun, what="the first write begun")
            for _ in range(5):
                await exchange.broadcast(force_order(symbol="ETHUSDT"))
            # All five in: parsed for the next batch, or waiting in the backlog.
            await eventually(all_in, what="the five events in")
            await asyncio.sleep(0.1)  # nothing goes out while the first write is held
            assert venue.status.events_stored == 0
            release.set()
            # The first event went alone; the five that came during its write, together.
            first = await asyncio.wait_for(layer.receive(member), 10)
            assert len(first["rows"]) == 1
            second = await asyncio.wait_for(layer.receive(member), 10)
            assert len(second["rows"]) == 5
            assert await sync_to_async(Liquidation.objects.count)() == 6
        finally:
            release.set()
            await ingest.stop()
            await ingest.aclose()
            await layer.group_discard("liquidations.all", member)


def test_serve_web_runs_several_daphne_processes_on_one_port(tmp_path):
    env = {
        **os.environ,
        "ORDERFOX_DATA_DIR": str(tmp_path),
        "DJANGO_SECRET_KEY": "test-only-not-secret",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    launcher = subprocess.Popen(
        [sys.executable, "manage.py", "serve_web", "--processes", "2", "--port", "0"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        for line in launcher.stderr:
            if match := re.search(r"Serving on http://127\.0\.0\.1:(\d+)/ with 2 daphne", line):
                port = int(match.group(1))
                break
        assert port, "serve_web did not report its port"
        # Keep reading its log, so a full pipe never blocks the processes under test.
        drain = threading.Thread(target=launcher.stderr.read, daemon=True)
        drain.start()
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        assert len(children) == 2
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/css/app.css") as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("no daphne answered on the shared port")
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        launcher.stderr.close()


@pytest.mark.production
async def test_pubsub_named_channels_are_private_to_their_prefix():
    from django.conf import settings

    from liquidations.live.layers import RedisPubSubChannelLayer

    hosts = [settings.REDIS_URL]
    ours = RedisPubSubChannelLayer(hosts=hosts, prefix="orderfox-test-ours")
    theirs = RedisPubSubChannelLayer(hosts=hosts, prefix="orderfox-test-theirs")
    try:
        listening = asyncio.ensure_future(theirs.receive("liquidations"))
        mine = asyncio.ensure_future(ours.receive("liquidations"))
        await asyncio.sleep(0.2)  # both subscribed
        await ours.send("liquidations", {"type": "stream.status"})
        assert (await asyncio.wait_for(mine, 5))["type"] == "stream.status"
        # Another deployment on the same Redis (any database number) hears nothing.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(listening), 0.5)
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    finally:
        await ours.flush()
        await theirs.flush()
