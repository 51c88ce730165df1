"""`serve`: the embedded mode, daphne and the ingest worker in one process."""

from __future__ import annotations

import asyncio
import logging

from daphne.server import Server
from django.conf import settings
from django.core.management import BaseCommand

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Serve the app with daphne and, without Redis, run the ingest worker in-process."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=None, help="Interface (default: HOST).")
        parser.add_argument("--port", type=int, default=None, help="Port (default: PORT).")
        parser.add_argument(
            "--no-worker",
            action="store_true",
            help="Do not run the ingest worker in this process.",
        )

    def handle(self, *args, **options) -> None:
        from twisted.internet import defer, reactor

        from liquidations.ingest.worker import worker_create
        from orderfox.asgi import application

        host = options["host"] or settings.HOST
        port = settings.PORT if options["port"] is None else options["port"]
        run_worker = settings.EMBEDDED_WORKER and not options["no_worker"]
        worker = worker_create() if run_worker else None

        def start_worker() -> None:
            if worker is not None:
                asyncio.ensure_future(worker.arun())

        def stop_worker():
            if worker is None:
                return None
            return defer.Deferred.fromFuture(asyncio.ensure_future(worker.shutdown()))

        reactor.callWhenRunning(start_worker)
        reactor.addSystemEventTrigger("before", "shutdown", stop_worker)  # type: ignore[arg-type]  # Twisted's stub swaps the phase and event type
        interface = host.strip("[]")
        endpoint = f"tcp:port={port}:interface={interface.replace(':', chr(92) + ':')}"
        logger.info(
            "Serving on http://%s:%s/ (worker %s)",
            host,
            port,
            "in this process" if worker else "separate",
        )
        Server(
            application=application,
            endpoints=[endpoint],
            # Browsers reconnect on their own; daphne's default 24 h cap would close
            # live sockets with code 1000, which htmx's extension does not retry.
            websocket_timeout=-1,
            verbosity=options["verbosity"],
        ).run()
