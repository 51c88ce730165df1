"""The fake exchange's market for one symbol: an order book with update ids, trades, candles.

The book changes one level at a time, each change taking the next update id, like
Binance's matching engine; a depth event covers every change since the previous one
(`U` first id, `u` last id, `pu` the previous event's `u`) with the levels' final
quantities. A snapshot can therefore fall inside an event's range, as on the real
exchange. Prices are kept as whole ticks, so the book never crosses.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .symbols import FakeSymbol

TIMEFRAME_SECONDS = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14_400,
    "1d": 86_400,
}
BOOK_LEVELS = 150


@dataclass
class FakeCandle:
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)


@dataclass
class SymbolMarket:
    """One symbol's simulated market on the fake exchange."""

    spec: FakeSymbol
    rnd: random.Random
    bids: dict[int, Decimal] = field(default_factory=dict)  # ticks → quantity
    asks: dict[int, Decimal] = field(default_factory=dict)
    update_id: int = 1_000_000
    emitted_id: int = 1_000_000
    changed_bids: set[int] = field(default_factory=set)
    changed_asks: set[int] = field(default_factory=set)
    trade_id: int = 5_000_000
    candles: dict[str, FakeCandle] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tick = Decimal(self.spec.tick_size)
        self.step = Decimal(self.spec.step_size)
        self.mid = int(Decimal(self.spec.price) / self.tick)
        for k in range(1, BOOK_LEVELS + 1):
            self.bids[self.mid - k] = self._quantity()
            self.asks[self.mid + k] = self._quantity()
        self.emitted_id = self.update_id

    # -- the book ----------------------------------------------------------------------

    def _quantity(self) -> Decimal:
        return self.step * self.rnd.randint(1, 5000)

    def price(self, ticks: int) -> Decimal:
        return ticks * self.tick

    def fmt_price(self, ticks: int) -> str:
        return f"{self.price(ticks):.{self.spec.price_precision}f}"

    def fmt_qty(self, qty: Decimal) -> str:
        return f"{qty:.{self.spec.quantity_precision}f}"

    def _set(self, bids: bool, ticks: int, qty: Decimal) -> None:
        side, changed = (self.bids, self.changed_bids) if bids else (self.asks, self.changed_asks)
        if qty:
            side[ticks] = qty
        else:
            side.pop(ticks, None)
        changed.add(ticks)
        self.update_id += 1

    def mutate(self, changes: int = 4) -> None:
        """Change a few levels near the top, now and then moving the mid by a tick."""
        if self.rnd.random() < 0.3:
            self.mid += self.rnd.choice((-1, 1))
            for ticks in [t for t in self.bids if t >= self.mid]:
                self._set(True, ticks, Decimal(0))
            for ticks in [t for t in self.asks if t <= self.mid]:
                self._set(False, ticks, Decimal(0))
        for _ in range(changes):
            bids = self.rnd.random() < 0.5
            distance = self.rnd.randint(1, BOOK_LEVELS)
            ticks = self.mid - distance if bids else self.mid + distance
            qty = Decimal(0) if self.rnd.random() < 0.2 else self._quantity()
            self._set(bids, ticks, qty)

    def depth_event(self) -> dict[str, Any] | None:
        """Return the depth event of every change since the last one (None: no change)."""
        if self.update_id == self.emitted_id:
            return None
        now = int(time.time() * 1000)
        event = {
            "e": "depthUpdate",
            "E": now,
            "T": now - 2,
            "s": self.spec.symbol,
            "U": self.emitted_id + 1,
            "u": self.update_id,
            "pu": self.emitted_id,
            "b": [
                [self.fmt_price(t), self.fmt_qty(self.bids.get(t, Decimal(0)))]
                for t in sorted(self.changed_bids, reverse=True)
            ],
            "a": [
                [self.fmt_price(t), self.fmt_qty(self.asks.get(t, Decimal(0)))]
                for t in sorted(self.changed_asks)
            ],
        }
        self.emitted_id = self.update_id
        self.changed_bids.clear()
        self.changed_asks.clear()
        return event

    def snapshot(self, limit: int) -> dict[str, Any]:
        now = int(time.time() * 1000)
        return {
            "lastUpdateId": self.update_id,
            "E": now,
            "T": now,
            "bids": [
                [self.fmt_price(t), self.fmt_qty(q)]
                for t, q in sorted(self.bids.items(), reverse=True)[:limit]
            ],
            "asks": [
                [self.fmt_price(t), self.fmt_qty(q)] for t, q in sorted(self.asks.items())[:limit]
            ],
        }

    def book(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The whole book as prices: bids highest first, asks lowest first."""
        bids = [(self.price(t), q) for t, q in sorted(self.bids.items(), reverse=True)]
        asks = [(self.price(t), q) for t, q in sorted(self.asks.items())]
        return bids, asks

    # -- trades and candles ------------------------------------------------------------

    def trade(self, *, quantity: Decimal | None = None, buyer_maker: bool | None = None) -> dict:
        """Return one aggTrade at the top of the book (and fold it into the candles)."""
        maker = self.rnd.random() < 0.5 if buyer_maker is None else buyer_maker
        ticks = self.mid - 1 if maker else self.mid + 1
        qty = quantity if quantity is not None else self.step * self.rnd.randint(1, 2000)
        now = int(time.time() * 1000)
        self.trade_id += 1
        for timeframe in TIMEFRAME_SECONDS:
            self._fold(timeframe, self.price(ticks), qty, now)
        return {
            "e": "aggTrade",
            "E": now + 1,
            "s": self.spec.symbol,
            "a": self.trade_id,
            "p": self.fmt_price(ticks),
            "q": self.fmt_qty(qty),
            "f": self.trade_id * 3,
            "l": self.trade_id * 3 + 1,
            "T": now,
            "m": maker,
        }

    def candle(self, timeframe: str, now_ms: int | None = None) -> FakeCandle:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        size = TIMEFRAME_SECONDS[timeframe] * 1000
        open_ms = now_ms // size * size
        current = self.candles.get(timeframe)
        if current is None or current.open_ms != open_ms:
            price = self.price(self.mid)
            current = self.candles[timeframe] = FakeCandle(open_ms, price, price, price, price)
        return current

    def _fold(self, timeframe: str, price: Decimal, qty: Decimal, now_ms: int) -> None:
        candle = self.candle(timeframe, now_ms)
        candle.high = max(candle.high, price)
        candle.low = min(candle.low, price)
        candle.close = price
        candle.volume += qty

    def kline_event(self, timeframe: str) -> dict[str, Any]:
        candle = self.candle(timeframe)
        size = TIMEFRAME_SECONDS[timeframe] * 1000
        now = int(time.time() * 1000)
        return {
            "e": "kline",
            "E": now,
            "s": self.spec.symbol,
            "k": {
                "t": candle.open_ms,
                "T": candle.open_ms + size - 1,
                "s": self.spec.symbol,
                "i": timeframe,
                "f": 1,
                "L": 2,
                **self._ohlcv(candle),
                "n": 10,
                "x": False,
                "q": "0",
                "V": "0",
                "Q": "0",
                "B": "0",
            },
        }

    def _ohlcv(self, candle: FakeCandle) -> dict[str, str]:
        places = self.spec.price_precision
        return {
            "o": f"{candle.open:.{places}f}",
            "h": f"{candle.high:.{places}f}",
            "l": f"{candle.low:.{places}f}",
            "c": f"{candle.close:.{places}f}",
            "v": self.fmt_qty(candle.volume),
        }

    def klines(self, timeframe: str, limit: int) -> list[list[Any]]:
        """The newest `limit` candles: a seeded walk that ends at the live candle."""
        current = self.candle(timeframe)
        size = TIMEFRAME_SECONDS[timeframe] * 1000
        rows: list[list[Any]] = []
        close = current.open
        walk = random.Random(f"{self.spec.symbol}{timeframe}{current.open_ms}")
        for n in range(1, limit):
            open_ms = current.open_ms - n * size
            open_ = close * Decimal(str(1 + walk.gauss(0, 0.002)))
            spread = abs(close - open_) + close * Decimal(str(abs(walk.gauss(0, 0.001))))
            candle = FakeCandle(
                open_ms,
                open_,
                max(open_, close) + spread / 2,
                min(open_, close) - spread / 2,
                close,
                self.step * walk.randint(100, 100_000),
            )
            rows.append(self._kline_row(candle, size))
            close = open_
        rows.reverse()
        rows.append(self._kline_row(current, size))
        return rows[-limit:]

    def _kline_row(self, candle: FakeCandle, size: int) -> list[Any]:
        values = self._ohlcv(candle)
        return [
            candle.open_ms,
            values["o"],
            values["h"],
            values["l"],
            values["c"],
            values["v"],
            candle.open_ms + size - 1,
            "0",
            10,
            "0",
            "0",
            "0",
        ]
