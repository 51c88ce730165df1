"""The fake exchange's REST answers: Binance exchangeInfo, Bybit and OKX instrument lists."""

from __future__ import annotations

import http
import time
from typing import Any

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Response

from . import bybit, okx
from .symbols import FakeSymbol


def exchange_info(symbols: list[FakeSymbol]) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "serverTime": int(time.time() * 1000),
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 2400,
            },
        ],
        "exchangeFilters": [],
        "assets": [],
        "symbols": [s.exchange_info() for s in symbols],
    }


def answer(
    path: str,
    params: dict[str, str],
    *,
    symbols: list[FakeSymbol],
    exchange_info_override: Any = None,
    bybit_page_limit: int = bybit.MAX_PAGE_LIMIT,
) -> Response:
    """Return the answer to GET path?params (the listings of the three venues)."""
    if path == "/fapi/v1/exchangeInfo":
        body = exchange_info(symbols) if exchange_info_override is None else exchange_info_override
        return json_response(http.HTTPStatus.OK, body)
    if path == "/fapi/v1/ping":
        return json_response(http.HTTPStatus.OK, {})
    if path == "/fapi/v1/time":
        return json_response(http.HTTPStatus.OK, {"serverTime": int(time.time() * 1000)})
    if path == "/v5/market/instruments-info":
        page = bybit.instruments_page(symbols, params=params, page_limit=bybit_page_limit)
        return json_response(http.HTTPStatus.OK, page)
    if path == "/api/v5/public/instruments":
        if params.get("instType") != "SWAP":
            return json_response(
                http.HTTPStatus.OK, {"code": "51000", "msg": "instType", "data": []}
            )
        return json_response(http.HTTPStatus.OK, okx.instruments(symbols))
    return json_response(
        http.HTTPStatus.NOT_FOUND, {"code": -5000, "msg": f"Path {path}, Method GET is invalid"}
    )


def json_response(status: http.HTTPStatus, body: Any) -> Response:
    data = orjson.dumps(body)
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, data)
