"""Rows a viewer's table is missing, read from the database: after a reconnect (the page's
`since`) or after a channel-layer outage (the fan-out hub's resync)."""

from __future__ import annotations

from ..selectors.feed import LiquidationRow, liquidation_feed, liquidation_rows
from ..selectors.filters import FeedFilter
from .contracts import MAX_ROWS
from .templating import row_renderer


def catch_up_html(*, symbol: str | None, feed_filter: FeedFilter, since: int) -> str:
    """Render the newest MAX_ROWS rows stored after since that pass the filter, newest first."""
    liquidations = liquidation_feed(
        symbol=symbol,
        min_usd=feed_filter.min_usd,
        side=feed_filter.binance_side,
        venue=feed_filter.venue,
        after_id=since,
    )[:MAX_ROWS]
    render = row_renderer("liquidations/_row.html", LiquidationRow)
    return "".join(render(row) for row in liquidation_rows(liquidations=liquidations))
