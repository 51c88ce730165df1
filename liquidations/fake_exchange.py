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
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

logger = logging.getLogger(__name__)

ALL_MARKET_STREAM = "!forceOrder@arr"
ROUTED_PREFIX = "/market"
# Binance disconnects a client sending more than this many messages per second.
MAX_INCOMING_PER_SECOND = 10
# Binance drops a client that has not answered a ping for 10 minutes.
PONG_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class FakeSymbol:
    """One contract of the fake exchange: listing data and a reference price."""

    symbol: str
    base_asset: str
    quote_asset: str
    price: str
    price_precision: int
    quantity_precision: int
    tick_size: str
    step_size: str
    weight: float = 1.0
    status: str = "TRADING"

    def exchange_info(self) -> dict[str, Any]:
        """Return the symbol as /fapi/v1/exchangeInfo lists it."""
        return {
            "symbol": self.symbol,
            "pair": self.symbol,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": self.status,
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": self.base_asset,
            "quoteAsset": self.quote_asset,
            "marginAsset": self.quote_asset,
            "pricePrecision": self.price_precision,
            "quantityPrecision": self.quantity_precision,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": self.tick_size,
                    "maxPrice": "4529764",
                    "tickSize": self.tick_size,
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": self.step_size,
                    "maxQty": "1000000000",
                    "stepSize": self.step_size,
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": self.step_size,
                    "maxQty": "1000000000",
                    "stepSize": self.step_size,
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }


def _s(
    symbol: str,
    base: str,
    quote: str,
    price: str,
    pp: int,
    qp: int,
    tick: str,
    step: str,
    weight: float = 1.0,
    status: str = "TRADING",
) -> FakeSymbol:
    return FakeSymbol(symbol, base, quote, price, pp, qp, tick, step, weight, status)


# Prices and precisions modelled on the real listing in late 2025 (not live data).
SYMBOLS: tuple[FakeSymbol, ...] = (
    _s("BTCUSDT", "BTC", "USDT", "87350.10", 2, 3, "0.10", "0.001", 14),
    _s("ETHUSDT", "ETH", "USDT", "2948.37", 2, 3, "0.01", "0.001", 10),
    _s("SOLUSDT", "SOL", "USDT", "124.870", 4, 2, "0.0100", "0.01", 6),
    _s("XRPUSDT", "XRP", "USDT", "1.8731", 4, 1, "0.0001", "0.1", 5),
    _s("DOGEUSDT", "DOGE", "USDT", "0.128470", 6, 0, "0.000010", "1", 4),
    _s("BNBUSDT", "BNB", "USDT", "842.150", 3, 2, "0.010", "0.01", 3),
    _s("1000PEPEUSDT", "1000PEPE", "USDT", "0.0040512", 7, 0, "0.0000001", "1", 4),
    _s("1000SHIBUSDT", "1000SHIB", "USDT", "0.007312", 6, 0, "0.000001", "1", 1.5),
    _s("1000BONKUSDT", "1000BONK", "USDT", "0.0097210", 7, 0, "0.0000010", "1", 1.5),
    _s("1000000MOGUSDT", "1000000MOG", "USDT", "0.2581000", 7, 1, "0.0000100", "0.1", 0.5),
    _s("ADAUSDT", "ADA", "USDT", "0.36450", 5, 0, "0.00010", "1", 2),
    _s("AVAXUSDT", "AVAX", "USDT", "12.1840", 4, 0, "0.0010", "1", 1.5),
    _s("LINKUSDT", "LINK", "USDT", "12.384", 3, 2, "0.001", "0.01", 1.5),
    _s("SUIUSDT", "SUI", "USDT", "1.426100", 6, 1, "0.000100", "0.1", 2),
    _s("LTCUSDT", "LTC", "USDT", "77.35", 2, 3, "0.01", "0.001", 1),
    _s("WIFUSDT", "WIF", "USDT", "0.355100", 7, 1, "0.000100", "0.1", 1),
    _s("ENAUSDT", "ENA", "USDT", "0.2231000", 7, 0, "0.0001000", "1", 1.5),
    _s("HYPEUSDT", "HYPE", "USDT", "24.58100", 5, 2, "0.00100", "0.01", 2),
    _s("TRUMPUSDT", "TRUMP", "USDT", "5.106", 3, 1, "0.001", "0.1", 1),
    _s("FARTCOINUSDT", "FARTCOIN", "USDT", "0.2927000", 7, 1, "0.0001000", "0.1", 1.5),
    _s("ZECUSDT", "ZEC", "USDT", "515.06", 2, 3, "0.01", "0.001", 2),
    _s("ONTUSDT", "ONT", "USDT", "0.0706", 4, 1, "0.0001", "0.1", 0.5),
    _s("MEUSDT", "ME", "USDT", "0.2139000", 7, 1, "0.0001000", "0.1", 0.5),
    _s("AAVEUSDT", "AAVE", "USDT", "151.240", 3, 1, "0.010", "0.1", 1),
    _s("DOTUSDT", "DOT", "USDT", "1.784", 3, 1, "0.001", "0.1", 0.7),
    _s("NEARUSDT", "NEAR", "USDT", "1.5220", 4, 0, "0.0010", "1", 0.7),
    _s("BTCUSDC", "BTC", "USDC", "87345.6", 1, 3, "0.1", "0.001", 2),
    _s("ETHUSDC", "ETH", "USDC", "2948.12", 2, 3, "0.01", "0.001", 1.5),
    _s("SOLUSDC", "SOL", "USDC", "124.8600", 4, 2, "0.0100", "0.01", 0.8),
    _s("XRPUSDC", "XRP", "USDC", "1.8730", 4, 1, "0.0001", "0.1", 0.5),
    _s("1000PEPEUSDC", "1000PEPE", "USDC", "0.0040510", 7, 0, "0.0000001", "1", 0.4),
    # Listed but not trading: present in exchangeInfo, never liquidated.
    _s("LUNA2USDT", "LUNA2", "USDT", "0.0843", 4, 0, "0.0001", "1", 0, "SETTLING"),
)

