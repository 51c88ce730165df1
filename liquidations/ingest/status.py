"""What the ingest reports of itself: per venue and in sum, sent to `liquidations status`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

TIME_FIELDS = ("connected_since", "last_event_at", "symbols_synced_at", "disconnected_since")
COUNTERS = ("events_received", "events_stored", "duplicates_skipped", "malformed_dropped")
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

    def as_message(self) -> dict:
        """Return the status as plain values (channel-layer messages are msgpack)."""
        data = asdict(self)
        for key in TIME_FIELDS:
            data[key] = data[key].isoformat() if data[key] else None
        return data


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
    def reconnects(self) -> int:
        return sum(s.reconnects for s in self.venues.values())

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
            "venues": self.venues_message(),
        }
