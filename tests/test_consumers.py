from __future__ import annotations

import re

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from liquidations.ingest.pipeline import Ingest
from liquidations.ingest.status import IngestStatus, VenueStatus
from liquidations.live import consumers, contracts
from liquidations.live.broadcast import broadcast as liquidation_broadcast
from liquidations.live.broadcast import worker_status_broadcast
from liquidations.upstream.binance import parse_frame
from orderfox.asgi import application
from tests.factories import batch_messages as liquidation_messages_of
from tests.factories import force_order, frame
from tests.factories import store_events as liquidation_store_batch

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
HOST = (b"host", b"127.0.0.1:8000")  # the origin check compares the two
ROW = re.compile(r'<tr id="liq-(\d+)"[^>]*data-symbol="([^"]*)" data-side="(\w+)"')


def _store(*payloads: dict):
    stored = liquidation_store_batch(events=[parse_frame(frame(p)) for p in payloads])
    return stored, liquidation_messages_of(stored)


store = database_sync_to_async(_store)


async def broadcast(*payloads: dict):
    """Store the liquidations and broadcast them as the worker does; return the rows."""
    stored, messages = await store(*payloads)
    await liquidation_broadcast(channel_layer=get_channel_layer(), messages=messages)
    return stored


def rows(frame_text: str) -> list[tuple[int, str, str]]:
    return [(int(i), symbol, side) for i, symbol, side in ROW.findall(frame_text)]


async def connect(path: str = "/ws/liquidations/", origin=ORIGIN) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=[origin, HOST])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def test_rows_from_a_broadcast_arrive_as_one_oob_frame_newest_first():
    communicator = await connect()
    try:
        stored = await broadcast(
            force_order(symbol="BTCUSDT", T=1_766_845_000_001),
            force_order(symbol="ETHUSDT", side="BUY", T=1_766_845_000_002),
        )
        text = await communicator.receive_from()
        assert text.startswith('<tbody id="liquidation-rows" hx-swap-oob="afterbegin">')
        assert text.endswith("</tbody>")
        btc, eth = stored
        assert rows(text) == [(eth.pk, "ETHUSDT", "BUY"), (btc.pk, "BTCUSDT", "SELL")]
    finally:
        await communicator.disconnect()


async def test_symbol_socket_gets_only_its_symbol():
    communicator = await connect("/ws/liquidations/ETHUSDT/")
    try:
        await broadcast(force_order(symbol="BTCUSDT"))
        eth = (await broadcast(force_order(symbol="ETHUSDT")))[0]
        assert rows(await communicator.receive_from()) == [(eth.pk, "ETHUSDT", "SELL")]
    finally:
        await communicator.disconnect()


async def test_filter_from_the_url_applies_to_each_batch():
    communicator = await connect("/ws/liquidations/?min_usd=100000&side=long")
    try:
        # Too small, wrong side, then one that passes: only that one arrives.
        await broadcast(force_order(side="SELL", z="1", ap="99999"))
        await broadcast(force_order(side="BUY", z="10", ap="100000"))
        big_long, small_long = await broadcast(
            force_order(side="SELL", z="10", ap="100000", T=1_766_845_000_010),
            force_order(side="SELL", z="0.1", ap="100000", T=1_766_845_000_011),
        )
        assert rows(await communicator.receive_from()) == [(big_long.pk, "BTCUSDT", "SELL")]
    finally:
        await communicator.disconnect()


async def test_filter_update_changes_the_open_socket_without_reconnecting():
    communicator = await connect()
    try:
        await communicator.send_to(text_data='{"min_usd": "1000", "side": "short"}')
        await broadcast(force_order(side="SELL", z="1", ap="5000"))
        await broadcast(force_order(side="BUY", z="1", ap="500"))
        short = (await broadcast(force_order(side="BUY", z="1", ap="5000")))[0]
        assert rows(await communicator.receive_from()) == [(short.pk, "BTCUSDT", "BUY")]
        await communicator.send_to(text_data='{"min_usd": 0, "side": "all"}')
        long = (await broadcast(force_order(side="SELL", z="1", ap="1")))[0]
        assert rows(await communicator.receive_from()) == [(long.pk, "BTCUSDT", "SELL")]
    finally:
        await communicator.disconnect()


