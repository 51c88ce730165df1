"""Binance's side of the fake exchange: stream paths, subscription requests, frames.

Routed paths `/market/ws/<stream>` (raw payloads) and `/market/stream?streams=a/b`
(payloads wrapped as {"stream", "data"}); anything else, like the retired unrouted
`/ws/...`, is accepted and acks requests but never delivers an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from websockets.asyncio.server import ServerConnection

ALL_MARKET_STREAM = "!forceOrder@arr"
ROUTED_PREFIX = "/market"
# Routes that deliver streams (market data for the symbol page uses /public too).
ROUTES = ("market", "public")
# Binance disconnects a client sending more than this many messages per second.
MAX_INCOMING_PER_SECOND = 10

MALFORMED_FRAMES: tuple[str, ...] = (
    "this is not json",
    "[1, 2, 3]",
    '{"e":"forceOrder","E":1766845884181}',
    '{"e":"forceOrder","E":1766845884181,"o":{"s":"BTCUSDT","S":"HOLD","o":"LIMIT","f":"IOC",'
    '"q":"1","p":"1","ap":"1","X":"FILLED","l":"1","z":"1","T":1766845883281}}',
    '{"e":"forceOrder","E":1766845884181,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC",'
    '"q":"-1","p":"1","ap":"1","X":"FILLED","l":"1","z":"1","T":1766845883281}}',
    '{"e":"forceOrder","E":1766845884181,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC",'
    '"q":"NaN","p":"1","ap":"1","X":"FILLED","l":"1","z":"1","T":1766845883281}}',
    '{"e":"aggTrade","E":1766845884181,"s":"BTCUSDT"}',
)


@dataclass(eq=False)
class StreamClient:
    """One connected WebSocket client and what it is subscribed to."""

    ws: ServerConnection
    routed: bool
    combined: bool
    streams: list[str] = field(default_factory=list)
    route: str = "market"
    venue: str = "binance"

    def stream_for(self, symbol: str | None) -> str | None:
        """Return the subscribed stream that carries this symbol's events, if any."""
        if not self.routed or self.route != "market":
            return None
        for stream in self.streams:
            if stream == ALL_MARKET_STREAM:
                return stream
            if symbol and stream == f"{symbol.lower()}@forceOrder":
                return stream
        return None


def client_for(ws: ServerConnection, path: str, query: str) -> StreamClient:
    for route in ROUTES:
        prefix = f"/{route}"
        if path.startswith(f"{prefix}/ws"):
            stream = path[len(f"{prefix}/ws") :].strip("/")
            return StreamClient(
                ws, routed=True, combined=False, streams=[stream] if stream else [], route=route
            )
        if path.rstrip("/") == f"{prefix}/stream":
            names = parse_qs(query).get("streams", [""])[0]
            return StreamClient(
                ws,
                routed=True,
                combined=True,
                streams=[s for s in names.split("/") if s],
                route=route,
            )
    # Retired unrouted paths (and anything else): accepted, acked, silent.
    return StreamClient(ws, routed=False, combined=path.startswith("/stream"))


def answer(client: StreamClient, message: str | bytes) -> dict[str, Any] | None:
    """Return Binance's reply to one client request."""
    try:
        request = orjson.loads(message)
    except orjson.JSONDecodeError:
        return {"error": {"code": 3, "msg": "Invalid JSON: expected value"}, "id": None}
    if not isinstance(request, dict):
        return {"error": {"code": 2, "msg": "Invalid request"}, "id": None}
    request_id = request.get("id")
    method = request.get("method")
    params = request.get("params", [])
    if not isinstance(request_id, int | str) or isinstance(request_id, bool):
        return {"error": {"code": 2, "msg": "Invalid request: invalid id"}, "id": None}
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return {
                "error": {"code": 1, "msg": "Invalid value type: expected list"},
                "id": request_id,
            }
        for stream in params:
            if method == "SUBSCRIBE" and stream not in client.streams:
                client.streams.append(stream)
            elif method == "UNSUBSCRIBE" and stream in client.streams:
                client.streams.remove(stream)
        return {"result": None, "id": request_id}
    if method == "LIST_SUBSCRIPTIONS":
        return {"result": list(client.streams), "id": request_id}
    if method in ("SET_PROPERTY", "GET_PROPERTY"):
        return {"result": None if method == "SET_PROPERTY" else False, "id": request_id}
    return {
        "error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
        "id": request_id,
    }


def payload_of(frame: str | bytes) -> dict | None:
    try:
        decoded = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict):
        return None
    if "e" not in decoded and isinstance(decoded.get("data"), dict):
        return decoded["data"]
    return decoded if "e" in decoded else None


def symbol_of(payload: dict) -> str | None:
    order = payload.get("o")
    symbol = order.get("s") if isinstance(order, dict) else None
    return symbol if isinstance(symbol, str) else None


def capture_span_ms(lines: list[str]) -> int:
    times = []
    for line in lines:
        payload = payload_of(line)
        if payload is not None and isinstance(payload.get("E"), int):
            times.append(payload["E"])
    return (max(times) - min(times) + 1000) if times else 1000


def shift_frame(line: str, offset_ms: int) -> str:
    try:
        decoded = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line
    payload = decoded.get("data", decoded) if isinstance(decoded, dict) else None
    if not isinstance(payload, dict):
        return line
    if isinstance(payload.get("E"), int):
        payload["E"] += offset_ms
    order = payload.get("o")
    if isinstance(order, dict) and isinstance(order.get("T"), int):
        order["T"] += offset_ms
    return orjson.dumps(decoded).decode()
