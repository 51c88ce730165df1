"""Writes: the Symbol table, synced from the exchange's instrument listing."""

from __future__ import annotations

from collections.abc import Sequence

from ..models import Symbol
from ..upstream.exchange_info import SymbolSpec

SYMBOL_UPDATE_FIELDS = (
    "status",
    "base_asset",
    "quote_asset",
    "price_precision",
    "quantity_precision",
    "tick_size",
    "step_size",
    "updated_at",
)


def symbol_upsert_many(*, symbols: Sequence[SymbolSpec]) -> int:
    """Insert or update the listed symbols; keep unlisted ones (their history stays readable)."""
    rows = [
        Symbol(
            symbol=spec.symbol,
            status=spec.status,
            base_asset=spec.base_asset,
            quote_asset=spec.quote_asset,
            price_precision=spec.price_precision,
            quantity_precision=spec.quantity_precision,
            tick_size=spec.tick_size,
            step_size=spec.step_size,
        )
        for spec in {spec.symbol: spec for spec in symbols}.values()
    ]
    Symbol.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["symbol"],
        update_fields=list(SYMBOL_UPDATE_FIELDS),
        batch_size=500,
    )
    return len(rows)
