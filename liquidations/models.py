from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F

from .usd_tiers import UsdTier

# Binance quantities and prices carry at most 8 decimals; 30 digits leaves room for
# 1000PEPE-sized quantities. The parser refuses numbers that would not fit.
DECIMAL: dict[str, Any] = {"max_digits": 30, "decimal_places": 12}

# What the tier indexes carry after (tier, trade_time, id); the symbol one leads with it.
TIER_COVERED = (F("notional_usd"), F("venue"), F("side"), F("symbol"))


class Side(models.TextChoices):
    # Every venue's side is stored as the liquidation order's side: a SELL closes a long.
    BUY = "BUY", "Short liquidated"
    SELL = "SELL", "Long liquidated"


class Venue(models.TextChoices):
    """The exchanges recorded (upstream.events.VENUES), with their short names."""

    BINANCE = "binance", "Binance"
    BYBIT = "bybit", "Bybit"
    OKX = "okx", "OKX"


# Labels as plain dicts, for code that labels many rows (get_FOO_display() builds its
# choices dict per call).
VENUE_LABELS: dict[str, str] = {venue.value: str(venue.label) for venue in Venue}
SIDE_LABELS: dict[str, str] = {side.value: str(side.label) for side in Side}


class SideMixin:
    """is_long_liquidated for anything with a Binance-style order side (.side)."""

    __slots__ = ()
    side: str

    @property
    def is_long_liquidated(self) -> bool:
        """A SELL liquidation order closes a long position."""
        return self.side == Side.SELL


class Liquidation(SideMixin, models.Model):
    """One liquidation as a venue published it, in the common form.

    `symbol` is canonical (base + quote as the venue lists them), `instrument` the venue's
    own id; `side` is the liquidation order's side and `filled_quantity` is in base units
    on every venue. Fields a venue does not publish are empty or null.
    """

    venue = models.CharField(max_length=10, choices=Venue.choices)
    instrument = models.CharField(max_length=40)
    symbol = models.CharField(max_length=30)
    side = models.CharField(max_length=4, choices=Side.choices)
    order_type = models.CharField(max_length=20, blank=True)
    time_in_force = models.CharField(max_length=10, blank=True)
    original_quantity = models.DecimalField(**DECIMAL)
    price = models.DecimalField(**DECIMAL)
    average_price = models.DecimalField(**DECIMAL)
    order_status = models.CharField(max_length=20, blank=True)
    last_filled_quantity = models.DecimalField(**DECIMAL, null=True, blank=True)
    filled_quantity = models.DecimalField(**DECIMAL)
    trade_time = models.DateTimeField()
    event_time = models.DateTimeField(null=True, blank=True)
    notional_usd = models.DecimalField(max_digits=30, decimal_places=8)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-trade_time", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "venue",
                    "symbol",
                    "side",
                    "trade_time",
                    "filled_quantity",
                    "average_price",
                ],
                name="liquidation_unique_venue_event",
            ),
        ]
        # The newest-first indexes also carry what stats and volume aggregate (INCLUDE,
        # PostgreSQL only; SQLite ignores it), so those are index-only scans there.
        indexes = [
            models.Index(
                fields=["-trade_time", "-id"],
                include=["side", "notional_usd", "symbol", "venue"],
                name="liquidation_newest_cover",
            ),
            models.Index(
                fields=["symbol", "-trade_time", "-id"],
                include=["side", "notional_usd", "venue"],
                name="liquidation_symbol_time_cover",
            ),
            # By amount: the row holding a window's largest amount, the admin's amounts.
            models.Index(
                fields=["notional_usd"],
                include=["trade_time", "id", "side", "symbol", "venue"],
                name="liquidation_usd_venue_cover",
            ),
            models.Index(
                fields=["symbol", "notional_usd"],
                include=["trade_time", "id", "side", "venue"],
                name="liquidation_symbol_usd_cover",
            ),
            # "At least $X, newest first": each size tier newest first, every column the
            # history filters read in the key (SQLite has no INCLUDE); selectors/tiers.py.
            models.Index(
                UsdTier(),
                F("trade_time").desc(),
                F("id").desc(),
                *TIER_COVERED,
                name="liquidation_tier_time",
            ),
            models.Index(
                F("symbol"),
                UsdTier(),
                F("trade_time").desc(),
                F("id").desc(),
                *TIER_COVERED[:-1],
                name="liquidation_symbol_tier_time",
            ),
        ]

    def __str__(self) -> str:
        # The admin's list calls this once a row (its checkbox label).
        return (
            f"{VENUE_LABELS.get(self.venue, self.venue)} {self.symbol} "
            f"{SIDE_LABELS.get(self.side, self.side)} {self.filled_quantity} @ {self.average_price}"
        )


