"""The record over a time range: the array OrderFox's client reads, and the paged form.

`GET /api/v1/liquidations` answers what the OrderFox backend's own client reads from its
liquidation API: a JSON array of every liquidation in [start, end), oldest first, each item
with `timestamp` (ms) and `cumulated_usd_size` as a number. A range holding more than
ARRAY_MAX_ROWS rows is refused (400) rather than cut short: a client cannot tell a
truncated array from a complete one. `GET /api/v1/liquidations/paged` serves the same rows
a keyset page at a time, for our own users and the backfill.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from ..selectors.history import (
    BadCursor,
    Cursor,
    HistoryFilters,
    liquidation_count_capped,
    liquidation_values_page,
)
from ..upstream.events import datetime_to_ms
from ..upstream.orderfox_api import ITEM_FIELDS, PAGED_PATH, TIMESTAMP_ITEM_KEY, USD_ITEM_KEY
from .api import (
    BadRequest,
    api_view,
    limit_param,
    liquidation_item,
    symbol_param,
    time_range,
    venue_param,
)

ARRAY_MAX_ROWS = 200_000
ARRAY_CHUNK_ROWS = 2000
PAGED_DEFAULT_LIMIT = 500
# OrderFox sends its chart timeframe and buckets the array itself: any timeframe
# notation is accepted and ignored; anything else is a mistake worth a 400.
TIMEFRAME = re.compile(r"[1-9][0-9]{0,3}[smhdwM]")
# The columns an item needs: one query of plain rows per chunk, no model instances.
ITEM_COLUMNS = (*(field for _, field, _ in ITEM_FIELDS), "notional_usd", "venue")


def range_item(liquidation: Any) -> dict:
    """Return one row of ITEM_COLUMNS (or a Liquidation) as OrderFox's client reads it."""
    item = liquidation_item(liquidation)
    item[TIMESTAMP_ITEM_KEY] = datetime_to_ms(liquidation.trade_time)
    # A float prints the shortest text that reads back as itself: exact for the 8 stored
    # decimals below $10 million, within 1e-15 relative above. OrderFox's client reads
    # it with Decimal(str(value)).
    item[USD_ITEM_KEY] = float(liquidation.notional_usd)
    return item


def range_filters(request: HttpRequest) -> HistoryFilters:
    """Read symbol, venue (default: every venue) and [start_timestamp, end_timestamp)."""
    start, end = time_range(request, "start_timestamp", "end_timestamp")
    symbol = symbol_param(request.GET.get("symbol"))
    return HistoryFilters(symbol=symbol, venue=venue_param(request), start=start, end=end)


def timeframe_check(request: HttpRequest) -> None:
    raw = request.GET.get("timeframe")
    if raw is not None and not TIMEFRAME.fullmatch(raw):
        raise BadRequest(f"timeframe must look like 1m, 5m, 1h or 1d, got {raw[:10]!r}")


@api_view
def liquidations(request: HttpRequest) -> StreamingHttpResponse | HttpResponse:
    """Every liquidation of the range, oldest first, as one JSON array (OrderFox's shape).

    With `cursor` or `limit`, the paged form instead: instances older than the paged path
    backfill from here with those parameters.
    """
    if "cursor" in request.GET or "limit" in request.GET:
        return liquidations_paged(request)
    timeframe_check(request)
    filters = range_filters(request)
    rows = liquidation_count_capped(filters=filters, cap=ARRAY_MAX_ROWS + 1)
    if rows > ARRAY_MAX_ROWS:
        raise BadRequest(
            f"more than {ARRAY_MAX_ROWS:,} liquidations in this range: ask for a shorter "
            f"range, or read it page by page from {PAGED_PATH} (same parameters, "
            "follow next_cursor)"
        )
    return StreamingHttpResponse(_array_chunks(filters), content_type="application/json")


def _array_chunk(filters: HistoryFilters, cursor: Cursor | None) -> tuple[bytes, Cursor | None]:
    """Return one keyset chunk as comma-separated JSON items, and the next cursor."""
    rows, cursor = liquidation_values_page(
        filters=filters, cursor=cursor, limit=ARRAY_CHUNK_ROWS, fields=ITEM_COLUMNS
    )
    return orjson.dumps([range_item(row) for row in rows])[1:-1], cursor


async def _array_chunks(filters: HistoryFilters) -> AsyncIterator[bytes]:
    """Yield the array a chunk at a time; a failure leaves it unclosed, never complete."""
    yield b"["
    cursor: Cursor | None = None
    first = True
    while True:
        items, cursor = await sync_to_async(_array_chunk)(filters, cursor)
        if items:
            yield items if first else b"," + items
            first = False
        if cursor is None:
            break
    yield b"]"


@api_view
def liquidations_paged(request: HttpRequest) -> HttpResponse:
    """Liquidations of [start_timestamp, end_timestamp) in time order, a page at a time."""
    limit = limit_param(request, default=PAGED_DEFAULT_LIMIT)
    filters = range_filters(request)
    token = request.GET.get("cursor")
    try:
        cursor = Cursor.decode(token) if token is not None else None
    except BadCursor as exc:
        raise BadRequest(f"bad cursor: {exc}") from None
    # Plain rows of the item's columns (no model instances), serialised by orjson: the
    # database's part of a 500-row page is ~3 ms at 20 M rows, the rest was Python.
    rows, next_cursor = liquidation_values_page(
        filters=filters, cursor=cursor, limit=limit, fields=ITEM_COLUMNS
    )
    assert filters.start is not None and filters.end is not None
    body = {
        "symbol": filters.symbol,
        "start_timestamp": datetime_to_ms(filters.start),
        "end_timestamp": datetime_to_ms(filters.end),
        "limit": limit,
        "data": [liquidation_item(row) for row in rows],
        "next_cursor": next_cursor.encode() if next_cursor else None,
    }
    return HttpResponse(orjson.dumps(body), content_type="application/json")
