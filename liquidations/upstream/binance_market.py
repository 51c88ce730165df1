"""Binance USD-M market data for the symbol page: stream names, routes, frame parsing.

Streams (2026 routing): `<s>@aggTrade` and `<s>@kline_<i>` live on `/market`,
`<s>@depth@100ms` on `/public`; one socket never mixes the two routes. Frames arrive on
combined-stream connections wrapped as {"stream": <name>, "data": <payload>}.

    aggTrade:    {"e":"aggTrade","E","s","a","p","q","f","l","T","m"}  m: the buyer is the maker
    kline:       {"e":"kline","E","s","k":{"t","T","s","i","o","c","h","l","v","x",...}}
    depthUpdate: {"e":"depthUpdate","E","T","s","U","u","pu","b":[[p,q]],"a":[[p,q]]}
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import orjson

from .events import MalformedFrame, is_symbol, millis_field, number_field, text_field

ROUTE_MARKET = "market"
ROUTE_PUBLIC = "public"
TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
DEPTH_SUFFIX = "@depth@100ms"
TRADE_SUFFIX = "@aggTrade"
KLINE_INFIX = "@kline_"
# Binance: at most 200 streams per connection (some copies of the docs say 1024).
MAX_STREAMS_PER_CONNECTION = 200

KIND_TRADES = "trades"
KIND_KLINE = "kline"
KIND_BOOK = "book"

Level = tuple[Decimal, Decimal]


def trade_stream(symbol: str) -> str:
    return f"{symbol.lower()}{TRADE_SUFFIX}"


def kline_stream(symbol: str, timeframe: str) -> str:
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    return f"{symbol.lower()}{KLINE_INFIX}{timeframe}"


def depth_stream(symbol: str) -> str:
    return f"{symbol.lower()}{DEPTH_SUFFIX}"


@dataclass(frozen=True, slots=True)
class StreamName:
    """What a stream name says: its symbol, kind, timeframe (klines) and route."""

    name: str
    symbol: str
    kind: str
    timeframe: str = ""

    @property
    def route(self) -> str:
        return ROUTE_PUBLIC if self.kind == KIND_BOOK else ROUTE_MARKET


def stream_parse(name: str) -> StreamName:
    """Return what a stream name of ours says, or raise ValueError."""
    symbol, _, rest = name.partition("@")
    upper = symbol.upper()
    if not is_symbol(upper) or symbol != upper.lower():
        raise ValueError(f"not a stream of a symbol: {name!r}")
    if name.endswith(DEPTH_SUFFIX) and rest == DEPTH_SUFFIX[1:]:
        return StreamName(name=name, symbol=upper, kind=KIND_BOOK)
    if rest == TRADE_SUFFIX[1:]:
        return StreamName(name=name, symbol=upper, kind=KIND_TRADES)
    if rest.startswith(KLINE_INFIX[1:]) and rest[len(KLINE_INFIX) - 1 :] in TIMEFRAMES:
        return StreamName(
            name=name, symbol=upper, kind=KIND_KLINE, timeframe=rest[len(KLINE_INFIX) - 1 :]
        )
    raise ValueError(f"not a market stream: {name!r}")


def combined_url(*, base_url: str, streams: list[str]) -> str:
    """Return the combined-stream URL of a route (`<base>/stream?streams=a/b`)."""
    return f"{base_url.rstrip('/')}/stream?streams={'/'.join(streams)}"


@dataclass(frozen=True, slots=True)
class AggTrade:
    symbol: str
    trade_id: int
    price: Decimal
    quantity: Decimal
    time_ms: int
    # The buyer was the maker: the seller crossed the spread (a sell-initiated trade).
    buyer_maker: bool
    event_ms: int


@dataclass(frozen=True, slots=True)
class Kline:
    symbol: str
    timeframe: str
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    closed: bool
    event_ms: int


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    symbol: str
    first_id: int  # U
    final_id: int  # u
    previous_final_id: int  # pu
    event_ms: int
    bids: list[Level]
    asks: list[Level]


MarketEvent = AggTrade | Kline | DepthUpdate


def market_frame_parse(raw: str | bytes) -> tuple[str, MarketEvent]:
    """Parse one combined-stream frame into (stream name, event) or raise MalformedFrame."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("data"), dict):
        raise MalformedFrame("not a combined-stream frame")
    stream = frame.get("stream")
    if not isinstance(stream, str):
        raise MalformedFrame("combined frame without a stream name")
    return stream, market_payload_parse(frame["data"])


