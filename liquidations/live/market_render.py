"""The symbol page's market fragments, from their partials: tape rows, book, candle, states.

Tape rows are rendered once in the worker (compiled `_trade_row.html`, like the
liquidation rows); each web process renders the book once per distinct rounding and
depth among its viewers (`_book_levels.html` around compiled `_book_level.html` rows).
Every value passes through the templates' autoescaping.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from ..selectors.feed import usd_tier
from ..upstream.binance_market import AggTrade, Kline, Level
from ..upstream.order_book import book_aggregate
from .templating import substitution_renderer

_ROWS = "\x00rows\x00"
ONE = Decimal(1)
STATE_LABELS = {
    "live": "Live",
    "synced": "Live",
    "connecting": "Connecting…",
    "resyncing": "Resyncing…",
    "reconnecting": "Reconnecting…",
    "unavailable": "Unavailable",
}


@dataclass(slots=True)
class TradeRow:
    """One aggTrade as the tape shows it."""

    time_ms: int
    time_iso: str
    clock: str
    price: str
    quantity: str
    usd_value: str
    usd_display: str
    side_class: str


def trade_row(trade: AggTrade) -> TradeRow:
    """Format one trade: buyer-initiated (the seller made the price) or seller-initiated."""
    usd = trade.price * trade.quantity
    tier = usd_tier(usd)
    side = "trade-sell" if trade.buyer_maker else "trade-buy"
    moment = datetime.fromtimestamp(trade.time_ms / 1000, tz=UTC)
    iso = moment.isoformat(timespec="milliseconds")
    return TradeRow(
        time_ms=trade.time_ms,
        time_iso=iso,
        clock=iso[11:23],
        price=format(trade.price, ",f"),
        quantity=format(trade.quantity, "f"),
        usd_value=format(usd, "f"),
        usd_display=format(usd.quantize(ONE, rounding=ROUND_HALF_UP), ",f"),
        side_class=f"{side} trade-{tier}" if tier else side,
    )


@functools.cache
def _trade_renderer() -> Callable[[object], str]:
    return substitution_renderer("liquidations/_trade_row.html", var="row", cls=TradeRow)


def trade_rows_html(trades: list[AggTrade]) -> list[dict[str, Any]]:
    """Render each trade once: what a market.trades message carries per trade."""
    render = _trade_renderer()
    return [{"time_ms": t.time_ms, "html": render(trade_row(t))} for t in trades]


def tape_liquidation_html(row: dict[str, Any]) -> str:
    """Render a liquidation batch row (live/broadcast.py) as a highlighted tape row."""
    moment = datetime.fromtimestamp(row["trade_time_ms"] / 1000, tz=UTC)
    iso = moment.isoformat(timespec="milliseconds")
    usd = Decimal(str(row["usd"]))
    long_liquidated = row["side"] == "SELL"
    view = {
        "trade_time_ms": row["trade_time_ms"],
        "time_iso": iso,
        "clock": iso[11:23],
        "side": row["side"],
        "side_class": "liq-long" if long_liquidated else "liq-short",
        "label": "Long liquidated" if long_liquidated else "Short liquidated",
        "usd_value": format(usd, "f"),
        "usd_display": format(usd.quantize(ONE, rounding=ROUND_HALF_UP), ",f"),
    }
    return render_to_string("liquidations/_tape_liquidation_row.html", {"row": view}).strip()


@functools.cache
def _tape_wrapper(swap: str) -> tuple[str, str]:
    html = render_to_string(
        "liquidations/_trade_rows_oob.html", {"rows_html": mark_safe(_ROWS), "swap": swap}
    )
    opening, closing = html.strip().split(_ROWS)
    return opening, closing


def tape_oob(rows_html: list[str], *, replace: bool = False) -> str:
    """Rows newest first as one oob swap: prepended, or replacing the whole tape."""
    opening, closing = _tape_wrapper("innerHTML" if replace else "afterbegin")
    return opening + "".join(rows_html) + closing


def kline_message_fields(kline: Kline) -> dict[str, Any]:
    return {
        "timeframe": kline.timeframe,
        "time": kline.open_ms // 1000,
        "open": format(kline.open, "f"),
        "high": format(kline.high, "f"),
        "low": format(kline.low, "f"),
        "close": format(kline.close, "f"),
        "closed": "1" if kline.closed else "0",
    }


def candle_live_html(message: dict[str, Any]) -> str:
    return render_to_string("liquidations/_candle_live.html", {"kline": message}).strip()


def state_html(*, panel: str, state: str, detail: str = "") -> str:
    label = STATE_LABELS.get(state, state)
    context = {"panel": panel, "state": state, "label": label, "detail": detail, "oob": True}
    return render_to_string("liquidations/_market_state.html", context).strip()


@dataclass(slots=True)
class BookLevel:
    side: str
    price: str
    quantity: str
    total: str
    fill: str


@functools.cache
def _level_renderer() -> Callable[[object], str]:
    return substitution_renderer("liquidations/_book_level.html", var="level", cls=BookLevel)


def _decimal_levels(levels: list[list[str]]) -> list[Level]:
    return [(Decimal(price), Decimal(qty)) for price, qty in levels]


def book_view(
    message: dict[str, Any], *, rounding: Decimal, depth: int, price_places: int
) -> dict[str, Any]:
    """Aggregate a market.book message to one rounding and depth, ready to render."""
    bids = book_aggregate(
        _decimal_levels(message["bids"]),
        step=rounding,
        depth=depth,
        bids=True,
        complete=message.get("bids_complete", True),
    )
    asks = book_aggregate(
        _decimal_levels(message["asks"]),
        step=rounding,
        depth=depth,
        bids=False,
        complete=message.get("asks_complete", True),
    )
    exponent = rounding.normalize().as_tuple().exponent
    places = max(price_places, -exponent if isinstance(exponent, int) else 0, 0)
    return {
        "bids": bids,
        "asks": asks,
        "places": places,
        "spread": asks[0][0] - bids[0][0] if bids and asks else None,
    }


def book_html(
    message: dict[str, Any],
    *,
    rounding: Decimal,
    depth: int,
    price_places: int,
    quantity_places: int | None = None,
) -> str:
    """Render the book of a market.book message for one rounding and depth (an oob swap)."""
    state = message.get("state", "connecting")
    view = book_view(message, rounding=rounding, depth=depth, price_places=price_places)
    render = _level_renderer()
    places = view["places"]
    cumulative = _cumulative(view["bids"]) + _cumulative(view["asks"])
    largest = max(cumulative, default=Decimal(0)) or ONE
    bid_rows = _levels_html("bid", view["bids"], places, quantity_places, largest, render)
    ask_rows = _levels_html("ask", view["asks"], places, quantity_places, largest, render)
    ask_rows.reverse()  # highest ask on top, best ask next to the spread
    context = {
        "oob": True,
        "book": {
            "state": state,
            "event_ms": message.get("event_ms", 0),
            "rounding": format(rounding, "f"),
            "depth": depth,
            "bid_count": len(view["bids"]),
            "ask_count": len(view["asks"]),
            "asks_html": mark_safe("".join(ask_rows)),
            "bids_html": mark_safe("".join(bid_rows)),
            "spread": None if view["spread"] is None else _price(view["spread"], places),
            "note": STATE_LABELS.get(state, state),
            "resyncs": message.get("resyncs", 0),
        },
    }
    return render_to_string("liquidations/_book_levels.html", context).strip()


def _cumulative(levels: list[Level]) -> list[Decimal]:
    total = Decimal(0)
    out = []
    for _price, qty in levels:
        total += qty
        out.append(total)
    return out


def _levels_html(
    side: str,
    levels: list[Level],
    places: int,
    quantity_places: int | None,
    largest: Decimal,
    render: Callable[[object], str],
) -> list[str]:
    rows = []
    total = Decimal(0)
    for price, qty in levels:
        total += qty
        fill = (total * 100 / largest).quantize(ONE)
        rows.append(
            render(
                BookLevel(
                    side=side,
                    price=_price(price, places),
                    quantity=_quantity(qty, quantity_places),
                    total=_quantity(total, quantity_places),
                    fill=format(fill, "f"),
                )
            ).strip()
        )
    return rows


def _quantity(value: Decimal, places: int | None) -> str:
    if places is None:
        return format(value.normalize(), "f")
    return format(value.quantize(Decimal(1).scaleb(-places)), ",f")


def _price(value: Decimal, places: int) -> str:
    return format(value.quantize(Decimal(1).scaleb(-places)), ",f")
