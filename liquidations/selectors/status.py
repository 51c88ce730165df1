"""Reads: the worker's state, as the dashboard header, /health and commands show it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from ..models import VENUE_LABELS, WorkerState

# The worker saves its state every second; this much silence means it is not running.
WORKER_STALE_SECONDS = 15.0
# /health: a stream down for longer than this makes the service unhealthy.
WORKER_DOWN_LIMIT = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class VenueState:
    """One venue's connection as the header shows it."""

    venue: str
    state: str

    @property
    def label(self) -> str:
        return VENUE_LABELS.get(self.venue, self.venue)


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """The upstream worker's state as the dashboard header shows it (and each venue's)."""

    state: str
    last_event_at: datetime | None
    heartbeat_at: datetime | None
    venues: tuple[VenueState, ...] = ()

    @property
    def venues_key(self) -> str:
        """The venues' states in one string (the fan-out forwards a status when it changes)."""
        return ",".join(f"{v.venue}:{v.state}" for v in self.venues)

    @property
    def last_event_ms(self) -> int | None:
        if self.last_event_at is None:
            return None
        return int(self.last_event_at.timestamp() * 1000)

    @property
    def last_event_age(self) -> str:
        if self.last_event_at is None:
            return ""
        return age_text(seconds=(timezone.now() - self.last_event_at).total_seconds())


def age_text(*, seconds: float) -> str:
    """Return a short age: "4 s", "12 min", "3 h", "2 d"."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def worker_status(*, stale_after: float = WORKER_STALE_SECONDS) -> WorkerStatus:
    """Return the worker's state for the header; a worker silent too long counts as stopped."""
    row = worker_state()
    if row is None:
        return WorkerStatus(state="stopped", last_event_at=None, heartbeat_at=None)
    state = row["state"]
    heartbeat_at = row["heartbeat_at"]
    stale = heartbeat_at is None or (timezone.now() - heartbeat_at).total_seconds() > stale_after
    if stale:
        state = "stopped"
    venues = tuple(
        VenueState(venue=name, state="stopped" if stale else str(venue.get("state", "stopped")))
        for name, venue in (row["venues"] or {}).items()
        if isinstance(venue, dict)
    )
    return WorkerStatus(
        state=state, last_event_at=row["last_event_at"], heartbeat_at=heartbeat_at, venues=venues
    )


def worker_state() -> dict[str, Any] | None:
    """Return the worker's last recorded state as a dict, or None if it never ran."""
    row = (
        WorkerState.objects.filter(id=1)
        .values(
            "state",
            "connected_since",
            "last_event_at",
            "events_stored",
            "malformed_dropped",
            "heartbeat_at",
            "disconnected_since",
            "requested",
            "venues",
            "last_errors",
        )
        .first()
    )
    return None if row is None else dict(row)


def worker_state_last_seen() -> datetime | None:
    """Return when a worker last reported being alive, the start of a possible hole."""
    return WorkerState.objects.filter(id=1).values_list("heartbeat_at", flat=True).first()


def database_ping() -> None:
    """Run a trivial query; raises the driver's error when the database is unreachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    state: str  # the worker's own state, or "absent" when it stopped heartbeating
    connected_since: datetime | None
    last_event_age_s: float | None
    heartbeat_age_s: float | None
    disconnected_for_s: float | None  # None while streaming
    events_stored: int
    malformed_dropped: int
    # Each venue's state ("absent" with the worker), for the body; health follows `state`.
    venues: dict[str, str] | None = None

    @property
    def healthy(self) -> bool:
        if self.heartbeat_age_s is None:
            return False  # no worker ever reported
        return (
            self.disconnected_for_s is None
            or self.disconnected_for_s <= WORKER_DOWN_LIMIT.total_seconds()
        )


def worker_health(*, now: datetime) -> WorkerHealth:
    """Return the worker's state as /health reports it."""
    row = worker_state()
    if row is None or row["heartbeat_at"] is None:
        return WorkerHealth("absent", None, None, None, None, 0, 0)
    heartbeat_age = (now - row["heartbeat_at"]).total_seconds()
    alive = heartbeat_age <= WORKER_STALE_SECONDS
    if alive and row["state"] == "streaming":
        down_since = None
    elif alive:
        down_since = row["disconnected_since"] or row["heartbeat_at"]
    else:
        # A dead worker stopped heartbeating: down since its last word at the latest.
        down_since = min(filter(None, (row["disconnected_since"], row["heartbeat_at"])))
    last_event = row["last_event_at"]
    return WorkerHealth(
        state=row["state"] if alive else "absent",
        connected_since=row["connected_since"] if alive else None,
        last_event_age_s=(now - last_event).total_seconds() if last_event else None,
        heartbeat_age_s=heartbeat_age,
        disconnected_for_s=(now - down_since).total_seconds() if down_since else None,
        events_stored=row["events_stored"],
        malformed_dropped=row["malformed_dropped"],
        venues={
            name: str(venue.get("state", "stopped")) if alive else "absent"
            for name, venue in (row["venues"] or {}).items()
            if isinstance(venue, dict)
        },
    )
