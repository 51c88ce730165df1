"""A loopback stand-in for Binance, Bybit and OKX, for tests and `make demo`.

One asyncio server on one port speaks every protocol the app uses (one module each):

- Binance (binance.py): market streams on the routed paths `/market/ws/<stream>` and
  `/market/stream?streams=a/b`, SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS acked as
  Binance does, server pings, and Binance's "more than 10 incoming messages/s"
  disconnect. Any other path (the retired unrouted `/ws/...` and `/stream`) is accepted
  and acks requests but never delivers an event, like the real exchange since 2026-04-23.
  HTTP `GET /fapi/v1/exchangeInfo` (plus `/fapi/v1/ping` and `/fapi/v1/time`).
- Bybit (bybit.py): `/v5/public/linear` with subscribe/ack and {"op":"ping"}; HTTP
  `GET /v5/market/instruments-info` a page at a time.
- OKX (okx.py): `/ws/v5/public` with subscribe/ack, "ping"/"pong" and the 30 s idle cut;
  HTTP `GET /api/v5/public/instruments?instType=SWAP`.

Events come from `broadcast()` (Binance), `send()` (any venue), `replay()` of a JSONL
capture, or `generate()` of synthetic liquidations over a project-owned list of symbols.
`drop_connections()` aborts connections; `take_down()` refuses a venue's connections.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import bybit, okx, rest
from .binance import (
    MALFORMED_FRAMES,
    MAX_INCOMING_PER_SECOND,
    ROUTED_PREFIX,
    answer,
    client_for,
    payload_of,
    symbol_of,
)
from .binance_market import FakeMarket
from .feed import FeedMixin
from .symbols import SYMBOLS, FakeSymbol
from .synthetic import SyntheticMarket

logger = logging.getLogger(__name__)

# Binance drops a client that has not answered a ping for 10 minutes.
PONG_TIMEOUT_SECONDS = 600.0
VENUE_MALFORMED = {
    "binance": MALFORMED_FRAMES,
    "bybit": bybit.MALFORMED_FRAMES,
    "okx": okx.MALFORMED_FRAMES,
}
REST_VENUES = (("/api/v5/", "okx"), ("/v5/", "bybit"), ("/fapi/", "binance"), ("/api/", "binance"))


def venue_of_path(path: str) -> str:
    if path.startswith(okx.PATH):
        return "okx"
    if path.startswith(bybit.PATH):
        return "bybit"
    return "binance"


class FakeExchange(FeedMixin):
    """Binance-, Bybit- and OKX-compatible futures exchanges on loopback (streams + REST)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float = 180.0,
        pong_timeout: float = PONG_TIMEOUT_SECONDS,
        max_connection_age: float | None = None,
        symbols: Iterable[FakeSymbol] = SYMBOLS,
        seed: int | None = None,
        okx_idle_timeout: float = okx.IDLE_TIMEOUT_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_connection_age = max_connection_age
        self.okx_idle_timeout = okx_idle_timeout
        self.symbols: list[FakeSymbol] = list(symbols)
        # Set to an HTTP status (e.g. 503) to make the REST API fail, or to a
        # callable-free JSON-able object to serve instead of the real listing.
        self.rest_status: int = 200
        self.exchange_info_override: Any = None
        self.bybit_page_limit = bybit.MAX_PAGE_LIMIT
        self.rest_requests = 0
        self.rest_requests_by_path: Counter[str] = Counter()
        self.events_sent = 0
        self.events_by_venue: Counter[str] = Counter()
        self.malformed_sent = 0
        self.accepted_connections = 0
        self.accepted_by_venue: Counter[str] = Counter()
        # Venues whose connections (and REST listing) are refused, as if they were down.
        self.down: set[str] = set()
        self.synthetic = SyntheticMarket(self.symbols, seed=seed)
        self._clients: set[Any] = set()
        self._server: Server | None = None
        self._changed = asyncio.Condition()
        # Klines, depth and aggTrade for the symbol page (binance_market.py).
        self.market = FakeMarket(symbols=self.symbols, seed=seed)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            ping_timeout=self.pong_timeout,
            close_timeout=2,
            max_size=2**16,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.market.start()
        logger.info("Fake exchange listening on %s and %s", self.ws_base_url, self.rest_base_url)

    async def stop(self) -> None:
        if self._server is None:
            return
        await self.market.stop()
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FakeExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def ws_base_url(self) -> str:
        return f"ws://{self._url_host}:{self.port}{ROUTED_PREFIX}"

    @property
    def ws_public_url(self) -> str:
        """The `/public` route (depth streams), beside ws_base_url's `/market`."""
        return f"ws://{self._url_host}:{self.port}/public"

    @property
    def bybit_ws_url(self) -> str:
        return f"ws://{self._url_host}:{self.port}{bybit.PATH}"

    @property
    def okx_ws_url(self) -> str:
        return f"ws://{self._url_host}:{self.port}{okx.PATH}"

    @property
    def rest_base_url(self) -> str:
        return f"http://{self._url_host}:{self.port}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def clients(self, venue: str | None = None) -> list[Any]:
        return [c for c in self._clients if venue is None or c.venue == venue]

    @property
    def connections(self) -> int:
        """Currently connected WebSocket clients (on any path)."""
        return len(self._clients)

    @property
    def subscriptions(self) -> list[list[str]]:
        """Each connected Binance client's streams (routed clients only)."""
        return [list(c.streams) for c in self.clients("binance") if c.routed]

    @property
    def bybit_topics(self) -> list[list[str]]:
        """Each connected Bybit client's subscribed topics."""
        return [list(c.topics) for c in self.clients("bybit")]

    @property
    def pong_latencies(self) -> list[float]:
        """Each client's last ping round trip (0 until it answered a server ping)."""
        return [c.ws.latency for c in self._clients]

    @property
    def write_buffer_sizes(self) -> list[int]:
        """Bytes each client's socket has not taken yet (sending waits past 32 KiB)."""
        return [c.ws.transport.get_write_buffer_size() for c in self._clients]

    def stall_connections(self) -> None:
        """Stop reading every client's socket, like a hung server: pings go unanswered."""
        for client in self._clients:
            client.ws.transport.pause_reading()

    async def wait_for_clients(
        self, n: int = 1, timeout: float = 10.0, *, venue: str | None = None
    ) -> None:
        """Wait until at least n clients (of the venue) are connected."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.clients(venue)) >= n)

    async def wait_for_connections(
        self, n: int, timeout: float = 10.0, *, venue: str | None = None
    ) -> None:
        """Wait until n connections have been accepted since start (counting reconnects)."""

        def accepted() -> int:
            return self.accepted_connections if venue is None else self.accepted_by_venue[venue]

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: accepted() >= n)

    async def wait_for_subscribed(self, venue: str, timeout: float = 10.0) -> None:
        """Wait until a Bybit client has every trading topic, or an OKX client its channel."""

        def ready(client: Any) -> bool:
            if venue == "okx":
                return client.subscribed
            return len(client.topics) >= sum(s.status == "TRADING" for s in self.symbols)

        async with asyncio.timeout(timeout):
            while not any(ready(c) for c in self.clients(venue)):
                await asyncio.sleep(0.01)

    # -- sending ---------------------------------------------------------------------

    async def broadcast(self, frame: str | bytes | dict) -> int:
        """Send one Binance frame to every client subscribed to it; return how many got it.

        A dict is a forceOrder payload: raw-stream clients get it as is, combined-stream
        clients get it wrapped in {"stream", "data"}. A str/bytes frame that decodes to
        a payload (or a combined frame) is routed the same way; anything else (e.g. a
        malformed frame) goes as is to every subscribed routed client.

        Like a TCP peer, this waits while a client's socket does not take more (its
        reader is slow or holding back): the server keeps no growing buffer per client.
        """
        binance = self.clients("binance")
        payload = frame if isinstance(frame, dict) else payload_of(frame)
        if payload is None:
            # Sent as is in a text frame: bytes may even be invalid UTF-8, like a broken feed.
            text = frame if isinstance(frame, str) else bytes(frame)
            targets = [(c, text) for c in binance if c.routed and c.streams]
        else:
            symbol = symbol_of(payload)
            raw = orjson.dumps(payload).decode()
            targets = []
            for client in binance:
                stream = client.stream_for(symbol)
                if stream is None and symbol is None and client.routed and client.streams:
                    stream = client.streams[0]
                if stream is None:
                    continue
                if client.combined:
                    targets.append((client, f'{{"stream":"{stream}","data":{raw}}}'))
                else:
                    targets.append((client, raw))
        return await self._send_each(targets)

    async def send(self, venue: str, frame: str | bytes | dict) -> int:
        """Send one frame of a venue to its clients that asked for it; return how many got it.

        Binance: as broadcast(). Bybit: a message goes to the clients subscribed to its
        topic; OKX: to the clients subscribed to liquidation-orders. A frame that is not
        a routable message (malformed) goes to every subscribed client of the venue.
        """
        if venue == "binance":
            return await self.broadcast(frame)
        message = frame if isinstance(frame, dict) else _json_dict(frame)
        if isinstance(frame, dict):
            text: str | bytes = orjson.dumps(frame).decode()
        else:
            text = frame if isinstance(frame, str) else bytes(frame)
        if venue == "bybit":
            topic = bybit.topic_of(message) if message is not None else None
            targets = [
                (c, text)
                for c in self.clients("bybit")
                if (topic in c.topics if topic else c.topics)
            ]
        else:
            targets = [(c, text) for c in self.clients("okx") if c.subscribed]
        return await self._send_each(targets)

    async def _send_each(self, targets: Sequence[tuple[Any, str | bytes]]) -> int:
        reached = 0
        for client, text in targets:
            try:
                await client.ws.send(text, text=True)
            except ConnectionClosed:
                continue
            reached += 1
        return reached

    async def drop_connections(self, venue: str | None = None) -> None:
        """Abort every client's TCP connection: no close frame, like a network failure."""
        clients = self.clients(venue)
        for client in clients:
            client.ws.transport.abort()
        async with asyncio.timeout(5):
            async with self._changed:
                await self._changed.wait_for(lambda: not (self._clients & set(clients)))

    async def take_down(self, venue: str) -> None:
        """Refuse the venue's new connections and REST listing; drop its open ones."""
        self.down.add(venue)
        await self.drop_connections(venue)

    def bring_up(self, venue: str) -> None:
        self.down.discard(venue)

    # -- connections -----------------------------------------------------------------

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path = parts.path
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if venue_of_path(path) in self.down:
                return rest.json_response(http.HTTPStatus.SERVICE_UNAVAILABLE, {"msg": "down"})
            return None
        market = self.market.rest(path, parts.query)
        if market is not None:
            self.rest_requests += 1
            return market
        for prefix, venue in REST_VENUES:
            if path.startswith(prefix):
                return self._rest(path, dict(parse_qsl(parts.query)), venue=venue)
        return rest.json_response(http.HTTPStatus.NOT_FOUND, {"code": -1, "msg": "Not found."})

    def _rest(self, path: str, params: dict[str, str], *, venue: str) -> Response:
        self.rest_requests += 1
        self.rest_requests_by_path[path] += 1
        status = http.HTTPStatus.SERVICE_UNAVAILABLE if venue in self.down else None
        if self.rest_status != 200:
            status = http.HTTPStatus(self.rest_status)
        if status is not None:
            return rest.json_response(status, {"code": -1001, "msg": status.phrase})
        return rest.answer(
            path,
            params,
            symbols=self.symbols,
            exchange_info_override=self.exchange_info_override,
            bybit_page_limit=self.bybit_page_limit,
        )

    def exchange_info(self) -> dict[str, Any]:
        return rest.exchange_info(self.symbols)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        venue = venue_of_path(parts.path)
        if venue == "okx":
            client: Any = okx.OkxClient(ws)
        elif venue == "bybit":
            client = bybit.BybitClient(ws)
        else:
            client = client_for(ws, parts.path, parts.query)
        async with self._changed:
            self._clients.add(client)
            self.accepted_connections += 1
            self.market.opened(client)
            self.accepted_by_venue[venue] += 1
            self._changed.notify_all()
        logger.info("Fake exchange: client connected to %s", ws.request.path)
        try:
            async with asyncio.timeout(self.max_connection_age):
                await self._serve_requests(ws, client)
        except TimeoutError:
            # Binance ends every connection at 24 h; here at max_connection_age.
            await ws.close(1000, "connection lifetime reached")
        except ConnectionClosed:
            pass
        finally:
            async with self._changed:
                self.market.closed(client)
                self._clients.discard(client)
                self._changed.notify_all()
            logger.info("Fake exchange: client on %s gone", ws.request.path)

    async def _serve_requests(self, ws: ServerConnection, client: Any) -> None:
        if client.venue == "okx":
            await self._serve_okx(ws, client)
            return
        listed = {bybit.instrument_name(s) for s in self.symbols if s.status == "TRADING"}
        window_start = time.monotonic()
        in_window = 0
        async for message in ws:
            if client.venue == "bybit":
                await ws.send(orjson.dumps(bybit.answer(client, message, listed=listed)).decode())
                continue
            now = time.monotonic()
            if now - window_start >= 1.0:
                window_start, in_window = now, 0
            in_window += 1
            if in_window > MAX_INCOMING_PER_SECOND:
                await ws.close(1008, "Too many requests")
                return
            self.market.request_seen(client, message)
            reply = answer(client, message)
            if reply is not None:
                await ws.send(orjson.dumps(reply).decode())

    async def _serve_okx(self, ws: ServerConnection, client: okx.OkxClient) -> None:
        """Answer an OKX client; close it when it sends nothing for okx_idle_timeout."""
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), self.okx_idle_timeout)
            except TimeoutError:
                logger.info(
                    "Fake exchange: OKX client silent for %g s, closed", self.okx_idle_timeout
                )
                await ws.close(4004, "No data received in 30s")
                return
            await ws.send(okx.answer(client, message))


def _json_dict(frame: str | bytes) -> dict | None:
    try:
        decoded = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None
