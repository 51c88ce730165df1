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
from collections.abc import Iterable
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
)
from .binance_market import FakeMarket
from .feed import FeedMixin
from .observe import ObserveMixin
from .sending import SendingMixin
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


class FakeExchange(ObserveMixin, SendingMixin, FeedMixin):
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
