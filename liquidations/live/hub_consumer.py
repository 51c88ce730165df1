"""The base of the browser sockets whose channel-layer traffic all comes through a hub."""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch

from .contracts import CLOSE_POLICY, CLOSE_TOO_BIG

logger = logging.getLogger(__name__)


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

    # What a browser may send: small text messages, at most rate_max_messages in
    # rate_window_seconds (a person changing settings sends a few a minute).
    socket_kind = "viewer"
    max_message_bytes = 256
    rate_window_seconds = 10.0
    rate_max_messages = 10
    message_times: list[float]

    async def admitted_text(self, text_data: str | None) -> str | None:
        """Return the message if it is small text within the rate; else refuse the socket."""
        if text_data is None:
            await self.refuse(CLOSE_POLICY, "binary frames are not accepted")
            return None
        limit = self.max_message_bytes
        if len(text_data) > limit or len(text_data.encode()) > limit:
            await self.refuse(CLOSE_TOO_BIG, f"messages are limited to {limit} bytes")
            return None
        now = time.monotonic()
        window = self.rate_window_seconds
        self.message_times = [t for t in self.message_times if now - t < window]
        if len(self.message_times) >= self.rate_max_messages:
            await self.refuse(CLOSE_POLICY, "too many messages")
            return None
        self.message_times.append(now)
        return text_data

    async def refuse(self, code: int, reason: str) -> None:
        logger.info("Closing a %s socket (%s): %s", self.socket_kind, code, reason)
        await self.close(code=code, reason=reason[:120])
