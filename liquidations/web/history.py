"""The history page and its CSV download: filters in the query string, keyset pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ..selectors.feed import liquidation_rows
from ..selectors.filters import SIDE_CHOICES, SIDES
from ..selectors.history import BadCursor, Cursor, HistoryFilters, liquidation_page
from ..upstream.events import symbol_normalize
from .exports import csv_download

HISTORY_PAGE_ROWS = 50
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
        symbol = symbol_normalize(raw)
        if symbol is None:
            raise forms.ValidationError("Not a symbol: letters and digits only, like BTCUSDT.")
        return symbol

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start >= end:
            raise forms.ValidationError("The start must be before the end.")
        return cleaned

    def filters(self) -> HistoryFilters:
        data = self.cleaned_data
        return HistoryFilters(
            symbol=data["symbol"] or None,
            side=SIDES.get(data["side"]) or None,
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
    page, next_cursor = liquidation_page(
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


@require_GET
def history_csv(request: HttpRequest) -> HttpResponseBase:
    form = HistoryFilterForm(request.GET)
    if not form.is_valid():
        return HttpResponse(
            "Bad filters: " + "; ".join(form.errors.get_json_data(escape_html=True).keys()),
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    return csv_download(filters=form.filters())
