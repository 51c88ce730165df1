"""Binance USD-M futures liquidation stream: URLs and frame parsing.

Payload (2026): {"e":"forceOrder","E":<ms>,"o":{"s","S","o","f","q","p","ap","X","l","z","T"}}
plus undocumented fields (ps, st, ...) that are ignored. Combined streams wrap it as
{"stream": ..., "data": ...}. The liquidated size is z (accumulated fill), never l.
Binance's symbol is both the instrument and the canonical symbol. Keepalive: the server
pings (WebSocket pings), and the client pings after a silence; nothing to subscribe.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import orjson

from .events import (
    SIDES,
    LiquidationEvent,
    MalformedFrame,
    millis_field,
    number_field,
    symbol_field,
    text_field,
)

VENUE = "binance"
ALL_MARKET_STREAM = "!forceOrder@arr"


class BinanceVenue:
    """Binance's side of a connection: the URL; no subscriptions, WebSocket pings."""

    name = VENUE
    keepalive_message: str | None = None
    ping_always = False
    needs_listing = False  # the listing is display information only

    def __init__(self, *, ws_base_url: str, symbols: Sequence[str] = ()) -> None:
        self.url = stream_url(base_url=ws_base_url, symbols=symbols)

    def connect_messages(self) -> list[str]:
        return []

    def new_messages(self) -> list[str]:
        return []

    def describe(self) -> str:
        return "all-market stream" if "/ws/" in self.url else "combined stream"

    def parse(self, raw: bytes | str) -> list[LiquidationEvent]:
        return [parse_frame(raw)]


def stream_url(*, base_url: str, symbols: Sequence[str] = ()) -> str:
    """Return the routed URL for all symbols, or the combined stream of the given ones."""
    base = base_url.rstrip("/")
    if not symbols:
        return f"{base}/ws/{quote(ALL_MARKET_STREAM, safe='!@')}"
    streams = "/".join(f"{symbol.lower()}@forceOrder" for symbol in symbols)
    return f"{base}/stream?streams={quote(streams, safe='@/')}"


def parse_frame(raw: str | bytes) -> LiquidationEvent:
    """Parse one raw frame (plain or combined-stream) into an event or raise MalformedFrame."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if isinstance(payload, dict) and "data" in payload and "e" not in payload:
        payload = payload["data"]
    return parse_payload(payload)


def parse_payload(payload: object) -> LiquidationEvent:
    """Validate a decoded forceOrder payload and build the event."""
    if not isinstance(payload, dict):
        raise MalformedFrame(f"not an object: {type(payload).__name__}")
    event_type = payload.get("e")
    if event_type != "forceOrder":
        raise MalformedFrame(f"unexpected event type {event_type!r}")
    order = payload.get("o")
    if not isinstance(order, dict):
        raise MalformedFrame("missing order object 'o'")
    symbol = symbol_field(order, "s")
    side = text_field(order, "S")
    if side not in SIDES:
        raise MalformedFrame(f"invalid side {side[:10]!r}")
    return LiquidationEvent(
        venue=VENUE,
        instrument=symbol,
        symbol=symbol,
        side=side,
        order_type=text_field(order, "o", max_length=20),
        time_in_force=text_field(order, "f", max_length=10),
        original_quantity=number_field(order, "q"),
        price=number_field(order, "p"),
        average_price=number_field(order, "ap"),
        order_status=text_field(order, "X", max_length=20),
        last_filled_quantity=number_field(order, "l"),
        filled_quantity=number_field(order, "z"),
        trade_time_ms=millis_field(order, "T"),
        event_time_ms=millis_field(payload, "E"),
    )
