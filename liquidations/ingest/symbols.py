"""Binance's listing into the Symbol table (display info of every symbol)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from ..selectors.symbols import symbol_info_cache_clear
from ..services.symbols import symbol_upsert_many
from ..upstream.exchange_info import fetch_exchange_info
from .dbthread import DbThread
from .status import VenueStatus

logger = logging.getLogger(__name__)


async def symbols_sync(*, db: DbThread, status: VenueStatus) -> int:
    """Fetch exchangeInfo and upsert the Symbol table; return the symbols synced."""
    specs = await fetch_exchange_info(
        base_url=settings.BINANCE_REST_BASE_URL,
        timeout=settings.BINANCE_REST_TIMEOUT_SECONDS,
    )
    count = await db.call(symbol_upsert_many, symbols=specs)
    symbol_info_cache_clear()
    status.symbols_synced_at = timezone.now()
    status.instruments = count
    logger.info("Exchange info synced: %d symbols", count)
    return count
