"""The ingest worker: a Channels worker consumer on channel "liquidations".

The upstream loop and the batch writer run as their own tasks; the consumer's handlers
only start, stop and report on them, so a control message never waits on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.worker import Worker
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections
from django.utils import timezone

from . import services
from .analytics_tasks import analytics_tasks_start, analytics_tasks_stop
from .binance import (
    Backoff,
    ExchangeInfoError,
    LiquidationEvent,
    MalformedFrame,
    UpstreamClient,
    fetch_exchange_info,
    parse_frame,
    stream_url,
)
from .selectors import symbol_info_cache_clear

logger = logging.getLogger(__name__)

WORKER_CHANNEL = "liquidations"
MAX_BATCH = 5000
# Raw frames received and not yet stored, in bytes. Past this bound the upstream socket is
# not read until the writer has stored half of it: a burst or a database outage then
# waits in TCP buffers and at the exchange (flow control), not in this process. Binance
# frames are ~185 bytes (~220 on a combined stream; a real capture), so 16 MiB holds
# 75,000-90,000 events: about three minutes of the whole market at its ~440/s ceiling.
MAX_BACKLOG_BYTES = 16 * 2**20
# Frames parsed between two yields to the event loop (a batch is up to MAX_BATCH).
PARSE_SLICE = 500
HEARTBEAT_SECONDS = 1.0
# How long stop() waits for the ingest's ended or cancelled tasks to finish.
STOP_TASKS_SECONDS = 10.0
# Embedded mode: how often the worker looks for a start/stop request in the database, and
# how old one may be (a sender that stops waiting withdraws it; this covers one that died).
REQUEST_POLL_SECONDS = 1.0
REQUEST_MAX_AGE_SECONDS = 30.0


@dataclass
class IngestStatus:
    state: str = "stopped"
    url: str = ""
    connected_since: datetime | None = None
    last_event_at: datetime | None = None
    events_received: int = 0
    events_stored: int = 0
    duplicates_skipped: int = 0
    malformed_dropped: int = 0
    reconnects: int = 0
    symbols_synced_at: datetime | None = None

    def as_message(self) -> dict:
        """Return the status as plain values (channel-layer messages are msgpack)."""
        data = asdict(self)
        for key in ("connected_since", "last_event_at", "symbols_synced_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


class Backlog:
    """Raw frames waiting to be stored, oldest first, bounded in bytes.

    put() never refuses a frame (it has been read off the socket: refusing would lose
    it); past max_bytes it says the backlog is full, and the reader waits for drained(),
    which completes once the writer has taken the backlog down to half the bound.
    """

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.closed = False
        self._frames: deque[bytes] = deque()
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: bytes) -> bool:
        """Keep the frame; return whether the backlog is now full."""
        self._frames.append(frame)
        self.size += len(frame)
        self._arrived.set()
        if self.size < self.max_bytes:
            return False
        self._drained.clear()
        return True

    async def drained(self) -> None:
        """Wait until the backlog is at most half full."""
        await self._drained.wait()

    async def take(self, limit: int) -> list[bytes]:
        """Wait for frames and return up to limit of them; [] once closed and empty."""
        while not self._frames:
            if self.closed:
                return []
            self._arrived.clear()
            await self._arrived.wait()
        return self.take_nowait(limit)

    def take_nowait(self, limit: int) -> list[bytes]:
        frames = self._frames
        taken = [frames.popleft() for _ in range(min(limit, len(frames)))]
        self.size -= sum(map(len, taken))
        if self.size <= self.max_bytes // 2:
            self._drained.set()
        return taken

    def close(self) -> None:
        """No more frames will come: take() returns what is left, then []."""
        self.closed = True
        self._arrived.set()

    def reopen(self) -> None:
        self.closed = False


class Ingest:
    """Upstream frames → raw backlog → parsed batches → store → one broadcast per group.

    Four tasks: the upstream client, the batch writer, the heartbeat (worker state and
    the end of an open connection gap) and the exchangeInfo sync. Every database call
    runs on one dedicated thread with its own connection.
    """

    def __init__(self, *, channel_layer, max_backlog_bytes: int = MAX_BACKLOG_BYTES) -> None:
        self.channel_layer = channel_layer
        self.status = IngestStatus()
        # Frames stay raw bytes until the writer takes them: a quarter of a parsed
        # LiquidationEvent (Decimals, strings: ~1 kB), and parsed once, in batches.
        self.queue = Backlog(max_bytes=max_backlog_bytes)
        # One thread, one database connection: writes never wait behind page requests
        # in the web process's shared sync thread (embedded mode).
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-db")
        self._client: UpstreamClient | None = None
        self._tasks: dict[str, asyncio.Task] = {}
        # The open hole in the record: (started_at, reason) and its ConnectionGap row.
        self._gap: tuple[datetime, str] | None = None
        self._gap_id: int | None = None
        self._idle_reason = "worker not running"
        self._state_failing_since: float | None = None
        self._state_failure_logged = 0.0
        self._analytics_tasks: list[asyncio.Task] = []

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        if self.running:
            return
        url = stream_url(
            base_url=settings.BINANCE_WS_BASE_URL, symbols=settings.LIQUIDATION_SYMBOLS
        )
        self.status.url = url
        self.status.state = "connecting"
        self.queue.reopen()
        # The record has a hole from the last sign of life of a worker until we connect.
        try:
            last_seen = await self._db_call(services.worker_state_last_seen)
        except Exception:
            logger.exception("Reading the last worker heartbeat failed")
            last_seen = None
        if last_seen is not None:
            await self._gap_open(last_seen, self._idle_reason)
        self._client = UpstreamClient(
            url=url,
            on_message=self._on_message,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            backoff=Backoff(
                initial=settings.BINANCE_RECONNECT_INITIAL_SECONDS,
                cap=settings.BINANCE_RECONNECT_MAX_SECONDS,
            ),
            max_connection_age=settings.BINANCE_MAX_CONNECTION_SECONDS,
            stable_after=settings.BINANCE_STABLE_CONNECTION_SECONDS,
            ping_interval=settings.BINANCE_PING_INTERVAL_SECONDS,
            ping_timeout=settings.BINANCE_PING_TIMEOUT_SECONDS,
        )
        self._tasks = {
            "upstream": asyncio.create_task(self._client.run(), name="ingest-upstream"),
            "writer": asyncio.create_task(self._write_loop(), name="ingest-writer"),
            "heartbeat": asyncio.create_task(self._heartbeat_loop(), name="ingest-heartbeat"),
            "symbols": asyncio.create_task(self._symbols_loop(), name="ingest-symbols"),
        }
        for task in self._tasks.values():
            task.add_done_callback(_log_task_end)
        self._analytics_tasks = analytics_tasks_start(
            channel_layer=self.channel_layer, since=last_seen
        )
        logger.info("Ingest started: %s", url)

    async def stop(self) -> None:
        """Stop streaming, then store and broadcast everything already received."""
        if not self.running:
            return
        tasks = self._tasks
        assert self._client is not None
        await self._client.stop()
        await _finish_or_cancel(tasks["upstream"], timeout=10)
        for name in ("heartbeat", "symbols"):
            tasks[name].cancel()
        # The writer stores what is left in the backlog, then ends; a writer stuck
        # retrying an unavailable database is given up on after a while.
        self.queue.close()
        await _finish_or_cancel(tasks["writer"], timeout=30)
        await _wait_ended(tasks.values(), timeout=STOP_TASKS_SECONDS)
        await analytics_tasks_stop(self._analytics_tasks)
        await self._flush_queue()
        self._tasks = {}
        now = timezone.now()
        await self._gap_close(now)
        self._idle_reason = "stream stopped"
        self.status.state = "stopped"
        self.status.connected_since = None
        await self._save_state()
        await services.worker_status_broadcast(channel_layer=self.channel_layer, status=self.status)
        logger.info(
            "Ingest stopped: %d received, %d stored, %d duplicates skipped, %d malformed dropped",
            self.status.events_received,
            self.status.events_stored,
            self.status.duplicates_skipped,
            self.status.malformed_dropped,
        )

    def _on_message(self, raw: bytes) -> Awaitable[None] | None:
        """Keep the frame for the writer; past the backlog bound, make the reader wait."""
        full = self.queue.put(raw)
        if not full or (self._client is not None and self._client.stopping):
            return None  # when stopping, the last frames are kept and nothing waits
        return self._hold()

    async def _hold(self) -> None:
        started = time.monotonic()
        logger.warning(
            "Backlog of %d unstored frames (%.1f MiB): upstream reads wait for the writer",
            len(self.queue),
            self.queue.size / 2**20,
        )
        await self.queue.drained()
        logger.info("Upstream reads resume after %.2f s", time.monotonic() - started)

    async def _parse(self, frames: list[bytes]) -> list[LiquidationEvent]:
        """Parse a batch of raw frames; count, log and skip the malformed ones."""
        events: list[LiquidationEvent] = []
        for start in range(0, len(frames), PARSE_SLICE):
            if start:
                await asyncio.sleep(0)  # a 5,000-frame batch is ~50 ms of CPU
            for raw in frames[start : start + PARSE_SLICE]:
                try:
                    events.append(parse_frame(raw))
                except MalformedFrame as exc:
                    self.status.malformed_dropped += 1
                    logger.warning("Dropped malformed frame (%s): %.200r", exc, _text(raw))
        self.status.events_received += len(events)
        return events

    async def _on_connected(self) -> None:
        now = timezone.now()
        self.status.state = "streaming"
        self.status.connected_since = now
        await self._gap_close(now)

    async def _on_disconnected(self, reason: str) -> None:
        now = timezone.now()
        self.status.state = "reconnecting"
        self.status.connected_since = None
        if self._client is not None and self._client.stopping:
            # A requested stop: the hole starts at the stop (the next start records it).
            return
        self.status.reconnects += 1
        await self._gap_open(now, reason)

    # -- connection gaps ---------------------------------------------------------------

    async def _gap_open(self, started_at: datetime, reason: str) -> None:
        if self._gap is not None:
            return
        self._gap = (started_at, reason)
        try:
            self._gap_id = await self._db_call(
                services.connection_gap_open, started_at=started_at, reason=reason
            )
        except Exception:
            # Kept in memory; recorded in full when it closes.
            logger.exception("Recording the start of a connection gap failed")
            self._gap_id = None

    async def _gap_close(self, ended_at: datetime) -> None:
        if self._gap is None:
            return
        started_at, reason = self._gap
        try:
            if self._gap_id is not None:
                await self._db_call(
                    services.connection_gap_extend, gap_id=self._gap_id, ended_at=ended_at
                )
            else:
                await self._db_call(
                    services.connection_gap_record,
                    started_at=started_at,
                    ended_at=ended_at,
                    reason=reason,
                )
        except Exception:
            logger.exception("Recording the end of a connection gap failed")
            return
        logger.info(
            "Connection gap recorded: %s → %s (%s)",
            started_at.isoformat(),
            ended_at.isoformat(),
            reason,
        )
        self._gap = None
        self._gap_id = None

    # -- writing -----------------------------------------------------------------------

    async def _write_loop(self) -> None:
        # Adaptive batching: an idle writer stores the first event at once; while a
        # write is in flight, newer frames pile up in the backlog and go in the next batch.
        # Under load batches are also held LIQUIDATION_BATCH_INTERVAL apart (the first
        # event after a quiet spell still goes at once): each batch costs a transaction,
        # a publish and a fan-out round in every web process, whatever its size.
        interval = settings.LIQUIDATION_BATCH_INTERVAL
        loop = asyncio.get_running_loop()
        last_batch_at = -interval
        storing: asyncio.Task | None = None
        try:
            while frames := await self.queue.take(MAX_BATCH):
                # Parsed while the previous batch is being stored: its database round
                # trips release the GIL, so parsing costs the writer no extra time.
                batch = await self._parse(frames)
                if storing is not None:
                    await storing
                wait = last_batch_at + interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                last_batch_at = loop.time()
                if len(frames) < MAX_BATCH:
                    batch += await self._parse(self.queue.take_nowait(MAX_BATCH - len(frames)))
                del frames
                storing = (
                    asyncio.create_task(self._store(batch), name="ingest-store") if batch else None
                )
                del batch
            if storing is not None:
                await storing
        except asyncio.CancelledError:
            if storing is not None:
                storing.cancel()
            raise

    async def _flush_queue(self) -> None:
        """Store what a cancelled writer left in the backlog (a few tries, then give up)."""
        while frames := self.queue.take_nowait(MAX_BATCH):
            batch = await self._parse(frames)
            if batch:
                await self._store(batch, retries=2)

    async def _store(self, batch: list[LiquidationEvent], *, retries: int | None = None) -> None:
        """Store and broadcast a batch; retry while the database is unavailable."""
        delay = 0.5
        attempt = 0
        while True:
            try:
                stored, messages = await self._db_call(_store_and_render, batch)
                break
            except (OperationalError, InterfaceError) as exc:
                attempt += 1
                if retries is not None and attempt > retries:
                    logger.error("Gave up storing %d events: %s", len(batch), exc)
                    return
                # Database away or locked: keep the batch, try again. Events arriving
                # meanwhile wait in the queue.
                logger.warning(
                    "Storing %d events failed (%s); retry %d in %.1f s",
                    len(batch),
                    exc,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            except Exception:
                # Not transient (a bug or a value the database refuses): drop it loudly
                # rather than block the stream forever.
                logger.exception("Storing a batch of %d events failed; batch dropped", len(batch))
                return
        self.status.events_stored += len(stored)
        self.status.duplicates_skipped += len(batch) - len(stored)
        if stored:
            self.status.last_event_at = timezone.now()
            try:
                await services.liquidation_broadcast(
                    channel_layer=self.channel_layer, messages=messages
                )
            except Exception:
                logger.exception("Broadcasting %d stored rows failed", len(stored))

    # -- background loops ----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._save_state()
            await services.worker_status_broadcast(
                channel_layer=self.channel_layer, status=self.status
            )
            if self._gap_id is not None:
                # An open hole grows with every heartbeat, so a crash still leaves it
                # recorded up to the last moment this worker was alive.
                with contextlib.suppress(Exception):
                    await self._db_call(
                        services.connection_gap_extend,
                        gap_id=self._gap_id,
                        ended_at=timezone.now(),
                    )
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _symbols_loop(self) -> None:
        """Sync the Symbol table from exchangeInfo now and hourly; retry failures sooner."""
        retry = settings.BINANCE_EXCHANGE_INFO_RETRY_SECONDS
        while True:
            try:
                await self.sync_symbols()
                wait = settings.BINANCE_EXCHANGE_INFO_REFRESH_SECONDS
                retry = settings.BINANCE_EXCHANGE_INFO_RETRY_SECONDS
            except ExchangeInfoError as exc:
                logger.warning("Exchange info sync failed (%s); retry in %.0f s", exc, retry)
                wait, retry = retry, min(retry * 2, settings.BINANCE_EXCHANGE_INFO_REFRESH_SECONDS)
            except Exception:
                logger.exception("Exchange info sync failed; retry in %.0f s", retry)
                wait, retry = retry, min(retry * 2, settings.BINANCE_EXCHANGE_INFO_REFRESH_SECONDS)
            await asyncio.sleep(wait)

    async def sync_symbols(self) -> int:
        """Fetch exchangeInfo and upsert the Symbol table; return the symbols synced."""
        specs = await fetch_exchange_info(
            base_url=settings.BINANCE_REST_BASE_URL,
            timeout=settings.BINANCE_REST_TIMEOUT_SECONDS,
        )
        count = await self._db_call(services.symbol_upsert_many, symbols=specs)
        symbol_info_cache_clear()
        self.status.symbols_synced_at = timezone.now()
        logger.info("Exchange info synced: %d symbols", count)
        return count

    async def _save_state(self) -> None:
        try:
            await self._db_call(services.worker_state_save, status=self.status)
        except Exception as exc:
            # Once with the traceback, then a line a minute while the database is away.
            now = time.monotonic()
            if self._state_failing_since is None:
                logger.exception("Saving the worker state failed")
                self._state_failing_since = self._state_failure_logged = now
            elif now - self._state_failure_logged >= 60:
                logger.warning(
                    "Saving the worker state still failing after %.0f s: %s",
                    now - self._state_failing_since,
                    exc,
                )
                self._state_failure_logged = now
            return
        if self._state_failing_since is not None:
            logger.info("Saving the worker state works again")
            self._state_failing_since = None

    async def _db_call(self, func, *args, **kwargs):
        return await sync_to_async(
            _with_connection(func), thread_sensitive=False, executor=self._db
        )(*args, **kwargs)

    async def aclose(self) -> None:
        """Close the writer thread's database connection and the thread itself."""
        with contextlib.suppress(Exception):
            await self._db_call(connections.close_all)
        self._db.shutdown(wait=True)


