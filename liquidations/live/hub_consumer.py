"""The base of the browser sockets whose channel-layer traffic all comes through a hub."""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch


class HubSocketConsumer(AsyncWebsocketConsumer):
    """A WebSocket consumer that opens no channel-layer channel of its own.

    The process's hub (fanout.py, market_hub.py) is in the groups for every viewer, so a
    channel per viewer would only cost a subscription (pub/sub) and a waiting task each.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        # The hub is the only channel-layer user; the attribute is the base class's.
        self.channel_layer = get_channel_layer(self.channel_layer_alias)  # type: ignore[assignment]
        self.base_send = send
        try:
            await await_many_dispatch([receive], self.dispatch)
        except StopConsumer:
            pass

    async def dispatch(self, message: dict) -> None:
        # Channels runs close_old_connections() in the one shared sync thread before
        # every handler. Ours reach the database only through database_sync_to_async,
        # which does that itself; the hop delayed a filter change behind other threads'
        # work (rows then went out under the old filter) and queued 1,000 connects up.
        await getattr(self, get_handler_name(message))(message)
