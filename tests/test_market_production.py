"""Production mode: market streams shared by two web processes through Redis.

Each web process has its own market hub on its own channel-layer connection; here two
hubs on two Redis pub/sub layer instances stand for two daphne processes, with the real
worker on a third. The exchange must see one subscription per stream whatever the number
of processes, and an UNSUBSCRIBE only once neither has a viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers

from liquidations.ingest.worker import worker_create
from liquidations.live.market_frames import MarketSettings
from liquidations.live.market_hub import MarketHub
from liquidations.models import Symbol

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

GRACE = 3.0  # longer than the worker's 1 s housekeeping
STREAMS = ("btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@kline_5m")


class Viewer:
    """One viewer socket as the hub sees it (the frames it would write to the browser)."""

    symbol = "BTCUSDT"
    market_settings = MarketSettings(timeframe="5m", rounding=Decimal("0.1"), depth=20)
    price_places = 2
    quantity_places = 3

    def __init__(self) -> None:
        self.frames: list[str] = []

    async def send_frame(self, frame: str) -> None:
        self.frames.append(frame)


async def eventually(predicate, *, timeout: float = 15.0, what: str = "condition") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture
async def processes(upstream_settings, fake_exchange):
    """The worker and two 'web processes', each on a Redis layer instance of its own."""
    upstream_settings.MARKET_UNSUBSCRIBE_GRACE_SECONDS = GRACE
    layers = [channel_layers.make_backend("default") for _ in range(3)]
    running = worker_create(channel_layer=layers[0])
    task = asyncio.create_task(running.arun())

    async def listed() -> bool:
        return await sync_to_async(Symbol.objects.filter(symbol="BTCUSDT").exists)()

    async with asyncio.timeout(15):
        while not await listed():
            await asyncio.sleep(0.05)
    yield [MarketHub(channel_layer=layer) for layer in layers[1:]]
    await running.shutdown()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for layer in layers:
        await layer.flush()


async def test_two_web_processes_share_one_subscription_per_stream(processes, fake_exchange):
    market = fake_exchange.market
    first_hub, second_hub = processes
    first, second = Viewer(), Viewer()
    await first_hub.join(first)
    await second_hub.join(second)
    await eventually(
        lambda: all(market.subscribers(s) == 1 for s in STREAMS), what="streams subscribed"
    )
    # Both processes' viewers get the book, rendered in each process.
    await eventually(
        lambda: all(any('data-state="synced"' in f for f in v.frames) for v in (first, second)),
        what="a synced book in both processes",
    )
    await first_hub.leave(first)
    await asyncio.sleep(GRACE + 1.5)
    assert [market.unsubscribes(s) for s in STREAMS] == [0, 0, 0]

    await second_hub.leave(second)
    await asyncio.sleep(GRACE / 2)
    # Back within the grace period, in the other process: no new SUBSCRIBE.
    third_hub = MarketHub(channel_layer=first_hub.channel_layer)
    back = Viewer()
    await third_hub.join(back)
    await asyncio.sleep(GRACE + 1.5)
    assert [market.subscribes(s) for s in STREAMS] == [1, 1, 1]
    assert [market.unsubscribes(s) for s in STREAMS] == [0, 0, 0]
    await third_hub.leave(back)
    await eventually(
        lambda: all(market.unsubscribes(s) == 1 for s in STREAMS),
        timeout=GRACE + 5,
        what="UNSUBSCRIBE once no process has a viewer",
    )
    assert [market.subscribes(s) for s in STREAMS] == [1, 1, 1]
