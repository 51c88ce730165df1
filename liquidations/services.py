"""Writes: storing liquidations, keeping symbols, recording gaps, broadcasting rows."""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import orjson
from django.db import connection, models, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.utils import timezone

from .binance import LiquidationEvent, SymbolSpec
from .models import ConnectionGap, Liquidation, Symbol, WorkerState
from .selectors import (
    LiquidationRow,
    SymbolInfo,
    WorkerStatus,
    liquidation_rows,
    symbol_info_map,
)
from .templating import substitution_renderer

logger = logging.getLogger(__name__)

GROUP_ALL = "liquidations.all"
# Dashboard headers listen here for the worker's state (lower case: never a symbol group).
WORKER_STATUS_GROUP = "worker.status"
WORKER_STATUS_MESSAGE_TYPE = "worker.status"
BATCH_MESSAGE_TYPE = "liquidations.batch"
WORKER_REQUESTS = ("start", "stop")
UNIQUE_FIELDS = ("symbol", "side", "trade_time", "filled_quantity", "average_price")
INSERT_FIELDS = (
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
    "received_at",
)


def symbol_group(symbol: str) -> str:
    """Return the channel-layer group of one symbol (symbols are validated upstream)."""
    return f"liquidations.{symbol}"


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


def liquidation_store_batch(
    *, events: Sequence[LiquidationEvent], received_at: datetime | None = None
) -> list[Liquidation]:
    """Store like liquidation_store_new; return the new rows as read back from the database."""
    stored = liquidation_store_new(events=events, received_at=received_at)
    by_id = Liquidation.objects.in_bulk([liq.pk for liq in stored])
    return [by_id[liq.pk] for liq in stored]


def _unique_events(events: Sequence[LiquidationEvent]) -> list[LiquidationEvent]:
    # Duplicates inside one statement would conflict with each other on PostgreSQL.
    seen: dict[tuple, LiquidationEvent] = {}
    for event in events:
        seen.setdefault(event.dedup_key, event)
    return list(seen.values())


# Rows per INSERT when a batch is stored while its first part renders (liquidation_ingest).
INGEST_CHUNK_ROWS = 500
# Returned by the insert as stored, so a live row shows what a reloaded page shows (the
# columns round to their scale; SQLite keeps 15 significant digits).
RETURNED_FIELDS = ("filled_quantity", "average_price", "notional_usd")


def _stored(pk: int, event: LiquidationEvent, values: Sequence[Decimal]) -> StoredLiquidation:
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
            {
                "symbol": e.symbol,
                "side": e.side,
                "order_type": e.order_type,
                "time_in_force": e.time_in_force,
                "original_quantity": str(e.original_quantity),
                "price": str(e.price),
                "average_price": str(e.average_price),
                "order_status": e.order_status,
                "last_filled_quantity": str(e.last_filled_quantity),
                "filled_quantity": str(e.filled_quantity),
                "trade_time": e.trade_time_ms,
                "event_time": e.event_time_ms,
                "notional_usd": str(e.notional_usd),
                "n": n,
            }
            for n, e in enumerate(events)
        ]
    ).decode()
    with connection.cursor() as cursor:
        cursor.execute(_postgresql_insert_sql(), [payload, received_at])
        new = cursor.fetchall()
    return [_stored(pk, events[n], values) for pk, n, *values in new]


@functools.cache
def _postgresql_insert_sql() -> str:
    meta = Liquidation._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in INSERT_FIELDS if name != "received_at"]
    record, source = [], []
    for field in fields:
        column = quote(field.column)
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
    columns = ", ".join(quote(field.column) for field in fields)
    key = ", ".join(quote(meta.get_field(name).column) for name in UNIQUE_FIELDS)
    selected = ", ".join(
        f"{expression} AS {quote(field.column)}"
        for field, expression in zip(fields, source, strict=True)
    )
    pk = quote("id")
    returned = ", ".join(f"ins.{quote(meta.get_field(name).column)}" for name in RETURNED_FIELDS)
    inserted = ", ".join(
        quote(meta.get_field(name).column)
        for name in dict.fromkeys(("id", *UNIQUE_FIELDS, *RETURNED_FIELDS))
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
    columns = ", ".join(quote(meta.get_field(name).column) for name in INSERT_FIELDS)
    key = ", ".join(quote(meta.get_field(name).column) for name in UNIQUE_FIELDS)
    returned = ", ".join(quote(meta.get_field(name).column) for name in RETURNED_FIELDS)
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
                (
                    e.symbol,
                    e.side,
                    e.order_type,
                    e.time_in_force,
                    str(e.original_quantity),
                    str(e.price),
                    str(e.average_price),
                    e.order_status,
                    str(e.last_filled_quantity),
                    str(e.filled_quantity),
                    as_db_time(e.trade_time),
                    as_db_time(e.event_time),
                    str(e.notional_usd),
                    received,
                ),
            ).fetchone()
            if row is not None:
                pk, *values = row
                stored.append(_stored(pk, e, [f(v) for f, v in zip(from_db, values, strict=True)]))
    finally:
        cursor.close()
    return stored