def market_payload_parse(payload: dict) -> MarketEvent:
    kind = payload.get("e")
    symbol = text_field(payload, "s")
    if not is_symbol(symbol):
        raise MalformedFrame(f"invalid symbol {symbol[:40]!r}")
    if kind == "aggTrade":
        return _agg_trade(payload, symbol)
    if kind == "kline":
        return _kline(payload, symbol)
    if kind == "depthUpdate":
        return _depth_update(payload, symbol)
    raise MalformedFrame(f"unexpected event type {kind!r}")


def _int_field(obj: dict, key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < -1:
        raise MalformedFrame(f"field {key!r} missing or not an integer")
    return value


def _agg_trade(payload: dict, symbol: str) -> AggTrade:
    maker = payload.get("m")
    if not isinstance(maker, bool):
        raise MalformedFrame("field 'm' missing or not a boolean")
    return AggTrade(
        symbol=symbol,
        trade_id=_int_field(payload, "a"),
        price=number_field(payload, "p"),
        quantity=number_field(payload, "q"),
        time_ms=millis_field(payload, "T"),
        buyer_maker=maker,
        event_ms=millis_field(payload, "E"),
    )


def _kline(payload: dict, symbol: str) -> Kline:
    k = payload.get("k")
    if not isinstance(k, dict):
        raise MalformedFrame("missing kline object 'k'")
    timeframe = text_field(k, "i", max_length=4)
    if timeframe not in TIMEFRAMES:
        raise MalformedFrame(f"unexpected interval {timeframe!r}")
    closed = k.get("x")
    if not isinstance(closed, bool):
        raise MalformedFrame("field 'x' missing or not a boolean")
    return Kline(
        symbol=symbol,
        timeframe=timeframe,
        open_ms=millis_field(k, "t"),
        open=number_field(k, "o"),
        high=number_field(k, "h"),
        low=number_field(k, "l"),
        close=number_field(k, "c"),
        volume=number_field(k, "v"),
        closed=closed,
        event_ms=millis_field(payload, "E"),
    )


def levels_parse(value: object, key: str) -> list[Level]:
    """Parse [[price, quantity], ...] (strings, as Binance sends them)."""
    if not isinstance(value, list):
        raise MalformedFrame(f"field {key!r} is not a list of levels")
    levels = []
    for item in value:
        if not isinstance(item, list) or len(item) < 2:
            raise MalformedFrame(f"field {key!r} has a malformed level")
        levels.append((number_field({"p": item[0]}, "p"), number_field({"q": item[1]}, "q")))
    return levels


def _depth_update(payload: dict, symbol: str) -> DepthUpdate:
    return DepthUpdate(
        symbol=symbol,
        first_id=_int_field(payload, "U"),
        final_id=_int_field(payload, "u"),
        previous_final_id=_int_field(payload, "pu"),
        event_ms=millis_field(payload, "E"),
        bids=levels_parse(payload.get("b"), "b"),
        asks=levels_parse(payload.get("a"), "a"),
    )


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    last_update_id: int
    bids: list[Level]
    asks: list[Level]


def depth_snapshot_parse(payload: object) -> DepthSnapshot:
    """Parse GET /fapi/v1/depth: {"lastUpdateId", "bids", "asks", ...}."""
    if not isinstance(payload, dict):
        raise MalformedFrame("depth snapshot is not an object")
    return DepthSnapshot(
        last_update_id=_int_field(payload, "lastUpdateId"),
        bids=levels_parse(payload.get("bids"), "bids"),
        asks=levels_parse(payload.get("asks"), "asks"),
    )


@dataclass(frozen=True, slots=True)
class Candle:
    """One REST kline: open time in ms and the OHLCV as Binance formats them."""

    open_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str


def klines_parse(payload: object) -> list[Candle]:
    """Parse GET /fapi/v1/klines: [[openTime, "o", "h", "l", "c", "v", closeTime, ...], ...]."""
    if not isinstance(payload, list):
        raise MalformedFrame("klines answer is not a list")
    candles = []
    for row in payload:
        if not isinstance(row, list) or len(row) < 6:
            raise MalformedFrame("malformed kline row")
        values = {str(i): row[i] for i in range(1, 6)}
        for key in values:
            number_field(values, key)
        candles.append(
            Candle(
                open_ms=millis_field({"t": row[0]}, "t"),
                open=str(row[1]),
                high=str(row[2]),
                low=str(row[3]),
                close=str(row[4]),
                volume=str(row[5]),
            )
        )
    return candles
