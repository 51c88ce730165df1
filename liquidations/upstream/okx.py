"""OKX v5 public liquidations: the liquidation-orders channel of every SWAP.

Doc example (OKX docs, public-data websocket):
{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkLoss":"0",
 "bkPx":"0.007831","ccy":"","posSide":"short","side":"buy","sz":"13","ts":"1692266434010"}],
 "instFamily":"IOST-USDT","instId":"IOST-USDT-SWAP","instType":"SWAP","uly":"IOST-USDT"}]}
Each details[] item is one liquidation; side is the order side (posSide the position's),
bkPx the bankruptcy price, sz in contracts (see okx_instruments.py). OKX says the feed is
neither complete nor in time order. OKX closes a connection silent for 30 s: the client
sends the text "ping" after ~20 s without a frame (answered "pong").
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from decimal import Decimal

import orjson

from .events import (
    MAX_INSTRUMENT_LENGTH,
    SIDES,
    LiquidationEvent,
    MalformedFrame,
    PartlyMalformed,
    UnknownInstrument,
    millis_field,
    number_field,
    symbol_field,
    text_field,
)
from .okx_instruments import OkxInstrument

logger = logging.getLogger(__name__)

VENUE = "okx"
CHANNEL = "liquidation-orders"
SUBSCRIBE_MESSAGE = orjson.dumps(
    {"op": "subscribe", "args": [{"channel": CHANNEL, "instType": "SWAP"}]}
).decode()
PONG = frozenset({b"pong", "pong"})
# The base quantity of an inverse contract (USD / price) keeps the column's 12 places.
QUANTITY_QUANTUM = Decimal("1e-12")


class OkxVenue:
    """OKX's side of a connection: one subscription, idle pings, frame parsing."""

    name = VENUE
    keepalive_message: str | None = "ping"
    ping_always = False
    needs_listing = True  # sizes are in contracts: their value comes from the listing

    def __init__(self, *, ws_url: str, symbols: Collection[str] = ()) -> None:
        self.url = ws_url
        self.only = frozenset(symbols)
        self.instruments: dict[str, OkxInstrument] = {}
        self.subscribed = False
        self.refused = 0

    def set_instruments(self, instruments: Iterable[OkxInstrument]) -> None:
        self.instruments = {i.instrument: i for i in instruments}

    def connect_messages(self) -> list[str]:
        self.subscribed = False
        return [SUBSCRIBE_MESSAGE]

    def new_messages(self) -> list[str]:
        return []  # one subscription covers every swap, new listings included

    def describe(self) -> str:
        state = "subscribed" if self.subscribed else "not subscribed"
        return f"{CHANNEL} {state}, {len(self.instruments)} swaps listed" + (
            f", {self.refused} refused" if self.refused else ""
        )

    def parse(self, raw: bytes | str) -> list[LiquidationEvent]:
        """Return a frame's events ([] for acks and pongs) or raise MalformedFrame."""
        if raw in PONG:
            return []
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedFrame(f"not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise MalformedFrame(f"not an object: {type(payload).__name__}")
        if "event" in payload:
            self._control(payload)
            return []
        arg = payload.get("arg")
        if not isinstance(arg, dict) or arg.get("channel") != CHANNEL:
            raise MalformedFrame("not a liquidation-orders push")
        data = payload.get("data")
        if not isinstance(data, list) or not data:
            raise MalformedFrame("field 'data' missing or not a list")
        events: list[LiquidationEvent] = []
        errors: list[str] = []
        for entry in data:
            self._entry(entry, events, errors)
        if errors:
            if not events and len(errors) == 1:
                raise MalformedFrame(errors[0])
            raise PartlyMalformed("; ".join(errors), events=events, count=len(errors))
        return [e for e in events if not self.only or e.symbol in self.only]

    def _entry(self, entry: object, events: list[LiquidationEvent], errors: list[str]) -> None:
        """Add one instrument's liquidations to events, or their faults to errors."""
        if not isinstance(entry, dict):
            errors.append(f"entry not an object: {type(entry).__name__}")
            return
        instrument_id = symbol_field(entry, "instId", max_length=MAX_INSTRUMENT_LENGTH)
        instrument = self.instruments.get(instrument_id)
        if instrument is None:
            raise UnknownInstrument(f"instrument {instrument_id!r} is not in OKX's listing")
        details = entry.get("details")
        if not isinstance(details, list) or not details:
            errors.append("field 'details' missing or not a list")
            return
        for detail in details:
            try:
                events.append(_event(instrument, detail))
            except MalformedFrame as exc:
                errors.append(str(exc))

    def _control(self, payload: dict) -> None:
        event = payload.get("event")
        if event == "subscribe":
            self.subscribed = True
            return
        if event == "error":
            self.refused += 1
            logger.error(
                "OKX refused a request (code %.20s): %.200s",
                payload.get("code"),
                payload.get("msg"),
            )
            return
        if event in ("unsubscribe", "notice", "channel-conn-count"):
            logger.info("OKX %s: %.200r", event, payload)
            return
        raise MalformedFrame(f"unexpected event {str(event)[:20]!r}")


def _event(instrument: OkxInstrument, detail: object) -> LiquidationEvent:
    if not isinstance(detail, dict):
        raise MalformedFrame(f"detail not an object: {type(detail).__name__}")
    side = text_field(detail, "side", max_length=10).upper()
    if side not in SIDES:
        raise MalformedFrame(f"invalid side {side[:10]!r}")
    contracts = number_field(detail, "sz")
    price = number_field(detail, "bkPx")
    trade_time = millis_field(detail, "ts", as_text=True)
    value = contracts * instrument.contract_value
    usd = None
    if instrument.inverse:
        if not price:
            raise MalformedFrame("field 'bkPx' is zero: no base quantity for an inverse swap")
        usd = value
        quantity = (value / price).quantize(QUANTITY_QUANTUM)
    else:
        quantity = value
    return LiquidationEvent(
        venue=VENUE,
        instrument=instrument.instrument,
        symbol=instrument.symbol,
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
        event_time_ms=None,
        usd=usd,
    )
