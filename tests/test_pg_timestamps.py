"""PostgreSQL timestamps read by fromisoformat load exactly as Django's own loader loads them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader

from liquidations.models import Liquidation
from liquidations.pg_timestamps import iso_loader
from tests.factories import liq, store

pytestmark = [pytest.mark.production, pytest.mark.django_db]

LITERALS = (
    "2026-12-01 20:58:00+00",
    "2026-12-01 20:58:00.3+00",
    "2026-12-01 20:58:00.338+00",
    "2026-12-01 20:58:00.338123+00",
    "2026-12-01 23:58:00.338+03",  # another zone's text: the same instant in UTC
    "2026-12-01 15:28:00.338-05:30",
    "0999-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "2024-02-29 12:00:00+00",
)


def _select(cursor, literals) -> list[datetime]:
    cursor.execute(
        "SELECT v::timestamptz FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, n) ORDER BY n",
        [list(literals)],
    )
    return [row[0] for row in cursor.fetchall()]


def test_every_connection_and_cursor_uses_the_iso_loader():
    with connection.cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(1184, 0)  # timestamptz, text
        assert getattr(loader, "iso_fast", False), loader
        assert loader.timezone == connection.timezone == UTC


def test_values_are_djangos_values():
    with connection.cursor() as cursor:
        ours = _select(cursor, LITERALS)
        register_tzloader(connection.timezone, cursor.cursor)  # Django's, on this cursor
        assert not getattr(cursor.cursor.adapters.get_loader(1184, 0), "iso_fast", False)
        djangos = _select(cursor, LITERALS)
    assert ours == djangos
    assert [v.utcoffset() for v in ours] == [v.utcoffset() for v in djangos]
    assert all(v.tzinfo is UTC for v in ours)
    assert ours[2] == datetime(2026, 12, 1, 20, 58, 0, 338000, tzinfo=UTC)
    assert ours[4] == ours[5] == ours[2]


def _outcome(literal: str, datestyle: str, *, djangos: bool):
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL DateStyle = '{datestyle}'")
        if djangos:
            register_tzloader(connection.timezone, cursor.cursor)
        try:
            return _select(cursor, [literal])
        except Exception as exc:  # compared below: the same error either way
            return (type(exc), str(exc))


@pytest.mark.parametrize(
    ("literal", "datestyle"),
    [
        ("infinity", "ISO, MDY"),
        ("-infinity", "ISO, MDY"),
        ("2000-01-01 00:00:00+00 BC", "ISO, MDY"),
        ("2026-12-01 20:58:00.338+00", "German"),  # 01.12.2026 20:58:00.338 UTC
        ("2026-12-01 20:58:00.338+00", "SQL, DMY"),
    ],
)
def test_what_iso_cannot_read_goes_to_djangos_loader(literal, datestyle):
    """Not ISO text: the loader it extends loads it, or fails, exactly as Django's does."""
    ours = _outcome(literal, datestyle, djangos=False)
    assert ours == _outcome(literal, datestyle, djangos=True)


def test_model_rows_round_trip():
    (row,) = store(liq(T=1_766_880_000_123))
    loaded = Liquidation.objects.get(pk=row.pk)
    assert loaded.trade_time == datetime(2025, 12, 28, 0, 0, 0, 123000, tzinfo=UTC)
    assert loaded.received_at == row.received_at and loaded.received_at.tzinfo is UTC


def test_one_loader_class_per_base_and_zone():
    base = connection.connection.adapters.get_loader(1184, 0).__mro__[1]
    assert iso_loader(base, UTC) is iso_loader(base, UTC)
