"""The live table after a channel-layer outage: say it is interrupted, then fill the hole.

While Redis is away the worker still stores every event, but its broadcasts fail, and the
pub/sub layer resubscribes on its own when Redis returns: without this, the viewer's
socket stayed open and the rows stored meanwhile never reached it (2,003 rows in a 20 s
outage). Each web process's hub runs a FeedResync:

- once a second, a message round trip through the layer, sent to the channel the hub
  already reads one of its groups on (a new subscription made during an outage races
  channels-redis's own reconnect);
- when one fails, every viewer is told the live feed is interrupted (`_live_feed.html`)
  and row batches are held back;
- when one works again (so the hub's subscriptions are back too), every distinct
  (feed, filter) of its viewers is caught up from the database after the newest row the
  process had (one query each, as the page's own `since` does), then the held batches go
  out without the rows the catch-up carried, and viewers are told the feed is live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from channels.db import database_sync_to_async
from django.template.loader import render_to_string

from ..logs import RateLimitedLog
from ..selectors.feed import liquidation_last_id
from ..selectors.filters import FeedFilter
from .catchup import catch_up_html
from .contracts import BATCH_MESSAGE_TYPE, PROBE_MESSAGE_TYPE
from .frames import rows_oob

logger = logging.getLogger(__name__)

PROBE_SECONDS = 1.0
# A round trip slower than this counts as an outage (a busy process answers in ms).
PROBE_TIMEOUT_SECONDS = 3.0
# Catch-ups tried (one a second) before held rows go out without one (the database away
# too): the live feed resumes, and a reload fills what the tables missed.
CATCH_UP_TRIES = 5

FeedKey = tuple[str | None, FeedFilter]  # (symbol or None for all, the viewer's filter)


class Hub(Protocol):
    """What FeedResync needs from the fan-out hub (fanout.FanoutHub)."""

    channel_layer: Any

    def viewer_feeds(self) -> dict[FeedKey, list[Any]]: ...

    def probe_channel(self) -> str | None: ...

    async def send_to(self, viewers: Iterable[Any], frame: str) -> None: ...

    def wake(self) -> None: ...


def live_feed_fragment(*, live: bool) -> str:
    """Return the header's live-feed indicator as an oob swap."""
    state = "live" if live else "interrupted"
    return render_to_string("liquidations/_live_feed.html", {"state": state, "oob": True})


def _catch_up_frames(keys: list[FeedKey], after_id: int) -> tuple[int, dict[FeedKey, str]]:
    """Return the newest row id and, per (feed, filter), the rows stored after after_id."""
    top = liquidation_last_id()
    frames = {}
    for symbol, feed_filter in keys:
        html = catch_up_html(symbol=symbol, feed_filter=feed_filter, since=after_id)
        if html:
            frames[(symbol, feed_filter)] = rows_oob(html)
    return top, frames


