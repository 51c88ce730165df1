"""Build upstream frames, events and stored rows for tests (no dependency on ../shared)."""

from __future__ import annotations

import itertools

import orjson

_trade_times = itertools.count(1_766_845_883_281, 137)


def force_order(
    *,
    symbol: str = "BTCUSDT",
    side: str = "SELL",
    q: str = "0.010",
    p: str = "87000.10",
    ap: str = "87010.50",
    l: str = "0.004",  # noqa: E741 - Binance's field name
    z: str = "0.010",
    T: int | None = None,  # noqa: N803 - Binance's field name
    E: int | None = None,  # noqa: N803
    **extra_order: object,
) -> dict:
    """Return one forceOrder payload as Binance sends it, with undocumented extras."""
    trade_time = next(_trade_times) if T is None else T
    order = {
        "s": symbol,
        "S": side,
        "o": "LIMIT",
        "f": "IOC",
        "q": q,
        "p": p,
        "ap": ap,
        "X": "FILLED",
        "l": l,
        "z": z,
        "T": trade_time,
        "ps": "BOTH",
        "st": "c_",
        **extra_order,
    }
    return {"e": "forceOrder", "E": trade_time + 900 if E is None else E, "o": order}


def frame(payload: dict, *, combined: bool = False) -> str:
    if combined:
        payload = {"stream": "!forceOrder@arr", "data": payload}
    return orjson.dumps(payload).decode()


def symbol_listed(
    symbol: str,
    base: str,
    *,
    quantity_precision: int = 3,
    price_precision: int = 2,
    tick_size: str = "0.1",
    step_size: str = "0.001",
):
    """Create a TRADING USDT contract in the Symbol table, as exchangeInfo would list it."""
    from liquidations.models import Symbol

    return Symbol.objects.create(
        symbol=symbol,
        status="TRADING",
        base_asset=base,
        quote_asset="USDT",
        price_precision=price_precision,
        quantity_precision=quantity_precision,
        tick_size=tick_size,
        step_size=step_size,
    )


# 2025-12-28 00:00:00 UTC: a multiple of every timeframe (1 d is the largest).
DAY_BOUNDARY_S = 1_766_880_000
assert DAY_BOUNDARY_S % 86_400 == 0


def store_events(events):
    """Store events through the app's store; return the new rows, read back, in its order."""
    from liquidations.models import Liquidation
    from liquidations.services.liquidations import liquidation_store_new

    stored = liquidation_store_new(events=events)
    by_id = Liquidation.objects.in_bulk([liq.pk for liq in stored])
    return [by_id[liq.pk] for liq in stored]


def store(*payloads: dict):
    """Store forceOrder payloads (all new); return the rows in (trade_time, id) order."""
    from liquidations.upstream.binance import parse_frame

    stored = store_events([parse_frame(frame(p)) for p in payloads])
    assert len(stored) == len(payloads), "test payloads must not be duplicates"
    return stored


def batch_messages(liquidations) -> dict:
    """Return the group messages the worker would send for these rows (rendered once)."""
    from liquidations.live.broadcast import group_messages, message_rows
    from liquidations.selectors.symbols import symbol_info_map

    return group_messages(message_rows(liquidations, infos=symbol_info_map()))


def liq(
    *,
    T: int,  # noqa: N803 - Binance's field name
    symbol: str = "BTCUSDT",
    side: str = "SELL",
    z: str = "1",
    ap: str = "100",
    **extra: object,
) -> dict:
    """A payload whose USD amount is exactly z × ap."""
    return force_order(symbol=symbol, side=side, z=z, ap=ap, q=z, l=z, T=T, **extra)


def wide_events(exchange) -> list[dict]:
    """Liquidations with the widest figures a cascade brings: big amounts, long quantities."""
    sizes = [
        ("BTCUSDT", "SELL", "386.812"),  # about $33.8M: the stats strip's widest amount
        ("ETHUSDT", "BUY", "9871.204"),  # about $29M
        ("1000000MOGUSDT", "SELL", "10041246.3"),  # the longest symbol, a long quantity
        ("1000BONKUSDT", "BUY", "266768"),
        ("1000PEPEUSDT", "SELL", "987654321"),  # about $4M
        ("FARTCOINUSDT", "BUY", "3456789.1"),
    ]
    events = []
    for symbol, side, quantity in sizes:
        event = exchange.synthetic_event(symbol=symbol)
        event["o"].update(S=side, q=quantity, l=quantity, z=quantity)
        events.append(event)
    return events


def roll_up(*, now_ms: int) -> None:
    """Roll every stored row up as the worker would, its clock at now_ms."""
    from liquidations.services.rollup import liquidation_rollup_catch_up
    from liquidations.upstream.events import ms_to_datetime

    liquidation_rollup_catch_up(
        now=ms_to_datetime(now_ms), settled_before=ms_to_datetime(now_ms + 10**12)
    )
