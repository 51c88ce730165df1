"""`serve_web`: production web tier, N daphne processes behind one port, no proxy needed.

The launcher opens one listening socket per process on the same address with SO_REUSEPORT
(the kernel spreads new connections across them), starts `daphne --fd` on each, restarts
a process that dies, and on SIGTERM/SIGINT stops them all. The ingest worker runs apart:
`manage.py runworker liquidations` (Redis carries its batches to every daphne).

Why not one daphne: one Python process writes every viewer's frames on one core. Why not
a proxy in front: one more hop and process per frame. The kernel's SO_REUSEPORT balancing
costs nothing per frame. Measured (440 events/s x 1,000 viewers, 8 s cells, one run each,
back to back, on 2 cores): 1, 2 and 3 processes gave p50 63.6 / 54.0 / 60.4 ms, the web
tier using 0.97 / 1.19 / 1.22 cores: it pays on machines with cores to spare, not on two.
The sockets are plain `socket`/`subprocess` calls, so no library internals are involved;
tests/test_fanout.py serves through it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import BaseCommand, CommandError

logger = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 30.0


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind a listening IPv4 socket that other processes may bind too (SO_REUSEPORT)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def daphne_command(fd: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "daphne",
        "--fd",
        str(fd),
        # Browsers reconnect on their own; daphne's default 24 h cap would close live
        # sockets with code 1000, which htmx's extension does not retry.
        "--websocket_timeout",
        "-1",
        "--access-log",
        os.devnull,
        "orderfox.asgi:application",
    ]


class Command(BaseCommand):
    help = "Serve the web app with several daphne processes sharing one port (production)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=None, help="IPv4 interface (default: HOST).")
        parser.add_argument("--port", type=int, default=None, help="Port (default: PORT).")
        parser.add_argument(
            "--processes",
            type=int,
            default=int(os.environ.get("WEB_PROCESSES", "0") or 0) or os.cpu_count() or 1,
            help="daphne processes (default: WEB_PROCESSES, else the number of CPUs).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host = options["host"] or settings.HOST
        port = settings.PORT if options["port"] is None else options["port"]
        count = options["processes"]
        if count < 1:
            raise CommandError("--processes must be at least 1.")
        try:
            socket.inet_aton(host)
        except OSError:
            raise CommandError(f"serve_web binds IPv4 addresses only, not {host!r}.") from None
        pool = DaphnePool(host=host, port=port)
        signal.signal(signal.SIGTERM, pool.request_stop)
        signal.signal(signal.SIGINT, pool.request_stop)
        try:
            pool.start(count)
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{pool.port}: {exc}") from exc
        pool.supervise()
        pool.stop()


class DaphnePool:
    """daphne processes sharing one listening address; a dead one is restarted."""

    def __init__(self, *, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.processes: list[subprocess.Popen[bytes]] = []
        self.stopping = False

    def request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def spawn(self) -> subprocess.Popen[bytes]:
        sock = listening_socket(self.host, self.port)
        # Port 0: the first socket picks a free port, the others join it.
        self.port = sock.getsockname()[1]
        try:
            return subprocess.Popen(daphne_command(sock.fileno()), pass_fds=(sock.fileno(),))
        finally:
            # The child holds its own copy; ours would keep accepting nothing.
            sock.close()

    def start(self, count: int) -> None:
        self.processes = [self.spawn() for _ in range(count)]
        logger.info(
            "Serving on http://%s:%s/ with %d daphne processes (pids %s)",
            self.host,
            self.port,
            count,
            ", ".join(str(p.pid) for p in self.processes),
        )

    def supervise(self) -> None:
        """Restart any process that exits, until a stop is requested."""
        while not self.stopping:
            for index, process in enumerate(self.processes):
                code = process.poll()
                if code is not None and not self.stopping:
                    logger.error("daphne %d exited with %s; restarting it", process.pid, code)
                    time.sleep(RESTART_DELAY_SECONDS)
                    self.processes[index] = self.spawn()
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM every process; kill those still running after STOP_TIMEOUT_SECONDS."""
        logger.info("Stopping %d daphne processes", len(self.processes))
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("daphne %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
