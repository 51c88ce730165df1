"""Optional backfill: fetch recent liquidations from another instance's JSON API.

With LIQUIDATION_API_BASE_URL set, the worker asks that API (this app's own paged form,
/api/v1/liquidations/paged, so one instance can backfill another) for the span it was
away, and stores the items it is missing through the same deduplicating insert as the
live stream. A failure is logged; streaming never waits for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from django.utils import timezone

from ..services.liquidations import liquidation_store_new
from ..upstream.events import LiquidationEvent, MalformedFrame, datetime_to_ms
from ..upstream.orderfox_api import PAGED_PATH, item_to_event
from .dbthread import DbThread

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
PAGE_LIMIT = 1000
MAX_PAGES = 200
MAX_SPAN = timedelta(hours=24)


@dataclass
class BackfillResult:
    received: int = 0
    stored: int = 0
    malformed: int = 0
    pages: int = 0


class BackfillError(RuntimeError):
    pass


def _store(events: list[LiquidationEvent]) -> int:
    return len(liquidation_store_new(events=events))


async def backfill(
    *,
    base_url: str,
    since: datetime | None = None,
    until: datetime | None = None,
    max_pages: int = MAX_PAGES,
) -> BackfillResult:
    """Fetch [since, until) page by page and store what is missing; return the counts."""
    until = until or timezone.now()
    since = max(since or until - MAX_SPAN, until - MAX_SPAN)
    url = f"{base_url.rstrip('/')}{PAGED_PATH}"
    params = {
        "start_timestamp": str(datetime_to_ms(since)),
        "end_timestamp": str(datetime_to_ms(until)),
        "limit": str(PAGE_LIMIT),
    }
    result = BackfillResult()
    db = DbThread(name="backfill-db")
    try:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            while result.pages < max_pages:
                async with session.get(url, params=params) as response:
                    if response.status != 200:
                        text = (await response.text())[:200]
                        raise BackfillError(f"{url} answered {response.status}: {text}")
                    page = await response.json()
                result.pages += 1
                items, next_cursor = _page_items(page)
                events = []
                for item in items:
                    try:
                        events.append(item_to_event(item))
                    except MalformedFrame as exc:
                        result.malformed += 1
                        logger.warning("Backfill skipped a malformed item (%s): %.200r", exc, item)
                result.received += len(items)
                if events:
                    result.stored += await db.call(_store, events)
                if not next_cursor:
                    break
                params["cursor"] = next_cursor
    finally:
        await db.aclose(wait=False)
    return result


def _page_items(page: object) -> tuple[list, str | None]:
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise BackfillError("response is not an object with a 'data' list")
    cursor = page.get("next_cursor")
    return page["data"], cursor if isinstance(cursor, str) and cursor else None


async def backfill_run(*, base_url: str, since: datetime | None) -> BackfillResult | None:
    """Run one backfill and log the outcome; never raises (streaming goes on)."""
    logger.info("Backfill from %s starting", base_url)
    try:
        result = await backfill(base_url=base_url, since=since)
    except (aiohttp.ClientError, TimeoutError, BackfillError, ValueError) as exc:
        logger.warning("Backfill from %s failed: %s: %s", base_url, type(exc).__name__, exc)
        return None
    except Exception:
        # E.g. the database refused a write: loud, but the stream keeps running.
        logger.exception("Backfill from %s failed", base_url)
        return None
    logger.info(
        "Backfill from %s: %d items in %d pages, %d new stored, %d malformed",
        base_url,
        result.received,
        result.pages,
        result.stored,
        result.malformed,
    )
    return result
