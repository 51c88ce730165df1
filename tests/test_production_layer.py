"""Production mode: PostgreSQL storage and the Redis channel layer, for real."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.db import connection

from liquidations.live.broadcast import broadcast as liquidation_broadcast
from liquidations.upstream.binance import parse_frame
from tests.factories import batch_messages as liquidation_messages_of
from tests.factories import force_order, frame
from tests.factories import store_events as liquidation_store_batch

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


def test_production_settings_use_postgresql_and_redis():
    assert connection.vendor == "postgresql"
    # channels-redis's pub/sub layer (liquidations.live.layers subclasses it), or its core layer.
    assert isinstance(get_channel_layer(), RedisPubSubChannelLayer | RedisChannelLayer)


async def test_batch_is_stored_once_and_broadcast_over_redis():
    layer = get_channel_layer()
    member = await layer.new_channel()
    await layer.group_add("liquidations.BTCUSDT", member)
    events = [parse_frame(frame(force_order(symbol="BTCUSDT"))) for _ in range(3)]

    def store():
        stored = liquidation_store_batch(events=events + events[:1])
        return stored, liquidation_messages_of(stored)

    stored, messages = await database_sync_to_async(store)()
    assert len(stored) == 3
    await liquidation_broadcast(channel_layer=layer, messages=messages)
    received = await layer.receive(member)
    assert received["type"] == "liquidations.batch"
    assert [row["id"] for row in received["rows"]] == [liq.pk for liq in stored]
    await layer.group_discard("liquidations.BTCUSDT", member)
    await layer.flush()


async def test_a_batch_for_many_groups_goes_out_in_one_pipeline_each_to_its_group():
    layer = get_channel_layer()
    if not hasattr(layer, "group_send_many"):
        pytest.skip("the core Redis layer sends group by group")
    groups = [f"liquidations.S{i}USDT" for i in range(200)]
    members = {group: await layer.new_channel() for group in groups}
    for group, member in members.items():
        await layer.group_add(group, member)
    messages = {group: {"type": "liquidations.batch", "rows": [{"g": group}]} for group in groups}
    await liquidation_broadcast(channel_layer=layer, messages=messages)
    for group, member in members.items():
        assert await layer.receive(member) == messages[group]
    # Nothing extra: each member got its own group's message only.
    for member in list(members.values())[:5]:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(member), 0.05)
    for group, member in members.items():
        await layer.group_discard(group, member)
    await layer.flush()
