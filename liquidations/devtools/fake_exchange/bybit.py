"""Bybit's side of the fake exchange: the v5 public linear stream and instrument listing.

WebSocket `/v5/public/linear`: {"op":"subscribe","args":[topics],"req_id"} is acked as
Bybit does (success false for an unknown topic or more than MAX_TOPICS topics),
{"op":"ping"} is answered with a pong. allLiquidation.<SYMBOL> messages go to the
clients subscribed to that topic. REST `GET /v5/market/instruments-info` lists the
contracts a page at a time (`limit`, `cursor` → `nextPageCursor`).
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection

from .symbols import FakeSymbol

VENUE = "bybit"
PATH = "/v5/public/linear"
TOPIC_PREFIX = "allLiquidation."
MAX_TOPICS = 10
MAX_PAGE_LIMIT = 1000

MALFORMED_FRAMES: tuple[str, ...] = (
    "not json at all",
    '{"topic":"allLiquidation.BTCUSDT","type":"snapshot","ts":1791565601482}',
    '{"topic":"allLiquidation.BTCUSDT","type":"snapshot","ts":1791565601482,"data":[{"T":'
    '1791565600992,"s":"BTCUSDT","S":"Long","v":"1","p":"2"}]}',
    '{"topic":"allLiquidation.BTCUSDT","type":"snapshot","ts":1791565601482,"data":[{"T":'
    '1791565600992,"s":"BTCUSDT","S":"Buy","size":"1","p":"2"}]}',
)

_conn_ids = itertools.count(1)


@dataclass(eq=False)
class BybitClient:
    ws: ServerConnection
    venue: str = VENUE
    topics: list[str] = field(default_factory=list)
    conn_id: str = field(default_factory=lambda: f"fake-{next(_conn_ids)}")
    pings: int = 0

    @property
    def routed(self) -> bool:
        return False  # not a Binance stream


def instrument_name(spec: FakeSymbol) -> str:
    """Bybit's name of a contract: USDC perpetuals are <BASE>PERP (BTCPERP)."""
    return f"{spec.base_asset}PERP" if spec.quote_asset == "USDC" else spec.symbol


def instrument_entry(spec: FakeSymbol) -> dict[str, Any]:
    return {
        "symbol": instrument_name(spec),
        "contractType": "LinearPerpetual",
        "status": "Trading" if spec.status == "TRADING" else "Settling",
        "baseCoin": spec.base_asset,
        "quoteCoin": spec.quote_asset,
        "settleCoin": spec.quote_asset,
        "priceScale": str(spec.price_precision),
        "priceFilter": {"tickSize": spec.tick_size},
        "lotSizeFilter": {"qtyStep": spec.step_size},
    }


def instruments_page(
    symbols: list[FakeSymbol], *, params: dict[str, str], page_limit: int
) -> dict[str, Any]:
    """Return one page of the listing, as GET /v5/market/instruments-info answers."""
    if params.get("category") != "linear":
        return {"retCode": 10001, "retMsg": "params error: category", "result": {}}
    try:
        limit = min(int(params.get("limit", "500")), MAX_PAGE_LIMIT, page_limit)
        start = int(base64.b64decode(params["cursor"]).decode()) if params.get("cursor") else 0
    except (ValueError, UnicodeDecodeError):
        return {"retCode": 10001, "retMsg": "params error: cursor or limit", "result": {}}
    page = symbols[start : start + limit]
    more = start + limit < len(symbols)
    cursor = base64.b64encode(str(start + limit).encode()).decode() if more else ""
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {
            "category": "linear",
            "list": [instrument_entry(spec) for spec in page],
            "nextPageCursor": cursor,
        },
        "time": 0,
    }


def answer(client: BybitClient, message: str | bytes, *, listed: set[str]) -> dict | None:
    """Return Bybit's reply to one client request."""
    try:
        request = orjson.loads(message)
    except orjson.JSONDecodeError:
        return {"success": False, "ret_msg": "error:request not json", "op": ""}
    if not isinstance(request, dict):
        return {"success": False, "ret_msg": "error:request not an object", "op": ""}
    op = request.get("op")
    reply = {"success": True, "ret_msg": "", "conn_id": client.conn_id, "op": op}
    if "req_id" in request:
        reply["req_id"] = request["req_id"]
    if op == "ping":
        client.pings += 1
        return {**reply, "ret_msg": "pong"}
    if op not in ("subscribe", "unsubscribe"):
        return {**reply, "success": False, "ret_msg": f"error:unknown op {op!r}"}
    args = request.get("args")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return {**reply, "success": False, "ret_msg": "error:args must be a list of topics"}
    if len(args) > MAX_TOPICS:
        return {**reply, "success": False, "ret_msg": f"error:args size >{MAX_TOPICS}"}
    unknown = [
        a for a in args if not a.startswith(TOPIC_PREFIX) or a[len(TOPIC_PREFIX) :] not in listed
    ]
    if unknown:
        return {**reply, "success": False, "ret_msg": f"Invalid topic :{unknown}"}
    for topic in args:
        if op == "subscribe" and topic not in client.topics:
            client.topics.append(topic)
        elif op == "unsubscribe" and topic in client.topics:
            client.topics.remove(topic)
    return reply


def liquidation_frame(
    *, instrument: str, position_side: str, size: str, price: str, trade_ms: int
) -> dict[str, Any]:
    """Return one allLiquidation message carrying one liquidation."""
    return {
        "topic": f"{TOPIC_PREFIX}{instrument}",
        "type": "snapshot",
        "ts": trade_ms + 300,
        "data": [{"T": trade_ms, "s": instrument, "S": position_side, "v": size, "p": price}],
    }


def from_force_order(payload: dict, spec: FakeSymbol) -> dict[str, Any]:
    """Turn a synthetic forceOrder payload into Bybit's message for the same liquidation."""
    order = payload["o"]
    return liquidation_frame(
        instrument=instrument_name(spec),
        # The order side is the opposite of the position's: a SELL closes a long ("Buy").
        position_side="Buy" if order["S"] == "SELL" else "Sell",
        size=order["z"],
        price=order["ap"],
        trade_ms=order["T"],
    )


def topic_of(frame: dict) -> str | None:
    topic = frame.get("topic")
    return topic if isinstance(topic, str) else None
