"""What the ingest reports of itself: per venue and in sum, sent to `liquidations status`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

TIME_FIELDS = ("connected_since", "last_event_at", "symbols_synced_at", "disconnected_since")
COUNTERS = (
    "events_received",
    "events_stored",
    "duplicates_skipped",
    "malformed_dropped",
    "dead_letters",
)
# The worker's state from its venues' states: the first that any venue is in.
STATE_ORDER = ("streaming", "reconnecting", "connecting", "stopped")


@dataclass
class VenueStatus:
    """One venue's connection: state, counters, listing and subscriptions."""

    venue: str
    state: str = "stopped"
    url: str = ""
    connected_since: datetime | None = None
    # When it was last seen leaving "streaming" (None while streaming or never started).
    disconnected_since: datetime | None = None
    last_event_at: datetime | None = None
    events_received: int = 0
    events_stored: int = 0
    duplicates_skipped: int = 0
    malformed_dropped: int = 0
    reconnects: int = 0
    symbols_synced_at: datetime | None = None  # the venue's instrument listing
    instruments: int = 0
    subscriptions: str = ""
    # Stored rows the database refused (kept in the DeadLetter table), since start.
    dead_letters: int = 0
    # kind of fault -> its last occurrence (liquidations.logs.LastError), shared with
    # the venue's RateLimitedLog.
    last_errors: dict[str, Any] = field(default_factory=dict)

    def as_message(self) -> dict:
        """Return the status as plain values (channel-layer messages are msgpack)."""
        data = asdict(self)
        for key in TIME_FIELDS:
            data[key] = data[key].isoformat() if data[key] else None
        data["last_errors"] = self.errors_as_dicts()
        return data

    def errors_as_dicts(self) -> dict[str, dict[str, str]]:
        return {kind: error.as_dict() for kind, error in sorted(self.last_errors.items())}


@dataclass
class IngestStatus:
    """The worker's status: each venue's, and their sum as one state and set of counters."""

    venues: dict[str, VenueStatus] = field(default_factory=dict)

    @classmethod
    def of(cls, *venues: VenueStatus) -> IngestStatus:
        return cls(venues={status.venue: status for status in venues})

    @property
    def state(self) -> str:
        states = {status.state for status in self.venues.values()}
        return next((state for state in STATE_ORDER if state in states), "stopped")

    @property
    def connected_since(self) -> datetime | None:
        times = [s.connected_since for s in self.venues.values() if s.connected_since]
        return min(times) if times else None

    @property
    def last_event_at(self) -> datetime | None:
        times = [s.last_event_at for s in self.venues.values() if s.last_event_at]
        return max(times) if times else None

    @property
    def events_received(self) -> int:
        return sum(s.events_received for s in self.venues.values())

    @property
    def events_stored(self) -> int:
        return sum(s.events_stored for s in self.venues.values())

    @property
    def duplicates_skipped(self) -> int:
        return sum(s.duplicates_skipped for s in self.venues.values())

    @property
    def malformed_dropped(self) -> int:
        return sum(s.malformed_dropped for s in self.venues.values())

    @property
    def dead_letters(self) -> int:
        return sum(s.dead_letters for s in self.venues.values())

    @property
    def reconnects(self) -> int:
        return sum(s.reconnects for s in self.venues.values())

    def errors_as_dicts(self) -> dict[str, dict[str, str]]:
        """Return the last error of each kind, whichever venue had it (named first)."""
        latest: dict[str, tuple[str, Any]] = {}
        for name, status in self.venues.items():
            for kind, error in status.last_errors.items():
                if kind not in latest or error.at > latest[kind][1].at:
                    latest[kind] = (name, error)
        return {
            kind: {**error.as_dict(), "message": f"{name}: {error.message}"}
            for kind, (name, error) in sorted(latest.items())
        }

    def venues_message(self) -> dict[str, dict]:
        return {name: status.as_message() for name, status in self.venues.items()}

    def as_message(self) -> dict:
        """Return the sums and every venue's status as plain values."""
        connected, last = self.connected_since, self.last_event_at
        return {
            "state": self.state,
            "connected_since": connected.isoformat() if connected else None,
            "last_event_at": last.isoformat() if last else None,
            **{name: getattr(self, name) for name in COUNTERS},
            "reconnects": self.reconnects,
            "last_errors": self.errors_as_dicts(),
            "venues": self.venues_message(),
        }