class FeedResync:
    """Watch the channel layer for one hub; catch its viewers up after an outage."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.live = True
        # The newest row id this process's viewers were sent (None: not known yet).
        self.cursor: int | None = None
        self.caught_up = 0  # resyncs done, for tests and logs
        self._due = False
        self._failed_catch_ups = 0
        self._held: list[tuple[Any, dict]] = []
        self._expected = 0
        self._sending: asyncio.Future | None = None
        self._answered = asyncio.Event()
        self._log = RateLimitedLog(logger)

    def saw(self, rows: list[dict]) -> None:
        """Note the rows of a batch that went out (the catch-up starts after them)."""
        if rows:
            newest = max(row["id"] for row in rows)
            self.cursor = newest if self.cursor is None else max(self.cursor, newest)

    async def watch(self) -> None:
        """Probe the layer every second until cancelled; flag outages and their end."""
        try:
            while True:
                await asyncio.sleep(PROBE_SECONDS)
                if self.cursor is None:
                    with contextlib.suppress(Exception):  # the database away too: next time
                        self.cursor = await database_sync_to_async(liquidation_last_id)()
                ok = await self._probe()
                if not ok and self.live:
                    self.live = False
                    logger.warning("Live feed interrupted: the channel layer does not answer")
                    await self.hub.send_to(self._all_viewers(), live_feed_fragment(live=False))
                elif ok and not self.live:
                    self._due = True
                    self.hub.wake()
                self._log.flush()
        finally:
            # A send left behind would hold a half-made Redis connection past the hub.
            if self._sending is not None and not self._sending.done():
                await asyncio.wait([self._sending], timeout=PROBE_TIMEOUT_SECONDS)

    def answered(self, message: dict) -> None:
        """A probe came back (the hub's receive loop hands it here)."""
        if message.get("n") == self._expected:
            self._answered.set()

    async def arrange(self, pending: list[tuple[Any, dict]]) -> list[tuple[Any, dict]]:
        """Return what a fan-out cycle may send now: row batches wait while interrupted.

        Called by the hub's fan-out loop before each cycle, so nothing is fanned out
        while the catch-up runs, and held rows never land above the rows they follow.
        """
        if self.live and not self._due:
            return pending
        others = []
        for group, message in pending:
            if message.get("type") == BATCH_MESSAGE_TYPE:
                self._held.append((group, message))
            else:
                others.append((group, message))
        if self._due:
            others += await self._resync()
        return others

    def joined(self) -> str | None:
        """The frame a viewer joining now should get first (the feed is interrupted)."""
        return None if self.live else live_feed_fragment(live=False)

    async def _resync(self) -> list[tuple[Any, dict]]:
        feeds = self.hub.viewer_feeds()
        cursor = self.cursor if self.cursor is not None else 0
        try:
            top, frames = await database_sync_to_async(_catch_up_frames)(list(feeds), cursor)
        except Exception as exc:
            # The database away as well: try again on the next probes, then go on without.
            self._failed_catch_ups += 1
            self._due = False
            if self._failed_catch_ups < CATCH_UP_TRIES:
                return []
            logger.warning(
                "Live feed back without a catch-up (%r): tables miss the rows stored during "
                "the outage until reloaded",
                exc,
            )
            top, frames = cursor, {}
        self._failed_catch_ups = 0
        for key, frame in frames.items():
            await self.hub.send_to(feeds[key], frame)
        self.cursor = max(cursor, top)
        self.live, self._due = True, False
        self.caught_up += 1
        held, self._held = self._held, []
        await self.hub.send_to(self._all_viewers(feeds), live_feed_fragment(live=True))
        logger.info(
            "Live feed back: %d tables caught up from the database after row %d",
            len(frames),
            cursor,
        )
        later = []
        for group, message in held:
            rows = [row for row in message["rows"] if row["id"] > top]
            if rows:
                later.append((group, {**message, "rows": rows}))
        return later

    def _all_viewers(self, feeds: dict[FeedKey, list[Any]] | None = None) -> list[Any]:
        feeds = self.hub.viewer_feeds() if feeds is None else feeds
        return [viewer for viewers in feeds.values() for viewer in viewers]

    async def _probe(self) -> bool:
        """One round trip through the layer; False on failure (True: nothing to probe)."""
        channel = self.hub.probe_channel()
        if channel is None:
            return True
        if self._sending is not None and not self._sending.done():
            return False  # the previous probe's send still hangs
        self._expected += 1
        self._answered.clear()
        message = {"type": PROBE_MESSAGE_TYPE, "n": self._expected}
        # The send is never cancelled: redis-py leaks a half-made connection when it is.
        self._sending = asyncio.ensure_future(self.hub.channel_layer.send(channel, message))
        self._sending.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await asyncio.shield(self._sending)
                await self._answered.wait()
            return True
        except Exception as exc:
            self._log.log(
                logging.INFO, "probe", "Channel layer probe failed: %r", exc,
                reason=type(exc).__name__,
            )  # fmt: skip
            return False


def _retrieve(future: asyncio.Future) -> None:
    """Consume a probe send's outcome (a timed-out probe no longer awaits it)."""
    if not future.cancelled():
        future.exception()