class Symbol(models.Model):
    """A USD-M futures contract as listed by /fapi/v1/exchangeInfo."""

    symbol = models.CharField(max_length=30, primary_key=True)
    status = models.CharField(max_length=20)
    base_asset = models.CharField(max_length=20)
    quote_asset = models.CharField(max_length=20)
    price_precision = models.PositiveSmallIntegerField()
    quantity_precision = models.PositiveSmallIntegerField()
    tick_size = models.DecimalField(**DECIMAL)
    step_size = models.DecimalField(**DECIMAL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]

    def __str__(self) -> str:
        return self.symbol


class ConnectionGap(models.Model):
    """A span during which one venue's stream was not connected: the record's holes."""

    venue = models.CharField(max_length=10, choices=Venue.choices)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["-started_at"], name="gap_newest")]

    def __str__(self) -> str:
        return (
            f"{self.venue} {self.started_at:%Y-%m-%d %H:%M:%S} → {self.ended_at:%H:%M:%S}"
            f" ({self.reason})"
        )

    @property
    def duration(self):
        return self.ended_at - self.started_at


class WorkerState(models.Model):
    """The ingest worker's last reported state (one row), for pages in other processes."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    state = models.CharField(max_length=20, default="stopped")
    connected_since = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    events_stored = models.BigIntegerField(default=0)
    malformed_dropped = models.BigIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When the stream was first seen not streaming (None while streaming): for /health.
    disconnected_since = models.DateTimeField(null=True, blank=True)
    # "start" or "stop" asked by `manage.py liquidations` in another process, for a worker
    # its channel layer cannot reach (embedded mode); the worker takes it within a second.
    requested = models.CharField(max_length=10, blank=True, default="")
    requested_at = models.DateTimeField(null=True, blank=True)
    # Each venue's own state and counters: {"binance": {"state": "streaming", ...}, ...}.
    venues = models.JSONField(default=dict, blank=True)
    # Kind of fault -> {"at", "message"} of its last occurrence (`liquidations status`).
    last_errors = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"worker {self.state}"


class DeadLetter(models.Model):
    """A received event the database refused to store, kept with its raw frame and why.

    Any other event of its batch was stored: a refused row costs only itself. Replay one
    after fixing the cause by feeding `frame` to the venue's parser and the store.
    """

    created_at = models.DateTimeField()
    venue = models.CharField(max_length=10, choices=Venue.choices)
    frame = models.TextField()
    error = models.TextField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.venue}: {self.error[:80]}"


class RollupBucket(models.Model):
    """Liquidation totals of one time bucket, venue and symbol (or whole market: scope "").

    Kept by `rollup.liquidation_rollup_advance` from rows up to RollupState.last_id, so
    stats and volume sum a few thousand buckets instead of millions of liquidations.
    """

    scope = models.CharField(max_length=30)  # a symbol, or "" for the whole market
    venue = models.CharField(max_length=10, choices=Venue.choices)
    start = models.BigIntegerField()  # epoch seconds of the bucket's start (UTC)
    side = models.CharField(max_length=4, choices=Side.choices)
    usd = models.DecimalField(max_digits=30, decimal_places=8)
    count = models.BigIntegerField()
    max_usd = models.DecimalField(max_digits=30, decimal_places=8)

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "venue", "start", "side"], name="%(class)s_venue_key"
            ),
        ]
        indexes = [models.Index(fields=["start"], name="%(class)s_age")]

    def __str__(self) -> str:
        return f"{self.scope or 'all'} {self.venue} {self.start} {self.side}: {self.usd}"


class LiquidationMinute(RollupBucket):
    """Per-minute totals (kept ROLLUP_MINUTES_FOR): stats windows and volume up to 30m."""


class LiquidationHour(RollupBucket):
    """Per-hour totals (kept ROLLUP_HOURS_FOR): volume for 1h, 4h and 1d."""


class RollupState(models.Model):
    """How far the per-minute rollup has read the liquidation table (one row)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_id = models.BigIntegerField(default=0)
    # Rows up to last_id with trade_time from these on are all in the minute / hour tables.
    minutes_from = models.DateTimeField(null=True, blank=True)
    hours_from = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"rollup up to id {self.last_id}"


# Alerts (#15) live in their own module; imported here so Django registers them.
from .alert_models import AlertDelivery, AlertHit, AlertRule, AlertState  # noqa: E402, F401
