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
