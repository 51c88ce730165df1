"""The bench's exchange: the project's fake exchange, sending at a precise rate.

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
from websockets.asyncio.server import ServerConnection, broadcast

from liquidations.devtools.fake_exchange import SYMBOLS as FAKE_SYMBOLS
from liquidations.devtools.fake_exchange import FakeExchange
from liquidations.upstream.binance import ALL_MARKET_STREAM

# The fake exchange's listed contracts, then unlisted ones up to the market's ~440.
SYMBOLS = [s.symbol for s in FAKE_SYMBOLS] + [
    f"B{i:03d}USDT" for i in range(440 - len(FAKE_SYMBOLS))
]


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


class LoadGen(FakeExchange):
    """The project's fake exchange (protocol, REST exchangeInfo) with paced, timed sends."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sent_at: dict[int, float] = {}  # T -> perf_counter() at send

    def _targets(self) -> list[ServerConnection]:
        # The bench's clients all read the all-market stream.
        return [c.ws for c in self._clients if ALL_MARKET_STREAM in c.streams]

    def send_now(self, frames: list[tuple[int, bytes]]) -> None:
        """Send frames at once (one WebSocket message each, as Binance does), as text."""
        now = time.perf_counter()
        conns = self._targets()
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
        """Send as fast as the sockets drain, yielding to the loop between chunks."""
        start = time.perf_counter()
        for i in range(0, len(frames), chunk):
            self.send_now(frames[i : i + chunk])
            # Respect back-pressure: don't buffer the whole run in memory.
            while any(ws.transport.get_write_buffer_size() > 1 << 20 for ws in self._targets()):
                await asyncio.sleep(0.001)
            await asyncio.sleep(0)
        return time.perf_counter() - start


def bench_frames(*, count: int, start_ms: int, seed: int) -> list[bytes]:
    """The ingest bench's frame list: `count` unique events plus 2 % re-sent duplicates."""
    rnd = random.Random(seed)
    frames = [frame for _, frame in EventFactory(start_ms=start_ms, seed=seed).frames(count)]
    for _ in range(count // 50):
        frames.insert(rnd.randrange(len(frames)), frames[rnd.randrange(count)])
    return frames


async def _serve_commands() -> None:
    """Line protocol on stdin/stdout, so the exchange runs in its own process (own CPU).

    `prep COUNT START_MS SEED` builds bench_frames(); `wait N` waits for N clients;
    `go` blasts the frames; `quit` ends.
    """
    import sys

    loadgen = LoadGen()
    await loadgen.start()
    print(f"port {loadgen.port}", flush=True)
    loop = asyncio.get_running_loop()
    frames: list[bytes] = []
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "prep":
            count, start_ms, seed = map(int, line[1:4])
            frames = bench_frames(count=count, start_ms=start_ms, seed=seed)
            print(f"ready {len(frames)}", flush=True)
        elif line[0] == "wait":
            await loadgen.wait_for_clients(int(line[1]), timeout=60)
            print(f"clients {loadgen.connections}", flush=True)
        elif line[0] == "go":
            seconds = await loadgen.blast([(0, f) for f in frames])
            print(f"sent {seconds:.6f}", flush=True)
    await loadgen.stop()


if __name__ == "__main__":
    import logging
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve_commands())
