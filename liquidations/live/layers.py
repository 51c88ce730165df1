"""Channel layers tuned for fan-out: one batch message, many viewer sockets in one process.

Both stock layers copy a group message once per member: the in-memory layer deep-copies
it (and starts a task per member), the Redis pub/sub layer decodes its msgpack once per
member. A batch of rows with their HTML is tens of kB; with hundreds of viewers that was
most of the web process's CPU (make bench). These subclasses give every member its own
top-level dict sharing the nested values, so handlers must treat messages as read-only
(ours do: they filter and join the rows' HTML).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict

from channels.layers import InMemoryChannelLayer as StockInMemoryChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer as StockRedisPubSubChannelLayer
from channels_redis.serializers import MsgPackSerializer

logger = logging.getLogger(__name__)


class InMemoryChannelLayer(StockInMemoryChannelLayer):
    """The in-memory layer, with a group_send that shares one message among members."""

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        # A private method of the stock layer (checked by tests/test_layers.py).
        self._clean_expired()  # type: ignore[attr-defined]
        expires = time.time() + self.expiry
        full = []
        for channel in list(self.groups.get(group, {})):
            queue = self.channels.setdefault(
                channel, asyncio.Queue(maxsize=self.get_capacity(channel))
            )
            try:
                queue.put_nowait((expires, dict(message)))
            except asyncio.QueueFull:
                full.append(channel)
        if full:
            # The stock layer drops these silently; say so.
            logger.warning(
                "%d of %d members of %s are full (capacity %d); message not delivered to them",
                len(full),
                len(self.groups.get(group, {})),
                group,
                self.capacity,
            )


class SharedMsgPackSerializer(MsgPackSerializer):
    """msgpack that decodes a published message once, however many local members get it.

    The pub/sub layer puts the very same bytes object into each member's queue, so the
    last few decoded messages are remembered by identity.
    """

    CACHE_SIZE = 16

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._decoded: OrderedDict[int, tuple[bytes, dict]] = OrderedDict()

    def deserialize(self, message: bytes) -> dict:
        cached = self._decoded.get(id(message))
        if cached is not None and cached[0] is message:
            return dict(cached[1])
        value = super().deserialize(message)
        if isinstance(value, dict):
            # Keeping the bytes alive keeps their id from being reused meanwhile.
            self._decoded[id(message)] = (message, value)
            if len(self._decoded) > self.CACHE_SIZE:
                self._decoded.popitem(last=False)
            return dict(value)
        return value


class RedisPubSubChannelLayer(StockRedisPubSubChannelLayer):
    """channels-redis's pub/sub layer, decoding each message once per process.

    Named channels (the worker's "liquidations") get the layer's prefix too: the stock
    layer publishes them as is, and Redis pub/sub ignores the database number, so every
    app on one Redis server would share them (`liquidations status` answered by another
    deployment's worker). Groups and new_channel() names are prefixed already.
    """

    def __init__(self, *args, symmetric_encryption_keys=None, **kwargs) -> None:
        super().__init__(*args, symmetric_encryption_keys=symmetric_encryption_keys, **kwargs)
        # msgpack's as_bytes/from_bytes are set on the instance at run time.
        self._serializer = SharedMsgPackSerializer(  # type: ignore[abstract]
            symmetric_encryption_keys=symmetric_encryption_keys
        )
        self._prefix = kwargs.get("prefix", "asgi")

    def _named(self, channel: str) -> str:
        return channel if channel.startswith(self._prefix) else f"{self._prefix}{channel}"

    async def send(self, channel: str, message: dict) -> None:
        await self._get_layer().send(self._named(channel), message)

    async def receive(self, channel: str) -> dict:
        return await self._get_layer().receive(self._named(channel))

    async def group_send_many(self, messages: dict[str, dict]) -> None:
        """Publish one message to each group in a single round trip per Redis shard.

        A worker batch goes to the all-market group and to every symbol in it: up to
        ~440 groups on a crash day. One awaited PUBLISH each was ~80 ms for a
        3,000-row batch (make bench); a pipeline sends them together. Same names, same
        encoding and the same shard lock as the stock group_send, whose per-shard
        connection this uses.
        """
        layer = self._get_layer()
        by_shard = defaultdict(list)
        for group, message in messages.items():
            channel = layer._get_group_channel_name(group)
            by_shard[layer._get_shard(channel)].append((channel, self.serialize(message)))
        for shard, published in by_shard.items():
            async with shard._lock:
                shard._ensure_redis()
                async with shard._redis.pipeline(transaction=False) as pipe:
                    for channel, data in published:
                        pipe.publish(channel, data)
                    await pipe.execute()
