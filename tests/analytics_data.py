"""Store liquidations at chosen times for the analytics tests (through the real store)."""

from __future__ import annotations

from liquidations.binance import parse_frame
from liquidations.models import Liquidation
from liquidations.services import liquidation_store_batch
from tests.factories import force_order, frame

# 2025-12-28 00:00:00 UTC: a multiple of every timeframe (1 d is the largest).
DAY_BOUNDARY_S = 1_766_880_000
assert DAY_BOUNDARY_S % 86_400 == 0


def store(*payloads: dict) -> list[Liquidation]:
    """Store forceOrder payloads (all new); return the rows in (trade_time, id) order."""
    stored = liquidation_store_batch(events=[parse_frame(frame(p)) for p in payloads])
    assert len(stored) == len(payloads), "test payloads must not be duplicates"
    return stored


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
