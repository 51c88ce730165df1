"""Dashboard pages: all market and one symbol, their HTMX partials, the symbol picker."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from ..selectors.feed import liquidation_last_id, liquidation_newest, liquidation_rows
from ..selectors.filters import MIN_USD_PRESETS, SIDE_CHOICES, VENUE_CHOICES, FeedFilter
from ..selectors.market import BOOK_DEPTHS, symbol_market_spec
from ..selectors.stats import page_stats_context
from ..selectors.status import worker_status
from ..selectors.symbols import symbol_exists, symbol_search
from ..selectors.volume import TIMEFRAMES
from ..upstream.events import is_symbol

PAGE_ROWS = 50
SEARCH_RESULTS = 20
MAX_SEARCH_LENGTH = 30


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _is_htmx_partial(request: HtmxHttpRequest) -> bool:
    # A history restore (back button, cache miss) needs the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _feed(request: HtmxHttpRequest, *, symbol: str | None) -> HttpResponse:
    feed_filter = FeedFilter.from_query(request.GET)
    # The cursor is read before the rows: a row stored in between is sent again by the
    # socket's catch-up (and dropped as a duplicate), never missed.
    cursor = liquidation_last_id()
    liquidations = liquidation_newest(
        symbol=symbol,
        min_usd=feed_filter.min_usd,
        side=feed_filter.binance_side,
        venue=feed_filter.venue,
        limit=PAGE_ROWS,
    )
    context: dict[str, Any] = {
        "symbol": symbol,
        "rows": liquidation_rows(liquidations=liquidations),
        "filter": feed_filter,
        **_filter_choices(request.path, feed_filter),
        "cursor": cursor,
        "page_rows": PAGE_ROWS,
        "ws_url": _ws_url(symbol=symbol, feed_filter=feed_filter),
    }
    if _is_htmx_partial(request):
        response = render(request, "liquidations/_feed.html", context)
    else:
        context["worker_status"] = worker_status()
        context.update(page_stats_context(symbol=symbol))
        if symbol:
            context["market"] = _market_context(symbol)
        response = render(request, "liquidations/index.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def _filter_choices(path: str, feed_filter: FeedFilter) -> dict[str, list[dict]]:
    """The filter bar's links: each choice's URL keeps the other filters."""
    current = {
        "min_usd": feed_filter.min_usd_value,
        "side": feed_filter.side,
        "venue": feed_filter.venue,
    }
    return {
        "min_choices": [
            {
                "label": f"${preset:,}".replace(",000,000", "M").replace(",000", "k"),
                "href": _filter_url(path, **{**current, "min_usd": str(preset)}),
                "active": feed_filter.min_usd == preset,
            }
            for preset in MIN_USD_PRESETS
        ],
        "side_choices": [
            {
                "label": label,
                "href": _filter_url(path, **{**current, "side": value}),
                "active": feed_filter.side == value,
            }
            for value, label in SIDE_CHOICES
        ],
        "venue_choices": [
            {
                "label": label,
                "value": value,
                "href": _filter_url(path, **{**current, "venue": value}),
                "active": feed_filter.venue == value,
            }
            for value, label in VENUE_CHOICES
        ],
    }


def _market_context(symbol: str) -> dict[str, object]:
    """What the market panels of a symbol page need (market.js does the rest)."""
    return {
        "spec": symbol_market_spec(symbol=symbol),
        "timeframes": list(TIMEFRAMES),
        "depths": BOOK_DEPTHS,
        "marker_usd": 100_000,
        "ws_url": f"/ws/market/{symbol}/",
    }


def _filter_url(path: str, *, min_usd: str, side: str, venue: str = "") -> str:
    """Return path with the filter's query string, leaving defaults out (shareable links)."""
    query = {}
    if min_usd not in ("", "0"):
        query["min_usd"] = min_usd
    if side:
        query["side"] = side
    if venue:
        query["venue"] = venue
    return f"{path}?{urlencode(query)}" if query else path


def _ws_url(*, symbol: str | None, feed_filter: FeedFilter) -> str:
    path = f"/ws/liquidations/{quote(symbol, safe='')}/" if symbol else "/ws/liquidations/"
    return _filter_url(
        path, min_usd=feed_filter.min_usd_value, side=feed_filter.side, venue=feed_filter.venue
    )


@require_GET
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    return _feed(request, symbol=None)


@require_GET
def symbol_dashboard(request: HtmxHttpRequest, symbol: str) -> HttpResponse:
    upper = symbol.upper()
    if upper != symbol and is_symbol(upper):
        url = reverse("liquidations:symbol", args=[upper])
        if request.META.get("QUERY_STRING"):
            url += "?" + request.META["QUERY_STRING"]
        return redirect(url, permanent=False)
    if not is_symbol(symbol):
        return _symbol_not_found(request, symbol=symbol, reason="is not a valid symbol")
    if not symbol_exists(symbol=symbol):
        return _symbol_not_found(request, symbol=symbol, reason="is not a known symbol")
    return _feed(request, symbol=symbol)


def _symbol_not_found(request: HtmxHttpRequest, *, symbol: str, reason: str) -> HttpResponse:
    return render(
        request,
        "liquidations/symbol_not_found.html",
        {"symbol": symbol, "reason": reason},
        status=404,
    )


@require_GET
def symbol_picker(request: HtmxHttpRequest) -> HttpResponse:
    """Search symbols: a list of links for HTMX, a page (or the match itself) without it."""
    query = request.GET.get("q", "").strip()[:MAX_SEARCH_LENGTH]
    symbols = symbol_search(query=query, limit=SEARCH_RESULTS)
    context = {"query": query, "symbols": symbols}
    if _is_htmx_partial(request):
        response = render(request, "liquidations/_symbol_results.html", context)
    elif query.upper() in symbols:
        return redirect("liquidations:symbol", query.upper())
    else:
        response = render(request, "liquidations/symbol_search.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response
