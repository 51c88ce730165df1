"""Keep each venue's instrument listing current: at start, hourly, sooner on failure.

Binance's listing fills the Symbol table (display precision of every symbol). Bybit's
says which topics to subscribe and each contract's canonical symbol; OKX's each swap's
contract value, without which its sizes cannot be read. A frame of an instrument not yet
listed asks for an early refresh (at most one per retry interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.utils import timezone

from ..upstream.bybit_instruments import fetch_bybit_instruments
from ..upstream.okx_instruments import fetch_okx_instruments
from ..upstream.rest import InstrumentsError
from .dbthread import DbThread
from .status import VenueStatus
from .symbols import symbols_sync

logger = logging.getLogger(__name__)


async def instruments_sync(*, adapter: Any, db: DbThread, status: VenueStatus) -> int:
    """Fetch one venue's listing and put it to use; return the instruments listed."""
    timeout = settings.BINANCE_REST_TIMEOUT_SECONDS
    if adapter.name == "binance":
        return await symbols_sync(db=db, status=status)
    if adapter.name == "bybit":
        listed: list = await fetch_bybit_instruments(
            base_url=settings.BYBIT_REST_BASE_URL, timeout=timeout
        )
    elif adapter.name == "okx":
        listed = await fetch_okx_instruments(base_url=settings.OKX_REST_BASE_URL, timeout=timeout)
    else:  # pragma: no cover - settings refuse unknown venues
        raise InstrumentsError(f"no listing for venue {adapter.name!r}")
    adapter.set_instruments(listed)
    status.symbols_synced_at = timezone.now()
    status.instruments = len(listed)
    logger.info("%s instruments synced: %d listed", adapter.name, len(listed))
    return len(listed)


class InstrumentsLoop:
    """Sync now and every BINANCE_EXCHANGE_INFO_REFRESH_SECONDS; retry failures sooner."""

    def __init__(
        self,
        *,
        adapter: Any,
        db: DbThread,
        status: VenueStatus,
        on_synced: Callable[[], Awaitable[None]],
    ) -> None:
        self.adapter = adapter
        self.db = db
        self.status = status
        self.on_synced = on_synced
        self.listed = asyncio.Event()  # set after the first successful sync
        self._wanted = asyncio.Event()

    def request(self) -> None:
        """Ask for an early refresh (a frame named an instrument the listing lacks)."""
        self._wanted.set()

    async def run(self) -> None:
        retry = settings.BINANCE_EXCHANGE_INFO_RETRY_SECONDS
        refresh = settings.BINANCE_EXCHANGE_INFO_REFRESH_SECONDS
        name = self.adapter.name
        while True:
            self._wanted.clear()
            synced_at = time.monotonic()
            try:
                await instruments_sync(adapter=self.adapter, db=self.db, status=self.status)
                wait, retry = refresh, settings.BINANCE_EXCHANGE_INFO_RETRY_SECONDS
                self.listed.set()
                await self.on_synced()
            except InstrumentsError as exc:
                logger.warning(
                    "Instrument listing of %s failed (%s); retry in %.0f s", name, exc, retry
                )
                wait, retry = retry, min(retry * 2, refresh)
            except Exception:
                logger.exception("Instrument listing of %s failed; retry in %.0f s", name, retry)
                wait, retry = retry, min(retry * 2, refresh)
            earliest = synced_at + settings.BINANCE_EXCHANGE_INFO_RETRY_SECONDS
            await self._sleep(until=synced_at + wait, earliest=earliest)

    async def _sleep(self, *, until: float, earliest: float) -> None:
        """Sleep until `until`, or less when a refresh is asked for (not before `earliest`)."""
        await asyncio.sleep(max(0.0, min(until, earliest) - time.monotonic()))
        remaining = until - time.monotonic()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), timeout=remaining)
