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
from liquidations.devtools.fake_exchange import bybit as fake_bybit
from liquidations.devtools.fake_exchange import okx as fake_okx
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

    def _targets(self, venue: str = "binance") -> list[ServerConnection]:
        # The bench's Binance clients read the all-market stream; its Bybit clients are
        # subscribed to every listed contract, its OKX clients to liquidation-orders.
        if venue == "binance":
            return [c.ws for c in self.clients("binance") if ALL_MARKET_STREAM in c.streams]
        return [c.ws for c in self.clients(venue)]

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

    async def blast_venues(self, frames: dict[str, list[bytes]], *, chunk: int = 200) -> float:
        """Send every venue's frames at once, a chunk of each in turn, as fast as they drain."""
        start = time.perf_counter()
        targets = {venue: self._targets(venue) for venue in frames}
        longest = max(len(f) for f in frames.values())
        for i in range(0, longest, chunk):
            for venue, venue_frames in frames.items():
                for frame in venue_frames[i : i + chunk]:
                    broadcast(targets[venue], frame.decode())
            while any(
                ws.transport.get_write_buffer_size() > 1 << 20
                for conns in targets.values()
                for ws in conns
            ):
                await asyncio.sleep(0.001)
            await asyncio.sleep(0)
        return time.perf_counter() - start


def bench_frames(*, count: int, start_ms: int, seed: int, venue: str = "binance") -> list[bytes]:
    """The ingest bench's frame list: `count` unique events plus 2 % re-sent duplicates.

    Binance: forceOrder payloads over ~440 symbols. Bybit and OKX: one liquidation a
    message, on the fake exchange's listed contracts (the ones the app subscribes to).
    """
    rnd = random.Random(seed)
    if venue == "binance":
        frames = [frame for _, frame in EventFactory(start_ms=start_ms, seed=seed).frames(count)]
    else:
        frames = _venue_frames(venue, count=count, start_ms=start_ms, rnd=random.Random(seed))
    for _ in range(count // 50):
        frames.insert(rnd.randrange(len(frames)), frames[rnd.randrange(count)])
    return frames


def _venue_frames(venue: str, *, count: int, start_ms: int, rnd: random.Random) -> list[bytes]:
    """Unique-T Bybit or OKX messages of one liquidation each, $20k to $400k."""
    listed = [s for s in FAKE_SYMBOLS if s.status == "TRADING"]
    frames = []
    for n in range(count):
        spec = rnd.choice(listed)
        price = f"{float(spec.price) * rnd.uniform(0.95, 1.05):.4f}"
        size = rnd.uniform(20_000, 400_000) / float(price)
        if venue == "bybit":
            frame = fake_bybit.liquidation_frame(
                instrument=fake_bybit.instrument_name(spec),
                position_side=rnd.choice(("Buy", "Sell")),
                size=f"{size:.3f}",
                price=price,
                trade_ms=start_ms + n,
            )
        else:
            contracts = max(1, round(size / float(fake_okx.contract_value(spec))))
            frame = fake_okx.liquidation_frame(
                inst_id=fake_okx.instrument_id(spec),
                underlying=f"{spec.base_asset}-{spec.quote_asset}",
                side=rnd.choice(("buy", "sell")),
                contracts=str(contracts),
                price=price,
                trade_ms=start_ms + n,
            )
        frames.append(orjson.dumps(frame))
    return frames


async def _serve_commands() -> None:
    """Line protocol on stdin/stdout, so the exchange runs in its own process (own CPU).

    `prep COUNT START_MS SEED [VENUES]` builds bench_frames() (COUNT each, for every venue
    of the comma-separated VENUES, default binance); `wait N` waits for N clients; `go`
    blasts the frames (every venue's at once); `quit` ends.
    """
    import sys

    loadgen = LoadGen()
    await loadgen.start()
    print(f"port {loadgen.port}", flush=True)
    loop = asyncio.get_running_loop()
    frames: dict[str, list[bytes]] = {}
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "prep":
            count, start_ms, seed = map(int, line[1:4])
            venues = line[4].split(",") if len(line) > 4 else ["binance"]
            frames = {
                venue: bench_frames(count=count, start_ms=start_ms, seed=seed, venue=venue)
                for venue in venues
            }
            print(f"ready {sum(map(len, frames.values()))}", flush=True)
        elif line[0] == "wait":
            await loadgen.wait_for_clients(int(line[1]), timeout=60)
            print(f"clients {loadgen.connections}", flush=True)
        elif line[0] == "go":
            if list(frames) == ["binance"]:
                seconds = await loadgen.blast([(0, f) for f in frames["binance"]])
            else:
                seconds = await loadgen.blast_venues(frames)
            print(f"sent {seconds:.6f}", flush=True)
    await loadgen.stop()


if __name__ == "__main__":
    import logging
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve_commands())
