"""Browser WebSocket consumers: one per viewer socket.

The server sends text frames of hx-swap-oob fragments (rows, worker status). The browser
may send one kind of message, a filter update, as a small JSON object:

    {"min_usd": "10000", "side": "all" | "long" | "short",
     "venue": "all" | "binance" | "bybit" | "okx" (optional), "since": <row id> | null}

"since" asks for the rows stored after that id (matching the filter, newest 50): the page
sends it on every (re)connect and after a filter change, so the table has no hole.
Anything else closes the socket: 4009 when too large, 4008 otherwise (contracts.py).

Rows, worker status and stats reach the socket through the process's fan-out hub
(fanout.py), which joins the channel-layer groups once for every viewer in the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import cast
from urllib.parse import parse_qsl

import orjson
from asgiref.typing import WebSocketSendEvent
from channels.db import database_sync_to_async
from django.template.loader import render_to_string

from ..selectors.filters import FeedFilter, InvalidFilter, parse_min_usd, parse_side, parse_venue
from ..selectors.status import worker_status
from ..upstream.events import is_symbol
from .catchup import catch_up_html
from .contracts import (
    CLOSE_NOT_FOUND,
    CLOSE_POLICY,
    GROUP_ALL,
    WORKER_STATUS_GROUP,
    stats_group,
    symbol_group,
)
from .fanout import FanoutHub, fanout_hub
from .fanout_cycle import StatusKey
from .frames import rows_oob
from .hub_consumer import HubSocketConsumer
from .wire import DirectSocket, direct_socket, text_frame

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256
MESSAGE_KEYS = frozenset({"min_usd", "side", "venue", "since"})
MAX_ROW_ID = 2**63 - 1
# A person changing filters sends a few messages a minute; more than this is a script.
RATE_WINDOW_SECONDS = 10.0
RATE_MAX_MESSAGES = 10
# Something is sent at least this often, so proxies keep an idle socket open and the
# page can tell a dead connection from a quiet market.
HEARTBEAT_SECONDS = 30.0


class BadMessage(ValueError):
    """A client message the consumer refuses; the message says why."""


def feed_filter_from_message(text: str) -> tuple[FeedFilter, int | None]:
    """Return the filter and the catch-up cursor of a client message, or raise BadMessage."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadMessage("not JSON") from exc
    if not isinstance(data, dict):
        raise BadMessage("not a JSON object")
    unknown = set(data) - MESSAGE_KEYS
    if unknown or not {"min_usd", "side"} <= set(data):
        raise BadMessage("expected the keys min_usd, side and optionally venue and since")
    try:
        feed_filter = FeedFilter(
            min_usd=parse_min_usd(data["min_usd"]),
            side=parse_side(data["side"]),
            venue=parse_venue(data.get("venue", "")),
        )
    except InvalidFilter as exc:
        raise BadMessage(str(exc)) from exc
    since = data.get("since")
    if since is not None and (
        isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= MAX_ROW_ID
    ):
        raise BadMessage("since must be a row id or null")
    return feed_filter, since


def _worker_status_html() -> str:
    return render_to_string(
        "liquidations/_worker_status.html", {"status": worker_status(), "oob": True}
    )


class LiquidationFeedConsumer(HubSocketConsumer):
    """One viewer socket: its filter, its catch-up, and the frames the hub hands it."""

    socket_kind = "viewer"
    max_message_bytes = MAX_MESSAGE_BYTES
    rate_window_seconds = RATE_WINDOW_SECONDS
    rate_max_messages = RATE_MAX_MESSAGES

    symbol: str | None = None
    feed_filter = FeedFilter()
    hub: FanoutHub | None = None
    # The socket under daphne, for the hub's frames (wire.py); None: the ASGI send.
    direct: DirectSocket | None = None

    async def connect(self) -> None:
        self.message_times: list[float] = []
        self.last_sent = time.monotonic()
        self.status_forwarded: StatusKey | None = None
        self.heartbeat: asyncio.Task | None = None
        # Frames from the hub wait here until the socket is accepted.
        self.held: list[str] | None = []
        symbol = str(self.scope["url_route"]["kwargs"].get("symbol", ""))
        if symbol and not is_symbol(symbol):
            # Accepted first: a close before the accept is an HTTP 403 to the browser,
            # which sees 1006 and retries; this code tells the page to stop.
            await self.accept()
            await self.refuse(CLOSE_NOT_FOUND, "no such feed")
            return
        self.symbol = symbol or None
        # The page's filter rides on the URL; a malformed one falls back to the default,
        # and the page sends its filter again once connected anyway.
        query = dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")[:256]))
        self.feed_filter = FeedFilter.from_query(query)
        feed_group = symbol_group(symbol) if symbol else GROUP_ALL
        # Joined before the accept, so nothing broadcast after connecting is missed.
        self.hub = fanout_hub(self.channel_layer)
        await self.hub.join(self, (feed_group, WORKER_STATUS_GROUP, stats_group(symbol or None)))
        await self.accept()
        self.direct = direct_socket(self.base_send)
        held, self.held = self.held, None
        for frame in held:
            await self.send_frame(frame)
        self.heartbeat = asyncio.create_task(self._heartbeat_loop())

    async def disconnect(self, code: int) -> None:
        heartbeat = getattr(self, "heartbeat", None)
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if self.hub is not None:
            hub, self.hub = self.hub, None
            await hub.leave(self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        text_data = await self.admitted_text(text_data)
        if text_data is None:
            return
        try:
            feed_filter, since = feed_filter_from_message(text_data)
        except BadMessage as exc:
            await self.refuse(CLOSE_POLICY, str(exc))
            return
        self.feed_filter = feed_filter
        if since is not None:
            rows_html = await database_sync_to_async(catch_up_html)(
                symbol=self.symbol, feed_filter=feed_filter, since=since
            )
            status_html = await database_sync_to_async(_worker_status_html)()
            frame = status_html
            if rows_html:
                frame = rows_oob(rows_html) + status_html
            await self.send_frame(frame)

    async def send_frame(self, frame: str, wire: bytes | None = None) -> None:
        """Send one text frame; wire is text_frame(frame) when the caller has it.

        The hub calls this for every viewer with the frame encoded once, so it stays lean.
        """
        if self.held is not None:
            self.held.append(frame)
            return
        self.last_sent = time.monotonic()
        if self.direct is not None and self.direct.write(wire or text_frame(frame)):
            return
        # Text only: ASGI servers want exactly one of "text" or "bytes" in the event.
        await self.base_send(cast(WebSocketSendEvent, {"type": "websocket.send", "text": frame}))

    async def _heartbeat_loop(self) -> None:
        # With no worker pushing (stopped, or in another process that died) the status
        # comes from the database, which also says how stale it is.
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS - (time.monotonic() - self.last_sent))
            if time.monotonic() - self.last_sent >= HEARTBEAT_SECONDS - 0.5:
                try:
                    html = await database_sync_to_async(_worker_status_html)()
                except Exception:
                    logger.exception("Reading the worker status for a heartbeat failed")
                    html = ""
                # An empty frame still proves the connection alive to the page.
                await self.send_frame(html or " ")