MALFORMED_FRAMES: tuple[str, ...] = (
    "this is not json",
    "[1, 2, 3]",
    '{"e":"forceOrder","E":1766845884181}',
    '{"e":"forceOrder","E":1766845884181,"o":{"s":"BTCUSDT","S":"HOLD","o":"LIMIT","f":"IOC",'
    '"q":"1","p":"1","ap":"1","X":"FILLED","l":"1","z":"1","T":1766845883281}}',
    '{"e":"forceOrder","E":1766845884181,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC",'
    '"q":"-1","p":"1","ap":"1","X":"FILLED","l":"1","z":"1","T":1766845883281}}',
    '{"e":"forceOrder","E":1766845884181,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC",'
    '"q":"NaN","p":"1","ap":"1","X":"FILLED","l":"1","z":"1","T":1766845883281}}',
    '{"e":"aggTrade","E":1766845884181,"s":"BTCUSDT"}',
)


@dataclass(eq=False)
class _Client:
    """One connected WebSocket client and what it is subscribed to."""

    ws: ServerConnection
    routed: bool
    combined: bool
    streams: list[str] = field(default_factory=list)

    def stream_for(self, symbol: str | None) -> str | None:
        """Return the subscribed stream that carries this symbol's events, if any."""
        if not self.routed:
            return None
        for stream in self.streams:
            if stream == ALL_MARKET_STREAM:
                return stream
            if symbol and stream == f"{symbol.lower()}@forceOrder":
                return stream
        return None


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
        self._clients: set[_Client] = set()
        self._server: Server | None = None
        self._changed = asyncio.Condition()
        self._last_trade_ms = 0
        self._prices = {s.symbol: Decimal(s.price) for s in self.symbols}
        # Binance publishes at most one liquidation per symbol per second: the second in
        # which each symbol last published.
        self._published_second: dict[str, int] = {}

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
        logger.info("Fake exchange listening on %s and %s", self.ws_base_url, self.rest_base_url)

    async def stop(self) -> None:
        if self._server is None:
            return
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
        payload = frame if isinstance(frame, dict) else _payload_of(frame)
        if payload is None:
            # Sent as is in a text frame: bytes may even be invalid UTF-8, like a broken feed.
            text = frame if isinstance(frame, str) else bytes(frame)
            targets = [(c, text) for c in self._clients if c.routed and c.streams]
        else:
            symbol = _symbol_of(payload)
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
        span_ms = _capture_span_ms(lines)
        sent = 0
        started = time.monotonic()
        for lap in itertools.count():
            for line in lines:
                if lap:
                    line = _shift_frame(line, lap * span_ms)
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
        path = urlsplit(request.path).path
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
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
        client = _client_for(ws, parts.path, parts.query)
        async with self._changed:
            self._clients.add(client)
            self.accepted_connections += 1
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
                self._clients.discard(client)
                self._changed.notify_all()
            logger.info("Fake exchange: client on %s gone", ws.request.path)

    async def _serve_requests(self, ws: ServerConnection, client: _Client) -> None:
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
            reply = _answer(client, message)
            if reply is not None:
                await ws.send(orjson.dumps(reply).decode())


