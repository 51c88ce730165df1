"""Server-side alerts: the worker's alerts task against a loopback receiver (real sockets).

The ingest runs in this event loop fed by the fake exchange; rules are written as the
command and the admin write them; the receiver records and times every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connections

from liquidations.alert_models import AlertDelivery, AlertHit, AlertRule
from liquidations.ingest.pipeline import Ingest
from liquidations.models import Liquidation
from liquidations.services.alert_rules import alert_rule_create, alert_rule_save
from tests.factories import force_order

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "s3cret-for-tests"


def usd_order(usd: int, **kwargs) -> dict:
    """A forceOrder payload worth exactly usd (z × ap with ap = 100,000)."""
    return force_order(z=str(Decimal(usd) / 100_000), ap="100000", **kwargs)


async def webhook_rule(receiver, **fields) -> AlertRule:
    return await sync_to_async(alert_rule_create)(
        destination="webhook", webhook_url=receiver.url(), webhook_secret=SECRET, **fields
    )


async def started_ingest(fake_exchange) -> Ingest:
    accepted = fake_exchange.accepted_connections
    ingest = Ingest(channel_layer=get_channel_layer())
    await ingest.start()
    await fake_exchange.wait_for_connections(accepted + 1)
    await fake_exchange.wait_for_clients(1)
    return ingest


async def stopped(ingest: Ingest) -> None:
    await ingest.stop()
    await ingest.aclose()


@pytest.fixture
async def ingest(upstream_settings, alert_settings, fake_exchange):
    running = await started_ingest(fake_exchange)
    yield running
    await stopped(running)


async def send(fake_exchange, *payloads: dict) -> None:
    for payload in payloads:
        await fake_exchange.broadcast(payload)


async def stored(n: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while await sync_to_async(Liquidation.objects.count)() < n:
            await asyncio.sleep(0.02)


def delivered_ids(receiver) -> list[int]:
    """Liquidation ids in the accepted webhook requests, in arrival order (repeats kept)."""
    return [item["id"] for r in receiver.accepted() for item in r.json()["liquidations"]]


def has_ids(n: int):
    return lambda receiver: len(delivered_ids(receiver)) >= n


async def quiet(seconds: float = 1.0) -> None:
    """Let the alerts task run several rounds (with the test settings' 50 ms polls)."""
    await asyncio.sleep(seconds)


async def test_every_liquidation_of_at_least_the_minimum_once_signed_and_none_below(
    ingest, fake_exchange, receiver
):
    await webhook_rule(receiver, name="big ones", min_usd=Decimal(1_000_000))
    orders = [usd_order(1_000_000), usd_order(999_999), usd_order(2_500_000), usd_order(50_000)]
    await send(fake_exchange, *orders, usd_order(7_000_000, symbol="ETHUSDT", side="BUY"))
    await receiver.wait_until(has_ids(3), what="three big liquidations")
    await quiet()

    items = [item for r in receiver.accepted() for item in r.json()["liquidations"]]
    assert sorted(Decimal(item["usd"]) for item in items) == [1_000_000, 2_500_000, 7_000_000]
    assert len({item["id"] for item in items}) == 3
    eth = next(item for item in items if item["symbol"] == "ETHUSDT")
    assert eth == {
        "id": eth["id"],
        "venue": "binance",
        "symbol": "ETHUSDT",
        "side": "BUY",
        "quantity": "70",
        "price": "100000",
        "usd": "7000000",
        "time_ms": eth["time_ms"],
    }
    for request in receiver.requests:
        assert request.json()["rule"] == "big ones"
        expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-OrderFox-Signature"] == f"sha256={expected}"
        assert request.headers["Content-Type"] == "application/json"
    states = await sync_to_async(list)(AlertDelivery.objects.values_list("state", flat=True))
    assert states and set(states) == {"sent"}


async def exactly_once_across_restart_and_replay(fake_exchange, receiver) -> None:
    await webhook_rule(receiver, min_usd=Decimal(1_000_000))
    first = [usd_order(2_000_000), usd_order(3_000_000), usd_order(10_000)]
    ingest = await started_ingest(fake_exchange)
    try:
        await send(fake_exchange, *first)
        await receiver.wait_until(has_ids(2), what="the first two")
    finally:
        await stopped(ingest)
    # A new worker; the exchange sends the same events again (a replay), then a new one.
    ingest = await started_ingest(fake_exchange)
    try:
        await send(fake_exchange, *first, usd_order(4_000_000))
        await receiver.wait_until(has_ids(3), what="the new one")
        await quiet()
    finally:
        await stopped(ingest)
    ids = delivered_ids(receiver)
    assert len(ids) == len(set(ids)) == 3
    assert await sync_to_async(AlertHit.objects.count)() == 3
    # Give the sync thread's connection back (PostgreSQL's pool), so the test database can go.
    await sync_to_async(connections.close_all)()


async def test_exactly_once_across_a_worker_restart_and_a_replay(
    upstream_settings, alert_settings, fake_exchange, receiver
):
    await exactly_once_across_restart_and_replay(fake_exchange, receiver)


@pytest.mark.production
async def test_exactly_once_across_a_restart_and_a_replay_on_postgresql(
    upstream_settings, alert_settings, fake_exchange, receiver
):
    await exactly_once_across_restart_and_replay(fake_exchange, receiver)


async def test_a_stop_waits_for_a_send_in_flight_so_the_restart_does_not_repeat_it(
    upstream_settings, alert_settings, fake_exchange, receiver
):
    # The receiver has the message but answers 0.5 s later, after the worker was told to
    # stop: the stop waits for the answer and records it, so the next worker sends nothing.
    receiver.delay = 0.5
    await webhook_rule(receiver, min_usd=Decimal(1_000_000))
    ingest = await started_ingest(fake_exchange)
    try:
        await send(fake_exchange, usd_order(2_000_000))
        await receiver.wait_until(has_ids(1), what="the alert")
    finally:
        await stopped(ingest)
    assert await sync_to_async(lambda: AlertDelivery.objects.get().state)() == "sent"
    receiver.delay = 0.0
    ingest = await started_ingest(fake_exchange)
    try:
        await send(fake_exchange, usd_order(3_000_000))
        await receiver.wait_until(has_ids(2), what="the next alert")
        await quiet()
    finally:
        await stopped(ingest)
    ids = delivered_ids(receiver)
    assert len(ids) == len(set(ids)) == 2


async def test_a_due_delivery_is_sent_after_a_restart(
    upstream_settings, alert_settings, fake_exchange, receiver
):
    await receiver.down()
    await webhook_rule(receiver, min_usd=Decimal(1_000_000))
    ingest = await started_ingest(fake_exchange)
    try:
        await send(fake_exchange, usd_order(2_000_000))

        async def retrying() -> bool:
            return await sync_to_async(
                AlertDelivery.objects.filter(state="retrying", attempts__gte=2).exists
            )()

        async with asyncio.timeout(10):
            while not await retrying():
                await asyncio.sleep(0.05)
    finally:
        await stopped(ingest)
    reason = await sync_to_async(lambda: AlertDelivery.objects.get().reason)()
    assert "ClientConnectorError" in reason
    await receiver.up()
    ingest = await started_ingest(fake_exchange)
    try:
        await receiver.wait_until(has_ids(1), what="the due delivery")
        await quiet()
    finally:
        await stopped(ingest)
    assert len(delivered_ids(receiver)) == 1
    assert await sync_to_async(lambda: AlertDelivery.objects.get().state)() == "sent"


async def test_receiver_down_then_back_retries_deliver_nothing_lost_nothing_twice(
    ingest, fake_exchange, receiver, alert_settings
):
    alert_settings.ALERT_COALESCE_SECONDS = 0.2
    await webhook_rule(receiver, min_usd=Decimal(100_000))
    # Errors first: two 503s, then a 429 asking for a 1 s pause; then the socket is down.
    receiver.script = [(503, {}), (503, {}), (429, {"Retry-After": "1"})]
    await send(fake_exchange, usd_order(200_000))
    await receiver.wait_until(lambda r: len(r.requests) >= 4, what="retries")
    throttled, after = receiver.requests[2], receiver.requests[3]
    assert throttled.status == 429
    assert after.at - throttled.at >= 0.95  # Retry-After honoured
    await receiver.down()
    await send(fake_exchange, usd_order(300_000), usd_order(400_000))
    await stored(3)
    await quiet(1.0)
    await receiver.up()
    await send(fake_exchange, usd_order(500_000))
    await receiver.wait_until(has_ids(4), what="everything after the outage")
    await quiet()

    ids = delivered_ids(receiver)
    assert len(ids) == len(set(ids)) == 4
    # One message id per message, kept on its retries (receivers can drop repeats by it).
    first = receiver.requests[0].headers["X-OrderFox-Delivery"]
    assert {r.headers["X-OrderFox-Delivery"] for r in receiver.requests[:4]} == {first}
    states = await sync_to_async(list)(AlertDelivery.objects.values_list("state", "attempts"))
    assert {state for state, _ in states} == {"sent"}
    assert max(attempts for _, attempts in states) >= 4


async def test_a_rule_applies_from_its_creation_or_change_without_a_restart(
    ingest, fake_exchange, receiver
):
    await send(fake_exchange, usd_order(5_000_000))  # stored before any rule: history
    await stored(1)
    rule = await webhook_rule(receiver, min_usd=Decimal(1_000_000))
    await send(fake_exchange, usd_order(500_000), usd_order(2_000_000))
    await receiver.wait_until(has_ids(1), what="the 2M row")
    await stored(3)
    await quiet(0.3)
    # Lowered to $100k: the 500k row stored before the change stays untriggered.
    rule.min_usd = Decimal(100_000)
    await sync_to_async(alert_rule_save)(rule=rule)
    await send(fake_exchange, usd_order(600_000))
    await receiver.wait_until(has_ids(2), what="the 600k row")
    # Removed: nothing more.
    await sync_to_async(rule.delete)()
    await send(fake_exchange, usd_order(9_000_000))
    await stored(5)
    await quiet()
    usds = [Decimal(i["usd"]) for r in receiver.accepted() for i in r.json()["liquidations"]]
    assert usds == [2_000_000, 600_000]


async def test_a_cascade_sends_one_message_for_its_window(ingest, fake_exchange, receiver):
    await webhook_rule(
        receiver,
        name="btc longs cascade",
        symbols="BTCUSDT",
        side="SELL",
        cascade_seconds=60,
        cascade_usd=Decimal(5_000_000),
    )
    t = 1_766_900_000_000
    # $2M + $2M (+ a short and an ETH row that do not count), across rounds, then $1M.
    await send(fake_exchange, usd_order(2_000_000, T=t), usd_order(2_000_000, T=t + 1000))
    await send(fake_exchange, usd_order(3_000_000, T=t + 2000, side="BUY"))
    await send(fake_exchange, usd_order(3_000_000, T=t + 2500, symbol="ETHUSDT"))
    await stored(4)
    await quiet(0.5)
    assert receiver.requests == []
    await send(fake_exchange, usd_order(1_000_000, T=t + 30_000))
    await receiver.wait_until(lambda r: len(r.requests) >= 1, what="the cascade")
    await send(fake_exchange, usd_order(1_000_000, T=t + 31_000))  # a new window starts
    await quiet()
    assert len(receiver.requests) == 1
    body = receiver.requests[0].json()
    assert body["cascade"] == {"seconds": 60, "count": 3, "usd": "5000000"}
    assert [i["usd"] for i in body["liquidations"]] == ["2000000", "2000000", "1000000"]


async def test_bursts_coalesce_and_telegram_gets_one_message_a_second_per_chat(
    ingest, fake_exchange, receiver, alert_settings
):
    alert_settings.ALERT_COALESCE_SECONDS = 1.0
    token = "123456:AAF-telegram-token-xyz"
    for name in ("<b>big</b> & co", "second", "third"):
        await sync_to_async(alert_rule_create)(
            destination="telegram", name=name, telegram_token=token, telegram_chat_id="-1001"
        )
    burst = [usd_order(100_000 + n * 1000) for n in range(12)]
    await send(fake_exchange, *burst)
    await stored(12)

    def all_rows(r) -> bool:
        return sum(text_rows(req) for req in r.accepted()) >= 36

    await receiver.wait_until(all_rows, timeout=20, what="12 rows for each of 3 rules")
    await quiet(1.2)
    requests = receiver.requests
    assert all(r.path == f"/telegram/bot{token}/sendMessage" for r in requests)
    gaps = [b.at - a.at for a, b in zip(requests, requests[1:], strict=False)]
    assert min(gaps) >= 0.95, gaps  # one message per second to the chat
    per_rule: dict[str, int] = {}
    for request in requests:
        body = request.json()
        assert body["chat_id"] == "-1001" and body["parse_mode"] == "HTML"
        name = body["text"].split(": ", 1)[0].removeprefix("<b>OrderFox · ")
        per_rule[name] = per_rule.get(name, 0) + 1
    # A burst of 12 rows is at most two messages per rule (the first, then the rest summed).
    assert set(per_rule) == {"&lt;b&gt;big&lt;/b&gt; &amp; co", "second", "third"}
    assert max(per_rule.values()) <= 2
    summed = [r.json()["text"] for r in requests if "liquidations, $" in r.json()["text"]]
    assert summed, "a burst is summed in one message"
    assert "largest BTCUSDT $111.0k" in summed[0]


def text_rows(request) -> int:
    """How many liquidations a Telegram message accounts for."""
    head = request.json()["text"].split("\n", 1)[0]
    if "liquidations, $" in head:
        return int(head.split(": ", 1)[1].split(" ", 1)[0])
    return 1


async def test_discord_gets_at_most_five_messages_per_two_seconds_escaped(
    ingest, fake_exchange, receiver
):
    for n in range(8):
        await sync_to_async(alert_rule_create)(
            destination="discord",
            name=f"@everyone *rule* {n}",
            discord_webhook="https://discord.com/api/webhooks/987654321/tok_EN-123456789",
        )
    await send(fake_exchange, usd_order(150_000))
    await receiver.wait_until(lambda r: len(r.requests) >= 8, what="8 messages")
    times = [r.at for r in receiver.requests]
    assert all(b - a >= 1.95 for a, b in zip(times, times[5:], strict=False)), times
    body = receiver.requests[0].json()
    assert receiver.requests[0].path == "/discord/webhooks/987654321/tok_EN-123456789"
    assert body["allowed_mentions"] == {"parse": []}
    assert body["content"].startswith("**OrderFox · \\@everyone \\*rule\\* ")
