"""A loopback stand-in for Binance USD-M futures, for tests and `make demo`.

One asyncio server on one port speaks both protocols the app uses:

- WebSocket market streams on the routed paths `/market/ws/<stream>` (raw payloads) and
  `/market/stream?streams=a/b` (payloads wrapped as {"stream", "data"}), with
  SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS requests acked as Binance does, server
  pings, and Binance's "more than 10 incoming messages/s" disconnect. Any other path
  (including the retired unrouted `/ws/...` and `/stream`) is accepted and acks requests
  but never delivers an event, exactly like the real exchange since 2026-04-23.
- HTTP `GET /fapi/v1/exchangeInfo` (plus `/fapi/v1/ping` and `/fapi/v1/time`).

Events come from `broadcast()`, `replay()` of a JSONL capture, or `generate()` of
synthetic liquidations over a project-owned list of realistic symbols.
"""

from __future__ import annotations

import asyncio
import http
import itertools
import logging
import math
import random
import time
from collections.abc import Iterable
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .binance import (
    MALFORMED_FRAMES,
    MAX_INCOMING_PER_SECOND,
    ROUTED_PREFIX,
    StreamClient,
    answer,
    capture_span_ms,
    client_for,
    payload_of,
    shift_frame,
    symbol_of,
)
from .binance_market import FakeMarket
from .symbols import SYMBOLS, FakeSymbol

logger = logging.getLogger(__name__)

# Binance drops a client that has not answered a ping for 10 minutes.
PONG_TIMEOUT_SECONDS = 600.0