def _client_for(ws: ServerConnection, path: str, query: str) -> _Client:
    if path.startswith(f"{ROUTED_PREFIX}/ws"):
        stream = path[len(f"{ROUTED_PREFIX}/ws") :].strip("/")
        return _Client(ws, routed=True, combined=False, streams=[stream] if stream else [])
    if path.rstrip("/") == f"{ROUTED_PREFIX}/stream":
        names = parse_qs(query).get("streams", [""])[0]
        return _Client(ws, routed=True, combined=True, streams=[s for s in names.split("/") if s])
    # Retired unrouted paths (and anything else): accepted, acked, silent.
    return _Client(ws, routed=False, combined=path.startswith("/stream"))


def _answer(client: _Client, message: str | bytes) -> dict[str, Any] | None:
    """Return Binance's reply to one client request."""
    try:
        request = orjson.loads(message)
    except orjson.JSONDecodeError:
        return {"error": {"code": 3, "msg": "Invalid JSON: expected value"}, "id": None}
    if not isinstance(request, dict):
        return {"error": {"code": 2, "msg": "Invalid request"}, "id": None}
    request_id = request.get("id")
    method = request.get("method")
    params = request.get("params", [])
    if not isinstance(request_id, int | str) or isinstance(request_id, bool):
        return {"error": {"code": 2, "msg": "Invalid request: invalid id"}, "id": None}
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return {
                "error": {"code": 1, "msg": "Invalid value type: expected list"},
                "id": request_id,
            }
        for stream in params:
            if method == "SUBSCRIBE" and stream not in client.streams:
                client.streams.append(stream)
            elif method == "UNSUBSCRIBE" and stream in client.streams:
                client.streams.remove(stream)
        return {"result": None, "id": request_id}
    if method == "LIST_SUBSCRIPTIONS":
        return {"result": list(client.streams), "id": request_id}
    if method in ("SET_PROPERTY", "GET_PROPERTY"):
        return {"result": None if method == "SET_PROPERTY" else False, "id": request_id}
    return {
        "error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
        "id": request_id,
    }


def _payload_of(frame: str | bytes) -> dict | None:
    try:
        decoded = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict):
        return None
    if "e" not in decoded and isinstance(decoded.get("data"), dict):
        return decoded["data"]
    return decoded if "e" in decoded else None


def _symbol_of(payload: dict) -> str | None:
    order = payload.get("o")
    symbol = order.get("s") if isinstance(order, dict) else None
    return symbol if isinstance(symbol, str) else None


def _capture_span_ms(lines: list[str]) -> int:
    times = []
    for line in lines:
        payload = _payload_of(line)
        if payload is not None and isinstance(payload.get("E"), int):
            times.append(payload["E"])
    return (max(times) - min(times) + 1000) if times else 1000


def _shift_frame(line: str, offset_ms: int) -> str:
    try:
        decoded = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line
    payload = decoded.get("data", decoded) if isinstance(decoded, dict) else None
    if not isinstance(payload, dict):
        return line
    if isinstance(payload.get("E"), int):
        payload["E"] += offset_ms
    order = payload.get("o")
    if isinstance(order, dict) and isinstance(order.get("T"), int):
        order["T"] += offset_ms
    return orjson.dumps(decoded).decode()


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