async def _wait_ended(tasks: Iterable[asyncio.Task], *, timeout: float) -> None:
    """Wait for ended or cancelled tasks to finish; name any still running after timeout.

    A bounded wait: a task that swallowed its cancellation must not hang the stop (seen
    once in a benchmark, never reproduced), and the log says which one it was.
    """
    tasks = list(tasks)
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        logger.error("Task %s is still running %g s after it was stopped", task.get_name(), timeout)


async def _finish_or_cancel(task: asyncio.Task, *, timeout: float) -> None:
    """Wait for a task to end on its own; cancel it if it takes longer than timeout."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=timeout)
    except TimeoutError:
        logger.error("Task %s did not finish within %g s; cancelling it", task.get_name(), timeout)
        task.cancel()
    except Exception:
        logger.exception("Task %s failed", task.get_name())


def _log_task_end(task: asyncio.Task) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("Ingest task %s died", task.get_name(), exc_info=exc)


def _text(raw: str | bytes) -> str:
    """Return a frame as text for a log line (invalid UTF-8 shown as U+FFFD)."""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def _with_connection(func):
    def call(*args, **kwargs):
        close_old_connections()
        return func(*args, **kwargs)

    return call


# Renders a stored chunk of a big batch while the DB thread stores the next chunk.
_render = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-render")


def _store_and_render(batch: list[LiquidationEvent]):
    # The new rows are rendered from the events just stored: nothing is read back.
    return services.liquidation_ingest(events=batch, render_executor=_render)


class LiquidationWorkerConsumer(AsyncConsumer):
    """Handle stream.start / stream.stop / stream.status on the worker channel."""

    ingest: Ingest | None = None

    async def __call__(self, scope, receive, send) -> None:
        """Dispatch what the worker hands in from channel "liquidations", one at a time.

        Unlike the base class, this does not also listen on a private channel that nobody
        sends to: a channel-layer error there would end the consumer, and with it the
        control over the ingest. A failing handler is logged; the consumer lives on.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        while True:
            message = await receive()
            try:
                await self.dispatch(message)
            except StopConsumer:
                return
            except Exception:
                logger.exception("Worker control message %r failed", message.get("type"))

    async def stream_start(self, message: dict) -> None:
        await self._ingest().start()
        await self._reply(message)

    async def stream_stop(self, message: dict) -> None:
        ingest = self._ingest()
        await ingest.stop()
        # Reported even when it was stopped already: a request left in the database
        # is done when the recorded state says so (a stopped ingest has no heartbeat).
        await ingest._save_state()
        await self._reply(message)

    async def stream_status(self, message: dict) -> None:
        await self._reply(message)

    async def stream_shutdown(self, message: dict) -> None:
        """Stop and flush, then end this consumer (sent by the process on SIGINT/SIGTERM)."""
        ingest = self._ingest()
        await ingest.stop()
        await ingest.aclose()
        raise StopConsumer()

    def _ingest(self) -> Ingest:
        if self.ingest is None:
            self.ingest = Ingest(channel_layer=self.channel_layer)
        return self.ingest

    async def _reply(self, message: dict) -> None:
        reply_channel = message.get("reply_channel")
        if reply_channel:
            await self.channel_layer.send(
                reply_channel, {"type": "stream.status_reply", **self._ingest().status.as_message()}
            )


