"""Writes: the Symbol table, synced from the exchange's instrument listing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields

from ..models import Symbol
from ..upstream.exchange_info import SymbolSpec

# Everything exchangeInfo tells of a symbol is refreshed on every sync.
SYMBOL_UPDATE_FIELDS = (*(f.name for f in fields(SymbolSpec) if f.name != "symbol"), "updated_at")


def symbol_upsert_many(*, symbols: Sequence[SymbolSpec]) -> int:
    """Insert or update the listed symbols; keep unlisted ones (their history stays readable)."""
    rows = [Symbol(**asdict(spec)) for spec in {spec.symbol: spec for spec in symbols}.values()]
    Symbol.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["symbol"],
        update_fields=list(SYMBOL_UPDATE_FIELDS),
        batch_size=500,
    )
    return len(rows)
