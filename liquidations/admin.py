"""Admin: the record is read-only, and stays usable with millions of liquidations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import EmptyPage, Paginator
from django.db import connection, connections
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from .models import SIDE_LABELS, ConnectionGap, DeadLetter, Liquidation, Symbol, WorkerState
from .selectors.feed import format_decimal, format_quantity
from .selectors.symbols import symbol_info, symbol_info_map
from .upstream.events import is_symbol
from .web.exports import csv_download_rows

EXACT_COUNT_LIMIT = 10_000
MAX_LISTED_ROWS = 10_000  # the deepest page's OFFSET: ~2 ms at 50 million rows
# What a row of the liquidation list shows: its columns, and its checkbox's label (__str__).
LISTED_FIELDS = (
    "trade_time",
    "venue",
    "symbol",
    "instrument",
    "side",
    "filled_quantity",
    "average_price",
    "notional_usd",
)


class LargeTablePaginator(Paginator):
    """Count exactly up to EXACT_COUNT_LIMIT rows; beyond that, estimate without COUNT(*).

    PostgreSQL's planner estimate serves filtered lists; an unfiltered list on another
    database uses the highest id (rows are only ever appended).

    Pages go as deep as MAX_LISTED_ROWS: a page is an OFFSET, and the last of 50 million
    rows would read them all (OFFSET 1,000,000 took 0.2 s, the 1,000,000th page ~10 s).
    A page number past them shows the last listed page; older rows are reached through
    the filters and the date hierarchy, which the page says.
    """

    @cached_property
    def num_pages(self) -> int:
        listed = max(1, -(-MAX_LISTED_ROWS // self.per_page))
        return min(super().num_pages, listed)

    @cached_property
    def capped(self) -> bool:
        """Whether more rows match than the pages list."""
        return self.count > self.listed_rows

    @property
    def listed_rows(self) -> int:
        return self.num_pages * int(self.per_page)

    def validate_number(self, number):
        try:
            return super().validate_number(number)
        except EmptyPage:
            if self.capped and int(number) > self.num_pages:
                return self.num_pages
            raise

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        assert isinstance(queryset, QuerySet)  # the admin pages querysets
        capped = queryset.order_by()[: EXACT_COUNT_LIMIT + 1].count()
        if capped <= EXACT_COUNT_LIMIT:
            return capped
        return max(capped, self._estimate(queryset))

    @staticmethod
    def _estimate(queryset: QuerySet) -> int:
        connection = connections[queryset.db]
        if connection.vendor == "postgresql":
            sql, params = queryset.order_by().values("pk").query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
                plan = cursor.fetchone()[0]
            if isinstance(plan, str):
                import json

                plan = json.loads(plan)
            return int(plan[0]["Plan"]["Plan Rows"])
        if not queryset.query.where:
            return queryset.model.objects.aggregate(top=Max("pk"))["top"] or 0
        return 0


class LiquidationChangeList(ChangeList):
    """The rows of a page read the columns they show (and their checkboxes' labels), not
    all 17; an action still takes whole rows (it asks the changelist's queryset). A page
    number past the listed pages (LargeTablePaginator) shows the last of them."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = self.result_list.only(*LISTED_FIELDS)
        # A page past the listed ones was shown as the last: mark that one as current.
        self.page_num = min(self.page_num, self.paginator.num_pages)


class DrillDownQuerySet(QuerySet):
    """The date hierarchy's years, months or days by index probes, not a scan of every row.

    Django asks `datetimes(field, kind)`: a SELECT DISTINCT over every matching row (the
    whole record for the years, a year's rows for the months, a month's for the days:
    seconds at 20 million rows). Here: the first and last time (two index endpoints),
    then one EXISTS per candidate period in between (at most a few years, 12 months or
    31 days), each a range probe of the time (or symbol, time) index.
    """

    def aggregate(self, *args, **kwargs):
        """Several MIN/MAX (the date hierarchy's span) as one query each.

        Each alone is an index endpoint; asked in one SELECT, SQLite scans the whole
        index instead (4.3 s for the unfiltered list at 5 million rows).
        """
        if args or len(kwargs) < 2 or not all(isinstance(e, Min | Max) for e in kwargs.values()):
            return super().aggregate(*args, **kwargs)
        aggregate = super().aggregate
        return {name: aggregate(**{name: expr})[name] for name, expr in kwargs.items()}

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        if kind not in ("year", "month", "day"):
            return super().datetimes(field_name, kind, order, tzinfo)
        zone = tzinfo or timezone.get_current_timezone()
        span = self.aggregate(first=Min(field_name), last=Max(field_name))
        if span["first"] is None:
            return []
        first, last = (span[k].astimezone(zone) for k in ("first", "last"))
        start = first.replace(
            month=1 if kind == "year" else first.month,
            day=1 if kind != "day" else first.day,
            hour=0,
            minute=0,
            second=0,
            microsecond=0,
        )
        found = []
        while start <= last:
            end = _next_period(start, kind)
            if self.filter(**{f"{field_name}__gte": start, f"{field_name}__lt": end}).exists():
                found.append(start)
            start = end
        return found if order == "ASC" else found[::-1]


def _next_period(start: datetime, kind: str) -> datetime:
    if kind == "year":
        return start.replace(year=start.year + 1)
    if kind == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    naive = start.replace(tzinfo=None) + timedelta(days=1)
    return timezone.make_aware(naive, start.tzinfo) if start.tzinfo else naive


def recorded_symbols() -> list[str]:
    """Return the distinct symbols of the record: one (symbol, time) index probe each."""
    table = connection.ops.quote_name(Liquidation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE seen(symbol) AS (SELECT MIN(symbol) FROM {table} UNION ALL "
            f"SELECT (SELECT MIN(symbol) FROM {table} WHERE symbol > seen.symbol) "
            "FROM seen WHERE seen.symbol IS NOT NULL) "
            "SELECT symbol FROM seen WHERE symbol IS NOT NULL"
        )
        return [row[0] for row in cursor.fetchall()]


class SymbolFilter(admin.SimpleListFilter):
    """A text box (with the known symbols as suggestions): 500 links would be no filter."""

    title = "symbol"
    parameter_name = "symbol"
    template = "admin/liquidations/symbol_filter.html"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self) -> bool:
        return True

    def value(self) -> str | None:
        value = super().value()
        return value.strip().upper() if value else None

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not is_symbol(value):
            return queryset.none()
        return queryset.filter(symbol=value)

    def choices(self, changelist):
        yield {
            "value": self.value() or "",
            "parameter_name": self.parameter_name,
            "hidden": [
                (key, value)
                for key, values in changelist.params.items()
                if key != self.parameter_name
                for value in (values if isinstance(values, list) else [values])
            ],
            "clear_query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "symbols": list(Symbol.objects.values_list("symbol", flat=True)),
        }


class ReadOnlyAdmin(admin.ModelAdmin):
    """Facts recorded by the worker: viewable, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Liquidation)
class LiquidationAdmin(ReadOnlyAdmin):
    list_display = (
        "trade_time_display",
        "venue",
        "symbol",
        "instrument",
        "side_display",
        "quantity_display",
        "average_price_display",
        "usd_display",
    )
    list_filter = ("venue", "side", SymbolFilter, "trade_time")
    search_fields = ("symbol",)
    search_help_text = "Symbol or its beginning, e.g. BTC or 1000PEPEUSDT."
    date_hierarchy = "trade_time"
    ordering = ("-trade_time", "-id")
    sortable_by = ("trade_time_display",)
    # 50 like the history page: a page is mostly rendering (its queries take a few ms),
    # even with the rows built by templatetags/admin_result_list.py.
    list_per_page = 50
    list_max_show_all = 1000
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = LargeTablePaginator
    actions = ("export_csv",)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return DrillDownQuerySet(self.model, query=queryset.query, using=queryset.db)

    def get_changelist(self, request, **kwargs):
        return LiquidationChangeList

    def action_checkbox(self, obj):
        """The row's checkbox as Django's CheckboxInput renders it, without the widget
        template (a quarter of the list's render time at 50 rows), in one string: the
        translated label is trusted as Django's format_html trusts it, the row escaped."""
        label = _("Select this object for an action - {}").format(escape(str(obj)))
        return mark_safe(
            f'<input type="checkbox" name="{helpers.ACTION_CHECKBOX_NAME}" value="{obj.pk}" '
            f'class="action-select" aria-label="{label}">'
        )

    def get_search_results(self, request, queryset, search_term):
        """Match symbols by prefix through the Symbol table, so the symbol index is used."""
        term = search_term.strip().upper()
        if not term:
            return queryset, False
        if not is_symbol(term):
            return queryset.none(), False
        symbols = set(
            Symbol.objects.filter(symbol__startswith=term).values_list("symbol", flat=True)
        )
        if not symbols:
            # Not listed (yet): the symbols of the record itself, not a LIKE over every row.
            symbols = {symbol for symbol in recorded_symbols() if symbol.startswith(term)}
        symbols.add(term)
        return queryset.filter(symbol__in=sorted(symbols)), False

    def _info(self, obj: Liquidation):
        # The symbol map is one query, cached for a minute: no query per row.
        return symbol_info(symbol=obj.symbol, infos=symbol_info_map())

    @admin.display(description="time (UTC)", ordering="trade_time")
    def trade_time_display(self, obj: Liquidation) -> str:
        return obj.trade_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    @admin.display(description="side")
    def side_display(self, obj: Liquidation) -> str:
        return SIDE_LABELS.get(obj.side, obj.side)

    @admin.display(description="quantity")
    def quantity_display(self, obj: Liquidation) -> str:
        info = self._info(obj)
        # Never rounded: another venue's quantity can be finer than the listing's places.
        return f"{format_quantity(obj.filled_quantity, info.quantity_precision)} {info.base_asset}"

    @admin.display(description="average price")
    def average_price_display(self, obj: Liquidation) -> str:
        return format_decimal(obj.average_price, None)

    @admin.display(description="amount (USD)")
    def usd_display(self, obj: Liquidation) -> str:
        return f"${obj.notional_usd:,.0f}"

    @admin.action(description="Export selected liquidations as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        rows = queryset.order_by("-trade_time", "-id").iterator(chunk_size=2000)
        return csv_download_rows(rows)


@admin.register(Symbol)
class SymbolAdmin(ReadOnlyAdmin):
    list_display = (
        "symbol",
        "status",
        "base_asset",
        "quote_asset",
        "price_precision",
        "quantity_precision",
        "tick_size",
        "step_size",
        "updated_at",
    )
    list_filter = ("status", "quote_asset")
    search_fields = ("symbol", "base_asset")
    list_per_page = 200


@admin.register(ConnectionGap)
class ConnectionGapAdmin(ReadOnlyAdmin):
    list_display = ("venue", "started_at", "ended_at", "duration_display", "reason")
    list_filter = ("venue",)
    date_hierarchy = "started_at"
    search_fields = ("reason",)
    list_per_page = 100

    @admin.display(description="duration")
    def duration_display(self, obj: ConnectionGap) -> str:
        seconds = obj.duration.total_seconds()
        if seconds < 60:
            return f"{seconds:.1f} s"
        minutes, seconds = divmod(int(seconds), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


@admin.register(WorkerState)
class WorkerStateAdmin(ReadOnlyAdmin):
    list_display = (
        "state",
        "connected_since",
        "last_event_at",
        "events_stored",
        "malformed_dropped",
        "heartbeat_at",
    )


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    """Events the database refused (the rest of their batch was stored), with the raw frame."""

    list_display = ("created_at", "venue", "error_display", "frame_display")
    list_filter = ("venue",)
    search_fields = ("error",)
    date_hierarchy = "created_at"
    list_per_page = 100

    @admin.display(description="error")
    def error_display(self, obj: DeadLetter) -> str:
        return obj.error[:200]

    @admin.display(description="raw frame")
    def frame_display(self, obj: DeadLetter) -> str:
        return obj.frame[:300]


# Alerts (#15): their own module, registered on import.
from . import alert_admin  # noqa: E402, F401