def _db_converters(names: Sequence[str]) -> list[Callable[[object], object]]:
    """Return, per field, a function turning a raw driver value into what the ORM reads."""
    converters = []
    for name in names:
        field = Liquidation._meta.get_field(name)
        column = field.get_col(Liquidation._meta.db_table)
        steps = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        converters.append(functools.partial(_convert, steps=steps, column=column))
    return converters


def _convert(value: object, *, steps: list, column: object) -> object:
    for step in steps:
        value = step(value, column, connection)
    return value


def liquidation_messages(
    *, liquidations: Sequence[Liquidation | StoredLiquidation]
) -> dict[str, dict]:
    """Render each row once and return one batch message per group.

    A row carries what consumers filter on (side, usd) next to its HTML, so no viewer
    renders or queries anything. Values are plain types: channels-redis uses msgpack.
    """
    return _group_messages(_message_rows(liquidations, infos=symbol_info_map()))


def _message_rows(
    liquidations: Sequence[Liquidation | StoredLiquidation], *, infos: dict[str, SymbolInfo]
) -> list[dict]:
    render = _row_renderer()
    return [
        {
            "id": row.id,
            "symbol": row.symbol,
            "side": row.side,
            "usd": float(row.usd),
            "trade_time_ms": row.trade_time_ms,
            "html": render(row),
        }
        for row in liquidation_rows(liquidations=liquidations, infos=infos)
    ]


def _group_messages(message_rows: list[dict]) -> dict[str, dict]:
    rows_by_group: dict[str, list[dict]] = defaultdict(list)
    for message_row in message_rows:
        rows_by_group[GROUP_ALL].append(message_row)
        rows_by_group[symbol_group(message_row["symbol"])].append(message_row)
    return {
        group: {"type": BATCH_MESSAGE_TYPE, "rows": rows} for group, rows in rows_by_group.items()
    }


def liquidation_ingest(
    *,
    events: Sequence[LiquidationEvent],
    render_executor: Executor | None = None,
    received_at: datetime | None = None,
) -> tuple[list[StoredLiquidation], dict[str, dict]]:
    """Store the events like liquidation_store_new; return them and their batch messages.

    On PostgreSQL, with an executor, a large batch is stored in chunks and each chunk is
    rendered on the executor while the next one is being stored: the database's time and
    the render's are about equal on the worker's critical path, and now overlap.
    """
    if not events:
        return [], {}
    received_at = received_at or timezone.now()
    infos = symbol_info_map()  # here, so the render thread never queries the database
    unique = _unique_events(events)
    chunks = [unique[i : i + INGEST_CHUNK_ROWS] for i in range(0, len(unique), INGEST_CHUNK_ROWS)]
    if connection.vendor != "postgresql" or render_executor is None or len(chunks) == 1:
        stored = liquidation_store_new(events=unique, received_at=received_at)
        return stored, _group_messages(_message_rows(stored, infos=infos))
    stored, rendering = [], []
    with transaction.atomic():
        for chunk in chunks:
            new = _insert_postgresql(chunk, received_at)
            stored.extend(new)
            rendering.append(render_executor.submit(_message_rows, new, infos=infos))
    rows = [row for chunk in rendering for row in chunk.result()]
    stored.sort(key=lambda liq: (liq.trade_time, liq.pk))
    rows.sort(key=lambda row: (row["trade_time_ms"], row["id"]))
    return stored, _group_messages(rows)


@functools.cache
def _row_renderer():
    # The same _row.html that pages and the consumer's catch-up render with Django.
    return substitution_renderer("liquidations/_row.html", var="row", cls=LiquidationRow)


async def liquidation_broadcast(*, channel_layer, messages: dict[str, dict]) -> None:
    """Send one message per group for this batch (in one go where the layer can)."""
    send_many = getattr(channel_layer, "group_send_many", None)
    if send_many is not None and len(messages) > 1:
        await send_many(messages)
        return
    for group, message in messages.items():
        await channel_layer.group_send(group, message)


async def worker_status_broadcast(*, channel_layer, status) -> None:
    """Render the worker's state for dashboard headers once and send it to their group.

    status has .state and .last_event_at (the worker's IngestStatus). A failed push is
    logged and skipped: the heartbeat that calls this must keep running.
    """
    view = WorkerStatus(
        state=status.state, last_event_at=status.last_event_at, heartbeat_at=timezone.now()
    )
    message = {
        "type": WORKER_STATUS_MESSAGE_TYPE,
        "state": view.state,
        "last_event_ms": view.last_event_ms,
        "html": render_to_string("liquidations/_worker_status.html", {"status": view, "oob": True}),
    }
    try:
        await channel_layer.group_send(WORKER_STATUS_GROUP, message)
    except Exception:
        logger.exception("Pushing the worker status to dashboards failed")


