"""`fake_exchange`: run the loopback Binance stand-in (synthetic data or a capture)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from django.core.management import BaseCommand, CommandError

from liquidations.devtools.fake_exchange import FakeExchange

logger = logging.getLogger("liquidations.fake_exchange")


class Command(BaseCommand):
    help = "Serve a fake Binance futures exchange (WebSocket streams + exchangeInfo) on loopback."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9100, help="0 picks a free port.")
        parser.add_argument(
            "--replay",
            type=Path,
            default=None,
            help="JSONL capture to loop instead of synthetic data.",
        )
        parser.add_argument("--rate", type=float, default=20.0, help="Events per second.")
        parser.add_argument(
            "--malformed-every",
            type=int,
            default=0,
            metavar="N",
            help="Send a malformed frame after every N events (synthetic data only).",
        )
        parser.add_argument(
            "--drop-every",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="Abort every client connection this often (tests reconnects and gaps).",
        )
        parser.add_argument("--ping-interval", type=float, default=180.0)

    def handle(self, *args, **options) -> None:
        if options["rate"] <= 0:
            raise CommandError("--rate must be positive")
        if options["replay"] is not None and not options["replay"].is_file():
            raise CommandError(f"--replay: no such file {options['replay']}")
        asyncio.run(_serve(self, options))


async def _serve(command: Command, options: dict) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with FakeExchange(
        host=options["host"], port=options["port"], ping_interval=options["ping_interval"]
    ) as fx:
        command.stdout.write(
            f"Fake exchange: streams at {fx.ws_base_url}, REST at {fx.rest_base_url}\n"
            f"Point the app at it with\n"
            f"  BINANCE_WS_BASE_URL={fx.ws_base_url} BINANCE_REST_BASE_URL={fx.rest_base_url}"
        )
        command.stdout.flush()
        if options["replay"] is not None:
            feed = fx.replay(options["replay"], rate=options["rate"], loop=True)
        else:
            feed = fx.generate(rate=options["rate"], malformed_every=options["malformed_every"])
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(feed, name="fake-feed")]
        if options["drop_every"] > 0:
            tasks.append(asyncio.create_task(_drop_every(fx, options["drop_every"])))
        waiter = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
        for task in [*tasks, waiter]:
            task.cancel()
        for task in [*tasks, waiter]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        command.stdout.write(
            f"Fake exchange stopped: {fx.events_sent} events, {fx.malformed_sent} malformed sent"
        )


async def _drop_every(fx: FakeExchange, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        if fx.connections:
            logger.info("Dropping %d connection(s) abruptly", fx.connections)
            await fx.drop_connections()
