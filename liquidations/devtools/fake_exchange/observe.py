"""What tests ask the fake exchange: its clients, subscriptions, pongs; waits on them."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any


class ObserveMixin:
    """Read-only views of FakeExchange's connections, and waits for them (tests, bench)."""

    _clients: set[Any]
    _changed: asyncio.Condition
    accepted_connections: int
    accepted_by_venue: Counter[str]
    symbols: list[Any]

    def clients(self, venue: str | None = None) -> list[Any]:
        return [c for c in self._clients if venue is None or c.venue == venue]

    @property
    def connections(self) -> int:
        """Currently connected WebSocket clients (on any path)."""
        return len(self._clients)

    @property
    def subscriptions(self) -> list[list[str]]:
        """Each connected Binance client's streams (routed clients only)."""
        return [list(c.streams) for c in self.clients("binance") if c.routed]

    @property
    def bybit_topics(self) -> list[list[str]]:
        """Each connected Bybit client's subscribed topics."""
        return [list(c.topics) for c in self.clients("bybit")]

    @property
    def pong_latencies(self) -> list[float]:
        """Each client's last ping round trip (0 until it answered a server ping)."""
        return [c.ws.latency for c in self._clients]

    @property
    def write_buffer_sizes(self) -> list[int]:
        """Bytes each client's socket has not taken yet (sending waits past 32 KiB)."""
        return [c.ws.transport.get_write_buffer_size() for c in self._clients]

    def stall_connections(self) -> None:
        """Stop reading every client's socket, like a hung server: pings go unanswered."""
        for client in self._clients:
            client.ws.transport.pause_reading()

    async def wait_for_clients(
        self, n: int = 1, timeout: float = 10.0, *, venue: str | None = None
    ) -> None:
        """Wait until at least n clients (of the venue) are connected."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.clients(venue)) >= n)

    async def wait_for_connections(
        self, n: int, timeout: float = 10.0, *, venue: str | None = None
    ) -> None:
        """Wait until n connections have been accepted since start (counting reconnects)."""

        def accepted() -> int:
            return self.accepted_connections if venue is None else self.accepted_by_venue[venue]

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: accepted() >= n)

    async def wait_for_subscribed(self, venue: str, timeout: float = 10.0) -> None:
        """Wait until a Bybit client has every trading topic, or an OKX client its channel."""

        def ready(client: Any) -> bool:
            if venue == "okx":
                return client.subscribed
            return len(client.topics) >= sum(s.status == "TRADING" for s in self.symbols)

        async with asyncio.timeout(timeout):
            while not any(ready(c) for c in self.clients(venue)):
                await asyncio.sleep(0.01)
