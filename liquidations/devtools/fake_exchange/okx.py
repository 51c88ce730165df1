"""OKX's side of the fake exchange: the v5 public stream and the SWAP listing.

WebSocket `/ws/v5/public`: {"op":"subscribe","args":[{"channel":"liquidation-orders",
"instType":"SWAP"}]} is acked with {"event":"subscribe",...}; the text "ping" is answered
"pong"; a connection that sends nothing for `idle_timeout` (OKX: 30 s) is closed.
REST `GET /api/v5/public/instruments?instType=SWAP` lists linear swaps (ctVal in the
base coin) and two inverse ones (ctVal in USD).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection

from .symbols import FakeSymbol

VENUE = "okx"
PATH = "/ws/v5/public"
CHANNEL = "liquidation-orders"
IDLE_TIMEOUT_SECONDS = 30.0
# Contract values by base coin (OKX's own, late 2025); 1 for the others.
CONTRACT_VALUES = {"BTC": "0.01", "ETH": "0.1", "SOL": "1", "XRP": "100", "DOGE": "1000"}
# Inverse swaps: (instrument, underlying, USD per contract, reference price).
INVERSE = (
    ("BTC-USD-SWAP", "BTC-USD", "100", "87350.1"),
    ("ETH-USD-SWAP", "ETH-USD", "10", "2948.37"),
)

MALFORMED_FRAMES: tuple[str, ...] = (
    "pong?",
    '{"arg":{"channel":"liquidation-orders","instType":"SWAP"}}',
    '{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkPx":"1",'
    '"side":"up","sz":"1","ts":"1791565600771"}],"instId":"BTC-USDT-SWAP","uly":"BTC-USDT"}]}',
    '{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkPx":"1",'
    '"side":"buy","size":"1","ts":"1791565600771"}],"instId":"BTC-USDT-SWAP","uly":"BTC-USDT"}]}',
)

_conn_ids = itertools.count(1)


@dataclass(eq=False)
class OkxClient:
    ws: ServerConnection
    venue: str = VENUE
    subscribed: bool = False
    conn_id: str = field(default_factory=lambda: f"okx-{next(_conn_ids)}")
    pings: int = 0

    @property
    def routed(self) -> bool:
        return False  # not a Binance stream


def instrument_id(spec: FakeSymbol) -> str:
    return f"{spec.base_asset}-{spec.quote_asset}-SWAP"


def contract_value(spec: FakeSymbol) -> Decimal:
    return Decimal(CONTRACT_VALUES.get(spec.base_asset, "1"))


def instruments(symbols: list[FakeSymbol]) -> dict[str, Any]:
    """Return GET /api/v5/public/instruments?instType=SWAP's answer."""
    data = [
        {
            "instId": instrument_id(spec),
            "instType": "SWAP",
            "uly": f"{spec.base_asset}-{spec.quote_asset}",
            "instFamily": f"{spec.base_asset}-{spec.quote_asset}",
            "ctType": "linear",
            "ctVal": str(contract_value(spec)),
            "ctValCcy": spec.base_asset,
            "settleCcy": spec.quote_asset,
            "state": "live" if spec.status == "TRADING" else "suspend",
            "tickSz": spec.tick_size,
            "lotSz": "1",
        }
        for spec in symbols
    ]
    data += [
        {"instId": inst, "instType": "SWAP", "uly": uly, "instFamily": uly, "ctType": "inverse",
         "ctVal": value, "ctValCcy": "USD", "settleCcy": uly[:3], "state": "live",
         "tickSz": "0.1", "lotSz": "1"}
        for inst, uly, value, _ in INVERSE
    ]  # fmt: skip
    return {"code": "0", "msg": "", "data": data}


def answer(client: OkxClient, message: str | bytes) -> str:
    """Return OKX's reply (text) to one client message."""
    if message in ("ping", b"ping"):
        client.pings += 1
        return "pong"
    try:
        request = orjson.loads(message)
    except orjson.JSONDecodeError:
        return _error("60012", f"Invalid request: {str(message)[:40]}")
    if not isinstance(request, dict) or request.get("op") != "subscribe":
        return _error("60012", "Invalid request: only subscribe is served")
    args = request.get("args")
    if not isinstance(args, list) or not args:
        return _error("60018", "Wrong URL or channel doesn't exist")
    for arg in args:
        if (
            not isinstance(arg, dict)
            or arg.get("channel") != CHANNEL
            or arg.get("instType") != "SWAP"
        ):
            return _error("60018", f"Wrong URL or channel:{str(arg)[:60]} doesn't exist")
    client.subscribed = True
    return orjson.dumps({"event": "subscribe", "arg": args[0], "connId": client.conn_id}).decode()


def _error(code: str, message: str) -> str:
    return orjson.dumps({"event": "error", "code": code, "msg": message, "connId": ""}).decode()


def liquidation_frame(
    *, inst_id: str, underlying: str, side: str, contracts: str, price: str, trade_ms: int
) -> dict[str, Any]:
    """Return one liquidation-orders push carrying one liquidation."""
    detail = {
        "bkLoss": "0",
        "bkPx": price,
        "ccy": "",
        "posSide": "short" if side == "buy" else "long",
        "side": side,
        "sz": contracts,
        "ts": str(trade_ms),
    }
    entry = {"details": [detail], "instFamily": underlying, "instId": inst_id,
             "instType": "SWAP", "uly": underlying}  # fmt: skip
    return {"arg": {"channel": CHANNEL, "instType": "SWAP"}, "data": [entry]}


def from_force_order(payload: dict, spec: FakeSymbol) -> dict[str, Any]:
    """Turn a synthetic forceOrder payload into OKX's push for a liquidation like it."""
    order = payload["o"]
    value = contract_value(spec)
    contracts = max(Decimal(1), (Decimal(order["z"]) / value).quantize(Decimal(1), ROUND_HALF_UP))
    return liquidation_frame(
        inst_id=instrument_id(spec),
        underlying=f"{spec.base_asset}-{spec.quote_asset}",
        side=order["S"].lower(),
        contracts=str(contracts),
        price=order["ap"],
        trade_ms=order["T"],
    )
