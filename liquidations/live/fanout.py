"""One fan-out hub per process: channel-layer groups in, one frame per filter out.

Every viewer socket used to join its three groups itself, so each batch woke every
consumer task in the process, which then filtered the rows and built its own frame
(about 45 µs per viewer per batch in Channels' dispatch, the filter and the send: most of
a daphne process's CPU with 500 viewers, make bench). The hub joins each group once per
process, on a channel of its own, while at least one local viewer wants it. Its fan-out
task takes everything that arrived since its last cycle, merges the row batches, builds
each distinct frame once per distinct filter and hands it to every viewer with that
filter, one after the other, with no task switch per viewer. While a cycle runs, new
messages pile up for the next; under load the next cycle also waits out a window sized
from what this process's cycles cost (coalescing.py), so writing frames stays within a
share of its time. A quiet process never waits.

Each distinct frame is also encoded once per round as WebSocket bytes; under daphne a
viewer's copy is then one send() on its socket (wire.py), else the ASGI send. Sends are
awaited inline and never suspend under daphne: what a socket cannot take at once waits
in Twisted's buffer for that socket, so a slow or dead viewer costs its own memory, never
the others' time (autobahn's ping timeout closes a peer that stops reading). A send that
raises drops that viewer from the hub, not the hub.

Groups carry three message types: "liquidations.batch" (rows, filtered per viewer),
"worker.status" (forwarded when its state or last event changed for that viewer) and
"liquidations.stats" (forwarded as is). Messages are shared between viewers: read-only.

A channel-layer outage (Redis away) is watched for by resync.FeedResync: viewers are told
the live feed is interrupted, and caught up from the database when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from .coalescing import REPORT_SECONDS, CoalescingWindow, WindowReport
from .contracts import (
    BATCH_MESSAGE_TYPE,
    PROBE_MESSAGE_TYPE,
    STATS_MESSAGE_TYPE,
    feed_symbol,
    is_feed_group,
)
from .contracts import WORKER_STATUS_MESSAGE_TYPE as STATUS_MESSAGE_TYPE
from .fanout_cycle import Cycle, Group, Merged, Viewer
from .resync import FeedKey, FeedResync
from .wire import text_frame

logger = logging.getLogger(__name__)

# Sends between two yields to the event loop, so a long cycle lets the channel layer's
# readers (and, through the ASGI send, Twisted's writes) run between its viewers.
YIELD_EVERY = 50
# Layers forget group members after a while (the in-memory and core layers: a day;
# the in-memory layer also drops a member whose message expired): re-join well before.
GROUP_REFRESH_SECONDS = 600.0
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0


@dataclass
class HubCounters:
    cycles: int = 0
    messages: int = 0
    frames_built: int = 0
    frames_sent: int = 0
    viewers_dropped: int = 0


class FanoutHub:
    """Channel-layer groups of one process, fanned out to its viewer sockets.

    Get it with fanout_hub(); a hub without viewers stops its tasks and is forgotten.
    """

    def __init__(self, *, channel_layer) -> None:
        self.channel_layer = channel_layer
        self.counters = HubCounters()
        self.coalescing = CoalescingWindow(
            budget=settings.LIVE_FANOUT_BUDGET, max_window=settings.LIVE_FANOUT_MAX_WINDOW
        )
        self._reported_at = time.monotonic()
        self._groups: dict[str, Group] = {}
        self._viewers: dict[Viewer, tuple[Group, ...]] = {}
        self._pending: list[tuple[Group, dict]] = []
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._fanout_task: asyncio.Task | None = None
        self._refresh_task: asyncio.Task | None = None
        self._watch_task: asyncio.Task | None = None
        self.resync = FeedResync(self)
        self._sends_since_yield = 0
        self._yielded = 0.0  # seconds the current round spent yielding to other tasks
        self._unhandled_types: set[str] = set()
        self.closed = False

    @property
    def groups(self) -> dict[str, int]:
        """Group name → local viewers in it (for tests and logs)."""
        return {name: len(group.viewers) for name, group in self._groups.items()}

    @property
    def viewer_count(self) -> int:
        return len(self._viewers)

    async def join(self, viewer: Viewer, groups: Iterable[str]) -> None:
        """Register a viewer for these groups; return once the hub is in each of them.

        Joining a group the hub is already in costs nothing on the channel layer. If the
        layer fails, the viewer stays registered and the hub keeps retrying.
        """
        assert not self.closed, "a closed hub takes no viewers"
        if viewer in self._viewers:
            raise ValueError("viewer already joined")
        joined = tuple(self._group(name) for name in dict.fromkeys(groups))
        self._viewers[viewer] = joined
        for group in joined:
            group.viewers[viewer] = None
        if self._fanout_task is None:
            self._fanout_task = asyncio.create_task(self._fanout_loop(), name="fanout-hub")
            self._refresh_task = asyncio.create_task(self._refresh_loop(), name="fanout-refresh")
            self._watch_task = asyncio.create_task(self.resync.watch(), name="fanout-watch")
        for group in joined:
            await group.ready.wait()
        if (frame := self.resync.joined()) is not None:
            await self._deliver(viewer, frame, text_frame(frame))

    async def leave(self, viewer: Viewer) -> None:
        """Unregister a viewer; leave the groups no other local viewer wants."""
        await self._close_groups(self._forget(viewer))

    def _group(self, name: str) -> Group:
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = Group(name=name)
            group.task = asyncio.create_task(self._receive_loop(group), name=f"fanout:{name}")
        return group

    def _forget(self, viewer: Viewer) -> list[Group]:
        """Unregister a viewer now; return its groups left without viewers."""
        emptied = []
        for group in self._viewers.pop(viewer, ()):
            group.viewers.pop(viewer, None)
            if not group.viewers and self._groups.get(group.name) is group:
                del self._groups[group.name]
                emptied.append(group)
        return emptied

    async def _close_groups(self, groups: list[Group]) -> None:
        for group in groups:
            assert group.task is not None
            group.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await group.task
        if not self._viewers and not self._groups and not self.closed:
            await self._close()

    async def _close(self) -> None:
        self.closed = True
        _hubs.pop((asyncio.get_running_loop(), id(self.channel_layer)), None)
        for task in (self._fanout_task, self._refresh_task, self._watch_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- receiving ---------------------------------------------------------------------

    async def _receive_loop(self, group: Group) -> None:
        """Join the group on a channel of the hub's own and queue what arrives there."""
        layer = self.channel_layer
        delay = RETRY_INITIAL_SECONDS
        failing = False
        try:
            while True:
                try:
                    if group.channel is None:
                        group.channel = await layer.new_channel()
                    await layer.group_add(group.name, group.channel)
                    group.ready.set()
                    if failing:
                        logger.info("Fan-out rejoined group %s", group.name)
                        failing = False
                    while True:
                        message = await layer.receive(group.channel)
                        if message.get("type") == PROBE_MESSAGE_TYPE:
                            self.resync.answered(message)
                            continue
                        self._pending.append((group, message))
                        self._wakeup.set()
                        delay = RETRY_INITIAL_SECONDS
                except Exception as exc:
                    # Redis restarting or unreachable: viewers keep their sockets, the
                    # hub rejoins (a restarted Redis has forgotten the membership).
                    logger.warning(
                        "Fan-out of group %s: channel layer failed (%r); retrying in %.1f s",
                        group.name,
                        exc,
                        delay,
                    )
                    failing = True
                    group.ready.set()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
        finally:
            if group.channel is not None:
                try:
                    await layer.group_discard(group.name, group.channel)
                except Exception as exc:
                    logger.warning("Fan-out could not leave group %s: %r", group.name, exc)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            for group in list(self._groups.values()):
                if group.channel is None:
                    continue
                try:
                    await self.channel_layer.group_add(group.name, group.channel)
                except Exception as exc:
                    # The receive loop sees the outage too and rejoins when it ends.
                    logger.warning("Fan-out could not refresh group %s: %r", group.name, exc)

    # -- fanning out -------------------------------------------------------------------

    async def _fanout_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            # Under load, what arrives during the window goes out in this same cycle.
            held = self.coalescing.hold(time.monotonic())
            if held > 0:
                await asyncio.sleep(held)
            self._wakeup.clear()
            pending, self._pending = self._pending, []
            self.counters.cycles += 1
            self.counters.messages += len(pending)
            sent = self.counters.frames_sent
            try:
                pending = await self.resync.arrange(pending)
                started = time.monotonic()
                self._yielded = 0.0
                await self._fanout(pending)
                self.coalescing.round_done(
                    started=started,
                    ended=time.monotonic(),
                    frames=self.counters.frames_sent - sent,
                    held=held,
                    yielded=self._yielded,
                )
            except Exception:
                # A bug in one cycle must not end the live feed of the whole process.
                logger.exception("A fan-out cycle of %d messages failed", len(pending))
            self._report_now_and_then()

    def window_report(self, *, restart: bool = False) -> WindowReport:
        """The coalescing window, its reason and this process's rounds since the last report."""
        return self.coalescing.report(viewers=self.viewer_count, restart=restart)

    def _report_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._reported_at >= REPORT_SECONDS:
            self._reported_at = now
            logger.info(self.window_report(restart=True).line())

    async def _fanout(self, pending: list[tuple[Group, dict]]) -> None:
        merged: dict[Group, Merged] = {}
        for group, message in pending:
            self._merge(merged.setdefault(group, Merged()), group, message)
        # A snapshot: viewers may leave (or join) while the cycle yields.
        viewers = dict.fromkeys(viewer for group in merged for viewer in group.viewers)
        cycle = Cycle(merged)
        for viewer in viewers:
            frame = cycle.frame_for(viewer, self._viewers.get(viewer, ()))
            if frame is not None:
                await self._deliver(viewer, frame, cycle.wire(frame))
        self.counters.frames_built += cycle.built

    def _merge(self, parts: Merged, group: Group, message: dict) -> None:
        kind = message.get("type")
        if kind == BATCH_MESSAGE_TYPE:
            parts.rows.extend(message["rows"])
            self.resync.saw(message["rows"])
        elif kind == STATUS_MESSAGE_TYPE:
            parts.status = message
        elif kind == STATS_MESSAGE_TYPE:
            parts.stats_html = message["html"]
        elif kind not in self._unhandled_types:
            self._unhandled_types.add(str(kind))
            logger.warning(
                "Fan-out dropped %r messages from group %s: no handler", kind, group.name
            )

    # -- what FeedResync uses ------------------------------------------------------------

    def viewer_feeds(self) -> dict[FeedKey, list[Viewer]]:
        """Viewers by (feed symbol or None for all, filter): one catch-up query each."""
        feeds: dict[FeedKey, list[Viewer]] = {}
        for viewer, groups in self._viewers.items():
            for group in groups:
                if is_feed_group(group.name):
                    key = (feed_symbol(group.name), viewer.feed_filter)
                    feeds.setdefault(key, []).append(viewer)
        return feeds

    async def send_to(self, viewers: Iterable[Viewer], frame: str) -> None:
        """Send one frame to these viewers (encoded once)."""
        wire = text_frame(frame)
        for viewer in viewers:
            await self._deliver(viewer, frame, wire)

    def probe_channel(self) -> str | None:
        """A channel the hub reads (one of its groups'), for FeedResync's round trips."""
        for group in self._groups.values():
            if group.channel is not None:
                return group.channel
        return None

    def wake(self) -> None:
        """Run a fan-out cycle soon, even with nothing pending (a resync is due)."""
        self._wakeup.set()

    async def _deliver(self, viewer: Viewer, frame: str, wire: bytes) -> None:
        if viewer not in self._viewers:
            return  # left during this cycle
        try:
            await viewer.send_frame(frame, wire)
            self.counters.frames_sent += 1
        except Exception:
            logger.exception("Sending a frame to a viewer failed; the viewer leaves the fan-out")
            self.counters.viewers_dropped += 1
            emptied = self._forget(viewer)
            if emptied:
                task = asyncio.create_task(self._close_groups(emptied))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._sends_since_yield += 1
        if self._sends_since_yield >= YIELD_EVERY:
            self._sends_since_yield = 0
            # What other tasks do while the round yields is not the round's cost.
            paused = time.monotonic()
            await asyncio.sleep(0)
            self._yielded += time.monotonic() - paused


# One hub per (event loop, channel layer); a hub removes itself when its last viewer goes.
_hubs: dict[tuple[asyncio.AbstractEventLoop, int], FanoutHub] = {}


def fanout_hub(channel_layer) -> FanoutHub:
    """Return this event loop's hub for the channel layer, creating it if needed."""
    key = (asyncio.get_running_loop(), id(channel_layer))
    hub = _hubs.get(key)
    if hub is None:
        hub = _hubs[key] = FanoutHub(channel_layer=channel_layer)
    return hub


def window_reports() -> list[dict]:
    """Each hub of this process: its viewers, coalescing window and why (for /health)."""
    return [hub.window_report().as_dict() for hub in list(_hubs.values())]
