"""`liquidations start|stop|status`: send control messages to the ingest worker."""

from __future__ import annotations

import asyncio
from datetime import datetime

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import BaseCommand, CommandError
from django.utils import timezone

from liquidations.selectors import worker_state
from liquidations.worker import WORKER_CHANNEL

ACTIONS = {"start": "stream.start", "stop": "stream.stop", "status": "stream.status"}


class Command(BaseCommand):
    help = "Start, stop or report on the ingest worker (over the channel layer)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=sorted(ACTIONS))
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="Seconds to wait for the worker's reply (default 5, or 1 without Redis).",
        )

    def handle(self, *args, **options) -> None:
        timeout = options["timeout"]
        if timeout is None:
            timeout = 1.0 if settings.EMBEDDED_WORKER else 5.0
        action = options["action"]
        reply = async_to_sync(_request)(ACTIONS[action], timeout)
        if reply is not None:
            self.stdout.write(format_status(reply))
            return
        if action != "status":
            raise CommandError(
                f"No reply from the worker within {timeout:g} s: the stream was not "
                f"{'started' if action == 'start' else 'stopped'}."
                + (EMBEDDED_HINT if settings.EMBEDDED_WORKER else "")
            )
        self._report_from_database(timeout)

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
        self.stdout.write(format_status(state))


EMBEDDED_HINT = (
    "\n(Without REDIS_URL the worker runs inside `manage.py serve` and its in-memory channel"
    " layer only reaches that process; control it there, or run production mode.)"
)


async def _request(message_type: str, timeout: float) -> dict | None:
    layer = get_channel_layer()
    reply_channel = await layer.new_channel()
    await layer.send(WORKER_CHANNEL, {"type": message_type, "reply_channel": reply_channel})
    try:
        return await asyncio.wait_for(layer.receive(reply_channel), timeout=timeout)
    except TimeoutError:
        return None


def format_status(status: dict) -> str:
    """Return the worker status as aligned `key: value` lines."""
    last_event = _parse(status.get("last_event_at"))
    age = f"{(timezone.now() - last_event).total_seconds():.1f} s ago" if last_event else "never"
    lines = [
        ("state", status.get("state", "unknown")),
        ("connected since", status.get("connected_since") or "-"),
        ("events stored", status.get("events_stored", 0)),
        ("malformed dropped", status.get("malformed_dropped", 0)),
        ("last event", age),
    ]
    for key, label in (
        ("duplicates_skipped", "duplicates skipped"),
        ("reconnects", "reconnects"),
        ("symbols_synced_at", "symbols synced"),
        ("heartbeat_at", "heartbeat"),
    ):
        if key in status:
            lines.append((label, status[key] if status[key] is not None else "-"))
    if status.get("url"):
        lines.append(("upstream", status["url"]))
    return "\n".join(f"{key + ':':<20}{value}" for key, value in lines)


def _parse(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)
