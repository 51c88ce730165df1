"""The live protocol in one place: channel names, groups, message types, frame limits.

The worker publishes to groups; each web process's fan-out hub joins them and writes
frames to viewer sockets. Everything that both sides must agree on is named here.
"""

from __future__ import annotations

import hashlib
import re

# The Channels worker channel that `manage.py runworker liquidations` serves; it accepts
# stream.start, stream.stop and stream.status (with an optional reply_channel).
WORKER_CHANNEL = "liquidations"

# Row batches: every row goes to the all-market group and to its symbol's group.
GROUP_ALL = "liquidations.all"
BATCH_MESSAGE_TYPE = "liquidations.batch"
# Dashboard headers listen here for the worker's state (lower case: never a symbol group).
WORKER_STATUS_GROUP = "worker.status"
WORKER_STATUS_MESSAGE_TYPE = "worker.status"
# The stats strip of one scope (all-market or a symbol), rendered once a second.
STATS_MESSAGE_TYPE = "liquidations.stats"
# A web process's fan-out hub checking, once a second, that the layer carries messages.
PROBE_MESSAGE_TYPE = "fanout.probe"

# The table holds 50 rows: a frame carries the newest 50 that pass the viewer's filter.
MAX_ROWS = 50

# Close codes the browser sees (static/js/dashboard.js keeps its handling in step; the
# table is in docs/live-feed.md). Applications may only send 1000 or 3000-4999: autobahn
# (daphne) turns anything else into 1011, which the htmx extension retries. So the
# WebSocket meanings of 1008/1009 get 4000-range twins, final for the page.
CLOSE_POLICY = 4008  # a message the feed refuses: binary, not JSON, bad filter, too many
CLOSE_TOO_BIG = 4009  # a message over MAX_MESSAGE_BYTES
CLOSE_NOT_FOUND = 4404  # no such feed (an invalid symbol in the path)
# Sent by the page itself when a socket stays silent too long (it then reconnects).
CLOSE_STALLED = 4000


# Symbols that are group names as they are; any other gets an alias (group_key).
PLAIN_SYMBOL_RE = re.compile(r"[A-Za-z0-9]{1,30}")


def group_key(symbol: str) -> str:
    """Return the symbol as a group-name part: itself, or an ASCII alias of it.

    Group names allow only [A-Za-z0-9._-] and under 100 characters, and venues list
    symbols outside that (Binance: 币安人生USDT). Such a symbol gets "_" and a hash of
    its UTF-8 bytes: stable across processes, and never equal to a plain symbol.
    """
    if PLAIN_SYMBOL_RE.fullmatch(symbol):
        return symbol
    return "_" + hashlib.sha256(symbol.encode()).hexdigest()[:32]


def symbol_group(symbol: str) -> str:
    """Return the channel-layer group of one symbol's rows (all venues)."""
    return f"liquidations.{group_key(symbol)}"


def feed_symbol(group: str) -> str | None:
    """Return the symbol of a feed group (None for the all-market one); see is_feed_group."""
    return None if group == GROUP_ALL else group.removeprefix("liquidations.")


def is_feed_group(group: str) -> bool:
    """Whether a group carries row batches (the all-market or a symbol's feed)."""
    return group.startswith("liquidations.")


def stats_group(symbol: str | None) -> str:
    """Return the group whose members get the stats strip of one scope.

    Separate from the feed groups, which carry only row batches (their contract).
    """
    return f"stats.{group_key(symbol)}" if symbol else "stats.all"


# Market data of the symbol page (candles, trades tape, order book): web processes' market
# hubs send the worker channel "market.watch" {"hub": <id>, "streams": {<stream>: <viewers>}},
# every stream their viewers watch, on every change and every MARKET_WATCH_RENEW_SECONDS.
# The worker holds one upstream subscription per stream watched by any hub and publishes
# each stream to its group: "market.trades" (rendered tape rows), "market.kline" (the live
# candle), "market.book" (the top of the local book, rendered by each hub per rounding and
# depth) and "market.state" (a stream's upstream state, for the panels' status).
MARKET_WATCH_MESSAGE_TYPE = "market.watch"
MARKET_TRADES_MESSAGE_TYPE = "market.trades"
MARKET_KLINE_MESSAGE_TYPE = "market.kline"
MARKET_BOOK_MESSAGE_TYPE = "market.book"
MARKET_STATE_MESSAGE_TYPE = "market.state"
# The tape keeps this many rows.
MARKET_TAPE_ROWS = 50


def market_group(stream: str) -> str:
    """Return the group of an upstream stream: btcusdt@depth@100ms → market.btcusdt.depth.100ms."""
    return "market." + stream.replace("@", ".")
