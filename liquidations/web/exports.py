"""CSV downloads of the record: one column list, one writer, cells that are never formulas.

Used by /history/csv (filtered, streamed a keyset page at a time) and the admin's export
action (the selected rows).
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from django.utils import timezone

from ..models import Liquidation, Side
from ..selectors.history import Cursor, HistoryFilters, liquidation_values_page
from ..services.liquidations import INSERT_FIELDS
from ..upstream.events import datetime_to_ms

CSV_CHUNK_ROWS = 2000
CSV_HEADER = (
    "id",
    "trade_time",
    "trade_time_ms",
    "venue",
    "instrument",
    "symbol",
    "side",
    "position_liquidated",
    "order_type",
    "time_in_force",
    "original_quantity",
    "price",
    "average_price",
    "order_status",
    "last_filled_quantity",
    "filled_quantity",
    "usd",
    "event_time_ms",
    "received_at",
)
# OWASP "CSV Injection": a cell starting with one of these is a formula to a spreadsheet.
# Also a leading LF, and the full-width forms (＝ ＋ － ＠) that some spreadsheets read
# as their ASCII twins; leading whitespace before any of them does not disarm it.
FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


class _Echo:
    """A file-like object whose write returns the line instead of storing it."""

    def write(self, value: str) -> str:
        return value


_echo = csv.writer(_Echo())


def csv_cell(value: object) -> object:
    """Return a cell a spreadsheet cannot take for a formula ("=HYPERLINK(...)").

    Text is prefixed with ' when, past any leading whitespace or invisible characters, it
    starts like a formula, or when it starts with a tab, CR or LF. Numbers are left alone.
    """
    if not isinstance(value, str) or value[:1].isalnum():
        return value  # a number, or text starting with a letter or digit (most cells)
    for char in value:
        if char in FORMULA_STARTS:
            return "'" + value
        if not (char.isspace() or unicodedata.category(char) in ("Cc", "Cf")):
            break
    return value


def _line(cells: Iterable[object]) -> str:
    """Return one CSV line; the one place rows are written, so every cell is guarded."""
    return _echo.writerow([csv_cell(cell) for cell in cells])


# What a CSV line reads: a page of plain rows, not model instances (half the time a row).
CSV_COLUMNS = INSERT_FIELDS  # every stored column


def csv_row(liq: Any) -> tuple:
    """One line's cells from a Liquidation or a row of CSV_COLUMNS (plus id, trade_time)."""
    return (
        liq.id,
        liq.trade_time.isoformat(timespec="milliseconds"),
        datetime_to_ms(liq.trade_time),
        liq.venue,
        liq.instrument,
        liq.symbol,
        liq.side,
        "long" if liq.side == Side.SELL else "short",
        liq.order_type,
        liq.time_in_force,
        liq.original_quantity,
        liq.price,
        liq.average_price,
        liq.order_status,
        liq.last_filled_quantity,
        liq.filled_quantity,
        liq.notional_usd,
        datetime_to_ms(liq.event_time) if liq.event_time else "",
        liq.received_at.isoformat(timespec="milliseconds"),
    )


def csv_lines(rows: Iterable[Liquidation]) -> Iterator[str]:
    """Yield the header, then one line per row."""
    yield _line(CSV_HEADER)
    for liq in rows:
        yield _line(csv_row(liq))


async def _filtered_lines(filters: HistoryFilters) -> AsyncIterator[str]:
    """Yield the CSV a chunk of rows at a time: each chunk is one keyset query."""
    yield _line(CSV_HEADER)
    cursor: Cursor | None = None
    while True:
        rows, cursor = await sync_to_async(liquidation_values_page)(
            filters=filters,
            cursor=cursor,
            limit=CSV_CHUNK_ROWS,
            fields=CSV_COLUMNS,
            newest_first=True,
        )
        yield "".join(_line(csv_row(liq)) for liq in rows)
        if cursor is None:
            return


def _attachment(response: StreamingHttpResponse) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="liquidations-{stamp}.csv"'
    return response


def csv_download(*, filters: HistoryFilters) -> StreamingHttpResponse:
    """Stream every liquidation matching the filters, newest first (async, for ASGI)."""
    lines = _filtered_lines(filters)
    return _attachment(StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8"))


def csv_download_rows(rows: Iterable[Liquidation]) -> StreamingHttpResponse:
    """Stream the given rows (the admin's selection) in the same format."""
    lines = csv_lines(rows)
    return _attachment(StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8"))
