"""The symbol page's market socket: candles' live bar, trades tape and order book.

`/ws/market/<SYMBOL>/?timeframe=5m&rounding=0.1&depth=20`. The browser may send one kind of
message, its settings, as a small JSON object (all three keys):

    {"timeframe": "1m".."1d", "rounding": "<a multiple of the tick size>", "depth": 10|20|50}

and gets, on the same socket, the book at the new rounding and depth and the candles of the
new timeframe. Anything else closes the socket: 4009 when too large, 4008 otherwise; an
unknown symbol closes it with 4404 after the accept (contracts.py: codes daphne passes on
and market.js takes as final). Frames come from the process's market hub.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

import orjson
from channels.db import database_sync_to_async

from ..selectors.market import BOOK_DEPTHS, MarketSpec, symbol_market_spec
from ..upstream.binance_market import TIMEFRAMES
from ..upstream.events import is_symbol
from .contracts import CLOSE_NOT_FOUND, CLOSE_POLICY
from .hub_consumer import HubSocketConsumer
from .market_frames import MarketSettings
from .market_hub import MarketHub, market_hub

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256
RATE_WINDOW_SECONDS = 10.0
RATE_MAX_MESSAGES = 20
# The coarsest rounding: this many ticks.
MAX_ROUNDING_TICKS = 100_000
DEFAULT_TIMEFRAME = "5m"
DEFAULT_DEPTH = 20


class BadSettings(ValueError):
    """Settings the socket refuses; the message says why."""


def settings_parse(data: dict[str, object], *, spec: MarketSpec) -> MarketSettings:
    """Validate timeframe, rounding (a whole multiple of the tick size) and depth."""
    timeframe = data.get("timeframe")
    if timeframe not in TIMEFRAMES:
        raise BadSettings(f"timeframe must be one of {', '.join(TIMEFRAMES)}")
    raw_depth = data.get("depth")
    depth = int(raw_depth) if isinstance(raw_depth, str) and raw_depth.isdigit() else raw_depth
    if not isinstance(depth, int) or depth not in BOOK_DEPTHS:
        raise BadSettings(f"depth must be one of {', '.join(map(str, BOOK_DEPTHS))}")
    raw = data.get("rounding")
    try:
        rounding = Decimal(str(raw)) if isinstance(raw, str | int) else None
    except InvalidOperation:
        rounding = None
    if rounding is None or not rounding.is_finite() or rounding <= 0:
        raise BadSettings("rounding must be a positive number")
    ticks = rounding / spec.tick_size
    if ticks != ticks.to_integral_value() or ticks > MAX_ROUNDING_TICKS:
        raise BadSettings(f"rounding must be a multiple of the tick size {spec.tick_size}")
    return MarketSettings(timeframe=str(timeframe), rounding=rounding.normalize(), depth=depth)


class MarketConsumer(HubSocketConsumer):
    """One symbol-page socket: its settings, and the frames the market hub hands it."""

    socket_kind = "market"
    max_message_bytes = MAX_MESSAGE_BYTES
    rate_window_seconds = RATE_WINDOW_SECONDS
    rate_max_messages = RATE_MAX_MESSAGES

    symbol = ""
    price_places = 2
    quantity_places = 3
    hub: MarketHub | None = None
    spec: MarketSpec | None = None

    async def connect(self) -> None:
        self.message_times: list[float] = []
        symbol = str(self.scope["url_route"]["kwargs"].get("symbol", ""))
        spec = (
            await database_sync_to_async(symbol_market_spec)(symbol=symbol)
            if is_symbol(symbol)
            else None
        )
        if spec is None:
            # Accepted first: a close before the accept is an HTTP 403 to the browser,
            # which sees 1006 and retries; this code tells the page to stop.
            await self.accept()
            await self.refuse(CLOSE_NOT_FOUND, "no such symbol")
            return
        self.symbol, self.spec = symbol, spec
        self.price_places, self.quantity_places = spec.price_precision, spec.quantity_precision
        query = dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")[:256]))
        defaults = {
            "timeframe": DEFAULT_TIMEFRAME,
            "rounding": str(spec.tick_size),
            "depth": DEFAULT_DEPTH,
        }
        try:
            self.market_settings = settings_parse({**defaults, **query}, spec=spec)
        except BadSettings:
            self.market_settings = settings_parse(defaults, spec=spec)
        await self.accept()
        self.hub = market_hub(self.channel_layer)
        await self.hub.join(self)

    async def disconnect(self, code: int) -> None:
        if self.hub is not None:
            hub, self.hub = self.hub, None
            await hub.leave(self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        text_data = await self.admitted_text(text_data)
        if text_data is None:
            return
        try:
            data = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            await self.refuse(CLOSE_POLICY, "not JSON")
            return
        if not isinstance(data, dict) or set(data) != {"timeframe", "rounding", "depth"}:
            await self.refuse(CLOSE_POLICY, "expected the keys timeframe, rounding and depth")
            return
        assert self.spec is not None
        try:
            self.market_settings = settings_parse(data, spec=self.spec)
        except BadSettings as exc:
            await self.refuse(CLOSE_POLICY, str(exc))
            return
        if self.hub is not None:
            await self.hub.update(self)

    async def send_frame(self, frame: str) -> None:
        await self.send(text_data=frame)
