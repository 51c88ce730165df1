"""Pages and endpoints over the record: history, its CSV, and /health. Thin adapters."""

from __future__ import annotations

import asyncio
import csv
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from . import analytics
from .analytics import BadCursor, Cursor, HistoryFilters, datetime_to_ms
from .models import Side
from .selectors import liquidation_rows

logger = logging.getLogger(__name__)

HISTORY_PAGE_ROWS = 50
CSV_CHUNK_ROWS = 2000
LAYER_PING_TIMEOUT = 2.0
SIDE_CHOICES = (("", "All sides"), ("long", "Longs liquidated"), ("short", "Shorts liquidated"))
SIDE_VALUES = {"long": Side.SELL, "short": Side.BUY}
DATETIME_INPUT_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


class HistoryFilterForm(forms.Form):
    """History filters from the query string; times are UTC."""

    symbol = forms.CharField(required=False, max_length=30)
    side = forms.ChoiceField(required=False, choices=SIDE_CHOICES)
    min_usd = forms.DecimalField(required=False, min_value=0, max_digits=20, decimal_places=2)
    start = forms.DateTimeField(
        required=False,
        input_formats=DATETIME_INPUT_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    end = forms.DateTimeField(
        required=False,
        input_formats=DATETIME_INPUT_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def clean_symbol(self) -> str:
        raw = self.cleaned_data["symbol"]
        if not raw:
            return ""
        symbol = analytics.symbol_normalize(raw)
        if symbol is None:
            raise forms.ValidationError("Not a symbol: letters and digits only, like BTCUSDT.")
        return symbol

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start >= end:
            raise forms.ValidationError("The start must be before the end.")
        return cleaned

    def filters(self) -> HistoryFilters:
        data = self.cleaned_data
        return HistoryFilters(
            symbol=data["symbol"] or None,
            side=SIDE_VALUES.get(data["side"]),
            min_usd=data["min_usd"],
            start=_as_utc(data["start"]),
            end=_as_utc(data["end"]),
        )


def _as_utc(value: datetime | None) -> datetime | None:
    # The form reads times in the current time zone, which is UTC (settings.TIME_ZONE).
    return value.astimezone(UTC) if value else None


@require_GET
def history(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET)
    context: dict = {"form": form, "rows": [], "next_cursor": None, "csv_query": ""}
    if not form.is_valid():
        return render(request, "liquidations/history.html", context, status=400)
    cursor = None
    if token := request.GET.get("cursor"):
        try:
            cursor = Cursor.decode(token)
        except BadCursor as exc:
            context["cursor_error"] = f"This page link is not valid ({exc}). Start again."
            return render(request, "liquidations/history.html", context, status=400)
    page, next_cursor = analytics.liquidation_page(
        filters=form.filters(), cursor=cursor, limit=HISTORY_PAGE_ROWS
    )
    query = request.GET.copy()
    query.pop("cursor", None)
    context.update(
        rows=liquidation_rows(liquidations=page),
        next_cursor=next_cursor.encode() if next_cursor else None,
        filter_query=query.urlencode(),
        is_first_page=cursor is None,
    )
    return render(request, "liquidations/history.html", context)


CSV_HEADER = (
    "id",
    "trade_time",
    "trade_time_ms",
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
)


class _Echo:
    """A file-like object whose write returns the line instead of storing it."""

    def write(self, value: str) -> str:
        return value


@require_GET
def history_csv(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET)
    if not form.is_valid():
        return HttpResponse(
            "Bad filters: " + "; ".join(form.errors.get_json_data(escape_html=True).keys()),
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    response = StreamingHttpResponse(
        _csv_lines(form.filters()), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="liquidations-{stamp}.csv"'
    return response


async def _csv_lines(filters: HistoryFilters) -> AsyncIterator[str]:
    """Yield the CSV a chunk of rows at a time: each chunk is one keyset query."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    cursor: Cursor | None = None
    while True:
        rows, cursor = await sync_to_async(analytics.liquidation_page)(
            filters=filters, cursor=cursor, limit=CSV_CHUNK_ROWS
        )
        yield "".join(writer.writerow(_csv_row(liq)) for liq in rows)
        if cursor is None:
            return


def _csv_text(value: str) -> str:
    # Free-text upstream fields must not become spreadsheet formulas ("=HYPERLINK(...)").
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _csv_row(liq) -> tuple:
    return (
        liq.pk,
        liq.trade_time.isoformat(timespec="milliseconds"),
        datetime_to_ms(liq.trade_time),
        liq.symbol,
        liq.side,
        "long" if liq.side == Side.SELL else "short",
        _csv_text(liq.order_type),
        _csv_text(liq.time_in_force),
        liq.original_quantity,
        liq.price,
        liq.average_price,
        _csv_text(liq.order_status),
        liq.last_filled_quantity,
        liq.filled_quantity,
        liq.notional_usd,
        datetime_to_ms(liq.event_time),
    )


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Database, channel layer and worker state; 503 when any of them is down."""
    body: dict = {"database": "ok", "channel_layer": "ok", "worker": None}
    healthy = True
    try:
        analytics.database_ping()
        worker = analytics.worker_health(now=timezone.now())
    except Exception as exc:
        logger.warning("Health: database unavailable: %s", exc)
        body["database"] = f"unavailable: {type(exc).__name__}"
        healthy = False
    else:
        body["worker"] = _worker_body(worker)
        healthy = worker.healthy
    try:
        async_to_sync(_layer_round_trip)()
    except Exception as exc:
        logger.warning("Health: channel layer unavailable: %r", exc)
        body["channel_layer"] = f"unavailable: {type(exc).__name__}"
        healthy = False
    body["status"] = "ok" if healthy else "unavailable"
    return JsonResponse(body, status=200 if healthy else 503)


def _worker_body(worker: analytics.WorkerHealth) -> dict:
    return {
        "state": worker.state,
        "connected_since": worker.connected_since.isoformat() if worker.connected_since else None,
        "last_event_age_s": _round(worker.last_event_age_s),
        "heartbeat_age_s": _round(worker.heartbeat_age_s),
        "disconnected_for_s": _round(worker.disconnected_for_s),
        "events_stored": worker.events_stored,
        "malformed_dropped": worker.malformed_dropped,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def _layer_round_trip() -> None:
    """Send a message to a fresh channel and read it back (Redis: a real round trip)."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("health.")
    async with asyncio.timeout(LAYER_PING_TIMEOUT):
        await layer.send(channel, {"type": "health.ping"})
        message = await layer.receive(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError(f"unexpected message {message.get('type')!r}")
