"""Binance market data on the fake exchange: klines/depth REST and aggTrade, kline, depth.

- `GET /fapi/v1/klines` and `GET /fapi/v1/depth`, answering with `X-MBX-USED-WEIGHT-1M`
  (Binance's weights, counted per minute). `answer_429(n, retry_after)` makes the next n
  klines requests answer 429 with Retry-After; a request arriving while a Retry-After runs
  is answered 418 and counted in `bans` (a real client must never see one).
  `klines_status = 503` makes klines fail (Binance unreachable).
- Streams on the routed paths: `<s>@aggTrade` and `<s>@kline_<i>` on `/market`,
  `<s>@depth@100ms` on `/public`; a stream on the wrong route delivers nothing, as on the
  real exchange. Depth events carry real `U`/`u`/`pu`; `drop_next_depth(symbol)` loses
  one event so the client sees a gap.
- `log`: every subscription change, with the connection and route: CONNECT (streams in
  the URL), SUBSCRIBE, UNSUBSCRIBE, CLOSE (the streams a closing connection held).
- While not `paused`, every subscribed symbol's book changes and its depth event goes out
  every 100 ms, with a few trades and kline updates every 250 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

import orjson
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from .market_sim import TIMEFRAME_SECONDS, SymbolMarket
from .symbols import FakeSymbol

WEIGHT_LIMIT = 2400
TICK_SECONDS = 0.1


class MarketClient(Protocol):
    """What this module needs of a connected stream client (binance.StreamClient)."""

    ws: Any
    routed: bool
    combined: bool
    streams: list[str]
    route: str


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    at: float
    connection: int
    route: str
    method: str
    streams: tuple[str, ...]


def stream_route(stream: str) -> str:
    return "public" if "@depth" in stream else "market"


class FakeMarket:
    """Market data of the fake exchange's symbols, for the clients it is given."""

    def __init__(self, *, symbols: Iterable[FakeSymbol], seed: int | None = None) -> None:
        self._rnd = random.Random(seed)
        self._specs = {s.symbol: s for s in symbols}
        self._markets: dict[str, SymbolMarket] = {}
        self.clients: dict[MarketClient, int] = {}
        self.log: list[SubscriptionRecord] = []
        self.paused = False
        self.klines_status = 200
        self.klines_requests = 0
        self.depth_requests = 0
        self.depth_events_sent = 0
        self.bans = 0
        self._answer_429 = 0
        self._retry_after = 0
        self._blocked_until = 0.0
        self._weight_minute = -1
        self._weight_used = 0
        self._drop_next: set[str] = set()
        self._task: asyncio.Task | None = None
        self._connections = 0

    def market(self, symbol: str) -> SymbolMarket:
        market = self._markets.get(symbol)
        if market is None:
            market = self._markets[symbol] = SymbolMarket(
                spec=self._specs[symbol], rnd=random.Random(self._rnd.random())
            )
        return market

    # -- lifecycle and the subscription log ---------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._autoplay(), name="fake-market")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def opened(self, client: MarketClient) -> None:
        self._connections += 1
        self.clients[client] = self._connections
        if client.routed and client.streams:
            self._record(client, "CONNECT", client.streams)

    def closed(self, client: MarketClient) -> None:
        if client.routed and client.streams and client in self.clients:
            self._record(client, "CLOSE", client.streams)
        self.clients.pop(client, None)

    def request_seen(self, client: MarketClient, message: str | bytes) -> None:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
            request = orjson.loads(message)
            if request.get("method") in ("SUBSCRIBE", "UNSUBSCRIBE"):
                self._record(client, request["method"], request.get("params", []))

    def _record(self, client: MarketClient, method: str, streams: Iterable[str]) -> None:
        market = tuple(s for s in streams if "forceOrder" not in s)
        if market:
            self.log.append(
                SubscriptionRecord(time.time(), self.clients[client], client.route, method, market)
            )

    def subscribes(self, stream: str) -> int:
        """How many times the stream was subscribed (in a URL or by SUBSCRIBE)."""
        return sum(
            1 for r in self.log if r.method in ("CONNECT", "SUBSCRIBE") and stream in r.streams
        )

    def unsubscribes(self, stream: str) -> int:
        return sum(1 for r in self.log if r.method == "UNSUBSCRIBE" and stream in r.streams)

    def subscribers(self, stream: str) -> int:
        """Connections carrying the stream now (on its own route)."""
        return sum(
            1
            for c in self.clients
            if c.routed and c.route == stream_route(stream) and stream in c.streams
        )

    def active_streams(self) -> list[str]:
        return sorted(
            {s for c in self.clients if c.routed for s in c.streams if "forceOrder" not in s}
        )

    # -- streams ---------------------------------------------------------------------

    async def publish(self, stream: str, payload: dict[str, Any]) -> int:
        """Send one event to every client carrying the stream on its route."""
        raw = orjson.dumps(payload).decode()
        reached = 0
        for client in list(self.clients):
            if not (client.routed and client.route == stream_route(stream)):
                continue
            if stream not in client.streams:
                continue
            text = f'{{"stream":"{stream}","data":{raw}}}' if client.combined else raw
            try:
                await client.ws.send(text)
            except ConnectionClosed:
                continue
            reached += 1
        return reached

    def drop_next_depth(self, symbol: str) -> None:
        """Lose the symbol's next depth event: its successor's `pu` shows the gap."""
        self._drop_next.add(symbol)

    async def depth_step(self, symbol: str, changes: int = 4) -> dict[str, Any] | None:
        """Change the book and send its depth event (unless dropped); return the event."""
        market = self.market(symbol)
        market.mutate(changes)
        event = market.depth_event()
        if event is None:
            return None
        if symbol in self._drop_next:
            self._drop_next.discard(symbol)
            return event
        self.depth_events_sent += 1
        await self.publish(f"{symbol.lower()}@depth@100ms", event)
        return event

    async def trade(self, symbol: str, **options: Any) -> dict[str, Any]:
        payload = self.market(symbol).trade(**options)
        await self.publish(f"{symbol.lower()}@aggTrade", payload)
        return payload

    async def _autoplay(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            tick += 1
            if self.paused:
                continue
            for stream in self.active_streams():
                await self._play(stream, tick)

    async def _play(self, stream: str, tick: int) -> None:
        symbol = stream.split("@", 1)[0].upper()
        if symbol not in self._specs:
            return
        if stream.endswith("@depth@100ms"):
            await self.depth_step(symbol)
        elif stream.endswith("@aggTrade"):
            for _ in range(self._rnd.choice((0, 1, 1, 2, 3))):
                await self.trade(symbol)
        elif "@kline_" in stream and tick % 2 == 0:
            timeframe = stream.rsplit("_", 1)[1]
            if timeframe in TIMEFRAME_SECONDS:
                await self.publish(stream, self.market(symbol).kline_event(timeframe))

    # -- REST ------------------------------------------------------------------------

    def answer_429(self, count: int = 1, *, retry_after: int = 2) -> None:
        """Answer the next `count` klines requests 429 with this Retry-After."""
        self._answer_429 = count
        self._retry_after = retry_after

    def rest(self, path: str, query: str) -> Response | None:
        """Answer a market REST path; None for a path this module does not serve."""
        if path not in ("/fapi/v1/klines", "/fapi/v1/depth"):
            return None
        params = {k: v[0] for k, v in parse_qs(query).items()}
        now = time.time()
        if now < self._blocked_until:
            self.bans += 1
            return self._answer(
                http.HTTPStatus.IM_A_TEAPOT, {"code": -1003, "msg": "banned"}, retry_after=120
            )
        symbol = params.get("symbol", "")
        limit = int(params.get("limit", "500")) if params.get("limit", "").isdigit() else 500
        if symbol not in self._specs:
            return self._answer(
                http.HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol."}
            )
        if path == "/fapi/v1/depth":
            self.depth_requests += 1
            self._weigh(20 if limit > 500 else 10 if limit > 100 else 5 if limit > 50 else 2)
            return self._answer(http.HTTPStatus.OK, self.market(symbol).snapshot(limit))
        self.klines_requests += 1
        self._weigh(1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10)
        if self._answer_429:
            self._answer_429 -= 1
            self._blocked_until = now + self._retry_after
            return self._answer(
                http.HTTPStatus.TOO_MANY_REQUESTS,
                {"code": -1003, "msg": "Too many requests"},
                retry_after=self._retry_after,
            )
        if self.klines_status != 200:
            status = http.HTTPStatus(self.klines_status)
            return self._answer(status, {"code": -1001, "msg": status.phrase})
        timeframe = params.get("interval", "")
        if timeframe not in TIMEFRAME_SECONDS:
            return self._answer(
                http.HTTPStatus.BAD_REQUEST, {"code": -1120, "msg": "Invalid interval."}
            )
        return self._answer(http.HTTPStatus.OK, self.market(symbol).klines(timeframe, limit))

    def _weigh(self, weight: int) -> None:
        minute = int(time.time() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        self._weight_used += weight

    def _answer(self, status: http.HTTPStatus, body: Any, *, retry_after: int = 0) -> Response:
        data = orjson.dumps(body)
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("Connection", "close"),
                ("X-MBX-USED-WEIGHT-1M", str(self._weight_used)),
            ]
        )
        if retry_after:
            headers["Retry-After"] = str(retry_after)
        return Response(status.value, status.phrase, headers, data)
