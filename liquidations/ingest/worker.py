"""The ingest worker: a Channels worker consumer on channel "liquidations".

The upstream loop and the batch writer run as their own tasks (pipeline.py); the
consumer's handlers only start, stop and report on them, so a control message never
waits on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER
from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.layers import BaseChannelLayer, get_channel_layer
from channels.routing import ChannelNameRouter
from channels.worker import Worker
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..live.contracts import WORKER_CHANNEL
from ..logs import RateLimitedLog
from ..services.worker_state import worker_request_take
from .market import MarketFeed
from .pipeline import Ingest

logger = logging.getLogger(__name__)

# Embedded mode: how often the worker looks for a start/stop request in the database, and
# how old one may be (a sender that stops waiting withdraws it; this covers one that died).
REQUEST_POLL_SECONDS = 1.0
REQUEST_MAX_AGE_SECONDS = 30.0


class LiquidationWorkerConsumer(AsyncConsumer):
    """Handle stream.start / stream.stop / stream.status on the worker channel."""

    ingest: Ingest | None = None
    market: MarketFeed | None = None

    async def __call__(self, scope, receive, send) -> None:
        """Dispatch what the worker hands in from channel "liquidations", one at a time.

        Unlike the base class, this does not also listen on a private channel that nobody
        sends to: a channel-layer error there would end the consumer, and with it the
        control over the ingest. A failing handler is logged; the consumer lives on.
        """
        self.scope = scope
        self.channel_layer = _layer(self.channel_layer_alias)
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
        await ingest.save_state()
        await self._reply(message)

    async def stream_status(self, message: dict) -> None:
        await self._reply(message)

    async def stream_shutdown(self, message: dict) -> None:
        """Stop and flush, then end this consumer (sent by the process on SIGINT/SIGTERM)."""
        ingest = self._ingest()
        await ingest.stop()
        await ingest.aclose()
        if self.market is not None:
            await self.market.close()
        raise StopConsumer()

    async def market_watch(self, message: dict) -> None:
        """Take the streams one web process's viewers watch (live/market_hub.py)."""
        hub, streams = message.get("hub"), message.get("streams")
        if not isinstance(hub, str) or not isinstance(streams, dict):
            logger.warning("Dropped a malformed market.watch message: %.200r", message)
            return
        if self.market is None:
            self.market = MarketFeed(channel_layer=self.channel_layer)
        await self.market.watch(hub=hub, streams=streams)

    def _ingest(self) -> Ingest:
        if self.ingest is None:
            self.ingest = Ingest(channel_layer=self.channel_layer)
        return self.ingest

    async def _reply(self, message: dict) -> None:
        reply_channel = message.get("reply_channel")
        if reply_channel:
            market = self.market.status() if self.market is not None else None
            await self.channel_layer.send(
                reply_channel,
                {
                    "type": "stream.status_reply",
                    **self._ingest().status.as_message(),
                    "market": market,
                },
            )


class LiquidationWorker(Worker):
    """A Channels worker that starts streaming at boot and shuts down cleanly.

    In embedded mode it also takes start/stop requests left in the database by
    `manage.py liquidations` from another process (the in-memory layer cannot carry them).
    """

    _requests: asyncio.Task | None = None

    async def listener(self, channel: str) -> None:
        """Hand channel messages to the consumer; ride out channel-layer outages."""
        log = RateLimitedLog(logger)
        while True:
            try:
                message = await self.channel_layer.receive(channel)
            except Exception as exc:
                # Redis restarting or unreachable: streaming goes on, control waits.
                log.log(
                    logging.WARNING,
                    "worker channel",
                    "Channel layer receive failed (%r); retrying in 1 s",
                    exc,
                    reason=type(exc).__name__,
                )
                await asyncio.sleep(1.0)
                continue
            log.recovered("worker channel", "Channel layer receive works again")
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
        take = database_sync_to_async(worker_request_take)
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


def _layer(alias: str) -> BaseChannelLayer:
    layer = get_channel_layer(alias)
    if layer is None:
        raise ImproperlyConfigured("The worker needs a channel layer (CHANNEL_LAYERS).")
    return layer


def worker_application() -> ChannelNameRouter:
    """Return the ASGI application of the worker channel (asgi.py and worker_create)."""
    return ChannelNameRouter({WORKER_CHANNEL: LiquidationWorkerConsumer.as_asgi()})


def worker_create(*, channel_layer: Any = None) -> LiquidationWorker:
    """Return a worker serving only the ingest channel (no HTTP stack to load)."""
    return LiquidationWorker(
        application=worker_application(),
        channels=[WORKER_CHANNEL],
        channel_layer=channel_layer or _layer(DEFAULT_CHANNEL_LAYER),
    )
