"""`liquidations start|stop|status`: send control messages to the ingest worker.

With Redis they go over the channel layer. Without it (embedded mode) the worker runs
inside `manage.py serve` and the in-memory layer cannot reach it from this process:
start and stop are then left in the database, where the worker looks every second.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from liquidations.live.contracts import WORKER_CHANNEL
from liquidations.selectors.dead_letters import dead_letter_count
from liquidations.selectors.status import worker_state
from liquidations.services.worker_state import worker_request_save, worker_request_withdraw

ACTIONS = {"start": "stream.start", "stop": "stream.stop", "status": "stream.status"}
# What the worker's recorded state is once each request is done.
DONE_STATES = {"start": ("connecting", "streaming"), "stop": ("stopped",)}
DATABASE_POLL_SECONDS = 0.2


class Command(BaseCommand):
    help = "Start, stop or report on the ingest worker (over the channel layer)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=sorted(ACTIONS))
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help=(
                "Seconds to wait for the worker (default 5; without Redis 1 for status, "
                "15 for start and stop)."
            ),
        )

    def handle(self, *args, **options) -> None:
        timeout = options["timeout"]
        action = options["action"]
        if settings.EMBEDDED_WORKER and action != "status":
            self._request_through_database(action, 15.0 if timeout is None else timeout)
            return
        if timeout is None:
            timeout = 1.0 if settings.EMBEDDED_WORKER else 5.0
        reply = async_to_sync(_request)(ACTIONS[action], timeout)
        if reply is not None:
            self.stdout.write(format_status(reply, dead_letters=_dead_letters()))
            return
        if action != "status":
            raise CommandError(
                f"No reply from the worker within {timeout:g} s: the stream was not "
                f"{'started' if action == 'start' else 'stopped'}."
            )
        self._report_from_database(timeout)

    def _request_through_database(self, action: str, timeout: float) -> None:
        """Leave the request for the in-process worker of `serve`; wait until it is done."""
        requested_at = worker_request_save(action=action)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = worker_state()
            if state and not state["requested"] and _done(action, state, requested_at):
                self.stdout.write(format_status(state, dead_letters=_dead_letters()))
                return
            time.sleep(DATABASE_POLL_SECONDS)
        taken = not worker_request_withdraw(requested_at=requested_at)
        raise CommandError(
            f"The worker {'took the request but' if taken else 'did not take the request'} "
            f"did not report the stream {'started' if action == 'start' else 'stopped'} "
            f"within {timeout:g} s."
            + ("" if taken else " Is `manage.py serve` (`make run`) running?")
        )

    def _report_from_database(self, timeout: float) -> None:
        state = worker_state()
        if state is None or state.get("heartbeat_at") is None:
            raise CommandError(
                f"No reply from the worker within {timeout:g} s and no heartbeat recorded. "
                "Is `manage.py runworker liquidations` (or `make run`) running?"
            )
        self.stderr.write(
            f"No reply from the worker within {timeout:g} s; last heartbeat from the database:"
            + (EMBEDDED_HINT if settings.EMBEDDED_WORKER else "")
        )
        self.stdout.write(format_status(state, dead_letters=_dead_letters()))


def _dead_letters() -> int | None:
    """Events the database refused, kept in the DeadLetter table (None: unreadable now)."""
    try:
        return dead_letter_count()
    except DatabaseError:
        return None


EMBEDDED_HINT = (
    "\n(Without REDIS_URL the worker runs inside `manage.py serve`, which this process's"
    " in-memory channel layer cannot reach: status comes from the database, and so do"
    " start and stop.)"
)


async def _request(message_type: str, timeout: float) -> dict | None:
    layer = get_channel_layer()
    if layer is None:
        raise CommandError("No channel layer is configured.")
    reply_channel = await layer.new_channel()
    await layer.send(WORKER_CHANNEL, {"type": message_type, "reply_channel": reply_channel})
    try:
        return await asyncio.wait_for(layer.receive(reply_channel), timeout=timeout)
    except TimeoutError:
        return None


def _done(action: str, state: dict, requested_at: datetime) -> bool:
    """Whether the recorded state shows the request carried out (reported after it)."""
    reported_at = state.get("heartbeat_at")
    return (
        state["state"] in DONE_STATES[action]
        and reported_at is not None
        and reported_at >= requested_at
    )


def format_status(status: dict, *, dead_letters: int | None = None) -> str:
    """Return the worker status as aligned `key: value` lines, the last errors, then
    one block per venue."""
    lines = [
        ("state", status.get("state", "unknown")),
        ("connected since", status.get("connected_since") or "-"),
        ("events stored", status.get("events_stored", 0)),
        ("malformed dropped", status.get("malformed_dropped", 0)),
        ("last event", _age(status.get("last_event_at"))),
    ]
    for key, label in (
        ("duplicates_skipped", "duplicates skipped"),
        ("reconnects", "reconnects"),
        ("heartbeat_at", "heartbeat"),
    ):
        if key in status:
            lines.append((label, status[key] if status[key] is not None else "-"))
    lines.append(("dead letters", "unknown" if dead_letters is None else dead_letters))
    blocks = [_aligned(lines) + format_errors(status.get("last_errors") or {})]
    venues = status.get("venues") or {}
    for name, venue in venues.items() if isinstance(venues, dict) else ():
        blocks.append(f"[{name}]\n" + _aligned(_venue_lines(venue)))
    return "\n\n".join(blocks)


def format_errors(errors: dict) -> str:
    """Return the last error of each kind of fault, one per line (nothing when none)."""
    if not errors:
        return ""
    lines = [
        f"  {kind + ':':<20}{e.get('at', '?')}  {e.get('message', '')}"
        for kind, e in errors.items()
    ]
    return "\nlast errors:\n" + "\n".join(lines)


def _venue_lines(venue: dict) -> list[tuple[str, object]]:
    lines: list[tuple[str, object]] = [
        ("state", venue.get("state", "unknown")),
        ("connected since", venue.get("connected_since") or "-"),
    ]
    for key, label in (
        ("events_received", "events received"),
        ("events_stored", "events stored"),
        ("duplicates_skipped", "duplicates skipped"),
        ("malformed_dropped", "malformed dropped"),
        ("dead_letters", "dead letters"),
        ("reconnects", "reconnects"),
    ):
        lines.append((label, venue.get(key, 0)))
    lines.append(("last event", _age(venue.get("last_event_at"))))
    synced = venue.get("symbols_synced_at")
    listed = f"{venue.get('instruments', 0)} instruments at {synced}" if synced else "not yet"
    lines.append(("listing synced", listed))
    if venue.get("subscriptions"):
        lines.append(("subscriptions", venue["subscriptions"]))
    if venue.get("url"):
        lines.append(("upstream", venue["url"]))
    return lines


def _aligned(lines: list[tuple[str, object]]) -> str:
    return "\n".join(f"{key + ':':<20}{value}" for key, value in lines)


def _age(value: str | datetime | None) -> str:
    moment = _parse(value)
    return f"{(timezone.now() - moment).total_seconds():.1f} s ago" if moment else "never"


def _parse(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)
