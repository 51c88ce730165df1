"""Sending to the fake exchange's clients: broadcast, per venue, drops and outages."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed

from . import bybit
from .binance import payload_of, symbol_of


class SendingMixin:
    """broadcast() and send() to subscribed clients; drop_connections(), take_down()."""

    _clients: set[Any]
    _changed: asyncio.Condition
    down: set[str]
    events_by_venue: Counter[str]

    def clients(self, venue: str | None = None) -> list[Any]:
        raise NotImplementedError  # ObserveMixin

    async def broadcast(self, frame: str | bytes | dict) -> int:
        """Send one Binance frame to every client subscribed to it; return how many got it.

        A dict is a forceOrder payload: raw-stream clients get it as is, combined-stream
        clients get it wrapped in {"stream", "data"}. A str/bytes frame that decodes to
        a payload (or a combined frame) is routed the same way; anything else (e.g. a
        malformed frame) goes as is to every subscribed routed client.

        Like a TCP peer, this waits while a client's socket does not take more (its
        reader is slow or holding back): the server keeps no growing buffer per client.
        """
        binance = self.clients("binance")
        payload = frame if isinstance(frame, dict) else payload_of(frame)
        if payload is None:
            # Sent as is in a text frame: bytes may even be invalid UTF-8, like a broken feed.
            text = frame if isinstance(frame, str) else bytes(frame)
            targets = [(c, text) for c in binance if c.routed and c.streams]
        else:
            symbol = symbol_of(payload)
            raw = orjson.dumps(payload).decode()
            targets = []
            for client in binance:
                stream = client.stream_for(symbol)
                if stream is None and symbol is None and client.routed and client.streams:
                    stream = client.streams[0]
                if stream is None:
                    continue
                if client.combined:
                    targets.append((client, f'{{"stream":"{stream}","data":{raw}}}'))
                else:
                    targets.append((client, raw))
        return await self._send_each(targets)

    async def send(self, venue: str, frame: str | bytes | dict) -> int:
        """Send one frame of a venue to its clients that asked for it; return how many got it.

        Binance: as broadcast(). Bybit: a message goes to the clients subscribed to its
        topic; OKX: to the clients subscribed to liquidation-orders. A frame that is not
        a routable message (malformed) goes to every subscribed client of the venue.
        """
        if venue == "binance":
            return await self.broadcast(frame)
        message = frame if isinstance(frame, dict) else _json_dict(frame)
        if isinstance(frame, dict):
            text: str | bytes = orjson.dumps(frame).decode()
        else:
            text = frame if isinstance(frame, str) else bytes(frame)
        if venue == "bybit":
            topic = bybit.topic_of(message) if message is not None else None
            targets = [
                (c, text)
                for c in self.clients("bybit")
                if (topic in c.topics if topic else c.topics)
            ]
        else:
            targets = [(c, text) for c in self.clients("okx") if c.subscribed]
        return await self._send_each(targets)

    async def _send_each(self, targets: Sequence[tuple[Any, str | bytes]]) -> int:
        reached = 0
        for client, text in targets:
            try:
                await client.ws.send(text, text=True)
            except ConnectionClosed:
                continue
            reached += 1
        return reached

    async def drop_connections(self, venue: str | None = None) -> None:
        """Abort every client's TCP connection: no close frame, like a network failure."""
        clients = self.clients(venue)
        for client in clients:
            client.ws.transport.abort()
        async with asyncio.timeout(5):
            async with self._changed:
                await self._changed.wait_for(lambda: not (self._clients & set(clients)))

    async def take_down(self, venue: str) -> None:
        """Refuse the venue's new connections and REST listing; drop its open ones."""
        self.down.add(venue)
        await self.drop_connections(venue)

    def bring_up(self, venue: str) -> None:
        self.down.discard(venue)


def _json_dict(frame: str | bytes) -> dict | None:
    try:
        decoded = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None
