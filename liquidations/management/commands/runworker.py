"""`runworker liquidations`: the ingest worker, with a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from channels.layers import get_channel_layer
from channels.management.commands.runworker import Command as ChannelsRunworker
from django.core.management import CommandError

from liquidations.ingest.worker import LiquidationWorker, worker_create
from liquidations.live.contracts import WORKER_CHANNEL

logger = logging.getLogger(__name__)


class Command(ChannelsRunworker):
    help = "Run a Channels worker; on channel 'liquidations' it streams from Binance at boot."

    def handle(self, *args, **options) -> None:
        if WORKER_CHANNEL not in options["channels"]:
            return super().handle(*args, **options)
        if options["channels"] != [WORKER_CHANNEL]:
            raise CommandError(f"Run the '{WORKER_CHANNEL}' worker on its own.")
        channel_layer = get_channel_layer(options["layer"])
        if channel_layer is None:
            raise CommandError("You do not have any CHANNEL_LAYERS configured.")
        asyncio.run(run_until_signal(worker_create(channel_layer=channel_layer)))


async def run_until_signal(worker: LiquidationWorker) -> None:
    """Run the worker until SIGINT/SIGTERM, then stop streaming and flush."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    running = asyncio.create_task(worker.arun())
    waiting = asyncio.create_task(stopping.wait())
    await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
    logger.info("Stopping the worker")
    await worker.shutdown()
    for task in (running, waiting):
        task.cancel()
    await asyncio.gather(running, waiting, return_exceptions=True)
