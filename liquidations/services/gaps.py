"""Writes: the holes in the record (spans with no upstream connection)."""

from __future__ import annotations

from datetime import datetime

from ..models import ConnectionGap


def connection_gap_record(
    *, venue: str, started_at: datetime, ended_at: datetime, reason: str
) -> ConnectionGap:
    """Record a span with no connection to one venue."""
    return ConnectionGap.objects.create(
        venue=venue, started_at=started_at, ended_at=ended_at, reason=reason[:200]
    )


def connection_gap_open(*, venue: str, started_at: datetime, reason: str) -> int:
    """Record a hole that is still open (it ends, for now, where it starts); return its id."""
    return connection_gap_record(
        venue=venue, started_at=started_at, ended_at=started_at, reason=reason
    ).pk


def connection_gap_extend(*, gap_id: int, ended_at: datetime) -> None:
    """Move an open hole's end to `ended_at` (heartbeats while disconnected, then reconnect)."""
    ConnectionGap.objects.filter(pk=gap_id).update(ended_at=ended_at)
