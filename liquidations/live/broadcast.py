"""Render once, send once: the group messages of stored rows, the worker status, stats.

The worker renders each new row once (`_row.html`, compiled by templating.py) and sends
one message per group per batch; every web process's fan-out hub takes it from there.
A message row carries what viewers filter on (side, usd) next to its HTML, so no viewer
renders or queries anything. Values are plain types: channels-redis uses msgpack.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from django.template.loader import render_to_string
from django.utils import timezone

from ..logs import RateLimitedLog
from ..selectors.feed import LiquidationLike, LiquidationRow, liquidation_rows
from ..selectors.stats import WindowStats, liquidation_stats_many, stats_context
from ..selectors.status import VenueState, WorkerStatus
from ..selectors.symbols import SymbolInfo
from .contracts import (
    BATCH_MESSAGE_TYPE,
    GROUP_ALL,
    STATS_MESSAGE_TYPE,
    WORKER_STATUS_GROUP,
    WORKER_STATUS_MESSAGE_TYPE,
    stats_group,
    symbol_group,
)
from .templating import row_renderer

logger = logging.getLogger(__name__)
# Every second while the layer is down: a few lines, then a summary a minute.
_status_failures = RateLimitedLog(logger)

Messages = dict[str, dict[str, Any]]


class ChannelLayer(Protocol):
    async def group_send(self, group: str, message: dict) -> None: ...


class ShownStatus(Protocol):
    """What the header shows of the worker (ingest.status.IngestStatus)."""

    @property
    def state(self) -> str: ...

    @property
    def last_event_at(self) -> datetime | None: ...

    def venues_message(self) -> dict[str, dict]: ...


def message_rows(
    liquidations: Sequence[LiquidationLike], *, infos: dict[str, SymbolInfo]
) -> list[dict[str, Any]]:
    """Render each row once: what one batch message carries per liquidation."""
    # The same _row.html that pages and the consumer's catch-up render.
    render = row_renderer("liquidations/_row.html", LiquidationRow)
    return [
        {
            "id": row.id,
            "venue": row.venue,
            "symbol": row.symbol,
            "side": row.side,
            "usd": float(row.usd),
            "trade_time_ms": row.trade_time_ms,
            "html": render(row),
        }
        for row in liquidation_rows(liquidations=liquidations, infos=infos)
    ]


def group_messages(rows: list[dict[str, Any]]) -> Messages:
    """Return one batch message per group: every row to the all-market and its symbol's."""
    rows_by_group: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        rows_by_group[GROUP_ALL].append(row)
        rows_by_group[symbol_group(row["symbol"])].append(row)
    return {
        group: {"type": BATCH_MESSAGE_TYPE, "rows": rows} for group, rows in rows_by_group.items()
    }


async def broadcast(*, channel_layer: Any, messages: Messages) -> None:
    """Send one message per group (in one go where the layer can: Redis pub/sub)."""
    send_many = getattr(channel_layer, "group_send_many", None)
    if send_many is not None and len(messages) > 1:
        await send_many(messages)
        return
    for group, message in messages.items():
        await channel_layer.group_send(group, message)


async def worker_status_broadcast(*, channel_layer: Any, status: ShownStatus) -> None:
    """Render the worker's state for dashboard headers once and send it to their group.

    A failed push is logged and skipped: the heartbeat that calls this must keep running.
    """
    view = WorkerStatus(
        state=status.state,
        last_event_at=status.last_event_at,
        heartbeat_at=timezone.now(),
        venues=tuple(
            VenueState(venue=name, state=venue["state"])
            for name, venue in status.venues_message().items()
        ),
    )
    message = {
        "type": WORKER_STATUS_MESSAGE_TYPE,
        "state": view.state,
        "venues": view.venues_key,
        "last_event_ms": view.last_event_ms,
        "html": render_to_string("liquidations/_worker_status.html", {"status": view, "oob": True}),
    }
    try:
        await channel_layer.group_send(WORKER_STATUS_GROUP, message)
    except Exception as exc:
        _status_failures.log(
            logging.WARNING,
            "worker status push",
            "Pushing the worker status to dashboards failed: %r",
            exc,
            reason=type(exc).__name__,
        )
    else:
        _status_failures.recovered(
            "worker status push", "Pushing the worker status to dashboards works again"
        )
    _status_failures.flush()


def stats_html(*, symbol: str | None, stats: list[WindowStats], oob: bool = False) -> str:
    """Render one scope's stats strip (`_stats.html`)."""
    context = stats_context(symbol=symbol, stats=stats)
    return render_to_string("liquidations/_stats.html", {**context, "oob": oob})


def stats_compute(*, scopes: list[str | None]) -> dict[str | None, list[WindowStats]]:
    """Every scope's windows at once (one read of the rollup and the recent rows)."""
    return liquidation_stats_many(scopes=scopes, now=timezone.now())


def stats_message(*, scope: str | None, stats: list[WindowStats]) -> Messages:
    """Render one scope's strip once: the message of its group."""
    return {
        stats_group(scope): {
            "type": STATS_MESSAGE_TYPE,
            "html": stats_html(symbol=scope, oob=True, stats=stats),
        }
    }
