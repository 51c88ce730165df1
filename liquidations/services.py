"""Writes: storing liquidations, keeping symbols, recording gaps, broadcasting rows."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.template.loader import get_template, render_to_string
from django.utils import timezone

from .binance import LiquidationEvent, SymbolSpec
from .models import ConnectionGap, Liquidation, Symbol, WorkerState
from .selectors import WorkerStatus, liquidation_rows

logger = logging.getLogger(__name__)

GROUP_ALL = "liquidations.all"
# Dashboard headers listen here for the worker's state (lower case: never a symbol group).
WORKER_STATUS_GROUP = "worker.status"
WORKER_STATUS_MESSAGE_TYPE = "worker.status"
BATCH_MESSAGE_TYPE = "liquidations.batch"
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
# SQLite allows 32,766 bound parameters per statement; PostgreSQL 65,535.
MAX_ROWS_PER_STATEMENT = 32_766 // len(INSERT_FIELDS)


def symbol_group(symbol: str) -> str:
    """Return the channel-layer group of one symbol (symbols are validated upstream)."""
    return f"liquidations.{symbol}"


def liquidation_store_batch(
    *, events: Sequence[LiquidationEvent], received_at: datetime | None = None
) -> list[Liquidation]:
    """Insert the events, skipping duplicates; return only the rows that are new.

    One INSERT ... ON CONFLICT DO NOTHING RETURNING per chunk (SQLite >= 3.35 and
    PostgreSQL share the syntax), so a replayed event is neither stored nor shown twice.
    """
    if not events:
        return []
    received_at = received_at or timezone.now()
    stored: list[Liquidation] = []
    with transaction.atomic():
        for start in range(0, len(events), MAX_ROWS_PER_STATEMENT):
            chunk = _unique_events(events[start : start + MAX_ROWS_PER_STATEMENT])
            stored.extend(_insert_returning(chunk, received_at))
    stored.sort(key=lambda liq: (liq.trade_time, liq.pk))
    return stored


def _unique_events(events: Sequence[LiquidationEvent]) -> list[LiquidationEvent]:
    # Duplicates inside one statement would conflict with each other on PostgreSQL.
    seen: dict[tuple, LiquidationEvent] = {}
    for event in events:
        seen.setdefault(event.dedup_key, event)
    return list(seen.values())


def _insert_returning(events: list[LiquidationEvent], received_at: datetime) -> list[Liquidation]:
    meta = Liquidation._meta
    fields = [meta.get_field(name) for name in INSERT_FIELDS]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    conflict = ", ".join(quote(meta.get_field(name).column) for name in UNIQUE_FIELDS)
    returning = ", ".join(quote(field.column) for field in meta.concrete_fields)
    rows = [_event_values(event, received_at) for event in events]
    if connection.vendor == "postgresql":
        # One array per column: the statement text is the same for every batch size, so
        # psycopg parses it once (a VALUES list of 14 x n placeholders cost ~25 µs an
        # event to convert, the most expensive step of a store on the profile).
        arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
        source = f"SELECT * FROM unnest({arrays})"
        params: list[object] = [[row[field.name] for row in rows] for field in fields]
    else:
        placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
        source = f"VALUES {', '.join([placeholders] * len(events))}"
        params = [
            field.get_db_prep_save(row[field.name], connection) for row in rows for field in fields
        ]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) {source} "
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {returning}"
    )
    return list(Liquidation.objects.raw(sql, params))


def _event_values(event: LiquidationEvent, received_at: datetime) -> dict[str, object]:
    return {
        "symbol": event.symbol,
        "side": event.side,
        "order_type": event.order_type,
        "time_in_force": event.time_in_force,
        "original_quantity": event.original_quantity,
        "price": event.price,
        "average_price": event.average_price,
        "order_status": event.order_status,
        "last_filled_quantity": event.last_filled_quantity,
        "filled_quantity": event.filled_quantity,
        "trade_time": event.trade_time,
        "event_time": event.event_time,
        "notional_usd": event.notional_usd,
        "received_at": received_at,
    }


def liquidation_messages(*, liquidations: Sequence[Liquidation]) -> dict[str, dict]:
    """Render each row once and return one batch message per group.

    A row carries what consumers filter on (side, usd) next to its HTML, so no viewer
    renders or queries anything. Values are plain types: channels-redis uses msgpack.
    """
    rows_by_group: dict[str, list[dict]] = defaultdict(list)
    template = get_template("liquidations/_row.html")
    for row in liquidation_rows(liquidations=liquidations):
        message_row = {
            "id": row.id,
            "symbol": row.symbol,
            "side": row.side,
            "usd": float(row.usd),
            "trade_time_ms": row.trade_time_ms,
            "html": template.render({"row": row}),
        }
        rows_by_group[GROUP_ALL].append(message_row)
        rows_by_group[symbol_group(row.symbol)].append(message_row)
    return {
        group: {"type": BATCH_MESSAGE_TYPE, "rows": rows} for group, rows in rows_by_group.items()
    }


async def liquidation_broadcast(*, channel_layer, messages: dict[str, dict]) -> None:
    """Send one message per group for this batch."""
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


def worker_state_last_seen() -> datetime | None:
    """Return when a worker last reported being alive, the start of a possible hole."""
    return WorkerState.objects.filter(id=1).values_list("heartbeat_at", flat=True).first()
