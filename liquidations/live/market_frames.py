"""The market hub's frames: what one round (or a joining viewer) sends each viewer.

Each piece is rendered once per round and shared by every viewer it suits: the new tape
rows per symbol, a panel's state per group, the live candle per timeframe, and the book
per (rounding, depth, precisions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from .contracts import MARKET_TAPE_ROWS
from .market_render import book_html, candle_live_html, state_html, tape_oob

# The panel (its state element, "<panel>-state") of each kind of group.
PANELS = {"trades": "trades", "book": "book", "kline": "candles"}


@dataclass(frozen=True, slots=True)
class MarketSettings:
    """What one viewer asked for: the candles' timeframe, the book's rounding and depth."""

    timeframe: str
    rounding: Decimal
    depth: int


class MarketViewer(Protocol):
    """What the hub needs of a market socket (MarketConsumer)."""

    symbol: str
    market_settings: MarketSettings
    price_places: int
    quantity_places: int

    async def send_frame(self, frame: str) -> None: ...


@dataclass(eq=False)
class MarketGroup:
    """One channel-layer group the hub is in: its viewers and the latest of what it carries."""

    name: str
    kind: str  # "trades", "book", "kline" or "liquidations"
    symbol: str
    stream: str | None
    viewers: dict[MarketViewer, None] = field(default_factory=dict)
    task: asyncio.Task | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    book: dict[str, Any] | None = None
    kline: dict[str, Any] | None = None
    state: str | None = None


@dataclass
class MarketRound:
    """What one fan-out round brings: new tape rows per symbol, changed groups."""

    tape: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    changed: set[MarketGroup] = field(default_factory=set)
    # Groups whose panel state changed this round.
    states: set[MarketGroup] = field(default_factory=set)
    cache: dict[tuple, str] = field(default_factory=dict)


def viewer_frame(current: MarketRound, viewer: MarketViewer, groups: list[MarketGroup]) -> str:
    """One viewer's frame of a round: new tape rows, changed states, book and candle."""
    pieces = []
    new_rows = current.tape.get(viewer.symbol)
    if new_rows:
        key = ("tape", viewer.symbol)
        if key not in current.cache:
            newest = sorted(new_rows, reverse=True)[:MARKET_TAPE_ROWS]
            current.cache[key] = tape_oob([html for _t, html in newest])
        pieces.append(current.cache[key])
    for group in groups:
        if group in current.states:
            pieces.extend(state_piece(group, current.cache))
        if group in current.changed:
            pieces.extend(group_pieces(group, viewer, current.cache))
    return "".join(pieces)


def state_piece(group: MarketGroup, cache: dict[tuple, str]) -> list[str]:
    if group.kind not in PANELS or not group.state:
        return []
    key = ("state", group.name, group.state)
    if key not in cache:
        cache[key] = state_html(panel=PANELS[group.kind], state=group.state)
    return [cache[key]]


def group_pieces(group: MarketGroup, viewer: MarketViewer, cache: dict[tuple, str]) -> list[str]:
    pieces = []
    key: tuple
    if group.kind == "book" and group.book is not None:
        chosen = viewer.market_settings
        key = (
            "book",
            group.name,
            chosen.rounding,
            chosen.depth,
            viewer.price_places,
            viewer.quantity_places,
        )
        if key not in cache:
            cache[key] = book_html(
                group.book,
                rounding=chosen.rounding,
                depth=chosen.depth,
                price_places=viewer.price_places,
                quantity_places=viewer.quantity_places,
            )
        pieces.append(cache[key])
    elif group.kind == "kline" and group.kline is not None:
        key = ("kline", group.name)
        if key not in cache:
            cache[key] = candle_live_html(group.kline)
        pieces.append(cache[key])
    return pieces


def initial_frame(
    tape: Iterable[tuple[int, str]] | None, viewer: MarketViewer, groups: list[MarketGroup]
) -> str:
    """What a viewer joining (or changing settings) gets at once from what the hub holds."""
    cache: dict[tuple, str] = {}
    pieces = []
    if tape:
        pieces.append(tape_oob([html for _t, html in tape], replace=True))
    for group in groups:
        pieces.extend(state_piece(group, cache))
        pieces.extend(group_pieces(group, viewer, cache))
    return "".join(pieces)
