"""The ingest worker: a Channels worker consumer on channel "liquidations".

The upstream loop and the batch writer run as their own tasks; the consumer's handlers
only start, stop and report on them, so a control message never waits on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.worker import Worker
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from . import services
from .analytics_tasks import analytics_tasks_start, analytics_tasks_stop
from .binance import (
    Backoff,
    LiquidationEvent,
    MalformedFrame,
    UpstreamClient,
    parse_frame,
    stream_url,
)

logger = logging.getLogger(__name__)

WORKER_CHANNEL = "liquidations"
MAX_BATCH = 5000
HEARTBEAT_SECONDS = 1.0


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

    def as_message(self) -> dict:
        """Return the status as plain values (channel-layer messages are msgpack)."""
        data = asdict(self)
        for key in ("connected_since", "last_event_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


class Ingest:
    """Upstream frames → parsed events → batched store → one broadcast per group."""

    def __init__(self, *, channel_layer) -> None:
        self.channel_layer = channel_layer
        self.status = IngestStatus()
        self.queue: asyncio.Queue[LiquidationEvent] = asyncio.Queue()
        # One thread, one database connection: writes never wait behind page requests
        # in the web process's shared sync thread (embedded mode).
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-db")
        self._client: UpstreamClient | None = None
        self._tasks: list[asyncio.Task] = []
        self._analytics_tasks: list[asyncio.Task] = []
        self._disconnected_at: datetime | None = None
        self._disconnect_reason = "worker not running"

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
        self._disconnected_at = await self._db_call(services.worker_state_last_seen)
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
        )
        self._tasks = [
            asyncio.create_task(self._client.run(), name="ingest-upstream"),
            asyncio.create_task(self._write_loop(), name="ingest-writer"),
            asyncio.create_task(self._heartbeat_loop(), name="ingest-heartbeat"),
        ]
        self._analytics_tasks = analytics_tasks_start(
            channel_layer=self.channel_layer, since=self._disconnected_at
        )
        logger.info("Ingest started: %s", url)

    async def stop(self) -> None:
        """Stop streaming, then store and broadcast everything already received."""
        if not self.running:
            return
        upstream, writer, heartbeat = self._tasks
        assert self._client is not None
        await self._client.stop()
        await upstream
        writer.cancel()
        heartbeat.cancel()
        for task in (writer, heartbeat):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await analytics_tasks_stop(self._analytics_tasks)
        await self._flush_queue()
        self._tasks = []
        self.status.state = "stopped"
        self.status.connected_since = None
        self._disconnected_at = self._disconnected_at or timezone.now()
        await self._save_state()
        await services.worker_status_broadcast(channel_layer=self.channel_layer, status=self.status)
        logger.info(
            "Ingest stopped: %d stored, %d malformed dropped",
            self.status.events_stored,
            self.status.malformed_dropped,
        )

    def _on_message(self, raw: str | bytes) -> None:
        try:
            event = parse_frame(raw)
        except MalformedFrame as exc:
            self.status.malformed_dropped += 1
            logger.warning("Dropped malformed frame (%s): %.200r", exc, raw)
            return
        self.status.events_received += 1
        self.queue.put_nowait(event)

    async def _on_connected(self) -> None:
        now = timezone.now()
        self.status.state = "streaming"
        self.status.connected_since = now
        if self._disconnected_at is not None:
            await self._db_call(
                services.connection_gap_record,
                started_at=self._disconnected_at,
                ended_at=now,
                reason=self._disconnect_reason,
            )
        self._disconnected_at = None

    async def _on_disconnected(self, reason: str) -> None:
        self.status.state = "reconnecting"
        self.status.connected_since = None
        self.status.reconnects += 1
        self._disconnected_at = timezone.now()
        self._disconnect_reason = reason

    async def _write_loop(self) -> None:
        # Adaptive batching: an idle writer stores the first event at once; while a
        # write is in flight, newer events pile up in the queue and go in the next batch.
        while True:
            batch = [await self.queue.get()]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self._store(batch)

    async def _flush_queue(self) -> None:
        while not self.queue.empty():
            batch = []
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self._store(batch)

    async def _store(self, batch: list[LiquidationEvent]) -> None:
        try:
            stored, messages = await self._db_call(_store_and_render, batch)
        except Exception:
            # Keep streaming: the events stay upstream-replayable, the error is loud.
            logger.exception("Storing a batch of %d events failed", len(batch))
            return
        self.status.events_stored += len(stored)
        self.status.duplicates_skipped += len(batch) - len(stored)
        if stored:
            self.status.last_event_at = timezone.now()
            await services.liquidation_broadcast(
                channel_layer=self.channel_layer, messages=messages
            )

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._save_state()
            await services.worker_status_broadcast(
                channel_layer=self.channel_layer, status=self.status
            )
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _save_state(self) -> None:
        try:
            await self._db_call(services.worker_state_save, status=self.status)
        except Exception:
            logger.exception("Saving the worker state failed")

    async def _db_call(self, func, *args, **kwargs):
        return await sync_to_async(
            _with_connection(func), thread_sensitive=False, executor=self._db
        )(*args, **kwargs)

    async def aclose(self) -> None:
        """Close the writer thread's database connection and the thread itself."""
        await self._db_call(connections.close_all)
        self._db.shutdown(wait=True)


def _with_connection(func):
    def call(*args, **kwargs):
        close_old_connections()
        return func(*args, **kwargs)

    return call


def _store_and_render(batch: list[LiquidationEvent]):
    stored = services.liquidation_store_batch(events=batch)
    return stored, services.liquidation_messages(liquidations=stored)


class LiquidationWorkerConsumer(AsyncConsumer):
    """Handle stream.start / stream.stop / stream.status on the worker channel."""

    ingest: Ingest | None = None

    async def stream_start(self, message: dict) -> None:
        await self._ingest().start()
        await self._reply(message)

    async def stream_stop(self, message: dict) -> None:
        await self._ingest().stop()
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
    """A Channels worker that starts streaming at boot and shuts down cleanly."""

    async def handle(self) -> None:
        # Streaming starts without waiting for any message: the consumer instance is
        # created now and told to start directly, not through the layer.
        queue = self.get_or_create_application_instance(
            WORKER_CHANNEL, {"type": "channel", "channel": WORKER_CHANNEL}
        )
        await queue.put({"type": "stream.start"})
        await super().handle()

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Ask the worker consumer to stop and flush, and wait for it."""
        details = self.application_instances.get(WORKER_CHANNEL)
        if details is None:
            return
        await details["input_queue"].put({"type": "stream.shutdown"})
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(details["future"]), timeout=timeout)
        logger.info("Worker shut down in %.2f s", time.monotonic() - started)


def worker_create(*, channel_layer=None) -> LiquidationWorker:
    from channels.routing import get_default_application

    return LiquidationWorker(
        application=get_default_application(),
        channels=[WORKER_CHANNEL],
        channel_layer=channel_layer or get_channel_layer(),
    )
