"""Browser WebSocket consumers: one per viewer socket."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from .binance import SYMBOL_RE
from .services import GROUP_ALL, symbol_group


class LiquidationFeedConsumer(AsyncWebsocketConsumer):
    """Join the feed's group and forward each batch as one frame of OOB row fragments."""

    async def connect(self) -> None:
        symbol = str(self.scope["url_route"]["kwargs"].get("symbol", "")).upper()
        if symbol and not SYMBOL_RE.match(symbol):
            await self.close(code=4404)
            return
        self.group = symbol_group(symbol) if symbol else GROUP_ALL
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def liquidations_batch(self, message: dict) -> None:
        html = "".join(row["html"] for row in message["rows"])
        await self.send(
            text_data=f'<tbody id="liquidation-rows" hx-swap-oob="afterbegin">{html}</tbody>'
        )

    async def liquidations_stats(self, message: dict) -> None:
        """Forward the stats strip, rendered once by the worker, as an OOB swap."""
        await self.send(text_data=message["html"])
