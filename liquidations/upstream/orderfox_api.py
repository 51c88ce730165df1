"""The OrderFox liquidation item: the JSON shape our API serves and the backfill reads.

One list of fields, in the original OrderFox API's names, maps each item key to the
stored field: web/api.py writes items from it and ingest/backfill.py reads them back
into events with the same validation as a stream frame.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .events import (
    SIDES,
    LiquidationEvent,
    MalformedFrame,
    is_symbol,
    millis_field,
    number_field,
    text_field,
)

# (item key, field of Liquidation / LiquidationEvent, kind); kind "ms": epoch milliseconds
# (the event keeps them as <field>_ms), "decimal": plain decimal text, "text": as is.
ITEM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("symbol", "symbol", "text"),
    ("side", "side", "side"),
    ("order_type", "order_type", "text"),
    ("time_in_force", "time_in_force", "text"),
    ("original_quantity", "original_quantity", "decimal"),
    ("price", "price", "decimal"),
    ("average_price", "average_price", "decimal"),
    ("order_status", "order_status", "text"),
    ("order_last_filled_quantity", "last_filled_quantity", "decimal"),
    ("order_filled_accumulated_quantity", "filled_quantity", "decimal"),
    ("order_trade_time", "trade_time", "ms"),
    ("event_time", "event_time", "ms"),
)
# The cursor-paged form of the range (ours): {"data": [items], "next_cursor": ...}.
PAGED_PATH = "/api/v1/liquidations/paged"
# Derived from the others, so served but not read back.
USD_ITEM_KEY = "cumulated_usd_size"
# The range form (GET /api/v1/liquidations, the array OrderFox's client reads) adds the
# trade time again under the name OrderFox buckets by, and serves USD as a JSON number.
TIMESTAMP_ITEM_KEY = "timestamp"
TEXT_LENGTHS = {"symbol": 30, "order_type": 20, "time_in_force": 10, "order_status": 20}


def decimal_text(value: Decimal) -> str:
    """Plain decimal notation without trailing zeros (never exponent notation)."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def item_to_event(item: object) -> LiquidationEvent:
    """Validate one API item as the stream parser validates a frame; raise MalformedFrame."""
    if not isinstance(item, dict):
        raise MalformedFrame(f"item is not an object: {type(item).__name__}")
    values: dict[str, Any] = {}
    for key, field, kind in ITEM_FIELDS:
        if kind == "ms":
            values[f"{field}_ms"] = millis_field(item, key)
        elif kind == "decimal":
            values[field] = number_field(item, key)
        else:
            values[field] = text_field(item, key, max_length=TEXT_LENGTHS.get(field, 30))
    if not is_symbol(values["symbol"]):
        raise MalformedFrame(f"invalid symbol {values['symbol'][:40]!r}")
    values["side"] = values["side"].upper()
    if values["side"] not in SIDES:
        raise MalformedFrame(f"invalid side {values['side'][:10]!r}")
    return LiquidationEvent(**values)
