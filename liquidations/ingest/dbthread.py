"""One thread with its own database connection, for the worker's long-lived loops.

The ingest writer and the stats publisher each own one: a write never waits behind a
page request in the web process's shared sync thread (embedded mode), and a stats query
never delays a write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

T = TypeVar("T")


class DbThread:
    """Run ORM calls on one dedicated thread, on its one connection (replaced when broken)."""

    def __init__(self, *, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await sync_to_async(
            _with_usable_connection(func), thread_sensitive=False, executor=self._executor
        )(*args, **kwargs)

    async def aclose(self, *, wait: bool = True) -> None:
        """Close the thread's database connection, then the thread (wait: for its end)."""
        with contextlib.suppress(Exception):
            await self.call(connections.close_all)
        self._executor.shutdown(wait=wait)


def _with_usable_connection(func: Callable[..., T]) -> Callable[..., T]:
    def call(*args: Any, **kwargs: Any) -> T:
        _keep_unpooled_connections()
        close_old_connections()
        return func(*args, **kwargs)

    return call


def _keep_unpooled_connections() -> None:
    """Let close_old_connections() keep this thread's connection unless it is pooled.

    CONN_MAX_AGE=0 is for requests. Honoured here it closed and reopened the connection
    around every batch: for SQLite a new connection and its PRAGMAs, an eighth of the
    embedded process's time at 440 events/s (py-spy, docs/performance.md). A pooled
    connection (PostgreSQL) is still handed back and taken again from its pool at each
    call, which is cheap. A connection that failed and no longer answers (is_usable()),
    or was left inside a transaction, is still replaced.
    """
    for connection in connections.all(initialized_only=True):
        if getattr(connection, "pool", None) is None:
            connection.close_at = None
