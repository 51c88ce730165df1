"""Binance USD-M futures liquidation stream: URLs and frame parsing.

Payload (2026): {"e":"forceOrder","E":<ms>,"o":{"s","S","o","f","q","p","ap","X","l","z","T"}}
plus undocumented fields (ps, st, ...) that are ignored. Combined streams wrap it as
{"stream": ..., "data": ...}. The liquidated size is z (accumulated fill), never l.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

logger = logging.getLogger(__name__)

ALL_MARKET_STREAM = "!forceOrder@arr"
SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,30}$")
SIDES = frozenset({"BUY", "SELL"})
# Largest number the database columns hold (30 digits, 12 decimals).
MAX_NUMBER = Decimal(10) ** 17
NOTIONAL_QUANTUM = Decimal("0.00000001")
ROTATE = "rotate"


class MalformedFrame(ValueError):
    """An upstream frame that is not a valid forceOrder event; the message says why."""


@dataclass(frozen=True, slots=True)
class LiquidationEvent:
    symbol: str
    side: str
    order_type: str
    time_in_force: str
    original_quantity: Decimal
    price: Decimal
    average_price: Decimal
    order_status: str
    last_filled_quantity: Decimal
    filled_quantity: Decimal
    trade_time_ms: int
    event_time_ms: int

    @property
    def notional_usd(self) -> Decimal:
        """Return z × ap, or q × p when Binance reports no average price."""
        if self.average_price:
            amount = self.filled_quantity * self.average_price
        else:
            amount = self.original_quantity * self.price
        return amount.quantize(NOTIONAL_QUANTUM)

    @property
    def trade_time(self) -> datetime:
        return ms_to_datetime(self.trade_time_ms)

    @property
    def event_time(self) -> datetime:
        return ms_to_datetime(self.event_time_ms)

    @property
    def dedup_key(self) -> tuple[str, str, int, Decimal, Decimal]:
        return (
            self.symbol,
            self.side,
            self.trade_time_ms,
            self.filled_quantity.normalize(),
            self.average_price.normalize(),
        )


def ms_to_datetime(ms: int) -> datetime:
    """Return an aware UTC datetime keeping millisecond precision."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=millis * 1000)


def stream_url(*, base_url: str, symbols: list[str] | tuple[str, ...] = ()) -> str:
    """Return the routed URL for all symbols, or the combined stream of the given ones."""
    base = base_url.rstrip("/")
    if not symbols:
        return f"{base}/ws/{quote(ALL_MARKET_STREAM, safe='!@')}"
    streams = "/".join(f"{symbol.lower()}@forceOrder" for symbol in symbols)
    return f"{base}/stream?streams={streams}"


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