async def test_since_brings_the_table_up_to_date_with_the_filter():
    stored, _ = await store(
        force_order(symbol="BTCUSDT", side="SELL", T=1_766_845_000_001),
        force_order(symbol="BTCUSDT", side="BUY", T=1_766_845_000_002),
        force_order(symbol="BTCUSDT", side="SELL", T=1_766_845_000_003),
        force_order(symbol="ETHUSDT", side="SELL", T=1_766_845_000_004),
    )
    shown, _missed_short, missed_long, other_symbol = stored
    communicator = await connect("/ws/liquidations/BTCUSDT/")
    try:
        await communicator.send_to(
            text_data=orjson.dumps({"min_usd": "0", "side": "long", "since": shown.pk}).decode()
        )
        text = await communicator.receive_from()
        assert rows(text) == [(missed_long.pk, "BTCUSDT", "SELL")]
        assert 'id="worker-status"' in text and 'hx-swap-oob="true"' in text
        assert str(other_symbol.pk) not in re.findall(r'liq-(\d+)"', text)
    finally:
        await communicator.disconnect()


async def test_catch_up_is_capped_at_fifty_rows():
    await store(*(force_order(T=1_766_845_000_000 + i) for i in range(60)))
    communicator = await connect()
    try:
        await communicator.send_to(text_data='{"min_usd": "0", "side": "all", "since": 0}')
        assert len(rows(await communicator.receive_from())) == 50
    finally:
        await communicator.disconnect()


async def test_worker_status_is_pushed_on_change_not_every_second():
    communicator = await connect()
    layer = get_channel_layer()
    try:
        now = timezone.now()
        binance = VenueStatus(venue="binance", state="streaming", last_event_at=now)
        bybit = VenueStatus(venue="bybit", state="streaming", last_event_at=now)
        streaming = IngestStatus.of(binance, bybit)
        await worker_status_broadcast(channel_layer=layer, status=streaming)
        text = await communicator.receive_from()
        assert text.startswith('<span id="worker-status"')
        assert 'hx-swap-oob="true"' in text and 'data-state="streaming"' in text
        assert 'data-venue="bybit" data-state="streaming"' in text
        # Same state a second later: not forwarded; a change is, a venue's too.
        await worker_status_broadcast(channel_layer=layer, status=streaming)
        bybit.state = "reconnecting"
        await worker_status_broadcast(channel_layer=layer, status=streaming)
        text = await communicator.receive_from()
        assert 'data-state="streaming"' in text
        assert 'data-venue="bybit" data-state="reconnecting"' in text
        binance.state = "reconnecting"
        await worker_status_broadcast(channel_layer=layer, status=streaming)
        assert 'data-state="reconnecting"' in await communicator.receive_from()
    finally:
        await communicator.disconnect()


async def test_idle_socket_gets_a_heartbeat_with_the_stored_worker_state(monkeypatch):
    monkeypatch.setattr(consumers, "HEARTBEAT_SECONDS", 0.2)
    communicator = await connect()
    try:
        text = await communicator.receive_from(timeout=5)
        assert 'id="worker-status"' in text and 'data-state="stopped"' in text
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"text_data": "not json"}, contracts.CLOSE_POLICY),
        ({"text_data": "[1, 2]"}, contracts.CLOSE_POLICY),
        ({"text_data": '{"min_usd": "0"}'}, contracts.CLOSE_POLICY),
        ({"text_data": '{"min_usd": "0", "side": "all", "extra": 1}'}, contracts.CLOSE_POLICY),
        ({"text_data": '{"min_usd": true, "side": "all"}'}, contracts.CLOSE_POLICY),
        ({"text_data": '{"min_usd": "-5", "side": "all"}'}, contracts.CLOSE_POLICY),
        ({"text_data": '{"min_usd": "1e400", "side": "all"}'}, contracts.CLOSE_POLICY),
        ({"text_data": '{"min_usd": "0", "side": "sideways"}'}, contracts.CLOSE_POLICY),
        ({"text_data": '{"min_usd": "0", "side": "all", "since": -1}'}, contracts.CLOSE_POLICY),
        ({"text_data": '{"min_usd": "0", "side": "all", "since": "5"}'}, contracts.CLOSE_POLICY),
        (
            {"text_data": '{"min_usd": "0", "side": "all", "since": 99999999999999999999}'},
            contracts.CLOSE_POLICY,
        ),
        ({"bytes_data": b'{"min_usd": "0", "side": "all"}'}, contracts.CLOSE_POLICY),
        ({"text_data": '{"min_usd": "0", "side": "all"}' + " " * 1000}, contracts.CLOSE_TOO_BIG),
    ],
)
async def test_bad_client_messages_close_the_socket(message, code):
    communicator = await connect()
    try:
        await communicator.send_to(**message)
        closed = await communicator.receive_output()
        assert closed["type"] == "websocket.close"
        assert closed["code"] == code
    finally:
        await communicator.disconnect()


