"""The bench's exchange: speaks Binance's forceOrder protocol at a precise rate.

Every generated event has a unique trade time T (one millisecond apart), so a row received
anywhere maps back to the moment its frame was sent. Send times use time.perf_counter(),
so receivers must live in the same process (the latency driver does).
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve

SYMBOLS = [f"B{i:03d}USDT" for i in range(440)]


def iso_ms(ms: int) -> str:
    """Return the trade time as the row shows it (Django's date:'c' is isoformat())."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=millis * 1000).isoformat()


class EventFactory:
    """Unique-T forceOrder payloads, with USD amounts a dashboard shows by default."""

    def __init__(self, *, start_ms: int | None = None, seed: int = 7) -> None:
        self.next_t = start_ms if start_ms is not None else int(time.time() * 1000) - 60_000
        self.random = random.Random(seed)

    def payload(self) -> dict:
        t = self.next_t
        self.next_t += 1
        rnd = self.random
        price = f"{rnd.uniform(0.5, 50_000):.4f}"
        qty = f"{rnd.uniform(20_000, 400_000) / float(price):.3f}"
        return {
            "e": "forceOrder",
            "E": t + 40,
            "o": {
                "s": rnd.choice(SYMBOLS),
                "S": rnd.choice(("BUY", "SELL")),
                "o": "LIMIT",
                "f": "IOC",
                "q": qty,
                "p": price,
                "ap": price,
                "X": "FILLED",
                "l": qty,
                "z": qty,
                "T": t,
                "ps": "BOTH",
                "st": "c_",
            },
        }

    def frames(self, count: int) -> list[tuple[int, bytes]]:
        out = []
        for _ in range(count):
            payload = self.payload()
            out.append((payload["o"]["T"], orjson.dumps(payload)))
        return out


class LoadGen:
    """A loopback server on /market/ws/!forceOrder@arr (and /market/stream) with paced sends."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.connections: set[ServerConnection] = set()
        self.sent_at: dict[int, float] = {}  # T -> perf_counter() at send
        self._server = None
        self._joined = asyncio.Event()

    @property
    def ws_base_url(self) -> str:
        return f"ws://{self.host}:{self.port}/market"

    async def start(self) -> None:
        self._server = await serve(
            self._handler, self.host, self.port, max_size=2**20, compression=None
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections.add(ws)
        self._joined.set()
        try:
            await ws.wait_closed()
        finally:
            self.connections.discard(ws)

    async def wait_for_clients(self, count: int, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.connections) < count:
                self._joined.clear()
                await self._joined.wait()

    def send_now(self, frames: list[tuple[int, bytes]]) -> None:
        """Send frames at once (one WebSocket message each, as Binance does), as text."""
        now = time.perf_counter()
        conns = list(self.connections)
        for t, frame in frames:
            self.sent_at[t] = now
            broadcast(conns, frame.decode())

    async def paced(self, frames: list[tuple[int, bytes]], *, rate: float) -> float:
        """Send frames at `rate` per second, one tick per millisecond; return the duration."""
        start = time.perf_counter()
        index = 0
        total = len(frames)
        while index < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            if due > index:
                self.send_now(frames[index:due])
                index = due
            await asyncio.sleep(0.001)
        return time.perf_counter() - start

    async def blast(self, frames: list[tuple[int, bytes]], *, chunk: int = 200) -> float:
        """Send as fast as the socket drains, yielding to the loop between chunks."""
        start = time.perf_counter()
        for i in range(0, len(frames), chunk):
            self.send_now(frames[i : i + chunk])
            # Respect back-pressure: don't buffer the whole run in memory.
            while any(c.transport.get_write_buffer_size() > 1 << 20 for c in self.connections):
                await asyncio.sleep(0.001)
            await asyncio.sleep(0)
        return time.perf_counter() - start
