"""One market hub per web process: the symbol page's streams, counted and fanned out.

Each viewer socket (MarketConsumer) watches three streams of its symbol (aggTrade, the
kline of its timeframe, depth) plus the symbol's liquidation group, which the tape shows
highlighted. The hub joins each group once for the process and counts its viewers per
stream; it tells the worker the streams it needs ("market.watch", the whole set) on every
change and every MARKET_WATCH_RENEW_SECONDS, so the worker holds one upstream
subscription per stream whatever the number of viewers and web processes.

Fan-out rounds are at least FRAME_INTERVAL apart, so a viewer gets at most ~10 frames a
second however busy the tape; the worker publishes a book at most 4 times a second, and
each round renders it once per distinct (rounding, depth) among the viewers who get it.
New tape rows are rendered once per symbol per round. A viewer joining or changing its
settings gets what the hub holds at once: the tape, the book for its rounding and depth,
the live candle and the panels' states.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
from collections import deque
from typing import Any

from django.conf import settings

from ..upstream.binance_market import depth_stream, kline_stream, trade_stream
from .contracts import (
    BATCH_MESSAGE_TYPE,
    MARKET_BOOK_MESSAGE_TYPE,
    MARKET_KLINE_MESSAGE_TYPE,
    MARKET_STATE_MESSAGE_TYPE,
    MARKET_TAPE_ROWS,
    MARKET_TRADES_MESSAGE_TYPE,
    MARKET_WATCH_MESSAGE_TYPE,
    WORKER_CHANNEL,
    market_group,
    symbol_group,
)
from .market_frames import (
    MarketGroup,
    MarketRound,
    MarketSettings,
    MarketViewer,
    initial_frame,
    viewer_frame,
)
from .market_render import tape_liquidation_html

logger = logging.getLogger(__name__)

FRAME_INTERVAL = 0.1
RETRY_SECONDS = 1.0
_hub_ids = itertools.count(1)


def viewer_groups(
    symbol: str, market_settings: MarketSettings
) -> list[tuple[str, str, str | None]]:
    """(group, kind, stream) of everything a viewer of this symbol and timeframe watches."""
    streams = [
        ("trades", trade_stream(symbol)),
        ("book", depth_stream(symbol)),
        ("kline", kline_stream(symbol, market_settings.timeframe)),
    ]
    groups: list[tuple[str, str, str | None]] = [
        (market_group(stream), kind, stream) for kind, stream in streams
    ]
    groups.append((symbol_group(symbol), "liquidations", None))
    return groups


class MarketHub:
    """The market groups of one process, fanned out to its symbol-page sockets."""

    def __init__(self, *, channel_layer: Any) -> None:
        self.channel_layer = channel_layer
        self.hub_id = f"{socket.gethostname()}-{os.getpid()}-{next(_hub_ids)}"
        self.frames_sent = 0
        self._groups: dict[str, MarketGroup] = {}
        self._viewers: dict[MarketViewer, list[MarketGroup]] = {}
        self._tapes: dict[str, deque[tuple[int, str]]] = {}
        self._pending: list[tuple[MarketGroup, dict[str, Any]]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.closed = False

    @property
    def streams(self) -> dict[str, int]:
        """Stream → local viewers (what the worker is told)."""
        return {g.stream: len(g.viewers) for g in self._groups.values() if g.stream}

    async def join(self, viewer: MarketViewer) -> None:
        assert not self.closed, "a closed hub takes no viewers"
        self._viewers[viewer] = []
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._fanout_loop(), name="market-fanout"),
                asyncio.create_task(self._renew_loop(), name="market-watch-renew"),
            ]
        await self.update(viewer)

    async def update(self, viewer: MarketViewer) -> None:
        """(Re)register a viewer's groups from its settings; send it what the hub holds."""
        wanted = viewer_groups(viewer.symbol, viewer.market_settings)
        before = set(self.streams)
        old = self._viewers.get(viewer, [])
        groups = [self._group(name, kind, viewer.symbol, stream) for name, kind, stream in wanted]
        self._viewers[viewer] = groups
        for group in groups:
            group.viewers[viewer] = None
        emptied = [g for g in old if g not in groups and self._release(g, viewer)]
        if set(self.streams) != before:
            await self._send_watch()
        for group in emptied:
            await self._stop_group(group)
        for group in groups:
            await group.ready.wait()
        frame = initial_frame(self._tapes.get(viewer.symbol), viewer, groups)
        if frame:
            await self._send(viewer, frame)

    async def leave(self, viewer: MarketViewer) -> None:
        groups = self._viewers.pop(viewer, [])
        emptied = [g for g in groups if self._release(g, viewer)]
        if emptied:
            await self._send_watch()
        for group in emptied:
            await self._stop_group(group)
        if not self._viewers and not self.closed:
            await self._close()

    def _group(self, name: str, kind: str, symbol: str, stream: str | None) -> MarketGroup:
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = MarketGroup(
                name=name, kind=kind, symbol=symbol, stream=stream
            )
            group.task = asyncio.create_task(self._receive_loop(group), name=f"market:{name}")
        return group

    def _release(self, group: MarketGroup, viewer: MarketViewer) -> bool:
        """Remove the viewer from the group; True when the group has no viewer left."""
        group.viewers.pop(viewer, None)
        if group.viewers or self._groups.get(group.name) is not group:
            return False
        del self._groups[group.name]
        if not any(g.symbol == group.symbol for g in self._groups.values()):
            self._tapes.pop(group.symbol, None)
        return True

    async def _stop_group(self, group: MarketGroup) -> None:
        if group.task is not None:
            group.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await group.task

    async def _close(self) -> None:
        self.closed = True
        _hubs.pop((asyncio.get_running_loop(), id(self.channel_layer)), None)
        for task in self._tasks:
            if task is asyncio.current_task():
                continue  # the fan-out round whose send failed: it ends on its own
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the worker --------------------------------------------------------------------

    async def _send_watch(self) -> None:
        message = {"type": MARKET_WATCH_MESSAGE_TYPE, "hub": self.hub_id, "streams": self.streams}
        try:
            await self.channel_layer.send(WORKER_CHANNEL, message)
        except Exception as exc:
            # The renewal carries the same set a few seconds later.
            logger.warning("Telling the worker the watched market streams failed: %r", exc)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(settings.MARKET_WATCH_RENEW_SECONDS)
            if self.streams:
                await self._send_watch()

    # -- receiving ---------------------------------------------------------------------

    async def _receive_loop(self, group: MarketGroup) -> None:
        layer = self.channel_layer
        channel: str | None = None
        try:
            while True:
                try:
                    if channel is None:
                        channel = await layer.new_channel()
                    await layer.group_add(group.name, channel)
                    group.ready.set()
                    while True:
                        message = await layer.receive(channel)
                        # Looked up after the await: a round swaps the list meanwhile.
                        self._pending.append((group, message))
                        self._wake.set()
                except Exception as exc:
                    logger.warning("Market group %s: channel layer failed (%r)", group.name, exc)
                    group.ready.set()
                    await asyncio.sleep(RETRY_SECONDS)
        finally:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await layer.group_discard(group.name, channel)

    # -- fanning out -------------------------------------------------------------------

    async def _fanout_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            await self._wake.wait()
            await asyncio.sleep(max(0.0, last + FRAME_INTERVAL - loop.time()))
            self._wake.clear()
            last = loop.time()
            pending, self._pending = self._pending, []
            try:
                await self._fanout(pending)
            except Exception:
                logger.exception("A market fan-out round of %d messages failed", len(pending))

    async def _fanout(self, pending: list[tuple[MarketGroup, dict[str, Any]]]) -> None:
        current = MarketRound()
        for group, message in pending:
            self._absorb(current, group, message)
        viewers = dict.fromkeys(v for g in current.changed | current.states for v in g.viewers)
        for symbol in current.tape:
            viewers.update(
                dict.fromkeys(v for v, groups in self._viewers.items() if v.symbol == symbol)
            )
        for viewer in viewers:
            groups = self._viewers.get(viewer)
            if groups is None:
                continue
            frame = viewer_frame(current, viewer, groups)
            if frame:
                await self._send(viewer, frame)

    def _absorb(self, current: MarketRound, group: MarketGroup, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == MARKET_TRADES_MESSAGE_TYPE:
            self._set_state(current, group, "live")
            self._tape_rows(current, group, [(r["time_ms"], r["html"]) for r in message["rows"]])
        elif kind == BATCH_MESSAGE_TYPE:
            rows = [(row["trade_time_ms"], tape_liquidation_html(row)) for row in message["rows"]]
            self._tape_rows(current, group, rows)
        elif kind == MARKET_BOOK_MESSAGE_TYPE:
            group.book = message
            current.changed.add(group)
            self._set_state(current, group, message.get("state", "connecting"))
        elif kind == MARKET_KLINE_MESSAGE_TYPE:
            group.kline = message
            current.changed.add(group)
            self._set_state(current, group, "live")
        elif kind == MARKET_STATE_MESSAGE_TYPE:
            self._set_state(current, group, str(message.get("state", "")))

    def _set_state(self, current: MarketRound, group: MarketGroup, state: str) -> None:
        if group.state != state:
            group.state = state
            current.states.add(group)

    def _tape_rows(
        self, current: MarketRound, group: MarketGroup, rows: list[tuple[int, str]]
    ) -> None:
        if not rows:
            return
        current.tape.setdefault(group.symbol, []).extend(rows)
        tape = self._tapes.setdefault(group.symbol, deque(maxlen=MARKET_TAPE_ROWS))
        tape.extendleft(sorted(rows))

    async def _send(self, viewer: MarketViewer, frame: str) -> None:
        try:
            await viewer.send_frame(frame)
            self.frames_sent += 1
        except Exception:
            logger.exception("Sending a market frame failed; the viewer leaves the hub")
            await self.leave(viewer)


_hubs: dict[tuple[asyncio.AbstractEventLoop, int], MarketHub] = {}


def market_hub(channel_layer: Any) -> MarketHub:
    """Return this event loop's market hub for the channel layer, creating it if needed."""
    key = (asyncio.get_running_loop(), id(channel_layer))
    hub = _hubs.get(key)
    if hub is None or hub.closed:
        hub = _hubs[key] = MarketHub(channel_layer=channel_layer)
    return hub
