"""A local order book kept correct by Binance's rules, and its aggregation for display.

Binance, "How to manage a local order book correctly" (USD-M futures): buffer the depth
events, fetch the REST snapshot, drop events with `u` < `lastUpdateId`; the first event
applied must have `U` <= lastUpdateId <= `u`; afterwards every event's `pu` must equal the
previous event's `u`. Anything else is a gap: the book is thrown away and rebuilt from a
new snapshot. Quantities are absolute; a quantity of 0 removes the level.

The first event may also continue the snapshot exactly (`pu` == lastUpdateId): that is the
same continuity the `pu` rule checks, and happens when the snapshot was taken right after
an event that this connection never saw.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from .binance_market import DepthSnapshot, DepthUpdate, Level

# Buffered events while waiting for a snapshot (Binance sends 10 a second).
MAX_BUFFERED = 600

APPLIED = "applied"
BUFFERED = "buffered"
GAP = "gap"
STALE = "stale"

STATE_CONNECTING = "connecting"
STATE_SYNCED = "synced"
STATE_RESYNCING = "resyncing"


@dataclass
class OrderBook:
    """One symbol's book: bids and asks by price, and where the event stream stands."""

    symbol: str
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    # The `u` of the last event applied (or the snapshot's lastUpdateId before the first).
    last_update_id: int | None = None
    synced: bool = False
    state: str = STATE_CONNECTING
    buffered: list[DepthUpdate] = field(default_factory=list)
    resyncs: int = 0
    last_gap: str = ""
    event_ms: int = 0
    # Set once the snapshot is applied and until the first event continues it.
    awaiting_first: bool = False

    def on_update(self, update: DepthUpdate) -> str:
        """Take one depth event: APPLIED, BUFFERED (not synced yet) or GAP (resync now)."""
        if not self.synced:
            self.buffered.append(update)
            if len(self.buffered) > MAX_BUFFERED:
                del self.buffered[: len(self.buffered) - MAX_BUFFERED]
            return BUFFERED
        return self._continue(update)

    def snapshot_apply(self, snapshot: DepthSnapshot) -> str:
        """Start from a REST snapshot and replay the buffer: APPLIED, STALE or GAP.

        STALE: the snapshot is older than every buffered event (fetch another one).
        """
        self.bids = {price: qty for price, qty in snapshot.bids if qty}
        self.asks = {price: qty for price, qty in snapshot.asks if qty}
        self.last_update_id = snapshot.last_update_id
        buffered = [u for u in self.buffered if u.final_id >= snapshot.last_update_id]
        self.buffered = []
        if buffered and not _starts_at(buffered[0], snapshot.last_update_id):
            self._clear()
            self.buffered = buffered
            return STALE
        self.synced = True
        self.state = STATE_SYNCED
        self.awaiting_first = True
        for update in buffered:
            if self._continue(update) == GAP:
                return GAP
        return APPLIED

    def _continue(self, update: DepthUpdate) -> str:
        assert self.last_update_id is not None
        if self.awaiting_first:
            if update.final_id < self.last_update_id:
                return APPLIED  # older than the snapshot: already in it
            if not _starts_at(update, self.last_update_id):
                return self._gap(update, f"first event U={update.first_id} u={update.final_id}")
            self.awaiting_first = False
        elif update.previous_final_id != self.last_update_id:
            return self._gap(update, f"pu={update.previous_final_id} after u={self.last_update_id}")
        _apply(self.bids, update.bids)
        _apply(self.asks, update.asks)
        self.last_update_id = update.final_id
        self.event_ms = update.event_ms
        return APPLIED

    def _gap(self, update: DepthUpdate, detail: str) -> str:
        self.last_gap = f"{detail} (snapshot or last u {self.last_update_id})"
        self.resyncs += 1
        self._clear()
        self.state = STATE_RESYNCING
        self.buffered = [update]
        return GAP

    def _clear(self) -> None:
        self.bids = {}
        self.asks = {}
        self.synced = False
        self.awaiting_first = False
        self.last_update_id = None

    def reset(self) -> None:
        """Forget everything (the stream reconnected): wait for events and a snapshot."""
        self._clear()
        self.buffered = []
        self.state = STATE_CONNECTING

    def top(self, *, levels: int) -> tuple[list[Level], list[Level]]:
        """Return the best `levels` bids (highest first) and asks (lowest first)."""
        bids = heapq.nlargest(levels, self.bids.items())
        asks = heapq.nsmallest(levels, self.asks.items())
        return bids, asks


def _starts_at(update: DepthUpdate, last_update_id: int) -> bool:
    return (
        update.first_id <= last_update_id <= update.final_id
        or update.previous_final_id == last_update_id
    )


def _apply(side: dict[Decimal, Decimal], levels: list[Level]) -> None:
    for price, qty in levels:
        if qty:
            side[price] = qty
        else:
            side.pop(price, None)


def book_aggregate(
    levels: list[Level], *, step: Decimal, depth: int, bids: bool, complete: bool = True
) -> list[Level]:
    """Group levels (best first) into buckets of `step`; return the best `depth` buckets.

    Bids fall to the bucket below (floor), asks to the bucket above (ceiling), so the two
    sides never share a price. Exact: Decimal sums. When `levels` is not the whole side
    (complete=False), the last bucket may be missing levels beyond them and is left out.
    """
    rounding = ROUND_FLOOR if bids else ROUND_CEILING
    buckets: list[Level] = []
    current: Decimal | None = None
    total = Decimal(0)
    for price, qty in levels:
        bucket = (price / step).to_integral_value(rounding=rounding) * step
        if bucket != current:
            if current is not None:
                buckets.append((current, total))
                if len(buckets) == depth:
                    return buckets
            current, total = bucket, Decimal(0)
        total += qty
    if current is not None and complete:
        buckets.append((current, total))
    return buckets[:depth]