class FakeExchange:
    """A Binance-compatible futures exchange on loopback (WebSocket streams + REST)."""

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
    ) -> None:
        self.host = host
        self.port = port
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_connection_age = max_connection_age
        self.symbols: list[FakeSymbol] = list(symbols)
        # Set to an HTTP status (e.g. 503) to make the REST API fail, or to a
        # callable-free JSON-able object to serve instead of the real listing.
        self.rest_status: int = 200
        self.exchange_info_override: Any = None
        self.rest_requests = 0
        self.events_sent = 0
        self.malformed_sent = 0
        self.accepted_connections = 0
        self._random = random.Random(seed)
        self._clients: set[StreamClient] = set()
        self._server: Server | None = None
        self._changed = asyncio.Condition()
        self._last_trade_ms = 0
        self._prices = {s.symbol: Decimal(s.price) for s in self.symbols}
        # Binance publishes at most one liquidation per symbol per second: the second in
        # which each symbol last published.
        self._published_second: dict[str, int] = {}
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
    def rest_base_url(self) -> str:
        return f"http://{self._url_host}:{self.port}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def connections(self) -> int:
        """Currently connected WebSocket clients (on any path)."""
        return len(self._clients)

    @property
    def subscriptions(self) -> list[list[str]]:
        """Each connected client's streams (routed clients only)."""
        return [list(c.streams) for c in self._clients if c.routed]

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

    async def wait_for_clients(self, n: int = 1, timeout: float = 10.0) -> None:
        """Wait until at least n clients are connected."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self._clients) >= n)

    async def wait_for_connections(self, n: int, timeout: float = 10.0) -> None:
        """Wait until n connections have been accepted since start (counting reconnects)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: self.accepted_connections >= n)

    # -- sending ---------------------------------------------------------------------

    async def broadcast(self, frame: str | bytes | dict) -> int:
        """Send one frame to every client subscribed to it; return how many got it.

        A dict is a forceOrder payload: raw-stream clients get it as is, combined-stream
        clients get it wrapped in {"stream", "data"}. A str/bytes frame that decodes to
        a payload (or a combined frame) is routed the same way; anything else (e.g. a
        malformed frame) goes as is to every subscribed routed client.

        Like a TCP peer, this waits while a client's socket does not take more (its
        reader is slow or holding back): the server keeps no growing buffer per client.
        """
        payload = frame if isinstance(frame, dict) else payload_of(frame)
        if payload is None:
            # Sent as is in a text frame: bytes may even be invalid UTF-8, like a broken feed.
            text = frame if isinstance(frame, str) else bytes(frame)
            targets = [(c, text) for c in self._clients if c.routed and c.streams]
        else:
            symbol = symbol_of(payload)
            raw = orjson.dumps(payload).decode()
            targets = []
            for client in self._clients:
                stream = client.stream_for(symbol)
                if stream is None and symbol is None and client.routed and client.streams:
                    stream = client.streams[0]
                if stream is None:
                    continue
                if client.combined:
                    targets.append((client, f'{{"stream":"{stream}","data":{raw}}}'))
                else:
                    targets.append((client, raw))
        reached = 0
        for client, text in targets:
            try:
                await client.ws.send(text, text=True)
            except ConnectionClosed:
                continue
            reached += 1
        return reached

    async def drop_connections(self) -> None:
        """Abort every client's TCP connection: no close frame, like a network failure."""
        clients = list(self._clients)
        for client in clients:
            client.ws.transport.abort()
        async with asyncio.timeout(5):
            async with self._changed:
                await self._changed.wait_for(lambda: not (self._clients & set(clients)))

    async def replay(
        self, path: str | Path, *, rate: float | None = None, loop: bool = False
    ) -> int:
        """Send every line of a JSONL capture (combined frames); return frames sent.

        rate: frames per second (None: as fast as the clients take them). With loop,
        the capture repeats until cancelled; every later pass shifts T and E by the
        capture's span so the events are new rather than duplicates.
        """
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        span_ms = capture_span_ms(lines)
        sent = 0
        started = time.monotonic()
        for lap in itertools.count():
            for line in lines:
                if lap:
                    line = shift_frame(line, lap * span_ms)
                await self._pace(sent, rate, started)
                await self.broadcast(line)
                sent += 1
            if not loop:
                break
        return sent

    async def generate(
        self,
        *,
        rate: float,
        count: int | None = None,
        duration: float | None = None,
        malformed_every: int = 0,
    ) -> int:
        """Send synthetic liquidations at `rate` per second; return the valid events sent.

        Stops after `count` valid events or `duration` seconds (neither: until cancelled).
        With malformed_every=N, one malformed frame follows every N valid events (not
        counted in the return value; see `malformed_sent`).
        """
        if rate <= 0:
            raise ValueError("rate must be positive")
        started = time.monotonic()
        deadline = None if duration is None else started + duration
        frames = 0
        valid = 0
        while count is None or valid < count:
            await self._pace(frames, rate, started)
            if deadline is not None and time.monotonic() >= deadline:
                break
            await self.broadcast(self.synthetic_event())
            self.events_sent += 1
            valid += 1
            frames += 1
            if malformed_every and valid % malformed_every == 0:
                await self._pace(frames, rate, started)
                await self.broadcast(MALFORMED_FRAMES[self.malformed_sent % len(MALFORMED_FRAMES)])
                self.malformed_sent += 1
                frames += 1
        return valid

    def synthetic_event(self, *, symbol: str | None = None) -> dict[str, Any]:
        """Return one realistic forceOrder payload (unique trade time per exchange)."""
        rnd = self._random
        trading = [s for s in self.symbols if s.status == "TRADING" and s.weight > 0]
        if symbol is None:
            second = int(time.time())
            # Like Binance, one event per symbol per second, while the rate allows it.
            idle = [s for s in trading if self._published_second.get(s.symbol) != second]
            pool = idle or trading
            spec = rnd.choices(pool, weights=[s.weight for s in pool])[0]
            self._published_second[spec.symbol] = second
        else:
            spec = next(s for s in self.symbols if s.symbol == symbol)
        tick = Decimal(spec.tick_size)
        step = Decimal(spec.step_size)
        # A gentle random walk keeps prices plausible over a long demo.
        mid = self._prices.get(spec.symbol, Decimal(spec.price))
        mid = max(tick, mid * Decimal(str(1 + rnd.gauss(0, 0.0008))))
        self._prices[spec.symbol] = mid
        side = rnd.choice(("BUY", "SELL"))
        # The liquidation order's limit price is through the market; the fills average
        # better than it.
        slip = Decimal(str(rnd.uniform(0.002, 0.012)))
        if side == "SELL":
            price = mid * (1 - slip)
            average = mid * (1 - slip * Decimal(str(rnd.uniform(0.2, 0.8))))
        else:
            price = mid * (1 + slip)
            average = mid * (1 + slip * Decimal(str(rnd.uniform(0.2, 0.8))))
        price = _to_step(price, tick)
        average = _to_step(average, Decimal(1).scaleb(-spec.price_precision))
        usd = self._synthetic_usd()
        quantity = max(step, _to_step(Decimal(str(usd)) / average, step))
        # About half of real events report a last fill smaller than the total (l != z).
        if rnd.random() < 0.5 and quantity > step:
            last = max(step, _to_step(quantity * Decimal(str(rnd.uniform(0.05, 0.95))), step))
        else:
            last = quantity
        now_ms = int(time.time() * 1000)
        self._last_trade_ms = trade_ms = max(now_ms, self._last_trade_ms + 1)
        return {
            "e": "forceOrder",
            "E": trade_ms + rnd.randint(3, 900),
            "o": {
                "s": spec.symbol,
                "S": side,
                "o": "LIMIT",
                "f": "IOC",
                "q": _fmt(quantity, spec.quantity_precision),
                "p": _fmt(price, spec.price_precision),
                "ap": _fmt(average, spec.price_precision),
                "X": "FILLED",
                "l": _fmt(last, spec.quantity_precision),
                "z": _fmt(quantity, spec.quantity_precision),
                "T": trade_ms,
                # Undocumented fields Binance adds; clients must ignore them.
                "ps": "BOTH",
                "st": "c_",
            },
        }

    def _synthetic_usd(self) -> float:
        """Return a USD size from $10 to $5M: mostly small, some large, a few huge."""
        roll = self._random.random()
        low, high = (
            (10, 20_000)
            if roll < 0.85
            else (20_000, 1_000_000)
            if roll < 0.97
            else (
                1_000_000,
                5_000_000,
            )
        )
        return math.exp(self._random.uniform(math.log(low), math.log(high)))

    async def _pace(self, sent: int, rate: float | None, started: float) -> None:
        if rate is None:
            # Let clients and other tasks run now and then when sending flat out.
            if sent % 50 == 0:
                await asyncio.sleep(0)
            return
        delay = started + sent / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif sent % 50 == 0:
            await asyncio.sleep(0)

    # -- connections -----------------------------------------------------------------

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path = parts.path
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        market = self.market.rest(path, parts.query)
        if market is not None:
            self.rest_requests += 1
            return market
        if path.startswith("/fapi/") or path.startswith("/api/"):
            return self._rest(path)
        return _json_response(http.HTTPStatus.NOT_FOUND, {"code": -1, "msg": "Not found."})

    def _rest(self, path: str) -> Response:
        self.rest_requests += 1
        if self.rest_status != 200:
            status = http.HTTPStatus(self.rest_status)
            return _json_response(status, {"code": -1001, "msg": status.phrase})
        if path == "/fapi/v1/exchangeInfo":
            if self.exchange_info_override is not None:
                return _json_response(http.HTTPStatus.OK, self.exchange_info_override)
            return _json_response(http.HTTPStatus.OK, self.exchange_info())
        if path == "/fapi/v1/ping":
            return _json_response(http.HTTPStatus.OK, {})
        if path == "/fapi/v1/time":
            return _json_response(http.HTTPStatus.OK, {"serverTime": int(time.time() * 1000)})
        return _json_response(
            http.HTTPStatus.NOT_FOUND, {"code": -5000, "msg": f"Path {path}, Method GET is invalid"}
        )

    def exchange_info(self) -> dict[str, Any]:
        return {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                },
            ],
            "exchangeFilters": [],
            "assets": [],
            "symbols": [s.exchange_info() for s in self.symbols],
        }

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        client = client_for(ws, parts.path, parts.query)
        async with self._changed:
            self._clients.add(client)
            self.accepted_connections += 1
            self.market.opened(client)
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

    async def _serve_requests(self, ws: ServerConnection, client: StreamClient) -> None:
        window_start = time.monotonic()
        in_window = 0
        async for message in ws:
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


def _to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).quantize(Decimal(1), rounding=ROUND_DOWN) * step


def _fmt(value: Decimal, places: int) -> str:
    return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _json_response(status: http.HTTPStatus, body: Any) -> Response:
    data = orjson.dumps(body)
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, data)
