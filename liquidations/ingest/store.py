"""Store a parsed batch and render its group messages, overlapping the two.

On PostgreSQL a large batch is stored in chunks and each stored chunk is rendered on a
second thread while the next one is being stored: the database's time and the render's
are about equal on the worker's critical path, and now overlap. The new rows are
rendered from the events just stored: nothing is read back.

A row the database refuses for any reason but being unavailable costs only itself:
store_isolating() splits the batch until the refused rows stand alone, keeps each as a
dead letter (raw frame and error) and stores every other row.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import InterfaceError, OperationalError
from django.utils import timezone

from ..live.broadcast import Messages, group_messages, message_rows
from ..selectors.symbols import symbol_info_map
from ..services.dead_letters import dead_letter_store
from ..services.liquidations import StoredLiquidation, liquidation_store_chunked
from ..upstream.events import LiquidationEvent

# The database is away, restarting or locked: worth retrying the whole batch later.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)

# Renders a stored chunk of a big batch while the DB thread stores the next chunk.
_render = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-render")


def store_and_render(
    events: Sequence[LiquidationEvent],
    *,
    render_executor: Executor | None = None,
    received_at: datetime | None = None,
) -> tuple[list[StoredLiquidation], Messages]:
    """Store the events (each once); return the new ones and their group messages.

    render_executor: where chunks of a large batch render (default: one shared thread).
    """
    stored, rows = _store_rows(events, render_executor=render_executor, received_at=received_at)
    return stored, group_messages(rows)


def _store_rows(
    events: Sequence[LiquidationEvent],
    *,
    render_executor: Executor | None = None,
    received_at: datetime | None = None,
) -> tuple[list[StoredLiquidation], list[dict[str, Any]]]:
    """Store the events; return the new ones and their message rows, in display order."""
    executor = render_executor or _render
    if not events:
        return [], []
    infos = symbol_info_map()  # here, so the render thread never queries the database
    rendering: list[Future[list[dict[str, Any]]]] = []

    def render_chunk(chunk: list[StoredLiquidation], chunked: bool) -> None:
        if not chunked:  # stored at once: nothing to overlap with
            future: Future[list[dict[str, Any]]] = Future()
            future.set_result(message_rows(chunk, infos=infos))
            rendering.append(future)
        else:
            rendering.append(executor.submit(message_rows, chunk, infos=infos))

    stored = liquidation_store_chunked(
        events=events, on_chunk=render_chunk, received_at=received_at
    )
    rows = [row for chunk in rendering for row in chunk.result()]
    rows.sort(key=lambda row: (row["trade_time_ms"], row["id"]))
    return stored, rows


@dataclass
class Batch:
    """Parsed events and, index for index, the raw frames they came from."""

    events: list[LiquidationEvent] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events)

    def add(self, event: LiquidationEvent, frame: bytes) -> None:
        self.events.append(event)
        self.frames.append(frame)

    def extend(self, other: Batch) -> None:
        self.events += other.events
        self.frames += other.frames

    def halves(self) -> tuple[Batch, Batch]:
        middle = len(self.events) // 2
        return (
            Batch(self.events[:middle], self.frames[:middle]),
            Batch(self.events[middle:], self.frames[middle:]),
        )


@dataclass
class StoreOutcome:
    """What storing a batch did: the new rows and their messages, and the refused rows."""

    stored: list[StoredLiquidation] = field(default_factory=list)
    messages: Messages = field(default_factory=dict)
    dead_letters: int = 0
    error: str = ""  # the first refusal, for the log
    # Refused rows whose dead letter could not be stored either: their frames, for the log.
    unkept: list[str] = field(default_factory=list)


def store_isolating(batch: Batch, *, received_at: datetime | None = None) -> StoreOutcome:
    """Store a batch; rows the database refuses become dead letters, the rest are stored.

    The database being unavailable (TRANSIENT_ERRORS) is raised: the caller keeps the
    batch and retries it. Any other error splits the batch in halves, recursively, so
    one refused row among 5,000 costs about 25 more statements, never the other rows.
    """
    received_at = received_at or timezone.now()
    outcome = StoreOutcome()
    rows: list[dict[str, Any]] = []
    _store_part(batch, received_at=received_at, outcome=outcome, rows=rows)
    rows.sort(key=lambda row: (row["trade_time_ms"], row["id"]))
    outcome.stored.sort(key=lambda liq: (liq.trade_time, liq.pk))
    outcome.messages = group_messages(rows)
    return outcome


def _store_part(
    batch: Batch, *, received_at: datetime, outcome: StoreOutcome, rows: list[dict[str, Any]]
) -> None:
    try:
        stored, new_rows = _store_rows(batch.events, received_at=received_at)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        if len(batch) > 1:
            for half in batch.halves():
                _store_part(half, received_at=received_at, outcome=outcome, rows=rows)
            return
        error = f"{type(exc).__name__}: {exc}".strip()
        outcome.error = outcome.error or error
        try:
            dead_letter_store(venue=batch.events[0].venue, frame=batch.frames[0], error=error)
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            outcome.unkept.append(batch.frames[0].decode("utf-8", errors="backslashreplace"))
            return
        outcome.dead_letters += 1
        return
    outcome.stored += stored
    rows += new_rows
