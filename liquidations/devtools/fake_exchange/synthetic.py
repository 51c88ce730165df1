"""Synthetic liquidations for the fake exchange: realistic sizes, prices and pace.

Events are built as Binance forceOrder payloads; the Bybit and OKX modules turn one into
their own message for the same liquidation.
"""

from __future__ import annotations

import math
import random
import time
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from .symbols import FakeSymbol


class SyntheticMarket:
    """Prices that walk, sizes from $10 to $5M, one event per symbol per second."""

    def __init__(self, symbols: list[FakeSymbol], *, seed: int | None = None) -> None:
        self.symbols = symbols
        self.random = random.Random(seed)
        self._last_trade_ms = 0
        self._prices = {s.symbol: Decimal(s.price) for s in symbols}
        # Binance publishes at most one liquidation per symbol per second: the second in
        # which each symbol last published.
        self._published_second: dict[str, int] = {}

    def spec(self, symbol: str) -> FakeSymbol:
        return next(s for s in self.symbols if s.symbol == symbol)

    def event(self, *, symbol: str | None = None) -> dict[str, Any]:
        """Return one realistic forceOrder payload (unique trade time per exchange)."""
        rnd = self.random
        trading = [s for s in self.symbols if s.status == "TRADING" and s.weight > 0]
        if symbol is None:
            second = int(time.time())
            # Like Binance, one event per symbol per second, while the rate allows it.
            idle = [s for s in trading if self._published_second.get(s.symbol) != second]
            pool = idle or trading
            spec = rnd.choices(pool, weights=[s.weight for s in pool])[0]
            self._published_second[spec.symbol] = second
        else:
            spec = self.spec(symbol)
        tick = Decimal(spec.tick_size)
        step = Decimal(spec.step_size)
        # A gentle random walk keeps prices plausible over a long demo.
        mid = self._prices.get(spec.symbol, Decimal(spec.price))
        mid = max(tick, mid * Decimal(str(1 + rnd.gauss(0, 0.0008))))
        self._prices[spec.symbol] = mid
        side = rnd.choice(("BUY", "SELL"))
        # The liquidation order's limit price is through the market; the fills average
        # better than it.
        slip = Decimal(str(rnd.uniform(0.002, 0.012)))
        if side == "SELL":
            price = mid * (1 - slip)
            average = mid * (1 - slip * Decimal(str(rnd.uniform(0.2, 0.8))))
        else:
            price = mid * (1 + slip)
            average = mid * (1 + slip * Decimal(str(rnd.uniform(0.2, 0.8))))
        price = _to_step(price, tick)
        average = _to_step(average, Decimal(1).scaleb(-spec.price_precision))
        usd = self._usd()
        quantity = max(step, _to_step(Decimal(str(usd)) / average, step))
        # About half of real events report a last fill smaller than the total (l != z).
        if rnd.random() < 0.5 and quantity > step:
            last = max(step, _to_step(quantity * Decimal(str(rnd.uniform(0.05, 0.95))), step))
        else:
            last = quantity
        now_ms = int(time.time() * 1000)
        self._last_trade_ms = trade_ms = max(now_ms, self._last_trade_ms + 1)
        return {
            "e": "forceOrder",
            "E": trade_ms + rnd.randint(3, 900),
            "o": {
                "s": spec.symbol,
                "S": side,
                "o": "LIMIT",
                "f": "IOC",
                "q": _fmt(quantity, spec.quantity_precision),
                "p": _fmt(price, spec.price_precision),
                "ap": _fmt(average, spec.price_precision),
                "X": "FILLED",
                "l": _fmt(last, spec.quantity_precision),
                "z": _fmt(quantity, spec.quantity_precision),
                "T": trade_ms,
                # Undocumented fields Binance adds; clients must ignore them.
                "ps": "BOTH",
                "st": "c_",
            },
        }

    def _usd(self) -> float:
        """Return a USD size from $10 to $5M: mostly small, some large, a few huge."""
        roll = self.random.random()
        if roll < 0.85:
            low, high = 10, 20_000
        elif roll < 0.97:
            low, high = 20_000, 1_000_000
        else:
            low, high = 1_000_000, 5_000_000
        return math.exp(self.random.uniform(math.log(low), math.log(high)))


def _to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).quantize(Decimal(1), rounding=ROUND_DOWN) * step


def _fmt(value: Decimal, places: int) -> str:
    return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))
