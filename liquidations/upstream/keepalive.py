"""Reconnect backoff and the keepalive of one upstream connection.

Every frame is proof that the connection lives; only after `interval` seconds without a
frame *while reading* is a ping sent, and the connection is failed when neither a frame
nor the pong follows within `timeout`. Time spent holding (backpressure) is not silence:
the exchange is sending, we are not reading. A venue with an application-level ping
(Bybit's {"op":"ping"}, OKX's "ping") has it sent as text instead of a WebSocket ping;
its answer is a frame like any other. `always`: ping every interval, busy or not.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import cast

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed


class Backoff:
    """Exponential backoff with jitter: about `initial` doubling up to `cap` seconds."""

    def __init__(self, *, initial: float = 1.0, cap: float = 30.0) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.initial * 2**self.attempt)
        self.attempt += 1
        # "Equal jitter": never less than half the nominal delay, so a herd of clients
        # restarted together spreads out without hammering the server.
        return delay / 2 + random.uniform(0, delay / 2)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class Liveness:
    """What one connection's keepalive needs to know about its reader."""

    last_frame_at: float
    holding: bool = False
    failure: str | None = None
    last_ping_at: float = 0.0


@dataclass(frozen=True, slots=True)
class KeepalivePolicy:
    interval: float
    timeout: float
    message: str | None = None  # None: WebSocket pings
    always: bool = False


class Keepalive:
    """Ping one connection as its policy says; abort it when it stays mute."""

    def __init__(self, policy: KeepalivePolicy) -> None:
        self.policy = policy
        self.pings_sent = 0

    async def run(self, ws: ClientConnection, liveness: Liveness) -> None:
        policy = self.policy
        loop = asyncio.get_running_loop()
        liveness.last_ping_at = loop.time()
        while True:
            if policy.always:
                due = liveness.last_ping_at + policy.interval - loop.time()
            elif liveness.holding:
                due = policy.interval
            else:
                due = liveness.last_frame_at + policy.interval - loop.time()
            if due > 0:
                await asyncio.sleep(due)
                continue
            pinged_at = liveness.last_ping_at = loop.time()
            if policy.message is not None:
                answered = await self._ping_text(ws, liveness, pinged_at)
            else:
                answered = await self._ping(ws)
            if answered is None:
                return  # the connection closed meanwhile; the reader reports why
            if answered or liveness.holding or liveness.last_frame_at >= pinged_at:
                continue
            # A peer that answers nothing would not answer a closing handshake either.
            liveness.failure = (
                f"keepalive ping timeout: no frame for {loop.time() - liveness.last_frame_at:.1f} s"
                f" and no pong within {policy.timeout:g} s"
            )
            ws.transport.abort()
            return

    async def _ping(self, ws: ClientConnection) -> bool | None:
        """Send a WebSocket ping; return whether the pong came in time (None: closed)."""
        try:
            # An asyncio.Future resolved with the round trip (the stubs say Awaitable).
            pong = cast("asyncio.Future[float]", await ws.ping())
        except ConnectionClosed:
            return None
        self.pings_sent += 1
        await asyncio.wait({pong}, timeout=self.policy.timeout)
        if pong.done():
            if pong.cancelled() or pong.exception() is not None:
                return None
            return True
        return False

    async def _ping_text(self, ws: ClientConnection, liveness: Liveness, at: float) -> bool | None:
        """Send the venue's ping message; return whether any frame followed in time."""
        assert self.policy.message is not None
        try:
            await ws.send(self.policy.message)
        except ConnectionClosed:
            return None
        self.pings_sent += 1
        loop = asyncio.get_running_loop()
        deadline = at + self.policy.timeout
        step = self.policy.timeout / 20
        while loop.time() < deadline:
            if liveness.last_frame_at >= at:
                return True
            await asyncio.sleep(min(step, deadline - loop.time()))
        return liveness.last_frame_at >= at
