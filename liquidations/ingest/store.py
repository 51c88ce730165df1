"""Store a parsed batch and render its group messages, overlapping the two.

On PostgreSQL a large batch is stored in chunks and each stored chunk is rendered on a
second thread while the next one is being stored: the database's time and the render's
are about equal on the worker's critical path, and now overlap. The new rows are
rendered from the events just stored: nothing is read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from ..live.broadcast import Messages, group_messages, message_rows
from ..selectors.symbols import symbol_info_map
from ..services.liquidations import StoredLiquidation, liquidation_store_chunked
from ..upstream.events import LiquidationEvent

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
    executor = render_executor or _render
    if not events:
        return [], {}
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
    return stored, group_messages(rows)
