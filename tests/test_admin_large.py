"""The admin on a large record: the date hierarchy lists the same years, months and days
as Django's DISTINCT, and search finds unlisted symbols, by index probes instead of
reading every row."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from liquidations.admin import DrillDownQuerySet, recorded_symbols
from liquidations.models import Liquidation
from tests.factories import liq, store

CHANGELIST = "/admin/liquidations/liquidation/"
MOMENTS = [
    datetime(2025, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(2026, 1, 1, 12, tzinfo=UTC),
    datetime(2026, 1, 31, 23, tzinfo=UTC),
    datetime(2026, 3, 2, 5, tzinfo=UTC),
    datetime(2026, 12, 1, tzinfo=UTC),
]


def _store() -> None:
    store(
        *[
            liq(T=int(moment.timestamp() * 1000), symbol="BTCUSDT" if n % 2 else "ETHUSDT")
            for n, moment in enumerate(MOMENTS)
        ]
    )


def check_drill_down_matches_distinct() -> None:
    _store()
    plain = Liquidation.objects.all()
    probed = DrillDownQuerySet(Liquidation)
    scopes = [
        {},
        {"symbol": "BTCUSDT"},
        {"symbol": "NOSUCHUSDT"},
        {"trade_time__gte": datetime(2026, 1, 1, tzinfo=UTC)},
        {
            "trade_time__gte": datetime(2026, 1, 1, tzinfo=UTC),
            "trade_time__lt": datetime(2026, 2, 1, tzinfo=UTC),
        },
    ]
    for scope in scopes:
        for kind in ("year", "month", "day"):
            expected = list(plain.filter(**scope).datetimes("trade_time", kind))
            assert probed.filter(**scope).datetimes("trade_time", kind) == expected, (scope, kind)
            assert probed.filter(**scope).datetimes("trade_time", kind, "DESC") == expected[::-1]


@pytest.mark.django_db
def test_drill_down_lists_the_periods_distinct_would():
    check_drill_down_matches_distinct()


@pytest.mark.production
@pytest.mark.django_db
def test_pg_drill_down_lists_the_periods_distinct_would():
    check_drill_down_matches_distinct()


@pytest.mark.django_db
def test_changelist_drill_down_never_reads_distinct_periods(client):
    _store()
    client.force_login(User.objects.create_superuser("root", password="x"))
    for query in ("", "?trade_time__year=2026", "?trade_time__year=2026&trade_time__month=1"):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(CHANGELIST + query)
        assert response.status_code == 200
        assert not [q for q in captured if "DISTINCT" in q["sql"].upper()], query
        # The span is two index endpoints: MIN and MAX in one SELECT scan the whole index
        # on SQLite.
        both = [q for q in captured if "MIN(" in q["sql"].upper() and "MAX(" in q["sql"].upper()]
        assert not both, query
    html = response.content.decode()
    # January 2026 drills down to its two days with rows.
    assert "trade_time__day=1" in html and "trade_time__day=31" in html
    assert "trade_time__day=2&" not in html


def check_recorded_symbols() -> None:
    assert recorded_symbols() == []
    _store()
    store(liq(T=1_766_880_000_000, symbol="1000PEPEUSDT"))
    assert recorded_symbols() == ["1000PEPEUSDT", "BTCUSDT", "ETHUSDT"]


@pytest.mark.django_db
def test_recorded_symbols_are_the_distinct_symbols():
    check_recorded_symbols()


@pytest.mark.production
@pytest.mark.django_db
def test_pg_recorded_symbols_are_the_distinct_symbols():
    check_recorded_symbols()


@pytest.mark.django_db
def test_search_of_an_unlisted_symbol_matches_no_pattern(client):
    _store()
    client.force_login(User.objects.create_superuser("root", password="x"))
    for term, expected in (("eth", {"ETHUSDT"}), ("nosuch", set()), ("", {"BTCUSDT", "ETHUSDT"})):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"{CHANGELIST}?q={term}")
        assert response.status_code == 200
        assert {row.symbol for row in response.context["cl"].result_list} == expected
        liquidation_likes = [
            q["sql"]
            for q in captured
            if " LIKE " in q["sql"].upper() and "liquidations_liquidation" in q["sql"]
        ]
        assert not liquidation_likes, term


@pytest.mark.django_db
def test_span_of_a_filtered_list_is_the_same_in_two_queries():
    from django.db.models import Max, Min

    _store()
    span = {"first": Min("trade_time"), "last": Max("trade_time")}
    for lookup in ({}, {"symbol": "BTCUSDT"}, {"symbol": "NOSUCHUSDT"}):
        with CaptureQueriesContext(connection) as captured:
            split = DrillDownQuerySet(Liquidation).filter(**lookup).aggregate(**span)
        assert len(captured) == 2
        assert split == Liquidation.objects.filter(**lookup).aggregate(**span)
