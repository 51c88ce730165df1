"""One fan-out round's frames: built once per distinct (filter, groups), shared by viewers.

The hub (fanout.py) merges what arrived for each group since its last round (Merged),
then asks a Cycle for each viewer's frame: its rows passing its filter (rows_frame), the
worker status if it changed for that viewer, and its stats strip, joined once and
encoded as WebSocket bytes once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..selectors.filters import FeedFilter
from .contracts import MAX_ROWS
from .frames import rows_oob
from .wire import text_frame

StatusKey = tuple[str, str, int | None]


class Viewer(Protocol):
    """What the hub needs from a viewer socket (LiquidationFeedConsumer)."""

    feed_filter: FeedFilter
    # The (state, venue states, last_event_ms) of the worker status last sent to this viewer.
    status_forwarded: StatusKey | None

    async def send_frame(self, frame: str, wire: bytes | None = None) -> None: ...


def rows_frame(rows: Sequence[dict], feed_filter: FeedFilter) -> str | None:
    """Return the frame of the newest MAX_ROWS rows passing the filter, newest first.

    Rows come oldest first (a batch, or several merged in arrival order) and are
    prepended as one block, so the newest must lead it. The html is the worker's
    autoescaped rendering of _row.html; only the fixed wrapper is added here.
    """
    everything = feed_filter.is_default
    picked = []
    for row in reversed(rows):
        if everything or feed_filter.matches(
            usd=row["usd"], side=row["side"], venue=row.get("venue", "")
        ):
            picked.append(row["html"])
            if len(picked) == MAX_ROWS:
                break
    if not picked:
        return None
    return rows_oob("".join(picked))


def status_key(message: dict) -> StatusKey:
    return (message.get("state", ""), message.get("venues", ""), message.get("last_event_ms"))


@dataclass(eq=False)
class Group:
    """One channel-layer group the hub is in, and the local viewers who want it."""

    name: str
    viewers: dict[Viewer, None] = field(default_factory=dict)
    channel: str | None = None
    # Set once the first attempt to join the group is over (joined or failed).
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


@dataclass
class Merged:
    """What one cycle has for one group: rows in arrival order, the latest of the rest."""

    rows: list[dict] = field(default_factory=list)
    status: dict | None = None
    stats_html: str | None = None


class Cycle:
    """The frames of one fan-out round, each built once and shared by its viewers.

    A viewer gets one frame per round: its rows, then the worker status if it changed for
    that viewer, then its stats strip, all hx-swap-oob fragments (like the catch-up
    frame). Under load every round carries rows, so the status and the strip, each once
    a second, ride along instead of costing every viewer two more frames.
    """

    def __init__(self, merged: dict[Group, Merged]) -> None:
        self.merged = merged
        self.built = 0
        self._rows: dict[tuple, str | None] = {}
        self._joined: dict[tuple[int, ...], str] = {}
        self._wire: dict[int, bytes] = {}

    def wire(self, frame: str) -> bytes:
        """Return the frame as WebSocket bytes, encoded once per round for all viewers."""
        # Every frame of the round stays referenced by this cycle, so its id is stable.
        wire = self._wire.get(id(frame))
        if wire is None:
            wire = self._wire[id(frame)] = text_frame(frame)
        return wire

    def frame_for(self, viewer: Viewer, groups: Sequence[Group]) -> str | None:
        rows = status = stats = None
        for group in groups:
            parts = self.merged.get(group)
            if parts is None:
                continue
            if parts.rows:
                rows = self._rows_frame(group, parts.rows, viewer.feed_filter)
            if parts.status is not None:
                forwarded = status_key(parts.status)
                if viewer.status_forwarded != forwarded:
                    # Every second from the worker; unchanged, the page ticks the age.
                    viewer.status_forwarded = forwarded
                    status = parts.status["html"]
            if parts.stats_html is not None:
                stats = parts.stats_html
        pieces = [piece for piece in (rows, status, stats) if piece is not None]
        if len(pieces) < 2:
            return pieces[0] if pieces else None
        key = tuple(map(id, pieces))
        frame = self._joined.get(key)
        if frame is None:
            frame = self._joined[key] = "".join(pieces)
            self.built += 1
        return frame

    def _rows_frame(self, group: Group, rows: list[dict], feed_filter: FeedFilter) -> str | None:
        key = (group.name, feed_filter.min_usd, feed_filter.side, feed_filter.venue)
        if key not in self._rows:
            frame = self._rows[key] = rows_frame(rows, feed_filter)
            self.built += frame is not None
        return self._rows[key]
