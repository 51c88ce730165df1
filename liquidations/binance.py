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
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

logger = logging.getLogger(__name__)

ALL_MARKET_STREAM = "!forceOrder@arr"
# Matched whole (fullmatch): "$" would also let a trailing newline through.
SYMBOL_RE = re.compile(r"[A-Z0-9]{1,30}")
SIDES = frozenset({"BUY", "SELL"})
# Largest number the database columns hold (30 digits, 12 decimals).
MAX_NUMBER = Decimal(10) ** 17
ZERO = Decimal(0)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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
        # Decimals compare and hash by value: 0.0100 and 0.01 are one key, as in the table.
        return (
            self.symbol,
            self.side,
            self.trade_time_ms,
            self.filled_quantity,
            self.average_price,
        )


def ms_to_datetime(ms: int) -> datetime:
    """Return an aware UTC datetime keeping millisecond precision."""
    return EPOCH + timedelta(milliseconds=ms)  # exact, and half the cost of fromtimestamp


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
                    _describe(exc),
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
            return liveness.failure or f"connection closed: {_describe(exc)}"
        except Exception as exc:
            logger.exception("Upstream read failed")
            return f"read failed: {_describe(exc)}"
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
                pong = await ws.ping()
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
    if not SYMBOL_RE.fullmatch(symbol):
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
    if type(value) is str:
        # The usual case, checked at once: half the cost of the checks below, which
        # explain what is wrong with anything this does not accept.
        number = _decimal_in_range(value)
        if number is not None:
            return number
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


def _decimal_in_range(text: str) -> Decimal | None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() and ZERO <= number < MAX_NUMBER else None


def _millis(obj: dict, key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedFrame(f"field {key!r} missing or not an integer timestamp")
    # 2000-01-01 .. 2200-01-01 in ms: anything else is not a Binance timestamp.
    if not 946_684_800_000 <= value < 7_258_118_400_000:
        raise MalformedFrame(f"field {key!r} timestamp out of range: {value}")
    return value


# -- exchange info ---------------------------------------------------------------------

EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"


class ExchangeInfoError(Exception):
    """exchangeInfo could not be fetched or was not a usable listing; the message says why."""


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One contract from /fapi/v1/exchangeInfo, as the Symbol table keeps it."""

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    price_precision: int
    quantity_precision: int
    tick_size: Decimal
    step_size: Decimal


async def fetch_exchange_info(*, base_url: str, timeout: float = 15.0) -> list[SymbolSpec]:
    """GET {base_url}/fapi/v1/exchangeInfo and return its valid symbols."""
    url = f"{base_url.rstrip('/')}{EXCHANGE_INFO_PATH}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, headers={"Accept": "application/json"}) as response:
                body = await response.read()
                if response.status != 200:
                    raise ExchangeInfoError(f"{url} answered HTTP {response.status}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ExchangeInfoError(f"{url} unreachable: {_describe(exc)}") from None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ExchangeInfoError(f"{url} did not return JSON: {exc}") from None
    return parse_exchange_info(payload)


def parse_exchange_info(payload: object) -> list[SymbolSpec]:
    """Return the valid symbols of an exchangeInfo payload; skip (and log) invalid ones."""
    if not isinstance(payload, dict) or not isinstance(payload.get("symbols"), list):
        raise ExchangeInfoError("exchangeInfo has no 'symbols' list")
    specs: list[SymbolSpec] = []
    skipped = 0
    for entry in payload["symbols"]:
        try:
            specs.append(_symbol_spec(entry))
        except MalformedFrame as exc:
            skipped += 1
            logger.warning("Skipped exchangeInfo symbol (%s): %.200r", exc, entry)
    if not specs:
        raise ExchangeInfoError(f"exchangeInfo lists no valid symbol ({skipped} invalid)")
    return specs


def _symbol_spec(entry: object) -> SymbolSpec:
    if not isinstance(entry, dict):
        raise MalformedFrame(f"not an object: {type(entry).__name__}")
    symbol = _text(entry, "symbol")
    if not SYMBOL_RE.fullmatch(symbol):
        raise MalformedFrame(f"invalid symbol {symbol[:40]!r}")
    filters = entry.get("filters")
    by_type = (
        {f.get("filterType"): f for f in filters if isinstance(f, dict)}
        if isinstance(filters, list)
        else {}
    )
    if "PRICE_FILTER" not in by_type or "LOT_SIZE" not in by_type:
        raise MalformedFrame("PRICE_FILTER or LOT_SIZE filter missing")
    return SymbolSpec(
        symbol=symbol,
        status=_text(entry, "status", max_length=20),
        base_asset=_text(entry, "baseAsset", max_length=20),
        quote_asset=_text(entry, "quoteAsset", max_length=20),
        price_precision=_precision(entry, "pricePrecision"),
        quantity_precision=_precision(entry, "quantityPrecision"),
        tick_size=_number(by_type["PRICE_FILTER"], "tickSize"),
        step_size=_number(by_type["LOT_SIZE"], "stepSize"),
    )


def _precision(obj: dict, key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 18:
        raise MalformedFrame(f"field {key!r} is not a precision: {value!r}")
    return value
