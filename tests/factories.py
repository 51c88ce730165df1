"""Build upstream frames and events for tests (no dependency on ../shared)."""

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
