"""What the fake exchange sends on its own: captures replayed, synthetic liquidations."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import bybit, okx
from .binance import MALFORMED_FRAMES, capture_span_ms, shift_frame
from .synthetic import SyntheticMarket

VENUE_MALFORMED = {
    "binance": MALFORMED_FRAMES,
    "bybit": bybit.MALFORMED_FRAMES,
    "okx": okx.MALFORMED_FRAMES,
}


class FeedMixin:
    """replay() and generate() for FakeExchange, which provides send() and broadcast()."""

    synthetic: SyntheticMarket
    events_sent: int
    events_by_venue: Counter[str]
    malformed_sent: int

    async def broadcast(self, frame: str | bytes | dict) -> int:
        raise NotImplementedError

    async def send(self, venue: str, frame: str | bytes | dict) -> int:
        raise NotImplementedError

    async def replay(
        self, path: str | Path, *, rate: float | None = None, loop: bool = False
    ) -> int:
        """Send every line of a JSONL capture (combined frames); return frames sent.

        rate: frames per second (None: as fast as the clients take them). With loop,
        the capture repeats until cancelled; every later pass shifts T and E by the
        capture's span so the events are new rather than duplicates.
        """
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        span_ms = capture_span_ms(lines)
        sent = 0
        started = time.monotonic()
        for lap in itertools.count():
            for line in lines:
                if lap:
                    line = shift_frame(line, lap * span_ms)
                await self._pace(sent, rate, started)
                await self.broadcast(line)
                sent += 1
            if not loop:
                break
        return sent

    async def generate(
        self,
        *,
        rate: float,
        count: int | None = None,
        duration: float | None = None,
        malformed_every: int = 0,
        venues: Sequence[str] = ("binance",),
    ) -> int:
        """Send synthetic liquidations at `rate` per second; return the valid events sent.

        Events go to the venues in turn (each in its own protocol; `events_by_venue`
        counts them). Stops after `count` valid events or `duration` seconds (neither:
        until cancelled). With malformed_every=N, one malformed frame of the same venue
        follows every N valid events (not counted in the return value; see
        `malformed_sent`).
        """
        if rate <= 0:
            raise ValueError("rate must be positive")
        started = time.monotonic()
        deadline = None if duration is None else started + duration
        frames = 0
        valid = 0
        while count is None or valid < count:
            await self._pace(frames, rate, started)
            if deadline is not None and time.monotonic() >= deadline:
                break
            venue = venues[valid % len(venues)]
            await self.send(venue, self.venue_event(venue))
            self.events_sent += 1
            self.events_by_venue[venue] += 1
            valid += 1
            frames += 1
            if malformed_every and valid % malformed_every == 0:
                await self._pace(frames, rate, started)
                bad = VENUE_MALFORMED[venue]
                await self.send(venue, bad[self.malformed_sent % len(bad)])
                self.malformed_sent += 1
                frames += 1
        return valid

    def synthetic_event(self, *, symbol: str | None = None) -> dict[str, Any]:
        """Return one realistic forceOrder payload (unique trade time per exchange)."""
        return self.synthetic.event(symbol=symbol)

    def venue_event(self, venue: str, *, symbol: str | None = None) -> dict[str, Any]:
        """Return one synthetic liquidation as the venue sends it."""
        payload = self.synthetic.event(symbol=symbol)
        if venue == "binance":
            return payload
        spec = self.synthetic.spec(payload["o"]["s"])
        module = bybit if venue == "bybit" else okx
        return module.from_force_order(payload, spec)

    async def _pace(self, sent: int, rate: float | None, started: float) -> None:
        if rate is None:
            # Let clients and other tasks run now and then when sending flat out.
            if sent % 50 == 0:
                await asyncio.sleep(0)
            return
        delay = started + sent / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif sent % 50 == 0:
            await asyncio.sleep(0)
