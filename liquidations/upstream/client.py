"""One upstream WebSocket client: connect, read, keep alive, reconnect with backoff.

Venue-neutral: a venue module gives it the URL and, where the venue needs them, the
messages to send after connecting and the application-level keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

logger = logging.getLogger(__name__)

ROTATE = "rotate"


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
class _Liveness:
    """What one connection's keepalive needs to know about its reader."""

    last_frame_at: float
    holding: bool = False
    failure: str | None = None


class UpstreamClient:
    """One WebSocket to the exchange: connect, read, reconnect, rotate before the 24 h cut.

    Frames are handed raw (bytes, undecoded) to `on_message`; connection changes go to
    `on_connected` and `on_disconnected(reason)`. Every reconnect waits an exponential
    backoff with jitter; the backoff resets after a connection that stayed up for
    `stable_after` seconds. A failing callback is logged and never ends the stream.

    Backpressure: when `on_message` returns an awaitable, the socket is not read until it
    completes, so the exchange's frames wait in TCP buffers (and at the exchange) instead
    of in this process. Keepalive: every frame is proof that the connection lives; only
    after `ping_interval` seconds without a frame *while reading* is a ping sent, and the
    connection is failed when neither a frame nor the pong follows within `ping_timeout`.
    A stock keepalive (websockets' own) would ping during backpressure too, and its pong
    would wait behind the unread frames until the connection timed out.
    """

    def __init__(
        self,
        *,
        url: str,
        on_message: Callable[[bytes], Awaitable[None] | None],
        on_connected: Callable[[], Awaitable[None]],
        on_disconnected: Callable[[str], Awaitable[None]],
        backoff: Backoff | None = None,
        max_connection_age: float = 23.5 * 3600,
        stable_after: float = 60.0,
        open_timeout: float = 10.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
    ) -> None:
        self.url = url
        self.on_message = on_message
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.backoff = backoff or Backoff()
        self.max_connection_age = max_connection_age
        self.stable_after = stable_after
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._stopping = asyncio.Event()
        self._ws: ClientConnection | None = None

    async def run(self) -> None:
        """Stream until stop() is called."""
        while not self._stopping.is_set():
            ws = await self._connect_with_backoff()
            if ws is None:
                break
            connected_at = time.monotonic()
            await self._notify(self.on_connected)
            reason = await self._stream(ws)
            uptime = time.monotonic() - connected_at
            if uptime >= self.stable_after:
                self.backoff.reset()
            await self._notify(self.on_disconnected, reason)
            if self._stopping.is_set():
                logger.info("Upstream closed after %.1f s: %s", uptime, reason)
                break
            delay = self.backoff.next_delay()
            logger.warning(
                "Upstream disconnected after %.1f s (%s); reconnect attempt %d in %.2f s",
                uptime,
                reason,
                self.backoff.attempt,
                delay,
            )
            await self._sleep(delay)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def stop(self) -> None:
        """Close the connection and make run() return."""
        self._stopping.set()
        if self._ws is not None:
            await self._ws.close()

    async def _notify(self, callback: Callable[..., Awaitable[None]], *args: object) -> None:
        try:
            await callback(*args)
        except Exception:
            logger.exception("Upstream callback %s failed", getattr(callback, "__name__", callback))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _connect_with_backoff(self) -> ClientConnection | None:
        while not self._stopping.is_set():
            try:
                ws = await self._until_stopped(self._connect())
            except Exception as exc:  # refused, DNS, TLS, HTTP status, timeout: all retried
                delay = self.backoff.next_delay()
                logger.warning(
                    "Upstream connect to %s failed (%s); retry %d in %.2f s",
                    self.url,
                    describe_error(exc),
                    self.backoff.attempt,
                    delay,
                )
                await self._sleep(delay)
                continue
            if ws is None or self._stopping.is_set():
                if ws is not None:
                    await ws.close()
                return None
            return ws
        return None

    async def _until_stopped(self, coro: Awaitable[ClientConnection]) -> ClientConnection | None:
        """Await coro unless stop() comes first (then cancel it and return None)."""
        task = asyncio.ensure_future(coro)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            ws = await task
            await ws.close()
        return None

    async def _connect(self) -> ClientConnection:
        ws = await connect(
            self.url,
            open_timeout=self.open_timeout,
            # Our own keepalive (see the class docstring), not websockets' one.
            ping_interval=None,
            close_timeout=5,
            max_size=2**20,
        )
        self._ws = ws
        logger.info("Upstream connected to %s", self.url)
        return ws

    async def _stream(self, ws: ClientConnection) -> str:
        """Read this connection (and its rotated successors); return why streaming ended."""
        while True:
            deadline = time.monotonic() + self.max_connection_age
            reason = await self._pump(ws, deadline=deadline)
            if reason != ROTATE or self._stopping.is_set():
                break
            new = await self._rotate(ws)
            if new is None:
                return "rotation failed"
            ws = new
        await ws.close()
        self._ws = None
        return reason if reason != ROTATE else "stopped"

    async def _pump(self, ws: ClientConnection, *, deadline: float) -> str:
        """Hand every frame to on_message until the socket closes or the deadline passes."""
        loop = asyncio.get_running_loop()
        loop_deadline = loop.time() + (deadline - time.monotonic())
        liveness = _Liveness(last_frame_at=loop.time())
        keepalive = asyncio.create_task(self._keepalive(ws, liveness), name="upstream-keepalive")
        try:
            async with asyncio.timeout_at(loop_deadline):
                while True:
                    # Bytes as received: no UTF-8 decode here (the JSON parser checks it),
                    # and the most compact form a frame can wait in.
                    message = await ws.recv(decode=False)
                    liveness.last_frame_at = loop.time()
                    waiting = self.on_message(message)
                    if waiting is not None:
                        liveness.holding = True
                        try:
                            await self._until_stopping(waiting)
                        finally:
                            liveness.holding = False
                            liveness.last_frame_at = loop.time()
        except TimeoutError:
            return ROTATE
        except ConnectionClosedOK:
            pass
        except ConnectionClosed as exc:
            return liveness.failure or f"connection closed: {describe_error(exc)}"
        except Exception as exc:
            logger.exception("Upstream read failed")
            return f"read failed: {describe_error(exc)}"
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
        if self._stopping.is_set():
            return "stopped"
        detail = f": {ws.close_reason}" if ws.close_reason else ""
        return f"closed by the server (code {ws.close_code}{detail})"

    async def _until_stopping(self, waiting: Awaitable[None]) -> None:
        """Await the consumer's backpressure unless stop() comes first."""
        task = asyncio.ensure_future(waiting)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            task.result()

    async def _keepalive(self, ws: ClientConnection, liveness: _Liveness) -> None:
        """Ping after ping_interval without a frame; fail the connection if it stays mute.

        Time spent holding (backpressure) is not silence: the exchange is sending, we are
        not reading.
        """
        loop = asyncio.get_running_loop()
        while True:
            if liveness.holding:
                await asyncio.sleep(self.ping_interval)
                continue
            silent_for = loop.time() - liveness.last_frame_at
            if silent_for < self.ping_interval:
                await asyncio.sleep(self.ping_interval - silent_for)
                continue
            try:
                # A future that completes when the pong arrives (typed as an Awaitable).
                pong = asyncio.ensure_future(await ws.ping())
            except ConnectionClosed:
                return
            pinged_at = loop.time()
            await asyncio.wait({pong}, timeout=self.ping_timeout)
            if pong.done():
                if pong.cancelled() or pong.exception() is not None:
                    return  # the connection closed meanwhile; the reader reports why
                continue
            if liveness.holding or liveness.last_frame_at >= pinged_at:
                continue
            # A peer that answers nothing would not answer a closing handshake either.
            liveness.failure = (
                f"keepalive ping timeout: no frame for {loop.time() - liveness.last_frame_at:.1f} s"
                f" and no pong within {self.ping_timeout:g} s"
            )
            ws.transport.abort()
            return

    async def _rotate(self, old: ClientConnection) -> ClientConnection | None:
        """Open the next connection before closing the old one, so the switch has no hole."""
        logger.info("Upstream connection reached its maximum age; rotating")
        reader = asyncio.ensure_future(self._pump(old, deadline=time.monotonic() + 3600))
        try:
            new = await self._connect()
        except Exception as exc:
            logger.warning("Upstream rotation connect failed: %s", describe_error(exc))
            reader.cancel()
            await old.close()
            return None
        # Frames that reached the old socket meanwhile were read by `reader`; the
        # overlap with the new socket is removed by deduplication when stored.
        await old.close()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        return new


def describe_error(exc: object) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
