"""/health: the database, the channel layer and the worker, for a load balancer.

It also shows the answering process's live fan-out (viewers, coalescing window, reason).
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from ..live.fanout import window_reports
from ..selectors.status import WorkerHealth, database_ping, worker_health

logger = logging.getLogger(__name__)

LAYER_PING_TIMEOUT = 2.0


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Database, channel layer and worker state; 503 when any of them is down."""
    body: dict = {"database": "ok", "channel_layer": "ok", "worker": None}
    healthy = True
    try:
        database_ping()
        worker = worker_health(now=timezone.now())
    except Exception as exc:
        logger.warning("Health: database unavailable: %s", exc)
        body["database"] = f"unavailable: {type(exc).__name__}"
        healthy = False
    else:
        body["worker"] = _worker_body(worker)
        healthy = worker.healthy
    try:
        async_to_sync(_layer_round_trip)()
    except Exception as exc:
        logger.warning("Health: channel layer unavailable: %r", exc)
        body["channel_layer"] = f"unavailable: {type(exc).__name__}"
        healthy = False
    body["status"] = "ok" if healthy else "unavailable"
    # This process's live fan-out (its viewers, coalescing window and why): informative.
    body["fanout"] = window_reports()
    return JsonResponse(body, status=200 if healthy else 503)


def _worker_body(worker: WorkerHealth) -> dict:
    return {
        "state": worker.state,
        "connected_since": worker.connected_since.isoformat() if worker.connected_since else None,
        "last_event_age_s": _round(worker.last_event_age_s),
        "heartbeat_age_s": _round(worker.heartbeat_age_s),
        "disconnected_for_s": _round(worker.disconnected_for_s),
        "events_stored": worker.events_stored,
        "malformed_dropped": worker.malformed_dropped,
        "venues": worker.venues or {},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def _layer_round_trip() -> None:
    """Send a message to a fresh channel and read it back (Redis: a real round trip)."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("health.")  # type: ignore[call-arg]  # stub lacks prefix
    async with asyncio.timeout(LAYER_PING_TIMEOUT):
        await layer.send(channel, {"type": "health.ping"})
        message = await layer.receive(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError(f"unexpected message {message.get('type')!r}")