class LiquidationWorker(Worker):
    """A Channels worker that starts streaming at boot and shuts down cleanly.

    In embedded mode it also takes start/stop requests left in the database by
    `manage.py liquidations` from another process (the in-memory layer cannot carry them).
    """

    _requests: asyncio.Task | None = None

    async def listener(self, channel: str) -> None:
        """Hand channel messages to the consumer; ride out channel-layer outages."""
        while True:
            try:
                message = await self.channel_layer.receive(channel)
            except Exception as exc:
                # Redis restarting or unreachable: streaming goes on, control waits.
                logger.warning("Channel layer receive failed (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            if not message.get("type"):
                logger.warning("Dropped a worker message without a type: %.200r", message)
                continue
            scope = {"type": "channel", "channel": channel}
            queue = self.get_or_create_application_instance(channel, scope)
            await queue.put(message)

    async def handle(self) -> None:
        # Streaming starts without waiting for any message: the consumer instance is
        # created now and told to start directly, not through the layer.
        queue = self.get_or_create_application_instance(
            WORKER_CHANNEL, {"type": "channel", "channel": WORKER_CHANNEL}
        )
        await queue.put({"type": "stream.start"})
        if settings.EMBEDDED_WORKER:
            self._requests = asyncio.create_task(
                self._database_requests(queue), name="worker-requests"
            )
        await super().handle()

    async def _database_requests(self, queue: asyncio.Queue) -> None:
        """Hand start/stop requests from the database to the consumer, in turn with others."""
        take = database_sync_to_async(services.worker_request_take)
        failing = False
        while True:
            await asyncio.sleep(REQUEST_POLL_SECONDS)
            try:
                action = await take(max_age=REQUEST_MAX_AGE_SECONDS)
            except Exception as exc:
                if not failing:  # once per outage, not every second
                    logger.warning("Reading worker requests failed (%s); retrying", exc)
                failing = True
                continue
            failing = False
            if action is not None:
                logger.info("Worker request from the database: %s", action)
                await queue.put({"type": f"stream.{action}"})

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Ask the worker consumer to stop and flush, and wait for it."""
        if self._requests is not None:
            self._requests.cancel()
        details = self.application_instances.get(WORKER_CHANNEL)
        if details is None:
            return
        await details["input_queue"].put({"type": "stream.shutdown"})
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(details["future"]), timeout=timeout)
        logger.info("Worker shut down in %.2f s", time.monotonic() - started)


def worker_create(*, channel_layer=None) -> LiquidationWorker:
    """Return a worker serving only the ingest channel (no HTTP stack to load)."""
    from channels.routing import ChannelNameRouter

    return LiquidationWorker(
        application=ChannelNameRouter({WORKER_CHANNEL: LiquidationWorkerConsumer.as_asgi()}),
        channels=[WORKER_CHANNEL],
        channel_layer=channel_layer or get_channel_layer(),
    )
