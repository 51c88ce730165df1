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
    """Run ORM calls on one dedicated thread; close_old_connections() before each."""

    def __init__(self, *, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await sync_to_async(
            _with_fresh_connection(func), thread_sensitive=False, executor=self._executor
        )(*args, **kwargs)

    async def aclose(self, *, wait: bool = True) -> None:
        """Close the thread's database connection, then the thread (wait: for its end)."""
        with contextlib.suppress(Exception):
            await self.call(connections.close_all)
        self._executor.shutdown(wait=wait)


def _with_fresh_connection(func: Callable[..., T]) -> Callable[..., T]:
    def call(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        return func(*args, **kwargs)

    return call
