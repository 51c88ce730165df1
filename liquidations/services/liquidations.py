"""Writes: storing liquidation events, each once (dedup by the unique key)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, NamedTuple

import orjson
from django.db import connection, models, transaction
from django.utils import timezone

from ..models import Liquidation
from ..upstream.events import LiquidationEvent, ms_to_datetime

logger = logging.getLogger(__name__)

UNIQUE_FIELDS = ("symbol", "side", "trade_time", "filled_quantity", "average_price")
# The stored columns of an event, named as on Liquidation and on LiquidationEvent (where
# the times are *_ms): the one list the inserts, the bulk loader and exports follow.
EVENT_FIELDS = (
    "symbol",
    "side",
    "order_type",
    "time_in_force",
    "original_quantity",
    "price",
    "average_price",
    "order_status",
    "last_filled_quantity",
    "filled_quantity",
    "trade_time",
    "event_time",
    "notional_usd",
)
INSERT_FIELDS = (*EVENT_FIELDS, "received_at")
_TIME_FIELDS = frozenset({"trade_time", "event_time"})
_event_attributes = attrgetter(
    *(f"{name}_ms" if name in _TIME_FIELDS else name for name in EVENT_FIELDS)
)
_TIME_POSITIONS = tuple(n for n, name in enumerate(EVENT_FIELDS) if name in _TIME_FIELDS)


def _event_values(
    event: LiquidationEvent, *, as_db_time: Callable[[datetime], object] | None = None
) -> list[object]:
    """Return an event's EVENT_FIELDS values: decimals as text, times as epoch ms.

    With as_db_time, times are datetimes adapted by it (SQLite's text form).
    """
    values: list[Any] = [str(v) if type(v) is Decimal else v for v in _event_attributes(event)]
    if as_db_time is not None:
        for n in _TIME_POSITIONS:
            values[n] = as_db_time(ms_to_datetime(values[n]))
    return values


class StoredLiquidation(NamedTuple):
    """A newly stored event with its id, named like the Liquidation fields rows are built from.

    The worker renders and broadcasts these without reading the rows back.
    """

    pk: int
    symbol: str
    side: str
    trade_time: datetime
    filled_quantity: Decimal
    average_price: Decimal
    notional_usd: Decimal


def liquidation_store_new(
    *, events: Sequence[LiquidationEvent], received_at: datetime | None = None
) -> list[StoredLiquidation]:
    """Insert the events, skipping duplicates; return the new ones, by trade time then id.

    A replayed event (same dedup key as a stored one, or as an earlier one in the batch)
    is neither stored nor returned, so it is never shown twice.
    """
    if not events:
        return []
    received_at = received_at or timezone.now()
    unique = _unique_events(events)
    if connection.vendor == "postgresql":
        # One statement, atomic on its own: in autocommit it is one round trip, where a
        # transaction around it adds BEGIN and COMMIT (~0.3 ms a batch, make bench).
        stored = _insert_postgresql(unique, received_at)
    else:
        with transaction.atomic():
            stored = _insert_each(unique, received_at)
    stored.sort(key=lambda liq: (liq.trade_time, liq.pk))
    return stored


def _unique_events(events: Sequence[LiquidationEvent]) -> list[LiquidationEvent]:
    # Duplicates inside one statement would conflict with each other on PostgreSQL.
    seen: dict[tuple, LiquidationEvent] = {}
    for event in events:
        seen.setdefault(event.dedup_key, event)
    return list(seen.values())


# Rows per INSERT when a large batch is stored in chunks (liquidation_store_chunked).
STORE_CHUNK_ROWS = 500
# Returned by the insert as stored, so a live row shows what a reloaded page shows (the
# columns round to their scale; SQLite keeps 15 significant digits).
RETURNED_FIELDS = ("filled_quantity", "average_price", "notional_usd")


def _stored(pk: int, event: LiquidationEvent, values: Sequence[Any]) -> StoredLiquidation:
    filled_quantity, average_price, notional_usd = values
    return StoredLiquidation(
        pk=pk,
        symbol=event.symbol,
        side=event.side,
        trade_time=event.trade_time,
        filled_quantity=filled_quantity,
        average_price=average_price,
        notional_usd=notional_usd,
    )


def _insert_postgresql(
    events: list[LiquidationEvent], received_at: datetime
) -> list[StoredLiquidation]:
    # The whole batch is one JSON parameter (orjson, ~1 µs an event; psycopg's array
    # dumpers cost ~25 µs); the statement returns each new row's id and position in the
    # batch, so nothing is read back into models. In the batch, events are unique by key.
    payload = orjson.dumps(
        [
            {**dict(zip(EVENT_FIELDS, _event_values(e), strict=True)), "n": n}
            for n, e in enumerate(events)
        ]
    ).decode()
    with connection.cursor() as cursor:
        cursor.execute(_postgresql_insert_sql(), [payload, received_at])
        new = cursor.fetchall()
    return [_stored(pk, events[n], values) for pk, n, *values in new]


def _field(name: str) -> models.Field:
    field = Liquidation._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def _column(name: str) -> str:
    """Return the quoted database column of a Liquidation field."""
    return _quoted(_field(name))


def _quoted(field: models.Field) -> str:
    column = field.column
    assert column is not None
    return connection.ops.quote_name(column)


@functools.cache
def _postgresql_insert_sql() -> str:
    meta = Liquidation._meta
    quote = connection.ops.quote_name
    fields = [_field(name) for name in INSERT_FIELDS if name != "received_at"]
    record, source = [], []
    for field in fields:
        column = _quoted(field)
        if isinstance(field, models.DateTimeField):
            # Sent as epoch milliseconds: exact, and no datetime to build or dump.
            record.append(f"{column} bigint")
            source.append(f"'epoch'::timestamptz + {column} * interval '1 millisecond'")
        elif isinstance(field, models.DecimalField):
            # Rounded to the column's scale here, so the join below sees stored values.
            record.append(f"{column} numeric")
            source.append(f"CAST({column} AS {field.db_type(connection)})")
        else:
            record.append(f"{column} text")
            source.append(column)
    columns = ", ".join(_quoted(field) for field in fields)
    key = ", ".join(_column(name) for name in UNIQUE_FIELDS)
    selected = ", ".join(
        f"{expression} AS {_quoted(field)}"
        for field, expression in zip(fields, source, strict=True)
    )
    pk = quote("id")
    returned = ", ".join(f"ins.{_column(name)}" for name in RETURNED_FIELDS)
    inserted = ", ".join(
        _column(name) for name in dict.fromkeys(("id", *UNIQUE_FIELDS, *RETURNED_FIELDS))
    )
    # DISTINCT ON: two events equal only once rounded to the column's scale are one row.
    return (
        f"WITH src AS (SELECT {selected}, n FROM json_to_recordset(%s::json) "
        f"AS batch({', '.join(record)}, n integer)), "
        f"ins AS (INSERT INTO {quote(meta.db_table)} ({columns}, {quote('received_at')}) "
        f"SELECT {columns}, %s FROM src ON CONFLICT ({key}) DO NOTHING RETURNING {inserted}) "
        f"SELECT DISTINCT ON (ins.{pk}) ins.{pk}, src.n, {returned} "
        f"FROM ins JOIN src USING ({key}) ORDER BY ins.{pk}, src.n"
    )


def _insert_each(events: list[LiquidationEvent], received_at: datetime) -> list[StoredLiquidation]:
    # SQLite, in process: one prepared INSERT .. RETURNING per event on the driver's own
    # cursor (no SQL rewriting per call), so each new row's id comes back with its event.
    meta = Liquidation._meta
    quote = connection.ops.quote_name
    columns = ", ".join(_column(name) for name in INSERT_FIELDS)
    key = ", ".join(_column(name) for name in UNIQUE_FIELDS)
    returned = ", ".join(_column(name) for name in RETURNED_FIELDS)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "
        f"VALUES ({', '.join(['?'] * len(INSERT_FIELDS))}) "
        f"ON CONFLICT ({key}) DO NOTHING RETURNING {quote('id')}, {returned}"
    )
    as_db_time = connection.ops.adapt_datetimefield_value
    received = as_db_time(received_at)
    from_db = _db_converters(RETURNED_FIELDS)
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    stored = []
    try:
        for e in events:
            row = cursor.execute(
                sql,
                (*_event_values(e, as_db_time=as_db_time), received),
            ).fetchone()
            if row is not None:
                pk, *values = row
                converted = [f(v) for f, v in zip(from_db, values, strict=True)]
                stored.append(_stored(pk, e, converted))
    finally:
        cursor.close()
    return stored


def _db_converters(names: Sequence[str]) -> list[Callable[[object], Any]]:
    """Return, per field, a function turning a raw driver value into what the ORM reads."""
    converters: list[Callable[[object], Any]] = []
    for name in names:
        field = _field(name)
        column = field.get_col(Liquidation._meta.db_table)
        steps = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        converters.append(functools.partial(_convert, steps=steps, column=column))
    return converters


def _convert(value: object, *, steps: list, column: object) -> object:
    for step in steps:
        value = step(value, column, connection)
    return value


def liquidation_store_chunked(
    *,
    events: Sequence[LiquidationEvent],
    on_chunk: Callable[[list[StoredLiquidation], bool], None],
    received_at: datetime | None = None,
) -> list[StoredLiquidation]:
    """Store like liquidation_store_new, handing each stored chunk to on_chunk at once.

    On PostgreSQL a large batch is stored in one transaction of STORE_CHUNK_ROWS-row
    INSERTs, so the caller can work on one chunk (the worker renders it on another
    thread) while the next is being stored: on_chunk(chunk, True). Elsewhere, or for
    one chunk, on_chunk(everything stored, False) once.
    """
    received_at = received_at or timezone.now()
    unique = _unique_events(events)
    chunks = [unique[i : i + STORE_CHUNK_ROWS] for i in range(0, len(unique), STORE_CHUNK_ROWS)]
    if connection.vendor != "postgresql" or len(chunks) <= 1:
        stored = liquidation_store_new(events=unique, received_at=received_at)
        on_chunk(stored, False)
        return stored
    stored = []
    with transaction.atomic():
        for chunk in chunks:
            new = _insert_postgresql(chunk, received_at)
            stored.extend(new)
            on_chunk(new, True)
    stored.sort(key=lambda liq: (liq.trade_time, liq.pk))
    return stored