def connection_gap_record(
    *, started_at: datetime, ended_at: datetime, reason: str
) -> ConnectionGap:
    """Record a span with no upstream connection."""
    return ConnectionGap.objects.create(
        started_at=started_at, ended_at=ended_at, reason=reason[:200]
    )


def connection_gap_open(*, started_at: datetime, reason: str) -> int:
    """Record a hole that is still open (it ends, for now, where it starts); return its id."""
    return connection_gap_record(started_at=started_at, ended_at=started_at, reason=reason).pk


def connection_gap_extend(*, gap_id: int, ended_at: datetime) -> None:
    """Move an open hole's end to `ended_at` (heartbeats while disconnected, then reconnect)."""
    ConnectionGap.objects.filter(pk=gap_id).update(ended_at=ended_at)


SYMBOL_UPDATE_FIELDS = (
    "status",
    "base_asset",
    "quote_asset",
    "price_precision",
    "quantity_precision",
    "tick_size",
    "step_size",
    "updated_at",
)


def symbol_upsert_many(*, symbols: Sequence[SymbolSpec]) -> int:
    """Insert or update the listed symbols; keep unlisted ones (their history stays readable)."""
    rows = [
        Symbol(
            symbol=spec.symbol,
            status=spec.status,
            base_asset=spec.base_asset,
            quote_asset=spec.quote_asset,
            price_precision=spec.price_precision,
            quantity_precision=spec.quantity_precision,
            tick_size=spec.tick_size,
            step_size=spec.step_size,
        )
        for spec in {spec.symbol: spec for spec in symbols}.values()
    ]
    Symbol.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["symbol"],
        update_fields=list(SYMBOL_UPDATE_FIELDS),
        batch_size=500,
    )
    return len(rows)


def worker_state_save(*, status) -> None:
    """Record the worker's state so pages and commands in other processes can read it."""
    now = timezone.now()
    values = {
        "state": status.state,
        "connected_since": status.connected_since,
        "last_event_at": status.last_event_at,
        "events_stored": status.events_stored,
        "malformed_dropped": status.malformed_dropped,
        "heartbeat_at": now,
    }
    # /health needs how long the stream has been down: keep the first moment it was
    # seen down; after a crash that is the dead worker's last heartbeat (read before
    # this UPDATE overwrites it).
    streaming = status.state == "streaming"
    down_since = None if streaming else Coalesce(F("disconnected_since"), F("heartbeat_at"), now)
    if not WorkerState.objects.filter(id=1).update(**values, disconnected_since=down_since):
        WorkerState.objects.get_or_create(
            id=1, defaults={**values, "disconnected_since": None if streaming else now}
        )


def worker_request_save(*, action: str) -> datetime:
    """Leave a start or stop request for the worker (see WorkerState.requested)."""
    if action not in WORKER_REQUESTS:
        raise ValueError(f"unknown worker request {action!r}")
    now = timezone.now()
    WorkerState.objects.get_or_create(id=1)
    WorkerState.objects.filter(id=1).update(requested=action, requested_at=now)
    return now


def worker_request_withdraw(*, requested_at: datetime) -> bool:
    """Withdraw the request made at requested_at if still pending; return whether it was."""
    pending = WorkerState.objects.filter(id=1, requested_at=requested_at).exclude(requested="")
    return bool(pending.update(requested="", requested_at=None))


def worker_request_take(*, max_age: float) -> str | None:
    """Take the pending request (clearing it); None if there is none or it is too old.

    Cleared only if unchanged since it was read, so a request written meanwhile is
    taken next time, not lost. One older than max_age (its sender gave up) is dropped.
    """
    pending = (
        WorkerState.objects.filter(id=1)
        .exclude(requested="")
        .values_list("requested", "requested_at")
        .first()
    )
    if pending is None:
        return None
    action, requested_at = pending
    taken = WorkerState.objects.filter(id=1, requested=action, requested_at=requested_at).update(
        requested="", requested_at=None
    )
    if not taken:
        return None
    if requested_at is None or (timezone.now() - requested_at).total_seconds() > max_age:
        logger.warning("Dropped a stale worker request %r from %s", action, requested_at)
        return None
    return action


def worker_state_last_seen() -> datetime | None:
    """Return when a worker last reported being alive, the start of a possible hole."""
    return WorkerState.objects.filter(id=1).values_list("heartbeat_at", flat=True).first()
