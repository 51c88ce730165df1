"""Keep the Symbol table in step with the exchange's listing: now, hourly, sooner on failure."""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings
from django.utils import timezone

from ..selectors.symbols import symbol_info_cache_clear
from ..services.symbols import symbol_upsert_many
from ..upstream.exchange_info import ExchangeInfoError, fetch_exchange_info
from .dbthread import DbThread
from .status import IngestStatus

logger = logging.getLogger(__name__)


async def symbols_sync(*, db: DbThread, status: IngestStatus) -> int:
    """Fetch exchangeInfo and upsert the Symbol table; return the symbols synced."""
    specs = await fetch_exchange_info(
        base_url=settings.BINANCE_REST_BASE_URL,
        timeout=settings.BINANCE_REST_TIMEOUT_SECONDS,
    )
    count = await db.call(symbol_upsert_many, symbols=specs)
    symbol_info_cache_clear()
    status.symbols_synced_at = timezone.now()
    logger.info("Exchange info synced: %d symbols", count)
    return count


async def symbols_sync_loop(*, db: DbThread, status: IngestStatus) -> None:
    """Sync now and every BINANCE_EXCHANGE_INFO_REFRESH_SECONDS; retry failures sooner."""
    retry = settings.BINANCE_EXCHANGE_INFO_RETRY_SECONDS
    refresh = settings.BINANCE_EXCHANGE_INFO_REFRESH_SECONDS
    while True:
        try:
            await symbols_sync(db=db, status=status)
            wait, retry = refresh, settings.BINANCE_EXCHANGE_INFO_RETRY_SECONDS
        except ExchangeInfoError as exc:
            logger.warning("Exchange info sync failed (%s); retry in %.0f s", exc, retry)
            wait, retry = retry, min(retry * 2, refresh)
        except Exception:
            logger.exception("Exchange info sync failed; retry in %.0f s", retry)
            wait, retry = retry, min(retry * 2, refresh)
        await asyncio.sleep(wait)
