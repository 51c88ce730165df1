"""Bybit v5 public linear liquidations: allLiquidation.<SYMBOL> topics.

Doc example (bybit-exchange/docs all-liquidation.mdx):
{"topic":"allLiquidation.ROSEUSDT","type":"snapshot","ts":1739502303204,
 "data":[{"T":1739502302929,"s":"ROSEUSDT","S":"Sell","v":"20000","p":"0.04499"}]}
S is the *position* side (Buy: a long was liquidated, so the order was a SELL), v the
executed size in base units, p the bankruptcy price, T the time; one message can carry
several events. One topic per contract (no wildcard): every Trading contract of the
listing is subscribed, at most 10 topics a request, each request's ack checked. The
client sends {"op":"ping"} every 20 s.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Collection, Iterable

import orjson

from .bybit_instruments import TRADING, BybitInstrument
from .events import (
    MAX_INSTRUMENT_LENGTH,
    LiquidationEvent,
    MalformedFrame,
    PartlyMalformed,
    UnknownInstrument,
    millis_field,
    number_field,
    symbol_field,
    text_field,
)

logger = logging.getLogger(__name__)

VENUE = "bybit"
TOPIC_PREFIX = "allLiquidation."
MAX_TOPICS_PER_REQUEST = 10
# A request unanswered this long is sent again with the next listing refresh.
ACK_TIMEOUT_SECONDS = 10.0
PING_MESSAGE = '{"op":"ping"}'
# Position side → the liquidation order's side.
ORDER_SIDES = {"Buy": "SELL", "Sell": "BUY"}


class BybitVenue:
    """Bybit's side of a connection: its topics, their acks, and frame parsing."""

    name = VENUE
    keepalive_message: str | None = PING_MESSAGE
    ping_always = True  # Bybit asks for a ping every 20 s, busy or not
    needs_listing = True  # one topic per listed contract

    def __init__(self, *, ws_url: str, symbols: Collection[str] = ()) -> None:
        self.url = ws_url
        self.only = frozenset(symbols)
        self.symbols: dict[str, str] = {}  # instrument → canonical symbol
        self.wanted: list[str] = []  # instruments to subscribe
        self.acked: set[str] = set()  # topics acknowledged on this connection
        self.pending: dict[str, tuple[list[str], float]] = {}  # req_id → (topics, sent at)
        self.refused = 0
        self._req_ids = itertools.count(1)

    def set_instruments(self, instruments: Iterable[BybitInstrument]) -> None:
        listed = list(instruments)
        self.symbols = {i.instrument: i.symbol for i in listed}
        self.wanted = sorted(
            i.instrument
            for i in listed
            if i.status == TRADING and (not self.only or i.symbol in self.only)
        )

    def connect_messages(self) -> list[str]:
        """Subscribe every wanted topic on a new connection."""
        self.acked.clear()
        self.pending.clear()
        return self._subscribe(self.wanted)

    def new_messages(self, *, ack_timeout: float = ACK_TIMEOUT_SECONDS) -> list[str]:
        """Subscribe the wanted topics not acked (new listings, refused or unanswered ones)."""
        now = time.monotonic()
        waiting = {
            topic
            for topics, at in self.pending.values()
            if now - at <= ack_timeout
            for topic in topics
        }
        todo = [i for i in self.wanted if topic(i) not in self.acked and topic(i) not in waiting]
        return self._subscribe(todo)

    def unacked(self, *, older_than: float) -> list[str]:
        """Return the topics whose subscription was not acked within older_than seconds."""
        now = time.monotonic()
        return [t for topics, at in self.pending.values() if now - at > older_than for t in topics]

    def describe(self) -> str:
        return f"{len(self.acked)}/{len(self.wanted)} topics subscribed" + (
            f", {self.refused} refused" if self.refused else ""
        )

    def _subscribe(self, instruments: list[str]) -> list[str]:
        messages = []
        now = time.monotonic()
        for start in range(0, len(instruments), MAX_TOPICS_PER_REQUEST):
            topics = [topic(i) for i in instruments[start : start + MAX_TOPICS_PER_REQUEST]]
            req_id = str(next(self._req_ids))
            self.pending[req_id] = (topics, now)
            request = {"op": "subscribe", "args": topics, "req_id": req_id}
            messages.append(orjson.dumps(request).decode())
        return messages

    def parse(self, raw: bytes | str) -> list[LiquidationEvent]:
        """Return a frame's events ([] for acks and pongs) or raise MalformedFrame."""
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedFrame(f"not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise MalformedFrame(f"not an object: {type(payload).__name__}")
        name = payload.get("topic")
        if name is None:
            self._control(payload)
            return []
        if not isinstance(name, str) or not name.startswith(TOPIC_PREFIX):
            raise MalformedFrame(f"unexpected topic {str(name)[:60]!r}")
        data = payload.get("data")
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not data:
            raise MalformedFrame("field 'data' missing or not a list of events")
        try:
            pushed_at: int | None = millis_field(payload, "ts")
        except MalformedFrame:
            pushed_at = None  # only the event time: the events stand without it
        return self._events(data, pushed_at)

    def _events(self, items: list, pushed_at: int | None) -> list[LiquidationEvent]:
        events: list[LiquidationEvent] = []
        errors: list[str] = []
        for item in items:
            try:
                events.append(self._event(item, pushed_at))
            except UnknownInstrument:
                if len(items) == 1:
                    raise
                errors.append("unknown instrument")
            except MalformedFrame as exc:
                if len(items) == 1:
                    raise
                errors.append(str(exc))
        if errors:
            raise PartlyMalformed("; ".join(errors), events=events, count=len(errors))
        return events

    def _event(self, item: object, pushed_at: int | None) -> LiquidationEvent:
        if not isinstance(item, dict):
            raise MalformedFrame(f"event not an object: {type(item).__name__}")
        instrument = symbol_field(item, "s", max_length=MAX_INSTRUMENT_LENGTH)
        position_side = text_field(item, "S", max_length=10)
        side = ORDER_SIDES.get(position_side)
        if side is None:
            raise MalformedFrame(f"invalid side {position_side!r}")
        quantity = number_field(item, "v")
        price = number_field(item, "p")
        trade_time = millis_field(item, "T")
        symbol = self.symbols.get(instrument)
        if symbol is None:
            raise UnknownInstrument(f"instrument {instrument!r} is not in Bybit's listing")
        return LiquidationEvent(
            venue=VENUE,
            instrument=instrument,
            symbol=symbol,
            side=side,
            order_type="",
            time_in_force="",
            original_quantity=quantity,
            price=price,
            average_price=price,
            order_status="",
            last_filled_quantity=None,
            filled_quantity=quantity,
            trade_time_ms=trade_time,
            event_time_ms=pushed_at,
        )

    def _control(self, payload: dict) -> None:
        """Take an ack or a pong; anything else without a topic is malformed."""
        op = payload.get("op")
        if op == "ping" or payload.get("ret_msg") == "pong":
            return
        if op != "subscribe":
            raise MalformedFrame(f"neither a topic message nor an ack: op {str(op)[:20]!r}")
        req_id = payload.get("req_id")
        topics, _ = self.pending.pop(str(req_id), ([], 0.0))
        if payload.get("success") is True:
            self.acked.update(topics)
            return
        self.refused += 1
        logger.error(
            "Bybit refused subscription %s (%d topics from %s): %.200s",
            req_id,
            len(topics),
            topics[0] if topics else "?",
            payload.get("ret_msg"),
        )


def topic(instrument: str) -> str:
    return f"{TOPIC_PREFIX}{instrument}"
