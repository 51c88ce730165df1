"""Writes: the worker's heartbeat row, and start/stop requests left for it."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..models import WorkerState

logger = logging.getLogger(__name__)

WORKER_REQUESTS = ("start", "stop")


class ReportedStatus(Protocol):
    """What the worker reports of itself (ingest.status.IngestStatus)."""

    state: str
    connected_since: datetime | None
    last_event_at: datetime | None
    events_stored: int
    malformed_dropped: int

    def venues_message(self) -> dict[str, dict]: ...
    def errors_as_dicts(self) -> dict[str, dict[str, str]]: ...


def worker_state_save(*, status: ReportedStatus) -> None:
    """Record the worker's state so pages and commands in other processes can read it."""
    now = timezone.now()
    values = {
        "state": status.state,
        "connected_since": status.connected_since,
        "last_event_at": status.last_event_at,
        "events_stored": status.events_stored,
        "malformed_dropped": status.malformed_dropped,
        "venues": status.venues_message(),
        "last_errors": status.errors_as_dicts(),
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