class UpstreamClient:
    """One WebSocket to the exchange: connect, read, reconnect, rotate before the 24 h cut.

    Frames are handed raw to `on_message`; connection changes go to `on_connected` and
    `on_disconnected(reason)`. Reconnects back off exponentially with jitter, and the
    backoff resets after a connection that stayed up for `stable_after` seconds.
    """

    def __init__(
        self,
        *,
        url: str,
        on_message: Callable[[str | bytes], None],
        on_connected: Callable[[], Awaitable[None]],
        on_disconnected: Callable[[str], Awaitable[None]],
        backoff: Backoff | None = None,
        max_connection_age: float = 23.5 * 3600,
        stable_after: float = 60.0,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.on_message = on_message
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.backoff = backoff or Backoff()
        self.max_connection_age = max_connection_age
        self.stable_after = stable_after
        self.open_timeout = open_timeout
        self._stopping = asyncio.Event()
        self._ws: ClientConnection | None = None

    async def run(self) -> None:
        """Stream until stop() is called."""
        ws: ClientConnection | None = None
        while not self._stopping.is_set():
            if ws is None:
                ws = await self._connect_with_backoff()
                if ws is None:
                    break
                await self.on_connected()
            connected_at = time.monotonic()
            reason = await self._pump(ws, deadline=connected_at + self.max_connection_age)
            if reason == ROTATE and not self._stopping.is_set():
                ws = await self._rotate(ws)
                if ws is not None:
                    continue
                reason = "rotation failed"
            else:
                await ws.close()
            ws = None
            self._ws = None
            if time.monotonic() - connected_at >= self.stable_after:
                self.backoff.reset()
            await self.on_disconnected(reason)
            logger.warning("Upstream disconnected: %s", reason)

    async def stop(self) -> None:
        """Close the connection and make run() return."""
        self._stopping.set()
        if self._ws is not None:
            await self._ws.close()

    async def _connect_with_backoff(self) -> ClientConnection | None:
        while not self._stopping.is_set():
            try:
                ws = await self._connect()
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                delay = self.backoff.next_delay()
                logger.warning(
                    "Upstream connect to %s failed (%s); retry %d in %.1f s",
                    self.url,
                    _describe(exc),
                    self.backoff.attempt,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                continue
            return ws
        return None

    async def _connect(self) -> ClientConnection:
        ws = await connect(
            self.url,
            open_timeout=self.open_timeout,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
            max_size=2**20,
        )
        self._ws = ws
        logger.info("Upstream connected to %s", self.url)
        return ws

    async def _pump(self, ws: ClientConnection, *, deadline: float) -> str:
        """Hand every frame to on_message until the socket closes or the deadline passes."""
        loop = asyncio.get_running_loop()
        loop_deadline = loop.time() + (deadline - time.monotonic())
        try:
            async with asyncio.timeout_at(loop_deadline):
                async for message in ws:
                    self.on_message(message)
        except TimeoutError:
            return ROTATE
        except ConnectionClosed as exc:
            return f"connection closed: {_describe(exc)}"
        if self._stopping.is_set():
            return "stopped"
        return f"connection closed: {_describe(ws.close_reason or ws.close_code)}"

    async def _rotate(self, old: ClientConnection) -> ClientConnection | None:
        """Open the next connection before closing the old one, so the switch has no hole."""
        logger.info("Upstream connection reached its maximum age; rotating")
        reader = asyncio.ensure_future(self._pump(old, deadline=time.monotonic() + 3600))
        try:
            new = await self._connect()
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            logger.warning("Upstream rotation connect failed: %s", _describe(exc))
            reader.cancel()
            await old.close()
            return None
        # Frames that reached the old socket meanwhile were read by `reader`; the
        # overlap with the new socket is removed by deduplication when stored.
        await old.close()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        return new


def _describe(exc: object) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_frame(raw: str | bytes) -> LiquidationEvent:
    """Parse one raw frame (plain or combined-stream) into an event or raise MalformedFrame."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if isinstance(payload, dict) and "data" in payload and "e" not in payload:
        payload = payload["data"]
    return parse_payload(payload)


def parse_payload(payload: object) -> LiquidationEvent:
    """Validate a decoded forceOrder payload and build the event."""
    if not isinstance(payload, dict):
        raise MalformedFrame(f"not an object: {type(payload).__name__}")
    event_type = payload.get("e")
    if event_type != "forceOrder":
        raise MalformedFrame(f"unexpected event type {event_type!r}")
    order = payload.get("o")
    if not isinstance(order, dict):
        raise MalformedFrame("missing order object 'o'")
    symbol = _text(order, "s")
    if not SYMBOL_RE.match(symbol):
        raise MalformedFrame(f"invalid symbol {symbol[:40]!r}")
    side = _text(order, "S")
    if side not in SIDES:
        raise MalformedFrame(f"invalid side {side[:10]!r}")
    return LiquidationEvent(
        symbol=symbol,
        side=side,
        order_type=_text(order, "o", max_length=20),
        time_in_force=_text(order, "f", max_length=10),
        original_quantity=_number(order, "q"),
        price=_number(order, "p"),
        average_price=_number(order, "ap"),
        order_status=_text(order, "X", max_length=20),
        last_filled_quantity=_number(order, "l"),
        filled_quantity=_number(order, "z"),
        trade_time_ms=_millis(order, "T"),
        event_time_ms=_millis(payload, "E"),
    )


def _text(obj: dict, key: str, *, max_length: int = 30) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedFrame(f"field {key!r} missing or not a string")
    if len(value) > max_length:
        raise MalformedFrame(f"field {key!r} longer than {max_length} characters")
    return value


def _number(obj: dict, key: str) -> Decimal:
    value = obj.get(key)
    # Binance sends decimals as strings; a bare number would lose precision in JSON.
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise MalformedFrame(f"field {key!r} missing or not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MalformedFrame(f"field {key!r} is not numeric: {str(value)[:30]!r}") from None
    if not number.is_finite():
        raise MalformedFrame(f"field {key!r} is not finite: {value!r}")
    if number < 0:
        raise MalformedFrame(f"field {key!r} is negative: {value!r}")
    if number >= MAX_NUMBER:
        raise MalformedFrame(f"field {key!r} is out of range: {str(value)[:30]!r}")
    return number


def _millis(obj: dict, key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedFrame(f"field {key!r} missing or not an integer timestamp")
    # 2000-01-01 .. 2200-01-01 in ms: anything else is not a Binance timestamp.
    if not 946_684_800_000 <= value < 7_258_118_400_000:
        raise MalformedFrame(f"field {key!r} timestamp out of range: {value}")
    return value
