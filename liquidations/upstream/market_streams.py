"""Combined-stream connections of one route, with live SUBSCRIBE/UNSUBSCRIBE.

A StreamPool holds the streams wanted on one route (`/market` or `/public`) and spreads
them over connections of at most 200 streams each. A connection exists only while it has
streams: it opens on `<base>/stream?streams=<wanted>` (so a reconnect resubscribes
everything by itself), takes later changes as SUBSCRIBE/UNSUBSCRIBE requests, and closes
once its last stream is unsubscribed. Requests are queued and sent at most
REQUESTS_PER_SECOND a second per connection, well under Binance's 10 incoming messages a
second (pongs count too), each carrying every change queued meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .binance_market import MAX_STREAMS_PER_CONNECTION, combined_url
from .client import UpstreamClient

logger = logging.getLogger(__name__)

REQUESTS_PER_SECOND = 4
# Streams per SUBSCRIBE request (Binance takes a list; keep requests small).
MAX_PARAMS = 50

FrameHandler = Callable[[bytes], None]
StateHandler = Callable[[str, bool, frozenset[str]], Awaitable[None]]
ClientFactory = Callable[..., UpstreamClient]


class StreamConnection:
    """One combined-stream WebSocket of a route and the streams it should carry."""

    _ids = itertools.count(1)

    def __init__(
        self,
        *,
        route: str,
        base_url: str,
        on_frame: FrameHandler,
        on_state: StateHandler,
        client_options: dict[str, Any],
    ) -> None:
        self.route = route
        self.base_url = base_url
        self.on_frame = on_frame
        self.on_state = on_state
        self.client_options = client_options
        self.wanted: set[str] = set()
        # Streams the open socket carries (from its URL, or requested on it).
        self.subscribed: set[str] = set()
        self.connected = False
        self.requests_sent = 0
        self._url_streams: frozenset[str] = frozenset()
        self._client: UpstreamClient | None = None
        self._tasks: list[asyncio.Task] = []
        self._wake = asyncio.Event()
        self._next_request_at = 0.0

    @property
    def running(self) -> bool:
        return self._client is not None

    def add(self, stream: str) -> None:
        self.wanted.add(stream)
        if self._client is None:
            self._start()
        self._wake.set()

    def remove(self, stream: str) -> None:
        self.wanted.discard(stream)
        self._wake.set()

    def _start(self) -> None:
        self._url_streams = frozenset(self.wanted)
        self._client = UpstreamClient(
            url=combined_url(base_url=self.base_url, streams=sorted(self._url_streams)),
            on_message=self._on_message,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            **self.client_options,
        )
        name = f"market-{self.route}-{next(self._ids)}"
        self._tasks = [
            asyncio.create_task(self._client.run(), name=name),
            asyncio.create_task(self._request_loop(), name=f"{name}-requests"),
        ]

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for task in tasks:
            if task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _on_message(self, raw: bytes) -> None:
        if raw[:1] == b"{" and b'"stream"' not in raw[:20]:
            self._on_reply(raw)
            return
        self.on_frame(raw)

    def _on_reply(self, raw: bytes) -> None:
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            reply = None
        if not isinstance(reply, dict) or "error" in reply:
            logger.warning("Binance %s refused a request: %.200r", self.route, raw)

    async def _on_connected(self) -> None:
        self.connected = True
        self.subscribed = set(self._url_streams)
        self._wake.set()
        await self.on_state(self.route, True, frozenset(self.subscribed))

    async def _on_disconnected(self, reason: str) -> None:
        lost = frozenset(self.subscribed)
        self.connected = False
        self.subscribed = set()
        # The next connection opens with every stream wanted by then.
        self._url_streams = frozenset(self.wanted)
        if self._client is not None and self.wanted:
            self._client.url = combined_url(
                base_url=self.base_url, streams=sorted(self._url_streams)
            )
        await self.on_state(self.route, False, lost)

    async def _request_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.connected:
                adds = sorted(self.wanted - self.subscribed)[:MAX_PARAMS]
                removes = sorted(self.subscribed - self.wanted)[:MAX_PARAMS]
                if not adds and not removes:
                    break
                await asyncio.sleep(max(0.0, self._next_request_at - loop.time()))
                self._next_request_at = loop.time() + 1 / REQUESTS_PER_SECOND
                method, params = ("SUBSCRIBE", adds) if adds else ("UNSUBSCRIBE", removes)
                if not await self._request(method, params):
                    break
            if not self.wanted and not self.subscribed:
                # Nothing left to carry: close the socket (this task ends with it).
                await self.close()
                return

    async def _request(self, method: str, params: list[str]) -> bool:
        assert self._client is not None
        self.requests_sent += 1
        text = orjson.dumps({"method": method, "params": params, "id": self.requests_sent})
        if not await self._client.send([text.decode()]):
            return False
        logger.info("Binance %s: %s %s", self.route, method, " ".join(params))
        if method == "SUBSCRIBE":
            self.subscribed.update(params)
        else:
            self.subscribed.difference_update(params)
        return True


class StreamPool:
    """Every stream wanted on one route, over as many connections as 200 a piece need."""

    def __init__(
        self,
        *,
        route: str,
        base_url: str,
        on_frame: FrameHandler,
        on_state: StateHandler,
        client_options: dict[str, Any] | None = None,
        max_streams: int = MAX_STREAMS_PER_CONNECTION,
    ) -> None:
        self.route = route
        self.base_url = base_url
        self.on_frame = on_frame
        self.on_state = on_state
        self.client_options = client_options or {}
        self.max_streams = max_streams
        self.connections: list[StreamConnection] = []
        self._by_stream: dict[str, StreamConnection] = {}

    @property
    def streams(self) -> set[str]:
        return set(self._by_stream)

    def add(self, stream: str) -> None:
        if stream in self._by_stream:
            return
        self.connections = [c for c in self.connections if c.running or c.wanted]
        connection = next((c for c in self.connections if len(c.wanted) < self.max_streams), None)
        if connection is None:
            connection = StreamConnection(
                route=self.route,
                base_url=self.base_url,
                on_frame=self.on_frame,
                on_state=self.on_state,
                client_options=self.client_options,
            )
            self.connections.append(connection)
        connection.add(stream)
        self._by_stream[stream] = connection

    def remove(self, stream: str) -> None:
        connection = self._by_stream.pop(stream, None)
        if connection is not None:
            connection.remove(stream)

    async def close(self) -> None:
        for connection in self.connections:
            await connection.close()
        self.connections = []
        self._by_stream = {}