async def test_a_flood_of_filter_updates_closes_the_socket():
    communicator = await connect()
    try:
        for _ in range(consumers.RATE_MAX_MESSAGES):
            await communicator.send_to(text_data='{"min_usd": "0", "side": "all"}')
        # All accepted so far: a batch still arrives.
        stored = await broadcast(force_order())
        assert rows(await communicator.receive_from())[0][0] == stored[0].pk
        await communicator.send_to(text_data='{"min_usd": "0", "side": "all"}')
        closed = await communicator.receive_output()
        assert closed == {
            "type": "websocket.close",
            "code": contracts.CLOSE_POLICY,
            "reason": "too many messages",
        }
    finally:
        await communicator.disconnect()


async def test_foreign_origin_is_refused():
    communicator = WebsocketCommunicator(
        application, "/ws/liquidations/", headers=[(b"origin", b"https://evil.example"), HOST]
    )
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


async def test_feed_sockets_carry_no_session_or_user(monkeypatch):
    """The feed is public: no session wrapper on every frame, no user lookup per connect."""
    scopes = []
    connect = consumers.LiquidationFeedConsumer.connect

    async def spy(self):
        scopes.append(self.scope)
        await connect(self)

    monkeypatch.setattr(consumers.LiquidationFeedConsumer, "connect", spy)
    communicator = WebsocketCommunicator(
        application,
        "/ws/liquidations/",
        headers=[ORIGIN, HOST, (b"cookie", b"sessionid=abc")],
    )
    assert (await communicator.connect())[0]
    await communicator.disconnect()
    assert "session" not in scopes[0] and "user" not in scopes[0]


@pytest.mark.parametrize("path", ["/ws/liquidations/BTC%20USDT/", "/ws/liquidations/BTCUSDT%0A/"])
async def test_invalid_symbol_path_is_refused(path):
    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN, HOST])
    connected, _ = await communicator.connect()
    # Accepted, then closed: a refused handshake would reach the page as a retried 1006.
    assert connected
    closed = await communicator.receive_output()
    assert closed["type"] == "websocket.close"
    assert closed["code"] == contracts.CLOSE_NOT_FOUND
    await communicator.disconnect()


@pytest.mark.production
async def test_rows_status_and_catch_up_through_redis_and_postgresql():
    layer = get_channel_layer()
    assert type(layer).__module__ == "liquidations.live.layers"
    assert type(layer).__name__ == "RedisPubSubChannelLayer"
    communicator = await connect("/ws/liquidations/?side=short")
    try:
        await broadcast(force_order(side="SELL"))
        short = (await broadcast(force_order(side="BUY")))[0]
        assert rows(await communicator.receive_from()) == [(short.pk, "BTCUSDT", "BUY")]
        status = IngestStatus.of(
            VenueStatus(venue="binance", state="streaming", last_event_at=timezone.now())
        )
        await worker_status_broadcast(channel_layer=layer, status=status)
        assert 'data-state="streaming"' in await communicator.receive_from()
        await communicator.send_to(text_data='{"min_usd": "0", "side": "long", "since": 0}')
        assert [side for _, _, side in rows(await communicator.receive_from())] == ["SELL"]
    finally:
        await communicator.disconnect()


async def receive_until(communicator, needle: str, *, frames: int = 50) -> str:
    """Return the first frame containing needle (frames bounds a failing test)."""
    for _ in range(frames):
        text = await communicator.receive_from(timeout=10)
        if needle in text:
            return text
    raise AssertionError(f"no frame with {needle!r} in {frames} frames")


async def test_exchange_to_browser_socket_through_the_real_worker(upstream_settings, fake_exchange):
    """Fake exchange → worker (store, render once, broadcast, heartbeat) → viewer frames."""
    communicator = await connect("/ws/liquidations/?side=short")
    ingest = Ingest(channel_layer=get_channel_layer())
    try:
        await ingest.start()
        await fake_exchange.wait_for_clients(1, timeout=10)
        await receive_until(communicator, 'data-state="streaming"')
        await fake_exchange.broadcast(force_order(symbol="SOLUSDT", side="SELL"))
        await fake_exchange.broadcast(force_order(symbol="SOLUSDT", side="BUY", z="3"))
        text = await receive_until(communicator, "liquidation-rows")
        assert [(symbol, side) for _, symbol, side in rows(text)] == [("SOLUSDT", "BUY")]
        await ingest.stop()
        await receive_until(communicator, 'data-state="stopped"')
    finally:
        await ingest.stop()
        await ingest.aclose()
        await communicator.disconnect()
